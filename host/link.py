"""The host's end of the link: one command out, its answer back, retried through link damage.

    link = Link(serial.serial_for_url("socket://127.0.0.1:5555", timeout=0.05))
    payload = link.command(Opcode.INFO)

Every command gets the next sequence number; a retry resends the very same frame, so a device
that did apply it (and lost only the answer) recognises the retry and does not apply it again
(the retry rule of :mod:`neofpga.contract.protocol`). A transport is
anything with pyserial's ``write(bytes)``, ``read(n)`` (what arrived within its timeout),
``reset_input_buffer()`` and ``close()``.
"""

import collections
import time

from ..contract.errors import UserError
from ..contract.protocol import (ANSWER, CRC_BYTES, ERROR, HEADER_BYTES, STREAM, Error, FrameDecoder, Opcode,
                                 encode_frame)

__all__ = ["LINK_DAMAGE", "LinkError", "StreamBroken", "Link"]

LINK_DAMAGE = {Error.BAD_CRC, Error.TRUNCATED, Error.TOO_LONG}
"""Error answers that mean the command frame was damaged on its way, so nothing was applied: retried.
(The host never sends a frame longer than the device's max_payload, so TOO_LONG is a damaged length.)"""

ERROR_MEANINGS = {
    Error.UNKNOWN_OPCODE: "the device does not know this command",
    Error.BAD_ARGUMENT: "an address or length out of range, or a payload of the wrong size",
    Error.BUSY: "the device cannot take the command now",
    Error.INTERRUPTED: "a frame arrived while it ran",
    Error.BAD_CRC: "a damaged frame", Error.TRUNCATED: "a frame cut short", Error.TOO_LONG: "a frame too long",
}


class LinkError(UserError):
    """The device refused a command, or no good answer came through the retries (one line)."""


class StreamBroken(LinkError):
    """A streaming command's frames stopped coming, or one was lost or damaged: the caller may run it again."""


def _name(opcode):
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"opcode {opcode:#04x}"


class Link:
    """Commands over a ``transport``: numbered, answered, retried.

    ``timeout`` is how long the line may stay silent before an answer is given up and the command
    resent (the transport's own read timeout is the granularity); ``retries`` is how many times a
    command is resent before :class:`LinkError`. ``commands``, ``bytes_sent``,
    ``bytes_received`` and ``resends`` count the traffic. A new link starts its sequence numbers from 1: open it with a command that is never
    skipped as a retry (an INFO, as :class:`~neofpga.host.driver.AcceleratorDriver` does), so that a
    device still holding the previous session's last command cannot mistake the first one for it.
    """

    def __init__(self, transport, timeout=1.0, retries=8):
        self.transport, self.timeout, self.retries = transport, timeout, retries
        self.sequence = 0
        self.decoder = FrameDecoder()
        self.frames = collections.deque()
        self.bytes_sent = self.bytes_received = self.resends = self.commands = 0

    def command(self, opcode, payload=b""):
        """Send one command and return its answer's payload; raises :class:`LinkError`."""
        self.sequence = (self.sequence + 1) % 256
        self.commands += 1
        frame = encode_frame(opcode, self.sequence, payload)
        problem = None
        for attempt in range(1 + self.retries):
            if attempt:
                self._restart()
                self.resends += 1
            self.transport.write(frame)
            self.bytes_sent += len(frame)
            answer = self._receive(opcode)
            if answer is None:
                problem = f"no answer within {self.timeout} s"
            elif answer.opcode == opcode | ANSWER:
                return answer.payload
            else:
                code = self._error_code(opcode, answer)
                if code not in LINK_DAMAGE:
                    raise LinkError(f"the device refused {_name(opcode)}: {code.name} ({ERROR_MEANINGS[code]})")
                problem = f"the device kept reporting {code.name}"
        raise LinkError(f"{_name(opcode)} failed after {1 + self.retries} tries: {problem} "
                        f"(is the board connected and running the neofpga gateware?)")

    def stream(self, opcode, payload, on_frame, first_wait=None):
        """Send a command that streams frames of its own before its answer (GENERATE's STREAM
        frames): each one's payload goes to ``on_frame`` as it comes; returns the answer's payload.
        The first frame may take ``first_wait`` seconds (a GENERATE's silent prefill), the others
        ``timeout``. It is sent once: a silence of that long or a damaged command is a :class:`StreamBroken`
        (``on_frame`` may raise one too, for a frame it finds missing), any other error a
        :class:`LinkError`; running it again is the caller's."""
        self.sequence = (self.sequence + 1) % 256
        self.commands += 1
        frame = encode_frame(opcode, self.sequence, payload)
        self.transport.write(frame)
        self.bytes_sent += len(frame)
        wait = max(first_wait or 0, self.timeout)
        while True:
            answer = self._receive(opcode, STREAM, wait=wait)
            if answer is None:
                raise StreamBroken(f"{_name(opcode)}: no frame within {wait:g} s")
            wait = self.timeout
            if answer.opcode == STREAM:
                on_frame(answer.payload)
            elif answer.opcode == opcode | ANSWER:
                return answer.payload
            else:
                code = self._error_code(opcode, answer)
                error = StreamBroken if code in LINK_DAMAGE | {Error.INTERRUPTED} else LinkError  # bytes in its way
                raise error(f"the device stopped {_name(opcode)}: {code.name} ({ERROR_MEANINGS[code]})")

    def close(self):
        """Close the transport."""
        self.transport.close()

    def _receive(self, opcode, *others, wait=None):
        """This command's answer or error frame (or one of opcodes ``others`` it sends), or None once
        the line has been silent for ``wait`` (default ``timeout``) before the first byte, ``timeout`` after."""
        deadline = time.monotonic() + (self.timeout if wait is None else wait)
        while True:
            while self.frames:
                frame = self.frames.popleft()
                if frame.sequence == self.sequence and frame.opcode in (opcode | ANSWER, ERROR, *others):
                    return frame  # anything else is a stale answer to an earlier frame
            data = self.transport.read(self._wanted())
            if data:
                self.bytes_received += len(data)
                self.frames.extend(self.decoder.feed(data))
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() >= deadline:
                return None

    def _wanted(self):
        """The bytes that complete the frame the decoder is in (so a blocking read returns at its end)."""
        buffer = self.decoder.buffer
        if len(buffer) < HEADER_BYTES:
            return HEADER_BYTES - len(buffer)
        return HEADER_BYTES + int.from_bytes(buffer[4:6], "little") + CRC_BYTES - len(buffer)

    def _restart(self):
        """Forget what arrived for the failed attempt: a retry starts from a clean line."""
        self.transport.reset_input_buffer()
        self.decoder = FrameDecoder()
        self.frames.clear()

    def _error_code(self, opcode, answer):
        """The :class:`Error` of an error answer; a malformed one is a :class:`LinkError`."""
        try:
            (code,) = answer.payload
            return Error(code)
        except ValueError:
            raise LinkError(f"the device answered {_name(opcode)} with a malformed error "
                            f"{answer.payload.hex() or '(empty)'}") from None
