"""The GELU unit: gelu_new by linear interpolation between per-layer knots (docs/NUMERICS.md).

It computes :func:`neofpga.host.kernels.integer_gelu` bit for bit, one element per cycle.
"""

from amaranth.hdl import Cat, Module, Mux, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.numerics import GELU_KNOT_BITS, GELU_KNOTS, GELU_SEGMENT_BITS
from .pipeline import StallingPipeline

__all__ = ["knot_write_layout", "GELU"]

FRACTION_BITS = 16 - GELU_SEGMENT_BITS
"""The input's low bits: where it lies within its segment."""


def knot_write_layout(table_count):
    """The payload of :class:`GELU`'s ``load``: knot ``address`` (``257 table + j``) gets ``value``."""
    return data.StructLayout({"address": range(GELU_KNOTS * table_count), "value": signed(GELU_KNOT_BITS)})


class GELU(wiring.Component):
    """``integer_gelu(x, knots, low, high)`` on a stream, with one knot table per layer.

    For ``x``: ``u = x + 32768``, segment ``i = u >> 8``, fraction ``f = u & 255``, and
    ``y = knots[i] + (((knots[i+1] - knots[i]) * f + 128) >> 8)``, saturated to ``[low, high]``.

    **Knots are 18-bit.** A knot is ``gelu_new(code * s_fc) / s_gelu`` with ``s_gelu`` set so
    that ``gelu_new(32767 s_fc)`` is the limit A <= 32767. The largest knot sits at code 32768,
    one past the input range, and reaches 32768 (the shipped model's layers do), one more than
    int16 holds; the most negative, ``gelu_new(-X) = gelu_new(X) - X >= -gelu_new(X)``, is no
    larger in magnitude. So knots need 17 signed bits; they are stored in 18, the DP16KD's word
    (1024 x 18), and the unit is exact for any 18-bit knots: their 19-bit difference ``d`` is
    multiplied as ``(d >> 1) * 2f + (d & 1) * f``, one 18 x 18 product (one MULT18X18D) and an
    addition.

    **Memory.** Table ``t``'s knot ``j`` is knot ``g = 257 t + j`` of one sequence, which is split
    by parity into two memories: even knots (``g >> 1`` in the even memory) and odd knots. The
    two knots an element needs, ``g`` and ``g + 1``, always lie one in each, so one read port per
    memory gives both in one cycle, and each memory keeps one write port for ``load``: no knot is
    stored twice, and the 257 knots of up to 7 tables fit two DP16KD (1024 x 18 each). (Two full
    copies of the table would take twice the storage; pairs ``(knots[i], knots[i+1])`` would
    need every loaded knot written into two words.)

    **Pipeline** (:attr:`LATENCY` stages, advancing together whenever the output register is empty
    or being taken, which is ``i.ready``: nothing is dropped or duplicated under any stalls):

    1. knot address ``g = 257 table + i`` (``(table << 8 | i) + table``) and ``f``;
    2. the two memories' read registers;
    3. the same knots in fabric registers (a DP16KD's unregistered output takes 6 ns);
    4. ``knots[i]`` (the parity of ``g`` says which memory holds it) and the difference ``d``;
    5. ``(d >> 1) * 2f`` on a MULT18X18D (registered in and out) and, alongside,
       ``256 knots[i] + (d & 1) * f + 128``;
    6. their sum ``>> 8``: ``floor((256 knots[i] + d f + 128) / 256)`` is exactly ``y``;
    7. saturation to ``[low, high]`` (as ``min(max(y, low), high)``) into the output register.

    ``table``, ``low`` and ``high`` are read at stages 1 and 7; they must be held while elements
    that use them are in the pipeline (the top level holds them for a whole stream).

    ``load`` writes ``value`` to knot ``address`` (``257 table + j``), one write per cycle
    (``load.ready`` is always 1). A write takes effect at once: an element in flight may see the
    old knot or the new one, but every element comes out exactly once and in order. Addresses
    past the last table write nothing that is ever read.

    Parameters
    ----------
    tables : list of sequences of 257 ints
        The knot tables (``numerics.gelu_knots``), the memories' initial contents.

    Ports
    -----
    i : ``In(stream.Signature(signed(16)))``
        ``x``.
    o : ``Out(stream.Signature(signed(16)))``
        ``y``.
    table : ``In(range(len(tables)))``
        Which table the elements use.
    low, high : ``In(signed(16))``
        Output limits.
    load : ``In(stream.Signature(knot_write_layout(len(tables))))``
        Knot writes: ``address`` (``range(257 * len(tables))``) and ``value`` (``signed(18)``).
    """

    LATENCY = 7  #: cycles from an element taken on ``i`` to its result offered on ``o``, unstalled

    def __init__(self, tables):
        self.tables = [[int(knot) for knot in table] for table in tables]
        if not self.tables:
            raise ValueError("the GELU unit needs at least one knot table")
        for index, table in enumerate(self.tables):
            if len(table) != GELU_KNOTS:
                raise ValueError(f"knot table {index} has {len(table)} knots, not {GELU_KNOTS}")
            if not all(-2 ** (GELU_KNOT_BITS - 1) <= knot < 2 ** (GELU_KNOT_BITS - 1) for knot in table):
                raise ValueError(f"knot table {index} has values beyond {GELU_KNOT_BITS} signed bits")
        super().__init__({
            "i": In(stream.Signature(signed(16))),
            "o": Out(stream.Signature(signed(16))),
            "table": In(range(len(self.tables))),
            "low": In(signed(16)),
            "high": In(signed(16)),
            "load": In(stream.Signature(knot_write_layout(len(self.tables)))),
        })

    def elaborate(self, platform):
        m = Module()

        knots = [knot for table in self.tables for knot in table]
        m.submodules.even_knots = even_knots = memory.Memory(
            shape=signed(GELU_KNOT_BITS), depth=(len(knots) + 1) // 2, init=knots[0::2])
        m.submodules.odd_knots = odd_knots = memory.Memory(
            shape=signed(GELU_KNOT_BITS), depth=len(knots) // 2, init=knots[1::2])

        # knot writes: the address's parity picks the memory
        address, value = self.load.payload.address, self.load.payload.value
        m.d.comb += self.load.ready.eq(1)
        for parity, knot_memory in enumerate((even_knots, odd_knots)):
            write = knot_memory.write_port()
            m.d.comb += [
                write.addr.eq(address >> 1),
                write.data.eq(value),
                write.en.eq(self.load.valid & (address[0] == parity)),
            ]

        pipeline = StallingPipeline(m, self.i, self.o, self.LATENCY)
        advance, stage = pipeline.advance, pipeline.stage

        # 1. the first knot's address and the fraction
        x = self.i.payload
        segment = Cat(x[FRACTION_BITS:15], ~x[15])  # (x + 32768) >> FRACTION_BITS
        first = stage("first", Cat(segment, self.table) + self.table)  # GELU_KNOTS table + segment
        fraction = stage("fraction", x[:FRACTION_BITS])

        # 2. both knots, from the memory that holds each
        even_read, odd_read = even_knots.read_port(), odd_knots.read_port()
        m.d.comb += [
            even_read.addr.eq((first + 1) >> 1),
            odd_read.addr.eq(first >> 1),
            even_read.en.eq(advance),
            odd_read.en.eq(advance),
        ]
        first_is_odd = stage("first_is_odd", first[0])
        fraction = stage("fraction_2", fraction)

        # 3. the knots again, in fabric registers (a DP16KD's data output is slow)
        even_knot, odd_knot = stage("even_knot", even_read.data), stage("odd_knot", odd_read.data)
        first_is_odd = stage("first_is_odd_3", first_is_odd)
        fraction = stage("fraction_3", fraction)

        # 4. the left knot and the difference
        left = Mux(first_is_odd, odd_knot, even_knot)    # knots[i]
        right = Mux(first_is_odd, even_knot, odd_knot)   # knots[i + 1]
        knot = stage("knot", left)
        difference = stage("difference", right - left)
        fraction = stage("fraction_4", fraction)

        # 5. difference * fraction: an 18 x 10 product and the odd difference's share
        half_product = stage("half_product", difference[1:].as_signed() * (fraction << 1))
        offset = stage("offset", (knot << FRACTION_BITS) + Mux(difference[0], fraction, 0) + 2 ** (FRACTION_BITS - 1))

        # 6. y
        y = stage("y", (half_product + offset) >> FRACTION_BITS)

        # 7. saturate (a low limit above the high one is replaced by it: min(max(y, low), high))
        clamp_low = Mux(self.low > self.high, self.high, self.low)
        with m.If(advance):
            with m.If(y > self.high):
                m.d.sync += self.o.payload.eq(self.high)
            with m.Elif(y < clamp_low):
                m.d.sync += self.o.payload.eq(clamp_low)
            with m.Else():
                m.d.sync += self.o.payload.eq(y)
        return m
