"""The boards' DRAM as their LiteDRAM controllers run it: geometry, timing and the accelerator's view.

The accelerator sees DRAM as :data:`DRAM_WORD_BYTES`-byte words, one byte for each of 16 weight
banks. Behind that word, LiteDRAM's controller moves ``word_bytes`` a column access (one burst:
2 bytes on the ULX3S's 16-bit SDR SDRAM, BL1; 16 on the ECPIX-5's 16-bit DDR3, BL8), so a DRAM
word is ``DRAM_WORD_BYTES // word_bytes`` bursts at consecutive columns.

The timings are LiteDRAM's own, in cycles of the controller's clock ``sys_hz``: what
``litedram.modules.<module>(sys_hz, rate).timing_settings`` computes from the chip's datasheet
figures, with a board's ``overrides`` of those figures (a test holds them to it; the boards'
controllers are generated with the same overrides). The simulated board's DRAM model (sim/board_main.cpp) enforces
them, so its cycles are the board's. Words map to the chip as LiteDRAM's ``ROW_BANK_COL``: the
column changes fastest, then the bank, then the row (:meth:`Dram.location`).

Plain Python, like contract/protocol.py.
"""

from dataclasses import dataclass

__all__ = ["DRAM_WORD_BYTES", "Dram", "BOARD_DRAMS", "board_dram"]

DRAM_WORD_BYTES = 16
"""Bytes of a DRAM word as the accelerator's port, the DRAM space and the preload image carry it:
byte ``b`` belongs to weight bank ``b`` (a design with DRAM has 16 columns)."""


@dataclass(frozen=True)
class Dram:
    """One board's DRAM and the controller that runs it; the timings in ``sys_hz`` cycles."""

    module: str            #: LiteDRAM's module (the chip)
    phy: str               #: LiteDRAM's PHY
    rate: str              #: LiteDRAM's controller rate, "1:1" (full) or "1:2" (half)
    sys_hz: int            #: the controller's clock
    banks: int
    rows: int
    row_words: int         #: column accesses in a row (the chip's columns / its burst)
    word_bytes: int        #: bytes moved by one column access
    cas_latency: int       #: CL, in the chip's clock
    read_latency: int      #: from a read command to its data at the controller (the PHY's read_latency)
    tRP: int               #: precharge to activate
    tRCD: int              #: activate to a column access
    tRAS: int              #: activate to precharge
    tWR: int               #: a write's end to precharge
    tWTR: int              #: a write to a read
    tCCD: int              #: a column access to the next
    tRRD: int              #: an activate to the next (any bank)
    tRFC: int              #: a refresh's duration
    tREFI: int             #: refresh interval
    overrides: tuple = ()  #: (name, (clocks, ns)) of LiteDRAM's speed-grade figures that the board replaces

    @property
    def size_bytes(self):
        """The DRAM's bytes."""
        return self.banks * self.rows * self.row_words * self.word_bytes

    @property
    def words(self):
        """Its :data:`DRAM_WORD_BYTES`-byte words."""
        return self.size_bytes // DRAM_WORD_BYTES

    @property
    def bursts_per_word(self):
        """Column accesses a DRAM word takes."""
        return DRAM_WORD_BYTES // self.word_bytes

    @property
    def peak_bytes_per_second(self):
        """The chip's data rate: a column access every ``tCCD`` cycles, nothing else in the way."""
        return self.word_bytes * self.sys_hz / self.tCCD

    def location(self, word):
        """``(bank, row, column)`` of the first column access of DRAM word ``word`` (ROW_BANK_COL)."""
        access = word * self.bursts_per_word
        column = access % self.row_words
        bank = access // self.row_words % self.banks
        return bank, access // (self.row_words * self.banks), column


BOARD_DRAMS = {
    # One MT48LC16M16 (32 MB, 16 bits) at 50 MHz, as litex-boards' ULX3S: CL 2, full rate.
    "ulx3s": Dram(module="MT48LC16M16", phy="GENSDRPHY", rate="1:1", sys_hz=50_000_000, banks=4, rows=8192,
                  row_words=512, word_bytes=2, cas_latency=2, read_latency=3,
                  tRP=1, tRCD=1, tRAS=3, tWR=1, tWTR=2, tCCD=1, tRRD=1, tRFC=4, tREFI=391),
    # One MT41K256M16 (512 MB, 16 bits) at 150 MHz (300 MT/s), the controller at 75 MHz half
    # rate, as litex-boards' ECPIX-5: CL 6, BL8 (16 bytes an access, one every 2 cycles). LiteDRAM
    # gives its tRFC as 208 clocks, the JEDEC 260 ns of a 4 Gb DDR3 at DDR3-1600's 800 MHz; at
    # 150 MHz that holds every refresh for 1.39 us (104 of every 586 cycles, 18 % of the time)
    # where the chip needs 260 ns: the board takes the 260 ns.
    "ecpix5": Dram(module="MT41K256M16", phy="ECP5DDRPHY", rate="1:2", sys_hz=75_000_000, banks=8, rows=32768,
                   row_words=128, word_bytes=16, cas_latency=6, read_latency=13,
                   tRP=2, tRCD=2, tRAS=4, tWR=2, tWTR=2, tCCD=2, tRRD=2, tRFC=20, tREFI=586,
                   overrides=(("tRFC", (None, 260)),)),
}
"""The DRAM on each family of boards (the ULX3S-85F's and -45F's alike)."""


def board_dram(board):
    """The DRAM of board ``board`` (a name of contract/design.py's BOARD_DESIGNS), or None."""
    family = board.split("-")[0]
    return BOARD_DRAMS.get(family)
