"""The boards neofpga builds for: platform, clocks, pins, and the accelerator each one holds.

Every ECP5 board runs the same top (:class:`neofpga.boards.top.BoardTop`): the accelerator behind
the UART of its USB serial chip, clocked by a PLL. The NiteFury (Artix-7, Vivado) runs its own
(:class:`neofpga.boards.nitefury.NitefuryTop`): the accelerator behind XDMA's AXI4-Stream, clocked
by an MMCM. The accelerator each board holds (array, clock, memories) is the contract's
(:data:`neofpga.contract.design.BOARD_DESIGNS`), sized so that the default model fits with its
weights resident where the FPGA allows it; here are the rest: the platform, pins, programmer,
toolchain and nextpnr seed.
"""

import importlib
from dataclasses import dataclass, field

from ..contract import design
from ..contract.dram_control import controller_code
from ..contract.errors import UserError

__all__ = ["Board", "BOARDS", "board_named", "check_variant", "accelerator_parameters"]


@dataclass(frozen=True)
class Board:
    """A board: its amaranth-boards platform, pins, programmer, resources, toolchain, and nextpnr seed and placer."""

    name: str
    platform: str               # "module:Class" in amaranth_boards
    description: str
    reset: tuple = None         # (resource, number) of an active-high reset button, if any
    leds: tuple = ()            # (resource, number, subsignal or None): heartbeat, locked, rx, tx
    programmer: tuple = ()      # openFPGALoader's options naming the board's cable
    resources: dict = field(default_factory=dict)  # the FPGA's multipliers and block RAMs (ECP5: MULT18X18D, DP16KD)
    seed: int = 1               # nextpnr's seed for this board's design (--seed overrides)
    dram_seed: int = 1          # ... and for its DRAM design (neofpga build --dram)
    placer: str = "static"      # nextpnr's placer for it (--placer overrides; boards/build.py: PLACERS)
    toolchain: str = "nextpnr"  # "nextpnr" (Yosys, nextpnr-ecp5, ecppack: build.py) or "vivado" (vivado.py)

    @property
    def design(self):
        """The accelerator this board holds (:class:`~neofpga.contract.design.BoardDesign`)."""
        return design.BOARD_DESIGNS[self.name]

    @property
    def clock_mhz(self):
        """The system clock asked of the PLL or MMCM (--freq overrides)."""
        return self.design.clock_hz / 1e6

    @property
    def does_not_fit(self):
        """Why the accelerator does not fit this FPGA, if it does not."""
        return self.design.does_not_fit

    def platform_class(self):
        """The amaranth-boards platform class."""
        module, name = self.platform.split(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), name)


ECP5_85 = {"MULT18X18D": 156, "DP16KD": 208}
ULX3S_LEDS = (("led", 0, None), ("led", 1, None), ("led", 2, None), ("led", 3, None))
# Routing the 85F designs converges from some placements and not others (docs/BOARDS.md, "Why the
# static placer"): with the static placer and the pinned YoWASP tools of pyproject.toml, the
# netlist of the whole token on the device (the program units, a 2 x 16 array; INFO a ROM, so
# later edits that change only the gateware version keep it) routes on the ULX3S-85F at seed 1
# and on the ECPIX-5 at seed 3. Their DRAM designs (LiteDRAM's controller in, one row): the
# ECPIX-5's at seed 3; the ULX3S-85F's at seed 1 ends with one overused wire, at seed 2 (below).
ULX3S_85F_SEED = 1
ECPIX5_85_SEED = 3
ULX3S_85F_DRAM_SEED = 2
ECPIX5_85_DRAM_SEED = 3
NITEFURY_PROGRAMMER = ("-c", "digilent_hs3", "--fpga-part", "xc7a200tfbg484")
"""openFPGALoader has no NiteFury board entry: the cable (the JTAG adapter's; amaranth-boards'
platform uses a Digilent HS3) and the FPGA, which writing the SPI flash through the FPGA needs."""

BOARDS = {board.name: board for board in [
    Board("ulx3s-85f", "ulx3s:ULX3S_85F_Platform", "Radiona ULX3S with an LFE5U-85F (speed 6)",
          reset=("button_fire", 0), leds=ULX3S_LEDS,
          programmer=("-b", "ulx3s"), resources=ECP5_85, seed=ULX3S_85F_SEED,
          dram_seed=ULX3S_85F_DRAM_SEED),
    Board("ulx3s-45f", "ulx3s:ULX3S_45F_Platform", "Radiona ULX3S with an LFE5U-45F (speed 6)",
          reset=("button_fire", 0), leds=ULX3S_LEDS,
          programmer=("-b", "ulx3s"), resources={"MULT18X18D": 72, "DP16KD": 108}),
    Board("ulx3s-25f", "ulx3s:ULX3S_25F_Platform", "Radiona ULX3S with an LFE5U-25F",
          reset=("button_fire", 0), leds=ULX3S_LEDS, programmer=("-b", "ulx3s"),
          resources={"MULT18X18D": 28, "DP16KD": 56}),
    Board("ulx3s-12f", "ulx3s:ULX3S_12F_Platform", "Radiona ULX3S with an LFE5U-12F",
          reset=("button_fire", 0), leds=ULX3S_LEDS, programmer=("-b", "ulx3s"),
          resources={"MULT18X18D": 28, "DP16KD": 32}),
    Board("ecpix5-85", "ecpix5:ECPIX585Platform", "LambdaConcept ECPIX-5 with an LFE5UM5G-85F (speed 8)",
          reset=("rst", 0),
          leds=(("rgb_led", 0, "g"), ("rgb_led", 1, "g"), ("rgb_led", 2, "g"), ("rgb_led", 3, "g")),
          programmer=("-c", "ft2232"), resources=ECP5_85, seed=ECPIX5_85_SEED,
          dram_seed=ECPIX5_85_DRAM_SEED),
    Board("nitefury", "nitefury:NitefuryIIPlatform", "RHS Research NiteFury-II with an XC7A200T-2 (M.2 PCIe Gen2 x4)",
          programmer=NITEFURY_PROGRAMMER, resources={"DSP48E1": 740, "RAMB36E1": 365}, toolchain="vivado"),
]}


def board_named(name):
    """The board called ``name``; a one-line error naming the known ones otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise UserError(f"unknown board {name!r}: neofpga builds for {', '.join(BOARDS)}") from None


def check_variant(board, dram=False, stream=False):
    """A one-line :class:`UserError` unless ``board`` has the design asked for: its DRAM design
    (``dram``), its streamed design (``stream``: a PCIe board's), or its block-RAM one."""
    if dram and stream:
        raise UserError("--stream and --dram are two designs: give one")
    board_design = design.board_design(board.name)  # a one-line error if nothing fits
    if dram and not board_design.dram:
        raise UserError(f"{board.name} has no DRAM design")
    if stream and board_design.link != "pcie":
        raise UserError(f"{board.name} has no streamed design: its link is a UART, and the weights stream over "
                        f"PCIe (nitefury has one)")
    return board_design


def accelerator_parameters(board, rows=None, cols=None, clock_mhz=None, dram=False, stream=False):
    """The :class:`~neofpga.hdl.accelerator.Accelerator` parameters of ``board`` (array and clock
    as given, else the board's; the clock the PLL, or on a Vivado board the MMCM, makes nearest to
    it); with ``dram``, of its DRAM design, its DRAM controller's registers the CONTROL space; with
    ``stream``, of its streamed design (a PCIe board's: block RAM and the host's weight stream)."""
    from .mmcm import mmcm_settings
    from .pll import pll_settings
    from .top import input_mhz

    board_design = check_variant(board, dram, stream)
    settings = mmcm_settings if board.toolchain == "vivado" else pll_settings
    clock_hz = round(settings(input_mhz(board), clock_mhz or board.clock_mhz).output_mhz * 1e6)
    parameters = design.accelerator_parameters(board_design, rows, cols, clock_hz, dram=dram, stream=stream)
    return {**parameters, "dram_controller": controller_code(board_design.dram)} if dram else parameters
