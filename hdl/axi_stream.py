"""The AXI4-Stream host port: beats of ``data_bytes`` bytes with ``keep`` and ``last``, as Xilinx's
XDMA carries a PCIe DMA's data to the card (H2C) and back (C2H) in AXI4-Stream mode, and the
accelerator's answer bytes packed into such beats.

A beat's bytes are its ``data`` LSB first, those whose ``keep`` bit is set; XDMA sets ``last`` on
the last beat of a host's write (an H2C transfer), and ends a host's read (a C2H transfer) at a beat
with ``last``. :class:`AxiStreamHost` puts the accelerator behind such a pair of streams: the H2C
beats straight into its beat port (a command frame a transfer, hdl/beat_framing.py), its answer
bytes through :class:`BytesToBeats`, each answer frame one C2H transfer.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .wrapping import other_members, pass_through

__all__ = ["AxiStreamBeat", "AxiStream", "FrameByte", "BytesToBeats", "AxiStreamHost"]


def AxiStreamBeat(data_bytes):
    """One beat: ``data`` (tdata), ``keep`` (tkeep, a bit a byte) and ``last`` (tlast)."""
    return data.StructLayout({"data": 8 * data_bytes, "keep": data_bytes, "last": 1})


def AxiStream(data_bytes=8):
    """An AXI4-Stream of :func:`AxiStreamBeat` beats (valid and ready are tvalid and tready)."""
    return stream.Signature(AxiStreamBeat(data_bytes))


FrameByte = data.StructLayout({"data": 8, "last": 1})
"""A byte of a device's answers, ``last`` on the last byte of a frame."""


class BytesToBeats(wiring.Component):
    """C2H: bytes gathered into beats, LSB first; a beat goes when it is full or holds a frame's
    last byte (then with ``last``, and ``keep`` set for the bytes it holds). Takes a byte a cycle.

    Attributes
    ----------
    i : stream.Signature(FrameByte), in
    o : AxiStream(data_bytes), out
    """

    def __init__(self, data_bytes=8):
        exact_log2(data_bytes)
        self.data_bytes = data_bytes
        super().__init__({"i": In(stream.Signature(FrameByte)), "o": Out(AxiStream(data_bytes))})

    def elaborate(self, platform):
        m = Module()
        n = self.data_bytes
        count = Signal(range(n + 1))  # bytes gathered into the beat
        done = Signal()               # the beat is offered
        beat = Signal.like(self.o.payload)
        m.d.comb += [self.o.valid.eq(done), self.o.payload.eq(beat)]
        leaving = done & self.o.ready
        m.d.comb += self.i.ready.eq(~done | self.o.ready)
        with m.If(leaving):
            m.d.sync += [done.eq(0), count.eq(0), beat.keep.eq(0), beat.last.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            at = Signal(range(n))
            m.d.comb += at.eq(Mux0(leaving, count))
            m.d.sync += [beat.data.word_select(at, 8).eq(self.i.payload.data),
                         beat.keep.eq(Mux0(leaving, beat.keep) | (1 << at)),
                         beat.last.eq(self.i.payload.last), count.eq(at + 1),
                         done.eq(self.i.payload.last | (at == n - 1))]
        return m


def Mux0(clear, value):
    """``value``, or 0 where ``clear``: a register's next value as seen by the cycle that empties it."""
    return value & ~clear.replicate(len(value))


class AxiStreamHost(wiring.Component):
    """A device that takes beats on ``i`` (an accelerator with ``pcie_beat_bytes``) and gives link
    bytes on ``o`` (and ``o_last`` on each frame's last byte) behind an AXI4-Stream pair: ``h2c``
    beats in, ``c2h`` beats out, an answer frame a C2H transfer (``last`` on its last beat). The
    device's other ports (``dram``, ``control``, ``weights``) are passed through.

    Attributes
    ----------
    h2c : AxiStream(data_bytes), in
    c2h : AxiStream(data_bytes), out
    """

    def __init__(self, device, data_bytes=8):
        self.device, self.data_bytes = device, data_bytes
        super().__init__({"h2c": In(AxiStream(data_bytes)), "c2h": Out(AxiStream(data_bytes)),
                          **other_members(device, ("i", "o", "o_last"))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.device = device = self.device
        m.submodules.to_beats = to_beats = BytesToBeats(self.data_bytes)
        wiring.connect(m, wiring.flipped(self.h2c), device.i)
        m.d.comb += [to_beats.i.valid.eq(device.o.valid), to_beats.i.payload.data.eq(device.o.payload),
                     to_beats.i.payload.last.eq(device.o_last), device.o.ready.eq(to_beats.i.ready)]
        wiring.connect(m, to_beats.o, wiring.flipped(self.c2h))
        pass_through(m, device, self, ("h2c", "c2h"))
        return m
