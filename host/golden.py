"""The integer golden model: the ``emu`` back end and the specification the gateware must match.

:class:`GoldenOps` computes the device side (attention block, MLP block, head) on integers,
exactly as docs/NUMERICS.md states and the gateware computes it. :class:`QuantizedOps` is the
host's half of every integer back end (``emu``, ``sim``, a board): it quantizes the LayerNorm
outputs it sends and dequantizes the int16 results it gets back. Back ends differ only in the
``ops`` object behind it.
"""

import numpy as np

from .kernels import exact_matmul, integer_gelu, integer_softmax, quantize, requantize
from .quantize import host_weights
from .reference import GPTNeo, attention_mask

__all__ = ["GoldenOps", "QuantizedOps", "golden_model"]


class GoldenOps:
    """The device ops in integer numpy, with an int8 KV cache; 16-bit activations in, int16 out."""

    def __init__(self, model):
        self.config = model.config
        self.t = model.tensors
        # int8 weights as float32 for exact_matmul (exact: see numerics.exact_matmul)
        self.weights = {name[: -len(".weight")]: array.astype(np.float32)
                        for name, array in model.tensors.items()
                        if name.endswith(".weight") and array.dtype == np.int8}
        self.keys = self.values = None

    def reset(self, batch=1):
        """Empty the KV cache for ``batch`` sequences."""
        c = self.config
        shape = (c.num_layers, batch, c.num_heads, c.max_position_embeddings, c.head_dim)
        self.keys = np.zeros(shape, dtype=np.int8)
        self.values = np.zeros(shape, dtype=np.int8)

    def requantize(self, name, acc):
        """The requantizer with the constants of ``name`` (bias, multiplier, shift, limits)."""
        t = self.t
        limits = t[f"{name}.limits"]
        return requantize(acc, t[f"{name}.bias"], t[f"{name}.multiplier"], t[f"{name}.shift"],
                          limits[..., 0], limits[..., 1])

    def linear(self, name, x):
        """16-bit ``x`` [..., K] times the int8 matrix ``name``, plus bias, requantized."""
        return self.requantize(name, exact_matmul(x, self.weights[name]))

    def _split_heads(self, x):
        b, n, _ = x.shape
        return x.reshape(b, n, self.config.num_heads, self.config.head_dim).transpose(0, 2, 1, 3)

    def attention(self, layer, x, positions):
        """Attention block on ``x`` [B, T, D]: q/k/v, scores, softmax, P V, out_proj -> int16."""
        c, p = self.config, f"h.{layer}."
        q, k, v = map(self._split_heads, np.split(self.linear(p + "qkv", x), 3, axis=-1))
        start, end = positions[0], positions[-1] + 1
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        keys = self.keys[layer, :, :, :end].astype(np.float32)
        values = self.values[layer, :, :, :end].astype(np.float32)
        scores = np.stack([[exact_matmul(q[b, h], keys[b, h]) for h in range(c.num_heads)]
                           for b in range(len(q))])
        visible = attention_mask(c.attention_layers[layer], positions, end, c.window_size)
        pre, constant, shift = (int(v) for v in self.t[p + "softmax"])
        probs = integer_softmax(scores, np.broadcast_to(visible, scores.shape), pre, constant, shift)
        # p <= 2**15 - 1 with sum(p) <= 2**15 and |v| <= 128: every partial sum is below 2**22, exact
        context = (probs.astype(np.float32) @ values).astype(np.int64)
        ctx = self.requantize(p + "pv", context.transpose(0, 2, 1, 3).reshape(x.shape))
        return self.linear(p + "out_proj", ctx)

    def mlp(self, layer, x):
        """MLP block on ``x``: c_fc, the GELU unit, c_proj -> int16."""
        p = f"h.{layer}."
        limits = self.t[p + "gelu.limits"]
        activated = integer_gelu(self.linear(p + "c_fc", x), self.t[p + "gelu.knots"], limits[0], limits[1])
        return self.linear(p + "c_proj", activated)

    def head(self, x):
        """The tied head: int16 logits."""
        return self.linear("head", x)


class QuantizedOps:
    """The device ops of an integer back end, seen from the float graph: float LayerNorm outputs
    in, float block outputs back.

    It quantizes what it sends (16-bit, round half to even, saturating) and scales what
    ``integer_ops`` (:class:`GoldenOps`, or a board's :class:`~neofpga.host.board_ops.BoardOps`)
    returns (int16) by the calibrated output scales.
    """

    def __init__(self, model, integer_ops):
        self.model, self.integer_ops = model, integer_ops
        self.s = model.scales

    def reset(self, batch=1):
        self.integer_ops.reset(batch)

    def _send(self, name, x):
        limits = self.model.tensors[f"{name}.limits"]
        return quantize(x, self.s[name], limits)

    def attention(self, layer, x, positions):
        out = self.integer_ops.attention(layer, self._send(f"h.{layer}.attn_in", x), positions)
        return out.astype(np.float32) * self.s[f"h.{layer}.attn_out"]

    def mlp(self, layer, x):
        out = self.integer_ops.mlp(layer, self._send(f"h.{layer}.mlp_in", x))
        return out.astype(np.float32) * self.s[f"h.{layer}.mlp_out"]

    def head(self, x):
        return self.integer_ops.head(self._send("head_in", x)).astype(np.float32) * self.s["logits"]


def golden_model(model, name="emu"):
    """The ``emu`` back end: the shared graph with the golden model computing the device ops."""
    return GPTNeo(model.config, host_weights(model), QuantizedOps(model, GoldenOps(model)), name=name)
