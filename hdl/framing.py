"""The link's framing in gateware: bytes to checked frames, and answers to bytes.

The frame format is contract/protocol.py's, imported from there::

    SYNC | opcode | sequence | length (LE) | payload | CRC-32 (LE, zlib's, over opcode..payload)

:class:`FrameReceiver` hunts for SYNC and hands each frame, checked, to its consumer with the
payload in a buffer; :class:`FrameTransmitter` frames an answer whose payload streams through it.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import crc, data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.protocol import CRC_BYTES, HEADER_BYTES, SYNC, Error

__all__ = ["FrameHeader", "ReceivedFrame", "FrameReceiver", "FrameTransmitter"]

FIELD_BYTES = HEADER_BYTES - len(SYNC)  # opcode, sequence, length: the header bytes after SYNC

FrameHeader = data.StructLayout({"opcode": 8, "sequence": 8, "length": 16})
"""A frame's header fields in the order they are sent, so its bits are the header bytes LSB first."""

ReceivedFrame = data.StructLayout({"opcode": 8, "sequence": 8, "length": 16, "error": 8})
"""A frame as received: the header fields (those not received before an error are 0) and ``error``,
0 for a good frame or an :class:`~neofpga.contract.protocol.Error` code."""

assert FrameHeader.size == 8 * FIELD_BYTES, "FrameHeader does not match the protocol's header"
assert len(SYNC) == 2 and SYNC[0] != SYNC[1], "the SYNC hunt is written for two distinct bytes"


def _crc32():
    """zlib's CRC-32 on bytes: the frame check sequence of the protocol."""
    return crc.catalog.CRC32_ISO_HDLC(data_width=8).create()


class FrameReceiver(wiring.Component):
    """Frames out of a byte stream, checked, with their payload held for the consumer.

    The receiver hunts for SYNC (after SYNC's first byte, another first byte keeps it waiting for
    the second), reads the header and writes the payload into a ``max_payload``-byte buffer while
    the CRC-32 runs over opcode..CRC; the frame is good when the register ends on the CRC's residue,
    that is when the received CRC equals the computed one. Every frame that got past SYNC ends in
    one descriptor on :attr:`frame`:

    * ``error`` 0: a good frame; its payload is ``payload[0:length]`` in the buffer.
    * ``Error.BAD_CRC``: the CRC did not match (header fields as received).
    * ``Error.TOO_LONG``: ``length`` (reported) exceeds ``max_payload``; reported as soon as the
      length is in, without waiting for the rest of the frame.
    * ``Error.TRUNCATED``: no byte came for ``timeout_cycles`` consecutive cycles after SYNC.

    While a descriptor is offered, ``i`` is not ready and the buffer is not written, so no byte is
    lost and the consumer can read the payload at leisure; taking the descriptor releases both.
    After any error the hunt goes on from the next byte to arrive: the bytes of a too-long frame
    and whatever follows a bad frame by its (possibly corrupted) length are searched for SYNC.
    Unlike the host's :class:`~neofpga.contract.protocol.FrameDecoder`, which rescans from the byte
    after a bad frame's SYNC, the gateware cannot rewind, so a good frame that starts inside the
    span of a bad one is lost (a timeout or the next SYNC after that span recovers).

    Parameters
    ----------
    max_payload : int
        The buffer's size in bytes, 1..65535: longer frames are refused with ``TOO_LONG``.
    timeout_cycles : int
        Consecutive cycles without a byte, inside a frame, after which it is ``TRUNCATED``.

    Ports
    -----
    i : ``In(stream.Signature(8))``
        The bytes of the link.
    frame : ``Out(stream.Signature(ReceivedFrame))``
        One descriptor per frame that got past SYNC, held until taken.
    payload_addr : ``In(range(max_payload))``, payload_data : ``Out(8)``
        The buffer's read port, one cycle of latency: ``payload_data`` is the byte at the
        ``payload_addr`` of the previous cycle.
    """

    def __init__(self, max_payload, timeout_cycles):
        if not 1 <= max_payload <= 0xFFFF:
            raise ValueError(f"max_payload must be 1..65535, not {max_payload}")
        if timeout_cycles < 1:
            raise ValueError(f"timeout_cycles must be at least 1, not {timeout_cycles}")
        self.max_payload, self.timeout_cycles = max_payload, timeout_cycles
        super().__init__({
            "i": In(stream.Signature(8)),
            "frame": Out(stream.Signature(ReceivedFrame)),
            "payload_addr": In(range(max_payload)),
            "payload_data": Out(8),
        })

    def elaborate(self, platform):
        m = Module()

        m.submodules.buffer = buffer = memory.Memory(shape=8, depth=self.max_payload, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        m.submodules.crc = checker = _crc32()

        byte, frame = self.i.payload, self.frame.payload
        take = self.i.valid & self.i.ready
        index = Signal(range(max(FIELD_BYTES, CRC_BYTES)))  # byte of the header or of the CRC
        count = Signal(range(self.max_payload))             # payload byte, the buffer's address
        idle = Signal(range(self.timeout_cycles))           # cycles without a byte
        length = Cat(frame.length[:8], byte)                # at the length's high byte

        m.d.comb += [
            read.addr.eq(self.payload_addr), self.payload_data.eq(read.data),
            write.addr.eq(count), write.data.eq(byte), checker.data.eq(byte),
        ]
        with m.If(take):
            m.d.sync += idle.eq(0)

        def inside_frame():
            """Take bytes into the CRC; a frame that stops arriving is TRUNCATED."""
            m.d.comb += [self.i.ready.eq(1), checker.valid.eq(take)]
            with m.If(~self.i.valid):
                with m.If(idle == self.timeout_cycles - 1):
                    report(Error.TRUNCATED)
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)

        def report(error):
            m.d.sync += frame.error.eq(error)
            m.next = "DELIVER"

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take & (byte == SYNC[0])):
                    m.next = "SYNC"

            with m.State("SYNC"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take):
                    with m.If(byte == SYNC[1]):
                        m.d.sync += [frame.eq(0), index.eq(0)]
                        m.next = "HEADER"
                    with m.Elif(byte != SYNC[0]):
                        m.next = "HUNT"

            with m.State("HEADER"):
                inside_frame()
                m.d.comb += checker.start.eq(index == 0)
                with m.If(take):
                    m.d.sync += [frame.as_value().word_select(index, 8).eq(byte), index.eq(index + 1)]
                    with m.If(index == FIELD_BYTES - 1):
                        m.d.sync += [count.eq(0), index.eq(0)]
                        with m.If(length > self.max_payload):
                            report(Error.TOO_LONG)
                        with m.Elif(length == 0):
                            m.next = "CRC"
                        with m.Else():
                            m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                inside_frame()
                m.d.comb += write.en.eq(take)
                with m.If(take):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == frame.length - 1):
                        m.next = "CRC"

            with m.State("CRC"):
                inside_frame()
                with m.If(take):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == CRC_BYTES - 1):
                        m.next = "CHECK"

            with m.State("CHECK"):  # the CRC register has taken the last byte
                report(Mux(checker.match_detected, 0, Error.BAD_CRC))

            with m.State("DELIVER"):
                m.d.comb += self.frame.valid.eq(1)
                with m.If(self.frame.ready):
                    m.next = "HUNT"
        return m


class FrameTransmitter(wiring.Component):
    """An answer's header and payload to the bytes of a frame, CRC-32 computed on the way.

    A header taken on :attr:`frame` is sent as SYNC and the header fields; then exactly
    ``length`` bytes are passed from :attr:`payload` to :attr:`o` (``payload.ready`` is
    ``o.ready`` then, and 0 at all other times), then the CRC. The bytes on :attr:`o` are
    ``encode_frame(opcode, sequence, payload)``; one byte per cycle, one idle cycle between frames.

    Ports
    -----
    frame : ``In(stream.Signature(FrameHeader))``
        The next frame's header; taken when the previous frame has been sent.
    payload : ``In(stream.Signature(8))``
        The payload bytes, ``length`` of them after each header.
    o : ``Out(stream.Signature(8))``
        The frame's bytes.
    last : ``Out(1)``
        The byte on :attr:`o` is its frame's last (an AXI4-Stream port's tlast).
    """

    frame: In(stream.Signature(FrameHeader))
    payload: In(stream.Signature(8))
    o: Out(stream.Signature(8))
    last: Out(1)

    def elaborate(self, platform):
        m = Module()

        m.submodules.crc = generator = _crc32()

        header = Signal(FrameHeader)
        wire_header = Cat(Const(int.from_bytes(SYNC, "little"), 8 * len(SYNC)), header)  # LSB first
        index = Signal(range(max(HEADER_BYTES, CRC_BYTES)))  # byte of the header or of the CRC
        count = Signal(16)                                   # payload byte
        sent = self.o.valid & self.o.ready

        m.d.comb += generator.data.eq(self.o.payload)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.frame.ready.eq(1)
                with m.If(self.frame.valid):
                    m.d.sync += [header.eq(self.frame.payload), index.eq(0), count.eq(0)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += [
                    self.o.valid.eq(1), self.o.payload.eq(wire_header.word_select(index, 8)),
                    generator.start.eq(index == len(SYNC)), generator.valid.eq(sent & (index >= len(SYNC))),
                ]
                with m.If(sent):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == HEADER_BYTES - 1):
                        m.d.sync += index.eq(0)
                        with m.If(header.length == 0):
                            m.next = "CRC"
                        with m.Else():
                            m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                m.d.comb += [
                    self.o.valid.eq(self.payload.valid), self.o.payload.eq(self.payload.payload),
                    self.payload.ready.eq(self.o.ready), generator.valid.eq(sent),
                ]
                with m.If(sent):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == header.length - 1):
                        m.next = "CRC"

            with m.State("CRC"):  # little-endian, from the register that has taken the last byte
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(generator.crc.word_select(index, 8)),
                             self.last.eq(index == CRC_BYTES - 1)]
                with m.If(sent):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == CRC_BYTES - 1):
                        m.next = "IDLE"
        return m
