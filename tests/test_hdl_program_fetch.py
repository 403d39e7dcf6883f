"""hdl/program_fetch.py in Verilator against contract/program.py (the testbench is
tb_program_fetch.py): a program of random well-formed and malformed entries in a ROM, fetched for
random tokens under random stalls, from memories of bytes and of 4-byte words."""

import random
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.hdl.program_fetch import ProgramFetch, ProgramRequest, RelocatedEntry
from neofpga.sim.runner import run_cocotb
from random_programs import random_program

TB = Path(__file__).with_name("tb_program_fetch.py")
ENTRIES = 96


class FetchFromRom(wiring.Component):
    """ProgramFetch reading a ROM of ``word_bytes``-byte words that holds ``program``."""

    i: In(stream.Signature(ProgramRequest))
    o: Out(stream.Signature(RelocatedEntry))

    def __init__(self, program, word_bytes):
        self.program, self.word_bytes = program, word_bytes
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        wb = self.word_bytes
        words = [int.from_bytes(self.program[at:at + wb], "little") for at in range(0, len(self.program), wb)]
        m.submodules.fetch = fetch = ProgramFetch((len(words) - 1).bit_length(), wb)
        m.submodules.rom = rom = memory.Memory(shape=8 * wb, depth=len(words), init=words)
        port = rom.read_port()
        m.d.comb += [port.addr.eq(fetch.addr), fetch.data.eq(port.data)]
        wiring.connect(m, wiring.flipped(self.i), fetch.i)
        wiring.connect(m, fetch.o, wiring.flipped(self.o))
        return m


def random_requests(rng, count):
    """Every entry (the header too) once, then ``count`` at random, for random and edge tokens."""
    positions = [0, 1, 63, 64, 255, 256, 0xFFFF]
    entries = list(range(ENTRIES + 1)) + [rng.randint(0, ENTRIES) for _ in range(count)]
    return [(entry, rng.choice(positions) if rng.random() < 0.3 else rng.randint(0, 0xFFFF),
             rng.choice([0, 0xFFFF, rng.randint(0, 0xFFFF)])) for entry in entries]


@pytest.mark.parametrize("word_bytes, seed, valid_probability, ready_probability",
                         [(1, 1, 1.0, 1.0), (1, 2, 0.5, 0.4), (4, 3, 0.9, 0.8), (4, 4, 1.0, 1.0)])
def test_fetched_entries_match_the_contract_under_stalls(tmp_path, word_bytes, seed, valid_probability,
                                                         ready_probability):
    rng = random.Random(seed)
    program = random_program(rng, ENTRIES)
    (tmp_path / "program.bin").write_bytes(program)
    (tmp_path / "requests.txt").write_text("".join(f"{e} {p} {t}\n" for e, p, t in random_requests(rng, 300)))
    env = {"SEED": str(seed), "VALID_PROBABILITY": str(valid_probability), "READY_PROBABILITY": str(ready_probability),
           "PROGRAM": str(tmp_path / "program.bin"), "REQUESTS": str(tmp_path / "requests.txt"),
           "WORD_BYTES": str(word_bytes)}
    run_cocotb(FetchFromRom(program, word_bytes), test_module=TB, testcase="matches_reference", run_dir=tmp_path, extra_env=env)


@pytest.mark.parametrize("word_bytes", [1, 4])
def test_fetch_latency(tmp_path, word_bytes):
    """The cycles docs/PROGRAM.md gives for an entry: the fetch's words and 4, plus the relocations'."""
    program = random_program(random.Random(5), 24)
    (tmp_path / "program.bin").write_bytes(program)
    env = {"PROGRAM": str(tmp_path / "program.bin"), "WORD_BYTES": str(word_bytes)}
    run_cocotb(FetchFromRom(program, word_bytes), test_module=TB, testcase="latency", run_dir=tmp_path, extra_env=env)
