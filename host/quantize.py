"""The quantizer: a float GPT-Neo checkpoint and calibration text to a :class:`QuantizedModel`.

Weights become int8 with one scale per output channel. Activations become 16-bit integers with
one scale per tensor, fixed from the largest magnitude seen on calibration text (narrowed for
long reductions, see numerics.activation_limits); the KV cache is int8; block outputs returned
to the host are int16 with twice the calibrated headroom. Requantizer multipliers, the softmax
parameters and the GELU knots follow from those scales (docs/NUMERICS.md).
"""

import numpy as np

from ..contract.numerics import INT8, INT16, PROB_BITS, activation_limits
from .image import QuantizedModel
from .kernels import gelu_knots, multiplier_and_shift, softmax_parameters
from .reference import FloatOps, GPTNeo, gelu_new

__all__ = ["SITES", "calibrate", "quantize_checkpoint", "dequantized_weights", "host_weights"]

# Activation sites of a block; "scores" is recorded for the report only.
SITES = ("attn_in", "q", "k", "v", "scores", "ctx", "attn_out", "mlp_in", "fc", "gelu", "mlp_out")
BIAS_LIMIT = 2 ** 30          # int32 biases are clamped here so acc + bias cannot overflow
HOST_HEADROOM = 2.0           # int16 results for the host keep this factor above the calibrated maximum
SCALE_MANTISSA_BITS = 10      # scales are rounded up to 10 significant bits: reproducible images


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
    scales, tensors = {}, {"wpe": w["transformer.wpe.weight"]}

    def scale(site, layer, limits, headroom=1.0):
        """The scale of a site from its calibrated maximum; host-side inputs record their limits."""
        name = f"h.{layer}.{site}" if layer is not None else site
        scales[name] = _round_scale_up(max(maxima[(site, layer)], 1e-8) * headroom / limits[1])
        if site in ("attn_in", "mlp_in", "head_in"):
            tensors[f"{name}.limits"] = _limits(limits)
        return scales[name]

    for i in range(c.num_layers):
        h, a = f"transformer.h.{i}.", f"transformer.h.{i}.attn.attention."
        for ln in ("ln_1", "ln_2"):
            tensors[f"h.{i}.{ln}.weight"] = w[h + ln + ".weight"]
            tensors[f"h.{i}.{ln}.bias"] = w[h + ln + ".bias"]
        attn_in = scale("attn_in", i, activation_limits(d))
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
        _linear(tensors, f"h.{i}.out_proj", w[a + "out_proj.weight"], w[a + "out_proj.bias"], ctx,
                scale("attn_out", i, INT16, HOST_HEADROOM), _limits(INT16))
        mlp_in, fc = scale("mlp_in", i, activation_limits(d)), scale("fc", i, INT16)
        _linear(tensors, f"h.{i}.c_fc", w[h + "mlp.c_fc.weight"], w[h + "mlp.c_fc.bias"], mlp_in, fc,
                _limits(INT16))
        # the GELU output scale is set by the largest input code, so the unit never saturates
        gelu_limits = activation_limits(f)
        gelu = scales[f"h.{i}.gelu"] = _round_scale_up(float(gelu_new(np.float64(INT16[1] * fc))) / gelu_limits[1])
        tensors[f"h.{i}.gelu.knots"] = gelu_knots(fc, gelu).astype(np.int32)
        tensors[f"h.{i}.gelu.limits"] = _limits(gelu_limits)
        _linear(tensors, f"h.{i}.c_proj", w[h + "mlp.c_proj.weight"], w[h + "mlp.c_proj.bias"], gelu,
                scale("mlp_out", i, INT16, HOST_HEADROOM), _limits(INT16))
    tensors["ln_f.weight"], tensors["ln_f.bias"] = w["transformer.ln_f.weight"], w["transformer.ln_f.bias"]
    _linear(tensors, "head", w["transformer.wte.weight"], None, scale("head_in", None, activation_limits(d)),
            scale("logits", None, INT16, HOST_HEADROOM), _limits(INT16))
    calibration = {(f"h.{layer}.{site}" if layer is not None else site): value
                   for (site, layer), value in maxima.items()}
    return QuantizedModel(c, checkpoint.tokenizer, tensors, scales, checkpoint.generation_config,
                          calibration=calibration, source=source)


def host_weights(model):
    """The host's float32 share of a quantized model, by Hugging Face name: embeddings (the int8
    tied head dequantized row by row), position embeddings and LayerNorms."""
    c, t = model.config, model.tensors
    weights = {"transformer.wte.weight": t["head.weight"].astype(np.float32) * t["head.weight_scale"][:, None],
               "transformer.wpe.weight": t["wpe"],
               "transformer.ln_f.weight": t["ln_f.weight"], "transformer.ln_f.bias": t["ln_f.bias"]}
    for i in range(c.num_layers):
        for ln in ("ln_1", "ln_2"):
            for p in ("weight", "bias"):
                weights[f"transformer.h.{i}.{ln}.{p}"] = t[f"h.{i}.{ln}.{p}"]
    return weights


def dequantized_weights(model):
    """Every float weight of a quantized model back (int8 times its scale), for the float reference."""
    c, t, d = model.config, model.tensors, model.config.hidden_size
    weights = host_weights(model)

    def matrix(name):
        return t[f"{name}.weight"].astype(np.float32) * t[f"{name}.weight_scale"][:, None]

    def bias(name, in_scale):
        return (t[f"{name}.bias"] * (np.float64(in_scale) * t[f"{name}.weight_scale"])).astype(np.float32)

    for i in range(c.num_layers):
        h, a, s = f"transformer.h.{i}.", f"transformer.h.{i}.attn.attention.", model.scales
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
