"""A simulation variant of a board's LiteDRAM controller, for Verilator.

:func:`litedram_sim_core` runs the same generator as :func:`.litedram_core.litedram_core` on the
same configuration, but on LiteX's SimPlatform, for which ``litedram/gen.py`` puts LiteDRAM's
``SDRAMPHYModel`` (the DRAM as plain Verilog arrays, one per bank, no init file) in place of the
PHY and its pads. The core keeps the real one's interface: ``clk``/``rst``, ``wb_ctrl`` (the
control registers, initialised the same way through the DFII), ``init_done``/``init_error``,
``user_clk``/``user_rst`` and the native user port ``user_port_native_0_*``; it has no DRAM pads.
The chip keeps its banks, columns, timings and address-bus width but only ``rows`` rows, so the
model is small. The output is cached by everything that goes into it.

On SimPlatform gen.py runs DDR3 at 1:4 with LiteX's default PHY settings for the model
(``get_sdram_phy_settings``: nphases 4, CL/CWL for that clock). A board whose PHY runs another
rate (the ECPIX-5's ECP5DDRPHY: 1:2) gets its own instead: the module's timings at the board's
rate, and the model PHY given the real PHY's settings (nphases, rdphase, wrphase, CL, CWL, read and
write latencies, DFI width, electrical settings), taken from the real core as
:func:`.litedram_core.litedram_core` constructs it. The controller is then the real one but for the
PHY. The SDR ULX3S keeps LiteX's model settings (docs/DRAM.md's calibration was made on them).
The model runs DDR3 at 1:2 as it is (its DFI timing checker finds no violation once its whole-ps
rounding of tCK is fixed); it counts a DDR3 access as 2 columns a phase, so at 1:2 its arrays hold
twice the entries the controller's BL8 columns use (half stay unused), which costs only memory.
"""

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..contract.dram import board_dram
from .litedram_core import NAME, LiteDRAMCore, _cache_root, _config, _module, publish

__all__ = ["DEFAULT_ROWS", "LiteDRAMSimCore", "litedram_sim_core"]

DEFAULT_ROWS = 256
"""Rows per bank of the simulated chip: the ULX3S's MT48LC16M16 (4 banks, 512 columns, 16 bits)
then holds 1 MiB instead of 32."""


@dataclass(frozen=True)
class LiteDRAMSimCore(LiteDRAMCore):
    """A generated simulation controller: :class:`.LiteDRAMCore`'s fields, and what software
    needs to initialise it."""

    rows: int = 0           #: rows per bank of the simulated chip
    size_bytes: int = 0     #: the simulated DRAM's bytes
    phy: dict = None        #: the model PHY's settings (memtype, nphases, cl, read_latency, ...)


def _small_module(chip, rows):
    """``chip`` with only ``rows`` rows a bank; its timings (tREFI included) and its address-bus
    width stay the chip's, so the init sequence's A10 (precharge all) still exists."""
    from litex.gen import log2_int

    if rows is None or rows == chip.nrows:
        return chip
    if rows <= 0 or rows & (rows - 1) or rows > chip.nrows:
        raise ValueError(f"rows must be a power of two up to {chip.nrows}, not {rows}")
    addressbits = max(log2_int(chip.nrows), log2_int(chip.ncols))

    def __init__(self, *args, **kwargs):
        chip.__init__(self, *args, **kwargs)
        self.geom_settings.addressbits = addressbits

    return type(chip.__name__, (chip,), {"nrows": rows, "__init__": __init__})


def _at_rate(chip, rate):
    """``chip`` whose timings are always computed at controller rate ``rate`` (gen.py's SimPlatform
    branch asks for 1:4 on DDR3)."""

    def __init__(self, clk_freq, rate_asked=None, *args, **kwargs):
        kwargs.pop("rate", None)
        chip.__init__(self, clk_freq, rate, *args, **kwargs)

    return type(chip.__name__, (chip,), {"__init__": __init__})


def _board_phy_settings(board, dram):
    """The PhySettings of ``board``'s real PHY, from the real core constructed (not built) as
    :func:`.litedram_core.litedram_core` does it; None where the model keeps LiteX's defaults (SDR)."""
    if dram.phy == "GENSDRPHY":
        return None
    from litedram.gen import LiteDRAMCore as Core
    from litex.build.lattice import LatticePlatform

    config = _config(board, dram)
    soc = Core(LatticePlatform(config["device"], io=[], toolchain="trellis"), config)
    real = soc.sdram.controller.settings.phy
    assert real.nphases == {"1:1": 1, "1:2": 2, "1:4": 4}[dram.rate], (real.nphases, dram.rate)
    settings = copy.copy(real)
    # The model has no delays or bitslips to level: LiteX's software would otherwise try.
    settings.phytype, settings.read_leveling, settings.bitslips, settings.delays = "SDRAMPHYModel", False, 0, 0
    return settings


def litedram_sim_core(board, rows=DEFAULT_ROWS, port_data_bits=None, refresh=True):
    """The simulation controller of ``board``'s DRAM, generated once (a few seconds) and then taken
    from the cache.

    ``rows`` is the rows per bank of the simulated chip (a power of two; the chip's own count for
    its full size). ``port_data_bits`` is the native user port's data width; None gives the
    controller's own (16 on the ULX3S: no converter; 128 on the ECPIX-5 at 1:2, BL8), 128 matches
    :func:`.litedram_core`'s port. ``refresh`` False leaves the controller's refresher out
    (LiteDRAM's ``with_refresh``), to measure what refreshes cost.
    Returns a :class:`LiteDRAMSimCore` (``.verilog``, ``.csr_csv``, ``.port_address_bits``,
    ``.port_data_bits``, ...).
    """
    import litedram
    import litex

    dram = board_dram(board)
    if dram is None:
        raise ValueError(f"{board} has no DRAM")
    here = Path(__file__).read_text()
    sources = [(Path(litedram.__file__).parent / name).read_text()
               for name in ("gen.py", "phy/model.py", f"phy/{dram.phy.lower()}.py", "modules.py")]
    key = json.dumps(["sim", board, repr(dram), rows, port_data_bits, refresh, litedram.__file__,
                      getattr(litex, "__version__", ""), here, *sources])
    folder = _cache_root() / f"sim-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    manifest = folder / "core.json"
    if not manifest.exists():
        logging.getLogger("SoC").setLevel(logging.WARNING)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _run_generator(board, dram, rows, port_data_bits, refresh, folder)
    return LiteDRAMSimCore(verilog=folder / f"{NAME}.v", csr_csv=folder / "csr.csv",
                           **json.loads(manifest.read_text()))


def _platform():
    """A SimPlatform (so gen.py picks the PHY model) that only writes Verilog: no ``sim_trace``
    pin, no C++ simulator build."""
    from litex.build.generic_platform import GenericPlatform
    from litex.build.sim import SimPlatform

    class VerilogSimPlatform(SimPlatform):
        def __init__(self):
            GenericPlatform.__init__(self, "", [], name="sim")
            self.sim_requested = []
            self.toolchain = None
            self.trace = None

        def build(self, fragment, build_dir, build_name, regular_comb=False, **_):
            os.makedirs(build_dir, exist_ok=True)
            fragment = fragment.get_fragment() if hasattr(fragment, "get_fragment") else fragment
            self.finalize(fragment)
            output = self.get_verilog(fragment, name=build_name, regular_comb=regular_comb)
            output.write(os.path.join(build_dir, f"{build_name}.v"))
            return output.ns

    return VerilogSimPlatform()


@contextlib.contextmanager
def _sim_hooks(platform, phy_settings=None):
    """Within this context gen.py's SimPlatform branch works here and keeps the real interface:

    - it clocks the core with LiteX's CRG, which has no ``rst`` input; it gets the real GENSDRPHY
      core's instead: ``rst`` through an AsyncResetSynchronizer;
    - it takes the model's PHY settings from ``litex.tools.litex_sim``, which needs LiteEth and
      LiteScope only to re-export ``litedram.phy.model.get_sdram_phy_settings``: without them, a
      stand-in module holding just that function;
    - with ``phy_settings`` (the board's PHY's), that function returns them instead.
    """
    import importlib
    import sys
    import types

    from litedram import gen
    from litedram.phy.model import get_sdram_phy_settings
    from litex.gen import ClockDomain, LiteXModule
    from migen.genlib.resetsync import AsyncResetSynchronizer

    def crg(clk):
        module = LiteXModule()
        module.cd_sys = ClockDomain()
        module.comb += module.cd_sys.clk.eq(clk)
        module.specials += AsyncResetSynchronizer(module.cd_sys, platform.request("rst"))
        return module

    def board_settings(memtype, data_width, clk_freq):
        assert (memtype, data_width) == (phy_settings.memtype, phy_settings.databits), (memtype, data_width)
        return phy_settings

    name = "litex.tools.litex_sim"
    stand_in = None
    try:
        module = importlib.import_module(name)
    except ImportError:
        module = stand_in = types.ModuleType(name)
        stand_in.get_sdram_phy_settings = get_sdram_phy_settings
        sys.modules[name] = stand_in
    saved, gen.CRG = gen.CRG, crg
    saved_settings = module.get_sdram_phy_settings
    if phy_settings is not None:
        module.get_sdram_phy_settings = board_settings
    try:
        yield
    finally:
        gen.CRG = saved
        module.get_sdram_phy_settings = saved_settings
        if stand_in is not None and sys.modules.get(name) is stand_in:
            del sys.modules[name]


def _run_generator(board, dram, rows, port_data_bits, refresh, folder):
    from litedram.gen import LiteDRAMCore as Core
    from litedram.init import get_sdram_phy_init_sequence
    from litex.soc.integration.builder import Builder

    phy_settings = _board_phy_settings(board, dram)
    config = _config(board, dram)
    chip = _small_module(_module(dram), rows)
    config["sdram_module"] = chip if phy_settings is None else _at_rate(chip, dram.rate)
    config["user_ports"] = {"native_0": {"type": "native", "data_width": port_data_bits}}
    config["with_refresh"] = refresh
    with tempfile.TemporaryDirectory(prefix="neofpga-litedram-sim-") as work:
        platform = _platform()
        with _sim_hooks(platform, phy_settings):
            soc = Core(platform, config)
        builder = Builder(soc, output_dir=work, compile_software=False, compile_gateware=False,
                          csr_csv=str(Path(work) / "csr.csv"))
        builder.build(build_name=NAME, regular_comb=False)
        settings = soc.sdram.controller.settings
        phy = soc.ddrphy.settings
        geom = settings.geom
        port = soc.platform.lookup_request("user_port_native_0")
        init_sequence, _ = get_sdram_phy_init_sequence(phy, settings.timing)
        manifest = {
            "timing": {name: getattr(settings.timing, name) for name in
                       ("tRP", "tRCD", "tWR", "tWTR", "tREFI", "tRFC", "tCCD", "tRRD", "tRAS")},
            "port_address_bits": len(port.cmd_addr), "port_data_bits": len(port.wdata_data),
            "rows": 2 ** geom.rowbits,
            "size_bytes": 2 ** (geom.bankbits + geom.rowbits + geom.colbits) * phy.databits // 8,
            "phy": {name: getattr(phy, name) for name in
                    ("phytype", "memtype", "databits", "dfi_databits", "nphases", "rdphase", "wrphase",
                     "cl", "cwl", "read_latency", "write_latency")},
            "init_sequence": [list(step) for step in init_sequence]}
        publish(Path(work), manifest, folder)
