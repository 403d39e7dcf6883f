"""neofpga selftest: passes on the reference device and on the ULX3S-85F design in simulation
(also as a serial device, its gateware version checked), and fails on a faulty device."""

import json

import numpy as np
import pytest
from neofpga.boards.catalog import accelerator_parameters, board_named
from neofpga.contract.design import SIMULATED_BOARD, simulated_parameters
from neofpga.contract.errors import UserError
from neofpga.contract.gateware_version import gateware_version
from neofpga.contract.protocol import Opcode, Space
from neofpga.host.accelerator_model import AcceleratorModel, ModelTransport
from neofpga.host.board_backend import check_board_gateware
from neofpga.host.cli import main
from neofpga.host.driver import AcceleratorDriver
from neofpga.host.link import Link
from neofpga.host.selftest import run_selftest
from neofpga.sim.simulated_board import start_simulated_board

ULX3S = accelerator_parameters(board_named("ulx3s-85f"))
MODEL_PARAMETERS = ("rows", "cols", "activation_words", "weight_words", "constant_words", "gelu_tables",
                    "max_payload", "softmax_length", "clock_hz")


def reference_device():
    model = AcceleratorModel(**{name: ULX3S[name] for name in MODEL_PARAMETERS})
    return model, AcceleratorDriver(Link(ModelTransport(model), timeout=0))


def outcomes(checks):
    return {check.name: check.passed for check in checks}


def test_the_reference_device_passes_every_check():
    _, device = reference_device()
    checks, figures = run_selftest(device)
    assert all(outcomes(checks).values()), checks
    assert set(outcomes(checks)) == {"info", "memory activations", "memory weights", "memory constants",
                                     "range checks", "matmul", "softmax", "gelu", "counters", "link"}
    assert figures["write_bytes_per_second"] > 0 and figures["round_trip_seconds"] > 0
    assert figures["device_writes"] is None  # the reference device counts no cycles


def test_the_vector_ops_are_checked_where_the_device_has_them():
    """EMBED, NORM and SAMPLE are checked on a device with the vector ops; a LayerNorm that writes
    one word wrong fails the check."""
    model = AcceleratorModel(**{name: ULX3S[name] for name in MODEL_PARAMETERS}, norm_length=64)
    device = AcceleratorDriver(Link(ModelTransport(model), timeout=0))
    assert outcomes(run_selftest(device)[0])["vector ops"]
    plan = model._plan_norm

    def off_by_one(fields):
        run = plan(fields)

        def broken():
            run()
            model.memory[Space.ACTIVATIONS][fields["out_bank"], fields["out_address"]] += 1
        return broken

    model._plan_norm = off_by_one
    results = outcomes(run_selftest(device)[0])
    assert not results["vector ops"] and results["matmul"]


@pytest.mark.parametrize("error", [1, -1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sums_off_by_one_fail_the_products(error, seed):
    model, device = reference_device()
    requantize = model._requantize
    model._requantize = lambda sums, records, low, high: requantize(sums + error, records, low, high)
    results = outcomes(run_selftest(device, seed=seed)[0])
    assert not results["matmul"] and not results["gelu"]
    assert results["memory weights"] and results["softmax"]


def test_a_weight_bank_that_drops_writes_fails_the_memory_check():
    model, device = reference_device()
    write = model.handlers[Opcode.WRITE]

    def forgetful(payload):
        if payload[0] == Space.WEIGHTS and payload[1] == 7:
            return b""
        return write(payload)

    model.handlers[Opcode.WRITE] = forgetful
    checks = run_selftest(device)[0]
    failed = [check for check in checks if not check.passed]
    assert failed[0].name == "memory weights" and "bank 7 at 0" in failed[0].detail


def test_a_mac_counter_that_miscounts_fails_the_counters_check():
    model, device = reference_device()
    matmul = model.handlers[Opcode.MATMUL]

    def miscounted(payload):
        answer = matmul(payload)
        model.counters["macs"] += 1
        return answer

    model.handlers[Opcode.MATMUL] = miscounted
    results = outcomes(run_selftest(device)[0])
    assert not results["counters"] and results["matmul"] and results["softmax"] and results["gelu"]


@pytest.fixture(scope="module")
def ulx3s_board():
    """The ULX3S-85F's accelerator on a simulated board (built on first use, about a minute)."""
    board = start_simulated_board(simulated_parameters("ulx3s-85f"))
    yield board
    board.close()


def test_selftest_passes_on_the_ulx3s_design_in_simulation(capsys):
    assert main(["selftest", "--device", "sim", "--board", "ulx3s-85f", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and all(check["passed"] for check in report["checks"])
    assert f"2x16 array at {ULX3S['clock_hz'] / 1e6:g} MHz" in report["checks"][0]["detail"]


def test_a_serial_board_with_the_ulx3s_gateware_passes(ulx3s_board, capsys):
    """A real board's path (serial:, its gateware version checked against the catalogue) over
    pyserial's socket:// to the simulated ULX3S-85F design."""
    assert main(["selftest", "--device", f"serial:{ulx3s_board.url}"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 11 and "FAIL" not in out  # the vector ops check too
    assert f"gateware {gateware_version(ULX3S):016x}" in out


def test_a_board_with_other_gateware_is_refused():
    info = dict(ULX3S, magic=0, numerics_version=0, gateware_version=gateware_version(ULX3S) ^ 1)
    with pytest.raises(UserError, match=r"this neofpga builds [0-9a-f]{16} for ulx3s-85f.*: rebuild the bitstream \(neofpga build"):
        check_board_gateware(info)
    with pytest.raises(UserError, match="is none that this neofpga builds"):
        check_board_gateware(dict(info, weight_words=SIMULATED_BOARD["weight_words"]))


def test_selftest_needs_a_board_device(capsys):
    assert main(["selftest", "--device", "emu"]) == 2
    assert "bad board device 'emu'" in capsys.readouterr().err
    np.testing.assert_equal(main(["selftest", "--device", "serial:/dev/neofpga-none"]), 2)
    assert "cannot open /dev/neofpga-none" in capsys.readouterr().err
