"""The weight fetch engine: a product's W operand streamed from DRAM in the order the array takes it.

W [n, k] lies in DRAM in the weight banks' layout (hdl/matmul.py), one DRAM word holding the 16
banks' bytes at one address: ``W[j][k]`` is byte ``j % 16`` of word ``base + (j // 16) * stride +
k``. The matmul sequencer reads, for each column tile, for each row tile, every ``k``: one word a
step. The engine issues the same words' reads ahead of the array, as many as its FIFO has room
for, so the DRAM streams while the array computes and the next tiles' words arrive while the
current ones are taken: a product whose words come slower than the array takes them runs at the
DRAM's pace, and nothing else waits.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.protocol import MATMUL_SIZE_BITS
from .dram_port import DRAM_WORD_BITS

__all__ = ["FetchCommand", "WeightFetch"]


def FetchCommand(address_width, size_width=MATMUL_SIZE_BITS):
    """A product's sizes and its W operand's DRAM word address and stride."""
    return data.StructLayout({"m": unsigned(size_width), "k": unsigned(size_width), "n": unsigned(size_width),
                              "base": unsigned(address_width), "stride": unsigned(address_width)})


class WeightFetch(wiring.Component):
    """Reads a product's W words from DRAM into a FIFO of ``depth`` words, in the sequencer's order.

    Parameters
    ----------
    rows, cols : int
        The systolic array: row tiles of ``rows`` rows and column tiles of ``cols`` columns.
    address_width : int
        Bits of a DRAM word address.
    depth : int
        Words read ahead of the array at most (the FIFO's depth).

    Attributes
    ----------
    command : stream.Signature(FetchCommand(address_width)), in
        A product to fetch; taken when the engine has issued every read of the previous one.
    read : stream.Signature(address_width), out
        Read requests, one a word, to the DRAM port.
    rdata : stream.Signature(DRAM_WORD_BITS), in
        The words read, in order (always taken: no read is issued without room for its word).
    o : stream.Signature(DRAM_WORD_BITS), out
        The words, in the sequencer's order.
    busy : Signal(1), out
        A read is still to issue, or a word still to be taken.
    """

    def __init__(self, rows, cols, address_width, depth=32, size_width=MATMUL_SIZE_BITS):
        self.rows, self.cols, self.depth, self.size_width = rows, cols, depth, size_width
        super().__init__({
            "command": In(stream.Signature(FetchCommand(address_width, size_width))),
            "read": Out(stream.Signature(unsigned(address_width))),
            "rdata": In(stream.Signature(DRAM_WORD_BITS)),
            "o": Out(stream.Signature(DRAM_WORD_BITS)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols, sw = self.rows, self.cols, self.size_width
        m.submodules.words = words = fifo.SyncFIFOBuffered(width=DRAM_WORD_BITS, depth=self.depth)
        m.d.comb += [words.w_data.eq(self.rdata.payload), words.w_en.eq(self.rdata.valid),
                     self.rdata.ready.eq(words.w_rdy),
                     self.o.payload.eq(words.r_data), self.o.valid.eq(words.r_rdy), words.r_en.eq(self.o.ready)]

        # words read and not yet taken: a read is issued only with room for its word
        outstanding = Signal(range(self.depth + 1))
        issued, taken = Signal(), Signal()
        m.d.comb += taken.eq(self.o.valid & self.o.ready)
        m.d.sync += outstanding.eq(outstanding + issued - taken)

        # -- the sequencer's walk: column tiles outside, row tiles inside, k innermost ----------
        running = Signal()
        command = Signal.like(self.command.payload)
        k, row_base, col_base = Signal(sw), Signal(sw), Signal(sw)
        tile, address = Signal.like(command.base), Signal.like(command.base)  # the column tile's k = 0, the word
        last_k, last_row_tile, last_col_tile = Signal(), Signal(), Signal()
        m.d.comb += [last_k.eq(k + 1 == command.k), last_row_tile.eq(row_base + rows >= command.m),
                     last_col_tile.eq(col_base + cols >= command.n)]
        m.d.comb += [self.command.ready.eq(~running),
                     self.read.valid.eq(running & (outstanding < self.depth)), self.read.payload.eq(address),
                     issued.eq(self.read.valid & self.read.ready),
                     self.busy.eq(running | (outstanding != 0))]
        with m.If(self.command.valid & self.command.ready):
            payload = self.command.payload
            m.d.sync += [running.eq(1), command.eq(payload), k.eq(0), row_base.eq(0), col_base.eq(0),
                         tile.eq(payload.base), address.eq(payload.base)]
        with m.If(issued):
            with m.If(~last_k):
                m.d.sync += [k.eq(k + 1), address.eq(address + 1)]
            with m.Elif(~last_row_tile):
                m.d.sync += [k.eq(0), row_base.eq(row_base + rows), address.eq(tile)]
            with m.Elif(~last_col_tile):
                m.d.sync += [k.eq(0), row_base.eq(0), col_base.eq(col_base + cols),
                             tile.eq(tile + command.stride), address.eq(tile + command.stride)]
            with m.Else():
                m.d.sync += running.eq(0)
        return m
