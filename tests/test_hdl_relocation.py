"""hdl/relocation.py in Verilator against contract/program.py's relocation term (the testbench is
tb_relocation.py). The unit has no parameters, so every run shares one build."""

from pathlib import Path

import pytest

from neofpga.hdl.relocation import Relocator
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).with_name("tb_relocation.py")


def run(tmp_path, testcase, seed, valid_probability=1.0, ready_probability=1.0, random_count=0):
    env = {"SEED": str(seed), "VALID_PROBABILITY": str(valid_probability),
           "READY_PROBABILITY": str(ready_probability), "RANDOM_COUNT": str(random_count)}
    return run_cocotb(Relocator(), test_module=TB, testcase=testcase, run_dir=tmp_path, extra_env=env)


@pytest.mark.parametrize("seed, valid_probability, ready_probability", [(1, 0.9, 0.5), (2, 0.4, 0.9)])
def test_relocation_terms_match_the_contract_under_stalls(tmp_path, seed, valid_probability, ready_probability):
    run(tmp_path, "matches_reference", seed, valid_probability, ready_probability, random_count=3000)


def test_relocation_latency(tmp_path):
    run(tmp_path, "latency", seed=3)
