"""``neofpga build`` for a board that Vivado builds (the NiteFury): the whole project, then Vivado on it.

Amaranth's Xilinx platform writes the project (``platform.build(..., do_build=False)``): the top's
Verilog, the pins' XDC, the TCL that runs Vivado from sources to bitstream, and the board's files
(the XDMA IP's TCL, the clock and transceiver constraints: boards/nitefury.py). Where Vivado is
installed it then runs here, its log in the build directory and a progress line every 30 seconds,
and its reports are read: utilisation, WNS and the accelerator clock's Fmax. A build that misses
timing fails and keeps no bitstream. Where it is not, the build stops with one line saying where
the project is and how to run it. ``--stream`` writes the streamed design's project (the weights
pushed over XDMA's second H2C channel: boards/nitefury.py) into build/NAME-stream.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..contract.errors import UserError
from ..contract.gateware_version import gateware_version
from .build import _run
from .catalog import accelerator_parameters
from .flash import default_build_dir
from .nitefury import ACCELERATOR_CLOCK, SCRIPT_AFTER_READ, NitefuryPlatform, NitefuryTop

__all__ = ["VIVADO_VERSION", "vivado_command", "vivado_version", "vivado_run_command",
           "write_project", "build_vivado_board", "parse_timing", "parse_utilisation"]

VIVADO_VERSION = "2023.2"
"""The Vivado the project is written for (any from 2019.1 has XDMA 4.1 and the same commands)."""
UTILISATION = ("Slice LUTs", "Slice Registers", "Block RAM Tile", "DSPs")
"""The rows of Vivado's utilisation report that a build reports."""


def vivado_command():
    """The Vivado command: $VIVADO, or ``vivado`` on the PATH; None if there is neither."""
    return os.environ.get("VIVADO") or shutil.which("vivado")


def vivado_version(command):
    """The first line of ``vivado -version`` (e.g. "vivado v2023.2 (64-bit)"), or None if it does not answer."""
    try:
        process = subprocess.run([command, "-version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in process.stdout.splitlines() if line.strip()]
    return lines[0] if process.returncode == 0 and lines else None


def vivado_run_command(stem, command="vivado"):
    """The command line that runs the written project ``stem`` in its directory."""
    return [command, "-mode", "batch", "-log", f"{stem}.log", "-source", f"{stem}.tcl"]


def write_project(parameters, build_dir, stem):
    """Write the NiteFury project for an accelerator with ``parameters`` into ``build_dir`` (any
    bitstream of an earlier build removed); returns the top."""
    top = NitefuryTop(parameters, gateware_version(parameters))
    plan = NitefuryPlatform().build(top, name=stem, build_dir=str(build_dir), do_build=False,
                                    script_after_read=SCRIPT_AFTER_READ, emit_src=False)
    plan.extract(str(build_dir))
    for suffix in (".bit", ".bin"):
        (build_dir / f"{stem}{suffix}").unlink(missing_ok=True)
    return top


def build_vivado_board(board, build_dir=None, rows=None, cols=None, freq_mhz=None, seed=None, placer=None,
                       dram=False, log=print, stream=False):
    """Write ``board``'s project (with ``stream``, its streamed design's) into ``build_dir``
    (default build/NAME, build/NAME-stream) and, where Vivado is installed, build it; returns the
    report: ``bitstream``, ``used``/``available`` cells, ``wns_ns``, ``achieved_mhz``,
    ``clock_mhz``, ``seconds``, ``parameters``, ``gateware_version``. Raises :class:`UserError`
    for nextpnr's options, a DRAM design, a missing Vivado (after writing the project), a failed
    run or unmet timing."""
    if seed is not None or placer is not None:
        raise UserError(f"--seed and --placer are nextpnr's: {board.name} builds with Vivado")
    parameters = accelerator_parameters(board, rows, cols, freq_mhz, dram=dram, stream=stream)
    build_dir = Path(build_dir or default_build_dir(board.name, dram, stream)).resolve()
    stem = board.name.replace("-", "_")
    top = write_project(parameters, build_dir, stem)
    command = vivado_command()
    design = " streamed" if stream else ""
    if command is None:
        raise UserError(f"Vivado is not installed: the {board.name}{design} project was written to {build_dir}; "
                        f"run it there where Vivado {VIVADO_VERSION} is: cd {build_dir} && "
                        f"{' '.join(vivado_run_command(stem))}")
    clock_mhz = parameters["clock_hz"] / 1e6
    log(f"{board.description}: {parameters['rows']}x{parameters['cols']} array at {clock_mhz:g} MHz behind "
        f"XDMA (PCIe Gen2 x4, AXI4-Stream{'; the weights streamed on H2C channel 1' if stream else ''}); "
        f"gateware version {top.gateware_version:016x}; project in {build_dir}")
    seconds = {}
    _run("Vivado (synthesis to bitstream)", vivado_run_command(stem, command), build_dir, f"{stem}.log", seconds, log)
    timing = parse_timing((build_dir / f"{stem}_timing.rpt").read_text())
    cells = parse_utilisation((build_dir / f"{stem}_utilization_place.rpt").read_text())
    slack = timing["clocks"].get(ACCELERATOR_CLOCK)
    achieved = None if slack is None else 1000 / (1000 / clock_mhz - slack)
    result = dict(board=board.name, **cells, wns_ns=timing["wns_ns"], clock_mhz=clock_mhz, achieved_mhz=achieved,
                  seconds=seconds, parameters=parameters, gateware_version=top.gateware_version,
                  build_dir=str(build_dir))
    log(", ".join(f"{cell} {cells['used'][cell]:,}/{cells['available'][cell]:,}" for cell in cells["used"])
        + f"; WNS {timing['wns_ns']:.3f} ns" + ("" if achieved is None else f"; Fmax {achieved:.1f} MHz for a "
                                                 f"{clock_mhz:g} MHz clock"))
    if timing["wns_ns"] < 0:
        for suffix in (".bit", ".bin"):
            (build_dir / f"{stem}{suffix}").unlink(missing_ok=True)
        advice = f"; try --freq {int(achieved)}" if achieved else ""
        raise UserError(f"{board.name}: timing not met: WNS {timing['wns_ns']:.3f} ns (no bitstream kept; see "
                        f"{build_dir / (stem + '_timing.rpt')}{advice})")
    result["bitstream"] = str(build_dir / f"{stem}.bit")
    log(f"bitstream: {result['bitstream']} ({sum(seconds.values()):.0f} s)")
    return result


def parse_timing(text):
    """The worst setup slack of a ``report_timing_summary`` (``wns_ns``) and each clock's (``clocks``,
    from the Intra Clock Table; clocks without timed paths left out)."""
    summary = re.search(r"\| Design Timing Summary.*?\n\s*WNS\(ns\).*?\n\s*-+.*?\n\s*(\S+)", text, re.S)
    if summary is None:
        raise UserError("Vivado's timing report has no Design Timing Summary")
    clocks = {}
    table = re.search(r"\| Intra Clock Table(.*?)(\n\| [A-Z]|\Z)", text, re.S)
    for line in (table.group(1) if table else "").splitlines():
        tokens = line.split()
        if len(tokens) == 13 and re.fullmatch(r"-?\d+\.\d+", tokens[1]):
            clocks[tokens[0]] = float(tokens[1])
    return {"wns_ns": float(summary.group(1)), "clocks": clocks}


def parse_utilisation(text):
    """``used`` and ``available`` of the :data:`UTILISATION` rows of a ``report_utilization``
    (with or without its Prohibited column)."""
    used, available, header = {}, {}, None
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if "Site Type" in cells:
            header = cells
        elif header and len(cells) == len(header) and cells[0].rstrip("*") in UTILISATION:
            name = cells[0].rstrip("*")
            used[name] = _number(cells[header.index("Used")])
            available[name] = _number(cells[header.index("Available")])
    return {"used": used, "available": available}


def _number(text):
    value = float(text)
    return int(value) if value.is_integer() else value
