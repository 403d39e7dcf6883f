"""The LayerNorm unit: an int16 residual row to the next matmul's input, bit for bit
:func:`neofpga.host.kernels.integer_layer_norm`.

A row streams in once and is kept in a row buffer; the unit then works through it in passes:

1. *accept*: store each ``x`` and sum the row;
2. *mean*: ``round_half_even(sum * mean_M / 2**mean_shift)``, by shift and add (16 cycles);
3. *squares*: ``power = sum((x - mean)**2) + epsilon`` from the buffer (one multiplier);
4. *root*: ``sigma = isqrt(power)``, one bit of the root (two of the power) a cycle; then the
   reciprocal unit's ``(k, r = 2**(k + 15) // sigma)``;
5. *output*: for each ``x`` from the buffer and the column's ``(gain, bias)`` from :attr:`columns`:
   ``n = round_half_even((x - mean) * r / 2**k)``, then the requantizer on ``n * gain`` with
   ``bias``, the LayerNorm's ``M``, ``shift`` and limits.

One row is in the unit at a time: unstalled, a row of D takes ``3 D + 54 + root_bits`` cycles from
its first value to its last output (``root_bits`` is 21 for rows up to 256 values, 22 up to 2048).
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..contract.numerics import INT16, NORM_EPSILON_MAX, RECIPROCAL_BITS
from .pipeline import StallingPipeline
from .requantizer import Requantizer, RequantizerInput
from .softmax import Reciprocal

__all__ = ["LayerNormInput", "LayerNormColumn", "LayerNormOutput", "LayerNorm"]

LayerNormInput = data.StructLayout({"x": signed(16), "last": 1})
LayerNormColumn = data.StructLayout({"gain": signed(16), "bias": signed(32)})
"""A column's gain and bias, taken as its output is computed."""
LayerNormOutput = data.StructLayout({"y": signed(16), "last": 1})

CENTRED_BITS = 18  # x - mean: |x - mean| <= 2**16 + 1
MEAN_MULTIPLIER_BITS = 16


def _round_half_even(m, value, shift, name):
    """``round_half_even(value / 2**shift)`` in two registered steps: (floor, half, sticky), then the
    rounded value. Returns the second step's register; the caller holds ``value`` and ``shift``."""
    width = len(value)
    floor = Signal(signed(width), name=f"{name}_floor")
    half = Signal(name=f"{name}_half")
    sticky = Signal(name=f"{name}_sticky")
    below_half = Cat(*(shift > bit + 1 for bit in range(width)))  # the bits under the half bit
    m.d.sync += [floor.eq(value.as_signed() >> shift),
                 half.eq(((value.as_unsigned() << 1) >> shift)[0]),  # 0 for shift 0
                 sticky.eq((value.as_unsigned() & below_half).any())]
    rounded = Signal(signed(width), name=name)
    m.d.sync += rounded.eq(floor + (half & (sticky | floor[0])))
    return rounded


class LayerNorm(wiring.Component):
    """Integer LayerNorm of rows of 1 to ``max_length`` int16 values (`kernels.integer_layer_norm`).

    A row's values come on :attr:`i`, its final one marked ``last``; once the row is in, its
    ``(gain, bias)`` are taken from :attr:`columns` one per output, in order, and the outputs come
    on :attr:`o` in the same order, the final one marked ``last``. Every stream may stall at any
    point. The parameters are read while a row is in the unit: hold them stable until its last
    output is taken.

    Parameters
    ----------
    max_length : int
        The longest row (the model's hidden size).
    shared_requantizer : bool
        Use a requantizer outside the unit, through :attr:`requantize` and :attr:`requantized`
        (one that another unit uses while this one has no row), instead of one of its own.

    Attributes
    ----------
    i : In(stream.Signature(LayerNormInput))
        The residual row.
    columns : In(stream.Signature(LayerNormColumn))
        The gains and biases.
    o : Out(stream.Signature(LayerNormOutput))
        The normalised row.
    mean_multiplier, mean_shift : In(unsigned(16)), In(unsigned(6))
        ``M_D / 2**shift_D``, about 1/D.
    epsilon : In(unsigned)
        ``E``, up to NORM_EPSILON_MAX.
    multiplier, shift, low, high : In(unsigned(16)), In(unsigned(6)), In(signed(16)), In(signed(16))
        The requantizer's ``M``, ``shift`` and limits for ``n * gain + bias``.
    requantize, requantized : Out(stream.Signature(RequantizerInput)), In(stream.Signature(signed(16)))
        With ``shared_requantizer``: the requantizer's input and output.
    """

    def __init__(self, max_length, shared_requantizer=False):
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, not {max_length!r}")
        self.max_length = max_length
        self.sum_bits = bits_for(max_length * -INT16[0]) + 1
        self.power_bits = self.power_width(max_length)
        self.root_bits = (self.power_bits + 1) // 2
        self.shared_requantizer = shared_requantizer
        shared = {"requantize": Out(stream.Signature(RequantizerInput)),
                  "requantized": In(stream.Signature(signed(16)))} if shared_requantizer else {}
        super().__init__({**shared,
            "i": In(stream.Signature(LayerNormInput)),
            "columns": In(stream.Signature(LayerNormColumn)),
            "o": Out(stream.Signature(LayerNormOutput)),
            "mean_multiplier": In(unsigned(MEAN_MULTIPLIER_BITS)),
            "mean_shift": In(unsigned(6)),
            "epsilon": In(unsigned(bits_for(NORM_EPSILON_MAX))),
            "multiplier": In(unsigned(16)),
            "shift": In(unsigned(6)),
            "low": In(signed(16)),
            "high": In(signed(16)),
        })

    @staticmethod
    def power_width(max_length):
        """Bits of ``sum((x - mean)**2) + epsilon`` for rows of up to ``max_length``; sigma has half."""
        return bits_for(max_length * (2 ** 16 + 1) ** 2 + NORM_EPSILON_MAX)

    def elaborate(self, platform):
        m = Module()
        # in LUT RAM: a board's block RAM is the weights' (a row of 256 is 64 LUT RAM cells)
        m.submodules.buffer = buffer = memory.Memory(shape=signed(16), depth=self.max_length, init=[],
                                                     attrs={"ram_style": "distributed"})
        write, read = buffer.write_port(), buffer.read_port()
        m.submodules.reciprocal = reciprocal = Reciprocal(self.root_bits)
        if self.shared_requantizer:
            requantizer = SimpleNamespace(i=self.requantize, o=self.requantized)
        else:
            m.submodules.requantizer = requantizer = Requantizer()

        index_shape = range(self.max_length + 1)
        length = Signal(index_shape)       # the row's length, once it is in
        index = Signal(index_shape)        # the element being accepted, read or emitted
        total = Signal(signed(self.sum_bits))
        product = Signal(signed(self.sum_bits + MEAN_MULTIPLIER_BITS))  # sum * mean_M, by shift and add
        addend = Signal(signed(self.sum_bits + MEAN_MULTIPLIER_BITS))
        multiplier_bits = Signal(MEAN_MULTIPLIER_BITS)
        steps = Signal(range(max(MEAN_MULTIPLIER_BITS, self.root_bits) + 4))
        mean = Signal(signed(CENTRED_BITS))
        power = Signal(self.power_bits)
        sigma = Signal(self.root_bits)
        root_rest = Signal(self.power_bits + 2)   # the digits of power not yet brought down
        root_remainder = Signal(self.root_bits + 3)
        bits = Signal(range(self.root_bits + 1))  # k
        inverse = Signal(RECIPROCAL_BITS + 2)     # r, in [2**15, 2**16]
        emitted = Signal(index_shape)

        rounded_mean = _round_half_even(m, product, self.mean_shift, "mean_rounded")
        square_valid = Signal(3)  # the squares pass's pipeline: read, centre, square
        centred_square = Signal(signed(CENTRED_BITS))
        square = Signal(2 * CENTRED_BITS)

        m.d.comb += [write.addr.eq(index), write.data.eq(self.i.payload.x), read.addr.eq(index)]

        with m.FSM():
            with m.State("ACCEPT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.comb += write.en.eq(1)
                    m.d.sync += [total.eq(total + self.i.payload.x), index.eq(index + 1)]
                    with m.If(self.i.payload.last | (index == self.max_length - 1)):
                        m.d.sync += [length.eq(index + 1), product.eq(0),
                                     addend.eq(total + self.i.payload.x), multiplier_bits.eq(self.mean_multiplier),
                                     steps.eq(MEAN_MULTIPLIER_BITS + 2)]
                        m.next = "MEAN"
            with m.State("MEAN"):  # sum * M by shift and add, then the two cycles of rounding
                with m.If(steps > 2):
                    m.d.sync += [product.eq(product + Mux(multiplier_bits[0], addend, 0)), addend.eq(addend << 1),
                                 multiplier_bits.eq(multiplier_bits >> 1)]
                m.d.sync += steps.eq(steps - 1)
                with m.If(steps == 0):
                    m.d.sync += [mean.eq(rounded_mean), index.eq(0), power.eq(self.epsilon), square_valid.eq(0)]
                    m.next = "SQUARES"
            with m.State("SQUARES"):  # read, centre, square, add: three stages behind the reads
                m.d.comb += read.en.eq(1)
                reading = index < length
                m.d.sync += [square_valid.eq(Cat(reading, square_valid[:2])),
                             centred_square.eq(read.data - mean), square.eq(centred_square * centred_square)]
                with m.If(reading):
                    m.d.sync += index.eq(index + 1)
                with m.If(square_valid[2]):
                    m.d.sync += power.eq(power + square)
                with m.If(~reading & ~square_valid[:2].any()):  # the last square is being added
                    m.next = "ROOT_START"
            with m.State("ROOT_START"):
                m.d.sync += [root_rest.eq(power), root_remainder.eq(0), sigma.eq(0), steps.eq(self.root_bits)]
                m.next = "ROOT"
            with m.State("ROOT"):  # two bits of power a cycle, from the top
                top = 2 * self.root_bits
                brought_down = Cat(root_rest[top - 2:top], root_remainder)
                trial = Cat(Const(1, 2), sigma)
                fits = brought_down >= trial
                m.d.sync += [root_rest.eq(root_rest << 2),
                             root_remainder.eq(Mux(fits, brought_down - trial, brought_down)),
                             sigma.eq(Cat(fits, sigma)), steps.eq(steps - 1)]
                with m.If(steps == 1):
                    m.next = "RECIPROCAL"
            with m.State("RECIPROCAL"):
                m.d.comb += [reciprocal.i.payload.eq(sigma), reciprocal.i.valid.eq(1)]
                with m.If(reciprocal.i.ready):
                    m.next = "RECIPROCAL_WAIT"
            with m.State("RECIPROCAL_WAIT"):
                m.d.comb += reciprocal.o.ready.eq(1)
                with m.If(reciprocal.o.valid):
                    # sigma = 0 (epsilon 0, a flat row) leaves every n at 0 whatever r is
                    m.d.sync += [bits.eq(reciprocal.o.payload.k), inverse.eq(reciprocal.o.payload.r),
                                 index.eq(0), emitted.eq(0)]
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                self._output(m, read, requantizer, index, length, mean, inverse, bits)
                m.d.comb += [self.o.valid.eq(requantizer.o.valid), requantizer.o.ready.eq(self.o.ready),
                             self.o.payload.y.eq(requantizer.o.payload),
                             self.o.payload.last.eq(emitted == length - 1)]
                with m.If(self.o.valid & self.o.ready):
                    m.d.sync += emitted.eq(emitted + 1)
                    with m.If(emitted == length - 1):
                        m.d.sync += [index.eq(0), total.eq(0)]
                        m.next = "ACCEPT"
        return m

    def _output(self, m, read, requantizer, index, length, mean, inverse, bits):
        """The output pass: a stalling pipeline from the buffer and :attr:`columns` into the requantizer."""
        taking = SimpleNamespace(valid=Signal(), ready=Signal())  # columns, while elements remain
        m.d.comb += [taking.valid.eq(self.columns.valid & (index < length)),
                     self.columns.ready.eq(taking.ready & (index < length))]
        pipeline = StallingPipeline(m, taking, requantizer.i, latency=6)
        advance, stage = pipeline.advance, pipeline.stage
        with m.If(advance & taking.valid):
            m.d.sync += index.eq(index + 1)
        m.d.comb += read.en.eq(advance)  # stage 1 is the buffer's read register

        def delayed(name, value, stages):
            for number in range(stages):
                value = stage(f"{name}_{number + 1}", value)
            return value

        column = self.columns.payload
        gain, bias = delayed("gain", column.gain, 5), delayed("bias", column.bias, 6)
        centred = stage("centred", read.data - mean)                     # stage 2
        scaled = stage("scaled", centred * inverse)                       # stage 3: (x - mean) * r
        width = len(scaled)
        below_half = Cat(*(bits > bit + 1 for bit in range(width)))
        floor = stage("normalised_floor", scaled >> bits)                 # stage 4
        half = stage("normalised_half", ((scaled.as_unsigned() << 1) >> bits)[0])
        sticky = stage("normalised_sticky", (scaled.as_unsigned() & below_half).any())
        normalised = stage("normalised", floor + (half & (sticky | floor[0])))  # stage 5: |n| <= 2**15
        weighted = stage("weighted", normalised[:17].as_signed() * gain)  # stage 6: n * gain
        m.d.comb += [requantizer.i.payload.acc.eq(weighted), requantizer.i.payload.bias.eq(bias),
                     requantizer.i.payload.multiplier.eq(self.multiplier), requantizer.i.payload.shift.eq(self.shift),
                     requantizer.i.payload.low.eq(self.low), requantizer.i.payload.high.eq(self.high)]
