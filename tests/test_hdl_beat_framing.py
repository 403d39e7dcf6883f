"""hdl/beat_framing.py in Verilator (the testbench is tb_beat_framing.py): the BeatFrameReceiver's
descriptors and payload against a reference model, its transfers driven by cocotbext-axi.

One design, :class:`BeatFramingBench`, so that every test shares one build: the receiver with its
AXI4-Stream side as plain ``s_axis_*`` ports (the names cocotbext-axi's ``AxiStreamBus.from_prefix``
looks for), its descriptor stream ``frame`` and its read port.
"""

from functools import cache
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.hdl.beat_framing import BeatFrameReceiver
from neofpga.hdl.framing import ReceivedFrame
from neofpga.sim.runner import run_cocotb, verilog_for

TB = Path(__file__).with_name("tb_beat_framing.py")
DATA_BYTES = 8
MAX_PAYLOAD = 62   # a longest frame of 72 bytes: nine whole beats, the buffer's every row full
TIMEOUT = 40


class BeatFramingBench(wiring.Component):
    """A BeatFrameReceiver: ``s_axis_*`` beats in, ``frame`` descriptors out, and its read port."""

    def __init__(self, max_payload, timeout_cycles, data_bytes=DATA_BYTES):
        self.max_payload, self.timeout_cycles, self.data_bytes = max_payload, timeout_cycles, data_bytes
        super().__init__({
            "s_axis_tdata": In(8 * data_bytes), "s_axis_tkeep": In(data_bytes), "s_axis_tlast": In(1),
            "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "frame": Out(stream.Signature(ReceivedFrame)),
            "payload_addr": In(16),
            "payload_en": In(1, init=1),
            "payload_data": Out(8),
            "payload_beat": Out(8 * data_bytes),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = BeatFrameReceiver(self.max_payload, self.timeout_cycles, self.data_bytes)
        beat = receiver.i.payload
        m.d.comb += [beat.data.eq(self.s_axis_tdata), beat.keep.eq(self.s_axis_tkeep), beat.last.eq(self.s_axis_tlast),
                     receiver.i.valid.eq(self.s_axis_tvalid), self.s_axis_tready.eq(receiver.i.ready)]
        wiring.connect(m, receiver.frame, wiring.flipped(self.frame))
        m.d.comb += [receiver.payload_addr.eq(self.payload_addr), receiver.payload_en.eq(self.payload_en),
                     self.payload_data.eq(receiver.payload_data), self.payload_beat.eq(receiver.payload_beat)]
        return m


@cache
def bench_verilog():
    return verilog_for(BeatFramingBench(MAX_PAYLOAD, TIMEOUT))


def run(tmp_path, testcase, seed=1, valid_probability=0.7, ready_probability=0.6):
    env = {"SEED": str(seed), "DATA_BYTES": str(DATA_BYTES), "MAX_PAYLOAD": str(MAX_PAYLOAD),
           "TIMEOUT": str(TIMEOUT), "VALID_PROBABILITY": str(valid_probability),
           "READY_PROBABILITY": str(ready_probability)}
    run = run_cocotb(bench_verilog(), test_module=TB, testcase=testcase, run_dir=tmp_path, extra_env=env)
    assert run.tests == [f"tb_beat_framing.{name}" for name in ([testcase] if isinstance(testcase, str) else testcase)]
    return run


RECEIVER_TESTS = ["good_frames", "length_limit", "corrupted_frames", "truncated_frames", "trailing_junk",
                  "no_sync", "stalls", "timeout_is_exact", "mixed"]


def test_receiver_matches_model_under_stalls(tmp_path):
    """Every case, with tvalid gaps and a consumer slow at random to take descriptors."""
    run(tmp_path, RECEIVER_TESTS)


def test_receiver_unstalled(tmp_path):
    """Beats back to back and a consumer that takes at once: nothing lost at a beat a cycle."""
    run(tmp_path, ["good_frames", "trailing_junk", "mixed"], seed=2, valid_probability=1.0, ready_probability=1.0)


def test_receiver_slow_consumer(tmp_path):
    """Descriptors held for long while the next transfer waits (and tvalid low half the time): the
    receiver takes no beat meanwhile."""
    run(tmp_path, "mixed", seed=3, valid_probability=0.5, ready_probability=0.05)
