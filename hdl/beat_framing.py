"""The link's frames out of AXI4-Stream beats, a beat a cycle: the receiver of a PCIe design.

XDMA carries each of the host's writes (an H2C transfer) as beats of ``data_bytes`` bytes, every
beat full but the last, which has ``last`` and keeps a prefix of its bytes. The host writes one
frame a transfer (host/xdma.py), so a frame starts in lane 0 of a beat and its end is the
transfer's: :class:`BeatFrameReceiver` needs no SYNC hunt, takes a beat a cycle and writes it
whole into its buffer, and after any error drops the rest of the transfer.

The CRC-32 runs over a beat a cycle. Its register starts where two zero bytes take it to zlib's
initial state, so the first beat's SYNC lanes, zeroed, leave it as if the CRC had started at the
opcode; the lanes after a frame's end in its last beat are zeroed too, and the check compares the
register with zlib's residue moved on by that many zero bytes.
"""

import zlib

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..contract.protocol import CRC_BYTES, HEADER_BYTES, SYNC, Error
from .axi_stream import AxiStream
from .framing import FrameHeader, ReceivedFrame

__all__ = ["crc32_register", "BeatFrameReceiver"]

CRC_BITS = 32


def crc32_register(state, data):
    """zlib's CRC-32 register (the complement of zlib's running value) after the bytes ``data``,
    from ``state``: the function whose linear map the gateware computes."""
    return ~zlib.crc32(bytes(data), ~state & 0xFFFFFFFF) & 0xFFFFFFFF


def _crc32_step(state, data, data_bytes):
    """The register after the ``data_bytes`` bytes of ``data`` (LSB first), from ``state``: each bit
    the XOR of the state and data bits that zlib's CRC-32 says it depends on (it is linear in both)."""
    from_state = [crc32_register(1 << bit, bytes(data_bytes)) for bit in range(CRC_BITS)]
    from_data = [crc32_register(0, (1 << bit).to_bytes(data_bytes, "little")) for bit in range(8 * data_bytes)]
    bits = []
    for out in range(CRC_BITS):
        terms = [state[bit] for bit in range(CRC_BITS) if from_state[bit] >> out & 1]
        terms += [data[bit] for bit in range(8 * data_bytes) if from_data[bit] >> out & 1]
        bits.append(Cat(*terms).xor())
    return Cat(*bits)


def _before_zero_bytes(state, count):
    """The register that ``count`` zero bytes take to ``state`` (the zero byte's map is invertible)."""
    for _ in range(8 * count):  # one bit back: the bit shifted out is the one the polynomial's top bit shows
        state = ((state ^ 0xEDB88320) << 1 | 1 if state >> 31 else state << 1) & 0xFFFFFFFF
    return state


class BeatFrameReceiver(wiring.Component):
    """Frames out of AXI4-Stream beats, a frame a transfer, checked, with the frame held for the consumer.

    A transfer whose first beat does not start with SYNC and a whole header is dropped without a
    descriptor. Every other frame ends in one descriptor on :attr:`frame`, as
    :class:`~.framing.FrameReceiver`'s do: ``error`` 0 for a good frame; ``Error.TOO_LONG`` when its
    ``length`` exceeds ``max_payload`` (reported from the first beat); ``Error.TRUNCATED`` when the
    transfer ends before the frame does, a beat inside the frame does not keep its bytes, or no beat
    comes for ``timeout_cycles`` cycles; ``Error.BAD_CRC``. After an error, and after a good
    frame's end, the rest of its transfer is dropped.

    While a descriptor is offered, ``i`` is not ready and the buffer is not written; taking the
    descriptor releases both.

    Parameters
    ----------
    max_payload : int
        The longest payload, 1..65535 bytes: the buffer holds the frame (header and CRC too).
    timeout_cycles : int
        Consecutive cycles without a beat, inside a frame, after which it is ``TRUNCATED``.
    data_bytes : int
        Bytes a beat: 8, so that the first beat holds the header and no frame (10 bytes or more) ends in it.

    Ports
    -----
    i : ``In(AxiStream(data_bytes))``
        The beats of the host's transfers.
    frame : ``Out(stream.Signature(ReceivedFrame))``
        One descriptor per frame, held until taken.
    payload_addr : ``In(16)``, payload_en : ``In(1, init=1)``
        The buffer's read port: where ``payload_en`` is set, the next cycle's outputs are those of
        payload byte ``payload_addr``; else they hold.
    payload_data : ``Out(8)``
        That byte.
    payload_beat : ``Out(8 * data_bytes)``
        The frame's beat that holds it: the byte is lane ``(payload_addr + HEADER_BYTES) % data_bytes``.
    """

    def __init__(self, max_payload, timeout_cycles, data_bytes=8):
        if not 1 <= max_payload <= 0xFFFF:
            raise ValueError(f"max_payload must be 1..65535, not {max_payload}")
        if timeout_cycles < 1:
            raise ValueError(f"timeout_cycles must be at least 1, not {timeout_cycles}")
        if data_bytes != 8:  # the first beat holds a whole header, and no frame ends in it
            raise ValueError(f"a beat of {data_bytes} bytes: the receiver takes beats of 8 (XDMA's 64 bits)")
        self.max_payload, self.timeout_cycles, self.data_bytes = max_payload, timeout_cycles, data_bytes
        super().__init__({
            "i": In(AxiStream(data_bytes)),
            "frame": Out(stream.Signature(ReceivedFrame)),
            "payload_addr": In(16),
            "payload_en": In(1, init=1),
            "payload_data": Out(8),
            "payload_beat": Out(8 * data_bytes),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.data_bytes
        frame_bytes = HEADER_BYTES + self.max_payload + CRC_BYTES
        depth = -(-frame_bytes // n)

        m.submodules.buffer = buffer = memory.Memory(shape=8 * n, depth=depth, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        beat, frame = self.i.payload, self.frame.payload
        take = self.i.valid & self.i.ready

        # the read port, by payload byte
        at = Signal(16 + 1)
        lane = Signal(exact_log2(n))
        m.d.comb += [at.eq(self.payload_addr + HEADER_BYTES), read.addr.eq(at >> exact_log2(n)),
                     read.en.eq(self.payload_en), self.payload_beat.eq(read.data),
                     self.payload_data.eq(read.data.word_select(lane, 8))]
        with m.If(self.payload_en):
            m.d.sync += lane.eq(at)

        index = Signal(range(depth))                           # the beat being written
        remaining = Signal(range(frame_bytes))                 # the frame's bytes after those taken
        tail = Signal(range(n + 1))                            # the frame's bytes in its last beat
        ended = Signal()                                       # the transfer's last beat has come
        idle = Signal(range(self.timeout_cycles))              # cycles without a beat inside a frame
        m.d.comb += [write.addr.eq(index), write.data.eq(beat.data)]

        # the CRC-32, a beat a cycle (see the module's docstring)
        register = Signal(CRC_BITS)
        state = Signal(CRC_BITS)                               # the register the beat moves on
        kept = Signal(8 * n)                                   # the beat, lanes outside the frame zeroed
        m.d.comb += [state.eq(register), kept.eq(beat.data)]
        step = _crc32_step(state, kept, n)
        residue = crc32_register(0xFFFFFFFF, zlib.crc32(b"").to_bytes(CRC_BYTES, "little"))  # any frame's
        expected = Array(Const(crc32_register(residue, bytes(n - used)), CRC_BITS) for used in range(n + 1))
        lanes_of = Array(Const((1 << used) - 1, n) for used in range(n + 1))  # a prefix of ``used`` lanes

        header = FrameHeader(beat.data[8 * len(SYNC):8 * HEADER_BYTES])
        has_sync = beat.data[:8 * len(SYNC)] == int.from_bytes(SYNC, "little")
        header_kept = beat.keep[:HEADER_BYTES].all()

        def report(error, last):
            m.d.sync += [frame.error.eq(error), ended.eq(last)]
            m.next = "DELIVER"

        with m.FSM():
            with m.State("HEAD"):  # a transfer's first beat
                m.d.comb += [self.i.ready.eq(1), write.en.eq(take), write.addr.eq(0),
                             state.eq(_before_zero_bytes(0xFFFFFFFF, len(SYNC))),
                             kept.eq(beat.data & ~Const((1 << 8 * len(SYNC)) - 1, 8 * n))]
                with m.If(take):
                    m.d.sync += [index.eq(1), idle.eq(0), register.eq(step),
                                 remaining.eq(header.length + (HEADER_BYTES + CRC_BYTES - n))]
                    with m.If(has_sync & header_kept):
                        m.d.sync += [frame.opcode.eq(header.opcode), frame.sequence.eq(header.sequence),
                                     frame.length.eq(header.length)]
                        with m.If(header.length > self.max_payload):
                            report(Error.TOO_LONG, beat.last)
                        with m.Elif(beat.last | ~beat.keep.all()):
                            report(Error.TRUNCATED, beat.last)
                        with m.Else():
                            m.next = "BODY"
                    with m.Elif(~beat.last):
                        m.next = "DROP"

            with m.State("BODY"):
                m.d.comb += [self.i.ready.eq(1), write.en.eq(take)]
                final = remaining <= n
                needed = Mux(final, lanes_of[remaining[:ceil_log2(n + 1)]], Const((1 << n) - 1, n))
                m.d.comb += kept.eq(beat.data & Cat(bit.replicate(8) for bit in needed))
                with m.If(take):
                    m.d.sync += [index.eq(index + 1), idle.eq(0), remaining.eq(remaining - n), register.eq(step)]
                    with m.If((beat.keep & needed) != needed):
                        report(Error.TRUNCATED, beat.last)
                    with m.Elif(final):
                        m.d.sync += [tail.eq(remaining), ended.eq(beat.last)]
                        m.next = "CHECK"
                    with m.Elif(beat.last):
                        report(Error.TRUNCATED, 1)
                with m.Elif(idle == self.timeout_cycles - 1):
                    report(Error.TRUNCATED, 0)
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)

            with m.State("CHECK"):  # the register has taken the frame's last beat
                m.d.sync += frame.error.eq(Mux(register == expected[tail], 0, Error.BAD_CRC))
                m.next = "DELIVER"

            with m.State("DELIVER"):
                m.d.comb += self.frame.valid.eq(1)
                with m.If(self.frame.ready):
                    with m.If(ended):
                        m.next = "HEAD"
                    with m.Else():
                        m.next = "DROP"

            with m.State("DROP"):  # the rest of a transfer
                m.d.comb += self.i.ready.eq(1)
                with m.If(take & beat.last):
                    m.next = "HEAD"
        return m
