"""cocotb testbench of hdl/layer_norm.py: every output against kernels.integer_layer_norm, row by row.

The design's ``max_length`` comes in the MAX_LENGTH environment variable (run_cocotb's extra_env).
Rows come in groups of one length (the parameters, 1/D among them, hold for a group): 1, 2, an odd
one and MAX_LENGTH. Row kinds: normal at amplitudes from one unit to the whole range, flat
rows, the int16 extremes, alternating extremes, one spike, and rows whose mean lies on a half
(a rounding tie). Gains and biases run to their limits; the parameters are those the quantizer
makes, and arbitrary ones (epsilon 0 and its maximum, shift 0, limits narrowed).
"""

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from neofpga.contract.numerics import NORM_EPSILON_MAX, NORM_FRAC_BITS
from neofpga.hdl.layer_norm import LayerNorm, LayerNormColumn, LayerNormInput, LayerNormOutput
from neofpga.host.kernels import integer_layer_norm, multiplier_and_shift
from neofpga.sim.streams import StreamSink, StreamSource, cycles_until, pack, start, unpack

MAX_LENGTH = int(os.environ["MAX_LENGTH"])
TIMEOUT_NS = 2_000_000 + 20_000 * MAX_LENGTH
LENGTHS = sorted({1, 2, min(7, MAX_LENGTH), MAX_LENGTH})
KINDS = ("normal", "flat", "extremes", "alternating", "spike", "half_mean")


def make_row(rng, kind, length):
    """One int16 row of a kind."""
    if kind == "normal":
        amplitude = rng.choice([1, 3, 30, 300, 3000, 30000])
        row = rng.normal(0, amplitude, length) + rng.normal(0, amplitude)
    elif kind == "flat":
        row = np.full(length, rng.integers(-32768, 32768))
    elif kind == "extremes":
        row = rng.choice([-32768, 32767], length)
    elif kind == "alternating":
        row = np.where(np.arange(length) % 2, -32768, 32767)
    elif kind == "spike":
        row = np.zeros(length)
        row[rng.integers(0, length)] = rng.choice([-32768, 32767])
    else:  # the sum is odd multiple of length / 2: the mean is a tie when length is even
        row = rng.integers(-100, 100, length)
        row[0] += (length // 2) - (row.sum() % length) if length > 1 else 0
    return np.clip(np.rint(row), -32768, 32767).astype(np.int64)


def quantizer_parameters(rng, length):
    """Parameters as the quantizer makes them for a row of ``length``: (statistics, requantizer)."""
    s_res = rng.choice([1e-4, 1e-3, 1e-2])
    epsilon = min(max(int(round(length * 1e-5 / s_res ** 2)), 1), NORM_EPSILON_MAX)
    gamma_scale = rng.uniform(0.5, 3) / 32767
    unit = gamma_scale * np.sqrt(length) * 2.0 ** -NORM_FRAC_BITS
    out_scale = rng.uniform(1, 8) * np.sqrt(length) / 32767  # outputs of a few standard deviations
    multiplier, shift = multiplier_and_shift(unit / out_scale)
    return (*multiplier_and_shift(1.0 / length), epsilon), (int(multiplier), int(shift), -32767, 32767)


def arbitrary_parameters(rng, length):
    """Parameters outside what the quantizer makes: epsilon 0 or its maximum, shift 0, narrow limits."""
    mean_multiplier, mean_shift = multiplier_and_shift(1.0 / length)
    epsilon = int(rng.choice([0, 1, NORM_EPSILON_MAX, rng.integers(0, 2 ** 30)]))
    shift = int(rng.choice([0, 1, 17, 40, 48]))
    low = int(rng.integers(-32768, 0))
    return (int(mean_multiplier), int(mean_shift), epsilon), (int(rng.integers(0, 2 ** 16)), shift, low,
                                                              int(rng.integers(low, 32768)))


def make_columns(rng, length):
    """(gains, biases) with the extremes among them."""
    gains = rng.integers(-32767, 32768, length)
    biases = rng.integers(-2 ** 30, 2 ** 30 + 1, length)
    gains[: min(3, length)] = [32767, -32767, 0][: min(3, length)]
    biases[: min(2, length)] = [2 ** 30, -2 ** 30][: min(2, length)]
    return gains, biases


def expected_outputs(rows, columns, statistics, requantizer):
    multiplier, shift, low, high = requantizer
    return [integer_layer_norm(row[None], gains, biases, multiplier, shift, low, high, *statistics)[0]
            for row, (gains, biases) in zip(rows, columns)]


async def run_group(dut, rng, rows, columns, statistics, requantizer, stalls, sink_delay=0):
    """Send a group of rows (one length, one set of parameters), check every output and ``last``."""
    dut.mean_multiplier.value, dut.mean_shift.value, dut.epsilon.value = (int(v) for v in statistics)
    dut.multiplier.value, dut.shift.value, dut.low.value, dut.high.value = requantizer
    valid_probability, column_probability, ready_probability = stalls
    words = [pack(LayerNormInput, {"x": x, "last": j == len(row) - 1}) for row in rows for j, x in enumerate(row)]
    column_words = [pack(LayerNormColumn, {"gain": g, "bias": b}) for gains, biases in columns
                    for g, b in zip(gains, biases)]
    source = StreamSource(dut, "i", rng, valid_probability)
    column_source = StreamSource(dut, "columns", rng, column_probability)
    sink = StreamSink(dut, "o", rng, ready_probability)
    sending = cocotb.start_soon(source.send(words))
    sending_columns = cocotb.start_soon(column_source.send(column_words))
    await ClockCycles(dut.clk, sink_delay)
    received = [unpack(LayerNormOutput, word) for word in await sink.receive(len(words))]
    await sending
    await sending_columns
    position = 0
    for number, (row, expected) in enumerate(zip(rows, expected_outputs(rows, columns, statistics, requantizer))):
        got = received[position:position + len(row)]
        position += len(row)
        y = [element["y"] for element in got]
        where = f"row {number} of length {len(row)}, parameters {statistics} {requantizer}"
        mismatches = [j for j, (a, b) in enumerate(zip(y, expected)) if a != b]
        assert not mismatches, (f"{where}: {len(mismatches)} outputs differ, first at {mismatches[0]}: got "
                                f"{y[mismatches[0]]}, expected {expected[mismatches[0]]} (row {row.tolist()[:8]})")
        assert [element["last"] for element in got] == [0] * (len(row) - 1) + [1], f"{where}: last flags"
    await sink.expect_idle(80)


def make_group(rng, length, count):
    rows = [make_row(rng, KINDS[number % len(KINDS)], length) for number in range(count)]
    return rows, [make_columns(rng, length) for _ in rows]


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def matches_integer_layer_norm(dut):
    """Every row kind at every length, the quantizer's parameters, random stalls on all three streams."""
    rng = np.random.default_rng(1)
    await start(dut)
    stalls = [(1.0, 1.0, 1.0), (0.7, 0.6, 0.5), (0.4, 1.0, 0.9), (1.0, 0.3, 0.8)]
    for group, length in enumerate(LENGTHS * 2):
        rows, columns = make_group(rng, length, 2 * len(KINDS))
        await run_group(dut, rng, rows, columns, *quantizer_parameters(rng, length), stalls[group % len(stalls)])


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def arbitrary_parameters_and_saturation(dut):
    """Epsilon 0 and its maximum, every shift class, narrowed and inverted limits."""
    rng = np.random.default_rng(2)
    await start(dut)
    for length in LENGTHS:
        for _ in range(3):
            rows, columns = make_group(rng, length, len(KINDS))
            await run_group(dut, rng, rows, columns, *arbitrary_parameters(rng, length), (0.8, 0.8, 0.8))


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def output_held_back(dut):
    """Rows keep coming while nothing is taken for a long time: the inputs stall, nothing is lost."""
    rng = np.random.default_rng(3)
    await start(dut)
    rows, columns = make_group(rng, MAX_LENGTH, 4)
    await run_group(dut, rng, rows, columns, *quantizer_parameters(rng, MAX_LENGTH), (1.0, 1.0, 0.3),
                    sink_delay=4 * MAX_LENGTH + 300)


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def cycles_per_row(dut):
    """Unstalled, a row of D takes 3 D + 54 cycles plus one a root bit (21 up to D = 256) from its first
    value to its last output."""
    root_bits = (LayerNorm.power_width(MAX_LENGTH) + 1) // 2
    rng = np.random.default_rng(4)
    await start(dut)
    for length in LENGTHS:
        rows, columns = make_group(rng, length, 1)
        statistics, requantizer = quantizer_parameters(rng, length)
        task = cocotb.start_soon(run_group(dut, rng, rows, columns, statistics, requantizer, (1.0, 1.0, 1.0)))
        cycles = await cycles_until(dut, lambda payload: unpack(LayerNormOutput, payload)["last"])
        await task
        dut._log.info(f"a row of {length}: {cycles} cycles")
        assert cycles == 3 * length + 54 + root_bits
