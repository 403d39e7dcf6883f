"""hdl/program_fetch.py in Verilator against contract/program.py (the testbench is
tb_program_fetch.py): a program of random well-formed and malformed entries in a ROM, fetched for
random tokens under random stalls."""

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
    """ProgramFetch reading a ROM that holds ``program``."""

    i: In(stream.Signature(ProgramRequest))
    o: Out(stream.Signature(RelocatedEntry))

    def __init__(self, program):
        self.program = program
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.fetch = fetch = ProgramFetch((len(self.program) - 1).bit_length())
        m.submodules.rom = rom = memory.Memory(shape=8, depth=len(self.program), init=self.program)
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


@pytest.mark.parametrize("seed, valid_probability, ready_probability", [(1, 1.0, 1.0), (2, 0.5, 0.4), (3, 0.9, 0.8)])
def test_fetched_entries_match_the_contract_under_stalls(tmp_path, seed, valid_probability, ready_probability):
    rng = random.Random(seed)
    program = random_program(rng, ENTRIES)
    (tmp_path / "program.bin").write_bytes(program)
    (tmp_path / "requests.txt").write_text("".join(f"{e} {p} {t}\n" for e, p, t in random_requests(rng, 300)))
    env = {"SEED": str(seed), "VALID_PROBABILITY": str(valid_probability), "READY_PROBABILITY": str(ready_probability),
           "PROGRAM": str(tmp_path / "program.bin"), "REQUESTS": str(tmp_path / "requests.txt")}
    run_cocotb(FetchFromRom(program), test_module=TB, testcase="matches_reference", run_dir=tmp_path, extra_env=env)
