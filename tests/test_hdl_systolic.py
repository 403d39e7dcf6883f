"""The systolic array in Verilator against numpy, for several shapes."""

from pathlib import Path

import pytest

from neofpga.hdl.systolic import SystolicArray
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).with_name("tb_systolic.py")


@pytest.mark.parametrize("rows,cols", [(1, 4), (3, 5), (9, 16)])  # 9 x 16: the simulated board's array
def test_systolic_array(rows, cols, tmp_path):
    run_cocotb(SystolicArray(rows, cols), test_module=TB, run_dir=tmp_path,
               extra_env={"ROWS": str(rows), "COLS": str(cols), "SEED": str(rows * 100 + cols)})
