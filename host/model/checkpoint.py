"""A GPT-Neo checkpoint folder (config, weights, tokenizer, generation config) as numpy arrays."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors

from ...contract.errors import UserError
from .config import GPTNeoConfig
from .tensors import array_from_bytes
from .tokenizer import TextTokenizer, load_tokenizer
from .torch_pickle import load_torch_state_dict

__all__ = ["Checkpoint", "load_checkpoint", "parameter_shapes", "resolve_model_folder"]

# Buffers older checkpoints saved beside the parameters (causal masks); they carry no weights.
_BUFFER = re.compile(r"transformer\.h\.\d+\.attn\.attention\.(bias|masked_bias)$")


def parameter_shapes(config):
    """Every parameter of GPTNeoForCausalLM by its Hugging Face name, in module order (lm_head is tied)."""
    d, f = config.hidden_size, config.intermediate_size
    shapes = {"transformer.wte.weight": (config.vocab_size, d),
              "transformer.wpe.weight": (config.max_position_embeddings, d)}
    for i in range(config.num_layers):
        h = f"transformer.h.{i}."
        shapes.update({
            h + "ln_1.weight": (d,), h + "ln_1.bias": (d,),
            h + "attn.attention.k_proj.weight": (d, d),
            h + "attn.attention.v_proj.weight": (d, d),
            h + "attn.attention.q_proj.weight": (d, d),
            h + "attn.attention.out_proj.weight": (d, d), h + "attn.attention.out_proj.bias": (d,),
            h + "ln_2.weight": (d,), h + "ln_2.bias": (d,),
            h + "mlp.c_fc.weight": (f, d), h + "mlp.c_fc.bias": (f,),
            h + "mlp.c_proj.weight": (d, f), h + "mlp.c_proj.bias": (d,),
        })
    shapes.update({"transformer.ln_f.weight": (d,), "transformer.ln_f.bias": (d,)})
    return shapes


@dataclass
class Checkpoint:
    """A loaded GPT-Neo model: its config, float32 weights by Hugging Face name, and tokenizer."""

    config: GPTNeoConfig
    weights: dict
    tokenizer: TextTokenizer
    generation_config: dict = field(default_factory=dict)
    source: str = ""


def _read_safetensors(path):
    try:
        entries = safetensors.deserialize(path.read_bytes())
    except safetensors.SafetensorError as e:
        raise UserError(f"{path}: malformed safetensors file ({e})") from None
    return {name: array_from_bytes(t["data"], t["dtype"], t["shape"], path) for name, t in entries}


def _read_index(folder, index_name, read_shard):
    index_path = folder / index_name
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{index_path}: malformed shard index ({e})") from None
    tensors = {}
    for shard in shards:
        if not (folder / shard).exists():
            raise UserError(f"{folder}: shard {shard} named by {index_name} is missing")
        tensors.update(read_shard(folder / shard))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise UserError(f"{index_path}: tensor {missing[0]} is not in its shard")
    return tensors


def read_weight_files(folder):
    """All tensors of a folder, from whichever weight files a Hugging Face download holds."""
    for single, index, reader in (("model.safetensors", "model.safetensors.index.json", _read_safetensors),
                                  ("pytorch_model.bin", "pytorch_model.bin.index.json", load_torch_state_dict)):
        if (folder / single).exists():
            return reader(folder / single)
        if (folder / index).exists():
            return _read_index(folder, index, reader)
    raise UserError(f"{folder}: no weights (expected model.safetensors, pytorch_model.bin or a shard index)")


def _gpt_neo_weights(tensors, config, source):
    """Check names and shapes against the config; return float32 arrays by canonical name."""
    if not any(name.startswith("transformer.") for name in tensors):  # saved from GPTNeoModel
        tensors = {("lm_head.weight" if n == "lm_head.weight" else "transformer." + n): t
                   for n, t in tensors.items()}
    shapes = parameter_shapes(config)
    weights = {}
    for name, shape in shapes.items():
        if name not in tensors:
            raise UserError(f"{source}: missing tensor {name}")
        tensor = tensors[name]
        if tuple(tensor.shape) != shape:
            raise UserError(f"{source}: tensor {name} has shape {list(tensor.shape)}, the config needs "
                            f"{list(shape)}")
        if not np.issubdtype(tensor.dtype, np.floating):
            raise UserError(f"{source}: tensor {name} is {tensor.dtype}, expected floating point")
        weights[name] = np.array(tensor, dtype=np.float32, order="C")  # numpy-owned (huge pages)
    head = tensors.get("lm_head.weight")
    if head is not None and (head.shape != shapes["transformer.wte.weight"]
                             or not np.array_equal(head, tensors["transformer.wte.weight"])):
        raise UserError(f"{source}: lm_head.weight differs from transformer.wte.weight "
                        f"(GPT-Neo ties them; an untied head is not supported)")
    unknown = sorted(n for n in tensors if n not in shapes and n != "lm_head.weight" and not _BUFFER.match(n))
    if unknown:
        raise UserError(f"{source}: unexpected tensor {unknown[0]} (not a GPT-Neo parameter)")
    for name, array in weights.items():
        if not np.isfinite(array).all():
            raise UserError(f"{source}: tensor {name} holds NaN or infinite values")
    return weights


def resolve_model_folder(spec):
    """A local folder, or a Hugging Face hub id downloaded through huggingface_hub."""
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{spec}: not a model folder")
        return path
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", str(spec)) or str(spec).startswith((".", "/")):
        raise UserError(f"{spec}: no such model folder")
    try:
        import huggingface_hub
        local = huggingface_hub.snapshot_download(
            str(spec), allow_patterns=["*.json", "*.safetensors", "*.txt", "pytorch_model*.bin"])
    except Exception as e:  # offline, unknown repository, gated model: all end the same way for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{spec}: no such folder, and the Hugging Face hub could not provide it ({first})") from None
    return Path(local)


def load_checkpoint(spec):
    """Load a GPT-Neo model from a local folder or a hub id; every problem is a one-line ``UserError``."""
    folder = resolve_model_folder(spec)
    config = GPTNeoConfig.from_file(folder / "config.json")
    weights = _gpt_neo_weights(read_weight_files(folder), config, folder)
    tokenizer = load_tokenizer(folder)
    if tokenizer.vocab_size > config.vocab_size:
        raise UserError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens, the model only "
                        f"{config.vocab_size}")
    generation_config = {}
    if (folder / "generation_config.json").exists():
        try:
            generation_config = json.loads((folder / "generation_config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{folder / 'generation_config.json'}: not valid JSON ({e})") from None
    return Checkpoint(config, weights, tokenizer, generation_config, str(folder))
