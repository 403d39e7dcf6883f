"""The DRAM port shared by the accelerator's reads and writes.

Reads come from one reader at a time (a product's :class:`~.weight_fetch.WeightFetch`, or READ of
the DRAM space), writes from a product's results or WRITE. A write waiting goes first: a product
that wrote a KV cache entry has issued every write before the next product reads, and a controller
that keeps each bank's commands in order (LiteDRAM does) then returns what was written.
"""

from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .dram_port import DRAM_WORD_BITS, DramPort
from .write_combiner import WordWrite

__all__ = ["DramArbiter"]


class DramArbiter(wiring.Component):
    """Word reads and writes onto one :class:`~.dram_port.DramPort`.

    Attributes
    ----------
    read : stream.Signature(address_width), in
        Read requests: a word's address.
    rdata : stream.Signature(DRAM_WORD_BITS), out
        The words read, in order (the port's ``rdata``).
    write : stream.Signature(WordWrite(address_width)), in
        Word writes; one is taken once the port has taken its data.
    dram : DramPort(address_width), out
        The port.
    idle : Signal(1), out
        No write is between its command and its data.
    """

    def __init__(self, address_width):
        super().__init__({
            "read": In(stream.Signature(unsigned(address_width))),
            "rdata": Out(stream.Signature(DRAM_WORD_BITS)),
            "write": In(stream.Signature(WordWrite(address_width))),
            "dram": Out(DramPort(address_width)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cmd, wdata = self.dram.cmd, self.dram.wdata
        rdata = self.dram.rdata
        m.d.comb += [self.rdata.payload.eq(rdata.payload), self.rdata.valid.eq(rdata.valid),
                     rdata.ready.eq(self.rdata.ready)]
        m.d.comb += wdata.payload.eq(self.write.payload.word)
        with m.FSM():
            with m.State("COMMAND"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.write.valid):
                    m.d.comb += [cmd.valid.eq(1), cmd.payload.we.eq(1), cmd.payload.addr.eq(self.write.payload.address)]
                    with m.If(cmd.ready):
                        m.next = "WRITE_DATA"
                with m.Else():
                    m.d.comb += [cmd.valid.eq(self.read.valid), cmd.payload.addr.eq(self.read.payload),
                                 self.read.ready.eq(cmd.ready)]
            with m.State("WRITE_DATA"):
                m.d.comb += [wdata.valid.eq(1), self.write.ready.eq(wdata.ready)]
                with m.If(wdata.ready):
                    m.next = "COMMAND"
        return m
