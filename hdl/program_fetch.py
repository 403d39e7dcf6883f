"""The program fetch unit: one program entry, read from the PROGRAM memory and relocated for a
token, bit for bit :func:`neofpga.contract.program.unpack_entry` then
:func:`~neofpga.contract.program.relocate`.

An entry's :data:`~neofpga.contract.protocol.PROGRAM_ENTRY_BYTES` bytes are read a memory word a
cycle from a synchronous read port (shifted into a register, so no byte decoder): 20 cycles for
words of 4 bytes, 80 for bytes. Then each used relocation
asks :class:`~.relocation.Relocator` for its term and adds it to its field, modulo the field's
width. An entry that :func:`~neofpga.contract.program.unpack_entry` refuses (an opcode a program
cannot hold, a relocation of an undefined source or field, a ring of 0 slots) comes out marked
``malformed``, without its relocations applied, for the sequencer to refuse the whole program.
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.program import ENTRY, PROGRAM_OPS, RECORD_BYTES, RELOCATABLE, RELOCATIONS, Source
from ..contract.protocol import PROGRAM_ENTRY_BYTES
from .relocation import Relocator
from .results import record_layout

__all__ = ["ProgramRequest", "RelocatedEntry", "ProgramFetch", "field_slices", "times_constant"]

ProgramRequest = data.StructLayout({"entry": unsigned(16), "position": unsigned(16), "token": unsigned(16)})
"""Which PROGRAM word to fetch (1 is the first op), and the token it is relocated for."""

RelocatedEntry = data.StructLayout({"opcode": unsigned(8), "record": unsigned(8 * RECORD_BYTES), "malformed": 1})
"""An op of the program as it runs for the token: its opcode and its relocated record."""


def times_constant(value, constant):
    """``value * constant`` by shifts and adds over the constant's set bits (no multiplier)."""
    return sum((value << bit for bit in range(constant.bit_length()) if constant >> bit & 1), 0)


def field_slices(ops=PROGRAM_OPS):
    """``{(opcode, field index): (first bit, width)}`` of every relocatable field in a record of ``ops``."""
    slices = {}
    for opcode, fields in RELOCATABLE.items():
        if opcode not in ops:
            continue
        offsets, offset = {}, 0
        for name, size, _ in PROGRAM_OPS[opcode]:
            offsets[name] = (8 * offset, 8 * size)
            offset += size
        slices.update({(opcode, index): offsets[name] for index, name in enumerate(fields)})
    return slices


class ProgramFetch(wiring.Component):
    """Fetch and relocate one program entry a request.

    Parameters
    ----------
    address_width : bits of a word address in the PROGRAM memory
    word_bytes : bytes in a word of the PROGRAM memory (a divisor of PROGRAM_ENTRY_BYTES)
    ops : the ops the device's programs may hold (contract/program.py's ``program_ops``); an entry
        of any other comes out malformed

    Attributes
    ----------
    i : In(stream.Signature(ProgramRequest))
        The requests.
    o : Out(stream.Signature(RelocatedEntry))
        Their entries, in order. Both streams may stall at any point.
    addr : Out(address_width)
        The PROGRAM word to read: ``entry * PROGRAM_ENTRY_BYTES / word_bytes`` and on.
    data : In(8 * word_bytes)
        The word at the ``addr`` of the cycle before (a synchronous read port, always enabled),
        its first byte in the low bits.
    """

    def __init__(self, address_width, word_bytes=1, ops=PROGRAM_OPS):
        if PROGRAM_ENTRY_BYTES % word_bytes:
            raise ValueError(f"a PROGRAM entry of {PROGRAM_ENTRY_BYTES} bytes is no whole number of {word_bytes}-byte words")
        self.words = PROGRAM_ENTRY_BYTES // word_bytes
        self.ops = ops
        super().__init__({"i": In(stream.Signature(ProgramRequest)), "o": Out(stream.Signature(RelocatedEntry)),
                          "addr": Out(address_width), "data": In(8 * word_bytes)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.relocator = relocator = Relocator()
        request = Signal(ProgramRequest)
        entry = Signal(record_layout(ENTRY))
        base = Signal.like(self.addr)
        count = Signal(range(self.words + 1))
        which = Signal(range(RELOCATIONS))  # the relocation being applied
        relocations = [{name: getattr(entry, f"{name}_{i}") for name in
                        ("field", "source", "ring", "shift", "mask", "scale")} for i in range(RELOCATIONS)]

        # what unpack_entry refuses
        program_op = Signal()
        with m.Switch(entry.opcode):
            for opcode in self.ops:
                with m.Case(opcode):
                    m.d.comb += program_op.eq(1)
        fields = Signal(4)  # how many fields the op can relocate
        with m.Switch(entry.opcode):
            for opcode, names in RELOCATABLE.items():
                if opcode not in self.ops:
                    continue
                with m.Case(opcode):
                    m.d.comb += fields.eq(len(names))
        bad_relocation = []
        for r in relocations:
            bad = Signal()
            ringed = (r["source"] == Source.SLOT) | (r["source"] == Source.KEYS)
            m.d.comb += bad.eq((r["source"] != Source.NONE)
                               & ((r["source"] > max(Source)) | (r["field"] >= fields) | (ringed & (r["ring"] == 0))))
            bad_relocation.append(bad)
        malformed = ~program_op | Cat(bad_relocation).any()

        chosen = {name: Signal.like(relocations[0][name], name=f"chosen_{name}") for name in relocations[0]}
        with m.Switch(which):
            for i, r in enumerate(relocations):
                with m.Case(i):
                    m.d.comb += [chosen[name].eq(r[name]) for name in r]
        m.d.comb += [relocator.i.payload.source.eq(chosen["source"]), relocator.i.payload.ring.eq(chosen["ring"]),
                     relocator.i.payload.shift.eq(chosen["shift"]), relocator.i.payload.mask.eq(chosen["mask"]),
                     relocator.i.payload.scale.eq(chosen["scale"]),
                     relocator.i.payload.position.eq(request.position), relocator.i.payload.token.eq(request.token)]
        m.d.comb += [self.o.payload.opcode.eq(entry.opcode), self.o.payload.record.eq(entry.record),
                     self.o.payload.malformed.eq(malformed)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [request.eq(self.i.payload), count.eq(0),
                                 base.eq(times_constant(self.i.payload.entry, self.words))]
                    m.next = "FETCH"

            with m.State("FETCH"):  # address count goes out; the word of count - 1 comes in
                m.d.comb += self.addr.eq(base + count)
                m.d.sync += count.eq(count + 1)
                with m.If(count != 0):
                    m.d.sync += entry.eq(Cat(entry.as_value()[len(self.data):], self.data))
                with m.If(count == self.words):
                    m.d.sync += which.eq(0)
                    m.next = "RELOCATE"

            with m.State("RELOCATE"):  # the next used relocation, if any, goes to the relocator
                with m.If(malformed):
                    m.next = "OUT"
                with m.Elif(chosen["source"] == Source.NONE):
                    self._next_relocation(m, which)
                with m.Else():
                    m.d.comb += relocator.i.valid.eq(1)
                    with m.If(relocator.i.ready):
                        m.next = "TERM"

            with m.State("TERM"):  # its term, added to its field
                m.d.comb += relocator.o.ready.eq(1)
                with m.If(relocator.o.valid):
                    with m.Switch(Cat(chosen["field"], entry.opcode)):
                        for (opcode, index), (start, width) in field_slices(self.ops).items():
                            with m.Case(index | (opcode << len(chosen["field"]))):
                                field = entry.record[start:start + width]
                                m.d.sync += field.eq(field + relocator.o.payload)
                    self._next_relocation(m, which)

            with m.State("OUT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m

    @staticmethod
    def _next_relocation(m, which):
        with m.If(which == RELOCATIONS - 1):
            m.next = "OUT"
        with m.Else():
            m.d.sync += which.eq(which + 1)
            m.next = "RELOCATE"
