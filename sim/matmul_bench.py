"""The matmul sequencer's cycles: measured in Verilator, and the formula that extrapolates them.

``neofpga bench --hw`` (:mod:`neofpga.host.hardware_bench`) runs GPT-Neo shapes through
:func:`measure_matmul` and checks them against :func:`matmul_cycles`.
"""

import json
import math
import tempfile
from pathlib import Path

from ..hdl.dsp import Multiplier
from .matmul_harness import MatmulHarness
from .runner import run_cocotb

__all__ = ["matmul_cycles", "measure_matmul"]

TB_MATMUL = Path(__file__).with_name("tb_matmul.py")


def matmul_cycles(rows, cols, m, k, n):
    """Cycles from a product's command to its last result row on the sequencer.

    The first tile takes K steps and every later one max(K, rows, cols) (a tile ends at least that
    long after the one before: the array pads short ones); tiles run back to back, and the last
    tile's rows come out after the array's skew (cols), the multiplier, and six registers between
    the command and the output (command, operand read, array entry, accumulator, holding register,
    output buffer). tests/test_hdl_matmul.py checks it against the simulation.
    """
    tiles = math.ceil(m / rows) * math.ceil(n / cols)
    last_tile_rows = (m - 1) % rows + 1
    return k + (tiles - 1) * max(k, rows, cols) + cols + Multiplier.LATENCY + 6 + last_tile_rows


def measure_matmul(rows, cols, shapes):
    """Run ``shapes`` (m, k, n) through the sequencer in Verilator: cycles and simulator speed."""
    depth = max(max(math.ceil(m / rows), math.ceil(n / cols)) * k for m, k, n in shapes)
    address_width = max(10, math.ceil(math.log2(depth)))
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder) / "results.json"
        harness = MatmulHarness(rows, cols, address_width)
        run_cocotb(harness, test_module=TB_MATMUL, testcase="measure_cycles", run_dir=folder,
                   log_file=Path(folder) / "simulation.log",  # keeps stdout for the report
                   extra_env={"ROWS": str(rows), "COLS": str(cols), "ADDRESS_WIDTH": str(address_width),
                              "SHAPES": json.dumps(shapes), "RESULTS": str(results)})
        measured = json.loads(results.read_text())
    for entry in measured["products"]:
        entry["formula_cycles"] = matmul_cycles(rows, cols, entry["m"], entry["k"], entry["n"])
        entry["utilisation"] = entry["m"] * entry["k"] * entry["n"] / (rows * cols * entry["cycles"])
    measured["checked_cycles_per_second"] = measured["simulated_cycles"] / measured["wall_seconds"]
    return measured
