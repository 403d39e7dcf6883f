"""The result path: the matmul sequencer's row beats to memory writes, through the requantizer,
the GELU unit or the softmax unit.

Every MATMUL of the link protocol (contract/protocol.py) ends here: the sequencer's sums leave one
element a cycle, each is requantized with its column's constants (and passed through GELU), or
each row goes through the softmax unit, and the values become writes into the activation or
weight banks in the layout the command names.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.numerics import GELU_KNOTS
from ..contract.protocol import CONSTANT, MATMUL, Mode, Space
from .gelu import GELU, knot_write_layout
from .matmul import MatmulResult
from .requantizer import Requantizer
from .softmax import Softmax, SoftmaxInput

__all__ = ["record_layout", "ResultWrite", "ResultPath"]


def record_layout(fields):
    """The struct layout of a protocol record: its bytes, little-endian, are the struct's bits."""
    return data.StructLayout({name: (signed if is_signed else unsigned)(8 * size)
                              for name, size, is_signed in fields})


def ResultWrite(address_width):
    """One write into a bank: the space (0 activations, 1 weights), bank, address, value, and
    whether it is the command's last."""
    return data.StructLayout({"weights": 1, "bank": unsigned(8), "address": unsigned(address_width),
                              "value": signed(16), "last": 1})


Element = data.StructLayout({"row": unsigned(12), "column": unsigned(12), "sum": signed(32), "last": 1})


class ResultPath(wiring.Component):
    """Sequencer beats in, bank writes out, for the MATMUL held on ``command`` (stable while busy).

    The column's CONSTANT record is read from the caller's constants memory through
    ``constant_address`` / ``constant_enable`` / ``constant_data`` (one cycle of latency). Output
    layouts and modes are exactly those of contract/protocol.py's MATMUL record. Every stream may
    stall; nothing is dropped or duplicated.

    GELU knot tables are written through ``gelu_load`` (the GELU unit's ``load``).
    """

    def __init__(self, rows, cols, address_width, gelu_tables, softmax_length):
        assert cols & (cols - 1) == 0, "transposed writes take the bank from the column's low bits"
        self.rows, self.cols = rows, cols
        self.address_width = address_width
        self.gelu_tables, self.softmax_length = gelu_tables, softmax_length
        self._gelu = GELU([[0] * GELU_KNOTS] * gelu_tables)
        super().__init__({
            "command": In(record_layout(MATMUL)),
            "i": In(stream.Signature(MatmulResult(cols))),
            "o": Out(stream.Signature(ResultWrite(address_width))),
            "constant_address": Out(unsigned(address_width)),
            "constant_enable": Out(1),
            "constant_data": In(record_layout(CONSTANT)),
            "gelu_load": In(stream.Signature(knot_write_layout(gelu_tables))),
        })

    def elaborate(self, platform):
        m = Module()
        cols, command = self.cols, self.command
        softmax_mode = command.mode == Mode.SOFTMAX

        # -- 1. beats to elements, columns past N dropped --------------------------------------
        beat = Signal.like(self.i.payload)
        index = Signal(range(cols))
        holding = Signal()
        element = stream.Signature(Element).create()
        column = Signal(12)  # beat.column + index
        visible = Signal()  # the softmax's causal and window mask of this column (as a key)
        m.d.comb += [
            element.valid.eq(holding),
            element.payload.row.eq(beat.row),
            element.payload.column.eq(column),
            element.payload.sum.eq(beat.sums[index]),
        ]
        # Whether this element is its beat's last one kept, and its mask, are decided as the
        # element is loaded, into registers: no adder lies on the ready path back into the array
        # or in front of the softmax unit.
        final = Signal()
        m.d.comb += [element.payload.last.eq(beat.last & final),
                     self.i.ready.eq(~holding | (element.ready & final))]

        def visible_key(key):
            position, window = command.position, command.window
            return (key <= position) & ((window == 0) | (position - key < window))

        with m.If(self.i.valid & self.i.ready):
            first = self.i.payload.column
            m.d.sync += [beat.eq(self.i.payload), holding.eq(1), index.eq(0), column.eq(first),
                         final.eq((cols == 1) | (first + 1 >= command.n)), visible.eq(visible_key(first))]
        with m.Elif(element.valid & element.ready):
            with m.If(final):
                m.d.sync += holding.eq(0)
            with m.Else():
                m.d.sync += [index.eq(index + 1), column.eq(column + 1),
                             final.eq((index + 1 == cols - 1) | (column + 2 >= command.n)),
                             visible.eq(visible_key(column + 1))]

        # -- 2a. requantize (and GELU): the constants are read as an element enters stage 2 ------
        m.submodules.requantizer = requantizer = Requantizer()
        m.submodules.gelu = gelu = self._gelu
        wiring.connect(m, wiring.flipped(self.gelu_load), gelu.load)
        m.d.comb += [gelu.table.eq(command.gelu_table), gelu.low.eq(command.gelu_low),
                     gelu.high.eq(command.gelu_high)]
        # coordinates wait beside the units, which keep order and never drop an element
        m.submodules.coordinates = coordinates = fifo.SyncFIFOBuffered(
            width=Element.size - 32, depth=Requantizer.LATENCY + GELU.LATENCY + 4)
        staged = Signal(Element)
        staged_valid = Signal()
        take = Signal()  # stage 2's element goes into the requantizer
        m.d.comb += [take.eq(staged_valid & requantizer.i.ready & coordinates.w_rdy),
                     requantizer.i.valid.eq(staged_valid & coordinates.w_rdy),
                     coordinates.w_en.eq(take),
                     coordinates.w_data.eq(Cat(staged.row, staged.column, staged.last))]
        advance = Signal()
        m.d.comb += advance.eq(~staged_valid | take)
        constants = self.constant_data
        m.d.comb += [
            self.constant_address.eq(command.constants + element.payload.column),
            self.constant_enable.eq(advance),
            requantizer.i.payload.acc.eq(staged.sum),
            requantizer.i.payload.bias.eq(constants.bias),
            requantizer.i.payload.multiplier.eq(constants.multiplier),
            requantizer.i.payload.shift.eq(constants.shift),
            requantizer.i.payload.low.eq(command.low),
            requantizer.i.payload.high.eq(command.high),
        ]
        to_requantizer = Signal()
        m.d.comb += to_requantizer.eq(element.valid & ~softmax_mode)
        with m.If(advance):
            m.d.sync += [staged.eq(element.payload), staged_valid.eq(to_requantizer)]

        with_gelu = command.mode == Mode.GELU
        value = stream.Signature(signed(16)).create()  # the requantized (or GELU) values, in order
        m.d.comb += [gelu.i.payload.eq(requantizer.o.payload),
                     gelu.i.valid.eq(requantizer.o.valid & with_gelu),
                     requantizer.o.ready.eq(Mux(with_gelu, gelu.i.ready, value.ready)),
                     value.valid.eq(Mux(with_gelu, gelu.o.valid, requantizer.o.valid)),
                     value.payload.eq(Mux(with_gelu, gelu.o.payload, requantizer.o.payload)),
                     gelu.o.ready.eq(value.ready & with_gelu)]

        # -- 2b. softmax over the row (M = 1), masked causally and by the window ----------------
        m.submodules.softmax = softmax = Softmax(self.softmax_length)
        # the scores enter through a register: the column mux and the unit's running maximum
        # are a cycle apart
        score = Signal(SoftmaxInput)
        score_valid = Signal()
        score_ready = ~score_valid | softmax.i.ready
        m.d.comb += [
            softmax.pre.eq(command.softmax_pre), softmax.constant.eq(command.softmax_constant),
            softmax.shift.eq(command.softmax_shift),
            softmax.i.valid.eq(score_valid), softmax.i.payload.eq(score),
            element.ready.eq(Mux(softmax_mode, score_ready, advance)),
        ]
        with m.If(element.valid & softmax_mode & score_ready):
            m.d.sync += [score_valid.eq(1), score.score.eq(element.payload.sum), score.visible.eq(visible),
                         score.last.eq(element.payload.last)]
        with m.Elif(softmax.i.ready):
            m.d.sync += score_valid.eq(0)
        probability_column = Signal(12)  # softmax rows leave in column order

        # -- 3. the value with its coordinates: join, then the bank and address ------------------
        result = Signal(signed(16))
        row, col, last = Signal(12), Signal(12), Signal()
        result_valid = Signal()
        result_ready = Signal()
        with m.If(softmax_mode):
            m.d.comb += [result.eq(softmax.o.payload.p), row.eq(0), col.eq(probability_column),
                         last.eq(softmax.o.payload.last), result_valid.eq(softmax.o.valid),
                         softmax.o.ready.eq(result_ready)]
        with m.Else():
            m.d.comb += [result.eq(value.payload),
                         Cat(row, col, last).eq(coordinates.r_data),
                         # a value's coordinates entered the FIFO with its element, so they are
                         # there when it leaves the units: value.ready needs no r_rdy, which keeps
                         # the units' ready chain (into the array's output FIFO) short
                         result_valid.eq(value.valid & coordinates.r_rdy),
                         value.ready.eq(result_ready),
                         coordinates.r_en.eq(result_ready & value.valid)]
        with m.If(result_valid & result_ready):
            m.d.sync += probability_column.eq(Mux(last, 0, probability_column + 1))

        # The layout's running state: the bank and address of the current row (by rows), or of
        # the current block of columns (transposed). A new row or block starts from the command's
        # origin when it is the first (row 0, or block 0), else steps on from the previous one.
        to_weights = command.out_space == Space.WEIGHTS
        banks = Mux(to_weights, self.cols, self.rows)
        current_row = Signal(13, init=2 ** 12)  # an impossible row: the first result starts afresh
        current_bank = Signal(8)
        current_address = Signal(self.address_width)
        block_bits = (cols - 1).bit_length()
        block = col >> block_bits
        current_block = Signal(13, init=2 ** 12)
        block_address = Signal(self.address_width)
        stride = command.out_stride

        row_bank, row_address = Signal(8), Signal(self.address_width)
        with m.If(row == current_row):
            m.d.comb += [row_bank.eq(current_bank), row_address.eq(current_address)]
        with m.Elif(row == 0):
            m.d.comb += [row_bank.eq(command.out_bank0), row_address.eq(command.out_address0)]
        with m.Elif(command.out_banked == 0):
            m.d.comb += [row_bank.eq(current_bank), row_address.eq(current_address + stride)]
        with m.Elif(current_bank + 1 == banks):
            m.d.comb += [row_bank.eq(0), row_address.eq(current_address + stride)]
        with m.Else():
            m.d.comb += [row_bank.eq(current_bank + 1), row_address.eq(current_address)]
        column_address = Signal(self.address_width)
        with m.If(block == current_block):
            m.d.comb += column_address.eq(block_address)
        with m.Elif(block == 0):
            m.d.comb += column_address.eq(command.out_address0)
        with m.Else():
            m.d.comb += column_address.eq(block_address + stride)

        # The layout's bank and addresses are registered with the value, and the final address
        # added a cycle later: the layout's comparisons and the address adders are not one path.
        held = Signal(data.StructLayout({
            "value": signed(16), "row": 12, "col": 12, "last": 1, "row_bank": 8,
            "row_address": self.address_width, "column_address": self.address_width}))
        held_valid = Signal()
        m.d.comb += result_ready.eq(~held_valid | self.o.ready)
        with m.If(result_valid & result_ready):
            m.d.sync += [held_valid.eq(1), held.value.eq(result), held.row.eq(row), held.col.eq(col),
                         held.last.eq(last), held.row_bank.eq(row_bank), held.row_address.eq(row_address),
                         held.column_address.eq(column_address)]
            m.d.sync += [current_row.eq(row), current_bank.eq(row_bank), current_address.eq(row_address),
                         current_block.eq(block), block_address.eq(column_address)]
            with m.If(last):
                m.d.sync += [current_row.eq(2 ** 12), current_block.eq(2 ** 12)]
        with m.Elif(self.o.ready):
            m.d.sync += held_valid.eq(0)

        write = self.o.payload
        m.d.comb += [
            self.o.valid.eq(held_valid),
            write.weights.eq(to_weights),
            write.value.eq(held.value),
            write.last.eq(held.last),
        ]
        with m.If(command.out_transposed != 0):
            m.d.comb += [write.bank.eq(held.col[:block_bits]),
                         write.address.eq(held.column_address + command.out_offset + held.row)]
        with m.Else():
            m.d.comb += [write.bank.eq(held.row_bank), write.address.eq(held.row_address + held.col)]
        return m
