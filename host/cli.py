"""The ``neofpga`` command line."""

import argparse
import json
import sys
from pathlib import Path

from ..contract.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (and exit code 2) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _backend(text):
    """argparse type of ``--device``: parsed once, here."""
    from .backends import parse_backend
    try:
        return parse_backend(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _backends(at_least):
    """argparse type of ``--devices``: a list of back ends, at least ``at_least``."""
    def parse(text):
        from .backends import parse_backends
        try:
            return parse_backends(text, at_least)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def _err(text="", end="\n"):
    print(text, end=end, file=sys.stderr, flush=True)


def _print_json(obj):
    print(json.dumps(obj, indent=2))


def _read_text(path):
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read text ({e.strerror if isinstance(e, OSError) else e})") from None


def _load(args):
    from .backends import load_source
    return load_source(args.model)


def _open_models(devices, source, args):
    """Open every device, closing those already open if one fails."""
    from .backends import open_model

    models = []
    try:
        for device in devices:
            models.append(open_model(device, source, args.residency, args.trace, args.uart, args.board,
                                     per_op=getattr(args, "per_op", True), pcie=args.pcie))
    except BaseException:
        for model in models:
            model.close()
        raise
    return models


def cmd_generate(args):
    from .backends import open_model
    from .generation import generate, prompt_ids, render_summary
    from .sampling import Sampler

    sampler = Sampler(args.temperature, args.top_k, args.top_p, args.seed)
    if args.device.integer:
        sampler.check_integer()
    source = _load(args)
    ids = prompt_ids(source.tokenizer, source.config, args.prompt)
    if args.device.integer:  # the device's sampler refuses what it cannot follow before a board starts
        sampler.integer_chooser(source.quantized().scales["logits"])
    model = open_model(args.device, source, args.residency, args.trace, args.uart, args.board, args.per_op,
                       pcie=args.pcie)
    out = sys.stdout if args.format == "text" else sys.stderr

    def write(text):
        out.write(text)
        out.flush()

    write(args.prompt)
    limit = args.max_new_tokens or source.config.max_position_embeddings
    try:
        result = generate(model, source.tokenizer, ids, sampler, limit, source.eos_id, write)
        stats = model.device_stats() if hasattr(model, "device_stats") else {}
    finally:
        model.close()
    write("\n")
    if result.stop_reason == "context":
        _err(f"note: stopped at the context limit of "
             f"{getattr(model, 'context', source.config.max_position_embeddings)} tokens")
    if args.format == "json":
        _print_json({"device": str(args.device), "prompt": args.prompt, "prompt_ids": result.prompt_ids,
                     "new_ids": result.new_ids, "text": result.text, "stop_reason": result.stop_reason,
                     "prefill_seconds": result.prefill_seconds, "decode_seconds": result.decode_seconds,
                     "tokens_per_second": result.tokens_per_second, **stats})
    else:
        _err(render_summary(args.device, result, stats))


def cmd_score(args):
    from .backends import open_model
    from .scoring import render_score, score

    text = _read_text(args.file)
    source = _load(args)
    model = open_model(args.device, source, args.residency, args.trace, args.uart, args.board, args.per_op,
                       pcie=args.pcie)
    try:
        result = score(model, source.tokenizer.encode(text))
    finally:
        model.close()
    if args.format == "json":
        _print_json({"device": str(args.device), "n_tokens": result.n_tokens, "mean_nll": result.mean_nll,
                     "perplexity": result.perplexity, "argmax_ids": result.argmax_ids})
    else:
        print(render_score(args.device, result))


def cmd_inspect(args):
    source = _load(args)
    if source.checkpoint is None:
        from .image_report import image_json, image_text
        if args.format == "json":
            _print_json(image_json(source.image))
        else:
            print(image_text(source.image))
        return
    from .model.tree import module_tree, render_json, render_text

    checkpoint = source.checkpoint
    tree = module_tree(checkpoint.config)
    if args.format == "json":
        _print_json({"source": checkpoint.source, "config": checkpoint.config.to_dict(),
                     "tree": render_json(tree, checkpoint.weights)})
    else:
        print(f"# {checkpoint.source}")
        print(render_text(tree, checkpoint.weights))


def cmd_compare(args):
    from .comparison import compare_backends, render_comparison
    from .generation import prompt_ids

    source = _load(args)
    ids = prompt_ids(source.tokenizer, source.config, args.prompt)
    models = _open_models(args.devices, source, args)
    try:
        report = compare_backends(models, source.tokenizer, ids, args.max_new_tokens, source.eos_id)
    finally:
        for model in models:
            model.close()
    diverged = any(d["first_divergence"] or d.get("first_op_difference") for d in report["devices"].values())
    if args.format == "json":
        _print_json({"prompt": args.prompt, "prompt_ids": ids, **report, "diverged": diverged})
    else:
        print(render_comparison(report, args.prompt))
    return 1 if diverged else 0


def _array_shape(text):
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWSxCOLS like 12x12, got {text!r}") from None
    if not (1 <= rows <= 32 and 1 <= cols <= 32):
        raise argparse.ArgumentTypeError(f"array sides must be 1 to 32, got {text!r}")
    return rows, cols


def cmd_bench_hardware(args):
    from .hardware_bench import hardware_report, render_hardware_report

    report = hardware_report(*args.array, synthesis=not args.no_synthesis, log=_err)
    if args.format == "json":
        _print_json(report)
    else:
        print(render_hardware_report(report))


def cmd_bench(args):
    from .benchmark import bench_backends, render_bench
    from .generation import prompt_ids

    if args.hw:
        if args.plot is not None:
            raise UserError("--plot draws a board back end's projection; bench --hw has none to draw")
        return cmd_bench_hardware(args)
    if args.tokens < 2:
        raise UserError("--tokens must be at least 2")
    if args.plot is not None:
        if not any(device.is_board for device in args.devices):
            raise UserError("--plot draws a board's projection: put a board back end in --devices (sim, "
                            "sim:HOST:PORT or serial:PORT)")
        plot = Path(args.plot)
        if plot.is_dir() or not plot.parent.resolve().is_dir():
            raise UserError(f"--plot {plot}: not a file in an existing folder")
    source = _load(args)
    ids = prompt_ids(source.tokenizer, source.config, args.prompt)
    if len(ids) + args.tokens > source.config.max_position_embeddings:
        raise UserError(f"prompt plus --tokens exceed the context of {source.config.max_position_embeddings}")
    models = _open_models(args.devices, source, args)
    try:
        results, ratios = bench_backends(models, source.tokenizer, ids, args.tokens, args.repeats, log=_err)
    finally:
        for model in models:
            model.close()
    if args.plot is not None:
        from .bench_plot import plot_token_time
        board = next(entry for entry in results if "projected" in entry)
        design = f" ({args.board} design)" if args.board else ""
        plot_token_time(board, args.plot, f"{source.name} on {board['device']}{design}, per decoded token")
        _err(f"wrote {args.plot}")
    if args.format == "json":
        _print_json({"model": source.name, "devices": results, "ratios": ratios})
    else:
        print(render_bench({"model": source.name, "prompt_tokens": len(ids), "new_tokens": args.tokens,
                            "repeats": args.repeats, "devices": results, "ratios": ratios}))


def cmd_quantize(args):
    from .image import save_image
    from .quantize import quantize_checkpoint

    source = _load(args)
    if source.checkpoint is None:
        raise UserError(f"{source.name} is already a quantized image")
    if args.calibration is not None:
        text = _read_text(args.calibration)
    else:
        from .training.corpus import calibration_text
        text = calibration_text()
    ids = source.tokenizer.encode(text)
    if not ids:
        raise UserError("the calibration text is empty")
    model = quantize_checkpoint(source.checkpoint, ids, source=source.name)
    save_image(model, args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size:,} bytes; calibrated on {len(ids)} tokens)")


def cmd_accuracy(args):
    from .accuracy import measure_accuracy, render_accuracy

    source = _load(args)
    if args.text is not None:
        text = _read_text(args.text)
    else:
        from .training.corpus import held_out_text
        text = held_out_text(args.stories)
    report = measure_accuracy(source, source.tokenizer.encode(text))
    if args.format == "json":
        _print_json(report)
    else:
        print(render_accuracy(report))


def cmd_init_random(args):
    from .model.random_init import init_random

    config = init_random(args.preset, args.out, args.seed)
    print(f"wrote a random {args.preset} checkpoint ({config.num_layers} layers, hidden {config.hidden_size}, "
          f"vocab {config.vocab_size}) to {args.out}")


def cmd_train(args):
    from dataclasses import replace

    from .training.train import TrainingPlan, train_default_model

    plan = TrainingPlan(seed=args.seed)
    if args.steps is not None:
        plan = replace(plan, steps=args.steps, eval_every=min(plan.eval_every, args.steps))
    if args.stories is not None:
        plan = replace(plan, train_stories=args.stories)
    train_default_model(args.out, plan=plan, log=_err)


def cmd_sim_server(args):
    import signal
    import time

    from ..contract.design import simulated_parameters
    from ..sim.simulated_board import start_simulated_board

    if not 0 <= args.port < 65536:
        raise UserError(f"--port must be 0..65535, not {args.port}")
    parameters = simulated_parameters(args.board, args.uart, pcie=args.xdma is not None)
    if parameters.get("pcie_beat_bytes") and args.xdma is None:
        raise UserError(f"{args.board} is a PCIe board: give --xdma PREFIX, where its XDMA devices go")
    if args.xdma is not None and not Path(args.xdma).parent.is_dir():
        raise UserError(f"--xdma {args.xdma}: the folder {Path(args.xdma).parent} does not exist")
    board = start_simulated_board(parameters, port=args.port, trace=args.trace, log=_err, xdma=args.xdma)
    # Ctrl-C and SIGTERM only note the request: a KeyboardInterrupt raised inside Popen.poll() can
    # leave its lock held, and closing the board then waits for it forever.
    stopped = []
    for request in (signal.SIGINT, signal.SIGTERM):
        signal.signal(request, lambda number, frame: stopped.append(number))
    if board.xdma:
        print(f"simulated PCIe board at {board.xdma}_h2c_0 and _c2h_0: --device pcie:{board.xdma} "
              f"(Ctrl-C stops it)", flush=True)
    else:
        print(f"simulated board on 127.0.0.1:{board.port}: --device sim:127.0.0.1:{board.port} "
              f"(Ctrl-C stops it)", flush=True)
    while not stopped and board.process.poll() is None:
        time.sleep(0.2)
    if not stopped:
        raise UserError(f"the simulated board stopped: {board.close().strip()}")
    _err(board.close().strip())


def cmd_build(args):
    from ..boards.build import build_board, utilisation

    rows, cols = args.array if args.array else (None, None)
    if args.freq is not None and not 10 <= args.freq <= 400:
        raise UserError(f"--freq must be 10..400 MHz, not {args.freq}")
    result = build_board(args.board, build_dir=args.build_dir, rows=rows, cols=cols, freq_mhz=args.freq,
                         baud=args.baud, seed=args.seed, placer=args.placer, dram=args.dram, stream=args.stream,
                         log=_err, pack_only=args.pack_only)
    if args.format == "json":
        _print_json(result)
    elif args.pack_only:
        print(utilisation(result))
    else:
        print(result["bitstream"])
    return 0


def cmd_flash(args):
    from ..boards.flash import flash_board

    output = flash_board(args.board, args.bitstream, args.persist, args.dram, args.stream)
    _err(output.strip())
    return 0


def cmd_selftest(args):
    from .board_backend import connect_board
    from .selftest import run_selftest

    if args.dram and (args.device.kind != "sim" or args.board is None):
        raise UserError("--dram takes --device sim and a --board: it simulates that board's DRAM design")
    if args.stream and (args.device.kind != "sim" or args.board is None):
        raise UserError("--stream takes --device sim and a PCIe --board: it simulates that board's streamed design")
    driver, close = connect_board(args.device, uart=args.uart, board=args.board, dram=args.dram, pcie=args.pcie,
                                  stream=args.stream)
    baud = args.device.baud if args.device.kind == "serial" else None

    def log(check):
        if args.format == "text":
            print(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.detail}", flush=True)

    try:
        checks, figures = run_selftest(driver, baud=baud, full=args.full, seed=args.seed, log=log)
    finally:
        close()
    failed = [check.name for check in checks if not check.passed]
    if args.format == "json":
        _print_json({"passed": not failed, "checks": [vars(check) for check in checks], **figures})
    elif failed:
        _err(f"selftest failed: {', '.join(failed)}")
    return 1 if failed else 0


def cmd_doctor(args):
    from .doctor import REQUIRED_FOR_SIMULATION, render_checks, run_checks

    checks = run_checks()
    if args.format == "json":
        _print_json([{"name": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks])
    else:
        print(render_checks(checks))
    missing = [c.name for c in checks if not c.ok and c.name in REQUIRED_FOR_SIMULATION]
    if missing:
        _err(f"the simulations cannot run without: {', '.join(missing)}")
        return 1
    return 0


def build_parser():
    from ..contract.design import ARRAY_COLS, ARRAY_ROWS, BOARD_DESIGNS, DEFAULT_BAUD
    from .backends import BACKENDS, DEFAULT_BACKEND

    parser = _Parser(prog="neofpga", description="GPT-Neo on an FPGA, checked against a CPU reference.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=func)
        return p

    def model_option(p):
        p.add_argument("--model", help="a Hugging Face GPT-Neo folder, a hub id or a quantized image "
                       "(default: the shipped story model)")

    def board_options(p):
        p.add_argument("--residency", choices=["auto", "resident", "stream"], default="auto",
                       help="board devices: weights uploaded once (resident) or before every use (stream); "
                       "auto: resident where they fit")
        p.add_argument("--trace", metavar="FILE", help="--device sim: write an FST waveform of the run")
        p.add_argument("--uart", action="store_true", help="--device sim: the simulated board with the UART PHY "
                       "in the loop (4 clock cycles a bit), as on a real board")
        pcie_option(p)
        sim_board_option(p)

    def pcie_option(p):
        p.add_argument("--pcie", action="store_true", help="--device sim: the simulated board behind its PCIe "
                       "port, driven through XDMA-shaped devices with the DMA timing of docs/PCIE.md, as a "
                       "NiteFury is (a PCIe board's simulation always is)")

    def per_op_option(p):
        p.add_argument("--per-op", action="store_true", help="board devices: send each op as its own command "
                       "instead of running the model's program on the device (one TOKEN a token) where it can")

    def sim_board_option(p):
        p.add_argument("--board", metavar="NAME", help="--device sim: simulate that board's accelerator (its "
                       "memories and clock) instead of the simulated board's 80 MB one")

    def device_option(p):
        p.add_argument("--device", type=_backend, default=_backend(DEFAULT_BACKEND),
                       help=f"the back end the model runs on: {', '.join(BACKENDS)} (default {DEFAULT_BACKEND})")
        board_options(p)
        per_op_option(p)

    def format_option(p):
        p.add_argument("--format", choices=["text", "json"], default="text")

    p = command("generate", cmd_generate, "continue a prompt, streaming the text as it is produced")
    p.add_argument("prompt", metavar="PROMPT")
    model_option(p)
    device_option(p)
    p.add_argument("--max-new-tokens", type=_positive_int,
                   help="stop after this many new tokens (default: at the end of the story or the context)")
    p.add_argument("--temperature", type=float, help="sample at this temperature (0 or unset: greedy)")
    p.add_argument("--top-k", type=_positive_int, help="sample from the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample from the smallest set holding this probability mass")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling (default 0)")
    format_option(p)

    p = command("score", cmd_score, "teacher-forced negative log-likelihood and perplexity of a text file")
    p.add_argument("file", metavar="FILE")
    model_option(p)
    device_option(p)
    format_option(p)

    p = command("inspect", cmd_inspect, "print the model's module tree (or image contents) with shapes, "
                "dtypes, scales and parameter counts")
    model_option(p)
    format_option(p)

    p = command("compare", cmd_compare, "run back ends on one prompt; report logit differences and the first "
                "diverging token (exit 1 if they diverge)")
    p.add_argument("prompt", metavar="PROMPT")
    model_option(p)
    p.add_argument("--devices", type=_backends(2), default="cpu,emu",
                   help="comma-separated back ends, the first is the baseline")
    p.add_argument("--max-new-tokens", type=_positive_int, default=32)
    board_options(p)
    format_option(p)

    p = command("bench", cmd_bench, "tokens per second of back ends in one run, and their ratios")
    model_option(p)
    p.add_argument("--devices", type=_backends(1), default="cpu,emu", help="comma-separated back ends")
    board_options(p)
    p.add_argument("--prompt", default="Once upon a time")
    p.add_argument("--tokens", type=_positive_int, default=64, help="new tokens per run (default 64)")
    p.add_argument("--repeats", type=_positive_int, default=3, help="runs per device; the median counts")
    p.add_argument("--hw", action="store_true", help="measure the gateware instead: cycles and utilisation in "
                   "Verilator, resources and Fmax on an ECP5-85F (place and route takes many minutes)")
    p.add_argument("--array", type=_array_shape, default=(ARRAY_ROWS, ARRAY_COLS),
                   help=f"with --hw: the array, ROWSxCOLS (default {ARRAY_ROWS}x{ARRAY_COLS}, the simulated board's)")
    p.add_argument("--no-synthesis", action="store_true", help="with --hw: simulation figures only")
    per_op_option(p)
    p.add_argument("--plot", metavar="FILE.png", help="draw where a decoded token's time goes on the first board "
                   "back end, and the ceilings on its tok/s")
    format_option(p)

    p = command("quantize", cmd_quantize, "write the quantized model image (int8 weights, scales, requantizer "
                "constants, tables, config, tokenizer) of a checkpoint")
    model_option(p)
    p.add_argument("--out", required=True, help="the image file to write")
    p.add_argument("--calibration", metavar="FILE", help="calibration text (default: story text in the "
                   "default model's training style)")

    p = command("accuracy", cmd_accuracy, "the integer golden model against the float reference: top-1 "
                "agreement, perplexities, logit error, per-layer error")
    model_option(p)
    p.add_argument("--text", metavar="FILE", help="held-out text (default: the default model's validation stories)")
    p.add_argument("--stories", type=_positive_int, default=100, help="validation stories when no --text")
    format_option(p)

    p = command("sim-server", cmd_sim_server, "run the simulated board on a TCP port until interrupted "
                "(connect with --device sim:HOST:PORT)")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    p.add_argument("--trace", metavar="FILE", help="write an FST waveform of everything it runs")
    p.add_argument("--uart", action="store_true", help="the UART PHY in the loop (4 clock cycles a bit)")
    p.add_argument("--xdma", metavar="PREFIX", help="the board behind its PCIe port: XDMA-shaped devices "
                   "PREFIX_h2c_0 and PREFIX_c2h_0 (named pipes) instead of a TCP port; connect with "
                   "--device pcie:PREFIX")
    sim_board_option(p)

    p = command("build", cmd_build, "build a board's bitstream with Yosys, nextpnr and ecppack (the YoWASP "
                "tools unless installed), the NiteFury's with Vivado (its project written, and run where Vivado "
                "is): utilisation and Fmax, an error if timing is not met")
    p.add_argument("--board", required=True, choices=list(BOARD_DESIGNS), metavar="BOARD",
                   help=f"one of {', '.join(BOARD_DESIGNS)}")
    p.add_argument("--array", type=_array_shape, help="the systolic array, ROWSxCOLS (default: the board's)")
    p.add_argument("--freq", type=float, metavar="MHZ", help="system clock (default: the board's)")
    p.add_argument("--baud", type=_positive_int, default=DEFAULT_BAUD, help=f"UART rate (default {DEFAULT_BAUD})")
    p.add_argument("--seed", type=int, help="nextpnr's placement seed (default: the board's)")
    p.add_argument("--placer", help="nextpnr's placer: static or heap (default: the board's; heap's placement of "
                   "the ULX3S-85F does not route)")
    p.add_argument("--dram", action="store_true", help="the board's DRAM design: the weights in its DRAM, "
                   "through LiteDRAM's controller (ulx3s-85f, ecpix5-85)")
    p.add_argument("--stream", action="store_true", help="a PCIe board's streamed design (nitefury): "
                   "TinyStories-33M's blocks, their weights pushed over PCIe every token")
    p.add_argument("--build-dir", metavar="DIR", help="where the files go (default build/BOARD, with --dram "
                   "build/BOARD-dram, with --stream build/BOARD-stream)")
    p.add_argument("--pack-only", action="store_true", help="synthesis and packing only: the cells the design "
                   "takes, in minutes (an ECP5 board's; no bitstream, no timing)")
    format_option(p)

    p = command("flash", cmd_flash, "program a board with its bitstream through openFPGALoader")
    p.add_argument("--board", required=True, choices=list(BOARD_DESIGNS), metavar="BOARD",
                   help=f"one of {', '.join(BOARD_DESIGNS)}")
    p.add_argument("--bitstream", metavar="FILE", help="default: the one neofpga build made (build/BOARD/)")
    p.add_argument("--persist", action="store_true", help="write the SPI flash (kept at power-off), not SRAM")
    p.add_argument("--dram", action="store_true", help="the DRAM design's bitstream (neofpga build --dram's)")
    p.add_argument("--stream", action="store_true", help="the streamed design's bitstream (neofpga build "
                   "--stream's)")

    p = command("selftest", cmd_selftest, "check a board: INFO, memory patterns, a matmul, softmax and GELU "
                "against the golden model, and the link's throughput (exit 1 on a failure)")
    p.add_argument("--device", type=_backend, required=True, help="serial:PORT[@BAUD], pcie:DEVICE, sim or "
                   "sim:HOST:PORT")
    p.add_argument("--uart", action="store_true", help="--device sim: the UART PHY in the loop")
    pcie_option(p)
    sim_board_option(p)
    p.add_argument("--dram", action="store_true", help="--device sim with --board: the board's DRAM design, its "
                   "timed DRAM model behind it")
    p.add_argument("--stream", action="store_true", help="--device sim with a PCIe --board (nitefury): its "
                   "streamed design, the weight stream behind its block RAM")
    p.add_argument("--full", action="store_true", help="write and read every word of every bank")
    p.add_argument("--seed", type=int, default=0, help="seed of the random data (default 0)")
    format_option(p)

    p = command("doctor", cmd_doctor, "check what this machine has of what neofpga needs (compilers, "
                "Verilator, the FPGA tools, openFPGALoader, serial ports) and say how to fill each gap")
    format_option(p)

    p = command("init-random", cmd_init_random, "write a random-weight GPT-Neo checkpoint folder")
    p.add_argument("--preset", required=True, help="tinystories-33m or tiny")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--seed", type=int, default=0)

    p = command("train", cmd_train, "rebuild the shipped story model: corpus, tokenizer and training "
                "(needs neofpga[hf]; about 25 minutes on 2 cores)")
    p.add_argument("out", metavar="OUT", help="folder to write the Hugging Face checkpoint to")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=_positive_int, help="training steps (default: the shipped model's)")
    p.add_argument("--stories", type=_positive_int, help="training stories (default: the shipped model's)")
    return parser


def main(argv=None):
    """Entry point of the ``neofpga`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except UserError as e:
        _err(f"neofpga {args.command}: error: {e}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
