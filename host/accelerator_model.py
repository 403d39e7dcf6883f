"""The accelerator's Python reference model: link bytes in, answer bytes out.

:class:`AcceleratorModel` executes every command of contract/protocol.py as the gateware does, with
numpy and the kernels of host/kernels.py; :class:`ModelTransport` puts it behind pyserial's
interface so the host's :class:`~neofpga.host.link.Link` drives it in process::

    link = Link(ModelTransport(AcceleratorModel(rows=4, cols=8)), timeout=0)

Rules the gateware shares:

* A frame that fails its CRC, is longer than ``max_payload`` or stops arriving (:meth:`idle`, the
  receive timeout) is answered with an error carrying its sequence and changes nothing.
* A command that fails (bad opcode or arguments) is answered with an error and changes nothing.
* The retry rule of contract/protocol.py (:data:`~neofpga.contract.protocol.APPLIED_ONCE`).
* Counters (contract/protocol.py's COUNTERS): ``commands`` counts the command frames answered without
  an error (retries answered again included), ``errors`` every error answer (to damaged frames and
  refused commands alike), ``macs`` m * k * n of every MATMUL applied. A frame is counted once it
  is answered: a COUNTERS answer does not include its own frame, and RESET_COUNTERS counts itself
  after zeroing (commands 1). The model has no clock, so ``cycles``, ``matmul_cycles``, the
  vector ops' cycle counters and the DRAM's words read and written (the gateware's access pattern)
  stay 0.
* WEIGHTS continues into DRAM on a device with DRAM (``dram_words``): the DRAM space's words are
  the columns of WEIGHTS from ``weight_words`` on (contract/protocol.py's DRAM_INFO), one memory
  seen two ways. Its DRAM needs no initialising: it has no DRAM controller, and no CONTROL space.
* A MATMUL reads all its operands before it writes a result (one whose results overlap its
  operands is undefined by contract/protocol.py: the gateware streams results while it still reads),
  and its sums are 32-bit (wrapping).
"""

import numpy as np

from ..contract.numerics import (CONSTANT_BITS, GELU_KNOTS, NORM_EPSILON_MAX, NUMERICS_VERSION, RESIDUAL,
                                 SAMPLE_CANDIDATES, TOP_P_BITS)
from ..contract.program import HEADER, PROGRAM_VERSION, relocate, unpack_entry
from ..contract.protocol import (ACCESS, ANSWER, APPLIED_ONCE, CHOICE, CONSTANT, CONSTANT_WORD_BITS, COPY, DRAM_TEST,
                                 DRAM_TESTED, EMBED, ERROR, GENERATE, GENERATED, INFO_MAGIC, MATMUL,
                                 MATMUL_MAX_SIZE, NORM, NORM_COLUMN, READ, SAMPLE, SETTINGS, STREAM, STREAMED, SYNC,
                                 TOKEN, WORD_BYTES, Error, FrameDecoder, Mode, Opcode, Space, Stop, counters_record,
                                 dram_test_word, encode_frame, info_record, pack_record, record_size, unpack_record)
from .driver import record_dtype
from .kernels import (argmax, exact_matmul, integer_gelu, integer_layer_norm, integer_sample, integer_softmax,
                      requantize, residual_add)

__all__ = ["AcceleratorModel", "ModelTransport"]

WORD_DTYPES = {Space.ACTIVATIONS: np.dtype("<i2"), Space.WEIGHTS: np.dtype("i1"),
               Space.CONSTANTS: record_dtype(CONSTANT), Space.GELU: np.dtype("<i4"),
               Space.PROGRAM: np.dtype((np.void, WORD_BYTES[Space.PROGRAM])),
               Space.DRAM: np.dtype((np.void, WORD_BYTES[Space.DRAM])), Space.CONTROL: np.dtype("<u4")}
assert all(WORD_DTYPES[space].itemsize == size for space, size in WORD_BYTES.items())



class CommandError(Exception):
    """A command the device refuses; ``code`` is the :class:`Error` of its answer."""

    def __init__(self, code=Error.BAD_ARGUMENT):
        super().__init__(code.name)
        self.code = code


def _require(condition):
    if not condition:
        raise CommandError(Error.BAD_ARGUMENT)


class _Receiver(FrameDecoder):
    """The host's frame decoder, also noting (sequence, Error) of every frame it drops (through its
    ``_drop_sync`` hook): the device answers each."""

    def __init__(self, max_payload):
        super().__init__(max_payload)
        self.dropped = []

    def _drop_sync(self):
        length = int.from_bytes(self.buffer[4:6], "little")
        self.dropped.append((self.buffer[3], Error.TOO_LONG if length > self.max_payload else Error.BAD_CRC))
        super()._drop_sync()


class AcceleratorModel:
    """The device: its memories, counters and command semantics; :meth:`feed` is its link.

    ``rows`` x ``cols`` is the systolic array (``rows`` ACTIVATIONS banks of ``activation_words``
    16-bit words, ``cols`` WEIGHTS banks of ``weight_words`` bytes); ``constant_words`` CONSTANT
    records; ``gelu_tables`` GELU tables; frames of at most ``max_payload`` bytes; SOFTMAX rows of
    at most ``softmax_length`` keys; ``program_words`` PROGRAM entries (0: no programs, no TOKEN)
    and NORM rows of at most ``norm_length`` (0: no vector units, no EMBED, NORM or SAMPLE);
    ``dram_words`` DRAM words (0: no DRAM). ``gateware_version`` and ``clock_hz`` are reported by INFO.
    """

    def __init__(self, rows=4, cols=8, activation_words=16384, weight_words=65536, constant_words=8192,
                 gelu_tables=8, max_payload=4096, softmax_length=2048, program_words=0, norm_length=0,
                 dram_words=0, gateware_version=1, clock_hz=0):
        self.info = dict(magic=INFO_MAGIC, gateware_version=gateware_version, numerics_version=NUMERICS_VERSION,
                         rows=rows, cols=cols, activation_words=activation_words, weight_words=weight_words,
                         constant_words=constant_words, gelu_tables=gelu_tables, max_payload=max_payload,
                         softmax_length=softmax_length, clock_hz=clock_hz,
                         program_version=PROGRAM_VERSION if program_words else 0, program_words=program_words,
                         norm_length=norm_length, **(dict(dram_words=dram_words) if dram_words else {}))
        if dram_words and cols != WORD_BYTES[Space.DRAM]:
            raise ValueError(f"a device with DRAM has {WORD_BYTES[Space.DRAM]} weight banks, one a byte of a DRAM word")
        self.banks = {Space.ACTIVATIONS: rows, Space.WEIGHTS: cols, Space.CONSTANTS: 1, Space.GELU: 1,
                      Space.PROGRAM: 1, Space.DRAM: 1, Space.CONTROL: 1}
        depths = {Space.ACTIVATIONS: activation_words, Space.WEIGHTS: weight_words + dram_words,
                  Space.CONSTANTS: constant_words, Space.GELU: GELU_KNOTS * gelu_tables,
                  Space.PROGRAM: program_words, Space.DRAM: 0, Space.CONTROL: 0}  # no DRAM controller
        self.memory = {space: np.zeros((self.banks[space], depths[space]), WORD_DTYPES[space]) for space in Space}
        self.weight_words, self.dram_words = weight_words, dram_words
        self.counters = dict.fromkeys((name for name, _, _ in counters_record(norm_length, dram_words)), 0)
        self.receiver = _Receiver(max_payload)
        self.previous = None  # the previous good command frame's (opcode, sequence, whether a retry is only answered)
        self.previous_answer = b""  # the payload a retry of an applied one is answered with again
        self.running = None  # a GENERATE that runs: (its sequence, its steps)
        self.handlers = {Opcode.INFO: self._info, Opcode.WRITE: self._write, Opcode.READ: self._read,
                         Opcode.MATMUL: self._matmul, Opcode.COUNTERS: self._counters,
                         Opcode.RESET_COUNTERS: self._reset_counters}
        if norm_length:  # the vector units
            self.handlers.update({Opcode.EMBED: self._embed, Opcode.NORM: self._norm, Opcode.SAMPLE: self._sample})
        if program_words and norm_length:  # a program's ops need the vector units
            self.handlers.update({Opcode.TOKEN: self._token, Opcode.GENERATE: self._generate})
        self.plans = {Opcode.MATMUL: self._plan_matmul, Opcode.EMBED: self._plan_embed, Opcode.NORM: self._plan_norm,
                      Opcode.SAMPLE: self._plan_sample}
        if dram_words:
            self.handlers[Opcode.COPY] = self._copy
            self.handlers[Opcode.DRAM_TEST] = self._dram_test
            self.plans[Opcode.COPY] = self._plan_copy

    # -- the link ------------------------------------------------------------------------------

    def feed(self, data):
        """Link bytes in; out, the answers to the frames they complete (the bad ones' errors first).
        Bytes that arrive while a GENERATE runs stop it first (INTERRUPTED)."""
        answers = [self._interrupt()] if data else []
        frames = self.receiver.feed(bytes(data))
        answers += [self._error(sequence, code) for sequence, code in self.receiver.dropped]
        self.receiver.dropped.clear()
        for frame in frames:
            answers += [self._interrupt(), self._answer(frame)]  # a GENERATE it started, by the frames after it
        return b"".join(answers)

    def _interrupt(self):
        """Stop a running GENERATE (INTERRUPTED): bytes arrived. b"" if none runs."""
        if self.running is None:
            return b""
        sequence, self.running = self.running[0], None
        self.previous = (Opcode.GENERATE, sequence, False)
        return self._error(sequence, Error.INTERRUPTED)

    def run(self):
        """A running GENERATE's next frame (its steps up to the next id, or its answer); b"" if none runs."""
        while self.running is not None:
            sequence, steps = self.running
            try:
                step = next(steps)
            except CommandError as e:  # a generated token's program is refused: it stops there
                self.previous, self.running = (Opcode.GENERATE, sequence, False), None
                return self._error(sequence, e.code)
            if step is None:
                continue
            opcode, payload = step
            if opcode != STREAM:  # the answer
                self.previous, self.previous_answer = (Opcode.GENERATE, sequence, True), payload
                self.running = None
                self.counters["commands"] += 1
            return encode_frame(opcode, sequence, payload)
        return b""

    def idle(self):
        """The receive timeout passes: a partly received frame is dropped and answered TRUNCATED."""
        buffer = self.receiver.buffer
        if not buffer.startswith(SYNC):
            return b""
        sequence = buffer[3] if len(buffer) > 3 else 0  # header fields not received are 0
        buffer.clear()
        return self._error(sequence, Error.TRUNCATED)

    def _error(self, sequence, code):
        self.counters["errors"] += 1
        return encode_frame(ERROR, sequence, bytes([code]))

    def _answer(self, frame):
        """Execute a good command frame, or answer a retry of an applied one again."""
        if self.previous == (frame.opcode, frame.sequence, True):
            payload = self.previous_answer
        else:
            try:
                if frame.opcode not in self.handlers:
                    raise CommandError(Error.UNKNOWN_OPCODE)
                payload = self.handlers[frame.opcode](frame.payload)
            except CommandError as e:
                self.previous = (frame.opcode, frame.sequence, False)
                return self._error(frame.sequence, e.code)
            if frame.opcode == Opcode.GENERATE:  # it streams its frames from run()
                self.running = (frame.sequence, payload)
                return b""
            self.previous = (frame.opcode, frame.sequence, frame.opcode in APPLIED_ONCE)
            self.previous_answer = payload
        self.counters["commands"] += 1  # after the command: COUNTERS reports the count before itself
        return encode_frame(frame.opcode | ANSWER, frame.sequence, payload)

    # -- commands ------------------------------------------------------------------------------

    def _info(self, payload):
        _require(not payload)
        return pack_record(info_record(self.dram_words), **self.info)

    def _counters(self, payload):
        _require(not payload)
        return pack_record(counters_record(self.info["norm_length"], self.dram_words), **self.counters)

    def _reset_counters(self, payload):
        _require(not payload)
        self.counters = dict.fromkeys(self.counters, 0)
        return b""

    def _write(self, payload):
        _require(len(payload) >= record_size(ACCESS))
        access = unpack_record(ACCESS, payload[:record_size(ACCESS)])
        data = payload[record_size(ACCESS):]
        space = self._space(access["space"])
        _require(len(data) % WORD_BYTES[space] == 0)
        count = len(data) // WORD_BYTES[space]
        if space == Space.DRAM:
            self._dram(access["bank"], access["address"], count)[:] = np.frombuffer(data, "i1").reshape(count, -1).T
            return b""
        words = self._words(space, access["bank"], access["address"], count)
        words[:] = np.frombuffer(data, WORD_DTYPES[space])
        if space == Space.CONSTANTS:  # the device keeps a word's low CONSTANT_WORD_BITS
            words.view(np.uint64)[:] &= np.uint64((1 << CONSTANT_WORD_BITS) - 1)
        return b""

    def _read(self, payload):
        access = self._record(READ, payload)
        space = self._space(access["space"])
        _require(space not in (Space.GELU, Space.PROGRAM)  # write only
                 and access["words"] * WORD_BYTES[space] <= self.info["max_payload"])
        if space == Space.DRAM:
            return self._dram(access["bank"], access["address"], access["words"]).T.tobytes()
        return self._words(space, access["bank"], access["address"], access["words"]).tobytes()

    def _space(self, number):
        _require(number in set(Space) and (self.memory[Space(number)].shape[1] > 0
                                           or (number == Space.DRAM and self.dram_words > 0)))
        return Space(number)

    def _dram(self, bank, address, count):
        """DRAM words ``address`` .. ``address + count - 1`` as WEIGHTS' columns [cols, count] (a view)."""
        _require(bank == 0 and address + count <= self.dram_words)
        start = self.weight_words + address
        return self.memory[Space.WEIGHTS][:, start:start + count]

    def _words(self, space, bank, address, count):
        """The memory words a WRITE or READ addresses (a view), once they are known to exist."""
        depth = self.weight_words if space == Space.WEIGHTS else self.memory[space].shape[1]  # DRAM: its own space
        _require(bank < self.banks[space] and address + count <= depth)
        return self.memory[space][bank, address:address + count]

    def _record(self, fields, payload):
        """A command's record, once the payload is exactly its size."""
        _require(len(payload) == record_size(fields))
        return unpack_record(fields, payload)

    def _matmul(self, payload):
        self._plan_matmul(self._record(MATMUL, payload))()
        return b""

    def _copy(self, payload):
        self._plan_copy(self._record(COPY, payload))()
        return b""

    def _dram_test(self, payload):
        """DRAM_TEST: the pattern written, and read back as written (the model's memory has no faults)."""
        c = self._record(DRAM_TEST, payload)
        _require(c["words"] > 0)
        words = self._dram(0, c["start"], c["words"])
        pattern = b"".join(dram_test_word(c["start"] + i, c["seed"]) for i in range(c["words"]))
        words[:] = np.frombuffer(pattern, "i1").reshape(c["words"], -1).T
        return pack_record(DRAM_TESTED, errors=0, first_error=0xFFFFFFFF)

    def _embed(self, payload):
        self._plan_embed(self._record(EMBED, payload))()
        return b""

    def _norm(self, payload):
        self._plan_norm(self._record(NORM, payload))()
        return b""

    def _sample(self, payload):
        return pack_record(CHOICE, **self._plan_sample(self._record(SAMPLE, payload))())

    def _token(self, payload):
        """TOKEN: every op of the program planned (checked) for this id and position, then run."""
        token = self._record(TOKEN, payload)
        settings = {name: token[name] for name, _, _ in SETTINGS}
        return pack_record(CHOICE, **self._plan_token(token["id"], token["position"], settings)())

    def _program_header(self):
        """The loaded program's HEADER, once there is one of this format."""
        program = self.memory[Space.PROGRAM][0]
        _require(len(program) > 1)
        header = unpack_record(HEADER, program[0].tobytes()[:record_size(HEADER)])
        _require(header["version"] == PROGRAM_VERSION and 0 < header["entries"] < len(program))
        return header

    def _plan_token(self, token, position, settings):
        """The program for ``token`` at ``position``, every op relocated and checked; a function that
        runs it and returns the CHOICE of its SAMPLE ops (with ``settings``) as a dict."""
        header = self._program_header()
        _require(token < header["vocab"] and position < header["context"])
        runs, samples = [], 0
        for word in self.memory[Space.PROGRAM][0, 1:header["entries"] + 1]:
            try:
                opcode, fields, relocations = unpack_entry(word.tobytes())
            except ValueError:
                raise CommandError() from None
            fields = relocate(opcode, fields, relocations, position, token)
            if opcode == Opcode.SAMPLE:
                fields.update(settings)
                samples += 1
            _require(opcode in self.plans)  # COPY, on a device without DRAM
            runs.append((opcode, self.plans[opcode](fields)))
        _require(samples > 0)

        def run():
            state = settings["state"]
            for opcode, op in runs:
                if opcode == Opcode.SAMPLE:
                    op.settings["state"] = state
                    choice = op()
                    state = choice["state"]
                else:
                    op()
            return choice
        return run

    def _generate(self, payload):
        """GENERATE: the prompt's programs checked, then the run handed to :meth:`run`, a token a step."""
        size = record_size(GENERATE)
        _require(len(payload) > size and (len(payload) - size) % 2 == 0)
        g = unpack_record(GENERATE, payload[:size])
        prompt = np.frombuffer(payload[size:], "<u2").tolist()
        settings = {name: g[name] for name, _, _ in SETTINGS}
        greedy = dict(settings, greedy=1)
        context = self._program_header()["context"]
        _require(g["count"] > 0)
        prefill = [(token, g["position"] + i, greedy if i < len(prompt) - 1 else settings)
                   for i, token in enumerate(prompt)]
        for token in prefill:  # every check first (the plans are made again as they run: they are big)
            self._plan_token(*token)
        return self._generation(g, prefill, settings, context, g["position"] + len(prompt))

    def _generation(self, g, prefill, settings, context, position):
        """The steps of a running GENERATE, one token each; yields its frames' payloads as
        (opcode, payload), the last its answer."""
        for token in prefill[:-1]:
            self._plan_token(*token)()
            yield None
        choice = self._plan_token(*prefill[-1])()
        for index in range(g["count"]):
            settings["state"] = choice["state"]
            yield STREAM, pack_record(STREAMED, index=index, id=choice["id"], state=choice["state"])
            if g["stop_at_eos"] and choice["id"] == g["eos"]:
                stop = Stop.EOS
            elif position + 1 >= context:  # the stream holds the context's worth of tokens
                stop = Stop.CONTEXT
            elif index + 1 == g["count"]:
                stop = Stop.COUNT
            else:
                choice = self._plan_token(choice["id"], position, settings)()
                position += 1
                yield None
                continue
            break
        yield Opcode.GENERATE | ANSWER, pack_record(GENERATED, count=index + 1, stop=stop, state=choice["state"])

    # -- ops, planned: every check made, then a function that runs the op ----------------------

    def _plan_matmul(self, c):
        _require(all(0 < c[size] <= MATMUL_MAX_SIZE for size in "mkn"))
        rows, cols = self.banks[Space.ACTIVATIONS], self.banks[Space.WEIGHTS]
        i, j = np.arange(c["m"]), np.arange(c["n"])
        # A [m, k]: row i in ACTIVATIONS bank i % rows at a_base + (i // rows) * a_stride; W [n, k]:
        # row j in WEIGHTS bank j % cols at w_base + (j // cols) * w_stride
        a = self._row_addresses(Space.ACTIVATIONS, i % rows, c["a_base"] + (i // rows) * c["a_stride"], c["k"])
        w = self._row_addresses(Space.WEIGHTS, j % cols, c["w_base"] + (j // cols) * c["w_stride"], c["k"])
        in_dram = w[1] >= self.weight_words
        _require(in_dram.all() or not in_dram.any())  # W from block RAM or from DRAM, not both
        finish = self._plan_finish(c)
        out = self._out_addresses(c)

        def run():
            operand_a = self.memory[Space.ACTIVATIONS][a].astype(np.int64)
            operand_w = self.memory[Space.WEIGHTS][w].astype(np.float32)
            sums = exact_matmul(operand_a, operand_w)
            sums = (sums + 2 ** 31) % 2 ** 32 - 2 ** 31  # the accumulators are 32 bits
            self._store(out, finish(sums))
            self.counters["macs"] += c["m"] * c["k"] * c["n"]
        return run

    def _plan_copy(self, c):
        count = c["words"]
        _require(count > 0)
        source = self._dram(0, c["source"], count)
        if c["space"] == Space.WEIGHTS:
            self._words(Space.WEIGHTS, 0, c["address"], count)  # the check: every bank has them if bank 0 has
            target = slice(c["address"], c["address"] + count)

            def run():
                self.memory[Space.WEIGHTS][:, target] = source
            return run
        _require(c["space"] == Space.CONSTANTS)
        records = self._constants(c["address"], 2 * count)

        def run():
            words = np.ascontiguousarray(source.T).view(np.uint64).reshape(-1)  # two records a DRAM word
            self.memory[Space.CONSTANTS][0, records] = (words & np.uint64((1 << CONSTANT_WORD_BITS) - 1)).view(
                WORD_DTYPES[Space.CONSTANTS])
        return run

    def _plan_embed(self, c):
        d, cols = c["d"], self.banks[Space.WEIGHTS]
        _require(d > 0)
        token = self._row_addresses(Space.WEIGHTS, c["id"] % cols, c["token_base"] + c["id"] // cols * d, d)
        place = self._row_addresses(Space.WEIGHTS, c["position"] % cols,
                                    c["position_base"] + c["position"] // cols * d, d)
        token_record = self._constants(c["token_constants"] + c["id"], 1)
        place_record = self._constants(c["position_constants"] + c["position"], 1)
        out = self._row_addresses(Space.ACTIVATIONS, c["out_bank"], c["out_address"], d)
        _require(max(token[1].max(), place[1].max()) < self.weight_words)  # EMBED's matrices in block RAM

        def run():
            rows = (self.memory[Space.WEIGHTS][token], self.memory[Space.WEIGHTS][place])
            records = (self.memory[Space.CONSTANTS][0, token_record], self.memory[Space.CONSTANTS][0, place_record])
            parts = [self._requantize(row.astype(np.int64), r, *RESIDUAL) for row, r in zip(rows, records)]
            self._store(out, residual_add(*parts))
        return run

    def _plan_norm(self, c):
        d = c["d"]
        _require(0 < d <= self.info["norm_length"] and c["epsilon"] <= NORM_EPSILON_MAX)
        residual = self._row_addresses(Space.ACTIVATIONS, c["residual_bank"], c["residual_address"], d)
        addend = self._row_addresses(Space.ACTIVATIONS, c["addend_bank"], c["addend_address"], d) if c["add"] \
            else None
        columns = self._constants(c["columns"], d)
        out = self._row_addresses(Space.ACTIVATIONS, c["out_bank"], c["out_address"], d)

        def run():
            x = self.memory[Space.ACTIVATIONS][residual].astype(np.int64)
            if addend is not None:
                x = residual_add(x, self.memory[Space.ACTIVATIONS][addend])
                self._store(residual, x)
            column = self.memory[Space.CONSTANTS][0, columns].view(record_dtype(NORM_COLUMN))
            self._store(out, integer_layer_norm(x, column["gain"], column["bias"], c["multiplier"], c["shift"],
                                                c["low"], c["high"], c["mean_multiplier"], c["mean_shift"],
                                                c["epsilon"]))
        return run

    def _plan_sample(self, c):
        _require(c["n"] > 0 and c["greedy"] in (0, 1))
        if not c["greedy"]:
            _require(0 < c["k"] <= SAMPLE_CANDIDATES and 0 < c["top_p"] <= 2 ** TOP_P_BITS and c["pre"] <= 16
                     and c["constant"] < 2 ** CONSTANT_BITS)
        codes = self._row_addresses(Space.ACTIVATIONS, c["bank"], c["address"], c["n"])
        settings = dict(c)

        def run():
            row = self.memory[Space.ACTIVATIONS][codes][0]
            if settings["greedy"]:
                return dict(id=int(argmax(row)), state=settings["state"])
            token, state = integer_sample(row, settings["pre"], settings["constant"], settings["shift"],
                                          settings["k"], settings["top_p"], settings["state"])
            return dict(id=token, state=state)
        run.settings = settings
        return run

    # -- addresses, checked --------------------------------------------------------------------

    def _row_addresses(self, space, banks, starts, length):
        """The (banks, addresses) index [rows, length] of rows of ``length`` words from ``starts``
        in ``banks`` (arrays, or one row's numbers), once every word is known to exist."""
        banks, starts = np.atleast_1d(banks), np.atleast_1d(starts)
        _require(int(banks.max()) < self.banks[space])
        addresses = starts[:, None] + np.arange(length)
        _require(int(addresses.max()) < self.memory[space].shape[1])
        return tuple(np.broadcast_arrays(banks[:, None], addresses))

    def _constants(self, start, count):
        """The CONSTANTS words ``start`` .. ``start + count - 1``, once they exist."""
        _require(start + count <= self.info["constant_words"])
        return slice(start, start + count)

    def _plan_finish(self, c):
        """The mode's work on the int32 sums [m, n] (a function to the values to write), checked."""
        if c["mode"] == Mode.REQUANTIZE:
            records = self._constants(c["constants"], c["n"])
            return lambda sums: self._requantize(sums, self.memory[Space.CONSTANTS][0, records], c["low"], c["high"])
        if c["mode"] == Mode.GELU:
            _require(c["gelu_table"] < self.info["gelu_tables"])
            records = self._constants(c["constants"], c["n"])
            start = GELU_KNOTS * c["gelu_table"]

            def gelu(sums):
                knots = self.memory[Space.GELU][0, start:start + GELU_KNOTS].astype(np.int64)
                requantized = self._requantize(sums, self.memory[Space.CONSTANTS][0, records], c["low"], c["high"])
                return integer_gelu(requantized, knots, c["gelu_low"], c["gelu_high"])
            return gelu
        if c["mode"] == Mode.SOFTMAX:
            _require(c["m"] == 1 and c["n"] <= self.info["softmax_length"])
            visible = self._visible(c)
            return lambda sums: integer_softmax(sums, visible, c["softmax_pre"], c["softmax_constant"],
                                                c["softmax_shift"])
        raise CommandError()

    def _requantize(self, sums, records, low, high):
        """The requantizer with CONSTANT ``records`` (one per column, or one for the row) and limits."""
        return requantize(sums, records["bias"], records["multiplier"], records["shift"], low, high)

    def _visible(self, c):
        """SOFTMAX's mask over keys j < n: j <= position, and position - j < window unless window is 0."""
        j = np.arange(c["n"])
        visible = j <= c["position"]
        if c["window"]:
            visible &= c["position"] - j < c["window"]
        return visible[None, :]

    def _out_addresses(self, c):
        """Where result [i, j] goes, as the out_* fields say (contract/protocol.py's three layouts): (space, index)."""
        space = c["out_space"]
        _require(space in (Space.ACTIVATIONS, Space.WEIGHTS))
        banks = self.banks[space]
        i, j = np.arange(c["m"])[:, None], np.arange(c["n"])[None, :]
        if c["out_transposed"]:
            _require(space == Space.WEIGHTS)
            bank, address = j % banks, c["out_address0"] + (j // banks) * c["out_stride"] + c["out_offset"] + i
        elif c["out_banked"]:
            _require(c["out_bank0"] < banks)
            row = c["out_bank0"] + i
            bank, address = row % banks, c["out_address0"] + (row // banks) * c["out_stride"] + j
        else:
            _require(c["out_bank0"] < banks)
            bank, address = c["out_bank0"], c["out_address0"] + i * c["out_stride"] + j
        bank, address = np.broadcast_arrays(bank, address)
        _require(address.max() < self.memory[space].shape[1])
        return Space(space), (bank, address)

    def _store(self, out, values):
        """Write ``values`` at ``out``: (space, index), or an ACTIVATIONS index; a word keeps the low bits."""
        space, index = out if isinstance(out[0], Space) else (Space.ACTIVATIONS, out)
        size = WORD_DTYPES[space].itemsize
        low_bits = np.asarray(values, dtype=np.int64) & (2 ** (8 * size) - 1)
        self.memory[space][index] = low_bits.astype(f"<u{size}").view(WORD_DTYPES[space])


class ModelTransport:
    """An :class:`AcceleratorModel` behind pyserial's transport interface, in process.

    What is written is answered at once; a read that finds nothing waiting lets the device's
    receive timeout pass first (:meth:`AcceleratorModel.idle`), as a real line would.
    """

    def __init__(self, model):
        self.model = model
        self.pending = bytearray()

    def write(self, data):
        """Send ``data`` to the model; its answers wait to be read."""
        self.pending += self.model.feed(data)
        return len(data)

    def read(self, size=1):
        """Up to ``size`` bytes of the answers (nothing: the line stayed silent)."""
        if not self.pending:
            self.pending += self.model.run() or self.model.idle()
        data = bytes(self.pending[:size])
        del self.pending[:size]
        return data

    def reset_input_buffer(self):
        """Drop the answers not read yet."""
        self.pending.clear()

    def close(self):
        """Nothing to release."""
