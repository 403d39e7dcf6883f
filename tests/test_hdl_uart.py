# amaranth: UnusedElaboratable=no
"""hdl/uart.py in Verilator (the testbench is tb_uart.py).

Every testbench runs on a :class:`UARTHarness`, one build per divisor: 8, and 13 for an odd one.
The first line silences Amaranth's warning about the components that
test_uart_rejects_small_divisors makes and never elaborates."""

from pathlib import Path

import pytest
from amaranth.hdl import Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.hdl.uart import UART, UARTReceiver, UARTTransmitter
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).with_name("tb_uart.py")
DIVISORS = [8, 13]
TESTCASES = ["transmitter_frames", "receiver_baud_mismatch", "receiver_rejects_glitches",
             "receiver_framing_errors", "receiver_overrun", "loopback"]


class UARTHarness(wiring.Component):
    """A :class:`UART` whose receiver listens to its own ``tx`` while ``loopback`` is high, to ``rx``
    otherwise."""

    def __init__(self, divisor):
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1), "rx": In(1, init=1),
                          "loopback": In(1), "o": Out(stream.Signature(8)),
                          "framing_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = UART(self.divisor)
        wiring.connect(m, wiring.flipped(self.i), uart.i)
        wiring.connect(m, uart.o, wiring.flipped(self.o))
        m.d.comb += [self.tx.eq(uart.tx), uart.rx.eq(Mux(self.loopback, uart.tx, self.rx)),
                     self.framing_error.eq(uart.framing_error), self.overrun.eq(uart.overrun)]
        return m


@pytest.mark.parametrize("testcase", TESTCASES)
@pytest.mark.parametrize("divisor", DIVISORS)
def test_uart(tmp_path, divisor, testcase):
    run_cocotb(UARTHarness(divisor), test_module=TB, testcase=testcase, run_dir=tmp_path,
               extra_env={"DIVISOR": str(divisor), "SEED": str(divisor)})


@pytest.mark.parametrize("component, smallest", [(UARTTransmitter, 1), (UARTReceiver, 4), (UART, 4)])
def test_uart_rejects_small_divisors(component, smallest):
    component(smallest)
    for divisor in (smallest - 1, 8.0):
        with pytest.raises(ValueError, match="divisor"):
            component(divisor)
