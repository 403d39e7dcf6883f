"""hdl/softmax.py: the softmax unit against kernels.integer_softmax (cocotb on Verilator), its reciprocal unit
exhaustively at the edges (Amaranth's simulator)."""

from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from neofpga.hdl.softmax import Reciprocal, Softmax
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).with_name("tb_softmax.py")


@pytest.mark.parametrize("max_length", [16, 256])
def test_softmax_matches_integer_softmax(max_length, tmp_path):
    run = run_cocotb(Softmax(max_length), test_module=TB, run_dir=tmp_path,
                     extra_env={"MAX_LENGTH": str(max_length)})
    assert run.tests == [f"tb_softmax.{name}" for name in
                         ("matches_integer_softmax", "arbitrary_parameters", "output_held_back", "cycles_per_row")]


def test_reciprocal_is_exact():
    width = 27  # the sum of 2048 exponentials
    rng = np.random.default_rng(0)
    divisors = [0, 1, 2, 3, 5, 2 ** width - 1, 2 ** (width - 1), 2 ** (width - 1) + 1]
    divisors += [2 ** bits + offset for bits in range(1, width) for offset in (-1, 0, 1)]
    divisors += rng.integers(1, 2 ** width, 200).tolist()
    dut = Reciprocal(width)
    results = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for d in divisors:
            ctx.set(dut.i.payload, d)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            results.append(await ctx.tick().sample(dut.o.payload.r, dut.o.payload.k).until(dut.o.valid))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(testbench)
    simulator.run()
    expected = [(2 ** (d.bit_length() + 15) // d if d else 0, d.bit_length()) for d in map(int, divisors)]
    assert [(int(r), int(k)) for r, k in results] == expected

