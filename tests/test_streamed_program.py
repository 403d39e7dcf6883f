"""host/streamed_program.py on the simulated NiteFury's streamed design (hdl/streamed_memory.py):
the blocks' weights pushed over the simulated PCIe board's second H2C channel every token, in the
order the program reads them; every logit code equal to the golden model's, past the local window,
and the TinyStories-33M preset's greedy tokens equal to emu's (slow)."""

import numpy as np
import pytest
from neofpga.contract.design import STREAM_LOCAL_WORDS, STREAMED_WORDS, simulated_parameters
from neofpga.contract.dram import DRAM_WORD_BYTES
from neofpga.contract.errors import UserError
from neofpga.host.backends import load_source
from neofpga.host.board_backend import HostEndsModel, connect_board, open_board_model
from neofpga.host.driver import PlanningDriver
from neofpga.host.golden import golden_model
from neofpga.host.quantize import quantize_checkpoint
from neofpga.host.streamed_program import StreamedProgram
from neofpga.host.training.corpus import calibration_text

from test_dram_program import assert_tokens_are_emus

STREAMED = simulated_parameters("nitefury", stream=True)


@pytest.fixture(scope="module")
def default():
    """The shipped default model (window 64, context 256)."""
    return load_source(None).quantized()


@pytest.fixture(scope="module")
def tinystories(tinystories_random):
    source = load_source(tinystories_random)
    return source, quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(1))[:64])


def block_matrix_bytes(model):
    """The bytes of the blocks' matrices in the weight banks' layout (rows padded to 16)."""
    return sum(-(-m.shape[0] // 16) * 16 * m.shape[1] for name, m in model.tensors.items()
               if name.startswith("h.") and name.endswith(".weight") and m.ndim == 2)


def test_the_plan_keeps_caches_and_records_in_block_ram_and_streams_every_block_matrix(tinystories):
    """TinyStories-33M's shape: the matrices all above the block RAM, the records and caches in it
    with the stamp its last word; a token streams each block matrix once, 28.3 MB, and the context
    is what the 1 MiB of block RAM leaves for the caches."""
    _, model = tinystories
    program = StreamedProgram(model, PlanningDriver(STREAMED), channel=None)
    window = STREAMED["weight_words"]
    assert all(base >= window + STREAM_LOCAL_WORDS for base in program.weight_base.values())
    assert max(program.record_word.values()) < program.dram_used <= STREAM_LOCAL_WORDS - 1 == program.stamp_word
    assert "head" not in program.matrices and program.host_ends
    assert len(program.stream) == block_matrix_bytes(model) == program.words_used["stream_words"] * DRAM_WORD_BYTES
    assert 28_000_000 < len(program.stream) < 28_500_000
    assert program.context == 112  # 4 layers x 2 caches x 768 bytes a token, in what the records leave


def test_a_model_whose_blocks_exceed_the_stream_gets_a_one_line_error(default):
    info = {**STREAMED, "stream_words": 1024, "dram_words": STREAM_LOCAL_WORDS + 1024}
    with pytest.raises(UserError, match="streamed words") as error:
        StreamedProgram(default, PlanningDriver(info), channel=None)
    assert "\n" not in str(error.value)


def test_the_default_model_streamed_equals_the_golden_model(default):
    """Every logit code of 80 tokens (past the window of 64), its weights streamed each token."""
    driver, close = connect_board("sim", board="nitefury", stream=True)
    try:
        transport = driver.link.transport
        program = StreamedProgram(default, driver, transport.weight_channel())
        model, golden = HostEndsModel(default, program, driver.link, "sim"), golden_model(default)
        for token in np.random.default_rng(7).integers(0, default.config.vocab_size, 80):
            np.testing.assert_array_equal(model.forward(np.array([[token]]))[0, -1],
                                          golden.forward(np.array([[token]]))[0, -1])
        channel = transport.weight_channel()
        assert channel.bytes == 80 * len(program.stream)  # each token's stream, once
        assert channel.transfers == 80 * -(-len(program.stream) // (1 << 20))
    finally:
        close()


@pytest.mark.slow
def test_tinystories_streamed_over_the_simulated_pcie_board_equals_emu(tinystories):
    """The tinystories-33m preset does not fit the NiteFury's block RAM, so ``sim --board nitefury``
    simulates its streamed design: every logit code of 2 tokens, then 3 greedy tokens, equal to
    the golden model's, with each token's 28.3 MB of block weights over the weight channel."""
    source, model = tinystories
    emu, sim = golden_model(model), open_board_model("sim", model, board="nitefury")
    try:
        assert type(sim) is HostEndsModel and sim.driver.device_info["stream_words"] == STREAMED_WORDS
        assert_tokens_are_emus(sim, emu, model, source.tokenizer)
        stats = sim.device_stats()
        assert stats["dma_weight_bytes"] == 5 * block_matrix_bytes(model)
    finally:
        sim.close()


def test_selftest_passes_on_the_streamed_design_and_keeps_off_the_stream(capsys):
    """neofpga selftest --device sim --board nitefury --stream: every check passes, the DRAM ones
    over the block RAM only (a read of the stream would wait for ever)."""
    from neofpga.host.cli import main

    assert main(["selftest", "--device", "sim", "--board", "nitefury", "--stream"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and f"{STREAM_LOCAL_WORDS:,} words (1.0 MiB)" in out
