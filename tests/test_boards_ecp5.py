"""boards/ecp5.py: the nextpnr report reader, and a real out-of-context place and route (slow)."""

import pytest

from neofpga.boards.ecp5 import parse_report, synthesize_out_of_context, tool
from neofpga.hdl.requantizer import Requantizer

# the shape of nextpnr-ecp5 --report output, trimmed to what parse_report reads
REPORT = {
    "utilization": {"MULT18X18D": {"used": 2, "available": 156},
                    "TRELLIS_COMB": {"used": 988, "available": 83640},
                    "DP16KD": {"used": 0, "available": 208}},
    "fmax": {"clk": {"achieved": 128.2, "constraint": 100.0}},
}


def test_parse_report_reads_use_availability_and_clocks():
    result = parse_report(REPORT)
    assert result["used"] == {"MULT18X18D": 2, "TRELLIS_COMB": 988, "DP16KD": 0}
    assert result["available"]["MULT18X18D"] == 156
    assert result["fmax"] == {"clk": {"achieved_mhz": 128.2, "constraint_mhz": 100.0}}


def test_tool_prefers_the_environment_variable(monkeypatch):
    monkeypatch.setenv("NEXTPNR_ECP5", "/opt/nextpnr-ecp5")
    assert tool("nextpnr-ecp5") == "/opt/nextpnr-ecp5"


@pytest.mark.slow
def test_requantizer_places_and_routes_on_an_ecp5_85f_at_100_mhz(tmp_path):
    result = synthesize_out_of_context(Requantizer(), "top", tmp_path)
    used = result["used"]
    assert used["MULT18X18D"] == 2  # its 32 x 16 multiply, in DSP blocks rather than LUTs
    assert 100 < used["TRELLIS_COMB"] < 3000
    assert result["fmax"]["clk"]["achieved_mhz"] >= 100
    assert (tmp_path / "report.json").exists() and (tmp_path / "nextpnr.log").exists()
