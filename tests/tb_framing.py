"""cocotb testbench of hdl/framing.py: the receiver against a reference model, the transmitter
against protocol.encode_frame, and the two in loopback.

The design is tests/test_hdl_framing.py's ``FramingBench``: a FrameReceiver (ports ``i``, ``frame``,
``payload_addr``, ``payload_data``) and a FrameTransmitter (``answer``, ``answer_payload``, ``o``),
with ``loopback`` high feeding ``o``'s bytes into ``i`` instead.

:class:`ReceiverModel` is the receiver's documented behaviour in Python (hunt for SYNC, TOO_LONG as
soon as the length is in, BAD_CRC, TRUNCATED by the timeout, hunting on from the next byte after
any error): byte streams with idle gaps go to both and the descriptors must be the same, in order;
every good frame's payload is read back through the read port, in random order, checking its one
cycle of latency.

Environment (run_cocotb's extra_env): SEED, MAX_PAYLOAD and TIMEOUT (the design's parameters),
VALID_PROBABILITY and READY_PROBABILITY (the random stalls of the byte sources and of the
consumers).
"""

import os
import random
import zlib

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from neofpga.contract.protocol import CRC_BYTES, HEADER_BYTES, SYNC, Error, encode_frame
from neofpga.hdl.framing import FrameHeader, ReceivedFrame
from neofpga.sim.streams import StreamSink, StreamSource, pack, start, unpack

MAX_PAYLOAD = int(os.environ["MAX_PAYLOAD"])
TIMEOUT = int(os.environ["TIMEOUT"])
VALID_PROBABILITY = float(os.environ["VALID_PROBABILITY"])
READY_PROBABILITY = float(os.environ["READY_PROBABILITY"])
FIELD_BYTES = HEADER_BYTES - len(SYNC)
IDLE = None  # in a byte stream: a gap of 2 * TIMEOUT cycles, which ends any frame in progress
CLOCK_NS = 10


def rng_for(test):
    return random.Random(f"{os.environ['SEED']}-{test}")


class ReceiverModel:
    """What FrameReceiver delivers for a byte stream: ``(opcode, sequence, length, error, payload)``
    per descriptor, ``payload`` being the bytes of a good frame and None with an error."""

    def __init__(self, max_payload=MAX_PAYLOAD):
        self.max_payload = max_payload
        self.state = "hunt"
        self.frames = []

    def run(self, stream):
        """Feed a stream of bytes objects and IDLE gaps; returns the descriptors."""
        for segment in stream:
            if segment is IDLE:
                if self.state in ("header", "payload", "crc"):
                    self._report(Error.TRUNCATED)
            else:
                for byte in segment:
                    self._byte(byte)
        return self.frames

    def _byte(self, byte):
        if self.state == "hunt":
            if byte == SYNC[0]:
                self.state = "sync"
        elif self.state == "sync":
            if byte == SYNC[1]:
                self.state, self.header, self.payload, self.crc = "header", [], bytearray(), bytearray()
            elif byte != SYNC[0]:
                self.state = "hunt"
        elif self.state == "header":
            self.header.append(byte)
            if len(self.header) == FIELD_BYTES:
                length = self._fields()[2]
                if length > self.max_payload:
                    self._report(Error.TOO_LONG)
                else:
                    self.state = "payload" if length else "crc"
        elif self.state == "payload":
            self.payload.append(byte)
            if len(self.payload) == self._fields()[2]:
                self.state = "crc"
        else:
            self.crc.append(byte)
            if len(self.crc) == CRC_BYTES:
                body = bytes(self.header) + bytes(self.payload)
                good = zlib.crc32(body) == int.from_bytes(self.crc, "little")
                self._report(0 if good else Error.BAD_CRC)

    def _fields(self):
        """opcode, sequence, length from the header bytes in so far (0 for those not in)."""
        header = self.header + [0] * (FIELD_BYTES - len(self.header))
        return header[0], header[1], header[2] | header[3] << 8

    def _report(self, error):
        self.frames.append((*self._fields(), int(error), None if error else bytes(self.payload)))
        self.state = "hunt"


def random_frame(rng, length=None):
    """(opcode, sequence, payload) with a random payload of up to MAX_PAYLOAD bytes."""
    if length is None:
        length = rng.randint(0, MAX_PAYLOAD)
    return rng.randrange(256), rng.randrange(256), rng.randbytes(length)


def good(frame):
    """The descriptor a frame gets."""
    opcode, sequence, payload = frame
    return opcode, sequence, len(payload), 0, payload


class FrameConsumer:
    """Takes descriptors from ``frame``, reading each good frame's payload through the read port
    first; waits at random before taking each one."""

    def __init__(self, dut, rng, ready_probability):
        self.dut, self.rng, self.probability = dut, rng, ready_probability
        dut.frame__ready.value = 0
        dut.payload_addr.value = 0

    async def take(self, count, within):
        """The next ``count`` descriptors; fail if one is not offered within ``within`` cycles."""
        dut, frames = self.dut, []
        while len(frames) < count:
            waited = 0
            while True:
                await ReadOnly()
                if dut.frame__valid.value:
                    break
                await RisingEdge(dut.clk)
                waited += 1
                assert waited < within, f"{len(frames)} of {count} frames came: one was lost or the design hung"
            word = dut.frame__payload.value.to_unsigned()
            fields = unpack(ReceivedFrame, word)
            await RisingEdge(dut.clk)
            payload = await self.read_payload(fields["length"]) if fields["error"] == 0 else None
            while self.rng.random() >= self.probability:
                await RisingEdge(dut.clk)
            dut.frame__ready.value = 1
            await ReadOnly()
            assert dut.frame__valid.value and dut.frame__payload.value.to_unsigned() == word, \
                "the descriptor changed or went away before it was taken"
            await RisingEdge(dut.clk)
            dut.frame__ready.value = 0
            frames.append((fields["opcode"], fields["sequence"], fields["length"], fields["error"], payload))
        return frames

    async def read_payload(self, length):
        """The buffer's first ``length`` bytes, one address per cycle in random order: the data
        must follow the address after exactly one cycle (and not in the same cycle)."""
        dut, data = self.dut, [None] * length
        previous = None
        for address in self.rng.sample(range(length), length):
            await FallingEdge(dut.clk)
            dut.payload_addr.value = address
            await ReadOnly()
            if previous is not None:
                assert dut.payload_data.value.to_unsigned() == previous, "the read port has no latency"
            await RisingEdge(dut.clk)
            await ReadOnly()
            data[address] = previous = dut.payload_data.value.to_unsigned()
        await RisingEdge(dut.clk)
        return bytes(data)


async def send_bytes(dut, source, stream):
    """Send each bytes object of ``stream`` with random stalls, and wait out each IDLE gap."""
    for segment in stream:
        if segment is IDLE:
            await ClockCycles(dut.clk, 2 * TIMEOUT)
        else:
            await source.send(list(segment))


async def begin(dut, loopback):
    """Clock, reset, and the inputs of the unused side quiet."""
    dut.loopback.value = int(loopback)
    for name in ("i", "answer", "answer_payload"):
        getattr(dut, f"{name}__valid").value = 0
    dut.o__ready.value = 0
    await start(dut, CLOCK_NS)


async def receive(dut, rng, stream, ready_probability=None):
    """Send ``stream`` into the receiver; its descriptors must be the model's, nothing more.
    Returns them."""
    expected = ReceiverModel().run(stream)
    await begin(dut, loopback=False)
    source = StreamSource(dut, "i", rng, VALID_PROBABILITY)
    consumer = FrameConsumer(dut, rng, READY_PROBABILITY if ready_probability is None else ready_probability)
    sender = cocotb.start_soon(send_bytes(dut, source, stream))
    total = sum(2 * TIMEOUT if segment is IDLE else len(segment) for segment in stream)
    got = await consumer.take(len(expected), within=20 * total + 10 * TIMEOUT)
    await sender
    await expect_no_frame(dut, 3 * TIMEOUT)
    for index, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"descriptor {index} of {len(expected)}: got {describe(g)}, the model says {describe(e)}"
    return got


async def expect_no_frame(dut, cycles):
    for _ in range(cycles):
        await ReadOnly()
        assert not dut.frame__valid.value, "a descriptor nobody expected"
        await RisingEdge(dut.clk)


def describe(descriptor):
    opcode, sequence, length, error, payload = descriptor
    kind = Error(error).name if error else f"good, payload {payload.hex() if payload is not None else None}"
    return f"(opcode {opcode:#04x}, sequence {sequence}, length {length}, {kind})"


def errors(descriptors):
    return [d[3] for d in descriptors]


@cocotb.test()
async def good_frames(dut):
    """Back-to-back good frames of every length class arrive whole, in order, under stalls."""
    rng = rng_for("good_frames")
    lengths = [0, 1, MAX_PAYLOAD, MAX_PAYLOAD - 1] + [rng.randint(0, MAX_PAYLOAD) for _ in range(40)]
    frames = [random_frame(rng, length) for length in lengths]
    stream = [b"".join(encode_frame(*frame) for frame in frames), IDLE]
    got = await receive(dut, rng, stream)
    assert got == [good(frame) for frame in frames]


@cocotb.test()
async def length_limit(dut):
    """max_payload bytes is a good frame; max_payload + 1 and 0xFFFF are TOO_LONG at once."""
    rng = rng_for("length_limit")
    fit = random_frame(rng, MAX_PAYLOAD)
    after = [random_frame(rng) for _ in range(3)]
    long_header = SYNC + bytes([0x12, 0x34]) + (MAX_PAYLOAD + 1).to_bytes(2, "little")
    stream = [encode_frame(*fit), long_header, IDLE, encode_frame(*after[0]),
              SYNC + bytes([0x56, 0x78, 0xFF, 0xFF]), IDLE, encode_frame(*after[1]),
              encode_frame(0x9A, 0xBC, bytes(MAX_PAYLOAD + 1)), IDLE, encode_frame(*after[2]), IDLE]
    got = await receive(dut, rng, stream)
    too_long = int(Error.TOO_LONG)
    assert got == [good(fit), (0x12, 0x34, MAX_PAYLOAD + 1, too_long, None), good(after[0]),
                   (0x56, 0x78, 0xFFFF, too_long, None), good(after[1]),
                   (0x9A, 0xBC, MAX_PAYLOAD + 1, too_long, None), good(after[2])]


def garbage(rng):
    """Random bytes that hold no SYNC, ending at random in stray SYNC bytes. The first byte is
    neither SYNC byte, so that nothing makes a SYNC with the byte before."""
    first = rng.choice([b for b in range(256) if b not in SYNC])
    rest = [rng.choice([b for b in range(256) if b != SYNC[0]]) for _ in range(rng.randint(0, 11))]
    body = bytes([first, *rest])
    return body + rng.choice([b"", b"", SYNC[:1], SYNC[:1] * 2, SYNC[:1] * 3, SYNC[1:], SYNC[1:] + SYNC[:1]])


@cocotb.test()
async def garbage_between_frames(dut):
    """Garbage between frames, with stray SYNC bytes (0xA5, 0xA5 0xA5, 0x5A) right before a frame's
    SYNC and spurious SYNCs (0xA5 0xA5 0x5A) with a too-long header: every frame arrives."""
    rng = rng_for("garbage_between_frames")
    frames, stream, spurious = [], [], 0
    for _ in range(40):
        stream.append(garbage(rng))
        if rng.random() < 0.25:
            stream.append(SYNC[:1] + SYNC + bytes([rng.randrange(256), rng.randrange(256), 0xFF, 0xFF]))
            stream.append(garbage(rng))
            spurious += 1
        frames.append(random_frame(rng))
        stream.append(encode_frame(*frames[-1]))
    stream += [garbage(rng), IDLE]
    got = await receive(dut, rng, stream)
    assert [d for d in got if d[3] == 0] == [good(frame) for frame in frames]
    assert errors(got).count(Error.TOO_LONG) == spurious == len(got) - len(frames) > 0


@cocotb.test()
async def corrupted_frames(dut):
    """A bit flipped anywhere in a frame (SYNC, header, payload, CRC): BAD_CRC, TOO_LONG,
    TRUNCATED or a lost frame, never a wrong frame delivered."""
    rng = rng_for("corrupted_frames")
    frames, stream, corrupted = [], [], set()
    for index in range(60):
        frame = random_frame(rng)
        data = bytearray(encode_frame(*frame))
        if rng.random() < 0.6:
            bit = rng.randrange(8 * len(data))
            data[bit // 8] ^= 1 << bit % 8
            corrupted.add(frame)
        frames.append(frame)
        stream.append(bytes(data))
        if rng.random() < 0.3:
            stream.append(IDLE)
    stream.append(IDLE)
    got = await receive(dut, rng, stream)
    delivered = [(opcode, sequence, payload) for opcode, sequence, _, error, payload in got if error == 0]
    assert all(frame in frames and frame not in corrupted for frame in delivered), "a wrong frame was delivered"
    assert Error.BAD_CRC in errors(got) and len(delivered) >= 10


@cocotb.test()
async def truncated_frames(dut):
    """A frame cut short and left idle is TRUNCATED (cut inside SYNC: nothing), and the next
    frame arrives."""
    rng = rng_for("truncated_frames")
    frames, stream, cut_after_sync = [], [], 0
    for _ in range(30):
        data = encode_frame(*random_frame(rng))
        cut = rng.choice([1, len(SYNC), len(SYNC) + 1, HEADER_BYTES, len(data) - 1, rng.randrange(1, len(data))])
        frames.append(random_frame(rng))
        stream += [data[:cut], IDLE, encode_frame(*frames[-1])]
        cut_after_sync += cut >= len(SYNC)
    stream.append(IDLE)
    got = await receive(dut, rng, stream)
    assert [d for d in got if d[3] == 0] == [good(frame) for frame in frames]
    assert errors(got).count(Error.TRUNCATED) == cut_after_sync == len(got) - len(frames) > 0


def noise(rng, size):
    """At least ``size`` bytes: uniform bytes, runs of SYNC's bytes, and SYNCs with short random frames
    (small lengths, random CRC), so that every way of failing comes up."""
    data = bytearray()
    while len(data) < size:
        kind = rng.random()
        if kind < 0.5:
            data += rng.randbytes(rng.randint(1, 40))
        elif kind < 0.7:
            data += bytes(rng.choice(SYNC) for _ in range(rng.randint(1, 8)))
        else:
            length = rng.randint(0, MAX_PAYLOAD + 2) if rng.random() < 0.7 else rng.randrange(0x10000)
            data += SYNC + rng.randbytes(2) + length.to_bytes(2, "little") \
                + rng.randbytes(rng.randint(0, length + 2 * CRC_BYTES) if length <= MAX_PAYLOAD else 0)
    return bytes(data)


@cocotb.test()
async def pure_noise(dut):
    """2 x 1500 bytes of noise, each followed by an idle gap, then a good frame: the receiver
    never hangs."""
    rng = rng_for("pure_noise")
    frame = random_frame(rng)
    stream = [noise(rng, 1500), IDLE, noise(rng, 1500), IDLE, encode_frame(*frame), IDLE]
    got = await receive(dut, rng, stream)
    assert got[-1] == good(frame)
    assert {Error.BAD_CRC, Error.TOO_LONG} <= set(errors(got[:-1]))


@cocotb.test()
async def timeout_is_exact(dut):
    """A gap of TIMEOUT - 1 cycles inside a frame is harmless; one of TIMEOUT cycles truncates it
    (wherever the gap falls after SYNC)."""
    rng = rng_for("timeout_is_exact")
    await begin(dut, loopback=False)
    source = StreamSource(dut, "i", rng, 1.0)
    consumer = FrameConsumer(dut, rng, 1.0)
    for cut_kind in range(5):
        for gap in (TIMEOUT - 1, TIMEOUT):
            frame = random_frame(rng)
            data = encode_frame(*frame)
            cut = [len(SYNC), len(SYNC) + 1, HEADER_BYTES + len(frame[2]) // 2, len(data) - CRC_BYTES,
                   len(data) - 1][cut_kind]
            # the rest of a truncated frame is hunted through: the model says what that gives
            expected = ReceiverModel().run([data[:cut]] + [IDLE] * (gap >= TIMEOUT) + [data[cut:], IDLE])
            assert expected[0] == (good(frame) if gap < TIMEOUT else (*expected[0][:3], Error.TRUNCATED, None))
            taker = cocotb.start_soon(consumer.take(len(expected), within=10 * len(data) + 10 * TIMEOUT))
            await source.send(list(data[:cut]))
            await ClockCycles(dut.clk, gap)
            await source.send(list(data[cut:]))
            await ClockCycles(dut.clk, 2 * TIMEOUT)
            got = await taker
            assert got == expected, f"a gap of {gap} cycles after byte {cut}: got {describe(got[0])}"
            await expect_no_frame(dut, 2 * TIMEOUT)


@cocotb.test()
async def transmitter_matches_encode_frame(dut):
    """Random answers (lengths 0, 1, over 255, random) under stalls on all three streams: the bytes
    are encode_frame's, byte for byte, and nothing more."""
    rng = rng_for("transmitter")
    lengths = [0, 1, 300, 256] + [rng.randint(0, 2 * MAX_PAYLOAD) for _ in range(40)]
    frames = [random_frame(rng, length) for length in lengths]
    expected = b"".join(encode_frame(*frame) for frame in frames)
    await begin(dut, loopback=False)
    headers = StreamSource(dut, "answer", rng, VALID_PROBABILITY)
    payload = StreamSource(dut, "answer_payload", rng, VALID_PROBABILITY)
    sink = StreamSink(dut, "o", rng, READY_PROBABILITY)
    cocotb.start_soon(headers.send([pack(FrameHeader, dict(opcode=opcode, sequence=sequence, length=len(data)))
                                    for opcode, sequence, data in frames]))
    cocotb.start_soon(payload.send(list(b"".join(data for _, _, data in frames))))
    got = bytes(await sink.receive(len(expected), within=20 * len(expected) + 1000))
    for index, frame in enumerate(frames):
        start_byte = sum(len(encode_frame(*f)) for f in frames[:index])
        want = encode_frame(*frame)
        assert got[start_byte:start_byte + len(want)] == want, \
            f"frame {index} ({len(frame[2])} bytes): got {got[start_byte:start_byte + len(want)].hex()}, " \
            f"expected {want.hex()}"
    assert got == expected
    await sink.expect_idle(50)


@cocotb.test()
async def loopback(dut):
    """The transmitter's bytes into the receiver: the same frames come out, under stalls."""
    rng = rng_for("loopback")
    lengths = [0, MAX_PAYLOAD] + [rng.randint(0, MAX_PAYLOAD) for _ in range(40)]
    frames = [random_frame(rng, length) for length in lengths]
    await begin(dut, loopback=True)
    headers = StreamSource(dut, "answer", rng, VALID_PROBABILITY)
    payload = StreamSource(dut, "answer_payload", rng, VALID_PROBABILITY)
    consumer = FrameConsumer(dut, rng, READY_PROBABILITY)
    cocotb.start_soon(headers.send([pack(FrameHeader, dict(opcode=opcode, sequence=sequence, length=len(data)))
                                    for opcode, sequence, data in frames]))
    cocotb.start_soon(payload.send(list(b"".join(data for _, _, data in frames))))
    got = await consumer.take(len(frames), within=50 * (MAX_PAYLOAD + 20) + 10 * TIMEOUT)
    assert got == [good(frame) for frame in frames]
    await expect_no_frame(dut, 3 * TIMEOUT)
