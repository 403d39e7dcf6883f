"""hdl/axi_stream.py in Verilator (the testbench is tb_axi_stream.py), the AXI4-Stream side driven by
cocotbext-axi: BytesToBeats against a Python model of its packing, and the accelerator (with
``pcie_beat_bytes``) behind :class:`AxiStreamHost`, a command frame an H2C transfer, each answer one
C2H transfer.

Two designs, one build each: :class:`AdapterBench` (a BytesToBeats) and :class:`HostBench` (a small
accelerator behind an AxiStreamHost). Both present their AXI4-Stream sides as plain ``s_axis_*``
(in) and ``m_axis_*`` (out) ports, the names cocotbext-axi's ``AxiStreamBus.from_prefix`` looks for.
"""

import json
from functools import cache
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.hdl.accelerator import Accelerator
from neofpga.hdl.axi_stream import AxiStreamHost, BytesToBeats, FrameByte
from neofpga.sim.runner import run_cocotb, verilog_for

TB = Path(__file__).with_name("tb_axi_stream.py")
DATA_BYTES = 8
ACCELERATOR = dict(rows=2, cols=4, activation_words=128, weight_words=256, constant_words=32, gelu_tables=1,
                   softmax_length=16, max_payload=256, timeout_cycles=2000)
"""Spaces deep enough that a WRITE of a whole ``max_payload`` fits each of them (and a READ of a
whole bank fits an answer but for WEIGHTS)."""


def axi_ports(data_bytes, slave=True):
    """An AXI4-Stream master port ``m_axis_*``, and unless not ``slave`` a slave port ``s_axis_*``,
    as plain signals."""
    ports = {}
    for prefix, flow, back in (("s_axis", In, Out), ("m_axis", Out, In))[0 if slave else 1:]:
        ports.update({f"{prefix}_tdata": flow(8 * data_bytes), f"{prefix}_tkeep": flow(data_bytes),
                      f"{prefix}_tlast": flow(1), f"{prefix}_tvalid": flow(1), f"{prefix}_tready": back(1)})
    return ports


def wire_m_axis(m, bench, out_of):
    """The AxiStream `out_of` onto ``m_axis_*``."""
    m.d.comb += [bench.m_axis_tdata.eq(out_of.payload.data), bench.m_axis_tkeep.eq(out_of.payload.keep),
                 bench.m_axis_tlast.eq(out_of.payload.last), bench.m_axis_tvalid.eq(out_of.valid),
                 out_of.ready.eq(bench.m_axis_tready)]


def wire_s_axis(m, bench, into):
    """``s_axis_*`` into the AxiStream `into`."""
    m.d.comb += [into.payload.data.eq(bench.s_axis_tdata), into.payload.keep.eq(bench.s_axis_tkeep),
                 into.payload.last.eq(bench.s_axis_tlast), into.valid.eq(bench.s_axis_tvalid),
                 bench.s_axis_tready.eq(into.ready)]


class AdapterBench(wiring.Component):
    """The byte stream ``i`` (FrameByte: data and last) through a BytesToBeats onto ``m_axis``."""

    def __init__(self, data_bytes=DATA_BYTES):
        self.data_bytes = data_bytes
        super().__init__({**axi_ports(data_bytes, slave=False), "i": In(stream.Signature(FrameByte))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.to_beats = to_beats = BytesToBeats(self.data_bytes)
        wire_m_axis(m, self, to_beats.o)
        wiring.connect(m, wiring.flipped(self.i), to_beats.i)
        return m


class HostBench(wiring.Component):
    """An accelerator behind an AxiStreamHost: H2C on ``s_axis``, C2H on ``m_axis``."""

    def __init__(self, device, data_bytes=DATA_BYTES):
        self.device, self.data_bytes = device, data_bytes
        super().__init__(axi_ports(data_bytes))

    def elaborate(self, platform):
        m = Module()
        m.submodules.host = host = AxiStreamHost(self.device, self.data_bytes)
        wire_s_axis(m, self, host.h2c)
        wire_m_axis(m, self, host.c2h)
        return m


@cache
def adapter_verilog():
    return verilog_for(AdapterBench())


@cache
def host_verilog():
    """The host bench's Verilog and its accelerator's INFO record."""
    device = Accelerator(**ACCELERATOR, pcie_beat_bytes=DATA_BYTES)
    return verilog_for(HostBench(device)), device.info


def run(tmp_path, design, testcase, seed=1, valid_probability=0.7, ready_probability=0.6, **env):
    env = {"SEED": str(seed), "DATA_BYTES": str(DATA_BYTES), "VALID_PROBABILITY": str(valid_probability),
           "READY_PROBABILITY": str(ready_probability), **{name: str(value) for name, value in env.items()}}
    run = run_cocotb(design, test_module=TB, testcase=testcase, run_dir=tmp_path, extra_env=env)
    assert run.tests == [f"tb_axi_stream.{name}" for name in ([testcase] if isinstance(testcase, str) else testcase)]
    return run


STALLS = [(1, 0.7, 0.6), (2, 0.3, 0.9), (3, 0.9, 0.3), (4, 1.0, 1.0)]
"""(seed, valid probability, ready probability): the byte source's gaps and the AXI sink's backpressure."""


@pytest.mark.parametrize("seed, valid_probability, ready_probability", STALLS)
def test_bytes_to_beats_matches_model(tmp_path, seed, valid_probability, ready_probability):
    run(tmp_path, adapter_verilog(), "bytes_to_beats_matches_model", seed, valid_probability, ready_probability)


def test_bytes_to_beats_at_full_rate(tmp_path):
    """Nothing stalled: a byte a cycle into BytesToBeats, frames back to back."""
    run(tmp_path, adapter_verilog(), "bytes_to_beats_rate", 5, 1.0, 1.0)


HOST_TESTS = ["host_frame_per_transfer", "host_trailing_junk", "host_no_sync", "host_truncated",
              "host_bad_crc"]


def run_host(tmp_path, testcase, seed, valid_probability, ready_probability):
    verilog_text, info = host_verilog()
    return run(tmp_path, verilog_text, testcase, seed, valid_probability, ready_probability, INFO=info.hex(),
               ACCELERATOR=json.dumps(ACCELERATOR))


@pytest.mark.parametrize("seed, valid_probability, ready_probability", [(1, 0.6, 0.5), (2, 1.0, 1.0)])
def test_host(tmp_path, seed, valid_probability, ready_probability):
    """A command frame a transfer (WRITE and READ of every space, every word checked), junk after a
    frame, transfers without SYNC, cut short and with a bad CRC; stalled on both sides, then not."""
    run_host(tmp_path, HOST_TESTS, seed, valid_probability, ready_probability)


def test_host_write_rate(tmp_path):
    """Unstalled, a WRITE of CONSTANTS takes a cycle a beat to receive and a cycle a word to write
    (the cycles are in the log)."""
    run_host(tmp_path, "host_write_rate", 3, 1.0, 1.0)
