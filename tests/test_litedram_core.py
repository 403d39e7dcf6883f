"""boards/litedram_core.py: LiteDRAM's controllers generated for the boards' DRAM as contract/dram.py
describes it (the timings, with the board's overrides), with the user port the accelerator's DRAM
port drives and the control registers through which the DRAM is initialised."""

import pytest

from neofpga.boards.litedram_core import litedram_core
from neofpga.contract.dram import DRAM_WORD_BYTES, board_dram

TIMINGS = ("tRP", "tRCD", "tWR", "tWTR", "tREFI", "tRFC", "tCCD", "tRRD", "tRAS")


@pytest.mark.parametrize("board", ["ulx3s-85f", "ecpix5-85"])
def test_the_generated_controller_has_the_contracts_timings_and_the_accelerators_port(board, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("NEOFPGA_LITEDRAM_CACHE", str(tmp_path))
    dram = board_dram(board)
    core = litedram_core(board)
    assert core.timing == {name: getattr(dram, name) for name in TIMINGS}
    assert (core.port_address_bits, core.port_data_bits) == ((dram.words - 1).bit_length(), 8 * DRAM_WORD_BYTES)
    verilog = core.verilog.read_text()
    for name in ("cmd_valid", "cmd_ready", "cmd_we", "cmd_addr", "wdata_valid", "wdata_ready", "wdata_data",
                 "wdata_we", "rdata_valid", "rdata_ready", "rdata_data"):
        assert f"user_port_native_0_{name}" in verilog
    assert "init_done" in verilog and "wb_ctrl_adr" in verilog
    assert "sdram_dfii_control" in core.csr_csv.read_text()  # the DFII, for the DRAM's initialisation
    assert litedram_core(board) == core  # from the cache the second time
