"""cocotb testbench of hdl/gelu.py: every output against kernels.integer_gelu, in order.

Environment (run_cocotb's extra_env): TABLES (JSON: the knot tables the design was built with),
LIMITS (JSON: a (low, high) pair per table, the model's own), SEED, VALID_PROBABILITY and
READY_PROBABILITY (random stalls of the input and output streams), RANDOM_COUNT (random
inputs per stream after the edge cases), LATENCY (the component's documented latency).
"""

import json
import os
import random

import cocotb
import numpy as np
from neofpga.contract.numerics import GELU_KNOT_BITS, GELU_KNOTS, INT8, INT16
from neofpga.hdl.gelu import knot_write_layout
from neofpga.host.kernels import integer_gelu
from neofpga.sim.streams import StreamSink, StreamSource, pack, start, stream_unstalled

CLOCK_NS = 10
NARROW = (-2730, 2730)  # TinyStories-33M's c_proj input limit
SEGMENT_STARTS = [256 * j - 32768 for j in range(256)]
EDGE_INPUTS = sorted({-32768, -32767, -1, 0, 1, 32766, 32767}
                     | {x + d for x in SEGMENT_STARTS for d in (-1, 0, 1, 128, 255) if -32768 <= x + d <= 32767})


class Bench:
    """The GELU unit's ports, the knot tables it should hold and the random stalls."""

    def __init__(self, dut):
        self.dut = dut
        self.tables = [np.array(table, dtype=np.int64) for table in json.loads(os.environ["TABLES"])]
        self.limits = [tuple(pair) for pair in json.loads(os.environ["LIMITS"])]
        self.rng = random.Random(int(os.environ["SEED"]))
        self.load_layout = knot_write_layout(len(self.tables))
        valid, ready = float(os.environ["VALID_PROBABILITY"]), float(os.environ["READY_PROBABILITY"])
        self.source = StreamSource(dut, "i", self.rng, valid)
        self.sink = StreamSink(dut, "o", self.rng, ready, signed=True)
        self.loader = StreamSource(dut, "load", self.rng, valid)
        # (`table` is a Verilog keyword, written `\table ` in the Verilog; Verilator names it `table`)
        self.table = dut.table if len(self.tables) > 1 else None

    def random_inputs(self, count):
        """Uniform int16 inputs and, for half of them, the small values a layer mostly sees."""
        return [self.rng.randint(*INT16) if self.rng.random() < 0.5 else
                max(INT16[0], min(INT16[1], round(self.rng.gauss(0, 3000)))) for _ in range(count)]

    def select(self, table, low, high):
        """Point the unit at a table and limits (between streams: the pipeline is empty)."""
        if self.table is not None:
            self.table.value = table
        self.dut.low.value = low & 0xFFFF
        self.dut.high.value = high & 0xFFFF

    async def stream(self, table, limits, inputs):
        """Stream ``inputs`` through ``table`` and compare every output with integer_gelu."""
        self.select(table, *limits)
        cocotb.start_soon(self.source.send([x & 0xFFFF for x in inputs]))
        expected = integer_gelu(np.array(inputs), self.tables[table], *limits).tolist()
        got = await self.sink.receive(len(inputs), within=20 * len(inputs) + 1000)
        mismatches = [(x, g, e) for x, g, e in zip(inputs, got, expected) if g != e]
        assert not mismatches, f"table {table}, limits {limits}: {len(mismatches)} of {len(inputs)} wrong, " \
                               f"first ones (x, got, expected): {mismatches[:5]}"
        return expected

    def load_task(self, table, knots):
        """Start writing ``knots`` into ``table`` through ``load`` (in a shuffled order); the
        expected contents change at once."""
        writes = [(GELU_KNOTS * table + j, int(knot)) for j, knot in enumerate(knots)]
        self.rng.shuffle(writes)
        self.tables[table] = np.array(knots, dtype=np.int64)
        return cocotb.start_soon(self.loader.send(
            [pack(self.load_layout, {"address": address, "value": value}) for address, value in writes]))


def extreme_knots(rng):
    """Knots across the whole 18-bit range, the ends included, with steps of every size."""
    ends = [-2 ** (GELU_KNOT_BITS - 1), 2 ** (GELU_KNOT_BITS - 1) - 1]
    return [rng.choice(ends) if rng.random() < 0.3 else rng.randint(*ends) for _ in range(GELU_KNOTS)]


@cocotb.test()
async def matches_reference(dut):
    """Each table under several limits (the last pair inverted: outside the contract, still
    specified), switching tables and limits between streams."""
    bench = Bench(dut)
    await start(dut, CLOCK_NS)
    count = int(os.environ["RANDOM_COUNT"])
    order = list(range(len(bench.tables))) + list(reversed(range(len(bench.tables))))
    outputs = {}
    for table in order:
        for limits in dict.fromkeys([bench.limits[table], INT16, NARROW, INT8, (-10, 1000), (50, -50)]):
            inputs = EDGE_INPUTS + bench.random_inputs(count)
            outputs.setdefault(limits, set()).update(await bench.stream(table, limits, inputs))
    assert set(INT8) <= outputs[INT8] and NARROW[1] in outputs[NARROW]  # saturated at both ends
    await bench.sink.expect_idle(20)


@cocotb.test()
async def loads_tables(dut):
    """Tables written through ``load`` (one of gelu knots reversed, one of 18-bit extremes) are
    used exactly; the other tables are left as they were."""
    bench = Bench(dut)
    await start(dut, CLOCK_NS)
    last = len(bench.tables) - 1
    for knots in (bench.tables[0][::-1].copy(), extreme_knots(bench.rng)):
        await bench.load_task(last, knots)
        await bench.stream(last, INT16, EDGE_INPUTS + bench.random_inputs(500))
        for table in range(last):
            await bench.stream(table, bench.limits[table], bench.random_inputs(300))
    await bench.sink.expect_idle(20)


@cocotb.test()
async def writes_while_streaming(dut):
    """Writes during a stream: to another table they leave the stream exact; rewriting the
    stream's own table with its own values too."""
    bench = Bench(dut)
    await start(dut, CLOCK_NS)
    first, last = 0, len(bench.tables) - 1
    if last != first:
        writing = bench.load_task(last, extreme_knots(bench.rng))
        await bench.stream(first, bench.limits[first], EDGE_INPUTS + bench.random_inputs(500))
        await writing
        await bench.stream(last, INT16, EDGE_INPUTS)
    writing = bench.load_task(first, bench.tables[first].copy())
    await bench.stream(first, bench.limits[first], EDGE_INPUTS + bench.random_inputs(500))
    await writing
    await bench.sink.expect_idle(20)


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def latency_and_throughput(dut):
    """With the input always valid and the output always ready: LATENCY cycles, one element per cycle."""
    bench = Bench(dut)
    await start(dut, CLOCK_NS)
    limits = bench.limits[0]
    bench.select(0, *limits)
    inputs = EDGE_INPUTS[:300] + bench.random_inputs(200)
    taken, received = await stream_unstalled(dut, [x & 0xFFFF for x in inputs])
    assert [y for _, y in received] == integer_gelu(np.array(inputs), bench.tables[0], *limits).tolist()
    latency = received[0][0] - taken[0]
    cycles = received[-1][0] - received[0][0] + 1
    dut._log.info(f"latency {latency} cycles, {len(inputs)} elements in {cycles} cycles")
    assert latency == int(os.environ["LATENCY"])
    assert taken == list(range(len(inputs))) and cycles == len(inputs)  # no bubble in or out
    await bench.sink.expect_idle(20)
