"""The simulated board: its design (the accelerator, or the accelerator behind a UART loop), built
once by Verilator and started as a process.

The design's parameters are the contract's (:data:`neofpga.contract.design.SIMULATED_BOARD`, or a
board's); the gateware version that INFO reports is
:func:`neofpga.contract.gateware_version.gateware_version`, a hash of everything that goes into the
Verilog. The executable is remembered on disk by that version, the loop's divisor, and the
harness's own files; the Verilator build under it is cached by
:func:`neofpga.sim.board_process.build_board`, keyed by the final Verilog.
"""

import hashlib
import json
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.gateware_version import gateware_version
from ..contract.pcie import XDMA_GEN2_X4
from ..hdl.accelerator import Accelerator
from ..hdl.axi_stream import AxiStreamHost
from ..hdl.streamed_memory import WithStreamedMemory
from ..hdl.uart import UARTReceiver, UARTTransmitter
from .board_process import HARNESS_FILES, SimulatedBoard, build_board, dram_option
from .control_registers import WithControlRegisters
from .runner import _cache_root, verilog_for

__all__ = ["UARTLoop", "design", "design_verilog", "board_key", "board_executable", "start_simulated_board"]


class UARTLoop(wiring.Component):
    """``top`` behind a UART, with the host's side of the line in gateware too: bytes from ``i`` are
    sent as 8N1 frames to the board's receiver, and the board's answers come back the same way to
    ``o``, so the simulated board runs both PHYs."""

    def __init__(self, top, divisor):
        self.top, self.divisor = top, divisor
        dram = {"dram": top.signature.members["dram"]} if "dram" in top.signature.members else {}  # passed through
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8)), **dram})

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
        if "dram" in self.signature.members:
            wiring.connect(m, top.dram, wiring.flipped(self.dram))
        return m


def design(parameters, gateware_version=0):
    """The simulated board's top: the accelerator (with :class:`~.control_registers.ControlRegisters`
    on a DRAM controller's port, if it has one; with its block RAM and weight stream on the DRAM
    port, :class:`~neofpga.hdl.streamed_memory.WithStreamedMemory`, if it streams), behind a UART loop if ``uart_divisor`` is set, or
    an AXI4-Stream port (:class:`~neofpga.hdl.axi_stream.AxiStreamHost`) if ``pcie_beat_bytes`` is."""
    parameters = dict(parameters)
    divisor = parameters.pop("uart_divisor", 0)
    top = Accelerator(**parameters, gateware_version=gateware_version)
    if top.control_words:  # a board's controller: registers that read back in its place
        top = WithControlRegisters(top, top.control_words)
    if parameters.get("stream_words"):  # a PCIe board's streamed design: its block RAM and the weight stream
        top = WithStreamedMemory(top, parameters["dram_words"] - parameters["stream_words"])
    if parameters.get("pcie_beat_bytes"):
        return AxiStreamHost(top, parameters["pcie_beat_bytes"])
    return UARTLoop(top, divisor) if divisor else top


def design_verilog(parameters, sources=None):
    """The Verilog of the design with ``parameters``, its gateware version filled in."""
    return verilog_for(design(parameters, gateware_version(parameters, sources)))


def board_key(parameters, sources=None, trace=False):
    """What the executable of the simulated board for ``parameters`` is remembered by: the gateware
    version (``sources``: a :func:`~neofpga.contract.gateware_version.sources_digest`), the UART
    loop's divisor, this module, the control registers' and the harness's files, and tracing."""
    digest = hashlib.sha256(json.dumps([gateware_version(parameters, sources), parameters.get("uart_divisor", 0),
                                        parameters.get("pcie_beat_bytes", 0), trace]).encode())
    for path in (Path(__file__), Path(__file__).with_name("control_registers.py"), *HARNESS_FILES):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def board_executable(parameters, *, trace=False, log=print, sources=None):
    """The simulated board's executable for ``parameters``: built once, then found by :func:`board_key`."""
    memo = _cache_root() / "versions" / f"{board_key(parameters, sources, trace)}-board.json"
    if memo.exists():
        executable = Path(json.loads(memo.read_text())["executable"])
        if executable.exists():
            return executable
    log("generating the accelerator's Verilog ...")
    executable = build_board(design_verilog(parameters, sources), trace=trace, log=log)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"executable": str(executable)}))
    return executable


def start_simulated_board(parameters, *, port=0, trace=None, log=print, dram=None, dram_init=None, xdma=None,
                          dma=XDMA_GEN2_X4, faults=None):
    """Build (once) and start the simulated board; a :class:`SimulatedBoard` to connect to. A design
    with DRAM (``dram_words``) gets the timing of ``dram`` (a :class:`~neofpga.contract.dram.Dram`),
    preloaded from the file ``dram_init`` if given. A design behind a PCIe port (``pcie_beat_bytes``)
    presents its XDMA devices at the prefix ``xdma``, with the DMA model ``dma`` (a
    :class:`~neofpga.contract.pcie.DmaModel`) and ``faults`` (:class:`SimulatedBoard`'s)."""
    options = {}
    if parameters.get("dram_words") and not parameters.get("stream_words"):  # a streamed design's is block RAM
        options = dict(dram=dram_option(dram, parameters["dram_words"], parameters["clock_hz"]), dram_init=dram_init)
    if parameters.get("pcie_beat_bytes"):
        if xdma is None:
            raise ValueError("a simulated PCIe board needs the prefix of its XDMA devices (xdma)")
        options.update(xdma=xdma, dma=dma.board_option(parameters["clock_hz"]), faults=faults)
    return SimulatedBoard(board_executable(parameters, trace=trace is not None, log=log), port=port, trace=trace,
                          **options)
