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

__all__ = ["BOARD_DEVICES", "is_board_device", "BoardModel", "simulated_parameters", "board_versions",
           "check_board_gateware", "connect_board", "open_board_model"]

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


def _log(text):
    print(text, file=sys.stderr, flush=True)


def simulated_parameters(board=None, uart=False):
    """The accelerator ``--device sim`` runs: the simulated board's, or board ``board``'s (its
    memories and clock); ``uart``: with the UART PHY in the loop."""
    from ..sim.device import SIMULATED_BOARD, UART_DIVISOR

    if board is None:
        parameters = dict(SIMULATED_BOARD)
    else:
        from ..boards.catalog import accelerator_parameters, board_named
        parameters = accelerator_parameters(board_named(board))
    return {**parameters, "uart_divisor": UART_DIVISOR} if uart else parameters


def board_versions(info):
    """The boards of the catalogue whose design, with INFO's array and clock, has INFO's memories,
    and the gateware version this neofpga builds for it: (names, version), or None."""
    from ..boards.catalog import BOARDS, accelerator_parameters
    from ..sim.device import gateware_version

    names, matched = [], None  # boards whose parameters match INFO's have the same parameters
    for board in BOARDS.values():
        if board.does_not_fit:
            continue
        parameters = accelerator_parameters(board, info["rows"], info["cols"], info["clock_hz"] / 1e6)
        if all(parameters[name] == info[name] for name in parameters if name in info):
            names.append(board.name)
            matched = parameters
    return (names, gateware_version(matched)) if names else None


def check_board_gateware(info):
    """Refuse a real board whose gateware is not what this neofpga builds for its design."""
    known = board_versions(info)
    if known is None:
        raise UserError(f"the board's design ({info['rows']}x{info['cols']} array, {info['weight_words']:,} weight "
                        f"words) is none that this neofpga builds: rebuild the bitstream (neofpga build) and flash it")
    names, version = known
    if info["gateware_version"] != version:
        raise UserError(f"the board runs gateware {info['gateware_version']:016x}, this neofpga builds "
                        f"{version:016x} for {' and '.join(names)}: rebuild the bitstream (neofpga build "
                        f"--board {names[0] if len(names) == 1 else 'BOARD'}) and flash it")


def _low_latency(transport):
    """Ask the USB serial driver to pass short answers on at once (Linux's ftdi_sio then sets its
    latency timer to 1 ms, from 16): every command waits for an answer."""
    try:
        transport.set_low_latency_mode(True)
    except (AttributeError, NotImplementedError, OSError, ValueError):
        pass  # other systems, or a port that is not a tty: docs/BOARDS.md says how to set it by hand


def connect_board(device, trace=None, uart=False, board=None):
    """The :class:`Accelerator` on board ``device``, its versions checked; returns (accelerator,
    close) where ``close`` closes the link and stops a simulated board this started.

    ``board``: with ``sim``, simulate that board's accelerator; ``uart``: with ``sim``, the UART in the loop.
    """
    import serial

    from ..sim.device import gateware_version

    started = None
    if device == "sim":
        from ..sim.device import start_simulated_board
        parameters = simulated_parameters(board, uart)
        started = start_simulated_board(parameters, trace=trace, log=_log)
        url, baud, simulated = started.url, DEFAULT_BAUD, True
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
        if not simulated:
            _low_latency(transport)
        link = Link(transport, timeout=10.0 if simulated else 1.0)

        def close():
            link.close()
            if started is not None:
                started.close()

        try:
            accelerator = Accelerator(link)
            info = accelerator.device_info
            check_info(info, {"numerics_version": NUMERICS_VERSION})
            if device == "sim":
                check_info(info, {"gateware_version": gateware_version(parameters)})
            elif simulated:  # a sim-server runs any simulated design
                candidates = [simulated_parameters(name, with_uart) for name in (None, board)
                              for with_uart in (False, True)]
                if not any(info["gateware_version"] == gateware_version(p) for p in candidates):
                    raise UserError("the simulated board runs gateware this neofpga does not build: pass the "
                                    "--board it was started with, or restart neofpga sim-server from this neofpga")
            else:
                check_board_gateware(info)
        except BaseException:
            link.close()
            raise
        return accelerator, close
    except BaseException:
        if started is not None:
            started.close()
        raise


def open_board_model(device, image, residency="auto", trace=None, uart=False, board=None):
    """The model ``image`` on the board ``device`` names; ``residency`` auto, resident or stream;
    ``uart``, ``board``: as :func:`connect_board` takes them."""
    accelerator, close = connect_board(device, trace, uart, board)
    try:
        if residency == "auto":
            try:
                ops = BoardOps(image, accelerator, "resident")
            except UserError:
                ops = BoardOps(image, accelerator, "stream")
        else:
            ops = BoardOps(image, accelerator, residency)
        accelerator.reset_counters()  # the stats count from here
        return BoardModel(image, ops, accelerator.link, device, on_close=close)
    except BaseException:
        close()
        raise
