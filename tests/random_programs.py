"""Random PROGRAM entries and programs for the gateware's tests, with the edges of
contract/program.py's unpack_entry: the last field and the first past it, the last source and the
first past it, rings of 0 and 1."""

from neofpga.contract.program import (ENTRY, PROGRAM_OPS, RELOCATABLE, RELOCATIONS, Relocation, Source, pack_entry,
                                      pack_header)
from neofpga.contract.protocol import PROGRAM_ENTRY_BYTES, Opcode, pack_record, unpack_record


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
                entry = dict(base, **{f"mask_{i}": 0xFFFF}, **{f"{name}_{i}": value for name, value in case.items()})
                words.append(pack_record(ENTRY, **entry))
    return words


def random_entry(rng, opcode=None, broken=0.25):
    """A program entry of ``opcode`` (by default any), 0 to 2 relocations; with probability
    ``broken`` malformed (four in five) or of random bytes after the opcode."""
    opcode = rng.choice(list(PROGRAM_OPS)) if opcode is None else opcode
    relocations = [random_relocation(rng, opcode) for _ in range(rng.randint(0, 2))] if opcode in RELOCATABLE else []
    word = pack_entry(opcode, random_fields(rng, opcode), relocations)
    roll = rng.random() / broken if broken else 1
    if roll < 0.8:
        return malformed(rng, word)
    if roll < 1:
        return bytes([opcode]) + rng.randbytes(PROGRAM_ENTRY_BYTES - 1)
    return word


def random_program(rng, entries, vocab=1024, context=256):
    """A header, the edge entries, then random ones to ``entries``."""
    words = [pack_header(entries, vocab, context)] + edge_entries(rng)
    while len(words) <= entries:
        words.append(random_entry(rng))
    return b"".join(words)
