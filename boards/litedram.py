"""A board's LiteDRAM controller in the bitstream: the generated core as an Amaranth Instance, and its pins.

The core (:func:`.litedram_core.litedram_core`) drives the DRAM's pins itself, through its own
I/O cells (ECP5DDRPHY's DDR cells and delays, GENSDRPHY's I/O registers), so its pins are passed
to it raw. They are the board's DRAM pins as amaranth-boards names them, requested as a resource of
the core's names and with the I/O standards of litex-boards' platforms, on which LiteDRAM runs
these boards: the ECPIX-5's differential clock and strobes by their positive pins only (the ECP5
drives the pair from it); its chip's reset and chip select are not wired (the core's outputs for
them stay unconnected).

The SDR SDRAM's clock is not the core's: the ULX3S drives it from a copy of the controller's clock
shifted by 90 degrees, through an output DDR cell (as litex-boards' ULX3S does).
"""

from amaranth.build import Attrs, DiffPairs, Pins, Resource, Subsignal
from amaranth.hdl import ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal

from ..contract.dram import board_dram
from .litedram_core import litedram_core

__all__ = ["dram_resource", "core_ports", "LiteDRAM"]

RESOURCE = "litedram_pins"


def _pins(resource, name):
    """The pin names of subsignal ``name`` of ``resource`` (the positive ones of a differential pair)."""
    io = next(sub for sub in resource.ios if sub.name == name).ios[0]
    return " ".join((io.p if isinstance(io, DiffPairs) else io).names)


def dram_resource(platform, family):
    """The resource of the DRAM's pins by the core's names, for ``family``'s board ``platform``."""
    if family == "ulx3s":
        board = platform.lookup("sdram", 0)
        names = {"a": "a", "ba": "ba", "ras_n": "ras", "cas_n": "cas", "we_n": "we", "cs_n": "cs",
                 "dm": "dqm", "dq": "dq", "cke": "clk_en", "clock": "clk"}
        attrs = Attrs(PULLMODE="NONE", DRIVE="4", SLEWRATE="FAST", IO_TYPE="LVCMOS33")
        return Resource(RESOURCE, 0, *(Subsignal(ours, Pins(_pins(board, theirs), dir="io")) for ours, theirs in names.items()),
                        attrs)
    board = platform.lookup("ddr3", 0)
    single = {"a": "a", "ba": "ba", "ras_n": "ras", "cas_n": "cas", "we_n": "we", "dm": "dm", "odt": "odt",
              "cke": "clk_en"}
    return Resource(RESOURCE, 0,
                    *(Subsignal(ours, Pins(_pins(board, theirs), dir="io")) for ours, theirs in single.items()),
                    Subsignal("dq", Pins(_pins(board, "dq"), dir="io"), Attrs(TERMINATION="75")),
                    Subsignal("clk_p", Pins(_pins(board, "clk"), dir="io"), Attrs(IO_TYPE="SSTL15D_I")),
                    Subsignal("dqs_p", Pins(_pins(board, "dqs"), dir="io"),
                              Attrs(IO_TYPE="SSTL15D_I", TERMINATION="OFF", DIFFRESISTOR="100")),
                    Attrs(IO_TYPE="SSTL15_I", SLEWRATE="FAST"))


def core_ports(native, wishbone, clock, reset, domain):
    """The Instance connections of a generated core (``litedram_core``, the board's or
    :mod:`.litedram_sim_core`'s) but its pins: its input ``clock`` and ``reset``, its user clock
    and reset as domain ``domain``'s, its native port to ``native`` and its control bus to
    ``wishbone`` (:class:`~neofpga.hdl.dram_crossing.DramCrossing`'s far side), and ``o_init_done``
    to a signal of its own."""
    return dict(
        i_clk=clock, i_rst=reset, o_user_clk=ClockSignal(domain), o_user_rst=ResetSignal(domain),
        o_init_done=Signal(name="litedram_init_done"),
        i_user_port_native_0_cmd_valid=native.cmd.valid, o_user_port_native_0_cmd_ready=native.cmd.ready,
        i_user_port_native_0_cmd_we=native.cmd.payload.we, i_user_port_native_0_cmd_addr=native.cmd.payload.addr,
        i_user_port_native_0_wdata_valid=native.wdata.valid, o_user_port_native_0_wdata_ready=native.wdata.ready,
        i_user_port_native_0_wdata_data=native.wdata.payload.data,
        i_user_port_native_0_wdata_we=native.wdata.payload.we,
        o_user_port_native_0_rdata_valid=native.rdata.valid, i_user_port_native_0_rdata_ready=native.rdata.ready,
        o_user_port_native_0_rdata_data=native.rdata.payload,
        i_wb_ctrl_adr=wishbone.adr, i_wb_ctrl_dat_w=wishbone.dat_w, o_wb_ctrl_dat_r=wishbone.dat_r,
        i_wb_ctrl_sel=wishbone.sel, i_wb_ctrl_cyc=wishbone.cyc, i_wb_ctrl_stb=wishbone.stb, i_wb_ctrl_we=wishbone.we,
        o_wb_ctrl_ack=wishbone.ack, i_wb_ctrl_cti=0, i_wb_ctrl_bte=0)


class LiteDRAM(Elaboratable):
    """``board``'s LiteDRAM core, its user port and control bus in clock domain ``domain`` (the
    core's clock, which it makes).

    ``clock``: the core's input clock (the SDR core runs at it; the DDR3 core makes its own from
    it); ``shifted``: on the SDR board, the same clock 90 degrees later, for the chip; ``reset``:
    holds the core in reset. ``native`` and ``wishbone`` are the interfaces of
    :class:`~neofpga.hdl.dram_crossing.DramCrossing`'s far side.
    """

    def __init__(self, board, native, wishbone, clock, reset, shifted=None, domain="dram"):
        self.board, self.native, self.wishbone = board, native, wishbone
        self.clock, self.reset, self.shifted, self.domain = clock, reset, shifted, domain
        self.dram = board_dram(board)
        self.core = litedram_core(board)
        self.init_done = Signal()
        self.init_error = Signal()

    def elaborate(self, platform):
        m = Module()
        family = self.board.split("-")[0]
        platform.add_file(f"{self.core.verilog.stem}.v", self.core.verilog.read_text())
        platform.add_resources([dram_resource(platform, family)])
        pins = platform.request(RESOURCE, 0, dir="-")
        ports = dict(core_ports(self.native, self.wishbone, self.clock, self.reset, self.domain),
                     o_init_error=self.init_error)
        m.d.comb += self.init_done.eq(ports["o_init_done"])
        prefix = "sdram" if family == "ulx3s" else "ddram"
        for name in ("a", "ba", "ras_n", "cas_n", "we_n", "dm", "dq", "cke") + (
                ("cs_n",) if family == "ulx3s" else ("odt", "clk_p", "dqs_p")):
            ports[f"io_{prefix}_{name}"] = getattr(pins, name).io
        if family != "ulx3s":
            ports["o_pll_locked"] = Signal(name="litedram_pll_locked")
        m.submodules.core = Instance(self.core.verilog.stem, **ports)
        if self.shifted is not None:  # the SDRAM's clock: the shifted clock through an output DDR cell
            m.submodules.sdram_clock = Instance("ODDRX1F", i_SCLK=self.shifted, i_RST=0, i_D0=1, i_D1=0,
                                                o_Q=pins.clock.io)
        return m
