"""Command decode and checks: what contract/protocol.py allows a command to ask of the device.

* :class:`Decoder`: which opcodes are known, and each one's record length;
* :func:`word_bytes_of`, :func:`payload_bytes`: the size of a space's words, and of a run of them;
* :func:`access_refused`: WRITE's and READ's arguments;
* :func:`matmul_refused`: MATMUL's fields;
* :class:`RangeCheck`: every address a MATMUL reads or writes, one stride a cycle.

The checks are expressions for the top level to register: each verdict is taken a cycle after
its comparisons, so they and the state machine's next state are not one combinational path.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..contract.protocol import (
    ACCESS, MATMUL, MATMUL_MAX_SIZE, READ, WORD_BYTES, Mode, Opcode, Space, record_size)
from .results import record_layout

__all__ = ["RECORD_BYTES", "SPACES", "PROGRAM_SPACES", "DRAM_SPACES", "CONTROL_SPACES", "Decoder", "word_bytes_of", "payload_bytes",
           "access_refused", "matmul_refused", "RangeCheck"]

RECORD_BYTES = {Opcode.INFO: 0, Opcode.COUNTERS: 0, Opcode.RESET_COUNTERS: 0,
                Opcode.WRITE: record_size(ACCESS), Opcode.READ: record_size(READ),
                Opcode.MATMUL: record_size(MATMUL)}
"""The bytes of each known opcode's record, which starts its payload: all of it but for WRITE's words."""


class Decoder(wiring.Component):
    """An opcode's decode: whether the device knows it, and the length of its record.

    Parameters
    ----------
    record_bytes : dict
        The known opcodes and their records' bytes (:data:`RECORD_BYTES`, and the vector ops'
        where the device has them).

    Attributes
    ----------
    opcode : Signal(8), in
        A command frame's opcode.
    known : Signal(1), out
        The opcode is one of ``record_bytes``.
    record_length : Signal(16), out
        Its record's length in bytes (0 if the opcode is unknown).
    """

    opcode: In(8)
    known: Out(1)
    record_length: Out(16)

    def __init__(self, record_bytes=RECORD_BYTES):
        self.record_bytes = record_bytes
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        with m.Switch(self.opcode):
            for code, size in self.record_bytes.items():
                with m.Case(code):
                    m.d.comb += [self.known.eq(1), self.record_length.eq(size)]
        return m


SPACES = (Space.ACTIVATIONS, Space.WEIGHTS, Space.CONSTANTS, Space.GELU)
"""The memories of every device; one that runs programs has :data:`PROGRAM_SPACES`, and one with
DRAM (which runs programs) :data:`DRAM_SPACES`, and :data:`CONTROL_SPACES` where a board's DRAM
controller is initialised over the link."""
PROGRAM_SPACES = SPACES + (Space.PROGRAM,)
DRAM_SPACES = PROGRAM_SPACES + (Space.DRAM,)
CONTROL_SPACES = DRAM_SPACES + (Space.CONTROL,)


def _select(spaces, space):
    """The index of ``space`` among ``spaces`` (its low bits: the spaces are 0, 1, ...)."""
    return space[:max(1, (len(spaces) - 1).bit_length())]


def word_bytes_of(space, spaces=SPACES):
    """The bytes of a word of ``space``, one of ``spaces``; for a space past them (which is
    refused) the last one's, never 0, so that counting a payload's words ends."""
    width = max(4, max(WORD_BYTES[s] for s in spaces).bit_length())
    sizes = [WORD_BYTES[s] for s in spaces]
    sizes += sizes[-1:] * ((1 << (len(spaces) - 1).bit_length()) - len(spaces))
    return Array(Const(size, width) for size in sizes)[_select(spaces, space)]


def payload_bytes(space, words, spaces=SPACES):
    """``words * word_bytes_of(space)``, by shifts and adds: no multiplier on this path."""
    return Array(sum(words << bit for bit in range(WORD_BYTES[s].bit_length()) if WORD_BYTES[s] >> bit & 1)
                 for s in spaces)[_select(spaces, space)]


def access_refused(opcode, access, words, remaining, byte_count, *, rows, cols, depths, max_payload,
                   spaces=SPACES):
    """Whether a WRITE or READ of ``words`` words is refused (BAD_ARGUMENT).

    ``access`` is the command's ACCESS (or READ) record, ``remaining`` the bytes of WRITE's payload
    left over after its whole words, ``byte_count`` the bytes of the words (those of a READ's
    answer), ``depths`` the words of each space's banks. Refused: an unknown space or bank, a
    WRITE payload that is not whole words, a READ of the GELU or PROGRAM space (write only), an
    answer longer than ``max_payload`` bytes, or words past the end of the bank. ``spaces``: the
    device's memories.
    """
    space, index = access.space, _select(spaces, access.space)
    banks = Array(Const(n, 9) for n in (rows, cols, 1, 1, 1, 1, 1)[:len(spaces)])[index]
    depth = Array(Const(depths[s], 33) for s in spaces)[index]
    readable = (opcode == Opcode.WRITE) | (space != Space.GELU)
    if Space.PROGRAM in spaces:
        readable &= (opcode == Opcode.WRITE) | (space != Space.PROGRAM)
    fits = byte_count <= max_payload
    return ((space > spaces[-1]) | (access.bank >= banks) | (remaining != 0) | ~readable | ~fits
            | (access.address + words > depth))


def _out_banks(matmul, rows, cols):
    """The bank count of the output space."""
    return Mux(matmul.out_space == Space.WEIGHTS, cols, rows)


def matmul_refused(matmul, *, rows, cols, gelu_tables, softmax_length, constant_words):
    """Whether a MATMUL's fields are refused (BAD_ARGUMENT); its addresses are :class:`RangeCheck`'s.

    Refused: a size outside 1..MATMUL_MAX_SIZE, an unknown mode, a softmax of more than one row or
    longer than ``softmax_length``, an output space other than activations or weights, a
    transposed output to activations, an output bank that does not exist, a GELU table past
    ``gelu_tables``, or column constants past the ``constant_words`` of the constants memory.
    """
    size_ok = ((matmul.m >= 1) & (matmul.m <= MATMUL_MAX_SIZE) & (matmul.k >= 1)
               & (matmul.k <= MATMUL_MAX_SIZE) & (matmul.n >= 1) & (matmul.n <= MATMUL_MAX_SIZE))
    softmax_ok = (matmul.m == 1) & (matmul.n <= softmax_length)
    transposed = matmul.out_transposed != 0
    return (~size_ok | (matmul.mode > Mode.SOFTMAX)
            | ((matmul.mode == Mode.SOFTMAX) & ~softmax_ok)
            | (matmul.out_space > Space.WEIGHTS)
            | (transposed & (matmul.out_space != Space.WEIGHTS))
            | (~transposed & (matmul.out_bank0 >= _out_banks(matmul, rows, cols)))
            | ((matmul.mode == Mode.GELU) & (matmul.gelu_table >= gelu_tables))
            | ((matmul.mode != Mode.SOFTMAX) & (matmul.constants + matmul.n > constant_words)))


class RangeCheck(wiring.Component):
    """The end (last address + 1) of a MATMUL's A, W and output regions in their banks.

    ``start`` sets each end to that of the region's first row (or block of columns), ``step``
    adds one stride to every region with rows left: ``a_end = a_base + k + ((m - 1) // rows) *
    a_stride`` once done, and likewise (contract/protocol.py's layouts). Strides only add, so an
    end past its bank can end the check at once (and the ends stay below 2**33).

    Parameters
    ----------
    rows, cols : int
        The banks of activations and of weights.
    activation_words, weight_words : int
        Words in each activation bank and in each weight bank.
    dram_words : int
        DRAM words, where WEIGHTS continues past ``weight_words`` (contract/protocol.py's
        DRAM_INFO): W lies in the banks' block RAM or in DRAM, not in both.

    Attributes
    ----------
    command : Signal(record_layout(MATMUL)), in
        The MATMUL, its fields checked; held while the check runs.
    start : Signal(1), in
        Start again from the first rows.
    step : Signal(1), in
        Take the next stride.
    past_end : Signal(1), out
        An end lies past its bank: the command is refused.
    done : Signal(1), out
        Every region's last stride is taken: its ends are final.
    """

    command: In(record_layout(MATMUL))
    start: In(1)
    step: In(1)
    past_end: Out(1)
    done: Out(1)

    def __init__(self, rows, cols, *, activation_words, weight_words, dram_words=0):
        self.rows, self.cols = rows, cols
        self.activation_words, self.weight_words, self.dram_words = activation_words, weight_words, dram_words
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rows, cols, matmul = self.rows, self.cols, self.command
        transposed = matmul.out_transposed != 0
        out_banks = _out_banks(matmul, rows, cols)
        out_step = Mux(transposed, cols, Mux(matmul.out_banked != 0, out_banks, 1))
        w_depth = self.weight_words + self.dram_words
        out_depth = Mux(matmul.out_space == Space.WEIGHTS, w_depth, self.activation_words)
        a_end, w_end, out_end = Signal(34), Signal(34), Signal(34)
        a_left, w_left, out_left = Signal(14), Signal(14), Signal(14)  # rows (or columns) left to step over
        past_end = (a_end > self.activation_words) | (w_end > w_depth) | (out_end > out_depth)
        if self.dram_words:  # W from block RAM and DRAM both (w_base is its lowest address, w_end its end)
            past_end |= (matmul.w_base < self.weight_words) & (w_end > self.weight_words)
        m.d.comb += [self.past_end.eq(past_end),
                     self.done.eq((a_left <= rows) & (w_left <= cols) & (out_left <= out_step))]
        with m.If(self.start):
            m.d.sync += [
                a_end.eq(matmul.a_base + matmul.k), a_left.eq(matmul.m),
                w_end.eq(matmul.w_base + matmul.k), w_left.eq(matmul.n),
                out_end.eq(matmul.out_address0 + Mux(transposed, matmul.out_offset + matmul.m, matmul.n)),
                out_left.eq(Mux(transposed, matmul.n, Mux(matmul.out_banked != 0, matmul.out_bank0 + matmul.m,
                                                          matmul.m))),
            ]
        with m.Elif(self.step):
            with m.If(a_left > rows):
                m.d.sync += [a_left.eq(a_left - rows), a_end.eq(a_end + matmul.a_stride)]
            with m.If(w_left > cols):
                m.d.sync += [w_left.eq(w_left - cols), w_end.eq(w_end + matmul.w_stride)]
            with m.If(out_left > out_step):
                m.d.sync += [out_left.eq(out_left - out_step), out_end.eq(out_end + matmul.out_stride)]
        return m
