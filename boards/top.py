"""The top of a board's bitstream: PLL, reset, the accelerator behind the UART, status LEDs, and
on a DRAM design the board's DRAM controller.

LEDs, where the board has them: a heartbeat (the system clock runs), PLL locked, and the receive
and transmit activity of the UART, each byte stretched to a visible 20 ms.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from ..contract.dram import board_dram
from ..contract.dram_control import CONTROL_WORDS
from ..hdl.accelerator import Accelerator
from ..hdl.dram_crossing import DramCrossing
from ..hdl.uart import UART
from .litedram import LiteDRAM
from .litedram_core import litedram_core
from .leds import stretched
from .pll import ecp5_pll, pll_settings

__all__ = ["BoardTop", "input_mhz"]


def input_mhz(board):
    """The frequency of ``board``'s clock input (its platform's default clock)."""
    platform = board.platform_class()
    clock = next(r for r in platform.resources if r.name == platform.default_clk)
    return clock.clock.frequency / 1e6


class BoardTop(Elaboratable):
    """``board``'s bitstream top around an :class:`Accelerator` with ``parameters``.

    ``baud``: the UART's rate; the bit period is the nearest whole number of system clocks. With
    ``dram_words`` among the parameters, the accelerator's DRAM is the board's, through LiteDRAM's
    controller (:class:`~.litedram.LiteDRAM`) in its own clock domain, and its control registers
    are the CONTROL space (INFO's ``dram_controller`` says whose).
    """

    def __init__(self, board, parameters, baud, gateware_version):
        self.board, self.parameters, self.baud = board, parameters, baud
        self.gateware_version = gateware_version
        self.settings = pll_settings(input_mhz(board), parameters["clock_hz"] / 1e6)
        self.divisor = round(parameters["clock_hz"] / baud)
        self.dram = board_dram(board.name) if parameters.get("dram_words") else None

    def elaborate(self, platform):
        m = Module()
        m.submodules.clock_in = clock_in = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.submodules.pll, clock, locked = ecp5_pll(clock_in.i, self.settings)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clock)
        platform.add_clock_constraint(clock, self.parameters["clock_hz"])
        reset = ~locked
        if self.board.reset:
            m.submodules.reset_in = button = io.Buffer("i", platform.request(*self.board.reset, dir="-"))
            reset |= button.i
        m.submodules.reset_sync = ResetSynchronizer(reset, domain="sync")

        m.submodules.accelerator = accelerator = Accelerator(**self.parameters,
                                                             gateware_version=self.gateware_version)
        if self.dram is not None:
            self._dram(m, platform, accelerator, clock_in.i, reset)
        m.submodules.uart = uart = UART(self.divisor)
        pins = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", pins.rx)
        m.submodules.tx = tx = io.Buffer("o", pins.tx)
        m.d.comb += [uart.rx.eq(rx.i), tx.o.eq(uart.tx)]
        wiring.connect(m, uart.o, accelerator.i)
        wiring.connect(m, accelerator.o, uart.i)

        stretch = self.parameters["clock_hz"] // 50
        heartbeat = Signal(range(self.parameters["clock_hz"]))
        m.d.sync += heartbeat.eq(heartbeat + 1)
        statuses = [heartbeat[-1], locked,
                    stretched(m, uart.o.valid & uart.o.ready, stretch),
                    stretched(m, uart.i.valid & uart.i.ready, stretch)]
        for index, ((name, number, subsignal), status) in enumerate(zip(self.board.leds, statuses)):
            led = platform.request(name, number, dir="-")
            m.submodules[f"led{index}"] = buffer = io.Buffer("o", getattr(led, subsignal) if subsignal else led)
            m.d.comb += buffer.o.eq(status)
        return m

    def _dram(self, m, platform, accelerator, clock_in, reset):
        """LiteDRAM's controller behind the accelerator's DRAM and control ports, across clock domains."""
        m.domains.dram = ClockDomain("dram")
        core = litedram_core(self.board.name)
        m.submodules.crossing = crossing = DramCrossing(
            accelerator.dram_address_width, core.port_data_bits, core.port_address_bits,
            (CONTROL_WORDS - 1).bit_length())
        wiring.connect(m, accelerator.dram, crossing.dram)
        wiring.connect(m, accelerator.control, crossing.control)
        if self.dram.phy == "GENSDRPHY":  # the controller's clock and the chip's, from a PLL of their own
            settings = pll_settings(input_mhz(self.board), self.dram.sys_hz / 1e6)
            m.submodules.dram_pll, clock, shifted, locked = ecp5_pll(clock_in, settings, shifted_degrees=90,
                                                                     name="dram_pll")
            platform.add_clock_constraint(clock, self.dram.sys_hz)
            m.submodules.litedram = LiteDRAM(self.board.name, crossing.native, crossing.wishbone, clock,
                                             reset | ~locked, shifted=shifted)
        else:  # the DDR3 controller makes its clocks from the board's oscillator
            platform.add_clock_constraint(clock_in, input_mhz(self.board) * 1e6)
            m.submodules.litedram = LiteDRAM(self.board.name, crossing.native, crossing.wishbone, clock_in, reset)

