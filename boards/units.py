"""The gateware's units placed and routed alone on an ECP5-85F: their resources and Fmax.

``neofpga bench --hw`` reports these; every output of a unit is a port, so nothing is pruned.
"""

import tempfile
from pathlib import Path

from ..hdl.gelu import GELU
from ..hdl.layer_norm import LayerNorm
from ..hdl.requantizer import Requantizer
from ..hdl.sampler import Sampler
from ..hdl.softmax import Softmax
from ..hdl.systolic import SystolicArray
from .ecp5 import synthesize_out_of_context

__all__ = ["unit_resources"]


def unit_resources(rows, cols, gelu_tables, log=print):
    """Out-of-context ECP5-85F results, by unit: the requantizer, the GELU unit with
    ``gelu_tables`` (knot lists), softmax units for rows of 256 and 2048, the LayerNorm unit for
    rows of 2048, the sampler, and a ``rows`` x ``cols`` systolic array."""
    units = {"requantizer": Requantizer(), f"gelu ({len(gelu_tables)} tables)": GELU(gelu_tables),
             "softmax (rows to 256)": Softmax(256), "softmax (rows to 2048)": Softmax(2048),
             "layer norm (rows to 2048)": LayerNorm(2048), "sampler": Sampler(),
             f"systolic array {rows}x{cols}": SystolicArray(rows, cols)}
    log(f"placing and routing {len(units)} units on an ECP5-85F (the array takes minutes) ...")
    report = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, component in units.items():
            result = synthesize_out_of_context(component, "top", Path(workdir) / name)
            used = result["used"]
            report[name] = {"luts": used["TRELLIS_COMB"], "ffs": used["TRELLIS_FF"],
                            "mult18x18d": used["MULT18X18D"], "dp16kd": used["DP16KD"],
                            "fmax_mhz": result["fmax"]["clk"]["achieved_mhz"],
                            "place_and_route_seconds": result["seconds"]["place_and_route"]}
    return report
