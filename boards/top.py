"""The top of a board's bitstream: PLL, reset, the accelerator behind the UART, status LEDs.

LEDs, where the board has them: a heartbeat (the system clock runs), PLL locked, and the receive
and transmit activity of the UART, each byte stretched to a visible 20 ms.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from ..hdl.accelerator import Accelerator
from ..hdl.uart import UART
from .pll import ecp5_pll, pll_settings

__all__ = ["BoardTop", "input_mhz"]


def input_mhz(board):
    """The frequency of ``board``'s clock input (its platform's default clock)."""
    platform = board.platform_class()
    clock = next(r for r in platform.resources if r.name == platform.default_clk)
    return clock.clock.frequency / 1e6


class BoardTop(Elaboratable):
    """``board``'s bitstream top around an :class:`Accelerator` with ``parameters``.

    ``baud``: the UART's rate; the bit period is the nearest whole number of system clocks.
    """

    def __init__(self, board, parameters, baud, gateware_version):
        self.board, self.parameters, self.baud = board, parameters, baud
        self.gateware_version = gateware_version
        self.settings = pll_settings(input_mhz(board), parameters["clock_hz"] / 1e6)
        self.divisor = round(parameters["clock_hz"] / baud)

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
                    self._stretched(m, uart.o.valid & uart.o.ready, stretch),
                    self._stretched(m, uart.i.valid & uart.i.ready, stretch)]
        for index, ((name, number, subsignal), status) in enumerate(zip(self.board.leds, statuses)):
            led = platform.request(name, number, dir="-")
            m.submodules[f"led{index}"] = buffer = io.Buffer("o", getattr(led, subsignal) if subsignal else led)
            m.d.comb += buffer.o.eq(status)
        return m

    @staticmethod
    def _stretched(m, pulse, cycles):
        """``pulse`` held high for ``cycles`` after each occurrence."""
        count = Signal(range(cycles + 1))
        with m.If(pulse):
            m.d.sync += count.eq(cycles)
        with m.Elif(count != 0):
            m.d.sync += count.eq(count - 1)
        return count != 0
