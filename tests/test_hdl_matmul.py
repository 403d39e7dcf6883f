"""The matmul sequencer and its array in Verilator against numpy: shapes that are not multiples
of the array, M from 1 up, stalls, back-to-back commands."""

from pathlib import Path

import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.hdl.matmul import MatmulCommand, MatmulResult, MatmulSequencer
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).parent.parent / "sim" / "tb_matmul.py"
ADDRESS_WIDTH = 10


def BankWrite(address_width):
    """A word for one operand bank: which side (0: activations, 1: weights), which bank, where."""
    return data.StructLayout({"weights": 1, "bank": unsigned(8), "address": unsigned(address_width),
                              "value": signed(16)})


class MatmulHarness(wiring.Component):
    """The sequencer with operand banks of its own, loaded through a stream of bank writes."""

    def __init__(self, rows, cols, depth=2 ** ADDRESS_WIDTH):
        self.rows, self.cols, self.depth = rows, cols, depth
        super().__init__({"load": In(stream.Signature(BankWrite(ADDRESS_WIDTH))),
                          "command": In(stream.Signature(MatmulCommand(ADDRESS_WIDTH))),
                          "o": Out(stream.Signature(MatmulResult(cols)))})

    def elaborate(self, platform):
        m = Module()
        banks = []
        for side, count, shape in ((0, self.rows, signed(16)), (1, self.cols, signed(8))):
            for index in range(count):
                bank = memory.Memory(shape=shape, depth=self.depth, init=[])
                m.submodules[f"bank_{side}_{index}"] = bank
                write = bank.write_port()
                m.d.comb += [write.addr.eq(self.load.payload.address), write.data.eq(self.load.payload.value),
                             write.en.eq(self.load.valid & (self.load.payload.weights == side)
                                         & (self.load.payload.bank == index))]
                banks.append(bank.read_port())
        m.d.comb += self.load.ready.eq(1)
        m.submodules.sequencer = sequencer = MatmulSequencer(
            self.rows, self.cols, banks[:self.rows], banks[self.rows:], ADDRESS_WIDTH)
        wiring.connect(m, wiring.flipped(self.command), sequencer.command)
        wiring.connect(m, sequencer.o, wiring.flipped(self.o))
        return m


@pytest.mark.parametrize("rows,cols", [(1, 5), (4, 3), (12, 12)])
def test_matmul_sequencer(rows, cols, tmp_path):
    run_cocotb(MatmulHarness(rows, cols), test_module=TB, run_dir=tmp_path,
               extra_env={"ROWS": str(rows), "COLS": str(cols), "ADDRESS_WIDTH": str(ADDRESS_WIDTH)})
