"""Token generation shared by every back end: prefill, decode loop, streaming text, timing."""

import time
from dataclasses import dataclass, field

import numpy as np

from ..contract.errors import UserError
from ..contract.protocol import Stop

__all__ = ["GenerationResult", "TextStream", "generate", "prompt_ids", "render_summary"]


@dataclass
class GenerationResult:
    prompt_ids: list
    new_ids: list
    text: str
    stop_reason: str  # "eos", "max-new-tokens" or "context"
    prefill_seconds: float
    decode_seconds: float
    step_logits: list = field(default_factory=list, repr=False)  # filled when asked for

    @property
    def seconds(self):
        return self.prefill_seconds + self.decode_seconds

    @property
    def tokens_per_second(self):
        """New tokens per second of model time (prefill included)."""
        return len(self.new_ids) / self.seconds if self.seconds > 0 else float("inf")


class TextStream:
    """Decodes a growing list of ids and hands out only the newly completed text.

    Byte-level tokens can end inside a UTF-8 character; trailing replacement characters are held
    back until the bytes that complete them arrive (or the stream is flushed).
    """

    def __init__(self, tokenizer, write):
        self.tokenizer, self.write = tokenizer, write
        self.ids, self.emitted = [], ""

    def push(self, token_id):
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids).rstrip("\ufffd")
        if len(text) > len(self.emitted):
            self.write(text[len(self.emitted):])
            self.emitted = text

    def flush(self):
        text = self.tokenizer.decode(self.ids)
        if len(text) > len(self.emitted):
            self.write(text[len(self.emitted):])
        self.emitted = text
        return text


def prompt_ids(tokenizer, config, prompt):
    """The prompt's ids (no BOS added; an empty prompt starts from the BOS token)."""
    ids = tokenizer.encode(prompt) if prompt else [config.bos_token_id]
    if len(ids) > config.max_position_embeddings:
        raise UserError(f"the prompt is {len(ids)} tokens, longer than the model's context of "
                        f"{config.max_position_embeddings}")
    return ids


def generate(model, tokenizer, ids, sampler, max_new_tokens, eos_id, write=None, keep_logits=False):
    """Run prompt ``ids`` through ``model`` and extend it until eos, the token limit or the context ends.

    ``write`` receives the new text as it is produced. Returns a :class:`GenerationResult`.
    """
    context = getattr(model, "context", model.config.max_position_embeddings)  # a device's may be shorter
    stream = TextStream(tokenizer, write or (lambda text: None))
    choose = model.chooser(sampler)
    new_ids, kept = [], []

    def next_token(batch):
        """The id after the tokens ``batch``."""
        logits = model.forward(np.array([batch]), last_only=True)[0, -1]
        if keep_logits:
            kept.append(logits)
        return choose(logits)

    model.reset(1)
    start = time.perf_counter()
    device_generates = getattr(model, "generate_ids", None)  # a device that runs the loop
    if keep_logits or max_new_tokens < 1:
        device_generates = None
    if device_generates is not None:
        return _generate_on_device(device_generates, ids, choose, max_new_tokens, eos_id, stream, start)
    token = next_token(ids)
    prefill = time.perf_counter() - start
    stop = "max-new-tokens"
    while len(new_ids) < max_new_tokens:
        new_ids.append(token)
        if token == eos_id:  # kept in the ids, not printed
            stop = "eos"
            break
        stream.push(token)
        if len(ids) + len(new_ids) >= context:
            stop = "context"
            break
        if len(new_ids) < max_new_tokens:
            token = next_token([token])
    decode = time.perf_counter() - start - prefill
    text = stream.flush()
    return GenerationResult(list(ids), new_ids, text, stop, prefill, decode, kept)


STOP_REASONS = {Stop.COUNT: "max-new-tokens", Stop.EOS: "eos", Stop.CONTEXT: "context"}


def _generate_on_device(device_generates, ids, choose, max_new_tokens, eos_id, stream, start):
    """Generation by a model whose device runs the loop (GENERATE), the ids streaming as they come."""
    new_ids, first = [], []

    def on_id(token):
        if not first:
            first.append(time.perf_counter() - start)
        new_ids.append(token)
        if token != eos_id:
            stream.push(token)

    stop = device_generates(ids, max_new_tokens, eos_id, choose, on_id)
    prefill = first[0] if first else time.perf_counter() - start
    decode = time.perf_counter() - start - prefill
    return GenerationResult(list(ids), new_ids, stream.flush(), STOP_REASONS[stop], prefill, decode, [])


def render_summary(backend, result, stats):
    """The lines ``generate`` ends with: tokens and tok/s, and a board's cycles and link traffic."""
    lines = [f"[{backend}: {len(result.new_ids)} tokens in {result.seconds:.2f} s, "
             f"{result.tokens_per_second:.1f} tok/s, stop: {result.stop_reason}]"]
    if stats:
        program = f", {stats['device_program_cycles']:,} running the program" \
            if stats.get("device_program_cycles") else ""
        lines.append(f"[{backend}: {stats['device_cycles']:,} device cycles ({stats['device_matmul_cycles']:,} in "
                     f"products{program}), link {stats['link_bytes_sent']:,} bytes sent, "
                     f"{stats['link_bytes_received']:,} received in {stats['link_commands']:,} commands, "
                     f"{stats['link_resends']} resends]")
    return "\n".join(lines)
