"""host/token_program.py on the reference device: one TOKEN a token gives the golden model's
integers (every logit code) and its choices, greedy and sampled, past the local window."""

import numpy as np
import pytest
from faulty_transport import FaultyTransport
from neofpga.contract.errors import UserError
from neofpga.contract.program import Relocation, Source, pack_entry, unpack_entry
from neofpga.contract.protocol import (ANSWER, CHOICE, ERROR, GENERATE, STREAM, STREAMED, TOKEN, Error, FrameDecoder, Opcode,
                                       Space, encode_frame, pack_record, unpack_record)
from neofpga.host.accelerator_model import AcceleratorModel, ModelTransport
from neofpga.host.backends import load_source
from neofpga.host import board_backend
from neofpga.host.board_backend import ProgramModel
from neofpga.host.driver import AcceleratorDriver
from neofpga.host.generation import generate
from neofpga.host.golden import golden_model
from neofpga.host.kernels import argmax, first_state, integer_sample, sampling_parameters
from neofpga.host.link import Link, LinkError
from neofpga.host.quantize import quantize_checkpoint
from neofpga.host.sampling import Sampler
from neofpga.host.token_program import TokenProgram
from neofpga.host.training.corpus import calibration_text

DEVICE = dict(rows=4, cols=8, activation_words=8192, weight_words=65536, constant_words=8192, gelu_tables=4,
              max_payload=1024, softmax_length=256, program_words=512, norm_length=256)


@pytest.fixture(scope="module")
def odd(checkpoints):
    """Window 7, 3 layers (local, global, local), width 48: not a multiple of the array's 3 rows."""
    source = load_source(checkpoints["local-global-local"])
    return quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(4)))


@pytest.fixture(scope="module")
def default():
    """The shipped default model (window 64, context 256)."""
    return load_source(None).quantized()


def open_program(model, **device):
    device = AcceleratorModel(**{**DEVICE, **device})
    driver = AcceleratorDriver(Link(ModelTransport(device), timeout=0))
    return TokenProgram(model, driver), device


def settings_for(model, temperature=None, top_k=None, top_p=None, seed=0):
    """TOKEN's SETTINGS: greedy without a temperature, else the sampler's integers."""
    if temperature is None:
        return dict(greedy=1)
    pre, constant, shift, k, p = sampling_parameters(model.scales["logits"], temperature, top_k, top_p)
    return dict(greedy=0, pre=pre, constant=constant, shift=shift, k=k, top_p=p, state=first_state(seed))


def run_both(model, program, ids, settings):
    """Feed ``ids`` through TOKEN and through the golden model: every logit code and choice equal."""
    golden = golden_model(model)
    scale = np.float32(model.scales["logits"])
    state = settings.get("state", 0)
    for position, token in enumerate(ids):
        choice = program.token(token, position, dict(settings, state=state))
        codes = program.logits()
        expected = np.rint(golden.forward(np.array([[token]]))[0, -1] / scale).astype(np.int64)
        np.testing.assert_array_equal(codes, expected, err_msg=f"logits at position {position}")
        if settings["greedy"]:
            assert choice == dict(id=int(argmax(expected)), state=state)
        else:
            p = settings
            chosen, state = integer_sample(expected, p["pre"], p["constant"], p["shift"], p["k"], p["top_p"], state)
            assert choice == dict(id=chosen, state=state)


@pytest.mark.parametrize("sampled", [False, True])
def test_a_token_a_command_equals_the_golden_model_past_the_window(odd, sampled):
    program, device = open_program(odd, rows=3, cols=4)
    ids = np.random.default_rng(1).integers(0, odd.config.vocab_size, 12)  # window 7
    settings = settings_for(odd, temperature=1.2, top_k=20, top_p=0.9, seed=5) if sampled else settings_for(odd)
    run_both(odd, program, ids, settings)


def test_the_shipped_model_runs_whole_tokens_in_the_ulx3s_85f_memories(default):
    """The shipped model with its program in contract/design.py's RESIDENT_MEMORIES (the ULX3S-85F's
    and ECPIX-5's), past its window of 64."""
    from neofpga.contract.design import PROGRAM_ROWS, RESIDENT_MEMORIES

    program, device = open_program(default, rows=PROGRAM_ROWS, cols=16, **RESIDENT_MEMORIES)
    ids = np.random.default_rng(2).integers(0, default.config.vocab_size, 70)  # window 64
    run_both(default, program, ids, settings_for(default, temperature=0.8, top_k=40, seed=3))


def refused(program, device, **fields):
    """TOKEN with ``fields`` is refused BAD_ARGUMENT and changes no memory."""
    before = {space: memory.copy() for space, memory in device.memory.items()}
    with pytest.raises(LinkError, match="refused TOKEN: BAD_ARGUMENT"):
        program.driver.link.command(Opcode.TOKEN, pack_record(TOKEN, **{"greedy": 1, **fields}))
    return all(np.array_equal(before[space], device.memory[space]) for space in Space)


def test_bad_tokens_are_refused_and_change_nothing(odd):
    program, device = open_program(odd, rows=3, cols=4)
    program.token(3, 0, dict(greedy=1))
    c = odd.config
    assert refused(program, device, id=c.vocab_size, position=1)
    assert refused(program, device, id=0, position=c.max_position_embeddings)
    assert refused(program, device, id=0, position=1, greedy=0, k=0)  # no candidates
    assert program.token(3, 1, dict(greedy=1))["id"] < c.vocab_size


def test_a_program_that_would_write_outside_memory_runs_no_op(odd):
    """An op late in the program, relocated out of its bank at some positions only: the ops before
    it do not run either (the device checks the whole program first)."""
    program, device = open_program(odd, rows=3, cols=4)
    c, words = odd.config, device.memory[Space.PROGRAM][0]
    last = len(program.entries)  # the head's product is the op before SAMPLE
    opcode, fields, relocations = unpack_entry(words[last - 1].tobytes())
    assert opcode == Opcode.MATMUL and fields["out_address0"] == program.logits_base
    # logits at an address that moves with the position, past the bank's end from position 5 on
    base = DEVICE["activation_words"] - c.vocab_size - 4
    bad = pack_entry(opcode, dict(fields, out_address0=base), [Relocation("out_address0", Source.POSITION)])
    program.driver.write(Space.PROGRAM, 0, last - 1, bad)
    assert program.token(3, 4, dict(greedy=1))["id"] < c.vocab_size
    assert refused(program, device, id=3, position=5)
    # an entry that is not an op of a program
    program.driver.write(Space.PROGRAM, 0, 1, bytes([Opcode.READ]) + bytes(79))
    assert refused(program, device, id=3, position=0)


def test_a_device_without_programs_or_room_for_this_one_is_refused_before_any_upload(odd):
    with pytest.raises(UserError, match="runs no programs"):
        open_program(odd, program_words=0)
    with pytest.raises(UserError, match="not a power of two"):
        open_program(odd, rows=3, cols=6)
    with pytest.raises(UserError, match="frames of 64 bytes"):
        open_program(odd, rows=3, cols=4, max_payload=64)
    device = AcceleratorModel(**dict(DEVICE, rows=3, cols=4, program_words=10))
    with pytest.raises(UserError, match="program words"):
        TokenProgram(odd, AcceleratorDriver(Link(ModelTransport(device), timeout=0)))
    assert device.counters["commands"] == 1  # INFO only


def test_open_board_model_runs_the_program_and_falls_back_per_op_where_it_does_not_fit(odd, monkeypatch):
    def connect(device):
        driver = AcceleratorDriver(Link(ModelTransport(AcceleratorModel(**device)), timeout=0))
        monkeypatch.setattr(board_backend, "connect_board", lambda *args, **kwargs: (driver, lambda: None))

    connect(dict(DEVICE, rows=3, cols=4))
    assert isinstance(board_backend.open_board_model("sim", odd), ProgramModel)
    assert not isinstance(board_backend.open_board_model("sim", odd, per_op=True), ProgramModel)
    connect(dict(DEVICE, rows=3, cols=4, program_words=10))
    assert not isinstance(board_backend.open_board_model("sim", odd), ProgramModel)
    with pytest.raises(UserError, match="program words"):
        board_backend.open_board_model("sim", odd, residency="resident")


def test_a_retried_token_is_answered_again_with_its_choice_but_not_run_again(odd):
    program, device = open_program(odd, rows=3, cols=4)
    settings = settings_for(odd, temperature=1.0, seed=9)
    frame = encode_frame(Opcode.TOKEN, 77, pack_record(TOKEN, id=3, position=0, **settings))
    (first,) = FrameDecoder().feed(device.feed(frame))
    memory = {space: words.copy() for space, words in device.memory.items()}
    (again,) = FrameDecoder().feed(device.feed(frame))
    assert again == first and unpack_record(CHOICE, first.payload)["state"] != settings["state"]
    assert all(np.array_equal(memory[space], device.memory[space]) for space in Space)


SAMPLERS = [Sampler(), Sampler(temperature=0.9, top_k=30, top_p=0.95, seed=11)]


def program_board(model, faults=None, **device):
    """ProgramModel on a fresh reference device (``faults``: FaultyTransport's); returns (board, device, link)."""
    program, device = open_program(model, **device)
    if faults is not None:
        link = Link(FaultyTransport(ModelTransport(device), np.random.default_rng(faults.pop("seed")), **faults),
                    timeout=0)
        program.driver.link = link
    return ProgramModel(model, program, program.driver.link, "model"), device, program.driver.link


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_generate_on_the_device_equals_the_golden_model_in_one_command(odd, sampler):
    board, device, link = program_board(odd, rows=3, cols=4)
    prompt = [5, 17, 2, 40]
    expected = generate(golden_model(odd), odd.tokenizer, prompt, sampler, 14, eos_id=-1)
    commands = link.commands
    streamed = []
    result = generate(board, odd.tokenizer, prompt, sampler, 14, eos_id=-1, write=streamed.append)
    assert result.new_ids == expected.new_ids and result.stop_reason == "max-new-tokens"
    assert link.commands - commands == 1 and streamed == [text for text in streamed if text]
    kept = generate(board, odd.tokenizer, prompt, sampler, 14, eos_id=-1, keep_logits=True)
    assert kept.new_ids == expected.new_ids  # TOKEN a token, the host choosing from the logits read back


def test_generate_stops_at_eos_and_at_the_context_as_the_host_does(odd):
    board, device, link = program_board(odd, rows=3, cols=4)
    assert_stops_as_the_host_does(board, odd)


def assert_stops_as_the_host_does(board, model):
    """GENERATE on ``board`` stops at EOS, and at the context, where the golden model's loop does."""
    golden = golden_model(model)
    prompt = [5, 17, 2, 40]
    eos = generate(golden, model.tokenizer, prompt, Sampler(), 10, eos_id=-1).new_ids[6]
    expected = generate(golden, model.tokenizer, prompt, Sampler(), 10, eos_id=eos)
    result = generate(board, model.tokenizer, prompt, Sampler(), 10, eos_id=eos)
    assert (result.new_ids, result.stop_reason) == (expected.new_ids, "eos") and result.new_ids[-1] == eos
    long_prompt = list(range(10, 10 + model.config.max_position_embeddings - 3))
    expected = generate(golden, model.tokenizer, long_prompt, Sampler(), 10, eos_id=-1)
    result = generate(board, model.tokenizer, long_prompt, Sampler(), 10, eos_id=-1)
    assert (result.new_ids, result.stop_reason) == (expected.new_ids, "context") and len(result.new_ids) == 3


@pytest.mark.parametrize("seed", [0, 1, 11])  # 11: a run whose answer alone is lost
def test_generate_through_link_damage_resumes_and_gives_the_same_ids(odd, seed, capsys):
    sampler = SAMPLERS[1]
    prompt = [5, 17, 2, 40]
    expected = generate(golden_model(odd), odd.tokenizer, prompt, sampler, 20, eos_id=-1)
    board, device, link = program_board(odd, faults=dict(seed=seed, flip=0.03, drop=0.02, duplicate=0.01,
                                                                garbage=0.01), rows=3, cols=4)
    result = generate(board, odd.tokenizer, prompt, sampler, 20, eos_id=-1)
    assert result.new_ids == expected.new_ids
    assert link.resends > 0 and "running GENERATE again" in capsys.readouterr().err


def test_a_frame_during_generate_interrupts_it_between_tokens(odd):
    program, device = open_program(odd, rows=3, cols=4)
    settings = settings_for(odd)
    frame = encode_frame(Opcode.GENERATE, 9, pack_record(GENERATE, count=8, **settings) + bytes([5, 0, 17, 0]))
    assert device.feed(frame) == b""  # it runs; its frames come as the line is read
    first = FrameDecoder().feed(device.run())
    assert [f.opcode for f in first] == [STREAM] and unpack_record(STREAMED, first[0].payload)["index"] == 0
    answers = FrameDecoder().feed(device.feed(encode_frame(Opcode.INFO, 10)))
    assert [(f.opcode, f.sequence, f.payload) for f in answers][0] == (ERROR, 9, bytes([Error.INTERRUPTED]))
    assert answers[1].opcode == Opcode.INFO | ANSWER and device.run() == b""


def test_a_bad_generate_is_refused_before_any_token_runs(odd):
    program, device = open_program(odd, rows=3, cols=4)
    settings, c = settings_for(odd), odd.config
    for record, prompt in [(dict(count=4), [5, c.vocab_size]), (dict(count=4, position=c.max_position_embeddings - 1),
                                                                 [5, 6]), (dict(count=0), [5]), (dict(count=3), [])]:
        before = {space: memory.copy() for space, memory in device.memory.items()}
        payload = pack_record(GENERATE, **record, **settings) + np.asarray(prompt, "<u2").tobytes()
        (answer,) = FrameDecoder().feed(device.feed(encode_frame(Opcode.GENERATE, 3, payload)))
        assert (answer.opcode, answer.payload) == (ERROR, bytes([Error.BAD_ARGUMENT]))
        assert device.run() == b""
        assert all(np.array_equal(before[space], device.memory[space]) for space in Space)


def test_a_frame_in_the_same_write_as_a_generate_interrupts_it(odd):
    program, device = open_program(odd, rows=3, cols=4)
    generate_frame = encode_frame(Opcode.GENERATE, 9, pack_record(GENERATE, count=8, **settings_for(odd)) + bytes(2))
    answers = FrameDecoder().feed(device.feed(generate_frame + encode_frame(Opcode.INFO, 10)))
    assert [(f.opcode, f.sequence) for f in answers] == [(ERROR, 9), (Opcode.INFO | ANSWER, 10)]
    assert device.run() == b""


def test_a_prompt_longer_than_a_frame_goes_in_by_token_first(odd):
    board, device, link = program_board(odd, rows=3, cols=4, max_payload=100)  # 38 ids a GENERATE frame
    prompt = list(range(3, 50))
    expected = generate(golden_model(odd), odd.tokenizer, prompt, SAMPLERS[1], 6, eos_id=-1)
    commands = link.commands
    result = generate(board, odd.tokenizer, prompt, SAMPLERS[1], 6, eos_id=-1)
    assert result.new_ids == expected.new_ids
    assert link.commands - commands == len(prompt) - (100 - 23) // 2 + 1


def test_a_device_of_other_gateware_is_one_line_error(odd):
    class OldDevice(AcceleratorModel):
        def _info(self, payload):
            return super()._info(payload)[:-6]  # INFO before the program fields

    with pytest.raises(UserError, match="INFO is 37 bytes, this neofpga reads 43"):
        AcceleratorDriver(Link(ModelTransport(OldDevice(**DEVICE)), timeout=0))
