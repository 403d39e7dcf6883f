"""The crossing from the accelerator's clock to a board's DRAM controller's: data, and control registers.

LiteDRAM runs at its own clock (50 MHz on the ULX3S, 75 MHz on the ECPIX-5), the accelerator at
the board's system clock. :class:`DramCrossing` carries, through asynchronous FIFOs:

- the accelerator's :class:`~.dram_port.DramPort` to LiteDRAM's native user port, whose words may
  be narrower: a DRAM word is then ``ratio`` consecutive native words, least significant first
  (the ULX3S's port is its SDRAM's 16 bits, so that a DRAM word is 8 back-to-back bursts rather than
  the one-cycle-a-word loss of LiteDRAM's own up-converter);
- the :class:`~.control_port.ControlPort` to LiteDRAM's Wishbone control bus (classic cycles, one
  at a time).

LiteDRAM does not hold back read data, so a read is only commanded when the read FIFO has room for
every word already commanded.
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .control_port import CONTROL_WORD_BITS, ControlPort, ControlRequest
from .dram_port import DRAM_WORD_BITS, DramCommand, DramPort, DramWrite

__all__ = ["NativePort", "WishboneBus", "DramCrossing"]


class NativePort(wiring.Signature):
    """LiteDRAM's native user port, from the side that issues commands: ``address_width`` bits of
    address of ``data_bits``-bit words."""

    def __init__(self, address_width, data_bits):
        self.address_width, self.data_bits = address_width, data_bits
        super().__init__({
            "cmd": Out(stream.Signature(DramCommand(address_width))),
            "wdata": Out(stream.Signature(data.StructLayout({"data": unsigned(data_bits),
                                                             "we": unsigned(data_bits // 8)}))),
            "rdata": In(stream.Signature(data_bits)),
        })


class WishboneBus(wiring.Signature):
    """A 32-bit classic Wishbone bus, from the initiator's side (word addresses of ``address_width`` bits)."""

    def __init__(self, address_width):
        super().__init__({
            "adr": Out(address_width), "dat_w": Out(CONTROL_WORD_BITS), "dat_r": In(CONTROL_WORD_BITS),
            "sel": Out(CONTROL_WORD_BITS // 8), "cyc": Out(1), "stb": Out(1), "we": Out(1), "ack": In(1),
        })


class DramCrossing(wiring.Component):
    """The accelerator's ports (``dram``, ``control``; domain ``sync``) carried to LiteDRAM's
    ``native`` port and ``wishbone`` control bus (domain ``domain``).

    ``address_width``: of the DRAM port's word address; ``native_bits``: of LiteDRAM's port's words
    (a power of two up to a DRAM word); ``native_address_width``: of its address;
    ``control_address_width``: of the control registers' word address; ``depth``: words each data
    FIFO holds.
    """

    def __init__(self, address_width, native_bits, native_address_width, control_address_width, *,
                 domain="dram", depth=32):
        self.ratio = DRAM_WORD_BITS // native_bits
        assert self.ratio * native_bits == DRAM_WORD_BITS and self.ratio & (self.ratio - 1) == 0
        self.domain, self.depth, self.native_bits = domain, depth, native_bits
        super().__init__({
            "dram": In(DramPort(address_width)),
            "control": In(ControlPort(control_address_width)),
            "native": Out(NativePort(native_address_width, native_bits)),
            "wishbone": Out(WishboneBus(control_address_width)),
        })

    def elaborate(self, platform):
        m = Module()
        far = self.domain

        def into(name, source, depth):  # a stream of this domain's into a FIFO read in the far one
            m.submodules[name] = queue = fifo.AsyncFIFO(width=len(source.payload.as_value()), depth=depth,
                                                        w_domain="sync", r_domain=far)
            m.d.comb += [queue.w_data.eq(source.payload), queue.w_en.eq(source.valid), source.ready.eq(queue.w_rdy)]
            return queue

        def back(name, sink, depth):  # a FIFO written in the far domain into a stream of this one's
            m.submodules[name] = queue = fifo.AsyncFIFO(width=len(sink.payload), depth=depth,
                                                        w_domain=far, r_domain="sync")
            m.d.comb += [sink.payload.eq(queue.r_data), sink.valid.eq(queue.r_rdy), queue.r_en.eq(sink.ready)]
            return queue

        commands = into("commands", self.dram.cmd, self.depth)
        writes = into("writes", self.dram.wdata, self.depth)
        reads = back("reads", self.dram.rdata, self.depth)
        requests = into("requests", self.control.request, 2)
        responses = back("responses", self.control.response, 2)

        self._native_side(m, far, commands, writes, reads)
        self._wishbone_side(m, far, requests, responses)
        return m

    def _native_side(self, m, far, commands, writes, reads):
        """A DRAM word's command as ``ratio`` native commands, its data as ``ratio`` native words,
        and the native words read gathered into DRAM words."""
        ratio, native = self.ratio, self.native
        beat_bits = max(1, (ratio - 1).bit_length())
        command = DramCommand(len(self.dram.cmd.payload.addr))(commands.r_data)
        written = DramWrite(writes.r_data)

        # commands: beat ``command_beat`` of the word at the head of the command FIFO
        command_beat = Signal(beat_bits)
        in_flight = Signal(range(self.depth + 1))  # words commanded and not yet in the read FIFO
        read_room = reads.w_level + in_flight < self.depth
        last_command_beat = command_beat == ratio - 1 if ratio > 1 else True
        issue = commands.r_rdy & (command.we | read_room | (command_beat != 0))
        m.d.comb += [native.cmd.valid.eq(issue), native.cmd.payload.we.eq(command.we),
                     native.cmd.payload.addr.eq(Cat(command_beat, command.addr) if ratio > 1 else command.addr),
                     commands.r_en.eq(native.cmd.ready & issue & last_command_beat)]
        starts_read = native.cmd.ready & issue & ~command.we & (command_beat == 0)

        # write data: beat ``write_beat`` of the word at the head of the write FIFO
        write_beat = Signal(beat_bits)
        last_write_beat = write_beat == ratio - 1 if ratio > 1 else True
        m.d.comb += [native.wdata.valid.eq(writes.r_rdy),
                     native.wdata.payload.data.eq(written.data.word_select(write_beat, self.native_bits)
                                                  if ratio > 1 else written.data),
                     native.wdata.payload.we.eq(written.we.word_select(write_beat, self.native_bits // 8)
                                                if ratio > 1 else written.we),
                     writes.r_en.eq(native.wdata.ready & last_write_beat)]

        # read data: native words gathered, least significant first
        read_beat = Signal(beat_bits)
        gathered = Signal(DRAM_WORD_BITS)
        last_read_beat = read_beat == ratio - 1 if ratio > 1 else True
        word = (Cat(gathered[self.native_bits:], native.rdata.payload) if ratio > 1
                else native.rdata.payload)
        arrives = native.rdata.valid & last_read_beat
        m.d.comb += [native.rdata.ready.eq(1), reads.w_data.eq(word), reads.w_en.eq(arrives)]

        if ratio > 1:
            with m.If(native.cmd.valid & native.cmd.ready):
                m.d[far] += command_beat.eq(command_beat + 1)
            with m.If(native.wdata.valid & native.wdata.ready):
                m.d[far] += write_beat.eq(write_beat + 1)
            with m.If(native.rdata.valid):
                m.d[far] += [read_beat.eq(read_beat + 1), gathered.eq(word)]
        m.d[far] += in_flight.eq(in_flight + starts_read - arrives)

    def _wishbone_side(self, m, far, requests, responses):
        """One classic Wishbone cycle a request, its data (a read's) answered."""
        bus = self.wishbone
        request = ControlRequest(len(self.control.request.payload.address))(requests.r_data)
        active = Signal()
        m.d.comb += [bus.adr.eq(request.address), bus.dat_w.eq(request.data), bus.we.eq(request.we),
                     bus.sel.eq(-1), bus.cyc.eq(active), bus.stb.eq(active)]
        with m.If(~active & requests.r_rdy & responses.w_rdy):
            m.d[far] += active.eq(1)
        with m.If(active & bus.ack):
            m.d[far] += active.eq(0)
        m.d.comb += [responses.w_data.eq(bus.dat_r), responses.w_en.eq(active & bus.ack),
                     requests.r_en.eq(active & bus.ack)]
