"""boards/litedram_core.py: LiteDRAM's controllers generated for the boards' DRAM as contract/dram.py
describes it (the timings, with the board's overrides), with the user port the DRAM crossing drives
(hdl/dram_crossing.py: a column access wide) and the control registers and init sequence through
which the host initialises the DRAM (contract/dram_control.py)."""

import csv

import pytest

from neofpga.boards.litedram_core import litedram_core
from neofpga.contract.dram import board_dram
from neofpga.contract.dram_control import BOARD_CONTROLS

TIMINGS = ("tRP", "tRCD", "tWR", "tWTR", "tREFI", "tRFC", "tCCD", "tRRD", "tRAS")
DFII_BITS = {"DFII_CONTROL_SEL": 1, "DFII_CONTROL_CKE": 2, "DFII_CONTROL_ODT": 4, "DFII_CONTROL_RESET_N": 8,
             "DFII_COMMAND_CS": 1, "DFII_COMMAND_WE": 2, "DFII_COMMAND_CAS": 4, "DFII_COMMAND_RAS": 8,
             "DFII_COMMAND_WRDATA": 0x10, "DFII_COMMAND_RDDATA": 0x20}


@pytest.fixture(scope="module", params=["ulx3s-85f", "ecpix5-85"])
def generated(request, tmp_path_factory):
    """(board, its controller generated afresh into an empty cache)."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("NEOFPGA_LITEDRAM_CACHE", str(tmp_path_factory.mktemp("litedram")))
    yield request.param, litedram_core(request.param)
    monkeypatch.undo()


def test_the_generated_controller_has_the_contracts_timings_and_a_port_a_column_access_wide(generated):
    board, core = generated
    dram = board_dram(board)
    assert core.timing == {name: getattr(dram, name) for name in TIMINGS}
    assert (core.port_address_bits, core.port_data_bits) == \
        ((dram.size_bytes // dram.word_bytes - 1).bit_length(), 8 * dram.word_bytes)
    verilog = core.verilog.read_text()
    for name in ("cmd_valid", "cmd_ready", "cmd_we", "cmd_addr", "wdata_valid", "wdata_ready", "wdata_data",
                 "wdata_we", "rdata_valid", "rdata_ready", "rdata_data"):
        assert f"user_port_native_0_{name}" in verilog
    assert "init_done" in verilog and "wb_ctrl_adr" in verilog
    assert litedram_core(board) == core  # from the cache the second time


def test_the_contracts_control_registers_are_the_generated_controllers(generated):
    board, core = generated
    control = BOARD_CONTROLS[board.split("-")[0]]
    rows = [row for row in csv.reader(core.csr_csv.read_text().splitlines()) if row and row[0] == "csr_register"]
    generated_words = {name: int(address, 0) // 4 for _, name, address, *_ in rows}
    assert control.registers == {name: generated_words[name] for name in control.registers}
    for phase in range(control.phases):
        for name in ("command", "command_issue", "address", "baddress", "wrdata", "rddata"):
            assert control.phase_register(phase, name) == generated_words[f"sdram_dfii_pi{phase}_{name}"]
    sizes = {name: int(size) for _, name, _, size, *_ in rows}
    assert sizes["sdram_dfii_pi0_wrdata"] == sizes["sdram_dfii_pi0_rddata"] == control.data_words
    assert all(name.startswith(("ddrctrl_", "ddrphy_", "sdram_dfii_")) for name in generated_words)
    leveling = core.leveling
    assert (control.read_leveling, control.read_phase, control.write_phase) == \
        (leveling["read_leveling"], leveling["rdphase"], leveling["wrphase"])
    if control.read_leveling:
        assert (control.modules, control.delays, control.bitslips) == \
            (leveling["strobes"], leveling["delays"], leveling["bitslips"])


def test_the_contracts_init_sequence_is_litedrams(generated):
    board, core = generated
    control = BOARD_CONTROLS[board.split("-")[0]]
    expected = [(comment, not command.startswith("DFII_CONTROL"), sum(DFII_BITS[bit] for bit in command.split("|")),
                 address, bank, delay) for comment, address, bank, command, delay in core.init_sequence]
    assert [(step.comment, step.command, step.value, step.address if step.command else 0,
             step.bank if step.command else 0, step.delay) for step in control.init] == expected
