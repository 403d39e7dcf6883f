"""Teacher-forced scoring of a text: negative log-likelihood, perplexity, argmax predictions.

Text longer than the context is scored in windows of the full context with a stride of half of
it: the first window scores all its tokens, each later one only the tokens past the previous
window (its second half), so every token is scored once with at least half a context before it.
"""

from dataclasses import dataclass

import numpy as np

from ..contract.errors import UserError

__all__ = ["ScoreResult", "score", "windows", "render_score"]


@dataclass
class ScoreResult:
    n_tokens: int
    mean_nll: float
    argmax_ids: list  # the model's most likely next token at each scored position
    nll: np.ndarray

    @property
    def perplexity(self):
        return float(np.exp(self.mean_nll))


def windows(n_ids, context):
    """(start, end, first_scored) triples: run ids[start:end], score the targets from first_scored on."""
    stride = max(context // 2, 1)
    result, scored_to, start = [], 1, 0
    while scored_to < n_ids:
        end = min(start + context, n_ids)
        result.append((start, end, scored_to))
        scored_to = end
        start += stride
    return result


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def score(model, ids, progress=None):
    """Score token ``ids`` (no BOS added: the first token is context only)."""
    if len(ids) < 2:
        raise UserError(f"the text is {len(ids)} token{'s' if len(ids) != 1 else ''}; scoring needs at least 2")
    ids = np.asarray(ids)
    nll, argmax = [], []
    for start, end, first in windows(len(ids), model.config.max_position_embeddings):
        model.reset(1)
        logits = model.forward(ids[None, start:end])[0].astype(np.float64)
        # logits at position p predict token p + 1
        rows = np.arange(first - 1 - start, end - 1 - start)
        logp = log_softmax(logits[rows])
        targets = ids[first:end]
        nll.append(-logp[np.arange(len(rows)), targets])
        argmax.append(logits[rows].argmax(axis=-1))
        if progress:
            progress(end - first)
    nll = np.concatenate(nll)
    return ScoreResult(len(nll), float(nll.mean()), np.concatenate(argmax).tolist(), nll)


def render_score(backend, result):
    """``score``'s line."""
    return (f"{backend}: {result.n_tokens} tokens, mean NLL {result.mean_nll:.4f}, "
            f"perplexity {result.perplexity:.3f}")
