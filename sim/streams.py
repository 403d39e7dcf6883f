"""cocotb helpers for Amaranth stream ports: clock and reset, a source and a sink with random stalls.

Amaranth names a stream port's members ``<port>__payload``, ``<port>__valid`` and
``<port>__ready``; a struct payload is one packed vector, built and taken apart here with the
component's own ``amaranth.lib.data`` layout so the testbench never repeats bit positions.
"""

from amaranth.hdl import Shape
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["start", "pack", "unpack", "StreamSource", "StreamSink", "stream_unstalled", "cycles_until"]


async def start(dut, period_ns=10, reset_cycles=2):
    """Start ``dut.clk`` and hold ``dut.rst`` for a few cycles."""
    Clock(dut.clk, period_ns, unit="ns").start()
    dut.rst.value = 1
    for _ in range(reset_cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


def pack(layout, values):
    """An integer holding ``values`` laid out as ``layout``: a dict by field name for a struct, a
    sequence for an array layout, nested as the layouts nest."""
    word = 0
    for key, field in layout:
        value = values[key]
        if isinstance(field.shape, data.Layout):
            value = pack(field.shape, value)
        width = Shape.cast(field.shape).width
        word |= (int(value) & ((1 << width) - 1)) << field.offset
    return word


def unpack(layout, word):
    """The fields of ``word``: a dict for a struct, a list for an array layout; signed fields
    sign-extended."""
    word = int(word)
    values = {}
    for key, field in layout:
        shape = Shape.cast(field.shape)
        raw = (word >> field.offset) & ((1 << shape.width) - 1)
        if isinstance(field.shape, data.Layout):
            values[key] = unpack(field.shape, raw)
            continue
        if shape.signed and raw >> (shape.width - 1):
            raw -= 1 << shape.width
        values[key] = raw
    return [values[i] for i in range(len(values))] if isinstance(layout, data.ArrayLayout) else values


class StreamSource:
    """Drives the stream input ``<dut>.<name>__*`` with payloads, stalling at random."""

    def __init__(self, dut, name, rng, valid_probability=1.0):
        self.clk = dut.clk
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.rng, self.probability = rng, valid_probability
        self.valid.value = 0

    async def send(self, payloads):
        """Offer each payload until it is taken, with random bubbles between them."""
        index = 0
        while index < len(payloads):
            valid = self.rng.random() < self.probability
            self.valid.value = int(valid)
            if valid:
                self.payload.value = payloads[index]
            await ReadOnly()
            taken = valid and bool(self.ready.value)
            await RisingEdge(self.clk)
            index += taken
        self.valid.value = 0


class StreamSink:
    """Takes payloads from the stream output ``<dut>.<name>__*``, refusing them at random."""

    def __init__(self, dut, name, rng, ready_probability=1.0, signed=False):
        self.clk = dut.clk
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.rng, self.probability, self.signed = rng, ready_probability, signed
        self.ready.value = 0

    async def receive(self, count, within=None):
        """The next ``count`` payloads (as ints; signed if asked) in the order they came.

        With ``within``, fail after that many cycles instead of waiting forever for a payload
        that was dropped.
        """
        received, cycles = [], 0
        while len(received) < count:
            if within is not None and cycles >= within:
                raise AssertionError(f"{len(received)} of {count} payloads came in {within} cycles: "
                                     "one was dropped or the design hung")
            ready = self.rng.random() < self.probability
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and self.valid.value:
                value = self.payload.value
                received.append(value.to_signed() if self.signed else value.to_unsigned())
            await RisingEdge(self.clk)
            cycles += 1
        self.ready.value = 0
        return received

    async def expect_idle(self, cycles):
        """Assert that no payload is offered for ``cycles`` cycles (nothing duplicated or extra)."""
        self.ready.value = 1
        for _ in range(cycles):
            await ReadOnly()
            assert not self.valid.value, "the stream offered a payload nobody expected"
            await RisingEdge(self.clk)
        self.ready.value = 0


async def stream_unstalled(dut, words, signed=True):
    """Offer ``words`` on ``i`` back to back with ``o`` always ready.

    Returns the cycles at which each word was taken and ``(cycle, payload)`` for each output: what
    a latency and throughput measurement needs.
    """
    dut.o__ready.value = 1
    taken, received, cycle = [], [], 0
    while len(received) < len(words):
        dut.i__payload.value = words[len(taken)] if len(taken) < len(words) else 0
        dut.i__valid.value = int(len(taken) < len(words))
        await ReadOnly()
        if dut.i__valid.value and dut.i__ready.value:
            taken.append(cycle)
        if dut.o__valid.value:
            value = dut.o__payload.value
            received.append((cycle, value.to_signed() if signed else value.to_unsigned()))
        await RisingEdge(dut.clk)
        cycle += 1
    dut.i__valid.value = 0
    return taken, received


async def cycles_until(dut, finished=lambda payload: True):
    """The cycles from the first payload taken on ``i`` to the first payload taken on ``o`` for
    which ``finished(payload)`` holds, both cycles counted: a unit's latency, measured while
    another coroutine drives both streams."""
    first, cycle = None, 0
    while True:
        await ReadOnly()
        if first is None and dut.i__valid.value and dut.i__ready.value:
            first = cycle
        if first is not None and dut.o__valid.value and dut.o__ready.value and finished(dut.o__payload.value):
            return cycle - first + 1
        await RisingEdge(dut.clk)
        cycle += 1
