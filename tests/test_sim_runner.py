"""neofpga.sim.runner: Amaranth -> Verilator -> cocotb, with its build cache, failures and waves."""

import time
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.sim.runner import CocotbFailure, build, run_cocotb, verilog_for

TB = Path(__file__).with_name("tb_sim_runner.py")


class Adder(wiring.Component):
    """A registered stream adder: o.payload = i.payload + addend, one cycle later."""

    def __init__(self, addend):
        self.addend = addend
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(9))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload + self.addend), self.o.valid.eq(1)]
        return m


def run(addend, tmp_path, **kwargs):
    kwargs.setdefault("testcase", "adds")
    return run_cocotb(Adder(addend), test_module=TB, run_dir=tmp_path, extra_env={"ADDEND": str(addend)}, **kwargs)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    return run(1, tmp_path_factory.mktemp("first"), waves=False)


def test_testbench_passes(first):
    assert first.tests == ["tb_sim_runner.adds"]
    assert first.results.is_file() and first.waves is None
    assert (first.build_dir / "top.v").read_text() == verilog_for(Adder(1))


def test_second_run_hits_the_cache(first, tmp_path):
    again = run(1, tmp_path, waves=False)
    assert (again.build_dir, again.built) == (first.build_dir, False)
    start = time.perf_counter()
    assert build(verilog_for(Adder(1)), waves=False) == (first.build_dir, False)
    assert time.perf_counter() - start < 0.5


def test_verilog_text_is_accepted(first, tmp_path):
    again = run_cocotb(verilog_for(Adder(1)), test_module=TB, testcase="adds", run_dir=tmp_path,
                       extra_env={"ADDEND": "1"}, waves=False)
    assert again.build_dir == first.build_dir


def test_changed_rtl_gets_its_own_build(first, tmp_path):
    other = run(3, tmp_path, waves=False)
    assert other.build_dir != first.build_dir
    assert other.tests == ["tb_sim_runner.adds"]


def test_failing_test_raises_with_its_name(first, tmp_path):
    with pytest.raises(CocotbFailure, match=r"tb_sim_runner\.deliberate_failure: AssertionError: this test fails"):
        run(1, tmp_path, testcase="deliberate_failure", waves=False)


def test_wrong_model_fails(first, tmp_path):
    with pytest.raises(CocotbFailure, match=r"1 of 1 tests failed\ntb_sim_runner\.adds"):
        run_cocotb(Adder(1), test_module=TB, testcase="adds", run_dir=tmp_path, extra_env={"ADDEND": "2"},
                   waves=False)


def test_waves_from_the_environment(first, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NEOFPGA_WAVES", "1")
    traced = run(1, tmp_path)
    assert traced.build_dir != first.build_dir  # a trace build is another build
    assert traced.waves == tmp_path / "tb_sim_runner.fst"
    assert traced.waves.stat().st_size > 0
    assert str(traced.waves) in capsys.readouterr().out
