"""The module tree of a GPT-Neo checkpoint, laid out as transformers prints GPTNeoForCausalLM."""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Module", "module_tree", "render_text", "render_json"]


@dataclass
class Module:
    """One module: its attribute name, transformers' class with arguments, parameters and children."""

    name: str
    kind: str
    parameters: dict = field(default_factory=dict)  # parameter name -> full tensor name
    children: list = field(default_factory=list)
    note: str = ""

    def tensor_names(self):
        names = list(self.parameters.values())
        for child in self.children:
            names += child.tensor_names()
        return names


def module_tree(config):
    """The tree of GPTNeoForCausalLM for ``config`` (leaf parameters named as in the state dict)."""
    c, d, f = config, config.hidden_size, config.intermediate_size

    def linear(name, prefix, n_in, n_out, bias):
        params = {"weight": prefix + "weight"} | ({"bias": prefix + "bias"} if bias else {})
        return Module(name, f"Linear(in_features={n_in}, out_features={n_out}, bias={bias})", params)

    def norm(name, prefix):
        return Module(name, f"LayerNorm(({d},), eps={c.layer_norm_epsilon:g}, elementwise_affine=True)",
                      {"weight": prefix + "weight", "bias": prefix + "bias"})

    blocks = []
    for i, kind in enumerate(c.attention_layers):
        h = f"transformer.h.{i}."
        a = h + "attn.attention."
        window = f", window_size={c.window_size}" if kind == "local" else ""
        attention = Module("attention", f"GPTNeoSelfAttention(heads={c.num_heads}, head_dim={c.head_dim}, "
                           f"{kind}{window}, unscaled scores)", children=[
                               linear(p, a + p + ".", d, d, p == "out_proj")
                               for p in ("k_proj", "v_proj", "q_proj", "out_proj")])
        mlp = Module("mlp", "GPTNeoMLP", children=[
            linear("c_fc", h + "mlp.c_fc.", d, f, True),
            Module("act", f"NewGELUActivation() [{c.activation_function}]"),
            linear("c_proj", h + "mlp.c_proj.", f, d, True)])
        blocks.append(Module(str(i), f"GPTNeoBlock({kind} attention)", children=[
            norm("ln_1", h + "ln_1."), Module("attn", "GPTNeoAttention", children=[attention]),
            norm("ln_2", h + "ln_2."), mlp]))
    transformer = Module("transformer", "GPTNeoModel", children=[
        Module("wte", f"Embedding({c.vocab_size}, {d})", {"weight": "transformer.wte.weight"}),
        Module("wpe", f"Embedding({c.max_position_embeddings}, {d})", {"weight": "transformer.wpe.weight"}),
        Module("h", f"ModuleList({c.num_layers} x GPTNeoBlock)", children=blocks),
        norm("ln_f", "transformer.ln_f.")])
    head = Module("lm_head", f"Linear(in_features={d}, out_features={c.vocab_size}, bias=False)",
                  note="tied to transformer.wte.weight")
    return Module("", "GPTNeoForCausalLM", children=[transformer, head])


def _describe(array):
    return f"{list(array.shape)} {array.dtype}"


def render_text(tree, tensors):
    """Indented text with each module's parameter count and each parameter's shape and dtype."""
    lines = []

    def count(module):
        return sum(tensors[n].size for n in module.tensor_names())

    def visit(module, depth):
        label = f"({module.name}): " if module.name else ""
        total = count(module)
        suffix = f"  [{total:,} parameters]" if total else ""
        note = f"  ({module.note})" if module.note else ""
        lines.append("  " * depth + label + module.kind + suffix + note)
        for pname, full in module.parameters.items():
            lines.append("  " * (depth + 1) + f"{pname}: {_describe(tensors[full])}")
        for child in module.children:
            visit(child, depth + 1)

    visit(tree, 0)
    return "\n".join(lines)


def _summary(array):
    values = array.astype(np.float64)
    return {"shape": list(array.shape), "dtype": str(array.dtype), "count": int(array.size),
            "mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max())}


def render_json(tree, tensors):
    """The same tree as nested dictionaries, each parameter with an array summary."""
    def visit(module):
        node = {"name": module.name, "type": module.kind,
                "parameter_count": sum(tensors[n].size for n in module.tensor_names()),
                "parameters": {p: {"tensor": full, **_summary(tensors[full])}
                               for p, full in module.parameters.items()},
                "children": [visit(child) for child in module.children]}
        if module.note:
            node["note"] = module.note
        return node
    return visit(tree)
