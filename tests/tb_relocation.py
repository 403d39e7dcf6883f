"""cocotb testbench of hdl/relocation.py: every term against contract/program.py's formula, in order.

Environment (run_cocotb's extra_env): SEED, VALID_PROBABILITY and READY_PROBABILITY (the random
stalls of the request and term streams), RANDOM_COUNT (random requests after the edge cases).
"""

import os
import random

import cocotb
from neofpga.contract.program import Source, source_value
from neofpga.hdl.relocation import RelocationRequest
from neofpga.sim.streams import StreamSink, StreamSource, pack, start, stream_unstalled

CLOCK_NS = 10
RINGS = (1, 2, 7, 16, 64, 256, 2048, 65535)


def request(source, position, token=0, ring=1, shift=0, mask=0xFFFF, scale=1):
    return dict(source=source, ring=ring, shift=shift, mask=mask, scale=scale, position=position, token=token)


def term(r):
    """contract/program.py's relocation term of a request (NONE, and sources it does not define: 0)."""
    defined = r["source"] in set(Source) and r["source"] != Source.NONE
    q = source_value(r["source"], r["ring"], r["position"], r["token"]) if defined else 0
    return ((q >> r["shift"]) & r["mask"]) * r["scale"]


def edge_cases():
    """Every source at the ends of the position and of each ring, and the ends of shift, mask, scale."""
    cases = []
    for ring in RINGS:
        for position in sorted({0, 1, ring - 1, ring, ring + 1, 2 * ring - 1, 2 * ring, 0xFFFE, 0xFFFF} - {-1}):
            if position <= 0xFFFF:
                cases += [request(Source.SLOT, position, ring=ring), request(Source.KEYS, position, ring=ring)]
    for scale in (0, 1, 2, 3, 64, 0x8000, 0xFFFF):
        for shift in (0, 1, 4, 15, 16, 255):
            for mask in (0, 1, 15, 0xFFFF):
                cases.append(request(Source.POSITION, 0xFFFF, shift=shift, mask=mask, scale=scale))
                cases.append(request(Source.ID, 0, token=0xABCD, shift=shift, mask=mask, scale=scale))
    cases += [request(Source.NONE, 1234, token=5, scale=0xFFFF), request(5, 77, scale=3), request(7, 9)]
    return cases


def random_cases(rng, count):
    """Random requests of the shapes a compiler makes, and of any shape."""
    cases = []
    for _ in range(count):
        source = rng.choice([Source.POSITION, Source.ID, Source.SLOT, Source.KEYS, Source.SLOT, Source.KEYS])
        ring = rng.choice(RINGS) if rng.random() < 0.5 else rng.randint(1, 0xFFFF)
        position = rng.randint(0, 0xFFFF) if rng.random() < 0.5 else rng.randint(0, min(3 * ring, 0xFFFF))
        cases.append(request(source, position,
                             token=rng.randint(0, 0xFFFF), ring=ring, shift=rng.choice([0, 0, rng.randint(0, 20)]),
                             mask=rng.choice([0xFFFF, 0xFFFF, 15, rng.randint(0, 0xFFFF)]),
                             scale=rng.choice([1, 1, 64, 768, rng.randint(0, 0xFFFF)])))
    return cases


@cocotb.test()
async def matches_reference(dut):
    """Edge cases and random requests under random stalls: every term exact and in order."""
    rng = random.Random(int(os.environ["SEED"]))
    cases = edge_cases() + random_cases(rng, int(os.environ["RANDOM_COUNT"]))
    expected = [term(case) for case in cases]
    source = StreamSource(dut, "i", rng, float(os.environ["VALID_PROBABILITY"]))
    sink = StreamSink(dut, "o", rng, float(os.environ["READY_PROBABILITY"]))
    await start(dut, CLOCK_NS)
    cocotb.start_soon(source.send([pack(RelocationRequest, case) for case in cases]))
    got = await sink.receive(len(cases), within=80 * len(cases) + 1000)
    wrong = [(case, g, e) for case, g, e in zip(cases, got, expected) if g != e]
    assert not wrong, f"{len(wrong)} of {len(cases)} wrong, first ones (request, got, expected): {wrong[:3]}"
    await sink.expect_idle(40)


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def latency(dut):
    """Unstalled, a term comes 3 + bit_length(scale) cycles after its request is taken, 17 more for a slot."""
    cases = [request(Source.POSITION, 5, scale=1), request(Source.KEYS, 5, ring=3, scale=64),
             request(Source.SLOT, 100, ring=7, scale=1), request(Source.SLOT, 9, ring=7, scale=0xFFFF),
             request(Source.ID, 3, token=9, scale=0)]
    await start(dut, CLOCK_NS)
    for case in cases:
        taken, received = await stream_unstalled(dut, [pack(RelocationRequest, case)], signed=False)
        assert received[0][1] == term(case)
        expected = 3 + case["scale"].bit_length() + 17 * (case["source"] == Source.SLOT)
        assert received[0][0] - taken[0] == expected, (case, received[0][0] - taken[0], expected)
