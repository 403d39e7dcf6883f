"""The board back ends: ``sim``, ``sim:HOST:PORT`` and ``serial:PORT[@BAUD]``.

Each runs the same model graph as ``emu`` with :class:`~neofpga.host.board_ops.BoardOps` as its
device side, over a :class:`~neofpga.host.link.Link` on pyserial: a real port, or the simulated
board's TCP socket (``socket://``). ``sim`` starts a simulated board (building it the first time)
and stops it when the model is closed.
"""

import re
import sys

from .accelerator import Accelerator, check_info
from .board_ops import BoardOps
from .errors import UserError
from .golden import QuantizedDevice
from .link import Link
from .numerics import NUMERICS_VERSION
from .quantize import host_weights
from .reference import GPTNeo

__all__ = ["BOARD_DEVICES", "is_board_device", "BoardModel", "open_board_model"]

BOARD_DEVICES = {
    "sim": "the gateware on a simulated board (Verilator; built on first use)",
    "sim:HOST:PORT": "a simulated board already running (neofpga sim-server)",
    "serial:PORT[@BAUD]": "a board on a serial port (default 3000000 baud)",
}
DEFAULT_BAUD = 3_000_000
_SIM = re.compile(r"sim:(?P<host>[^:]+):(?P<port>\d+)$")
_SERIAL = re.compile(r"serial:(?P<port>[^@]+)(@(?P<baud>\d+))?$")


def is_board_device(device):
    """Whether ``device`` names a board back end (possibly malformed: open_board_model says)."""
    return device == "sim" or device.startswith(("sim:", "serial:"))


class BoardModel(GPTNeo):
    """The model graph on a board; :meth:`device_stats` reports device cycles and link traffic."""

    def __init__(self, model, ops, link, name, on_close=None):
        super().__init__(model.config, host_weights(model), QuantizedDevice(model, ops), name=name)
        self.ops, self.link, self.on_close = ops, link, on_close
        self.accelerator = ops.accelerator
        self.link_at_start = (link.commands, link.bytes_sent, link.bytes_received)

    def device_stats(self):
        """Device cycles (all, and in products), MACs, and link bytes since the weights were uploaded."""
        link = {"link_commands": self.link.commands - self.link_at_start[0],
                "link_bytes_sent": self.link.bytes_sent - self.link_at_start[1],
                "link_bytes_received": self.link.bytes_received - self.link_at_start[2],
                "link_resends": self.link.resends}
        counters = self.accelerator.counters()
        return {"device_cycles": counters["cycles"], "device_matmul_cycles": counters["matmul_cycles"],
                "device_macs": counters["macs"], **link}

    def close(self):
        """Close the link, and stop the simulated board if this model started it."""
        self.link.close()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None


def _expected_versions(simulated, parameters):
    expected = {"numerics_version": NUMERICS_VERSION}
    if simulated:
        from ..sim.device import gateware_version
        expected["gateware_version"] = gateware_version(parameters)
    return expected


def _log(text):
    print(text, file=sys.stderr, flush=True)


def open_board_model(device, image, residency="auto", trace=None, uart=False):
    """The model ``image`` on the board ``device`` names; ``residency`` auto, resident or stream;
    ``uart``: the simulated board with the UART PHY in the loop."""
    import serial

    from ..sim.device import SIMULATED_BOARD, UART_DIVISOR

    board = None
    parameters = {**SIMULATED_BOARD, "uart_divisor": UART_DIVISOR} if uart else SIMULATED_BOARD
    if device == "sim":
        from ..sim.device import start_simulated_board
        board = start_simulated_board(parameters, trace=trace, log=_log)
        url, baud, simulated = board.url, DEFAULT_BAUD, True
    elif match := _SIM.match(device):
        url, baud, simulated = f"socket://{match['host']}:{match['port']}", DEFAULT_BAUD, True
    elif match := _SERIAL.match(device):
        url, baud, simulated = match["port"], int(match["baud"] or DEFAULT_BAUD), False
    else:
        raise UserError(f"bad board device {device!r}: use sim, sim:HOST:PORT or serial:PORT[@BAUD]")
    try:
        try:
            transport = serial.serial_for_url(url, baudrate=baud, timeout=0.01)
        except (serial.SerialException, ValueError) as e:
            raise UserError(f"{device}: cannot open {url} ({e})") from None
        link = Link(transport, timeout=10.0 if simulated else 1.0)
        accelerator = Accelerator(link)
        if device != "sim" and simulated:  # a sim-server runs either design
            with_uart = {**SIMULATED_BOARD, "uart_divisor": UART_DIVISOR}
            from ..sim.device import gateware_version
            if accelerator.device_info["gateware_version"] == gateware_version(with_uart):
                parameters = with_uart
        check_info(accelerator.device_info, _expected_versions(simulated, parameters))
        if residency == "auto":
            try:
                ops = BoardOps(image, accelerator, "resident")
            except UserError:
                ops = BoardOps(image, accelerator, "stream")
        else:
            ops = BoardOps(image, accelerator, residency)
        accelerator.reset_counters()  # the stats count from here
        return BoardModel(image, ops, link, device, on_close=board.close if board else None)
    except BaseException:
        if board is not None:
            board.close()
        raise
