"""cocotb testbench of hdl/requantizer.py: every output against kernels.requantize, in order.

Environment (run_cocotb's extra_env): SEED, VALID_PROBABILITY and READY_PROBABILITY (the random
stalls of the input and output streams), RANDOM_COUNT (random elements after the edge cases),
LATENCY (the component's documented latency).
"""

import os
import random

import cocotb
import numpy as np
from neofpga.contract.numerics import INT8, INT16
from neofpga.hdl.requantizer import RequantizerInput
from neofpga.host.kernels import requantize
from neofpga.sim.streams import StreamSink, StreamSource, pack, start, stream_unstalled

INT32 = (-2 ** 31, 2 ** 31 - 1)
NARROW = (-2730, 2730)  # TinyStories-33M's c_proj input limit
LIMITS = [INT8, INT16, NARROW]
CLOCK_NS = 10


def split_total(rng, total):
    """An (acc, bias) pair of int32 values that add up to ``total``."""
    acc = rng.randint(max(INT32[0], total - INT32[1]), min(INT32[1], total - INT32[0]))
    return acc, total - acc


def element(acc, bias, multiplier, shift, limits):
    """One requantizer input as a dict of RequantizerInput's fields."""
    return dict(acc=acc, bias=bias, multiplier=multiplier, shift=shift, low=limits[0], high=limits[1])


def edge_cases(rng):
    """Extremes of every field, exact and near rounding ties, both saturation limits."""
    cases = []
    extremes = [(INT32[0], INT32[0]), (INT32[1], INT32[1]), (INT32[0], 2 ** 30), (INT32[1], -2 ** 30),
                (INT32[0], INT32[1]), (0, 0), (1, 0), (-1, 0), (0, -1)]
    for shift in (0, 1, 2, 15, 16, 31, 32, 47, 48):
        for multiplier in (2 ** 15, 2 ** 16 - 1, rng.randrange(2 ** 15, 2 ** 16), 0, 1):
            for acc, bias in extremes:
                cases.append(element(acc, bias, multiplier, shift, rng.choice(LIMITS)))
    # ties (remainder exactly half) and their neighbours, for odd M: total = residue / M mod 2**shift
    for shift in range(1, 33):
        for offset in (-1, 0, 1, 0, 0):
            multiplier = rng.randrange(2 ** 15, 2 ** 16) | 1
            residue = ((2 ** (shift - 1) + offset) * pow(multiplier, -1, 2 ** shift)) % 2 ** shift
            total = residue + rng.randint(-(2 ** 32) // 2 ** shift, (2 ** 32 - 2 - residue) // 2 ** shift) * 2 ** shift
            cases.append(element(*split_total(rng, total), multiplier, shift, INT16))
    # exact ties at every shift up to 48: (acc + bias) * M has exactly shift - 1 trailing zeros;
    # mostly small enough not to saturate, so that the rounding shows
    for shift in range(1, 49):
        for small in (True, True, True, False):
            m_zeros = rng.randint(max(0, shift - 1 - 32), min(15, shift - 1))
            t_zeros = shift - 1 - m_zeros
            m_odd = rng.randrange(2 ** (15 - m_zeros), 2 ** (16 - m_zeros)) | 1
            if t_zeros == 32:  # -2**32, the smallest sum, is the only one with 32 trailing zeros
                t_odd = -1
            else:
                t_bound = min(2 ** (32 - t_zeros), max(2, 2 ** 16 // m_odd) if small else 2 ** 32)
                t_odd = rng.randrange(1, t_bound, 2) * rng.choice((1, -1))
            cases.append(element(*split_total(rng, t_odd << t_zeros), m_odd << m_zeros, shift, INT16))
    # floors at and around the ends of int16, where the shifter's overflow flag takes over
    for shift in range(16, 31):
        for floor in (2 ** 15 - 1, 2 ** 15, 2 ** 16, -2 ** 15, -2 ** 15 - 1, -2 ** 16 - 1):
            for remainder in sorted({0, 1, 2 ** (shift - 16), 2 ** (shift - 15) - 1}):  # in units of 2**15
                total = floor * 2 ** (shift - 15) + remainder
                cases.append(element(*split_total(rng, total), 2 ** 15, shift, rng.choice([INT16, INT16, NARROW])))
    # limits: narrowed, single-valued and (outside the contract, still specified) inverted
    for limits in [(-5, 5), (7, 7), (-3000, -2000), (100, -100)]:
        for _ in range(20):
            cases.append(element(rng.randint(-5000, 5000), 0, 2 ** 15, 15, limits))
    return cases


def random_cases(rng, count):
    """Random fields across their full ranges; half the shifts put the result near the limits."""
    cases = []
    for _ in range(count):
        acc = rng.randint(*INT32) if rng.random() < 0.5 else rng.randint(-2 ** 31, 2 ** 31 - 1) >> rng.randrange(32)
        bias = rng.randint(*INT32) if rng.random() < 0.3 else rng.randint(-2 ** 30, 2 ** 30) >> rng.randrange(31)
        multiplier = rng.randrange(2 ** 15, 2 ** 16) if rng.random() < 0.9 else rng.randrange(2 ** 16)
        if rng.random() < 0.5:
            shift = rng.randint(0, 48)
        else:
            shift = min(48, max(0, abs((acc + bias) * multiplier).bit_length() - rng.randint(2, 20)))
        if rng.random() < 0.8:
            limits = rng.choice(LIMITS)
        else:
            low = rng.randint(*INT16)
            limits = (low, rng.randint(low, INT16[1]))
        cases.append(element(acc, bias, multiplier, shift, limits))
    return cases


def reference(cases):
    """numerics.requantize of every case."""
    column = {name: np.array([case[name] for case in cases], dtype=np.int64) for name in cases[0]}
    return [int(y) for y in requantize(column["acc"], column["bias"], column["multiplier"], column["shift"],
                                       column["low"], column["high"])]


def check_tie_coverage(cases, expected):
    """The cases hold unsaturated exact ties, rounded up and down, on both signs."""
    kinds = set()
    for case, y in zip(cases, expected):
        product, shift = (case["acc"] + case["bias"]) * case["multiplier"], case["shift"]
        if shift and product % 2 ** shift == 2 ** (shift - 1) and case["low"] < y < case["high"]:
            kinds.add((product > 0, (product >> shift) & 1))
    assert len(kinds) == 4, kinds


def compare(cases, got, expected):
    mismatches = [(case, g, e) for case, g, e in zip(cases, got, expected) if g != e]
    assert not mismatches, f"{len(mismatches)} of {len(cases)} wrong, first ones (input, got, expected): " \
                           + "; ".join(map(str, mismatches[:5]))


@cocotb.test()
async def matches_reference(dut):
    """Edge cases and random elements under random input and output stalls, exactly and in order."""
    rng = random.Random(int(os.environ["SEED"]))
    cases = edge_cases(rng) + random_cases(rng, int(os.environ["RANDOM_COUNT"]))
    expected = reference(cases)
    for limits in LIMITS:  # the cases reach both ends of each standard range
        ends = {e for case, e in zip(cases, expected) if (case["low"], case["high"]) == limits}
        assert set(limits) <= ends
    check_tie_coverage(cases, expected)
    source = StreamSource(dut, "i", rng, float(os.environ["VALID_PROBABILITY"]))
    sink = StreamSink(dut, "o", rng, float(os.environ["READY_PROBABILITY"]), signed=True)
    await start(dut, CLOCK_NS)
    cocotb.start_soon(source.send([pack(RequantizerInput, case) for case in cases]))
    compare(cases, await sink.receive(len(cases), within=20 * len(cases) + 1000), expected)
    await sink.expect_idle(20)


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def latency_and_throughput(dut):
    """With the input always valid and the output always ready: LATENCY cycles, one element per cycle."""
    rng = random.Random(int(os.environ["SEED"]))
    cases = random_cases(rng, 500)
    words = [pack(RequantizerInput, case) for case in cases]
    await start(dut, CLOCK_NS)
    taken, received = await stream_unstalled(dut, words)
    compare(cases, [y for _, y in received], reference(cases))
    latency = received[0][0] - taken[0]
    cycles = received[-1][0] - received[0][0] + 1
    dut._log.info(f"latency {latency} cycles, {len(cases)} elements in {cycles} cycles")
    assert latency == int(os.environ["LATENCY"])
    assert taken == list(range(len(cases))) and cycles == len(cases)  # no bubble in or out
    await StreamSink(dut, "o", rng).expect_idle(20)
