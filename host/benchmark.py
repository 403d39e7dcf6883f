"""Tokens per second of several back ends on the same model, prompt and token count."""

import statistics

from .generation import generate
from .sampling import Sampler

__all__ = ["bench_devices"]


def bench_devices(models, tokenizer, ids, new_tokens, repeats=3, log=None):
    """Greedy generation of exactly ``new_tokens`` (eos ignored) on each model; the median of ``repeats``.

    Returns one dict per model with decode and overall tok/s and the prefill time, and the speed
    ratio of every pair, in the order the models are given.
    """
    results = []
    for model in models:
        generate(model, tokenizer, ids, Sampler(), min(4, new_tokens), eos_id=None)  # warm-up
        runs = [generate(model, tokenizer, ids, Sampler(), new_tokens, eos_id=None) for _ in range(repeats)]
        decode_tps = statistics.median((len(r.new_ids) - 1) / r.decode_seconds for r in runs)
        entry = {
            "device": model.name,
            "new_tokens": new_tokens,
            "prompt_tokens": len(ids),
            "decode_tokens_per_second": decode_tps,
            "tokens_per_second": statistics.median(r.tokens_per_second for r in runs),
            "prefill_seconds": statistics.median(r.prefill_seconds for r in runs),
        }
        results.append(entry)
        if log:
            log(f"{model.name}: {entry['tokens_per_second']:.1f} tok/s "
                f"(decode {decode_tps:.1f} tok/s, prefill {entry['prefill_seconds'] * 1e3:.1f} ms)")
    ratios = {f"{a['device']}/{b['device']}": a["tokens_per_second"] / b["tokens_per_second"]
              for i, a in enumerate(results) for b in results[i + 1:]}
    return results, ratios
