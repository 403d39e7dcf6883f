"""cocotb testbench of hdl/axi_stream.py, the AXI4-Stream side driven by cocotbext-axi.

Two designs from tests/test_hdl_axi_stream.py, each with plain AXI4-Stream ports ``m_axis_*`` (out of
the design) and, for the host, ``s_axis_*`` (into it):

* ``AdapterBench``: the FrameByte stream ``i`` through a BytesToBeats onto ``m_axis``, checked
  against a model: each frame one transfer of full beats and a last beat keeping the bytes it
  holds, LSB first. ``bytes_to_beats_rate`` checks a byte a cycle unstalled.
* ``HostBench``: a small accelerator (``pcie_beat_bytes`` set) behind an AxiStreamHost. Command
  frames go in as H2C transfers in XDMA's layout (full beats, the last keeping a prefix), one frame a
  transfer starting in its first lane, as hdl/beat_framing.py's receiver requires; each C2H transfer
  must be exactly one answer frame, the one a Python model of the device expects (INFO's record,
  WRITE's empty answer, READ's words as the model's memory holds them, or an ERROR answer); a
  transfer that gets no answer must get none. ``host_write_rate`` measures a WRITE unstalled.

Environment (run_cocotb's extra_env): SEED, DATA_BYTES, VALID_PROBABILITY (each cycle, the chance
that a source offers data: cocotbext-axi's pause generator on ``s_axis``, StreamSource on ``i``),
READY_PROBABILITY (the chance that a sink takes, on ``m_axis``); for the host tests INFO (the
accelerator's INFO record, hex) and ACCELERATOR (its parameters, JSON).
"""

import json
import logging
import os
import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
from neofpga.contract.numerics import GELU_KNOTS
from neofpga.contract.protocol import (ACCESS, ANSWER, CONSTANT_WORD_BITS, ERROR, HEADER_BYTES, READ, SYNC, WORD_BYTES,
                                       Error, Frame, FrameDecoder, Opcode, Space, encode_frame, pack_record,
                                       record_size)
from neofpga.hdl.axi_stream import FrameByte
from neofpga.sim.streams import StreamSource, pack, start

LANES = int(os.environ["DATA_BYTES"])
FULL = (1 << LANES) - 1
PACKED_LAST = [(1 << count) - 1 for count in range(1, LANES + 1)]  # the keeps of a packed last beat
VALID_PROBABILITY = float(os.environ["VALID_PROBABILITY"])
READY_PROBABILITY = float(os.environ["READY_PROBABILITY"])
CLOCK_NS = 10


def rng_for(test):
    return random.Random(f"{os.environ['SEED']}-{test}")


def pauses(rng, probability):
    """A cocotbext-axi pause generator: each cycle, go on with ``probability``, else pause."""
    while True:
        yield rng.random() >= probability


async def begin(dut, rng, host=False):
    """Idle inputs, clock and reset; the AXI sink on ``m_axis`` and, for the ``host`` bench, the AXI
    source on ``s_axis`` (else None), pausing at random unless the probabilities are 1."""
    dut.m_axis_tready.value = 0
    if host:
        dut.s_axis_tvalid.value = 0
    else:
        dut.i__valid.value = 0
    await start(dut, CLOCK_NS)
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk) if host else None
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk)
    sink.log.setLevel(logging.WARNING)  # not a line a frame
    if READY_PROBABILITY < 1:
        sink.set_pause_generator(pauses(rng, READY_PROBABILITY))
    if source is not None:
        source.log.setLevel(logging.WARNING)
        if VALID_PROBABILITY < 1:
            source.set_pause_generator(pauses(rng, VALID_PROBABILITY))
    return source, sink


# -- beats, as (lane bytes, keep) ----------------------------------------------------------------

def axi_frame(data, keeps):
    """A cocotbext-axi frame whose beats are exactly ``data``'s lanes with ``keeps``: whole beats, so
    that the source lays them out as given (unkept lanes carry the garbage in ``data``)."""
    assert len(data) == LANES * len(keeps)
    return AxiStreamFrame(bytes(data), tkeep=[keeps[index // LANES] >> index % LANES & 1
                                              for index in range(len(data))])


def packed_keeps(length):
    """XDMA's beats for ``length`` bytes: full beats, the last keeping its first bytes."""
    return [FULL] * (length // LANES) + ([(1 << length % LANES) - 1] if length % LANES else [])


def beats_of(frame):
    """A frame's bytes as BytesToBeats must send them: ``(data, keep, last)`` a beat, data LSB first."""
    beats = []
    for at in range(0, len(frame), LANES):
        chunk = frame[at:at + LANES]
        beats.append((int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1, int(at + LANES >= len(frame))))
    return beats


def received_beats(transfer):
    """A transfer that cocotbext-axi's sink received (uncompacted) as ``(data, keep, last)`` a beat,
    the data of unkept lanes zeroed."""
    beats, count = [], len(transfer.tdata) // LANES
    assert len(transfer.tdata) == LANES * count
    for beat in range(count):
        lanes = range(LANES * beat, LANES * beat + LANES)
        keep = sum(transfer.tkeep[index] << lane for lane, index in enumerate(lanes))
        data = sum(transfer.tdata[index] << 8 * lane for lane, index in enumerate(lanes) if transfer.tkeep[index])
        beats.append((data, keep, int(beat == count - 1)))
    return beats


def describe(beats):
    return " ".join(f"{data:0{2 * LANES}x}/{keep:02x}{'L' if last else ''}" for data, keep, last in beats)


class Handshakes:
    """Records ``(cycle, payload)`` of each cycle in which the stream ``<name>__*`` hands over a payload."""

    def __init__(self, dut, name):
        self.valid, self.ready = getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready")
        self.payload, self.clk = getattr(dut, f"{name}__payload"), dut.clk
        self.log = []
        cocotb.start_soon(self._watch())

    async def _watch(self):
        cycle = 0
        while True:
            await ReadOnly()
            if self.valid.value and self.ready.value:
                self.log.append((cycle, int(self.payload.value)))
            await RisingEdge(self.clk)
            cycle += 1


class HeldUntilTaken:
    """Watches the stream rule on an output (AXI4-Stream's, and Amaranth's): a payload offered stays
    offered, unchanged, until it is taken. ``violations`` lists the cycles that broke it."""

    def __init__(self, clk, valid, ready, *payload):
        self.clk, self.valid, self.ready, self.payload = clk, valid, ready, payload
        self.violations = []
        cocotb.start_soon(self._watch())

    async def _watch(self):
        held, cycle = None, 0
        while True:
            await ReadOnly()
            offered = bool(self.valid.value)
            values = tuple(str(signal.value) for signal in self.payload)
            if held is not None and (not offered or values != held):
                self.violations.append(cycle)
            held = values if offered and not self.ready.value else None
            await RisingEdge(self.clk)
            cycle += 1

    def check(self):
        assert not self.violations, f"an offer withdrawn or changed before it was taken, cycles {self.violations[:10]}"


def m_axis_rule(dut):
    return HeldUntilTaken(dut.clk, dut.m_axis_tvalid, dut.m_axis_tready, dut.m_axis_tdata, dut.m_axis_tkeep,
                          dut.m_axis_tlast)


def random_frames(rng, count):
    """Frames of 1..40 bytes, single bytes among them, then ``count`` of random length."""
    lengths = list(range(1, 41)) + [rng.choice([1, 1, 8, 9, rng.randint(1, 40)]) for _ in range(count)]
    rng.shuffle(lengths)
    return [rng.randbytes(length) for length in lengths]


def frame_bytes(frames):
    """The FrameByte payloads of ``frames``, ``last`` on each frame's last byte."""
    return [pack(FrameByte, {"data": byte, "last": int(index == len(frame) - 1)})
            for frame in frames for index, byte in enumerate(frame)]


async def expect_no_transfer(dut, sink, cycles=50):
    await ClockCycles(dut.clk, cycles)
    assert sink.empty(), "m_axis sent a transfer nobody expected"
    assert not dut.m_axis_tvalid.value, "m_axis offers a beat nobody expected"


# -- BytesToBeats --------------------------------------------------------------------------------

@cocotb.test()
async def bytes_to_beats_matches_model(dut):
    """Frames of 1..40 bytes (single bytes among them) under stalls on both sides: each frame is one
    transfer (tlast on the beat with its last byte and no other), of full beats but the last, which
    keeps exactly the bytes it holds, LSB first."""
    rng = rng_for("bytes_to_beats")
    _, sink = await begin(dut, rng)
    frames = random_frames(rng, 120)
    source = StreamSource(dut, "i", rng, VALID_PROBABILITY)
    rule = m_axis_rule(dut)
    sender = cocotb.start_soon(source.send(frame_bytes(frames)))
    for index, frame in enumerate(frames):
        transfer = await with_timeout(sink.recv(compact=False), 100 * CLOCK_NS * (len(frame) + 10), "ns")
        got, want = received_beats(transfer), beats_of(frame)
        assert got == want, f"frame {index} ({len(frame)} bytes): got {describe(got)}, expected {describe(want)}"
    await sender
    await expect_no_transfer(dut, sink)
    rule.check()


@cocotb.test()
async def bytes_to_beats_rate(dut):
    """Unstalled: BytesToBeats takes a byte every cycle, frames back to back, and sends the beats."""
    rng = rng_for("bytes_to_beats_rate")
    _, sink = await begin(dut, rng)
    frames = random_frames(rng, 40)
    watch = Handshakes(dut, "i")
    source = StreamSource(dut, "i", rng, 1.0)
    await source.send(frame_bytes(frames))
    cycles = [cycle for cycle, _ in watch.log]
    total = sum(map(len, frames))
    assert len(cycles) == total and cycles[-1] - cycles[0] + 1 == total, \
        f"{total} bytes took {cycles[-1] - cycles[0] + 1} cycles"
    for index, frame in enumerate(frames):
        transfer = await with_timeout(sink.recv(compact=False), 1000 * CLOCK_NS, "ns")
        assert received_beats(transfer) == beats_of(frame), f"frame {index}"
    await expect_no_transfer(dut, sink)


# -- the accelerator behind AxiStreamHost --------------------------------------------------------

ACT, WGT, CON, GELU = Space.ACTIVATIONS, Space.WEIGHTS, Space.CONSTANTS, Space.GELU
ACCESS_BYTES = record_size(ACCESS)
KEPT = {CON: (1 << CONSTANT_WORD_BITS) - 1}  # the bits of a word that the memory keeps, where not all


class Device:
    """The accelerator as the host tests see it: each space's words as the commands leave them
    (zero at the start), its INFO record, and the commands with their expected answers.

    One for the whole run (:func:`device`): the device's memories and its last sequence number
    outlive the reset at the start of each test, so the tests that run in one simulation go on
    from each other's state (and never repeat a sequence number, which would make a retry).
    A command is built as a ``(frame bytes, expected answer Frame)`` pair, in the order the device
    will see it; a WRITE's words go into the model only where the test says the device applies it
    (:meth:`apply`), so that a READ built after it expects them.
    """

    def __init__(self):
        config = json.loads(os.environ["ACCELERATOR"])
        self.max_payload = config["max_payload"]
        self.banks = {ACT: config["rows"], WGT: config["cols"], CON: 1, GELU: 1}
        self.depths = {ACT: config["activation_words"], WGT: config["weight_words"], CON: config["constant_words"],
                       GELU: GELU_KNOTS * config["gelu_tables"]}
        self.memory = {space: [[0] * self.depths[space] for _ in range(count)] for space, count in self.banks.items()}
        self.info = bytes.fromhex(os.environ["INFO"])
        self.sequence = 0

    def next_sequence(self):
        self.sequence = (self.sequence + 1) % 256
        return self.sequence

    def command(self, opcode, payload, answer):
        sequence = self.next_sequence()
        return encode_frame(opcode, sequence, payload), Frame(opcode | ANSWER, sequence, answer)

    def refused(self, opcode, payload, error):
        """A command the device answers with the ERROR ``error``."""
        sequence = self.next_sequence()
        return encode_frame(opcode, sequence, payload), error_answer(sequence, error)

    def info_command(self):
        return self.command(Opcode.INFO, b"", self.info)

    def most_words(self, space):
        """The most words one WRITE of ``space`` carries."""
        return min((self.max_payload - ACCESS_BYTES) // WORD_BYTES[space], self.depths[space])

    def random_place(self, rng, space, count=None):
        """``(space, bank, address, count)`` of a random WRITE (of ``count`` words, else any number)."""
        if count is None:
            count = rng.choice([rng.randint(0, 2 * LANES), rng.randint(0, self.most_words(space))])
        return space, rng.randrange(self.banks[space]), rng.randint(0, self.depths[space] - count), count

    def random_words(self, rng, place):
        space, _, _, count = place
        return [rng.getrandbits(8 * WORD_BYTES[space]) for _ in range(count)]

    def write(self, place, words):
        """A WRITE of ``words`` at ``place``; the model unchanged (see :meth:`apply`)."""
        space, bank, address, count = place
        assert len(words) == count
        head = pack_record(ACCESS, space=space, bank=bank, address=address)
        return self.command(Opcode.WRITE, head + words_bytes(space, words), b"")

    def apply(self, place, words):
        """The model's memory after the device applies a WRITE of ``words`` at ``place``."""
        space, bank, address, _ = place
        for at, word in enumerate(words):
            self.memory[space][bank][address + at] = word & KEPT.get(space, -1)

    def applied_write(self, rng, place):
        """A WRITE of random words at ``place`` that the device applies."""
        words = self.random_words(rng, place)
        self.apply(place, words)
        return self.write(place, words)

    def read(self, space, bank, address, count):
        """A READ of ``count`` words: the model's words, or BAD_ARGUMENT for the write-only GELU space."""
        record = pack_record(READ, space=space, bank=bank, address=address, words=count)
        if space == GELU:
            return self.refused(Opcode.READ, record, Error.BAD_ARGUMENT)
        return self.command(Opcode.READ, record, words_bytes(space, self.memory[space][bank][address:address + count]))

    def read_around(self, rng, place):
        """A READ of the words at ``place``, or of a range around them (as much as an answer holds);
        none for the write-only GELU space."""
        space, bank, address, count = place
        if space == GELU:
            return []
        depth, limit = self.depths[space], self.max_payload // WORD_BYTES[space]
        low, high = address, address + count  # the words written; for none, a word next to them
        if not count:
            low = min(address, depth - 1)
            high = low + 1
        if rng.random() < 0.4:
            start, end = low, high
        else:
            start = rng.randint(max(0, high - limit), low)
            end = rng.randint(high, min(depth, start + limit))
        return [self.read(space, bank, start, end - start)]

    def read_all(self):
        """READs of every word of every readable space, each as long as an answer holds."""
        reads = []
        for space in (ACT, WGT, CON):
            chunk = min(self.max_payload // WORD_BYTES[space], self.depths[space])
            for bank in range(self.banks[space]):
                reads += [self.read(space, bank, address, min(chunk, self.depths[space] - address))
                          for address in range(0, self.depths[space], chunk)]
        return reads

    def random_command(self, rng):
        """A random INFO, READ or WRITE (the model unchanged: the test applies it, or not) and the
        WRITE's place (else None)."""
        kind = rng.choice(["info", "read", "write", "write", "write"])
        if kind == "info":
            return self.info_command(), None
        if kind == "read":
            space = rng.choice([ACT, WGT, CON])
            return self.read_around(rng, self.random_place(rng, space, rng.randint(1, 8)))[0], None
        place = self.random_place(rng, rng.choice([ACT, WGT, CON, GELU]))
        return self.write(place, self.random_words(rng, place)), place


_device = []


def device():
    """The run's one :class:`Device`."""
    if not _device:
        _device.append(Device())
    return _device[0]


def words_bytes(space, words):
    return b"".join(word.to_bytes(WORD_BYTES[space], "little") for word in words)


def error_answer(sequence, error):
    return Frame(ERROR, sequence, bytes([error]))


def transfer(rng, data):
    """An H2C transfer carrying ``data`` in XDMA's layout: full beats, the last keeping its first
    bytes (garbage in the others)."""
    keeps = packed_keeps(len(data))
    return axi_frame(data + rng.randbytes(LANES * len(keeps) - len(data)), keeps)


def one_frame(got, what):
    """The one answer frame that the C2H transfer ``got`` must be: packed beats (full but the last),
    one whole frame and nothing more."""
    beats = received_beats(got)
    keeps = [keep for _, keep, _ in beats]
    assert keeps[:-1] == [FULL] * (len(keeps) - 1) and keeps[-1] in PACKED_LAST, f"{what}: beats {describe(beats)}"
    decoder = FrameDecoder()
    frames = decoder.feed(bytes(byte for byte, keep in zip(got.tdata, got.tkeep) if keep))
    assert len(frames) == 1 and not decoder.buffer and decoder.skipped == decoder.bad_frames == 0, \
        f"{what}: a C2H transfer of {len(frames)} frames and {len(decoder.buffer)} bytes more ({describe(beats)})"
    return frames[0]


def show(frame):
    return f"{frame} {frame.payload.hex()}"


async def exchange(dut, rng, steps):
    """Send ``steps``' H2C transfers (``(bytes, expected answer or None)``: a transfer's bytes, and
    the answer it gets, if any) back to back, then check that each C2H transfer is the next expected
    answer, nothing skipped, and that no transfer comes after the last."""
    source, sink = await begin(dut, rng, host=True)
    rule = m_axis_rule(dut)
    for data, _ in steps:
        source.send_nowait(transfer(rng, data))
    for index, (data, expected) in enumerate(steps):
        if expected is None:
            continue
        got = one_frame(await with_timeout(sink.recv(compact=False), 500, "us"), f"answer to transfer {index}")
        assert got == expected, f"transfer {index} ({data.hex()}): got {show(got)}, expected {show(expected)}"
    await source.wait()
    await expect_no_transfer(dut, sink, 500)
    rule.check()


@cocotb.test()
async def host_frame_per_transfer(dut):
    """Each command frame one H2C transfer: INFO, then WRITEs of every space (ACTIVATIONS' 2-byte
    words, WEIGHTS' bytes, CONSTANTS' 8-byte words, GELU's 4-byte ones) of 0 words, of 1..16 (the
    frame's end in every lane, the words in every alignment against the beats), random counts and
    the most a payload holds, each followed by a READ of its words or of a range around them (GELU
    is write only: a READ of it is BAD_ARGUMENT); then READs of every word of every readable space.
    Every answer is the model's."""
    rng = rng_for("host_frame_per_transfer")
    model = device()
    steps = [model.info_command()]
    for space in (ACT, WGT, CON, GELU):
        most = model.most_words(space)
        counts = list(range(2 * LANES + 1)) + [rng.randint(2 * LANES + 1, most) for _ in range(4)] + [most - 1, most]
        rng.shuffle(counts)
        for count in counts:
            place = model.random_place(rng, space, count)
            steps.append(model.applied_write(rng, place))
            steps += model.read_around(rng, place)
            if rng.random() < 0.1:
                steps.append(model.info_command())
    steps.append(model.read(GELU, 0, 0, 1))
    steps += model.read_all()
    await exchange(dut, rng, steps)


@cocotb.test()
async def host_trailing_junk(dut):
    """A command frame followed, in the same transfer, by junk (random bytes, zeros, SYNC and random
    bytes, or a whole WRITE frame): the answer is the frame's, and the junk's WRITE is not applied
    (the READs after it say so). Then every word is read back."""
    rng = rng_for("host_trailing_junk")
    model = device()
    steps = []
    for _ in range(30):
        (frame, expected), place = model.random_command(rng)
        if place is not None:
            model.apply(place, frame_words(frame, place))
        kind = rng.choice(["random", "zeros", "sync", "frame"])
        junk_place = None
        if kind == "random":
            junk = rng.randbytes(rng.randint(1, 5 * LANES))
        elif kind == "zeros":
            junk = bytes(rng.randint(1, 3 * LANES))
        elif kind == "sync":
            junk = SYNC + rng.randbytes(rng.randint(0, 3 * LANES))
        else:
            junk_place = place or model.random_place(rng, rng.choice([ACT, WGT, CON]))
            junk, _ = model.write(junk_place, model.random_words(rng, junk_place))
        steps.append((frame + junk, expected))
        for written in {place, junk_place} - {None}:
            steps += model.read_around(rng, written)
    steps += model.read_all()
    await exchange(dut, rng, steps)


@cocotb.test()
async def host_no_sync(dut):
    """Transfers that do not start with SYNC and a whole header (random bytes; a WRITE frame after
    1..7 bytes of garbage; a WRITE frame with a SYNC byte changed; the first 1..5 bytes of a frame)
    get no answer and change nothing; the transfer after each is answered as usual."""
    rng = rng_for("host_no_sync")
    model = device()
    steps = []
    for index in range(32):
        kind = ["random", "shifted", "bad_sync", "short"][index % 4]
        place = model.random_place(rng, rng.choice([ACT, WGT, CON]))
        frame, _ = model.write(place, model.random_words(rng, place))
        if kind == "random":
            data = rng.randbytes(rng.randint(1, 5 * LANES))
        elif kind == "shifted":
            data = rng.randbytes(rng.randint(1, LANES - 1)) + frame
        elif kind == "bad_sync":
            at = rng.randrange(len(SYNC))
            data = frame[:at] + bytes([frame[at] ^ rng.randint(1, 255)]) + frame[at + 1:]
        else:
            data = frame[:rng.randint(1, HEADER_BYTES - 1)]
        if data.startswith(SYNC) and kind != "short":
            data = b"\0" + data
        steps.append((data, None))
        follow = rng.choice(["read", "info", "write"])
        if follow == "write":
            steps.append(model.applied_write(rng, place))
        if follow != "info":
            steps += model.read_around(rng, place)
        else:
            steps.append(model.info_command())
    await exchange(dut, rng, steps)


@cocotb.test()
async def host_truncated(dut):
    """A command frame whose transfer ends before it does (cut anywhere after its header: in the
    first beat, in the payload, in the CRC) gets an ERROR answer TRUNCATED with its sequence number,
    and a frame whose length exceeds max_payload gets TOO_LONG; neither changes anything, and the
    transfer after each is answered as usual."""
    rng = rng_for("host_truncated")
    model = device()
    steps = []
    for index in range(30):
        (frame, _), place = model.random_command(rng)
        if index % 6 == 5:
            length = rng.randint(model.max_payload + 1, 0xFFFF)
            frame = SYNC + bytes([Opcode.WRITE, model.next_sequence()]) + length.to_bytes(2, "little")
            steps.append((frame + rng.randbytes(rng.randint(0, 5 * LANES)), error_answer(frame[3], Error.TOO_LONG)))
        else:
            cut = rng.choice([HEADER_BYTES, HEADER_BYTES + 1, LANES, LANES + 1, len(frame) - 1, len(frame) - 4,
                              len(frame) - 5, rng.randrange(HEADER_BYTES, len(frame))])
            cut = min(max(cut, HEADER_BYTES), len(frame) - 1)
            steps.append((frame[:cut], error_answer(frame[3], Error.TRUNCATED)))
        if place is not None:
            steps += model.read_around(rng, place)
        if place is None or rng.random() < 0.3:
            steps.append(model.info_command())
    await exchange(dut, rng, steps)


@cocotb.test()
async def host_bad_crc(dut):
    """A command frame with a byte changed (opcode, sequence, payload or CRC) gets an ERROR answer
    BAD_CRC with the sequence number it carries, and changes nothing; the transfer after it is
    answered as usual, sometimes the very frame intact (a WRITE then applied)."""
    rng = rng_for("host_bad_crc")
    model = device()
    steps = []
    for _ in range(30):
        (frame, expected), place = model.random_command(rng)
        at = rng.choice([2, 3, *range(HEADER_BYTES, len(frame))])
        damaged = frame[:at] + bytes([frame[at] ^ rng.randint(1, 255)]) + frame[at + 1:]
        steps.append((damaged, error_answer(damaged[3], Error.BAD_CRC)))
        if rng.random() < 0.5:
            if place is not None:
                model.apply(place, frame_words(frame, place))
            steps.append((frame, expected))
        if place is not None:
            steps += model.read_around(rng, place)
        else:
            steps.append(model.info_command())
    await exchange(dut, rng, steps)


def frame_words(frame, place):
    """The words of the WRITE ``frame`` at ``place``."""
    space, _, _, count = place
    size, data = WORD_BYTES[space], frame[HEADER_BYTES + ACCESS_BYTES:]
    return [int.from_bytes(data[size * at:size * (at + 1)], "little") for at in range(count)]


class CycleLog:
    """Counts cycles, and records those in which an H2C beat is taken and in which a C2H beat is."""

    def __init__(self, dut):
        self.dut, self.cycle, self.h2c, self.c2h = dut, 0, [], []
        cocotb.start_soon(self._count())

    async def _count(self):
        dut = self.dut
        while True:
            await ReadOnly()
            if dut.s_axis_tvalid.value and dut.s_axis_tready.value:
                self.h2c.append(self.cycle)
            if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
                self.c2h.append(self.cycle)
            await RisingEdge(dut.clk)
            self.cycle += 1


WRITE_SLACK = 40
"""Cycles a WRITE of CONSTANTS may take beyond its beats' (see :func:`host_write_rate`): the header
and CRC beats, the command's checks and the answer's first beat. A 1-word WRITE takes 37."""

@cocotb.test()
async def host_write_rate(dut):
    """Unstalled: the cycles from a WRITE's first H2C beat to its answer's first C2H beat, for
    CONSTANTS (8-byte words, a word a beat) of 1 word, 16 and the most a payload holds, and for the
    widest WRITEs of ACTIVATIONS and WEIGHTS (logged only); each WRITE's words are then read back.
    The frame is received whole (a beat a cycle) before its CRC lets the WRITE begin, and a word a
    cycle is written, so the longest CONSTANTS WRITE of ``b`` beats of words must take at most
    ``2 b + WRITE_SLACK`` cycles, where a byte a cycle would take over ``9 b``."""
    assert VALID_PROBABILITY == READY_PROBABILITY == 1.0, "a measurement without stalls"
    rng = rng_for("host_write_rate")
    model = device()
    source, sink = await begin(dut, rng, host=True)
    clock, measured = CycleLog(dut), {}
    for space, count in [(CON, 1), (CON, 16), (CON, model.most_words(CON)), (ACT, model.most_words(ACT)),
                         (WGT, model.most_words(WGT))]:
        place = model.random_place(rng, space, count)
        frame, expected = model.applied_write(rng, place)
        mark = clock.cycle
        await source.send(transfer(rng, frame))
        got = one_frame(await with_timeout(sink.recv(compact=False), 100, "us"), f"{space.name} WRITE")
        assert got == expected, f"{space.name} WRITE of {count} words: got {show(got)}, expected {show(expected)}"
        first_in = next(cycle for cycle in clock.h2c if cycle >= mark)
        first_out = next(cycle for cycle in clock.c2h if cycle > first_in)
        measured[space, count] = first_out - first_in
        dut._log.info(f"WRITE of {count} {space.name} words ({count * WORD_BYTES[space]} bytes, "
                      f"{len(frame)}-byte frame): {measured[space, count]} cycles from the first H2C beat "
                      f"to the answer's first C2H beat")
        for data, answer in model.read_around(rng, place):
            source.send_nowait(transfer(rng, data))
            got = one_frame(await with_timeout(sink.recv(compact=False), 100, "us"), f"{space.name} READ")
            assert got == answer, f"{space.name} READ after the WRITE: got {show(got)}, expected {show(answer)}"
    await expect_no_transfer(dut, sink)
    most = model.most_words(CON)
    cycles, beats = measured[CON, most], most * WORD_BYTES[CON] // LANES
    assert cycles <= 2 * beats + WRITE_SLACK, \
        f"a WRITE of {beats} beats of CONSTANTS took {cycles} cycles, more than 2 * {beats} + {WRITE_SLACK}: " \
        f"not a beat a cycle in and a word a cycle out (measured {measured})"
