"""The PCIe path: host/xdma.py's transport on its own (a fake card in a thread on two named pipes),
then end to end on the simulated PCIe board (the default simulated design behind its AXI4-Stream
port, XDMA's devices as named pipes, the DMA model of contract/pcie.py), through the API, the CLI
and ``sim-server --xdma``, and through the board's injected faults: every run gives the golden
model's tokens (or the words written) or a one-line error, never a wrong token.

The simulated PCIe board's Verilator build is cached after its first build (about 2 minutes on 2
cores); uploading the default model through the DMA model's 55 us a transfer takes about 25 s of
simulation, so only four tests do it.
"""

import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from neofpga.contract.design import simulated_parameters
from neofpga.contract.errors import UserError
from neofpga.contract.gateware_version import gateware_version
from neofpga.contract.pcie import xdma_paths
from neofpga.contract.protocol import (ACCESS, ANSWER, CONSTANT_WORD_BITS, CRC_BYTES, HEADER_BYTES, STREAM,
                                       WORD_BYTES, FrameDecoder, Opcode, Space, encode_frame, record_size)
from neofpga.host.link import Link, LinkError
from neofpga.host.xdma import XdmaTransport

PROMPT = "Once upon a time"
TOKENS = 8


def one_line(error):
    text = str(error)
    assert text and "\n" not in text, repr(text)
    return text


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- the transport alone: a fake card on two named pipes ---------------------------------------

class FakeCard:
    """XDMA's devices at ``prefix`` as named pipes, and a card in a thread: each read of h2c is
    recorded (one DMA transfer), each command frame answered by the writes ``answer(frame)``
    returns, made on c2h ``pause`` seconds apart. The card opens both pipes read-write, as the
    simulated board does, so the transport's opens do not block."""

    def __init__(self, prefix, answer=None, pause=0.05):
        self.h2c_path, self.c2h_path = xdma_paths(str(prefix))
        os.mkfifo(self.h2c_path)
        os.mkfifo(self.c2h_path)
        self.h2c = os.open(self.h2c_path, os.O_RDWR | os.O_NONBLOCK)
        self.c2h = os.open(self.c2h_path, os.O_RDWR)
        self.answer = answer or (lambda frame: [encode_frame(frame.opcode | ANSWER, frame.sequence,
                                                             frame.payload[::-1])])
        self.pause = pause
        self.reads, self.received, self.frames = [], bytearray(), []
        self.decoder = FrameDecoder()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            if not select.select([self.h2c], [], [], 0.02)[0]:
                continue
            try:
                data = os.read(self.h2c, 1 << 20)
            except BlockingIOError:
                continue
            self.reads.append(len(data))
            self.received += data
            for frame in self.decoder.feed(data):
                self.frames.append(frame)
                for i, piece in enumerate(self.answer(frame)):
                    if i:
                        time.sleep(self.pause)
                    os.write(self.c2h, piece)

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        os.close(self.h2c)
        if self.c2h is not None:
            os.close(self.c2h)


@pytest.fixture
def card(tmp_path):
    cards = []

    def make(answer=None):
        cards.append(FakeCard(tmp_path / f"xdma{len(cards)}", answer))
        return cards[-1], str(tmp_path / f"xdma{len(cards) - 1}")

    yield make
    for made in cards:
        made.close()


def test_each_write_is_one_transfer_and_answers_split_or_joined_decode(card):
    """A command frame is one write on h2c (the card reads it whole, the counters count it once);
    an answer that the card writes in three pieces, a stale answer and the real one in one write,
    and a stream of frames with its answer in one write all decode through the Link."""
    def answer(frame):
        reply = encode_frame(frame.opcode | ANSWER, frame.sequence, frame.payload[::-1])
        if frame.opcode == Opcode.READ:  # three writes of the card: three chunks of the posted read
            cuts = [0, 3, len(reply) // 2, len(reply)]
            return [reply[a:b] for a, b in zip(cuts, cuts[1:])]
        if frame.opcode == Opcode.WRITE:  # the previous command's answer again, then this one's
            return [encode_frame(frame.opcode | ANSWER, (frame.sequence - 1) % 256, b"stale") + reply]
        if frame.opcode == Opcode.GENERATE:  # a frame per byte of the payload, then the answer
            return [b"".join(encode_frame(STREAM, frame.sequence, bytes([b])) for b in frame.payload) + reply]
        return [reply]

    fake, prefix = card(answer)
    transport = XdmaTransport(prefix, stall_timeout=5)
    link = Link(transport, timeout=2.0, retries=0)
    rng = np.random.default_rng(0)
    sent = []
    for opcode in (Opcode.INFO, Opcode.READ, Opcode.WRITE):
        for size in (0, 1, 100, 3000, 4000):
            payload = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            assert link.command(opcode, payload) == payload[::-1]
            sent.append(encode_frame(opcode, link.sequence, payload))
    assert transport.transfers_sent == len(sent) == 15
    assert transport.bytes_sent == link.bytes_sent == sum(map(len, sent))
    assert fake.reads == [len(frame) for frame in sent] and bytes(fake.received) == b"".join(sent)
    answers = sum(len(frame) for frame in sent) + 5 * len(encode_frame(Opcode.WRITE | ANSWER, 0, b"stale"))
    assert transport.bytes_received == link.bytes_received == answers
    assert transport.transfers_received > len(sent)  # the split answers came in more than one chunk each
    assert link.resends == 0

    before = transport.transfers_received
    streamed = []
    assert link.stream(Opcode.GENERATE, bytes(range(20)), streamed.append) == bytes(range(20))[::-1]
    assert streamed == [bytes([b]) for b in range(20)]
    assert transport.transfers_received == before + 1  # 21 frames in one chunk
    transport.close()


def test_a_write_larger_than_the_pipe_is_one_transfer(card):
    """A write that the pipe takes in several pieces is still one transfer, every byte in order."""
    fake, prefix = card(lambda frame: [])
    transport = XdmaTransport(prefix, stall_timeout=5)
    data = np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    assert transport.write(data) == len(data)
    assert transport.transfers_sent == 1 and transport.bytes_sent == len(data)
    assert wait_for(lambda: len(fake.received) == len(data))
    assert bytes(fake.received) == data and len(fake.reads) > 1  # 64 KiB a pipe by default
    transport.close()


def test_a_missing_device_is_a_one_line_error_naming_it(tmp_path):
    prefix = str(tmp_path / "xdma0")
    h2c, c2h = xdma_paths(prefix)
    with pytest.raises(UserError) as missing:
        XdmaTransport(prefix)
    assert h2c in one_line(missing.value) and "XDMA driver" in str(missing.value)

    os.mkfifo(h2c)  # h2c there (a reader holds it), c2h not: h2c is closed again
    holder = os.open(h2c, os.O_RDWR | os.O_NONBLOCK)
    try:
        fds = open_fds()
        with pytest.raises(UserError) as missing:
            XdmaTransport(prefix)
        assert c2h in one_line(missing.value) and h2c not in str(missing.value)
        assert open_fds() == fds
    finally:
        os.close(holder)


def test_a_card_that_takes_no_data_stalls_the_write_within_stall_timeout(tmp_path):
    """h2c full and never read: the Link's command fails with the transport's one-line LinkError
    after stall_timeout, not the Link's retries; closing twice closes once."""
    prefix = str(tmp_path / "xdma0")
    h2c, c2h = xdma_paths(prefix)
    os.mkfifo(h2c)
    os.mkfifo(c2h)
    card_h2c = os.open(h2c, os.O_RDWR | os.O_NONBLOCK)  # the card's ends: opened, never read
    card_c2h = os.open(c2h, os.O_RDWR)
    try:
        while True:  # fill the pipe
            try:
                os.write(card_h2c, bytes(65536))
            except BlockingIOError:
                break
        fds = open_fds()
        transport = XdmaTransport(prefix, stall_timeout=0.3)
        link = Link(transport, timeout=5.0, retries=8)
        start = time.monotonic()
        with pytest.raises(LinkError) as stalled:
            link.command(Opcode.INFO)
        took = time.monotonic() - start
        assert "stalled" in one_line(stalled.value) and prefix in str(stalled.value)
        assert 0.3 <= took < 2.0, took
        assert transport.transfers_sent == 0 and transport.bytes_sent == 0 and link.resends == 0

        transport.close()
        reused = os.open(os.devnull, os.O_RDONLY)  # likely the number h2c had
        try:
            transport.close()  # again: nothing, not a close of someone else's descriptor
            os.fstat(reused)
        finally:
            os.close(reused)
        assert wait_for(lambda: open_fds() == fds), "the transport left a descriptor open"
    finally:
        os.close(card_h2c)
        os.close(card_c2h)


def test_a_failed_c2h_read_is_a_one_line_link_error(tmp_path):
    """A read that fails (here: c2h is a directory, EISDIR) ends the posted reads, and the next
    read of the Link gets the transport's one-line LinkError."""
    prefix = str(tmp_path / "xdma0")
    h2c, c2h = xdma_paths(prefix)
    os.mkfifo(h2c)
    os.mkdir(c2h)
    holder = os.open(h2c, os.O_RDWR | os.O_NONBLOCK)
    try:
        transport = XdmaTransport(prefix)
        link = Link(transport, timeout=5.0, retries=8)
        start = time.monotonic()
        with pytest.raises(LinkError) as failed:
            link.command(Opcode.INFO)
        assert "C2H DMA failed" in one_line(failed.value) and time.monotonic() - start < 2.0
        transport.close()
    finally:
        os.close(holder)


def test_a_card_that_goes_away_is_a_c2h_failure_not_a_busy_wait(card):
    import resource

    fake, prefix = card(lambda frame: [])
    transport = XdmaTransport(prefix)
    os.close(fake.c2h)  # the card's process is gone: c2h has no writer
    fake.c2h = None
    link = Link(transport, timeout=0.5, retries=1)
    used = resource.getrusage(resource.RUSAGE_SELF)
    try:
        with pytest.raises(LinkError) as failed:
            link.command(Opcode.INFO)  # the Link's two tries wait 1 s in all if nothing reports the end
        cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - sum(used[:2])
        assert cpu < 0.25, f"{cpu:.2f} s of CPU while waiting"
        assert "C2H" in one_line(failed.value)
    finally:
        transport.close()


# --- the simulated PCIe board ------------------------------------------------------------------

PARAMETERS = simulated_parameters(pcie=True)


@pytest.fixture(scope="module")
def executable():
    """The simulated PCIe board of the default simulated design, built once (cached)."""
    from neofpga.sim.simulated_board import board_executable

    return board_executable(PARAMETERS, log=lambda line: None)


@pytest.fixture
def boards(executable, monkeypatch):
    """The SimulatedBoards that connect_board starts (for their DMA summaries once closed)."""
    from neofpga.sim import simulated_board

    started, start = [], simulated_board.start_simulated_board

    def recording(*args, **kwargs):
        started.append(start(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(simulated_board, "start_simulated_board", recording)
    return started


@pytest.fixture(scope="module")
def image():
    from neofpga.host.backends import DEFAULT_IMAGE
    from neofpga.host.image import load_image

    return load_image(DEFAULT_IMAGE)


@pytest.fixture(scope="module")
def emu_ids(image):
    from neofpga.host.generation import generate
    from neofpga.host.golden import golden_model
    from neofpga.host.sampling import Sampler

    return generate(golden_model(image), image.tokenizer, image.tokenizer.encode(PROMPT), Sampler(), TOKENS,
                    eos_id=None).new_ids


def greedy(model, image):
    from neofpga.host.generation import generate
    from neofpga.host.sampling import Sampler

    return generate(model, image.tokenizer, image.tokenizer.encode(PROMPT), Sampler(), TOKENS, eos_id=None).new_ids


def dma_of(transport):
    """The transport's counts, as the board's DMA summary names them."""
    return dict(transfers_in=transport.transfers_sent, bytes_in=transport.bytes_sent,
                transfers_out=transport.transfers_received, bytes_out=transport.bytes_received)


def random_words(rng, space, words):
    data = rng.integers(0, 256, words * WORD_BYTES[space], dtype=np.uint8)
    if space == Space.CONSTANTS:  # a CONSTANTS word keeps its low 54 bits
        data = (data.view("<u8") & np.uint64((1 << CONSTANT_WORD_BITS) - 1)).view(np.uint8)
    return data.tobytes()


def write_frame_bytes(space, words):
    """The bytes of the WRITE frames that driver.write sends for ``words`` words of ``space``."""
    per_frame = (PARAMETERS["max_payload"] - record_size(ACCESS)) // WORD_BYTES[space]
    return [HEADER_BYTES + record_size(ACCESS) + min(per_frame, words - start) * WORD_BYTES[space] + CRC_BYTES
            for start in range(0, words, per_frame)]


def read_answer_bytes(space, words):
    per_frame = PARAMETERS["max_payload"] // WORD_BYTES[space]
    return [HEADER_BYTES + min(per_frame, words - start) * WORD_BYTES[space] + CRC_BYTES
            for start in range(0, words, per_frame)]


def test_info_and_words_of_every_space_round_trip_and_the_dma_summary_agrees(boards):
    """INFO is the design's; random words of three spaces, several frames each, at the top of
    their banks, read back as written; the board's DMA summary counts exactly the transfers and
    bytes the transport counted."""
    from neofpga.host.board_backend import connect_board

    driver, close = connect_board("sim", pcie=True)
    try:
        info = driver.device_info
        for key in ("rows", "cols", "activation_words", "weight_words", "constant_words", "max_payload"):
            assert info[key] == PARAMETERS[key], key
        assert info["gateware_version"] == gateware_version(PARAMETERS)
        assert driver.info() == info
        rng = np.random.default_rng(2)
        for space, bank, words in ((Space.ACTIVATIONS, info["rows"] - 1, 70_000), (Space.WEIGHTS, 5, 140_000),
                                   (Space.CONSTANTS, 0, 9_000)):
            depth = info[{Space.ACTIVATIONS: "activation_words", Space.WEIGHTS: "weight_words",
                          Space.CONSTANTS: "constant_words"}[space]]
            data = random_words(rng, space, words)
            driver.write(space, bank, depth - words, data)
            assert driver.read(space, bank, depth - words, words) == data, space.name
        assert driver.link.resends == 0
        transport = driver.link.transport
    finally:
        close()
    (board,) = boards
    assert board.dma == dma_of(transport)
    frames = [len(write_frame_bytes(space, words)) + len(read_answer_bytes(space, words)) for space, words in
              ((Space.ACTIVATIONS, 70_000), (Space.WEIGHTS, 140_000), (Space.CONSTANTS, 9_000))]
    assert all(count >= 4 for count in frames)  # several frames of the design's longest each way
    assert transport.transfers_sent == driver.link.commands == 2 + sum(frames)  # two INFOs
    assert not any(os.path.exists(path) for path in xdma_paths(board.xdma))  # the pipes are removed


def test_greedy_generation_on_the_pcie_board_is_emus(boards, image, emu_ids):
    """The shipped model uploaded and run (GENERATE) through the DMA: emu's ids; the board's DMA
    summary counts the transfers and bytes the transport counted."""
    from neofpga.host.board_backend import ProgramModel, open_board_model

    model = open_board_model("sim", image, pcie=True)
    try:
        assert type(model) is ProgramModel
        assert greedy(model, image) == emu_ids
        stats = model.device_stats()
        assert stats["link_resends"] == 0 and stats["device_program_cycles"] > 0
        transport = model.link.transport
    finally:
        model.close()
    (board,) = boards
    counted = dma_of(transport)
    for key in ("transfers_in", "bytes_in", "bytes_out"):
        assert board.dma[key] == counted[key], key
    # a pipe keeps no transfer boundaries: the last STREAM frame and GENERATE's answer, due together,
    # may come in one read
    assert 0 <= board.dma["transfers_out"] - counted["transfers_out"] <= 1
    assert board.dma["transfers_in"] > 300 and board.dma["bytes_in"] > 300_000


def run_json(capsys, *argv):
    from neofpga.host.cli import main

    code = main([str(a) for a in argv] + ["--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_cli_generate_on_the_simulated_pcie_board_is_emus(executable, capsys):
    emu = run_json(capsys, "generate", PROMPT, "--device", "emu", "--max-new-tokens", TOKENS)
    sim = run_json(capsys, "generate", PROMPT, "--device", "sim", "--pcie", "--max-new-tokens", TOKENS)
    assert sim["new_ids"] == emu["new_ids"] and sim["text"] == emu["text"]
    assert sim["link_resends"] == 0 and sim["link_commands"] < 10


def test_sim_server_xdma_serves_a_later_pcie_device(executable, tmp_path, capsys):
    """``sim-server --xdma PREFIX`` makes the two pipes; ``generate --device pcie:PREFIX`` in another
    process gives emu's ids through them; Ctrl-C stops the server, which removes the pipes."""
    prefix = str(tmp_path / "xdma0")
    emu = run_json(capsys, "generate", PROMPT, "--device", "emu", "--max-new-tokens", TOKENS)
    server = subprocess.Popen([sys.executable, "-m", "neofpga.host.cli", "sim-server", "--xdma", prefix],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert f"--device pcie:{prefix} " in line, (line, server.poll())
        assert all(stat.S_ISFIFO(os.stat(path).st_mode) for path in xdma_paths(prefix))
        client = subprocess.run([sys.executable, "-m", "neofpga.host.cli", "generate", PROMPT, "--device",
                                 f"pcie:{prefix}", "--max-new-tokens", str(TOKENS), "--format", "json"],
                                capture_output=True, text=True, timeout=600)
        assert client.returncode == 0, client.stderr
        assert json.loads(client.stdout)["new_ids"] == emu["new_ids"]
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    summary = re.search(r"DMA (\d+) transfers in (\d+) bytes, (\d+) transfers out", err)
    assert summary and int(summary[1]) > 300 and int(summary[2]) > 300_000, err
    assert not any(os.path.exists(path) for path in xdma_paths(prefix))


@pytest.mark.parametrize("fault", ["cut_transfer", "reset_after_bytes"])
def test_a_cut_answer_or_a_reset_mid_write_is_retried_and_the_words_are_right(boards, fault):
    """After INFO (transfer 1), 70,000 activation words go out in three WRITE frames and come back
    in three READ answers. cut_transfer: the second READ answer (C2H transfer 6) loses its second
    half; reset_after_bytes: the device is reset a quarter into the second WRITE frame. Either
    way the Link's retry makes every word right, and words written afterwards too."""
    from neofpga.host.board_backend import connect_board

    words, info_frame = 70_000, len(encode_frame(Opcode.INFO, 1))
    writes, reads = write_frame_bytes(Space.ACTIVATIONS, words), read_answer_bytes(Space.ACTIVATIONS, words)
    assert len(writes) == len(reads) == 3
    faults = {"cut_transfer": 1 + len(writes) + 2} if fault == "cut_transfer" else \
        {"reset_after_bytes": info_frame + writes[0] + writes[1] // 4}
    driver, close = connect_board("sim", pcie=True, faults=faults)
    try:
        driver.link.timeout = 5.0  # a READ answer of 65,520 bytes leaves a byte a cycle: a second or two simulated
        rng = np.random.default_rng(3)
        data = random_words(rng, Space.ACTIVATIONS, words)
        driver.write(Space.ACTIVATIONS, 1, 100, data)
        assert driver.read(Space.ACTIVATIONS, 1, 100, words) == data
        assert driver.link.resends >= 1  # the fault was felt
        more = random_words(rng, Space.WEIGHTS, 3000)
        driver.write(Space.WEIGHTS, 2, 0, more)
        assert driver.read(Space.WEIGHTS, 2, 0, 3000) == more
        assert driver.read(Space.ACTIVATIONS, 1, 100, words) == data
        transport = driver.link.transport
    finally:
        close()
    (board,) = boards
    counted = dma_of(transport)
    if fault == "cut_transfer":  # the board counts the answer whole; the host got its first half
        assert board.dma["bytes_out"] - counted["bytes_out"] == reads[1] - reads[1] // 2
        assert board.dma["bytes_in"] == counted["bytes_in"]
    else:  # the rest of the frame the reset interrupted never reached the design
        assert "reset at cycle" in board.stderr
        assert 0 < counted["bytes_in"] - board.dma["bytes_in"] < writes[1]
        assert board.dma["bytes_out"] == counted["bytes_out"]
    assert board.dma["transfers_in"] == counted["transfers_in"]


def test_a_stalled_h2c_dma_is_a_one_line_error(boards):
    """stall_after_bytes inside the first WRITE frame: the Link gives up after its retries with one
    line; a write larger than the pipe then fails within the transport's stall_timeout."""
    from neofpga.host.board_backend import connect_board

    stall = len(encode_frame(Opcode.INFO, 1)) + 100
    driver, close = connect_board("sim", pcie=True, faults={"stall_after_bytes": stall})
    try:
        driver.link.timeout, driver.link.retries = 0.5, 2
        start = time.monotonic()
        with pytest.raises(LinkError) as failed:
            driver.write(Space.ACTIVATIONS, 0, 0, bytes(2000))
        assert "WRITE failed after 3 tries" in one_line(failed.value) and time.monotonic() - start < 10
        transport = driver.link.transport
        transport.stall_timeout = 0.5
        start = time.monotonic()
        with pytest.raises(LinkError) as stalled:
            transport.write(bytes(2 << 20))  # more than the pipe's 1 MiB
        assert "stalled" in one_line(stalled.value) and 0.5 <= time.monotonic() - start < 5
    finally:
        close()
    (board,) = boards
    assert board.dma["bytes_in"] == stall


def upload_frames(image):
    """The command frames (opcode, bytes) of the default model's upload, as the reference device
    in Python takes them: the same commands the board gets."""
    from neofpga.host.accelerator_model import AcceleratorModel, ModelTransport
    from neofpga.host.driver import AcceleratorDriver
    from neofpga.host.token_program import TokenProgram

    frames = []

    class Recording(ModelTransport):
        def write(self, data):
            frames.append((data[2], len(data)))
            return super().write(data)

    fields = {k: v for k, v in PARAMETERS.items() if k not in ("timeout_cycles", "pcie_beat_bytes")}
    TokenProgram(image, AcceleratorDriver(Link(Recording(AcceleratorModel(**fields)), timeout=0)))
    return frames


def test_generation_through_a_reset_mid_upload_and_a_cut_stream_frame_is_emus(boards, image, emu_ids):
    """The device is reset a quarter into a WRITE frame halfway through the upload, and the
    third STREAM frame of the GENERATE loses its second half: the retry and GENERATE's rerun
    give emu's ids."""
    from neofpga.host.board_backend import ProgramModel, connect_board
    from neofpga.host.token_program import TokenProgram

    frames = upload_frames(image)
    starts = np.cumsum([0] + [size for _, size in frames])
    middle = next(i for i, (opcode, _) in enumerate(frames) if opcode == Opcode.WRITE and starts[i] >= starts[-1] / 2)
    faults = {"reset_after_bytes": int(starts[middle]) + frames[middle][1] // 4, "cut_transfer": len(frames) + 3}
    driver, close = connect_board("sim", pcie=True, faults=faults)
    try:
        driver.link.timeout = 3.0
        program = TokenProgram(image, driver)
        assert driver.link.commands == len(frames)  # so the cut falls in GENERATE's stream
        assert driver.link.resends >= 1  # the WRITE the reset interrupted, again
        resends = driver.link.resends
        model = ProgramModel(image, program, driver.link, "sim", on_close=close)
        assert greedy(model, image) == emu_ids
        assert driver.link.resends > resends  # GENERATE run again after the lost id
    finally:
        close()
    (board,) = boards
    assert "reset at cycle" in board.stderr
