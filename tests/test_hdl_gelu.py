"""hdl/gelu.py in Verilator against kernels.integer_gelu (the testbench is tb_gelu.py).

Two builds, each with its own knot tables: the shipped model's four layers, and three tables
like TinyStories-33M's (output limit 2730), one of them 18-bit extremes."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from neofpga.contract.numerics import GELU_KNOT_BITS, GELU_KNOTS, activation_limits
from neofpga.hdl.gelu import GELU
from neofpga.host.kernels import gelu_knots
from neofpga.host.reference import gelu_new
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).with_name("tb_gelu.py")

# (s_fc, s_gelu) of the shipped model's four layers (host/default_model.neofpga)
SHIPPED_SCALES = [(8.535385e-05, 8.523464e-05), (1.475811e-04, 1.475811e-04),
                  (1.5807152e-04, 1.5807152e-04), (1.733303e-04, 1.733303e-04)]


def gelu_table(in_scale, limit):
    """gelu_knots with the output scale numerics prescribes: gelu_new(32767 s_fc) is the limit."""
    return gelu_knots(in_scale, float(gelu_new(np.float64(32767 * in_scale))) / limit)


def extreme_table(seed):
    rng = random.Random(seed)
    return [rng.randint(-2 ** (GELU_KNOT_BITS - 1), 2 ** (GELU_KNOT_BITS - 1) - 1) for _ in range(GELU_KNOTS)]


CONFIGS = {
    "shipped": ([gelu_knots(*scales) for scales in SHIPPED_SCALES], [activation_limits(224)] * 4),
    "tinystories": ([gelu_table(3e-4, 2730), gelu_table(2e-3, 2730), extreme_table(5)],
                    [activation_limits(3072)] * 2 + [(-32768, 32767)]),
}
STALLS = {"shipped": (0.9, 0.5), "tinystories": (0.5, 0.9)}


def run(config, testcase, tmp_path, random_count=0, seed=1):
    tables, limits = CONFIGS[config]
    valid_probability, ready_probability = STALLS[config]
    env = {"TABLES": json.dumps([[int(k) for k in table] for table in tables]),
           "LIMITS": json.dumps([list(map(int, pair)) for pair in limits]),
           "SEED": str(seed), "VALID_PROBABILITY": str(valid_probability),
           "READY_PROBABILITY": str(ready_probability), "RANDOM_COUNT": str(random_count),
           "LATENCY": str(GELU.LATENCY)}
    return run_cocotb(GELU(tables), test_module=TB, testcase=testcase, run_dir=tmp_path, extra_env=env)


@pytest.mark.parametrize("config", CONFIGS)
def test_gelu_matches_numerics(config, tmp_path):
    run(config, "matches_reference", tmp_path, random_count=1000)


@pytest.mark.parametrize("config", CONFIGS)
def test_gelu_knot_loads(config, tmp_path):
    run(config, ["loads_tables", "writes_while_streaming"], tmp_path, seed=2)


@pytest.mark.parametrize("config", CONFIGS)
def test_gelu_latency_and_throughput(config, tmp_path):
    run(config, "latency_and_throughput", tmp_path, seed=3)
