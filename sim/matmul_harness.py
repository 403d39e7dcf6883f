"""Components that wrap a gateware unit for simulation: operand banks of their own, loaded by stream."""

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..hdl.matmul import MatmulCommand, MatmulResult, MatmulSequencer

__all__ = ["BankWrite", "MatmulHarness"]


def BankWrite(address_width):
    """A word for one operand bank: which side (0: activations, 1: weights), which bank, where."""
    return data.StructLayout({"weights": 1, "bank": unsigned(8), "address": unsigned(address_width),
                              "value": signed(16)})


class MatmulHarness(wiring.Component):
    """The matmul sequencer with ``2**address_width``-word operand banks, loaded through ``load``."""

    def __init__(self, rows, cols, address_width=10):
        self.rows, self.cols, self.address_width = rows, cols, address_width
        super().__init__({"load": In(stream.Signature(BankWrite(address_width))),
                          "command": In(stream.Signature(MatmulCommand(address_width))),
                          "o": Out(stream.Signature(MatmulResult(cols)))})

    def elaborate(self, platform):
        m = Module()
        banks = []
        for side, count, shape in ((0, self.rows, signed(16)), (1, self.cols, signed(8))):
            for index in range(count):
                bank = memory.Memory(shape=shape, depth=2 ** self.address_width, init=[])
                m.submodules[f"bank_{side}_{index}"] = bank
                write = bank.write_port()
                m.d.comb += [write.addr.eq(self.load.payload.address), write.data.eq(self.load.payload.value),
                             write.en.eq(self.load.valid & (self.load.payload.weights == side)
                                         & (self.load.payload.bank == index))]
                banks.append(bank.read_port())
        m.d.comb += self.load.ready.eq(1)
        m.submodules.sequencer = sequencer = MatmulSequencer(
            self.rows, self.cols, banks[:self.rows], banks[self.rows:], self.address_width)
        wiring.connect(m, wiring.flipped(self.command), sequencer.command)
        wiring.connect(m, sequencer.o, wiring.flipped(self.o))
        return m
