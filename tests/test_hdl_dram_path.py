"""The accelerator's DRAM path in Verilator (testbench: tb_dram_path.py): hdl/weight_fetch.py,
hdl/write_combiner.py and hdl/dram_arbiter.py on one port, against a Python DRAM with random
stalls and latencies."""

import random
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from neofpga.hdl.dram_arbiter import DramArbiter
from neofpga.hdl.dram_port import DRAM_WORD_BITS, DramPort
from neofpga.hdl.weight_fetch import FetchCommand, WeightFetch
from neofpga.hdl.write_combiner import ByteWrite, WriteCombiner
from neofpga.sim.runner import run_cocotb

TB = Path(__file__).with_name("tb_dram_path.py")
ADDRESS_WIDTH = 20  # tb_dram_path.py's
ROWS, COLS, DEPTH = 3, 16, 8


class DramPath(wiring.Component):
    """The fetch engine's reads and the combiner's writes through the arbiter, as the accelerator
    wires them; the engine reads ``depth`` words ahead."""

    fetch: In(stream.Signature(FetchCommand(ADDRESS_WIDTH)))
    o: Out(stream.Signature(DRAM_WORD_BITS))
    byte: In(stream.Signature(ByteWrite(ADDRESS_WIDTH)))
    flush: In(1)
    idle: Out(1)
    dram: Out(DramPort(ADDRESS_WIDTH))

    def __init__(self, depth):
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.fetcher = fetcher = WeightFetch(ROWS, COLS, ADDRESS_WIDTH, depth=self.depth)
        m.submodules.combiner = combiner = WriteCombiner(ADDRESS_WIDTH)
        m.submodules.arbiter = arbiter = DramArbiter(ADDRESS_WIDTH)
        wiring.connect(m, wiring.flipped(self.fetch), fetcher.command)
        wiring.connect(m, fetcher.o, wiring.flipped(self.o))
        wiring.connect(m, fetcher.read, arbiter.read)
        wiring.connect(m, arbiter.rdata, fetcher.rdata)
        wiring.connect(m, wiring.flipped(self.byte), combiner.i)
        wiring.connect(m, combiner.o, arbiter.write)
        wiring.connect(m, arbiter.dram, wiring.flipped(self.dram))
        m.d.comb += [combiner.flush.eq(self.flush),
                     self.idle.eq(combiner.idle & arbiter.idle & ~fetcher.busy)]
        return m


def random_products(rng, count):
    """Products of 1-7 rows, 1-40 steps and 1-50 columns (edge sizes among them) at random places."""
    products = [(1, 1, 1, 0, 1), (ROWS, 1, COLS, 5, 1), (ROWS + 1, 3, COLS + 1, 2 ** 20 - 8, 3)]
    for _ in range(count):
        m, k, n = rng.randint(1, 7), rng.randint(1, 40), rng.randint(1, 50)
        products.append((m, k, n, rng.randrange(2 ** 19), k + rng.randint(0, 5)))
    return products


def random_bytes(rng, count):
    """Byte writes: runs to one word (a transposed output's), single bytes of consecutive words (a K
    cache's), and bytes anywhere."""
    writes = []
    while len(writes) < count:
        kind, address = rng.randrange(3), rng.randrange(2 ** 19)
        if kind == 0:
            writes += [(address, lane, rng.randrange(256)) for lane in rng.sample(range(16), rng.randint(1, 16))]
        elif kind == 1:
            lane = rng.randrange(16)
            writes += [(address + i, lane, rng.randrange(256)) for i in range(rng.randint(1, 20))]
        else:
            writes.append((address, rng.randrange(16), rng.randrange(256)))
    return writes


@pytest.mark.parametrize("seed, ready_probability", [(1, 1.0), (2, 0.5), (3, 0.2)])
def test_fetches_and_writes_under_stalls(tmp_path, seed, ready_probability):
    rng = random.Random(seed)
    (tmp_path / "products.txt").write_text("".join(" ".join(map(str, p)) + "\n" for p in random_products(rng, 25)))
    (tmp_path / "bytes.txt").write_text("".join(" ".join(map(str, w)) + "\n" for w in random_bytes(rng, 400)))
    env = {"SEED": str(seed), "READY_PROBABILITY": str(ready_probability), "ROWS": str(ROWS), "COLS": str(COLS),
           "DEPTH": str(DEPTH), "PRODUCTS": str(tmp_path / "products.txt"), "BYTES": str(tmp_path / "bytes.txt")}
    run_cocotb(DramPath(DEPTH), test_module=TB, testcase="fetches_and_writes", run_dir=tmp_path, extra_env=env)


def test_a_long_product_streams_a_word_a_cycle(tmp_path):
    """With room for the words of the DRAM's longest round trip (12 cycles, and the FIFO's 2), the
    engine takes a word a cycle."""
    env = {"ROWS": str(ROWS), "COLS": str(COLS)}
    run_cocotb(DramPath(16), test_module=TB, testcase="streams_a_word_a_cycle", run_dir=tmp_path, extra_env=env)
