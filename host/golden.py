"""The integer golden model: the ``emu`` back end and the specification the gateware must match.

:class:`IntegerGPTNeo` is GPT-Neo in the device's integers: the embedding, every LayerNorm, the
int16 residual stream, the blocks and the head, as docs/NUMERICS.md states them. It is the graph
of every integer back end (``emu``, ``sim``, a board); they differ only in the integer *device
ops* behind it. :class:`GoldenOps` computes all of them in numpy. A board's
:class:`~neofpga.host.board_ops.BoardOps` runs the blocks and the head on the device and, until
the gateware has those units, the embedding and LayerNorm with :class:`VectorUnits`, the same
integer code as here.
"""

import numpy as np

from .kernels import embedding, exact_matmul, integer_gelu, integer_layer_norm, integer_softmax, requantize, \
    residual_add
from .reference import attention_mask

__all__ = ["VectorUnits", "GoldenOps", "IntegerGPTNeo", "golden_model"]


class VectorUnits:
    """The embedding gather and the LayerNorm unit in integer numpy, with an image's constants."""

    def __init__(self, model):
        self.config = model.config
        self.t = model.tensors

    def embedding(self, ids, positions):
        """The residual stream's first value for token ``ids`` [B, T] at ``positions`` [T]: the
        int8 wte row (the tied head's) plus the int8 wpe row, each in the residual's units."""
        t, ids = self.t, np.asarray(ids)
        tokens = embedding(t["head.weight"][ids], t["embedding.multiplier"][ids], t["embedding.shift"][ids])
        places = embedding(t["wpe.weight"][positions], t["wpe.multiplier"][positions], t["wpe.shift"][positions])
        return residual_add(tokens, places)

    def layer_norm(self, name, x):
        """LayerNorm ``name`` (``h.L.ln_1``, ``h.L.ln_2`` or ``ln_f``) of int16 residual rows ``x``."""
        t = self.t
        limits = t[f"{name}.limits"]
        return integer_layer_norm(x, t[f"{name}.gain"], t[f"{name}.bias"], t[f"{name}.multiplier"],
                                  t[f"{name}.shift"], limits[..., 0], limits[..., 1], *t["layer_norm.statistics"])


class GoldenOps(VectorUnits):
    """Every device op in integer numpy, with an int8 KV cache; int16 in, int16 out."""

    def __init__(self, model):
        super().__init__(model)
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


class IntegerGPTNeo:
    """GPT-Neo in integers: the graph of every integer back end, with ``ops`` computing its units.

    ``forward`` appends tokens to the sequences in the ops' KV cache and returns their logits, the
    int16 codes times the logit scale (float32, exact: :meth:`chooser` recovers the codes).
    """

    def __init__(self, model, ops, name="emu"):
        self.name = name
        self.config = model.config
        self.ops = ops
        self.residual_scale = np.float32(model.scales["residual"])
        self.logit_scale = np.float32(model.scales["logits"])
        self.length = 0
        self.observe = None  # observe("residual", layer, x) after every block, dequantized: per-layer accuracy
        self.reset()

    def reset(self, batch=1):
        """Start ``batch`` new, empty sequences."""
        self.length = 0
        self.ops.reset(batch)

    def forward(self, ids, last_only=False):
        """Logits [B, T, vocab] for token ids [B, T] that follow what the cache holds."""
        c, ops = self.config, self.ops
        ids = np.asarray(ids)
        positions = np.arange(self.length, self.length + ids.shape[1])
        if positions[-1] >= c.max_position_embeddings:
            raise ValueError(f"position {positions[-1]} is past the context of {c.max_position_embeddings}")
        x = ops.embedding(ids, positions)
        for layer in range(c.num_layers):
            x = residual_add(x, ops.attention(layer, ops.layer_norm(f"h.{layer}.ln_1", x), positions))
            x = residual_add(x, ops.mlp(layer, ops.layer_norm(f"h.{layer}.ln_2", x)))
            if self.observe is not None:
                self.observe("residual", layer, x.astype(np.float32) * self.residual_scale)
        if last_only:
            x = x[:, -1:]
        codes = ops.head(ops.layer_norm("ln_f", x))
        self.length += ids.shape[1]
        return codes.astype(np.float32) * self.logit_scale

    def chooser(self, sampler):
        """The next-token choice on the device's integers (:meth:`Sampler.integer_chooser`)."""
        return sampler.integer_chooser(self.logit_scale)

    def close(self):
        """Release the device (nothing to release for in-process ops)."""


def golden_model(model, name="emu"):
    """The ``emu`` back end: the integer graph with the golden model computing every unit."""
    return IntegerGPTNeo(model, GoldenOps(model), name=name)
