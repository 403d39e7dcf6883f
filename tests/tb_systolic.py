"""cocotb testbench of hdl.systolic.SystolicArray: every output row against numpy, under stalls.

Parameters come from the environment: ROWS, COLS, SEED, STALLS (valid/ready probability).
"""

import os
import random

import cocotb
import numpy as np
from amaranth.hdl import signed
from amaranth.lib import data
from neofpga.hdl.systolic import ArrayStep
from neofpga.sim.streams import StreamSink, StreamSource, pack, start, unpack

ROWS, COLS = int(os.environ["ROWS"]), int(os.environ["COLS"])
STEP = ArrayStep(ROWS, COLS)
ROW = data.ArrayLayout(signed(32), COLS)


def tiles(rng):
    """Tiles of random lengths (1 step up to 3 array lengths) with random and extreme values."""
    result = []
    for kind in ["random"] * 8 + ["extreme", "ones", "short", "short", "random"]:
        k = {"short": rng.randint(1, 3), "extreme": rng.randint(1, 40)}.get(kind, rng.randint(1, 3 * max(ROWS, COLS)))
        if kind == "extreme":  # -32768 x -128 in every cell: the largest products
            a = np.full((ROWS, k), -32768)
            b = np.full((COLS, k), -128)
            a[::2] = 32767
        elif kind == "ones":
            a, b = np.ones((ROWS, k), int), np.ones((COLS, k), int)
        else:
            a = np.array([[rng.randint(-32768, 32767) for _ in range(k)] for _ in range(ROWS)])
            b = np.array([[rng.randint(-128, 127) for _ in range(k)] for _ in range(COLS)])
        result.append((a, b))
    return result


def steps_of(a, b):
    k = a.shape[1]
    return [pack(STEP, {"a": a[:, j].tolist(), "b": b[:, j].tolist(), "first": j == 0, "last": j == k - 1})
            for j in range(k)]


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def tiles_match_numpy(dut):
    """Back-to-back tiles of any length, random stalls on both sides: every sum exact, in order."""
    rng = random.Random(int(os.environ.get("SEED", "1")))
    stalls = float(os.environ.get("STALLS", "0.7"))
    await start(dut)
    work = tiles(rng)
    source = StreamSource(dut, "i", rng, valid_probability=stalls)
    sink = StreamSink(dut, "o", rng, ready_probability=stalls)
    sender = cocotb.start_soon(source.send([s for a, b in work for s in steps_of(a, b)]))
    received = await sink.receive(ROWS * len(work))
    await sender
    for index, (a, b) in enumerate(work):
        expected = a.astype(np.int64) @ b.astype(np.int64).T
        got = np.array([unpack(ROW, word) for word in received[index * ROWS:(index + 1) * ROWS]])
        assert np.array_equal(got, expected), f"tile {index} (K = {a.shape[1]}): {got} != {expected}"
    await sink.expect_idle(3 * (ROWS + COLS))


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def full_rate_without_stalls(dut):
    """With no stalls, tiles of K >= max(rows, cols) steps stream at one step a cycle."""
    rng = random.Random(2)
    await start(dut)
    k = max(ROWS, COLS) + 3
    work = [(np.array([[rng.randint(-99, 99) for _ in range(k)] for _ in range(ROWS)]),
             np.array([[rng.randint(-99, 99) for _ in range(k)] for _ in range(COLS)])) for _ in range(6)]
    source, sink = StreamSource(dut, "i", rng), StreamSink(dut, "o", rng)
    cycles = {"start": None}

    async def send_and_time():
        cycles["start"] = cocotb.utils.get_sim_time("ns")
        await source.send([s for a, b in work for s in steps_of(a, b)])
        cycles["sent"] = cocotb.utils.get_sim_time("ns")

    sender = cocotb.start_soon(send_and_time())
    received = await sink.receive(ROWS * len(work))
    await sender
    assert round((cycles["sent"] - cycles["start"]) / 10) == k * len(work)  # one step taken every cycle
    for index, (a, b) in enumerate(work):
        got = np.array([unpack(ROW, word) for word in received[index * ROWS:(index + 1) * ROWS]])
        assert np.array_equal(got, a @ b.T)
