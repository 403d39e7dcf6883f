"""cocotb testbench of hdl/uart.py, on the loopback harness of tests/test_hdl_uart.py.

The harness is a UART whose receiver listens to ``rx`` or, while ``loopback`` is high, to its own
transmitter. The transmitter is checked by a model that samples ``tx`` every cycle, the receiver
by a bit-banged line model that drives ``rx`` at exact times off the clock grid, at the nominal
baud rate or 3 % off.

Environment (run_cocotb's extra_env): DIVISOR (the harness's clock cycles per bit), SEED.
"""

import os
import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer
from neofpga.sim.streams import StreamSink, StreamSource, start, stream_unstalled

CLOCK_NS = 10
FRAME_BITS = 10
EDGE_BYTES = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0x7F, 0xFE]


def divisor():
    return int(os.environ["DIVISOR"])


def seeded():
    return random.Random(int(os.environ["SEED"]))


def random_bytes(rng, count):
    """The edge-case bytes then ``count`` random ones."""
    return EDGE_BYTES + [rng.randrange(256) for _ in range(count)]


def frame(byte, stop=1):
    """One 8N1 frame as ``(level, 1 bit period)`` pairs: start, data least significant first, stop."""
    return [(level, 1) for level in [0, *((byte >> bit) & 1 for bit in range(8)), stop]]


async def reset(dut, loopback):
    """Idle inputs, clock and reset; the receiver listens to ``tx`` if ``loopback``, else to ``rx``."""
    dut.rx.value = 1
    dut.loopback.value = int(loopback)
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await start(dut, CLOCK_NS)


class Pulses:
    """Counts the cycles in which ``framing_error`` and ``overrun`` are high."""

    def __init__(self, dut):
        self.framing_errors = self.overruns = 0
        cocotb.start_soon(self._count(dut))

    async def _count(self, dut):
        while True:
            await ReadOnly()
            self.framing_errors += int(dut.framing_error.value)
            self.overruns += int(dut.overrun.value)
            await RisingEdge(dut.clk)


class TransmitterModel:
    """Samples ``tx`` and the ``i`` handshake every cycle, and decodes the frames on ``tx``.

    Cycle numbers count from the creation of the model, in the same way as
    :func:`~neofpga.sim.streams.stream_unstalled`'s.
    """

    def __init__(self, dut):
        self.dut, self.tx, self.taken = dut, [], []
        cocotb.start_soon(self._sample())

    async def _sample(self):
        dut = self.dut
        while True:
            await ReadOnly()
            if dut.i__valid.value and dut.i__ready.value:
                self.taken.append(len(self.tx))
            self.tx.append(int(dut.tx.value))
            await RisingEdge(dut.clk)

    def frames(self, divisor):
        """``(first cycle of the start bit, byte)`` of every frame so far.

        Every bit must hold one level for exactly ``divisor`` cycles, the start bit low and the stop
        bit high, and the line must be idle (high) between frames and at the end.
        """
        tx, frames, cycle = self.tx, [], 0
        while 0 in tx[cycle:]:
            begin = tx.index(0, cycle)
            cells = [tx[begin + bit * divisor:begin + (bit + 1) * divisor] for bit in range(FRAME_BITS)]
            assert len(cells[-1]) == divisor, f"the frame starting at cycle {begin} is unfinished"
            for bit, cell in enumerate(cells):
                assert len(set(cell)) == 1, f"bit {bit} of the frame at cycle {begin} is not {divisor} " \
                                            f"cycles of one level: {cell}"
            levels = [cell[0] for cell in cells]
            assert levels[0] == 0 and levels[-1] == 1, f"frame at cycle {begin}: {levels}"
            frames.append((begin, sum(level << bit for bit, level in enumerate(levels[1:9]))))
            cycle = begin + FRAME_BITS * divisor
        return frames


class UARTLine:
    """A bit-banged 8N1 sender on ``rx``: each level held for an exact time, unrelated to the clock.

    ``period_scale`` scales the bit period: ``1 / 1.03`` is a sender 3 % fast.
    """

    def __init__(self, dut, rng, divisor, period_scale=1.0):
        self.rx, self.rng = dut.rx, rng
        self.bit_ps = divisor * CLOCK_NS * 1000 * period_scale

    async def drive(self, levels):
        """Hold each ``(level, bit periods)`` in turn, starting at a random phase of the clock."""
        await Timer(self.rng.randrange(1, CLOCK_NS * 1000), unit="ps")
        elapsed_ps, exact_ps = 0, 0.0
        for level, periods in levels:
            self.rx.value = level
            exact_ps += periods * self.bit_ps
            await Timer(round(exact_ps) - elapsed_ps, unit="ps")
            elapsed_ps = round(exact_ps)
        self.rx.value = 1

    async def send(self, payloads, stop=1):
        """``payloads`` back to back, every stop bit ``stop``; then one idle bit."""
        await self.drive([bit for byte in payloads for bit in frame(byte, stop)] + [(1, 1)])


class SlowConsumer:
    """Takes bytes from ``o`` with ``ready`` high at random, and checks that an offered byte is
    neither changed nor withdrawn before it is taken."""

    def __init__(self, dut, rng, ready_probability):
        self.dut, self.rng, self.probability, self.taken = dut, rng, ready_probability, []
        cocotb.start_soon(self._consume())

    async def _consume(self):
        dut, held = self.dut, None  # held: the byte offered and not taken in the previous cycle
        while True:
            ready = self.rng.random() < self.probability
            dut.o__ready.value = int(ready)
            await ReadOnly()
            if dut.o__valid.value:
                byte = int(dut.o__payload.value)
                assert held in (None, byte), f"the offered byte {held:#04x} turned into {byte:#04x}"
                held = None if ready else byte
                if ready:
                    self.taken.append(byte)
            else:
                assert held is None, f"the offered byte {held:#04x} was withdrawn"
            await RisingEdge(dut.clk)


@cocotb.test()
async def transmitter_frames(dut):
    """Exact 8N1 frames on ``tx``, the start bit the cycle after the byte is taken; back to back
    when ``i`` is always valid; no byte lost or duplicated under random stalls."""
    d, rng = divisor(), seeded()
    await reset(dut, loopback=False)
    model = TransmitterModel(dut)
    for valid_probability, payloads in [(1.0, random_bytes(rng, 8)), (0.2, random_bytes(rng, 24))]:
        await StreamSource(dut, "i", rng, valid_probability).send(payloads)
        await ClockCycles(dut.clk, FRAME_BITS * d + 2)
        frames = model.frames(d)[-len(payloads):]
        assert [byte for _, byte in frames] == payloads, "the bytes on tx are not the bytes sent"
        assert [begin for begin, _ in frames] == [cycle + 1 for cycle in model.taken[-len(payloads):]]
        if valid_probability == 1.0:
            starts = [begin for begin, _ in frames]
            assert all(b - a == FRAME_BITS * d for a, b in zip(starts, starts[1:])), "gaps between frames"
    assert len(model.taken) == len(model.frames(d)), "a byte was taken but not sent, or sent twice"
    await StreamSink(dut, "o", rng).expect_idle(5)  # the receiver, listening to the idle rx, is silent


@cocotb.test()
async def receiver_baud_mismatch(dut):
    """Back-to-back random bytes from a sender at the nominal baud rate, 3 % fast and 3 % slow."""
    d, rng = divisor(), seeded()
    await reset(dut, loopback=False)
    pulses, sink = Pulses(dut), StreamSink(dut, "o", rng, ready_probability=0.5)
    for period_scale in (1.0, 1 / 1.03, 1 / 0.97):
        payloads = random_bytes(rng, 16)
        sending = cocotb.start_soon(UARTLine(dut, rng, d, period_scale).send(payloads))
        received = await sink.receive(len(payloads), within=(len(payloads) + 2) * FRAME_BITS * d)
        assert received == payloads, f"bit period x{period_scale:.4f}: got {[hex(b) for b in received]}"
        await sending
        await sink.expect_idle(2 * d)
    assert (pulses.framing_errors, pulses.overruns) == (0, 0)


@cocotb.test()
async def receiver_rejects_glitches(dut):
    """Low pulses shorter than half a bit on an idle line produce no byte and no error; a byte
    that follows is received."""
    d, rng = divisor(), seeded()
    await reset(dut, loopback=False)
    pulses, sink, line = Pulses(dut), StreamSink(dut, "o", rng), UARTLine(dut, rng, d)
    for length in (1 / d, 0.25, 0.45):  # in bit periods
        await line.drive([(0, length), (1, 2)])
    await sink.expect_idle(5)
    assert (pulses.framing_errors, pulses.overruns) == (0, 0)
    sending = cocotb.start_soon(line.send([0x4B]))
    assert await sink.receive(1, within=3 * FRAME_BITS * d) == [0x4B]
    await sending
    await sink.expect_idle(2 * d)


@cocotb.test()
async def receiver_framing_errors(dut):
    """A frame with a low stop bit is dropped and flagged once; after a break (the line held low)
    the receiver waits for the line to go high, and then receives the next frame."""
    d, rng = divisor(), seeded()
    await reset(dut, loopback=False)
    pulses, sink, line = Pulses(dut), StreamSink(dut, "o", rng), UARTLine(dut, rng, d)
    sending = cocotb.start_soon(line.drive(frame(0x35) + frame(0xC3, stop=0) + [(1, 1)] + frame(0x6E)
                                           + frame(0xFF, stop=0) + [(0, 3), (1, 1)] + frame(0x00) + [(1, 1)]))
    assert await sink.receive(3, within=10 * FRAME_BITS * d) == [0x35, 0x6E, 0x00]
    await sending
    await sink.expect_idle(2 * d)
    assert (pulses.framing_errors, pulses.overruns) == (2, 0)


@cocotb.test()
async def receiver_overrun(dut):
    """A byte that completes while the one-byte buffer is full is dropped and flagged, the buffered
    byte is delivered intact; under a random slow consumer every byte taken is one sent, in order,
    and every byte sent is either taken or counted as an overrun."""
    d, rng = divisor(), seeded()
    await reset(dut, loopback=False)
    pulses, line = Pulses(dut), UARTLine(dut, rng, d)
    await line.send([0x11, 0x22, 0x33])  # nobody takes them
    await ClockCycles(dut.clk, d)
    assert (pulses.framing_errors, pulses.overruns) == (0, 2)
    sink = StreamSink(dut, "o", rng)
    assert await sink.receive(1, within=1) == [0x11]
    await sink.expect_idle(2 * d)
    sending = cocotb.start_soon(line.send([0x44]))
    assert await sink.receive(1, within=2 * FRAME_BITS * d) == [0x44]
    await sending

    consumer = SlowConsumer(dut, rng, ready_probability=1 / (1.5 * FRAME_BITS * d))
    payloads = random_bytes(rng, 32)
    await line.send(payloads)
    consumer.probability = 1.0  # take the last byte, if it is still buffered
    await ClockCycles(dut.clk, 5)
    taken, overruns = consumer.taken, pulses.overruns - 2
    remaining = iter(payloads)
    assert all(byte in remaining for byte in taken), f"taken {taken} is not a subsequence of {payloads}"
    assert len(taken) + overruns == len(payloads), f"{len(taken)} taken + {overruns} overruns"
    assert overruns > 0 and len(taken) > 0, "the consumer was not slow enough to test overruns"
    assert pulses.framing_errors == 0


@cocotb.test()
async def loopback(dut):
    """Through the loopback: bytes under random stalls on both streams come back exactly; unstalled,
    one byte every frame and a documented latency."""
    d, rng = divisor(), seeded()
    await reset(dut, loopback=True)
    pulses = Pulses(dut)
    payloads = random_bytes(rng, 40)
    source = StreamSource(dut, "i", rng, valid_probability=0.5)
    sink = StreamSink(dut, "o", rng, ready_probability=0.5)
    cocotb.start_soon(source.send(payloads))
    assert await sink.receive(len(payloads), within=(len(payloads) + 2) * 3 * FRAME_BITS * d) == payloads
    await sink.expect_idle(FRAME_BITS * d)

    payloads = random_bytes(rng, 8)
    taken, received = await stream_unstalled(dut, payloads, signed=False)
    assert [byte for _, byte in received] == payloads
    latency = received[0][0] - taken[0]
    dut._log.info(f"divisor {d}: loopback latency {latency} cycles")
    assert latency == 1 + 9 * d + d // 2 + 3  # tx falls at the edge after the handshake, then UARTReceiver's delay
    assert all(b - a == FRAME_BITS * d for a, b in zip(taken, taken[1:])), "the transmitter left gaps"
    assert [cycle - a for (cycle, _), a in zip(received, taken)] == [latency] * len(payloads)
    assert (pulses.framing_errors, pulses.overruns) == (0, 0)
