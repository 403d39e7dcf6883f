"""cocotb testbench of hdl/beat_framing.py: BeatFrameReceiver against a reference model, its transfers
driven by cocotbext-axi.

The design is tests/test_hdl_beat_framing.py's ``BeatFramingBench``: the receiver's AXI4-Stream side
as plain ``s_axis_*`` ports, its descriptors on ``frame`` and its read port (``payload_addr``,
``payload_en``, ``payload_data``, ``payload_beat``).

A test is a list of :class:`Transfer`\\ s: each beat's lanes (unkept ones too) and keep, and where
the source stalls. :func:`model` is the receiver's documented behaviour in Python, a transfer at a
time: no descriptor (the first beat lacks SYNC or a whole header), or one descriptor, error 0,
TOO_LONG (from the first beat), TRUNCATED (the transfer ends, a beat inside the frame does not keep
its bytes, or a stall of TIMEOUT cycles inside the frame) or BAD_CRC, and for a good frame its
payload and the beat holding each payload byte; whatever follows in the transfer gives nothing. The
transfers are all queued on an AxiStreamSource at once (back to back, with tvalid gaps from its
pause generator, or from :class:`Pacer` where a test stalls at given beats); :class:`FrameConsumer`
reads each good frame's payload through the read port while its descriptor is held, then takes it,
slow at random. The descriptors must be the model's, in order, and no more.

Environment (run_cocotb's extra_env): SEED, DATA_BYTES, MAX_PAYLOAD and TIMEOUT (the design's
parameters), VALID_PROBABILITY (each cycle, the chance that the source goes on) and
READY_PROBABILITY (each cycle, the chance that the consumer takes an offered descriptor).
"""

import logging
import os
import random
import zlib

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSource
from neofpga.contract.protocol import CRC_BYTES, HEADER_BYTES, SYNC, Error, encode_frame
from neofpga.hdl.framing import ReceivedFrame
from neofpga.sim.streams import start, unpack

LANES = int(os.environ["DATA_BYTES"])
MAX_PAYLOAD = int(os.environ["MAX_PAYLOAD"])
TIMEOUT = int(os.environ["TIMEOUT"])
VALID_PROBABILITY = float(os.environ["VALID_PROBABILITY"])
READY_PROBABILITY = float(os.environ["READY_PROBABILITY"])
FULL = (1 << LANES) - 1
HEADER_LANES = (1 << HEADER_BYTES) - 1
OVERHEAD = HEADER_BYTES + CRC_BYTES
LONGEST_PAUSE = 8       # random tvalid gaps stay far below TIMEOUT: only the stalls a test asks for time out
HOLD_PROBABILITY = 0.2  # the consumer's read cycles with payload_en low
CLOCK_NS = 10

assert LONGEST_PAUSE < TIMEOUT // 2 and OVERHEAD > LANES, "the tests' assumptions"


def rng_for(test):
    return random.Random(f"{os.environ['SEED']}-{test}")


# -- transfers and the model ---------------------------------------------------------------------

def packed_keeps(length):
    """XDMA's beats for ``length`` bytes: full beats, the last keeping its first bytes."""
    return [FULL] * (length // LANES) + ([(1 << length % LANES) - 1] if length % LANES else [])


class Transfer:
    """One host transfer: ``lanes`` (every beat's bytes, unkept lanes too), ``keeps`` (a keep a
    beat; tlast on the last) and ``stalls`` ({beat: cycles}: no beat for exactly that many cycles
    before that beat)."""

    def __init__(self, lanes, keeps, stalls=None):
        assert keeps and len(lanes) == LANES * len(keeps)
        self.lanes, self.keeps, self.stalls = bytes(lanes), list(keeps), dict(stalls or {})

    @classmethod
    def packed(cls, rng, data, stalls=None):
        """``data`` in XDMA's layout: full beats, the last keeping its first bytes (garbage in the rest)."""
        keeps = packed_keeps(len(data))
        return cls(bytes(data) + rng.randbytes(LANES * len(keeps) - len(data)), keeps, stalls)

    def beat(self, index):
        return int.from_bytes(self.lanes[LANES * index:LANES * (index + 1)], "little")

    def axi_frame(self):
        """A cocotbext-axi frame of whole beats, so that the source lays the lanes out as given."""
        return AxiStreamFrame(self.lanes, tkeep=[self.keeps[at // LANES] >> at % LANES & 1
                                                 for at in range(len(self.lanes))])

    def __str__(self):
        beats = " ".join(f"{self.beat(index):0{2 * LANES}x}/{keep:0{-(-LANES // 4)}x}"
                         for index, keep in enumerate(self.keeps))
        stalls = "".join(f", {cycles} cycles before beat {beat}" for beat, cycles in sorted(self.stalls.items()))
        return f"[{beats} L{stalls}]"


def frame_beat(lanes, size, index):
    """Beat ``index`` of a frame of ``size`` bytes at the start of ``lanes``, lanes past its end zeroed
    (they are not the frame's: what the receiver keeps there is not specified)."""
    return int.from_bytes(lanes[LANES * index:min(LANES * (index + 1), size)], "little")


def model(transfer):
    """The descriptor a transfer gets, ``(opcode, sequence, length, error, payload, beats)``, and the
    beat (of the transfer) that decides it; ``(None, None)`` for none. ``payload`` and ``beats`` (for
    each payload byte, the frame's beat holding it, as :func:`frame_beat`) are None but for a good
    frame."""
    lanes, keeps, last = transfer.lanes, transfer.keeps, len(transfer.keeps) - 1
    if lanes[:len(SYNC)] != SYNC or keeps[0] & HEADER_LANES != HEADER_LANES:
        return None, None
    opcode, sequence, length = lanes[2], lanes[3], int.from_bytes(lanes[4:HEADER_BYTES], "little")

    def report(error, beat):
        return (opcode, sequence, length, int(error), None, None), beat

    if length > MAX_PAYLOAD:
        return report(Error.TOO_LONG, 0)
    if last == 0 or keeps[0] != FULL:
        return report(Error.TRUNCATED, 0)
    size = OVERHEAD + length
    final = (size - 1) // LANES
    for beat in range(1, final + 1):
        if transfer.stalls.get(beat, 0) >= TIMEOUT:
            return report(Error.TRUNCATED, beat - 1)
        needed = (1 << min(LANES, size - LANES * beat)) - 1
        if keeps[beat] & needed != needed:
            return report(Error.TRUNCATED, beat)
        if beat == last and beat != final:
            return report(Error.TRUNCATED, beat)
    if zlib.crc32(lanes[len(SYNC):size - CRC_BYTES]) != int.from_bytes(lanes[size - CRC_BYTES:size], "little"):
        return report(Error.BAD_CRC, final)
    beats = tuple(frame_beat(lanes, size, (at + HEADER_BYTES) // LANES) for at in range(length))
    return (opcode, sequence, length, 0, lanes[HEADER_BYTES:HEADER_BYTES + length], beats), final


def error_of(transfer):
    """The model's error for a transfer, None for no descriptor."""
    descriptor, _ = model(transfer)
    return None if descriptor is None else descriptor[3]


NAMES = {int(error): error.name for error in Error}


def describe(descriptor):
    opcode, sequence, length, error, payload, _ = descriptor
    kind = NAMES.get(error, f"error {error}") if error else f"good, payload {payload.hex()}"
    return f"(opcode {opcode:#04x}, sequence {sequence}, length {length}, {kind})"


# -- frames and transfers of each kind -----------------------------------------------------------

def random_frame(rng, length=None):
    """encode_frame of a random opcode, sequence and payload (of up to MAX_PAYLOAD bytes)."""
    if length is None:
        length = rng.randint(0, MAX_PAYLOAD)
    return encode_frame(rng.randrange(256), rng.randrange(256), rng.randbytes(length))


def header(length, opcode=0x12, sequence=0x34):
    return SYNC + bytes([opcode, sequence]) + length.to_bytes(2, "little")


def to_beat(data, rng):
    """``data`` padded with garbage to a whole number of beats."""
    return bytes(data) + rng.randbytes(-len(data) % LANES)


def good(rng, length=None):
    return Transfer.packed(rng, random_frame(rng, length))


def final_beat(frame):
    return (len(frame) - 1) // LANES


def needed_keep(frame, beat):
    """The lanes of ``beat`` that hold ``frame``'s bytes."""
    return (1 << max(0, min(LANES, len(frame) - LANES * beat))) - 1


def trailing(rng, kind, frame=None):
    """A good frame with more after it in its transfer, which gives nothing: ``lanes`` (its last beat
    keeps lanes past its end too), ``bytes`` (random bytes, kept, in its last beat and after it),
    ``frame`` (a good frame from the next beat on), ``unkept`` (the last beat's lanes past the frame
    unkept, then a good frame) or ``sync`` (beats starting with SYNC and a header)."""
    frame = random_frame(rng) if frame is None else frame
    if kind == "lanes":
        transfer = Transfer.packed(rng, frame)
        transfer.keeps[-1] |= rng.choice([FULL, rng.randrange(1 << LANES)])
        return transfer
    if kind == "bytes":
        return Transfer.packed(rng, frame + rng.randbytes(rng.randint(1, 3 * LANES)))
    if kind == "frame":
        return Transfer.packed(rng, to_beat(frame, rng) + random_frame(rng))
    if kind == "unkept":
        transfer = Transfer.packed(rng, to_beat(frame, rng) + random_frame(rng))
        transfer.keeps[final_beat(frame)] = needed_keep(frame, final_beat(frame))
        return transfer
    if kind == "sync":
        return Transfer.packed(rng, to_beat(frame, rng) + b"".join(
            to_beat(header(rng.randint(0, MAX_PAYLOAD)), rng) for _ in range(rng.randint(1, 3))))
    raise ValueError(kind)


TRAILING = ["lanes", "bytes", "frame", "unkept", "sync"]


def corrupted(rng, region):
    """A frame with a bit flipped in ``region`` (sync, opcode, sequence, length, payload, crc), and
    maybe a good frame after it in the transfer."""
    frame = bytearray(random_frame(rng, rng.randint(1, MAX_PAYLOAD) if region == "payload" else None))
    start = {"sync": 0, "opcode": 2, "sequence": 3, "length": 4, "payload": HEADER_BYTES,
             "crc": len(frame) - CRC_BYTES}[region]
    size = {"sync": 2, "opcode": 1, "sequence": 1, "length": 2, "payload": len(frame) - OVERHEAD,
            "crc": CRC_BYTES}[region]
    bit = rng.randrange(8 * start, 8 * (start + size))
    frame[bit // 8] ^= 1 << bit % 8
    if rng.random() < 0.3:
        return Transfer.packed(rng, to_beat(frame, rng) + random_frame(rng))
    return Transfer.packed(rng, frame)


def cut(rng, kind=None):
    """A transfer that ends before its frame: after 1..5 bytes (no whole header: nothing), 6..7 (a
    partial first beat), a whole number of beats, the CRC's first byte, the frame's last byte, or
    anywhere."""
    frame = random_frame(rng)
    kind = rng.choice(["header", "first", "beats", "crc", "last", "any"]) if kind is None else kind
    at = {"header": rng.randint(1, HEADER_BYTES - 1), "first": rng.randint(HEADER_BYTES, LANES - 1),
          "beats": LANES * rng.randint(1, max(1, (len(frame) - 1) // LANES)), "crc": len(frame) - CRC_BYTES,
          "last": len(frame) - 1, "any": rng.randrange(HEADER_BYTES, len(frame))}[kind]
    return Transfer.packed(rng, frame[:at])


def hole(rng, beat=None, length=None):
    """A transfer whose frame has a beat that does not keep all of its bytes (a beat inside the frame
    keeping nothing, missing one lane, or random), the transfer going on after it (maybe with a good
    frame from the next beat). In the first beat the hole is in lanes past the header; ``beat``
    "final" is the frame's last."""
    frame = random_frame(rng, length)
    if rng.random() < 0.4:
        transfer = Transfer.packed(rng, to_beat(frame, rng) + random_frame(rng))
    else:
        transfer = Transfer.packed(rng, frame)
    beat = {None: rng.randint(0, final_beat(frame)), "final": final_beat(frame)}.get(beat, beat)
    needed = needed_keep(frame, beat) & (~HEADER_LANES if beat == 0 else FULL)
    lanes = [lane for lane in range(LANES) if needed >> lane & 1]
    missing = rng.choice([needed, 1 << rng.choice(lanes), rng.randrange(1, 1 << LANES) & needed or needed])
    transfer.keeps[beat] &= ~missing
    return transfer


def unsynced(rng, kind=None):
    """A transfer whose first beat does not start with SYNC and a whole header (mostly with a good
    frame from its next beat on): random, SYNC's bytes swapped, SYNC in lane 1, a first beat keeping
    nothing, a frame's header lanes not all kept (a whole good frame else), one short beat."""
    kind = rng.choice(["random", "swapped", "late", "empty", "unkept", "short"]) if kind is None else kind
    rest = random_frame(rng) if rng.random() < 0.8 else rng.randbytes(rng.randint(0, 3 * LANES))
    if kind == "random":
        first = rng.randbytes(LANES)
        while first[:len(SYNC)] == SYNC:
            first = rng.randbytes(LANES)
        return Transfer.packed(rng, first + rest)
    if kind == "swapped":
        return Transfer.packed(rng, to_beat(SYNC[::-1] + header(rng.randint(0, 8))[2:], rng) + rest)
    if kind == "late":
        return Transfer.packed(rng, to_beat(rng.randbytes(1) + header(rng.randint(0, 8)), rng) + rest)
    if kind == "empty":
        transfer = Transfer.packed(rng, to_beat(random_frame(rng)[:LANES], rng) + rest)
        transfer.keeps[0] = 0
        return transfer
    if kind == "unkept":
        transfer = Transfer.packed(rng, random_frame(rng))
        transfer.keeps[0] &= ~rng.randrange(1, 1 << HEADER_BYTES)
        return transfer
    if kind == "short":
        return Transfer.packed(rng, random_frame(rng)[:rng.randint(1, HEADER_BYTES - 1)])
    raise ValueError(kind)


def too_long(rng, kind=None):
    """A frame longer than MAX_PAYLOAD: a whole one of MAX_PAYLOAD + 1 bytes (its CRC good), a header
    of any longer length with random beats after it or a good frame from the next beat on, a header
    alone in one beat, a header with length 0xFFFF and a first beat missing lanes past the header."""
    kind = rng.choice(["whole", "random", "frame", "alone", "partial"]) if kind is None else kind
    length = rng.choice([MAX_PAYLOAD + 1, MAX_PAYLOAD + 2, 0xFFFF, rng.randint(MAX_PAYLOAD + 1, 0xFFFF)])
    if kind == "whole":
        return Transfer.packed(rng, random_frame(rng, MAX_PAYLOAD + 1))
    if kind == "random":
        return Transfer.packed(rng, header(length, rng.randrange(256), rng.randrange(256))
                               + rng.randbytes(rng.randint(0, 4 * LANES)))
    if kind == "frame":
        return Transfer.packed(rng, to_beat(header(length), rng) + random_frame(rng))
    if kind == "alone":
        return Transfer.packed(rng, header(length) + rng.randbytes(rng.randint(0, LANES - HEADER_BYTES)))
    if kind == "partial":
        transfer = Transfer.packed(rng, header(0xFFFF) + rng.randbytes(3 * LANES))
        transfer.keeps[0] &= ~(rng.randrange(1, 1 << (LANES - HEADER_BYTES)) << HEADER_BYTES)
        return transfer
    raise ValueError(kind)


def stalled(rng, gap, beat=None, splice=False, length=None):
    """A good frame (of 2 beats or more, as every frame) with no beat for ``gap`` cycles before its
    ``beat`` (1 or more); with ``splice``, the rest of the transfer from that beat on is a whole good
    frame instead."""
    frame = random_frame(rng, length)
    beat = rng.randint(1, final_beat(frame)) if beat is None else beat
    data = frame[:LANES * beat] + random_frame(rng) if splice else frame
    return Transfer.packed(rng, data, {beat: gap})


def random_transfer(rng):
    """Any kind, with stalls now and then (in or out of the frame, long or short)."""
    kind = rng.choice(["good", "good", "good", "trailing", "corrupted", "cut", "hole", "no_sync", "too_long",
                       "stalled"])
    if kind == "good":
        transfer = good(rng)
    elif kind == "trailing":
        transfer = trailing(rng, rng.choice(TRAILING))
    elif kind == "corrupted":
        transfer = corrupted(rng, rng.choice(["sync", "opcode", "sequence", "length", "payload", "crc"]))
    elif kind == "cut":
        transfer = cut(rng)
    elif kind == "hole":
        transfer = hole(rng)
    elif kind == "no_sync":
        transfer = unsynced(rng)
    elif kind == "too_long":
        transfer = too_long(rng)
    else:
        transfer = stalled(rng, rng.choice([rng.randint(1, TIMEOUT - 1), TIMEOUT - 1, TIMEOUT,
                                            rng.randint(TIMEOUT, 2 * TIMEOUT)]), splice=rng.random() < 0.5)
    if rng.random() < 0.15:  # more stalls, anywhere in the transfer (before its first beat too)
        beat = rng.randrange(len(transfer.keeps))
        transfer.stalls[beat] = max(transfer.stalls.get(beat, 0), rng.randint(1, 2 * TIMEOUT))
    return transfer


def with_good_frames(rng, transfers):
    """Each transfer followed by a good frame's: each must arrive whatever came before."""
    return [each for transfer in transfers for each in (transfer, good(rng))]


# -- the testbench's parts -----------------------------------------------------------------------

def pauses(rng, probability):
    """A cocotbext-axi pause generator: each cycle, go on with ``probability``, else pause; never
    more than LONGEST_PAUSE cycles in a row."""
    run = 0
    while True:
        pause = run < LONGEST_PAUSE and rng.random() >= probability
        run = run + 1 if pause else 0
        yield pause


class Pacer:
    """Pauses the cocotbext-axi source, its ``pause`` set before each clock edge: before the beats
    in ``stalls`` ({beat: cycles}, beats counted over the whole run) exactly that many cycles without
    a beat (then the beat at once), elsewhere at random with ``probability`` to go on, never more than
    LONGEST_PAUSE cycles in a row."""

    def __init__(self, dut, source, rng, probability, stalls):
        self.dut, self.source, self.rng, self.probability, self.stalls = dut, source, rng, probability, stalls
        cocotb.start_soon(self._run())

    async def _run(self):
        dut = self.dut
        taken, hold, release, run = 0, self.stalls.get(0, 0), False, 0
        while True:
            await ReadOnly()
            if dut.s_axis_tvalid.value and dut.s_axis_tready.value:
                taken += 1
                hold = self.stalls.get(taken, 0)
            if hold:
                pause, hold, release = True, hold - 1, True
            elif release:
                pause, release = False, False
            else:
                pause = run < LONGEST_PAUSE and self.rng.random() >= self.probability
            run = run + 1 if pause else 0
            self.source.pause = pause
            await RisingEdge(dut.clk)


class BeatLog:
    """Counts cycles, records the cycle in which each beat is taken on ``s_axis``, and checks that
    ``s_axis`` is never ready while a descriptor is offered."""

    def __init__(self, dut):
        self.dut, self.cycle, self.taken, self.violations = dut, 0, [], []
        cocotb.start_soon(self._watch())

    async def _watch(self):
        dut = self.dut
        while True:
            await ReadOnly()
            ready = bool(dut.s_axis_tready.value)
            if ready and dut.s_axis_tvalid.value:
                self.taken.append(self.cycle)
            if ready and dut.frame__valid.value:
                self.violations.append(self.cycle)
            await RisingEdge(dut.clk)
            self.cycle += 1

    def check(self):
        assert not self.violations, f"s_axis ready while a descriptor was offered, cycles {self.violations[:10]}"


class HeldUntilTaken:
    """Watches the stream rule on ``frame``: a descriptor offered stays offered, unchanged, until it
    is taken. ``violations`` lists the cycles that broke it."""

    def __init__(self, dut):
        self.dut, self.violations = dut, []
        cocotb.start_soon(self._watch())

    async def _watch(self):
        dut, held, cycle = self.dut, None, 0
        while True:
            await ReadOnly()
            offered = bool(dut.frame__valid.value)
            value = str(dut.frame__payload.value)
            if held is not None and (not offered or value != held):
                self.violations.append(cycle)
            held = value if offered and not dut.frame__ready.value else None
            await RisingEdge(dut.clk)
            cycle += 1

    def check(self):
        assert not self.violations, \
            f"a descriptor withdrawn or changed before it was taken, cycles {self.violations[:10]}"


class FrameConsumer:
    """Takes descriptors from ``frame``, reading each good frame's payload through the read port while
    the descriptor is held; waits at random before taking each one. ``offered`` is the cycle (of
    ``log``) in which each descriptor was first offered."""

    def __init__(self, dut, rng, ready_probability, log):
        self.dut, self.rng, self.probability, self.log = dut, rng, ready_probability, log
        self.offered = []

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
                assert waited < within, f"{len(frames)} of {count} descriptors came: one was lost or the design hung"
            self.offered.append(self.log.cycle)
            word = dut.frame__payload.value.to_unsigned()
            fields = unpack(ReceivedFrame, word)
            await RisingEdge(dut.clk)
            payload, beats = await self.read_payload(fields["length"]) if fields["error"] == 0 else (None, None)
            while self.rng.random() >= self.probability:
                await RisingEdge(dut.clk)
            dut.frame__ready.value = 1
            await ReadOnly()
            assert dut.frame__valid.value and dut.frame__payload.value.to_unsigned() == word, \
                "the descriptor changed or went away before it was taken"
            await RisingEdge(dut.clk)
            dut.frame__ready.value = 0
            frames.append((fields["opcode"], fields["sequence"], fields["length"], fields["error"], payload, beats))
        return frames

    def outputs(self):
        return self.dut.payload_data.value.to_unsigned(), self.dut.payload_beat.value.to_unsigned()

    async def read_payload(self, length):
        """The first ``length`` payload bytes and the beats holding them (:func:`frame_beat`), an
        address a cycle in random order: the outputs must follow the address after exactly one cycle
        (and not in the same cycle), and hold through cycles with ``payload_en`` low (at random, with
        another address)."""
        dut, size = self.dut, OVERHEAD + length
        data, beats, previous = [None] * length, [None] * length, None
        for address in self.rng.sample(range(length), length):
            if previous is not None and self.rng.random() < HOLD_PROBABILITY:
                await FallingEdge(dut.clk)
                dut.payload_en.value = 0
                dut.payload_addr.value = self.rng.randrange(length)
                await RisingEdge(dut.clk)
                await ReadOnly()
                assert self.outputs() == previous, "payload_en low: the read port's outputs did not hold"
            await FallingEdge(dut.clk)
            dut.payload_en.value = 1
            dut.payload_addr.value = address
            await ReadOnly()
            if previous is not None:
                assert self.outputs() == previous, "the read port has no latency"
            await RisingEdge(dut.clk)
            await ReadOnly()
            previous = self.outputs()
            index = (address + HEADER_BYTES) // LANES
            data[address] = previous[0]
            beats[address] = previous[1] & (1 << 8 * min(LANES, size - LANES * index)) - 1
        await RisingEdge(dut.clk)
        return bytes(data), tuple(beats)


async def begin(dut):
    dut.s_axis_tvalid.value = 0
    dut.frame__ready.value = 0
    dut.payload_addr.value = 0
    dut.payload_en.value = 1
    await start(dut, CLOCK_NS)


async def expect_no_frame(dut, cycles):
    for _ in range(cycles):
        await ReadOnly()
        assert not dut.frame__valid.value, "a descriptor nobody expected"
        await RisingEdge(dut.clk)


class Received:
    """What :func:`receive` saw: ``got`` (the descriptors), ``expected`` ((transfer, descriptor,
    deciding beat) by the model), ``log`` (the beats' cycles) and ``first_beats`` (each transfer's
    first beat, counted over the run)."""

    def __init__(self, got, expected, log, first_beats):
        self.got, self.expected, self.log, self.first_beats = got, expected, log, first_beats

    def errors(self):
        return [descriptor[3] for descriptor in self.got]

    def gap_before(self, beat):
        """Cycles without a beat taken before ``beat`` (counted over the run)."""
        return self.log.taken[beat] - self.log.taken[beat - 1] - 1


async def receive(dut, rng, transfers, ready_probability=None):
    """Send ``transfers`` (queued at once, so back to back); the descriptors must be the model's, in
    order, and no more; every beat is taken, none while a descriptor is offered, each descriptor is
    offered after its deciding beat is taken and before the next transfer's first, a TOO_LONG one
    before its transfer's second beat."""
    expected = []
    for index, transfer in enumerate(transfers):
        descriptor, decided = model(transfer)
        if descriptor is not None:
            expected.append((index, descriptor, decided))
    first_beats, stalls, beats = [], {}, 0
    for transfer in transfers:
        first_beats.append(beats)
        stalls.update({beats + beat: cycles for beat, cycles in transfer.stalls.items()})
        beats += len(transfer.keeps)

    await begin(dut)
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk)
    source.log.setLevel(logging.WARNING)  # not a line a frame
    log = BeatLog(dut)
    rule = HeldUntilTaken(dut)
    if stalls:
        Pacer(dut, source, rng, VALID_PROBABILITY, stalls)
    elif VALID_PROBABILITY < 1:
        source.set_pause_generator(pauses(rng, VALID_PROBABILITY))
    consumer = FrameConsumer(dut, rng, READY_PROBABILITY if ready_probability is None else ready_probability, log)
    for transfer in transfers:
        source.send_nowait(transfer.axi_frame())
    within = 20 * beats + sum(stalls.values()) + 10 * TIMEOUT
    got = await consumer.take(len(expected), within=within)
    for number, ((index, want, _), have) in enumerate(zip(expected, got)):
        assert have == want, f"descriptor {number} of {len(expected)}, transfer {index} {transfers[index]}: " \
                             f"got {describe(have)}, the model says {describe(want)}"
    try:
        await with_timeout(source.wait(), CLOCK_NS * within, "ns")
    except SimTimeoutError:
        extra = unpack(ReceivedFrame, dut.frame__payload.value.to_unsigned()) if dut.frame__valid.value else None
        why = f"a descriptor nobody expected is held: {extra}" if extra else "s_axis hangs"
        raise AssertionError(f"{len(log.taken)} of {beats} beats taken; {why}") from None
    await expect_no_frame(dut, 3 * TIMEOUT)
    assert len(log.taken) == beats, f"{len(log.taken)} of {beats} beats taken"
    for number, (index, want, decided) in enumerate(expected):
        offered, first = consumer.offered[number], first_beats[index]
        assert log.taken[first + decided] < offered, f"descriptor {number} offered before its deciding beat"
        if index + 1 < len(transfers):
            assert offered < log.taken[first_beats[index + 1]], \
                f"descriptor {number}: the next transfer's first beat was taken before it was offered"
        if want[3] == Error.TOO_LONG and len(transfers[index].keeps) > 1:
            assert offered < log.taken[first + 1], \
                f"descriptor {number} (TOO_LONG): offered after its transfer's second beat was taken"
    for beat, cycles in stalls.items():
        assert beat == 0 or log.taken[beat] - log.taken[beat - 1] - 1 >= cycles, "a stall did not happen"
    log.check()
    rule.check()
    return Received(got, expected, log, first_beats)


# -- the tests -----------------------------------------------------------------------------------

@cocotb.test()
async def good_frames(dut):
    """Payloads of every length 0..MAX_PAYLOAD (so every size of a frame's last beat, 1..LANES) and
    random ones, a frame a transfer in XDMA's layout: each arrives whole, payload and beats."""
    rng = rng_for("good_frames")
    lengths = list(range(MAX_PAYLOAD + 1)) + [rng.randint(0, MAX_PAYLOAD) for _ in range(20)]
    rng.shuffle(lengths)
    assert {(OVERHEAD + length - 1) % LANES + 1 for length in lengths} == set(range(1, LANES + 1))
    received = await receive(dut, rng, [good(rng, length) for length in lengths])
    assert received.errors() == [0] * len(lengths)
    assert [descriptor[2] for descriptor in received.got] == lengths


@cocotb.test()
async def length_limit(dut):
    """A payload of MAX_PAYLOAD bytes is a good frame; longer ones are TOO_LONG from the first beat
    (the rest of the transfer dropped, a good frame there too): a whole frame of MAX_PAYLOAD + 1
    bytes, a header with a longer length and random beats, a header alone in a last beat (TOO_LONG,
    not TRUNCATED), a first beat missing lanes past the header."""
    rng = rng_for("length_limit")
    cases = [good(rng, MAX_PAYLOAD), too_long(rng, "whole"), good(rng, MAX_PAYLOAD)]
    cases += [too_long(rng, kind) for kind in ["whole", "random", "frame", "alone", "partial"] for _ in range(4)]
    transfers = with_good_frames(rng, cases)
    received = await receive(dut, rng, transfers)
    assert received.errors() == [error_of(transfer) for transfer in transfers]
    assert received.errors()[:6] == [0, 0, Error.TOO_LONG, 0, 0, 0]
    assert received.errors()[6::2] == [Error.TOO_LONG] * 20


@cocotb.test()
async def corrupted_frames(dut):
    """A bit flipped in the opcode, sequence, payload or CRC: BAD_CRC (the rest of the transfer, a good
    frame sometimes, dropped). In SYNC or the length: whatever the model says (nothing, TOO_LONG,
    TRUNCATED, BAD_CRC)."""
    rng = rng_for("corrupted_frames")
    regions = ["opcode", "sequence", "payload", "crc"] * 15 + ["sync", "length"] * 8
    cases = [corrupted(rng, region) for region in regions]
    assert [error_of(case) for case in cases[:60]] == [Error.BAD_CRC] * 60
    transfers = [each for case in cases for each in ([case, good(rng)] if rng.random() < 0.5 else [case])]
    received = await receive(dut, rng, transfers)
    assert received.errors().count(Error.BAD_CRC) >= 60


@cocotb.test()
async def truncated_frames(dut):
    """Transfers that end before their frame (TRUNCATED; within the header, nothing), and frames with a
    beat that does not keep all its bytes (TRUNCATED, the rest of the transfer dropped): each followed
    by a good frame."""
    rng = rng_for("truncated_frames")
    cuts = [cut(rng, kind) for kind in ["header", "first", "beats", "crc", "last", "any", "any"] for _ in range(5)]
    holes = [hole(rng, beat) for beat in [0, 1, None, None] for _ in range(8)]
    holes += [hole(rng, "final", length) for length in (MAX_PAYLOAD, rng.randint(0, MAX_PAYLOAD))]
    assert [error_of(case) for case in cuts] == [None] * 5 + [Error.TRUNCATED] * 30
    assert all(error_of(case) in (Error.TRUNCATED, Error.TOO_LONG) or error_of(case) is None for case in holes)
    cases = cuts + holes
    rng.shuffle(cases)
    received = await receive(dut, rng, with_good_frames(rng, cases))
    assert received.errors().count(Error.TRUNCATED) == sum(error_of(case) == Error.TRUNCATED for case in cases) > 50


@cocotb.test()
async def trailing_junk(dut):
    """A good frame and more in its transfer (kept lanes past its end, random beats, a good frame or
    beats that look like headers, the lanes after the frame unkept): the frame arrives, the rest
    gives nothing."""
    rng = rng_for("trailing_junk")
    transfers = [trailing(rng, kind) for kind in TRAILING for _ in range(12)]
    transfers += [trailing(rng, kind, random_frame(rng, length)) for kind in ("frame", "bytes")
                  for length in (0, MAX_PAYLOAD, LANES * 2 - OVERHEAD)]
    rng.shuffle(transfers)
    received = await receive(dut, rng, transfers)
    assert received.errors() == [0] * len(transfers)


@cocotb.test()
async def no_sync(dut):
    """Transfers whose first beat lacks SYNC or a whole header (random, SYNC swapped or late, a first
    beat keeping nothing, header lanes unkept, a short beat), most with a good frame from the next beat
    on: no descriptor, and the next transfer's good frame arrives."""
    rng = rng_for("no_sync")
    cases = [unsynced(rng, kind) for kind in ["random", "swapped", "late", "empty", "unkept", "short"]
             for _ in range(8)]
    assert [error_of(case) for case in cases] == [None] * len(cases)
    transfers = [each for case in cases for each in ([case, good(rng)] if rng.random() < 0.6 else [case])]
    transfers += [unsynced(rng, "random"), unsynced(rng, "unkept"), good(rng)]  # two in a row, then a frame
    received = await receive(dut, rng, transfers)
    assert received.errors() == [0] * (len(transfers) - len(cases) - 2)


@cocotb.test()
async def stalls(dut):
    """Stalls inside frames: shorter than TIMEOUT, the frame is good; TIMEOUT or longer, TRUNCATED,
    and the rest of the transfer, when it comes (a good frame sometimes), is dropped; before a
    transfer's first beat or after its frame, nothing. Each followed by a good frame."""
    rng = rng_for("stalls")
    short = [stalled(rng, gap) for gap in [1, TIMEOUT // 2, TIMEOUT - 2, TIMEOUT - 1] for _ in range(4)]
    long = [stalled(rng, gap, splice=splice) for gap in [TIMEOUT, TIMEOUT + 1, 2 * TIMEOUT]
            for splice in (False, True) for _ in range(3)]
    outside = [Transfer.packed(rng, random_frame(rng), {0: rng.randint(1, 2 * TIMEOUT)}) for _ in range(3)]
    for kind in ("unkept", "frame", "sync"):
        frame = random_frame(rng)
        transfer = trailing(rng, kind, frame)
        transfer.stalls[final_beat(frame) + 1] = 2 * TIMEOUT  # after the frame's last beat
        outside.append(transfer)
    several = Transfer.packed(rng, random_frame(rng, MAX_PAYLOAD), {beat: TIMEOUT - 1 for beat in range(1, 9)})
    assert [error_of(case) for case in short + outside + [several]] == [0] * 23
    assert [error_of(case) for case in long] == [Error.TRUNCATED] * 18
    cases = short + long + outside + [several]
    rng.shuffle(cases)
    received = await receive(dut, rng, with_good_frames(rng, cases))
    assert received.errors().count(Error.TRUNCATED) == 18 and received.errors().count(0) == 23 + len(cases)


@cocotb.test()
async def timeout_is_exact(dut):
    """A stall of TIMEOUT - 1 cycles inside a frame (before its second beat, a middle one, its last)
    is harmless; one of TIMEOUT cycles truncates it, the rest of its transfer (a good frame after the
    cut, or the frame's rest) dropped."""
    rng = rng_for("timeout_is_exact")
    cases = []
    for beat in (1, 2, 4):
        for gap in (TIMEOUT - 1, TIMEOUT):
            for splice in (False, True) if gap == TIMEOUT else (False,):
                cases.append(stalled(rng, gap, beat, splice, length=LANES * 4 - OVERHEAD + rng.randint(1, LANES)))
    assert [error_of(case) for case in cases] == [0, Error.TRUNCATED, Error.TRUNCATED] * 3
    transfers = with_good_frames(rng, cases)
    received = await receive(dut, rng, transfers)
    assert received.errors() == [0, 0, Error.TRUNCATED, 0, Error.TRUNCATED, 0] * 3
    for index, transfer in enumerate(transfers):
        for beat, cycles in transfer.stalls.items():
            if cycles < TIMEOUT:
                assert received.gap_before(received.first_beats[index] + beat) == cycles, "the stall was not exact"


@cocotb.test()
async def mixed(dut):
    """300 transfers of every kind at random (good, junk after the frame, corrupted, cut, holes, no SYNC,
    too long, stalls in and out of frames), back to back: the model's descriptors, no more."""
    rng = rng_for("mixed")
    transfers = [random_transfer(rng) for _ in range(300)]
    received = await receive(dut, rng, transfers)
    assert {0, Error.BAD_CRC, Error.TOO_LONG, Error.TRUNCATED} <= set(received.errors())
