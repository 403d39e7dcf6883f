"""TOKEN on the gateware: host/token_program.py's program run by hdl/accelerator.py on the
simulated board, every logit code and choice equal to the golden model's, and bad tokens
refused without changing the device (test_token_program.py holds the same on the reference device).

The design is test_token_program.py's reference device with a 3 x 4 array (built once for the
module: about a minute)."""

import collections
import random
import time

import numpy as np
import pytest
import serial
from random_programs import random_entry
from test_token_program import (DEVICE, SAMPLERS, assert_stops_as_the_host_does, odd,  # noqa: F401 (odd: the fixture)
                                run_both, settings_for)

from neofpga.contract.gateware_version import gateware_version
from neofpga.contract.program import PROGRAM_OPS, RELOCATABLE, Relocation, Source, pack_entry, pack_header, unpack_entry
from neofpga.contract.protocol import (ACCESS, ANSWER, CHOICE, ERROR, GENERATE, GENERATED, READ, STREAM, STREAMED,
                                       TOKEN, Error, FrameDecoder, Opcode, Space, encode_frame, pack_record,
                                       unpack_record)
from neofpga.host.accelerator_model import AcceleratorModel, ModelTransport
from neofpga.host.board_backend import ProgramModel
from neofpga.host.driver import AcceleratorDriver
from neofpga.host.generation import generate
from neofpga.host.golden import golden_model
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
    repeated = encode_frame(Opcode.TOKEN, 78, frame[6:-4])  # the same TOKEN, a new number, sent twice
    twice, (again, retried) = macs_of(repeated, repeated)
    assert once == twice > 0  # the retry ran nothing
    assert first.payload == again.payload == retried.payload
    assert unpack_record(CHOICE, first.payload)["state"] != settings["state"]


# -- GENERATE ------------------------------------------------------------------------------------

@pytest.fixture
def board(program, odd):
    """The odd checkpoint generating on the simulated board: ProgramModel, one GENERATE a generation."""
    return ProgramModel(odd, program, program.driver.link, "sim")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_generate_on_the_device_equals_the_golden_model_in_one_command(board, odd, sampler):
    prompt = [5, 17, 2, 40]
    expected = generate(golden_model(odd), odd.tokenizer, prompt, sampler, 12, eos_id=-1)
    link = board.link
    commands = link.commands
    result = generate(board, odd.tokenizer, prompt, sampler, 12, eos_id=-1)
    assert result.new_ids == expected.new_ids and result.stop_reason == "max-new-tokens"
    assert link.commands - commands == 1


def test_generate_stops_at_eos_and_at_the_context_as_the_host_does(board, odd):
    assert_stops_as_the_host_does(board, odd)


def receive(link, wait=10.0):
    """The next frame the board sends."""
    decoder, deadline = link.decoder, time.monotonic() + wait
    while time.monotonic() < deadline:
        if link.frames:
            return link.frames.popleft()
        link.frames.extend(decoder.feed(link.transport.read(256)))
    raise AssertionError("no frame")


def test_a_byte_interrupts_generate_between_two_tokens_and_the_caches_hold_what_ran(program, odd):
    """GENERATE interrupted after two STREAM frames: INTERRUPTED, and the caches hold the prompt and
    every id streamed but the last (the one it had not run yet), as TOKEN then shows."""
    link, c = program.driver.link, odd.config
    prompt = [5, 17, 2, 40]
    record = pack_record(GENERATE, position=0, count=c.max_position_embeddings, **settings_for(odd))
    link.transport.write(encode_frame(Opcode.GENERATE, 90, record + np.array(prompt, "<u2").tobytes()))
    streamed = [unpack_record(STREAMED, receive(link).payload)["id"] for _ in range(2)]
    link.sequence = 0
    link.transport.write(encode_frame(Opcode.INFO, 1))
    while (frame := receive(link)).opcode == STREAM:
        streamed.append(unpack_record(STREAMED, frame.payload)["id"])
    assert (frame.opcode, frame.sequence, frame.payload) == (ERROR, 90, bytes([Error.INTERRUPTED]))
    assert receive(link).opcode == Opcode.INFO | ANSWER
    assert len(streamed) < c.max_position_embeddings - len(prompt)
    ran = prompt + streamed[:-1]
    golden = golden_model(odd)
    golden.forward(np.array([ran]))
    expected = np.rint(golden.forward(np.array([[streamed[-1]]]))[0, -1] / np.float32(odd.scales["logits"]))
    program.token(streamed[-1], len(ran), dict(greedy=1))
    np.testing.assert_array_equal(program.logits(), expected.astype(np.int64))


def test_a_generate_with_a_bad_prompt_id_runs_nothing(program, odd):
    c = odd.config
    program.token(3, 0, dict(greedy=1))
    before = memory(program)
    record = pack_record(GENERATE, position=1, count=4, greedy=1)
    for prompt in ([5, 17, c.vocab_size, 40], [5] * c.max_position_embeddings):
        with pytest.raises(LinkError, match="refused GENERATE: BAD_ARGUMENT"):
            program.driver.link.command(Opcode.GENERATE, record + np.array(prompt, "<u2").tobytes())
    for payload in (record, record + b"\x05", pack_record(GENERATE, position=1, count=0, greedy=1) + b"\x05\x00"):
        with pytest.raises(LinkError, match="refused GENERATE: BAD_ARGUMENT"):
            program.driver.link.command(Opcode.GENERATE, payload)
    assert memory(program) == before


def test_a_retried_generate_is_answered_again_without_its_stream(program, odd):
    driver, link = program.driver, program.driver.link
    payload = pack_record(GENERATE, position=0, count=3, **settings_for(odd, temperature=1.0, seed=4)) \
        + np.array([5, 17], "<u2").tobytes()

    def run(*sequences):
        """GENERATE sent with each sequence number: (the MACs counted, every frame received)."""
        before = driver.counters()["macs"]
        frames = []
        for sequence in sequences:
            link.transport.write(encode_frame(Opcode.GENERATE, sequence, payload))
            while (frame := receive(link)).opcode == STREAM:
                frames.append(frame)
            frames.append(frame)
        link.sequence = 0
        return driver.counters()["macs"] - before, frames

    once, first = run(60)
    twice, again = run(61, 61)
    assert [f.opcode for f in first] == [STREAM] * 3 + [Opcode.GENERATE | ANSWER]
    assert [f.payload for f in again] == [f.payload for f in first] + [first[-1].payload]  # no stream again
    assert once == twice > 0
    assert unpack_record(GENERATED, first[-1].payload)["count"] == 3


def test_the_shipped_model_runs_whole_tokens_on_the_simulated_board_past_its_window():
    """The shipped model (window 64) on the simulated board (the 9 x 16 array): 70 positions,
    every logit code and sampled choice the golden model's."""
    from neofpga.contract.design import SIMULATED_BOARD
    from neofpga.host.backends import load_source
    from neofpga.sim.simulated_board import start_simulated_board

    model = load_source(None).quantized()
    with start_simulated_board(SIMULATED_BOARD, log=lambda line: None) as board:
        link = Link(serial.serial_for_url(board.url, timeout=0.01), timeout=30.0)
        program = TokenProgram(model, AcceleratorDriver(link))
        ids = np.random.default_rng(2).integers(0, model.config.vocab_size, 70)
        run_both(model, program, ids, settings_for(model, temperature=0.8, top_k=40, seed=3))
        link.close()


# -- the gateware against the reference device, byte for byte ------------------------------------

class Twins:
    """The board and the reference device fed the same frames: each frame either sends back (a
    GENERATE's STREAM frames too) must be the same bytes."""

    def __init__(self, link, device):
        self.link, self.device = link, device
        self.sequence = 0
        self.answers = collections.Counter()

    def send(self, opcode, payload=b""):
        self.sequence = self.sequence % 255 + 1
        frame = encode_frame(opcode, self.sequence, payload)
        expected = FrameDecoder().feed(self.device.feed(frame))
        while not expected or expected[-1].opcode == STREAM:  # a running GENERATE's frames come from run()
            expected += FrameDecoder().feed(self.device.run())
        self.link.transport.write(frame)
        received = [receive(self.link) for _ in expected]
        assert received == expected, f"{Opcode(opcode).name} {payload.hex()}: {received} != {expected}"
        last = received[-1]
        self.answers[Error(last.payload[0]).name if last.opcode == ERROR else Opcode(opcode).name] += 1
        return last


def random_settings(rng, model):
    """SETTINGS: greedy, sampled, or (one in ten) out of range."""
    roll = rng.random()
    if roll < 0.4:
        settings = dict(greedy=1, state=rng.randrange(2 ** 32))
    else:
        settings = settings_for(model, temperature=rng.choice([0.3, 0.8, 1.5]), top_k=rng.choice([None, 1, 5, 64]),
                                top_p=rng.choice([None, 0.5, 0.9]), seed=rng.randrange(1, 2 ** 32))
    if roll > 0.9:
        settings.update(rng.choice([dict(greedy=0, k=0), dict(greedy=0, k=65), dict(greedy=0, top_p=0),
                                    dict(greedy=0, pre=17), dict(greedy=2)]))
    return settings


def test_the_gateware_answers_random_programs_and_commands_as_the_reference_device(program, odd):
    """The odd checkpoint's program on both, then TOKENs and GENERATEs at random ids, positions and
    settings (some out of range) while random program entries come and go (malformed ones, random
    fields, the real ones relocated out of their banks, a broken header): every frame and, at the
    end, every activation and cache word the same."""
    rng = random.Random(7)
    device = AcceleratorModel(**{k: v for k, v in DESIGN.items() if k != "timeout_cycles"},
                              gateware_version=gateware_version(DESIGN))
    reference = TokenProgram(odd, AcceleratorDriver(Link(ModelTransport(device), timeout=0)))
    assert reference.entries == program.entries
    twins = Twins(program.driver.link, device)
    c, entries = odd.config, program.entries
    header = pack_header(len(entries), c.vocab_size, c.max_position_embeddings)

    def write_entry(index, word):
        twins.send(Opcode.WRITE, pack_record(ACCESS, space=Space.PROGRAM, address=index) + word)

    for _ in range(120):
        roll = rng.random()
        if roll < 0.45:
            token = rng.randrange(c.vocab_size) if rng.random() < 0.9 else rng.randrange(c.vocab_size, 2 ** 16)
            position = rng.randrange(24) if rng.random() < 0.9 else rng.randrange(c.max_position_embeddings, 2 ** 16)
            twins.send(Opcode.TOKEN, pack_record(TOKEN, id=token, position=position, **random_settings(rng, odd)))
        elif roll < 0.6:
            prompt = [rng.randrange(c.vocab_size) if rng.random() < 0.95 else c.vocab_size
                      for _ in range(rng.randint(1, 3))]
            record = pack_record(GENERATE, position=rng.randrange(20), count=rng.randint(1, 4),
                                 eos=rng.randrange(c.vocab_size), stop_at_eos=rng.randint(0, 1),
                                 **random_settings(rng, odd))
            twins.send(Opcode.GENERATE, record + np.array(prompt, "<u2").tobytes())
        elif roll < 0.7:  # a random entry, most often malformed
            write_entry(rng.randint(1, len(entries)), random_entry(rng))
        elif roll < 0.8:  # a real entry with a relocatable field moved (often out of its bank)
            index = rng.randint(1, len(entries))
            opcode, fields, relocations = unpack_entry(entries[index - 1])
            if opcode in RELOCATABLE:
                name = rng.choice(RELOCATABLE[opcode])
                bits = 8 * {field: size for field, size, _ in PROGRAM_OPS[opcode]}[name]
                fields[name] = (fields[name] + rng.choice([1, 64, 2 ** 12, rng.randrange(2 ** bits)])) % 2 ** bits
                kept = [Relocation(RELOCATABLE[opcode][r["field"]], r["source"], r["ring"], r["shift"], r["mask"],
                                   r["scale"]) for r in relocations]
                write_entry(index, pack_entry(opcode, fields, kept))
        elif roll < 0.83:  # a broken header
            twins.send(Opcode.WRITE, pack_record(ACCESS, space=Space.PROGRAM, address=0) + rng.choice([
                pack_header(len(entries), c.vocab_size, c.max_position_embeddings)[:2] + rng.randbytes(78),
                pack_header(0, c.vocab_size, c.max_position_embeddings),
                pack_header(DESIGN["program_words"], c.vocab_size, c.max_position_embeddings)]))
        else:  # the program whole again
            write_entry(0, header)
            for index, word in enumerate(entries, 1):
                write_entry(index, word)
        if rng.random() < 0.2:
            twins.send(Opcode.READ, pack_record(READ, space=Space.ACTIVATIONS, bank=rng.randrange(DESIGN["rows"]),
                                                address=program.logits_base, words=c.vocab_size))
    assert memory(program) == memory(reference)
    assert twins.answers["TOKEN"] > 15 and twins.answers["GENERATE"] > 5 and twins.answers["BAD_ARGUMENT"] > 15


def test_an_access_to_a_space_the_design_lacks_is_refused_and_the_device_answers_on(executable):
    """Spaces 5 to 7 lie past the program design's five: once, counting such a WRITE's words never
    ended (the word size of a space past the table was 0) and the device answered nothing more."""
    with SimulatedBoard(executable) as board:
        link = Link(serial.serial_for_url(board.url, timeout=0.01), timeout=10.0)
        for sequence, space in enumerate((Space.DRAM, 6, 7, 13, 255), start=1):
            for opcode, payload in ((Opcode.WRITE, pack_record(ACCESS, space=space, bank=0, address=0) + bytes(16)),
                                    (Opcode.READ, pack_record(READ, space=space, bank=0, address=0, words=1))):
                answer = exchange(link, encode_frame(opcode, 2 * sequence + (opcode == Opcode.READ), payload))
                assert (answer.opcode, answer.payload) == (ERROR, bytes([Error.BAD_ARGUMENT])), (space, opcode)
        link.close()
