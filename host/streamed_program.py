"""A model's program on a PCIe board whose weights it streams: the blocks' matrices pushed every token.

The device is a streamed design (contract/design.py's ``stream``, hdl/streamed_memory.py): the DRAM
design's program over a DRAM space whose first words are block RAM and whose last ``stream_words``
are the host's weight stream. The plan is :class:`~.dram_program.DramProgram`'s with the ends on the
host (the device holds no tied head), and::

    block RAM (the DRAM space's first words): the KV caches, then every record; the stamp last
    the weight stream (the DRAM space's last words): every block's matrix, in the weight banks' layout

Each :meth:`StreamedProgram.token` pushes the streamed words the program reads, in the order it
reads them (every product's W in the weight fetch engine's order: column tiles, row tiles, K) on
the weight channel, while the TOKEN command runs: the device never waits on a round trip, only on
the stream's bandwidth.
"""

import math
import threading
import time

import numpy as np

from ..contract.errors import UserError
from .board_ops import _check_fit
from .dram_program import STAMP_WORDS, DramProgram, _matrix_words, _record_words, matrix_image

__all__ = ["TRANSFER_BYTES", "StreamedProgram"]

TRANSFER_BYTES = 1 << 20
"""Bytes of one DMA transfer of the weight stream, a named pipe's capacity: XDMA's 55 us a transfer
(contract/pcie.py) is then 8 % of a transfer's time at 1.6 GB/s (655 us)."""


class StreamedProgram(DramProgram):
    """The model's program on the streamed design behind ``driver``; ``channel`` takes the weight
    stream (:class:`~.xdma.H2cChannel`: ``write(bytes)``, one DMA transfer a call)."""

    def __init__(self, model, driver, channel, log=None):
        if not driver.device_info.get("stream_words"):
            raise UserError("the device streams no weights")
        self.channel = channel
        self.host_seconds = 0.0  #: the host's time on the model's ends (embedding, head), for the benchmark
        super().__init__(model, driver, host_ends=True, log=log)
        self.stream = self._token_stream()

    def _plan_weights(self):
        """Block RAM: the KV caches, then the records; the weight stream: the matrices."""
        c, window = self.config, self.info["weight_words"]
        self.local_words = self.info["dram_words"] - self.info["stream_words"]
        d = c.hidden_size
        self.requantizers = [name for name in self.requantizers if name != "head"]
        self.matrices = {name: self.t[f"{name}.weight"] for name in self.requantizers if f"{name}.weight" in self.t}
        self.records = self._records()
        available = self.local_words - STAMP_WORDS
        self.context = self._context_that_fits(available - sum(map(_record_words, self.records.values())))
        word = self._place_caches()
        self.record_word = {}
        for name, records in self.records.items():
            self.record_word[name] = word
            word += _record_words(records)
        self.dram_used = self.words_used["dram_words"] = word
        self.stamp_word = self.local_words - 1
        _check_fit(word, available, "block-RAM words of the DRAM space")
        self.stream_start = window + self.local_words  # WEIGHTS address of the first streamed word
        streamed = 0
        self.weight_base = {}
        for name, matrix in self.matrices.items():
            self.weight_base[name] = self.stream_start + streamed
            streamed += _matrix_words(matrix)
        self.words_used["stream_words"] = streamed
        _check_fit(streamed, self.info["stream_words"], "streamed words")
        self.embed_rows = (0, d)

    def dram_image(self):
        """The block RAM's used words (the records; the caches zero): int8 [words, 16]."""
        image = np.zeros((self.dram_used, self.cols), np.int8)
        self._fill_records(image)
        return image

    def _region_starts(self):
        return sorted(self.record_word.values())

    def _compile(self):
        self.stream_reads = []
        return super()._compile()

    def _product(self, kind, relocations=(), **fields):
        """A MATMUL entry; one whose W is streamed adds its words to the stream's reads."""
        if fields.get("w_base", 0) >= self.stream_start:
            assert not any(relocation[0] == "w_base" for relocation in relocations)
            self.stream_reads.append((fields["w_base"] - self.stream_start, fields["w_stride"], fields["k"],
                                      fields["n"], fields["m"]))
        super()._product(kind, relocations, **fields)

    def _token_stream(self):
        """The bytes a token's program reads from the stream, in order: every streamed product's
        words as the weight fetch engine reads them (for each column tile, for each row tile, K words)."""
        words = np.zeros((self.words_used["stream_words"], self.cols), np.int8)
        for name, matrix in self.matrices.items():
            image = matrix_image(matrix, self.cols)
            start = self.weight_base[name] - self.stream_start
            words[start:start + len(image)] = image
        order = [np.arange(k) + start + tile * stride
                 for start, stride, k, n, m in self.stream_reads
                 for tile in range(math.ceil(n / self.cols)) for _ in range(math.ceil(m / self.rows))]
        return words[np.concatenate(order)].tobytes()

    def embedding(self, ids, positions):
        started = time.perf_counter()
        try:
            return super().embedding(ids, positions)
        finally:
            self.host_seconds += time.perf_counter() - started

    def host_head(self, x):
        """The golden head on the device's final row, its time counted in :attr:`host_seconds`."""
        started = time.perf_counter()
        try:
            return super().host_head(x)
        finally:
            self.host_seconds += time.perf_counter() - started

    def token(self, token_id, position, settings):
        """Run the program for ``token_id`` at ``position`` (the host chooses: None), its weights
        pushed on the weight channel while it runs."""
        failure = []

        def push():
            try:
                for at in range(0, len(self.stream), TRANSFER_BYTES):
                    self.channel.write(self.stream[at:at + TRANSFER_BYTES])
            except Exception as e:  # a stalled or failed DMA: the TOKEN then fails too, or this says why
                failure.append(e)

        pusher = threading.Thread(target=push, name="weight stream", daemon=True)
        pusher.start()
        try:
            return super().token(token_id, position, settings)
        finally:
            pusher.join()
            if failure:
                raise failure[0]
