"""Tokens per second of several back ends on the same model, prompt and token count."""

import statistics

from ..contract.design import DEFAULT_BAUD, board_design, boards_running
from ..contract.dram import BOARD_DRAMS, DRAM_WORD_BYTES
from ..contract.pcie import XDMA_GEN2_X4
from .board_ops import PRODUCT_KINDS
from .generation import generate
from .sampling import Sampler

__all__ = ["bench_backends", "per_decoded_token", "product_cycles", "projected_tokens_per_second", "dram_figures", "pcie_figures",
           "render_bench"]

ROUND_TRIP_SECONDS = 1e-3  # a command's answer waits for the USB serial chip's latency timer (1 ms at least)


def bench_backends(models, tokenizer, ids, new_tokens, repeats=3, log=None):
    """Greedy generation of exactly ``new_tokens`` (eos ignored) on each model; the median of ``repeats``.

    Returns one dict per model with decode and overall tok/s and the prefill time, and the speed
    ratio of every pair, in the order the models are given.
    """
    results = []
    for model in models:
        generate(model, tokenizer, ids, Sampler(), min(4, new_tokens), eos_id=None)  # warm-up
        runs = [generate(model, tokenizer, ids, Sampler(), new_tokens, eos_id=None) for _ in range(repeats)]
        decode_tps = statistics.median((len(r.new_ids) - 1) / r.decode_seconds for r in runs)
        entry = {
            "device": model.name,
            "new_tokens": new_tokens,
            "prompt_tokens": len(ids),
            "decode_tokens_per_second": decode_tps,
            "tokens_per_second": statistics.median(r.tokens_per_second for r in runs),
            "prefill_seconds": statistics.median(r.prefill_seconds for r in runs),
        }
        if hasattr(model, "device_stats"):
            entry["per_decoded_token"] = per = per_decoded_token(model, tokenizer, ids, new_tokens)
            info = model.driver.device_info
            entry["projected"] = projected_tokens_per_second(per, info["clock_hz"])
            entry["array"] = {"rows": info["rows"], "cols": info["cols"]}
            names, _ = boards_running(info)
            if "dma_h2c_bytes" in per:  # over PCIe: its DMA instead of the UART
                entry["pcie"] = pcie_figures(per, info["clock_hz"], XDMA_GEN2_X4)
                entry["projected"] = entry["pcie"]["projected"]
            elif info.get("dram_words") and names:
                entry["dram"] = dram_figures(per, info["clock_hz"], BOARD_DRAMS[board_design(names[0]).dram])
        results.append(entry)
        if log:
            log(f"{model.name}: {entry['tokens_per_second']:.1f} tok/s "
                f"(decode {decode_tps:.1f} tok/s, prefill {entry['prefill_seconds'] * 1e3:.1f} ms)")
    ratios = {f"{a['device']}/{b['device']}": a["tokens_per_second"] / b["tokens_per_second"]
              for i, a in enumerate(results) for b in results[i + 1:]}
    return results, ratios


PROGRAM_KINDS = {"products": "device_matmul_cycles", "EMBED": "device_embed_cycles", "NORM": "device_norm_cycles",
                 "SAMPLE": "device_sample_cycles"}
"""A program's kinds of op and the device counters of their cycles; the rest of the program's
cycles are its ops' fetch, relocation and checks."""


def per_decoded_token(model, tokenizer, ids, new_tokens):
    """A board model's link commands, bytes each way and device cycles per decoded token (the
    difference between generating ``new_tokens`` and generating 1, over ``new_tokens - 1``), and
    its cycles by kind: of product (``matmul_cycles_by_kind``, from :func:`product_cycles`) where the
    host sends each op, of op (``program_cycles_by_kind``) where the device runs the program."""
    def stats(tokens):
        before = model.device_stats()
        generate(model, tokenizer, ids, Sampler(), tokens, eos_id=None)
        after = model.device_stats()
        return {name: after[name] - before[name] for name in after}

    one, many = stats(1), stats(new_tokens)
    per_token = {name: (many[name] - one[name]) / (new_tokens - 1) for name in many}
    if per_token.get("device_program_cycles"):  # the program: the device's counters by kind of op
        kinds = {**PROGRAM_KINDS, **({"COPY": "device_copy_cycles"} if "device_copy_cycles" in per_token else {})}
        by_kind = {kind: per_token[counter] for kind, counter in kinds.items()}
        by_kind["fetch, relocation, checks"] = per_token["device_program_cycles"] - sum(by_kind.values())
        per_token["program_cycles_by_kind"] = by_kind
        return per_token
    one, many = product_cycles(model, tokenizer, ids, 1), product_cycles(model, tokenizer, ids, new_tokens)
    per_token["matmul_cycles_by_kind"] = {kind: (many[kind] - one[kind]) / (new_tokens - 1) for kind in many}
    return per_token


def product_cycles(model, tokenizer, ids, tokens):
    """The array cycles of a greedy generation of ``tokens`` on a board model, by kind of product
    (board_ops.PRODUCT_KINDS): the device's counters are read after every product. The reads are
    commands of their own, so this run's link figures are not the token's; its cycles are."""
    by_kind = dict.fromkeys(PRODUCT_KINDS, 0)
    last = model.driver.counters()["matmul_cycles"]

    def heard(kind):
        nonlocal last
        now = model.driver.counters()["matmul_cycles"]
        by_kind[kind] += now - last
        last = now

    model.ops.on_product = heard
    try:
        generate(model, tokenizer, ids, Sampler(), tokens, eos_id=None)
    finally:
        model.ops.on_product = None
    return by_kind


def projected_tokens_per_second(per_token, clock_hz, baud=DEFAULT_BAUD, round_trip_seconds=ROUND_TRIP_SECONDS):
    """Decode speed on a real board from the per-token figures of a simulated one: a round trip per
    command, 10 bits a byte each way on the UART, and the device's cycles at ``clock_hz``: every
    cycle of the program where the device runs it, else the array's (the host computes the rest)."""
    program = "program_cycles_by_kind" in per_token
    device_cycles = per_token["device_program_cycles" if program else "device_matmul_cycles"]
    seconds = {"round_trips": per_token["link_commands"] * round_trip_seconds,
               "uart": (per_token["link_bytes_sent"] + per_token["link_bytes_received"]) * 10 / baud,
               "device": device_cycles / clock_hz}
    by_kind = per_token.get("program_cycles_by_kind" if program else "matmul_cycles_by_kind", {})
    return {"tokens_per_second": 1 / sum(seconds.values()), "seconds_per_token": seconds,
            "device_seconds_by_kind": {kind: cycles / clock_hz for kind, cycles in by_kind.items()},
            "device": "the program" if program else "the array", "clock_hz": clock_hz, "baud": baud,
            "round_trip_seconds": round_trip_seconds}


def dram_figures(per_token, clock_hz, dram):
    """A decoded token's DRAM traffic against ``dram`` (a :class:`~neofpga.contract.dram.Dram`):
    the bytes moved, their share of what the DRAM could move in the token's device time (the
    program's cycles at ``clock_hz``), and the roofline: tok/s if a token took only its bytes at
    the DRAM's peak."""
    moved = (per_token["device_dram_reads"] + per_token["device_dram_writes"]) * DRAM_WORD_BYTES
    seconds = per_token["device_program_cycles"] / clock_hz
    peak = dram.peak_bytes_per_second
    return {"module": dram.module, "bytes_read": per_token["device_dram_reads"] * DRAM_WORD_BYTES,
            "bytes_written": per_token["device_dram_writes"] * DRAM_WORD_BYTES, "peak_bytes_per_second": peak,
            "utilisation": moved / (peak * seconds), "roofline_tokens_per_second": peak / moved}


def pcie_figures(per_token, clock_hz, dma):
    """A decoded token over PCIe DMA with ``dma``'s figures (a :class:`~neofpga.contract.pcie.DmaModel`):
    its bytes and DMA transfers each way, the weight stream's share, the projected tok/s, and the
    roofline (tok/s if a token took only its H2C bytes at the link's bandwidth; None where a
    token sends the card nothing, as in a GENERATE).

    The projection adds the device's program cycles at ``clock_hz`` (which include the waits for
    the weight stream: the simulated board's DMA model delivers it), each command's transfers at
    the DMA model's cost, and the host's time on the model's ends, measured here."""
    commands_h2c = per_token["dma_h2c_transfers"] - per_token["dma_weight_transfers"]
    command_bytes = per_token["dma_h2c_bytes"] - per_token["dma_weight_bytes"]
    seconds = {"device": per_token["device_program_cycles"] / clock_hz,
               "commands": (commands_h2c + per_token["dma_c2h_transfers"]) * dma.latency
               + command_bytes / dma.h2c_bytes_per_second + per_token["dma_c2h_bytes"] / dma.c2h_bytes_per_second,
               "host": per_token.get("host_seconds", 0.0)}
    by_kind = per_token.get("program_cycles_by_kind", {})
    projected = {"tokens_per_second": 1 / sum(seconds.values()), "seconds_per_token": seconds,
                 "device_seconds_by_kind": {kind: cycles / clock_hz for kind, cycles in by_kind.items()},
                 "device": "the program", "clock_hz": clock_hz, "dma_latency_seconds": dma.latency}
    return {"h2c_bytes": per_token["dma_h2c_bytes"], "h2c_transfers": per_token["dma_h2c_transfers"],
            "c2h_bytes": per_token["dma_c2h_bytes"], "c2h_transfers": per_token["dma_c2h_transfers"],
            "weight_bytes": per_token["dma_weight_bytes"], "weight_transfers": per_token["dma_weight_transfers"],
            "h2c_bytes_per_second": dma.h2c_bytes_per_second,
            "roofline_tokens_per_second": (dma.h2c_bytes_per_second / per_token["dma_h2c_bytes"]
                                           if per_token["dma_h2c_bytes"] else None),  # None: nothing goes out a token
            "projected": projected}


def render_bench(report):
    """``bench``'s text for ``{"model", "prompt_tokens", "new_tokens", "repeats", "devices", "ratios"}``."""
    lines = [f"model: {report['model']}, prompt {report['prompt_tokens']} tokens, {report['new_tokens']} new "
             f"tokens, median of {report['repeats']}"]
    for r in report["devices"]:
        lines.append(f"  {r['device']:>6}: {r['tokens_per_second']:8.1f} tok/s  (decode "
                     f"{r['decode_tokens_per_second']:.1f} tok/s, prefill {r['prefill_seconds'] * 1e3:.1f} ms)")
    for r in report["devices"]:
        if "projected" in r:
            t, p = r["per_decoded_token"], r["projected"]
            program = "program_cycles_by_kind" in t
            cycles = t["device_program_cycles"] if program else t["device_matmul_cycles"]
            if "pcie" in r:
                c, secs = r["pcie"], p["seconds_per_token"]
                lines.append(f"  {r['device']:>6}: per decoded token {t['link_commands']:.2f} commands, "
                             f"{cycles:,.0f} device cycles; DMA {c['h2c_transfers']:,.1f} transfers and "
                             f"{c['h2c_bytes'] / 1e6:,.3f} MB to the card (the weight stream "
                             f"{c['weight_transfers']:,.1f} and {c['weight_bytes'] / 1e6:,.3f} MB), "
                             f"{c['c2h_transfers']:,.1f} and {c['c2h_bytes']:,.0f} bytes back")
                lines.append(f"  {r['device']:>6}: on a board at {p['clock_hz'] / 1e6:g} MHz with XDMA's "
                             f"{p['dma_latency_seconds'] * 1e6:g} us a transfer: device {secs['device'] * 1e3:.2f} ms, "
                             f"commands {secs['commands'] * 1e3:.2f} ms, host {secs['host'] * 1e3:.2f} ms: "
                             f"{p['tokens_per_second']:,.1f} tok/s; " + (
                                 f"roofline {c['roofline_tokens_per_second']:,.1f} tok/s "
                                 f"({c['h2c_bytes_per_second'] / 1e9:g} GB/s over the token's bytes)"
                                 if c["roofline_tokens_per_second"] else "nothing goes to the card a token"))
            else:
                lines.append(f"  {r['device']:>6}: per decoded token {t['link_commands']:.2f} commands, "
                             f"{t['link_bytes_sent']:,.0f} bytes sent, {t['link_bytes_received']:,.0f} received, "
                             f"{cycles:,.0f} {'device' if program else 'array'} cycles; on a board at "
                             f"{p['clock_hz'] / 1e6:g} MHz, {p['baud']:,} baud and {p['round_trip_seconds'] * 1e3:g} "
                             f"ms a round trip: {p['tokens_per_second']:,.1f} tok/s")
            if "dram" in r:
                d = r["dram"]
                lines.append(f"  {r['device']:>6}: DRAM ({d['module']}) per decoded token "
                             f"{d['bytes_read'] / 1e6:,.3f} MB read, {d['bytes_written'] / 1e6:,.3f} MB written: "
                             f"{d['utilisation']:.1%} of its "
                             f"{d['peak_bytes_per_second'] / 1e6:g} MB/s over the token's device time; roofline "
                             f"{d['roofline_tokens_per_second']:,.1f} tok/s")
            by_kind = t.get("program_cycles_by_kind") or t.get("matmul_cycles_by_kind")
            if by_kind:
                what = "device cycles per decoded token by op" if program else \
                    "array cycles per decoded token by product"
                lines.append(f"  {r['device']:>6}: {what}: " + ", ".join(f"{kind} {cycles:,.0f}"
                                                                       for kind, cycles in by_kind.items()))
    for pair, ratio in report["ratios"].items():
        lines.append(f"  {pair}: {ratio:.2f}x")
    return "\n".join(lines)
