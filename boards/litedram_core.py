"""The boards' DRAM controllers: LiteDRAM's, generated into Verilog at build time.

:func:`litedram_core` runs LiteDRAM's standalone generator (``litedram/gen.py``'s LiteDRAMCore,
what ``litedram_gen config.yml`` runs) for a board's DRAM as contract/dram.py describes it: the
chip (with the board's ``overrides`` of LiteDRAM's figures), the PHY, the controller's clock and
rate, and one native user port as wide as a column access (16 bits on the ULX3S, 128 on the
ECPIX-5: the accelerator's 16-byte words are cut to it by :mod:`neofpga.hdl.dram_crossing`, which
on the ULX3S loses no cycle where LiteDRAM's own up-converter loses one a word). Without a CPU
the core exposes ``wb_ctrl``, the Wishbone bus of its control registers (the DFII through which
the DRAM is initialised and, for DDR3, read-levelled), and ``init_done``/``init_error``, which
hold the user port until set. The output is cached by everything that goes into it.
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..contract.dram import board_dram

__all__ = ["FPGA_DEVICES", "LiteDRAMCore", "litedram_core", "publish"]

FPGA_DEVICES = {"ulx3s-85f": "LFE5U-85F-6BG381C", "ulx3s-45f": "LFE5U-45F-6BG381C",
                "ecpix5-85": "LFE5UM5G-85F-8BG554I"}
"""The FPGA of each board with DRAM, as LiteX's Lattice platform names it."""

DDR3_SETTINGS = dict(sdram_rank_nb=1, input_clk_freq=100e6, init_clk_freq=25e6)  # the ECPIX-5's 100 MHz oscillator
NAME = "litedram_core"


@dataclass(frozen=True)
class LiteDRAMCore:
    """A generated controller: its Verilog, its control registers (csr.csv) and the settings LiteDRAM chose."""

    verilog: Path
    csr_csv: Path
    timing: dict        #: LiteDRAM's timing settings, in controller cycles
    port_address_bits: int  #: of the user port's word address
    port_data_bits: int
    init_sequence: list = None  #: LiteDRAM's init sequence: [comment, address, bank, command, delay_cycles]
    leveling: dict = None   #: the PHY's read levelling: read_leveling, strobes (byte lanes), delays,
    #: bitslips, and the DFII phases of reads and writes (rdphase, wrphase)


def _module(dram):
    """LiteDRAM's module class for ``dram``, with the board's overrides of its speed-grade figures."""
    from litedram import modules

    chip = getattr(modules, dram.module)
    if not dram.overrides:
        return chip
    grade = chip.speedgrade_timings["default"]
    figures = {name: getattr(grade, name) for name in ("tRP", "tRCD", "tWR", "tRFC", "tFAW", "tRAS")}
    return type(chip.__name__, (chip,), {"speedgrade_timings": {
        "default": modules._SpeedgradeTimings(**{**figures, **dict(dram.overrides)})}})


def _config(board, dram):
    """The generator's configuration (what a litedram_gen YAML file holds) for ``board``."""
    from litedram import phy

    memtype = "SDR" if dram.phy == "GENSDRPHY" else "DDR3"
    config = {"device": FPGA_DEVICES[board], "cpu": None, "memtype": memtype, "sdram_module": _module(dram),
              "sdram_module_nb": 2, "sdram_phy": getattr(phy, dram.phy), "sys_clk_freq": float(dram.sys_hz),
              "cmd_buffer_depth": 16,
              "user_ports": {"native_0": {"type": "native", "data_width": 8 * dram.word_bytes}}}
    if memtype == "DDR3":
        config.update(DDR3_SETTINGS)
    return config


def _cache_root():
    return Path(os.environ.get("NEOFPGA_LITEDRAM_CACHE", Path.home() / ".cache" / "neofpga" / "litedram"))


def litedram_core(board):
    """The controller of ``board``'s DRAM, generated once (about 10 s) and then taken from the cache."""
    import litedram
    import litex

    dram = board_dram(board)
    key = json.dumps([board, repr(dram), litedram.__file__, getattr(litex, "__version__", ""),
                      (Path(litedram.__file__).parent / "gen.py").read_text(), Path(__file__).read_text()])
    folder = _cache_root() / hashlib.sha256(key.encode()).hexdigest()[:16]
    manifest = folder / "core.json"
    if not manifest.exists():
        _generate(board, dram, folder)
    return LiteDRAMCore(verilog=folder / f"{NAME}.v", csr_csv=folder / "csr.csv",
                        **json.loads(manifest.read_text()))


def _generate(board, dram, folder):
    """Run the generator (its report silenced) into a temporary folder, then move what it made into
    ``folder`` whole."""
    logging.getLogger("SoC").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        _run_generator(board, dram, folder)


def _run_generator(board, dram, folder):
    from litedram.gen import LiteDRAMCore as Core
    from litedram.init import get_sdram_phy_init_sequence
    from litex.build.lattice import LatticePlatform
    from litex.soc.integration.builder import Builder

    config = _config(board, dram)
    with tempfile.TemporaryDirectory(prefix="neofpga-litedram-") as work:
        platform = LatticePlatform(config["device"], io=[], toolchain="trellis")
        soc = Core(platform, config)
        builder = Builder(soc, output_dir=work, compile_software=False, compile_gateware=False,
                          csr_csv=str(Path(work) / "csr.csv"))
        builder.build(build_name=NAME, regular_comb=False)
        settings = soc.sdram.controller.settings.timing
        phy = soc.sdram.controller.settings.phy
        init_sequence, _ = get_sdram_phy_init_sequence(phy, settings)
        manifest = {"timing": {name: getattr(settings, name) for name in
                               ("tRP", "tRCD", "tWR", "tWTR", "tREFI", "tRFC", "tCCD", "tRRD", "tRAS")},
                    "port_address_bits": len(soc.platform.lookup_request("user_port_native_0").cmd_addr),
                    "port_data_bits": len(soc.platform.lookup_request("user_port_native_0").wdata_data),
                    "init_sequence": [list(step) for step in init_sequence],
                    "leveling": {name: getattr(phy, name) for name in ("read_leveling", "strobes", "delays", "bitslips",
                                                                  "rdphase", "wrphase")}}
        publish(Path(work), manifest, folder)


def publish(work, manifest, folder):
    """The generator's Verilog and csr.csv (in ``work``) and ``manifest`` (core.json) moved into
    ``folder`` whole."""
    staging = work / "core"
    staging.mkdir()
    shutil.copy(work / "gateware" / f"{NAME}.v", staging / f"{NAME}.v")
    shutil.copy(work / "csr.csv", staging / "csr.csv")
    (staging / "core.json").write_text(json.dumps(manifest))
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staging, folder)  # all or nothing: another build may have made it meanwhile
    except OSError:
        if not (folder / "core.json").exists():
            raise
