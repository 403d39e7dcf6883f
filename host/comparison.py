"""Several back ends on one prompt: logit differences per step and the first diverging token.

The first device generates greedily; every other device is teacher-forced on the same tokens, so
their logits are compared at every step, and a device diverges at the first step where its own
greedy choice differs from the first device's token. Between two integer back ends (``emu``, the
boards), whose device-side results must agree bit for bit, the report also names the first
device op (attention, MLP or head, with its layer and positions) whose integers differ.
"""

import numpy as np

from .generation import generate
from .sampling import Sampler

__all__ = ["compare_devices", "RecordingOps"]


class RecordingOps:
    """Wraps a device's integer ops, keeping every call's name and result."""

    def __init__(self, ops):
        self.ops, self.calls = ops, []

    def reset(self, batch=1):
        self.ops.reset(batch)

    def attention(self, layer, x, positions):
        return self._keep(f"attention, layer {layer}", positions, self.ops.attention(layer, x, positions))

    def mlp(self, layer, x):
        return self._keep(f"mlp, layer {layer}", None, self.ops.mlp(layer, x))

    def head(self, x):
        return self._keep("head", None, self.ops.head(x))

    def _keep(self, name, positions, result):
        self.calls.append((name, None if positions is None else [int(p) for p in positions], np.array(result)))
        return result


def _record(model):
    """Start recording the integer ops of ``model``'s device, if it has any; the recorder or None."""
    device = getattr(model, "device", None)
    if device is None or not hasattr(device, "ops"):
        return None
    device.ops = RecordingOps(device.ops)
    return device.ops


def _first_op_difference(expected, got):
    """The first call whose integers differ between two recordings, or None."""
    positions = None
    for (name, at, a), (_, _, b) in zip(expected.calls, got.calls):
        positions = at if at is not None else positions
        if a.shape != b.shape or not np.array_equal(a, b):
            different = a != b if a.shape == b.shape else np.ones(1, bool)
            return {"op": name, "positions": positions, "values_differing": int(different.sum()),
                    "max_difference": int(np.abs(a.astype(np.int64) - b).max()) if a.shape == b.shape else None}
    return None


def compare_devices(models, tokenizer, ids, new_tokens, eos_id):
    """Return ``{"steps": [...], "devices": {name: {...}}}`` for models[0] against the rest."""
    recorders = [_record(model) for model in models]
    baseline = generate(models[0], tokenizer, ids, Sampler(), new_tokens, eos_id, keep_logits=True)
    tokens = baseline.new_ids
    report = {"baseline": models[0].name, "new_ids": tokens, "text": baseline.text, "devices": {}}
    for model, recorder in zip(models[1:], recorders[1:]):
        model.reset(1)
        logits = model.forward(np.array([ids]), last_only=True)[0, -1]
        diffs, first = [], None
        for step, token in enumerate(tokens):
            diffs.append(float(np.max(np.abs(logits.astype(np.float64) - baseline.step_logits[step]))))
            choice = int(np.argmax(logits))
            if first is None and choice != token:
                reference = baseline.step_logits[step]
                first = {"step": step, "position": len(ids) + step, "expected": token, "got": choice,
                         "expected_text": tokenizer.decode([token]), "got_text": tokenizer.decode([choice]),
                         # why: how close the two candidates were in the baseline, against this step's error
                         "baseline_margin": float(reference[token] - reference[choice]),
                         "logit_error": diffs[-1]}
            if step + 1 < len(tokens):
                logits = model.forward(np.array([[token]]), last_only=True)[0, -1]
        report["devices"][model.name] = {"max_logit_diff_per_step": diffs,
                                         "max_logit_diff": max(diffs, default=0.0),
                                         "first_divergence": first}
        if recorders[0] is not None and recorder is not None:
            report["devices"][model.name]["first_op_difference"] = _first_op_difference(recorders[0], recorder)
    return report
