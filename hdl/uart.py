"""An 8N1 UART: one start bit (low), eight data bits least significant first, one stop bit (high).

The bit period is ``divisor`` clock cycles, fixed at elaboration: ``divisor = f_clk // baud``.
Bytes come and go as ``amaranth.lib.stream`` streams.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTTransmitter", "UARTReceiver", "UART"]

FRAME_BITS = 10  # start, 8 data, stop


def _check_divisor(divisor, minimum):
    if not isinstance(divisor, int) or divisor < minimum:
        raise ValueError(f"divisor must be an integer of at least {minimum}, not {divisor!r}")


class UARTTransmitter(wiring.Component):
    """Sends each byte of ``i`` on ``tx`` as an 8N1 frame, every bit exactly ``divisor`` cycles.

    ``i.ready`` is high while the line is idle and in the last cycle of a stop bit, so a byte
    offered all along follows the previous one with no idle time beyond its stop bit. The start
    bit of a byte taken at a clock edge begins on ``tx`` at that edge. ``tx`` comes straight from
    a register: it never glitches.

    Parameters
    ----------
    divisor : int, >= 1
        Clock cycles per bit.

    Ports
    -----
    i : ``In(stream.Signature(8))``
    tx : ``Out(1)``, high when idle
    """

    def __init__(self, divisor):
        _check_divisor(divisor, 1)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1)})

    def elaborate(self, platform):
        m = Module()

        frame = Signal(FRAME_BITS, init=2 ** FRAME_BITS - 1)  # bit 0 is on the line; ones shift in
        bits_left = Signal(range(FRAME_BITS + 1))             # bits of the frame not yet finished
        timer = Signal(range(self.divisor))                   # cycles of the bit left after this one
        bit_ends = timer == 0

        m.d.comb += [self.tx.eq(frame[0]),
                     self.i.ready.eq((bits_left == 0) | ((bits_left == 1) & bit_ends))]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [frame.eq(Cat(0, self.i.payload, 1)), bits_left.eq(FRAME_BITS),
                         timer.eq(self.divisor - 1)]
        with m.Elif(bits_left != 0):
            with m.If(bit_ends):
                m.d.sync += [frame.eq(Cat(frame[1:], 1)), bits_left.eq(bits_left - 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTReceiver(wiring.Component):
    """Receives 8N1 frames on ``rx`` and offers their bytes on ``o``.

    ``rx`` goes through a two-flip-flop synchroniser. A falling edge starts a frame; the line is
    sampled ``divisor // 2`` cycles later, in the middle of the start bit, and then every
    ``divisor`` cycles, in the middle of each data bit and of the stop bit. The stop bit's sample,
    up to one cycle late for the synchroniser, must fall inside the sender's stop bit: a sender
    may be up to ``(divisor - divisor // 2 - 1) / (10 * divisor)`` fast (3.75 % for a divisor of
    8, 4.4 % for 16) and about 5 % slow. The byte is offered on ``o`` the cycle after the stop bit's
    sample: ``9 * divisor + divisor // 2 + 3`` cycles after the clock edge at which a
    synchronous ``rx`` fell, synchroniser included. The receiver hunts for the next start bit
    from the stop bit's middle on, so frames may follow each other with no idle time, even from
    a slightly fast sender.

    - *Glitch*: if the line is high again at the start bit's middle, the receiver goes back to
      hunting; nothing is delivered or flagged.
    - *Framing error*: if the stop bit is sampled low, the byte is dropped, ``framing_error`` is
      high for one cycle, and the receiver waits for the line to be high before hunting again (a
      line held low, a break, is one framing error, not a train of zero bytes).
    - *Overrun*: ``o``'s payload register is a one-byte buffer. A byte that completes while it
      still holds a byte that is not being taken in that cycle is dropped and ``overrun`` is
      high for one cycle; the buffered byte stays and is delivered intact. So every byte that
      comes out of ``o`` is one that was received, in order; only the newest bytes are lost.

    Parameters
    ----------
    divisor : int, >= 4
        Clock cycles per bit.

    Ports
    -----
    rx : ``In(1)``, asynchronous, high when idle
    o : ``Out(stream.Signature(8))``
    framing_error : ``Out(1)``, a one-cycle pulse per frame dropped for a low stop bit
    overrun : ``Out(1)``, a one-cycle pulse per byte dropped because ``o`` was full
    """

    def __init__(self, divisor):
        _check_divisor(divisor, 4)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)),
                          "framing_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()

        line = Signal(init=1)
        m.submodules.synchronizer = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor))  # cycles to the next sample; free-running outside a frame
        sample = timer == 0
        m.d.sync += timer.eq(Mux(sample, self.divisor - 1, timer - 1))
        data_bit = Signal(range(8))          # the data bit sampled next; wraps to 0 after bit 7
        shift = Signal(8)                    # data bits, the latest one in bit 7

        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("Hunt"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "Start"
            with m.State("Start"):
                with m.If(sample):
                    with m.If(line):  # a glitch, not a start bit
                        m.next = "Hunt"
                    with m.Else():
                        m.next = "Data"
            with m.State("Data"):
                with m.If(sample):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), data_bit.eq(data_bit + 1)]
                    with m.If(data_bit == 7):
                        m.next = "Stop"
            with m.State("Stop"):
                with m.If(sample):
                    with m.If(~line):
                        m.d.sync += self.framing_error.eq(1)
                        m.next = "Break"
                    with m.Elif(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                        m.next = "Hunt"
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                        m.next = "Hunt"
            with m.State("Break"):
                with m.If(line):
                    m.next = "Hunt"
        return m


class UART(wiring.Component):
    """A :class:`UARTTransmitter` and a :class:`UARTReceiver` with the same ``divisor``.

    With ``rx`` driven by ``tx``, a byte taken on ``i`` is offered on ``o``
    ``9 * divisor + divisor // 2 + 4`` cycles later.

    Parameters
    ----------
    divisor : int, >= 4
        Clock cycles per bit, both ways.

    Ports
    -----
    i : ``In(stream.Signature(8))``, bytes to send on ``tx``
    tx : ``Out(1)``
    rx : ``In(1)``
    o : ``Out(stream.Signature(8))``, bytes received on ``rx``
    framing_error, overrun : ``Out(1)``, the receiver's pulses
    """

    def __init__(self, divisor):
        _check_divisor(divisor, 4)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1),
                          "rx": In(1, init=1), "o": Out(stream.Signature(8)),
                          "framing_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.transmitter = transmitter = UARTTransmitter(self.divisor)
        m.submodules.receiver = receiver = UARTReceiver(self.divisor)
        wiring.connect(m, wiring.flipped(self.i), transmitter.i)
        wiring.connect(m, receiver.o, wiring.flipped(self.o))
        m.d.comb += [self.tx.eq(transmitter.tx), receiver.rx.eq(self.rx),
                     self.framing_error.eq(receiver.framing_error), self.overrun.eq(receiver.overrun)]
        return m
