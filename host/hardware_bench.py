"""``neofpga bench --hw``: cycles, utilisation, simulator speed and ECP5 resources of the gateware.

Cycles come from Verilator runs of the matmul sequencer on GPT-Neo shapes (scaled down along N
where the banks or the run time demand it, :mod:`neofpga.sim.matmul_bench`) and are checked
against the formula that then extrapolates to whole models. Resources and Fmax come from
out-of-context place and route on an ECP5-85F of each unit (:mod:`neofpga.boards.units`).
"""

from ..contract.design import ARRAY_COLS, ARRAY_ROWS
from .backends import load_source
from .model.config import GPTNeoConfig
from .model.random_init import PRESETS

__all__ = ["model_ops", "hardware_report", "render_hardware_report"]


def model_ops(config, m, context):
    """The matmuls of one decoder block and the head for ``m`` new tokens at ``context`` cached
    positions: (name, m, k, n, count) with count the number of such products (heads, layers)."""
    d, f, h, hd = config.hidden_size, config.intermediate_size, config.num_heads, config.head_dim
    layers = config.num_layers
    return [("qkv", m, d, 3 * d, layers), ("scores", m, hd, context, layers * h),
            ("p x v", m, context, hd, layers * h), ("out_proj", m, d, d, layers),
            ("c_fc", m, d, f, layers), ("c_proj", m, f, d, layers), ("head", m, d, config.vocab_size, 1)]


def hardware_report(rows=ARRAY_ROWS, cols=ARRAY_COLS, synthesis=True, log=print):
    """Everything ``neofpga bench --hw`` prints: see docs/PERFORMANCE.md for the meaning of each figure."""
    from ..sim.matmul_bench import matmul_cycles, measure_matmul

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

    default = load_source(None)
    models = {"default model": default.config,
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
        from ..boards.units import unit_resources
        image = default.quantized()
        tables = [image.tensors[f"h.{i}.gelu.knots"].tolist() for i in range(image.config.num_layers)]
        report["ecp5_85f"] = unit_resources(rows, cols, tables, log=log)
    return report


def render_hardware_report(report):
    """``bench --hw``'s text."""
    a = report["array"]
    lines = [f"systolic array {a['rows']}x{a['cols']}: {a['macs_per_cycle']} MACs a cycle",
             "matmul products in Verilator (cycles from command to last result; formula in brackets):"]
    for p in report["matmul_runs"]:
        lines.append(f"  M={p['m']:<4} K={p['k']:<5} N={p['n']:<5} {p['cycles']:>7} cycles ({p['formula_cycles']}), "
                     f"utilisation {p['utilisation'] * 100:5.1f} %")
    lines.append(f"  formula within {report['formula_max_error_cycles']} cycles of every run")
    s = report["simulator"]
    lines.append(f"simulator: {s['free_running_cycles_per_second']:,.0f} cycles/s free-running, "
                 f"{s['cycles_per_second_with_a_python_check_every_cycle']:,.0f} with a Python check every cycle")
    for name, phases in report["models"].items():
        for phase, e in phases.items():
            lines.append(f"{name}, {phase}: {e['matmul_cycles']:,} matmul cycles for {e['macs']:,} MACs, "
                         f"utilisation {e['utilisation'] * 100:.1f} %")
    for name, r in report.get("ecp5_85f", {}).items():
        lines.append(f"ECP5-85F {name}: {r['luts']} LUT4, {r['ffs']} FF, {r['mult18x18d']} MULT18X18D, "
                     f"{r['dp16kd']} DP16KD, Fmax {r['fmax_mhz']:.1f} MHz")
    return "\n".join(lines)
