"""The integer kernels the device computes, bit for bit, in numpy (docs/NUMERICS.md is their prose).

Every function here is the specification of a hardware unit: the golden model calls them, the
host computes the gateware's run-time tables (GELU knots, requantizer and softmax constants) with
them, and the testbenches compare against them. The formats, widths and fixed tables they use are
the contract's (:mod:`neofpga.contract.numerics`). Arrays are numpy integers; floating point
appears only in building constants and tables (fixed integers from then on) and in
:func:`exact_matmul`, whose float32 sums are exact by construction.
"""

import numpy as np

from ..contract.numerics import (CONSTANT_BITS, DIFF_MAX, DRAW_BITS, EXP2_FRAC_BITS, EXP2_TABLE, GELU_SEGMENT_BITS,
                                 MAX_SHIFT, MULTIPLIER_BITS, NORM_FRAC_BITS, PROB_BITS, RECIPROCAL_BITS, RESIDUAL,
                                 SAMPLE_CANDIDATES, SEED_ZERO_STATE, TOP_P_BITS, XORSHIFT_SHIFTS)

__all__ = [
    "round_shift", "saturate", "quantize", "multiplier_and_shift", "requantize", "exact_matmul",
    "bit_length", "reciprocal", "isqrt",
    "softmax_parameters", "exp2_weights", "integer_softmax", "gelu_knots", "integer_gelu",
    "embedding", "residual_add", "integer_layer_norm", "argmax",
    "xorshift32", "first_state", "sampling_parameters", "integer_sample",
]

_EXP2_TABLE = np.array(EXP2_TABLE, dtype=np.int64)


def round_shift(value, shift):
    """``value / 2**shift`` rounded to the nearest integer, ties to even (int64 in, int64 out).

    ``shift`` may be an array (one per column). This is the rounding of every requantizer.
    """
    value = np.asarray(value, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    floor = value >> shift
    remainder = value - (floor << shift)
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 1)  # shift 0: no remainder
    up = (remainder > half) | ((remainder == half) & (shift > 0) & ((floor & 1) == 1))
    return floor + up


def saturate(value, low, high):
    """Clamp to ``[low, high]`` (scalars or per-column arrays)."""
    return np.minimum(np.maximum(value, low), high)


def quantize(x, scale, limits):
    """Float ``x`` to integers at ``scale``: round half to even (``np.rint``), then saturate (int64)."""
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale)).astype(np.int64)
    return saturate(q, *limits)


# -- the requantizer -----------------------------------------------------------------------------

def multiplier_and_shift(factor):
    """Integer ``M`` in [2**15, 2**16) and ``shift`` with ``M / 2**shift`` closest to ``factor`` (> 0).

    Vectorised over an array of factors (one per output column).
    """
    factor = np.asarray(factor, dtype=np.float64)
    if np.any(factor <= 0) or np.any(factor >= 2.0 ** MULTIPLIER_BITS):
        raise ValueError(f"requantizer factors must lie in (0, 2**16), got {factor.min()}..{factor.max()}")
    shift = (MULTIPLIER_BITS - 1) - np.floor(np.log2(factor)).astype(np.int64)
    multiplier = np.rint(factor * np.exp2(shift.astype(np.float64))).astype(np.int64)
    overflow = multiplier >= 2 ** MULTIPLIER_BITS  # rounding carried into the next power of two
    multiplier = np.where(overflow, multiplier >> 1, multiplier)
    shift = np.where(overflow, shift - 1, shift)
    if np.any(shift > MAX_SHIFT) or np.any(shift < 0):
        raise ValueError(f"requantizer factor out of range: shifts {shift.min()}..{shift.max()}")
    return multiplier.astype(np.int64), shift.astype(np.int64)


def requantize(acc, bias, multiplier, shift, low, high):
    """The requantizer: ``saturate(round_half_even((acc + bias) * M / 2**shift), low, high)``.

    ``acc`` is the int32 accumulator [..., N]; ``bias`` (int32), ``multiplier``, ``shift`` and the
    limits are per column [N] (or scalars). ``acc + bias`` is a 33-bit sum, its product with M at
    most 49 bits.
    """
    total = np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    return saturate(round_shift(total * np.asarray(multiplier, dtype=np.int64), shift), low, high)


def exact_matmul(x, w_f32):
    """``x @ w.T`` for 16-bit signed ``x`` [..., K] and int8-valued float32 ``w`` [N, K], exactly (int64).

    ``x`` splits into balanced bytes, x = 256 hi + lo with hi in [-128, 128] and lo in
    [-128, 127]; each product with an int8 weight is at most 2**14 in magnitude, so float32 sums
    of up to 1024 of them are exact. A single row (decode) takes two matrix-vector products, which
    BLAS runs much faster than one two-row product; more rows go through one product.
    """
    x = np.asarray(x, dtype=np.int64)
    rows = x.reshape(-1, x.shape[-1])
    lo = ((rows + 128) & 255) - 128
    halves = np.concatenate([(rows - lo) >> 8, lo]).astype(np.float32)  # [2 rows, K]
    total = None
    for start in range(0, x.shape[-1], 1024):
        w = w_f32[:, start:start + 1024]
        h = halves[:, start:start + 1024]
        part = np.stack([w @ h[0], w @ h[1]]) if len(rows) == 1 else h @ w.T
        part = part.astype(np.int64)
        total = part if total is None else total + part
    return (total[:len(rows)] * 256 + total[len(rows):]).reshape(*x.shape[:-1], -1)


# -- the reciprocal and the square root ------------------------------------------------------------

def bit_length(value):
    """The bit length of each non-negative integer below 2**53 (0 for 0), like ``int.bit_length``."""
    value = np.asarray(value, dtype=np.int64)
    return np.frexp(value.astype(np.float64))[1].astype(np.int64)  # exact: the float holds the integer


def reciprocal(value):
    """The reciprocal unit: ``(k, 2**(k + 15) // v)`` with k the bit length of ``v`` (> 0).

    The quotient lies in [2**15, 2**16]: 16 significant bits, one 18 x 18 multiplier to apply.
    """
    value = np.asarray(value, dtype=np.int64)
    k = bit_length(value)
    return k, (np.int64(1) << (k + RECIPROCAL_BITS)) // np.maximum(value, 1)


def isqrt(value):
    """``floor(sqrt(v))`` exactly, for non-negative integers below 2**52 (the LayerNorm unit's root).

    The device computes it digit by digit (or by Newton's iteration, as I-BERT does); any method
    gives the same integer, which float64's square root comes within one of and is corrected to.
    """
    value = np.asarray(value, dtype=np.int64)
    root = np.floor(np.sqrt(value.astype(np.float64))).astype(np.int64)
    root = np.where(root * root > value, root - 1, root)
    return np.where((root + 1) * (root + 1) <= value, root + 1, root)


# -- integer softmax -----------------------------------------------------------------------------

def softmax_parameters(score_scale):
    """``(pre, C, shift)`` for scores whose one unit is worth ``score_scale`` (s_q * s_k).

    ``pre`` right-shifts the score differences so that DIFF_MAX of them reach 2**-16 (an exp of
    0): saturating at DIFF_MAX then never changes a result. ``C / 2**shift`` is
    ``score_scale * 2**pre * log2(e) * 2**EXP2_FRAC_BITS``, with C in [2**16, 2**17).
    """
    unit = float(score_scale) * np.log2(np.e)  # base-2 exponent of one score unit
    pre = max(0, int(np.ceil(np.log2(16.0 / (unit * DIFF_MAX)))))
    factor = unit * 2.0 ** pre * 2 ** EXP2_FRAC_BITS
    shift = (CONSTANT_BITS - 1) - int(np.floor(np.log2(factor)))
    constant = int(np.rint(factor * 2.0 ** shift))
    if constant >= 2 ** CONSTANT_BITS:
        constant, shift = constant >> 1, shift - 1
    if shift < 0:
        raise ValueError(f"score scale {score_scale} is too coarse for the softmax unit")
    return pre, constant, shift


def exp2_weights(diff, constant, shift):
    """``2**(-t / 256)`` in units of 2**-15 for the exponent ``t = (diff * C + 2**(shift-1)) >> shift``.

    ``e = (EXP2_TABLE[t & 255] + 2**(n-1)) >> n`` with ``n = t >> 8``, and 0 once n >= 16: the
    exponent unit that softmax and sampling share (``diff`` >= 0, already shifted and saturated).
    """
    t = (np.asarray(diff, dtype=np.int64) * constant + ((np.int64(1) << shift) >> 1)) >> shift
    whole = np.minimum(t >> EXP2_FRAC_BITS, 16)
    frac = t & (2 ** EXP2_FRAC_BITS - 1)
    return np.where(whole < 16, (_EXP2_TABLE[frac] + ((np.int64(1) << whole) >> 1)) >> whole, 0)


def integer_softmax(scores, visible, pre, constant, shift):
    """Row-wise softmax of integer scores over the ``visible`` entries, as the softmax unit computes it.

    ``scores`` int [..., T] (the int32 accumulators of Q K^T); ``visible`` bool, same shape. Per row:

    1. ``d = min((max - s) >> pre, DIFF_MAX)`` over visible entries (max over visible only);
    2. ``t = (d * C + 2**(shift-1)) >> shift``: the base-2 exponent with 8 fraction bits;
    3. ``e = (EXP2_TABLE[t & 255] + 2**(n-1)) >> n`` with ``n = t >> 8``, and 0 once n >= 16;
       masked entries have e = 0;
    4. ``sum = sum(e)``, ``k`` its bit length, ``r = 2**(k + 15) // sum`` (17 bits);
    5. ``p = min((e * r + 2**(k-1)) >> k, 2**15 - 1)``.

    A row with nothing visible gives zeros. Returns int64 probabilities with 2**15 = 1.0.
    """
    scores = np.asarray(scores, dtype=np.int64)
    visible = np.asarray(visible, dtype=bool)
    low = np.iinfo(np.int64).min
    row_max = np.where(visible, scores, low).max(axis=-1, keepdims=True)
    diff = np.minimum(np.where(visible, (row_max - scores) >> pre, DIFF_MAX), DIFF_MAX)
    e = np.where(visible, exp2_weights(diff, constant, shift), 0)
    total = e.sum(axis=-1, keepdims=True)
    bits, inverse = reciprocal(total)
    inverse = np.where(total > 0, inverse, 0)
    rounding = (np.int64(1) << bits) >> 1
    return np.minimum((e * inverse + rounding) >> bits, 2 ** PROB_BITS - 1)


# -- GELU ------------------------------------------------------------------------------------------

def gelu_knots(in_scale, out_scale):
    """The GELU unit's table: gelu_new at the 257 segment ends of the int16 input, in output units.

    Knot j sits at input code ``j * 256 - 32768``; its value is ``round(gelu_new(code * in_scale)
    / out_scale)`` (ties to even).
    """
    codes = np.arange(2 ** GELU_SEGMENT_BITS + 1, dtype=np.float64) * 2 ** (16 - GELU_SEGMENT_BITS) - 2 ** 15
    x = codes * in_scale
    y = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
    return np.rint(y / out_scale).astype(np.int64)


def integer_gelu(x, knots, low, high):
    """The GELU unit: linear interpolation between knots, rounded (half up), saturated.

    ``u = x + 32768`` (0..65535), segment ``i = u >> 8``, fraction ``f = u & 255``;
    ``y = knots[i] + (((knots[i+1] - knots[i]) * f + 128) >> 8)``.
    """
    u = np.asarray(x, dtype=np.int64) + 2 ** 15
    i, f = u >> (16 - GELU_SEGMENT_BITS), u & (2 ** (16 - GELU_SEGMENT_BITS) - 1)
    step = knots[i + 1] - knots[i]
    y = knots[i] + ((step * f + 2 ** (15 - GELU_SEGMENT_BITS)) >> (16 - GELU_SEGMENT_BITS))
    return saturate(y, low, high)


# -- the embedding, the residual stream and LayerNorm ----------------------------------------------

def embedding(rows, multiplier, shift):
    """int8 embedding ``rows`` [..., D] in the residual's units: each row requantized by its own
    ``M / 2**shift`` ([...], the row's weight scale over the residual's), rounded half to even and
    saturated to the residual's limits."""
    multiplier = np.asarray(multiplier, dtype=np.int64)[..., None]
    shift = np.asarray(shift, dtype=np.int64)[..., None]
    return requantize(rows, 0, multiplier, shift, *RESIDUAL)


def residual_add(residual, update):
    """The residual stream plus a block's output (both in the residual's units), saturated."""
    return saturate(np.asarray(residual, dtype=np.int64) + update, *RESIDUAL)


def integer_layer_norm(x, gain, bias, multiplier, shift, low, high, mean_multiplier, mean_shift, epsilon):
    """The LayerNorm unit on residual rows ``x`` [..., D] (int16), per row:

    1. ``mean = round_half_even(sum(x) * mean_M / 2**mean_shift)`` (``mean_M / 2**mean_shift`` ~ 1/D);
    2. ``c = x - mean``; ``power = sum(c**2) + epsilon`` (epsilon ~ D eps / s_res**2, at least 1);
    3. ``sigma = isqrt(power)`` (= sqrt(D) times the standard deviation), ``(k, r) = reciprocal(sigma)``;
    4. ``n = round_half_even(c * r / 2**k)``: c / sigma with 15 fraction bits, |n| <= 2**15;
    5. the requantizer on ``n * gain[col]`` with the LayerNorm's per-column bias, M, shift, limits.
    """
    x = np.asarray(x, dtype=np.int64)
    mean = round_shift(x.sum(axis=-1, keepdims=True) * np.int64(mean_multiplier), mean_shift)
    centred = x - mean
    sigma = isqrt((centred * centred).sum(axis=-1, keepdims=True) + np.int64(epsilon))
    bits, inverse = reciprocal(sigma)
    normalised = round_shift(centred * inverse, bits + RECIPROCAL_BITS - NORM_FRAC_BITS)
    return requantize(normalised * np.asarray(gain, dtype=np.int64), bias, multiplier, shift, low, high)


def argmax(codes):
    """The largest code's index along the last axis; the lowest index among equal ones."""
    return np.argmax(np.asarray(codes), axis=-1)


# -- sampling ------------------------------------------------------------------------------------------

_MASK32 = 2 ** 32 - 1


def xorshift32(state):
    """The PRNG's next 32-bit state (Marsaglia's xorshift32)."""
    a, b, c = XORSHIFT_SHIFTS
    state ^= (state << a) & _MASK32
    state ^= state >> b
    state ^= (state << c) & _MASK32
    return state


def first_state(seed):
    """The PRNG's state for a seed in [0, 2**32): the seed itself, and SEED_ZERO_STATE for 0."""
    return int(seed) or SEED_ZERO_STATE


def sampling_parameters(logit_scale, temperature, top_k=None, top_p=None):
    """``(pre, C, shift, k, P)``: the sampler's exponent constants for logits of one unit
    ``logit_scale`` at ``temperature`` (> 0), the number of candidates and top-p as a 16-bit fraction."""
    pre, constant, shift = softmax_parameters(float(logit_scale) / float(temperature))
    pre = min(pre, 16)  # int16 codes are less than 2**16 apart: every larger shift gives the same 0
    k = min(top_k or SAMPLE_CANDIDATES, SAMPLE_CANDIDATES)
    p = 2 ** TOP_P_BITS if top_p is None else min(max(int(np.rint(top_p * 2 ** TOP_P_BITS)), 1), 2 ** TOP_P_BITS)
    return pre, constant, shift, k, p


def integer_sample(codes, pre, constant, shift, k, p, state):
    """The sampler on one row of int16 logit ``codes``; returns ``(id, next state)``.

    1. candidates: the ``k`` largest codes, largest first, the lower id first among equal ones;
    2. ``e = exp2_weights(min((top - code) >> pre, DIFF_MAX))``: the top candidate weighs 2**15;
    3. top-p: keep the shortest prefix whose running sum ``s`` has ``s * 2**16 >= P * total``;
    4. one draw: ``state = xorshift32(state)``, ``u = ((state >> 16) * kept) >> 16`` with ``kept``
       the prefix's sum; the first candidate whose running sum exceeds u is the token.
    """
    codes = np.asarray(codes, dtype=np.int64)
    order = np.argsort(-codes, kind="stable")[:k]
    diff = np.minimum((codes[order[0]] - codes[order]) >> pre, DIFF_MAX)
    running = np.cumsum(exp2_weights(diff, constant, shift))
    keep = int(np.argmax(running * 2 ** TOP_P_BITS >= p * running[-1]))
    state = xorshift32(state)
    draw = ((state >> (32 - DRAW_BITS)) * int(running[keep])) >> DRAW_BITS
    return int(order[int(np.argmax(running > draw))]), state
