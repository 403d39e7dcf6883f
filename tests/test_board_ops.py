"""host/board_ops.py over host/link.py and host/driver.py, on the reference model of the device:
the same integers as the golden model, through link damage too."""

import collections
import socket
import threading

import numpy as np
import pytest
import serial
from faulty_transport import FaultyTransport
from neofpga.contract.errors import UserError
from neofpga.contract.numerics import NUMERICS_VERSION
from neofpga.contract.protocol import CONSTANT, Opcode, Space
from neofpga.host.accelerator_model import AcceleratorModel, ModelTransport
from neofpga.host.backends import load_source
from neofpga.host.board_ops import BoardOps
from neofpga.host.driver import AcceleratorDriver, check_info, record_dtype
from neofpga.host.generation import generate
from neofpga.host.golden import GoldenOps, IntegerGPTNeo, golden_model
from neofpga.host.link import Link, LinkError
from neofpga.host.quantize import quantize_checkpoint
from neofpga.host.sampling import Sampler
from neofpga.host.training.corpus import calibration_text

DEVICE = dict(rows=4, cols=8, activation_words=8192, weight_words=65536, constant_words=8192, gelu_tables=4,
              max_payload=1024, softmax_length=256)
# 3 rows: banks that do not divide the chunks; 1,800 activation words: chunks of 3 token rows (tiny preset)
ODD_DEVICE = dict(DEVICE, rows=3, cols=16, activation_words=1800, max_payload=300)


@pytest.fixture(scope="module")
def tiny(tiny_random):
    """The `tiny` preset (window 16, context 128) quantized on story text."""
    source = load_source(tiny_random)
    return quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(8)))


@pytest.fixture(scope="module")
def default():
    """The shipped default model (window 64, context 256)."""
    return load_source(None).quantized()


def open_board(model, residency="resident", faults=None, retries=8, **device):
    """BoardOps on a fresh device model (``faults``: FaultyTransport's arguments); returns (ops, device, link)."""
    device = AcceleratorModel(**{**DEVICE, **device})
    transport = ModelTransport(device)
    if faults is not None:
        transport = FaultyTransport(transport, **faults)
    link = Link(transport, timeout=0, retries=retries)
    return BoardOps(model, AcceleratorDriver(link), residency), device, link


def op_results(ops, config, lengths, seed=0):
    """Every op's output over calls of ``lengths`` new tokens: attention and MLP of every layer, the head."""
    rng = np.random.default_rng(seed)
    ops.reset(1)
    results, start = [], 0
    for n in lengths:
        x = rng.integers(-2 ** 14, 2 ** 14, (1, n, config.hidden_size))
        positions = np.arange(start, start + n)
        start += n
        for layer in range(config.num_layers):
            results += [ops.attention(layer, x, positions), ops.mlp(layer, x)]
        results.append(ops.head(x))
    return results


def assert_same_results(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape and np.array_equal(x, y), f"result {i} differs"


# prefill, then single tokens past the local window (tiny: 16, default: 64)
TINY_LENGTHS = [10, 1, 1, 1, 1, 1, 1, 1, 1, 4]
DEFAULT_LENGTHS = [60, 1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("residency", ["resident", "stream"])
@pytest.mark.parametrize("device", [DEVICE, ODD_DEVICE], ids=["4x8", "3x16-chunked"])
def test_board_ops_equal_golden_ops_on_the_tiny_preset(tiny, residency, device):
    ops, _, _ = open_board(tiny, residency, **device)
    golden = GoldenOps(tiny)
    assert_same_results(op_results(ops, tiny.config, TINY_LENGTHS), op_results(golden, tiny.config, TINY_LENGTHS))


@pytest.mark.parametrize("residency", ["resident", "stream"])
def test_board_ops_equal_golden_ops_on_the_default_model(default, residency):
    ops, device, _ = open_board(default, residency)
    assert ops.chunk < 60  # the prefill runs in chunks
    results = op_results(ops, default.config, DEFAULT_LENGTHS)
    assert_same_results(results, op_results(GoldenOps(default), default.config, DEFAULT_LENGTHS))
    assert device.counters["errors"] == 0


def board_model(model, **device):
    """The golden_model graph with BoardOps on the device side."""
    ops, _, _ = open_board(model, **device)
    return IntegerGPTNeo(model, ops, name="board")


def test_the_board_generates_what_the_golden_model_generates(default):
    source = load_source(None)
    ids = source.tokenizer.encode("Once upon a time, a little fox")
    runs = [generate(model, source.tokenizer, ids, Sampler(), 72, eos_id=-1)
            for model in (golden_model(default), board_model(default))]
    assert len(ids) + 72 > default.config.window_size
    assert runs[0].new_ids == runs[1].new_ids


def test_seeded_sampled_generation_is_the_golden_models(tiny):
    """Seeded sampling draws the same tokens on both, past the local window: the logits agree bit for
    bit and both sides choose with the host's IntegerChooser (the gateware's sampler is checked
    against the same kernel in tests/test_hdl_sampler.py)."""
    ids = [1, 2, 3]
    sampler = Sampler(temperature=0.9, top_k=20, top_p=0.95, seed=11)
    models = (golden_model(tiny), board_model(tiny, **ODD_DEVICE))
    runs = [generate(model, tiny.tokenizer, ids, sampler, 24, eos_id=-1) for model in models]
    assert len(ids) + 24 > tiny.config.window_size
    assert runs[0].new_ids == runs[1].new_ids
    greedy = generate(golden_model(tiny), tiny.tokenizer, ids, Sampler(), 24, eos_id=-1)
    assert greedy.new_ids != runs[0].new_ids  # it sampled


def test_teacher_forced_logits_are_identical(tiny):
    ids = np.random.default_rng(1).integers(0, tiny.config.vocab_size, (1, 40))
    emu, board = golden_model(tiny), board_model(tiny, **ODD_DEVICE)
    for model in (emu, board):
        model.reset(1)
    assert np.array_equal(emu.forward(ids[:, :30]), board.forward(ids[:, :30]))
    for i in range(30, 40):
        assert np.array_equal(emu.forward(ids[:, i:i + 1]), board.forward(ids[:, i:i + 1]))


FAULT_KINDS = ["flip", "truncate", "duplicate", "garbage", "drop"]
SHORT_LENGTHS = [5, 1, 1]


@pytest.mark.parametrize("kind", FAULT_KINDS + ["all"])
def test_link_damage_is_retried_to_the_same_results(tiny, kind):
    expected = op_results(GoldenOps(tiny), tiny.config, SHORT_LENGTHS)
    faults = collections.Counter()
    for seed in range(6):
        chances = dict.fromkeys(FAULT_KINDS, 0.015) if kind == "all" else {kind: 0.04}
        ops, _, link = open_board(tiny, "stream", faults=dict(rng=np.random.default_rng(seed), **chances))
        assert_same_results(op_results(ops, tiny.config, SHORT_LENGTHS), expected)
        faults += link.transport.faults
    assert all(faults[k] > 20 for k in (FAULT_KINDS if kind == "all" else [kind])), faults


def test_heavy_damage_gives_the_same_results_or_a_link_error(tiny):
    """A fault in a third of the frames and chunks: enough retries still give the same numbers,
    too few a one-line LinkError."""
    expected = op_results(GoldenOps(tiny), tiny.config, SHORT_LENGTHS)

    def heavy(seed):
        return dict(rng=np.random.default_rng(seed), **dict.fromkeys(FAULT_KINDS, 0.08))

    for seed in (0, 1):
        ops, _, _ = open_board(tiny, "stream", faults=heavy(seed), retries=40)
        assert_same_results(op_results(ops, tiny.config, SHORT_LENGTHS), expected)
    for seed in (2, 3):
        with pytest.raises(LinkError, match="failed after 2 tries") as e:
            ops, _, _ = open_board(tiny, "stream", faults=heavy(seed), retries=1)
            op_results(ops, tiny.config, SHORT_LENGTHS)
        assert "\n" not in str(e.value)


def serve(server, device):
    """Answer one TCP client with the device model, as sim/board_process.py serves the simulated board."""
    connection, _ = server.accept()
    connection.settimeout(0.02)
    with connection:
        while True:
            try:
                data = connection.recv(65536)
            except TimeoutError:
                connection.sendall(device.idle())
                continue
            if not data:
                return
            connection.sendall(device.feed(data))


def test_the_link_runs_over_a_pyserial_socket(tiny):
    device = AcceleratorModel(**DEVICE)
    with socket.create_server(("127.0.0.1", 0)) as server:
        thread = threading.Thread(target=serve, args=(server, device), daemon=True)
        thread.start()
        port = server.getsockname()[1]
        link = Link(serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.05), timeout=0.5)
        ops = BoardOps(tiny, AcceleratorDriver(link))
        x = np.random.default_rng(2).integers(-2 ** 14, 2 ** 14, (1, 3, tiny.config.hidden_size))
        assert np.array_equal(ops.head(x), GoldenOps(tiny).head(x))
        link.close()
        thread.join(timeout=5)
    assert link.resends == 0 and link.bytes_received > 0


class LoseAnswer:
    """A transport that loses the answer to the first command frame with ``opcode`` (the device applied it)."""

    def __init__(self, transport, opcode):
        self.transport, self.opcode, self.armed = transport, opcode, True

    def write(self, data):
        self.transport.write(data)
        if self.armed and data[2] == self.opcode:
            self.armed = False
            self.transport.reset_input_buffer()

    def __getattr__(self, name):
        return getattr(self.transport, name)


@pytest.mark.parametrize("opcode", [Opcode.WRITE, Opcode.MATMUL])
def test_a_command_whose_answer_was_lost_is_not_applied_twice(opcode):
    device = AcceleratorModel(**DEVICE)
    link = Link(LoseAnswer(ModelTransport(device), opcode), timeout=0)
    accelerator = AcceleratorDriver(link)
    # [1, 2] @ [[1, 1], [0, 1]].T = [3, 2], written over its own input
    accelerator.write(Space.ACTIVATIONS, 0, 0, np.array([1, 2], "<i2").tobytes())
    accelerator.write(Space.WEIGHTS, 0, 0, np.array([1, 1], "i1").tobytes())
    accelerator.write(Space.WEIGHTS, 1, 0, np.array([0, 1], "i1").tobytes())
    identity = np.array([(0, 2 ** 15, 15, 0)] * 2, record_dtype(CONSTANT)).tobytes()
    accelerator.write(Space.CONSTANTS, 0, 0, identity)
    accelerator.matmul(m=1, k=2, n=2, low=-100, high=100, out_space=Space.ACTIVATIONS)
    assert link.resends == 1
    assert np.frombuffer(accelerator.read(Space.ACTIVATIONS, 0, 0, 2), "<i2").tolist() == [3, 2]
    assert accelerator.counters()["macs"] == 4


def test_device_errors_are_one_line_link_errors():
    device = AcceleratorModel(**DEVICE)
    link = Link(ModelTransport(device), timeout=0)
    accelerator = AcceleratorDriver(link)
    failures = [(lambda: link.command(0x42), "refused opcode 0x42: UNKNOWN_OPCODE"),
                (lambda: accelerator.read(Space.WEIGHTS, 0, DEVICE["weight_words"], 1), "refused READ: BAD_ARGUMENT"),
                (lambda: accelerator.write(Space.ACTIVATIONS, 4, 0, bytes(2)), "refused WRITE: BAD_ARGUMENT"),
                (lambda: accelerator.matmul(m=1, k=1, n=1, mode=7), "refused MATMUL: BAD_ARGUMENT")]
    for fail, message in failures:
        with pytest.raises(LinkError, match=message) as e:
            fail()
        assert "\n" not in str(e.value)
    assert link.resends == 0
    assert isinstance(e.value, UserError)


def test_a_silent_device_is_a_link_error_after_the_retries():
    class Silent:
        def write(self, data):
            pass

        def read(self, size):
            return b""

        def reset_input_buffer(self):
            pass

    link = Link(Silent(), timeout=0, retries=3)
    with pytest.raises(LinkError, match="INFO failed after 4 tries: no answer"):
        AcceleratorDriver(link)
    assert link.resends == 3


def test_transfers_are_split_into_frames_that_fit():
    device = AcceleratorModel(**dict(DEVICE, max_payload=100))
    link = Link(ModelTransport(device), timeout=0)
    accelerator = AcceleratorDriver(link)
    data = np.arange(-500, 500, dtype="<i2").tobytes()
    accelerator.write(Space.ACTIVATIONS, 1, 10, data)
    assert accelerator.read(Space.ACTIVATIONS, 1, 10, 1000) == data
    assert device.counters["commands"] == 1 + 22 + 20  # INFO, 47 words a WRITE, 50 words a READ


def test_boards_that_cannot_hold_the_model_are_refused(tiny):
    with pytest.raises(UserError, match="weight banks with residency 'resident', the device has 8,192: "
                                        "try residency 'stream'"):
        open_board(tiny, weight_words=8192)
    ops, _, _ = open_board(tiny, "stream", weight_words=8192)  # the caches and one matrix fit
    with pytest.raises(UserError, match="head size 16 is not a multiple of the device's 32 weight banks"):
        open_board(tiny, cols=32)
    with pytest.raises(UserError, match="softmax unit takes \\(64 keys\\)"):
        open_board(tiny, softmax_length=64)
    with pytest.raises(UserError, match="activation banks"):
        open_board(tiny, activation_words=512)
    with pytest.raises(UserError, match="GELU tables with residency 'resident'"):
        open_board(tiny, gelu_tables=1)
    with pytest.raises(UserError, match="not a batch of 2"):
        ops.reset(2)
    with pytest.raises(UserError, match="residency must be"):
        open_board(tiny, "cached")


def test_check_info_names_what_to_rebuild():
    info = AcceleratorModel(gateware_version=3).info
    check_info(info, {"gateware_version": 3, "numerics_version": NUMERICS_VERSION})
    with pytest.raises(UserError, match="gateware version 3, this neofpga needs version 4: rebuild the bitstream"):
        check_info(info, {"gateware_version": 4})
    with pytest.raises(UserError, match="numerics version .*: rebuild the bitstream from this neofpga"):
        check_info(info, {"numerics_version": NUMERICS_VERSION + 1})
    with pytest.raises(UserError, match="not a neofpga accelerator"):
        check_info({**info, "magic": 0}, {})


@pytest.fixture(scope="module")
def tinystories(tinystories_random):
    """The tinystories-33m preset (TinyStories-33M's shape, random weights), quantized on a little text."""
    source = load_source(tinystories_random)
    return quantize_checkpoint(source.checkpoint, source.tokenizer.encode(calibration_text(1))[:64])


def test_a_head_wider_than_one_product_goes_in_parts(tinystories):
    """TinyStories-33M's head has 50,257 columns: more than one MATMUL's 4,095."""
    big = dict(DEVICE, rows=9, cols=16, weight_words=2 ** 22, activation_words=2 ** 17, constant_words=2 ** 16,
               softmax_length=2048, max_payload=4096)
    device = AcceleratorModel(**big)
    ops = BoardOps(tinystories, AcceleratorDriver(Link(ModelTransport(device), timeout=0)), "stream", layers=[])
    golden = GoldenOps(tinystories)
    golden.reset(1)
    x = np.random.default_rng(0).integers(-2 ** 12, 2 ** 12, (1, 3, 768))
    assert np.array_equal(ops.head(x), golden.head(x))
    with pytest.raises(UserError, match="not placed on the device"):
        ops.attention(0, x, [0, 1, 2])


class OffByOne:
    """Integer ops that add 1 to one value of one unit's output (``unit``: "mlp L" or a LayerNorm's name) from
    position ``at`` on."""

    def __init__(self, ops, at, unit):
        self.ops, self.at, self.unit, self.position = ops, at, unit, 0

    def reset(self, batch=1):
        self.position = 0
        self.ops.reset(batch)

    def _off(self, unit, out):
        if unit == self.unit and self.position >= self.at:
            out = out.copy()
            out[0, -1, 5] += 1
        return out

    def embedding(self, ids, positions):
        self.position = int(positions[-1])
        return self.ops.embedding(ids, positions)

    def layer_norm(self, name, x):
        return self._off(name, self.ops.layer_norm(name, x))

    def attention(self, layer, x, positions):
        return self.ops.attention(layer, x, positions)

    def mlp(self, layer, x):
        return self._off(f"mlp {layer}", self.ops.mlp(layer, x))

    def head(self, x):
        return self.ops.head(x)


def test_compare_names_the_first_device_op_whose_integers_differ(default):
    from neofpga.host.comparison import compare_backends

    source = load_source(None)
    ids = source.tokenizer.encode("Once upon a time")
    same = compare_backends([golden_model(default), golden_model(default, name="emu2")], source.tokenizer, ids, 6, None)
    assert same["devices"]["emu2"]["first_op_difference"] is None
    for unit, name in (("mlp 2", "mlp, layer 2"), ("h.1.ln_2", "layer norm h.1.ln_2")):
        broken = golden_model(default, name="broken")
        broken.ops = OffByOne(broken.ops, at=len(ids) + 2, unit=unit)
        report = compare_backends([golden_model(default), broken], source.tokenizer, ids, 6, None)
        op = report["devices"]["broken"]["first_op_difference"]
        assert op == {"op": name, "positions": [len(ids) + 2], "values_differing": 1, "max_difference": 1}


def test_the_default_model_runs_resident_on_the_ulx3s_85f_design(default):
    """The memories the ULX3S-85F bitstream has hold the default model with its weights resident,
    and a prefill across the local layers' ring (positions 0..69, window 64) still equals golden."""
    from neofpga.boards.catalog import accelerator_parameters, board_named
    parameters = accelerator_parameters(board_named("ulx3s-85f"))
    device = {name: parameters[name] for name in DEVICE}
    ops, model, _ = open_board(default, "resident", **device)
    assert ops.words_used["weight_words"] <= device["weight_words"]
    lengths = [70, 1, 1]
    assert_same_results(op_results(ops, default.config, lengths), op_results(GoldenOps(default), default.config, lengths))
    assert model.counters["errors"] == 0


def test_the_default_model_runs_streamed_on_the_ulx3s_45f_design(default):
    """The ULX3S-45F's memories hold the default model streamed (and not resident)."""
    from neofpga.boards.catalog import accelerator_parameters, board_named
    parameters = accelerator_parameters(board_named("ulx3s-45f"))
    device = {name: parameters[name] for name in DEVICE}
    with pytest.raises(UserError, match="try residency 'stream'"):
        open_board(default, "resident", **device)
    ops, _, _ = open_board(default, "stream", **device)
    lengths = [66, 1]
    assert_same_results(op_results(ops, default.config, lengths), op_results(GoldenOps(default), default.config, lengths))
