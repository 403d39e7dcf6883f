"""Xilinx's DMA/Bridge Subsystem for PCI Express (XDMA, PG195) as the NiteFury uses it: its
configuration, the Vivado TCL that makes the IP, and its instance in the Amaranth top.

AXI4-Stream mode, one H2C and one C2H channel (the streamed design: two H2C channels, the second
carrying the weight stream), Gen2 x4 (5.0 GT/s) with a 64-bit AXI side at ``axi_aclk`` = 250 MHz
(16 Gbit/s each way, what four Gen2 lanes carry after 8b/10b), a 100 MHz reference clock, no
AXI-Lite master, one user interrupt (unused). Linux's driver for it is
github.com/Xilinx/dma_ip_drivers (XDMA/linux-kernel), which knows device ID 0x7024 and makes a
``/dev/xdma0_h2c_N`` for each H2C channel.

The channel counts: ``xdma_rnum_chnl`` is the number of DMA *read* channels, which are H2C (the
DMA reads host memory and writes the card's stream), ``xdma_wnum_chnl`` that of *write* channels,
C2H. PG195 (v4.1, "PCIe DMA Tab": "Number of DMA Read Channels", "Number of DMA Write Channels",
"Descriptor Bypass for Read (H2C)"/"for Write (C2H)"; "H2C Channel": "RNUM_RIDS, which is the
number of outstanding H2C channel request ID parameter"; "C2H Channel": "WNUM_RIDS, which is the
number of C2H channel request IDs"), and the board maker's XCI pairs them the same way
(``PARAM_VALUE.xdma_rnum_chnl``/``xdma_rnum_rids``, ``xdma_wnum_chnl``/``xdma_wnum_rids``). Each
H2C channel N has its own ``m_axis_h2c_t{data,keep,last,valid,ready}_N`` (the XCI's bus interfaces
``M_AXIS_H2C_0`` .. ``M_AXIS_H2C_3``).

The ``CONFIG.*`` names are the IP's parameters as Vivado saves them (``PARAM_VALUE.*`` in
RHSResearchLLC/NiteFury-and-LiteFury, Sample-Projects/Project-0/FPGA/Nitefury-II/.../Top_xdma_0_0.xci,
the board maker's Gen2 x4 XDMA on this FPGA, there memory-mapped); the port names are those of
Xilinx's AXI4-Stream example design (``xilinx_dma_pcie_ep``, PG195: ``m_axis_h2c_*_0``,
``s_axis_c2h_*_0``, ``pci_exp_*``, ``sys_clk``, ``sys_rst_n``, ``axi_aclk``, ``axi_aresetn``,
``user_lnk_up``, ``usr_irq_req``/``usr_irq_ack``, ``msi_enable``, ``msi_vector_width``). The IP
is made and synthesised out of context before the top, as LiteX's Vivado flow does
(``create_ip``, ``generate_target``, ``synth_ip``).
"""

from amaranth.hdl import Instance, Signal

from ..contract.design import PCIE_BEAT_BYTES

__all__ = ["MODULE", "LANES", "CONFIG", "xdma_config", "xdma_tcl", "xdma_instance"]

MODULE = "xdma_0"
"""The IP's module name: the Verilog module the top instances, and the prefix of its inner cells."""

LANES = 4
CONFIG = {
    "mode_selection": "Advanced",
    "functional_mode": "DMA",
    "xdma_axi_intf_mm": "AXI_Stream",
    "pl_link_cap_max_link_width": f"X{LANES}",
    "pl_link_cap_max_link_speed": "5.0_GT/s",
    "axi_data_width": f"{8 * PCIE_BEAT_BYTES}_bit",
    "axisten_freq": "250",
    "ref_clk_freq": "100_MHz",
    "pcie_blk_locn": "X0Y0",
    "plltype": "QPLL1",
    "pf0_device_id": "7024",
    "xdma_rnum_chnl": "1",
    "xdma_wnum_chnl": "1",
    "xdma_num_usr_irq": "1",
    "axilite_master_en": "false",
    "cfg_mgmt_if": "false",
    "xdma_sts_ports": "false",
}
"""The IP's settings (``CONFIG.<name>``): AXI4-Stream, Gen2 x4, 64 bits at 250 MHz, one channel each way."""


def xdma_config(h2c_channels=1):
    """:data:`CONFIG` with ``h2c_channels`` H2C channels (``xdma_rnum_chnl``; C2H stays one)."""
    return {**CONFIG, "xdma_rnum_chnl": str(h2c_channels)}


def xdma_tcl(h2c_channels=1):
    """The TCL that makes, configures, generates and synthesises the IP in the current project
    (sourced by the project's script after its sources are read, before ``synth_design``), with
    ``h2c_channels`` H2C channels."""
    settings = " \\\n    ".join(f"CONFIG.{name} {{{value}}}" for name, value in xdma_config(h2c_channels).items())
    return (f"# Xilinx's XDMA IP (PG195) for the NiteFury: written by neofpga (boards/xdma.py)\n"
            f"create_ip -name xdma -vendor xilinx.com -library ip -module_name {MODULE}\n"
            f"set_property -dict [list \\\n    {settings} \\\n] [get_ips {MODULE}]\n"
            f"generate_target all [get_ips {MODULE}]\n"
            f"synth_ip [get_ips {MODULE}]\n")


def xdma_instance(refclk, perst_n, lanes, h2c, c2h, h2c_1=None):
    """The IP's instance: ``refclk`` (from the IBUFDS_GTE2), ``perst_n`` (PERST#, low in reset),
    ``lanes`` (the platform's pcie resource: ``rx``/``tx`` differential ports, straight to the
    transceivers' pins), ``h2c``/``c2h`` (the AXI4-Stream beats, in the ``axi_aclk`` domain), and
    ``h2c_1``, if given, the second H2C channel's beats (the IP made by ``xdma_tcl(2)``).
    Returns (instance, axi_aclk, axi_aresetn, user_lnk_up)."""
    axi_aclk, axi_aresetn, link_up = Signal(name="axi_aclk"), Signal(name="axi_aresetn"), Signal(name="user_lnk_up")
    instance = Instance(
        MODULE,
        i_sys_clk=refclk, i_sys_rst_n=perst_n,
        i_pci_exp_rxp=lanes.rx.p, i_pci_exp_rxn=lanes.rx.n, o_pci_exp_txp=lanes.tx.p, o_pci_exp_txn=lanes.tx.n,
        o_axi_aclk=axi_aclk, o_axi_aresetn=axi_aresetn, o_user_lnk_up=link_up,
        i_usr_irq_req=0, o_usr_irq_ack=Signal(name="usr_irq_ack"),
        o_msi_enable=Signal(name="msi_enable"), o_msi_vector_width=Signal(3, name="msi_vector_width"),
        o_m_axis_h2c_tdata_0=h2c.payload.data, o_m_axis_h2c_tkeep_0=h2c.payload.keep,
        o_m_axis_h2c_tlast_0=h2c.payload.last, o_m_axis_h2c_tvalid_0=h2c.valid, i_m_axis_h2c_tready_0=h2c.ready,
        i_s_axis_c2h_tdata_0=c2h.payload.data, i_s_axis_c2h_tkeep_0=c2h.payload.keep,
        i_s_axis_c2h_tlast_0=c2h.payload.last, i_s_axis_c2h_tvalid_0=c2h.valid, o_s_axis_c2h_tready_0=c2h.ready,
        **({} if h2c_1 is None else dict(
            o_m_axis_h2c_tdata_1=h2c_1.payload.data, o_m_axis_h2c_tkeep_1=h2c_1.payload.keep,
            o_m_axis_h2c_tlast_1=h2c_1.payload.last, o_m_axis_h2c_tvalid_1=h2c_1.valid,
            i_m_axis_h2c_tready_1=h2c_1.ready)))
    return instance, axi_aclk, axi_aresetn, link_up
