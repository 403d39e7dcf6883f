"""``neofpga inspect`` for a quantized image: its tensors with dtypes and shapes, and its scales."""

import numpy as np

from ..contract.numerics import NUMERICS_VERSION

__all__ = ["image_text", "image_json"]


def _group(name):
    return name.split(".")[0] + "." + name.split(".")[1] if name.startswith("h.") else "model"


def _summary(array):
    values = array.astype(np.float64)
    return {"dtype": array.dtype.name, "shape": list(array.shape), "min": float(values.min()),
            "max": float(values.max())}


def image_json(model):
    """Config, numerics version, scales and a summary of every tensor, grouped by block."""
    groups = {}
    for name, array in model.tensors.items():
        groups.setdefault(_group(name), {})[name] = _summary(array)
    return {"source": model.source, "numerics_version": model.numerics_version,
            "config": model.config.to_dict(),
            "scales": {name: float(value) for name, value in model.scales.items()},
            "calibration_max_abs": model.calibration,
            "tensors": groups,
            "bytes": {"int8_weights": int(sum(a.nbytes for n, a in model.tensors.items()
                                              if n.endswith(".weight") and a.dtype == np.int8))}}


def image_text(model):
    """The same as indented text."""
    c = model.config
    lines = [f"# neofpga image of {model.source} (numerics version {model.numerics_version}, "
             f"this neofpga: {NUMERICS_VERSION})",
             f"GPT-Neo: vocab {c.vocab_size}, context {c.max_position_embeddings}, hidden {c.hidden_size}, "
             f"{c.num_layers} layers {list(c.attention_layers)}, {c.num_heads} heads, window {c.window_size}, "
             f"MLP {c.intermediate_size}"]
    by_group = {}
    for name, array in model.tensors.items():
        by_group.setdefault(_group(name), []).append((name, array))
    for group, entries in by_group.items():
        lines.append(f"({group})")
        for name, array in entries:
            lines.append(f"  {name}: {list(array.shape)} {array.dtype.name}  range [{array.min():.6g}, "
                         f"{array.max():.6g}]")
        prefix = group + "." if group != "model" else ""
        scales = {n: v for n, v in model.scales.items() if (n.startswith(prefix) if prefix else "." not in n)}
        if scales:
            lines.append("  scales: " + ", ".join(f"{n.removeprefix(prefix)} {float(v):.6g}" for n, v in scales.items()))
    weights = sum(a.nbytes for n, a in model.tensors.items() if n.endswith(".weight") and a.dtype == np.int8)
    lines.append(f"int8 weights: {weights:,} bytes")
    return "\n".join(lines)
