"""The packaging layer: Hugging Face GPT-Neo folders read with numpy, safetensors and tokenizers."""

from .config import GPTNeoConfig
from .checkpoint import Checkpoint, load_checkpoint

__all__ = ["GPTNeoConfig", "Checkpoint", "load_checkpoint"]
