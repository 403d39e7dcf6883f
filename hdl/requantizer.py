"""The requantizer: an int32 accumulator to the next layer's integer format (docs/NUMERICS.md).

It computes :func:`neofpga.host.kernels.requantize` bit for bit, one element per cycle.
"""

from amaranth.hdl import Cat, Module, Mux, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import StallingPipeline

__all__ = ["RequantizerInput", "Requantizer"]

FLOOR_BITS = 16  # bits of the floor kept: one outside int16 rounds to beyond any int16 limit


RequantizerInput = data.StructLayout({
    "acc": signed(32),           # the matmul's accumulator
    "bias": signed(32),          # the column's bias
    "multiplier": unsigned(16),  # M, in [2**15, 2**16) in every image (any value works)
    "shift": unsigned(6),        # 0..48
    "low": signed(16),           # saturation limits, low <= high in every image
    "high": signed(16),
})
"""One element with its column's parameters: the requantizer keeps no per-column state."""


class Requantizer(wiring.Component):
    """``saturate(round_half_even((acc + bias) * M / 2**shift), low, high)`` on a stream.

    One element per cycle, :attr:`LATENCY` register stages. The stages advance together whenever
    the output register is empty or being taken (``i.ready`` is that condition), so an element
    is never dropped or duplicated whatever ``i.valid`` and ``o.ready`` do.

    1. ``total = acc + bias``, 33 bits.
    2. ``total * M`` as two 18 x 18 products (two MULT18X18D, registers on both sides): the
       unsigned low 17 bits of ``total`` times M and its signed high 16 bits times M.
    3. ``product = (high << 17) + low``, 49 bits.
    4. The variable shift, of ``2 product`` so that the bit just below the floor ``q`` (the
       half bit) comes along. Only ``q``'s low 16 bits are kept: a floor outside int16 is beyond
       every int16 limit whichever way it rounds, and ``overflow`` flags it (the product's bits
       from ``15 + shift`` up are not all copies of its sign). ``sticky`` is the OR of the
       product's bits below the half bit.
    5. Round half to even: ``q + 1`` if the half bit is set and the sticky bit or ``q``'s least
       significant bit is (``shift`` 0 has no half bit: nothing is rounded).
    6. Saturate to ``[low, high]`` into the output register: an overflowed floor to the limit
       on its side. As ``min(max(y, low), high)``, ``high`` wins if ``low > high``.

    Ports
    -----
    i : ``In(stream.Signature(RequantizerInput))``
    o : ``Out(stream.Signature(signed(16)))``
    """

    LATENCY = 6  #: cycles from an element taken on ``i`` to its result offered on ``o``, unstalled

    i: In(stream.Signature(RequantizerInput))
    o: Out(stream.Signature(signed(16)))

    def elaborate(self, platform):
        m = Module()

        pipeline = StallingPipeline(m, self.i, self.o, self.LATENCY)
        advance, stage = pipeline.advance, pipeline.stage

        def delayed(name, value, stages):
            """``value`` delayed by ``stages`` pipeline stages."""
            for index in range(stages):
                value = stage(f"{name}_{index + 1}", value)
            return value

        element = self.i.payload

        # 1. the 33-bit sum
        total = stage("total", element.acc + element.bias)
        multiplier = stage("multiplier", element.multiplier)

        # 2. two 18 x 18 products
        low_product = stage("low_product", total[:17] * multiplier)
        high_product = stage("high_product", total[17:].as_signed() * multiplier)

        # 3. the 49-bit product
        product = stage("product", ((high_product << 17) + low_product)[:49].as_signed())

        # 4. the shift: `window` is the floor's low FLOOR_BITS bits above the half bit
        shift = delayed("shift", element.shift, 3)
        window = stage("window", ((product << 1) >> shift)[:FLOOR_BITS + 1])
        below_half = Cat(*(shift > bit + 1 for bit in range(47)))  # bits under the half bit
        sticky = stage("sticky", (product[:47] & below_half).any())
        sign = product[-1]
        overflow = stage("overflow", Cat(*((product[bit] != sign) & (shift <= bit - (FLOOR_BITS - 1))
                                           for bit in range(FLOOR_BITS - 1, 48))).any())
        negative = stage("negative", sign)

        # 5. round half to even
        floor, half = window[1:].as_signed(), window[0]
        round_up = half & (sticky | floor[0])
        rounded = stage("rounded", floor + round_up)
        overflow, negative = stage("overflow_5", overflow), stage("negative_5", negative)

        # 6. saturate (a low limit above the high one is replaced by it: min(max(y, low), high))
        low, high = delayed("low", element.low, 4), delayed("high", element.high, 4)
        clamp_low = stage("clamp_low", Mux(low > high, high, low))
        clamp_high = stage("clamp_high", high)
        with m.If(advance):
            with m.If(overflow):
                m.d.sync += self.o.payload.eq(Mux(negative, clamp_low, clamp_high))
            with m.Elif(rounded > clamp_high):
                m.d.sync += self.o.payload.eq(clamp_high)
            with m.Elif(rounded < clamp_low):
                m.d.sync += self.o.payload.eq(clamp_low)
            with m.Else():
                m.d.sync += self.o.payload.eq(rounded)
        return m
