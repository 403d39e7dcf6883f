"""An output-stationary systolic array of multiply-accumulate cells.

``rows x cols`` cells; cell (r, c) accumulates ``sum_k a[r][k] * b[c][k]`` for one output tile.
Row r's activations enter at the left edge r cycles late and move right one cell a cycle; column
c's weights enter at the top c cycles late and move down. Each cell's product comes out of a
three-stage :class:`Multiplier` (registers inside the DSP block on an ECP5) into a 32-bit
accumulator, so no cycle holds more than the DSP, one route or one add. When a tile's last step
has passed a cell, its sum is copied into a holding register and the cell starts the next tile
at once; the held rows go into an output buffer, one row of ``cols`` sums a cycle.

The cells never stall: an enable reaching every register of a 12 x 12 array is a net of 18,000
loads and alone held the clock to 49 MHz. Instead the array runs every cycle, a valid bit
travelling with each step so that bubbles accumulate nothing, and takes a tile's last step only
once the output buffer has room reserved for that tile's rows; back-pressure therefore reaches
the input, never the cells.

A tile is the run of steps from one with ``first`` set to one with ``last`` set. Tiles must end at
least ``max(rows, cols)`` cycles apart, because a cell's held sum must be read before the next
tile replaces it: the array pads shorter ones itself (it holds back a ``last`` step until then,
and runs bubbles meanwhile).
"""

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
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

    def __init__(self, rows, cols, a_width=16, b_width=8, acc_width=32, buffer_rows=None):
        self.rows, self.cols = rows, cols
        self.a_width, self.b_width, self.acc_width = a_width, b_width, acc_width
        self.min_tile = max(rows, cols)
        # enough rows for the tiles in flight between the input and the buffer at full rate
        self.buffer_rows = buffer_rows or 4 * rows
        super().__init__({"i": In(stream.Signature(ArrayStep(rows, cols, a_width, b_width))),
                          "o": Out(stream.Signature(data.ArrayLayout(signed(acc_width), cols)))})

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols

        # The output buffer, and the rows promised to it by tiles already in the array.
        m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(width=self.acc_width * cols, depth=self.buffer_rows)
        m.d.comb += [self.o.valid.eq(buffer.r_rdy), self.o.payload.eq(buffer.r_data), buffer.r_en.eq(self.o.ready)]
        reserved = Signal(range(self.buffer_rows + 1))  # rows promised and not yet taken out

        # Pad short tiles: a tile's last step waits until min_tile steps after the previous tile's
        # last, so that the held sums are read out before the next tile's sums replace them.
        # Whether a last step may enter is decided a cycle ahead, into a register, so the input
        # handshake is one gate deep.
        since_last = Signal(range(self.min_tile + 1), init=self.min_tile)
        may_finish = Signal(init=1)
        m.d.comb += self.i.ready.eq(~self.i.payload.last | may_finish)
        take, take_last, taken_out = Signal(), Signal(), Signal()
        m.d.comb += [take.eq(self.i.valid & self.i.ready), take_last.eq(take & self.i.payload.last),
                     taken_out.eq(self.o.valid & self.o.ready)]
        next_since_last = Mux(take_last, 0, Mux(since_last < self.min_tile, since_last + 1, since_last))
        next_reserved = reserved + Mux(take_last, rows, 0) - taken_out
        m.d.sync += [since_last.eq(next_since_last), reserved.eq(next_reserved),
                     may_finish.eq((next_since_last >= self.min_tile - 1)
                                   & (next_reserved + rows <= self.buffer_rows))]

        # Edge skew: row r's activations and flags pass r + 1 registers, column c's weights c + 1.
        def delayed(value, depth, name):
            chain = [Signal.like(value, name=f"{name}_{i}") for i in range(depth)]
            m.d.sync += chain[0].eq(value)
            m.d.sync += [later.eq(earlier) for earlier, later in zip(chain, chain[1:])]
            return chain[-1]

        # Operands enter whether or not a step is taken; a valid bit travels with them and only
        # valid steps accumulate. So the handshake reaches three flags, not every operand bit.
        entered = Signal.like(self.i.payload)
        entered_valid = Signal()
        m.d.sync += [entered.a.eq(self.i.payload.a), entered.b.eq(self.i.payload.b),
                     entered.first.eq(take & self.i.payload.first), entered.last.eq(take_last),
                     entered_valid.eq(take)]
        a_edge = [delayed(entered.a[r], r + 1, f"a_edge{r}") for r in range(rows)]
        valid_edge = [delayed(entered_valid, r + 1, f"valid_edge{r}") for r in range(rows)]
        first_edge = [delayed(entered.first, r + 1, f"first_edge{r}") for r in range(rows)]
        last_edge = [delayed(entered.last, r + 1, f"last_edge{r}") for r in range(rows)]
        b_in = [delayed(entered.b[c], c + 1, f"b_edge{c}") for c in range(cols)]

        # The cells. held[r][c] keeps the finished sum of the last tile.
        held = [[Signal(signed(self.acc_width), name=f"held_{r}_{c}") for c in range(cols)] for r in range(rows)]
        for r in range(rows):
            a, valid, first, last = a_edge[r], valid_edge[r], first_edge[r], last_edge[r]
            for c in range(cols):
                b = b_in[c]
                a_out, b_out = Signal.like(a, name=f"a_{r}_{c}"), Signal.like(b, name=f"b_{r}_{c}")
                valid_out = Signal(name=f"valid_{r}_{c}")
                first_out, last_out = Signal(name=f"first_{r}_{c}"), Signal(name=f"last_{r}_{c}")
                m.submodules[f"mult_{r}_{c}"] = mult = Multiplier(self.a_width, self.b_width)
                m.d.comb += [mult.a.eq(a), mult.b.eq(b), mult.en.eq(1)]
                # the flags travel beside the multiplier's pipeline
                product_valid = delayed(valid, Multiplier.LATENCY, f"pvalid_{r}_{c}")
                product_first = delayed(first, Multiplier.LATENCY, f"pfirst_{r}_{c}")
                product_last = delayed(last, Multiplier.LATENCY, f"plast_{r}_{c}")
                total = Signal(signed(self.acc_width), name=f"acc_{r}_{c}")
                following = Signal(signed(self.acc_width), name=f"next_{r}_{c}")
                m.d.comb += following.eq(Mux(product_first, mult.p, total + mult.p))
                m.d.sync += [a_out.eq(a), b_out.eq(b), valid_out.eq(valid), first_out.eq(first),
                             last_out.eq(last)]
                with m.If(product_valid):
                    m.d.sync += total.eq(following)
                with m.If(product_last):
                    m.d.sync += held[r][c].eq(following)
                a, valid, first, last = a_out, valid_out, first_out, last_out
                b_in[c] = b_out

        # Row r of a tile is complete cols + 3 + LATENCY + r cycles after its last step was taken.
        done = [Signal(name=f"done_{i}") for i in range(rows + cols + Multiplier.LATENCY)]
        m.d.sync += done[0].eq(entered.last)
        m.d.sync += [later.eq(earlier) for earlier, later in zip(done, done[1:])]
        # At most one row is complete in any cycle: an AND-OR picks it, a register carries it in.
        complete = done[cols + Multiplier.LATENCY:]
        finished = Signal(data.ArrayLayout(signed(self.acc_width), cols))
        for c in range(cols):
            m.d.sync += finished[c].eq(functools.reduce(operator.or_, (
                Mux(complete[r], held[r][c], 0) for r in range(rows))))
        write = Signal()
        m.d.sync += write.eq(Cat(*complete).any())
        m.d.comb += [buffer.w_en.eq(write), buffer.w_data.eq(finished)]
        return m
