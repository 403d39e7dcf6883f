"""``neofpga bench --hw``: cycles, utilisation, simulator speed and ECP5 resources of the gateware.

Cycles come from Verilator runs of the matmul sequencer on GPT-Neo shapes (scaled down along N
where the banks or the run time demand it) and are checked against the formula that then
extrapolates to whole models. Resources and Fmax come from out-of-context place and route on an
ECP5-85F of each unit, with every output a port so nothing can be pruned.
"""

import json
import math
import tempfile
from pathlib import Path

from ..hdl.dsp import Multiplier
from .harness import MatmulHarness
from .runner import run_cocotb

__all__ = ["matmul_cycles", "model_ops", "measure_matmul", "synthesize_units", "hardware_report"]

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


def model_ops(config, m, context):
    """The matmuls of one decoder block and the head for ``m`` new tokens at ``context`` cached
    positions: (name, m, k, n, count) with count the number of such products (heads, layers)."""
    d, f, h, hd = config.hidden_size, config.intermediate_size, config.num_heads, config.head_dim
    layers = config.num_layers
    return [("qkv", m, d, 3 * d, layers), ("scores", m, hd, context, layers * h),
            ("p x v", m, context, hd, layers * h), ("out_proj", m, d, d, layers),
            ("c_fc", m, d, f, layers), ("c_proj", m, f, d, layers), ("head", m, d, config.vocab_size, 1)]


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


def synthesize_units(units, workdir):
    """Out-of-context ECP5-85F results for ``units`` ({name: component})."""
    from ..boards.ecp5 import synthesize_out_of_context

    report = {}
    for name, component in units.items():
        result = synthesize_out_of_context(component, "top", Path(workdir) / name)
        used = result["used"]
        report[name] = {"luts": used["TRELLIS_COMB"], "ffs": used["TRELLIS_FF"],
                        "mult18x18d": used["MULT18X18D"], "dp16kd": used["DP16KD"],
                        "fmax_mhz": result["fmax"]["clk"]["achieved_mhz"],
                        "place_and_route_seconds": result["seconds"]["place_and_route"]}
    return report


def hardware_report(rows=9, cols=16, synthesis=True, log=print):
    """Everything ``neofpga bench --hw`` prints: see docs/PERFORMANCE.md for the meaning of each figure."""
    from ..host.devices import load_source
    from ..host.model.random_init import PRESETS
    from ..host.model.config import GPTNeoConfig
    from ..hdl.gelu import GELU
    from ..hdl.requantizer import Requantizer
    from ..hdl.softmax import Softmax
    from ..hdl.systolic import SystolicArray

    report = {"array": {"rows": rows, "cols": cols, "macs_per_cycle": rows * cols}}
    # shapes that fit 2**13-word banks; N is scaled down where a model's is larger
    shapes = [[1, 64, 192], [rows, 64, 192], [2 * rows, 64, 192], [3 * rows, 224, 64], [1, 224, 64],
              [1, 64, 1024], [4 * rows, 64, 1024], [1, 768, 96], [2 * rows, 768, 96], [1, 3072, 24],
              [rows, 16, 256], [rows, 256, 16]]
    log(f"simulating the {rows}x{cols} sequencer on {len(shapes)} products ...")
    measured = measure_matmul(rows, cols, shapes)
    report["matmul_runs"] = measured["products"]
    report["simulator"] = {"free_running_cycles_per_second": measured["free_running_cycles_per_second"],
                           "cycles_per_second_with_a_python_check_every_cycle": measured["checked_cycles_per_second"]}
    report["formula_max_error_cycles"] = max(abs(p["cycles"] - p["formula_cycles"]) for p in measured["products"])

    models = {"default model": load_source(None).config,
              "tinystories-33m": GPTNeoConfig.from_dict({"model_type": "gpt_neo", **PRESETS["tinystories-33m"]})}
    report["models"] = {}
    for name, config in models.items():
        entry = {}
        for phase, m, context in (("decode (M = 1, context 128)", 1, 128),
                                  (f"prefill (M = {rows * 8}, context {rows * 8})", rows * 8, rows * 8)):
            ops = model_ops(config, m, context)
            cycles = sum(matmul_cycles(rows, cols, m_, k, n) * count for _, m_, k, n, count in ops)
            macs = sum(m_ * k * n * count for _, m_, k, n, count in ops)
            entry[phase] = {"matmul_cycles": cycles, "macs": macs,
                            "utilisation": macs / (rows * cols * cycles)}
        report["models"][name] = entry

    if synthesis:
        image = load_source(None).quantized()
        tables = [image.tensors[f"h.{i}.gelu.knots"].tolist() for i in range(image.config.num_layers)]
        units = {"requantizer": Requantizer(), "gelu (4 tables)": GELU(tables),
                 "softmax (rows to 256)": Softmax(256), "softmax (rows to 2048)": Softmax(2048),
                 f"systolic array {rows}x{cols}": SystolicArray(rows, cols)}
        log(f"placing and routing {len(units)} units on an ECP5-85F (the array takes minutes) ...")
        with tempfile.TemporaryDirectory() as workdir:
            report["ecp5_85f"] = synthesize_units(units, workdir)
    return report
