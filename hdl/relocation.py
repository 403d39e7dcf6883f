"""The relocation unit: one term of a program entry's relocation, bit for bit
:func:`neofpga.contract.program.relocate`'s ``((q >> shift) & mask) * scale``.

``q`` is the token's position or id, ``min(position + 1, ring)`` (the keys a token sees), or
``position % ring`` (its slot), the last by restoring division, one quotient bit a cycle. The
product is by shift and add over the bits of ``scale``, so a scale of 1 (most relocations) takes
one cycle and no multiplier. A term is offered ``3 + bit_length(scale)`` cycles after its request
is taken, 17 more for a slot.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.program import Source

__all__ = ["RelocationRequest", "Relocator"]

RelocationRequest = data.StructLayout({
    "source": 3, "ring": 16, "shift": 8, "mask": 16, "scale": 16, "position": 16, "token": 16,
})
"""A relocation's fields (contract/program.py: RELOCATION, less the field it goes to) and the token."""


class Relocator(wiring.Component):
    """One relocation term a request: ``((q >> shift) & mask) * scale`` with ``q`` from ``source``.

    A source of NONE gives 0, as do those contract/program.py does not define (which the sequencer
    refuses before they get here). Both streams may stall at any point.

    Attributes
    ----------
    i : In(stream.Signature(RelocationRequest))
        The requests.
    o : Out(stream.Signature(32))
        Their terms, in order.
    """

    i: In(stream.Signature(RelocationRequest))
    o: Out(stream.Signature(32))

    def elaborate(self, platform):
        m = Module()
        request = Signal(RelocationRequest)
        remainder = Signal(17)        # the division's partial remainder (below 2 * ring)
        dividend = Signal(16)         # the position's bits not yet brought down
        count = Signal(range(17))
        addend = Signal(32)           # (q >> shift) & mask, shifted left as the product goes
        multiplier = Signal(16)       # the bits of scale not yet added in
        product = Signal(32)

        def start_product(q):
            m.d.sync += [addend.eq((q >> request.shift) & request.mask), multiplier.eq(request.scale),
                         product.eq(0)]
            m.next = "MULTIPLY"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += request.eq(self.i.payload)
                    m.next = "SOURCE"

            with m.State("SOURCE"):
                keys = Mux(request.position + 1 < request.ring, request.position + 1, request.ring)
                with m.Switch(request.source):
                    with m.Case(Source.POSITION):
                        start_product(request.position)
                    with m.Case(Source.ID):
                        start_product(request.token)
                    with m.Case(Source.KEYS):
                        start_product(keys)
                    with m.Case(Source.SLOT):
                        m.d.sync += [remainder.eq(0), dividend.eq(request.position), count.eq(16)]
                        m.next = "DIVIDE"
                    with m.Default():
                        start_product(0)

            with m.State("DIVIDE"):  # restoring division: position % ring, a bit a cycle
                shifted = Signal(17)
                m.d.comb += shifted.eq((remainder << 1) | dividend[-1])
                m.d.sync += [remainder.eq(Mux(shifted >= request.ring, shifted - request.ring, shifted)),
                             dividend.eq(dividend << 1), count.eq(count - 1)]
                with m.If(count == 1):
                    m.next = "SLOT"

            with m.State("SLOT"):
                start_product(remainder[:16])

            with m.State("MULTIPLY"):  # shift and add over the set bits of scale
                with m.If(multiplier == 0):
                    m.next = "OUT"
                with m.Else():
                    m.d.sync += [product.eq(product + Mux(multiplier[0], addend, 0)), addend.eq(addend << 1),
                                 multiplier.eq(multiplier >> 1)]

            with m.State("OUT"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(product)]
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
