"""neofpga doctor: every check reported, gaps with their fix, exit 1 when the simulations cannot run."""

import json

from neofpga.host import doctor
from neofpga.host.cli import main

NAMES = ["python", "c++", "make", "perl", "verilator", "lz4 headers", "yosys", "nextpnr-ecp5", "ecppack",
         "vivado", "openFPGALoader", "serial ports", "torch + transformers"]


def run(capsys, *argv):
    code = main(["doctor", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_this_machine_can_simulate(capsys):
    code, out, _ = run(capsys, "--format", "json")
    checks = {c["name"]: c for c in json.loads(out)}
    assert list(checks) == NAMES
    assert code == 0 and all(checks[name]["ok"] for name in doctor.REQUIRED_FOR_SIMULATION)
    assert all(c["fix"] for c in checks.values() if not c["ok"])


def test_a_missing_compiler_is_a_gap_with_its_fix(capsys, monkeypatch):
    which = doctor.shutil.which
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None if name == "c++" else which(name))
    code, out, err = run(capsys)
    assert code == 1
    assert "GAP c++: not found (Verilator builds)\n    fix: apt-get install g++" in out
    assert err == "the simulations cannot run without: c++\n"


def test_a_serial_port_without_access_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(doctor.glob, "glob", lambda pattern: ["/dev/ttyUSB0"] if "USB" in pattern else [])
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: False)
    check = doctor._serial_ports()
    assert not check.ok and "/dev/ttyUSB0" in check.detail and "dialout" in check.fix
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: True)
    assert doctor._serial_ports().ok
