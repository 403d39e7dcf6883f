"""The DRAM port: LiteDRAM's native user port, as the accelerator drives it.

Three streams, as LiteDRAM names them: ``cmd`` (a word's address and whether it is written),
``wdata`` (a written word's data and byte enables, given after its ``cmd``) and ``rdata`` (the
words read, in the order of their commands). A word is :data:`~neofpga.contract.dram.DRAM_WORD_BYTES`
bytes: LiteDRAM's port converter turns it into the chip's bursts (contract/dram.py). On a board
the port reaches LiteDRAM's controller through a clock-domain crossing; on the simulated board,
sim/board_main.cpp's DRAM model answers it.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.dram import DRAM_WORD_BYTES

__all__ = ["DRAM_WORD_BITS", "DramCommand", "DramWrite", "DramPort"]

DRAM_WORD_BITS = 8 * DRAM_WORD_BYTES


def DramCommand(address_width):
    """A command: the word's address, and ``we`` for a write."""
    return data.StructLayout({"addr": unsigned(address_width), "we": 1})


DramWrite = data.StructLayout({"data": unsigned(DRAM_WORD_BITS), "we": unsigned(DRAM_WORD_BYTES)})
"""A written word: its data and its byte enables (bit ``b`` writes byte ``b``)."""


class DramPort(wiring.Signature):
    """The port, from the side that issues commands (the accelerator); ``address_width`` bits of word address."""

    def __init__(self, address_width):
        self.address_width = address_width
        super().__init__({
            "cmd": Out(stream.Signature(DramCommand(address_width))),
            "wdata": Out(stream.Signature(DramWrite)),
            "rdata": In(stream.Signature(DRAM_WORD_BITS)),
        })
