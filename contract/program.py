"""The program format: a model's whole token as ops held in the device's PROGRAM memory.

The host compiles a model into a program and uploads it with the weights (WRITE to
``Space.PROGRAM``); a TOKEN command then runs it for one token id at one position, and the device
answers with the next id. The program is the same ops as the per-op link commands (MATMUL, EMBED,
NORM, SAMPLE), with the same records, so every op a program runs can also be sent alone and
compared.

PROGRAM word 0 is the :data:`HEADER`; words 1 to ``entries`` are the ops, one :data:`ENTRY` a word:
the op's opcode, :data:`RELOCATIONS` relocations, and its record (zero-padded). What changes from
one token to the next is made by the relocations: each adds a term of the token's position or id
to one field of the record before the op runs,

    field += ((q >> shift) & mask) * scale     (modulo 2**(8 * the field's size))

where ``q`` is the relocation's :class:`Source`: the position, the token id, or, for a ring of
``ring`` slots (a layer's KV cache: the context for a global layer, the window for a local one),
the slot ``position % ring`` the token's key and value go to and the number of keys it sees,
``min(position + 1, ring)``. The fields that may be relocated are :data:`RELOCATABLE`'s.

Inside a program, SAMPLE's :data:`~neofpga.contract.protocol.SETTINGS` are ignored: it chooses
with the TOKEN command's, and its state is the one TOKEN answers with. A program holds at least
one SAMPLE; TOKEN answers the last one's choice.

**Checks before anything runs.** TOKEN is refused with BAD_ARGUMENT, and changes nothing, when no
program of :data:`PROGRAM_VERSION` with a SAMPLE is loaded, when the id is not below the header's ``vocab`` or
the position not below its ``context``, or when any op of the program, relocated for this id and
position, would be refused on its own (an address outside its memory, an opcode a program cannot
hold): the device checks every op before it runs the first.

Plain Python, like contract/protocol.py.
"""

import enum

from .protocol import (COPY, EMBED, MATMUL, NORM, PROGRAM_ENTRY_BYTES, SAMPLE, Opcode, pack_record, record_size,
                       unpack_record)

__all__ = ["PROGRAM_VERSION", "Source", "RELOCATION", "RELOCATIONS", "RELOCATABLE", "PROGRAM_OPS", "HEADER",
           "ENTRY", "RECORD_BYTES", "Relocation", "program_ops", "pack_header", "pack_entry", "unpack_entry",
           "source_value",
           "relocate"]

PROGRAM_VERSION = 1
"""INFO reports it; the host runs no program on a device of another program format."""


class Source(enum.IntEnum):
    """What a relocation adds a term of (``ring``: the slots of the relocation's ring)."""
    NONE = 0      # the relocation is unused
    POSITION = 1  # the token's position
    ID = 2        # the token's id
    SLOT = 3      # position % ring
    KEYS = 4      # min(position + 1, ring)


RELOCATION = [("field", 1, False), ("source", 1, False), ("ring", 2, False), ("shift", 1, False),
              ("mask", 2, False), ("scale", 2, False)]
RELOCATIONS = 2
"""Relocations an entry holds (unused ones have source NONE)."""

PROGRAM_OPS = {Opcode.MATMUL: MATMUL, Opcode.EMBED: EMBED, Opcode.NORM: NORM, Opcode.SAMPLE: SAMPLE,
               Opcode.COPY: COPY}
"""The ops a program may hold, with their records (COPY on a device with DRAM: :func:`program_ops`)."""

RELOCATABLE = {
    Opcode.MATMUL: ("m", "k", "n", "a_base", "w_base", "out_bank0", "out_address0", "out_offset", "position",
                    "window"),
    Opcode.EMBED: ("id", "position"),
    Opcode.COPY: ("source", "address"),
}
"""The fields a relocation may change, by op: its ``field`` is an index into the op's tuple."""

HEADER = [("version", 2, False), ("entries", 2, False), ("vocab", 2, False), ("context", 2, False)]
"""PROGRAM word 0: the format's version, the number of ops, and the ids and positions TOKEN takes."""

RECORD_BYTES = PROGRAM_ENTRY_BYTES - 1 - RELOCATIONS * record_size(RELOCATION)
ENTRY = ([("opcode", 1, False)] + [(f"{name}_{i}", size, signed) for i in range(RELOCATIONS)
                                   for name, size, signed in RELOCATION]
         + [("record", RECORD_BYTES, False)])
"""A PROGRAM word: opcode, the relocations (fields ``field_0``, ``source_0``, ...), the record."""
assert record_size(ENTRY) == PROGRAM_ENTRY_BYTES
assert all(record_size(record) <= RECORD_BYTES for record in PROGRAM_OPS.values())


class Relocation(tuple):
    """``(field, source, ring, shift, mask, scale)``, ``field`` a name of :data:`RELOCATABLE`."""

    def __new__(cls, field, source, ring=0, shift=0, mask=0xFFFF, scale=1):
        return super().__new__(cls, (field, Source(source), ring, shift, mask, scale))


def program_ops(dram):
    """The ops a device's programs may hold: COPY only where it has DRAM (elsewhere an entry of
    another op refuses the program, as :func:`unpack_entry`'s malformed entries do)."""
    return {opcode: fields for opcode, fields in PROGRAM_OPS.items() if dram or opcode != Opcode.COPY}


def pack_header(entries, vocab, context):
    """PROGRAM word 0 for a program of ``entries`` ops."""
    return pack_record(HEADER, version=PROGRAM_VERSION, entries=entries, vocab=vocab,
                       context=context).ljust(PROGRAM_ENTRY_BYTES, b"\0")


def pack_entry(opcode, fields, relocations=()):
    """One PROGRAM word: op ``opcode`` with its record's ``fields`` (a dict) and up to
    :data:`RELOCATIONS` :class:`Relocation`\\ s."""
    opcode = Opcode(opcode)
    if opcode not in PROGRAM_OPS:
        raise ValueError(f"a program cannot hold {opcode.name}")
    if len(relocations) > RELOCATIONS:
        raise ValueError(f"an entry holds at most {RELOCATIONS} relocations, not {len(relocations)}")
    values = {"opcode": opcode, "record": int.from_bytes(pack_record(PROGRAM_OPS[opcode], **fields), "little")}
    for i, (field, source, ring, shift, mask, scale) in enumerate(relocations):
        if field not in RELOCATABLE.get(opcode, ()):
            raise ValueError(f"{opcode.name}'s {field} cannot be relocated")
        if source in (Source.SLOT, Source.KEYS) and ring < 1:
            raise ValueError(f"a {source.name} relocation needs a ring of at least one slot")
        values.update({f"field_{i}": RELOCATABLE[opcode].index(field), f"source_{i}": source, f"ring_{i}": ring,
                       f"shift_{i}": shift, f"mask_{i}": mask, f"scale_{i}": scale})
    return pack_record(ENTRY, **values)


def unpack_entry(word):
    """``(opcode, fields, relocations)`` of a PROGRAM word, ``relocations`` the used ones as dicts
    of RELOCATION's fields; ValueError for an opcode a program cannot hold or a field that cannot
    be relocated."""
    entry = unpack_record(ENTRY, word)
    try:
        opcode = Opcode(entry["opcode"])
    except ValueError:
        opcode = None
    if opcode not in PROGRAM_OPS:
        raise ValueError(f"opcode {entry['opcode']:#04x} in a program")
    record = PROGRAM_OPS[opcode]
    fields = unpack_record(record, entry["record"].to_bytes(RECORD_BYTES, "little")[:record_size(record)])
    relocations = []
    for i in range(RELOCATIONS):
        relocation = {name: entry[f"{name}_{i}"] for name, _, _ in RELOCATION}
        if relocation["source"] == Source.NONE:
            continue
        if relocation["source"] not in set(Source) or relocation["field"] >= len(RELOCATABLE.get(opcode, ())) \
                or (relocation["source"] in (Source.SLOT, Source.KEYS) and relocation["ring"] == 0):
            raise ValueError(f"relocation {i} of a {opcode.name} entry is malformed")
        relocations.append(relocation)
    return opcode, fields, relocations


def source_value(source, ring, position, token):
    """The ``q`` of a relocation with ``source`` and ``ring`` for ``token`` at ``position``."""
    if source == Source.POSITION:
        return position
    if source == Source.ID:
        return token
    if source == Source.SLOT:
        return position % ring
    if source == Source.KEYS:
        return min(position + 1, ring)
    raise ValueError(f"no value for source {source}")


def relocate(opcode, fields, relocations, position, token):
    """``fields`` (a dict, changed in place and returned) with the relocations' terms added."""
    sizes = {name: size for name, size, _ in PROGRAM_OPS[opcode]}
    for r in relocations:
        name = RELOCATABLE[opcode][r["field"]]
        q = source_value(r["source"], r["ring"], position, token)
        fields[name] = (fields[name] + ((q >> r["shift"]) & r["mask"]) * r["scale"]) % 2 ** (8 * sizes[name])
    return fields
