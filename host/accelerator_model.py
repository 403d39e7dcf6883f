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
  after zeroing (commands 1). The model has no clock, so ``cycles`` and ``matmul_cycles`` stay 0.
* A MATMUL reads all its operands before it writes a result (one whose results overlap its
  operands is undefined by contract/protocol.py: the gateware streams results while it still reads),
  and its sums are 32-bit (wrapping).
"""

import numpy as np

from ..contract.numerics import GELU_KNOTS, NUMERICS_VERSION
from ..contract.protocol import (ACCESS, ANSWER, APPLIED_ONCE, CONSTANT, COUNTERS, ERROR, INFO, INFO_MAGIC, MATMUL,
                                 MATMUL_MAX_SIZE, READ, SYNC, WORD_BYTES, Error, FrameDecoder, Mode, Opcode, Space,
                                 encode_frame, pack_record, record_size, unpack_record)
from .driver import record_dtype
from .kernels import exact_matmul, integer_gelu, integer_softmax, requantize

__all__ = ["AcceleratorModel", "ModelTransport"]

WORD_DTYPES = {Space.ACTIVATIONS: np.dtype("<i2"), Space.WEIGHTS: np.dtype("i1"),
               Space.CONSTANTS: record_dtype(CONSTANT), Space.GELU: np.dtype("<i4")}
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
    at most ``softmax_length`` keys. ``gateware_version`` and ``clock_hz`` are reported by INFO.
    """

    def __init__(self, rows=4, cols=8, activation_words=16384, weight_words=65536, constant_words=8192,
                 gelu_tables=8, max_payload=4096, softmax_length=2048, gateware_version=1, clock_hz=0):
        self.info = dict(magic=INFO_MAGIC, gateware_version=gateware_version, numerics_version=NUMERICS_VERSION,
                         rows=rows, cols=cols, activation_words=activation_words, weight_words=weight_words,
                         constant_words=constant_words, gelu_tables=gelu_tables, max_payload=max_payload,
                         softmax_length=softmax_length, clock_hz=clock_hz)
        self.banks = {Space.ACTIVATIONS: rows, Space.WEIGHTS: cols, Space.CONSTANTS: 1, Space.GELU: 1}
        depths = {Space.ACTIVATIONS: activation_words, Space.WEIGHTS: weight_words,
                  Space.CONSTANTS: constant_words, Space.GELU: GELU_KNOTS * gelu_tables}
        self.memory = {space: np.zeros((self.banks[space], depths[space]), WORD_DTYPES[space]) for space in Space}
        self.counters = dict.fromkeys((name for name, _, _ in COUNTERS), 0)
        self.receiver = _Receiver(max_payload)
        self.previous = None  # the previous good command frame's (opcode, sequence, whether a retry is only answered)
        self.handlers = {Opcode.INFO: self._info, Opcode.WRITE: self._write, Opcode.READ: self._read,
                         Opcode.MATMUL: self._matmul, Opcode.COUNTERS: self._counters,
                         Opcode.RESET_COUNTERS: self._reset_counters}

    # -- the link ------------------------------------------------------------------------------

    def feed(self, data):
        """Link bytes in; out, the answers to the frames they complete (the bad ones' errors first)."""
        frames = self.receiver.feed(bytes(data))
        answers = [self._error(sequence, code) for sequence, code in self.receiver.dropped]
        self.receiver.dropped.clear()
        return b"".join(answers + [self._answer(frame) for frame in frames])

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
            payload = b""
        else:
            try:
                if frame.opcode not in self.handlers:
                    raise CommandError(Error.UNKNOWN_OPCODE)
                payload = self.handlers[frame.opcode](frame.payload)
            except CommandError as e:
                self.previous = (frame.opcode, frame.sequence, False)
                return self._error(frame.sequence, e.code)
            self.previous = (frame.opcode, frame.sequence, frame.opcode in APPLIED_ONCE)
        self.counters["commands"] += 1  # after the command: COUNTERS reports the count before itself
        return encode_frame(frame.opcode | ANSWER, frame.sequence, payload)

    # -- commands ------------------------------------------------------------------------------

    def _info(self, payload):
        _require(not payload)
        return pack_record(INFO, **self.info)

    def _counters(self, payload):
        _require(not payload)
        return pack_record(COUNTERS, **self.counters)

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
        words = self._words(space, access["bank"], access["address"], len(data) // WORD_BYTES[space])
        words[:] = np.frombuffer(data, WORD_DTYPES[space])
        return b""

    def _read(self, payload):
        _require(len(payload) == record_size(READ))
        access = unpack_record(READ, payload)
        space = self._space(access["space"])
        _require(space != Space.GELU and access["words"] * WORD_BYTES[space] <= self.info["max_payload"])
        return self._words(space, access["bank"], access["address"], access["words"]).tobytes()

    def _space(self, number):
        _require(number in set(Space))
        return Space(number)

    def _words(self, space, bank, address, count):
        """The memory words a WRITE or READ addresses (a view), once they are known to exist."""
        _require(bank < self.banks[space] and address + count <= self.memory[space].shape[1])
        return self.memory[space][bank, address:address + count]

    def _matmul(self, payload):
        _require(len(payload) == record_size(MATMUL))
        c = unpack_record(MATMUL, payload)
        _require(all(0 < c[size] <= MATMUL_MAX_SIZE for size in "mkn"))
        sums = exact_matmul(self._operand_a(c), self._operand_w(c).astype(np.float32))
        sums = (sums + 2 ** 31) % 2 ** 32 - 2 ** 31  # the accumulators are 32 bits
        self._store(c, self._finish(c, sums))
        self.counters["macs"] += c["m"] * c["k"] * c["n"]
        return b""

    def _operand_a(self, c):
        """A [m, k]: row i in ACTIVATIONS bank i % rows at a_base + (i // rows) * a_stride."""
        rows = self.banks[Space.ACTIVATIONS]
        i = np.arange(c["m"])
        return self._gather(Space.ACTIVATIONS, i % rows, c["a_base"] + (i // rows) * c["a_stride"], c["k"])

    def _operand_w(self, c):
        """W [n, k]: row j in WEIGHTS bank j % cols at w_base + (j // cols) * w_stride."""
        cols = self.banks[Space.WEIGHTS]
        j = np.arange(c["n"])
        return self._gather(Space.WEIGHTS, j % cols, c["w_base"] + (j // cols) * c["w_stride"], c["k"])

    def _gather(self, space, banks, starts, length):
        """Rows of ``length`` words from ``starts`` in ``banks``, as int64."""
        addresses = starts[:, None] + np.arange(length)
        _require(addresses.max() < self.memory[space].shape[1])
        return self.memory[space][banks[:, None], addresses].astype(np.int64)

    def _finish(self, c, sums):
        """The mode's work on the int32 sums [m, n]: the values to write."""
        if c["mode"] == Mode.REQUANTIZE:
            return self._requantize(c, sums)
        if c["mode"] == Mode.GELU:
            _require(c["gelu_table"] < self.info["gelu_tables"])
            start = GELU_KNOTS * c["gelu_table"]
            knots = self.memory[Space.GELU][0, start:start + GELU_KNOTS].astype(np.int64)
            return integer_gelu(self._requantize(c, sums), knots, c["gelu_low"], c["gelu_high"])
        if c["mode"] == Mode.SOFTMAX:
            _require(c["m"] == 1 and c["n"] <= self.info["softmax_length"])
            return integer_softmax(sums, self._visible(c), c["softmax_pre"], c["softmax_constant"],
                                   c["softmax_shift"])
        raise CommandError()

    def _requantize(self, c, sums):
        """The requantizer with CONSTANT records ``constants`` .. ``constants + n - 1``, one per column."""
        _require(c["constants"] + c["n"] <= self.info["constant_words"])
        r = self.memory[Space.CONSTANTS][0, c["constants"]:c["constants"] + c["n"]]
        return requantize(sums, r["bias"], r["multiplier"], r["shift"], r["low"], r["high"])

    def _visible(self, c):
        """SOFTMAX's mask over keys j < n: j <= position, and position - j < window unless window is 0."""
        j = np.arange(c["n"])
        visible = j <= c["position"]
        if c["window"]:
            visible &= c["position"] - j < c["window"]
        return visible[None, :]

    def _store(self, c, values):
        """Write result [i, j] where the out_* fields say (contract/protocol.py's three layouts)."""
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
        size = WORD_DTYPES[space].itemsize
        low_bits = values & (2 ** (8 * size) - 1)  # a word keeps the result's low bits
        self.memory[space][bank, address] = low_bits.astype(f"<u{size}").view(WORD_DTYPES[space])


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
            self.pending += self.model.idle()
        data = bytes(self.pending[:size])
        del self.pending[:size]
        return data

    def reset_input_buffer(self):
        """Drop the answers not read yet."""
        self.pending.clear()

    def close(self):
        """Nothing to release."""
