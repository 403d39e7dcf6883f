"""Every integer operation of the device side against hand-worked values and its float counterpart."""

import numpy as np
import pytest
import math

from neofpga.contract.numerics import (DIFF_MAX, EXP2_FRAC_BITS, EXP2_TABLE, INT8, INT16, NORM_FRAC_BITS, PROB_BITS,
                                       RESIDUAL, SAMPLE_CANDIDATES, SEED_ZERO_STATE, activation_limits)
from neofpga.host.kernels import (argmax, bit_length, embedding, exact_matmul, first_state, gelu_knots, integer_gelu,
                                  integer_layer_norm, integer_sample, integer_softmax, isqrt, multiplier_and_shift,
                                  quantize, reciprocal, requantize, residual_add, round_shift, sampling_parameters,
                                  softmax_parameters, xorshift32)
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


# -- the reciprocal, the square root, the embedding and the residual ---------------------------------

def test_isqrt_is_exact_at_squares_and_between_them():
    roots = np.concatenate([np.arange(0, 5000), RNG.integers(0, 2 ** 26, 20000), [2 ** 26 - 1]])
    values = np.concatenate([roots * roots, roots * roots - 1, roots * roots + 2 * roots])  # n**2, n**2-1, (n+1)**2-1
    values = np.maximum(values, 0)
    assert isqrt(values).tolist() == [math.isqrt(int(v)) for v in values]
    big = RNG.integers(0, 2 ** 51, 20000)
    assert isqrt(big).tolist() == [math.isqrt(int(v)) for v in big]


def test_reciprocal_has_16_significant_bits():
    values = np.concatenate([np.arange(1, 5000), RNG.integers(1, 2 ** 45, 20000), 2 ** np.arange(46)])
    k, r = reciprocal(values)
    assert k.tolist() == [int(v).bit_length() for v in values] == bit_length(values).tolist()
    assert r.tolist() == [(1 << (int(v).bit_length() + 15)) // int(v) for v in values]
    assert (r >= 2 ** 15).all() and (r <= 2 ** 16).all() and (r[values == 2 ** (k - 1)] == 2 ** 16).all()


def test_embedding_requantizes_each_row_and_saturates():
    rows = RNG.integers(-128, 128, (5, 40))
    rows[0, :2] = [-128, 127]
    factors = np.array([0.5, 3.0, 1e-3, 300.0, 1.25])
    multiplier, shift = multiplier_and_shift(factors)
    got = embedding(rows, multiplier, shift)
    expected = np.clip(np.rint(rows * (multiplier / np.exp2(shift))[:, None]), *RESIDUAL)
    assert np.array_equal(got, expected)
    assert got[3].max() == RESIDUAL[1] or np.abs(rows[3]).max() * 300 < RESIDUAL[1]
    assert residual_add([32000, -32000, 5], [1000, -1000, -7]).tolist() == [32767, -32768, -2]


# -- LayerNorm -----------------------------------------------------------------------------------------

def _layer_norm_case(d, amplitude, s_res, eps, rows=60):
    """Residual rows, 16-bit gains and biases as the quantizer makes them, and the float LayerNorm
    of the same integers (with the epsilon the device uses)."""
    x = RNG.normal(0, amplitude, (rows, d)) * RNG.uniform(0.1, 1, (rows, 1)) + RNG.normal(0, amplitude, (rows, 1))
    x = np.clip(np.rint(x), *INT16).astype(np.int64)
    x[0], x[1], x[2, ::2], x[2, 1::2], x[3] = 32767, -32768, 32767, -32768, 0  # the edges: flat rows, extremes
    x[3, 0] = 32767
    gamma, beta = RNG.uniform(-2, 2, d), RNG.uniform(-1, 1, d)
    gain_scale = np.abs(gamma).max() / 32767
    gain = np.rint(gamma / gain_scale)
    unit = gain_scale * np.sqrt(d) * 2.0 ** -NORM_FRAC_BITS
    bias = np.rint(beta / unit)
    epsilon = max(int(np.rint(d * eps / s_res ** 2)), 1)
    xf = x * s_res
    mean = xf.mean(-1, keepdims=True)
    std = np.sqrt(((xf - mean) ** 2).mean(-1, keepdims=True) + epsilon * s_res ** 2 / d)
    normalised = (xf - mean) / std
    reference = normalised * gain * gain_scale + bias * unit
    out_scale = np.abs(reference).max() / 32767
    multiplier, shift = multiplier_and_shift(np.full(d, unit / out_scale))
    got = integer_layer_norm(x, gain, bias, multiplier, shift, -32767, 32767, *multiplier_and_shift(1.0 / d), epsilon)
    return got, reference / out_scale, np.abs(gain * gain_scale) / out_scale, normalised, np.abs(mean) / s_res, std / s_res


@pytest.mark.parametrize("d", [7, 40, 64, 768, 2048])
@pytest.mark.parametrize("s_res, eps", [(1e-3, 1e-5), (1e-2, 1e-5), (1e-4, 1e-5), (1e-3, 0.0)])
def test_layer_norm_error_bound(d, s_res, eps):
    """docs/NUMERICS.md's bound, against float64 LayerNorm of the same integers, over rows whose
    standard deviation runs from one residual unit to the whole 16-bit range."""
    for amplitude in (1, 3, 30, 300, 3000, 30000):
        got, expected, gain, n, mean, std = _layer_norm_case(d, amplitude, s_res, eps)
        delta = 0.5 + mean * 2.0 ** -16  # the rounded mean's error
        rho = 2.0 ** -14 + 1 / (np.sqrt(d) * std) + delta ** 2 / (2 * std ** 2)
        bound = 1 + gain * ((delta / std + np.abs(n)) * (1 + rho) - np.abs(n) + np.sqrt(d) * 2.0 ** -16)
        assert (np.abs(got - expected) <= bound).all()


def test_layer_norm_hand_worked():
    """D = 4, x = [1, 2, 3, 6]: mean 3, c = [-2, -1, 0, 3], sum c**2 = 14 (+ epsilon 2) = 16, sigma
    4, reciprocal (k = 3) 2**18 // 4 = 65536, n = c * 65536 / 8 = c * 8192 (c / sigma with 15
    fraction bits); gains 1, 2, 3, -1; bias 5 on column 0; M / 2**shift = 1/8."""
    got = integer_layer_norm([[1, 2, 3, 6]], [1, 2, 3, -1], [5, 0, 0, 0], 2 ** 15, 18, -32767, 32767,
                             *multiplier_and_shift(0.25), 2)
    # (n * g + b) / 8: (-16384 + 5) / 8 = -2047.375 -> -2047; -16384 / 8; 0; -24576 / 8
    assert got.tolist() == [[-2047, -2048, 0, -3072]]


# -- argmax and sampling -------------------------------------------------------------------------------

def test_argmax_takes_the_lowest_index_of_equal_codes():
    assert argmax([[3, 9, 9, -1], [-5, -5, -5, -5]]).tolist() == [1, 0]


def test_xorshift32_known_values():
    assert xorshift32(1) == 270369  # Marsaglia's xorshift32 from 1
    assert xorshift32(0) == 0 and first_state(0) == SEED_ZERO_STATE and first_state(7) == 7
    state, seen = first_state(0), set()
    for _ in range(10000):
        state = xorshift32(state)
        assert 0 < state < 2 ** 32
        seen.add(state)
    assert len(seen) == 10000


CODES = np.array([-200, 3000, 2000, 1500, 500, -32768, 3000, 32767 - 32767])


def _draws(parameters, codes=CODES, n=4000, seed=1):
    state, tokens = first_state(seed), []
    for _ in range(n):
        token, state = integer_sample(codes, *parameters, state)
        tokens.append(token)
    return np.bincount(tokens, minlength=len(codes)) / n


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampling_follows_the_softmax_of_the_codes(temperature):
    scale = 1e-3  # logits -0.2 .. 3.0
    expected = np.exp(CODES * scale / temperature)
    expected /= expected.sum()
    got = _draws(sampling_parameters(scale, temperature))
    assert np.abs(got - expected).max() < 0.03


def test_sampling_top_k_top_p_and_ties():
    scale = 1e-3
    # top-k 2: ids 1 and 6 (equal codes: the lower id first), each half
    got = _draws(sampling_parameters(scale, 1.0, top_k=2))
    assert set(np.nonzero(got)[0]) == {1, 6} and abs(got[1] - 0.5) < 0.03
    # top-k 1: the first of the equal codes, always (and the draw still advances the state)
    assert _draws(sampling_parameters(scale, 1.0, top_k=1), n=50).tolist()[1] == 1.0
    # top-p just under the top two's share keeps exactly them
    p = np.exp(CODES * scale)
    two = np.sort(p)[::-1][:2].sum() / p.sum()
    assert set(np.nonzero(_draws(sampling_parameters(scale, 1.0, top_p=two - 0.01)))[0]) == {1, 6}
    assert set(np.nonzero(_draws(sampling_parameters(scale, 1.0, top_p=1e-6)))[0]) == {1}
    assert sampling_parameters(scale, 1.0)[3:] == (SAMPLE_CANDIDATES, 2 ** 16)
    assert sampling_parameters(scale, 1.0, top_k=10 ** 6)[3] == SAMPLE_CANDIDATES


def test_sampling_is_reproducible_and_hand_worked():
    """Two candidates of equal weight (2**15 each, total 2**16): the draw u = ((state >> 16) *
    2**16) >> 16 is the state's top half, so the second candidate exactly when it is >= 2**15."""
    codes = np.array([7, 7, -32768])
    parameters = sampling_parameters(1e-3, 1.0, top_k=2)
    state = first_state(12345)
    for _ in range(20):
        token, next_state = integer_sample(codes, *parameters, state)
        assert next_state == xorshift32(state) and token == int((next_state >> 16) >= 2 ** 15)
        state = next_state
    assert np.array_equal(_draws(parameters, seed=3), _draws(parameters, seed=3))
    assert not np.array_equal(_draws(sampling_parameters(1e-3, 1.0), seed=3), _draws(sampling_parameters(1e-3, 1.0), seed=4))
