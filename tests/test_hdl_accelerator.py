"""hdl/accelerator.py on the simulated board against host/accelerator_model.py, frame for frame.

A small accelerator (3 x 4 array, NORM rows of up to 64) is built once for the module
(sim/simulated_board.py's cache: the first build takes about half a minute). Random command
sequences (products, the vector ops EMBED, NORM and SAMPLE, good and bad) go to the board as raw
frames and to an :class:`AcceleratorModel` with the same parameters: every answer must be the same
bytes (the counters' cycle fields aside: the model has no clock), and so must all of memory at the end.
Damaged frames must be answered with the link's errors and leave the next good frame its answer;
:class:`Link` over :class:`FaultyTransport` must leave the memory of a clean run.
"""

import collections
import time

import numpy as np
import pytest
import serial
from faulty_transport import FaultyTransport
from neofpga.contract.gateware_version import gateware_version
from neofpga.contract.numerics import (CONSTANT_BITS, GELU_KNOTS, NORM_EPSILON_MAX, NUMERICS_VERSION,
                                       SAMPLE_CANDIDATES, TOP_P_BITS)
from neofpga.contract.protocol import (ACCESS, ANSWER, CONSTANT, CRC_BYTES, EMBED, ERROR, HEADER_BYTES, INFO,
                                       MATMUL, MATMUL_MAX_SIZE, NORM, NORM_COLUMN, READ, SAMPLE, SYNC, WORD_BYTES,
                                       Error, FrameDecoder, Mode, Opcode, Space, counters_record, encode_frame,
                                       pack_record, record_size, unpack_record)
from neofpga.host.accelerator_model import AcceleratorModel, ModelTransport
from neofpga.host.backends import load_source
from neofpga.host.driver import record_dtype
from neofpga.host.kernels import multiplier_and_shift, sampling_parameters, softmax_parameters
from neofpga.host.link import Link
from neofpga.sim.board_process import SimulatedBoard
from neofpga.sim.simulated_board import board_executable

SMALL = dict(rows=3, cols=4, activation_words=2 ** 11, weight_words=3 * 2 ** 10, constant_words=2 ** 10,
             gelu_tables=4, softmax_length=64, max_payload=512, norm_length=64, timeout_cycles=20_000)
"""The accelerator these tests run: its weight banks in pairs (hdl/banks.py), as the ULX3S-85F's are."""
ACT, WGT, CON, GELU = Space.ACTIVATIONS, Space.WEIGHTS, Space.CONSTANTS, Space.GELU
ROWS, COLS, MAX_PAYLOAD, NORM_LENGTH = SMALL["rows"], SMALL["cols"], SMALL["max_payload"], SMALL["norm_length"]
BANKS = {ACT: ROWS, WGT: COLS, CON: 1, GELU: 1}
DEPTHS = {ACT: SMALL["activation_words"], WGT: SMALL["weight_words"], CON: SMALL["constant_words"],
          GELU: GELU_KNOTS * SMALL["gelu_tables"]}
DAMAGE = {Error.BAD_CRC, Error.TOO_LONG, Error.TRUNCATED}
COUNTER_FIELDS = counters_record(NORM_LENGTH)
CYCLE_COUNTERS = {"cycles": None, "matmul_cycles": Opcode.MATMUL, "embed_cycles": Opcode.EMBED,
                  "norm_cycles": Opcode.NORM, "sample_cycles": Opcode.SAMPLE, "program_cycles": Opcode.TOKEN}
"""The cycle counters, and the opcode whose runs each one counts."""
VECTOR_OPS = {Opcode.EMBED, Opcode.NORM, Opcode.SAMPLE}
LIMITS = [(-32768, 32767), (-32767, 32767), (-127, 127), (-128, 127)]  # the images' requantizer limits
ANSWER_WAIT = 5.0  # seconds an answer may take
TIMEOUT_WAIT = 0.5  # seconds of silence that outlast the receive timeout (20,000 cycles) many times over


@pytest.fixture(scope="module")
def design():
    """The small accelerator's simulated board executable and the gateware version its INFO reports."""
    return board_executable(SMALL, log=lambda line: None), gateware_version(SMALL)


@pytest.fixture
def board(design):
    with SimulatedBoard(design[0]) as board:
        yield board


def small_model(design):
    return AcceleratorModel(**{name: value for name, value in SMALL.items() if name != "timeout_cycles"},
                            gateware_version=design[1])


@pytest.fixture(scope="module")
def knot_tables():
    """The GELU tables of the shipped model's four layers."""
    tensors = load_source(None).quantized().tensors
    return [tensors[f"h.{layer}.gelu.knots"].astype(np.int64) for layer in range(4)]


class RawLink:
    """Frames to the board as bytes, its answer frames back."""

    def __init__(self, url):
        self.port = serial.serial_for_url(url, timeout=0.01)
        self.decoder = FrameDecoder()
        self.frames = collections.deque()

    def send(self, data):
        self.port.write(data)

    def receive(self, wait=ANSWER_WAIT):
        """The next answer frame, or None when none comes within ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while not self.frames:
            buffer = self.decoder.buffer
            wanted = HEADER_BYTES - len(buffer) if len(buffer) < HEADER_BYTES else \
                HEADER_BYTES + int.from_bytes(buffer[4:6], "little") + CRC_BYTES - len(buffer)
            data = self.port.read(max(wanted, 1))
            if data:
                self.frames.extend(self.decoder.feed(data))
            elif time.monotonic() > deadline:
                return None
        return self.frames.popleft()

    def exchange(self, frame):
        self.send(frame)
        return self.receive()

    def quiet(self, wait=TIMEOUT_WAIT):
        """Every answer that arrives until the line has been silent for ``wait`` seconds."""
        answers = []
        while (frame := self.receive(wait)) is not None:
            answers.append(frame)
        return answers

    def close(self):
        assert self.decoder.skipped == self.decoder.bad_frames == 0, "the board sent a damaged frame"
        self.port.close()


def describe(frame):
    return f"{frame.opcode:#04x} seq {frame.sequence} payload {frame.payload.hex() or '-'}"


class Pair:
    """The board and the model, fed the same bytes: their answers must be the same.

    COUNTERS answers are compared but for the cycle counters, the board's own: the cycles must
    grow from one COUNTERS to the next, the matmul cycles exactly when a MATMUL was applied in
    between, the cycles of a vector op when one was applied (and not at all without a frame of
    its kind), a program's never (this design runs none); all start again from 0 at a
    RESET_COUNTERS. ``answers`` counts the answers by command (good ones) and by error code.
    """

    def __init__(self, url, model):
        self.rtl, self.model = RawLink(url), model
        self.sequence = 0
        self.frame = None            # the last frame sent
        self.clock = dict.fromkeys(CYCLE_COUNTERS, 0)  # the cycle counters last seen
        self.applied, self.sent = set(), set()  # the opcodes applied, and sent, since the last COUNTERS
        self.answers = collections.Counter()

    def next_frame(self, opcode, payload=b"", same_sequence=False):
        if not same_sequence:
            self.sequence = (self.sequence + 1) % 256
        return encode_frame(opcode, self.sequence, payload)

    def command(self, opcode, payload=b"", **kwargs):
        """Send a command to both; the board's answer, once checked."""
        return self.send(self.next_frame(opcode, payload, **kwargs))

    def send(self, frame):
        """Send a frame (good or too long) to both; the board's answer, once checked."""
        self.frame = frame
        # whether the model answers it as a retry, without applying it (for the cycle counters' check)
        retry = self.model.previous == (frame[2], frame[3], True)
        (expected,) = FrameDecoder().feed(self.model.feed(frame))
        answer = self.rtl.exchange(frame)
        assert answer is not None, f"no answer to {frame.hex()}"
        context = f"the board and the model answer {frame.hex()} differently"
        if answer.opcode == expected.opcode == Opcode.COUNTERS | ANSWER:
            self._check_counters(unpack_record(COUNTER_FIELDS, answer.payload),
                                 unpack_record(COUNTER_FIELDS, expected.payload))
            assert answer.sequence == expected.sequence
        else:
            assert describe(answer) == describe(expected), context
        self.answers[Error(answer.payload[0]).name if answer.opcode == ERROR else Opcode(frame[2]).name] += 1
        self.sent.add(frame[2])
        if answer.opcode & ~ANSWER in CYCLE_COUNTERS.values() and answer.opcode != ERROR and not retry:
            self.applied.add(answer.opcode & ~ANSWER)
        if answer.opcode == Opcode.RESET_COUNTERS | ANSWER and not retry:
            self.clock, self.applied, self.sent = dict.fromkeys(CYCLE_COUNTERS, 0), set(), set()
        return answer

    def _check_counters(self, rtl, model):
        same = [name for name, _, _ in COUNTER_FIELDS if name not in CYCLE_COUNTERS and name != "cycles"]
        assert {name: rtl[name] for name in same} == {name: model[name] for name in same}
        assert rtl["cycles"] > self.clock["cycles"] and rtl["cycles"] > rtl["matmul_cycles"]
        for name, opcode in CYCLE_COUNTERS.items():
            if name == "cycles":
                continue
            if opcode in self.applied:
                assert rtl[name] > self.clock[name], name
            elif opcode in self.sent and opcode in VECTOR_OPS:  # a vector op's checks count, refused or not
                assert rtl[name] >= self.clock[name], name
            else:
                assert rtl[name] == self.clock[name], name
        self.clock, self.applied, self.sent = {name: rtl[name] for name in CYCLE_COUNTERS}, set(), set()

    def close(self):
        self.rtl.close()


# -- data and commands -------------------------------------------------------------------------

def constant_records(rng, count):
    """Requantizer records like the images' (M in [2**15, 2**16), shifts 10..33), a tenth with bits
    no unit reads set (the reserved byte, the shift's top two: the device keeps CONSTANT_WORD_BITS)."""
    records = np.zeros(count, record_dtype(CONSTANT))
    records["bias"] = np.where(rng.random(count) < 0.9, rng.integers(-2 ** 28, 2 ** 28, count),
                               rng.integers(-2 ** 31, 2 ** 31, count))
    records["multiplier"] = rng.integers(2 ** 15, 2 ** 16, count)
    records["shift"] = rng.integers(10, 34, count)
    records["reserved"] = np.where(rng.random(count) < 0.9, 0, rng.integers(0, 256, count))
    records["shift"] |= np.where(rng.random(count) < 0.9, 0, rng.integers(0, 4, count) << 6).astype(np.uint8)
    return records


def random_words(rng, space, address, count, knot_tables):
    """``count`` words of ``space`` to write at ``address``: int16 activations of some magnitude,
    int8 weights, requantizer records, or the knots of the real tables at those addresses."""
    if space == ACT:
        magnitude = int(rng.choice([2 ** 6, 2 ** 12, 2 ** 15]))
        return rng.integers(-magnitude, magnitude, count).astype("<i2").tobytes()
    if space == WGT:
        return rng.integers(-128, 128, count).astype("i1").tobytes()
    if space == CON:
        return constant_records(rng, count).tobytes()
    if space == GELU:
        table = knot_tables[rng.integers(len(knot_tables))]
        return table[(address + np.arange(count)) % GELU_KNOTS].astype("<i4").tobytes()
    return rng.bytes(count)


def load_memories(pair, rng, knot_tables):
    """Every word of every space written with realistic data (GELU table t: layer t's knots)."""
    for space in BANKS:  # the gateware has no PROGRAM memory yet
        words = (MAX_PAYLOAD - record_size(ACCESS)) // WORD_BYTES[space]
        for bank in range(BANKS[space]):
            for address in range(0, DEPTHS[space], words):
                count = min(words, DEPTHS[space] - address)
                if space == GELU:
                    data = np.concatenate(knot_tables)[address:address + count].astype("<i4").tobytes()
                else:
                    data = random_words(rng, space, address, count, knot_tables)
                head = pack_record(ACCESS, space=space, bank=bank, address=address)
                assert pair.command(Opcode.WRITE, head + data).opcode == Opcode.WRITE | ANSWER


def read_all(pair):
    """Every readable word, read from both (so compared): {(space, bank): the bytes read}."""
    memory = {}
    for space in (ACT, WGT, CON):
        words = MAX_PAYLOAD // WORD_BYTES[space]
        for bank in range(BANKS[space]):
            data = b""
            for address in range(0, DEPTHS[space], words):
                count = min(words, DEPTHS[space] - address)
                answer = pair.command(Opcode.READ, pack_record(READ, space=space, bank=bank, address=address,
                                                                words=count))
                data += answer.payload
            memory[space, bank] = data
    return memory


def access_fields(rng, payload_bytes):
    """(space, bank, address, words) of a WRITE or READ: mostly good, sometimes out of range."""
    space = int(rng.integers(4)) if rng.random() < 0.92 else int(rng.integers(4, 256))
    word = WORD_BYTES.get(space, 1)
    banks, depth = BANKS.get(space, 1), DEPTHS.get(space, 1000)
    bank = int(rng.integers(banks)) if rng.random() < 0.92 else int(rng.integers(banks, 256))
    most = min(payload_bytes // word, depth)
    count = int(rng.integers(0, most + 1)) if rng.random() < 0.3 else int(rng.integers(1, min(most, 40) + 1))
    roll = rng.random()
    if roll < 0.85:
        address = int(rng.integers(0, depth - count + 1))
    elif roll < 0.95:
        address = depth - count + int(rng.integers(1, 8))        # just past the end
    else:
        address = int(rng.integers(depth, 2 ** 32))               # far past it
    return space, bank, address, count


def write_command(rng, knot_tables):
    space, bank, address, count = access_fields(rng, MAX_PAYLOAD - record_size(ACCESS))
    data = random_words(rng, space, address, count, knot_tables)
    if rng.random() < 0.07 and WORD_BYTES.get(space, 1) > 1:
        data = data[:-1] if data and rng.random() < 0.5 else data + b"\x00"  # not a whole number of words
    return Opcode.WRITE, pack_record(ACCESS, space=space, bank=bank, address=address) + data


def read_command(rng):
    space, bank, address, count = access_fields(rng, MAX_PAYLOAD)
    if rng.random() < 0.05:
        count = int(rng.integers(count + 1, 2 ** 16))  # an answer longer than max_payload (or the memory)
    return Opcode.READ, pack_record(READ, space=space, bank=bank, address=address, words=count)


def matmul_ends(c):
    """The end (last address + 1) of A, W and the results in their banks (contract/protocol.py's layouts)."""
    m, k, n = c["m"], c["k"], c["n"]
    a_end = c["a_base"] + (m - 1) // ROWS * c["a_stride"] + k
    w_end = c["w_base"] + (n - 1) // COLS * c["w_stride"] + k
    if c.get("out_transposed"):
        out_end = c["out_address0"] + (n - 1) // COLS * c["out_stride"] + c["out_offset"] + m
    elif c.get("out_banked"):
        out_end = c["out_address0"] + (c["out_bank0"] + m - 1) // BANKS[c["out_space"]] * c["out_stride"] + n
    else:
        out_end = c["out_address0"] + (m - 1) * c["out_stride"] + n
    return a_end, w_end, out_end


def matmul_places(c):
    """(operand words, result words) of a MATMUL in range: sets of (space, bank, address)."""
    i, j, k = np.arange(c["m"]), np.arange(c["n"]), np.arange(c["k"])
    a = ((i % ROWS)[:, None], (c["a_base"] + (i // ROWS) * c["a_stride"])[:, None] + k)
    w = ((j % COLS)[:, None], (c["w_base"] + (j // COLS) * c["w_stride"])[:, None] + k)
    space, banks = c["out_space"], BANKS[c["out_space"]]
    i, j = i[:, None], j[None, :]
    if c.get("out_transposed"):
        out = (j % banks, c["out_address0"] + (j // banks) * c["out_stride"] + c["out_offset"] + i)
    elif c.get("out_banked"):
        row = c["out_bank0"] + i
        out = (row % banks, c["out_address0"] + (row // banks) * c["out_stride"] + j)
    else:
        out = (c["out_bank0"], c["out_address0"] + i * c["out_stride"] + j)
    words = [{(s, int(b), int(x)) for b, x in zip(*(v.ravel() for v in np.broadcast_arrays(*place)))}
             for s, place in [(ACT, a), (WGT, w), (space, out)]]
    return words[0] | words[1], words[2]


def place(rng, depth, span):
    """A start for ``span`` words in a bank of ``depth``: anywhere, or right against the end."""
    return depth - span if rng.random() < 0.1 else int(rng.integers(0, depth - span + 1))


def matmul_fields(rng):
    """A good MATMUL: random sizes, mode, operands and output layout, the results over none of the
    operands and no result over another; fields the mode or layout does not use are sometimes set."""
    while True:
        mode = int(rng.integers(3))
        k = int(rng.integers(1, 41))
        m, n = (1, int(rng.integers(1, SMALL["softmax_length"] + 1))) if mode == Mode.SOFTMAX else \
            (int(rng.integers(1, 21)), int(rng.integers(1, 41)))
        c = dict(m=m, k=k, n=n, mode=mode)
        for side, space, rows in (("a", ACT, m), ("w", WGT, n)):
            stride = k + int(rng.integers(0, 4)) if rng.random() < 0.9 else int(rng.integers(0, k))
            if rows <= BANKS[space] and rng.random() < 0.3:
                stride = int(rng.integers(0, 2 ** 32))  # one tile of rows: the stride is never used
            c[f"{side}_stride"] = stride
            c[f"{side}_base"] = place(rng, DEPTHS[space], ((rows - 1) // BANKS[space]) * stride + k)
        unused = rng.random() < 0.3  # fill the fields this product does not use with junk
        if mode != Mode.SOFTMAX:
            c["constants"] = place(rng, SMALL["constant_words"], n)
            c["low"], c["high"] = LIMITS[int(rng.integers(len(LIMITS)))]  # the images' limits
        elif unused:
            c["constants"] = int(rng.integers(0, 2 ** 32))
            c["low"], c["high"] = (int(x) for x in rng.integers(-2 ** 15, 2 ** 15, 2))
        if mode == Mode.GELU:
            c["gelu_table"] = int(rng.integers(SMALL["gelu_tables"]))
            c["gelu_low"], c["gelu_high"] = (-32767, 32767) if rng.random() < 0.7 else \
                sorted(int(x) for x in rng.integers(-2 ** 15, 2 ** 15, 2))
        elif unused:
            c.update(gelu_table=int(rng.integers(0, 256)), gelu_low=int(rng.integers(-2 ** 15, 2 ** 15)),
                     gelu_high=int(rng.integers(-2 ** 15, 2 ** 15)))
        if mode == Mode.SOFTMAX or unused:
            while True:
                try:
                    pre, constant, shift = softmax_parameters(10 ** rng.uniform(-9, -2))
                    break
                except ValueError:
                    continue
            c.update(softmax_pre=pre, softmax_constant=constant, softmax_shift=shift,
                     position=int(rng.integers(0, n + 8)),
                     window=0 if rng.random() < 0.4 else int(rng.integers(1, n + 8)))
        space = int(rng.choice([ACT, WGT]))
        layout = rng.choice(["banked", "rows", "transposed"] if space == WGT else ["banked", "rows"])
        c["out_space"] = space
        if layout == "transposed":
            c.update(out_transposed=1, out_stride=m + int(rng.integers(0, 4)), out_offset=int(rng.integers(0, 4)))
            if unused:
                c.update(out_bank0=int(rng.integers(0, 256)), out_banked=int(rng.integers(0, 256)))
        else:
            c.update(out_banked=int(layout == "banked"), out_bank0=int(rng.integers(BANKS[space])),
                     out_stride=n + int(rng.integers(0, 4)))
            if unused:
                c["out_offset"] = int(rng.integers(0, 2 ** 16))
        c["out_address0"] = 0
        span = matmul_ends(c)[2]
        if span > DEPTHS[space]:
            continue
        c["out_address0"] = place(rng, DEPTHS[space], span)
        reads, writes = matmul_places(c)
        if not reads & writes and len(writes) == m * n:
            assert max(address for _, _, address in writes) + 1 == matmul_ends(c)[2]
            return c


def bad_matmul_fields(rng):
    """A MATMUL the protocol refuses: a good one with one field made wrong."""
    c = matmul_fields(rng)
    m, n, mode = c["m"], c["n"], c["mode"]
    a_end, w_end, out_end = matmul_ends(c)
    out_depth, past = DEPTHS[c["out_space"]], int(rng.choice([1, 2, 3, 1000, 2 ** 20]))
    choices = [dict(m=0), dict(k=0), dict(n=0), dict(mode=int(rng.integers(3, 256))),
               dict(out_space=int(rng.integers(2, 256))), dict(out_space=ACT, out_transposed=1),
               dict(a_base=c["a_base"] + DEPTHS[ACT] - a_end + past),   # operands or results past the end
               dict(w_base=c["w_base"] + DEPTHS[WGT] - w_end + past),
               dict(out_address0=c["out_address0"] + out_depth - out_end + past),
               dict(a_base=2 ** 32 - int(rng.integers(1, 50))), dict(w_base=2 ** 32 - int(rng.integers(1, 50))),
               dict(out_address0=2 ** 32 - int(rng.integers(1, 50))),
               dict(k=int(rng.integers(4096, 2 ** 16)), a_stride=0, w_stride=0),  # too big for the device
               dict(m=int(rng.integers(4096, 2 ** 16)), a_stride=0, out_transposed=0, out_banked=0, out_bank0=0,
                    out_stride=0),
               dict(n=int(rng.integers(4096, 2 ** 16)))]
    if m > ROWS:
        choices.append(dict(a_stride=int(rng.integers(DEPTHS[ACT], 2 ** 32))))
    if n > COLS:
        choices.append(dict(w_stride=int(rng.integers(DEPTHS[WGT], 2 ** 32))))
    if out_end - c["out_address0"] > (n if not c.get("out_transposed") else c["out_offset"] + m):
        choices.append(dict(out_stride=int(rng.integers(out_depth, 2 ** 32))))
    if not c.get("out_transposed"):
        choices.append(dict(out_bank0=int(rng.integers(BANKS[c["out_space"]], 256))))
    if mode == Mode.SOFTMAX:
        choices += [dict(m=int(rng.integers(2, 5))), dict(n=SMALL["softmax_length"] + int(rng.integers(1, 100)))]
    else:
        choices.append(dict(constants=SMALL["constant_words"] - n + past))
    if mode == Mode.GELU:
        choices.append(dict(gelu_table=int(rng.integers(SMALL["gelu_tables"], 256))))
    return {**c, **choices[rng.integers(len(choices))]}


CONSTANT_WORDS = SMALL["constant_words"]
PAST = [1, 2, 3, 1000, 2 ** 20]  # how far past the end a bad row or record starts


def far_address(rng):
    """An address just below 2**32 (where a 32-bit sum of it and an offset wraps)."""
    return 2 ** 32 - int(rng.integers(1, 50))


def embed_ends(c):
    """The end (last address + 1) of EMBED's token row and position row in their WEIGHTS banks."""
    return (c["token_base"] + (c["id"] // COLS + 1) * c["d"], c["position_base"] + (c["position"] // COLS + 1) * c["d"])


def embed_fields(rng):
    """A good EMBED: the token's and the position's rows (WEIGHTS) and records (CONSTANTS) and the
    out row (ACTIVATIONS) in range, some right against the ends. d is mostly a NORM row's, but
    EMBED's is limited by the banks only."""
    roll = rng.random()
    d = int(rng.integers(1, NORM_LENGTH + 1)) if roll < 0.85 else int(rng.integers(NORM_LENGTH + 1, 201)) \
        if roll < 0.98 else int(rng.integers(201, DEPTHS[ACT] + 1))
    c = dict(d=d, out_bank=int(rng.integers(ROWS)), out_address=place(rng, DEPTHS[ACT], d))
    most = min(DEPTHS[WGT] // d * COLS, CONSTANT_WORDS, 2 ** 16)  # the ids (or positions) whose row and record exist
    for index, base, constants in (("id", "token_base", "token_constants"),
                                   ("position", "position_base", "position_constants")):
        c[index] = most - 1 if rng.random() < 0.1 else int(rng.integers(0, most))
        c[base] = place(rng, DEPTHS[WGT], (c[index] // COLS + 1) * d)
        c[constants] = place(rng, CONSTANT_WORDS, c[index] + 1)
    return c


def bad_embed_fields(rng):
    """An EMBED the protocol refuses: a good one with one field made wrong."""
    c = embed_fields(rng)
    d, past = c["d"], int(rng.choice(PAST))
    token_end, position_end = embed_ends(c)
    choices = [dict(d=0), dict(d=DEPTHS[ACT] + int(rng.integers(1, 2 ** 16 - DEPTHS[ACT]))),  # no out row that long
               dict(token_base=c["token_base"] + DEPTHS[WGT] - token_end + past),  # rows past the end
               dict(position_base=c["position_base"] + DEPTHS[WGT] - position_end + past),
               dict(token_base=far_address(rng)), dict(position_base=far_address(rng)),
               dict(out_address=DEPTHS[ACT] - d + past), dict(out_address=far_address(rng)),
               dict(out_bank=int(rng.integers(ROWS, 256))),
               dict(token_constants=CONSTANT_WORDS - c["id"] - 1 + past),  # records past CONSTANTS
               dict(position_constants=CONSTANT_WORDS - c["position"] - 1 + past),
               dict(token_constants=far_address(rng)), dict(position_constants=far_address(rng)),
               dict(id=int(rng.integers(CONSTANT_WORDS, 2 ** 16))),  # its record (and maybe its row) past the end
               dict(position=int(rng.integers(CONSTANT_WORDS, 2 ** 16)))]
    return {**c, **choices[rng.integers(len(choices))]}


def overlaps(start, other, length):
    """Whether rows of ``length`` words from ``start`` and from ``other`` share a word."""
    return start < other + length and other < start + length


def norm_fields(rng):
    """A good NORM: d up to norm_length, the residual row, the addend row (added mostly: the residual
    row itself sometimes, else over none of it), the NORM_COLUMN records, the scalars as images make
    them and at their limits (epsilon 0, 1, its maximum), the out row anywhere (over the others too)."""
    roll = rng.random()
    d = 1 if roll < 0.12 else NORM_LENGTH if roll < 0.25 else int(rng.integers(1, NORM_LENGTH + 1))
    c = dict(d=d, residual_bank=int(rng.integers(ROWS)), residual_address=place(rng, DEPTHS[ACT], d),
             add=int(rng.random() < 0.8))
    if c["add"] and rng.random() < 0.25:  # the residual row doubled
        c.update(addend_bank=c["residual_bank"], addend_address=c["residual_address"])
    elif c["add"]:
        while True:  # an addend row over part of the residual row is undefined
            bank, address = int(rng.integers(ROWS)), place(rng, DEPTHS[ACT], d)
            if bank != c["residual_bank"] or not overlaps(address, c["residual_address"], d):
                break
        c.update(addend_bank=bank, addend_address=address)
    elif rng.random() < 0.3:  # not added: anything
        c.update(addend_bank=int(rng.integers(0, 256)), addend_address=int(rng.integers(0, 2 ** 32)))
    low, high = LIMITS[rng.integers(len(LIMITS))]
    c.update(columns=place(rng, CONSTANT_WORDS, d), multiplier=int(rng.integers(2 ** 15, 2 ** 16)),
             shift=int(rng.integers(10, 41)), low=low, high=high)
    mean_multiplier, mean_shift = multiplier_and_shift(1 / d if rng.random() < 0.9 else rng.uniform(0.97, 1.03) / d)
    c.update(mean_multiplier=int(mean_multiplier), mean_shift=int(mean_shift))
    roll = rng.random()
    if roll < 0.5:  # as images make it: d * 1e-5 / s_res**2, at least 1
        c["epsilon"] = max(1, round(d * 1e-5 / float(rng.choice([1e-4, 1e-3, 1e-2, 3e-2])) ** 2))
    elif roll < 0.85:
        c["epsilon"] = int(rng.choice([0, 1, NORM_EPSILON_MAX]))
    else:
        c["epsilon"] = int(rng.integers(0, NORM_EPSILON_MAX + 1))
    c["out_bank"] = int(rng.integers(ROWS))
    if rng.random() < 0.3:  # over the residual or addend row, or shifted from it
        row = "residual" if not c["add"] or rng.random() < 0.5 else "addend"
        c["out_bank"] = c[f"{row}_bank"]
        c["out_address"] = min(max(c[f"{row}_address"] + int(rng.integers(-d + 1, d)), 0), DEPTHS[ACT] - d)
    else:
        c["out_address"] = place(rng, DEPTHS[ACT], d)
    return c


def bad_norm_fields(rng):
    """A NORM the protocol refuses: a good one with one field made wrong."""
    c = norm_fields(rng)
    d, past = c["d"], int(rng.choice(PAST))
    longer = NORM_LENGTH + (1 if rng.random() < 0.5 else int(rng.integers(2, NORM_LENGTH + 1)))
    choices = [dict(d=0), dict(d=int(rng.integers(NORM_LENGTH + 1, 2 ** 16))),
               # a row longer than norm_length, every row of it in range
               dict(d=longer, residual_address=min(c["residual_address"], DEPTHS[ACT] - longer), add=0,
                    columns=min(c["columns"], CONSTANT_WORDS - longer),
                    out_address=min(c["out_address"], DEPTHS[ACT] - longer)),
               dict(epsilon=NORM_EPSILON_MAX + 1), dict(epsilon=int(rng.integers(NORM_EPSILON_MAX + 2, 2 ** 48))),
               dict(residual_address=DEPTHS[ACT] - d + past), dict(residual_address=far_address(rng)),
               dict(residual_bank=int(rng.integers(ROWS, 256))),
               dict(add=1, addend_address=DEPTHS[ACT] - d + past), dict(add=1, addend_address=far_address(rng)),
               dict(add=1, addend_bank=int(rng.integers(ROWS, 256))),
               dict(columns=CONSTANT_WORDS - d + past), dict(columns=far_address(rng)),
               dict(out_address=DEPTHS[ACT] - d + past), dict(out_address=far_address(rng)),
               dict(out_bank=int(rng.integers(ROWS, 256)))]
    return {**c, **choices[rng.integers(len(choices))]}


def sampling_settings(rng):
    """SAMPLE's settings for sampling as the host makes them: temperatures, top-k and top-p of all
    kinds, a random state (not 0)."""
    scale, temperature = float(rng.choice([1e-4, 1e-3, 1e-2, 0.1])), float(rng.choice([0.2, 0.5, 0.8, 1.0, 2.0]))
    top_k = [None, 1, 5, SAMPLE_CANDIDATES, int(rng.integers(1, 256))][rng.integers(5)]
    top_p = [None, 0.5, 0.9, 1e-6, float(rng.random())][rng.integers(5)]
    pre, constant, shift, k, top_p = sampling_parameters(scale, temperature, top_k, top_p)
    return dict(greedy=0, pre=pre, constant=constant, shift=shift, k=k, top_p=top_p,
                state=int(rng.integers(1, 2 ** 32)))


def sample_fields(rng):
    """A good SAMPLE: a row of n codes (mostly up to 300, sometimes a whole bank) in range, sampled
    (settings as the host makes them) or greedy (the settings it ignores sometimes junk)."""
    roll = rng.random()
    n = 1 if roll < 0.05 else DEPTHS[ACT] if roll < 0.08 else int(rng.integers(1, 301)) if roll < 0.88 else \
        int(rng.integers(301, DEPTHS[ACT] + 1))
    c = dict(n=n, bank=int(rng.integers(ROWS)), address=place(rng, DEPTHS[ACT], n))
    if rng.random() < 0.75:
        return {**c, **sampling_settings(rng)}
    c.update(greedy=1, state=int(rng.integers(0, 2 ** 32)))
    if rng.random() < 0.5:  # the settings greedy does not use: anything
        c.update(pre=int(rng.integers(0, 256)), constant=int(rng.integers(0, 2 ** 32)),
                 shift=int(rng.integers(0, 256)), k=int(rng.integers(0, 256)), top_p=int(rng.integers(0, 2 ** 32)))
    return c


def bad_sample_fields(rng):
    """A SAMPLE the protocol refuses: a good one with one field made wrong (the settings' checks on a
    sampled one)."""
    c = sample_fields(rng)
    n, past = c["n"], int(rng.choice(PAST))
    sampled = {**c, **sampling_settings(rng)}
    choices = [dict(c, n=0), dict(c, greedy=int(rng.integers(2, 256))),
               dict(c, bank=int(rng.integers(ROWS, 256))),
               dict(c, address=DEPTHS[ACT] - n + past), dict(c, address=far_address(rng)),
               dict(c, n=int(rng.integers(DEPTHS[ACT] - c["address"] + 1, 2 ** 16))),  # longer than the bank's rest
               dict(sampled, k=0), dict(sampled, k=int(rng.integers(SAMPLE_CANDIDATES + 1, 256))),
               dict(sampled, top_p=0), dict(sampled, top_p=int(rng.integers(2 ** TOP_P_BITS + 1, 2 ** 32))),
               dict(sampled, pre=int(rng.integers(17, 256))),
               dict(sampled, constant=int(rng.integers(2 ** CONSTANT_BITS, 2 ** 32)))]
    return choices[rng.integers(len(choices))]


# -- edge data the vector ops read -------------------------------------------------------------

def write_words(pair, space, bank, address, data):
    """WRITE ``data`` (whole words) from ``address`` of a bank, to both, in as many frames as it takes."""
    size = WORD_BYTES[space]
    step = (MAX_PAYLOAD - record_size(ACCESS)) // size * size
    for at in range(0, len(data), step):
        head = pack_record(ACCESS, space=space, bank=bank, address=address + at // size)
        assert pair.command(Opcode.WRITE, head + data[at:at + step]).opcode == Opcode.WRITE | ANSWER


def fits(space, bank, address, count):
    """Whether ``count`` words from ``address`` of ``bank`` exist."""
    return bank < BANKS[space] and address + count <= DEPTHS[space]


def int16_bytes(values):
    """ACTIVATIONS words' bytes of int16 ``values``."""
    return np.asarray(values, dtype=np.int64).astype("<i2").tobytes()


def norm_edge_rows(rng, d):
    """(residual, addend) rows of a NORM at the edges: runs of -32768 and 32767, alternating extremes,
    one spike, flat rows (variance 0, their sum flat too), rows whose sum saturates."""
    kind = rng.choice(["runs", "alternating", "spike", "flat", "saturating"])
    if kind == "runs":
        residual = np.repeat(rng.choice([-32768, 32767], d), rng.integers(1, 9, d))[:d]
        return residual, rng.choice([-32768, 32767, 0], d)
    if kind == "alternating":
        residual = np.where(np.arange(d) % 2, -32768, 32767)
        return residual, residual[::-1]
    if kind == "spike":
        residual = rng.integers(-3, 4, d)
        residual[rng.integers(d)] = rng.choice([-32768, 32767])
        return residual, rng.integers(-3, 4, d)
    if kind == "flat":
        values = rng.choice([-32768, 32767, 0, int(rng.integers(-32768, 32768))], 2)
        return np.full(d, values[0]), np.full(d, values[1])
    sign = rng.choice([-1, 1])
    return sign * rng.integers(16384, 32768, d), sign * rng.integers(0, 32768, d)


def norm_columns(rng, d):
    """NORM_COLUMN records with gains and biases over their whole range (the records' CONSTANT view
    keeps a shift of 10..33)."""
    columns = np.zeros(d, record_dtype(NORM_COLUMN))
    columns["gain"] = rng.integers(-32768, 32768, d)
    columns["bias"] = rng.integers(-2 ** 30, 2 ** 30 + 1, d)
    edges = rng.choice([32767, -32767, -32768, 0, 1], d)
    columns["gain"] = np.where(rng.random(d) < 0.2, edges, columns["gain"])
    columns["bias"] = np.where(rng.random(d) < 0.1, rng.choice([-2 ** 30, 2 ** 30, 0], d), columns["bias"])
    columns["reserved"] = rng.integers(10, 34, d)
    return columns.tobytes()


def sample_edge_row(rng, n):
    """A row of n logit codes at the edges: every code -32768, ties at the top (few values, or
    32767 at several places of a random row), the extremes only."""
    kind = rng.choice(["lowest", "few", "top ties", "extremes"])
    if kind == "lowest":
        return np.full(n, -32768)
    if kind == "few":
        return rng.choice([int(rng.integers(-32768, 32768)), 7, 6, -32768], n)
    if kind == "top ties":
        row = rng.integers(-32768, 32767, n)
        row[rng.choice(n, min(n, int(rng.integers(2, 6))), replace=False)] = 32767
        return row
    return rng.choice([-32768, -32767, 32766, 32767], n)


def write_edge_data(pair, rng, opcode, payload):
    """Before some EMBED, NORM and SAMPLE commands, WRITE (to both) edge data where they read: rows
    of -128 and 127 and records of small biases and scales up to 300, whose parts and sums saturate
    only sometimes (EMBED); edge residual and addend rows, full-range columns (NORM); edge logit
    rows (SAMPLE). Places out of range (a bad command's) are left as they are."""
    fields = {Opcode.EMBED: EMBED, Opcode.NORM: NORM, Opcode.SAMPLE: SAMPLE}.get(opcode)
    if fields is None or len(payload) != record_size(fields) or rng.random() < 0.6:
        return
    c = unpack_record(fields, payload)
    if opcode == Opcode.EMBED:
        d = c["d"]
        for index, base, constants in (("id", "token_base", "token_constants"),
                                       ("position", "position_base", "position_constants")):
            bank, address = c[index] % COLS, c[base] + c[index] // COLS * d
            if d and rng.random() < 0.5 and fits(WGT, bank, address, d):
                row = rng.choice([-128, 127, int(rng.integers(-128, 128))], d)
                write_words(pair, WGT, bank, address, row.astype("i1").tobytes())
            if rng.random() < 0.7 and fits(CON, 0, c[constants] + c[index], 1):
                record = np.zeros(1, record_dtype(CONSTANT))
                record["multiplier"], record["shift"] = multiplier_and_shift(rng.uniform(0.5, 300))
                record["bias"] = rng.integers(-2 ** 12, 2 ** 12)
                write_words(pair, CON, 0, c[constants] + c[index], record.tobytes())
    elif opcode == Opcode.NORM:
        d = c["d"]
        if not 0 < d <= NORM_LENGTH:
            return
        residual, addend = norm_edge_rows(rng, d)
        separate = c["add"] and (c["addend_bank"], c["addend_address"]) != (c["residual_bank"], c["residual_address"])
        if fits(ACT, c["residual_bank"], c["residual_address"], d):
            write_words(pair, ACT, c["residual_bank"], c["residual_address"], int16_bytes(residual))
        if separate and fits(ACT, c["addend_bank"], c["addend_address"], d):
            write_words(pair, ACT, c["addend_bank"], c["addend_address"], int16_bytes(addend))
        if rng.random() < 0.5 and fits(CON, 0, c["columns"], d):
            write_words(pair, CON, 0, c["columns"], norm_columns(rng, d))
    elif c["n"] and fits(ACT, c["bank"], c["address"], c["n"]):
        write_words(pair, ACT, c["bank"], c["address"], int16_bytes(sample_edge_row(rng, c["n"])))


def bad_length_command(rng):
    """A known command whose record is too short or too long."""
    opcode = Opcode(int(rng.choice([Opcode.INFO, Opcode.COUNTERS, Opcode.RESET_COUNTERS, Opcode.READ,
                                    Opcode.MATMUL, Opcode.WRITE, Opcode.EMBED, Opcode.NORM, Opcode.SAMPLE])))
    size = {Opcode.READ: record_size(READ), Opcode.MATMUL: record_size(MATMUL), Opcode.WRITE: 0,
            Opcode.EMBED: record_size(EMBED), Opcode.NORM: record_size(NORM),
            Opcode.SAMPLE: record_size(SAMPLE)}.get(opcode, 0)
    if opcode == Opcode.WRITE:
        length = int(rng.integers(0, record_size(ACCESS)))
    else:
        length = max(0, size + int(rng.choice([-3, -2, -1, 1, 2, 3, 20])))
        if length == size:
            length += 1
    return opcode, rng.bytes(length)


UNKNOWN_OPCODES = [code for code in range(256) if code not in set(Opcode)] + [Opcode.TOKEN, Opcode.GENERATE]
"""Opcodes the small design does not know: none of the contract's, and TOKEN and GENERATE (no programs)."""


def random_command(rng, knot_tables):
    """(opcode, payload) of one random command of the mix."""
    kind = rng.choice(["write", "read", "matmul", "bad matmul", "embed", "bad embed", "norm", "bad norm", "sample",
                       "bad sample", "info", "counters", "reset", "unknown", "bad length"],
                      p=[0.17, 0.14, 0.26, 0.05, 0.05, 0.02, 0.06, 0.02, 0.06, 0.02, 0.02, 0.04, 0.02, 0.03, 0.04])
    if kind == "write":
        return write_command(rng, knot_tables)
    if kind == "read":
        return read_command(rng)
    if kind == "matmul":
        return Opcode.MATMUL, pack_record(MATMUL, **matmul_fields(rng))
    if kind == "bad matmul":
        return Opcode.MATMUL, pack_record(MATMUL, **bad_matmul_fields(rng))
    vector_ops = {"embed": (Opcode.EMBED, EMBED, embed_fields), "bad embed": (Opcode.EMBED, EMBED, bad_embed_fields),
                  "norm": (Opcode.NORM, NORM, norm_fields), "bad norm": (Opcode.NORM, NORM, bad_norm_fields),
                  "sample": (Opcode.SAMPLE, SAMPLE, sample_fields),
                  "bad sample": (Opcode.SAMPLE, SAMPLE, bad_sample_fields)}
    if kind in vector_ops:
        opcode, fields, make = vector_ops[kind]
        return opcode, pack_record(fields, **make(rng))
    if kind == "unknown":
        return int(rng.choice(UNKNOWN_OPCODES)), rng.bytes(int(rng.integers(0, 8)))
    if kind == "bad length":
        return bad_length_command(rng)
    return {"info": Opcode.INFO, "counters": Opcode.COUNTERS, "reset": Opcode.RESET_COUNTERS}[kind], b""


def too_long_frame(pair, rng):
    """A frame longer than max_payload, with no SYNC after its own (so both receivers skip all of it)."""
    while True:
        frame = pair.next_frame(Opcode.WRITE, bytes(MAX_PAYLOAD + int(rng.integers(1, 64))))
        if frame.find(SYNC, 1) < 0:
            return frame


# -- 1. random command sequences ---------------------------------------------------------------

@pytest.mark.parametrize("seed", range(1, 7))
def test_random_commands_get_the_models_answers(design, board, knot_tables, seed):
    rng = np.random.default_rng(seed)
    pair = Pair(board.url, small_model(design))
    info = pair.command(Opcode.INFO)
    assert unpack_record(INFO, info.payload)["gateware_version"] == design[1]
    load_memories(pair, rng, knot_tables)
    pair.command(Opcode.COUNTERS)
    for _ in range(800):
        roll = rng.random()
        if roll < 0.04:
            pair.send(pair.frame)  # a retry: the very same frame again
        elif roll < 0.06:
            pair.command(*random_command(rng, knot_tables), same_sequence=True)  # a new command, the same number
        elif roll < 0.07:
            assert pair.send(too_long_frame(pair, rng)).payload == bytes([Error.TOO_LONG])
        else:
            command = random_command(rng, knot_tables)
            write_edge_data(pair, rng, *command)
            pair.command(*command)
    pair.command(Opcode.COUNTERS)
    memory = read_all(pair)
    pair.command(Opcode.COUNTERS)
    pair.close()
    for (space, bank), data in memory.items():
        assert data == pair.model.memory[space][bank].tobytes()
    # the mix did exercise both sides: products and vector ops applied, every kind of refusal
    assert pair.answers["MATMUL"] > 100 and pair.answers["BAD_ARGUMENT"] > 100
    assert pair.answers["EMBED"] > 20 and pair.answers["NORM"] > 20 and pair.answers["SAMPLE"] > 20
    assert {"WRITE", "READ", "INFO", "COUNTERS", "RESET_COUNTERS", "UNKNOWN_OPCODE", "TOO_LONG"} <= set(pair.answers)


# -- 2. damaged frames -------------------------------------------------------------------------

def damage(rng, frame):
    """(damaged bytes, the (sequence, Error) the device must answer them with, or None: no answer)."""
    kind = rng.choice(["flip", "truncate"])
    if kind == "truncate":
        cut = int(rng.integers(1, len(frame)))
        if cut < len(SYNC):
            return frame[:cut], None  # not even a SYNC: nothing to answer
        return frame[:cut], (frame[3] if cut > 3 else 0, Error.TRUNCATED)  # fields not received are 0
    damaged = bytearray(frame)
    at = int(rng.integers(len(frame)))
    damaged[at] ^= 1 << int(rng.integers(8))
    if at < len(SYNC):
        return bytes(damaged), None
    length, received = int.from_bytes(damaged[4:6], "little"), len(frame) - HEADER_BYTES - CRC_BYTES
    if length > MAX_PAYLOAD:
        code = Error.TOO_LONG
    elif length > received:
        code = Error.TRUNCATED  # waits for bytes that never come
    else:
        code = Error.BAD_CRC
    return bytes(damaged), (damaged[3], code)


def test_damaged_frames_are_answered_and_the_next_frame_is_not_lost(design, board, knot_tables):
    rng = np.random.default_rng(5)
    pair = Pair(board.url, small_model(design))
    pair.command(Opcode.INFO)
    load_memories(pair, rng, knot_tables)
    expected_errors = collections.Counter()
    for _ in range(150):
        frame = pair.next_frame(*random_command(rng, knot_tables))
        damaged, expected = damage(rng, frame)
        if damaged.find(SYNC, 1) >= 0 or frame.find(SYNC, 1) >= 0:
            continue  # a SYNC inside: where the device resynchronizes is not this test's business
        pair.rtl.send(damaged)
        model_answers = FrameDecoder().feed(pair.model.feed(damaged))
        if expected is not None:
            answer = pair.rtl.receive()
            assert answer is not None and (answer.opcode, answer.sequence, answer.payload) == \
                (ERROR, expected[0], bytes([expected[1]])), f"{damaged.hex()}: {answer}"
            if expected[1] == Error.TRUNCATED:
                model_answers += FrameDecoder().feed(pair.model.idle())
            assert model_answers == [answer]
            expected_errors[expected[1].name] += 1
        else:
            assert model_answers == []
        pair.send(frame)  # the good frame right after: its own answer (a stray one would be read here)
        if rng.random() < 0.2:
            pair.send(frame)  # and duplicated: a retry, applied once
    pair.command(Opcode.COUNTERS)  # errors counted alike
    pair.close()
    assert expected_errors["BAD_CRC"] > 20 and expected_errors["TRUNCATED"] > 20 and expected_errors["TOO_LONG"] > 0


def garbage(rng, size):
    """Random bytes with SYNCs and headers of random lengths (frames that never end well) strewn in."""
    data = bytearray(rng.bytes(size))
    for at in rng.integers(0, size - HEADER_BYTES, size // 250):
        length = int(rng.choice([0, 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, int(rng.integers(0, 2 ** 16))]))
        data[at:at + HEADER_BYTES] = SYNC + rng.bytes(2) + length.to_bytes(2, "little")
    return bytes(data)


def test_garbage_never_hangs_the_board(design, board):
    rng = np.random.default_rng(6)
    model = small_model(design)
    link = RawLink(board.url)
    good = [(Opcode.INFO, b""), (Opcode.WRITE, pack_record(ACCESS, space=ACT, bank=2, address=7) + bytes(range(8))),
            (Opcode.READ, pack_record(READ, space=ACT, bank=2, address=6, words=6))]
    sequence = 0
    for size in [5_000, 300, 1000, 5_000]:
        link.send(garbage(rng, size))
        answers = link.quiet()  # once the receive timeout has passed
        assert answers and all(a.opcode == ERROR and Error(a.payload[0]) in DAMAGE for a in answers)
        for opcode, payload in good:
            sequence += 1
            frame = encode_frame(opcode, sequence, payload)
            (expected,) = FrameDecoder().feed(model.feed(frame))
            assert link.exchange(frame) == expected
    assert expected.payload == bytes(2) + bytes(range(8)) + bytes(2)
    link.close()


# -- 3. the host's link through damage ---------------------------------------------------------

def good_command(rng, knot_tables):
    """A WRITE, READ or MATMUL the device accepts."""
    kind = rng.choice(["write", "read", "matmul"], p=[0.35, 0.3, 0.35])
    if kind == "matmul":
        return Opcode.MATMUL, pack_record(MATMUL, **matmul_fields(rng))
    space = int(rng.choice([ACT, WGT, CON] if kind == "read" else list(BANKS)))
    count = int(rng.integers(1, (MAX_PAYLOAD - record_size(ACCESS)) // WORD_BYTES[space] + 1))
    bank, address = int(rng.integers(BANKS[space])), int(rng.integers(0, DEPTHS[space] - count + 1))
    if kind == "read":
        return Opcode.READ, pack_record(READ, space=space, bank=bank, address=address, words=count)
    return Opcode.WRITE, pack_record(ACCESS, space=space, bank=bank, address=address) + \
        random_words(rng, space, address, count, knot_tables)


def test_the_link_through_damage_leaves_the_memory_of_a_clean_run(design, board, knot_tables):
    rng = np.random.default_rng(8)
    commands = [(Opcode.INFO, b"")]
    for space in BANKS:  # realistic data first, then the random commands
        words = (MAX_PAYLOAD - record_size(ACCESS)) // WORD_BYTES[space]
        for bank in range(BANKS[space]):
            for address in range(0, DEPTHS[space], words):
                count = min(words, DEPTHS[space] - address)
                commands.append((Opcode.WRITE, pack_record(ACCESS, space=space, bank=bank, address=address)
                                 + random_words(rng, space, address, count, knot_tables)))
    commands += [good_command(rng, knot_tables) for _ in range(300)]

    clean = small_model(design)
    clean_link = Link(ModelTransport(clean), timeout=0)
    expected = [clean_link.command(opcode, payload) for opcode, payload in commands]

    faulty = FaultyTransport(serial.serial_for_url(board.url, timeout=0.01), np.random.default_rng(9),
                             flip=0.02, truncate=0.02, duplicate=0.02, garbage=0.02, drop=0.02)
    link = Link(faulty, timeout=0.1, retries=20)
    for (opcode, payload), answer in zip(commands, expected):
        assert link.command(opcode, payload) == answer
    link.close()
    assert sum(faulty.faults.values()) > 40 and link.resends > 20

    pair = Pair(board.url, clean)
    pair.rtl.quiet()  # whatever the last duplicated frame still had to say
    pair.command(Opcode.INFO)  # never taken for a retry of the link's last command
    memory = read_all(pair)  # every word the same as the clean run's
    for (space, bank), data in memory.items():
        assert data == clean.memory[space][bank].tobytes()
    counters = unpack_record(COUNTER_FIELDS, pair.rtl.exchange(encode_frame(Opcode.COUNTERS, 99)).payload)
    assert counters["macs"] == clean.counters["macs"] > 0  # no MATMUL applied twice, none lost
    pair.close()


# -- 5. the contract's limits ------------------------------------------------------------------

def test_the_gateware_keeps_the_contracts_limits(design, board, knot_tables):
    """The limits the contract states, at and one past each: the largest MATMUL, the GELU space's
    knots a table, INFO's numerics version; the board answers as the model, which takes them from
    the contract too, and the contract's own figures are checked here as well."""
    rng = np.random.default_rng(0)
    pair = Pair(board.url, small_model(design))
    info = unpack_record(INFO, pair.command(Opcode.INFO).payload)
    assert info["numerics_version"] == NUMERICS_VERSION
    load_memories(pair, rng, knot_tables)
    # m at the limit runs (rows written over one another: out_stride 0); one past it is refused
    product = dict(m=MATMUL_MAX_SIZE, k=1, n=1, a_stride=1, w_stride=1, mode=Mode.REQUANTIZE,
                   out_space=ACT, out_address0=DEPTHS[ACT] - 1)
    assert pair.command(Opcode.MATMUL, pack_record(MATMUL, **product)).opcode == Opcode.MATMUL | ANSWER
    for field in ("m", "k", "n"):
        refused = pair.command(Opcode.MATMUL, pack_record(MATMUL, **dict(product, **{field: MATMUL_MAX_SIZE + 1})))
        assert refused.payload == bytes([Error.BAD_ARGUMENT]), field
    # the GELU space holds GELU_KNOTS knots a table, and no more
    last = GELU_KNOTS * SMALL["gelu_tables"] - 1
    for address, good in ((last, True), (last + 1, False)):
        answer = pair.command(Opcode.WRITE, pack_record(ACCESS, space=GELU, address=address) + bytes(4))
        assert (answer.opcode == Opcode.WRITE | ANSWER) == good
    memory = read_all(pair)
    pair.close()
    for (space, bank), data in memory.items():
        assert data == pair.model.memory[space][bank].tobytes()
