"""cocotb testbench of hdl/axi_stream.py, the AXI4-Stream side driven by cocotbext-axi.

Two designs from tests/test_hdl_axi_stream.py, each with plain AXI4-Stream ports ``s_axis_*`` (into the
design) and ``m_axis_*`` (out of it):

* ``AdapterBench``: ``s_axis`` beats through a BeatsToBytes onto the byte stream ``o``, and the
  FrameByte stream ``i`` through a BytesToBeats onto ``m_axis``. Each side is checked against a
  model: BeatsToBytes gives the kept bytes in order (whatever the keep pattern, a beat keeping
  nothing giving nothing), BytesToBeats gives each frame as one transfer of full beats and a last
  beat keeping the bytes it holds, LSB first. The ``*_rate`` tests check a byte a cycle unstalled.
* ``HostBench``: a small accelerator behind an AxiStreamHost. Command frames go in as H2C
  transfers (a frame a transfer, several in one, one cut across two), each C2H transfer must be
  exactly one answer frame, and the answers those of the commands (INFO's record, WRITE's empty
  answer, READ's words as written).

Environment (run_cocotb's extra_env): SEED, DATA_BYTES, VALID_PROBABILITY (each cycle, the chance
that a source offers data: cocotbext-axi's pause generator on ``s_axis``, StreamSource on ``i``),
READY_PROBABILITY (the chance that a sink takes: on ``o`` and on ``m_axis``); for the host tests
INFO (the accelerator's INFO record, hex), COLS, WEIGHT_WORDS and MAX_PAYLOAD.
"""

import logging
import os
import random

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
from neofpga.contract.protocol import (ACCESS, ANSWER, READ, Frame, FrameDecoder, Opcode, Space, encode_frame,
                                       pack_record)
from neofpga.hdl.axi_stream import FrameByte
from neofpga.sim.streams import StreamSink, StreamSource, pack, start

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


async def begin(dut, rng, bytes_side=True):
    """Idle inputs, clock and reset; the AXI source on ``s_axis`` and sink on ``m_axis``, pausing
    at random unless the probabilities are 1."""
    dut.s_axis_tvalid.value = 0
    dut.m_axis_tready.value = 0
    if bytes_side:
        dut.i__valid.value = 0
        dut.o__ready.value = 0
    await start(dut, CLOCK_NS)
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk)
    for side in (source, sink):
        side.log.setLevel(logging.WARNING)  # not a line a frame
    if VALID_PROBABILITY < 1:
        source.set_pause_generator(pauses(rng, VALID_PROBABILITY))
    if READY_PROBABILITY < 1:
        sink.set_pause_generator(pauses(rng, READY_PROBABILITY))
    return source, sink


# -- beats, as (lane bytes, keep) ----------------------------------------------------------------

def kept(data, keeps):
    """The bytes a transfer carries: each beat's kept lanes, LSB first."""
    return bytes(data[LANES * beat + lane] for beat, keep in enumerate(keeps) for lane in range(LANES)
                 if keep >> lane & 1)


def axi_frame(data, keeps):
    """A cocotbext-axi frame whose beats are exactly ``data``'s lanes with ``keeps``: whole beats, so
    that the source lays them out as given (unkept lanes carry the garbage in ``data``)."""
    assert len(data) == LANES * len(keeps)
    return AxiStreamFrame(bytes(data), tkeep=[keeps[index // LANES] >> index % LANES & 1
                                              for index in range(len(data))])


def packed_keeps(length):
    """XDMA's beats for ``length`` bytes: full beats, the last keeping its first bytes."""
    return [FULL] * (length // LANES) + ([(1 << length % LANES) - 1] if length % LANES else [])


def random_keeps(rng, kind):
    if kind == "packed":
        return packed_keeps(rng.randint(1, 40))
    if kind == "sparse":  # any keep, all-zero and full ones among them
        return [rng.choice([0, FULL, rng.randrange(1 << LANES), rng.randrange(1 << LANES)])
                for _ in range(rng.randint(1, 6))]
    if kind == "sparse_nonzero":
        return [rng.randrange(1, 1 << LANES) for _ in range(rng.randint(1, 6))]
    if kind == "single":  # one byte, in any lane
        return [1 << rng.randrange(LANES)]
    if kind == "zero_tail":  # the last beat (with tlast) keeps nothing
        return packed_keeps(rng.randint(1, 24)) + [0]
    if kind == "zero_head":
        return [0] * rng.randint(1, 2) + packed_keeps(rng.randint(1, 24))
    if kind == "nothing":  # a transfer of beats that keep nothing
        return [0] * rng.randint(1, 2)
    raise ValueError(kind)


def random_transfers(rng, kinds, count):
    """Transfers 1..40 packed bytes long, then ``count`` random ones of ``kinds``; each (data, keeps)."""
    transfers = [packed_keeps(length) for length in range(1, 41)]
    transfers += [random_keeps(rng, rng.choice(kinds)) for _ in range(count)]
    return [(rng.randbytes(LANES * len(keeps)), keeps) for keeps in transfers]


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


# -- the adapters --------------------------------------------------------------------------------

@cocotb.test()
async def beats_to_bytes_matches_model(dut):
    """Transfers of 1..40 packed bytes, then random ones: any keep pattern, all-zero beats (first,
    last with tlast, whole transfers of them), single bytes in any lane, under stalls on both sides:
    ``o`` carries the kept bytes in order and nothing else."""
    rng = rng_for("beats_to_bytes")
    source, _ = await begin(dut, rng)
    transfers = random_transfers(rng, ["packed", "sparse", "sparse", "single", "zero_tail", "zero_head",
                                       "nothing"], 200)
    expected = b"".join(kept(data, keeps) for data, keeps in transfers)
    for data, keeps in transfers:
        source.send_nowait(axi_frame(data, keeps))
    sink = StreamSink(dut, "o", rng, READY_PROBABILITY)
    rule = HeldUntilTaken(dut.clk, dut.o__valid, dut.o__ready, dut.o__payload)
    beats = sum(len(keeps) for _, keeps in transfers)
    got = bytes(await sink.receive(len(expected), within=20 * (beats + len(expected)) + 1000))
    for at in range(len(expected)):
        assert got[at] == expected[at], f"byte {at}: got {got[at]:#04x}, expected {expected[at]:#04x}"
    await source.wait()
    await sink.expect_idle(50)
    assert not dut.s_axis_tvalid.value
    rule.check()


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
async def beats_to_bytes_rate(dut):
    """Unstalled, with beats that each keep something (packed transfers of 1..40 bytes, sparse and
    single-byte ones, back to back): a byte leaves every cycle, across beat and transfer boundaries."""
    rng = rng_for("beats_to_bytes_rate")
    source, _ = await begin(dut, rng)
    transfers = random_transfers(rng, ["packed", "sparse_nonzero", "single"], 60)
    expected = b"".join(kept(data, keeps) for data, keeps in transfers)
    watch = Handshakes(dut, "o")
    dut.o__ready.value = 1
    for data, keeps in transfers:
        source.send_nowait(axi_frame(data, keeps))
    await with_timeout(source.wait(), 10 * CLOCK_NS * (len(expected) + 100), "ns")
    await ClockCycles(dut.clk, 20)
    cycles = [cycle for cycle, _ in watch.log]
    assert bytes(byte for _, byte in watch.log) == expected
    gaps = [(at, cycles[at] - cycles[at - 1]) for at in range(1, len(cycles)) if cycles[at] != cycles[at - 1] + 1]
    assert not gaps, f"{len(expected)} bytes took {cycles[-1] - cycles[0] + 1} cycles; (byte, gap) {gaps[:10]}"


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

class Weights:
    """The WEIGHTS space as the commands leave it (a byte a word, zero at the start), and the
    commands with their expected answers.

    One for the whole run (:func:`weights`): the device's memories and its last sequence number
    outlive the reset at the start of each test, so the tests that run in one simulation go on
    from each other's state (and never repeat a sequence number, which would make a retry).
    """

    def __init__(self):
        self.cols, self.depth = int(os.environ["COLS"]), int(os.environ["WEIGHT_WORDS"])
        self.banks = [bytearray(self.depth) for _ in range(self.cols)]
        self.info = bytes.fromhex(os.environ["INFO"])
        self.sequence = 0

    def _frame(self, opcode, payload, answer):
        self.sequence = (self.sequence + 1) % 256
        return encode_frame(opcode, self.sequence, payload), Frame(opcode | ANSWER, self.sequence, answer)

    def info_command(self):
        return self._frame(Opcode.INFO, b"", self.info)

    def write(self, bank, address, data):
        self.banks[bank][address:address + len(data)] = data
        head = pack_record(ACCESS, space=Space.WEIGHTS, bank=bank, address=address)
        return self._frame(Opcode.WRITE, head + data, b"")

    def read(self, bank, address, words):
        record = pack_record(READ, space=Space.WEIGHTS, bank=bank, address=address, words=words)
        return self._frame(Opcode.READ, record, bytes(self.banks[bank][address:address + words]))

    def commands(self, rng, count):
        """INFO, then ``count`` random writes each followed by a read of the same words or of a range
        around them (with an INFO now and then): ``[(frame bytes, expected answer)]``."""
        commands = [self.info_command()]
        for _ in range(count):
            bank, words = rng.randrange(self.cols), rng.randint(1, 40)
            address = rng.randrange(self.depth - words + 1)
            commands.append(self.write(bank, address, rng.randbytes(words)))
            if rng.random() < 0.5:
                commands.append(self.read(bank, address, words))
            else:
                start = rng.randrange(address + 1)
                commands.append(self.read(bank, start, rng.randint(address + words - start, self.depth - start)))
            if rng.random() < 0.2:
                commands.append(self.info_command())
        return commands


_weights = []


def weights():
    """The run's one :class:`Weights`."""
    if not _weights:
        _weights.append(Weights())
    return _weights[0]


def transfer(rng, data, sparse=False):
    """An H2C transfer carrying ``data``: XDMA's layout (full beats, the last partial) or, if
    ``sparse``, with unkept garbage lanes and beats keeping nothing in between."""
    if not sparse:
        keeps = packed_keeps(len(data))
        return axi_frame(data + rng.randbytes(LANES * len(keeps) - len(data)), keeps)
    lanes, keeps, at = bytearray(), [], 0
    while at < len(data):
        keep = rng.choice([0, FULL, rng.randrange(1 << LANES)])
        beat = bytearray(rng.randbytes(LANES))
        for lane in range(LANES):
            if keep >> lane & 1:
                if at < len(data):
                    beat[lane] = data[at]
                    at += 1
                else:
                    keep &= ~(1 << lane)
        lanes += beat
        keeps.append(keep)
    return axi_frame(bytes(lanes), keeps)


async def exchange(dut, rng, commands, transfers):
    """Send the H2C ``transfers`` (cocotbext-axi frames carrying the commands' bytes), then check that
    each C2H transfer is exactly the next command's answer frame: packed beats (full but the last),
    one frame, nothing skipped."""
    source, sink = await begin(dut, rng, bytes_side=False)
    rule = m_axis_rule(dut)
    for frame in transfers:
        source.send_nowait(frame)
    for index, (command, expected) in enumerate(commands):
        got = await with_timeout(sink.recv(compact=False), 500, "us")
        beats = received_beats(got)
        keeps = [keep for _, keep, _ in beats]
        assert keeps[:-1] == [FULL] * (len(keeps) - 1) and keeps[-1] in PACKED_LAST, \
            f"answer {index}: beats {describe(beats)}"
        decoder = FrameDecoder()
        frames = decoder.feed(bytes(byte for byte, keep in zip(got.tdata, got.tkeep) if keep))
        assert len(frames) == 1 and not decoder.buffer and decoder.skipped == decoder.bad_frames == 0, \
            f"answer {index}: a C2H transfer of {len(frames)} frames and {len(decoder.buffer)} bytes more " \
            f"({describe(beats)})"
        assert frames[0] == expected, f"command {index} ({command.hex()}): got {frames[0]} " \
            f"{frames[0].payload.hex()}, expected {expected} {expected.payload.hex()}"
    await source.wait()
    await expect_no_transfer(dut, sink, 500)
    rule.check()


@cocotb.test()
async def host_frame_per_transfer(dut):
    """Each command frame one H2C transfer, XDMA's layout."""
    rng = rng_for("host_frame_per_transfer")
    commands = weights().commands(rng, 12)
    await exchange(dut, rng, commands, [transfer(rng, command) for command, _ in commands])


@cocotb.test()
async def host_frames_in_one_transfer(dut):
    """Several command frames (1 to 5) in one H2C transfer, some with sparse keep."""
    rng = rng_for("host_frames_in_one_transfer")
    commands = weights().commands(rng, 12)
    transfers, at = [], 0
    while at < len(commands):
        count = rng.randint(1, 5)
        transfers.append(transfer(rng, b"".join(command for command, _ in commands[at:at + count]),
                                  sparse=rng.random() < 0.3))
        at += count
    await exchange(dut, rng, commands, transfers)


@cocotb.test()
async def host_frame_split_across_transfers(dut):
    """Each command frame cut in two H2C transfers anywhere (within SYNC, the header, the payload or
    the CRC), some with sparse keep."""
    rng = rng_for("host_frame_split_across_transfers")
    commands = weights().commands(rng, 12)
    transfers = []
    for command, _ in commands:
        cut = rng.randrange(1, len(command))
        transfers += [transfer(rng, command[:cut], sparse=rng.random() < 0.3),
                      transfer(rng, command[cut:], sparse=rng.random() < 0.3)]
    await exchange(dut, rng, commands, transfers)
