"""``neofpga build``: a board's bitstream with Yosys, nextpnr-ecp5 and ecppack (YoWASP's by default);
a board that Vivado builds (the NiteFury) goes to boards/vivado.py.

Amaranth writes the design files (``platform.build(..., do_build=False)``: the ULX3S platform would
otherwise insist on openFPGALoader, which only flashing needs); the tools then run here, one after
the other, with their logs in the build directory and a progress line every 30 seconds. A build
whose achieved Fmax is below the system clock fails, and leaves no bitstream (not even an older one).
"""

import re
import subprocess
import threading
import time
from pathlib import Path

from ..contract.design import DEFAULT_BAUD
from ..contract.errors import UserError
from ..contract.gateware_version import gateware_version
from .catalog import accelerator_parameters, board_named, check_variant
from .ecp5 import parse_report, tool
from .flash import default_build_dir
from .top import BoardTop

__all__ = ["PLACERS", "build_board", "achieved_mhz", "check_timing", "routing_stall", "utilisation"]

PROGRESS_SECONDS = 30
POLL_SECONDS = 2
STALL_ITERATIONS = 40
"""Router2 iterations without a new fewest overused wires after which a build gives up. A route that
converges here makes a new fewest at least every 20 (the ECPIX-5's: 19 iterations at 1 overused
wire before 0); one that does not climbs back up (the ULX3S-85F at seed 1: fewest 197 at iteration
40, then 833 at iteration 69)."""
ROUTER2_ITERATION = re.compile(r"iter=\d+ wires=\d+ overused=(\d+)")
LUT_RAM = 'setattr -set ram_style "distributed" *.sequencer.array.buffer/m:storage'
"""Yosys, after reading the design: the array's output FIFO (512 bits by 35 rows) goes to LUT RAM
(about 3k LUTs); in block RAM it would take 15 DP16KD, which the default model's weights need."""
SYSTEM_CLOCK = "$glbnet$clk"
"""The accelerator's clock (the ``sync`` domain's, from boards/top.py's PLL), as nextpnr's report names it."""
PLACERS = ("static", "heap")
"""nextpnr's placers, the default first. On the ULX3S-85F (its I/O on the left edge of the die) the
heap placer's placements leave 23,000 overused wires after 20 minutes of routing; the static
(electrostatic) placer's route. On the ECPIX-5 both route: heap's to a faster clock (68.8 MHz
against 52.3), static's in less time (11 minutes against 18)."""


def build_board(name, build_dir=None, rows=None, cols=None, freq_mhz=None, baud=DEFAULT_BAUD, seed=None,
                placer=None, dram=False, log=print, stream=False, pack_only=False):
    """Build ``name``'s bitstream, with ``dram`` its DRAM design's (nextpnr ``seed`` and ``placer``
    default to the board's for that design), with ``stream`` its streamed design's (a PCIe
    board's; a one-line error on the others); returns the report:
    ``bitstream``, ``used``/``available`` cells, ``fmax``, ``clock_mhz``, ``seconds``, ``parameters``
    and ``gateware_version``. Raises :class:`UserError` on a failed tool, routing that does not
    converge, or unmet timing. A Vivado board's build is :func:`~.vivado.build_vivado_board`'s.

    ``pack_only``: synthesis and nextpnr's packing, no placement: the cells the design takes, in
    about 2 minutes instead of 30 (no ``bitstream``, ``fmax`` or timing check; an ECP5 board's)."""
    board = board_named(name)
    if pack_only and board.toolchain != "nextpnr":
        raise UserError(f"--pack-only is for the ECP5 boards (Yosys and nextpnr), not {name} ({board.toolchain})")
    if board.toolchain == "vivado":
        from .vivado import build_vivado_board
        return build_vivado_board(board, build_dir, rows, cols, freq_mhz, seed, placer, dram, log, stream)
    if stream:  # the ECP5 boards have none: say so first
        check_variant(board, dram, stream)
    seed = (board.dram_seed if dram else board.seed) if seed is None else seed
    placer = board.placer if placer is None else placer
    if placer not in PLACERS:
        raise UserError(f"unknown placer {placer!r}: use {' or '.join(PLACERS)}")
    parameters = accelerator_parameters(board, rows, cols, freq_mhz, dram=dram)
    top = BoardTop(board, parameters, baud, gateware_version(parameters))
    build_dir = Path(build_dir or default_build_dir(name, dram)).resolve()
    stem = name.replace("-", "_")
    platform = board.platform_class()()
    log(f"{board.description}: {parameters['rows']}x{parameters['cols']} array at "
        f"{top.settings.output_mhz:g} MHz, UART {parameters['clock_hz'] / top.divisor:,.0f} baud "
        f"(asked {baud:,}); gateware version {top.gateware_version:016x}; {placer} placer, seed {seed}")
    plan = platform.build(top, name=stem, build_dir=str(build_dir), do_build=False, script_after_read=LUT_RAM)
    plan.extract(str(build_dir))
    (build_dir / f"{stem}.bit").unlink(missing_ok=True)

    seconds = {}
    _run("synthesis", [tool("yosys"), "-q", "-l", f"{stem}.rpt", f"{stem}.ys"], build_dir, f"{stem}.rpt",
         seconds, log)
    nextpnr = [tool("nextpnr-ecp5"), "--log", f"{stem}.tim", platform._nextpnr_device_options[platform.device],
               "--package", platform._nextpnr_package_options[platform.package].upper(), "--speed", platform.speed,
               "--json", f"{stem}.json", "--lpf", f"{stem}.lpf", "--report", "report.json"]
    (build_dir / "report.json").unlink(missing_ok=True)
    if pack_only:
        _run("packing", [*nextpnr, "--pack-only"], build_dir, f"{stem}.tim", seconds, log)
        report = parse_report(build_dir / "report.json")
        log(utilisation(report) + f" ({sum(seconds.values()):.0f} s)")
        return dict(board=name, used=report["used"], available=report["available"], seconds=seconds,
                    parameters=parameters, gateware_version=top.gateware_version, build_dir=str(build_dir))
    _run("place and route", [
        *nextpnr, "--textcfg", f"{stem}.config", "--timing-allow-fail", "--seed", str(seed),
        "--placer", placer, "--router", "router2"],
        build_dir, f"{stem}.tim", seconds, log, stall=lambda text: routing_stall(text, seed))
    report = parse_report(build_dir / "report.json")
    clock_mhz = parameters["clock_hz"] / 1e6
    achieved = achieved_mhz(report)
    result = dict(board=name, **report, clock_mhz=clock_mhz, achieved_mhz=achieved, seconds=seconds,
                  parameters=parameters, gateware_version=top.gateware_version, baud=parameters["clock_hz"] / top.divisor,
                  seed=seed, placer=placer, build_dir=str(build_dir))
    log(utilisation(report) + f"; Fmax {achieved:.1f} MHz for a {clock_mhz:g} MHz clock")
    check_timing(name, achieved, clock_mhz, report)
    _run("bitstream", [tool("ecppack"), "--compress", "--input", f"{stem}.config", "--bit", f"{stem}.bit"],
         build_dir, None, seconds, log)
    result["bitstream"] = str(build_dir / f"{stem}.bit")
    log(f"bitstream: {result['bitstream']} ({sum(seconds.values()):.0f} s)")
    return result


def achieved_mhz(report):
    """The achieved Fmax of the system clock (:data:`SYSTEM_CLOCK`, the accelerator's) in a parsed
    report; the lowest over its clocks if it names no such clock."""
    fmax = report["fmax"]
    if SYSTEM_CLOCK in fmax:
        return fmax[SYSTEM_CLOCK]["achieved_mhz"]
    return min(entry["achieved_mhz"] for entry in fmax.values())


def check_timing(name, achieved, clock_mhz, report=None):
    """A :class:`UserError` unless ``achieved`` MHz is at least the system clock, and every other
    clock of a parsed ``report`` (the DRAM controller's) meets its own constraint."""
    if achieved < clock_mhz:
        raise UserError(f"{name}: timing not met: {achieved:.1f} MHz achieved, {clock_mhz:g} MHz needed "
                        f"(no bitstream written; try --freq {int(achieved)} or another --seed)")
    for clock, entry in (report or {"fmax": {}})["fmax"].items():
        if entry["achieved_mhz"] < entry["constraint_mhz"]:
            raise UserError(f"{name}: timing not met on clock {clock}: {entry['achieved_mhz']:.1f} MHz achieved, "
                            f"{entry['constraint_mhz']:g} MHz needed (no bitstream written; try another --seed)")


def utilisation(report):
    """One line of the cells a parsed report uses of the FPGA's."""
    used, available = report["used"], report["available"]
    return ", ".join(f"{cell} {used[cell]:,}/{available[cell]:,} ({100 * used[cell] / available[cell]:.0f} %)"
                     for cell in ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD") if cell in used)


def routing_stall(log_text, seed):
    """A reason to stop nextpnr when its router2 log shows routing that does not converge: no new
    fewest overused wires in STALL_ITERATIONS iterations. None while it may still converge."""
    counts = [int(count) for count in ROUTER2_ITERATION.findall(log_text)]
    if not counts:
        return None
    best = counts.index(min(counts))
    if len(counts) - 1 - best < STALL_ITERATIONS:
        return None
    return (f"routing does not converge: {counts[-1]:,} overused wires at iteration {len(counts)}, fewest "
            f"{counts[best]:,} at iteration {best + 1}; try another --seed (this one was {seed})")


def _run(stage, command, cwd, log_file, seconds, log, stall=None):
    """Run one tool; a line every PROGRESS_SECONDS with the latest line of its log; its last lines
    in the error if it fails. ``stall(log text)`` may return a reason to stop it early."""
    log(f"{stage} ...")
    start = time.perf_counter()
    last_progress = start
    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        output = []
        reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
        reader.start()
        try:
            while process.poll() is None:
                time.sleep(POLL_SECONDS)
                if stall and (reason := stall(_log_text(cwd / log_file))):
                    raise UserError(f"{stage}: {reason} (logs in {cwd})")
                if time.perf_counter() - last_progress >= PROGRESS_SECONDS:
                    last_progress = time.perf_counter()
                    latest = _last_lines(cwd / log_file, 1) if log_file else ""
                    log(f"  {stage}: {last_progress - start:.0f} s" + (f"  {latest.strip()[:100]}" if latest else ""))
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            reader.join()
    seconds[stage] = time.perf_counter() - start
    if process.returncode != 0:
        tail = _last_lines(cwd / log_file, 3) if log_file else ""
        detail = (tail or "".join(output)).strip().splitlines()
        raise UserError(f"{stage} failed ({Path(command[0]).name} exit {process.returncode}): "
                        f"{detail[-1] if detail else 'no output'} (logs in {cwd})")


def _log_text(path):
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _last_lines(path, count):
    lines = [line for line in _log_text(path).splitlines() if line.strip()]
    return "\n".join(lines[-count:])


