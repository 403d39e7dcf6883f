"""The host's PCIe transport: a device's link bytes through XDMA's AXI4-Stream character devices.

    transport = XdmaTransport("/dev/xdma0")   # opens /dev/xdma0_h2c_0 and /dev/xdma0_c2h_0
    link = Link(transport)

It has pyserial's ``write``, ``read``, ``reset_input_buffer`` and ``close``, so
:class:`~neofpga.host.link.Link` runs over it unchanged. A :meth:`~XdmaTransport.write` is one
DMA transfer of whole frames (one ``write()`` on h2c); a thread keeps a large ``read()`` posted on
c2h, which the card ends at a frame's ``tlast``, and :meth:`~XdmaTransport.read` takes what it
gathered. The simulated PCIe board presents the same two paths (named pipes), so this code is
what its tests run. ``transfers_sent``, ``transfers_received``, ``bytes_sent`` and
``bytes_received`` count the DMA traffic.
"""

import collections
import os
import select
import threading
import time

from ..contract.errors import UserError
from ..contract.pcie import xdma_paths
from .link import LinkError

__all__ = ["READ_BYTES", "XdmaTransport", "H2cChannel"]

READ_BYTES = 1 << 20
"""The size of each c2h read: larger than any answer, so that the card's tlast ends it."""

POLL_SECONDS = 0.05


class XdmaTransport:
    """The XDMA device ``device`` (``/dev/xdma0``) as a transport: H2C and C2H channel ``channel``.

    ``timeout`` is how long :meth:`read` waits for a byte; ``stall_timeout`` how long a write may
    wait for the card to take its data before the DMA counts as stalled (a one-line
    :class:`~neofpga.host.link.LinkError`).
    """

    def __init__(self, device, channel=0, timeout=0.01, stall_timeout=10.0):
        self.device, self.timeout, self._stall_timeout = device, timeout, stall_timeout
        h2c, c2h = xdma_paths(device, channel)
        self._commands = H2cChannel(self._open(h2c, os.O_WRONLY), f"pcie:{device}: the card", stall_timeout)
        try:
            c2h_fd = self._open(c2h, os.O_RDONLY)
        except BaseException:
            self._commands.close()
            raise
        self.transfers_received = self.bytes_received = 0
        self._weights = None
        self._chunks = collections.deque()
        self._ready = threading.Condition()
        self._failure = None
        self._closing = False
        self._reader = threading.Thread(target=self._read_posted, args=(c2h_fd,), daemon=True,
                                        name=f"xdma c2h {device}")
        self._reader.start()

    def _open(self, path, flags):
        try:
            fd = os.open(path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            raise UserError(f"pcie:{self.device}: {path} does not exist (is the XDMA driver loaded, xdma.ko, "
                            f"and the board's PCIe bitstream running? neofpga doctor checks)") from None
        except OSError as e:
            raise UserError(f"pcie:{self.device}: cannot open {path} ({e.strerror}; the udev rule of "
                            f"docs/BOARDS.md gives your user the XDMA devices)") from None
        os.set_blocking(fd, False)  # a FIFO's (the simulated board's) writes then wait in poll, not in write
        return fd

    def write(self, data):
        """Send ``data`` (whole frames) as one DMA transfer."""
        self._commands.write(data)
        return len(data)

    @property
    def stall_timeout(self):
        """Seconds a write may wait for the card (each channel's: set here, it is theirs)."""
        return self._stall_timeout

    @stall_timeout.setter
    def stall_timeout(self, seconds):
        self._stall_timeout = self._commands.stall_timeout = seconds
        if self._weights is not None:
            self._weights.stall_timeout = seconds

    @property
    def transfers_sent(self):
        """The DMA transfers of commands sent (the weight channel's are its own)."""
        return self._commands.transfers

    @property
    def bytes_sent(self):
        """The bytes of those transfers."""
        return self._commands.bytes

    @property
    def weights(self):
        """The weight channel, if one was opened (else None)."""
        return self._weights

    def weight_channel(self):
        """The H2C channel that carries a streamed design's weights (``_h2c_1``): an
        :class:`H2cChannel`, opened on first use."""
        if self._weights is None:
            path = xdma_paths(self.device, 1)[0]
            self._weights = H2cChannel(self._open(path, os.O_WRONLY), f"{path}: the card", self.stall_timeout)
        return self._weights

    def read(self, size):
        """Up to ``size`` bytes that the card sent, waiting up to ``timeout`` for the first."""
        with self._ready:
            if not self._chunks and self._failure is None:
                self._ready.wait(self.timeout)
            if not self._chunks and self._failure is not None:
                raise LinkError(f"pcie:{self.device}: the C2H DMA failed ({self._failure}): was the board reset "
                                f"or its bitstream reloaded?")
            out = bytearray()
            while self._chunks and len(out) < size:
                chunk = self._chunks.popleft()
                want = size - len(out)
                out += chunk[:want]
                if len(chunk) > want:
                    self._chunks.appendleft(chunk[want:])
            return bytes(out)

    def reset_input_buffer(self):
        """Forget what arrived and was not read."""
        with self._ready:
            self._chunks.clear()

    def close(self):
        """Close both devices (the reader closes c2h when its posted read returns); again, nothing."""
        if self._closing:
            return
        self._closing = True
        self._commands.close()
        if self._weights is not None:
            self._weights.close()
        self._reader.join(2 * POLL_SECONDS)

    def _read_posted(self, fd):
        """The reader thread: reads of :data:`READ_BYTES` on c2h, each one DMA transfer, until closed."""
        try:
            while not self._closing:
                if not select.select([fd], [], [], POLL_SECONDS)[0]:
                    continue
                try:
                    chunk = os.read(fd, READ_BYTES)
                except (BlockingIOError, TimeoutError):  # the driver's c2h timeout: nothing came
                    continue
                except OSError as e:
                    with self._ready:
                        self._failure = e.strerror
                        self._ready.notify()
                    return
                with self._ready:
                    if not chunk:  # the end of the file: the card's side closed it (the simulated board stopped)
                        self._failure = "the card closed it"
                        self._ready.notify()
                        return
                    self.transfers_received += 1
                    self.bytes_received += len(chunk)
                    self._chunks.append(chunk)
                    self._ready.notify()
        finally:
            os.close(fd)


class H2cChannel:
    """An H2C channel: each :meth:`write` one DMA transfer, ``transfers`` and ``bytes`` counting them.
    ``who`` names the card in its one-line errors."""

    def __init__(self, fd, who, stall_timeout):
        self.fd, self.who, self.stall_timeout = fd, who, stall_timeout
        self.transfers = self.bytes = 0

    def write(self, data):
        """Write all of ``data`` as one transfer; a one-line :class:`LinkError` if the card takes
        nothing for ``stall_timeout`` seconds, or the write fails."""
        view, deadline = memoryview(data), time.monotonic() + self.stall_timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [self.fd], [], left)[1]:
                raise LinkError(f"{self.who} took no data for {self.stall_timeout:g} s: its H2C DMA stalled (reset "
                                f"the board or reload its bitstream)")
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                continue
            except OSError as e:
                raise LinkError(f"{self.who}'s H2C DMA failed ({e.strerror}): was the board reset or its "
                                f"bitstream reloaded?") from None
        self.transfers += 1
        self.bytes += len(data)

    def close(self):
        """Close the channel's device."""
        os.close(self.fd)
