"""hdl/accelerator.py on the simulated board against host/accelerator_model.py, frame for frame.

A small accelerator (3 x 4 array) is built once for the module (sim/simulated_board.py's cache: the first
build takes about half a minute). Random command sequences go to the board as raw frames and to
an :class:`AcceleratorModel` with the same parameters: every answer must be the same bytes (the
counters' cycle fields aside: the model has no clock), and so must all of memory at the end.
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
from neofpga.contract.numerics import GELU_KNOTS, NUMERICS_VERSION
from neofpga.contract.protocol import (ACCESS, ANSWER, CONSTANT, COUNTERS, CRC_BYTES, ERROR, HEADER_BYTES, INFO,
                                       MATMUL, MATMUL_MAX_SIZE, READ, SYNC, WORD_BYTES, Error, FrameDecoder, Mode,
                                       Opcode, Space, encode_frame, pack_record, record_size, unpack_record)
from neofpga.host.accelerator_model import AcceleratorModel, ModelTransport
from neofpga.host.backends import load_source
from neofpga.host.driver import record_dtype
from neofpga.host.kernels import softmax_parameters
from neofpga.host.link import Link
from neofpga.sim.board_process import SimulatedBoard
from neofpga.sim.simulated_board import board_executable

SMALL = dict(rows=3, cols=4, activation_words=2 ** 11, weight_words=2 ** 12, constant_words=2 ** 10, gelu_tables=4,
             softmax_length=64, max_payload=512, timeout_cycles=20_000)
ACT, WGT, CON, GELU = Space.ACTIVATIONS, Space.WEIGHTS, Space.CONSTANTS, Space.GELU
ROWS, COLS, MAX_PAYLOAD = SMALL["rows"], SMALL["cols"], SMALL["max_payload"]
BANKS = {ACT: ROWS, WGT: COLS, CON: 1, GELU: 1}
DEPTHS = {ACT: SMALL["activation_words"], WGT: SMALL["weight_words"], CON: SMALL["constant_words"],
          GELU: GELU_KNOTS * SMALL["gelu_tables"]}
DAMAGE = {Error.BAD_CRC, Error.TOO_LONG, Error.TRUNCATED}
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

    COUNTERS answers are compared but for ``cycles`` and ``matmul_cycles``, the board's own: the
    cycles must grow from one COUNTERS to the next, the matmul cycles exactly when a MATMUL was
    applied in between (both start again from 0 at a RESET_COUNTERS). ``answers`` counts the
    answers by command (good ones) and by error code.
    """

    def __init__(self, url, model):
        self.rtl, self.model = RawLink(url), model
        self.sequence = 0
        self.frame = None            # the last frame sent
        self.clock = (0, 0)          # the last cycles and matmul_cycles seen
        self.matmul_applied = False  # since the last COUNTERS (or RESET_COUNTERS)
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
            self._check_counters(unpack_record(COUNTERS, answer.payload), unpack_record(COUNTERS, expected.payload))
            assert answer.sequence == expected.sequence
        else:
            assert describe(answer) == describe(expected), context
        self.answers[Error(answer.payload[0]).name if answer.opcode == ERROR else Opcode(frame[2]).name] += 1
        if answer.opcode == Opcode.MATMUL | ANSWER and not retry:
            self.matmul_applied = True
        if answer.opcode == Opcode.RESET_COUNTERS | ANSWER and not retry:
            self.clock, self.matmul_applied = (0, 0), False
        return answer

    def _check_counters(self, rtl, model):
        assert {name: rtl[name] for name in ("macs", "commands", "errors")} == \
            {name: model[name] for name in ("macs", "commands", "errors")}
        cycles, matmul_cycles = self.clock
        assert rtl["cycles"] > cycles and rtl["cycles"] > rtl["matmul_cycles"]
        if self.matmul_applied:
            assert rtl["matmul_cycles"] > matmul_cycles
        else:
            assert rtl["matmul_cycles"] == matmul_cycles
        self.clock, self.matmul_applied = (rtl["cycles"], rtl["matmul_cycles"]), False

    def close(self):
        self.rtl.close()


# -- data and commands -------------------------------------------------------------------------

def constant_records(rng, count):
    """Requantizer records like the images': M in [2**15, 2**16), shifts 10..33."""
    records = np.zeros(count, record_dtype(CONSTANT))
    records["bias"] = np.where(rng.random(count) < 0.9, rng.integers(-2 ** 28, 2 ** 28, count),
                               rng.integers(-2 ** 31, 2 ** 31, count))
    records["multiplier"] = rng.integers(2 ** 15, 2 ** 16, count)
    records["shift"] = rng.integers(10, 34, count)
    records["reserved"] = np.where(rng.random(count) < 0.9, 0, rng.integers(0, 256, count))
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


def bad_length_command(rng):
    """A known command whose record is too short or too long."""
    opcode = Opcode(int(rng.choice([Opcode.INFO, Opcode.COUNTERS, Opcode.RESET_COUNTERS, Opcode.READ,
                                    Opcode.MATMUL, Opcode.WRITE])))
    size = {Opcode.READ: record_size(READ), Opcode.MATMUL: record_size(MATMUL), Opcode.WRITE: 0}.get(opcode, 0)
    if opcode == Opcode.WRITE:
        length = int(rng.integers(0, record_size(ACCESS)))
    else:
        length = max(0, size + int(rng.choice([-3, -2, -1, 1, 2, 3, 20])))
        if length == size:
            length += 1
    return opcode, rng.bytes(length)


UNKNOWN_OPCODES = [code for code in range(256) if code not in set(Opcode)]


def random_command(rng, knot_tables):
    """(opcode, payload) of one random command of the mix."""
    kind = rng.choice(["write", "read", "matmul", "bad matmul", "info", "counters", "reset", "unknown",
                       "bad length"], p=[0.22, 0.2, 0.3, 0.07, 0.03, 0.06, 0.02, 0.04, 0.06])
    if kind == "write":
        return write_command(rng, knot_tables)
    if kind == "read":
        return read_command(rng)
    if kind == "matmul":
        return Opcode.MATMUL, pack_record(MATMUL, **matmul_fields(rng))
    if kind == "bad matmul":
        return Opcode.MATMUL, pack_record(MATMUL, **bad_matmul_fields(rng))
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
    for _ in range(600):
        roll = rng.random()
        if roll < 0.04:
            pair.send(pair.frame)  # a retry: the very same frame again
        elif roll < 0.06:
            pair.command(*random_command(rng, knot_tables), same_sequence=True)  # a new command, the same number
        elif roll < 0.07:
            assert pair.send(too_long_frame(pair, rng)).payload == bytes([Error.TOO_LONG])
        else:
            pair.command(*random_command(rng, knot_tables))
    pair.command(Opcode.COUNTERS)
    memory = read_all(pair)
    pair.command(Opcode.COUNTERS)
    pair.close()
    for (space, bank), data in memory.items():
        assert data == pair.model.memory[space][bank].tobytes()
    # the mix did exercise both sides: products applied, every kind of refusal
    assert pair.answers["MATMUL"] > 100 and pair.answers["BAD_ARGUMENT"] > 100
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
    counters = unpack_record(COUNTERS, pair.rtl.exchange(encode_frame(Opcode.COUNTERS, 99)).payload)
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
