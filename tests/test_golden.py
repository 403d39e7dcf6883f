"""The quantizer, the model image and the golden model against the float reference."""

import struct

import numpy as np
import pytest
from neofpga.contract.errors import UserError
from neofpga.contract.numerics import INT16
from neofpga.host.backends import load_source, open_model
from neofpga.host.golden import GoldenOps
from neofpga.host.image import FORMAT_VERSION, MAGIC, load_image, save_image
from neofpga.host.kernels import gelu_knots, quantize, requantize
from neofpga.host.quantize import dequantized_weights, quantize_checkpoint
from neofpga.host.training.corpus import calibration_text, held_out_text


@pytest.fixture(scope="module")
def quantized(checkpoints):
    """The four-alternating test checkpoint quantized on story text, and its source."""
    source = load_source(checkpoints["four-alternating"])
    model = quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(16)), "test")
    return source, model


def assert_same_model(a, b):
    assert a.config == b.config and a.scales == b.scales and a.generation_config == b.generation_config
    assert a.tokenizer.to_str() == b.tokenizer.to_str() and a.calibration == b.calibration
    assert sorted(a.tensors) == sorted(b.tensors)
    for name in a.tensors:
        assert a.tensors[name].dtype == b.tensors[name].dtype, name
        assert np.array_equal(a.tensors[name], b.tensors[name]), name


def test_image_round_trip_is_bit_exact(quantized, tmp_path):
    _, model = quantized
    save_image(model, tmp_path / "m.neofpga")
    loaded = load_image(tmp_path / "m.neofpga")
    assert_same_model(model, loaded)
    save_image(loaded, tmp_path / "again.neofpga")
    assert (tmp_path / "m.neofpga").read_bytes() == (tmp_path / "again.neofpga").read_bytes()


def test_quantizing_twice_gives_the_same_bytes(quantized, tmp_path):
    source, model = quantized
    again = quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(16)), "test")
    save_image(model, tmp_path / "a")
    save_image(again, tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_bad_images_are_refused(quantized, tmp_path):
    _, model = quantized
    good = tmp_path / "good.neofpga"
    save_image(model, good)
    data = good.read_bytes()

    def expect(blob, message):
        path = tmp_path / "bad.neofpga"
        path.write_bytes(blob)
        with pytest.raises(UserError, match=message) as e:
            load_image(path)
        assert "\n" not in str(e.value)

    expect(data[: len(data) // 2], "checksum mismatch")
    expect(data[:20], "truncated")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    expect(bytes(flipped), "checksum mismatch")
    expect(b"PK\x03\x04" + data[4:], "not a neofpga model image")
    newer = MAGIC + struct.pack("<I", FORMAT_VERSION + 1) + data[len(MAGIC) + 4:]
    expect(newer, "format version")


def test_tables_and_constants_follow_from_the_scales(quantized):
    _, model = quantized
    for i in range(model.config.num_layers):
        knots = gelu_knots(model.scales[f"h.{i}.fc"], model.scales[f"h.{i}.gelu"])
        assert np.array_equal(model.tensors[f"h.{i}.gelu.knots"], knots)
        m, s = model.tensors[f"h.{i}.qkv.multiplier"], model.tensors[f"h.{i}.qkv.shift"]
        assert m.dtype == np.uint16 and np.all(m >= 2 ** 15) and s.dtype == np.uint8
        w = model.tensors[f"h.{i}.qkv.weight"]
        assert w.dtype == np.int8 and w.min() >= -127
        for ln in ("ln_1", "ln_2"):
            gain = model.tensors[f"h.{i}.{ln}.gain"]
            # the largest gamma sets the scale, rounded up to 10 significant bits (a step of at most 2**-9)
            assert gain.dtype == np.int16 and 32767 * (1 - 2 ** -9) <= np.abs(gain).max() <= 32767
    d = model.config.hidden_size
    mean_multiplier, mean_shift, epsilon = model.tensors["layer_norm.statistics"].tolist()
    assert abs(mean_multiplier / 2 ** mean_shift * d - 1) < 2 ** -16
    assert epsilon == max(1, round(d * model.config.layer_norm_epsilon / float(model.scales["residual"]) ** 2))
    # each embedding row's requantizer brings its weight scale to the residual's
    factor = model.tensors["embedding.multiplier"] / 2.0 ** model.tensors["embedding.shift"]
    expected = model.tensors["head.weight_scale"] / np.float64(model.scales["residual"])
    assert np.all(np.abs(factor / expected - 1) < 2 ** -15)


def test_golden_linear_is_the_requantized_integer_matmul(quantized):
    """GoldenOps.linear against a plain int64 numpy matmul (no float32 trick)."""
    _, model = quantized
    ops = GoldenOps(model)
    x = np.random.default_rng(0).integers(-32768, 32768, (5, model.config.hidden_size))
    x[0] = -32768
    t = model.tensors
    for name in ("h.0.qkv", "h.1.c_fc", "head"):
        acc = x @ t[f"{name}.weight"].astype(np.int64).T
        limits = t[f"{name}.limits"]
        expected = requantize(acc, t[f"{name}.bias"], t[f"{name}.multiplier"], t[f"{name}.shift"],
                              limits[..., 0], limits[..., 1])
        assert np.array_equal(ops.linear(name, x), expected)


def logit_agreement(source, model, n_stories=8):
    """emu vs cpu, teacher-forced on held-out stories: top-1 agreement and the RMS logit error
    relative to the float logits' standard deviation."""
    from neofpga.host.golden import golden_model

    ids = np.array(source.tokenizer.encode(held_out_text(n_stories)))[: source.config.max_position_embeddings]
    cpu, emu = open_model("cpu", source), golden_model(model)
    cpu.reset(1)
    emu.reset(1)
    f, g = cpu.forward(ids[None])[0], emu.forward(ids[None])[0]
    return float((f.argmax(-1) == g.argmax(-1)).mean()), float(np.sqrt(((f - g) ** 2).mean()) / f.std())


# docs/NUMERICS.md: relative RMS logit error <= 10 % on the suite's deliberately peaky random
# checkpoints, <= 3 % on init-random presets and the default model
@pytest.mark.parametrize("name", ["one-local", "local-global-local", "four-alternating", "two-global"])
def test_golden_model_tracks_the_float_reference_on_random_checkpoints(checkpoints, name):
    source = load_source(checkpoints[name])
    model = quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(16)))
    top1, error = logit_agreement(source, model)
    assert error <= 0.10 and top1 >= 0.85


def test_golden_model_tracks_the_float_reference_on_the_tiny_preset(tiny_random):
    source = load_source(tiny_random)
    model = quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(16)))
    assert logit_agreement(source, model)[1] <= 0.03


def test_dequantized_image_runs_on_cpu(quantized, tmp_path):
    source, model = quantized
    save_image(model, tmp_path / "m.neofpga")
    image = load_source(tmp_path / "m.neofpga")
    weights = dequantized_weights(image.image)
    for name, array in source.checkpoint.weights.items():
        if name.endswith("weight") and array.ndim == 2:
            # int8 per row (the wpe table's included): error at most half a step of the row's scale
            step = np.abs(array).max(axis=1, keepdims=True) / 127
            assert np.all(np.abs(weights[name] - array) <= step / 2 + 1e-7), name
        elif ".ln_" in name:
            # LayerNorm gains: 16-bit at one scale; biases in the unit of n * gain (finer still)
            step = np.abs(source.checkpoint.weights[name.replace(".bias", ".weight")]).max() / 32767
            assert np.all(np.abs(weights[name] - array) <= step / 2 * 1.002 + 1e-7), name
    with pytest.raises(UserError, match="hf back end runs Hugging Face folders"):
        open_model("hf", image)
    cpu = open_model("cpu", image)
    cpu.reset(1)
    assert np.isfinite(cpu.forward(np.array([[1, 2, 3]]))).all()


def test_quantize_activations_round_half_even_on_the_host():
    assert quantize(np.array([0.25, 0.75, -0.25, 1.25]), 0.5, INT16).tolist() == [0, 2, 0, 2]


def test_layer_norm_bias_far_beyond_the_gains_still_fits():
    """A beta far beyond every gamma coarsens the gains' scale instead of clipping the bias."""
    from neofpga.contract.numerics import BIAS_LIMIT, NORM_FRAC_BITS
    from neofpga.host.quantize import _layer_norm

    d = 768
    gamma, beta = np.full(d, 1e-3), np.linspace(-1.0, 1.0, d)
    tensors, scales = {}, {}
    _layer_norm(tensors, scales, "ln", gamma, beta, 1e-3, (-32767, 32767))
    unit = np.float64(scales["ln.gain"]) * np.sqrt(d) * 2.0 ** -NORM_FRAC_BITS
    assert np.abs(tensors["ln.bias"]).max() <= BIAS_LIMIT
    assert np.abs(tensors["ln.bias"] * unit - beta).max() <= unit
    assert np.abs(tensors["ln.gain"] * np.float64(scales["ln.gain"]) - gamma).max() <= scales["ln.gain"] / 2
