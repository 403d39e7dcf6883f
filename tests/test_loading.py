"""The packaging layer: config, weights in every layout real downloads use, tokenizers, bad input."""

import json
import pickle
import shutil
import zipfile

import numpy as np
import pytest
from neofpga.contract.errors import UserError
from neofpga.host.model import GPTNeoConfig, load_checkpoint
from neofpga.host.model.checkpoint import parameter_shapes, read_weight_files, resolve_model_folder
from neofpga.host.model.config import expand_attention_types
from neofpga.host.model.torch_pickle import load_torch_state_dict

torch = pytest.importorskip("torch")


def copy(folder, tmp_path, name="model"):
    dest = tmp_path / name
    shutil.copytree(folder, dest)
    return dest


def edit_config(folder, **changes):
    path = folder / "config.json"
    d = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            d.pop(key, None)
        else:
            d[key] = value
    path.write_text(json.dumps(d))


# -- config --------------------------------------------------------------------------------------

def test_attention_types_expand_like_transformers():
    from transformers import GPTNeoConfig as HFConfig

    for types, n in (([[["global", "local"], 2]], 4), ([[["local", "global"], 1], [["local"], 1]], 3),
                     ([[["global"], 1]], 1)):
        hf = HFConfig(attention_types=types, num_layers=n)
        assert expand_attention_types(types, n) == tuple(hf.attention_layers)


def test_config_round_trips_through_transformers(checkpoints, tmp_path):
    from transformers import GPTNeoConfig as HFConfig

    for folder in checkpoints.values():
        ours = GPTNeoConfig.from_file(folder / "config.json")
        (tmp_path / "config.json").write_text(json.dumps(ours.to_dict()))
        hf = HFConfig.from_pretrained(tmp_path)
        original = HFConfig.from_pretrained(folder)
        for key in ("vocab_size", "max_position_embeddings", "hidden_size", "num_layers", "num_heads",
                    "attention_layers", "window_size", "layer_norm_epsilon", "bos_token_id", "eos_token_id"):
            assert getattr(hf, key) == getattr(original, key), key
        assert (hf.intermediate_size or 4 * hf.hidden_size) == ours.intermediate_size
        assert GPTNeoConfig.from_dict(ours.to_dict()) == ours


def test_config_fields(checkpoints):
    config = GPTNeoConfig.from_file(checkpoints["local-global-local"] / "config.json")
    assert config.attention_layers == ("local", "global", "local")
    assert config.window_size == 7
    assert config.intermediate_size == 4 * 48  # null in config.json means 4 x hidden, as in transformers
    assert config.head_dim == 12
    assert config.activation_function == "gelu_new"


# -- weights -------------------------------------------------------------------------------------

def test_every_layout_loads_the_same_weights_as_transformers(download_shaped):
    from transformers import GPTNeoForCausalLM

    for kind, folder in download_shaped.items():
        checkpoint = load_checkpoint(folder)
        state = GPTNeoForCausalLM.from_pretrained(folder).state_dict()
        assert set(checkpoint.weights) == set(parameter_shapes(checkpoint.config))
        for name, array in checkpoint.weights.items():
            assert np.array_equal(array, state[name].numpy()), (kind, name)


def test_torch_reader_equals_torch_load(tmp_path):
    tensors = {
        "f32": torch.randn(3, 5),
        "f16": torch.randn(4).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "i64": torch.arange(6),
        "strided": torch.randn(6, 4).t(),            # non-contiguous view
        "slice": torch.randn(10)[3:7],              # storage offset
        "shared_a": torch.randn(8),
    }
    tensors["shared_b"] = tensors["shared_a"][2:]  # two tensors, one storage
    torch.save(tensors, tmp_path / "t.bin")
    ours = load_torch_state_dict(tmp_path / "t.bin")
    theirs = torch.load(tmp_path / "t.bin", weights_only=True)
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert ours[name].dtype == expected.dtype and np.array_equal(ours[name], expected), name


def test_torch_reader_refuses_other_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"w": torch.ones(2), "evil": Evil()}, tmp_path / "evil.bin")
    with pytest.raises(UserError, match=r"refused to unpickle (__builtin__|builtins)\.print"):
        load_torch_state_dict(tmp_path / "evil.bin")


def test_torch_reader_rejects_legacy_and_truncated_files(tmp_path):
    (tmp_path / "legacy.bin").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    with pytest.raises(UserError, match="not a torch zip archive"):
        load_torch_state_dict(tmp_path / "legacy.bin")
    torch.save({"w": torch.randn(100)}, tmp_path / "ok.bin")
    data = (tmp_path / "ok.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError):
        load_torch_state_dict(tmp_path / "cut.bin")


def test_bf16_safetensors_widen_exactly(tmp_path, checkpoints):
    from safetensors.torch import save_file

    folder = copy(checkpoints["one-local"], tmp_path)
    reference = load_checkpoint(folder).weights
    save_file({n: torch.from_numpy(a).bfloat16() for n, a in reference.items()}, folder / "model.safetensors")
    loaded = load_checkpoint(folder).weights
    for name, array in reference.items():
        assert np.array_equal(loaded[name], torch.from_numpy(array).bfloat16().float().numpy())


def test_state_dict_without_transformer_prefix(tmp_path, checkpoints):
    from safetensors.numpy import save_file

    folder = copy(checkpoints["one-local"], tmp_path)
    weights = load_checkpoint(folder).weights
    save_file({n.removeprefix("transformer."): a for n, a in weights.items()}, folder / "model.safetensors")
    assert all(np.array_equal(load_checkpoint(folder).weights[n], a) for n, a in weights.items())


# -- tokenizers ----------------------------------------------------------------------------------

TEXTS = ["Once upon a time", " there was a cat.<|endoftext|>Lily said, \"Hi!\"", "Café 👋 naïve  spaces\n\nend",
         "", "<|endoftext|>"]


def test_vocab_merges_tokenizer_equals_transformers_gpt2_tokenizer(download_shaped):
    from transformers import GPT2Tokenizer

    folder = download_shaped["bin"]
    assert not (folder / "tokenizer.json").exists()
    ours = load_checkpoint(folder).tokenizer
    theirs = GPT2Tokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ours.decode(ids) == theirs.decode(ids) == text


def test_tokenizer_json_and_vocab_merges_agree(tokenizer_files, checkpoints, download_shaped):
    a = load_checkpoint(checkpoints["one-local"]).tokenizer
    b = load_checkpoint(download_shaped["bin"]).tokenizer
    for text in TEXTS:
        assert a.encode(text) == b.encode(text)


def test_no_bos_is_added(checkpoints):
    tokenizer = load_checkpoint(checkpoints["one-local"]).tokenizer
    eos = tokenizer.vocab_size - 1
    assert eos not in tokenizer.encode("Once upon a time")


# -- bad input -----------------------------------------------------------------------------------

BAD_CONFIGS = [
    (dict(model_type="gpt2"), "model_type is 'gpt2'"),
    (dict(num_heads=None), "missing key num_heads"),
    (dict(hidden_size="big"), "hidden_size must be a positive integer"),
    (dict(num_heads=3), "not a multiple of num_heads"),
    (dict(attention_types=[[["global", "sparse"], 2]]), "'global' or 'local'"),
    (dict(attention_types=[[["global", "local"], 1]]), "expand to 2 layers but num_layers is 4"),
    (dict(attention_types="global"), "attention_types must look like"),
    (dict(activation_function="relu"), "activation_function 'relu' is not supported"),
    (dict(layer_norm_epsilon=-1), "layer_norm_epsilon must be a positive number"),
    (dict(eos_token_id=10 ** 6), "eos_token_id must be a token id below vocab_size"),
    (dict(hidden_size=80), "transformer.wte.weight has shape"),
]


@pytest.mark.parametrize("changes,message", BAD_CONFIGS)
def test_bad_config_is_a_one_line_error(tmp_path, checkpoints, changes, message):
    folder = copy(checkpoints["four-alternating"], tmp_path)
    edit_config(folder, **changes)
    with pytest.raises(UserError, match=message) as e:
        load_checkpoint(folder)
    assert "\n" not in str(e.value)


def test_bad_folders_are_one_line_errors(tmp_path, checkpoints):
    def expect(folder, message):
        with pytest.raises(UserError, match=message) as e:
            load_checkpoint(folder)
        assert "\n" not in str(e.value)

    expect(tmp_path / "nowhere", "no such model folder")
    (tmp_path / "file").write_text("x")
    expect(tmp_path / "file", "not a model folder")

    folder = copy(checkpoints["one-local"], tmp_path, "a")
    (folder / "config.json").write_text("{not json")
    expect(folder, "not valid JSON")
    (folder / "config.json").unlink()
    expect(folder, "no config.json")

    folder = copy(checkpoints["one-local"], tmp_path, "b")
    (folder / "tokenizer.json").unlink()
    expect(folder, "no tokenizer")
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    expect(folder, "cannot load tokenizer")

    folder = copy(checkpoints["one-local"], tmp_path, "c")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-100])
    expect(folder, "malformed safetensors")
    (folder / "model.safetensors").write_bytes(b"\x00" * 4)
    expect(folder, "malformed safetensors")
    (folder / "model.safetensors").unlink()
    expect(folder, "no weights")


def test_missing_and_misshaped_tensors(tmp_path, checkpoints):
    from safetensors.numpy import save_file

    folder = copy(checkpoints["one-local"], tmp_path)
    weights = load_checkpoint(folder).weights
    save_file({n: a for n, a in weights.items() if "ln_f.bias" not in n}, folder / "model.safetensors")
    with pytest.raises(UserError, match="missing tensor transformer.ln_f.bias"):
        load_checkpoint(folder)
    save_file({**weights, "transformer.h.0.mlp.c_fc.weight": np.zeros((3, 3), np.float32)},
              folder / "model.safetensors")
    with pytest.raises(UserError, match=r"c_fc.weight has shape \[3, 3\], the config needs \[200, 72\]"):
        load_checkpoint(folder)
    save_file({**weights, "transformer.h.0.attn.attention.rotary.weight": np.zeros(3, np.float32)},
              folder / "model.safetensors")
    with pytest.raises(UserError, match="unexpected tensor"):
        load_checkpoint(folder)
    save_file({**weights, "lm_head.weight": weights["transformer.wte.weight"] + 1}, folder / "model.safetensors")
    with pytest.raises(UserError, match="lm_head.weight differs"):
        load_checkpoint(folder)
    nan = weights["transformer.wpe.weight"].copy()
    nan[0, 0] = np.nan
    save_file({**weights, "transformer.wpe.weight": nan}, folder / "model.safetensors")
    with pytest.raises(UserError, match="NaN"):
        load_checkpoint(folder)


def test_missing_shard_is_named(tmp_path, download_shaped):
    folder = copy(download_shaped["sharded"], tmp_path)
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(UserError, match=f"shard {shard.name} named by model.safetensors.index.json is missing"):
        read_weight_files(folder)


def test_torch_checkpoint_with_a_forbidden_object_is_refused(tmp_path, download_shaped):
    folder = copy(download_shaped["bin"], tmp_path)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["extra"] = zipfile.ZipFile  # any non-tensor global
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match="refused to unpickle zipfile.ZipFile"):
        load_checkpoint(folder)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="the Hugging Face hub could not provide it") as e:
        resolve_model_folder("roneneldan/TinyStories-33M")
    assert "\n" not in str(e.value)
