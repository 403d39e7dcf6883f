"""cocotb testbench of hdl/sampler.py: every chosen id and state against kernels.integer_sample and
kernels.argmax.

Rows of logit codes of 1, 2, 63, 64, 65 and up to TinyStories-33M's 50,257 codes; random codes,
codes with many ties, the int16 extremes, one code far above the rest. Parameters as the host's
sampler makes them (three logit scales, three temperatures, top-k from 1 to 64 and none, top-p
from 1e-6 to none) and arbitrary ones (k = 0, P = 0 and 2**16, pre 31, shift 0). The state runs
on from row to row, as generation runs it.
"""

import itertools

import cocotb
import numpy as np
from neofpga.hdl.sampler import SamplerInput, SamplerOutput
from neofpga.host.kernels import argmax, first_state, integer_sample, sampling_parameters
from neofpga.sim.streams import StreamSink, StreamSource, cycles_until, pack, start, unpack

TIMEOUT_NS = 40_000_000
LENGTHS = (1, 2, 63, 64, 65, 300, 1024)
KINDS = ("random", "ties", "extremes", "peak")


def make_codes(rng, kind, length):
    """One row of int16 logit codes."""
    if kind == "random":
        codes = rng.normal(0, rng.choice([30, 3000]), length)
    elif kind == "ties":
        codes = rng.integers(-2, 3, length)
    elif kind == "extremes":
        codes = rng.choice([-32768, -32767, 32766, 32767], length)
    else:
        codes = rng.normal(0, 100, length)
        codes[rng.integers(0, length)] = 30000
    return np.clip(np.rint(codes), -32768, 32767).astype(np.int64)


def host_parameters(rng):
    """(greedy, (pre, C, shift, k, P)) as the host's IntegerChooser makes them."""
    scale, temperature = rng.choice([1e-4, 1e-3, 1e-2]), rng.choice([0.5, 1.0, 2.0])
    top_k = rng.choice([None, 1, 2, 40, 64])
    top_p = rng.choice([None, 1e-6, 0.5, 0.9])
    return bool(rng.random() < 0.15), sampling_parameters(scale, temperature, top_k, top_p)


def expected(codes, greedy, parameters, state):
    """The chosen id and the state after the choice."""
    if greedy:
        return int(argmax(codes)), state
    pre, constant, shift, k, p = parameters
    return integer_sample(codes, pre, constant, shift, max(k, 1), p, state)


async def choose(dut, rng, codes, greedy, parameters, state, stalls):
    """One row through the unit: its (id, state)."""
    pre, constant, shift, k, p = parameters
    dut.greedy.value, dut.pre.value, dut.constant.value, dut.shift.value = int(greedy), pre, constant, shift
    dut.candidates.value, dut.top_p.value, dut.state.value = k, p, state
    words = [pack(SamplerInput, {"code": code, "last": j == len(codes) - 1}) for j, code in enumerate(codes)]
    source, sink = StreamSource(dut, "i", rng, stalls[0]), StreamSink(dut, "o", rng, stalls[1])
    sending = cocotb.start_soon(source.send(words))
    (word,) = await sink.receive(1, within=8 * len(codes) + 2000)
    await sending
    result = unpack(SamplerOutput, word)
    return result["id"], result["state"]


async def run_rows(dut, rng, rows, stalls):
    """Rows of (codes, greedy, parameters), the state carried from each to the next."""
    state = first_state(int(rng.integers(0, 2 ** 32)))
    for number, (codes, greedy, parameters) in enumerate(rows):
        got = await choose(dut, rng, codes, greedy, parameters, state, stalls)
        want = expected(codes, greedy, parameters, state)
        assert got == want, (f"row {number} ({len(codes)} codes, greedy {greedy}, parameters {parameters}): "
                             f"got id {got[0]} state {got[1]:#x}, expected id {want[0]} state {want[1]:#x}")
        state = got[1]


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def matches_integer_sample(dut):
    """Every row kind at every length with the host's parameters, stalls on both streams."""
    rng = np.random.default_rng(1)
    await start(dut)
    rows = [(make_codes(rng, kind, length), *host_parameters(rng))
            for _ in range(3) for kind, length in itertools.product(KINDS, LENGTHS)]
    for stalls in [(1.0, 1.0), (0.6, 0.4)]:
        await run_rows(dut, rng, rows, stalls)


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def arbitrary_parameters(dut):
    """k = 0 (one candidate), P = 0 and 2**16, the largest pre, shift 0."""
    rng = np.random.default_rng(2)
    await start(dut)
    rows = []
    for parameters in [(0, 2 ** 16, 20, 0, 2 ** 16), (31, 2 ** 17 - 1, 3, 64, 0), (0, 70000, 0, 64, 2 ** 16),
                       (2, 100000, 30, 17, 40000), (0, 2 ** 16, 12, 64, 1)]:
        rows += [(make_codes(rng, kind, 100), False, parameters) for kind in KINDS]
    await run_rows(dut, rng, rows, (0.8, 0.8))


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def tinystories_vocabulary(dut):
    """A row of TinyStories-33M's 50,257 codes, greedy and sampled."""
    rng = np.random.default_rng(3)
    await start(dut)
    codes = make_codes(rng, "random", 50257)
    await run_rows(dut, rng, [(codes, True, host_parameters(rng)[1]), (codes, False, sampling_parameters(1e-3, 0.8, 40, 0.9))],
                   (1.0, 1.0))


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def cycles_per_row(dut):
    """Unstalled, from a row's first code to its result: V + 2 cycles greedy; sampled at most V + 3 k + 47
    (the scans stop at the kept and the chosen candidate, the products at their multiplier's top bit)."""
    rng = np.random.default_rng(4)
    await start(dut)
    for length, k, greedy in [(1, 1, True), (300, 1, True), (300, 1, False), (300, 40, False), (1024, 64, False)]:
        codes = make_codes(rng, "random", length)
        parameters = sampling_parameters(1e-3, 1.0, k, None)
        task = cocotb.start_soon(choose(dut, rng, codes, greedy, parameters, first_state(9), (1.0, 1.0)))
        cycles = await cycles_until(dut)
        await task
        dut._log.info(f"{length} codes, k {k}, greedy {greedy}: {cycles} cycles")
        if greedy:
            assert cycles == length + 2
        else:
            assert length + k + 10 < cycles <= length + 3 * k + 47
