"""A registered multiplier that keeps its pipeline registers inside an ECP5 DSP block.

Yosys maps a ``*`` onto a MULT18X18D but keeps the registers around it in the fabric, so every
product pays the routing into and out of the DSP column within one cycle: a 12 x 12 array of
such cells placed at 72 MHz. With the DSP's own input and output registers the multiplication
is a stage of its own, and one more register in the fabric gives the route out of the DSP
column a cycle of its own too (without it: 92 MHz, the accumulator placed far from its DSP).
On other targets (and in simulation) the same three stages are RTL.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Multiplier"]


class Multiplier(wiring.Component):
    """``p = a * b`` for signed operands of at most 18 bits, three register stages later.

    The stages advance only while ``en`` is high, so a stalled pipeline keeps its products.
    """

    LATENCY = 3

    def __init__(self, a_width, b_width):
        assert a_width <= 18 and b_width <= 18
        self.a_width, self.b_width = a_width, b_width
        super().__init__({"a": In(signed(a_width)), "b": In(signed(b_width)), "en": In(1),
                          "p": Out(signed(a_width + b_width))})

    def elaborate(self, platform):
        m = Module()
        product = Signal(signed(36))  # the DSP's output register, or its RTL twin
        with m.If(self.en):
            m.d.sync += self.p.eq(product)
        if getattr(platform, "family", None) == "ecp5":
            a, b = Signal(signed(18)), Signal(signed(18))
            m.d.comb += [a.eq(self.a), b.eq(self.b)]
            registers = {f"p_REG_{stage}_{kind}": value
                         for stage in ("INPUTA", "INPUTB", "OUTPUT")
                         for kind, value in (("CLK", "CLK0"), ("CE", "CE0"), ("RST", "RST0"))}
            m.submodules.mult = Instance(
                "MULT18X18D", **registers, p_GSR="DISABLED", p_RESETMODE="SYNC",
                **{f"i_A{i}": a[i] for i in range(18)}, **{f"i_B{i}": b[i] for i in range(18)},
                **{f"i_C{i}": Const(0) for i in range(18)},
                i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
                i_CLK0=ClockSignal(), i_CE0=self.en, i_RST0=Const(0),
                **{f"o_P{i}": product[i] for i in range(36)})
        else:
            a, b = Signal.like(self.a), Signal.like(self.b)
            with m.If(self.en):
                m.d.sync += [a.eq(self.a), b.eq(self.b), product.eq(a * b)]
        return m
