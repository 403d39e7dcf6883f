"""The gateware on the simulated board, end to end: ``--device sim`` tells the golden model's stories.

The board is the simulated board's design (contract/design.py); its first build takes a few minutes and is
cached.
"""

import json
import re
import socket
import subprocess
import sys

import pytest
from neofpga.host.cli import main

PROMPTS = ["Once upon a time", "One day, a little dog", "Long ago, there was"]


def run_json(capsys, *argv):
    code = main([str(a) for a in argv] + ["--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


@pytest.mark.parametrize("prompt, options, tokens", [
    (PROMPTS[0], [], 24),  # the program: one GENERATE
    (PROMPTS[1], ["--temperature", "0.9", "--top-k", "40", "--seed", "5"], 24),
    (PROMPTS[0], ["--per-op"], 24),  # each op a command, the weights resident
    (PROMPTS[2], ["--temperature", "1.1", "--seed", "2", "--residency", "stream"], 4),  # weights re-sent every token
])
def test_sim_generates_the_golden_models_tokens(capsys, prompt, options, tokens):
    sampling = [option for option in options if option not in ("--per-op", "--residency", "stream")]
    emu, _ = run_json(capsys, "generate", prompt, "--device", "emu", "--max-new-tokens", tokens, *sampling)
    sim, err = run_json(capsys, "generate", prompt, "--device", "sim", "--max-new-tokens", tokens, *options)
    assert sim["new_ids"] == emu["new_ids"] and sim["text"] == emu["text"]
    assert sim["device_cycles"] > sim["device_matmul_cycles"] > 0
    if options in ([], sampling):  # the whole token on the device: the ids come back, and nothing else
        assert sim["device_program_cycles"] > sim["device_matmul_cycles"] + sim["device_norm_cycles"] > 0
        assert sim["link_bytes_received"] < 40 * tokens + 1_000 and sim["link_commands"] < 10
    else:  # the prompt and every new token but the last went through the device op by op
        assert sim["device_program_cycles"] == 0
        assert sim["link_bytes_sent"] > (200_000 * tokens if "stream" in options else 1_000)
        assert sim["link_bytes_received"] > (tokens - 1) * 2 * 1024  # at least the int16 logits of every token
    assert "emu" not in err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sim_server_serves_the_board_to_later_commands(capsys):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "neofpga.host.cli", "sim-server", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert re.search(rf"--device sim:127\.0\.0\.1:{port}\b", line), line
        emu, _ = run_json(capsys, "generate", PROMPTS[1], "--device", "emu", "--max-new-tokens", 12)
        for _ in range(2):  # the board keeps running between commands; each upload starts afresh
            sim, _ = run_json(capsys, "generate", PROMPTS[1], "--device", f"sim:127.0.0.1:{port}",
                              "--max-new-tokens", 12)
            assert sim["new_ids"] == emu["new_ids"]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("argv, message", [
    (["--device", "sim:localhost"], "bad board device"),
    (["--device", "serial:"], "bad board device"),
    (["--device", "sim:127.0.0.1:1"], "cannot open"),
    (["--device", "serial:/dev/neofpga-no-such-port"], "cannot open"),
    (["--device", "emu", "--trace", "x.fst"], "--trace needs --device sim"),
    (["--device", "sim", "--residency", "sometimes"], "invalid choice"),
    (["--device", "emu", "--uart"], "--uart needs --device sim"),
])
def test_bad_board_arguments_are_one_line_errors(argv, message):
    done = subprocess.run([sys.executable, "-m", "neofpga.host.cli", "generate", "Once", *argv],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_the_uart_in_the_loop_carries_the_same_story(capsys):
    """Both PHYs of a real board's link, 8N1 at 4 cycles a bit, between the host and the accelerator."""
    emu, _ = run_json(capsys, "generate", PROMPTS[0], "--device", "emu", "--max-new-tokens", 4)
    sim, _ = run_json(capsys, "generate", PROMPTS[0], "--device", "sim", "--uart", "--max-new-tokens", 4)
    assert sim["new_ids"] == emu["new_ids"] and sim["link_resends"] == 0


def test_trace_reaches_the_simulated_board(tmp_path, capsys, monkeypatch):
    """generate --trace FILE starts the simulated board with its waveform in FILE (the board's
    trace itself: tests/test_board_process.py; a whole generation traced took 9 minutes here,
    beside another run)."""
    from neofpga.contract.errors import UserError

    started = []

    def start_simulated_board(parameters, **options):
        started.append(options["trace"])
        raise UserError("the board stops here")

    monkeypatch.setattr("neofpga.sim.simulated_board.start_simulated_board", start_simulated_board)
    trace = tmp_path / "run.fst"
    assert main(["generate", "Once", "--device", "sim", "--max-new-tokens", "2", "--trace", str(trace)]) == 2
    assert started == [str(trace)] and "the board stops here" in capsys.readouterr().err


@pytest.mark.slow
def test_one_tinystories_block_on_the_simulated_board_is_the_golden_models(tinystories_random):
    """Layer 0 of the tinystories-33m preset (TinyStories-33M's shape) on the gateware: a prefill and
    decodes past nothing but the first tokens; every integer the device returns is the golden model's."""
    import numpy as np
    import serial
    from neofpga.host.backends import load_source
    from neofpga.host.board_ops import BoardOps
    from neofpga.host.driver import AcceleratorDriver
    from neofpga.host.golden import GoldenOps
    from neofpga.host.link import Link
    from neofpga.host.quantize import quantize_checkpoint
    from neofpga.host.training.corpus import calibration_text
    from neofpga.contract.design import SIMULATED_BOARD
    from neofpga.sim.simulated_board import start_simulated_board

    source = load_source(tinystories_random)
    model = quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(1))[:64])
    golden = GoldenOps(model)
    golden.reset(1)
    rng = np.random.default_rng(1)
    with start_simulated_board(SIMULATED_BOARD) as board:
        link = Link(serial.serial_for_url(board.url, timeout=0.01), timeout=30)
        ops = BoardOps(model, AcceleratorDriver(link), "resident", layers=[0], head=False)
        ops.reset(1)
        for positions in (range(0, 5), range(5, 6), range(6, 7)):
            x = rng.integers(-2 ** 13, 2 ** 13, (1, len(positions), 768))
            assert np.array_equal(ops.attention(0, x, list(positions)), golden.attention(0, x, list(positions)))
            assert np.array_equal(ops.mlp(0, x), golden.mlp(0, x))
    assert board.cycles > 0


@pytest.mark.parametrize("per_op", [False, True])
def test_bench_projects_a_board_and_draws_where_a_token_goes(capsys, tmp_path, per_op):
    """bench on the simulated board: a decoded token's device cycles by kind of op (the program) or
    of product (op by op) add up to its device (or array) cycles, the projection adds up its parts,
    and --plot writes the PNG."""
    from neofpga.host.bench_plot import ceilings, token_time_parts

    plot = tmp_path / "token.png"
    data, err = run_json(capsys, "bench", "--devices", "sim", "--tokens", 3, "--repeats", 1, "--plot", plot,
                         *(["--per-op"] if per_op else []))
    (board,) = data["devices"]
    per, projected = board["per_decoded_token"], board["projected"]
    if per_op:
        by_kind = per["matmul_cycles_by_kind"]
        assert all(by_kind[kind] > 0 for kind in ("qkv", "scores + softmax", "P x V", "out_proj", "c_fc", "c_proj",
                                                  "head"))
        assert sum(by_kind.values()) == pytest.approx(per["device_matmul_cycles"])
        assert per["link_commands"] > 50
    else:
        by_kind = per["program_cycles_by_kind"]
        assert all(cycles > 0 for cycles in by_kind.values()) and set(by_kind) > {"products", "NORM", "SAMPLE"}
        assert sum(by_kind.values()) == pytest.approx(per["device_program_cycles"])
        assert per["link_commands"] == 0 and 0 < per["link_bytes_received"] < 40
    parts = token_time_parts(board)
    assert sum(seconds for _, seconds in parts) == pytest.approx(1 / projected["tokens_per_second"])
    limits = dict(ceilings(board))
    assert limits["projected"] == projected["tokens_per_second"] < min(
        value for label, value in limits.items() if label != "projected")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {plot}" in err
