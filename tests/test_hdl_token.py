"""TOKEN on the gateware: host/token_program.py's program run by hdl/accelerator.py on the
simulated board, every logit code and choice equal to the golden model's, and bad tokens
refused without changing the device (test_token_program.py holds the same on the reference device).

The design is test_token_program.py's reference device with a 3 x 4 array (built once for the
module: about a minute)."""

import time

import numpy as np
import pytest
import serial
from test_token_program import DEVICE, odd, run_both, settings_for  # noqa: F401 (odd: the fixture)

from neofpga.contract.program import Relocation, Source, pack_entry, unpack_entry
from neofpga.contract.protocol import (CHOICE, TOKEN, FrameDecoder, Opcode, Space, encode_frame, pack_record,
                                       unpack_record)
from neofpga.host.driver import AcceleratorDriver
from neofpga.host.link import Link, LinkError
from neofpga.host.token_program import TokenProgram
from neofpga.sim.board_process import SimulatedBoard
from neofpga.sim.simulated_board import board_executable

DESIGN = dict(DEVICE, rows=3, cols=4, timeout_cycles=100_000)


@pytest.fixture(scope="module")
def executable():
    return board_executable(DESIGN, log=lambda line: None)


@pytest.fixture
def program(executable, odd):
    """The odd checkpoint's program on a fresh simulated board."""
    with SimulatedBoard(executable) as board:
        link = Link(serial.serial_for_url(board.url, timeout=0.01), timeout=10.0)
        yield TokenProgram(odd, AcceleratorDriver(link))
        link.close()


def memory(program):
    """Every activation word, and every weight word the program uses (the caches among them), read back."""
    driver, state = program.driver, {}
    for space, banks, depth, size in ((Space.ACTIVATIONS, DESIGN["rows"], DESIGN["activation_words"], 2),
                                      (Space.WEIGHTS, DESIGN["cols"], program.words_used["weight_words"], 1)):
        step = DESIGN["max_payload"] // size
        for bank in range(banks):
            state[space, bank] = b"".join(driver.read(space, bank, address, min(step, depth - address))
                                          for address in range(0, depth, step))
    return state


def exchange(link, frame, wait=10.0):
    """``frame`` sent as it is (its sequence number too); the answer frame."""
    link.transport.write(frame)
    decoder, deadline = FrameDecoder(), time.monotonic() + wait
    while time.monotonic() < deadline:
        frames = decoder.feed(link.transport.read(256))
        if frames:
            return frames[0]
    raise AssertionError("no answer")


@pytest.mark.parametrize("sampled", [False, True])
def test_a_token_a_command_equals_the_golden_model_past_the_window(program, odd, sampled):
    ids = np.random.default_rng(1).integers(0, odd.config.vocab_size, 10)  # window 7
    settings = settings_for(odd, temperature=1.2, top_k=20, top_p=0.9, seed=5) if sampled else settings_for(odd)
    run_both(odd, program, ids, settings)


def refused(program, **fields):
    """TOKEN with ``fields`` is refused BAD_ARGUMENT and changes no memory."""
    before = memory(program)
    with pytest.raises(LinkError, match="refused TOKEN: BAD_ARGUMENT"):
        program.driver.link.command(Opcode.TOKEN, pack_record(TOKEN, **{"greedy": 1, **fields}))
    return memory(program) == before


def test_bad_tokens_are_refused_and_change_nothing(program, odd):
    c = odd.config
    first = program.token(3, 0, dict(greedy=1))
    assert refused(program, id=c.vocab_size, position=1)
    assert refused(program, id=0, position=c.max_position_embeddings)
    assert refused(program, id=0, position=1, greedy=0, k=0)  # no candidates
    # the caches still hold position 0 alone: position 1 gives the golden model's codes
    run_both(odd, program, [3, 9], settings_for(odd))
    assert first["id"] < c.vocab_size


def test_a_program_that_would_write_outside_memory_runs_no_op(program, odd):
    """The head's product moved out of its bank from position 5 on: position 4 runs, and at
    position 5 no op runs (the device checks the whole program first)."""
    c = odd.config
    head = len(program.entries) - 1  # the head's product is the op before SAMPLE (PROGRAM word 0 is the header)
    opcode, fields, relocations = unpack_entry(program.entries[head - 1])
    assert opcode == Opcode.MATMUL and fields["out_address0"] == program.logits_base
    base = DESIGN["activation_words"] - c.vocab_size - 4
    bad = pack_entry(opcode, dict(fields, out_address0=base), [Relocation("out_address0", Source.POSITION)])
    program.driver.write(Space.PROGRAM, 0, head, bad)
    for position in range(5):
        assert program.token(3, position, dict(greedy=1))["id"] < c.vocab_size
    assert refused(program, id=3, position=5)


def test_a_retried_token_is_answered_again_with_its_choice_but_not_run_again(program, odd):
    settings = settings_for(odd, temperature=1.0, seed=9)
    driver, link = program.driver, program.driver.link

    def macs_of(*frames):
        """The MACs the device counts over ``frames`` sent as they are; their answers."""
        before = driver.counters()["macs"]
        answers = [exchange(link, frame) for frame in frames]
        link.sequence = 0  # past the frames' numbers
        return driver.counters()["macs"] - before, answers

    frame = encode_frame(Opcode.TOKEN, 77, pack_record(TOKEN, id=3, position=0, **settings))
    once, (first,) = macs_of(frame)
    twice, (again, retried) = macs_of(encode_frame(Opcode.TOKEN, 78, frame[6:-4]), encode_frame(Opcode.TOKEN, 78, frame[6:-4]))
    assert once == twice > 0  # the retry ran nothing
    assert first.payload == again.payload == retried.payload
    assert unpack_record(CHOICE, first.payload)["state"] != settings["state"]
