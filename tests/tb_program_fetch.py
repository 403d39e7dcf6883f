"""cocotb testbench of hdl/program_fetch.py: every fetched entry against contract/program.py's
unpack_entry and relocate, in order.

Environment (run_cocotb's extra_env): PROGRAM (a file of the PROGRAM memory's bytes), REQUESTS (a
file of one ``entry position token`` line a request), SEED, VALID_PROBABILITY and
READY_PROBABILITY (the random stalls of the request and entry streams), WORD_BYTES (the memory's).
"""

import os
import random
from pathlib import Path

import cocotb
from neofpga.contract.program import PROGRAM_OPS, Source, relocate, unpack_entry
from neofpga.contract.protocol import PROGRAM_ENTRY_BYTES, pack_record, record_size
from neofpga.hdl.program_fetch import ProgramRequest, RelocatedEntry
from neofpga.sim.streams import StreamSink, StreamSource, pack, start, stream_unstalled, unpack

CLOCK_NS = 10


def entry_word(program, entry):
    """PROGRAM word ``entry`` of the memory's bytes."""
    return program[entry * PROGRAM_ENTRY_BYTES:(entry + 1) * PROGRAM_ENTRY_BYTES]


def expected(program, entry, position, token):
    """``(malformed, opcode, record bytes)`` of an entry as the contract relocates it."""
    word = entry_word(program, entry)
    try:
        opcode, fields, relocations = unpack_entry(word)
    except ValueError:
        return True, word[0], None
    return False, opcode, pack_record(PROGRAM_OPS[opcode], **relocate(opcode, fields, relocations, position, token))


@cocotb.test()
async def matches_reference(dut):
    """Every request's entry: malformed exactly when unpack_entry refuses it, else its relocated record."""
    rng = random.Random(int(os.environ["SEED"]))
    program = Path(os.environ["PROGRAM"]).read_bytes()
    requests = [tuple(map(int, line.split())) for line in Path(os.environ["REQUESTS"]).read_text().splitlines()]
    source = StreamSource(dut, "i", rng, float(os.environ["VALID_PROBABILITY"]))
    sink = StreamSink(dut, "o", rng, float(os.environ["READY_PROBABILITY"]))
    await start(dut, CLOCK_NS)
    cocotb.start_soon(source.send([pack(ProgramRequest, dict(entry=e, position=p, token=t)) for e, p, t in requests]))
    got = await sink.receive(len(requests), within=400 * len(requests) + 1000)
    wrong = []
    for request, word in zip(requests, got):
        out = unpack(RelocatedEntry, word)
        malformed, opcode, record = expected(program, *request)
        if malformed:
            ok = out["malformed"] == 1 and out["opcode"] == opcode
        else:
            size = record_size(PROGRAM_OPS[opcode])
            ok = (out["malformed"] == 0 and out["opcode"] == opcode
                  and out["record"].to_bytes(len(record) + 64, "little")[:size] == record)
        if not ok:
            wrong.append((request, malformed, out["malformed"]))
    assert not wrong, f"{len(wrong)} of {len(requests)} wrong, first ones (request, malformed, got): {wrong[:3]}"
    await sink.expect_idle(40)


def latency_of(program, entry, words):
    """The cycles from an entry's request taken to the entry offered, unstalled: the words of the
    fetch and 4, plus each used relocation's term (3 + the scale's bits, 17 more for a slot); a
    malformed entry skips its relocations (3)."""
    try:
        _, _, relocations = unpack_entry(entry_word(program, entry))
    except ValueError:
        return words + 3
    return words + 4 + sum(3 + r["scale"].bit_length() + 17 * (r["source"] == Source.SLOT) for r in relocations)


@cocotb.test()
async def latency(dut):
    """Unstalled, every entry of the program comes when latency_of says."""
    program = Path(os.environ["PROGRAM"]).read_bytes()
    words = PROGRAM_ENTRY_BYTES // int(os.environ["WORD_BYTES"])
    await start(dut, CLOCK_NS)
    wrong = []
    for entry in range(len(program) // PROGRAM_ENTRY_BYTES):
        taken, received = await stream_unstalled(dut, [pack(ProgramRequest, dict(entry=entry, position=300, token=7))],
                                                 signed=False)
        cycles, expected_cycles = received[0][0] - taken[0], latency_of(program, entry, words)
        if cycles != expected_cycles:
            wrong.append((entry, cycles, expected_cycles))
    assert not wrong, f"{len(wrong)} entries late or early, first ones (entry, cycles, expected): {wrong[:3]}"
