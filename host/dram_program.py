"""A model's program on a device with DRAM: its weights, KV caches and constants resident in DRAM.

The memory plan (D hidden size, T context, V vocabulary; DRAM words of 16 bytes, one byte a
weight bank; ``ww`` the device's block-RAM WEIGHTS words, where WEIGHTS continues into DRAM)::

    DRAM: the K and V caches of every layer (in BoardOps' layouts), every matrix (qkv, out_proj,
          c_fc, c_proj, the head's wte) and wpe, in the weight banks' layout; then every record,
          two a word: each requantizer's CONSTANTs, the embedding's and wpe's, each LayerNorm's
          NORM_COLUMNs, each run starting at a word
    WEIGHTS (block RAM): EMBED's two rows, copied in for the token
    CONSTANTS: the records of the product that runs (at most a MATMUL's columns), the layer's P x V
          records, the LayerNorm's columns, and the embedding's two records, each copied in first
    ACTIVATIONS: as TokenProgram's (one token row; the logits after it, or in bank 1)

The units read only block RAM but W, which the weight fetch engine streams from DRAM; so the
program COPYs each op's records (and EMBED's rows) in before the op. EMBED's copies are relocated
by the token: its row's words (``(id >> 4) * D`` on), the word holding its record (``id >> 1``),
copied to where EMBED, relocated to ``id & 15``, reads them.

With ``host_ends`` (a DRAM that holds the blocks but not the tied wte), the host runs the two ends
of the token in the golden model's integers: it writes the embedded row before TOKEN and reads the
final LayerNorm's row after it, for the head. The program then holds no EMBED and no head, and ends
with a SAMPLE of one code that only the program format asks for. The KV caches take the context
that fits what the blocks leave of the DRAM (:attr:`context`, a multiple of 16).

The weights stay resident between runs: the DRAM's last word is the stamp of the image uploaded
(a digest, written once the upload is whole), so a board that already holds the model is not
sent its tens of megabytes again.
"""

import hashlib
import math
import time

import numpy as np

from ..contract.dram import DRAM_WORD_BYTES
from ..contract.errors import UserError
from ..contract.program import Relocation, Source, pack_entry, pack_header
from ..contract.protocol import MATMUL_MAX_SIZE, Mode, Opcode, Space
from .board_ops import _check_fit, cache_words, constant_records, norm_columns
from .kernels import exact_matmul, requantize
from .token_program import EMBEDDINGS, TokenProgram

__all__ = ["DramProgram", "dram_plan"]

STAMP_WORDS = 1
"""DRAM words the plan leaves at the top of DRAM: the last holds the stamp of the image uploaded."""
UPLOAD_CHUNK = 1 << 20
"""Bytes of the DRAM image sent between two progress lines."""
EMBED_RECORD_SLOTS = 16  # the record of token id lands at slot (id & 15) of these


def _matrix_words(matrix):
    """DRAM words of a matrix W [n, k] in the weight banks' layout: k a column tile."""
    return math.ceil(len(matrix) / DRAM_WORD_BYTES) * matrix.shape[1]


def _record_words(records):
    """DRAM words of 8-byte records, two a word."""
    return -(-len(records) // 2)


def matrix_image(matrix, cols):
    """The DRAM words of matrix W [n, k] in the weight banks' layout: int8 [tiles * k, cols]."""
    tiles, k = math.ceil(len(matrix) / cols), matrix.shape[1]
    padded = np.zeros((tiles * cols, k), np.int8)
    padded[:len(matrix)] = matrix
    return padded.reshape(tiles, cols, k).transpose(0, 2, 1).reshape(-1, cols)


class DramProgram(TokenProgram):
    """The model's program and its DRAM image, uploaded to the device with DRAM behind ``driver``
    (or, with ``preloaded``, already in its DRAM: only the block-RAM parts are uploaded, and a
    word of every region checked); :meth:`token` runs one token."""

    def __init__(self, model, driver, preloaded=False, host_ends=False, log=None):
        info = driver.device_info
        if not info.get("dram_words"):
            raise UserError("the device has no DRAM")
        if info["cols"] != DRAM_WORD_BYTES:
            raise UserError(f"the device's {info['cols']} weight banks are not one a byte of a DRAM word")
        self.preloaded, self.host_ends, self.log = preloaded, host_ends, log or (lambda line: None)
        super().__init__(model, driver)

    # -- the memory plan -------------------------------------------------------------------------

    def _plan_weights(self):
        """The DRAM's regions: ``caches``, ``weight_base`` (WEIGHTS addresses, past the block RAM)
        and ``record_word`` (DRAM words); EMBED's rows in block RAM."""
        c, window = self.config, self.info["weight_words"]
        available = self.info["dram_words"] - STAMP_WORDS
        d = c.hidden_size
        if self.host_ends:
            self.requantizers = [name for name in self.requantizers if name != "head"]
        self.matrices = {name: self.t[f"{name}.weight"] for name in self.requantizers if f"{name}.weight" in self.t}
        if not self.host_ends:
            self.matrices["wpe"] = self.t["wpe.weight"]  # the head's matrix is wte, EMBED's rows
        self.records = self._records()
        fixed = sum(map(_matrix_words, self.matrices.values())) + sum(map(_record_words, self.records.values()))
        self.context = self._context_that_fits(available - fixed)
        word = self._place_caches()
        self.weight_base = {}
        for name, matrix in self.matrices.items():
            self.weight_base[name] = window + word
            word += _matrix_words(matrix)
        self.record_word = {}
        for name, records in self.records.items():
            self.record_word[name] = word
            word += _record_words(records)
        self.dram_used = self.words_used["dram_words"] = word
        self.stamp_word = self.info["dram_words"] - 1
        _check_fit(word, available, "DRAM words")
        self.embed_rows = (0, d)  # the token's and the position's, in every weight bank
        if not self.host_ends:
            self.words_used["weight_words"] = 2 * d
            _check_fit(2 * d, window, "block-RAM words in each weight bank for EMBED's rows")

    def _place_caches(self):
        """Every layer's K and V caches (``slots``: the context, or a local layer's window) from DRAM
        word 0 on, into ``caches`` (their WEIGHTS addresses); the words they take."""
        c, cols, window = self.config, self.cols, self.info["weight_words"]
        self.slots = {layer: min(c.window_size, self.context) if c.attention_layers[layer] == "local" else self.context
                      for layer in self.layers}
        word = 0
        self.caches = {}
        for layer in self.layers:
            k_words, v_words = cache_words(self.slots[layer], cols, c.hidden_size)
            self.caches[layer] = (window + word, window + word + k_words)
            word += k_words + v_words
        return word

    def _context_that_fits(self, words):
        """The model's context, or with ``host_ends`` the longest (a multiple of 16) whose KV caches
        fit ``words`` DRAM words."""
        c, cols, d = self.config, self.cols, self.config.hidden_size

        def caches(context):
            slots = [min(c.window_size, context) if kind == "local" else context for kind in c.attention_layers]
            return sum(sum(cache_words(s, cols, d)) for s in slots)

        if not self.host_ends or caches(c.max_position_embeddings) <= words:
            return c.max_position_embeddings
        context = c.max_position_embeddings // 16 * 16
        while context >= 16 and caches(context) > words:
            context -= 16
        if context < 16:
            raise UserError(f"the model's blocks leave {max(words, 0):,} of the device's {self.info['dram_words']:,} "
                            f"DRAM words, too few for the KV caches of 16 tokens")
        return context

    def _records(self):
        """Every record the program copies in: CONSTANTs by requantizer (and the embedding's, and
        wpe's), NORM_COLUMNs by LayerNorm, as record arrays."""
        records = {name: constant_records(self.t, name)
                   for name in [*self.requantizers, *([] if self.host_ends else EMBEDDINGS)]}
        records.update({name: norm_columns(self.t, name) for name in self.layer_norms})
        return records

    def _plan_activations(self):
        """TokenProgram's rows for one token, P over the context that fits; the logits after them
        (or in bank 1), unless the host runs the head."""
        c, d = self.config, self.config.hidden_size
        self.chunk, self.x_base, self.hidden_base = 1, 0, d
        self.out_base = self.hidden_base + max(d, c.intermediate_size)
        self.q_base = self.out_base + d
        self.p_base = self.q_base + d
        self.residual_base = self.p_base + self.context
        end = self.residual_base + d
        if not self.host_ends:
            self.logits_bank, self.logits_base = (1, 0) if self.rows > 1 else (0, end)
            end = max(end, self.logits_base + c.vocab_size)
        self.words_used["activation_words"] = end
        _check_fit(end, self.info["activation_words"], f"words in each of the {self.rows} activation banks")

    def _plan_constants(self):
        """CONSTANTS: where each op's records are copied to."""
        c, part = self.config, MATMUL_MAX_SIZE // self.cols * self.cols
        widest = max(min(len(self.records[name]), part) for name in self.requantizers if name in self.matrices)
        d = c.hidden_size
        self.product_records = 0
        self.pv_records = widest + widest % 2
        self.norm_columns = self.pv_records + d + d % 2
        self.embed_records = (self.norm_columns + d + d % 2, self.norm_columns + d + d % 2 + EMBED_RECORD_SLOTS)
        end = self.words_used["constant_words"] = self.embed_records[1] + EMBED_RECORD_SLOTS
        _check_fit(end, self.info["constant_words"], "CONSTANTS words for the records copied in")

    # -- the DRAM image and the uploads ------------------------------------------------------------

    def dram_image(self):
        """The DRAM's first ``dram_used`` words as the plan fills them: int8 [words, 16]."""
        cols, window = self.cols, self.info["weight_words"]
        image = np.zeros((self.dram_used, cols), np.int8)
        for name, matrix in self.matrices.items():
            words = matrix_image(matrix, cols)
            start = self.weight_base[name] - window
            image[start:start + len(words)] = words
        self._fill_records(image)
        return image

    def _fill_records(self, image):
        """Every record into ``image`` (DRAM words), two a word from its ``record_word`` on."""
        cols = self.cols
        for name, records in self.records.items():
            data = records.tobytes() + bytes(len(records) % 2 * 8)
            start = self.record_word[name]
            image[start:start + len(data) // DRAM_WORD_BYTES] = np.frombuffer(data, np.int8).reshape(-1, cols)

    def _upload_everything(self):
        """The program compiled and checked; then the DRAM image (unless preloaded: then checked),
        the GELU tables and the program."""
        self.entries = self._compile()
        _check_fit(len(self.entries) + 1, self.info["program_words"], "program words (one an op, and the header)")
        image = self.dram_image()
        if self.preloaded:
            self._check_preloaded(image)
        else:
            self._upload_image(image)
        for table, layer in enumerate(self.layers):
            self._upload_knots(layer, table)
        c = self.config
        words = [pack_header(len(self.entries), c.vocab_size, self.context), *self.entries]
        self.driver.write(Space.PROGRAM, 0, 0, b"".join(words))

    def _upload_image(self, image):
        """The DRAM image, unless the DRAM already holds it: its stamp (the last DRAM word, a digest
        of the image) is read back, and a word of every region checked. The stamp is cleared before
        an upload and written after it, so an interrupted upload is never taken for a whole one."""
        stamp, stamp_word = hashlib.sha256(image.tobytes()).digest()[:DRAM_WORD_BYTES], self.stamp_word
        if self.driver.read(Space.DRAM, 0, stamp_word, 1) == stamp and self._holds(image):
            self.log("the model's weights are already in the device's DRAM")
            return
        forget_resident_image(self.driver)
        data, total, start = image.tobytes(), image.nbytes, time.monotonic()
        for at in range(0, total, UPLOAD_CHUNK):
            self.driver.write(Space.DRAM, 0, at // DRAM_WORD_BYTES, data[at:at + UPLOAD_CHUNK])
            done, seconds = min(at + UPLOAD_CHUNK, total), time.monotonic() - start
            if total > UPLOAD_CHUNK:
                self.log(f"uploading the DRAM image: {done / 1e6:.1f} of {total / 1e6:.1f} MB "
                         f"({100 * done / total:.0f} %, {done / max(seconds, 1e-9) / 1e3:,.0f} kB/s)")
        self.driver.write(Space.DRAM, 0, stamp_word, stamp)

    def _holds(self, image):
        """Whether the first and last word of every region of the DRAM are the image's."""
        return self._first_difference(image) is None

    def _region_starts(self):
        """The DRAM words where the image's regions start: every matrix's and every record run's."""
        return sorted({self.weight_base[name] - self.info["weight_words"] for name in self.matrices}
                      | set(self.record_word.values()))

    def _first_difference(self, image):
        starts = self._region_starts()
        for start, end in zip(starts, [*starts[1:], len(image)]):
            for word in sorted({start, end - 1}):
                if self.driver.read(Space.DRAM, 0, word, 1) != image[word].tobytes():
                    return word
        return None

    def _check_preloaded(self, image):
        """A preloaded DRAM holds this image: the first and last word of every region read back."""
        word = self._first_difference(image)
        if word is not None:
            raise UserError(f"the board's preloaded DRAM differs from this model's image at word {word:,}: "
                            f"preload the image of this model, or upload it (no preload)")

    # -- the program -------------------------------------------------------------------------------

    def _copy(self, source, words, space, address, relocations=()):
        """A COPY entry: DRAM words from ``source`` into ``space`` at ``address``."""
        self.entries.append(pack_entry(Opcode.COPY, dict(source=source, words=words, space=space, address=address),
                                       relocations))

    def _copy_records(self, name, start, count, address):
        """COPY requantizer (or LayerNorm) ``name``'s records ``start`` .. ``start + count - 1`` (``start`` even)."""
        assert start % 2 == 0
        self._copy(self.record_word[name] + start // 2, -(-count // 2), Space.CONSTANTS, address)

    def _pv_constants(self, layer):
        """The layer's P x V records, copied in first."""
        self._copy_records(f"h.{layer}.pv", 0, self.config.hidden_size, self.pv_records)
        return self.pv_records

    def _head_entries(self):
        """The head and SAMPLE; with ``host_ends``, a SAMPLE of one code, which the program format
        asks for and whose choice is not used."""
        if self.host_ends:
            self.entries.append(pack_entry(Opcode.SAMPLE, dict(n=1, bank=0, address=self.x_base)))
        else:
            super()._head_entries()

    def _embed_entries(self):
        """EMBED's rows and records copied in, relocated by the token's id and position; then EMBED
        (nothing with ``host_ends``: the host embeds)."""
        if self.host_ends:
            return
        d, window = self.config.hidden_size, self.info["weight_words"]
        token_row, position_row = self.embed_rows
        token_records, position_records = self.embed_records
        for matrix, row, source in (("head", token_row, Source.ID), ("wpe", position_row, Source.POSITION)):
            self._copy(self.weight_base[matrix] - window, d, Space.WEIGHTS, row,
                       [Relocation("source", source, shift=4, scale=d)])
        for name, slots, source in (("embedding", token_records, Source.ID), ("wpe", position_records,
                                                                              Source.POSITION)):
            self._copy(self.record_word[name], 1, Space.CONSTANTS, slots,
                       [Relocation("source", source, shift=1), Relocation("address", source, mask=14)])
        self.entries.append(pack_entry(
            Opcode.EMBED, dict(d=d, token_base=token_row, position_base=position_row,
                               token_constants=token_records, position_constants=position_records,
                               out_address=self.residual_base),
            [Relocation("id", Source.ID, mask=15), Relocation("position", Source.POSITION, mask=15)]))

    def _norm(self, name, add):
        """NORM ``name`` with its columns copied in first."""
        self._copy_records(name, 0, self.config.hidden_size, self.norm_columns)
        saved, self.constant_base = getattr(self, "constant_base", {}), {name: self.norm_columns}
        try:
            super()._norm(name, add)
        finally:
            self.constant_base = saved

    def _qkv_entries(self, layer):
        """q, k and v, each with its third of the records copied in."""
        d, ring, cols = self.config.hidden_size, self.slots[layer], self.cols
        kbase, vbase = self.caches[layer]
        name = f"h.{layer}.qkv"
        w_base = self.weight_base[name]
        part = d // cols * d
        product = dict(m=1, k=d, n=d, a_base=self.x_base, a_stride=d, w_stride=d, mode=Mode.REQUANTIZE,
                       constants=self.product_records)
        slot = dict(source=Source.SLOT, ring=ring)
        outputs = [
            dict(out_space=Space.ACTIVATIONS, out_address0=self.q_base, out_stride=d),
            dict(out_space=Space.WEIGHTS, out_banked=1, out_address0=kbase, out_stride=d,
                 relocations=[Relocation("out_bank0", **slot, mask=cols - 1),
                              Relocation("out_address0", **slot, shift=cols.bit_length() - 1, scale=d)]),
            dict(out_space=Space.WEIGHTS, out_transposed=1, out_address0=vbase, out_stride=ring,
                 relocations=[Relocation("out_offset", **slot)]),
        ]
        for i, out in enumerate(outputs):
            self._copy_records(name, i * d, d, self.product_records)
            self._product("qkv", **product, **self._limits(name, i * d, d), w_base=w_base + i * part, **out)

    def _linear(self, name, m, a_base, out_base, out_banked=1, out_bank0=0, **fields):
        """A matrix product in parts of whole weight banks, each part's records copied in first."""
        n, k = self.t[f"{name}.weight"].shape
        w_base = self.weight_base[name]
        part = MATMUL_MAX_SIZE // self.cols * self.cols
        for start in range(0, n, part):
            count = min(part, n - start)
            self._copy_records(name, start, count, self.product_records)
            self._product(name.split(".")[-1], m=m, k=k, n=count, a_base=a_base, a_stride=k,
                          w_base=w_base + start // self.cols * k, w_stride=k, constants=self.product_records,
                          **self._limits(name, start, part), out_space=Space.ACTIVATIONS, out_banked=out_banked,
                          out_bank0=out_bank0, out_address0=out_base + start, out_stride=n, **fields)

    def _gelu_table(self, layer):
        return self.layers.index(layer)

    # -- running ---------------------------------------------------------------------------------

    def token(self, token_id, position, settings):
        """Run the program for ``token_id`` at ``position``: the device's CHOICE; with ``host_ends``,
        its embedded row written first, and None (the host chooses, from :meth:`logits`)."""
        if not self.host_ends:
            return super().token(token_id, position, settings)
        row = self.embedding(np.array([[token_id]]), np.array([position]))[0, 0]
        self.driver.write(Space.ACTIVATIONS, 0, self.residual_base, row.astype("<i2").tobytes())
        super().token(token_id, position, settings)
        return None

    def logits(self):
        """The int16 logit codes [V] of the last token: the device's, or with ``host_ends`` the
        golden head's on the device's final row."""
        if not self.host_ends:
            return super().logits()
        d = self.config.hidden_size
        return self.host_head(np.frombuffer(self.driver.read(Space.ACTIVATIONS, 0, self.x_base, d), "<i2"))

    def host_head(self, x):
        """The golden head's int16 logit codes [V] on final row ``x`` (int16 codes [D])."""
        t, x = self.t, x.astype(np.int64)
        if not hasattr(self, "head_weight"):
            self.head_weight = t["head.weight"].astype(np.float32)  # exact_matmul's operand
        limits = t["head.limits"]
        return requantize(exact_matmul(x[None], self.head_weight), t["head.bias"], t["head.multiplier"],
                          t["head.shift"], limits[..., 0], limits[..., 1])[0]


def forget_resident_image(driver):
    """Clear the DRAM's stamp, so that the next program uploads its image again (for a test that
    overwrites the DRAM: the stamp alone would not see its words changed)."""
    info = driver.device_info  # the stamp is the last word of memory: below the streamed words, if any
    driver.write(Space.DRAM, 0, info["dram_words"] - info.get("stream_words", 0) - 1, bytes(DRAM_WORD_BYTES))


def dram_plan(model, info):
    """``host_ends`` for a model on a device with DRAM (INFO ``info``): False where the whole model
    fits its DRAM, True where the blocks do; a one-line error, saying what would fit, where neither does."""
    from .driver import PlanningDriver

    try:
        DramProgram(model, PlanningDriver(info))
        return False
    except UserError as whole:
        try:
            DramProgram(model, PlanningDriver(info), host_ends=True)
            return True
        except UserError as blocks:
            mib = info["dram_words"] * DRAM_WORD_BYTES / 2 ** 20
            raise UserError(f"the model fits no plan of the device's {mib:,.0f} MiB of DRAM: whole, {whole}; "
                            f"its blocks alone, {blocks}") from None
