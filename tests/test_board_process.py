"""neofpga.sim.board: a Verilator build of a byte-stream top level, talked to with pyserial over TCP."""

import random
import time

import pytest
import serial
from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from neofpga.sim.board_process import SimulatedBoard, build_board
from neofpga.sim.runner import verilog_for


class Echo(wiring.Component):
    """Each byte plus one, through a 16-byte FIFO that is emptied at most every `period` cycles,
    so that a host writing fast fills it and ``i.ready`` falls."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def __init__(self, period=4):
        self.period = period
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = buffer = fifo.SyncFIFOBuffered(width=8, depth=16)
        m.d.comb += [
            buffer.w_data.eq(self.i.payload + 1),
            buffer.w_en.eq(self.i.valid),
            self.i.ready.eq(buffer.w_rdy),
        ]
        phase = Signal(range(self.period))
        m.d.sync += phase.eq(phase + 1)
        with m.If(phase == self.period - 1):
            m.d.sync += phase.eq(0)
        m.d.comb += [
            self.o.payload.eq(buffer.r_data),
            self.o.valid.eq(buffer.r_rdy & (phase == 0)),
            buffer.r_en.eq(self.o.ready & (phase == 0)),
        ]
        return m


class Counter(wiring.Component):
    """Answers each byte with the number of bytes received so far, modulo 256."""

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(self.o.payload + 1), self.o.valid.eq(1)]
        return m


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A build cache of this module's own, so that every build here is observed."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("board-cache")
        patch.setenv("NEOFPGA_SIM_CACHE", str(root))
        yield root


def timed_build(verilog_text, **kwargs):
    """(executable, lines logged, seconds taken) of one build_board call."""
    lines = []
    start = time.perf_counter()
    executable = build_board(verilog_text, log=lines.append, **kwargs)
    return executable, lines, time.perf_counter() - start


@pytest.fixture(scope="module")
def echo(cache):
    executable, lines, seconds = timed_build(verilog_for(Echo()))
    print(f"\nbuild of the echo board: {seconds:.1f} s")
    return executable, lines


@pytest.fixture(scope="module")
def counter(cache, echo):
    return timed_build(verilog_for(Counter()))[:2]


@pytest.fixture(scope="module")
def traced(cache):
    return build_board(verilog_for(Echo()), trace=True, log=lambda line: None)


def plus_one(data):
    return bytes((byte + 1) % 256 for byte in data)


def test_echo_in_order(echo):
    data = random.Random(1).randbytes(10_000)
    with SimulatedBoard(echo[0]) as board:
        link = serial.serial_for_url(board.url, timeout=10)
        link.write(data)  # at once: far faster than the design takes them
        assert link.read(len(data)) == plus_one(data)
        link.close()


def test_chunks_and_back_pressure_through_the_socket(echo):
    rng = random.Random(2)
    with SimulatedBoard(echo[0]) as board:
        link = serial.serial_for_url(board.url, timeout=10)
        sent = bytearray()
        for size in [1, 7, 300, 4096, 200_000]:  # the last overflows the board's 64 KiB input buffer
            chunk = rng.randbytes(size)
            link.write(chunk)
            sent += chunk
        assert link.read(len(sent)) == plus_one(sent)
        link.timeout = 0.2
        assert link.read(1) == b""  # nothing duplicated
        link.close()
    assert board.cycles >= 4 * len(sent)  # the FIFO is emptied every 4 cycles at most


def test_reconnecting_keeps_the_design_state(counter):
    with SimulatedBoard(counter[0]) as board:
        first = serial.serial_for_url(board.url, timeout=10)
        first.write(b"hello")
        assert first.read(5) == bytes([1, 2, 3, 4, 5])
        first.close()
        second = serial.serial_for_url(board.url, timeout=10)
        second.write(b"abc")
        assert second.read(3) == bytes([6, 7, 8])
        second.close()


def test_an_idle_board_stops_its_clock(echo):
    with SimulatedBoard(echo[0], idle_cycles=2**16) as board:
        time.sleep(0.3)  # stopped after 2**16 cycles: clocking on would be millions
        link = serial.serial_for_url(board.url, timeout=10)
        link.write(b"\x00\xff")
        assert link.read(2) == b"\x01\x00"
        time.sleep(0.3)
        link.close()
    assert 2**17 <= board.cycles < 2**20
    assert "stopped" in board.stderr


def test_speed(echo):
    board = SimulatedBoard(echo[0], idle_cycles=0, max_cycles=10_000_000)
    assert board.process.wait(60) == 0
    board.close()
    print(f"\nthe echo board simulates {board.cycles_per_second:,.0f} cycles/s")
    assert board.cycles == 10_000_000
    assert board.cycles_per_second > 1_000_000


def test_trace(traced, tmp_path):
    trace = tmp_path / "board.fst"
    with SimulatedBoard(traced, trace=trace) as board:
        link = serial.serial_for_url(board.url, timeout=10)
        link.write(b"\x41")
        assert link.read(1) == b"\x42"
        link.close()
    assert trace.stat().st_size > 0


def test_trace_needs_a_traced_build(echo, tmp_path):
    with pytest.raises(RuntimeError, match=r"trace=True"):
        SimulatedBoard(echo[0], trace=tmp_path / "board.fst")


def test_build_cache(cache, echo, counter):
    executable, lines = echo
    assert lines == [lines[0]] and lines[0].startswith("building the simulated board")
    assert executable.is_file() and executable.is_relative_to(cache)

    again, lines, seconds = timed_build(verilog_for(Echo()))
    assert (again, lines) == (executable, [])
    assert seconds < 1

    other, lines = counter
    assert len(lines) == 1 and other.is_file()
    assert other.parent.parent != executable.parent.parent


def test_failed_build_raises(cache):
    with pytest.raises(RuntimeError, match=r"(?s)build of the simulated board failed.*syntax error"):
        build_board("module top(input clk); this is a syntax error\nendmodule\n", log=lambda line: None)
