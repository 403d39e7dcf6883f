"""Fixtures: small GPT-Neo checkpoints built here with transformers, shaped like real downloads; the --waves
option that makes simulations write waveforms."""

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest


def pytest_addoption(parser):
    parser.addoption("--waves", action="store_true",
                     help="simulations write FST waveforms (sets NEOFPGA_WAVES=1 for neofpga.sim.runner)")


def pytest_configure(config):
    if config.getoption("waves"):
        os.environ["NEOFPGA_WAVES"] = "1"
    _SUITE.update(config=config, start=time.monotonic())


LONG_TEST_SECONDS = 60
"""A test phase that takes longer prints its time as it ends, and the suite's so far: a run stopped by
CI's time limit (which prints no --durations table) still shows where its minutes went."""
_SUITE = {}


def pytest_runtest_logreport(report):
    reporter = _SUITE["config"].pluginmanager.get_plugin("terminalreporter")
    if report.duration >= LONG_TEST_SECONDS and reporter:  # setup too: the bitstreams are a fixture
        elapsed = (time.monotonic() - _SUITE["start"]) / 60
        reporter.write_line(f"[{report.when} {report.duration:,.0f} s, the suite at {elapsed:,.1f} min] {report.nodeid}")


CORPUS = [
    "Once upon a time, there was a little cat named Tom. Tom liked to play in the sun.",
    "One day, a girl named Lily found a red ball in the park. She was very happy!",
    "The dog said, \"Let's go to the big tree!\" They ran and ran until they were tired.",
    "Mom smiled and gave Ben a hug. \"You were brave today,\" she said.",
    "The bird could not fly, so the kind boy helped it. They became best friends.",
    "Café, naïve and 👋 emoji also appear so that multi-byte characters are in the corpus.",
]

# Deliberately odd shapes: hidden sizes that are not powers of two, 1 to 4 layers, both orders of
# global and local, windows shorter than the test sequences.
CONFIGS = {
    "one-local": dict(hidden_size=72, num_heads=3, num_layers=1, attention_types=[[["local"], 1]],
                      window_size=5, intermediate_size=200, max_position_embeddings=96),
    "local-global-local": dict(hidden_size=48, num_heads=4, num_layers=3,
                               attention_types=[[["local", "global"], 1], [["local"], 1]],
                               window_size=7, intermediate_size=None, max_position_embeddings=128),
    "four-alternating": dict(hidden_size=40, num_heads=5, num_layers=4, attention_types=[[["global", "local"], 2]],
                             window_size=8, intermediate_size=120, max_position_embeddings=160,
                             layer_norm_epsilon=1e-3),
    "two-global": dict(hidden_size=64, num_heads=2, num_layers=2, attention_types=[[["global"], 2]],
                       window_size=256, intermediate_size=96, max_position_embeddings=64),
}


def train_tokenizer(vocab_size=320):
    """A byte-level BPE trained on the corpus with tokenizers, <|endoftext|> last."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(CORPUS * 20, vocab_size=vocab_size - 1, min_frequency=1, show_progress=False)
    tokenizer.add_special_tokens(["<|endoftext|>"])
    return tokenizer


def build_checkpoint(folder, shape, tokenizer, seed=0, serialization="safetensors"):
    """Save a random GPTNeoForCausalLM with transformers; LayerNorms and biases get random values too."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    vocab = tokenizer.get_vocab_size()
    # initializer_range well above GPT-Neo's 0.02 so that attention is peaked, not uniform: a wrong
    # mask or a 1/sqrt(head_dim) scaling then moves the logits far beyond the tolerance
    config = GPTNeoConfig(vocab_size=vocab, bos_token_id=vocab - 1, eos_token_id=vocab - 1,
                          initializer_range=0.15, **shape)
    torch.manual_seed(seed)
    model = GPTNeoForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.05)
    folder = Path(folder)
    if serialization == "bin":
        folder.mkdir(parents=True)
        config.save_pretrained(folder)
        model.generation_config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    elif serialization == "sharded":
        model.save_pretrained(folder, max_shard_size="40KB")
        assert (folder / "model.safetensors.index.json").exists()
    else:
        model.save_pretrained(folder)
    return model


@pytest.fixture(scope="session")
def tokenizer_files(tmp_path_factory):
    """A trained tokenizer both as tokenizer.json and as GPT-2-style vocab.json + merges.txt."""
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer = train_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer.save_model(str(folder))  # vocab.json, merges.txt
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))
    return folder


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, tokenizer_files):
    """Every odd config saved by transformers with tokenizer.json; returns {name: folder}."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_files / "tokenizer.json"))
    root = tmp_path_factory.mktemp("checkpoints")
    folders = {}
    for i, (name, shape) in enumerate(CONFIGS.items()):
        folder = root / name
        build_checkpoint(folder, shape, tokenizer, seed=i)
        shutil.copy(tokenizer_files / "tokenizer.json", folder)
        folders[name] = folder
    return folders


@pytest.fixture(scope="session")
def download_shaped(tmp_path_factory, tokenizer_files):
    """Folders shaped like real downloads: pytorch_model.bin only, sharded safetensors, and
    vocab.json + merges.txt without tokenizer.json."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_files / "tokenizer.json"))
    root = tmp_path_factory.mktemp("downloads")
    folders = {}
    for kind in ("bin", "sharded"):
        folder = root / kind
        build_checkpoint(folder, CONFIGS["four-alternating"], tokenizer, seed=7, serialization=kind)
        for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            shutil.copy(tokenizer_files / name, folder)
        folders[kind] = folder
    return folders


@pytest.fixture(scope="session")
def tiny_random(tmp_path_factory):
    """The `tiny` preset written by neofpga init-random."""
    from neofpga.host.model.random_init import init_random

    folder = tmp_path_factory.mktemp("tiny") / "model"
    init_random("tiny", folder, seed=3)
    return folder


@pytest.fixture(scope="session")
def tinystories_random(tmp_path_factory):
    """The tinystories-33m preset written by neofpga init-random (TinyStories-33M's shape, random weights)."""
    from neofpga.host.model.random_init import init_random

    folder = tmp_path_factory.mktemp("ts33") / "model"
    init_random("tinystories-33m", folder, seed=0)
    return folder


def sample_ids(vocab_size, n, seed=0):
    return np.random.default_rng(seed).integers(0, vocab_size - 1, size=n)
