"""hdl/layer_norm.py: the LayerNorm unit against kernels.integer_layer_norm (cocotb on Verilator)."""

from pathlib import Path

import pytest

from neofpga.hdl.layer_norm import LayerNorm
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).with_name("tb_layer_norm.py")


@pytest.mark.parametrize("max_length", [16, 64, 768])  # 768: 22 root bits, as for TinyStories-33M
def test_layer_norm_matches_integer_layer_norm(max_length, tmp_path):
    run = run_cocotb(LayerNorm(max_length), test_module=TB, run_dir=tmp_path,
                     extra_env={"MAX_LENGTH": str(max_length)})
    assert run.tests == [f"tb_layer_norm.{name}" for name in
                         ("matches_integer_layer_norm", "arbitrary_parameters_and_saturation", "output_held_back",
                          "cycles_per_row")]

