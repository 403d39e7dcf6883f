"""GPT-Neo in float32 numpy: the CPU reference every other back end is measured against.

The model splits the way the accelerator does. :class:`GPTNeo` is the graph and the host's share
of it (embeddings, pre-LayerNorm, residual adds, final LayerNorm), written once for every back end.
The *device ops* are the rest: the attention block with its KV cache, the MLP block and the tied
head, which the device computes. :class:`FloatOps` computes them in float32, the reference; the
golden model and the boards are other device ops behind the same four methods.

GPT-Neo differs from GPT-2 in ways that matter here: attention scores are NOT scaled by
1/sqrt(head_dim); layers alternate global and local (sliding-window) attention; q/k/v have no
bias; the activation is gelu_new (the tanh form); the head is tied to the token embedding.
"""

import numpy as np

__all__ = ["layer_norm", "gelu_new", "softmax", "attention_mask", "FloatOps", "GPTNeo"]

MASKED = np.finfo(np.float32).min  # what transformers writes into masked attention scores


def layer_norm(x, weight, bias, eps):
    """LayerNorm over the last axis (biased variance, as torch computes it)."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(eps)) * weight + bias


def gelu_new(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + np.tanh(np.float32(np.sqrt(2.0 / np.pi)) * (x + np.float32(0.044715) * x * x * x)))


def softmax(x):
    """Softmax over the last axis."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention_mask(kind, query_positions, key_length, window_size):
    """Which keys each query may see: ``mask[i, j]`` is True where query i attends to key j.

    Global layers are causal (j <= i); local layers also drop keys a full window or more behind
    (i - window_size < j), over absolute positions, exactly as transformers builds its mask.
    """
    query = np.asarray(query_positions)[:, None]
    key = np.arange(key_length)[None, :]
    visible = key <= query
    if kind == "local":
        visible &= key > query - window_size
    return visible


class FloatOps:
    """The device ops in float32 numpy, with a KV cache: the reference."""

    def __init__(self, config, weights):
        self.config = config
        self.w = weights
        # q, k and v projections stacked into one [3 D, D] matrix: one matmul reads all three
        self.qkv = [np.concatenate([weights[f"transformer.h.{i}.attn.attention.{p}_proj.weight"]
                                    for p in "qkv"]) for i in range(config.num_layers)]
        self.batch = 0
        self.keys = self.values = None
        self.observe = None  # observe(site, layer, array): the quantizer's calibration hook

    def _seen(self, site, layer, array):
        if self.observe is not None:
            self.observe(site, layer, array)
        return array

    def reset(self, batch=1):
        """Empty the KV cache for ``batch`` sequences (np.empty does not touch memory until written)."""
        c = self.config
        shape = (c.num_layers, batch, c.num_heads, c.max_position_embeddings, c.head_dim)
        self.batch = batch
        self.keys = np.empty(shape, dtype=np.float32)
        self.values = np.empty(shape, dtype=np.float32)

    def _split_heads(self, x):
        b, t, _ = x.shape
        return x.reshape(b, t, self.config.num_heads, self.config.head_dim).transpose(0, 2, 1, 3)

    def attention(self, layer, x, positions):
        """Self-attention of block ``layer`` on LayerNormed ``x`` [B, T, D] at absolute ``positions``."""
        c, p = self.config, f"transformer.h.{layer}.attn.attention."
        self._seen("attn_in", layer, x)
        q, k, v = np.split(x @ self.qkv[layer].T, 3, axis=-1)
        for site, part in zip("qkv", (q, k, v)):
            self._seen(site, layer, part)
        q, k, v = map(self._split_heads, (q, k, v))
        start, end = positions[0], positions[-1] + 1
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        keys, values = self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

        scores = q @ keys.transpose(0, 1, 3, 2)  # GPT-Neo: no 1/sqrt(head_dim)
        mask = attention_mask(c.attention_layers[layer], positions, end, c.window_size)
        self._seen("scores", layer, np.where(mask, scores, 0))
        probs = softmax(np.where(mask, scores, MASKED))
        heads = probs @ values  # [B, H, T, head_dim]
        merged = self._seen("ctx", layer, heads.transpose(0, 2, 1, 3).reshape(x.shape))
        return self._seen("attn_out", layer, merged @ self.w[p + "out_proj.weight"].T + self.w[p + "out_proj.bias"])

    def mlp(self, layer, x):
        """The MLP of block ``layer``: c_fc, gelu_new, c_proj."""
        p = f"transformer.h.{layer}.mlp."
        self._seen("mlp_in", layer, x)
        hidden = gelu_new(self._seen("fc", layer, x @ self.w[p + "c_fc.weight"].T + self.w[p + "c_fc.bias"]))
        self._seen("gelu", layer, hidden)
        return self._seen("mlp_out", layer, hidden @ self.w[p + "c_proj.weight"].T + self.w[p + "c_proj.bias"])

    def head(self, x):
        """Logits from the final hidden state: the lm_head, tied to the token embedding."""
        self._seen("head_in", None, x)
        return self._seen("logits", None, x @ self.w["transformer.wte.weight"].T)


class GPTNeo:
    """The GPT-Neo graph with the host's share computed here and the device ops by ``ops``.

    ``forward`` appends tokens to the sequences held in the ops' KV cache and returns their
    logits; ``reset`` starts new sequences. Every back end but ``hf`` is one of these.
    """

    def __init__(self, config, weights, ops, name="cpu"):
        self.name = name
        self.config = config
        self.w = weights  # the host's share: wte and wpe rows, LayerNorm gains and biases
        self.ops = ops
        self.length = 0
        self.observe = None  # observe(site, layer, x) of the residual stream: calibration, per-layer accuracy
        self.reset()

    def _seen(self, site, layer, x):
        """The residual stream at ``site``: "embedding", then "attn_residual" and "residual" (after
        the attention and the MLP) of every block."""
        if self.observe is not None:
            self.observe(site, layer, x)
        return x

    def reset(self, batch=1):
        """Start ``batch`` new, empty sequences."""
        self.length = 0
        self.ops.reset(batch)

    def forward(self, ids, last_only=False):
        """Logits [B, T, vocab] for token ids [B, T] that follow what the cache holds.

        With ``last_only`` only the last position goes through the head (all generation needs).
        """
        c, w = self.config, self.w
        ids = np.asarray(ids)
        positions = np.arange(self.length, self.length + ids.shape[1])
        if positions[-1] >= c.max_position_embeddings:
            raise ValueError(f"position {positions[-1]} is past the context of {c.max_position_embeddings}")
        x = self._seen("embedding", None, w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][positions])
        for layer in range(c.num_layers):
            h = f"transformer.h.{layer}."
            x = self._seen("attn_residual", layer, x + self.ops.attention(
                layer, layer_norm(x, w[h + "ln_1.weight"], w[h + "ln_1.bias"], c.layer_norm_epsilon), positions))
            x = self._seen("residual", layer, x + self.ops.mlp(
                layer, layer_norm(x, w[h + "ln_2.weight"], w[h + "ln_2.bias"], c.layer_norm_epsilon)))
        if last_only:
            x = x[:, -1:]
        x = layer_norm(x, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], c.layer_norm_epsilon)
        self.length += ids.shape[1]
        return self.ops.head(x)

    def chooser(self, sampler):
        """The next-token choice over float logits (:meth:`Sampler.float_chooser`)."""
        return sampler.float_chooser()

    def close(self):
        """Release the device (nothing to release for in-process ops)."""
