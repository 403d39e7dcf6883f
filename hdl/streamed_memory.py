"""The memory behind the DRAM port of a design whose weights the host streams over PCIe.

A board without enough memory for a model's weights (the NiteFury streaming TinyStories-33M) runs
the DRAM design's program all the same: its DRAM space is ``local_words`` words of block RAM (the
KV caches and the records) and, above them, the streamed words. The host pushes the streamed words
on the ``weights`` stream in the order the program reads them (each product's W in the weight fetch
engine's order, EMBED's rows before them), so a read there is answered by the next word pushed,
and no product waits on a round trip.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In

from .axi_stream import AxiStream
from .dram_port import DRAM_WORD_BITS, DramPort
from .wrapping import other_members, pass_through

__all__ = ["WEIGHT_BEAT_BYTES", "StreamedMemory", "WithStreamedMemory"]

WEIGHT_BEAT_BYTES = DRAM_WORD_BITS // 8
"""Bytes of a beat of the weight stream's AXI4-Stream port: a DRAM word (the host pushes whole words)."""


class StreamedMemory(wiring.Component):
    """The DRAM port's other side: block RAM below ``local_words``, the ``weights`` stream above.

    Reads are answered in the order of their commands: a local word a cycle after its command, a
    streamed word as it arrives. A write below ``local_words`` writes its bytes there; a write above
    it is taken and dropped (nothing writes there: the host's plan keeps the results local).

    Parameters
    ----------
    address_width : int
        Bits of the port's word address (the design's DRAM words, streamed ones included).
    local_words : int
        Words of block RAM, the addresses below the streamed ones.
    depth : int
        Reads the port may have outstanding (more than the weight fetch engine reads ahead).

    Attributes
    ----------
    dram : DramPort(address_width), in
        The accelerator's DRAM port.
    weights : stream.Signature(DRAM_WORD_BITS), in
        The streamed words, in the order the program reads them.
    """

    def __init__(self, address_width, local_words, depth=64):
        self.address_width, self.local_words, self.depth = address_width, local_words, depth
        super().__init__({"dram": In(DramPort(address_width)), "weights": In(stream.Signature(DRAM_WORD_BITS))})

    def elaborate(self, platform):
        m = Module()
        cmd, wdata, rdata = self.dram.cmd, self.dram.wdata, self.dram.rdata
        m.submodules.storage = storage = memory.Memory(shape=DRAM_WORD_BITS, depth=self.local_words, init=[])
        write = storage.write_port(granularity=8)
        read = storage.read_port()
        m.submodules.streamed = streamed = fifo.SyncFIFOBuffered(width=1, depth=self.depth)  # each read's source
        m.submodules.words = words = fifo.SyncFIFOBuffered(width=DRAM_WORD_BITS, depth=self.depth)

        local = Signal()
        m.d.comb += local.eq(cmd.payload.addr < self.local_words)
        writing, write_local = Signal(), Signal()           # a write's command taken, its data awaited
        write_address = Signal.like(cmd.payload.addr)
        reading = Signal()                                   # a local read's word comes out of the port now
        in_flight = Signal(range(self.depth + 1))            # local reads taken and not yet answered
        m.d.comb += [read.addr.eq(cmd.payload.addr), read.en.eq(1)]

        # commands: one at a time after a write's data; a read only with room for its word
        room = streamed.w_rdy & (in_flight < self.depth - 1)
        m.d.comb += cmd.ready.eq(~writing & (cmd.payload.we | room))
        taken = cmd.valid & cmd.ready
        m.d.comb += [streamed.w_en.eq(taken & ~cmd.payload.we), streamed.w_data.eq(~local)]
        m.d.sync += reading.eq(taken & ~cmd.payload.we & local)
        with m.If(taken & cmd.payload.we):
            m.d.sync += [writing.eq(1), write_local.eq(local), write_address.eq(cmd.payload.addr)]
        m.d.comb += [wdata.ready.eq(writing), write.addr.eq(write_address), write.data.eq(wdata.payload.data)]
        with m.If(wdata.valid & writing):
            m.d.sync += writing.eq(0)
            with m.If(write_local):
                m.d.comb += write.en.eq(wdata.payload.we)
        m.d.comb += [words.w_en.eq(reading), words.w_data.eq(read.data)]

        # answers, in order: the next local word or the next streamed one
        from_stream = streamed.r_data[0]
        m.d.comb += [rdata.valid.eq(streamed.r_rdy & Mux(from_stream, self.weights.valid, words.r_rdy)),
                     rdata.payload.eq(Mux(from_stream, self.weights.payload, words.r_data))]
        answered = rdata.valid & rdata.ready
        m.d.comb += [streamed.r_en.eq(answered), words.r_en.eq(answered & ~from_stream),
                     self.weights.ready.eq(answered & from_stream)]
        m.d.sync += in_flight.eq(in_flight + (taken & ~cmd.payload.we & local) - (answered & ~from_stream))
        return m



class WithStreamedMemory(wiring.Component):
    """``device`` (an accelerator with ``stream_words``) with a :class:`StreamedMemory` on its
    ``dram`` port: its other ports, and ``weights``, an AXI4-Stream of whole DRAM words (``keep``
    and ``last`` are not looked at: XDMA's second H2C channel, whose transfers the host makes of
    whole words)."""

    def __init__(self, device, local_words):
        self.device, self.local_words = device, local_words
        super().__init__({**other_members(device, ("dram",)), "weights": In(AxiStream(WEIGHT_BEAT_BYTES))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.device = device = self.device
        m.submodules.memory = streamed = StreamedMemory(device.dram_address_width, self.local_words)
        wiring.connect(m, device.dram, streamed.dram)
        m.d.comb += [streamed.weights.valid.eq(self.weights.valid), streamed.weights.payload.eq(self.weights.payload.data),
                     self.weights.ready.eq(streamed.weights.ready)]
        pass_through(m, device, self, ("weights",))
        return m
