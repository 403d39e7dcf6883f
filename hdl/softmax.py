"""The softmax unit: row-wise integer softmax of attention scores, bit for bit `numerics.integer_softmax`.

Scores stream in, probabilities stream out in the same order, one row at a time. A row goes
through a row buffer in three passes:

1. *accept*: store each (score, visible) and keep the running maximum of the visible scores;
2. *exponentials*: for every entry ``e`` (written back over its score) and the row's sum, which
   the reciprocal unit then turns into ``k`` and ``r = 2**(k + 15) // sum``;
3. *normalise*: ``p = min((e * r + 2**(k-1)) >> k, 2**15 - 1)``, emitted with the row's ``last``.

Three row buffers rotate through the passes, so three consecutive rows can be in flight, one in
each pass. Each buffer goes EMPTY -> SCORED (pass 1 done) -> EXPONENTIATED (pass 2 and the
reciprocal done) -> READ_OUT (pass 3 has read it) -> EMPTY (its last entry left the read port).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..contract.numerics import CONSTANT_BITS, DIFF_MAX, EXP2_FRAC_BITS, EXP2_TABLE, PROB_BITS

__all__ = ["SoftmaxInput", "SoftmaxOutput", "Reciprocal", "Softmax"]

SCORE_BITS = 32
EXP_BITS = PROB_BITS + 1         # e in [0, 2**15]
RECIPROCAL_BITS = PROB_BITS + 2  # r in (2**15, 2**16]
DIFF_BITS = DIFF_MAX.bit_length()
PRODUCT_BITS = DIFF_BITS + CONSTANT_BITS  # d * C
WHOLE_BITS = 4  # e is 0 once the exponent's whole part n = t >> 8 reaches 2**4 = 16
BUFFERS = 3

SoftmaxInput = data.StructLayout({"score": signed(SCORE_BITS), "visible": 1, "last": 1})
SoftmaxOutput = data.StructLayout({"p": unsigned(PROB_BITS), "last": 1})

ScoredEntry = data.StructLayout({"score": signed(SCORE_BITS), "visible": 1})
BufferEntry = data.UnionLayout({"scored": ScoredEntry, "e": unsigned(EXP_BITS)})
"""A row buffer's word: the score as pass 1 stores it, ``e`` once pass 2 has replaced it."""


class BufferState(enum.Enum, shape=2):
    """Which pass a row buffer is waiting for."""

    EMPTY = 0          # free for pass 1
    SCORED = 1         # holds a row's scores: pass 2, then the reciprocal
    EXPONENTIATED = 2  # holds the row's e, its k and r are known: pass 3
    READ_OUT = 3       # pass 3 has asked for every entry; empty once the last one leaves the read port


def _half_of_power(exponent, width):
    """``2**(exponent - 1)`` for exponent >= 1 and 0 for exponent 0 (a rounding term), ``width`` bits."""
    return (Const(1, width + 1) << exponent)[1:width + 1]


def _following(buffer):
    """The next buffer in the rotation."""
    return Mux(buffer == BUFFERS - 1, 0, buffer + 1)


def _delayed(m, value, cycles, name):
    """``value`` through ``cycles`` registers of the current domain and condition."""
    for stage in range(cycles):
        register = Signal.like(value, name=f"{name}_{stage}")
        m.d.sync += register.eq(value)
        value = register
    return value


class Reciprocal(wiring.Component):
    """The softmax's reciprocal unit: ``k``, the bit length of ``d``, and ``r = 2**(k + 15) // d``.

    Exact restoring division, one quotient bit a cycle. A ``d`` of ``k`` bits lies in
    [2**(k-1), 2**k), so the quotient is in (2**15, 2**16]: 17 bits, and the division starts
    from the remainder 2**(k-1) (the dividend's bits above the quotient's). A result is offered
    18 cycles after ``d`` is taken; the unit takes the next ``d`` once the result is taken.
    ``d = 0`` gives ``k = 0`` and ``r = 0``.

    Parameters
    ----------
    width : int
        Width of ``d``.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(width)))
        ``d``.
    o : Out(stream.Signature(StructLayout({"r": unsigned(17), "k": range(width + 1)})))
        The result.
    """

    def __init__(self, width):
        self.width = width
        result = data.StructLayout({"r": unsigned(RECIPROCAL_BITS), "k": range(width + 1)})
        super().__init__({"i": In(stream.Signature(unsigned(width))), "o": Out(stream.Signature(result))})

    def elaborate(self, platform):
        m = Module()
        d = self.i.payload
        leading_one = Cat(d[bit] & ~d[bit + 1:].any() for bit in range(self.width))
        bit_length = Cat(Cat(leading_one[bit] for bit in range(self.width) if (bit + 1) >> place & 1).any()
                         for place in range(bits_for(self.width)))
        divisor = Signal(self.width)
        remainder = Signal(self.width + 1)
        steps_left = Signal(range(RECIPROCAL_BITS + 1))
        quotient = self.o.payload.r

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [divisor.eq(d), remainder.eq(leading_one), self.o.payload.k.eq(bit_length),
                                 steps_left.eq(RECIPROCAL_BITS)]
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                fits = (remainder >= divisor) & divisor.any()
                m.d.sync += [quotient.eq(Cat(fits, quotient)),
                             remainder.eq(Mux(fits, remainder - divisor, remainder) << 1),
                             steps_left.eq(steps_left - 1)]
                with m.If(steps_left == 1):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m


class Softmax(wiring.Component):
    """Row-wise integer softmax over the visible scores of each row (`numerics.integer_softmax`).

    A row is 1 to ``max_length`` scores, its final one marked ``last``; it comes out as as many
    probabilities (2**15 = 1.0), in the same order, the final one marked ``last``. Masked scores
    (``visible`` = 0) give 0, and so does every entry of a row with nothing visible. Longer rows
    are not supported. Both streams may stall at any point.

    The per-layer parameters ``pre``, ``constant`` and ``shift`` (from
    `numerics.softmax_parameters`) are read when pass 2 of a row starts: hold them stable while
    rows are in the unit.

    Timing: three rows are in flight at once (one per pass, each in its own row buffer). With
    both streams running freely a row of ``L`` scores occupies pass 2 for ``L + 12`` cycles and
    the reciprocal for 19, so rows stream at one per ``max(L + 12, 19)`` cycles, and a single
    row's last probability comes out ``3 L + 34`` cycles after its first score was taken.

    Parameters
    ----------
    max_length : int
        The longest row (the model's context).

    Attributes
    ----------
    i : In(stream.Signature(SoftmaxInput))
        Scores.
    o : Out(stream.Signature(SoftmaxOutput))
        Probabilities.
    pre : In(unsigned(5))
        Right shift of the distance below the row maximum.
    constant : In(unsigned(17))
        The exponent's multiplier C.
    shift : In(unsigned(6))
        The exponent's right shift, at most 62 (softmax_parameters gives 4 to 21).
    """

    def __init__(self, max_length):
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, not {max_length!r}")
        self.max_length = max_length
        self.sum_width = bits_for(max_length * 2 ** PROB_BITS)
        super().__init__({
            "i": In(stream.Signature(SoftmaxInput)),
            "o": Out(stream.Signature(SoftmaxOutput)),
            "pre": In(unsigned(5)),
            "constant": In(unsigned(CONSTANT_BITS)),
            "shift": In(unsigned(6)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reciprocal = reciprocal = Reciprocal(self.sum_width)
        index = range(self.max_length)

        states = Array(Signal(BufferState, name=f"state{b}") for b in range(BUFFERS))
        last_indices = Array(Signal(index, name=f"last_index{b}") for b in range(BUFFERS))
        maxima = Array(Signal(signed(SCORE_BITS), name=f"maximum{b}") for b in range(BUFFERS))
        reciprocals = Array(Signal(reciprocal.o.payload.shape(), name=f"reciprocal{b}") for b in range(BUFFERS))

        # A buffer is never read where it is written in the same cycle, except by a read whose data
        # nobody takes; no_rw_check tells yosys so, else it emulates read-before-write in logic.
        read_ports, write_ports = [], []
        for b in range(BUFFERS):
            buffer = m.submodules[f"buffer{b}"] = memory.Memory(shape=BufferEntry, depth=self.max_length, init=[],
                                                                attrs={"no_rw_check": 1})
            read_ports.append(buffer.read_port())
            write_ports.append(buffer.write_port())
        read_data = Array(port.data for port in read_ports)

        # Pass 1: accept scores into the accepting buffer, keeping the maximum of the visible ones.
        accepting = Signal(range(BUFFERS))
        accept_index = Signal(index)
        running_max = Signal(signed(SCORE_BITS), init=-2 ** (SCORE_BITS - 1))
        entry = self.i.payload
        max_with_entry = Mux(entry.visible & (entry.score > running_max), entry.score, running_max)
        accepted = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(states[accepting] == BufferState.EMPTY)
        with m.If(accepted):
            m.d.sync += [accept_index.eq(accept_index + 1), running_max.eq(max_with_entry)]
            with m.If(entry.last):
                m.d.sync += [last_indices[accepting].eq(accept_index), maxima[accepting].eq(max_with_entry),
                             states[accepting].eq(BufferState.SCORED), accepting.eq(_following(accepting)),
                             accept_index.eq(0), running_max.eq(running_max.init)]

        # Pass 2: e for every entry of the exponentiating buffer, written back, and their sum.
        # A pipeline of 10 stages from the read address to the write of e; it never stalls.
        exponentiating = Signal(range(BUFFERS))
        read_index, write_index, last_index = Signal(index), Signal(index), Signal(index)
        maximum = Signal(signed(SCORE_BITS))
        pre = Signal.like(self.pre)
        constant = Signal.like(self.constant)
        shift = Signal.like(self.shift)
        # 2**(shift-1) in PRODUCT_BITS + 1 bits: it drops out for a shift above PRODUCT_BITS + 1,
        # where t = (d * C + 2**(shift-1)) >> shift is 0 with or without it
        rounding = Signal(PRODUCT_BITS + 1)
        total = Signal(self.sum_width)
        reading = Signal()
        dividing = Signal(range(BUFFERS))  # the buffer whose sum the reciprocal unit has

        entry_valid = _delayed(m, reading, 2, "entry_valid")  # the read port, then a register
        scored = Signal(ScoredEntry)
        m.d.sync += scored.eq(read_data[exponentiating].scored)
        distance = Signal(SCORE_BITS)  # max - s: below 2**32 for visible entries
        m.d.sync += distance.eq(maximum - scored.score)
        d = Signal(DIFF_BITS)
        shifted = distance >> pre
        m.d.sync += d.eq(Mux(shifted[DIFF_BITS:].any(), DIFF_MAX, shifted))
        product = Signal(PRODUCT_BITS)
        m.d.sync += product.eq(d * constant)
        rounded = Signal(PRODUCT_BITS + 1)
        m.d.sync += rounded.eq(product + rounding)
        t = rounded >> shift
        fraction = Signal(EXP2_FRAC_BITS)
        whole = Signal(WHOLE_BITS)
        m.d.sync += [fraction.eq(t[:EXP2_FRAC_BITS]), whole.eq(t[EXP2_FRAC_BITS:EXP2_FRAC_BITS + WHOLE_BITS])]
        vanishes = Signal()  # masked, or n >= 16
        m.d.sync += vanishes.eq(t[EXP2_FRAC_BITS + WHOLE_BITS:].any() | ~_delayed(m, scored.visible, 4, "visible"))
        m.submodules.exp2 = exp2 = memory.Memory(shape=unsigned(EXP_BITS), depth=2 ** EXP2_FRAC_BITS,
                                                 init=[int(value) for value in EXP2_TABLE])
        exp2_port = exp2.read_port()
        m.d.comb += exp2_port.addr.eq(fraction)
        power = Signal(EXP_BITS)  # a register after the block RAM, whose own output is slow
        m.d.sync += power.eq(exp2_port.data)
        power_whole = _delayed(m, whole, 2, "power_whole")
        power_vanishes = _delayed(m, vanishes, 2, "power_vanishes")
        e = Signal(EXP_BITS)
        e_valid = _delayed(m, entry_valid, 8, "e_valid")
        m.d.sync += e.eq(Mux(power_vanishes, 0, (power + _half_of_power(power_whole, EXP_BITS)) >> power_whole))
        with m.If(e_valid):
            m.d.sync += [write_index.eq(write_index + 1), total.eq(total + e)]

        with m.FSM(name="exponentials"):
            with m.State("IDLE"):
                with m.If(states[exponentiating] == BufferState.SCORED):
                    m.d.sync += [maximum.eq(maxima[exponentiating]), last_index.eq(last_indices[exponentiating]),
                                 pre.eq(self.pre), constant.eq(self.constant),
                                 shift.eq(self.shift), rounding.eq(_half_of_power(self.shift, PRODUCT_BITS + 1)),
                                 read_index.eq(0), write_index.eq(0), total.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += reading.eq(1)
                m.d.sync += read_index.eq(read_index + 1)
                with m.If(read_index == last_index):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(e_valid & (write_index == last_index)):
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                m.d.comb += [reciprocal.i.valid.eq(1), reciprocal.i.payload.eq(total)]
                with m.If(reciprocal.i.ready):
                    m.d.sync += [dividing.eq(exponentiating), exponentiating.eq(_following(exponentiating))]
                    m.next = "IDLE"

        m.d.comb += reciprocal.o.ready.eq(1)
        with m.If(reciprocal.o.valid):
            m.d.sync += [reciprocals[dividing].eq(reciprocal.o.payload),
                         states[dividing].eq(BufferState.EXPONENTIATED)]

        # Pass 3: p for every entry of the normalising buffer. A pipeline of 5 stages from the read
        # address to the output register, all of it stalled while a p waits to be taken. A buffer
        # is empty again once its last entry has left the read port (stage 1).
        normalising = Signal(range(BUFFERS))
        normalise_index = Signal(index)
        advance = ~self.o.valid | self.o.ready
        issue = advance & (states[normalising] == BufferState.EXPONENTIATED)
        issue_last = normalise_index == last_indices[normalising]
        with m.If(issue):
            m.d.sync += normalise_index.eq(normalise_index + 1)
            with m.If(issue_last):
                m.d.sync += [states[normalising].eq(BufferState.READ_OUT), normalising.eq(_following(normalising)),
                             normalise_index.eq(0)]
        with m.If(advance):
            valid, last, source = (_delayed(m, signal, 1, name) for signal, name in
                                   ((issue, "read_valid"), (issue_last, "read_last"), (normalising, "source")))
            with m.If(valid & last):
                m.d.sync += states[source].eq(BufferState.EMPTY)
            e_read = Signal(EXP_BITS)
            result = Signal(reciprocal.o.payload.shape())
            m.d.sync += [e_read.eq(read_data[source].e), result.eq(reciprocals[source])]
            weighted = Signal(EXP_BITS + RECIPROCAL_BITS)
            m.d.sync += weighted.eq(e_read * result.r)
            weighted_k = _delayed(m, result.k, 1, "weighted_k")
            rounded_p = Signal(EXP_BITS + RECIPROCAL_BITS)
            m.d.sync += rounded_p.eq(weighted + _half_of_power(weighted_k, self.sum_width))
            rounded_k = _delayed(m, weighted_k, 1, "rounded_k")
            scaled = rounded_p >> rounded_k
            m.d.sync += [self.o.payload.p.eq(Mux(scaled[PROB_BITS:].any(), 2 ** PROB_BITS - 1, scaled)),
                         self.o.payload.last.eq(_delayed(m, last, 3, "last")),
                         self.o.valid.eq(_delayed(m, valid, 3, "valid"))]

        # The buffers' ports: pass 2 owns the read port of the buffer it reads and the write port of
        # the buffer it writes; pass 1 writes, and pass 3 reads, every other buffer.
        for b, (read_port, write_port) in enumerate(zip(read_ports, write_ports)):
            exponentials_read = reading & (exponentiating == b)
            m.d.comb += [read_port.addr.eq(Mux(exponentials_read, read_index, normalise_index)),
                         read_port.en.eq(exponentials_read | advance)]
            with m.If(e_valid & (exponentiating == b)):
                m.d.comb += [write_port.addr.eq(write_index), write_port.data.e.eq(e), write_port.en.eq(1)]
            with m.Else():
                m.d.comb += [write_port.addr.eq(accept_index), write_port.data.scored.score.eq(entry.score),
                             write_port.data.scored.visible.eq(entry.visible),
                             write_port.en.eq(accepted & (accepting == b))]
        return m
