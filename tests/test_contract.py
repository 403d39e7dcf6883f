# amaranth: UnusedElaboratable=no
"""The contract: its constants agree with the generated Verilog and the host, and the gateware
version (the simulated board's cache key) covers everything that goes into the Verilog."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
from amaranth.back import verilog

from neofpga.contract import design
from neofpga.contract.gateware_version import GATEWARE_PACKAGES, gateware_roots, gateware_version, sources_digest
from neofpga.contract.numerics import EXP2_FRAC_BITS, EXP2_ONE, EXP2_TABLE, GELU_KNOT_BITS, GELU_KNOTS
from neofpga.contract.protocol import CONSTANT, INFO, MATMUL_MAX_SIZE, NORM_COLUMN, WORD_BYTES, Space, record_size
from neofpga.hdl.accelerator import Accelerator
from neofpga.hdl.gelu import GELU
from neofpga.hdl.matmul import MatmulCommand
from neofpga.hdl.softmax import Softmax
from neofpga.sim import simulated_board

SMALL = dict(rows=2, cols=2, activation_words=64, weight_words=64, constant_words=16, gelu_tables=1,
             softmax_length=8, max_payload=64, timeout_cycles=1000)


# -- the constants, in the Verilog -------------------------------------------------------------

def test_the_softmax_units_exp2_table_is_the_contracts():
    text = verilog.convert(Softmax(16), name="top", emit_src=False)
    table = {int(i): int(v, 16) for i, v in re.findall(r"exp2\[(\d+)\] = 16'h([0-9a-f]+);", text)}
    assert [table[i] for i in range(2 ** EXP2_FRAC_BITS)] == list(EXP2_TABLE)
    # the plain-Python table is numpy's round-half-even of the same formula
    f = np.arange(2 ** EXP2_FRAC_BITS, dtype=np.float64)
    assert list(EXP2_TABLE) == np.rint(EXP2_ONE * np.exp2(-f / 2 ** EXP2_FRAC_BITS)).astype(int).tolist()


def test_the_gelu_units_knots_are_the_contracts():
    tables = [[0] * GELU_KNOTS] * 3
    text = verilog.convert(GELU(tables), name="top", emit_src=False)
    widths = {name: (int(high) + 1, int(depth) + 1)
              for high, name, depth in re.findall(r"reg (?:signed )?\[(\d+):0\] (\w+_knots) \[(\d+):0\];", text)}
    assert widths == {"even_knots": (GELU_KNOT_BITS, (3 * GELU_KNOTS + 1) // 2),
                      "odd_knots": (GELU_KNOT_BITS, 3 * GELU_KNOTS // 2)}


def test_the_gateware_sizes_are_the_contracts():
    accelerator = Accelerator(**SMALL)
    assert accelerator.depths[Space.GELU] == GELU_KNOTS * SMALL["gelu_tables"]
    assert len(accelerator.info) == record_size(INFO)
    assert 2 ** MatmulCommand(8)["m"].shape.width - 1 == MATMUL_MAX_SIZE
    assert WORD_BYTES[Space.CONSTANTS] == record_size(CONSTANT) == record_size(NORM_COLUMN)


def test_every_board_design_is_a_catalogue_board_and_fits_its_baud():
    from neofpga.boards.catalog import BOARDS
    assert set(design.BOARD_DESIGNS) == set(BOARDS)
    for name, board_design in design.BOARD_DESIGNS.items():
        if board_design.memories is not None and board_design.link == "uart":
            assert board_design.clock_hz % design.DEFAULT_BAUD == 0, name  # an exact UART divisor
    assert (design.SIMULATED_BOARD["rows"], design.SIMULATED_BOARD["cols"]) == (design.ARRAY_ROWS, design.ARRAY_COLS)


# -- the gateware version and the simulated board's cache ---------------------------------------

def copied_sources(tmp_path):
    return {package: shutil.copytree(root, tmp_path / package) for package, root in gateware_roots().items()}


def test_a_numerics_change_is_a_new_version_and_a_rebuild(tmp_path, monkeypatch):
    roots = copied_sources(tmp_path)
    assert sources_digest(roots) == sources_digest()
    numerics = roots["neofpga.contract"] / "numerics.py"
    numerics.write_text(numerics.read_text().replace("DIFF_MAX = 2 ** 17 - 1", "DIFF_MAX = 2 ** 16 - 1"))
    changed = sources_digest(roots)
    assert changed != sources_digest()
    assert gateware_version(SMALL, changed) != gateware_version(SMALL)

    monkeypatch.setenv("NEOFPGA_SIM_CACHE", str(tmp_path / "cache"))
    builds = []

    def build_board(verilog_text, trace, log):
        builds.append(verilog_text)
        executable = tmp_path / f"board{len(builds)}"
        executable.write_text("")
        return executable

    monkeypatch.setattr(simulated_board, "build_board", build_board)
    monkeypatch.setattr(simulated_board, "design_verilog",
                        lambda parameters, sources=None: f"version {gateware_version(parameters, sources)}")
    first = simulated_board.board_executable(SMALL, log=lambda line: None)
    assert simulated_board.board_executable(SMALL, log=lambda line: None) == first and len(builds) == 1
    rebuilt = simulated_board.board_executable(SMALL, log=lambda line: None, sources=changed)
    assert rebuilt != first and len(builds) == 2
    assert builds[1] == f"version {gateware_version(SMALL, changed)}"


def test_any_gateware_file_and_the_parameters_change_the_version(tmp_path):
    roots = copied_sources(tmp_path)
    before = sources_digest(roots)
    (roots["neofpga.hdl"] / "results.py").write_text((roots["neofpga.hdl"] / "results.py").read_text() + "\n")
    assert sources_digest(roots) != before
    assert gateware_version(dict(SMALL, weight_words=128)) != gateware_version(SMALL)
    assert gateware_version(dict(SMALL, uart_divisor=4)) == gateware_version(SMALL)  # the loop is not the accelerator


def test_the_version_covers_every_module_the_verilog_is_made_from():
    """Converting an accelerator loads only modules of the packages the version hashes."""
    script = ("import json, sys\n"
              "from amaranth.back import verilog\n"
              "from neofpga.hdl.accelerator import Accelerator\n"
              f"verilog.convert(Accelerator(**{SMALL!r}), name='top', emit_src=False)\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith('neofpga.'))))\n")
    loaded = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                       check=True).stdout)
    assert loaded and all(module.startswith(GATEWARE_PACKAGES) for module in loaded), loaded
