"""hdl/framing.py in Verilator (the testbench is tb_framing.py): the receiver against its
reference model, the transmitter against protocol.encode_frame, and the two in loopback.

Both components sit in one design, :class:`FramingBench`, so that every test shares one build.
"""

from functools import cache
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.hdl.framing import FrameHeader, FrameReceiver, FrameTransmitter, ReceivedFrame
from neofpga.sim.runner import run_cocotb, verilog_for

TB = Path(__file__).with_name("tb_framing.py")
MAX_PAYLOAD, TIMEOUT = 64, 50


class FramingBench(wiring.Component):
    """A FrameReceiver and a FrameTransmitter side by side or, with ``loopback`` high, the
    transmitter's bytes into the receiver (``i`` and ``o`` then idle)."""

    def __init__(self, max_payload, timeout_cycles):
        self.max_payload, self.timeout_cycles = max_payload, timeout_cycles
        super().__init__({
            "loopback": In(1),
            "i": In(stream.Signature(8)),
            "frame": Out(stream.Signature(ReceivedFrame)),
            "payload_addr": In(range(max_payload)),
            "payload_data": Out(8),
            "answer": In(stream.Signature(FrameHeader)),
            "answer_payload": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = FrameReceiver(self.max_payload, self.timeout_cycles)
        m.submodules.transmitter = transmitter = FrameTransmitter()
        wiring.connect(m, receiver.frame, wiring.flipped(self.frame))
        m.d.comb += [receiver.payload_addr.eq(self.payload_addr), self.payload_data.eq(receiver.payload_data)]
        wiring.connect(m, wiring.flipped(self.answer), transmitter.frame)
        wiring.connect(m, wiring.flipped(self.answer_payload), transmitter.payload)
        with m.If(self.loopback):
            m.d.comb += [receiver.i.payload.eq(transmitter.o.payload), receiver.i.valid.eq(transmitter.o.valid),
                         transmitter.o.ready.eq(receiver.i.ready)]
        with m.Else():
            m.d.comb += [receiver.i.payload.eq(self.i.payload), receiver.i.valid.eq(self.i.valid),
                         self.i.ready.eq(receiver.i.ready),
                         self.o.payload.eq(transmitter.o.payload), self.o.valid.eq(transmitter.o.valid),
                         transmitter.o.ready.eq(self.o.ready)]
        return m


@cache
def bench_verilog():
    return verilog_for(FramingBench(MAX_PAYLOAD, TIMEOUT))


def run(tmp_path, testcase, seed=1, valid_probability=0.7, ready_probability=0.6):
    env = {"SEED": str(seed), "MAX_PAYLOAD": str(MAX_PAYLOAD), "TIMEOUT": str(TIMEOUT),
           "VALID_PROBABILITY": str(valid_probability), "READY_PROBABILITY": str(ready_probability)}
    run = run_cocotb(bench_verilog(), test_module=TB, testcase=testcase, run_dir=tmp_path, extra_env=env)
    assert run.tests == [f"tb_framing.{name}" for name in ([testcase] if isinstance(testcase, str) else testcase)]
    return run


RECEIVER_TESTS = ["good_frames", "length_limit", "garbage_between_frames", "corrupted_frames", "truncated_frames",
                  "pure_noise"]


@pytest.mark.parametrize("testcase", RECEIVER_TESTS)
def test_receiver_matches_model_under_stalls(tmp_path, testcase):
    run(tmp_path, testcase)


def test_receiver_unstalled(tmp_path):
    """Back-to-back bytes and a consumer that takes at once: no byte lost at full rate."""
    run(tmp_path, ["good_frames", "garbage_between_frames"], seed=2, valid_probability=1.0, ready_probability=1.0)


def test_receiver_timeout_is_exact(tmp_path):
    run(tmp_path, "timeout_is_exact")


@pytest.mark.parametrize("seed, valid_probability, ready_probability", [(1, 0.7, 0.6), (2, 1.0, 1.0)])
def test_transmitter_matches_encode_frame(tmp_path, seed, valid_probability, ready_probability):
    run(tmp_path, "transmitter_matches_encode_frame", seed, valid_probability, ready_probability)


def test_loopback(tmp_path):
    run(tmp_path, "loopback")
