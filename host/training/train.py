"""Train the shipped default story model in one command: corpus, tokenizer, GPT-Neo, checkpoint.

The model is a GPT-Neo with every feature of TinyStories-33M's architecture (alternating global
and local attention, a window shorter than a story, gelu_new, tied head, GPT-Neo's biases) in a
shape whose int8 weights and KV cache fit the block RAM of an ECP5-85F. Everything is
reproducible from the seed: the corpus, the tokenizer, the initial weights and the batches.
transformers + torch are needed here only (``pip install 'neofpga[hf]'``).
"""

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...contract.errors import UserError
from .corpus import split_corpus

__all__ = ["ModelShape", "TrainingPlan", "train_tokenizer", "pack_sequences", "train_default_model"]

EOS = "<|endoftext|>"


@dataclass(frozen=True)
class ModelShape:
    """The shipped model's architecture (see docs/MODEL.md for the block-RAM budget behind it)."""

    vocab_size: int = 1024
    max_position_embeddings: int = 256
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    window_size: int = 64
    intermediate_size: int = 224


@dataclass(frozen=True)
class TrainingPlan:
    """How the model is trained: data sizes, optimiser and schedule, all fixed by the seed."""

    seed: int = 0
    train_stories: int = 120_000
    valid_stories: int = 500
    batch_size: int = 32
    steps: int = 3_000
    learning_rate: float = 3e-3
    min_learning_rate: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    eval_every: int = 250


def train_tokenizer(stories, vocab_size):
    """A byte-level BPE of exactly ``vocab_size`` ids trained on ``stories``, ``<|endoftext|>`` last."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer(add_prefix_space=False)
    tokenizer.train_from_iterator(stories, vocab_size=vocab_size - 1, min_frequency=2, show_progress=False)
    tokenizer.add_special_tokens([EOS])
    if tokenizer.get_vocab_size() != vocab_size:
        raise UserError(f"the corpus supports only {tokenizer.get_vocab_size()} tokens, not {vocab_size}")
    return tokenizer


def pack_sequences(story_ids, length, eos_id):
    """Rows of ``length + 1`` tokens, each starting at a story's first token (as generation does)
    and running on through ``<|endoftext|>`` into the next stories."""
    stream = np.concatenate([np.append(ids, eos_id) for ids in story_ids]).astype(np.int64)
    starts = np.cumsum([0] + [len(ids) + 1 for ids in story_ids[:-1]])
    starts = starts[starts + length + 1 <= len(stream)]
    return np.stack([stream[s:s + length + 1] for s in starts])


def _learning_rate(plan, step):
    if step < plan.warmup_steps:
        return plan.learning_rate * (step + 1) / plan.warmup_steps
    progress = (step - plan.warmup_steps) / max(plan.steps - plan.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return plan.min_learning_rate + (plan.learning_rate - plan.min_learning_rate) * cosine


def train_default_model(out, shape=ModelShape(), plan=TrainingPlan(), log=print):
    """Build the corpus and tokenizer, train the model and write a Hugging Face folder to ``out``.

    Returns a report (shape, parameter count, losses, perplexity, time) that is also written as
    ``training.json`` beside the weights.
    """
    try:
        import torch
        import transformers
        from transformers import GPTNeoConfig, GPTNeoForCausalLM
    except ImportError:
        raise UserError("training needs torch and transformers: pip install 'neofpga[hf]'") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    start = time.perf_counter()
    torch.manual_seed(plan.seed)
    log(f"corpus: generating {plan.train_stories:,} training and {plan.valid_stories:,} validation stories")
    train_text, valid_text = split_corpus(plan.seed, plan.train_stories, plan.valid_stories)
    tokenizer = train_tokenizer(train_text, shape.vocab_size)
    eos_id = tokenizer.token_to_id(EOS)
    train_ids = [e.ids for e in tokenizer.encode_batch(train_text)]
    valid_ids = [e.ids for e in tokenizer.encode_batch(valid_text)]
    lengths = np.array([len(ids) for ids in train_ids])
    log(f"tokenizer: {shape.vocab_size} tokens; stories are {lengths.mean():.0f} tokens on average "
        f"(max {lengths.max()}, {np.mean(lengths + 1 > shape.max_position_embeddings) * 100:.1f} % longer "
        f"than the context)")
    train_rows = torch.from_numpy(pack_sequences(train_ids, shape.max_position_embeddings, eos_id))
    valid_rows = torch.from_numpy(pack_sequences(valid_ids, shape.max_position_embeddings, eos_id))

    config = GPTNeoConfig(
        vocab_size=shape.vocab_size, max_position_embeddings=shape.max_position_embeddings,
        hidden_size=shape.hidden_size, num_layers=shape.num_layers, num_heads=shape.num_heads,
        attention_types=[[["global", "local"], shape.num_layers // 2]], window_size=shape.window_size,
        intermediate_size=shape.intermediate_size, activation_function="gelu_new",
        resid_dropout=0.0, embed_dropout=0.0, attention_dropout=0.0, layer_norm_epsilon=1e-5,
        bos_token_id=eos_id, eos_token_id=eos_id, tie_word_embeddings=True)
    model = GPTNeoForCausalLM(config)
    model.config._attn_implementation = "eager"
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "wpe" not in n)]
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": plan.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=plan.learning_rate,
                                  betas=(0.9, 0.95))
    log(f"model: {n_params:,} parameters; {len(train_rows):,} training rows of "
        f"{shape.max_position_embeddings} tokens; {plan.steps} steps of {plan.batch_size}")

    def loss_on(rows):
        logits = model(rows[:, :-1]).logits
        return torch.nn.functional.cross_entropy(logits.reshape(-1, shape.vocab_size), rows[:, 1:].reshape(-1))

    def validation_loss():
        model.eval()
        with torch.no_grad():
            losses = [loss_on(valid_rows[i:i + 64]).item() * len(valid_rows[i:i + 64])
                      for i in range(0, len(valid_rows), 64)]
        model.train()
        return sum(losses) / len(valid_rows)

    generator = torch.Generator().manual_seed(plan.seed)
    history, running = [], None
    model.train()
    for step in range(plan.steps):
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(plan, step)
        batch = train_rows[torch.randint(len(train_rows), (plan.batch_size,), generator=generator)]
        loss = loss_on(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % plan.eval_every == 0 or step + 1 == plan.steps:
            valid = validation_loss()
            history.append({"step": step + 1, "train_loss": running, "valid_loss": valid})
            log(f"step {step + 1:5d}/{plan.steps}  train loss {running:.4f}  valid loss {valid:.4f}  "
                f"({time.perf_counter() - start:.0f} s)")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save(str(out / "tokenizer.json"))
    final = history[-1]
    report = {"shape": asdict(shape), "plan": asdict(plan), "parameters": n_params,
              "train_loss": final["train_loss"], "valid_loss": final["valid_loss"],
              "valid_perplexity": math.exp(final["valid_loss"]),
              "seconds": time.perf_counter() - start, "history": history}
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out}: valid loss {final['valid_loss']:.4f} (perplexity {report['valid_perplexity']:.3f}) "
        f"in {report['seconds'] / 60:.1f} min")
    return report
