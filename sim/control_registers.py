"""The simulated board's stand-in for a DRAM controller's registers, behind the accelerator's control port.

The simulated board's DRAM model needs no initialising, so its designs have no controller; a
design that has one (``dram_controller``, as a board's bitstream has) gets :class:`ControlRegisters`:
words that read back what was last written, each request answered ``latency`` cycles later, as a
controller's bus answers across its clock crossing. It tests the CONTROL space's path through the
accelerator and the host's initialisation over the link; LiteDRAM's own registers are
tests/test_litedram_crossing.py's.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from ..hdl.control_port import CONTROL_WORD_BITS, ControlPort
from ..hdl.wrapping import other_members, pass_through

__all__ = ["ControlRegisters", "WithControlRegisters"]


class ControlRegisters(wiring.Component):
    """``words`` registers answering the ``control`` port after ``latency`` cycles."""

    def __init__(self, words, latency=4):
        self.words, self.latency = words, latency
        super().__init__({"control": In(ControlPort((words - 1).bit_length()))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.registers = registers = memory.Memory(shape=CONTROL_WORD_BITS, depth=self.words, init=[])
        write, read = registers.write_port(), registers.read_port()
        request, response = self.control.request, self.control.response
        countdown = Signal(range(self.latency + 1))
        busy = Signal()
        m.d.comb += [request.ready.eq(~busy), read.addr.eq(request.payload.address),
                     write.addr.eq(request.payload.address), write.data.eq(request.payload.data),
                     write.en.eq(request.valid & request.ready & request.payload.we),
                     read.en.eq(request.valid & request.ready)]
        with m.If(request.valid & request.ready):
            m.d.sync += [busy.eq(1), countdown.eq(self.latency)]
        with m.Elif(busy & (countdown != 0)):
            m.d.sync += countdown.eq(countdown - 1)
        m.d.comb += [response.valid.eq(busy & (countdown == 0)), response.payload.eq(read.data)]
        with m.If(response.valid & response.ready):
            m.d.sync += busy.eq(0)
        return m


class WithControlRegisters(wiring.Component):
    """``top`` (an accelerator with a control port) with :class:`ControlRegisters` on that port; its
    other ports passed through."""

    def __init__(self, top, words):
        self.top, self.words = top, words
        super().__init__(other_members(top, ("control",)))

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        m.submodules.registers = registers = ControlRegisters(self.words)
        wiring.connect(m, top.control, registers.control)
        pass_through(m, top, self, ())
        return m
