"""Sampling, the generation loop, streamed text and scoring windows."""

import numpy as np
import pytest
from neofpga.contract.errors import UserError
from neofpga.host.backends import load_source, open_model
from neofpga.host.generation import TextStream, generate, prompt_ids
from neofpga.host.model.random_init import byte_level_tokenizer
from neofpga.host.model.tokenizer import TextTokenizer
from neofpga.host.sampling import Sampler
from neofpga.host.scoring import score, windows


class ScriptedModel:
    """A model whose next token is scripted: logits peak at script[position]."""

    name = "scripted"

    def __init__(self, script, context=100, vocab=512):
        from types import SimpleNamespace
        self.script, self.vocab = script, vocab
        self.config = SimpleNamespace(max_position_embeddings=context)
        self.length = 0

    def reset(self, batch=1):
        self.length = 0

    def forward(self, ids, last_only=False):
        n = ids.shape[1]
        logits = np.zeros((1, n, self.vocab), np.float32)
        for i in range(n):
            logits[0, i, self.script[(self.length + i) % len(self.script)]] = 5.0
        self.length += n
        return logits[:, -1:] if last_only else logits

    def chooser(self, sampler):
        return sampler.float_chooser()


TOKENIZER = TextTokenizer(byte_level_tokenizer(512))

# -- sampling ------------------------------------------------------------------------------------

LOGITS = np.log(np.array([0.05, 0.4, 0.25, 0.2, 0.1]))


def draws(sampler, n=4000):
    choose = sampler.float_chooser()
    return np.bincount([choose(LOGITS) for _ in range(n)], minlength=5) / n


def test_greedy_is_argmax():
    assert Sampler().float_chooser()(LOGITS) == 1
    assert Sampler(temperature=0).float_chooser()(LOGITS) == 1
    assert Sampler(temperature=5.0, top_k=1).float_chooser()(LOGITS) == 1


def test_sampling_follows_the_softmax_at_temperature():
    for t in (1.0, 0.5, 2.0):
        expected = np.exp(LOGITS / t) / np.exp(LOGITS / t).sum()
        assert np.abs(draws(Sampler(temperature=t, seed=1)) - expected).max() < 0.03


def test_top_k_and_top_p_restrict_the_support():
    freq = draws(Sampler(top_k=2, seed=2))
    assert freq[[0, 3, 4]].sum() == 0 and abs(freq[1] - 0.4 / 0.65) < 0.03
    # nucleus 0.6: 0.4 + 0.25 = 0.65 >= 0.6, so tokens 1 and 2 only
    freq = draws(Sampler(top_p=0.6, seed=3))
    assert freq[[0, 3, 4]].sum() == 0 and freq[2] > 0.3
    # exactly at a boundary (0.4 + 0.25 + 0.2 = 0.85): three tokens
    assert draws(Sampler(top_p=0.85, seed=4))[[0, 4]].sum() == 0
    assert set(np.nonzero(draws(Sampler(top_p=0.1, seed=5)))[0]) == {1}


def test_seeded_sampling_is_reproducible():
    a = [Sampler(temperature=1.0, seed=9).float_chooser()(LOGITS) for _ in range(1)]
    s1, s2, s3 = (Sampler(temperature=1.0, seed=seed).float_chooser() for seed in (9, 9, 8))
    r1, r2, r3 = ([s(LOGITS) for _ in range(50)] for s in (s1, s2, s3))
    assert r1 == r2 != r3 and a[0] == r1[0]


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(top_k=0), dict(top_p=0), dict(top_p=1.5),
                                    dict(seed=-1), dict(seed=2 ** 32)])
def test_bad_sampling_arguments(kwargs):
    with pytest.raises(UserError):
        Sampler(**kwargs)


# -- the generation loop -------------------------------------------------------------------------

def test_stops_at_eos_which_is_kept_in_ids_but_not_printed():
    model = ScriptedModel([72, 105, 511])  # "H", "i", eos; the prompt occupies position 0 only
    out = []
    result = generate(model, TOKENIZER, [65], Sampler(), 50, eos_id=511, write=out.append)
    # logits at position p come from script[p]: prompt position 0 predicts script[0]
    assert result.new_ids == [72, 105, 511] and result.stop_reason == "eos"
    assert "".join(out) == result.text == "Hi"


def test_stops_at_max_new_tokens_and_at_the_context():
    result = generate(ScriptedModel([66]), TOKENIZER, [65], Sampler(), 7, eos_id=511)
    assert result.new_ids == [66] * 7 and result.stop_reason == "max-new-tokens"
    result = generate(ScriptedModel([66], context=10), TOKENIZER, [65] * 4, Sampler(), 50, eos_id=511)
    assert len(result.new_ids) == 6 and result.stop_reason == "context"


def test_prompt_checks(tiny_random):
    checkpoint = load_source(tiny_random)
    c = checkpoint.config
    assert prompt_ids(checkpoint.tokenizer, c, "") == [c.bos_token_id]
    full = " a" * c.max_position_embeddings  # one token per " a"
    assert len(prompt_ids(checkpoint.tokenizer, c, full)) == c.max_position_embeddings
    with pytest.raises(UserError, match="longer than the model's context"):
        prompt_ids(checkpoint.tokenizer, c, "\x01" * (c.max_position_embeddings + 1))


def test_stream_holds_back_split_utf8_characters():
    text = "Hi 👋 café — ok"
    ids = [b for b in text.encode()]  # one token per byte: every multi-byte character is split
    pieces = []
    stream = TextStream(TOKENIZER, pieces.append)
    for token in ids:
        stream.push(token)
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == stream.flush() == text


# -- scoring -------------------------------------------------------------------------------------

def test_windows_cover_every_target_once():
    for n, context in ((2, 8), (8, 8), (9, 8), (30, 8), (31, 7), (100, 64), (5, 1000)):
        spans = windows(n, context)
        scored = [t for start, end, first in spans for t in range(first, end)]
        assert scored == list(range(1, n))
        assert all(end - start <= context for start, end, _ in spans)
        assert all(start % max(context // 2, 1) == 0 for start, _, _ in spans)
        # every later window scores only its second half
        assert all(first - start >= context // 2 for start, _, first in spans[1:])


def test_score_matches_direct_computation_across_windows(checkpoints):
    checkpoint = load_source(checkpoints["two-global"])  # context 64
    model = open_model("cpu", checkpoint)
    ids = np.random.default_rng(0).integers(0, checkpoint.config.vocab_size - 1, 150)
    result = score(model, ids)
    assert result.n_tokens == 149 and len(result.argmax_ids) == 149

    def direct(target, start, end):
        model.reset(1)
        logits = model.forward(ids[None, start:end])[0, target - 1 - start].astype(np.float64)
        logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        return -logp[ids[target]], int(np.argmax(logits))

    # target 10 is in the first window [0, 64); target 100 in the window [64, 128) (second half of it)
    # and target 140 in the last, short window [96, 150)
    for target, start, end in ((10, 0, 64), (100, 64, 128), (140, 96, 150)):
        nll, argmax = direct(target, start, end)
        assert abs(result.nll[target - 1] - nll) < 1e-5 and result.argmax_ids[target - 1] == argmax
    assert abs(result.perplexity - np.exp(result.nll.mean())) < 1e-9


def test_score_needs_two_tokens(tiny_random):
    checkpoint = load_source(tiny_random)
    with pytest.raises(UserError, match="scoring needs at least 2"):
        score(open_model("cpu", checkpoint), [5])


# -- the integer sampler's chooser -----------------------------------------------------------------

def test_integer_chooser_recovers_the_codes_and_follows_the_kernel():
    from neofpga.host.kernels import first_state, integer_sample, sampling_parameters
    scale = np.float32(0.0123)
    codes = np.random.default_rng(0).integers(-32768, 32768, 300)
    codes[[0, 1, 2]] = 32767, -32768, 0
    logits = codes.astype(np.float32) * scale  # what an integer back end returns
    choose = Sampler(temperature=0.7, top_k=30, seed=4).integer_chooser(scale)
    assert np.array_equal(choose.codes(logits), codes)
    state, parameters = first_state(4), sampling_parameters(scale, 0.7, 30)
    for _ in range(20):
        token, state = integer_sample(codes, *parameters, state)
        assert choose(logits) == token
    assert Sampler().integer_chooser(scale)(logits) == 0


def test_integer_chooser_refuses_what_the_device_cannot_sample():
    with pytest.raises(UserError, match="at most 64 candidates"):
        Sampler(top_k=65).integer_chooser(0.01)
    with pytest.raises(UserError, match="too small for the device's sampler"):
        Sampler(temperature=1e-9).integer_chooser(0.01)
    Sampler(top_k=65, temperature=0).integer_chooser(0.01)  # greedy: no candidates needed
