"""hdl/sampler.py: the sampler against kernels.integer_sample and kernels.argmax (cocotb on Verilator)."""

from pathlib import Path

from neofpga.hdl.sampler import Sampler
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).with_name("tb_sampler.py")


def test_sampler_matches_integer_sample(tmp_path):
    run = run_cocotb(Sampler(), test_module=TB, run_dir=tmp_path)
    assert run.tests == [f"tb_sampler.{name}" for name in
                         ("matches_integer_sample", "arbitrary_parameters", "tinystories_vocabulary", "cycles_per_row")]
