"""Every integer operation of the device side against hand-worked values and its float counterpart."""

import numpy as np
import pytest
from neofpga.contract.numerics import DIFF_MAX, EXP2_FRAC_BITS, EXP2_TABLE, INT8, INT16, PROB_BITS, activation_limits
from neofpga.host.kernels import (exact_matmul, gelu_knots, integer_gelu, integer_softmax, multiplier_and_shift,
                                  quantize, requantize, round_shift, softmax_parameters)
from neofpga.host.reference import gelu_new, softmax

RNG = np.random.default_rng(0)

# -- rounding and the requantizer ----------------------------------------------------------------


def test_round_shift_ties_go_to_even():
    values = [5, 7, -5, -7, 6, 10, -6, -10, 11, -11, 3, -3, 1, -1]
    shifts = [1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1]
    # 2.5->2 3.5->4 -2.5->-2 -3.5->-4 1.5->2 2.5->2 -1.5->-2 -2.5->-2 2.75->3 -2.75->-3 1.5->2 -1.5->-2
    # 0.5->0 -0.5->0
    assert round_shift(values, shifts).tolist() == [2, 4, -2, -4, 2, 2, -2, -2, 3, -3, 2, -2, 0, 0]
    assert round_shift([5, -5, 0], 0).tolist() == [5, -5, 0]


def test_round_shift_equals_float_rint():
    values = RNG.integers(-2 ** 46, 2 ** 46, 20000)
    shifts = RNG.integers(0, 40, 20000)
    expected = np.rint(values / np.exp2(shifts))  # exact in float64 at these magnitudes
    assert np.array_equal(round_shift(values, shifts), expected.astype(np.int64))


@pytest.mark.parametrize("limits", [INT8, INT16])
def test_requantize_equals_float_reference_and_saturates(limits):
    acc = RNG.integers(-2 ** 31, 2 ** 31, (64, 48))
    acc[0, :] = np.iinfo(np.int32).max
    acc[1, :] = np.iinfo(np.int32).min
    bias = RNG.integers(-2 ** 20, 2 ** 20, 48)
    multiplier, shift = multiplier_and_shift(np.exp(RNG.uniform(np.log(1e-9), np.log(0.5), 48)))
    got = requantize(acc, bias, multiplier, shift, *limits)
    # (acc + bias) * M < 2**48 is exact in float64; rint rounds ties to even
    expected = np.clip(np.rint((acc + bias).astype(np.float64) * multiplier / np.exp2(shift)), *limits)
    assert np.array_equal(got, expected.astype(np.int64))
    assert got.min() == limits[0] and got.max() == limits[1]  # both ends reached


def test_requantize_hand_worked():
    # factor 3/8: M = 49152 (3 * 2**14), shift 17
    m, s = multiplier_and_shift(0.375)
    assert (m, s) == (49152, 17)
    acc = np.array([4, 12, 20, -4, -12, 1000, -1000, 0])  # 1.5->2, 4.5->4, 7.5->8, -1.5->-2, -4.5->-4, sat
    assert requantize(acc, 0, m, s, *INT8).tolist() == [2, 4, 8, -2, -4, 127, -128, 0]
    assert requantize(np.array([4]), 8, m, s, *INT8).tolist() == [4]  # (4 + 8) * 3/8 = 4.5 -> 4
    # per-column limits (the fused q/k/v projection saturates q and k, v differently)
    got = requantize(np.array([[1000, 1000]]), 0, m, s, np.array([-300, -128]), np.array([300, 127]))
    assert got.tolist() == [[300, 127]]


def test_multiplier_and_shift_are_precise():
    factors = np.exp(RNG.uniform(np.log(1e-9), np.log(60000.0), 5000))  # shifts 0..47
    m, s = multiplier_and_shift(factors)
    assert np.all((m >= 2 ** 15) & (m < 2 ** 16))
    assert np.all(np.abs(m / np.exp2(s) / factors - 1) <= 2.0 ** -16)
    # a factor that rounds up into the next power of two
    m, s = multiplier_and_shift(0.125 * (1 - 1e-9))
    assert (m, s) == (2 ** 15, 18)
    with pytest.raises(ValueError):
        multiplier_and_shift(0.0)


def test_quantize_rounds_half_to_even_and_saturates():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 200.0, -200.0, 127.4, -128.4])
    assert quantize(x, 1.0, INT8).tolist() == [0, 2, 2, 0, -2, 127, -128, 127, -128]
    assert quantize(np.array([1e6, -1e6]), 1.0, INT16).tolist() == [32767, -32768]


def test_activation_limits_keep_the_accumulator_inside_int32():
    assert activation_limits(64) == (-32767, 32767)
    assert activation_limits(3072) == (-2730, 2730)
    for k in (1, 64, 224, 256, 768, 3072, 8192):
        low, high = activation_limits(k)
        assert low == -high and k * 128 * high <= 2 ** 30 and (high == 32767 or k * 128 * (high + 1) > 2 ** 30)


# -- exact int8 matmul ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 7, 1024, 1025, 3072])
def test_exact_matmul_is_exact_at_the_extremes(k):
    x = np.full((4, k), -32768, dtype=np.int64)
    x[1] = 32767
    x[2] = RNG.integers(-32768, 32768, k)
    x[3] = RNG.integers(-128, 128, k)
    w = np.full((5, k), -128, dtype=np.int8)
    w[1] = 127
    w[2:] = RNG.integers(-128, 128, (3, k))
    expected = x @ w.astype(np.int64).T
    assert np.array_equal(exact_matmul(x, w.astype(np.float32)), expected)
    assert expected[0, 0] == k * 2 ** 22  # -32768 x -128 summed
    for row in range(4):  # one row (decode) takes its own path
        assert np.array_equal(exact_matmul(x[row], w.astype(np.float32)), expected[row])


# -- integer softmax -----------------------------------------------------------------------------

def softmax_reference(scores, visible, score_scale):
    x = np.where(visible, scores * score_scale, -np.inf)
    return np.where(visible, softmax(x.astype(np.float64)), 0)


def test_exp2_table():
    assert len(EXP2_TABLE) == 2 ** EXP2_FRAC_BITS and EXP2_TABLE[0] == 2 ** 15
    assert np.all(np.diff(EXP2_TABLE) <= 0) and EXP2_TABLE[-1] > 2 ** 14


def test_softmax_parameters_make_saturation_harmless():
    for scale in (1e-7, 1e-5, 1e-3, 0.1, 3.0):
        pre, constant, shift = softmax_parameters(scale)
        assert 2 ** 16 <= constant < 2 ** 17 and shift >= 0 and pre >= 0
        # DIFF_MAX shifted-out units reach an exponent of 2**-16 or smaller: e is 0 there anyway
        assert (DIFF_MAX * constant) >> shift >= 16 * 2 ** EXP2_FRAC_BITS
        # and one unit after the pre-shift is a small step of the exponent (here < 2**-5 of a halving)
        assert constant / 2 ** shift <= 2 ** (EXP2_FRAC_BITS - 5) or pre == 0


def test_softmax_all_equal_row_hand_worked():
    params = softmax_parameters(0.01)
    for n in (1, 2, 3, 7, 256, 2048):
        p = integer_softmax(np.full((1, n), 1234), np.ones((1, n), bool), *params)
        # e = 2**15 each; sum = n * 2**15 with bit length k; r = 2**(k + 15) // sum;
        # p = (2**15 * r + 2**(k - 1)) >> k
        k = int(n * 2 ** 15).bit_length()
        expected = min((2 ** 15 * (2 ** (k + 15) // (n * 2 ** 15)) + 2 ** (k - 1)) >> k, 2 ** 15 - 1)
        assert p.tolist() == [[expected] * n]
    assert integer_softmax(np.full((1, 3), 5), np.ones((1, 3), bool), *params).tolist() == [[10923] * 3]


def test_softmax_hand_worked_row():
    # scale chosen so that one score unit is exactly half a halving: C / 2**shift = 128
    pre, constant, shift = softmax_parameters(0.5 / np.log2(np.e))
    assert pre == 0 and constant / 2 ** shift == 128
    p = integer_softmax(np.array([[4, 2, 0]]), np.ones((1, 3), bool), pre, constant, shift)
    # d = 0, 2, 4 -> t = 0, 256, 512 -> e = 32768, 16384, 8192; sum 57344 (k = 16); r = 2**31 // 57344
    r = 2 ** 31 // 57344
    assert p.tolist() == [[min((e * r + 2 ** 15) >> 16, 32767) for e in (32768, 16384, 8192)]]


def test_softmax_masks():
    params = softmax_parameters(0.05)
    scores = RNG.integers(-5000, 5000, (4, 9))
    visible = RNG.random((4, 9)) < 0.5
    visible[2] = False          # a fully masked row
    visible[3] = False
    visible[3, 4] = True        # a single visible entry
    p = integer_softmax(scores, visible, *params)
    assert np.all(p[~visible] == 0)
    assert np.all(p[2] == 0)
    assert p[3, 4] == 2 ** PROB_BITS - 1
    assert np.all(p.sum(-1) <= 2 ** PROB_BITS)


def test_softmax_with_huge_unscaled_scores():
    # GPT-Neo's unscaled scores: differences far beyond the exp range and past DIFF_MAX units
    params = softmax_parameters(0.001)
    scores = np.array([[10 ** 9, -10 ** 9, 10 ** 9 - 100, 0, 10 ** 9 - 1000]])
    p = integer_softmax(scores, np.ones_like(scores, bool), *params)
    expected = softmax_reference(scores, np.ones_like(scores, bool), 0.001)[0] * 2 ** 15
    assert p[0, 1] == p[0, 3] == 0
    assert np.allclose(p[0], expected, atol=8)


# The bound docs/NUMERICS.md states: |p - softmax| <= 2**-9 * softmax + 2**-15, for every entry.
RELATIVE, ABSOLUTE = 2.0 ** -9, 2.0 ** -15


@pytest.mark.parametrize("score_scale", [1e-6, 1e-4, 3e-3, 0.02, 0.3])
@pytest.mark.parametrize("length", [1, 5, 64, 256, 2048])
def test_softmax_error_bound(score_scale, length):
    spread = 30.0 / score_scale  # scores spanning 30 in real units: e**-30 is far below the 15 bits
    scores = RNG.integers(-spread, spread, (32, length))
    visible = np.tril(np.ones((32, length), bool), k=length - 32)
    visible[:, 0] = True
    p = integer_softmax(scores, visible, *softmax_parameters(score_scale)) / 2 ** PROB_BITS
    exact = softmax_reference(scores, visible, score_scale)
    assert np.all(np.abs(p - exact) <= RELATIVE * exact + ABSOLUTE)


# -- GELU ----------------------------------------------------------------------------------------

def gelu_bound(in_scale, out_scale):
    """docs/NUMERICS.md: knot rounding (1/2) + interpolation rounding (1/2) + the curvature of gelu_new
    over one segment (h**2 max|gelu''| / 8 with h = 256 in_scale and max|gelu''| < 0.8), in output units."""
    return 1.0 + (256 * in_scale) ** 2 * 0.8 / 8 / out_scale


@pytest.mark.parametrize("in_scale", [1e-5, 2e-4, 1e-3])
def test_gelu_error_bound_and_range_ends(in_scale):
    limits = activation_limits(224)
    out_scale = float(gelu_new(np.float64(32767 * in_scale))) / limits[1]
    knots = gelu_knots(in_scale, out_scale)
    x = np.concatenate([RNG.integers(-32768, 32768, 20000), [-32768, -32767, -1, 0, 1, 32766, 32767]])
    y = integer_gelu(x, knots, *limits)
    exact = gelu_new(x * in_scale) / out_scale
    assert np.all(np.abs(y - exact) <= gelu_bound(in_scale, out_scale))
    assert y[-1] <= limits[1] and y[-1] >= limits[1] - 2  # the top of the range, not saturated away
    assert integer_gelu(np.array([0]), knots, *limits)[0] == 0


def test_gelu_knots_hand_worked():
    knots = gelu_knots(1 / 256, 1 / 256)  # input code c is c/256; output in 1/256 units
    assert len(knots) == 257
    assert knots[128] == 0                # the knot at code 0
    assert knots[129] == np.rint(gelu_new(np.float64(1.0)) * 256)  # code 256 = 1.0
    # halfway between two knots the unit returns their rounded mean
    y = integer_gelu(np.array([128]), knots, -32768, 32767)
    assert y[0] == knots[128] + ((knots[129] - knots[128]) * 128 + 128 >> 8)


def test_gelu_saturates_at_the_limits():
    knots = np.arange(257) * 1000 - 128000  # a steep line: most of the range saturates
    y = integer_gelu(np.array([-32768, 32767, 0]), knots, -100, 100)
    assert y.tolist() == [-100, 100, 0]
