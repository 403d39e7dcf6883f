"""The sampler: the next token from a row of int16 logit codes, bit for bit
:func:`neofpga.host.kernels.integer_sample` (or ``kernels.argmax`` when greedy).

The codes stream in, one a cycle, and an insertion list keeps the largest ``SAMPLE_CANDIDATES``
of them in order (the lower id first among equal codes). Then, over the first ``k``:

1. *weights*: each candidate's ``e = exp2_weights(min((top - code) >> pre, DIFF_MAX))`` and the
   running sums, kept with the ids in a small memory;
2. *top-p*: the first candidate whose running sum ``s`` has ``s * 2**16 >= P * total``;
3. *draw*: ``state = xorshift32(state)``, ``u = ((state >> 16) * kept) >> 16``, and the first
   candidate whose running sum exceeds ``u``.

Greedy, the list's first id comes out at once and the state is left as it is. The per-row
products (``P * total`` and the draw) are done by shift and add; only the exponent takes a
multiplier. Unstalled, a row of V codes takes ``V + 2`` cycles greedy and at most ``V + 3 k + 47``
sampled, from its first code to its result.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..contract.numerics import (CONSTANT_BITS, DIFF_MAX, DRAW_BITS, EXP2_FRAC_BITS, EXP2_ONE, EXP2_TABLE,
                                 SAMPLE_CANDIDATES, TOP_P_BITS, XORSHIFT_SHIFTS)

__all__ = ["SamplerInput", "SamplerOutput", "Sampler", "xorshift32"]

ID_BITS = 16  # ids of vocabularies up to 65,536 (TinyStories-33M has 50,257)
WEIGHT_BITS = bits_for(EXP2_ONE)                       # e in [0, 2**15]
RUNNING_BITS = bits_for(SAMPLE_CANDIDATES * EXP2_ONE)  # the running sums
DIFF_BITS = DIFF_MAX.bit_length()

SamplerInput = data.StructLayout({"code": signed(16), "last": 1})
SamplerOutput = data.StructLayout({"id": unsigned(ID_BITS), "state": unsigned(32)})
"""The chosen id, and the PRNG's state after the draw (the state given, when greedy)."""

Candidate = data.StructLayout({"code": signed(16), "id": unsigned(ID_BITS), "valid": 1})
Weighed = data.StructLayout({"running": unsigned(RUNNING_BITS), "id": unsigned(ID_BITS)})


def xorshift32(state):
    """The PRNG's next state as an Amaranth value (``kernels.xorshift32``)."""
    a, b, c = XORSHIFT_SHIFTS
    state = state ^ (state << a)[:32]
    state = state ^ (state >> b)
    return state ^ (state << c)[:32]


def _shift_and_add(m, product, multiplicand, multiplier, start):
    """``product = multiplicand * multiplier`` one multiplier bit a cycle once ``start`` has loaded
    them; returns the register of remaining multiplier bits (all zero when done)."""
    remaining = Signal(len(multiplier), name=f"{product.name}_remaining")
    addend = Signal(len(product), name=f"{product.name}_addend")
    with m.If(start):
        m.d.sync += [product.eq(0), addend.eq(multiplicand), remaining.eq(multiplier)]
    with m.Elif(remaining.any()):
        m.d.sync += [product.eq(product + Mux(remaining[0], addend, 0)), addend.eq(addend << 1),
                     remaining.eq(remaining >> 1)]
    return remaining


class Sampler(wiring.Component):
    """The next token from a row of int16 logit codes: argmax, or the seeded draw of ``integer_sample``.

    A row is 1 to 2**16 codes, its final one marked ``last``; one result comes out for it. The
    parameters are read while the row is in the unit: hold them stable until its result is
    taken. Both streams may stall at any point.

    Attributes
    ----------
    i : In(stream.Signature(SamplerInput))
        The logit codes, in id order.
    o : Out(stream.Signature(SamplerOutput))
        The chosen id and the next state.
    greedy : In(1)
        The largest code's id, no draw.
    pre, constant, shift : In(unsigned(5)), In(unsigned(17)), In(unsigned(6))
        The exponent's ``softmax_parameters(s_logit / temperature)``.
    candidates : In(range(SAMPLE_CANDIDATES + 1))
        ``k`` (0 counts as 1).
    top_p : In(unsigned(17))
        ``P``, 1 to 2**16.
    state : In(unsigned(32))
        The PRNG's state before the draw.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(SamplerInput)),
            "o": Out(stream.Signature(SamplerOutput)),
            "greedy": In(1),
            "pre": In(unsigned(5)),
            "constant": In(unsigned(CONSTANT_BITS)),
            "shift": In(unsigned(6)),
            "candidates": In(range(SAMPLE_CANDIDATES + 1)),
            "top_p": In(unsigned(TOP_P_BITS + 1)),
            "state": In(unsigned(32)),
        })

    def elaborate(self, platform):
        m = Module()
        slots = Array(Signal(Candidate, name=f"slot{j}") for j in range(SAMPLE_CANDIDATES))
        m.submodules.weighed = weighed = memory.Memory(shape=Weighed, depth=SAMPLE_CANDIDATES, init=[])
        store, load = weighed.write_port(), weighed.read_port()
        m.submodules.exp2 = exp2 = memory.Memory(shape=unsigned(WEIGHT_BITS), depth=len(EXP2_TABLE),
                                                 init=EXP2_TABLE, attrs={"ram_style": "logic"})  # in LUTs
        exp2_port = exp2.read_port()

        count = Signal(ID_BITS + 1)                  # codes taken
        used = Signal(range(SAMPLE_CANDIDATES + 1))  # n = min(k, codes)
        index = Signal(range(SAMPLE_CANDIDATES + 1))
        top = Signal(signed(16))
        running = Signal(RUNNING_BITS)
        threshold = Signal(TOP_P_BITS + 1 + RUNNING_BITS)  # P * total
        draw_product = Signal(DRAW_BITS + RUNNING_BITS)    # (state >> 16) * kept
        kept = Signal(RUNNING_BITS)
        next_state = Signal(32)
        chosen = Signal(ID_BITS)
        start_threshold, start_draw = Signal(), Signal()
        threshold_left = _shift_and_add(m, threshold, running, self.top_p, start_threshold)
        draw_left = _shift_and_add(m, draw_product, kept, next_state[32 - DRAW_BITS:], start_draw)
        weights_valid = Signal(5)  # the weights pass's pipeline stages

        self._insertion(m, slots, count)
        m.d.comb += [load.addr.eq(index), load.en.eq(1)]  # load.data is entry index - 1 while scanning

        with m.FSM():
            with m.State("INSERT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid & self.i.payload.last):
                    m.next = "INSERTED"
            with m.State("INSERTED"):  # the row's last code is in the list
                k = Mux(self.candidates == 0, 1, self.candidates)
                m.d.sync += [used.eq(Mux(count < k, count, k)), top.eq(slots[0].code), index.eq(0),
                             running.eq(0), weights_valid.eq(0), next_state.eq(self.state), chosen.eq(slots[0].id)]
                m.next = "WEIGHTS"
                with m.If(self.greedy):
                    m.next = "DONE"
            with m.State("WEIGHTS"):
                self._weights(m, slots, index, used, top, running, weights_valid, exp2_port, store)
                with m.If((index == used) & ~weights_valid.any()):
                    m.d.comb += start_threshold.eq(1)
                    m.next = "THRESHOLD"
            with m.State("THRESHOLD"):  # P * total by shift and add
                with m.If(~threshold_left.any()):
                    m.d.sync += index.eq(0)
                    m.next = "TOP_P_FIRST"
            with m.State("TOP_P_FIRST"):
                m.d.sync += index.eq(1)
                m.next = "TOP_P"
            with m.State("TOP_P"):  # the first running sum s with s * 2**16 >= P * total
                with m.If((Cat(Const(0, TOP_P_BITS), load.data.running) >= threshold) | (index == used)):
                    m.d.sync += [kept.eq(load.data.running), next_state.eq(xorshift32(next_state))]
                    m.next = "DRAW_START"
                with m.Else():
                    m.d.sync += index.eq(index + 1)
            with m.State("DRAW_START"):
                m.d.comb += start_draw.eq(1)
                m.next = "DRAW"
            with m.State("DRAW"):  # (state >> 16) * kept by shift and add
                with m.If(~draw_left.any()):
                    m.d.sync += index.eq(0)
                    m.next = "SELECT_FIRST"
            with m.State("SELECT_FIRST"):
                m.d.sync += index.eq(1)
                m.next = "SELECT"
            with m.State("SELECT"):  # the first running sum above the draw (the kept one is)
                with m.If(load.data.running > draw_product[DRAW_BITS:]):
                    m.d.sync += chosen.eq(load.data.id)
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += index.eq(index + 1)
            with m.State("DONE"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.id.eq(chosen), self.o.payload.state.eq(next_state)]
                with m.If(self.o.ready):
                    m.d.sync += [count.eq(0)] + [slot.valid.eq(0) for slot in slots]
                    m.next = "INSERT"
        return m

    def _insertion(self, m, slots, count):
        """A code taken on :attr:`i` goes in before the first slot that is empty or holds a smaller
        code; the slots from there on move down one (the last one's candidate falls out)."""
        incoming = Signal(Candidate)
        m.d.comb += [incoming.code.eq(self.i.payload.code), incoming.id.eq(count[:ID_BITS]), incoming.valid.eq(1)]
        before = [~slot.valid | (self.i.payload.code > slot.code) for slot in slots]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += count.eq(count + 1)
            for j, slot in enumerate(slots):
                with m.If(before[j]):
                    m.d.sync += slot.eq(incoming if j == 0 else Mux(before[j - 1], slots[j - 1], incoming))

    def _weights(self, m, slots, index, used, top, running, valid, exp2_port, store):
        """The weights pass: candidate ``index`` in, its running sum and id into the memory five
        stages later (distance, product, exponent and table address, weight, sum)."""
        taking = index < used
        with m.If(taking):
            m.d.sync += index.eq(index + 1)
        m.d.sync += valid.eq(Cat(taking, valid[:-1]))
        candidate = slots[index]
        code, ids = Signal(signed(16)), [Signal(ID_BITS, name=f"weight_id_{n}") for n in range(5)]
        distance = Signal(DIFF_BITS)
        product = Signal(DIFF_BITS + CONSTANT_BITS)
        whole = Signal(range(17))
        weight = Signal(WEIGHT_BITS)
        written = Signal(range(SAMPLE_CANDIDATES + 1))
        m.d.sync += [code.eq(candidate.code), ids[0].eq(candidate.id)] + \
            [later.eq(earlier) for earlier, later in zip(ids, ids[1:])]
        # stage 2: the distance below the top, shifted and saturated
        shifted = (top - code).as_unsigned() >> self.pre
        m.d.sync += distance.eq(Mux(shifted > DIFF_MAX, DIFF_MAX, shifted))
        # stage 3: times C
        m.d.sync += product.eq(distance * self.constant)
        # stage 4: the exponent t, rounded; its fraction addresses the table
        exponent = (product + (Const(1, 64) << self.shift)[1:]) >> self.shift
        m.d.comb += [exp2_port.addr.eq(exponent[:EXP2_FRAC_BITS]), exp2_port.en.eq(1)]
        integer_part = exponent >> EXP2_FRAC_BITS
        m.d.sync += whole.eq(Mux(integer_part >= 16, 16, integer_part))
        # stage 5: the weight
        halved = (exp2_port.data + (Const(1, 17) << whole)[1:]) >> whole
        m.d.sync += weight.eq(Mux(whole < 16, halved, 0))
        # then the running sum, into the memory
        with m.If(valid[4]):
            m.d.sync += [running.eq(running + weight), written.eq(written + 1)]
            m.d.comb += [store.en.eq(1), store.addr.eq(written), store.data.running.eq(running + weight),
                         store.data.id.eq(ids[4])]
        with m.If(~valid.any() & ~taking):
            m.d.sync += written.eq(0)
