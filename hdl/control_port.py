"""The control port: the DRAM controller's registers (LiteDRAM's CSRs), as the link's CONTROL space reaches them.

Two streams: ``request`` (a register's word address, the data of a write, and ``we``), and
``response`` (a read's data; a write is answered too, with data to ignore, once it is done). A
request is answered before the next is made. On a board the port reaches LiteDRAM's Wishbone
control bus through a clock-domain crossing (:mod:`neofpga.hdl.dram_crossing`).
"""

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CONTROL_WORD_BITS", "ControlRequest", "ControlPort"]

CONTROL_WORD_BITS = 32


def ControlRequest(address_width):
    """A request: the register's word address, the data to write, and ``we`` for a write."""
    return data.StructLayout({"address": unsigned(address_width), "data": unsigned(CONTROL_WORD_BITS), "we": 1})


class ControlPort(wiring.Signature):
    """The port, from the side that makes requests (the accelerator); ``address_width`` bits of word address."""

    def __init__(self, address_width):
        self.address_width = address_width
        super().__init__({
            "request": Out(stream.Signature(ControlRequest(address_width))),
            "response": In(stream.Signature(CONTROL_WORD_BITS)),
        })
