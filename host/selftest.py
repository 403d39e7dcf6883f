"""``neofpga selftest``: a board's link, memories and units, checked against the reference device.

Every check runs its commands on the board and on :class:`~neofpga.sim.accelerator_model.AcceleratorModel`
(the golden numerics behind the same protocol), built with the board's INFO, and compares what
comes back: memory patterns at both ends of every bank, a requantized product with saturating
operands, a softmax row as long as the unit takes, a GELU product, the vector ops (EMBED, NORM,
SAMPLE) where the device has them, the counters, and refused out-of-range accesses. Where the
device has DRAM: a word at every power-of-two address read back (walking addresses), and
DRAM_TEST's pattern over the whole DRAM, in parts of :data:`DRAM_TEST_WORDS`. Then it measures the
link: bytes a second each way and a command's round trip.
"""

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..contract.numerics import GELU_KNOTS
from ..contract.protocol import (CONSTANT, DRAM_TEST, DRAM_TESTED, EMBED, NORM, NORM_COLUMN, SAMPLE,
                                 WORD_BYTES, Mode, Opcode, Space, pack_record, unpack_record)
from .dram_program import forget_resident_image
from .driver import AcceleratorDriver, record_dtype
from .kernels import gelu_knots, multiplier_and_shift, sampling_parameters, softmax_parameters
from .link import Link, LinkError

__all__ = ["Check", "run_selftest"]

MODEL_FIELDS = ("rows", "cols", "activation_words", "weight_words", "constant_words", "gelu_tables",
                "max_payload", "softmax_length", "program_words", "norm_length", "dram_words", "gateware_version",
                "clock_hz")
PATTERN_WORDS = 256       # words written and read back at each end of every bank (--full: all of them)
THROUGHPUT_BYTES = 65536  # written to, then read from, weight bank 0
ROUND_TRIPS = 20          # INFO commands timed for the latency
DRAM_TEST_WORDS = 2 ** 20  # DRAM words a DRAM_TEST command tests: a part of a fraction of a second on a board


@dataclass
class Check:
    """One check's outcome: ``name``, whether it ``passed``, and what it found (``detail``)."""

    name: str
    passed: bool
    detail: str


class _Mirror:
    """Commands applied to the board and to the reference alike; reads return both answers."""

    def __init__(self, board):
        from .accelerator_model import AcceleratorModel, ModelTransport

        info = board.device_info
        model = AcceleratorModel(**{name: info[name] for name in MODEL_FIELDS})
        self.board, self.reference = board, AcceleratorDriver(Link(ModelTransport(model), timeout=0))

    def write(self, *args):
        self.board.write(*args)
        self.reference.write(*args)

    def matmul(self, **fields):
        self.board.matmul(**fields)
        self.reference.matmul(**fields)

    def read(self, *args):
        return self.board.read(*args), self.reference.read(*args)

    def command(self, opcode, payload):
        """A command's answer from both."""
        return self.board.link.command(opcode, payload), self.reference.link.command(opcode, payload)

    def reset_counters(self):
        self.board.reset_counters()
        self.reference.reset_counters()


def _compare(name, pair, what):
    got, expected = pair
    if got == expected:
        return Check(name, True, what)
    first = next((i for i, (x, y) in enumerate(zip(got, expected)) if x != y), min(len(got), len(expected)))
    return Check(name, False, f"{what}: the board's answer differs from the golden model's from byte {first} on")


def _memory_checks(mirror, info, rng, full):
    """Random words at both ends of every bank of the readable spaces, read back as the reference
    device reads them (CONSTANTS words keep CONSTANT_WORD_BITS)."""
    spaces = {Space.ACTIVATIONS: (info["rows"], info["activation_words"]),
              Space.WEIGHTS: (info["cols"], info["weight_words"]),
              Space.CONSTANTS: (1, info["constant_words"])}
    for space, (banks, depth) in spaces.items():
        size = WORD_BYTES[space]
        count = depth if full else min(depth, PATTERN_WORDS)
        starts = sorted({0, depth - count})
        bad = []
        for bank in range(banks):
            for start in starts:
                data = rng.integers(0, 256, count * size, dtype=np.uint8).tobytes()
                mirror.write(space, bank, start, data)
                board, reference = mirror.read(space, bank, start, count)
                if board != reference:
                    bad.append(f"bank {bank} at {start}")
        what = f"{space.name}: {banks} bank(s) x {len(starts)} region(s) of {count:,} words"
        yield Check(f"memory {space.name.lower()}", not bad, what + (f"; wrong read-back: {', '.join(bad)}" if bad else ""))


def _memory_words(info):
    """The DRAM space's words that are memory: all of them, but a streamed design's weight stream."""
    return info["dram_words"] - info.get("stream_words", 0)


def _walking_addresses(mirror, info, rng):
    """A random word at DRAM address 0 and at every power of two below its size, all written
    first, then read back: an address bit that does not reach the chip makes two of them one."""
    addresses = [0] + [1 << bit for bit in range((_memory_words(info) - 1).bit_length())]
    for address in addresses:
        mirror.write(Space.DRAM, 0, address, rng.integers(0, 256, WORD_BYTES[Space.DRAM], dtype=np.uint8).tobytes())
    bad = [address for address in addresses if len(set(mirror.read(Space.DRAM, 0, address, 1))) > 1]
    return Check("dram addresses", not bad, f"a word at 0 and at each of {len(addresses) - 1} powers of two"
                 + (f"; wrong read-back at {', '.join(map(str, bad))}" if bad else ""))


def _dram_patterns(mirror, info, seed):
    """DRAM_TEST over every DRAM word, a part a command (a progress bar on stderr): the board's
    errors (the reference device has none)."""
    words, errors, first = _memory_words(info), 0, None
    for start in tqdm(range(0, words, DRAM_TEST_WORDS), desc="testing the DRAM", unit="part", disable=None):
        count = min(DRAM_TEST_WORDS, words - start)
        board, _ = mirror.command(Opcode.DRAM_TEST, pack_record(DRAM_TEST, start=start, words=count, seed=seed))
        answer = unpack_record(DRAM_TESTED, board)
        if answer["errors"] and first is None:
            first = answer["first_error"]
        errors += answer["errors"]
    size = words * WORD_BYTES[Space.DRAM]
    return Check("dram patterns", errors == 0, f"{words:,} words ({size / 2 ** 20:,.1f} MiB) written with DRAM_TEST's "
                 f"pattern and read back: {errors:,} words wrong" + (f", the first at {first:,}" if errors else ""))


def _refusals(board, info):
    """Accesses past the end of a bank are refused with BAD_ARGUMENT, and change nothing."""
    refused = []
    for space, depth in ((Space.ACTIVATIONS, info["activation_words"]), (Space.WEIGHTS, info["weight_words"])):
        try:
            board.read(space, 0, depth, 1)
            refused.append(False)
        except LinkError as e:
            refused.append("BAD_ARGUMENT" in str(e))
    return Check("range checks", all(refused), "reads past the last word of a bank are refused")


def _constants(rng, count):
    records = np.zeros(count, record_dtype(CONSTANT))
    factors = 10 ** rng.uniform(-6, 0, count)
    factors[::4] = 1.0  # results equal to sum + bias: a sum off by one shows
    multiplier, shift = multiplier_and_shift(factors)
    records["bias"] = rng.integers(-2 ** 12, 2 ** 12, count)
    records["multiplier"], records["shift"] = multiplier, shift
    return records.tobytes()


def _operands(rng, mirror, info, m, k, n):
    """Random rows A [m, k] (int16, each row of its own magnitude up to the full range, with -32768
    and 32767) banked at 0, W [n, k] (int8, with -128) banked at 0, on both sides."""
    rows, cols = info["rows"], info["cols"]
    magnitude = 2 ** rng.integers(1, 16, (m, 1))
    magnitude[0] = 2  # small sums, which the columns of factor 1 leave unsaturated
    a = np.clip(rng.integers(-2 ** 15, 2 ** 15, (m, k)) * magnitude // 2 ** 15, -2 ** 15, 2 ** 15 - 1)
    a[-1, :2] = -2 ** 15, 2 ** 15 - 1
    w = rng.integers(-128, 128, (n, k))
    w.flat[0] = -128
    for bank in range(min(rows, m)):
        mirror.write(Space.ACTIVATIONS, bank, 0, a[bank::rows].astype("<i2").tobytes())
    for bank in range(min(cols, n)):
        mirror.write(Space.WEIGHTS, bank, 0, w[bank::cols].astype("i1").tobytes())


def _matmul_check(mirror, info, rng):
    """A requantized product that spans several tiles, saturating at its limits."""
    rows, cols = info["rows"], info["cols"]
    m, k, n = 2 * rows + 1, 67, 3 * cols + 5
    _operands(rng, mirror, info, m, k, n)
    mirror.write(Space.CONSTANTS, 0, 0, _constants(rng, n))
    out = k * ((m + rows - 1) // rows)
    mirror.matmul(m=m, k=k, n=n, a_base=0, a_stride=k, w_base=0, w_stride=k, mode=Mode.REQUANTIZE, constants=0,
                  low=-20000, high=20000, out_space=Space.ACTIVATIONS, out_banked=1, out_address0=out, out_stride=n)
    per_bank = ((m + rows - 1) // rows) * n
    return _compare("matmul", mirror.read(Space.ACTIVATIONS, 0, out, per_bank),
                    f"[{m}x{k}] @ [{k}x{n}] requantized, saturating at +-20000")


def _softmax_check(mirror, info, rng):
    """One softmax row of every key the unit takes, masked by a position and a window."""
    keys, k = info["softmax_length"], 16
    _operands(rng, mirror, info, 1, k, keys)
    pre, constant, shift = softmax_parameters(1e-6)
    out = k
    mirror.matmul(m=1, k=k, n=keys, a_base=0, a_stride=k, w_base=0, w_stride=k, mode=Mode.SOFTMAX,
                  softmax_pre=pre, softmax_constant=constant, softmax_shift=shift, position=keys - 2,
                  window=keys // 2, out_space=Space.ACTIVATIONS, out_address0=out, out_stride=keys)
    return _compare("softmax", mirror.read(Space.ACTIVATIONS, 0, out, keys),
                    f"a row of {keys:,} keys, window {keys // 2}")


def _gelu_check(mirror, info, rng):
    """A product through the GELU unit with knots in its last table."""
    table = info["gelu_tables"] - 1
    knots = gelu_knots(2.0 ** -10, 2.0 ** -11).astype("<i4")
    mirror.write(Space.GELU, 0, table * GELU_KNOTS, knots.tobytes())
    m, k, n = info["rows"], 40, 2 * info["cols"]
    _operands(rng, mirror, info, m, k, n)
    mirror.write(Space.CONSTANTS, 0, 0, _constants(rng, n))
    out = k
    mirror.matmul(m=m, k=k, n=n, a_base=0, a_stride=k, w_base=0, w_stride=k, mode=Mode.GELU, constants=0,
                  low=-32768, high=32767, gelu_table=table, gelu_low=-1000, gelu_high=30000, out_space=Space.ACTIVATIONS, out_banked=1,
                  out_address0=out, out_stride=n)
    return _compare("gelu", mirror.read(Space.ACTIVATIONS, 0, out, n), f"[{m}x{k}] @ [{k}x{n}] through GELU "
                    f"table {table}")


def _vector_check(mirror, info, rng):
    """EMBED a row, NORM it with an addend (the residual add, then the LayerNorm), and SAMPLE the
    result greedily and seeded: the rows and the choices."""
    d, cols, rows = min(info["norm_length"], 64), info["cols"], info["rows"]
    for bank in (0, 1 % cols):  # the token's row (id 0) and the position's (1), from address 0
        mirror.write(Space.WEIGHTS, bank, 0, rng.integers(-128, 128, d).astype("i1").tobytes())
    mirror.write(Space.CONSTANTS, 0, 0, _constants(rng, 3))  # records 0 (the token's) and 2 (the position's)
    columns = np.zeros(d, record_dtype(NORM_COLUMN))
    columns["gain"], columns["bias"] = rng.integers(-2 ** 15, 2 ** 15, d), rng.integers(-2 ** 20, 2 ** 20, d)
    mirror.write(Space.CONSTANTS, 0, 8, columns.tobytes())
    addend_bank, out_bank = 1 % rows, 2 % rows
    mirror.write(Space.ACTIVATIONS, addend_bank, d, rng.integers(-2 ** 15, 2 ** 15, d).astype("<i2").tobytes())
    answers = [mirror.command(Opcode.EMBED, pack_record(EMBED, id=0, position=1, d=d, token_constants=0,
                                                        position_constants=1, out_bank=0, out_address=0))]
    multiplier, shift = multiplier_and_shift(1e-5)
    mean_multiplier, mean_shift = multiplier_and_shift(1 / d)
    answers.append(mirror.command(Opcode.NORM, pack_record(
        NORM, d=d, residual_bank=0, residual_address=0, add=1, addend_bank=addend_bank, addend_address=d,
        columns=8, multiplier=multiplier, shift=shift, low=-32768, high=32767, mean_multiplier=mean_multiplier,
        mean_shift=mean_shift, epsilon=1, out_bank=out_bank, out_address=2 * d)))
    pre, constant, shift, k, top_p = sampling_parameters(0.05, 1.0, 8, 0.9)
    for settings in (dict(greedy=1), dict(pre=pre, constant=constant, shift=shift, k=k, top_p=top_p, state=12345)):
        answers.append(mirror.command(Opcode.SAMPLE, pack_record(SAMPLE, n=d, bank=out_bank, address=2 * d,
                                                                 **settings)))
    answers += [mirror.read(Space.ACTIVATIONS, bank, 0, 3 * d) for bank in range(rows)]  # the rows written
    got, expected = zip(*answers)
    return _compare("vector ops", (b"".join(got), b"".join(expected)),
                    f"EMBED, NORM and SAMPLE (greedy and seeded) on a row of {d}")


def _ramp(size):
    """``size`` bytes: 0..255 over and over, zeros after the last whole run (the data the link's
    measurements write)."""
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def _write_rates(board, info):
    """``{space: (bytes, bytes a device cycle)}`` of one WRITE frame as full as the device takes into
    each of weight bank 0, the constants and DRAM, counted from RESET_COUNTERS to COUNTERS: every
    cycle of the frame's arrival (a simulated PCIe board's DMA model included), its checks and its
    writes. One frame, because a simulated UART carries a byte in 120 cycles: 64 KiB into each space
    cost minutes on a simulated DRAM design. None from a device that counts no cycles (the
    reference device)."""
    rates = {}
    for space, words in ((Space.WEIGHTS, info["weight_words"]), (Space.CONSTANTS, info["constant_words"]),
                         (Space.DRAM, info.get("dram_words", 0))):
        size = min(board.words_per_write(space), words) * WORD_BYTES[space]
        if size:
            board.reset_counters()
            board.write(space, 0, 0, _ramp(size))
            cycles = board.counters()["cycles"]
            if not cycles:
                return None
            rates[space.name.lower()] = size, size / cycles
    return rates


def _throughput(board, info, baud):
    """Bytes a second written and read (weight bank 0), the mean round trip of INFO, and the bytes a
    device cycle of a WRITE into each space (:func:`_write_rates`)."""
    size = min(THROUGHPUT_BYTES, info["weight_words"])
    data = _ramp(size)
    start = time.perf_counter()
    board.write(Space.WEIGHTS, 0, 0, data)
    written = time.perf_counter() - start
    start = time.perf_counter()
    back = board.read(Space.WEIGHTS, 0, 0, size)
    read = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(ROUND_TRIPS):
        board.info()
    latency = (time.perf_counter() - start) / ROUND_TRIPS
    line = f" (the line carries {baud / 10 / 1e3:,.0f} kB/s each way)" if baud else ""
    rates = _write_rates(board, info)
    figures = {"write_bytes_per_second": size / written, "read_bytes_per_second": size / read,
               "round_trip_seconds": latency, "device_writes": rates}
    detail = (f"write {size / written / 1e3:,.1f} kB/s, read {size / read / 1e3:,.1f} kB/s, "
              f"round trip {latency * 1e3:.2f} ms{line}" + (
                  "; WRITE on the device: " + ", ".join(f"{space} {rate:.2f} ({count / 1024:g} KiB)"
                                                        for space, (count, rate) in rates.items()) + " bytes a cycle"
                  if rates else ""))
    return Check("link", back == data, detail if back == data else "the data read back differs"), figures


def run_selftest(board, baud=None, full=False, seed=0, log=None):
    """All the checks on ``board`` (an :class:`AcceleratorDriver`); returns (checks, link figures).
    ``log(check)`` is called as each check finishes."""
    info, rng = board.device_info, np.random.default_rng(seed)
    checks = [Check("info", True, f"{info['rows']}x{info['cols']} array at {info['clock_hz'] / 1e6:g} MHz, "
                    f"gateware {info['gateware_version']:016x}, numerics {info['numerics_version']}; banks of "
                    f"{info['activation_words']:,} activation and {info['weight_words']:,} weight words, "
                    f"{info['constant_words']:,} constants, {info['gelu_tables']} GELU tables, "
                    f"softmax {info['softmax_length']:,}")]

    def done(check):
        checks.append(check)
        if log:
            log(check)

    if log:
        log(checks[0])
    mirror = _Mirror(board)
    board.reset_counters()
    for check in _memory_checks(mirror, info, rng, full):
        done(check)
    done(_refusals(board, info))
    if info.get("dram_words"):
        forget_resident_image(board)  # the checks overwrite the DRAM: a model is uploaded again after them
        done(_walking_addresses(mirror, info, rng))
        done(_dram_patterns(mirror, info, seed))
    mirror.reset_counters()
    products = [_matmul_check, _softmax_check, _gelu_check] + ([_vector_check] if info["norm_length"] else [])
    for product in products:
        done(product(mirror, info, rng))
    counters, expected_macs = board.counters(), mirror.reference.counters()["macs"]
    done(Check("counters", counters["macs"] == expected_macs and counters["errors"] == 0,
               f"{counters['macs']:,} MACs (expected {expected_macs:,}), {counters['errors']} errors, "
               f"{counters['matmul_cycles']:,} matmul cycles"))
    check, figures = _throughput(board, info, baud)
    done(check)
    return checks, figures
