"""Choosing the next token from logits: greedy, or seeded sampling with temperature, top-k, top-p."""

from dataclasses import dataclass

import numpy as np

from ..contract.errors import UserError

__all__ = ["Sampler"]


@dataclass
class Sampler:
    """Greedy unless a temperature (> 0), top-k or top-p is given; sampling draws from a seeded RNG."""

    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.temperature is not None and not self.temperature >= 0:
            raise UserError(f"--temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        self.rng = np.random.default_rng(self.seed)

    @property
    def greedy(self):
        if self.temperature == 0:
            return True
        return self.temperature is None and self.top_k is None and self.top_p is None

    def __call__(self, logits):
        """The next token id from a vector of logits."""
        if self.greedy:
            return int(np.argmax(logits))
        scaled = np.asarray(logits, dtype=np.float64) / (self.temperature or 1.0)
        order = np.argsort(-scaled, kind="stable")
        if self.top_k is not None:
            order = order[: self.top_k]
        probs = np.exp(scaled[order] - scaled[order[0]])
        probs /= probs.sum()
        if self.top_p is not None:
            # keep the smallest prefix whose mass reaches top_p (the most likely token always stays)
            keep = int(np.searchsorted(np.cumsum(probs), self.top_p)) + 1
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return int(order[self.rng.choice(len(order), p=probs)])
