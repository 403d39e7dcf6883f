"""contract/dram.py against LiteDRAM's own modules and PHYs, and its arithmetic."""

import pytest
from litedram import modules
from litedram.common import get_default_cl, get_sys_latency

from neofpga.contract.dram import BOARD_DRAMS, DRAM_WORD_BYTES, board_dram

TIMINGS = ("tRP", "tRCD", "tRAS", "tWR", "tWTR", "tCCD", "tRRD", "tRFC", "tREFI")


@pytest.mark.parametrize("family", BOARD_DRAMS)
def test_timings_are_litedrams(family):
    """Every timing is what LiteDRAM computes for the chip at the controller's clock and rate."""
    dram = BOARD_DRAMS[family]
    chip = getattr(modules, dram.module)
    if dram.overrides:  # the board's figures in place of LiteDRAM's
        grade = chip.speedgrade_timings["default"]
        figures = {name: getattr(grade, name) for name in ("tRP", "tRCD", "tWR", "tRFC", "tFAW", "tRAS")}
        chip = type(chip.__name__, (chip,), {"speedgrade_timings": {
            "default": modules._SpeedgradeTimings(**{**figures, **dict(dram.overrides)})}})
    module = chip(dram.sys_hz, dram.rate)
    settings, geometry = module.timing_settings, module.geom_settings
    assert {name: getattr(dram, name) for name in TIMINGS} == {name: getattr(settings, name) for name in TIMINGS}
    assert (dram.banks, dram.rows) == (2 ** geometry.bankbits, 2 ** geometry.rowbits)
    phases = 1 if dram.rate == "1:1" else 2
    burst = 1 if module.memtype == "SDR" else 8
    assert dram.row_words == 2 ** geometry.colbits // burst
    assert dram.word_bytes == 2 * burst  # a 16-bit chip
    chip_clock = dram.sys_hz * phases
    assert dram.cas_latency == get_default_cl(module.memtype, 1 / chip_clock)
    # the PHYs' read latency: GENSDRPHY's cl + 1; ECP5DDRPHY's cl's system latency + 10
    expected = dram.cas_latency + 1 if dram.phy == "GENSDRPHY" else get_sys_latency(phases, dram.cas_latency) + 10
    assert dram.read_latency == expected


def test_sizes_and_peaks():
    """The boards' DRAMs: 32 MB at 100 MB/s and 512 MB at 600 MB/s."""
    ulx3s, ecpix5 = board_dram("ulx3s-85f"), board_dram("ecpix5-85")
    assert ulx3s.size_bytes == 32 * 2 ** 20 and ecpix5.size_bytes == 512 * 2 ** 20
    assert ulx3s.peak_bytes_per_second == 100e6 and ecpix5.peak_bytes_per_second == 600e6
    assert ulx3s.words * DRAM_WORD_BYTES == ulx3s.size_bytes
    assert board_dram("ulx3s-45f") is ulx3s and board_dram("nitefury") is None


def test_location_is_row_bank_column():
    """Consecutive words fill a row, then the same row of the next bank, then the next row."""
    for dram in BOARD_DRAMS.values():
        per_row = dram.row_words // dram.bursts_per_word  # DRAM words in a row
        assert dram.location(0) == (0, 0, 0)
        assert dram.location(1) == (0, 0, dram.bursts_per_word)
        assert dram.location(per_row) == (1, 0, 0)
        assert dram.location(per_row * dram.banks) == (0, 1, 0)
        assert dram.location(dram.words - 1) == (dram.banks - 1, dram.rows - 1, dram.row_words - dram.bursts_per_word)
