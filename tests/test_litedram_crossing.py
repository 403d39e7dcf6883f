"""hdl/dram_crossing.py with LiteDRAM's own controller in Verilator (testbench: tb_litedram_crossing.py).

The controller is the ULX3S's as boards/litedram_core.py generates it, but with LiteDRAM's PHY
model in place of the SDRAM's pins (boards/litedram_sim_core.py). The accelerator's side runs at
30 MHz, the controller's at 50 MHz, as on the board. host/dram_init.py initialises the DRAM through
the control port, as it does over the link; then DRAM words written with random byte enables
through the 16-bit port (8 bursts a word) read back, under random stalls of the read data; and
sequential reads cross at the controller's own pace."""

from pathlib import Path

import pytest
from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neofpga.contract.dram_control import CONTROL_WORDS
from neofpga.hdl.control_port import ControlPort
from neofpga.hdl.dram_crossing import DramCrossing
from neofpga.hdl.dram_port import DramPort
from neofpga.sim.runner import run_cocotb, verilog_for

pytest.importorskip("litedram")
from neofpga.boards.litedram_sim_core import litedram_sim_core  # noqa: E402

TB = Path(__file__).with_name("tb_litedram_crossing.py")
ROWS = 256                  # of the simulated chip: 1 MiB
ADDRESS_WIDTH = 16          # DRAM words of 16 bytes: 1 MiB
CONTROL_ADDRESS_WIDTH = (CONTROL_WORDS - 1).bit_length()


class CrossingWithLiteDRAM(wiring.Component):
    """The crossing between the accelerator's ports (domain ``sync``) and LiteDRAM's simulated core
    (its clock ``dram_clk``, its reset ``dram_rst``)."""

    dram: In(DramPort(ADDRESS_WIDTH))
    control: In(ControlPort(CONTROL_ADDRESS_WIDTH))
    dram_clk: In(1)
    dram_rst: In(1)
    init_done: Out(1)

    def __init__(self, core):
        self.core = core
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.domains.dram = ClockDomain("dram")
        m.submodules.crossing = crossing = DramCrossing(ADDRESS_WIDTH, self.core.port_data_bits,
                                                        self.core.port_address_bits, CONTROL_ADDRESS_WIDTH)
        wiring.connect(m, wiring.flipped(self.dram), crossing.dram)
        wiring.connect(m, wiring.flipped(self.control), crossing.control)
        native, bus = crossing.native, crossing.wishbone
        m.submodules.core = Instance(
            "litedram_core", i_clk=self.dram_clk, i_rst=self.dram_rst, o_user_clk=ClockSignal("dram"),
            o_user_rst=ResetSignal("dram"), o_init_done=self.init_done,
            i_user_port_native_0_cmd_valid=native.cmd.valid, o_user_port_native_0_cmd_ready=native.cmd.ready,
            i_user_port_native_0_cmd_we=native.cmd.payload.we, i_user_port_native_0_cmd_addr=native.cmd.payload.addr,
            i_user_port_native_0_wdata_valid=native.wdata.valid,
            o_user_port_native_0_wdata_ready=native.wdata.ready,
            i_user_port_native_0_wdata_data=native.wdata.payload.data,
            i_user_port_native_0_wdata_we=native.wdata.payload.we,
            o_user_port_native_0_rdata_valid=native.rdata.valid,
            i_user_port_native_0_rdata_ready=native.rdata.ready,
            o_user_port_native_0_rdata_data=native.rdata.payload,
            i_wb_ctrl_adr=bus.adr, i_wb_ctrl_dat_w=bus.dat_w, o_wb_ctrl_dat_r=bus.dat_r, i_wb_ctrl_sel=bus.sel,
            i_wb_ctrl_cyc=bus.cyc, i_wb_ctrl_stb=bus.stb, i_wb_ctrl_we=bus.we, o_wb_ctrl_ack=bus.ack,
            i_wb_ctrl_cti=0, i_wb_ctrl_bte=0)
        return m


@pytest.mark.parametrize("seed, ready_probability, port_bits", [(1, 1.0, None), (2, 0.3, None), (3, 0.5, 128)])
def test_the_host_initialises_litedram_and_words_cross_both_ways(tmp_path, seed, ready_probability, port_bits):
    """Through the chip's own 16-bit port (the ULX3S's bitstream), and through a port of whole DRAM
    words (as the ECPIX-5's, whose DDR3 bursts are 16 bytes; here LiteDRAM's up-converter makes them)."""
    core = litedram_sim_core("ulx3s-85f", rows=ROWS, port_data_bits=port_bits)
    assert core.port_data_bits == (port_bits or 16)
    assert core.port_address_bits == ADDRESS_WIDTH + (3 if port_bits is None else 0)
    verilog = verilog_for(CrossingWithLiteDRAM(core)) + core.verilog.read_text()
    env = {"SEED": str(seed), "READY_PROBABILITY": str(ready_probability), "ADDRESS_WIDTH": str(ADDRESS_WIDTH)}
    run_cocotb(verilog, test_module=TB, testcase="initialise_then_write_and_read", run_dir=tmp_path, extra_env=env)


def test_sequential_reads_cross_at_the_controllers_pace(tmp_path):
    """LiteDRAM's controller takes a burst a cycle but for its row changes and refreshes (1.039
    cycles a burst, docs/DRAM.md); through the crossing's 8 bursts a word that stays so."""
    core = litedram_sim_core("ulx3s-85f", rows=ROWS)
    verilog = verilog_for(CrossingWithLiteDRAM(core)) + core.verilog.read_text()
    env = {"SEED": "0", "READY_PROBABILITY": "1", "ADDRESS_WIDTH": str(ADDRESS_WIDTH),
           "FIGURES": str(tmp_path / "figures.txt")}
    run_cocotb(verilog, test_module=TB, testcase="sequential_reads_stream_at_the_controllers_pace", run_dir=tmp_path,
               extra_env=env)
    per_word = float((tmp_path / "figures.txt").read_text())
    assert 8 <= per_word < 8 * 1.06
