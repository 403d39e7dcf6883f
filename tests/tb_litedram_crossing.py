"""Testbench of test_litedram_crossing.py: the host's DRAM initialisation through the control port,
then DRAM words written and read back through LiteDRAM's simulated controller."""

import csv
import dataclasses
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer

from neofpga.contract.dram_control import BOARD_CONTROLS, controller_code
from neofpga.contract.protocol import WORD_BYTES, Space
from neofpga.host.dram_init import initialise_dram

FAMILY = os.environ["FAMILY"]
CSR_CSV = os.environ["CSR_CSV"]
ACCELERATOR_PS, CONTROLLER_PS = int(os.environ["ACCELERATOR_PS"]), int(os.environ["CONTROLLER_PS"])
BURSTS = int(os.environ["BURSTS"])  # the chip's column accesses a DRAM word
SEED = int(os.environ["SEED"])
READY_PROBABILITY = float(os.environ["READY_PROBABILITY"])
ADDRESS_WIDTH = int(os.environ["ADDRESS_WIDTH"])
WORDS = 200


async def control_request(dut, address, data, write):
    """One request on the control port; the answer's data."""
    dut.control__request__payload.value = address | (data << 14) | (int(write) << 46)
    dut.control__request__valid.value = 1
    while True:
        await RisingEdge(dut.clk)
        if dut.control__request__ready.value:
            break
    dut.control__request__valid.value = 0
    dut.control__response__ready.value = 1
    for _ in range(1000):
        await RisingEdge(dut.clk)
        if dut.control__response__valid.value:
            break
    else:
        raise AssertionError(f"no answer to the control request at {address:#x}")
    dut.control__response__ready.value = 0
    return int(dut.control__response__payload.value)


class ControlDriver:
    """The driver host/dram_init.py is given: CONTROL words through the control port, each in a
    blocking call that runs the simulation until it is answered."""

    def __init__(self, dut):
        self.dut = dut
        self.device_info = {"dram_controller": controller_code(FAMILY)}
        self.requests = 0

    def write(self, space, bank, address, data):
        assert (space, bank) == (Space.CONTROL, 0)
        for index in range(0, len(data), WORD_BYTES[Space.CONTROL]):
            value = int.from_bytes(data[index:index + 4], "little")
            resume(control_request)(self.dut, address + index // 4, value, True)
            self.requests += 1

    def read(self, space, bank, address, words):
        assert (space, bank) == (Space.CONTROL, 0)
        self.requests += words
        return b"".join(resume(control_request)(self.dut, address + i, 0, False).to_bytes(4, "little")
                        for i in range(words))


def simulated_control():
    """The contract's registers and init sequence for FAMILY, at the simulated core's addresses.
    The DDR3's simulation has LiteDRAM's PHY model, whose registers lack the real PHY's delays
    and bitslips, so its reads are not levelled (tests/test_dram_init.py levels a model's)."""
    control = BOARD_CONTROLS[FAMILY]
    with open(CSR_CSV) as file:
        found = {row[1]: int(row[2], 0) // 4 for row in csv.reader(file) if row and row[0] == "csr_register"}
    registers = {name: found[name] for name in control.registers if not name.startswith("ddrphy_")}
    return dataclasses.replace(control, registers=registers, read_leveling=False)


def initialise(driver, dut, sleep):
    return initialise_dram(driver, log=dut._log.info, sleep=sleep, control=simulated_control())


async def wait_seconds(seconds):
    await Timer(round(seconds * 1e9), unit="ns")


async def start(dut):
    cocotb.start_soon(Clock(dut.clk, ACCELERATOR_PS, unit="ps").start())   # the board's clocks
    cocotb.start_soon(Clock(dut.dram_clk, CONTROLLER_PS, unit="ps").start())
    for name in ("dram__cmd__valid", "dram__wdata__valid", "dram__rdata__ready", "control__request__valid",
                 "control__response__ready"):
        getattr(dut, name).value = 0
    dut.rst.value = dut.dram_rst.value = 1
    await ClockCycles(dut.clk, 5)
    dut.rst.value = dut.dram_rst.value = 0
    await ClockCycles(dut.clk, 10)


@cocotb.test()
async def initialise_then_write_and_read(dut):
    await start(dut)
    assert dut.init_done.value == 0
    driver = ControlDriver(dut)
    done, levels = await bridge(initialise)(driver, dut, lambda seconds: resume(wait_seconds)(seconds))
    assert (done, levels) == ("initialised", None) and dut.init_done.value == 1
    again, _ = await bridge(initialise)(driver, dut, lambda seconds: None)
    assert again == "already"  # init_done read back: a DRAM in use is left alone

    rng = random.Random(SEED)
    addresses = [0, 1, 7, 8, (1 << ADDRESS_WIDTH) - 1] + [rng.randrange(1 << ADDRESS_WIDTH) for _ in range(WORDS)]
    memory = {}
    for address in addresses:  # writes, each with random byte enables (all of them for some)
        data = rng.getrandbits(128)
        enables = 0xFFFF if address not in memory or rng.random() < 0.3 else rng.getrandbits(16)
        old = memory.get(address, 0)
        mask = sum(0xFF << (8 * b) for b in range(16) if enables >> b & 1)
        memory[address] = (old & ~mask) | (data & mask)
        await send(dut, "dram__cmd", address | (1 << ADDRESS_WIDTH))  # we above the address
        await send(dut, "dram__wdata", data | (enables << 128))
    # read them all back, the commands back to back, the words taken with random stalls
    reads = cocotb.start_soon(take_reads(dut, rng, len(addresses)))
    for address in addresses:
        await send(dut, "dram__cmd", address)
    got = await reads
    for address, word in zip(addresses, got):
        assert word == memory[address], f"DRAM word {address:#x}: read {word:#034x}, wrote {memory[address]:#034x}"


async def send(dut, name, payload):
    """One transfer on stream ``name`` of the accelerator's side."""
    getattr(dut, f"{name}__payload").value = payload
    getattr(dut, f"{name}__valid").value = 1
    while True:
        await RisingEdge(dut.clk)
        if getattr(dut, f"{name}__ready").value:
            break
    getattr(dut, f"{name}__valid").value = 0


async def take_reads(dut, rng, count, ready_probability=READY_PROBABILITY):
    """``count`` words of read data, taken with ready at random."""
    words = []
    while len(words) < count:
        dut.dram__rdata__ready.value = int(rng.random() < ready_probability)
        await ReadOnly()
        if dut.dram__rdata__valid.value and dut.dram__rdata__ready.value:
            words.append(int(dut.dram__rdata__payload.value))
        await RisingEdge(dut.clk)
    dut.dram__rdata__ready.value = 0
    return words


@cocotb.test()
async def sequential_reads_stream_at_the_controllers_pace(dut):
    """BURSTS bursts a DRAM word, back to back (on the ULX3S 8: the crossing loses no cycle a word,
    where LiteDRAM's own up-converter loses one). The figure goes to the file FIGURES."""
    await start(dut)
    await bridge(initialise)(ControlDriver(dut), dut, lambda seconds: None)
    words, cycles = 4096, [0]

    async def count():
        while True:
            await RisingEdge(dut.dram_clk)
            cycles[0] += 1

    reads = cocotb.start_soon(take_reads(dut, random.Random(0), words, ready_probability=1.0))
    dut.dram__cmd__valid.value = 1
    counter = None
    for address in range(words):
        dut.dram__cmd__payload.value = address
        while True:
            await RisingEdge(dut.clk)
            if dut.dram__cmd__ready.value:
                break
        if counter is None:
            counter = cocotb.start_soon(count())
    dut.dram__cmd__valid.value = 0
    await reads
    counter.cancel()
    per_word = cycles[0] / words
    dut._log.info(f"sequential reads: {per_word:.3f} controller cycles a DRAM word "
                  f"({per_word / BURSTS:.4f} a burst)")
    with open(os.environ["FIGURES"], "w") as figures:
        figures.write(f"{per_word}\n")
