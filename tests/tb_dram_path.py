"""cocotb testbench of the accelerator's DRAM path (tests/test_hdl_dram_path.py's DramPath): the
weight fetch engine, the write combiner and the arbiter on one DRAM port, against a DRAM in Python
that takes commands and data at random and answers reads after random latencies, in order.

Environment: SEED, READY_PROBABILITY (the DRAM's and the output's), ROWS, COLS, DEPTH (the fetch
FIFO's), PRODUCTS (a file of ``m k n base stride`` lines), BYTES (a file of ``address lane value``
lines: byte writes, in order).
"""

import hashlib
import os
import random
from collections import deque
from pathlib import Path

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from neofpga.hdl.weight_fetch import FetchCommand
from neofpga.hdl.write_combiner import ByteWrite
from neofpga.sim.streams import StreamSink, StreamSource, pack, start

ADDRESS_WIDTH = 20


def initial_word(address):
    """What DRAM word ``address`` holds before anything is written: 16 bytes from its address."""
    return int.from_bytes(hashlib.blake2b(address.to_bytes(4, "little"), digest_size=16).digest(), "little")


class Dram:
    """The DRAM: commands and write data taken at random, reads answered in order after 1-12 cycles."""

    def __init__(self, dut, rng, ready_probability):
        self.dut, self.rng, self.probability = dut, rng, ready_probability
        self.memory = {}
        self.reads = self.writes = 0
        self.waiting_data = deque()  # write addresses whose data is still to come
        self.answers = deque()       # (cycle due, address) of reads, in order
        self.taken = 0               # words the fetch engine's output gave (the testbench's sink counts)
        self.most_ahead = 0          # the most words read and not yet taken, seen at any cycle

    def word(self, address):
        return self.memory.get(address, initial_word(address))

    async def run(self):
        dut, cycle = self.dut, 0
        while True:
            dut.dram__cmd__ready.value = int(self.rng.random() < self.probability)
            dut.dram__wdata__ready.value = int(bool(self.waiting_data) and self.rng.random() < self.probability)
            due = bool(self.answers) and self.answers[0][0] <= cycle
            dut.dram__rdata__valid.value = int(due)
            if due:
                dut.dram__rdata__payload.value = self.word(self.answers[0][1])
            await ReadOnly()
            if dut.dram__cmd__valid.value and dut.dram__cmd__ready.value:
                command = int(dut.dram__cmd__payload.value)
                address, write = command & ((1 << ADDRESS_WIDTH) - 1), command >> ADDRESS_WIDTH
                if write:
                    self.writes += 1
                    self.waiting_data.append(address)
                else:
                    self.reads += 1
                    after = self.answers[-1][0] + 1 if self.answers else 0
                    self.answers.append((max(after, cycle + self.rng.randint(1, 12)), address))
            if dut.dram__wdata__valid.value and dut.dram__wdata__ready.value:
                payload = int(dut.dram__wdata__payload.value)
                data, enables = payload & ((1 << 128) - 1), payload >> 128
                address = self.waiting_data.popleft()
                old = self.word(address)
                mask = sum(0xFF << (8 * b) for b in range(16) if enables >> b & 1)
                self.memory[address] = (old & ~mask) | (data & mask)
            if due and dut.dram__rdata__ready.value:
                self.answers.popleft()
            if dut.o__valid.value and dut.o__ready.value:
                self.taken += 1
            self.most_ahead = max(self.most_ahead, self.reads - self.taken)
            await RisingEdge(dut.clk)
            cycle += 1


def expected_words(products, rows, cols):
    """The words each product's W takes, in the sequencer's order: column tiles, row tiles, k."""
    words = []
    for m, k, n, base, stride in products:
        for col_tile in range(-(-n // cols)):
            for _ in range(-(-m // rows)):
                words += [base + col_tile * stride + step for step in range(k)]
    return words


@cocotb.test()
async def fetches_and_writes(dut):
    """Every product's words in order, and every byte written, with the writes merged by word."""
    rng = random.Random(int(os.environ["SEED"]))
    probability = float(os.environ["READY_PROBABILITY"])
    rows, cols, depth = (int(os.environ[name]) for name in ("ROWS", "COLS", "DEPTH"))
    products = [tuple(map(int, line.split())) for line in Path(os.environ["PRODUCTS"]).read_text().splitlines()]
    writes = [tuple(map(int, line.split())) for line in Path(os.environ["BYTES"]).read_text().splitlines()]
    dut.flush.value = 0
    dram = Dram(dut, rng, probability)
    await start(dut)
    cocotb.start_soon(dram.run())
    fetch = StreamSource(dut, "fetch", rng, 0.7)
    byte = StreamSource(dut, "byte", rng, 0.7)
    sink = StreamSink(dut, "o", rng, probability)
    layout = FetchCommand(ADDRESS_WIDTH)
    cocotb.start_soon(fetch.send([pack(layout, dict(m=m, k=k, n=n, base=b, stride=s)) for m, k, n, b, s in products]))
    sent = cocotb.start_soon(byte.send([pack(ByteWrite(ADDRESS_WIDTH), dict(address=a, lane=lane, value=v))
                                        for a, lane, v in writes]))
    addresses = expected_words(products, rows, cols)
    got = await sink.receive(len(addresses), within=200 * len(addresses) + 20 * len(writes) + 1000)
    wrong = [i for i, (word, address) in enumerate(zip(got, addresses)) if word != initial_word(address)]
    assert not wrong, f"{len(wrong)} of {len(got)} words wrong, the first at {wrong[0]}"
    await sent
    dut.flush.value = 1
    for _ in range(200):
        await ReadOnly()
        if dut.idle.value:
            break
        await RisingEdge(dut.clk)
    assert dut.idle.value, "the DRAM path did not become idle after a flush"
    await RisingEdge(dut.clk)
    dut.flush.value = 0
    expected = {}
    for address, lane, value in writes:
        word = expected.get(address, initial_word(address))
        expected[address] = (word & ~(0xFF << 8 * lane)) | value << 8 * lane
    assert {a: dram.word(a) for a in expected} == expected
    runs = sum(1 for i, w in enumerate(writes) if i == 0 or w[0] != writes[i - 1][0])
    assert dram.writes == runs, f"{dram.writes} DRAM writes for {runs} runs of bytes to one word"
    assert dram.reads == len(addresses), f"{dram.reads} reads for {len(addresses)} words"
    assert dram.most_ahead <= depth, f"{dram.most_ahead} words read ahead, more than the FIFO's {depth}"
    await sink.expect_idle(20)


@cocotb.test()
async def streams_a_word_a_cycle(dut):
    """With the DRAM always ready and answering in 1-12 cycles, a long product's words come one
    a cycle once the FIFO is primed."""
    rows, cols = int(os.environ["ROWS"]), int(os.environ["COLS"])
    dram = Dram(dut, random.Random(1), 1.0)
    dut.flush.value = 0
    dut.byte__valid.value = 0
    await start(dut)
    cocotb.start_soon(dram.run())
    m, k, n = 1, 500, 2 * cols
    dut.fetch__payload.value = pack(FetchCommand(ADDRESS_WIDTH), dict(m=m, k=k, n=n, base=7, stride=k))
    dut.fetch__valid.value = 1
    await RisingEdge(dut.clk)
    dut.fetch__valid.value = 0
    dut.o__ready.value = 1
    first = last = None
    words, cycle = 0, 0
    while words < 2 * k:
        await ReadOnly()
        if dut.o__valid.value:
            words += 1
            first = cycle if first is None else first
            last = cycle
        await RisingEdge(dut.clk)
        cycle += 1
    assert last - first + 1 <= 2 * k + 12, f"{2 * k} words took {last - first + 1} cycles"
