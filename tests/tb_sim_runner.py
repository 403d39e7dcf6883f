"""cocotb testbench for the stream adder of test_sim_runner.py, run inside the simulator.

The addend comes in the ADDEND environment variable (run_cocotb's extra_env)."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

import neofpga.sim  # noqa: F401  the project's package is importable in the simulator too


@cocotb.test(timeout_time=100, timeout_unit="us")
async def adds(dut):
    """Random payloads under random valid/ready come out as (payload + ADDEND), in order."""
    addend = int(os.environ["ADDEND"])
    rng = random.Random(1)
    inputs = [rng.randrange(256) for _ in range(200)]
    expected = [x + addend for x in inputs]

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await RisingEdge(dut.clk)
    dut.rst.value = 0

    pending, got = list(inputs), []
    while len(got) < len(expected):
        valid, ready = bool(pending) and rng.random() < 0.7, rng.random() < 0.7
        dut.i__valid.value = valid
        dut.i__payload.value = pending[0] if pending else 0
        dut.o__ready.value = ready
        await ReadOnly()  # the values the next edge will see
        if valid and dut.i__ready.value:
            pending.pop(0)
        if ready and dut.o__valid.value:
            got.append(dut.o__payload.value.to_unsigned())
        await RisingEdge(dut.clk)
    assert got == expected


@cocotb.test()
async def deliberate_failure(dut):
    """Fails, so that the tests can check run_cocotb reports it; run only when picked by name."""
    assert dut.o__valid.value == 1, "this test fails on purpose"
