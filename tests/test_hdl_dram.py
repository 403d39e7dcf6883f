"""The accelerator with DRAM on the simulated board (its DRAM the timed model of sim/board_main.cpp)
against the reference device (host/accelerator_model.py): the DRAM space's words, products whose
W lies in DRAM and results written there, COPY, DRAM_TEST and selftest, the checks, the counters,
and a stuck address bit."""

import numpy as np
import pytest

from neofpga.contract.dram import BOARD_DRAMS, DRAM_WORD_BYTES, board_dram
from neofpga.contract.protocol import (ACCESS, ANSWER, COPY, DRAM_TEST, DRAM_TESTED, ERROR, MATMUL, READ, Error,
                                       FrameDecoder, Mode, Opcode, Space, counters_record, encode_frame, pack_record,
                                       unpack_record)
from neofpga.host.accelerator_model import AcceleratorModel
from neofpga.sim.board_process import SimulatedBoard, dram_option
from neofpga.sim.simulated_board import board_executable

from test_hdl_accelerator import RawLink, constant_records

DESIGN = dict(rows=2, cols=16, activation_words=512, weight_words=1024, constant_words=512, gelu_tables=1,
              softmax_length=64, max_payload=1024, norm_length=64, program_words=16, dram_words=2 ** 13,
              timeout_cycles=20_000, clock_hz=30_000_000)
WEIGHT_WORDS, DRAM_WORDS = DESIGN["weight_words"], DESIGN["dram_words"]
COUNTERS = counters_record(DESIGN["norm_length"], DRAM_WORDS)


@pytest.fixture(scope="module")
def executable():
    return board_executable(DESIGN, log=lambda line: None)


def start(executable, family="ulx3s", **options):
    return SimulatedBoard(executable, dram=dram_option(BOARD_DRAMS[family], DRAM_WORDS, DESIGN["clock_hz"]),
                          **options)


class Both:
    """The board and the reference device, sent the same frames; their answers (but COUNTERS') must agree."""

    def __init__(self, board):
        self.link = RawLink(board.url)
        self.model = AcceleratorModel(**{k: v for k, v in DESIGN.items() if k != "timeout_cycles"})
        self.sequence = 0

    def command(self, opcode, payload=b""):
        self.sequence = (self.sequence + 1) % 256
        frame = encode_frame(opcode, self.sequence, payload)
        answer = self.link.exchange(frame)
        assert answer is not None, f"no answer to opcode {opcode:#x}"
        if opcode not in (Opcode.COUNTERS, Opcode.INFO):
            (expected,) = FrameDecoder().feed(self.model.feed(frame))
            differ = next((i for i, (x, y) in enumerate(zip(answer.payload, expected.payload)) if x != y), None)
            assert (answer.opcode, answer.payload) == (expected.opcode, expected.payload), \
                f"opcode {opcode:#x}: the board answers {answer.opcode:#x}, the model {expected.opcode:#x}; " \
                f"{len(answer.payload)} and {len(expected.payload)} bytes, first differing at {differ}"
        else:
            self.model.feed(frame)
        return answer

    def write(self, space, bank, address, data, word_bytes):
        per_frame = (DESIGN["max_payload"] - 6) // word_bytes * word_bytes
        for at in range(0, len(data), per_frame):
            head = pack_record(ACCESS, space=space, bank=bank, address=address + at // word_bytes)
            assert self.command(Opcode.WRITE, head + data[at:at + per_frame]).opcode == Opcode.WRITE | ANSWER

    def read(self, space, bank, address, words, word_bytes):
        per_frame = DESIGN["max_payload"] // word_bytes
        return b"".join(self.command(Opcode.READ, pack_record(READ, space=space, bank=bank, address=address + at,
                                                              words=min(per_frame, words - at))).payload
                        for at in range(0, words, per_frame))

    def counters(self):
        return unpack_record(COUNTERS, self.command(Opcode.COUNTERS).payload)


def load(both, rng):
    """Every memory a product uses written with random words: activations, weights, constants, and all of DRAM."""
    for bank in range(DESIGN["rows"]):
        both.write(Space.ACTIVATIONS, bank, 0, rng.integers(-2 ** 12, 2 ** 12, DESIGN["activation_words"])
                   .astype("<i2").tobytes(), 2)
    for bank in range(DESIGN["cols"]):
        both.write(Space.WEIGHTS, bank, 0, rng.integers(-128, 128, WEIGHT_WORDS).astype("i1").tobytes(), 1)
    both.write(Space.CONSTANTS, 0, 0, constant_records(rng, DESIGN["constant_words"]).tobytes(), 8)
    both.write(Space.DRAM, 0, 0, rng.integers(-128, 128, DRAM_WORDS * DRAM_WORD_BYTES).astype("i1").tobytes(),
               DRAM_WORD_BYTES)


def random_product(rng):
    """A REQUANTIZE product with W in block RAM or DRAM, its results to activations or to WEIGHTS
    (block RAM or DRAM, by rows, banked or transposed), none over its operands."""
    m, k, n = int(rng.integers(1, 5)), int(rng.integers(1, 48)), int(rng.integers(1, 60))
    tiles = -(-n // 16)
    c = dict(m=m, k=k, n=n, mode=Mode.REQUANTIZE, a_base=int(rng.integers(0, 256)), a_stride=k,
             w_stride=k + int(rng.integers(0, 3)), constants=int(rng.integers(0, DESIGN["constant_words"] - n)),
             low=-128, high=127)
    span = (tiles - 1) * c["w_stride"] + k
    in_dram = rng.random() < 0.7
    c["w_base"] = WEIGHT_WORDS + int(rng.integers(0, DRAM_WORDS // 2 - span)) if in_dram else \
        int(rng.integers(0, WEIGHT_WORDS // 2 - span))
    out = rng.choice(["activations", "weights", "dram", "dram transposed"])
    if out == "activations":
        c.update(out_space=Space.ACTIVATIONS, out_banked=1, out_address0=256 + int(rng.integers(0, 64)),
                 out_stride=n)
    else:  # in the upper halves, which no W reads
        base = WEIGHT_WORDS // 2 if out == "weights" else WEIGHT_WORDS + DRAM_WORDS // 2
        c.update(out_space=Space.WEIGHTS, out_address0=base + int(rng.integers(0, 64)))
        if out == "dram transposed":
            c.update(out_transposed=1, out_stride=m + int(rng.integers(0, 3)), out_offset=int(rng.integers(0, 3)))
        else:
            c.update(out_banked=int(rng.integers(0, 2)), out_bank0=int(rng.integers(0, 16)), out_stride=n)
    return c


def dram_reads(c):
    """The DRAM words a product with W in DRAM reads: every k of every column tile, for every row tile."""
    return -(-c["n"] // 16) * -(-c["m"] // DESIGN["rows"]) * c["k"]


@pytest.mark.parametrize("family", ["ulx3s", "ecpix5"])
def test_products_with_weights_and_results_in_dram_match_the_reference(executable, family):
    rng = np.random.default_rng(7)
    with start(executable, family) as board:
        both = Both(board)
        load(both, rng)
        assert both.read(Space.DRAM, 0, 0, DRAM_WORDS, DRAM_WORD_BYTES) == \
            both.model.memory[Space.WEIGHTS][:, WEIGHT_WORDS:].T.tobytes()
        before = both.counters()
        assert before["dram_writes"] == DRAM_WORDS and before["dram_reads"] == DRAM_WORDS
        for _ in range(40):
            c = random_product(rng)
            start_counts = both.counters()
            assert both.command(Opcode.MATMUL, pack_record(MATMUL, **c)).opcode == Opcode.MATMUL | ANSWER
            counts = both.counters()
            expected = dram_reads(c) if c["w_base"] >= WEIGHT_WORDS else 0
            assert counts["dram_reads"] - start_counts["dram_reads"] == expected, c
            wrote = counts["dram_writes"] - start_counts["dram_writes"]
            if c["out_space"] == Space.WEIGHTS and c["out_address0"] >= WEIGHT_WORDS:
                # a transposed output writes whole words; by rows, a word for each result at most
                assert 0 < wrote <= c["m"] * c["n"], c
                if c.get("out_transposed"):
                    assert wrote == c["m"] * -(-c["n"] // 16), c
            else:
                assert wrote == 0, c
        for bank in range(DESIGN["rows"]):
            both.read(Space.ACTIVATIONS, bank, 0, DESIGN["activation_words"], 2)
        for bank in range(DESIGN["cols"]):
            both.read(Space.WEIGHTS, bank, 0, WEIGHT_WORDS, 1)
        both.read(Space.DRAM, 0, 0, DRAM_WORDS, DRAM_WORD_BYTES)


def test_a_product_whose_weights_span_block_ram_and_dram_is_refused(executable):
    rng = np.random.default_rng(8)
    with start(executable) as board:
        both = Both(board)
        c = random_product(rng)
        for w_base in (WEIGHT_WORDS - 1, WEIGHT_WORDS - c["k"] + 1, WEIGHT_WORDS + DRAM_WORDS - c["k"] + 1):
            c.update(w_base=w_base)
            answer = both.command(Opcode.MATMUL, pack_record(MATMUL, **c))
            assert (answer.opcode, answer.payload) == (ERROR, bytes([Error.BAD_ARGUMENT]))
        for access in (dict(space=Space.DRAM, bank=1, address=0), dict(space=Space.DRAM, bank=0, address=DRAM_WORDS),
                       dict(space=Space.WEIGHTS, bank=0, address=WEIGHT_WORDS),
                       dict(space=Space.CONTROL, bank=0, address=0), dict(space=7, bank=0, address=0)):
            answer = both.command(Opcode.WRITE, pack_record(ACCESS, **access) + bytes(16))
            assert (answer.opcode, answer.payload) == (ERROR, bytes([Error.BAD_ARGUMENT]))
        answer = both.command(Opcode.WRITE, pack_record(ACCESS, space=Space.DRAM, bank=0, address=0) + bytes(15))
        assert answer.opcode == ERROR  # not a whole DRAM word


def random_copy(rng):
    """A COPY into the weight banks or the constants, good or (a fifth) refused."""
    space = Space.WEIGHTS if rng.random() < 0.5 else Space.CONSTANTS
    words = int(rng.integers(1, 80))
    span = words if space == Space.WEIGHTS else 2 * words  # two records a word, from even or odd addresses
    depth = WEIGHT_WORDS if space == Space.WEIGHTS else DESIGN["constant_words"]
    c = dict(source=int(rng.integers(0, DRAM_WORDS - words + 1)), words=words, space=space,
             address=int(rng.integers(0, depth - span + 1)))
    if rng.random() < 0.2:
        c.update(rng.choice([dict(words=0), dict(source=DRAM_WORDS - words + 1), dict(space=Space.ACTIVATIONS),
                             dict(space=Space.DRAM), dict(address=WEIGHT_WORDS - words + 1, space=Space.WEIGHTS),
                             dict(address=DESIGN["constant_words"] - 2 * words + 1, space=Space.CONSTANTS)]))
    return c


def test_copies_match_the_reference(executable):
    """COPY into every weight bank or two CONSTANTS words a DRAM word (their unused bits dropped;
    from even and odd addresses), refused when it reaches past either memory, and its cycles
    counted."""
    rng = np.random.default_rng(9)
    with start(executable, "ecpix5") as board:
        both = Both(board)
        load(both, rng)
        refused = 0
        for _ in range(60):
            c = random_copy(rng)
            before = both.counters()
            answer = both.command(Opcode.COPY, pack_record(COPY, **c))
            after = both.counters()
            refused += answer.opcode == ERROR
            assert after["copy_cycles"] > before["copy_cycles"]
            assert after["dram_reads"] - before["dram_reads"] == (0 if answer.opcode == ERROR else c["words"])
        assert 0 < refused < 30
        for bank in range(DESIGN["cols"]):
            both.read(Space.WEIGHTS, bank, 0, WEIGHT_WORDS, 1)
        both.read(Space.CONSTANTS, 0, 0, DESIGN["constant_words"], 8)


def test_a_stuck_address_bit_aliases_dram_words(executable):
    """With address bit 3 stuck at 0, word 8 is word 0: what selftest's walking addresses find."""
    with start(executable, dram_stuck_bit=3) as board:
        link = RawLink(board.url)
        first, second = bytes(range(16)), bytes(range(100, 116))
        for sequence, (address, word) in enumerate([(0, first), (8, second)], 1):
            frame = encode_frame(Opcode.WRITE, sequence, pack_record(ACCESS, space=Space.DRAM, bank=0,
                                                                     address=address) + word)
            assert link.exchange(frame).opcode == Opcode.WRITE | ANSWER
        frame = encode_frame(Opcode.READ, 3, pack_record(READ, space=Space.DRAM, bank=0, address=0, words=1))
        assert link.exchange(frame).payload == second


def test_dram_test_writes_its_pattern_and_finds_no_errors_in_a_sound_dram(executable):
    """DRAM_TEST over all of DRAM and over a part: no errors, the words left as the reference's, and
    bad ranges refused."""
    with start(executable) as board:
        both = Both(board)
        for fields in (dict(start=0, words=DRAM_WORDS, seed=0x12345678), dict(start=100, words=77, seed=0)):
            answer = both.command(Opcode.DRAM_TEST, pack_record(DRAM_TEST, **fields))
            assert unpack_record(DRAM_TESTED, answer.payload) == dict(errors=0, first_error=0xFFFFFFFF)
        both.read(Space.DRAM, 0, 0, DRAM_WORDS, DRAM_WORD_BYTES)
        for fields in (dict(start=0, words=0), dict(start=DRAM_WORDS - 3, words=4)):
            answer = both.command(Opcode.DRAM_TEST, pack_record(DRAM_TEST, **fields))
            assert (answer.opcode, answer.payload) == (ERROR, bytes([Error.BAD_ARGUMENT]))


def test_selftest_passes_on_a_sound_dram_and_fails_on_a_stuck_address_bit(executable):
    """neofpga selftest's DRAM checks: walking addresses and the pattern over all of DRAM."""
    import serial
    from neofpga.host.driver import AcceleratorDriver
    from neofpga.host.link import Link
    from neofpga.host.selftest import run_selftest

    for stuck in (None, 11):
        with start(executable, dram_stuck_bit=stuck) as board:
            driver = AcceleratorDriver(Link(serial.serial_for_url(board.url, timeout=0.01), timeout=10))
            checks, _ = run_selftest(driver)
            driver.link.close()
        failed = {check.name for check in checks if not check.passed}
        assert failed == (set() if stuck is None else {"dram addresses", "dram patterns"}), checks
        if stuck is not None:
            patterns = next(check for check in checks if check.name == "dram patterns")
            # the words below 2**11 read what their aliases above it wrote last
            assert f"{DRAM_WORDS // 2:,} words wrong, the first at 0" in patterns.detail


@pytest.mark.slow
def test_selftest_passes_on_the_ulx3s_simulated_dram_design():
    """neofpga selftest --device sim --board ulx3s-85f --dram: every check, the pattern over all
    32 MB of the board's DRAM included. Not the ECPIX-5's: its 512 MB are 32 M words written and
    read back in simulation (13 minutes here, another run beside it), and tests/test_dram_program.py
    runs TinyStories-33M on its DRAM design."""
    from neofpga.host.board_backend import connect_board
    from neofpga.host.selftest import run_selftest

    board = "ulx3s-85f"
    driver, close = connect_board("sim", board=board, dram=True)
    try:
        checks, _ = run_selftest(driver)
    finally:
        close()
    assert all(check.passed for check in checks), [check for check in checks if not check.passed]
    patterns = next(check for check in checks if check.name == "dram patterns")
    assert f"{board_dram(board).words:,} words" in patterns.detail
