"""hdl/program_fetch.py in Verilator against contract/program.py (the testbench is
tb_program_fetch.py): a program of random well-formed and malformed entries in a ROM, fetched for
random tokens under random stalls."""

import random
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.contract.program import (ENTRY, PROGRAM_OPS, RELOCATABLE, RELOCATIONS, Relocation, Source, pack_entry,
                                      pack_header)
from neofpga.contract.protocol import PROGRAM_ENTRY_BYTES, Opcode, pack_record, unpack_record
from neofpga.hdl.program_fetch import ProgramFetch, ProgramRequest, RelocatedEntry
from neofpga.sim.runner import run_cocotb

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


def random_fields(rng, opcode):
    return {name: rng.randrange(2 ** (8 * size)) - (2 ** (8 * size - 1) if signed else 0)
            for name, size, signed in PROGRAM_OPS[opcode]}


def random_relocation(rng, opcode):
    source = rng.choice([Source.POSITION, Source.ID, Source.SLOT, Source.KEYS])
    return Relocation(rng.choice(RELOCATABLE[opcode]), source, ring=rng.choice([1, 7, 64, 256, rng.randint(1, 0xFFFF)]),
                      shift=rng.choice([0, 0, rng.randint(0, 20)]), mask=rng.choice([0xFFFF, 15, rng.randint(0, 0xFFFF)]),
                      scale=rng.choice([1, 1, 64, 3072, rng.randint(0, 0xFFFF)]))


def malformed(rng, word):
    """``word`` broken the ways unpack_entry refuses: the opcode, a relocation's source, field or ring."""
    entry = unpack_record(ENTRY, word)
    i = rng.randrange(RELOCATIONS)
    kind = rng.choice(["opcode", "source", "field", "ring"])
    if kind == "opcode":
        entry["opcode"] = rng.choice([0, Opcode.WRITE, Opcode.TOKEN, 0x7F, 0xFF])
    elif kind == "source":
        entry[f"source_{i}"] = rng.choice([max(Source) + 1, 255, rng.randint(max(Source) + 1, 255)])
    elif kind == "field":
        entry[f"source_{i}"] = Source.POSITION
        fields = len(RELOCATABLE.get(Opcode(entry["opcode"]), ()))  # the first index past the op's fields
        entry[f"field_{i}"] = rng.choice([fields, fields, rng.randint(fields, 255)])
    else:
        entry[f"source_{i}"] = rng.choice([Source.SLOT, Source.KEYS])
        entry[f"ring_{i}"] = 0
    return pack_record(ENTRY, **entry)


def edge_entries(rng):
    """Each op at the edges unpack_entry draws: each relocation slot given the last field and the first
    past it, the last source and the first past it, and a ring of 0 and of 1 for each ringed source."""
    words = []
    for opcode in PROGRAM_OPS:
        fields = len(RELOCATABLE.get(opcode, ()))
        base = unpack_record(ENTRY, pack_entry(opcode, random_fields(rng, opcode)))
        for i in range(RELOCATIONS):
            cases = [dict(field=fields, source=Source.POSITION), dict(field=0, source=max(Source) + 1)]
            if fields:
                cases += [dict(field=fields - 1, source=Source.ID, scale=1), dict(field=0, source=max(Source), ring=5)]
                cases += [dict(field=0, source=ringed, ring=ring) for ringed in (Source.SLOT, Source.KEYS) for ring in (0, 1)]
            for case in cases:
                entry = dict(base, **{f"{name}_{i}": value for name, value in case.items()})
                entry.setdefault(f"mask_{i}", 0xFFFF)
                words.append(pack_record(ENTRY, **entry))
    return words


def random_program(rng):
    """A header, the edge entries, then random ones to ENTRIES: every op, 0 to 2 relocations, some
    malformed, some of random bytes."""
    words = [pack_header(ENTRIES, 1024, 256)] + edge_entries(rng)
    while len(words) <= ENTRIES:
        opcode = rng.choice(list(PROGRAM_OPS))
        relocations = [random_relocation(rng, opcode) for _ in range(rng.randint(0, 2))] \
            if opcode in RELOCATABLE else []
        word = pack_entry(opcode, random_fields(rng, opcode), relocations)
        roll = rng.random()
        if roll < 0.2:
            word = malformed(rng, word)
        elif roll < 0.25:
            word = bytes([rng.choice(list(PROGRAM_OPS))]) + rng.randbytes(PROGRAM_ENTRY_BYTES - 1)
        words.append(word)
    return b"".join(words)


def random_requests(rng, count):
    """Every entry (the header too) once, then ``count`` at random, for random and edge tokens."""
    positions = [0, 1, 63, 64, 255, 256, 0xFFFF]
    entries = list(range(ENTRIES + 1)) + [rng.randint(0, ENTRIES) for _ in range(count)]
    return [(entry, rng.choice(positions) if rng.random() < 0.3 else rng.randint(0, 0xFFFF),
             rng.choice([0, 0xFFFF, rng.randint(0, 0xFFFF)])) for entry in entries]


@pytest.mark.parametrize("seed, valid_probability, ready_probability", [(1, 1.0, 1.0), (2, 0.5, 0.4), (3, 0.9, 0.8)])
def test_fetched_entries_match_the_contract_under_stalls(tmp_path, seed, valid_probability, ready_probability):
    rng = random.Random(seed)
    program = random_program(rng)
    (tmp_path / "program.bin").write_bytes(program)
    (tmp_path / "requests.txt").write_text("".join(f"{e} {p} {t}\n" for e, p, t in random_requests(rng, 300)))
    env = {"SEED": str(seed), "VALID_PROBABILITY": str(valid_probability), "READY_PROBABILITY": str(ready_probability),
           "PROGRAM": str(tmp_path / "program.bin"), "REQUESTS": str(tmp_path / "requests.txt")}
    run_cocotb(FetchFromRom(program), test_module=TB, testcase="matches_reference", run_dir=tmp_path, extra_env=env)
