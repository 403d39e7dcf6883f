"""hdl/dram_crossing.py with LiteDRAM's own controller in Verilator (testbench: tb_litedram_crossing.py).

The controller is the ULX3S's as boards/litedram_core.py generates it, but with LiteDRAM's PHY
model in place of the SDRAM's pins (boards/litedram_sim_core.py). The accelerator's side runs at
30 MHz, the controller's at 50 MHz, as on the board. host/dram_init.py initialises the DRAM through
the control port, as it does over the link; then DRAM words written with random byte enables
through the 16-bit port (8 bursts a word) read back, under random stalls of the read data; and
sequential reads cross at the controller's own pace."""

from pathlib import Path

import pytest
from amaranth.hdl import ClockDomain, Instance, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neofpga.contract.dram_control import CONTROL_WORDS
from neofpga.hdl.control_port import ControlPort
from neofpga.hdl.dram_crossing import DramCrossing
from neofpga.hdl.dram_port import DramPort
from neofpga.sim.runner import run_cocotb, verilog_for

pytest.importorskip("litedram")
from neofpga.boards.litedram import core_ports  # noqa: E402
from neofpga.boards.litedram_sim_core import litedram_sim_core  # noqa: E402

TB = Path(__file__).with_name("tb_litedram_crossing.py")
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
        ports = core_ports(crossing.native, crossing.wishbone, self.dram_clk, self.dram_rst, "dram")
        m.d.comb += self.init_done.eq(ports["o_init_done"])
        m.submodules.core = Instance("litedram_core", **ports)
        return m


CASES = {  # a board's DRAM: its simulated chip's rows (1 MiB either way), the clocks (ps), bursts a DRAM word
    "ulx3s": ("ulx3s-85f", 256, 33_334, 20_000, 8),   # the accelerator at 30 MHz, LiteDRAM at 50
    "ecpix5": ("ecpix5-85", 64, 27_778, 13_334, 1),   # 36 MHz and 75 (the DDR3 at 1:2)
}


def run(tmp_path, family, testcase, port_bits=None, **env):
    board, rows, accelerator_ps, controller_ps, bursts = CASES[family]
    core = litedram_sim_core(board, rows=rows, port_data_bits=port_bits)
    verilog = verilog_for(CrossingWithLiteDRAM(core)) + core.verilog.read_text()
    env = {"FAMILY": family, "CSR_CSV": str(core.csr_csv), "ACCELERATOR_PS": str(accelerator_ps),
           "CONTROLLER_PS": str(controller_ps), "BURSTS": str(bursts), "ADDRESS_WIDTH": str(ADDRESS_WIDTH),
           "SEED": "0", "READY_PROBABILITY": "1", "FIGURES": str(tmp_path / "figures.txt"),
           **{name: str(value) for name, value in env.items()}}
    run_cocotb(verilog, test_module=TB, testcase=testcase, run_dir=tmp_path, extra_env=env)
    return core


@pytest.mark.parametrize("family, port_bits, seed, ready_probability", [
    ("ulx3s", None, 1, 1.0), ("ulx3s", None, 2, 0.3),  # the SDRAM's own 16-bit port: 8 bursts a DRAM word
    ("ulx3s", 128, 3, 0.5),                            # a port of whole words (LiteDRAM's up-converter)
    ("ecpix5", None, 4, 0.5),                          # the DDR3's own 128-bit port at 1:2: a burst a word
])
def test_the_host_initialises_litedram_and_words_cross_both_ways(tmp_path, family, port_bits, seed,
                                                                 ready_probability):
    core = run(tmp_path, family, "initialise_then_write_and_read", port_bits, SEED=seed,
               READY_PROBABILITY=ready_probability)
    bursts = CASES[family][4] if port_bits is None else 1
    assert core.port_address_bits == ADDRESS_WIDTH + (bursts - 1).bit_length()


@pytest.mark.parametrize("family, lowest, highest", [
    # LiteDRAM takes a burst a cycle but for row changes and refreshes: 1.039 cycles a burst at its
    # own width; the crossing keeps that (its 8 bursts a word back to back)
    ("ulx3s", 8.0, 8 * 1.06),
    # a BL8 burst every 2 cycles but for row changes and refreshes (2.154 cycles a word on the
    # native port), and the accelerator takes a word a 36 MHz cycle at most (2.083 of LiteDRAM's)
    ("ecpix5", 75 / 36, 2 * 1.10),
])
def test_sequential_reads_cross_at_the_controllers_pace(tmp_path, family, lowest, highest):
    """The figures in docs/DRAM.md ("The bitstreams"), written to the test's log."""
    run(tmp_path, family, "sequential_reads_stream_at_the_controllers_pace")
    per_word = float((tmp_path / "figures.txt").read_text())
    print(f"{family}: {per_word:.4f} controller cycles a DRAM word")
    assert lowest <= per_word < highest
