"""hdl/token_sequencer.py in Verilator against contract/program.py (the testbench is
tb_token_sequencer.py): TOKEN's check pass and run pass over programs written into a PROGRAM
memory, with an executor that stalls and refuses, and every reason to refuse a token."""

import json
import random
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.contract.program import HEADER, PROGRAM_OPS, PROGRAM_VERSION
from neofpga.contract.protocol import PROGRAM_ENTRY_BYTES, Opcode, pack_record
from neofpga.hdl.token_sequencer import ProgramOp, TokenRequest, TokenSequencer
from neofpga.sim.runner import run_cocotb
from random_programs import random_entry

TB = Path(__file__).with_name("tb_token_sequencer.py")
PROGRAM_WORDS = 12
VOCAB, CONTEXT = 1000, 300


class SequencerWithMemory(wiring.Component):
    """TokenSequencer reading a PROGRAM memory of PROGRAM_WORDS words that the testbench writes,
    in memory words of ``word_bytes``."""

    def __init__(self, word_bytes):
        self.word_bytes = word_bytes
        super().__init__({"i": In(stream.Signature(TokenRequest)), "o": Out(stream.Signature(1)),
                          "op": Out(stream.Signature(ProgramOp)), "verdict": In(stream.Signature(1)), "w_en": In(1),
                          "w_addr": In(range(PROGRAM_WORDS * PROGRAM_ENTRY_BYTES // word_bytes)),
                          "w_data": In(8 * word_bytes)})

    def elaborate(self, platform):
        m = Module()
        depth = PROGRAM_WORDS * PROGRAM_ENTRY_BYTES // self.word_bytes
        m.submodules.sequencer = sequencer = TokenSequencer(PROGRAM_WORDS, (depth - 1).bit_length(), self.word_bytes)
        m.submodules.memory = program = memory.Memory(shape=8 * self.word_bytes, depth=depth, init=[])
        read, write = program.read_port(), program.write_port()
        m.d.comb += [read.addr.eq(sequencer.addr), sequencer.data.eq(read.data),
                     write.en.eq(self.w_en), write.addr.eq(self.w_addr), write.data.eq(self.w_data)]
        for name in ("i", "verdict"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(sequencer, name))
        for name in ("o", "op"):
            wiring.connect(m, getattr(sequencer, name), wiring.flipped(getattr(self, name)))
        return m


def program(entries, header=None):
    """The PROGRAM words of ``entries`` under a header (``header``: fields that differ from the right ones)."""
    fields = dict(version=PROGRAM_VERSION, entries=len(entries), vocab=VOCAB, context=CONTEXT) | (header or {})
    return pack_record(HEADER, **fields).ljust(PROGRAM_ENTRY_BYTES, b"\0") + b"".join(entries)


def good_entries(rng, count):
    """``count`` well-formed entries, a SAMPLE among them."""
    entries = [random_entry(rng, broken=0) for _ in range(count)]
    entries[rng.randrange(count)] = random_entry(rng, Opcode.SAMPLE, broken=0)
    return entries


def cases(rng):
    """(why, program, token, position, refuse_at) for every verdict."""
    out = []
    for count in (1, 3, PROGRAM_WORDS - 1):
        out.append(("runs", program(good_entries(rng, count)), rng.randrange(VOCAB), rng.randrange(CONTEXT), -1))
    out.append(("last id and position", program(good_entries(rng, 4)), VOCAB - 1, CONTEXT - 1, -1))
    out.append(("id past vocab", program(good_entries(rng, 4)), VOCAB, 0, -1))
    out.append(("position past context", program(good_entries(rng, 4)), 0, CONTEXT, -1))
    out.append(("other version", program(good_entries(rng, 2), dict(version=PROGRAM_VERSION + 1)), 1, 1, -1))
    out.append(("no entries", program([], dict(entries=0)), 1, 1, -1))
    out.append(("more entries than the memory", program(good_entries(rng, 3), dict(entries=PROGRAM_WORDS)), 1, 1, -1))
    for refuse_at in (0, 2, 5):
        out.append(("executor refuses", program(good_entries(rng, 6)), 5, 7, refuse_at))
    for at in (0, 3, 5):
        entries = good_entries(rng, 6)
        entries[at] = random_entry(rng, broken=1)
        out.append(("malformed entry", program(entries), 2, 2, -1))
    entries = [random_entry(rng, rng.choice([op for op in PROGRAM_OPS if op != Opcode.SAMPLE]), broken=0)
               for _ in range(5)]
    out.append(("no SAMPLE", program(entries), 0, 0, -1))
    for _ in range(12):
        out.append(("random", program(good_entries(rng, rng.randint(1, PROGRAM_WORDS - 1))),
                    rng.randrange(VOCAB + 2), rng.randrange(CONTEXT + 2), rng.choice([-1, -1, rng.randrange(6)])))
    return [dict(why=why, program=p.hex(), token=t, position=pos, refuse_at=r) for why, p, t, pos, r in out]


@pytest.mark.parametrize("word_bytes, seed, ready_probability", [(1, 1, 1.0), (4, 2, 0.4)])
def test_token_passes_match_the_contract(tmp_path, word_bytes, seed, ready_probability):
    (tmp_path / "cases.json").write_text(json.dumps(cases(random.Random(seed))))
    env = {"SEED": str(seed), "READY_PROBABILITY": str(ready_probability), "CASES": str(tmp_path / "cases.json"),
           "PROGRAM_WORDS": str(PROGRAM_WORDS), "WORD_BYTES": str(word_bytes)}
    run_cocotb(SequencerWithMemory(word_bytes), test_module=TB, testcase="matches_reference", run_dir=tmp_path, extra_env=env)
