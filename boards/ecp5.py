"""Synthesis, place and route of a component on an ECP5 with the YoWASP tools, and the report.

Used for per-unit figures (out of context: the component's ports stay ports, so nothing that
drives them can be pruned, but no pins are assigned) and, with a board platform, for bitstreams.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import verilog

__all__ = ["tool", "parse_report", "ecp5_platform", "synthesize_out_of_context"]


def tool(name):
    """The command for an FPGA tool: $NAME (e.g. $YOSYS), the system binary, or the YoWASP one."""
    variable = name.upper().replace("-", "_")
    if os.environ.get(variable):
        return os.environ[variable]
    if shutil.which(name):
        return name
    for candidate in (shutil.which(f"yowasp-{name}"), Path(sys.executable).with_name(f"yowasp-{name}")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RuntimeError(f"{name} not found: pip install 'neofpga[boards]' (or yowasp-{name})")


def parse_report(report):
    """Resource use and achieved clock from nextpnr's --report JSON (a dict or its path)."""
    if not isinstance(report, dict):
        report = json.loads(Path(report).read_text())
    used = {cell: entry["used"] for cell, entry in report["utilization"].items()}
    available = {cell: entry["available"] for cell, entry in report["utilization"].items()}
    fmax = {clock: {"achieved_mhz": entry["achieved"], "constraint_mhz": entry["constraint"]}
            for clock, entry in report.get("fmax", {}).items()}
    return {"used": used, "available": available, "fmax": fmax}


def ecp5_platform():
    """An ECP5 platform object, so that components elaborate their ECP5 primitives (DSP registers)."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


def synthesize_out_of_context(component, name, workdir, device="85k", package="CABGA381", freq_mhz=100.0,
                              seed=1):
    """Yosys synth_ecp5 and nextpnr-ecp5 --out-of-context; returns the parsed report plus timings."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, platform=ecp5_platform(), emit_src=False)
    (workdir / f"{name}.v").write_text(text)
    start = time.perf_counter()
    subprocess.run([tool("yosys"), "-q", "-l", "yosys.log", "-p",  # YoWASP sees relative paths only
                    f"read_verilog {name}.v; synth_ecp5 -top {name} -json {name}.json"],
                   cwd=workdir, check=True, capture_output=True)
    synthesized = time.perf_counter()
    subprocess.run([tool("nextpnr-ecp5"), f"--{device}", "--package", package, "--json", f"{name}.json",
                    "--out-of-context", "--freq", str(freq_mhz), "--timing-allow-fail", "--seed", str(seed),
                    "--report", "report.json", "--log", "nextpnr.log", "--quiet"],
                   cwd=workdir, check=True, capture_output=True)
    result = parse_report(workdir / "report.json")
    result["seconds"] = {"synthesis": synthesized - start, "place_and_route": time.perf_counter() - synthesized}
    return result
