"""Several back ends on one prompt: logit differences per step and the first diverging token.

The first back end generates greedily; every other one is teacher-forced on the same tokens, so
their logits are compared at every step, and a back end diverges at the first step where its own
greedy choice differs from the first one's token. Between two integer back ends (``emu``, the
boards), whose device ops must agree bit for bit, the report also names the first device op
(embedding, LayerNorm, attention, MLP or head, with its layer and positions) whose integers differ.
"""

import numpy as np

from .generation import generate
from .golden import IntegerGPTNeo
from .sampling import Sampler

__all__ = ["compare_backends", "RecordingOps", "render_comparison"]


class RecordingOps:
    """Wraps integer device ops, keeping every call's name and result."""

    def __init__(self, ops):
        self.ops, self.calls = ops, []

    def reset(self, batch=1):
        self.ops.reset(batch)

    def embedding(self, ids, positions):
        return self._keep("embedding", positions, self.ops.embedding(ids, positions))

    def layer_norm(self, name, x):
        return self._keep(f"layer norm {name}", None, self.ops.layer_norm(name, x))

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
    """Start recording the device ops of an integer back end's ``model``; the recorder, or None
    for a float back end."""
    if not isinstance(model, IntegerGPTNeo):
        return None
    model.ops = RecordingOps(model.ops)
    return model.ops


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


def compare_backends(models, tokenizer, ids, new_tokens, eos_id):
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


def render_comparison(report, prompt):
    """``compare``'s text: the baseline's continuation, then each back end's logit error, first
    diverging token and first differing device op."""
    base = report["baseline"]
    lines = [f"{base}: {prompt}{report['text']}"]
    for name, d in report["devices"].items():
        diffs = d["max_logit_diff_per_step"]
        lines.append(f"{name}: max |logit difference| from {base} over {len(diffs)} steps: "
                     f"{max(diffs):.2e} (mean {sum(diffs) / len(diffs):.2e})")
        first = d["first_divergence"]
        if first:
            lines.append(f"{name}: first diverges at new token {first['step']} (position {first['position']}): "
                         f"{base} chose {first['expected']} {first['expected_text']!r}, "
                         f"{name} chose {first['got']} {first['got_text']!r}; in {base}'s logits "
                         f"the two were {first['baseline_margin']:.3f} apart, and {name}'s logits differ by up to "
                         f"{first['logit_error']:.3f} there")
        else:
            lines.append(f"{name}: same {len(report['new_ids'])} tokens")
        if "first_op_difference" in d:
            op = d["first_op_difference"]
            if op is None:
                lines.append(f"{name}: every device op gave {base}'s integers")
            else:
                where = f" at positions {op['positions'][0]}..{op['positions'][-1]}" if op["positions"] else ""
                lines.append(f"{name}: first device op whose integers differ from {base}'s: "
                             f"{op['op']}{where} ({op['values_differing']} values, by up to {op['max_difference']})")
    return "\n".join(lines)
