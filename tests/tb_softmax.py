"""cocotb testbench of hdl/softmax.py: every probability against kernels.integer_softmax, row by row.

The design's ``max_length`` comes in the MAX_LENGTH environment variable (run_cocotb's extra_env).
Rows mix lengths (1, 2, max_length - 1, max_length and random ones), score patterns (logits at
the parameters' scale, all equal, 1e9 apart, int32 extremes, random int32) and masks (all
visible, random, none, a single entry, causal prefixes, local windows).
"""

import itertools
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from neofpga.hdl.softmax import SoftmaxInput, SoftmaxOutput
from neofpga.host.kernels import integer_softmax, softmax_parameters
from neofpga.sim.streams import StreamSink, StreamSource, pack, start, unpack

MAX_LENGTH = int(os.environ["MAX_LENGTH"])
INT32 = np.iinfo(np.int32)
# 1e-9 and 1e-6 give pre > 0 (1e-6 is the shipped model's kind); 1e-4 and up give pre = 0
SCALES = (1e-9, 1e-6, 1e-4, 3e-3, 0.1, 1.0)
TIMEOUT_NS = 1_000_000 + 10_000 * MAX_LENGTH  # several times what any test here needs
SCORE_KINDS = ("logits", "equal", "huge", "extremes", "int32")
MASK_KINDS = ("all", "random", "none", "single", "causal", "window")


def row_lengths(rng):
    """Row lengths: 1, 2, max_length - 1 and max_length, each followed by a random one, over and over."""
    for special in itertools.cycle(sorted({1, 2, max(1, MAX_LENGTH - 1), MAX_LENGTH})):
        yield special
        yield int(rng.integers(1, MAX_LENGTH + 1))


def make_scores(rng, kind, length, scale):
    """int64 scores of one kind, all within int32."""
    if kind == "logits":  # float logits of a few units, as the model would see them
        spread = rng.choice([0.3, 3.0, 12.0])
        scores = np.rint(rng.normal(0.0, spread, length) / scale)
    elif kind == "equal":
        scores = np.full(length, rng.integers(INT32.min, INT32.max, endpoint=True))
    elif kind == "huge":  # unscaled GPT-Neo-like scores far beyond DIFF_MAX << pre apart
        scores = rng.choice([-1e9, 0.0, 1e9], length) + rng.integers(-1000, 1000, length)
    elif kind == "extremes":
        scores = rng.choice([INT32.min, INT32.min + 1, -1, 0, 1, INT32.max - 1, INT32.max], length)
    else:
        scores = rng.integers(INT32.min, INT32.max, length, endpoint=True)
    return np.clip(np.asarray(scores, dtype=np.float64), INT32.min, INT32.max).astype(np.int64)


def make_mask(rng, kind, length):
    """A boolean visibility mask of one kind."""
    position = np.arange(length)
    query = int(rng.integers(0, length))  # the query's position for causal and window masks
    if kind == "all":
        return np.ones(length, dtype=bool)
    if kind == "random":
        return rng.random(length) < rng.uniform(0.1, 0.9)
    if kind == "none":
        return np.zeros(length, dtype=bool)
    if kind == "single":
        return position == query
    if kind == "causal":
        return position <= query
    window = int(rng.integers(1, length + 1))
    return (position <= query) & (position > query - window)


def make_rows(rng, scale, count=None):
    """(description, scores, visible) for every score kind with every mask kind, then ``count`` more."""
    lengths = row_lengths(rng)
    kinds = list(itertools.product(SCORE_KINDS, MASK_KINDS))
    if count is not None:
        kinds += [(rng.choice(SCORE_KINDS), rng.choice(MASK_KINDS)) for _ in range(count)]
    rows = []
    for score_kind, mask_kind in kinds:
        length = next(lengths)
        rows.append((f"{score_kind}/{mask_kind}/{length}", make_scores(rng, score_kind, length, scale),
                     make_mask(rng, mask_kind, length)))
    return rows


def payloads(rows):
    """The input stream of ``rows``: packed SoftmaxInput words, ``last`` on each row's final entry."""
    words = []
    for _, scores, visible in rows:
        for index, (score, seen) in enumerate(zip(scores, visible)):
            words.append(pack(SoftmaxInput, {"score": score, "visible": seen, "last": index == len(scores) - 1}))
    return words


def check(rows, received, parameters):
    """Every output element against integer_softmax of its row, ``last`` exactly on each row's final one."""
    outputs = [unpack(SoftmaxOutput, word) for word in received]
    position = 0
    for number, (description, scores, visible) in enumerate(rows):
        expected = integer_softmax(scores[None], visible[None], *parameters)[0]
        got = outputs[position:position + len(scores)]
        position += len(scores)
        p = [element["p"] for element in got]
        last = [element["last"] for element in got]
        where = f"row {number} ({description}), parameters {parameters}"
        mismatches = [i for i, (a, b) in enumerate(zip(p, expected)) if a != b]
        assert not mismatches, (f"{where}: {len(mismatches)} probabilities differ, first at {mismatches[0]}: "
                                f"got {p[mismatches[0]]}, expected {expected[mismatches[0]]} "
                                f"(score {scores[mismatches[0]]}, visible {visible[mismatches[0]]})")
        assert last == [0] * (len(scores) - 1) + [1], f"{where}: last flags {last}"


async def stream_rows(dut, rng, rows, parameters, valid_probability, ready_probability, sink_delay=0):
    """Send ``rows`` with ``parameters`` set, receive as many outputs, check them and that nothing more comes."""
    dut.pre.value, dut.constant.value, dut.shift.value = parameters
    words = payloads(rows)
    source = StreamSource(dut, "i", rng, valid_probability)
    sink = StreamSink(dut, "o", rng, ready_probability)
    sending = cocotb.start_soon(source.send(words))
    await ClockCycles(dut.clk, sink_delay)
    received = await sink.receive(len(words))
    await sending
    check(rows, received, parameters)
    await sink.expect_idle(60)


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def matches_integer_softmax(dut):
    """Rows of every kind at six score scales, with random stalls on both streams."""
    rng = np.random.default_rng(1)
    await start(dut)
    for scale, (valid_probability, ready_probability) in zip(SCALES, itertools.cycle(
            [(0.7, 0.6), (1.0, 1.0), (0.5, 0.9), (0.9, 0.4)])):
        rows = make_rows(rng, scale, count=60)
        await stream_rows(dut, rng, rows, softmax_parameters(scale), valid_probability, ready_probability)


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def arbitrary_parameters(dut):
    """Parameters beyond softmax_parameters' range: shift 0 (no rounding term), large shifts, pre 0 and 31."""
    rng = np.random.default_rng(2)
    await start(dut)
    for parameters in [(0, 2 ** 16, 0), (31, 2 ** 17 - 1, 1), (3, 100_000, 40), (0, 2 ** 17 - 1, 62),
                       (int(rng.integers(0, 32)), int(rng.integers(2 ** 16, 2 ** 17)), int(rng.integers(0, 36)))]:
        rows = make_rows(rng, 1e-3)[::3]
        await stream_rows(dut, rng, rows, parameters, 0.8, 0.8)


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def output_held_back(dut):
    """Rows keep coming while nothing is taken for a long time: the input stalls, nothing is lost."""
    rng = np.random.default_rng(3)
    await start(dut)
    rows = make_rows(rng, 1e-6)[:8]
    await stream_rows(dut, rng, rows, softmax_parameters(1e-6), 1.0, 0.3, sink_delay=8 * MAX_LENGTH + 200)


async def handshake_cycles(dut, cycles):
    """For ``cycles`` cycles from now: the cycles in which a row's last score and last p were taken."""
    inputs, outputs = [], []
    for cycle in range(cycles):
        await ReadOnly()
        if dut.i__valid.value and dut.i__ready.value and unpack(SoftmaxInput, dut.i__payload.value)["last"]:
            inputs.append(cycle)
        if dut.o__valid.value and dut.o__ready.value and unpack(SoftmaxOutput, dut.o__payload.value)["last"]:
            outputs.append(cycle)
        await RisingEdge(dut.clk)
    return inputs, outputs


@cocotb.test(timeout_time=TIMEOUT_NS, timeout_unit="ns")
async def cycles_per_row(dut):
    """Back-to-back rows with both streams free: one row per max(L + 12, 19) cycles, latency 3 L + 34."""
    rng = np.random.default_rng(4)
    await start(dut)
    parameters = softmax_parameters(1e-6)
    dut.pre.value, dut.constant.value, dut.shift.value = parameters
    for length in sorted({1, 2, 16, MAX_LENGTH} & set(range(1, MAX_LENGTH + 1))):
        rows = [(f"logits/all/{length}", make_scores(rng, "logits", length, 1e-6), np.ones(length, dtype=bool))
                for _ in range(8)]
        words = payloads(rows)
        source, sink = StreamSource(dut, "i", rng), StreamSink(dut, "o", rng)
        timing = cocotb.start_soon(handshake_cycles(dut, 8 * (length + 20) + 3 * length + 100))
        sending = cocotb.start_soon(source.send(words))
        received = await sink.receive(len(words))
        await sending
        inputs, outputs = await timing
        check(rows, received, parameters)
        periods = set(np.diff(outputs[2:]).tolist())
        first_score = inputs[0] - (length - 1)
        dut._log.info(f"rows of {length}: one per {sorted(periods)} cycles, latency {outputs[0] - first_score}")
        assert periods == {max(length + 12, 19)}
        assert outputs[0] - first_score == 3 * length + 34
