"""The link protocol's frame format and codes: the one source for the gateware and the host.

A frame, in either direction::

    SYNC (2 bytes) | opcode (1) | sequence (1) | length (2, little-endian) | payload | CRC-32 (4, little-endian)

The CRC is zlib's CRC-32 (CRC-32/ISO-HDLC) over opcode, sequence, length and payload. Every command
frame gets exactly one answer frame with the same sequence number: the command's opcode with
:data:`ANSWER` set and its data, or :data:`ERROR` with a one-byte :class:`Error` code. A frame that
fails its CRC, is longer than the device's buffer, or stops arriving for a timeout is answered
with an error and changes nothing; the decoder then hunts for the next SYNC.

This module is plain Python (no Amaranth, no numpy): ``hdl/`` builds its decoder and encoder from
these constants, ``host/`` encodes commands and decodes answers with :func:`encode_frame` and
:class:`FrameDecoder`, and the tests use both as the reference.
"""

import enum
import zlib

__all__ = ["SYNC", "HEADER_BYTES", "CRC_BYTES", "ANSWER", "ERROR", "Error", "Frame", "FrameDecoder",
           "encode_frame"]

SYNC = b"\xa5\x5a"
HEADER_BYTES = len(SYNC) + 4   # sync, opcode, sequence, length
CRC_BYTES = 4
ANSWER = 0x80                  # set in the opcode of every answer
ERROR = 0xFF                   # the opcode of an error answer; its payload is one Error byte


class Error(enum.IntEnum):
    """Error codes in an :data:`ERROR` answer's payload."""
    BAD_CRC = 1          # the frame's CRC did not match: nothing was applied
    TOO_LONG = 2         # the length exceeds the device's frame buffer
    TRUNCATED = 3        # the frame stopped arriving before its end (the device's timeout)
    UNKNOWN_OPCODE = 4
    BAD_ARGUMENT = 5     # an address or length out of range, or a payload of the wrong size
    BUSY = 6             # the device cannot take the command now


class Frame:
    """A decoded frame: ``opcode``, ``sequence`` and ``payload`` (bytes)."""

    __slots__ = ("opcode", "sequence", "payload")

    def __init__(self, opcode, sequence, payload=b""):
        self.opcode, self.sequence, self.payload = opcode, sequence, bytes(payload)

    def __eq__(self, other):
        return isinstance(other, Frame) and (self.opcode, self.sequence, self.payload) == \
            (other.opcode, other.sequence, other.payload)

    def __repr__(self):
        return f"Frame(opcode={self.opcode:#04x}, sequence={self.sequence}, payload={len(self.payload)} bytes)"


def encode_frame(opcode, sequence, payload=b""):
    """The bytes of one frame."""
    if not 0 <= opcode <= 0xFF or not 0 <= sequence <= 0xFF:
        raise ValueError("opcode and sequence are single bytes")
    if len(payload) > 0xFFFF:
        raise ValueError(f"a payload of {len(payload)} bytes does not fit the 16-bit length")
    body = bytes([opcode, sequence]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return SYNC + body + zlib.crc32(body).to_bytes(CRC_BYTES, "little")


class FrameDecoder:
    """Bytes in, frames out: the host's side of the link.

    :meth:`feed` returns the complete frames the bytes finish, and counts what it had to skip:
    ``skipped`` bytes of garbage before a SYNC, and ``bad_frames`` that failed their CRC or were
    longer than ``max_payload`` (after which it hunts for the next SYNC from the byte after the
    bad frame's SYNC, so a frame hidden inside garbage is still found).
    """

    def __init__(self, max_payload=0xFFFF):
        self.max_payload = max_payload
        self.buffer = bytearray()
        self.skipped = self.bad_frames = 0

    def feed(self, data):
        self.buffer += data
        frames = []
        while True:
            start = self.buffer.find(SYNC)
            if start < 0:
                keep = 1 if self.buffer.endswith(SYNC[:1]) else 0
                self.skipped += len(self.buffer) - keep
                del self.buffer[:len(self.buffer) - keep]
                return frames
            self.skipped += start
            del self.buffer[:start]
            if len(self.buffer) < HEADER_BYTES:
                return frames
            length = int.from_bytes(self.buffer[4:6], "little")
            if length > self.max_payload:
                self._drop_sync()
                continue
            end = HEADER_BYTES + length + CRC_BYTES
            if len(self.buffer) < end:
                return frames
            body = bytes(self.buffer[len(SYNC):HEADER_BYTES + length])
            if zlib.crc32(body) != int.from_bytes(self.buffer[end - CRC_BYTES:end], "little"):
                self._drop_sync()
                continue
            frames.append(Frame(body[0], body[1], body[4:]))
            del self.buffer[:end]

    def _drop_sync(self):
        self.bad_frames += 1
        self.skipped += len(SYNC)
        del self.buffer[:len(SYNC)]
