"""The matmul sequencer and its array in Verilator against numpy: shapes that are not multiples
of the array, M from 1 up, stalls, back-to-back commands."""


import pytest
from neofpga.sim.matmul_bench import TB_MATMUL
from neofpga.sim.matmul_harness import MatmulHarness
from neofpga.sim.runner import run_cocotb

TB = TB_MATMUL  # the product's own testbench: neofpga bench --hw runs it too


@pytest.mark.parametrize("rows,cols", [(1, 5), (4, 3), (9, 16)])  # 9 x 16: the simulated board's array
def test_matmul_sequencer(rows, cols, tmp_path):
    harness = MatmulHarness(rows, cols)
    run_cocotb(harness, test_module=TB, run_dir=tmp_path, testcase=["products_match_numpy", "full_tiles_keep_the_array_busy"],
               extra_env={"ROWS": str(rows), "COLS": str(cols), "ADDRESS_WIDTH": str(harness.address_width)})


def test_the_bench_cycle_formula_matches_the_simulation():
    """neofpga bench --hw extrapolates model cycles with matmul_cycles: it must be exact."""
    from neofpga.sim.matmul_bench import matmul_cycles, measure_matmul

    shapes = [[1, 8, 7], [4, 8, 3], [5, 2, 7], [9, 17, 4], [12, 40, 9]]
    measured = measure_matmul(4, 3, shapes)
    for entry in measured["products"]:
        assert entry["cycles"] == matmul_cycles(4, 3, entry["m"], entry["k"], entry["n"]), entry
