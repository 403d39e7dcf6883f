"""The quantizer: a float GPT-Neo checkpoint and calibration text to a :class:`QuantizedModel`.

Weights and embeddings become int8 with one scale per output channel (per row). Activations
become 16-bit integers with one scale per tensor, fixed from the largest magnitude seen on
calibration text (narrowed for long reductions, see numerics.activation_limits); the KV cache is
int8; the residual stream is int16 with one scale for the whole model, and the logits int16 with
twice the calibrated headroom. Requantizer multipliers, the LayerNorm constants, the softmax
parameters and the GELU knots follow from those scales (docs/NUMERICS.md).
"""

import numpy as np

from ..contract.numerics import (BIAS_LIMIT, GAIN, INT8, INT16, NORM_EPSILON_MAX, NORM_FRAC_BITS, PROB_BITS, RESIDUAL,
                                 activation_limits)
from .image import QuantizedModel
from .kernels import gelu_knots, multiplier_and_shift, softmax_parameters
from .reference import FloatOps, GPTNeo, gelu_new

__all__ = ["SITES", "RESIDUAL_SITES", "calibrate", "quantize_checkpoint", "dequantized_weights"]

# Activation sites of a block; "scores" is recorded for the report only.
SITES = ("attn_in", "q", "k", "v", "scores", "ctx", "attn_out", "mlp_in", "fc", "gelu", "mlp_out")
# values in the residual's units: the stream where it changes, and the block outputs added to it
RESIDUAL_SITES = ("embedding", "attn_residual", "residual", "attn_out", "mlp_out")
HOST_HEADROOM = 2.0           # the int16 logits keep this factor above the calibrated maximum
RESIDUAL_HEADROOM = 2.0       # and the residual stream this one (docs/NUMERICS.md: measured)
SCALE_MANTISSA_BITS = 10      # scales are rounded up to 10 significant bits: reproducible images
LAYER_NORMS = ("ln_1", "ln_2")  # per block; then ln_f


def calibrate(config, weights, token_ids):
    """Largest |value| at every activation site of the float model over ``token_ids``.

    The ids run through the model in consecutive windows of the full context. Returns
    ``{(site, layer): max_abs}`` (layer None for head_in and logits).
    """
    ops = FloatOps(config, weights)
    maxima = {}

    def observe(site, layer, array):
        key = (site, layer)
        maxima[key] = max(maxima.get(key, 0.0), float(np.abs(array).max()))

    ops.observe = observe
    model = GPTNeo(config, weights, ops)
    model.observe = observe
    context = config.max_position_embeddings
    for start in range(0, len(token_ids), context):
        window = np.asarray(token_ids[start:start + context])
        if len(window):
            model.reset(1)
            model.forward(window[None])
    return maxima


def _round_scale_up(value):
    """Round a positive scale up to SCALE_MANTISSA_BITS significant bits (float32)."""
    mantissa, exponent = np.frexp(np.float64(value))
    step = 2.0 ** SCALE_MANTISSA_BITS
    return np.float32(np.ceil(mantissa * step) / step * 2.0 ** exponent)


def _weight_int8(w):
    """Symmetric int8 per output row: scale = max|row| / 127 (an all-zero row gets scale 1)."""
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale


def _factors(factor):
    """Requantizer factors kept inside what the requantizer takes, in [2**-32, 2**16): a factor
    beyond them saturates (or rounds to 0) every value anyway."""
    return np.clip(np.asarray(factor, dtype=np.float64), 2.0 ** -32, 2.0 ** 16 - 1)


def _embedding(tensors, name, table, residual):
    """An int8 embedding table with its per-row requantizer to the residual's units."""
    table_q, row_scale = _weight_int8(table)
    multiplier, shift = multiplier_and_shift(_factors(row_scale.astype(np.float64) / residual))
    tensors.update({f"{name}.weight": table_q, f"{name}.weight_scale": row_scale,
                    f"{name}.multiplier": multiplier.astype(np.uint16), f"{name}.shift": shift.astype(np.uint8)})


def _layer_norm(tensors, scales, name, gamma, beta, out_scale, limits):
    """One LayerNorm's constants: 16-bit gains at one scale, and the requantizer of ``n * gain``
    (n = c / sqrt(sum c**2) with NORM_FRAC_BITS fraction bits) to ``out_scale``.

    The gains' scale is set by the largest gamma, or coarser where a beta would not fit the bias
    limit in units of ``n * gain`` (a beta far beyond every gamma)."""
    d = len(gamma)
    root = np.sqrt(d) * 2.0 ** -NORM_FRAC_BITS
    needed = max(float(np.abs(gamma).max()) / GAIN[1], float(np.abs(beta).max()) / (BIAS_LIMIT * root))
    gain_scale = scales[f"{name}.gain"] = _round_scale_up(needed) if needed > 0 else np.float32(1.0)
    unit = np.float64(gain_scale) * root  # one unit of n * gain
    multiplier, shift = multiplier_and_shift(_factors(np.full(d, unit / np.float64(out_scale))))
    tensors.update({f"{name}.gain": np.clip(np.rint(gamma / gain_scale), *GAIN).astype(np.int16),
                    f"{name}.bias": np.clip(np.rint(beta / unit), -BIAS_LIMIT, BIAS_LIMIT).astype(np.int32),
                    f"{name}.multiplier": multiplier.astype(np.uint16), f"{name}.shift": shift.astype(np.uint8),
                    f"{name}.limits": _limits(limits)})


def _limits(low_high, n=None):
    limits = np.array(low_high, dtype=np.int32)
    return limits if n is None else np.broadcast_to(limits, (n, 2)).copy()


def _linear(tensors, name, weight, bias, in_scale, out_scale, limits):
    """Quantize one matmul + bias + requantizer: weight, weight_scale, bias, multiplier, shift, limits."""
    w_q, w_scale = _weight_int8(weight)
    acc_scale = np.float64(in_scale) * w_scale.astype(np.float64)  # real value of one accumulator unit
    if bias is None:
        bias = np.zeros(len(w_q))
    bias_q = np.clip(np.rint(bias / acc_scale), -BIAS_LIMIT, BIAS_LIMIT).astype(np.int32)
    multiplier, shift = multiplier_and_shift(acc_scale / np.asarray(out_scale, dtype=np.float64))
    tensors.update({f"{name}.weight": w_q, f"{name}.weight_scale": w_scale, f"{name}.bias": bias_q,
                    f"{name}.multiplier": multiplier.astype(np.uint16), f"{name}.shift": shift.astype(np.uint8),
                    f"{name}.limits": np.asarray(limits, dtype=np.int32)})


def quantize_checkpoint(checkpoint, calibration_ids, source=""):
    """The :class:`QuantizedModel` of a float ``checkpoint`` calibrated on ``calibration_ids``."""
    c, w = checkpoint.config, checkpoint.weights
    d, f = c.hidden_size, c.intermediate_size
    maxima = calibrate(c, w, calibration_ids)
    scales, tensors = {}, {}

    def scale(site, layer, limits, headroom=1.0):
        """The scale of a site from its calibrated maximum."""
        name = f"h.{layer}.{site}" if layer is not None else site
        scales[name] = _round_scale_up(max(maxima[(site, layer)], 1e-8) * headroom / limits[1])
        return scales[name]

    peak = max(value for (site, _), value in maxima.items() if site in RESIDUAL_SITES)
    residual = scales["residual"] = _round_scale_up(max(peak, 1e-8) * RESIDUAL_HEADROOM / RESIDUAL[1])
    _embedding(tensors, "embedding", w["transformer.wte.weight"], residual)
    del tensors["embedding.weight"], tensors["embedding.weight_scale"]  # the head's int8 rows are the table
    _embedding(tensors, "wpe", w["transformer.wpe.weight"], residual)
    mean_multiplier, mean_shift = multiplier_and_shift(1.0 / d)
    epsilon = min(max(int(np.rint(d * c.layer_norm_epsilon / np.float64(residual) ** 2)), 1), NORM_EPSILON_MAX)
    tensors["layer_norm.statistics"] = np.array([mean_multiplier, mean_shift, epsilon], dtype=np.int64)

    for i in range(c.num_layers):
        h, a = f"transformer.h.{i}.", f"transformer.h.{i}.attn.attention."
        attn_in = scale("attn_in", i, activation_limits(d))
        _layer_norm(tensors, scales, f"h.{i}.ln_1", w[h + "ln_1.weight"], w[h + "ln_1.bias"], attn_in,
                    activation_limits(d))
        q = scale("q", i, activation_limits(c.head_dim))
        k, v = scale("k", i, INT8), scale("v", i, INT8)
        qkv = np.concatenate([w[a + p + "_proj.weight"] for p in "qkv"])
        qkv_limits = np.concatenate([_limits(activation_limits(c.head_dim), d), _limits(INT8, 2 * d)])
        _linear(tensors, f"h.{i}.qkv", qkv, None, attn_in, np.repeat([q, k, v], d), qkv_limits)
        tensors[f"h.{i}.softmax"] = np.array(softmax_parameters(np.float64(q) * np.float64(k)), dtype=np.int32)
        ctx = scale("ctx", i, activation_limits(d))
        multiplier, shift = multiplier_and_shift(np.full(d, np.float64(v) / 2 ** PROB_BITS / ctx))
        tensors.update({f"h.{i}.pv.bias": np.zeros(d, np.int32), f"h.{i}.pv.multiplier": multiplier.astype(np.uint16),
                        f"h.{i}.pv.shift": shift.astype(np.uint8), f"h.{i}.pv.limits": _limits(activation_limits(d))})
        _linear(tensors, f"h.{i}.out_proj", w[a + "out_proj.weight"], w[a + "out_proj.bias"], ctx, residual,
                _limits(RESIDUAL))
        mlp_in, fc = scale("mlp_in", i, activation_limits(d)), scale("fc", i, INT16)
        _layer_norm(tensors, scales, f"h.{i}.ln_2", w[h + "ln_2.weight"], w[h + "ln_2.bias"], mlp_in,
                    activation_limits(d))
        _linear(tensors, f"h.{i}.c_fc", w[h + "mlp.c_fc.weight"], w[h + "mlp.c_fc.bias"], mlp_in, fc,
                _limits(INT16))
        # the GELU output scale is set by the largest input code, so the unit never saturates
        gelu_limits = activation_limits(f)
        gelu = scales[f"h.{i}.gelu"] = _round_scale_up(float(gelu_new(np.float64(INT16[1] * fc))) / gelu_limits[1])
        tensors[f"h.{i}.gelu.knots"] = gelu_knots(fc, gelu).astype(np.int32)
        tensors[f"h.{i}.gelu.limits"] = _limits(gelu_limits)
        _linear(tensors, f"h.{i}.c_proj", w[h + "mlp.c_proj.weight"], w[h + "mlp.c_proj.bias"], gelu, residual,
                _limits(RESIDUAL))
    head_in = scale("head_in", None, activation_limits(d))
    _layer_norm(tensors, scales, "ln_f", w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], head_in,
                activation_limits(d))
    _linear(tensors, "head", w["transformer.wte.weight"], None, head_in,
            scale("logits", None, INT16, HOST_HEADROOM), _limits(INT16))
    # recorded to the scales' 10 significant bits: the float reference's last bits differ between
    # BLAS builds (and processors), and the image must come out the same everywhere
    calibration = {(f"h.{layer}.{site}" if layer is not None else site): float(_round_scale_up(value))
                   for (site, layer), value in maxima.items()}
    return QuantizedModel(c, checkpoint.tokenizer, tensors, scales, checkpoint.generation_config,
                          calibration=calibration, source=source)


def _dequantized_layer_norm(model, name):
    """gamma and beta of LayerNorm ``name`` back from its gains and biases."""
    t, d = model.tensors, model.config.hidden_size
    gain_scale = np.float64(model.scales[f"{name}.gain"])
    unit = gain_scale * np.sqrt(d) * 2.0 ** -NORM_FRAC_BITS
    return (t[f"{name}.gain"] * gain_scale).astype(np.float32), (t[f"{name}.bias"] * unit).astype(np.float32)


def dequantized_weights(model):
    """Every float weight of a quantized model back (int8 times its scale), for the float reference."""
    c, t, d = model.config, model.tensors, model.config.hidden_size

    def matrix(name):
        return t[f"{name}.weight"].astype(np.float32) * t[f"{name}.weight_scale"][:, None]

    weights = {"transformer.wte.weight": matrix("head"), "transformer.wpe.weight": matrix("wpe")}
    weights["transformer.ln_f.weight"], weights["transformer.ln_f.bias"] = _dequantized_layer_norm(model, "ln_f")

    def bias(name, in_scale):
        return (t[f"{name}.bias"] * (np.float64(in_scale) * t[f"{name}.weight_scale"])).astype(np.float32)

    for i in range(c.num_layers):
        h, a, s = f"transformer.h.{i}.", f"transformer.h.{i}.attn.attention.", model.scales
        for ln in LAYER_NORMS:
            weights[h + ln + ".weight"], weights[h + ln + ".bias"] = _dequantized_layer_norm(model, f"h.{i}.{ln}")
        qkv = matrix(f"h.{i}.qkv")
        for j, p in enumerate("qkv"):
            weights[a + p + "_proj.weight"] = qkv[j * d:(j + 1) * d]
        weights[a + "out_proj.weight"] = matrix(f"h.{i}.out_proj")
        weights[a + "out_proj.bias"] = bias(f"h.{i}.out_proj", s[f"h.{i}.ctx"])
        weights[h + "mlp.c_fc.weight"] = matrix(f"h.{i}.c_fc")
        weights[h + "mlp.c_fc.bias"] = bias(f"h.{i}.c_fc", s[f"h.{i}.mlp_in"])
        weights[h + "mlp.c_proj.weight"] = matrix(f"h.{i}.c_proj")
        weights[h + "mlp.c_proj.bias"] = bias(f"h.{i}.c_proj", s[f"h.{i}.gelu"])
    return weights
