"""hdl/requantizer.py in Verilator against kernels.requantize (the testbench is tb_requantizer.py).

The requantizer has no parameters, so every run shares one build."""

from pathlib import Path

import pytest

from neofpga.hdl.requantizer import Requantizer
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).with_name("tb_requantizer.py")


def run(tmp_path, testcase, seed, valid_probability=1.0, ready_probability=1.0, random_count=0):
    env = {"SEED": str(seed), "VALID_PROBABILITY": str(valid_probability),
           "READY_PROBABILITY": str(ready_probability), "RANDOM_COUNT": str(random_count),
           "LATENCY": str(Requantizer.LATENCY)}
    return run_cocotb(Requantizer(), test_module=TB, testcase=testcase, run_dir=tmp_path, extra_env=env)


@pytest.mark.parametrize("seed, valid_probability, ready_probability",
                         [(1, 0.9, 0.5), (2, 0.5, 0.9), (3, 0.7, 0.7)])
def test_requantizer_matches_numerics_under_stalls(tmp_path, seed, valid_probability, ready_probability):
    run(tmp_path, "matches_reference", seed, valid_probability, ready_probability, random_count=10000)


def test_requantizer_latency_and_throughput(tmp_path):
    run(tmp_path, "latency_and_throughput", seed=4)
