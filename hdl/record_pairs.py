"""The constants memory as two, of the even and the odd records: a DRAM word's two records written at once.

COPY brings records in from DRAM two a word (contract/protocol.py's COPY). Into one memory of a
write port they would take two cycles a word, half the rate at which the ECPIX-5's DDR3 delivers
words; in two memories, one for the records at even addresses and one for the odd, they take one.
Reads see one memory: both halves are read at ``address // 2``, and the one ``address`` names is
picked a cycle later.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RecordPairs"]


class RecordPairs(wiring.Component):
    """``depth`` records of ``width`` bits, written one at a time or two at once.

    Attributes
    ----------
    read_addr, read_en : In
        Read the record at ``read_addr`` in a cycle with ``read_en``.
    read_data : Out(width)
        The record read, a cycle after (held while ``read_en`` is low).
    write_addr, write_data, write_en : In
        Write one record.
    pair_addr, pair_data, pair_en : In
        Write two: the low ``width`` bits of ``pair_data`` at ``pair_addr`` and the ``width`` bits
        from bit 64 at ``pair_addr + 1`` (a DRAM word's two 8-byte records). Not in the cycle of a
        ``write_en``.
    """

    def __init__(self, depth, width, address_width):
        self.depth, self.width = depth, width
        super().__init__({
            "read_addr": In(address_width), "read_en": In(1), "read_data": Out(width),
            "write_addr": In(address_width), "write_data": In(width), "write_en": In(1),
            "pair_addr": In(address_width), "pair_data": In(128), "pair_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        halves = [memory.Memory(shape=unsigned(self.width), depth=-(-self.depth // 2), init=[]) for _ in range(2)]
        m.submodules.even, m.submodules.odd = halves
        reads = [half.read_port() for half in halves]
        odd_read = Signal()  # the record read is the odd half's
        with m.If(self.read_en):
            m.d.sync += odd_read.eq(self.read_addr[0])
        for port in reads:
            m.d.comb += [port.addr.eq(self.read_addr >> 1), port.en.eq(self.read_en)]
        m.d.comb += self.read_data.eq(Mux(odd_read, reads[1].data, reads[0].data))

        # a pair from an even address fills one row of both halves; from an odd one, the odd
        # half's row and the even half's next
        low, high = self.pair_data[:self.width], self.pair_data[64:64 + self.width]
        odd_pair = self.pair_addr[0]
        for parity, half in enumerate(halves):
            port = half.write_port()
            with m.If(self.pair_en):
                first = odd_pair == parity  # this half takes the pair's first record
                m.d.comb += [port.addr.eq((self.pair_addr >> 1) + (odd_pair & (parity == 0))),
                             port.data.eq(Mux(first, low, high)), port.en.eq(1)]
            with m.Else():
                m.d.comb += [port.addr.eq(self.write_addr >> 1), port.data.eq(self.write_data),
                             port.en.eq(self.write_en & (self.write_addr[0] == parity))]
        return m
