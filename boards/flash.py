"""``neofpga flash``: a bitstream into a board's FPGA (SRAM, or its SPI flash) with openFPGALoader."""

import os
import shutil
import subprocess
from pathlib import Path

from ..contract.errors import UserError
from .catalog import board_named, check_variant

__all__ = ["default_build_dir", "default_bitstream", "flash_command", "flash_board"]

INSTALL = ("openFPGALoader is not installed: apt install openfpgaloader (Debian/Ubuntu), brew install "
           "openfpgaloader (macOS), or see https://trabucayre.github.io/openFPGALoader/; $OPENFPGALOADER names it")


def default_build_dir(name, dram=False, stream=False):
    """Where ``neofpga build --board name`` (with ``--dram``, the DRAM design's; with ``--stream``,
    the streamed design's) builds, in the current directory."""
    return Path("build") / (f"{name}-dram" if dram else f"{name}-stream" if stream else name)


def default_bitstream(name, dram=False, stream=False):
    """Where ``neofpga build --board name`` (``--dram``, ``--stream``) puts the bitstream."""
    return default_build_dir(name, dram, stream) / f"{name.replace('-', '_')}.bit"


def flash_command(name, bitstream, persist=False):
    """openFPGALoader's command line: SRAM (lost at power-off), or the SPI flash with ``persist``."""
    board = board_named(name)
    tool = os.environ.get("OPENFPGALOADER") or shutil.which("openFPGALoader")
    if not tool:
        raise UserError(INSTALL)
    return [tool, *board.programmer, "--write-flash" if persist else "--write-sram", str(bitstream)]


def flash_board(name, bitstream=None, persist=False, dram=False, stream=False):
    """Program ``name`` with ``bitstream`` (default: the one ``neofpga build`` made, with ``dram`` its
    DRAM design's, with ``stream`` its streamed design's); raises :class:`UserError` for a design
    the board has not, if the bitstream or openFPGALoader is missing or programming fails."""
    if stream:  # (--dram on a board without one finds no bitstream, as it always did)
        check_variant(board_named(name), dram, stream)
    bitstream = Path(bitstream or default_bitstream(name, dram, stream))
    if not bitstream.is_file():
        raise UserError(f"no bitstream at {bitstream}: build it with neofpga build --board {name}"
                        f"{' --dram' if dram else ''}{' --stream' if stream else ''}")
    command = flash_command(name, bitstream, persist)
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        lines = (process.stderr or process.stdout).strip().splitlines()
        raise UserError(f"openFPGALoader failed (exit {process.returncode}): {lines[-1] if lines else 'no output'}"
                        f" (is the board plugged in, and may you use its USB device?)")
    return process.stdout
