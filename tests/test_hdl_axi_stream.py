"""hdl/axi_stream.py in Verilator (the testbench is tb_axi_stream.py), the AXI4-Stream side driven by
cocotbext-axi: the two adapters against a Python model of their packing, and the accelerator behind
:class:`AxiStreamHost` answering INFO, WRITE and READ frames, each answer one C2H transfer.

Two designs, one build each: :class:`AdapterBench` (a BeatsToBytes and a BytesToBeats side by side)
and :class:`HostBench` (a small accelerator behind an AxiStreamHost). Both present their AXI4-Stream
sides as plain ``s_axis_*`` (in) and ``m_axis_*`` (out) ports, the names cocotbext-axi's
``AxiStreamBus.from_prefix`` looks for.
"""

from functools import cache
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.hdl.accelerator import Accelerator
from neofpga.hdl.axi_stream import AxiStreamHost, BeatsToBytes, BytesToBeats, FrameByte
from neofpga.sim.runner import run_cocotb, verilog_for

TB = Path(__file__).with_name("tb_axi_stream.py")
DATA_BYTES = 8
ACCELERATOR = dict(rows=2, cols=4, activation_words=64, weight_words=64, constant_words=16, gelu_tables=1,
                   softmax_length=16, max_payload=256, timeout_cycles=2000)


def axi_ports(data_bytes):
    """An AXI4-Stream slave port ``s_axis_*`` and master port ``m_axis_*`` as plain signals."""
    ports = {}
    for prefix, flow, back in (("s_axis", In, Out), ("m_axis", Out, In)):
        ports.update({f"{prefix}_tdata": flow(8 * data_bytes), f"{prefix}_tkeep": flow(data_bytes),
                      f"{prefix}_tlast": flow(1), f"{prefix}_tvalid": flow(1), f"{prefix}_tready": back(1)})
    return ports


def wire_axi(m, bench, into, out_of):
    """``s_axis_*`` into the AxiStream `into`, the AxiStream `out_of` onto ``m_axis_*``."""
    m.d.comb += [into.payload.data.eq(bench.s_axis_tdata), into.payload.keep.eq(bench.s_axis_tkeep),
                 into.payload.last.eq(bench.s_axis_tlast), into.valid.eq(bench.s_axis_tvalid),
                 bench.s_axis_tready.eq(into.ready),
                 bench.m_axis_tdata.eq(out_of.payload.data), bench.m_axis_tkeep.eq(out_of.payload.keep),
                 bench.m_axis_tlast.eq(out_of.payload.last), bench.m_axis_tvalid.eq(out_of.valid),
                 out_of.ready.eq(bench.m_axis_tready)]


class AdapterBench(wiring.Component):
    """``s_axis`` beats through a BeatsToBytes onto the byte stream ``o``; the byte stream ``i``
    (FrameByte: data and last) through a BytesToBeats onto ``m_axis``."""

    def __init__(self, data_bytes=DATA_BYTES):
        self.data_bytes = data_bytes
        super().__init__({**axi_ports(data_bytes), "o": Out(stream.Signature(8)),
                          "i": In(stream.Signature(FrameByte))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.to_bytes = to_bytes = BeatsToBytes(self.data_bytes)
        m.submodules.to_beats = to_beats = BytesToBeats(self.data_bytes)
        wire_axi(m, self, to_bytes.i, to_beats.o)
        wiring.connect(m, to_bytes.o, wiring.flipped(self.o))
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
        wire_axi(m, self, host.h2c, host.c2h)
        return m


@cache
def adapter_verilog():
    return verilog_for(AdapterBench())


@cache
def host_verilog():
    """The host bench's Verilog and its accelerator's INFO record."""
    device = Accelerator(**ACCELERATOR)
    return verilog_for(HostBench(device)), device.info


def run(tmp_path, design, testcase, seed=1, valid_probability=0.7, ready_probability=0.6, **env):
    env = {"SEED": str(seed), "DATA_BYTES": str(DATA_BYTES), "VALID_PROBABILITY": str(valid_probability),
           "READY_PROBABILITY": str(ready_probability), **{name: str(value) for name, value in env.items()}}
    run = run_cocotb(design, test_module=TB, testcase=testcase, run_dir=tmp_path, extra_env=env)
    assert run.tests == [f"tb_axi_stream.{name}" for name in ([testcase] if isinstance(testcase, str) else testcase)]
    return run


STALLS = [(1, 0.7, 0.6), (2, 0.3, 0.9), (3, 0.9, 0.3), (4, 1.0, 1.0)]
"""(seed, valid probability, ready probability): the AXI source's pauses and the byte sink's refusals,
or the byte source's gaps and the AXI sink's backpressure."""


@pytest.mark.parametrize("seed, valid_probability, ready_probability", STALLS)
def test_adapters_match_model(tmp_path, seed, valid_probability, ready_probability):
    run(tmp_path, adapter_verilog(), ["beats_to_bytes_matches_model", "bytes_to_beats_matches_model"],
        seed, valid_probability, ready_probability)


def test_adapters_at_full_rate(tmp_path):
    """Nothing stalled: a byte a cycle out of BeatsToBytes across beat and transfer boundaries, and
    into BytesToBeats."""
    run(tmp_path, adapter_verilog(), ["beats_to_bytes_rate", "bytes_to_beats_rate"], 5, 1.0, 1.0)


HOST_TESTS = ["host_frame_per_transfer", "host_frames_in_one_transfer", "host_frame_split_across_transfers"]


@pytest.mark.parametrize("seed, valid_probability, ready_probability", [(1, 0.6, 0.5), (2, 1.0, 1.0)])
def test_host(tmp_path, seed, valid_probability, ready_probability):
    verilog_text, info = host_verilog()
    run(tmp_path, verilog_text, HOST_TESTS, seed, valid_probability, ready_probability, INFO=info.hex(),
        COLS=ACCELERATOR["cols"], WEIGHT_WORDS=ACCELERATOR["weight_words"],
        MAX_PAYLOAD=ACCELERATOR["max_payload"])
