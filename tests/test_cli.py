"""The neofpga command line, end to end, and its one-line errors for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

from neofpga.host.cli import main

PROMPT = "Once upon a time"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out), err


def test_generate_cpu_and_hf_print_identical_greedy_tokens(capsys, checkpoints):
    model = checkpoints["four-alternating"]
    cpu, cpu_err = run_json(capsys, "generate", PROMPT, "--model", model, "--device", "cpu", "--max-new-tokens", 40)
    hf, _ = run_json(capsys, "generate", PROMPT, "--model", model, "--device", "hf", "--max-new-tokens", 40)
    assert cpu["new_ids"] == hf["new_ids"] and cpu["text"] == hf["text"]
    assert cpu["prompt_ids"] == hf["prompt_ids"] and len(cpu["new_ids"]) <= 40
    assert cpu["tokens_per_second"] > 0
    assert cpu_err.startswith(PROMPT + cpu["text"])  # with --format json the story streams to stderr

    code, out, err = run(capsys, "generate", PROMPT, "--model", model, "--device", "cpu", "--max-new-tokens", 40)
    assert code == 0 and out == PROMPT + cpu["text"] + "\n"
    assert "tok/s" in err


def test_generate_sampling_is_seeded(capsys, checkpoints):
    model = checkpoints["two-global"]
    args = ["generate", PROMPT, "--model", model, "--temperature", "0.9", "--top-k", "40", "--top-p", "0.95",
            "--max-new-tokens", 30]
    a, _ = run_json(capsys, *args, "--seed", 1)
    b, _ = run_json(capsys, *args, "--seed", 1)
    c, _ = run_json(capsys, *args, "--seed", 2)
    assert a["new_ids"] == b["new_ids"] != c["new_ids"]


def test_generate_stops_at_the_context_with_a_note(capsys, checkpoints):
    model = checkpoints["two-global"]  # context 64
    prompt = "Tom and Lily ran to the big tree. " * 4  # a few tokens short of the context
    data, err = run_json(capsys, "generate", prompt, "--model", model, "--device", "cpu", "--max-new-tokens", 500)
    assert 50 < len(data["prompt_ids"]) < 64
    assert data["stop_reason"] == "context"
    assert len(data["prompt_ids"]) + len(data["new_ids"]) == 64
    assert "context limit of 64" in err


def test_score_on_cpu_and_hf(capsys, checkpoints, tmp_path):
    text = tmp_path / "story.txt"
    text.write_text("Once upon a time, there was a little cat named Tom. " * 12)  # longer than the context
    model = checkpoints["two-global"]
    cpu, _ = run_json(capsys, "score", text, "--model", model, "--device", "cpu")
    hf, _ = run_json(capsys, "score", text, "--model", model, "--device", "hf")
    assert cpu["n_tokens"] == hf["n_tokens"] == len(cpu["argmax_ids"]) > 64
    assert abs(cpu["mean_nll"] - hf["mean_nll"]) < 1e-5
    assert cpu["argmax_ids"] == hf["argmax_ids"]
    assert abs(cpu["perplexity"] - 2.718281828 ** cpu["mean_nll"]) < 1e-6 * cpu["perplexity"]
    code, out, _ = run(capsys, "score", text, "--model", model, "--device", "cpu")
    assert code == 0 and "perplexity" in out


def test_inspect_text_and_json(capsys, checkpoints):
    model = checkpoints["local-global-local"]
    code, out, _ = run(capsys, "inspect", "--model", model)
    assert code == 0
    for expected in ("GPTNeoForCausalLM", "(wte): Embedding", "(2): GPTNeoBlock(local attention)",
                     "(q_proj): Linear(in_features=48, out_features=48, bias=False)",
                     "(c_fc): Linear(in_features=48, out_features=192, bias=True)", "(ln_f): LayerNorm",
                     "(lm_head)", "tied to transformer.wte.weight", "weight: [192, 48] float32"):
        assert expected in out, expected
    data, _ = run_json(capsys, "inspect", "--model", model)
    tree = data["tree"]
    from transformers import GPTNeoForCausalLM
    total = sum(p.numel() for p in GPTNeoForCausalLM.from_pretrained(model).parameters())
    assert tree["parameter_count"] == total  # the tied head counts once, as in torch
    wte = tree["children"][0]["children"][0]["parameters"]["weight"]
    assert wte["shape"] == [data["config"]["vocab_size"], 48] and wte["dtype"] == "float32"
    assert {"mean", "std", "min", "max"} <= set(wte)


def test_compare_agrees_and_reports_divergence(capsys, checkpoints, tmp_path):
    model = checkpoints["four-alternating"]
    data, _ = run_json(capsys, "compare", PROMPT, "--model", model, "--devices", "cpu,hf")
    assert not data["diverged"] and data["devices"]["hf"]["max_logit_diff"] < 1e-4
    assert len(data["devices"]["hf"]["max_logit_diff_per_step"]) == len(data["new_ids"])
    code, out, _ = run(capsys, "compare", PROMPT, "--model", model, "--devices", "cpu,hf")
    assert code == 0 and "same" in out


def test_compare_exit_code_1_when_devices_diverge(capsys, checkpoints, monkeypatch):
    import neofpga.host.reference as reference

    original = reference.FloatOps.head
    # a broken head on the second cpu device: its greedy choice differs at every step
    monkeypatch.setattr(reference.FloatOps, "head", lambda self, x: -original(self, x))
    code, out, _ = run(capsys, "compare", PROMPT, "--model", checkpoints["one-local"], "--devices", "hf,cpu")
    assert code == 1 and "first diverges at new token 0" in out


def test_bench_reports_each_device_and_the_ratio(capsys, checkpoints):
    data, err = run_json(capsys, "bench", "--model", checkpoints["one-local"], "--devices", "cpu,hf",
                         "--tokens", 8, "--repeats", 1)
    assert [d["device"] for d in data["devices"]] == ["cpu", "hf"]
    assert all(d["tokens_per_second"] > 0 for d in data["devices"])
    ratio = data["devices"][0]["tokens_per_second"] / data["devices"][1]["tokens_per_second"]
    assert abs(data["ratios"]["cpu/hf"] - ratio) < 1e-9


def test_bench_text_names_each_back_end_and_the_ratio(capsys, checkpoints):
    code, out, err = run(capsys, "bench", "--model", checkpoints["one-local"], "--devices", "cpu,emu",
                         "--tokens", 4, "--repeats", 1)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("model: ") and "4 new tokens, median of 1" in lines[0]
    assert lines[1].split(":")[0].strip() == "cpu" and lines[2].split(":")[0].strip() == "emu"
    assert lines[3].strip().startswith("cpu/emu: ") and lines[3].endswith("x")


def test_bench_hw_renders_the_hardware_report(capsys, monkeypatch):
    """``bench --hw`` passes the array to the report and prints every figure of it."""
    from neofpga.host import hardware_bench

    asked = {}
    report = {"array": {"rows": 3, "cols": 5, "macs_per_cycle": 15},
              "matmul_runs": [{"m": 1, "k": 64, "n": 192, "cycles": 900, "formula_cycles": 900, "utilisation": 0.91}],
              "formula_max_error_cycles": 0,
              "simulator": {"free_running_cycles_per_second": 2e6, "cycles_per_second_with_a_python_check_every_cycle": 1e4},
              "models": {"default model": {"decode": {"matmul_cycles": 20730, "macs": 311296, "utilisation": 0.104}}},
              "ecp5_85f": {"requantizer": {"luts": 1, "ffs": 2, "mult18x18d": 3, "dp16kd": 4, "fmax_mhz": 150.0}}}

    def fake(rows, cols, synthesis, log):
        asked.update(rows=rows, cols=cols, synthesis=synthesis)
        return report

    monkeypatch.setattr(hardware_bench, "hardware_report", fake)
    code, out, err = run(capsys, "bench", "--hw", "--array", "3x5", "--no-synthesis")
    assert code == 0, err
    assert asked == {"rows": 3, "cols": 5, "synthesis": False}
    assert out.splitlines()[0] == "systolic array 3x5: 15 MACs a cycle"
    assert "M=1    K=64    N=192       900 cycles (900), utilisation  91.0 %" in out
    assert "default model, decode: 20,730 matmul cycles for 311,296 MACs, utilisation 10.4 %" in out
    assert "ECP5-85F requantizer: 1 LUT4, 2 FF, 3 MULT18X18D, 4 DP16KD, Fmax 150.0 MHz" in out


def test_init_random_tiny_runs_on_both_devices(capsys, tmp_path):
    out = tmp_path / "tiny"
    code, text, _ = run(capsys, "init-random", "--preset", "tiny", out)
    assert code == 0 and "tiny" in text
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (out / name).exists()
    cpu, _ = run_json(capsys, "generate", PROMPT, "--model", out, "--device", "cpu", "--max-new-tokens", 20)
    hf, _ = run_json(capsys, "generate", PROMPT, "--model", out, "--device", "hf", "--max-new-tokens", 20)
    assert cpu["new_ids"] == hf["new_ids"]
    code, _, err = run(capsys, "init-random", "--preset", "tiny", out)
    assert code == 2 and "not empty" in err


def test_init_random_tinystories_preset_is_tinystories_33m(tinystories_random):
    config = json.loads((tinystories_random / "config.json").read_text())
    assert {k: config[k] for k in ("vocab_size", "max_position_embeddings", "hidden_size", "num_layers",
                                   "num_heads", "window_size", "layer_norm_epsilon", "bos_token_id",
                                   "eos_token_id", "activation_function")} == dict(
        vocab_size=50257, max_position_embeddings=2048, hidden_size=768, num_layers=4, num_heads=16,
        window_size=256, layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256,
        activation_function="gelu_new")
    assert config["attention_types"] == [[["global", "local"], 2]]
    from neofpga.host.model import load_checkpoint
    tokenizer = load_checkpoint(tinystories_random).tokenizer
    assert tokenizer.vocab_size == 50257
    assert all(isinstance(tokenizer.decode([i]), str) for i in range(0, 50257, 97))
    assert tokenizer.decode([50256]) == "<|endoftext|>"


# -- bad input: one line on stderr, exit code 2, never a traceback ----------------------------------

def bad_inputs(checkpoints, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "gpt2"}')
    text = tmp_path / "t.txt"
    text.write_text("hi there")
    model = str(checkpoints["two-global"])
    return [
        (["generate", PROMPT, "--model", tmp_path / "missing"], "no such model folder"),
        (["generate", PROMPT, "--model", broken], "model_type is 'gpt2'"),
        (["generate", "x" * 5000, "--model", model], "longer than the model's context"),
        (["generate", PROMPT, "--model", model, "--device", "tpu"], "unknown device 'tpu'"),
        (["generate", PROMPT, "--model", model, "--max-new-tokens", "0"], "expected a positive integer"),
        (["generate", PROMPT, "--model", model, "--top-p", "2"], "--top-p must be in"),
        (["generate", PROMPT, "--model", model, "--temperature", "hot"], "invalid float value"),
        (["generate"], "the following arguments are required: PROMPT"),
        (["frobnicate"], "invalid choice"),
        (["score", tmp_path / "nope.txt", "--model", model], "cannot read text"),
        (["compare", PROMPT, "--model", model, "--devices", "cpu"], "at least 2"),
        (["bench", "--model", model, "--devices", "cpu,gpu"], "unknown device 'gpu'"),
        (["bench", "--model", model, "--devices", "cpu,emu", "--plot", tmp_path / "t.png"],
         "--plot draws a board's projection"),
        (["generate", PROMPT, "--model", model, "--top-k", "65", "--temperature", "1"], "at most 64 candidates"),
        (["generate", PROMPT, "--model", model, "--temperature", "inf"], "--temperature must be >= 0 and finite"),
        (["bench", "--hw", "--plot", tmp_path / "t.png"], "bench --hw has none to draw"),
        (["bench", "--model", model, "--devices", "sim", "--plot", tmp_path], "not a file in an existing folder"),
        (["bench", "--model", model, "--devices", "sim", "--plot", tmp_path / "no" / "t.png"],
         "not a file in an existing folder"),
        (["generate", PROMPT, "--model", model, "--seed", "-3", "--temperature", "1"], "--seed must be in"),
        (["init-random", "--preset", "huge", tmp_path / "x"], "unknown preset 'huge'"),
        (["inspect", "--model", model, "--format", "xml"], "invalid choice: 'xml'"),
    ]


def test_bad_input_is_one_line_and_exit_2(capsys, checkpoints, tmp_path):
    for argv, message in bad_inputs(checkpoints, tmp_path):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own errors exit from inside parse_args
            code = e.code
        out, err = capsys.readouterr()
        assert code == 2, (argv, err)
        assert message in err, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def test_console_script_end_to_end(checkpoints, tmp_path):
    """The installed `neofpga` command, as a user runs it."""
    exe = Path(sys.executable).with_name("neofpga")
    model = checkpoints["one-local"]
    done = subprocess.run([exe, "generate", PROMPT, "--model", model, "--max-new-tokens", "5", "--format", "json"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["new_ids"]) <= 5
    done = subprocess.run([exe, "generate", PROMPT, "--model", tmp_path / "missing"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
