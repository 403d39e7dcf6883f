"""cocotb testbench of the matmul sequencer (sim/harness.py's MatmulHarness) against numpy.

Parameters from the environment: ROWS, COLS, ADDRESS_WIDTH.
"""

import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from neofpga.hdl.matmul import MatmulCommand, MatmulResult
from neofpga.sim.matmul_harness import BankWrite
from neofpga.sim.streams import StreamSink, StreamSource, pack, start, unpack

ROWS, COLS, AW = int(os.environ["ROWS"]), int(os.environ["COLS"]), int(os.environ["ADDRESS_WIDTH"])
WRITE = BankWrite(AW)
COMMAND = MatmulCommand(AW)
RESULT = MatmulResult(COLS)


def layout_writes(a, w, a_base, a_stride, w_base, w_stride):
    """Bank writes that place A [M, K] and W [N, K] as docs of hdl/matmul.py say."""
    writes = []
    for (side, matrix, banks, base, stride) in ((0, a, ROWS, a_base, a_stride), (1, w, COLS, w_base, w_stride)):
        for i, row in enumerate(matrix):
            for k, value in enumerate(row):
                writes.append(pack(WRITE, {"weights": side, "bank": i % banks,
                                           "address": base + (i // banks) * stride + k, "value": int(value)}))
    return writes


def product(rng, m, k, n, extreme=False):
    if extreme:
        return np.full((m, k), -32768), np.full((n, k), -128)
    return (np.array([[rng.randint(-32768, 32767) for _ in range(k)] for _ in range(m)]),
            np.array([[rng.randint(-128, 127) for _ in range(k)] for _ in range(n)]))


class Placement:
    """Hands out non-overlapping bank regions, with random gaps and strides a little over K."""

    def __init__(self, rng):
        self.rng, self.free = rng, [0, 0]

    def place(self, m, k, n):
        bases, strides = [], []
        for side, (count, banks) in enumerate(((m, ROWS), (n, COLS))):
            stride = k + self.rng.randint(0, 3)
            base = self.free[side] + self.rng.randint(0, 5)
            self.free[side] = base + -(-count // banks) * stride
            assert self.free[side] <= 2 ** AW, "the test's operands do not fit the banks"
            bases.append(base)
            strides.append(stride)
        return bases[0], strides[0], bases[1], strides[1]


async def run_products(dut, rng, products, stalls):
    """Load every product's operands, run the commands back to back, return the results."""
    load = StreamSource(dut, "load", rng)
    await load.send([word for a, w, place in products for word in layout_writes(a, w, *place)])
    commands = StreamSource(dut, "command", rng, valid_probability=stalls)
    sink = StreamSink(dut, "o", rng, ready_probability=stalls)
    sender = cocotb.start_soon(commands.send([
        pack(COMMAND, {"m": len(a), "k": a.shape[1], "n": len(w), "a_base": place[0], "a_stride": place[1],
                       "w_base": place[2], "w_stride": place[3]}) for a, w, place in products]))
    results = []
    for a, w, _ in products:
        beats = []
        while not beats or not beats[-1]["last"]:
            beats.append(unpack(RESULT, (await sink.receive(1))[0]))
        results.append(beats)
    await sender
    await sink.expect_idle(4 * (ROWS + COLS))
    return results


def check(a, w, beats):
    expected = a.astype(np.int64) @ w.astype(np.int64).T
    m, n = expected.shape
    got = np.full((m, -(-n // COLS) * COLS), None)
    for beat in beats:
        assert beat["row"] < m and got[beat["row"], beat["column"]] is None, f"duplicate or stray beat {beat}"
        got[beat["row"], beat["column"]:beat["column"] + COLS] = beat["sums"]
    assert (got[:, :n] == expected).all(), f"M={m} K={a.shape[1]} N={n}: {got[:, :n]} != {expected}"


async def timed_product(dut, commands, a, w):
    """Run ``a @ w.T`` (operands loaded at 0 with stride K) with the result stream never stalled;
    check the results and return the cycles from the command to the last result row."""
    (m, k), n = a.shape, len(w)
    sender = cocotb.start_soon(commands.send([pack(COMMAND, {"m": m, "k": k, "n": n, "a_base": 0, "a_stride": k,
                                                             "w_base": 0, "w_stride": k})]))
    cycles, beats = 0, []
    while not beats or not beats[-1]["last"]:
        await ReadOnly()
        if dut.o__valid.value:
            beats.append(unpack(RESULT, dut.o__payload.value))
        await RisingEdge(dut.clk)
        cycles += 1
    await sender
    check(a, w, beats)
    return cycles


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def products_match_numpy(dut):
    """Random shapes (not multiples of the array, M = 1, K = 1), extremes, stalls, back to back."""
    rng = random.Random(ROWS * 1000 + COLS)
    await start(dut)
    shapes = [(1, 7, 2 * COLS + 1), (1, 1, 1), (ROWS + 1, 5, COLS - 1 or 1), (2 * ROWS, 9, COLS),
              (3, 2 * max(ROWS, COLS) + 3, 3 * COLS + 2), (ROWS, 3, 1)]
    products, placement = [], Placement(rng)
    for index, (m, k, n) in enumerate(shapes):
        a, w = product(rng, m, k, n, extreme=index == 3)
        products.append((a, w, placement.place(m, k, n)))
    results = await run_products(dut, rng, products, stalls=0.6)
    for (a, w, _), beats in zip(products, results):
        check(a, w, beats)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def full_tiles_keep_the_array_busy(dut):
    """M = 2 rows of tiles, K = 64, N = 3 columns of tiles with a consumer that never stalls:
    cycles from command to last result = tiles * K + fill, i.e. utilisation of full tiles."""
    rng = random.Random(5)
    await start(dut)
    m, k, n = 2 * ROWS, 64, 3 * COLS
    a, w = product(rng, m, k, n)
    place = (0, k, 0, k)
    load = StreamSource(dut, "load", rng)
    await load.send(layout_writes(a, w, *place))
    dut.o__ready.value = 1
    cycles = await timed_product(dut, StreamSource(dut, "command", rng), a, w)
    tiles = (m // ROWS) * (n // COLS)
    useful = m * n * k / (ROWS * COLS)
    dut._log.info(f"{ROWS}x{COLS}: {cycles} cycles for {tiles} tiles of K={k}: utilisation {useful / cycles:.3f}")
    assert cycles <= tiles * k + 2 * (ROWS + COLS) + 8


@cocotb.test(timeout_time=10, timeout_unit="sec")
async def measure_cycles(dut):
    """For the bench: cycles of each product in SHAPES (JSON [[m, k, n], ...]) with a consumer that
    never stalls, written with the simulator's speed to the JSON file RESULTS. Results are checked."""
    import json
    import time

    rng = random.Random(7)
    await start(dut)
    dut.o__ready.value = 1
    commands = StreamSource(dut, "command", rng)
    report, total_cycles, started = [], 0, time.perf_counter()
    for m, k, n in json.loads(os.environ["SHAPES"]):
        a, w = product(rng, m, k, n)
        await StreamSource(dut, "load", rng).send(layout_writes(a, w, 0, k, 0, k))
        total_cycles += m * k + n * k
        cycles = await timed_product(dut, commands, a, w)
        total_cycles += cycles
        report.append({"m": m, "k": k, "n": n, "cycles": cycles})
    checked_seconds = time.perf_counter() - started
    # the simulator's own speed: one long product with nothing from Python until it is done
    m, k, n = ROWS, 2 ** AW // 2, COLS
    await StreamSource(dut, "load", rng).send(layout_writes(*product(rng, m, k, n), 0, k, 0, k))
    await commands.send([pack(COMMAND, {"m": m, "k": k, "n": n, "a_base": 0, "a_stride": k, "w_base": 0,
                                        "w_stride": k})])
    started = time.perf_counter()
    await ClockCycles(dut.clk, 100 * k)
    free_running = 100 * k / (time.perf_counter() - started)
    with open(os.environ["RESULTS"], "w") as f:
        json.dump({"products": report, "simulated_cycles": total_cycles, "wall_seconds": checked_seconds,
                   "free_running_cycles_per_second": free_running}, f)
