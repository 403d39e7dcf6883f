"""The device ops on the accelerator, over the link: :class:`~neofpga.host.golden.GoldenOps`'
interface and integer results, computed by link commands.

The memory plan (every bank of a space uses the same addresses; D hidden size, F intermediate
size, V vocabulary, T context, hd head size)::

    WEIGHTS, ``cols`` banks of bytes
      layer L's caches hold R_L slots: R_L = T for a global layer, the window for a local one (a
      ring: token t in slot s = t % R_L, once the tokens before t - R_L + 1 are out of its window)
      K cache at kbase_L (the caches one after the other), Kw = ceil(R_L / cols) * D:
        slot s, element n (all heads): bank s % cols, kbase_L + (s // cols) * D + n
      V cache at vbase_L = kbase_L + Kw, Vw = (D / cols) * R_L, transposed:
        slot s, element n: bank n % cols, vbase_L + (n // cols) * R_L + s
      then the matrices, W [N, K] at base: W[n][k] in bank n % cols at base + (n // cols) * K + k;
        resident: each at its own base; stream: all through one scratch region
    ACTIVATIONS, ``rows`` banks of 16-bit words, for a chunk of c token rows (as many as fit):
      x [c, D] banked (row m: bank m % rows, x_base + (m // rows) * D) at x_base = 0
      hidden [c, max(D, F)] banked: the attention context, the GELU output
      out [c, D] banked: what is read back
      q [c, D] in bank 0, row m at q_base + m * D; P [T] in bank 0 at p_base
      one row's logits [V] in bank 1 % rows at logits_base (over the regions above, unused by then)
    CONSTANTS, one CONSTANT record per output column of every requantizer (qkv, pv, out_proj,
      c_fc, c_proj, head); resident: each at its own base; stream: all through records 0..
    GELU, table L for layer L (stream: table 0)

An attention call writes x, computes q (into A), k (into the K cache) and v (into the V cache)
from slices of the qkv matrix, then per token row and head one SOFTMAX product (q . K -> P, over
keys 0..position: later ones are masked anyway) and one P @ V product into the context, and
finally out_proj; its result is read back. Longer inputs run ``chunk`` token rows at a time, except
in a local layer once its ring is full: a row's k and v then overwrite a slot that the rows before
it still see, so those rows go one at a time. The head runs one row at a time.
"""

import functools
import math

import numpy as np
from tqdm import tqdm

from ..contract.errors import UserError
from ..contract.numerics import GELU_KNOTS, NUMERICS_VERSION
from ..contract.protocol import CONSTANT, MATMUL_MAX_SIZE, NORM_COLUMN, Mode, Space
from .driver import check_info, record_dtype
from .golden import VectorUnits

__all__ = ["RESIDENCIES", "PRODUCT_KINDS", "BoardOps", "cache_words", "constant_records", "norm_columns"]

RESIDENCIES = ("resident", "stream")
PRODUCT_KINDS = ("qkv", "scores + softmax", "P x V", "out_proj", "c_fc", "c_proj", "head")
"""The kinds of product a token runs (c_fc's includes the GELU unit, the scores' the softmax)."""
REQUANTIZERS = ("qkv", "pv", "out_proj", "c_fc", "c_proj")  # per layer; then "head"


class BoardOps(VectorUnits):
    """The attention block, the MLP block and the head on an :class:`~neofpga.host.driver.AcceleratorDriver`;
    the embedding and LayerNorm on the host, in :class:`~neofpga.host.golden.VectorUnits`' integers.

    ``residency`` "resident" uploads every matrix, requantizer constant and GELU table once, here;
    "stream" uploads each right before the product that uses it (only the KV caches stay on the
    device). One sequence at a time (batch 1). ``layers`` (default: all) and ``head`` say what is
    placed on the device, for running a part of a model too big for it (a test of one block).
    """

    def __init__(self, model, driver, residency="resident", layers=None, head=True):
        if residency not in RESIDENCIES:
            raise UserError(f"residency must be one of {', '.join(RESIDENCIES)}, not {residency!r}")
        super().__init__(model)
        self.driver, self.residency = driver, residency
        self.info = driver.device_info
        check_info(self.info, {"numerics_version": NUMERICS_VERSION})
        self.rows, self.cols = self.info["rows"], self.info["cols"]
        c = self.config
        self.layers = list(range(c.num_layers)) if layers is None else list(layers)
        self.requantizers = [f"h.{i}.{name}" for i in self.layers for name in REQUANTIZERS] + (["head"] if head else [])
        self.words_used = {}  # of each bank's (or the constants') words, by the plan
        self.on_product = None  # on_product(kind) after every product: PRODUCT_KINDS, for bench's profile
        self._check_units()
        self._plan_weights()
        self._plan_constants()
        self._plan_activations()
        if residency == "resident":
            self._upload_everything()

    # -- the memory plan -----------------------------------------------------------------------

    def _check_units(self):
        """The model's shapes against what the device's units can do."""
        c, info = self.config, self.info
        if c.head_dim % self.cols:
            raise UserError(f"the model's head size {c.head_dim} is not a multiple of the device's {self.cols} "
                            f"weight banks, which the V cache's layout needs")
        if c.max_position_embeddings > info["softmax_length"]:
            raise UserError(f"the model's context of {c.max_position_embeddings} tokens is longer than the "
                            f"device's softmax unit takes ({info['softmax_length']} keys)")
        tables = len(self.layers) if self.residency == "resident" else 1
        _check_fit(tables, info["gelu_tables"], f"GELU tables with residency '{self.residency}'", self._hint())

    def _plan_weights(self):
        """WEIGHTS addresses: the KV caches (``caches[layer]`` = (kbase, vbase)), then ``weight_base[name]``."""
        c, cols = self.config, self.cols
        d = c.hidden_size
        t = c.max_position_embeddings
        self.slots = {layer: min(c.window_size, t) if c.attention_layers[layer] == "local" else t
                      for layer in self.layers}
        self.caches, start = {}, 0
        for layer in self.layers:
            k_words, v_words = cache_words(self.slots[layer], cols, d)
            self.caches[layer] = (start, start + k_words)
            start += k_words + v_words
        shapes = {name: self.t[f"{name}.weight"].shape for name in self.requantizers if f"{name}.weight" in self.t}
        sizes = {name: math.ceil(n / cols) * k for name, (n, k) in shapes.items()}
        self.weight_base = self._bases(sizes, start=start)
        end = self.words_used["weight_words"] = max(self.weight_base[name] + sizes[name] for name in sizes)
        _check_fit(end, self.info["weight_words"],
                   f"words in each of the {cols} weight banks with residency '{self.residency}'", self._hint())

    def _plan_constants(self):
        """CONSTANTS addresses: ``constant_base[name]``, the record of the requantizer's column 0."""
        sizes = {name: len(self.t[f"{name}.bias"]) for name in self.requantizers}
        self.constant_base = self._bases(sizes, start=0)
        end = self.words_used["constant_words"] = max(self.constant_base[name] + sizes[name] for name in sizes)
        _check_fit(end, self.info["constant_words"],
                   f"requantizer constant records with residency '{self.residency}'", self._hint())

    def _hint(self):
        """What to suggest when the parameters do not fit."""
        return "try residency 'stream'" if self.residency == "resident" else ""

    def _bases(self, sizes, start):
        """Regions of ``sizes`` one after the other from ``start`` (resident), or all at ``start`` (stream)."""
        if self.residency == "stream":
            return dict.fromkeys(sizes, start)
        ends = np.cumsum([start, *sizes.values()])
        return dict(zip(sizes, ends[:-1].tolist()))

    def _plan_activations(self):
        """ACTIVATIONS addresses, for ``chunk`` token rows at a time: as many as fit (at most the context)."""
        c, rows = self.config, self.rows
        d, t = c.hidden_size, c.max_position_embeddings
        hidden = max(d, c.intermediate_size)

        def words(chunk):
            return math.ceil(chunk / rows) * (d + hidden + d) + chunk * d + t

        self.logits_bank, self.logits_base = (1, 0) if rows > 1 else (0, d)
        needed = max(words(1), self.logits_base + c.vocab_size)
        _check_fit(needed, self.info["activation_words"], f"words in each of the {rows} activation banks")
        self.chunk = max(m for m in range(1, t + 1) if words(m) <= self.info["activation_words"])
        self.words_used["activation_words"] = max(words(self.chunk), self.logits_base + c.vocab_size)
        per_bank = math.ceil(self.chunk / rows)
        self.x_base = 0
        self.hidden_base = self.x_base + per_bank * d
        self.out_base = self.hidden_base + per_bank * hidden
        self.q_base = self.out_base + per_bank * d
        self.p_base = self.q_base + self.chunk * d

    # -- parameters ----------------------------------------------------------------------------

    def _upload_everything(self):
        """Residency "resident": every matrix, constant and GELU table, once (a progress bar on stderr)."""
        uploads = [functools.partial(self._upload, name) for name in self.requantizers]
        uploads += [functools.partial(self._upload_knots, layer, table) for table, layer in enumerate(self.layers)]
        for upload in tqdm(uploads, desc="uploading the model", unit="table", disable=None):
            upload()

    def _upload(self, name):
        """Requantizer ``name``'s matrix (if it has one) and its CONSTANT records, where the plan puts them."""
        weight = self.t.get(f"{name}.weight")
        if weight is not None:
            for bank in range(self.cols):
                self.driver.write(Space.WEIGHTS, bank, self.weight_base[name], weight[bank::self.cols].tobytes())
        self.driver.write(Space.CONSTANTS, 0, self.constant_base[name], constant_records(self.t, name).tobytes())

    def _limits(self, name, start=0, count=None):
        """MATMUL's ``low`` and ``high`` for ``count`` columns (default: all) of requantizer ``name``
        from ``start``: one pair for the product (qkv's k and v, for the int8 caches, have their own)."""
        limits = np.asarray(self.t[f"{name}.limits"]).reshape(-1, 2)
        limits = limits[start:start + count if count is not None else None] if len(limits) > 1 else limits
        return dict(low=one_value(limits[:, 0], f"{name}'s low limit"),
                    high=one_value(limits[:, 1], f"{name}'s high limit"))

    def _upload_knots(self, layer, table):
        """Layer ``layer``'s GELU knots into GELU table ``table``."""
        knots = self.t[f"h.{layer}.gelu.knots"].astype("<i4")
        self.driver.write(Space.GELU, 0, GELU_KNOTS * table, knots.tobytes())

    def _parameters(self, name):
        """(weight base, constant base) of requantizer ``name``; streamed in first with residency "stream"."""
        if self.residency == "stream":
            self._upload(name)
        return self.weight_base.get(name), self.constant_base[name]

    def _gelu_table(self, layer):
        """The GELU table holding layer ``layer``'s knots; streamed into table 0 with residency "stream"."""
        if self.residency == "stream":
            self._upload_knots(layer, 0)
            return 0
        return self.layers.index(layer)

    # -- activations ---------------------------------------------------------------------------

    def _write_rows(self, base, x):
        """Rows x [m, K] into ACTIVATIONS, banked from ``base``."""
        for bank in range(min(self.rows, len(x))):
            self.driver.write(Space.ACTIVATIONS, bank, base, x[bank::self.rows].astype("<i2").tobytes())

    def _read_rows(self, base, m, n):
        """Rows [m, n] (int16) banked from ``base`` in ACTIVATIONS."""
        out = np.empty((m, n), np.int16)
        for bank in range(min(self.rows, m)):
            count = len(range(bank, m, self.rows))
            words = self.driver.read(Space.ACTIVATIONS, bank, base, count * n)
            out[bank::self.rows] = np.frombuffer(words, "<i2").reshape(count, n)
        return out

    def _product(self, kind, **fields):
        """One MATMUL command; ``on_product(kind)`` hears of it once it is answered (a profiler's hook)."""
        self.driver.matmul(**fields)
        if self.on_product is not None:
            self.on_product(kind)

    def _linear(self, name, m, a_base, out_base, out_banked=1, out_bank0=0, **fields):
        """Rows [m, K] banked at ``a_base`` times matrix ``name``, requantized (or as ``fields`` say),
        into ``out_base`` (banked, or all in bank ``out_bank0``); N wider than one MATMUL takes goes
        in parts of whole weight banks."""
        n, k = self.t[f"{name}.weight"].shape
        w_base, constants = self._parameters(name)
        part = MATMUL_MAX_SIZE // self.cols * self.cols
        for start in range(0, n, part):
            self._product(name.split(".")[-1], m=m, k=k, n=min(part, n - start), a_base=a_base, a_stride=k,
                          w_base=w_base + start // self.cols * k, w_stride=k, constants=constants + start,
                          **self._limits(name, start, part), out_space=Space.ACTIVATIONS, out_banked=out_banked,
                          out_bank0=out_bank0, out_address0=out_base + start, out_stride=n, **fields)

    def _in_chunks(self, op, x, *per_row, sizes=None):
        """``op`` over the rows of x [1, T, D] (and the matching parts of ``per_row`` arrays),
        ``chunk`` rows at a time (or as many as ``sizes(first row)`` says); the results joined
        back into [1, T, N]."""
        x = np.asarray(x)
        self.reset(len(x))
        rows = x.reshape(-1, x.shape[-1])
        parts, start = [], 0
        while start < len(rows):
            end = start + (sizes(start) if sizes else self.chunk)
            parts.append(op(rows[start:end], *(a[start:end] for a in per_row)))
            start = end
        return np.concatenate(parts).reshape(*x.shape[:-1], -1)

    # -- the ops ---------------------------------------------------------------------------------

    def reset(self, batch=1):
        """A new sequence: nothing to send, its positions overwrite the caches as they advance."""
        if batch != 1:
            raise UserError(f"the board runs one sequence at a time, not a batch of {batch}")

    def _placed(self, name):
        if name not in self.requantizers:
            raise UserError(f"{name.rstrip('.')} is not placed on the device (BoardOps layers={self.layers})")

    def attention(self, layer, x, positions):
        """Attention block on ``x`` [1, T, D] at ``positions`` (consecutive) -> int16 [1, T, D]."""
        self._placed(f"h.{layer}.qkv")
        positions = np.asarray(positions).reshape(-1)
        slots = self.slots[layer]

        def rows_that_fit(row):  # a full ring takes one row at a time
            return 1 if positions[row] >= slots else min(self.chunk, slots - positions[row])

        return self._in_chunks(functools.partial(self._attention, layer), x, positions, sizes=rows_that_fit)

    def mlp(self, layer, x):
        """MLP block on ``x`` [1, T, D]: c_fc with the GELU unit, c_proj -> int16."""
        self._placed(f"h.{layer}.c_fc")
        return self._in_chunks(functools.partial(self._mlp, layer), x)

    def head(self, x):
        """The tied head: int16 logits [1, T, V]."""
        self._placed("head")
        return self._in_chunks(self._head, x, sizes=lambda row: 1)

    def _attention(self, layer, x, positions):
        c, p = self.config, f"h.{layer}."
        d, m = c.hidden_size, len(x)
        self._write_rows(self.x_base, x)
        self._qkv(layer, m, int(positions[0]))
        _, pv = self._parameters(p + "pv")
        for row, position in enumerate(positions):
            for head in range(c.num_heads):
                self._attend(layer, row, int(position), head, pv)
        self._linear(p + "out_proj", m, self.hidden_base, self.out_base)
        return self._read_rows(self.out_base, m, d)

    def _qkv(self, layer, m, start):
        """q into A (bank 0, not banked), k into the K cache and v into the V cache at the slots of
        positions ``start``... (which do not wrap around the ring)."""
        d, t = self.config.hidden_size, self.slots[layer]
        kbase, vbase = self.caches[layer]
        start %= t
        w_base, constants = self._parameters(f"h.{layer}.qkv")
        part = d // self.cols * d  # the words per bank of each of q, k and v in the qkv matrix
        product = dict(m=m, k=d, n=d, a_base=self.x_base, a_stride=d, w_stride=d, mode=Mode.REQUANTIZE)
        q, k, v = (self._limits(f"h.{layer}.qkv", i * d, d) for i in range(3))
        self._product("qkv", **product, **q, w_base=w_base, constants=constants, out_space=Space.ACTIVATIONS,
                      out_address0=self.q_base, out_stride=d)
        self._product("qkv", **product, **k, w_base=w_base + part, constants=constants + d, out_space=Space.WEIGHTS,
                      out_banked=1, out_bank0=start % self.cols, out_address0=kbase + start // self.cols * d,
                      out_stride=d)
        self._product("qkv", **product, **v, w_base=w_base + 2 * part, constants=constants + 2 * d,
                      out_space=Space.WEIGHTS, out_transposed=1, out_address0=vbase, out_stride=t, out_offset=start)

    def _attend(self, layer, row, position, head, pv):
        """One head of one token row: q . K -> P (SOFTMAX), then P @ V -> its slice of the context."""
        c = self.config
        d, hd, t = c.hidden_size, c.head_dim, self.slots[layer]
        kbase, vbase = self.caches[layer]
        # the slots of the keys the row sees: 0..position until the ring is full, then all of them
        # (later keys would only add zero probabilities; the order of keys does not change a sum)
        keys = min(position + 1, t)
        pre, constant, shift = (int(v) for v in self.t[f"h.{layer}.softmax"])
        self._product("scores + softmax", m=1, k=hd, n=keys, a_base=self.q_base + row * d + head * hd,
                      a_stride=d, w_base=kbase + head * hd, w_stride=d, mode=Mode.SOFTMAX, softmax_pre=pre,
                      softmax_constant=constant, softmax_shift=shift, position=keys - 1, window=0,
                      out_space=Space.ACTIVATIONS, out_address0=self.p_base, out_stride=keys)
        self._product("P x V", m=1, k=keys, n=hd, a_base=self.p_base, a_stride=keys,
                      w_base=vbase + head * hd // self.cols * t, w_stride=t, mode=Mode.REQUANTIZE,
                      constants=pv + head * hd, **self._limits(f"h.{layer}.pv"), out_space=Space.ACTIVATIONS,
                      out_banked=1, out_bank0=row % self.rows,
                      out_address0=self.hidden_base + row // self.rows * d + head * hd, out_stride=d)

    def _mlp(self, layer, x):
        p, m = f"h.{layer}.", len(x)
        self._write_rows(self.x_base, x)
        low, high = (int(v) for v in self.t[p + "gelu.limits"])
        self._linear(p + "c_fc", m, self.x_base, self.hidden_base, mode=Mode.GELU,
                     gelu_table=self._gelu_table(layer), gelu_low=low, gelu_high=high)
        self._linear(p + "c_proj", m, self.hidden_base, self.out_base)
        return self._read_rows(self.out_base, m, self.config.hidden_size)

    def _head(self, x):
        """One row's logits, into bank ``logits_bank``."""
        v = self.config.vocab_size
        self._write_rows(self.x_base, x)
        self._linear("head", 1, self.x_base, self.logits_base, out_banked=0, out_bank0=self.logits_bank)
        words = self.driver.read(Space.ACTIVATIONS, self.logits_bank, self.logits_base, v)
        return np.frombuffer(words, "<i2").reshape(1, v)


def cache_words(slots, cols, d):
    """Words, in each of ``cols`` weight banks, of a layer's K cache and of its V cache (the
    layouts of this module's plan) for ``slots`` slots of width ``d``."""
    return math.ceil(slots / cols) * d, d // cols * slots


def constant_records(tensors, name):
    """Requantizer ``name``'s CONSTANT records from an image's tensors (the bias where it has one:
    the embedding's rows have none)."""
    records = np.zeros(len(tensors[f"{name}.multiplier"]), record_dtype(CONSTANT))
    records["multiplier"], records["shift"] = tensors[f"{name}.multiplier"], tensors[f"{name}.shift"]
    if f"{name}.bias" in tensors:
        records["bias"] = tensors[f"{name}.bias"]
    return records


def norm_columns(tensors, name):
    """LayerNorm ``name``'s NORM_COLUMN records from an image's tensors."""
    columns = np.zeros(len(tensors[f"{name}.gain"]), record_dtype(NORM_COLUMN))
    columns["gain"], columns["bias"] = tensors[f"{name}.gain"], tensors[f"{name}.bias"]
    return columns


def _check_fit(needed, available, what, hint=""):
    """Refuse a model that needs more of the device than it has, in one line."""
    if needed > available:
        raise UserError(f"the model needs {needed:,} {what}, the device has {available:,}"
                        + (f": {hint}" if hint else ""))


def one_value(values, what):
    """The one value of a constant the device takes once for many columns; a one-line error if they differ."""
    values = np.asarray(values).reshape(-1)
    if (values != values[0]).any():
        raise UserError(f"{what} differs between columns: the device takes one for them all")
    return int(values[0])
