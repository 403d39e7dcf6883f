"""The numeric formats and tables the gateware and the host share (docs/NUMERICS.md is the prose).

Plain Python: widths, limits and the exp2 table, each defined once here. The integer kernels that
compute with them, bit for bit as the device does, are :mod:`neofpga.host.kernels`; the gateware
sizes its units and fills its tables from these names.
"""

__all__ = [
    "NUMERICS_VERSION", "INT8", "INT16", "ACCUMULATOR_BUDGET", "activation_limits",
    "MULTIPLIER_BITS", "MAX_SHIFT",
    "EXP2_FRAC_BITS", "EXP2_ONE", "EXP2_TABLE", "DIFF_MAX", "CONSTANT_BITS", "PROB_BITS",
    "GELU_SEGMENT_BITS", "GELU_KNOTS", "GELU_KNOT_BITS",
    "RESIDUAL", "NORM_FRAC_BITS", "NORM_EPSILON_MAX", "RECIPROCAL_BITS", "GAIN", "BIAS_LIMIT",
    "SAMPLE_CANDIDATES", "TOP_P_BITS", "DRAW_BITS", "XORSHIFT_SHIFTS", "SEED_ZERO_STATE",
]

NUMERICS_VERSION = 3
"""INFO reports it; the host refuses a device that computes another version."""

INT8 = (-128, 127)
INT16 = (-32768, 32767)
ACCUMULATOR_BUDGET = 2 ** 30  # |sum of products| stays below this; the bias gets the other 2**30


def activation_limits(k):
    """Saturation limits of an activation that enters a matmul with reduction length ``k``.

    Activations are 16-bit, narrowed where ``k`` is long so that ``k * 128 * limit`` stays within
    2**30 and the int32 accumulator (with a bias below 2**30) can never overflow.
    """
    limit = min(INT16[1], ACCUMULATOR_BUDGET // (128 * int(k)))
    return (-limit, limit)


# -- the requantizer -----------------------------------------------------------------------------

MULTIPLIER_BITS = 16  # M in [2**15, 2**16): two 18x18 multipliers take a 33-bit sum
MAX_SHIFT = 48        # the product's width

# -- integer softmax -----------------------------------------------------------------------------

EXP2_FRAC_BITS = 8       # the exponent's fraction indexes a 256-entry table of 2**-f
EXP2_ONE = 2 ** 15       # exp values are unsigned 16-bit with 2**15 = 1.0
DIFF_MAX = 2 ** 17 - 1   # (row max - score) >> pre saturates to 17 bits before the multiplier
CONSTANT_BITS = 17       # the softmax constant C is in [2**16, 2**17)
PROB_BITS = 15           # probabilities into P x V: unsigned, 2**15 = 1.0, at most 2**15 - 1

EXP2_TABLE = tuple(round(EXP2_ONE * 2.0 ** (-f / 2 ** EXP2_FRAC_BITS)) for f in range(2 ** EXP2_FRAC_BITS))
"""``round(2**15 * 2**(-f / 256))`` for f in [0, 256), ties to even: unsigned, in (2**14, 2**15]."""

# -- GELU ------------------------------------------------------------------------------------------

GELU_SEGMENT_BITS = 8  # 256 linear segments over the int16 input range
GELU_KNOTS = 2 ** GELU_SEGMENT_BITS + 1
"""Knots of one GELU table (the segments' ends): table t is at GELU addresses GELU_KNOTS * t onwards."""
GELU_KNOT_BITS = 18
"""A knot's width in the GELU unit (signed): a DP16KD's word."""

# -- the residual stream and LayerNorm -------------------------------------------------------------

RESIDUAL = INT16
"""The residual stream's limits: 16-bit, one scale for the whole stream of a model."""
NORM_FRAC_BITS = 15
"""LayerNorm's normalised value ``c / sqrt(sum c**2)``, in [-1, 1], carries this many fraction bits."""
NORM_EPSILON_MAX = 2 ** 40
"""LayerNorm's epsilon in residual units squared times D, at most this (images clamp it here)."""
RECIPROCAL_BITS = 15
"""Reciprocals (softmax and LayerNorm) are ``2**(k + 15) // v`` for a v of bit length k: in [2**15, 2**16]."""
GAIN = (-32767, 32767)
"""LayerNorm gains (gamma) are 16-bit with one scale per LayerNorm."""
BIAS_LIMIT = 2 ** 30
"""Biases, LayerNorm's included, lie in [-2**30, 2**30], so that the accumulator plus the bias fits 32 bits."""

# -- sampling ----------------------------------------------------------------------------------------

SAMPLE_CANDIDATES = 64
"""Sampling draws from at most this many of the largest logits (top-k is capped here)."""
TOP_P_BITS = 16
"""top-p is a fraction with 16 bits: ``round(top_p * 2**16)``, in [1, 2**16]."""
DRAW_BITS = 16
"""A draw uses the top 16 bits of the PRNG's 32-bit state."""
XORSHIFT_SHIFTS = (13, 17, 5)
"""The PRNG: Marsaglia's xorshift32, ``x ^= x << 13; x ^= x >> 17; x ^= x << 5`` (mod 2**32)."""
SEED_ZERO_STATE = 0x9E3779B9
"""The PRNG's first state for seed 0 (xorshift never leaves 0); any other seed is its own state."""
