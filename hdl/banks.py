"""The accelerator's memories: the operand banks and the constants, and who uses their ports.

Each memory has one read port and one write port, shared by the command that runs:

* read ports: the matmul sequencer's (A and W) and the result path's (constants) while a product
  runs, READ's when it fetches a word;
* write ports: the result path's writes while a product runs, WRITE's completed words otherwise;
  WRITE's words for the GELU space go to the GELU unit's knot tables instead.

Both write requests come from registers, so the frame buffer's read and the result path's
arithmetic each have a cycle to themselves before the fan-out to every bank.

Two weight banks share one 16-bit memory, each a byte lane of it, where that takes fewer block
RAMs (:func:`paired_weight_banks`). The product reads every weight bank at one address, so a pair
reads as two banks; a write names its lane.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.numerics import GELU_KNOT_BITS
from ..contract.protocol import CONSTANT, CONSTANT_WORD_BITS, Space, record_size
from .gelu import knot_write_layout
from .record_pairs import RecordPairs
from .results import ResultWrite

__all__ = ["CONSTANT_WIDTH", "BLOCK_RAM_BYTES", "paired_weight_banks", "Banks"]

CONSTANT_WIDTH = 8 * record_size(CONSTANT)
"""Bits of a constants word as READ and WRITE carry it (one CONSTANT record), the widest word of
any space; the memory keeps CONSTANT_WORD_BITS of them."""

BLOCK_RAM_BYTES = 2048
"""Bytes of a block RAM (an ECP5 DP16KD: 2,048 by 9 bits, or 1,024 by 18)."""


def paired_weight_banks(cols, weight_words):
    """Whether the weight banks go in pairs, a 16-bit memory each: where a bank's bytes fill half
    a block RAM or less past a whole number of them (the default model's 21,504 take 11 block RAMs
    a bank, 21 a pair)."""
    return cols % 2 == 0 and 0 < weight_words % BLOCK_RAM_BYTES <= BLOCK_RAM_BYTES // 2


class Banks(wiring.Component):
    """The ``rows`` activation banks (16-bit words), the ``cols`` weight banks (8-bit words) and
    the constants memory (one CONSTANT record a word), with their ports shared.

    The read ports are the product's (``a_read``, ``w_read``, ``c_read``) except in a cycle with
    ``reading``, when the bank that ``space`` and ``bank`` name reads ``read_address`` and its
    data comes out on ``read_word`` a cycle later. The write ports take ``result`` (registered)
    except in a cycle after ``writing``, when the bank that ``space`` and ``bank`` name (or the
    GELU unit, through ``gelu_load``) takes the registered ``write_word`` at ``write_address``.

    Parameters
    ----------
    rows, cols : int
        Activation banks and weight banks: the systolic array's size.
    activation_words, weight_words, constant_words : int
        Words in each activation bank, in each weight bank and in the constants memory.
    address_width : int
        Width of every address port (enough for the deepest space).
    gelu_tables : int
        Knot tables of the GELU unit that ``gelu_load`` writes.
    results_in_dram : bool
        WEIGHTS continues into DRAM past ``weight_words``: results at those addresses are not the
        banks' (the accelerator sends them to DRAM); and COPY writes DRAM words into every weight
        bank at once (``copying``, ``copy_word``) or two records at once (``copying_records``: the
        constants are then a :class:`~.record_pairs.RecordPairs`).
    select_registered : bool
        ``read_word`` comes from the memory that ``space`` and ``bank`` named in the ``reading``
        cycle, not in its own: reads of different banks may follow each other every cycle (the
        vector ops'). Without it, ``space`` and ``bank`` must hold for a cycle after each read.

    Attributes
    ----------
    a_read : list of ReadPort.Signature(addr_width=address_width, shape=16), out
        The activation banks' read ports for the matmul sequencer (one cycle of latency).
    w_read : list of ReadPort.Signature(addr_width=address_width, shape=8), out
        The weight banks' read ports for the matmul sequencer, which reads every bank at one
        address (paired banks read at the first one's).
    c_read : ReadPort.Signature(addr_width=address_width, shape=CONSTANT_WIDTH), out
        The constants memory's read port for the result path.
    result : stream.Signature(ResultWrite(address_width)), in
        The result path's writes; always ready. Each is registered, then written.
    result_last : Signal(1), out
        The registered result being written this cycle is its command's last.
    space, bank : Signal(8), in
        The memory READ and WRITE address (an ACCESS record's fields), held while they run.
    reading : Signal(1), in
        Read ``read_address`` of the memory named by ``space`` and ``bank`` in this cycle, in
        place of the product's read.
    read_address : Signal(address_width), in
        READ's address.
    read_word : Signal(CONSTANT_WIDTH), out
        The word read a cycle after ``reading``, zero extended (0 for GELU knots: write only).
    writing : Signal(1), in
        ``write_word`` is complete: it is registered with ``write_address``, and written a cycle
        later in place of the result path's write.
    write_address : Signal(address_width), in
        WRITE's address.
    write_word : Signal(CONSTANT_WIDTH), in
        WRITE's word (the low bits of it for 16-bit, 8-bit and GELU words).
    gelu_load : stream.Signature(knot_write_layout(gelu_tables)), out
        WRITE's words for the GELU space, as knot writes (``ready`` is not waited for: the GELU
        unit's ``load`` is always ready).
    copying : Signal(1), in
        With ``results_in_dram``: ``copy_word`` is registered with ``write_address``, and its byte
        ``c`` written a cycle later into weight bank ``c``, in place of the result path's write.
    copying_records : Signal(1), in
        With ``results_in_dram``: ``copy_word`` is registered with ``write_address``, and its two
        8-byte records written a cycle later into the constants at it and the next address.
    copy_word : Signal(8 * cols), in
        COPY's DRAM word.
    """

    def __init__(self, rows, cols, *, activation_words, weight_words, constant_words, address_width,
                 gelu_tables, results_in_dram=False, select_registered=False):
        self.rows, self.cols = rows, cols
        self.select_registered, self.results_in_dram = select_registered, results_in_dram
        self.activation_words, self.weight_words = activation_words, weight_words
        self.constant_words = constant_words
        self.address_width = address_width
        aw = address_width
        super().__init__({
            "a_read": Out(memory.ReadPort.Signature(addr_width=aw, shape=16)).array(rows),
            "w_read": Out(memory.ReadPort.Signature(addr_width=aw, shape=8)).array(cols),
            "c_read": Out(memory.ReadPort.Signature(addr_width=aw, shape=CONSTANT_WIDTH)),
            "result": In(stream.Signature(ResultWrite(aw))),
            "result_last": Out(1),
            "space": In(8),
            "bank": In(8),
            "reading": In(1),
            "read_address": In(aw),
            "read_word": Out(CONSTANT_WIDTH),
            "writing": In(1),
            "write_address": In(aw),
            "write_word": In(CONSTANT_WIDTH),
            "gelu_load": Out(stream.Signature(knot_write_layout(gelu_tables))),
            **({"copying": In(1), "copying_records": In(1), "copy_word": In(8 * cols)} if results_in_dram
               else {}),
        })

    def elaborate(self, platform):
        m = Module()
        space, bank, reading = self.space, self.bank, self.reading
        a_banks = [memory.Memory(shape=16, depth=self.activation_words, init=[]) for _ in range(self.rows)]
        lanes = 2 if paired_weight_banks(self.cols, self.weight_words) else 1  # weight banks a memory
        w_banks = [memory.Memory(shape=8 * lanes, depth=self.weight_words, init=[])
                   for _ in range(self.cols // lanes)]
        if self.results_in_dram:
            constants = RecordPairs(self.constant_words, CONSTANT_WORD_BITS, self.address_width)
        else:
            constants = memory.Memory(shape=CONSTANT_WORD_BITS, depth=self.constant_words, init=[])
        for index, bank_memory in enumerate(a_banks):
            m.submodules[f"a_bank{index}"] = bank_memory
        for index, bank_memory in enumerate(w_banks):
            m.submodules[f"w_bank{index}"] = bank_memory
        m.submodules.constants = constants
        a_reads = [bank_memory.read_port() for bank_memory in a_banks]
        w_memory_reads = [bank_memory.read_port() for bank_memory in w_banks]
        w_reads = [w_memory_reads[c // lanes].data.word_select(c % lanes, 8) for c in range(self.cols)]  # by bank
        if self.results_in_dram:
            c_read = SimpleNamespace(addr=constants.read_addr, en=constants.read_en, data=constants.read_data)
        else:
            c_read = constants.read_port()

        # -- the read ports: the product's, else READ's in a cycle with ``reading`` ----------------
        for r, (port, user) in enumerate(zip(a_reads, self.a_read)):
            m.d.comb += [port.addr.eq(Mux(reading, self.read_address, user.addr)),
                         port.en.eq(Mux(reading, (space == Space.ACTIVATIONS) & (bank == r), user.en)),
                         user.data.eq(port.data)]
        for p, port in enumerate(w_memory_reads):  # a pair reads at its first bank's address
            users = self.w_read[p * lanes:(p + 1) * lanes]
            m.d.comb += [port.addr.eq(Mux(reading, self.read_address, users[0].addr)),
                         port.en.eq(Mux(reading, (space == Space.WEIGHTS) & (bank // lanes == p),
                                        Cat(user.en for user in users).any()))]
        m.d.comb += [user.data.eq(data) for user, data in zip(self.w_read, w_reads)]
        m.d.comb += [c_read.addr.eq(Mux(reading, self.read_address, self.c_read.addr)),
                     c_read.en.eq(Mux(reading, space == Space.CONSTANTS, self.c_read.en)),
                     self.c_read.data.eq(c_read.data)]
        read_space, read_bank = space, bank
        if self.select_registered:
            read_space, read_bank = Signal.like(space), Signal.like(bank)
            with m.If(reading):
                m.d.sync += [read_space.eq(space), read_bank.eq(bank)]
        m.d.comb += self.read_word.eq(Array([Array(p.data for p in a_reads)[read_bank],
                                             Array(w_reads)[read_bank], c_read.data,
                                             0])[read_space[:2]])

        # -- the write ports: the registered result, else WRITE's registered word ----------------
        stored, stored_word = Signal(), Signal(CONSTANT_WIDTH)  # WRITE's, registered
        stored_address = Signal(self.address_width)
        m.d.sync += [stored.eq(self.writing), stored_word.eq(self.write_word),
                     stored_address.eq(self.write_address)]
        result, result_valid = Signal.like(self.result.payload), Signal()  # the result path's, registered
        m.d.comb += self.result.ready.eq(1)
        m.d.sync += [result.eq(self.result.payload), result_valid.eq(self.result.valid)]
        m.d.comb += self.result_last.eq(result_valid & result.last)

        for r, bank_memory in enumerate(a_banks):
            port = bank_memory.write_port()
            m.d.comb += [port.addr.eq(Mux(stored, stored_address, result.address)),
                         port.data.eq(Mux(stored, stored_word[:16], result.value)),
                         port.en.eq(Mux(stored, (space == Space.ACTIVATIONS) & (bank == r),
                                        result_valid & ~result.weights & (result.bank == r)))]
        result_in_banks = result_valid & result.weights
        if self.results_in_dram:
            result_in_banks &= result.address < self.weight_words
            copied, copied_word = Signal(), Signal.like(self.copy_word)  # COPY's, registered
            records_copied = Signal()
            m.d.sync += [copied.eq(self.copying), copied_word.eq(self.copy_word),
                         records_copied.eq(self.copying_records)]
        for p, bank_memory in enumerate(w_banks):  # a byte written to the lane of its bank
            port = bank_memory.write_port(granularity=8)
            byte = Mux(stored, stored_word[:8], result.value[:8])
            m.d.comb += [port.addr.eq(Mux(stored, stored_address, result.address)), port.data.eq(byte.replicate(lanes))]
            for lane in range(lanes):
                c = p * lanes + lane
                m.d.comb += port.en[lane].eq(Mux(stored, (space == Space.WEIGHTS) & (bank == c),
                                                 result_in_banks & (result.bank == c)))
            if self.results_in_dram:  # COPY's word: every lane, its own byte
                with m.If(copied):
                    m.d.comb += [port.addr.eq(stored_address), port.data.eq(copied_word.word_select(p, 8 * lanes)),
                                 port.en.eq(-1)]
        if self.results_in_dram:
            c_write = SimpleNamespace(addr=constants.write_addr, data=constants.write_data, en=constants.write_en)
        else:
            c_write = constants.write_port()
        m.d.comb += [c_write.addr.eq(stored_address), c_write.data.eq(stored_word[:CONSTANT_WORD_BITS]),
                     c_write.en.eq(stored & (space == Space.CONSTANTS))]
        if self.results_in_dram:
            m.d.comb += [constants.pair_addr.eq(stored_address), constants.pair_data.eq(copied_word),
                         constants.pair_en.eq(records_copied)]
        m.d.comb += [self.gelu_load.payload.address.eq(stored_address),
                     self.gelu_load.payload.value.eq(stored_word[:GELU_KNOT_BITS]),
                     self.gelu_load.valid.eq(stored & (space == Space.GELU))]
        return m
