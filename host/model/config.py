"""GPT-Neo's config.json as a typed, validated dataclass."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ...contract.errors import UserError

__all__ = ["GPTNeoConfig", "expand_attention_types"]

ACTIVATIONS = ("gelu_new",)


def expand_attention_types(attention_types, num_layers):
    """Expand GPT-Neo's ``[[["global", "local"], 2]]`` into one kind per layer, as transformers does."""
    try:
        layers = [kind for pattern, repeat in attention_types for _ in range(repeat) for kind in pattern]
    except (TypeError, ValueError):
        raise UserError(f"config.json: attention_types must look like [[[\"global\", \"local\"], N]], "
                        f"got {attention_types!r}") from None
    if any(kind not in ("global", "local") for kind in layers):
        raise UserError(f"config.json: attention kinds must be 'global' or 'local', got {attention_types!r}")
    if len(layers) != num_layers:
        raise UserError(f"config.json: attention_types expand to {len(layers)} layers but num_layers is "
                        f"{num_layers}")
    return tuple(layers)


@dataclass(frozen=True)
class GPTNeoConfig:
    """The architecture of a GPT-Neo model: everything the reference and the hardware need."""

    vocab_size: int
    max_position_embeddings: int
    hidden_size: int
    num_layers: int
    num_heads: int
    attention_layers: tuple  # "global" or "local", one per layer
    window_size: int
    intermediate_size: int
    layer_norm_epsilon: float
    activation_function: str = "gelu_new"
    bos_token_id: int = 50256
    eos_token_id: int = 50256

    @property
    def head_dim(self):
        return self.hidden_size // self.num_heads

    @classmethod
    def from_dict(cls, d, source="config.json"):
        """Build and validate a config from config.json's dictionary."""
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a JSON object")
        model_type = d.get("model_type")
        if model_type != "gpt_neo":
            raise UserError(f"{source}: model_type is {model_type!r}, neofpga runs only 'gpt_neo'")
        required = ["vocab_size", "max_position_embeddings", "hidden_size", "num_layers", "num_heads",
                    "attention_types", "window_size"]
        missing = [k for k in required if k not in d]
        if missing:
            raise UserError(f"{source}: missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")

        def positive_int(key, value):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"{source}: {key} must be a positive integer, got {value!r}")
            return value

        ints = {k: positive_int(k, d[k]) for k in required if k != "attention_types"}
        hidden = ints["hidden_size"]
        if hidden % ints["num_heads"]:
            raise UserError(f"{source}: hidden_size {hidden} is not a multiple of num_heads {ints['num_heads']}")
        intermediate = d.get("intermediate_size")
        intermediate = 4 * hidden if intermediate is None else positive_int("intermediate_size", intermediate)
        activation = d.get("activation_function", "gelu_new")
        if activation not in ACTIVATIONS:
            raise UserError(f"{source}: activation_function {activation!r} is not supported "
                            f"(GPT-Neo uses {ACTIVATIONS[0]!r})")
        eps = d.get("layer_norm_epsilon", 1e-5)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise UserError(f"{source}: layer_norm_epsilon must be a positive number, got {eps!r}")
        token_ids = {}
        for key in ("bos_token_id", "eos_token_id"):
            value = d.get(key, ints["vocab_size"] - 1)
            if isinstance(value, list) and value:
                value = value[0]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < ints["vocab_size"]:
                raise UserError(f"{source}: {key} must be a token id below vocab_size, got {value!r}")
            token_ids[key] = value
        return cls(
            attention_layers=expand_attention_types(d["attention_types"], ints["num_layers"]),
            intermediate_size=intermediate,
            layer_norm_epsilon=float(eps),
            activation_function=activation,
            **ints, **token_ids,
        )

    @classmethod
    def from_file(cls, path):
        """Read and validate a config.json file."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path.parent}: no config.json (is this a Hugging Face model folder?)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, source=str(path))

    def attention_types(self):
        """The compact ``[[pattern, repeat]]`` form of the layer kinds, as config.json stores it."""
        layers = list(self.attention_layers)
        for period in range(1, len(layers) + 1):
            if len(layers) % period == 0 and layers == layers[:period] * (len(layers) // period):
                return [[layers[:period], len(layers) // period]]

    def to_dict(self):
        """config.json's dictionary for this config (what transformers' GPTNeoConfig reads)."""
        d = asdict(self)
        del d["attention_layers"]
        return {
            "model_type": "gpt_neo",
            "architectures": ["GPTNeoForCausalLM"],
            "attention_types": self.attention_types(),
            **d,
            "resid_dropout": 0.0, "embed_dropout": 0.0, "attention_dropout": 0.0,
            "tie_word_embeddings": True,
            "use_cache": True,
        }
