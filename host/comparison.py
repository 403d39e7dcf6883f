"""Several back ends on one prompt: logit differences per step and the first diverging token.

The first device generates greedily; every other device is teacher-forced on the same tokens, so
their logits are compared at every step, and a device diverges at the first step where its own
greedy choice differs from the first device's token.
"""

import numpy as np

from .generation import generate
from .sampling import Sampler

__all__ = ["compare_devices"]


def compare_devices(models, tokenizer, ids, new_tokens, eos_id):
    """Return ``{"steps": [...], "devices": {name: {...}}}`` for models[0] against the rest."""
    baseline = generate(models[0], tokenizer, ids, Sampler(), new_tokens, eos_id, keep_logits=True)
    tokens = baseline.new_ids
    report = {"baseline": models[0].name, "new_ids": tokens, "text": baseline.text, "devices": {}}
    for model in models[1:]:
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
    return report
