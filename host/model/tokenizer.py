"""The model's tokenizer, from tokenizer.json or GPT-2-style vocab.json + merges.txt."""

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from ...contract.errors import UserError

__all__ = ["TextTokenizer", "load_tokenizer"]


class TextTokenizer:
    """Text to token ids and back; no BOS is ever added (GPT-Neo's tokenizer adds none)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    @property
    def vocab_size(self):
        """Number of ids this tokenizer can produce (including special tokens)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text):
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids):
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def to_str(self):
        """The tokenizer as tokenizer.json text."""
        return self._tokenizer.to_str()

    @classmethod
    def from_str(cls, text):
        return cls(Tokenizer.from_str(text))


def _special_tokens(folder):
    """Special token strings named by special_tokens_map.json / tokenizer_config.json / added_tokens.json."""
    found = []
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if not path.exists():
            continue
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            value = d.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                found.append(value)
        for entry in (d.get("added_tokens_decoder") or {}).values():
            if isinstance(entry, dict) and isinstance(entry.get("content"), str):
                found.append(entry["content"])
    added = folder / "added_tokens.json"
    if added.exists():
        found.extend(json.loads(added.read_text()))
    return list(dict.fromkeys(found))


def load_tokenizer(folder):
    """Load the tokenizer of a Hugging Face model folder, or raise ``UserError``."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    if path.exists():
        try:
            return TextTokenizer(Tokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises plain Exception subclasses for malformed files
            raise UserError(f"{path}: cannot load tokenizer ({str(e).splitlines()[0]})") from None
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if vocab.exists() and merges.exists():
        try:
            bpe = models.BPE.from_file(str(vocab), str(merges))
        except Exception as e:
            raise UserError(f"{folder}: cannot load vocab.json + merges.txt ({str(e).splitlines()[0]})") from None
        tokenizer = Tokenizer(bpe)
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.add_special_tokens([AddedToken(t, special=True) for t in _special_tokens(folder)])
        return TextTokenizer(tokenizer)
    raise UserError(f"{folder}: no tokenizer (expected tokenizer.json, or vocab.json and merges.txt)")
