"""Random-weight GPT-Neo checkpoints (numpy + safetensors, no torch), with a tokenizer to match."""

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from ...contract.errors import UserError
from .checkpoint import parameter_shapes
from .config import GPTNeoConfig

__all__ = ["PRESETS", "byte_level_tokenizer", "random_weights", "write_checkpoint", "init_random"]

EOS = "<|endoftext|>"

PRESETS = {
    # TinyStories-33M's own config.json.
    "tinystories-33m": dict(vocab_size=50257, max_position_embeddings=2048, hidden_size=768, num_layers=4,
                            num_heads=16, attention_types=[[["global", "local"], 2]], window_size=256,
                            intermediate_size=None, layer_norm_epsilon=1e-5, bos_token_id=50256,
                            eos_token_id=50256),
    # Small enough to run anywhere in a blink; same architecture.
    "tiny": dict(vocab_size=512, max_position_embeddings=128, hidden_size=64, num_layers=2, num_heads=4,
                 attention_types=[[["global", "local"], 1]], window_size=16, intermediate_size=256,
                 layer_norm_epsilon=1e-5, bos_token_id=511, eos_token_id=511),
}


def _bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters (what ByteLevel BPE uses)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def byte_level_tokenizer(vocab_size):
    """A byte-level BPE of exactly ``vocab_size`` ids, the last one ``<|endoftext|>``, every id decodable.

    Ids 0-255 are the bytes; each merge joins two single bytes, most printable ASCII pairs first.
    """
    if not 257 <= vocab_size <= 256 + 256 * 256 + 1:
        raise UserError(f"a byte-level tokenizer needs a vocabulary of 257 to 65793 ids, not {vocab_size}")
    chars = _bytes_to_unicode()
    by_priority = sorted(range(256), key=lambda b: (not (32 <= b < 127), b))
    vocab = {chars[b]: b for b in range(256)}
    merges = []
    for first in by_priority:
        for second in by_priority:
            if len(vocab) == vocab_size - 1:
                break
            merges.append((chars[first], chars[second]))
            vocab[chars[first] + chars[second]] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(EOS, special=True)])
    return tokenizer


def random_weights(config, seed=0):
    """Weights drawn like transformers' init (N(0, 0.02) matrices), with small random biases and
    LayerNorm gains near 1 so that no path of the model is trivially zero or one."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in parameter_shapes(config).items():
        is_gain = ".ln_" in name and name.endswith(".weight")
        weights[name] = (float(is_gain) + rng.normal(0.0, 0.02, shape)).astype(np.float32)
    return weights


def write_checkpoint(out, config, weights, tokenizer, extra_config=None):
    """Write a Hugging Face model folder: config.json, model.safetensors, tokenizer.json, generation_config.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({**config.to_dict(), **(extra_config or {})}, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id}, indent=2) + "\n")
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save(str(out / "tokenizer.json"))


def init_random(preset, out, seed=0):
    """Write a random-weight checkpoint of ``preset`` into folder ``out``."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    config = GPTNeoConfig.from_dict({"model_type": "gpt_neo", **PRESETS[preset]}, source=f"preset {preset}")
    if Path(out).exists() and any(Path(out).iterdir()):
        raise UserError(f"{out}: folder exists and is not empty")
    write_checkpoint(out, config, random_weights(config, seed), byte_level_tokenizer(config.vocab_size))
    return config
