"""A model compiled into the device's program (contract/program.py): the whole token in one TOKEN.

:class:`TokenProgram` keeps :class:`~neofpga.host.board_ops.BoardOps`' memory plan (every matrix,
requantizer and GELU table resident, the KV caches as rings) and adds what the device needs to run
a token alone: the wpe matrix (WEIGHTS, after the others; wte is the head's matrix), the
embedding's per-row requantizers and every LayerNorm's columns (CONSTANTS, after the others), and
one token row's activations (chunk 1)::

    ACTIVATIONS bank 0: x [D], hidden [max(D, F)], out [D], q [D], P [T], residual [D]
    bank 1 (bank 0 after the residual with one bank): the logits [V]

The program, for token ``id`` at position ``p`` (the relocations in brackets)::

    EMBED [id, p] -> residual
    per layer: NORM ln_1 (adding the previous layer's MLP output) -> x
               qkv: q -> q, k -> K cache slot [SLOT], v -> V cache slot [SLOT]
               per head: SOFTMAX q . K [KEYS] -> P, P @ V [KEYS] -> hidden
               out_proj -> out; NORM ln_2 (adding out) -> x; c_fc with GELU -> hidden; c_proj -> out
    NORM ln_f (adding out) -> x; head -> logits; SAMPLE -> the next id
"""

import numpy as np

from ..contract.errors import UserError
from ..contract.program import PROGRAM_VERSION, Relocation, Source, pack_entry, pack_header
from ..contract.protocol import ACCESS, PROGRAM_ENTRY_BYTES, SETTINGS, Mode, Opcode, Space, record_size
from .board_ops import BoardOps, _check_fit, constant_records, norm_columns, one_value

__all__ = ["TokenProgram"]

EMBEDDINGS = ("embedding", "wpe")  # the requantizer rows of wte (the head's matrix) and wpe


class TokenProgram(BoardOps):
    """The model's program and what it needs, uploaded to the device behind ``driver``; :meth:`token`
    runs one token."""

    def __init__(self, model, driver):
        info, c = driver.device_info, model.config
        if not info.get("program_words") or not info.get("norm_length"):
            raise UserError("the device runs no programs (its INFO reports no program words or vector units)")
        if info["program_version"] != PROGRAM_VERSION:
            raise UserError(f"the device runs program format {info['program_version']}, this neofpga compiles "
                            f"{PROGRAM_VERSION}: rebuild the bitstream (neofpga build) and flash it")
        if info["cols"] & (info["cols"] - 1):
            raise UserError(f"the device's {info['cols']} weight banks are not a power of two, which the "
                            f"program's cache slots need")
        if info["max_payload"] < record_size(ACCESS) + PROGRAM_ENTRY_BYTES:
            raise UserError(f"the device takes frames of {info['max_payload']} bytes, too short for a program "
                            f"word ({PROGRAM_ENTRY_BYTES} bytes and the WRITE's address)")
        if c.hidden_size > info["norm_length"]:
            raise UserError(f"the model's width {c.hidden_size} is longer than the device's LayerNorm unit takes "
                            f"({info['norm_length']})")
        self.layer_norms = [f"h.{i}.{name}" for i in range(c.num_layers) for name in ("ln_1", "ln_2")]
        self.layer_norms.append("ln_f")
        self.context = c.max_position_embeddings  # the tokens a sequence may hold
        super().__init__(model, driver, residency="resident")  # plans, compiles, checks, then uploads

    # -- the memory plan, extended ---------------------------------------------------------------

    def _plan_weights(self):
        super()._plan_weights()
        c, cols = self.config, self.cols
        self.weight_base["wpe"] = self.words_used["weight_words"]
        end = self.words_used["weight_words"] = self.weight_base["wpe"] + -(-c.max_position_embeddings // cols) \
            * c.hidden_size
        _check_fit(end, self.info["weight_words"], f"words in each of the {cols} weight banks with the wpe matrix")

    def _plan_constants(self):
        super()._plan_constants()
        start = self.words_used["constant_words"]
        sizes = {name: len(self.t[f"{name}.multiplier"]) for name in EMBEDDINGS}
        sizes.update({name: self.config.hidden_size for name in self.layer_norms})
        for name, size in sizes.items():
            self.constant_base[name], start = start, start + size
        self.words_used["constant_words"] = start
        _check_fit(start, self.info["constant_words"], "constant records with the embedding and LayerNorms")

    def _plan_activations(self):
        c, rows = self.config, self.rows
        d, t = c.hidden_size, c.max_position_embeddings
        self.chunk = 1
        self.x_base = 0
        self.hidden_base = d
        self.out_base = self.hidden_base + max(d, c.intermediate_size)
        self.q_base = self.out_base + d
        self.p_base = self.q_base + d
        self.residual_base = self.p_base + t
        self.logits_bank, self.logits_base = (1, 0) if rows > 1 else (0, self.residual_base + d)
        end = max(self.residual_base + d, self.logits_base + c.vocab_size)
        self.words_used["activation_words"] = end
        _check_fit(end, self.info["activation_words"], f"words in each of the {rows} activation banks")

    # -- uploads -----------------------------------------------------------------------------------

    def _upload_everything(self):
        """The program compiled and every check made; then the weights, the embedding, the
        LayerNorms and the program uploaded."""
        self.entries = self._compile()
        _check_fit(len(self.entries) + 1, self.info["program_words"], "program words (one an op, and the header)")
        super()._upload_everything()
        t, cols = self.t, self.cols
        wpe = t["wpe.weight"]
        for bank in range(cols):
            self.driver.write(Space.WEIGHTS, bank, self.weight_base["wpe"], wpe[bank::cols].tobytes())
        for name in EMBEDDINGS:
            self.driver.write(Space.CONSTANTS, 0, self.constant_base[name], constant_records(t, name).tobytes())
        for name in self.layer_norms:
            self.driver.write(Space.CONSTANTS, 0, self.constant_base[name], norm_columns(t, name).tobytes())
        c = self.config
        words = [pack_header(len(self.entries), c.vocab_size, c.max_position_embeddings), *self.entries]
        self.driver.write(Space.PROGRAM, 0, 0, b"".join(words))

    # -- the program -------------------------------------------------------------------------------

    def _product(self, kind, relocations=(), **fields):
        """A MATMUL entry of the program (BoardOps' products, compiled instead of sent)."""
        self.entries.append(pack_entry(Opcode.MATMUL, fields, relocations))

    def _compile(self):
        """The program's entries: the embedding, every layer, the final LayerNorm, the head."""
        self.entries = []
        self._embed_entries()
        for layer in range(self.config.num_layers):
            self._layer_entries(layer)
        self._norm("ln_f", add=True)
        self._head_entries()
        return self.entries

    def _embed_entries(self):
        """EMBED of the token at its position into the residual row."""
        self.entries.append(pack_entry(
            Opcode.EMBED, dict(d=self.config.hidden_size, token_base=self.weight_base["head"],
                               position_base=self.weight_base["wpe"], token_constants=self.constant_base["embedding"],
                               position_constants=self.constant_base["wpe"], out_address=self.residual_base),
            [Relocation("id", Source.ID), Relocation("position", Source.POSITION)]))

    def _layer_entries(self, layer):
        """One block: LayerNorm, attention (qkv, then each head's scores and P x V), out_proj,
        LayerNorm, the MLP."""
        p = f"h.{layer}."
        self._norm(p + "ln_1", add=layer > 0)
        self._qkv_entries(layer)
        pv = self._pv_constants(layer)
        for head in range(self.config.num_heads):
            self._attend_entries(layer, head, pv)
        self._linear(p + "out_proj", 1, self.hidden_base, self.out_base)
        self._norm(p + "ln_2", add=True)
        low, high = (int(v) for v in self.t[p + "gelu.limits"])
        self._linear(p + "c_fc", 1, self.x_base, self.hidden_base, mode=Mode.GELU,
                     gelu_table=self._gelu_table(layer), gelu_low=low, gelu_high=high)
        self._linear(p + "c_proj", 1, self.hidden_base, self.out_base)

    def _pv_constants(self, layer):
        """The CONSTANTS word of layer ``layer``'s P x V records."""
        return self._parameters(f"h.{layer}.pv")[1]

    def _head_entries(self):
        """The head's logits, and SAMPLE of the next id."""
        self._linear("head", 1, self.x_base, self.logits_base, out_banked=0, out_bank0=self.logits_bank)
        self.entries.append(pack_entry(Opcode.SAMPLE, dict(n=self.config.vocab_size, bank=self.logits_bank,
                                                           address=self.logits_base)))

    def _norm(self, name, add):
        """NORM ``name``: the residual (plus the block output at ``out``, if ``add``) -> x."""
        t = self.t
        low, high = (int(v) for v in t[f"{name}.limits"])
        multiplier, shift = (one_value(t[f"{name}.{field}"], f"{name}'s {field}") for field in ("multiplier", "shift"))
        mean_multiplier, mean_shift, epsilon = (int(v) for v in t["layer_norm.statistics"])
        self.entries.append(pack_entry(Opcode.NORM, dict(
            d=self.config.hidden_size, residual_address=self.residual_base, add=int(add),
            addend_address=self.out_base, columns=self.constant_base[name], multiplier=multiplier, shift=shift,
            low=low, high=high, mean_multiplier=mean_multiplier, mean_shift=mean_shift, epsilon=epsilon,
            out_address=self.x_base)))

    def _qkv_entries(self, layer):
        """q into A; k and v into the caches at the token's slot of the layer's ring."""
        d, ring, cols = self.config.hidden_size, self.slots[layer], self.cols
        kbase, vbase = self.caches[layer]
        w_base, constants = self._parameters(f"h.{layer}.qkv")
        part = d // cols * d
        product = dict(m=1, k=d, n=d, a_base=self.x_base, a_stride=d, w_stride=d, mode=Mode.REQUANTIZE)
        q, k, v = (self._limits(f"h.{layer}.qkv", i * d, d) for i in range(3))
        slot = dict(source=Source.SLOT, ring=ring)
        self._product("qkv", **product, **q, w_base=w_base, constants=constants, out_space=Space.ACTIVATIONS,
                      out_address0=self.q_base, out_stride=d)
        self._product("qkv", **product, **k, w_base=w_base + part, constants=constants + d, out_space=Space.WEIGHTS,
                      out_banked=1, out_address0=kbase, out_stride=d,
                      relocations=[Relocation("out_bank0", **slot, mask=cols - 1),
                                   Relocation("out_address0", **slot, shift=cols.bit_length() - 1, scale=d)])
        self._product("qkv", **product, **v, w_base=w_base + 2 * part, constants=constants + 2 * d,
                      out_space=Space.WEIGHTS, out_transposed=1, out_address0=vbase, out_stride=ring,
                      relocations=[Relocation("out_offset", **slot)])

    def _attend_entries(self, layer, head, pv):
        """One head: q . K over the keys the token sees -> P (SOFTMAX), then P @ V -> its slice of hidden."""
        c = self.config
        d, hd, ring = c.hidden_size, c.head_dim, self.slots[layer]
        kbase, vbase = self.caches[layer]
        pre, constant, shift = (int(v) for v in self.t[f"h.{layer}.softmax"])
        keys = dict(source=Source.KEYS, ring=ring)
        # n = keys and position = keys - 1: the record's all-ones position plus KEYS, modulo 2**16
        self._product("scores + softmax", m=1, k=hd, n=0, a_base=self.q_base + head * hd, a_stride=d,
                      w_base=kbase + head * hd, w_stride=d, mode=Mode.SOFTMAX, softmax_pre=pre,
                      softmax_constant=constant, softmax_shift=shift, position=0xFFFF, window=0,
                      out_space=Space.ACTIVATIONS, out_address0=self.p_base,
                      relocations=[Relocation("n", **keys), Relocation("position", **keys)])
        self._product("P x V", m=1, k=0, n=hd, a_base=self.p_base, w_base=vbase + head * hd // self.cols * ring,
                      w_stride=ring, mode=Mode.REQUANTIZE, constants=pv + head * hd,
                      **self._limits(f"h.{layer}.pv"), out_space=Space.ACTIVATIONS,
                      out_banked=1, out_address0=self.hidden_base + head * hd, out_stride=d,
                      relocations=[Relocation("k", **keys)])

    # -- running ---------------------------------------------------------------------------------

    def token(self, token_id, position, settings):
        """Run the program for ``token_id`` at ``position``; the device's CHOICE (``id``, ``state``).
        ``settings``: SETTINGS' fields (greedy, pre, constant, shift, k, top_p, state)."""
        return self.driver.token(id=int(token_id), position=int(position),
                                 **{name: int(settings.get(name, 0)) for name, _, _ in SETTINGS})

    def logits(self):
        """The int16 logit codes [V] the last token left on the device."""
        v = self.config.vocab_size
        return np.frombuffer(self.driver.read(Space.ACTIVATIONS, self.logits_bank, self.logits_base, v), "<i2")

