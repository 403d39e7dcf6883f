"""The layers of docs/ARCHITECTURE.md, held: who may import whom, read from the source with ast.

The contract imports nothing but the standard library; the gateware, the contract and Amaranth;
the simulator and the boards, the gateware and the contract; the host, the contract, and the
simulator or the boards only inside the functions that serve a user's explicit request for them.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LAYERS = ("contract", "hdl", "host", "sim", "boards")
MAY_IMPORT = {
    "contract": set(),
    "hdl": {"contract"},
    "sim": {"contract", "hdl"},
    "boards": {"contract", "hdl"},
    "host": {"contract"},
}
"""The layers each layer may import at its top level (besides itself)."""
ON_REQUEST = {
    ("host/board_backend.py", "sim"): "--device sim starts a simulated board",
    ("host/cli.py", "sim"): "neofpga sim-server",
    ("host/cli.py", "boards"): "neofpga build and flash",
    ("host/hardware_bench.py", "sim"): "neofpga bench --hw simulates the matmul sequencer",
    ("host/hardware_bench.py", "boards"): "neofpga bench --hw places and routes the units",
    ("host/doctor.py", "boards"): "neofpga doctor looks for the FPGA tools",
}
"""The host's imports of the simulator and the boards, each inside a function, and what asks for it."""
THIRD_PARTY = {
    "contract": set(),
    "hdl": {"amaranth"},
}
"""The only packages outside the standard library that these layers may import."""


def imports(path, root=ROOT):
    """(module imported, at the top level?) for every import in ``path``, relative ones resolved."""
    rel = path.relative_to(root)
    package = ["neofpga", *rel.parts[:-1]]
    tree = ast.parse(path.read_text())
    top_level = set()
    for node in tree.body:
        top_level.update(id(n) for n in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield module, id(node) in top_level


def layer_of(module):
    parts = module.split(".")
    return parts[1] if parts[0] == "neofpga" and len(parts) > 1 else None


def sources(root=ROOT):
    return sorted(path for layer in LAYERS for path in (root / layer).rglob("*.py"))


def edges(root=ROOT):
    """{(file, layer imported, at top level)} across the tree below ``root``, between different layers."""
    found = set()
    for path in sources(root):
        own = path.relative_to(root).parts[0]
        for module, top in imports(path, root):
            target = layer_of(module)
            if target is not None and target != own:
                found.add((path.relative_to(root).as_posix(), target, top))
    return found


def forbidden(layer, found):
    """The imports in ``found`` (from :func:`edges`) that ``layer`` may not make."""
    return sorted((file, target) for file, target, top in found
                  if file.startswith(f"{layer}/") and target not in MAY_IMPORT[layer]
                  and (top or (file, target) not in ON_REQUEST))


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_what_it_may(layer):
    assert not forbidden(layer, edges()), f"{layer} imports what it may not"


def test_the_hosts_requests_for_the_simulator_and_boards_are_inside_functions_and_listed():
    on_request = {(file, target) for file, target, top in edges() if file.startswith("host/") and not top
                  and target in ("sim", "boards")}
    assert on_request == set(ON_REQUEST)
    assert not any(file.startswith("host/") and target == "hdl" for file, target, _ in edges())


@pytest.mark.parametrize("layer", sorted(THIRD_PARTY))
def test_the_contract_and_the_gateware_need_nothing_else(layer):
    outside = set()
    for path in (ROOT / layer).rglob("*.py"):
        for module, _ in imports(path):
            root = module.split(".")[0]
            if root != "neofpga" and root not in sys.stdlib_module_names:
                outside.add(root)
    assert outside <= THIRD_PARTY[layer]


def test_the_check_sees_forbidden_imports(tmp_path):
    """The rule can fail: a gateware file importing the host, and the host importing the simulator
    at its top level, are caught (in a copy of two files)."""
    (tmp_path / "hdl").mkdir()
    (tmp_path / "host").mkdir()
    (tmp_path / "hdl" / "probe.py").write_text("from ..host.kernels import requantize\n")
    (tmp_path / "host" / "cli.py").write_text("from ..sim.simulated_board import design\n")
    found = edges(tmp_path)
    assert forbidden("hdl", found) == [("hdl/probe.py", "host")]
    assert forbidden("host", found) == [("host/cli.py", "sim")]


def test_testbenches_and_test_doubles_are_not_in_the_wheel():
    shipped = {path.name for path in sources()}
    assert not {name for name in shipped if name.startswith("tb_") and name != "tb_matmul.py"}
    assert "FaultyTransport" not in (ROOT / "host" / "link.py").read_text()
