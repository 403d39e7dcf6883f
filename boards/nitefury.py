"""The NiteFury-II's bitstream top: the accelerator behind Xilinx's XDMA (PCIe Gen2 x4, AXI4-Stream).

Two clock domains meet in two asynchronous FIFOs of whole beats (data, keep, last):

- ``pcie``: the XDMA's ``axi_aclk`` (250 MHz, made by the IP from the 100 MHz PCIe reference
  clock), reset by its ``axi_aresetn``;
- ``sync``: the accelerator's clock (the design's ``clock_hz``, 100 MHz), made by an MMCM from the
  board's 200 MHz oscillator, held in reset until the MMCM locks and the XDMA leaves reset.

The streamed design (parameters with ``stream_words``: ``neofpga build --board nitefury --stream``)
is the accelerator with :class:`~neofpga.hdl.streamed_memory.WithStreamedMemory` on its DRAM port,
as the simulated PCIe board composes it (sim/simulated_board.py), and the XDMA with a second H2C
channel: its 64-bit beats paired into the ``weights`` port's 16-byte words (low beat first) and
carried across by a third FIFO (:meth:`NitefuryTop._weights_crossing`).

The pins are the platform's (amaranth-boards' ``NitefuryIIPlatform``, its PCIe resource corrected:
:class:`NitefuryPlatform`): the refclk through an IBUFDS_GTE2, PERST# into ``sys_rst_n``, CLKREQ#
held low, the four lanes straight to the IP.
The board's lanes reach the transceivers out of the IP's default order, so the constraints move
them (:data:`GT_LANES`). LEDs: a heartbeat of the accelerator's clock, MMCM locked, PCIe link up,
and DMA activity (each beat stretched to 20 ms).
"""

import copy

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.fifo import AsyncFIFOBuffered
from amaranth_boards.nitefury import NitefuryIIPlatform

from ..contract.design import PCIE_BEAT_BYTES, STREAM_LOCAL_WORDS
from ..hdl.accelerator import Accelerator
from ..hdl.axi_stream import AxiStream, AxiStreamBeat, AxiStreamHost
from ..hdl.streamed_memory import WEIGHT_BEAT_BYTES, WithStreamedMemory
from .leds import stretched
from .mmcm import mmcm, mmcm_settings
from .xdma import MODULE, xdma_instance, xdma_tcl

__all__ = ["CLK200_MHZ", "FIFO_DEPTH", "GT_LANES", "ACCELERATOR_CLOCK", "SCRIPT_AFTER_READ", "NitefuryPlatform",
           "NitefuryTop", "constraints"]

CLK200_MHZ = next(r for r in NitefuryIIPlatform.resources if r.name == "clk200").clock.frequency / 1e6
"""The board's oscillator, the MMCM's input (the platform's default clock)."""
FIFO_DEPTH = 16
"""Beats each crossing holds: the XDMA writes a beat a cycle at 250 MHz, the accelerator takes a
byte a cycle at 100 MHz, so the FIFO fills and the XDMA waits; more depth would not speed it."""
GT_LANES = ("GTPE2_CHANNEL_X0Y6", "GTPE2_CHANNEL_X0Y4", "GTPE2_CHANNEL_X0Y5", "GTPE2_CHANNEL_X0Y7")
"""The transceiver of each PCIe lane, 0 to 3: the lanes of the platform's ``pcie`` resource are
on pins B10, B8, D11 and D9, which are these channels' (the board maker's constraints:
RHSResearchLLC/NiteFury-and-LiteFury, Sample-Projects/Project-0/FPGA/Nitefury-II/.../early.xdc).
The IP's own constraints place the lanes elsewhere (lane 0 on X0Y7 down to lane 3 on X0Y4), so
:func:`constraints` clears their placement before it sets the board's, as the board maker's does."""
GT_CELL = (f"xdma/inst/{MODULE}_pcie2_to_pcie3_wrapper_i/pcie2_ip_i/inst/inst/gt_top_i/pipe_wrapper_i/"
           "pipe_lane[{lane}].gt_wrapper_i/gtp_channel.gtpe2_channel_i")
"""A lane's GTPE2_CHANNEL inside the IP (its 7-series Gen2 core), as the board maker's XDC names it."""
ACCELERATOR_CLOCK = "accelerator_clk"
"""The accelerator's clock as the constraints name it: its row in Vivado's timing report."""
SCRIPT_AFTER_READ = f"source {MODULE}.tcl"
"""The project script's step before synthesis: make the XDMA IP (boards/xdma.py)."""


def _pcie_for_vivado(resource):
    """A copy of amaranth-boards' ``pcie`` resource with PERST# an input (the host drives it) and
    its pull-up as Vivado spells it ("TRUE": the platform's 1 is not a string, and Amaranth's XDC
    template takes only strings), and no I/O standard on the reference clock (a transceiver's pin
    takes none)."""
    resource = copy.deepcopy(resource)
    subsignals = {subsignal.name: subsignal for subsignal in resource.ios}
    subsignals["rst"].ios[0].dir = "i"
    subsignals["rst"].attrs["PULLUP"] = "TRUE"
    del subsignals["clk"].attrs["IOSTANDARD"]
    return resource


class NitefuryPlatform(NitefuryIIPlatform):
    """amaranth-boards' NiteFury-II platform (Vivado), its PCIe resource corrected (:func:`_pcie_for_vivado`)."""

    resources = [_pcie_for_vivado(r) if r.name == "pcie" else r for r in NitefuryIIPlatform.resources]


class NitefuryTop(Elaboratable):
    """The NiteFury-II's top around an :class:`Accelerator` with ``parameters`` (its ``clock_hz``
    the nearest the MMCM makes: :func:`~.mmcm.mmcm_settings`); with ``stream_words`` in them, the
    streamed design (its block RAM and the weight stream on XDMA's second H2C channel). Elaborating
    it adds the XDMA's TCL and :func:`constraints` to the platform's files."""

    def __init__(self, parameters, gateware_version):
        self.parameters, self.gateware_version = parameters, gateware_version
        self.settings = mmcm_settings(CLK200_MHZ, parameters["clock_hz"] / 1e6)
        self.stream = bool(parameters.get("stream_words"))
        # the host plans the block RAM as INFO's dram_words - stream_words (host/streamed_program.py)
        assert not self.stream or parameters["dram_words"] - parameters["stream_words"] == STREAM_LOCAL_WORDS

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk200 = clk200 = io.Buffer("i", platform.request("clk200", 0, dir="-"))
        m.submodules.mmcm, m.submodules.mmcm_bufg, clock, locked = mmcm(clk200.i, self.settings)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clock)

        pcie = platform.request("pcie", 0, dir="-")
        refclk = Signal(name="pcie_refclk")
        m.submodules.refclk = Instance("IBUFDS_GTE2", i_I=pcie.clk.p, i_IB=pcie.clk.n, i_CEB=0, o_O=refclk)
        platform.add_clock_constraint(pcie.clk.p, 100e6)
        m.submodules.perst = perst = io.Buffer("i", pcie.rst)
        m.submodules.clkreq = clkreq = io.Buffer("o", pcie.clkreq)
        m.d.comb += clkreq.o.eq(1)  # CLKREQ# low: the card wants its reference clock

        h2c, c2h = AxiStream(PCIE_BEAT_BYTES).create(), AxiStream(PCIE_BEAT_BYTES).create()
        h2c_1 = AxiStream(PCIE_BEAT_BYTES).create(path=("h2c_1",)) if self.stream else None
        m.submodules.xdma, axi_aclk, axi_aresetn, link_up = xdma_instance(refclk, ~perst.i, pcie, h2c, c2h, h2c_1)
        m.domains.pcie = ClockDomain("pcie")
        m.d.comb += [ClockSignal("pcie").eq(axi_aclk), ResetSignal("pcie").eq(~axi_aresetn)]
        m.submodules.reset_sync = ResetSynchronizer(~locked | ~axi_aresetn, domain="sync")

        device = Accelerator(**self.parameters, gateware_version=self.gateware_version)
        if self.stream:
            # The DRAM port's first STREAM_LOCAL_WORDS words are block RAM: 65,536 words of 128 bits
            # with a byte enable each (amaranth.lib.memory, a synchronous read port), which Vivado
            # infers as RAMB36. 65,536 x 128 / 36,864 bits would be 228 of the XC7A200T's 365, but
            # a RAMB36 holds 32,768 data bits when its bytes have write enables (the ninth bit of
            # each byte is parity, which 128-bit words with byte enables cannot use): 256 RAMB36
            # (docs/BOARDS.md, "The streamed design's block RAM": an estimate, no Vivado here).
            device = WithStreamedMemory(device, STREAM_LOCAL_WORDS)
        m.submodules.host = host = AxiStreamHost(device, PCIE_BEAT_BYTES)
        self._crossing(m, "h2c_fifo", h2c, host.h2c, "pcie", "sync")
        self._crossing(m, "c2h_fifo", host.c2h, c2h, "sync", "pcie")
        beat = (host.h2c.valid & host.h2c.ready) | (host.c2h.valid & host.c2h.ready)
        if self.stream:
            self._weights_crossing(m, "weights_fifo", h2c_1, host.weights, "pcie", "sync")
            beat |= host.weights.valid & host.weights.ready

        heartbeat = Signal(range(self.parameters["clock_hz"]))
        m.d.sync += heartbeat.eq(heartbeat + 1)
        statuses = [heartbeat[-1], locked, link_up, stretched(m, beat, self.parameters["clock_hz"] // 50)]
        for index, status in enumerate(statuses):
            m.submodules[f"led{index}"] = led = io.Buffer("o", platform.request("led", index, dir="-"))
            m.d.comb += led.o.eq(status)

        platform.add_file(f"{MODULE}.tcl", xdma_tcl(2 if self.stream else 1))
        platform.add_file("constraints.xdc", constraints(pcie.rst.io.name))
        return m

    @staticmethod
    def _crossing(m, name, source, sink, w_domain, r_domain):
        """Whole beats from ``source`` (in ``w_domain``) to ``sink`` (in ``r_domain``) through an AsyncFIFO."""
        m.submodules[name] = fifo = AsyncFIFOBuffered(width=AxiStreamBeat(PCIE_BEAT_BYTES).size, depth=FIFO_DEPTH,
                                                      w_domain=w_domain, r_domain=r_domain)
        m.d.comb += [fifo.w_data.eq(source.payload), fifo.w_en.eq(source.valid), source.ready.eq(fifo.w_rdy),
                     sink.payload.eq(fifo.r_data), sink.valid.eq(fifo.r_rdy), fifo.r_en.eq(sink.ready)]

    @staticmethod
    def _weights_crossing(m, name, source, sink, w_domain, r_domain):
        """The weight stream: ``source``'s 64-bit beats (XDMA's second H2C channel, in ``w_domain``)
        paired into 16-byte words, the first beat of each pair the word's low half, then through an
        AsyncFIFO of whole words to ``sink`` (the ``weights`` port, in ``r_domain``; ``keep`` all
        ones, ``last`` the second beat's). The host writes whole words, so a transfer is an even
        number of beats. The pairing is on the 250 MHz side so that the crossing carries a word
        (16 bytes) each cycle of the accelerator's 100 MHz: 1.6 GB/s, the H2C rate of XDMA at
        Gen2 x4 (contract/pcie.py); 64-bit beats across, then paired, would carry half that."""
        beat_bits = 8 * PCIE_BEAT_BYTES
        assert 2 * PCIE_BEAT_BYTES == WEIGHT_BEAT_BYTES
        m.submodules[name] = fifo = AsyncFIFOBuffered(width=2 * beat_bits + 1, depth=FIFO_DEPTH,
                                                      w_domain=w_domain, r_domain=r_domain)
        low = Signal(beat_bits, name=f"{name}_low")    # a pair's first beat, held
        have_low = Signal(name=f"{name}_have_low")
        m.d.comb += [fifo.w_data.eq(Cat(low, source.payload.data, source.payload.last)),
                     fifo.w_en.eq(have_low & source.valid), source.ready.eq(~have_low | fifo.w_rdy)]
        with m.If(source.valid & source.ready):
            m.d[w_domain] += [low.eq(source.payload.data), have_low.eq(~have_low)]
        m.d.comb += [sink.payload.data.eq(fifo.r_data[:2 * beat_bits]), sink.payload.last.eq(fifo.r_data[-1]),
                     sink.payload.keep.eq((1 << WEIGHT_BEAT_BYTES) - 1), sink.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(sink.ready)]


def constraints(perst_port):
    """The XDC beyond the platform's pins: the lanes' transceivers (:data:`GT_LANES`), the
    accelerator's clock named, the two clock domains asynchronous to each other, PERST# untimed,
    and the board maker's configuration settings (a fast SPI x4 load, so the FPGA is up before
    the host enumerates the bus). The PCIe and 200 MHz reference clocks are the platform's
    ``create_clock``\\ s."""
    cells = [GT_CELL.format(lane=lane) for lane in range(len(GT_LANES))]
    return "\n".join([
        "# neofpga's NiteFury constraints (boards/nitefury.py)",
        "# The lanes' transceivers: the IP's placement cleared, then the board's",
        *(f"set_property LOC \"\" [get_cells {{{cell}}}]" for cell in cells),
        *(f"set_property LOC {site} [get_cells {{{cell}}}]" for site, cell in zip(GT_LANES, cells)),
        "# The accelerator's clock, by name; the XDMA's axi_aclk is the IP's (derived from its refclk)",
        f"create_generated_clock -name {ACCELERATOR_CLOCK} [get_pins mmcm/CLKOUT0]",
        "set_clock_groups -asynchronous -group [get_clocks -of_objects [get_pins xdma/axi_aclk]] "
        f"-group [get_clocks {ACCELERATOR_CLOCK}]",
        f"set_false_path -from [get_ports {perst_port}]",
        "set_property BITSTREAM.CONFIG.EXTMASTERCCLK_EN Div-1 [current_design]",
        "set_property BITSTREAM.CONFIG.SPI_FALL_EDGE YES [current_design]",
        "set_property CONFIG_MODE SPIx4 [current_design]",
        "set_property BITSTREAM.CONFIG.OVERTEMPPOWERDOWN ENABLE [current_design]",
        ""])
