"""The simulated board's design: the accelerator's parameters, its Verilog and gateware version.

The gateware version that INFO reports is the first 8 bytes of the SHA-256 of the design's
Verilog generated with version 0 (a design cannot contain the hash of itself). Converting the
full design takes seconds, so the version is remembered on disk, keyed by the hash of the
gateware's sources and the parameters; the Verilator build itself is cached by
:func:`neofpga.sim.board.build_board`, keyed by the final Verilog.
"""

import hashlib
import json
from pathlib import Path

import amaranth

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..hdl.accelerator import Accelerator
from ..hdl.uart import UARTReceiver, UARTTransmitter
from .board import SimulatedBoard, build_board
from .runner import _cache_root, verilog_for

__all__ = ["SIMULATED_BOARD", "UART_DIVISOR", "UARTLoop", "design", "gateware_version", "design_verilog",
           "board_executable", "start_simulated_board"]

SIMULATED_BOARD = dict(
    rows=9, cols=16,              # the boards' array
    activation_words=2 ** 17,     # 16-bit words a bank: 9 x 256 KiB
    weight_words=2 ** 22,         # bytes a bank: 16 x 4 MiB
    constant_words=2 ** 16,       # requantizer records
    gelu_tables=16, softmax_length=2048, max_payload=4096, timeout_cycles=2 ** 20, clock_hz=100_000_000,
)
"""The design ``--device sim`` runs: the boards' array with memories (80 MB in all) for the default
model with its weights resident and TinyStories-33M's shape streamed, context 2048."""

UART_DIVISOR = 4
"""Clock cycles a bit with the UART in the loop (``uart_divisor``): the fastest the receiver takes."""

HDL = Path(__file__).parent.parent / "hdl"


class UARTLoop(wiring.Component):
    """``top`` behind a UART, with the host's side of the line in gateware too: bytes from ``i`` are
    sent as 8N1 frames to the board's receiver, and the board's answers come back the same way to
    ``o``, so the simulated board runs both PHYs."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def __init__(self, top, divisor):
        self.top, self.divisor = top, divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        m.submodules.host_tx = host_tx = UARTTransmitter(self.divisor)
        m.submodules.board_rx = board_rx = UARTReceiver(self.divisor)
        m.submodules.board_tx = board_tx = UARTTransmitter(self.divisor)
        m.submodules.host_rx = host_rx = UARTReceiver(self.divisor)
        wiring.connect(m, wiring.flipped(self.i), host_tx.i)
        m.d.comb += [board_rx.rx.eq(host_tx.tx), host_rx.rx.eq(board_tx.tx)]
        wiring.connect(m, board_rx.o, top.i)
        wiring.connect(m, top.o, board_tx.i)
        wiring.connect(m, host_rx.o, wiring.flipped(self.o))
        return m


def design(parameters=SIMULATED_BOARD, gateware_version=0):
    """The simulated board's top: the accelerator, behind a UART loop if ``uart_divisor`` is set."""
    parameters = dict(parameters)
    divisor = parameters.pop("uart_divisor", 0)
    top = Accelerator(**parameters, gateware_version=gateware_version)
    return UARTLoop(top, divisor) if divisor else top


def _sources_key(parameters):
    digest = hashlib.sha256(json.dumps([sorted(parameters.items()), amaranth.__version__]).encode())
    here = Path(__file__).parent
    for source in [*sorted(HDL.glob("*.py")), here.parent / "host" / "protocol.py", here / "board.py",
                   here / "board_main.cpp"]:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def gateware_version(parameters=SIMULATED_BOARD):
    """The version INFO reports for the design with ``parameters`` (cached on disk)."""
    memo = _cache_root() / "versions" / f"{_sources_key(parameters)}.json"
    if memo.exists():
        return json.loads(memo.read_text())["version"]
    text = verilog_for(design(parameters))
    version = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"version": version}))
    return version


def design_verilog(parameters=SIMULATED_BOARD):
    """The Verilog of the design with ``parameters``, its gateware version filled in."""
    return verilog_for(design(parameters, gateware_version(parameters)))


def board_executable(parameters=SIMULATED_BOARD, *, trace=False, log=print):
    """The simulated board's executable for ``parameters``: built once, then found by the sources' key."""
    memo = _cache_root() / "versions" / f"{_sources_key(parameters)}-board{'-trace' if trace else ''}.json"
    if memo.exists():
        executable = Path(json.loads(memo.read_text())["executable"])
        if executable.exists():
            return executable
    log("generating the accelerator's Verilog ...")
    executable = build_board(design_verilog(parameters), trace=trace, log=log)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"executable": str(executable)}))
    return executable


def start_simulated_board(parameters=SIMULATED_BOARD, *, port=0, trace=None, log=print):
    """Build (once) and start the simulated board; a :class:`SimulatedBoard` to connect to."""
    return SimulatedBoard(board_executable(parameters, trace=trace is not None, log=log), port=port, trace=trace)
