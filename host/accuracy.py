"""The integer golden model measured against the float reference on held-out text."""

import numpy as np

from .backends import open_model
from .scoring import log_softmax, windows

__all__ = ["measure_accuracy", "render_accuracy"]


def _run(model, ids, start, end, record):
    model.reset(1)
    def observe(site, layer, x):
        if site == "residual":
            record[layer] = x[0]

    model.observe = observe
    logits = model.forward(np.asarray(ids)[None, start:end])[0]
    model.observe = None
    return logits.astype(np.float64)


def measure_accuracy(source, ids):
    """Teacher-forced ``cpu`` and ``emu`` over ``ids`` (windows as in scoring): a dict of figures."""
    reference, golden = open_model("cpu", source), open_model("emu", source)
    ids = np.asarray(ids)
    agree, nll_f, nll_i, errors = [], [], [], []
    layer_error = {}
    for start, end, first in windows(len(ids), source.config.max_position_embeddings):
        residual_f, residual_i = {}, {}
        f = _run(reference, ids, start, end, residual_f)
        g = _run(golden, ids, start, end, residual_i)
        rows = np.arange(first - 1 - start, end - 1 - start)
        targets = ids[first:end]
        f, g = f[rows], g[rows]
        agree.append(f.argmax(-1) == g.argmax(-1))
        nll_f.append(-log_softmax(f)[np.arange(len(rows)), targets])
        nll_i.append(-log_softmax(g)[np.arange(len(rows)), targets])
        errors.append(np.abs(f - g).max(-1))
        for layer in residual_f:
            a, b = residual_f[layer][rows], residual_i[layer][rows]
            sums = layer_error.setdefault(layer, [0.0, 0.0])
            sums[0] += float(((a - b) ** 2).sum())
            sums[1] += float((a ** 2).sum())
    agree, nll_f, nll_i, errors = map(np.concatenate, (agree, nll_f, nll_i, errors))
    ppl_f, ppl_i = float(np.exp(nll_f.mean())), float(np.exp(nll_i.mean()))
    return {
        "model": source.name,
        "n_tokens": int(len(agree)),
        "top1_agreement": float(agree.mean()),
        "float_perplexity": ppl_f,
        "integer_perplexity": ppl_i,
        "perplexity_ratio": ppl_i / ppl_f,
        "max_logit_error": float(errors.max()),
        "mean_max_logit_error": float(errors.mean()),
        "residual_relative_rms_error": {str(layer): float(np.sqrt(e / r)) for layer, (e, r) in
                                        sorted(layer_error.items())},
    }


def render_accuracy(report):
    """The report as text."""
    lines = [
        f"model: {report['model']}, {report['n_tokens']} scored tokens",
        f"top-1 agreement (emu vs cpu):  {report['top1_agreement'] * 100:.2f} %",
        f"perplexity: cpu {report['float_perplexity']:.4f}, emu {report['integer_perplexity']:.4f} "
        f"(ratio {report['perplexity_ratio']:.4f}, {(report['perplexity_ratio'] - 1) * 100:+.2f} %)",
        f"logit error: max {report['max_logit_error']:.4f}, mean of per-position max "
        f"{report['mean_max_logit_error']:.4f}",
        "residual stream, relative RMS error after each block: " + ", ".join(
            f"{layer}: {e:.4f}" for layer, e in report["residual_relative_rms_error"].items()),
    ]
    return "\n".join(lines)
