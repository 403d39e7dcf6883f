"""Byte writes into DRAM words: consecutive bytes of one word go to DRAM as one masked write.

A product's results reach WEIGHTS a byte at a time, each in the byte lane of its bank. Written to
DRAM one by one, every byte would cost a whole word's bursts; a transposed output (a V cache) writes
the 16 lanes of a word in a row, and a K cache one lane of consecutive words. The combiner holds one
word: bytes for it are merged into it, and it is written when a byte for another word comes, or
on ``flush``.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.dram import DRAM_WORD_BYTES
from .dram_port import DramWrite

__all__ = ["ByteWrite", "WordWrite", "WriteCombiner"]


def ByteWrite(address_width):
    """One byte for DRAM: its word's address, its lane (the byte of the word) and its value."""
    return data.StructLayout({"address": unsigned(address_width), "lane": unsigned(4), "value": unsigned(8)})


def WordWrite(address_width):
    """One write of a DRAM word: its address, and the data and byte enables of :data:`DramWrite`."""
    return data.StructLayout({"address": unsigned(address_width), "word": DramWrite})


assert DRAM_WORD_BYTES == 16  # ByteWrite's 4-bit lane


class WriteCombiner(wiring.Component):
    """Merges byte writes to the same DRAM word into one word write.

    Attributes
    ----------
    i : stream.Signature(ByteWrite(address_width)), in
        The bytes, in order.
    o : stream.Signature(WordWrite(address_width)), out
        The words, each with the enables of the bytes it took.
    flush : Signal(1), in
        Write the word held now, without waiting for a byte of another word.
    idle : Signal(1), out
        No word is held: every byte taken has gone out on ``o``.
    """

    def __init__(self, address_width):
        super().__init__({
            "i": In(stream.Signature(ByteWrite(address_width))),
            "o": Out(stream.Signature(WordWrite(address_width))),
            "flush": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        held = Signal()
        word = Signal.like(self.o.payload)
        byte = self.i.payload
        same = Signal()  # the byte belongs to the word held
        offered = Signal()  # the word was offered and not taken: it stays offered (a stream's rule)
        m.d.comb += [
            same.eq(held & (byte.address == word.address)),
            self.o.payload.eq(word),
            self.o.valid.eq(held & (offered | self.flush | (self.i.valid & ~same))),
            self.i.ready.eq(~self.flush & ~offered & (~held | same | self.o.ready)),
            self.idle.eq(~held),
        ]
        lane_enable = Signal(DRAM_WORD_BYTES)
        m.d.comb += lane_enable.eq(1 << byte.lane)
        m.d.sync += offered.eq(self.o.valid & ~self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += held.eq(1)
            for lane in range(DRAM_WORD_BYTES):
                with m.If(byte.lane == lane):
                    m.d.sync += word.word.data.word_select(lane, 8).eq(byte.value)
            with m.If(same):
                m.d.sync += word.word.we.eq(word.word.we | lane_enable)
            with m.Else():
                m.d.sync += [word.address.eq(byte.address), word.word.we.eq(lane_enable)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += held.eq(0)
        return m
