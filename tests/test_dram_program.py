"""host/dram_program.py: the model's program with everything in DRAM, on the reference device with
DRAM (fast) and on the simulated board with its timed DRAM: every logit code and choice equal to
the golden model's, past the local window."""

import numpy as np
import pytest
from neofpga.contract.dram import BOARD_DRAMS, DRAM_WORD_BYTES, board_dram
from neofpga.contract.errors import UserError
from neofpga.contract.protocol import Space
from neofpga.host.accelerator_model import AcceleratorModel, ModelTransport
from neofpga.host.backends import load_source
from neofpga.host.dram_program import DramProgram
from neofpga.host.board_backend import HostEndsModel, ProgramModel, open_board_model
from neofpga.host.driver import AcceleratorDriver, PlanningDriver
from neofpga.host.generation import generate
from neofpga.host.golden import golden_model
from neofpga.host.sampling import Sampler
from neofpga.host.link import Link
from neofpga.host.quantize import quantize_checkpoint
from neofpga.host.training.corpus import calibration_text
from neofpga.sim.board_process import SimulatedBoard, dram_option
from neofpga.sim.simulated_board import board_executable
import serial

from test_token_program import run_both, settings_for

DEVICE = dict(rows=1, cols=16, activation_words=4096, weight_words=512, constant_words=4608, gelu_tables=4,
              max_payload=2048, softmax_length=256, program_words=256, norm_length=256, dram_words=2 ** 16)


@pytest.fixture(scope="module")
def default():
    """The shipped default model (window 64, context 256)."""
    return load_source(None).quantized()


@pytest.fixture(scope="module")
def odd(checkpoints):
    """Two global layers of width 64 (heads of 32), MLP 96, context 64."""
    source = load_source(checkpoints["two-global"])
    return quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(4)))


def on_reference(model, **device):
    driver = AcceleratorDriver(Link(ModelTransport(AcceleratorModel(**{**DEVICE, **device})), timeout=0))
    return DramProgram(model, driver)


@pytest.mark.parametrize("sampled", [False, True])
def test_the_dram_program_equals_the_golden_model_on_the_reference_device(odd, sampled):
    program = on_reference(odd)
    ids = np.random.default_rng(1).integers(0, odd.config.vocab_size, 40)
    settings = settings_for(odd, temperature=1.2, top_k=20, top_p=0.9, seed=5) if sampled else settings_for(odd)
    run_both(odd, program, ids, settings)


def test_the_default_model_runs_from_dram(default):
    program = on_reference(default)
    assert program.words_used["weight_words"] == 2 * default.config.hidden_size  # only EMBED's rows
    run_both(default, program, np.random.default_rng(2).integers(0, default.config.vocab_size, 70),
             settings_for(default))  # window 64


class CountingDriver(AcceleratorDriver):
    """A driver that counts the DRAM words it writes."""

    dram_words_written = 0

    def write(self, space, bank, address, data):
        if space == Space.DRAM:
            self.dram_words_written += len(data) // DRAM_WORD_BYTES
        super().write(space, bank, address, data)


def test_the_weights_stay_resident_a_second_run_sends_none_and_a_changed_dram_is_sent_again(odd):
    device = AcceleratorModel(**DEVICE)
    lines = []

    def connect():
        return CountingDriver(Link(ModelTransport(device), timeout=0))

    first = DramProgram(odd, connect(), log=lines.append)
    assert first.driver.dram_words_written == first.dram_used + 2  # the stamp cleared, then written
    assert any(line.startswith("uploading the DRAM image") for line in lines) or first.dram_used * 16 <= 2 ** 20
    second = DramProgram(odd, connect(), log=lines.append)
    assert second.driver.dram_words_written == 0 and lines[-1] == "the model's weights are already in the device's DRAM"
    run_both(odd, second, np.random.default_rng(3).integers(0, odd.config.vocab_size, 10), settings_for(odd))
    # a word of a region changed (as after a power cycle, or another program's writes): sent again
    last = second.record_word[next(iter(second.records))]
    second.driver.write(Space.DRAM, 0, last, bytes(DRAM_WORD_BYTES))
    third = DramProgram(odd, connect(), log=lines.append)
    assert third.driver.dram_words_written == third.dram_used + 2


def test_a_selftest_overwrites_the_dram_so_the_next_run_uploads_again(odd, monkeypatch):
    """selftest's walking addresses change words that the stamp and the regions' ends would not
    show, even when it is stopped before its pattern covers the whole DRAM."""
    from neofpga.host import selftest

    device = AcceleratorModel(**DEVICE)
    DramProgram(odd, AcceleratorDriver(Link(ModelTransport(device), timeout=0)))

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(selftest, "_dram_patterns", interrupted)
    driver = AcceleratorDriver(Link(ModelTransport(device), timeout=0))
    with pytest.raises(KeyboardInterrupt):
        selftest.run_selftest(driver)
    assert driver.read(Space.DRAM, 0, DEVICE["dram_words"] - 1, 1) == bytes(DRAM_WORD_BYTES)  # no stamp
    again = DramProgram(odd, CountingDriver(Link(ModelTransport(device), timeout=0)))
    assert again.driver.dram_words_written == again.dram_used + 2


def test_an_interrupted_upload_leaves_no_stamp(odd):
    device = AcceleratorModel(**DEVICE)

    class Interrupted(AcceleratorDriver):
        def write(self, space, bank, address, data):
            if space == Space.DRAM and address == 0:
                raise KeyboardInterrupt
            super().write(space, bank, address, data)

    driver = AcceleratorDriver(Link(ModelTransport(device), timeout=0))
    program = DramProgram(odd, driver)  # a whole upload: the stamp written
    assert driver.read(Space.DRAM, 0, DEVICE["dram_words"] - 1, 1) != bytes(DRAM_WORD_BYTES)
    driver.write(Space.DRAM, 0, program.dram_used - 1, bytes(DRAM_WORD_BYTES))  # so that it is sent again
    with pytest.raises(KeyboardInterrupt):
        DramProgram(odd, Interrupted(Link(ModelTransport(device), timeout=0)))
    # the upload stopped before its first word, but the stamp was cleared before it began
    assert driver.read(Space.DRAM, 0, DEVICE["dram_words"] - 1, 1) == bytes(DRAM_WORD_BYTES)


def test_a_model_too_big_for_the_dram_is_a_one_line_error(default):
    with pytest.raises(UserError, match="DRAM words"):
        on_reference(default, dram_words=2 ** 12)


@pytest.mark.parametrize("preloaded", [True, False])
def test_the_dram_program_on_the_simulated_board_with_its_dram(default, tmp_path, preloaded):
    """The gateware with the timed DRAM model (the ECPIX-5's timing), its DRAM preloaded from the
    model's image (then checked), or uploaded over the link: 70 tokens, past the window, each
    equal to the golden model."""
    executable = board_executable({**DEVICE, "timeout_cycles": 2 ** 20, "clock_hz": 36_000_000},
                                  log=lambda line: None)
    image = None
    if preloaded:
        image = tmp_path / "dram.bin"
        image.write_bytes(on_reference(default).dram_image().tobytes())
    with SimulatedBoard(executable, dram=dram_option(BOARD_DRAMS["ecpix5"], DEVICE["dram_words"], 36_000_000),
                        dram_init=image) as board:
        driver = AcceleratorDriver(Link(serial.serial_for_url(board.url, timeout=0.01), timeout=20.0))
        program = DramProgram(default, driver, preloaded=preloaded)
        run_both(default, program, np.random.default_rng(2).integers(0, default.config.vocab_size, 70),
                 settings_for(default))
        counters = driver.counters()
        assert counters["dram_reads"] > 0 and counters["dram_writes"] > 0 and counters["copy_cycles"] > 0


def assert_tokens_are_emus(sim, emu, model, tokenizer):
    """Every logit code of 2 random tokens, then 3 greedy tokens after the first, equal on ``sim`` and ``emu``."""
    ids = [int(i) for i in np.random.default_rng(3).integers(0, model.config.vocab_size, 2)]
    for token in ids:
        np.testing.assert_array_equal(sim.forward(np.array([[token]]))[0, -1], emu.forward(np.array([[token]]))[0, -1])
    expected = generate(emu, tokenizer, ids[:1], Sampler(), 3, eos_id=None).new_ids
    assert generate(sim, tokenizer, ids[:1], Sampler(), 3, eos_id=None).new_ids == expected


@pytest.mark.slow
@pytest.mark.parametrize("board, plan", [("ecpix5-85", ProgramModel), ("ulx3s-85f", HostEndsModel)])
def test_tinystories_on_a_simulated_board_runs_from_dram_as_emu_does(tinystories_random, board, plan):
    """The tinystories-33m preset (TinyStories-33M's shape) does not fit a board's block RAM, so
    ``sim --board`` simulates its DRAM design, the model preloaded into the timed DRAM: the whole
    model on the ECPIX-5, the blocks (the ends on the host) on the ULX3S-85F. Every logit code of
    2 tokens, then 3 greedy tokens, equal the golden model's."""
    source = load_source(tinystories_random)
    model = quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(1))[:64])
    emu, sim = golden_model(model), open_board_model("sim", model, board=board)
    try:
        assert type(sim) is plan and sim.driver.device_info["dram_words"] == board_dram(board).words
        assert_tokens_are_emus(sim, emu, model, source.tokenizer)
        weights = sum(m.size for name, m in model.tensors.items() if name.startswith("h.") and m.dtype == np.int8)
        assert sim.device_stats()["device_dram_reads"] * 16 > 5 * weights  # 5 tokens of the blocks' weights, at least
    finally:
        sim.close()


def test_the_blocks_alone_run_from_dram_with_the_ends_on_the_host(default):
    """With host_ends (the ULX3S's plan for TinyStories-33M), the host embeds each token and runs
    the head on the device's final row: the same logit codes as the golden model."""
    driver = AcceleratorDriver(Link(ModelTransport(AcceleratorModel(**DEVICE)), timeout=0))
    program = DramProgram(default, driver, host_ends=True)
    assert program.context == default.config.max_position_embeddings
    assert "head" not in program.matrices and "embedding" not in program.records
    golden = golden_model(default)
    scale = np.float32(default.scales["logits"])
    for position, token in enumerate(np.random.default_rng(4).integers(0, default.config.vocab_size, 70)):
        assert program.token(token, position, settings_for(default)) is None  # the host chooses
        expected = np.rint(golden.forward(np.array([[token]]))[0, -1] / scale).astype(np.int64)
        np.testing.assert_array_equal(program.logits(), expected, err_msg=f"logits at position {position}")


def test_open_board_model_picks_the_dram_plan_that_fits(default, monkeypatch):
    """On a device with DRAM, the whole model where it fits, else its blocks with the ends on the
    host (no GENERATE: the host chooses), and the same tokens as the golden model either way."""
    from neofpga.host import board_backend

    tokenizer = load_source(None).tokenizer
    expected = generate(golden_model(default), tokenizer, [5, 6], Sampler(), 8, eos_id=None).new_ids
    whole = DramProgram(default, PlanningDriver(DEVICE)).dram_used
    for dram_words, kind in ((DEVICE["dram_words"], ProgramModel), (whole - 16, HostEndsModel)):
        driver = AcceleratorDriver(Link(ModelTransport(AcceleratorModel(**dict(DEVICE, dram_words=dram_words))),
                                        timeout=0))
        monkeypatch.setattr(board_backend, "connect_board", lambda *args, **kwargs: (driver, lambda: None))
        model = board_backend.open_board_model("sim", default)
        assert type(model) is kind and isinstance(model.ops, DramProgram)
        assert generate(model, tokenizer, [5, 6], Sampler(), 8, eos_id=None).new_ids == expected


def test_the_context_is_cut_to_the_kv_caches_that_fit_beside_the_blocks(default):
    """A DRAM too small for the whole model's plan holds the blocks and the caches of a shorter context."""
    from neofpga.host.dram_program import dram_plan
    whole = DramProgram(default, PlanningDriver(DEVICE)).dram_used
    blocks = DramProgram(default, PlanningDriver(DEVICE), host_ends=True)
    caches = blocks.weight_base[min(blocks.weight_base, key=blocks.weight_base.get)] - DEVICE["weight_words"]
    small = dict(DEVICE, dram_words=blocks.dram_used - caches // 2)
    assert small["dram_words"] < whole and dram_plan(default, small) is True
    cut = DramProgram(default, PlanningDriver(small), host_ends=True)
    assert 16 <= cut.context < default.config.max_position_embeddings and cut.context % 16 == 0
    assert cut.dram_used <= small["dram_words"]
    with pytest.raises(UserError, match="fits no plan"):
        dram_plan(default, dict(DEVICE, dram_words=1000))


def test_a_dram_preloaded_with_another_image_is_a_one_line_error(default, tmp_path):
    """A board whose DRAM holds something else than this model's image is refused before it runs."""
    executable = board_executable({**DEVICE, "timeout_cycles": 2 ** 20, "clock_hz": 36_000_000},
                                  log=lambda line: None)
    image = on_reference(default).dram_image()
    image[len(image) // 2:] += 1  # another model's, from its middle on
    (tmp_path / "dram.bin").write_bytes(image.tobytes())
    with SimulatedBoard(executable, dram=dram_option(BOARD_DRAMS["ecpix5"], DEVICE["dram_words"], 36_000_000),
                        dram_init=tmp_path / "dram.bin") as board:
        driver = AcceleratorDriver(Link(serial.serial_for_url(board.url, timeout=0.01), timeout=20.0))
        with pytest.raises(UserError, match="preloaded DRAM differs from this model's image"):
            DramProgram(default, driver, preloaded=True)
