"""The simulated board's process: a Verilator build of a top level, its byte streams served on a TCP port.

    with SimulatedBoard(build_board(verilog_for(top))) as board:
        link = serial.serial_for_url(board.url, timeout=1)   # as to a real board's UART

The top level's only ports are ``clk``, ``rst`` and two byte streams, ``i`` (to the design) and
``o`` (from it). ``board_main.cpp`` holds reset, listens on ``127.0.0.1``, serves one client at a
time and clocks the design while bytes move; it stops the clock after ``idle_cycles`` cycles
without a byte moved and no byte waiting for the design (see the top of ``board_main.cpp``).
Builds are cached like :mod:`neofpga.sim.runner`'s, in the same folder.
"""

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from .runner import PCH_MAKEFLAGS, _build_error, _build_once, _cache_root, _verilator_version

__all__ = ["HARNESS_FILES", "build_board", "dram_option", "SimulatedBoard"]

MAIN = Path(__file__).with_name("board_main.cpp")
HARNESS_FILES = (MAIN, Path(__file__))
"""What, beside the Verilog, goes into the simulated board's executable."""
EXECUTABLE = "Vboard"

_SUMMARY = re.compile(r"simulated (\d+) cycles in [\d.]+ s \(([\d.]+) cycles/s\)")
_DRAM_SUMMARY = re.compile(r"DRAM (\d+) reads (\d+) writes")
_DMA_SUMMARY = re.compile(r"DMA (\d+) transfers in (\d+) bytes, (\d+) transfers out (\d+) bytes")
_DRAM_TIMINGS = ("banks", "rows", "row_words", "word_bytes", "read_latency", "tRP", "tRCD", "tRAS", "tWR", "tWTR",
                 "tCCD", "tRRD", "tRFC", "tREFI", "sys_hz")


def dram_option(dram, words, clock_hz):
    """The ``--dram`` value for a board whose design (clocked at ``clock_hz``) has ``words`` DRAM
    words behind a :class:`~neofpga.contract.dram.Dram`'s timing."""
    return ",".join([f"words={words}", f"accel_hz={clock_hz}"] + [f"{name}={getattr(dram, name)}"
                                                                   for name in _DRAM_TIMINGS])


def build_board(verilog_text, *, trace=False, log=print):
    """Build the simulated board for `verilog_text` (top module ``top``), or reuse the cached build.

    `trace` compiles in FST tracing (``SimulatedBoard(..., trace=path)``). A build prints one line
    through `log` first. Returns the executable; raises RuntimeError with the log's tail if the
    build fails.
    """
    args = ["--cc", "--exe", "--build", "-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast",
            "--noassert", "-CFLAGS", "-O2", *(["--trace-fst"] if trace else [])]
    top = re.search(r"^module top\(.*?^endmodule", verilog_text, re.M | re.S)[0]  # the top's ports, not a part's
    dram = re.search(r"output \[(\d+):0\] dram__cmd__payload", top)  # a port of address bits and we
    if dram:
        args += ["-CFLAGS", f"-DNEOFPGA_DRAM={int(dram[1])}"]
    if re.search(r"input \[\d+:0\] h2c__payload", top):  # AXI4-Stream ports: the PCIe board
        args += ["-CFLAGS", "-DNEOFPGA_XDMA"]
    if re.search(r"input \[\d+:0\] weights__payload", top):  # and the host's weight stream
        args += ["-CFLAGS", "-DNEOFPGA_WEIGHTS"]
    main = MAIN.read_text()
    key = json.dumps([verilog_text, args, main, _verilator_version()])
    build_dir = _cache_root() / f"board-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def make(build_dir):
        log("building the simulated board with Verilator (first time only: 15 s for a small design, "
            "1-3 minutes for the accelerator) ...")
        (build_dir / "top.v").write_text(verilog_text)
        (build_dir / MAIN.name).write_text(main)
        build_log = build_dir / "build.log"
        with open(build_log, "w") as output:
            result = subprocess.run(
                ["verilator", *args, "--top-module", "top", "top.v", MAIN.name, "-o", EXECUTABLE],
                cwd=build_dir, stdout=output, stderr=subprocess.STDOUT,
                env={**os.environ, "MAKEFLAGS": PCH_MAKEFLAGS})
        if result.returncode != 0:
            raise _build_error("the simulated board", build_log)

    _build_once(build_dir, make)
    return build_dir / "obj_dir" / EXECUTABLE


class SimulatedBoard:
    """A running simulated board (a context manager): `executable` from :func:`build_board`.

    `port` 0 picks a free port. `trace` is an FST file to write (the board must be built with
    ``trace=True``). `idle_cycles` overrides the cycles without a byte moved after which the clock
    stops (0: never); `max_cycles` ends the simulation after that many cycles. Waits up to
    `timeout` seconds for the board to listen. A board with DRAM takes its ``dram`` (a
    :func:`dram_option`), the file ``dram_init`` to preload it from, and an address bit
    ``dram_stuck_bit`` that reads as 0 (a fault). A board with a PCIe port presents XDMA's
    character devices as named pipes at ``xdma`` (a prefix: ``xdma + "_h2c_0"`` and ``"_c2h_0"``)
    instead of a TCP port, its DMA model set by ``dma`` (:meth:`~neofpga.contract.pcie.DmaModel.board_option`),
    and ``faults`` ({"reset_after_bytes" / "stall_after_bytes" / "cut_transfer": N}) injected.
    """

    def __init__(self, executable, port=0, trace=None, *, idle_cycles=None, max_cycles=None, timeout=30,
                 dram=None, dram_init=None, dram_stuck_bit=None, xdma=None, dma=None, faults=None):
        command = [str(executable)] + (["--xdma", str(xdma), "--dma", dma] if xdma else ["--port", str(port)])
        for option, value in [("--trace", trace), ("--idle-cycles", idle_cycles), ("--max-cycles", max_cycles),
                              ("--dram", dram), ("--dram-init", dram_init), ("--dram-stuck-bit", dram_stuck_bit),
                              *((f"--{name.replace('_', '-')}", n) for name, n in (faults or {}).items())]:
            if value is not None:
                command += [option, str(value)]
        self._stdout, self._stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdout=self._stdout, stderr=self._stderr)  #: the board's process
        self.stderr = None             #: what the board printed to stderr, once closed
        self.cycles = None             #: cycles simulated, once closed
        self.cycles_per_second = None  #: simulation speed while clocking, once closed
        self.dram_reads = self.dram_writes = None  #: DRAM words read and written, once closed (a board with DRAM)
        self.dma = None  #: DMA transfers and bytes each way, once closed (a PCIe board)
        deadline = time.monotonic() + timeout
        while (match := re.match(rb"(?:listening on (\d+)|xdma at .*)\n", self._read(self._stdout))) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                summary = self.close()
                raise RuntimeError(f"the simulated board {executable} did not start listening within {timeout} s "
                                   f"(exit code {self.process.returncode}):\n{summary}")
            time.sleep(0.01)
        self.xdma = xdma  #: the prefix of its XDMA devices (a PCIe board), for ``pcie:``
        self.port = int(match[1]) if match[1] else None  #: the TCP port it listens on (a UART board)
        self.url = f"socket://127.0.0.1:{self.port}"  #: for ``serial.serial_for_url``

    @staticmethod
    def _read(file):
        """All that the board wrote to `file` so far (its own file offset is left alone)."""
        return os.pread(file.fileno(), os.fstat(file.fileno()).st_size, 0)

    def close(self, timeout=10):
        """Stop the board (SIGTERM, then SIGKILL after `timeout` seconds) and return its stderr.

        Sets :attr:`cycles` and :attr:`cycles_per_second` from its summary line when present.
        Closing again returns the same text.
        """
        if self.stderr is not None:
            return self.stderr
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr = self._read(self._stderr).decode(errors="replace")
        self._stdout.close()
        self._stderr.close()
        if (match := _SUMMARY.search(self.stderr)) is not None:
            self.cycles, self.cycles_per_second = int(match[1]), float(match[2])
        if (match := _DRAM_SUMMARY.search(self.stderr)) is not None:
            self.dram_reads, self.dram_writes = int(match[1]), int(match[2])
        if (match := _DMA_SUMMARY.search(self.stderr)) is not None:
            self.dma = dict(zip(("transfers_in", "bytes_in", "transfers_out", "bytes_out"), map(int, match.groups())))
        return self.stderr

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
