"""PCIe DMA through Xilinx's XDMA in AXI4-Stream mode: the host's character devices, and the
published figures that the simulated PCIe board's DMA model runs at.

XDMA's Linux driver (github.com/Xilinx/dma_ip_drivers, ``xdma``) makes ``/dev/xdmaN_h2c_C`` and
``/dev/xdmaN_c2h_C`` for each channel C: a ``write()`` on h2c is one DMA transfer into the card's
H2C stream (``tlast`` on its last beat), a ``read()`` on c2h one transfer out of its C2H stream,
ended by the card's ``tlast`` or the read's size.

A transfer of n bytes takes ``latency + n / bandwidth`` (:meth:`DmaModel.seconds`). The figures
(docs/PCIE.md has the sources and the arithmetic):

* latency 55 us a transfer: the fit of RHSResearchLLC/NiteFury-and-LiteFury issue #51's
  measurements on a NiteFury (``dd`` through an AXI4-Stream loopback: 68.5 MB/s in 4 KiB blocks,
  9.2 MB/s in 512 B blocks, 147 kB/s in 8 B blocks: 59.8, 55.7 and 54.4 us a block);
* bandwidth 1.6 GB/s host to card and 1.3 GB/s card to host: XDMA at Gen2 x4 with 8 MB transfers
  (Prandr/dma_ip_drivers issue #6, a Kintex-7), of the link's 2 GB/s a direction (5 GT/s x 4
  lanes x 8b/10b).
"""

from dataclasses import dataclass

__all__ = ["DmaModel", "XDMA_GEN2_X4", "xdma_paths"]


@dataclass(frozen=True)
class DmaModel:
    """The time of a DMA transfer: ``latency`` seconds each, then the bytes at each direction's bandwidth."""

    latency: float
    h2c_bytes_per_second: float
    c2h_bytes_per_second: float

    def seconds(self, n, to_card=True):
        """The seconds a transfer of ``n`` bytes takes (``to_card``: H2C, else C2H)."""
        return self.latency + n / (self.h2c_bytes_per_second if to_card else self.c2h_bytes_per_second)

    def board_option(self, clock_hz):
        """The simulated board's ``--dma`` value for a design clocked at ``clock_hz``: the latency in
        its cycles and each direction's bytes a million cycles."""
        return (f"latency={round(self.latency * clock_hz)},"
                f"h2c_bytes_per_mcycle={round(self.h2c_bytes_per_second * 1e6 / clock_hz)},"
                f"c2h_bytes_per_mcycle={round(self.c2h_bytes_per_second * 1e6 / clock_hz)}")


XDMA_GEN2_X4 = DmaModel(latency=55e-6, h2c_bytes_per_second=1.6e9, c2h_bytes_per_second=1.3e9)
"""XDMA on a PCIe Gen2 x4 link (the NiteFury's), driven through the Linux driver's character devices."""


def xdma_paths(device, channel=0):
    """The h2c and c2h character devices of XDMA device ``device`` (``/dev/xdma0``: ``/dev/xdma0_h2c_0``
    and ``/dev/xdma0_c2h_0``)."""
    return f"{device}_h2c_{channel}", f"{device}_c2h_{channel}"
