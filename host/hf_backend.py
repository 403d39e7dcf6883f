"""The ``hf`` back end: transformers' GPTNeoForCausalLM on torch, the outside anchor.

It loads the folder with ``from_pretrained`` (independently of neofpga's own loader) and keeps
transformers' own KV cache. torch is imported only here, and only when this back end is chosen.
"""

import numpy as np

from ..contract.errors import UserError

__all__ = ["HFModel"]


class HFModel:
    """transformers' GPT-Neo behind the same ``reset``/``forward`` interface as :class:`GPTNeo`."""

    name = "hf"

    def __init__(self, checkpoint):
        try:
            import torch
            import transformers
            from transformers import DynamicCache, GPTNeoForCausalLM
        except ImportError:
            raise UserError("the hf back end needs torch and transformers: pip install 'neofpga[hf]'") from None
        self._torch, self._cache_type = torch, DynamicCache
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        self.config = checkpoint.config
        self.model = GPTNeoForCausalLM.from_pretrained(
            checkpoint.source, attn_implementation="eager", dtype=torch.float32).eval()
        self.cache = None
        self.length = 0

    def reset(self, batch=1):
        """Start new, empty sequences."""
        self.cache = self._cache_type(config=self.model.config)
        self.length = 0

    def forward(self, ids, last_only=False):
        """Logits [B, T, vocab] for ids [B, T] that follow the cached tokens."""
        ids = np.asarray(ids)
        with self._torch.inference_mode():
            # The cache is the second positional argument under both its names (past_key_values, cache).
            out = self.model(self._torch.from_numpy(ids.astype(np.int64)), self.cache, use_cache=True,
                             logits_to_keep=1 if last_only else 0)
        self.length += ids.shape[1]
        return out.logits.float().numpy()

    def chooser(self, sampler):
        """The next-token choice over float logits (:meth:`Sampler.float_chooser`)."""
        return sampler.float_chooser()

    def close(self):
        """Drop the model."""
        self.model = None
