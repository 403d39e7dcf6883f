"""The link protocol's frame format and codes: the one source for the gateware and the host.

A frame, in either direction::

    SYNC (2 bytes) | opcode (1) | sequence (1) | length (2, little-endian) | payload | CRC-32 (4, little-endian)

The CRC is zlib's CRC-32 (CRC-32/ISO-HDLC) over opcode, sequence, length and payload. Every command
frame gets exactly one answer frame with the same sequence number: the command's opcode with
:data:`ANSWER` set and its data, or :data:`ERROR` with a one-byte :class:`Error` code (GENERATE
sends :data:`STREAM` frames with that sequence first, one an id). A frame that
fails its CRC, is longer than the device's buffer, or stops arriving for a timeout is answered
with an error and changes nothing; the decoder then hunts for the next SYNC.

Commands (:class:`Opcode`) carry little-endian records whose fields are listed once here
(:data:`ACCESS`, :data:`MATMUL`, :data:`INFO`, :data:`COUNTERS`, :data:`CONSTANT`, the vector ops'
and TOKEN's): the host packs them with :func:`pack_record`, the gateware derives its struct
layouts from the same lists.

**The retry rule.** A good command frame whose opcode and sequence number equal those of the
previous good command frame is a retry. If that previous command was one of :data:`APPLIED_ONCE`
and succeeded, the retry is answered again (the same answer: empty, or TOKEN's CHOICE) without
being applied again; any other command (READ, INFO, COUNTERS, SAMPLE, or one that failed) is
simply executed again. A damaged frame leaves the rule's memory alone. The host resends the very
same frame when an answer does not come, so a device that applied a command and lost only the
answer never applies it twice.

This module is plain Python (no Amaranth, no numpy): ``hdl/`` builds its decoder and encoder from
these constants, ``host/`` encodes commands and decodes answers with :func:`encode_frame` and
:class:`FrameDecoder`, and the tests use both as the reference.
"""

import enum
import zlib

from .dram import DRAM_WORD_BYTES

__all__ = ["SYNC", "HEADER_BYTES", "CRC_BYTES", "ANSWER", "ERROR", "Error", "Frame", "FrameDecoder",
           "encode_frame", "Opcode", "Space", "Mode", "ACCESS", "READ", "MATMUL", "INFO", "COUNTERS",
           "CONSTANT", "CONSTANT_WORD_BITS", "NORM_COLUMN", "EMBED", "NORM", "SETTINGS", "SAMPLE", "TOKEN", "CHOICE",
           "GENERATE", "STREAM", "STREAMED", "GENERATED", "Stop", "VECTOR_COUNTERS", "counters_record",
           "PROGRAM_ENTRY_BYTES", "WORD_BYTES", "INFO_MAGIC", "APPLIED_ONCE", "MATMUL_SIZE_BITS", "MATMUL_MAX_SIZE",
           "record_size", "pack_record", "unpack_record", "DRAM_INFO", "info_record", "DRAM_COUNTERS", "COPY",
           "DRAM_TEST", "DRAM_TESTED", "dram_test_word"]

SYNC = b"\xa5\x5a"
HEADER_BYTES = len(SYNC) + 4   # sync, opcode, sequence, length
CRC_BYTES = 4
ANSWER = 0x80                  # set in the opcode of every answer
ERROR = 0xFF                   # the opcode of an error answer; its payload is one Error byte
STREAM = 0xFE                  # the opcode of a running GENERATE's frames, one an id (a STREAMED record)


class Error(enum.IntEnum):
    """Error codes in an :data:`ERROR` answer's payload."""
    BAD_CRC = 1          # the frame's CRC did not match: nothing was applied
    TOO_LONG = 2         # the length exceeds the device's frame buffer
    TRUNCATED = 3        # the frame stopped arriving before its end (the device's timeout)
    UNKNOWN_OPCODE = 4
    BAD_ARGUMENT = 5     # an address or length out of range, or a payload of the wrong size
    BUSY = 6             # the device cannot take the command now
    INTERRUPTED = 7      # a GENERATE stopped by a frame arriving while it ran (between two tokens)


class Frame:
    """A decoded frame: ``opcode``, ``sequence`` and ``payload`` (bytes)."""

    __slots__ = ("opcode", "sequence", "payload")

    def __init__(self, opcode, sequence, payload=b""):
        self.opcode, self.sequence, self.payload = opcode, sequence, bytes(payload)

    def __eq__(self, other):
        return isinstance(other, Frame) and (self.opcode, self.sequence, self.payload) == \
            (other.opcode, other.sequence, other.payload)

    def __repr__(self):
        return f"Frame(opcode={self.opcode:#04x}, sequence={self.sequence}, payload={len(self.payload)} bytes)"


def encode_frame(opcode, sequence, payload=b""):
    """The bytes of one frame."""
    if not 0 <= opcode <= 0xFF or not 0 <= sequence <= 0xFF:
        raise ValueError("opcode and sequence are single bytes")
    if len(payload) > 0xFFFF:
        raise ValueError(f"a payload of {len(payload)} bytes does not fit the 16-bit length")
    body = bytes([opcode, sequence]) + len(payload).to_bytes(2, "little") + bytes(payload)
    return SYNC + body + zlib.crc32(body).to_bytes(CRC_BYTES, "little")


class FrameDecoder:
    """Bytes in, frames out: the host's side of the link.

    :meth:`feed` returns the complete frames the bytes finish, and counts what it had to skip:
    ``skipped`` bytes of garbage before a SYNC, and ``bad_frames`` that failed their CRC or were
    longer than ``max_payload`` (after which it hunts for the next SYNC from the byte after the
    bad frame's SYNC, so a frame hidden inside garbage is still found).
    """

    def __init__(self, max_payload=0xFFFF):
        self.max_payload = max_payload
        self.buffer = bytearray()
        self.skipped = self.bad_frames = 0

    def feed(self, data):
        self.buffer += data
        frames = []
        while True:
            start = self.buffer.find(SYNC)
            if start < 0:
                keep = 1 if self.buffer.endswith(SYNC[:1]) else 0
                self.skipped += len(self.buffer) - keep
                del self.buffer[:len(self.buffer) - keep]
                return frames
            self.skipped += start
            del self.buffer[:start]
            if len(self.buffer) < HEADER_BYTES:
                return frames
            length = int.from_bytes(self.buffer[4:6], "little")
            if length > self.max_payload:
                self._drop_sync()
                continue
            end = HEADER_BYTES + length + CRC_BYTES
            if len(self.buffer) < end:
                return frames
            body = bytes(self.buffer[len(SYNC):HEADER_BYTES + length])
            if zlib.crc32(body) != int.from_bytes(self.buffer[end - CRC_BYTES:end], "little"):
                self._drop_sync()
                continue
            frames.append(Frame(body[0], body[1], body[4:]))
            del self.buffer[:end]

    def _drop_sync(self):
        self.bad_frames += 1
        self.skipped += len(SYNC)
        del self.buffer[:len(SYNC)]


# -- commands ------------------------------------------------------------------------------------

class Opcode(enum.IntEnum):
    """What a command frame asks for. Its answer has the same opcode with :data:`ANSWER` set."""
    INFO = 0x01            # -> an INFO record
    WRITE = 0x02           # ACCESS record + words -> nothing
    READ = 0x03            # READ record -> the words
    MATMUL = 0x04          # MATMUL record -> nothing, once every result is written
    COUNTERS = 0x05        # -> a COUNTERS record
    RESET_COUNTERS = 0x06  # -> nothing
    EMBED = 0x07           # EMBED record -> nothing, once the residual row is written
    NORM = 0x08            # NORM record -> nothing, once the residual and normalised rows are written
    SAMPLE = 0x09          # SAMPLE record -> a CHOICE record
    TOKEN = 0x0A           # TOKEN record -> a CHOICE record, once the program has run (contract/program.py)
    GENERATE = 0x0B        # GENERATE record + prompt ids -> STREAM frames, one an id, then a GENERATED record
    COPY = 0x0C            # COPY record -> nothing, once every word is copied (a device with DRAM)
    DRAM_TEST = 0x0D       # DRAM_TEST record -> a DRAM_TESTED record (a device with DRAM)


APPLIED_ONCE = frozenset({Opcode.WRITE, Opcode.MATMUL, Opcode.RESET_COUNTERS, Opcode.EMBED, Opcode.NORM,
                          Opcode.TOKEN, Opcode.GENERATE, Opcode.COPY})
"""The commands that change the device: a retry of one that succeeded is answered, not applied again."""


class Space(enum.IntEnum):
    """The device's memories, as WRITE and READ address them (``bank``, then ``address`` in words)."""
    ACTIVATIONS = 0  # ``rows`` banks of 16-bit words: matmul operand A, results, probabilities
    WEIGHTS = 1      # ``cols`` banks of bytes: matmul operand W, the K and V caches
    CONSTANTS = 2    # one bank of 8-byte words (CONSTANT_WORD_BITS kept): CONSTANT records, NORM_COLUMNs
    GELU = 3         # one bank of int32 knots, numerics.GELU_KNOTS per table (write only)
    PROGRAM = 4      # one bank of program entries (contract/program.py), word 0 the program's header (write only)
    DRAM = 5         # one bank of DRAM words (contract/dram.py), on a device with DRAM: WEIGHTS continues into it
    CONTROL = 6      # one bank of 32-bit registers, the DRAM controller's (contract/dram_control.py), on a board


PROGRAM_ENTRY_BYTES = 80
"""A PROGRAM word: one entry of contract/program.py's format (an op, its relocations and its record)."""
WORD_BYTES = {Space.ACTIVATIONS: 2, Space.WEIGHTS: 1, Space.CONSTANTS: 8, Space.GELU: 4,
              Space.PROGRAM: PROGRAM_ENTRY_BYTES, Space.DRAM: DRAM_WORD_BYTES, Space.CONTROL: 4}
"""Bytes per word of each space, little-endian."""

MATMUL_SIZE_BITS = 12
MATMUL_MAX_SIZE = 2 ** MATMUL_SIZE_BITS - 1
"""The largest M, K or N of one MATMUL: the gateware's sizes are MATMUL_SIZE_BITS wide."""


class Mode(enum.IntEnum):
    """What a MATMUL does with each int32 sum before it is written."""
    REQUANTIZE = 0  # requantize with the column's CONSTANT record
    GELU = 1        # requantize, then the GELU unit with table ``gelu_table``
    SOFTMAX = 2     # the softmax unit over the row (M = 1), masked causally (and by ``window``)


# A record is a list of (name, bytes, signed); fields follow each other, little-endian.
ACCESS = [("space", 1, False), ("bank", 1, False), ("address", 4, False)]
READ = ACCESS + [("words", 2, False)]
MATMUL = [
    # the product A [m, k] @ W [n, k].T, operands in the sequencer's banked layouts (hdl/matmul.py);
    # m, k and n are 1..MATMUL_MAX_SIZE, and every word read or written must lie in its bank (else
    # BAD_ARGUMENT);
    # fields the mode or the output layout does not use are ignored. Results are written while
    # operands are still being read, so a MATMUL whose results overlap its own operands is undefined.
    ("m", 2, False), ("k", 2, False), ("n", 2, False),
    ("a_base", 4, False), ("a_stride", 4, False), ("w_base", 4, False), ("w_stride", 4, False),
    ("mode", 1, False),
    ("constants", 4, False),    # REQUANTIZE, GELU: the CONSTANT record of column 0,
    ("low", 2, True), ("high", 2, True),  # and the requantizer's limits (one pair for the product)
    ("gelu_table", 1, False), ("gelu_low", 2, True), ("gelu_high", 2, True),
    # SOFTMAX: integer_softmax's (pre, C, shift); the query's position and the local window
    # (0: global); key j is visible when j <= position and position - j < window
    ("softmax_pre", 1, False), ("softmax_constant", 4, False), ("softmax_shift", 1, False),
    ("position", 2, False), ("window", 2, False),
    # where results go, result [i, j] being row i (0..m-1), column j (0..n-1) of the product:
    #   by rows, banked:     bank (out_bank0 + i) mod B,
    #                        address out_address0 + ((out_bank0 + i) // B) * out_stride + j
    #   by rows, not banked: bank out_bank0, address out_address0 + i * out_stride + j
    #   transposed (WEIGHTS only): bank j mod B, address out_address0 + (j // B) * out_stride + out_offset + i
    # with B the space's bank count (rows for ACTIVATIONS, cols for WEIGHTS); a WEIGHTS word keeps
    # the result's low byte. SOFTMAX writes its probabilities (n of them) the same way.
    ("out_space", 1, False), ("out_transposed", 1, False), ("out_banked", 1, False),
    ("out_bank0", 1, False), ("out_address0", 4, False), ("out_stride", 4, False), ("out_offset", 2, False),
]
INFO = [
    ("magic", 4, False), ("gateware_version", 8, False), ("numerics_version", 2, False),
    ("rows", 1, False), ("cols", 1, False),
    ("activation_words", 4, False), ("weight_words", 4, False), ("constant_words", 4, False),
    ("gelu_tables", 1, False), ("max_payload", 2, False), ("softmax_length", 2, False),
    ("clock_hz", 4, False),
    # the whole token (contract/program.py): the program format and the PROGRAM words (0 and 0: no
    # programs), the longest NORM row (0: no vector units)
    ("program_version", 2, False), ("program_words", 2, False), ("norm_length", 2, False),
]
DRAM_INFO = [("dram_words", 4, False), ("dram_controller", 1, False), ("stream_words", 4, False)]
"""Where the device has DRAM, INFO's record goes on with this: its :data:`Space.DRAM` words, and
its DRAM controller: 0 where none needs the host (the simulated board's DRAM model is ready from
the start), else ``n`` for the ``n``-th of contract/dram_control.py's DRAM_CONTROLLERS, a board's
LiteDRAM, whose registers are the :data:`Space.CONTROL` space. A board's DRAM answers only once
the host has initialised it through them; until then DRAM commands wait. ``stream_words`` of the
DRAM words, the last ones, are not memory but the host's weight stream (a PCIe board without
enough memory, hdl/streamed_memory.py): a read there takes the next word the host pushed, in the
order the program reads them, and a write there is lost; 0 on a device whose DRAM is all memory.

The WEIGHTS space then continues into DRAM: WEIGHTS address ``weight_words + w`` of bank ``b`` is
byte ``b`` of DRAM word ``w`` (a device with DRAM has 16 weight banks, one a byte of the word).
Products read their W operand from block RAM or from DRAM (all of it from one: one that spans both is
BAD_ARGUMENT), and write results anywhere in WEIGHTS. WRITE and READ reach DRAM through the DRAM
space, whose words are whole DRAM words; EMBED's matrices lie in block RAM."""


def info_record(dram):
    """INFO's record on a device with DRAM (``dram`` true) or without."""
    return INFO + DRAM_INFO if dram else INFO


# COUNTERS: ``cycles`` clock cycles and ``matmul_cycles`` those spent running products; ``macs``
# m * k * n of every MATMUL applied; ``commands`` the command frames answered without an error
# (retries answered again included), ``errors`` the error answers of any kind (damaged frames and
# refused commands). A frame is counted once answered: a COUNTERS answer is the snapshot taken
# before its own frame is counted; RESET_COUNTERS zeroes them all, then counts itself (commands 1).
COUNTERS = [("cycles", 8, False), ("matmul_cycles", 8, False), ("macs", 8, False),
            ("commands", 4, False), ("errors", 4, False)]
VECTOR_COUNTERS = [("embed_cycles", 8, False), ("norm_cycles", 8, False), ("sample_cycles", 8, False),
                   ("program_cycles", 8, False)]
"""Where the device has the vector ops (INFO's ``norm_length`` > 0), COUNTERS' record goes on with
these: the cycles spent on EMBED, NORM and SAMPLE (their checks included, in a program too), and
those spent running TOKEN's and GENERATE's tokens (every op, its fetch and its checks; not the
sending of STREAM frames or of the answer)."""


DRAM_COUNTERS = [("dram_reads", 8, False), ("dram_writes", 8, False), ("copy_cycles", 8, False)]
"""Where the device has DRAM, COUNTERS' record ends with these: the DRAM words read and written
(each :data:`DRAM_WORD_BYTES` bytes on the DRAM's bus, a write of some of its bytes included), and
the cycles spent on COPY (its checks included, in a program too)."""


def counters_record(norm_length, dram_words=0):
    """COUNTERS' record on a device whose INFO reports ``norm_length`` (and ``dram_words``)."""
    return (COUNTERS + VECTOR_COUNTERS if norm_length else COUNTERS) + (DRAM_COUNTERS if dram_words else [])

CONSTANT = [("bias", 4, True), ("multiplier", 2, False), ("shift", 1, False), ("reserved", 1, False)]
"""A requantizer column's bias, multiplier and shift (its limits are the MATMUL's); of the shift,
the device keeps 6 bits (:data:`CONSTANT_WORD_BITS`)."""
NORM_COLUMN = [("bias", 4, True), ("gain", 2, True), ("reserved", 2, False)]
"""A LayerNorm column's gain and bias: a CONSTANTS word, as a CONSTANT record is."""
CONSTANT_WORD_BITS = 54
"""The bits a CONSTANTS word keeps: its low 54, every bit a unit reads (a CONSTANT's bias,
multiplier and 6 bits of shift; a NORM_COLUMN's bias and gain). WRITE drops the top 10 and READ
gives them as zeros: three 18-bit block RAMs wide, not four."""
INFO_MAGIC = int.from_bytes(b"NEOF", "little")

COPY = [("source", 4, False), ("words", 2, False), ("space", 1, False), ("address", 4, False)]
"""A device with DRAM: DRAM words ``source`` .. ``source + words - 1`` (at least one) copied into
block RAM, for the units that read only block RAM (requantizer records, LayerNorm columns, EMBED's
rows). Into WEIGHTS, word ``w`` goes to address ``address + w`` of every weight bank (byte ``b``
to bank ``b``); into CONSTANTS, to the words ``address + 2 w`` (its low 8 bytes) and ``address +
2 w + 1`` (each keeping CONSTANT_WORD_BITS). Any other space, or a word outside its memory, is
BAD_ARGUMENT."""

DRAM_TEST = [("start", 4, False), ("words", 4, False), ("seed", 4, False)]
"""A device with DRAM tests DRAM words ``start`` .. ``start + words - 1`` (at least one): it writes
each its :func:`dram_test_word`, then reads them all back, at the DRAM's pace. Executed again on a
retry (it is not one of APPLIED_ONCE: running it twice leaves the same words)."""
DRAM_TESTED = [("errors", 4, False), ("first_error", 4, False)]
"""DRAM_TEST's answer: the words that read back other than written, and the address of the first
(0xFFFFFFFF if none)."""


def dram_test_word(address, seed):
    """The 16 bytes DRAM_TEST writes at word ``address``: from x = (address ^ seed) mod 2**32, the
    32-bit lanes x, ~x, x rotated by 16 and x ^ 0xA5A5A5A5 (each word its own, so an address bit
    that does not reach the chip shows; each data bit both 0 and 1)."""
    x = (address ^ seed) & 0xFFFFFFFF
    lanes = (x, x ^ 0xFFFFFFFF, ((x << 16) | (x >> 16)) & 0xFFFFFFFF, x ^ 0xA5A5A5A5)
    return b"".join(lane.to_bytes(4, "little") for lane in lanes)


# -- the vector ops and the token ----------------------------------------------------------------
# Each writes one row (not banked: bank, then consecutive addresses); every word it reads or
# writes must lie in its bank, and every record it reads in CONSTANTS (else BAD_ARGUMENT).
EMBED = [
    # the residual row [d] of token ``id`` at ``position``: row ``id`` of the int8 matrix at
    # ``token_base`` (a WEIGHTS matrix in MATMUL's layout: row r in bank r % cols at
    # token_base + (r // cols) * d) requantized by CONSTANT record token_constants + id, plus row
    # ``position`` of the matrix at ``position_base`` requantized by record position_constants +
    # position, each part and their sum saturated to numerics.RESIDUAL
    ("id", 2, False), ("position", 2, False), ("d", 2, False),
    ("token_base", 4, False), ("position_base", 4, False),
    ("token_constants", 4, False), ("position_constants", 4, False),
    ("out_bank", 1, False), ("out_address", 4, False),
]
NORM = [
    # the residual row [d] (ACTIVATIONS) plus, if ``add``, the addend row (saturated to
    # numerics.RESIDUAL), written back; then its LayerNorm (kernels.integer_layer_norm) with the
    # NORM_COLUMN records from ``columns`` and these scalars, written to the out row. An addend row
    # that starts before the residual row in the same bank and overlaps it is undefined (the sums
    # are written back while the rows are still read); the same row as addend is fine
    ("d", 2, False), ("residual_bank", 1, False), ("residual_address", 4, False),
    ("add", 1, False), ("addend_bank", 1, False), ("addend_address", 4, False),
    ("columns", 4, False), ("multiplier", 2, False), ("shift", 1, False), ("low", 2, True), ("high", 2, True),
    ("mean_multiplier", 2, False), ("mean_shift", 1, False), ("epsilon", 6, False),
    ("out_bank", 1, False), ("out_address", 4, False),
]
SETTINGS = [
    # how the next id is chosen: argmax if ``greedy`` (the state is left as it is), else
    # kernels.integer_sample with (pre, constant, shift, k, top_p) from kernels.sampling_parameters
    # and the PRNG's ``state`` (kernels.first_state of the seed)
    ("greedy", 1, False), ("pre", 1, False), ("constant", 4, False), ("shift", 1, False),
    ("k", 1, False), ("top_p", 4, False), ("state", 4, False),
]
SAMPLE = [("n", 2, False), ("bank", 1, False), ("address", 4, False)] + SETTINGS
"""The next id from the int16 codes [n] at ``address`` of ACTIVATIONS bank ``bank``: a CHOICE."""
TOKEN = [("id", 2, False), ("position", 2, False)] + SETTINGS
"""Run the program for token ``id`` at ``position`` (contract/program.py): a CHOICE."""
CHOICE = [("id", 2, False), ("state", 4, False)]
"""The id chosen, and the PRNG's state after its draw."""
GENERATE = [("position", 2, False), ("count", 2, False), ("eos", 2, False), ("stop_at_eos", 1, False)] + SETTINGS
"""Generation on the device: the prompt's ids (2 bytes each, at least one) follow the record. The
device runs TOKEN for each at ``position`` onwards (those before the last choosing greedily, the
state untouched), then streams each id it chooses (a STREAM frame) and, unless it was the
``count``-th, was ``eos`` with ``stop_at_eos`` set, or filled the context (its position the
last), runs TOKEN for it at the next position. Then a GENERATED answer. Any byte that arrives
while it runs stops it between two tokens: INTERRUPTED, the caches holding every token it ran.
The checks of TOKEN come first, for every prompt id (BAD_ARGUMENT, nothing run); a generated
token whose program would be refused stops it there (BAD_ARGUMENT after the ids streamed)."""
STREAMED = [("index", 2, False), ("id", 2, False), ("state", 4, False)]
"""A STREAM frame: the ``index``-th id generated (from 0), and the PRNG's state after it."""
GENERATED = [("count", 2, False), ("stop", 1, False), ("state", 4, False)]
"""GENERATE's answer: the ids streamed, why it stopped (:class:`Stop`), the PRNG's state."""


class Stop(enum.IntEnum):
    """Why a GENERATE stopped."""
    COUNT = 0    # it streamed ``count`` ids
    EOS = 1      # the last id is ``eos`` (and ``stop_at_eos`` was set)
    CONTEXT = 2  # the last id's position is the context's last: the stream holds the context


def record_size(fields):
    """Bytes of a record."""
    return sum(size for _, size, _ in fields)


def pack_record(fields, **values):
    """The bytes of a record; fields not given are 0."""
    unknown = set(values) - {name for name, _, _ in fields}
    if unknown:
        raise ValueError(f"no such fields: {', '.join(sorted(unknown))}")
    return b"".join(int(values.get(name, 0)).to_bytes(size, "little", signed=signed)
                    for name, size, signed in fields)


def unpack_record(fields, data):
    """A dict of a record's fields; the data must be exactly its size."""
    if len(data) != record_size(fields):
        raise ValueError(f"a record of {record_size(fields)} bytes, not {len(data)}")
    values, at = {}, 0
    for name, size, signed in fields:
        values[name] = int.from_bytes(data[at:at + size], "little", signed=signed)
        at += size
    return values
