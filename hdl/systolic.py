"""An output-stationary systolic array of multiply-accumulate cells.

``rows x cols`` cells; cell (r, c) accumulates ``sum_k a[r][k] * b[c][k]`` for one output tile.
Row r's activations enter at the left edge r cycles late and move right one cell a cycle; column
c's weights enter at the top c cycles late and move down. Each cell's product comes out of a
two-stage :class:`Multiplier` (registers inside the DSP block on an ECP5) into a 32-bit
accumulator, so no cycle holds more than the DSP or one add. When a
tile's last step has passed a cell, its sum is copied into a holding register and the cell starts
the next tile at once; the held rows leave through the output, one row of ``cols`` sums a cycle.

A tile is the run of steps from one with ``first`` set to one with ``last`` set. Tiles must end at
least ``max(rows, cols)`` cycles apart, because a cell's held sum must be read before the next
tile replaces it: the array pads shorter ones itself (it holds back a ``last`` step until then,
and idles on zero steps meanwhile).
The whole array advances together; it stalls only while an output row waits to be taken, and
idles on zeros when no input is offered, so bubbles and back-pressure never change a result.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import Multiplier

__all__ = ["ArrayStep", "SystolicArray"]


def ArrayStep(rows, cols, a_width=16, b_width=8):
    """One step of a tile: a column of activations, a row of weights, and the tile's flags."""
    return data.StructLayout({"a": data.ArrayLayout(signed(a_width), rows),
                              "b": data.ArrayLayout(signed(b_width), cols),
                              "first": 1, "last": 1})


class SystolicArray(wiring.Component):
    """``rows x cols`` multiply-accumulate cells, ``a_width``-bit activations times ``b_width``-bit
    weights, exact ``acc_width``-bit sums.

    ``i`` takes tile steps (:func:`ArrayStep`); ``o`` gives each finished tile as ``rows`` beats,
    beat r holding the ``cols`` sums of row r.
    """

    def __init__(self, rows, cols, a_width=16, b_width=8, acc_width=32):
        self.rows, self.cols = rows, cols
        self.a_width, self.b_width, self.acc_width = a_width, b_width, acc_width
        self.min_tile = max(rows, cols)
        super().__init__({"i": In(stream.Signature(ArrayStep(rows, cols, a_width, b_width))),
                          "o": Out(stream.Signature(data.ArrayLayout(signed(acc_width), cols)))})

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols

        # The array moves when the output register is free or being emptied.
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # Pad short tiles: a tile's last step waits until min_tile steps after the previous tile's
        # last, so that the held sums are read out before the next tile's sums replace them.
        since_last = Signal(range(self.min_tile + 1), init=self.min_tile)
        may_finish = Signal()
        m.d.comb += [
            may_finish.eq(since_last >= self.min_tile - 1),
            self.i.ready.eq(advance & (~self.i.payload.last | may_finish)),
        ]
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready)
        step = Signal.like(self.i.payload)  # zeros when nothing is taken: a harmless bubble
        m.d.comb += step.eq(Mux(take, self.i.payload, 0))
        with m.If(advance):
            with m.If(step.last):
                m.d.sync += since_last.eq(0)
            with m.Elif(since_last < self.min_tile):
                m.d.sync += since_last.eq(since_last + 1)

        # Edge skew: row r's activations and flags pass r + 1 registers, column c's weights c + 1.
        def delayed(value, depth, name):
            chain = [Signal.like(value, name=f"{name}_{i}") for i in range(depth)]
            with m.If(advance):
                m.d.sync += chain[0].eq(value)
                m.d.sync += [later.eq(earlier) for earlier, later in zip(chain, chain[1:])]
            return chain[-1]

        a_edge = [delayed(step.a[r], r + 1, f"a_edge{r}") for r in range(rows)]
        first_edge = [delayed(step.first, r + 1, f"first_edge{r}") for r in range(rows)]
        last_edge = [delayed(step.last, r + 1, f"last_edge{r}") for r in range(rows)]
        b_edge = [delayed(step.b[c], c + 1, f"b_edge{c}") for c in range(cols)]

        # The cells. held[r][c] keeps the finished sum of the last tile.
        held = [[Signal(signed(self.acc_width), name=f"held_{r}_{c}") for c in range(cols)] for r in range(rows)]
        a_in, first_in, last_in = a_edge, first_edge, last_edge
        b_in = b_edge
        for r in range(rows):
            a, first, last = a_in[r], first_in[r], last_in[r]
            for c in range(cols):
                b = b_in[c]
                a_out, b_out = Signal.like(a, name=f"a_{r}_{c}"), Signal.like(b, name=f"b_{r}_{c}")
                first_out, last_out = Signal(name=f"first_{r}_{c}"), Signal(name=f"last_{r}_{c}")
                m.submodules[f"mult_{r}_{c}"] = mult = Multiplier(self.a_width, self.b_width)
                m.d.comb += [mult.a.eq(a), mult.b.eq(b), mult.en.eq(advance)]
                # the flags travel beside the multiplier's pipeline
                product_first = delayed(first, Multiplier.LATENCY, f"pfirst_{r}_{c}")
                product_last = delayed(last, Multiplier.LATENCY, f"plast_{r}_{c}")
                total = Signal(signed(self.acc_width), name=f"acc_{r}_{c}")
                following = Signal(signed(self.acc_width), name=f"next_{r}_{c}")
                m.d.comb += following.eq(Mux(product_first, mult.p, total + mult.p))
                with m.If(advance):
                    m.d.sync += [a_out.eq(a), b_out.eq(b), first_out.eq(first), last_out.eq(last),
                                 total.eq(following)]
                    with m.If(product_last):
                        m.d.sync += held[r][c].eq(following)
                a, first, last = a_out, first_out, last_out
                b_in[c] = b_out

        # Row r of a tile is complete cols + 2 + LATENCY + r cycles after its last step was taken.
        done = [Signal(name=f"done_{i}") for i in range(rows + cols + Multiplier.LATENCY)]
        with m.If(advance):
            m.d.sync += done[0].eq(step.last)
            m.d.sync += [later.eq(earlier) for earlier, later in zip(done, done[1:])]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance):
            for r in range(rows):
                with m.If(done[cols + Multiplier.LATENCY + r]):
                    m.d.sync += [self.o.payload[c].eq(held[r][c]) for c in range(cols)]
                    m.d.sync += self.o.valid.eq(1)
        return m
