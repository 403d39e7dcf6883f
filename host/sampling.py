"""Choosing the next token from logits: greedy, or seeded sampling with temperature, top-k, top-p.

A :class:`Sampler` holds the settings; each back end asks it for the chooser that computes as it
does. The float back ends draw from numpy's seeded generator over float probabilities. The integer
back ends run the device's sampler (docs/NUMERICS.md, "Sampling") on the int16 logit codes, with
the xorshift32 PRNG that the gateware and the golden model share.
"""

from dataclasses import dataclass

import numpy as np

from ..contract.errors import UserError
from ..contract.numerics import INT16, SAMPLE_CANDIDATES
from .kernels import argmax, first_state, integer_sample, quantize, sampling_parameters

__all__ = ["Sampler", "FloatChooser", "IntegerChooser"]


@dataclass
class Sampler:
    """Greedy unless a temperature (> 0), top-k or top-p is given; the seed is in [0, 2**32)."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.temperature is not None and not 0 <= self.temperature < float("inf"):
            raise UserError(f"--temperature must be >= 0 and finite, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.seed < 2 ** 32:
            raise UserError(f"--seed must be in [0, 2**32), got {self.seed}")

    @property
    def greedy(self):
        if self.temperature == 0:
            return True
        return self.temperature is None and self.top_k is None and self.top_p is None

    def check_integer(self):
        """Refuse settings the device's sampler cannot follow (before any model is loaded)."""
        if not self.greedy and self.top_k is not None and self.top_k > SAMPLE_CANDIDATES:
            raise UserError(f"--top-k {self.top_k}: the device samples from at most {SAMPLE_CANDIDATES} candidates")

    def float_chooser(self):
        """A fresh :class:`FloatChooser` with these settings."""
        return FloatChooser(self)

    def integer_chooser(self, logit_scale):
        """A fresh :class:`IntegerChooser` for logits of one unit ``logit_scale``."""
        return IntegerChooser(self, logit_scale)


class FloatChooser:
    """Sampling over float probabilities with numpy's generator, seeded once."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.rng = np.random.default_rng(sampler.seed)

    def __call__(self, logits):
        """The next token id from a vector of logits."""
        s = self.sampler
        if s.greedy:
            return int(np.argmax(logits))
        scaled = np.asarray(logits, dtype=np.float64) / (s.temperature or 1.0)
        order = np.argsort(-scaled, kind="stable")
        if s.top_k is not None:
            order = order[: s.top_k]
        probs = np.exp(scaled[order] - scaled[order[0]])
        probs /= probs.sum()
        if s.top_p is not None:
            # keep the smallest prefix whose mass reaches top_p (the most likely token always stays)
            keep = int(np.searchsorted(np.cumsum(probs), s.top_p)) + 1
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(order[self.rng.choice(len(order), p=probs)])


class IntegerChooser:
    """The device's sampler on int16 logit codes, with its PRNG state (one draw a sampled token).

    It takes the dequantized logits that integer back ends return and recovers their codes exactly
    with the host's quantizer (``codes * scale / scale`` in float32 is within 2**-22 of the code, far
    from a rounding boundary).
    """

    def __init__(self, sampler, logit_scale):
        self.greedy = sampler.greedy
        self.scale = np.float32(logit_scale)
        self.state = first_state(sampler.seed)
        sampler.check_integer()
        if not self.greedy:
            try:
                self.parameters = sampling_parameters(logit_scale, sampler.temperature or 1.0, sampler.top_k,
                                                      sampler.top_p)
            except ValueError:
                raise UserError(f"--temperature {sampler.temperature} is too small for the device's sampler "
                                f"(use 0 for greedy)") from None

    @property
    def settings(self):
        """TOKEN's SETTINGS (contract/protocol.py) for the device to choose as this chooser does."""
        if self.greedy:
            return dict(greedy=1, state=self.state)
        pre, constant, shift, k, p = self.parameters
        return dict(greedy=0, pre=pre, constant=constant, shift=shift, k=k, top_p=p, state=self.state)

    def codes(self, logits):
        """The int16 codes of dequantized logits."""
        return quantize(logits, self.scale, INT16)

    def __call__(self, logits):
        """The next token id."""
        codes = self.codes(logits)
        if self.greedy:
            return int(argmax(codes))
        token, self.state = integer_sample(codes, *self.parameters, self.state)
        return token
