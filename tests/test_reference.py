"""The float32 numpy reference against transformers' GPTNeoForCausalLM, step by step."""

import numpy as np
import pytest
from conftest import CONFIGS, sample_ids
from neofpga.host.backends import load_source, open_model
from neofpga.host.generation import generate
from neofpga.host.reference import attention_mask
from neofpga.host.sampling import Sampler

torch = pytest.importorskip("torch")  # the hf extra is part of the test install

TOLERANCE = 1e-4


def models(folder):
    checkpoint = load_source(folder)
    return checkpoint, open_model("cpu", checkpoint), open_model("hf", checkpoint)


@pytest.mark.parametrize("name", CONFIGS)
def test_prefill_and_every_decode_step_match_transformers(checkpoints, name):
    checkpoint, cpu, hf = models(checkpoints[name])
    c = checkpoint.config
    ids = sample_ids(c.vocab_size, c.max_position_embeddings, seed=1)
    prompt, rest = ids[:11], ids[11:]  # decode runs to the end of the context, far past the window
    assert len(rest) > 3 * c.window_size or "local" not in c.attention_layers
    for model in (cpu, hf):
        model.reset(1)
    np.testing.assert_allclose(cpu.forward(prompt[None]), hf.forward(prompt[None]), atol=TOLERANCE, rtol=0)
    for token in rest:
        a, b = cpu.forward(np.array([[token]])), hf.forward(np.array([[token]]))
        np.testing.assert_allclose(a, b, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", CONFIGS)
def test_long_prefill_matches_transformers(checkpoints, name):
    checkpoint, cpu, hf = models(checkpoints[name])
    ids = sample_ids(checkpoint.config.vocab_size, checkpoint.config.max_position_embeddings, seed=2)
    for model in (cpu, hf):
        model.reset(1)
    np.testing.assert_allclose(cpu.forward(ids[None]), hf.forward(ids[None]), atol=TOLERANCE, rtol=0)


def test_greedy_ids_identical_over_64_new_tokens(checkpoints):
    for name in CONFIGS:
        checkpoint, cpu, hf = models(checkpoints[name])
        prompt = checkpoint.tokenizer.encode("Once upon a time")
        new_tokens = min(64, checkpoint.config.max_position_embeddings - len(prompt))
        runs = [generate(m, checkpoint.tokenizer, prompt, Sampler(), new_tokens, eos_id=None) for m in (cpu, hf)]
        assert runs[0].new_ids == runs[1].new_ids, name
        assert len(runs[0].new_ids) == new_tokens


@pytest.mark.parametrize("name", CONFIGS)
def test_kv_cache_decode_equals_full_recomputation(checkpoints, name):
    checkpoint = load_source(checkpoints[name])
    cpu = open_model("cpu", checkpoint)
    ids = sample_ids(checkpoint.config.vocab_size, 40, seed=3)
    cpu.reset(1)
    full = cpu.forward(ids[None])
    cpu.reset(1)
    pieces = [cpu.forward(ids[None, :9])] + [cpu.forward(ids[None, i:i + 1]) for i in range(9, 30)] + \
        [cpu.forward(ids[None, 30:])]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=TOLERANCE, rtol=0)


def test_batch_rows_equal_single_sequences(checkpoints):
    checkpoint = load_source(checkpoints["four-alternating"])
    cpu = open_model("cpu", checkpoint)
    batch = np.stack([sample_ids(checkpoint.config.vocab_size, 20, seed=s) for s in range(3)])
    cpu.reset(3)
    together = np.concatenate([cpu.forward(batch[:, :12]), cpu.forward(batch[:, 12:])], axis=1)
    for row in range(3):
        cpu.reset(1)
        np.testing.assert_allclose(together[row], cpu.forward(batch[row:row + 1])[0], atol=TOLERANCE, rtol=0)


def test_last_only_is_the_last_row(checkpoints):
    checkpoint = load_source(checkpoints["one-local"])
    cpu = open_model("cpu", checkpoint)
    ids = sample_ids(checkpoint.config.vocab_size, 12, seed=4)[None]
    cpu.reset(1)
    full = cpu.forward(ids)
    cpu.reset(1)
    np.testing.assert_allclose(cpu.forward(ids, last_only=True), full[:, -1:], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["global", "local"])
def test_masks_equal_transformers_bias_buffer(checkpoints, kind):
    from transformers import GPTNeoConfig
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoSelfAttention

    config = GPTNeoConfig(max_position_embeddings=40, window_size=6, hidden_size=8, num_heads=2,
                          num_layers=1, attention_types=[[[kind], 1]])
    expected = GPTNeoSelfAttention(config, kind).bias[0, 0].numpy()
    # every (cache length, new tokens) slice transformers takes of its buffer
    for past in (0, 3, 17):
        for new in (1, 5):
            ours = attention_mask(kind, np.arange(past, past + new), past + new, 6)
            assert np.array_equal(ours, expected[past:past + new, :past + new])


def test_tinystories_shape_matches_transformers(tinystories_random):
    checkpoint, cpu, hf = models(tinystories_random)
    assert checkpoint.config.attention_layers == ("global", "local", "global", "local")
    ids = sample_ids(checkpoint.config.vocab_size, 16, seed=5)
    for model in (cpu, hf):
        model.reset(1)
    np.testing.assert_allclose(cpu.forward(ids[None]), hf.forward(ids[None]), atol=TOLERANCE, rtol=0)
    for token in (5, 6000, 50256):
        np.testing.assert_allclose(cpu.forward(np.array([[token]])), hf.forward(np.array([[token]])),
                                   atol=TOLERANCE, rtol=0)
