"""host/accelerator_model.py: the device's command semantics on small hand-worked cases."""

import numpy as np
import pytest
from neofpga.contract.numerics import NORM_EPSILON_MAX, NUMERICS_VERSION, RESIDUAL, SAMPLE_CANDIDATES
from neofpga.contract.program import PROGRAM_VERSION
from neofpga.contract.protocol import (ACCESS, ANSWER, CHOICE, CONSTANT, CONSTANT_WORD_BITS, EMBED, ERROR, INFO,
                                       INFO_MAGIC, MATMUL, NORM, NORM_COLUMN, READ, SAMPLE, SYNC, Error, Frame,
                                       FrameDecoder, Mode, Opcode, Space, counters_record, encode_frame, pack_record,
                                       unpack_record)
from neofpga.host.accelerator_model import AcceleratorModel, ModelTransport
from neofpga.host.driver import AcceleratorDriver, record_dtype
from neofpga.host.kernels import integer_layer_norm, integer_sample, requantize, residual_add, sampling_parameters
from neofpga.host.link import Link

ACT, WGT, CON, GELU = Space.ACTIVATIONS, Space.WEIGHTS, Space.CONSTANTS, Space.GELU

# A [3, 2] and W [3, 2]: A @ W.T = [[1, 2, -1], [3, 4, -1], [5, 6, -1]]
A = np.array([[1, 2], [3, 4], [5, 6]])
W = np.array([[1, 0], [0, 1], [1, -1]])
# identity requantizers (M / 2**shift = 1), biases 0, 100, 10, limits [-100, 105]
PRODUCT = np.array([[1, 102, 9], [3, 104, 9], [5, 105, 9]])


def small_device(**changes):
    """A 2 x 2 device with tiny memories."""
    return AcceleratorModel(**{**dict(rows=2, cols=2, activation_words=16, weight_words=16, constant_words=8,
                                      gelu_tables=2, max_payload=64, softmax_length=8, program_words=4,
                                      norm_length=8, gateware_version=7, clock_hz=48_000_000), **changes})


def send(model, opcode, payload=b"", sequence=1):
    """Feed one command frame; its one answer frame."""
    (answer,) = FrameDecoder().feed(model.feed(encode_frame(opcode, sequence, payload)))
    assert answer.sequence == sequence
    return answer


def refused(model, opcode, payload=b"", code=Error.BAD_ARGUMENT):
    """The command is answered with error ``code`` and changes no memory."""
    before = {space: memory.copy() for space, memory in model.memory.items()}
    assert send(model, opcode, payload) == Frame(ERROR, 1, bytes([code]))
    assert all(np.array_equal(before[space], model.memory[space]) for space in Space)
    return True


def matmul_record(**fields):
    return pack_record(MATMUL, **fields)


@pytest.fixture
def loaded():
    """The small device with A, W and the identity requantizers written through the host's AcceleratorDriver."""
    model = small_device()
    accelerator = AcceleratorDriver(Link(ModelTransport(model), timeout=0))
    for row in range(3):  # banked: row m in bank m % 2 at (m // 2) * 2
        accelerator.write(ACT, row % 2, row // 2 * 2, A[row].astype("<i2").tobytes())
        accelerator.write(WGT, row % 2, row // 2 * 2, W[row].astype("i1").tobytes())
    records = np.zeros(3, record_dtype(CONSTANT))
    records["bias"], records["multiplier"], records["shift"] = [0, 100, 10], 2 ** 15, 15
    accelerator.write(CON, 0, 0, records.tobytes())
    return model, accelerator


PRODUCT_FIELDS = dict(m=3, k=2, n=3, a_base=0, a_stride=2, w_base=0, w_stride=2, mode=Mode.REQUANTIZE, constants=0,
                      low=-100, high=105)


def test_info_reports_the_device():
    answer = send(small_device(), Opcode.INFO)
    assert answer.opcode == Opcode.INFO | ANSWER
    assert unpack_record(INFO, answer.payload) == dict(
        magic=INFO_MAGIC, gateware_version=7, numerics_version=NUMERICS_VERSION, rows=2, cols=2,
        activation_words=16, weight_words=16, constant_words=8, gelu_tables=2, max_payload=64,
        softmax_length=8, clock_hz=48_000_000, program_version=PROGRAM_VERSION, program_words=4, norm_length=8)


def test_write_then_read_every_space():
    model = small_device()
    words = {ACT: np.array([-2, 32767], "<i2"), WGT: np.array([-128, 5], "i1"),
             CON: np.array([(-3, 40000, 15, 0), (5, 2 ** 15, 2, 0)], record_dtype(CONSTANT))}
    for space, data in words.items():
        head = pack_record(ACCESS, space=space, bank=0, address=3)
        assert send(model, Opcode.WRITE, head + data.tobytes()) == Frame(Opcode.WRITE | ANSWER, 1)
        read = send(model, Opcode.READ, pack_record(READ, space=space, bank=0, address=3, words=2))
        assert read.payload == data.tobytes()
    knots = np.arange(-5, 5, dtype="<i4")
    send(model, Opcode.WRITE, pack_record(ACCESS, space=GELU, address=257) + knots.tobytes())
    assert np.array_equal(model.memory[GELU][0, 257:267], knots)


def test_a_constants_word_keeps_its_low_54_bits():
    model = small_device()
    words = np.array([2 ** 64 - 1, 0x8123_4567_89AB_CDEF], "<u8")
    send(model, Opcode.WRITE, pack_record(ACCESS, space=CON, address=1) + words.tobytes())
    read = send(model, Opcode.READ, pack_record(READ, space=CON, address=1, words=2))
    assert CONSTANT_WORD_BITS == 54
    assert np.frombuffer(read.payload, "<u8").tolist() == [2 ** 54 - 1, 0x0023_4567_89AB_CDEF]
    record = model.memory[CON][0, 2]  # of a CONSTANT: the shift's 6 bits, no reserved byte
    assert (record["shift"], record["reserved"]) == (0x23, 0)


def test_bad_accesses_are_refused():
    model = small_device()

    def access(space=ACT, bank=0, address=0):
        return pack_record(ACCESS, space=space, bank=bank, address=address)

    assert refused(model, Opcode.WRITE, access(space=5) + bytes(2))             # no such space
    assert refused(model, Opcode.WRITE, access(bank=2) + bytes(2))              # two ACTIVATIONS banks
    assert refused(model, Opcode.WRITE, access(address=15) + bytes(4))          # past the 16 words
    assert refused(model, Opcode.WRITE, access() + bytes(3))                    # 1.5 words
    assert refused(model, Opcode.WRITE, access(space=CON) + bytes(13))
    assert refused(model, Opcode.WRITE, bytes(5))                               # no ACCESS record
    assert refused(model, Opcode.READ, pack_record(READ, space=GELU, words=1))  # GELU is write only
    assert refused(model, Opcode.READ, pack_record(READ, space=Space.PROGRAM, words=1))  # and so is PROGRAM
    assert refused(model, Opcode.READ, pack_record(READ, space=WGT, bank=0, address=10, words=7))
    assert refused(model, Opcode.READ, pack_record(READ, space=ACT, words=16) + b"x")
    big = small_device(activation_words=64)
    assert refused(big, Opcode.READ, pack_record(READ, space=ACT, words=33))  # a 66-byte answer > max_payload
    assert send(big, Opcode.READ, pack_record(READ, space=ACT, words=32)).opcode == Opcode.READ | ANSWER
    assert refused(model, Opcode.INFO, b"\x00")
    assert refused(model, 0x42, code=Error.UNKNOWN_OPCODE)
    assert refused(model, Opcode.INFO | ANSWER, code=Error.UNKNOWN_OPCODE)


def test_requantized_product_by_rows_banked(loaded):
    model, accelerator = loaded
    accelerator.matmul(**PRODUCT_FIELDS, out_space=ACT, out_banked=1, out_bank0=1, out_address0=8, out_stride=3)
    # row i: bank (1 + i) % 2 at 8 + ((1 + i) // 2) * 3
    act = model.memory[ACT]
    assert act[1, 8:11].tolist() == [1, 102, 9]
    assert act[0, 11:14].tolist() == [3, 104, 9]
    assert act[1, 11:14].tolist() == [5, 105, 9]


def test_product_by_rows_not_banked(loaded):
    model, accelerator = loaded
    accelerator.matmul(**PRODUCT_FIELDS, out_space=ACT, out_bank0=1, out_address0=4, out_stride=4)
    assert model.memory[ACT][1, 4:16].tolist() == [1, 102, 9, 0, 3, 104, 9, 0, 5, 105, 9, 0]


def test_product_transposed_into_weights(loaded):
    model, accelerator = loaded
    accelerator.matmul(**PRODUCT_FIELDS, out_space=WGT, out_transposed=1, out_address0=8, out_stride=4, out_offset=1)
    # result [i, j]: bank j % 2 at 8 + (j // 2) * 4 + 1 + i
    w = model.memory[WGT]
    assert w[0, 9:12].tolist() == [1, 3, 5] and w[1, 9:12].tolist() == [102, 104, 105]
    assert w[0, 13:16].tolist() == [9, 9, 9]


def test_a_weights_word_keeps_the_low_byte(loaded):
    model, accelerator = loaded
    accelerator.write(ACT, 0, 12, np.array([100], "<i2").tobytes())
    accelerator.write(WGT, 0, 12, np.array([3], "i1").tobytes())
    accelerator.write(WGT, 1, 12, np.array([-2], "i1").tobytes())
    records = np.zeros(2, record_dtype(CONSTANT))
    records["multiplier"], records["shift"] = 2 ** 15, 15
    accelerator.write(CON, 0, 4, records.tobytes())
    accelerator.matmul(m=1, k=1, n=2, a_base=12, w_base=12, constants=4, low=-1000, high=1000, out_space=WGT,
                       out_address0=14)
    assert model.memory[WGT][0, 14:16].tolist() == [300 - 256, -200 + 256]  # 44, 56


def test_gelu_mode_interpolates_the_chosen_table(loaded):
    model, accelerator = loaded
    # table 1: knot j = 2 (j * 256 - 32768), so the unit doubles its input exactly
    knots = 2 * (np.arange(257) * 256 - 32768)
    accelerator.write(GELU, 0, 257, knots.astype("<i4").tobytes())
    gelu = {**PRODUCT_FIELDS, "mode": Mode.GELU}
    accelerator.matmul(**gelu, gelu_table=1, gelu_low=-1000, gelu_high=200, out_space=ACT, out_address0=4,
                       out_stride=3)
    assert model.memory[ACT][0, 4:13].tolist() == [2, 200, 18, 6, 200, 18, 10, 200, 18]
    assert refused(model, Opcode.MATMUL, matmul_record(**gelu, gelu_table=2))


def test_softmax_mode_masks_causally_and_by_window(loaded):
    model, accelerator = loaded
    # q = 0: every score is 0, so the visible keys share the probability equally
    fields = dict(m=1, k=1, n=4, a_base=15, w_base=0, w_stride=2, mode=Mode.SOFTMAX, softmax_pre=0,
                  softmax_constant=2 ** 16, softmax_shift=16, position=2, out_space=ACT, out_address0=8)
    accelerator.matmul(**fields)
    assert model.memory[ACT][0, 8:12].tolist() == [10923, 10923, 10923, 0]  # keys 0..2 of 3
    accelerator.matmul(**fields, window=2)
    assert model.memory[ACT][0, 8:12].tolist() == [0, 16384, 16384, 0]      # keys 1 and 2
    assert refused(model, Opcode.MATMUL, matmul_record(**{**fields, "m": 2}))
    assert refused(model, Opcode.MATMUL, matmul_record(**{**fields, "n": 9}))  # softmax_length 8


def test_bad_products_are_refused(loaded):
    model, accelerator = loaded
    good = dict(PRODUCT_FIELDS, out_space=ACT, out_address0=4, out_stride=3)
    accelerator.matmul(**good)
    for change in [dict(m=0), dict(a_base=15), dict(w_stride=15), dict(constants=6), dict(mode=3),
                   dict(out_space=CON), dict(out_transposed=1), dict(out_address0=14), dict(out_bank0=2)]:
        assert refused(model, Opcode.MATMUL, matmul_record(**{**good, **change})), change
    assert refused(model, Opcode.MATMUL, matmul_record(**good)[:-1])


def test_counters_count_commands_errors_and_macs(loaded):
    model, accelerator = loaded
    before = accelerator.counters()
    accelerator.matmul(**PRODUCT_FIELDS, out_space=ACT, out_address0=4, out_stride=3)
    send(model, 0x42)
    after = accelerator.counters()
    assert after["macs"] - before["macs"] == 3 * 2 * 3
    assert after["commands"] - before["commands"] == 2  # the first COUNTERS and MATMUL (not the unknown
    # one, an error, nor the second COUNTERS: an answer counts the frames answered before it)
    assert after["errors"] - before["errors"] == 1
    assert after["cycles"] == after["matmul_cycles"] == 0
    accelerator.reset_counters()
    assert accelerator.counters() == dict(cycles=0, matmul_cycles=0, macs=0, commands=1, errors=0, embed_cycles=0,
                                          norm_cycles=0, sample_cycles=0, program_cycles=0)


def test_damaged_frames_are_answered_with_their_sequence():
    model = small_device()
    frame = bytearray(encode_frame(Opcode.INFO, 9))
    frame[-1] ^= 1
    assert FrameDecoder().feed(model.feed(frame)) == [Frame(ERROR, 9, bytes([Error.BAD_CRC]))]
    too_long = encode_frame(Opcode.WRITE, 10, bytes(65))
    assert FrameDecoder().feed(model.feed(too_long))[0] == Frame(ERROR, 10, bytes([Error.TOO_LONG]))
    assert model.idle() == b""
    assert model.feed(encode_frame(Opcode.INFO, 11)[:5]) == b""  # SYNC, opcode, sequence, half the length
    assert FrameDecoder().feed(model.idle()) == [Frame(ERROR, 11, bytes([Error.TRUNCATED]))]
    model.feed(SYNC + bytes([Opcode.INFO]))
    assert FrameDecoder().feed(model.idle()) == [Frame(ERROR, 0, bytes([Error.TRUNCATED]))]  # no sequence yet
    assert unpack_record(counters_record(8), send(model, Opcode.COUNTERS).payload)["errors"] == 4


def overlapping_product(model):
    """A MATMUL whose result overwrites its own input: A = [1, 2] -> [1, 2] @ [[1, 1], [0, 1]].T = [3, 2]."""
    model.memory[ACT][0, :2] = [1, 2]
    model.memory[WGT][:, :2] = [[1, 1], [0, 1]]
    model.memory[CON][0, :2] = np.array([(0, 2 ** 15, 15, 0)] * 2, record_dtype(CONSTANT))
    return encode_frame(Opcode.MATMUL, 5, matmul_record(m=1, k=2, n=2, out_space=ACT, mode=Mode.REQUANTIZE, low=-100,
                                                        high=100))


def test_a_retried_matmul_is_answered_but_not_applied_again():
    model = small_device()
    frame = overlapping_product(model)
    answers = FrameDecoder().feed(model.feed(frame + frame))
    assert answers == [Frame(Opcode.MATMUL | ANSWER, 5)] * 2
    assert model.memory[ACT][0, :2].tolist() == [3, 2]  # applied twice it would be [5, 2]
    assert model.counters["macs"] == 4


def test_only_the_previous_frame_counts_as_retried():
    model = small_device()
    frame = overlapping_product(model)
    model.feed(frame)
    send(model, Opcode.READ, pack_record(READ, space=ACT, words=2), sequence=6)
    model.feed(frame)  # not consecutive: a new command with a reused sequence
    assert model.memory[ACT][0, :2].tolist() == [5, 2]
    send(model, Opcode.INFO, sequence=5)
    model.feed(frame)  # same sequence, other opcode before it
    assert model.memory[ACT][0, :2].tolist() == [7, 2]


def test_a_retried_reset_is_not_applied_but_reads_run_again():
    model = small_device()
    reset = encode_frame(Opcode.RESET_COUNTERS, 3)
    model.feed(reset + reset)  # applied once (then counted: commands 1), then answered again (commands 2)
    counters = encode_frame(Opcode.COUNTERS, 4)
    first, second = FrameDecoder().feed(model.feed(counters + counters))
    assert unpack_record(counters_record(8), first.payload)["commands"] == 2
    assert unpack_record(counters_record(8), second.payload)["commands"] == 3


def test_a_failed_command_runs_again_when_retried():
    model = small_device()
    bad = encode_frame(Opcode.WRITE, 3, pack_record(ACCESS, space=ACT, address=16) + bytes(2))
    assert FrameDecoder().feed(model.feed(bad + bad)) == [Frame(ERROR, 3, bytes([Error.BAD_ARGUMENT]))] * 2
    assert model.counters["errors"] == 2


# -- the vector ops --------------------------------------------------------------------------------

def vector_device():
    """A 2 x 4 device with vector units, random int8 weights and random CONSTANTS words."""
    rng = np.random.default_rng(7)
    model = small_device(cols=4, activation_words=64, weight_words=64, constant_words=32)
    model.memory[WGT][:] = rng.integers(-128, 128, model.memory[WGT].shape)
    records = model.memory[CON][0]
    records["bias"], records["multiplier"] = rng.integers(-2 ** 20, 2 ** 20, 32), rng.integers(2 ** 14, 2 ** 16, 32)
    records["shift"] = rng.integers(4, 12, 32)
    return model, rng


def test_embed_adds_the_token_row_and_the_position_row_in_residual_units():
    model, _ = vector_device()
    # rows of 6 over 4 banks: row r in bank r % 4 at base + (r // 4) * 6
    fields = dict(id=5, position=2, d=6, token_base=1, position_base=20, token_constants=3, position_constants=10,
                  out_bank=1, out_address=40)
    assert send(model, Opcode.EMBED, pack_record(EMBED, **fields), sequence=9).opcode == Opcode.EMBED | ANSWER
    wgt, con = model.memory[WGT], model.memory[CON][0]
    parts = [requantize(wgt[r % 4, base + r // 4 * 6:][:6].astype(np.int64),
                        *(con[record][f] for f in ("bias", "multiplier", "shift")), *RESIDUAL)
             for r, base, record in ((5, 1, 8), (2, 20, 12))]
    assert model.memory[ACT][1, 40:46].tolist() == residual_add(*parts).tolist()
    assert refused(model, Opcode.EMBED, pack_record(EMBED, **dict(fields, position=30, position_constants=0)))
    assert refused(model, Opcode.EMBED, pack_record(EMBED, **dict(fields, token_constants=27)))  # record 32
    assert refused(model, Opcode.EMBED, pack_record(EMBED, **dict(fields, out_address=59)))


@pytest.mark.parametrize("add", [0, 1])
def test_norm_adds_writes_the_residual_back_and_normalises_it(add):
    model, rng = vector_device()
    residual, addend = rng.integers(-32768, 32768, 8), rng.integers(-32768, 32768, 8)
    residual[0], addend[0] = 32767, 32767  # the add saturates
    model.memory[ACT][0, 3:11], model.memory[ACT][1, 20:28] = residual, addend
    columns = model.memory[CON][0, 16:24].view(record_dtype(NORM_COLUMN))
    fields = dict(d=8, residual_bank=0, residual_address=3, add=add, addend_bank=1, addend_address=20, columns=16,
                  multiplier=40000, shift=20, low=-1000, high=30000, mean_multiplier=2 ** 15, mean_shift=18,
                  epsilon=77, out_bank=1, out_address=40)
    assert send(model, Opcode.NORM, pack_record(NORM, **fields), sequence=9).opcode == Opcode.NORM | ANSWER
    x = residual_add(residual, addend) if add else residual
    assert model.memory[ACT][0, 3:11].tolist() == x.tolist()
    expected = integer_layer_norm(x, columns["gain"], columns["bias"], 40000, 20, -1000, 30000, 2 ** 15, 18, 77)
    assert model.memory[ACT][1, 40:48].tolist() == expected.tolist()
    assert refused(model, Opcode.NORM, pack_record(NORM, **dict(fields, d=9)))  # norm_length 8
    assert refused(model, Opcode.NORM, pack_record(NORM, **dict(fields, columns=25)))
    assert refused(model, Opcode.NORM, pack_record(NORM, **dict(fields, add=1, addend_address=57)))
    assert refused(model, Opcode.NORM, pack_record(NORM, **dict(fields, epsilon=NORM_EPSILON_MAX + 1)))


def test_sample_chooses_as_the_kernels_do():
    model, rng = vector_device()
    codes = rng.integers(-3000, 3000, 30)
    codes[[4, 9]] = 3000  # a tie for the top: the lower id
    model.memory[ACT][1, 2:32] = codes
    greedy = send(model, Opcode.SAMPLE, pack_record(SAMPLE, n=30, bank=1, address=2, greedy=1, state=99), sequence=9)
    assert unpack_record(CHOICE, greedy.payload) == dict(id=4, state=99)
    pre, constant, shift, k, p = sampling_parameters(0.01, 1.0, 10, 0.8)
    for state in (1, 12345, 2 ** 32 - 1):
        answer = send(model, Opcode.SAMPLE, pack_record(SAMPLE, n=30, bank=1, address=2, greedy=0, pre=pre,
                                                       constant=constant, shift=shift, k=k, top_p=p, state=state),
                      sequence=10)
        token, after = integer_sample(codes, pre, constant, shift, k, p, state)
        assert unpack_record(CHOICE, answer.payload) == dict(id=token, state=after)
    sampled = dict(n=30, bank=1, address=2, greedy=0, pre=pre, constant=constant, shift=shift, k=k, top_p=p)
    assert refused(model, Opcode.SAMPLE, pack_record(SAMPLE, **dict(sampled, k=SAMPLE_CANDIDATES + 1)))
    assert refused(model, Opcode.SAMPLE, pack_record(SAMPLE, **dict(sampled, top_p=0)))
    assert refused(model, Opcode.SAMPLE, pack_record(SAMPLE, **dict(sampled, address=40)))


def test_a_device_without_vector_units_or_programs_knows_none_of_their_opcodes():
    model = small_device(norm_length=0, program_words=0)
    for opcode in (Opcode.EMBED, Opcode.NORM, Opcode.SAMPLE, Opcode.TOKEN, Opcode.GENERATE):
        assert refused(model, opcode, code=Error.UNKNOWN_OPCODE)
    assert refused(model, Opcode.WRITE, pack_record(ACCESS, space=Space.PROGRAM))  # no PROGRAM memory
