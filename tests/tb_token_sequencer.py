"""cocotb testbench of hdl/token_sequencer.py: for each case, a program written into the PROGRAM
memory and one TOKEN, with an executor that answers each op after a random delay and refuses the
check the case says; the ops offered and the verdict against contract/program.py.

Environment (run_cocotb's extra_env): CASES (a JSON file: a list of {program: hex, token,
position, refuse_at}), PROGRAM_WORDS and WORD_BYTES (the memory's), SEED, READY_PROBABILITY (the
executor's stalls of the op stream).
"""

import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
from neofpga.contract.program import HEADER, PROGRAM_OPS, PROGRAM_VERSION, relocate, unpack_entry
from neofpga.contract.protocol import PROGRAM_ENTRY_BYTES, Opcode, pack_record, record_size, unpack_record
from neofpga.hdl.token_sequencer import ProgramOp, TokenRequest
from neofpga.sim.streams import StreamSource, pack, start, unpack

CLOCK_NS = 10


def expected(program, token, position, refuse_at, program_words, check_only=False):
    """``(ops, refused)``: the (run, opcode, record bytes) the sequencer offers, and its verdict
    (``check_only``: a request for the check pass alone)."""
    header = unpack_record(HEADER, program[:record_size(HEADER)])
    if (header["version"] != PROGRAM_VERSION or not 0 < header["entries"] < program_words
            or token >= header["vocab"] or position >= header["context"]):
        return [], True
    ops = []
    for index in range(1, header["entries"] + 1):
        try:
            opcode, fields, relocations = unpack_entry(program[index * PROGRAM_ENTRY_BYTES:][:PROGRAM_ENTRY_BYTES])
        except ValueError:
            return [(0, *op) for op in ops], True
        ops.append((opcode, pack_record(PROGRAM_OPS[opcode], **relocate(opcode, fields, relocations, position, token))))
        if len(ops) - 1 == refuse_at:
            return [(0, *op) for op in ops], True
    checks = [(0, *op) for op in ops]
    if not any(opcode == Opcode.SAMPLE for opcode, _ in ops):
        return checks, True
    return checks + ([] if check_only else [(1, *op) for op in ops]), False


class Executor:
    """Takes the sequencer's ops at random and answers each after a random delay, refusing the
    check numbered ``refuse_at`` (from 0) of the current token."""

    def __init__(self, dut, rng, ready_probability):
        self.dut, self.rng, self.probability = dut, rng, ready_probability
        self.ops, self.refuse_at = [], -1
        self.verdict = StreamSource(dut, "verdict", rng)
        dut.op__ready.value = 0

    async def run(self):
        dut = self.dut
        while True:
            ready = self.rng.random() < self.probability
            dut.op__ready.value = int(ready)
            await ReadOnly()
            if not (ready and dut.op__valid.value):
                await RisingEdge(dut.clk)
                continue
            op = unpack(ProgramOp, dut.op__payload.value)
            await RisingEdge(dut.clk)
            dut.op__ready.value = 0
            entry = op["entry"]
            record = entry["record"].to_bytes(64, "little")[:record_size(PROGRAM_OPS.get(entry["opcode"], ()))]
            self.ops.append((op["run"], entry["opcode"], record))
            checks = sum(1 for run, _, _ in self.ops if not run)
            for _ in range(self.rng.choice([0, 1, 5, 30])):
                await RisingEdge(dut.clk)
            await self.verdict.send([int(not op["run"] and checks - 1 == self.refuse_at)])


async def write_program(dut, program, word_bytes):
    dut.w_en.value = 1
    for address, at in enumerate(range(0, len(program), word_bytes)):
        dut.w_addr.value, dut.w_data.value = address, int.from_bytes(program[at:at + word_bytes], "little")
        await RisingEdge(dut.clk)
    dut.w_en.value = 0


async def run_token(dut, tokens, token, position, check_only, within):
    """Send one TOKEN (through the StreamSource ``tokens``) and wait for its verdict."""
    await tokens.send([pack(TokenRequest, dict(token=token, position=position, check_only=int(check_only)))])
    dut.o__ready.value = 1
    for _ in range(within):
        await ReadOnly()
        if dut.o__valid.value:
            verdict = int(dut.o__payload.value)
            await RisingEdge(dut.clk)
            dut.o__ready.value = 0
            return verdict
        await RisingEdge(dut.clk)
    raise AssertionError(f"no verdict in {within} cycles")


@cocotb.test()
async def matches_reference(dut):
    """Each case's ops and verdict as the contract has them."""
    rng = random.Random(int(os.environ["SEED"]))
    cases = json.loads(Path(os.environ["CASES"]).read_text())
    program_words = int(os.environ["PROGRAM_WORDS"])
    executor = Executor(dut, rng, float(os.environ["READY_PROBABILITY"]))
    tokens = StreamSource(dut, "i", rng)
    dut.w_en.value = 0
    dut.o__ready.value = 0
    await start(dut, CLOCK_NS)
    cocotb.start_soon(executor.run())
    for number, case in enumerate(cases):
        program = bytes.fromhex(case["program"])
        await write_program(dut, program, int(os.environ["WORD_BYTES"]))
        executor.ops, executor.refuse_at = [], case["refuse_at"]
        check_only = number % 3 == 2  # every third case: GENERATE's check of a prompt token
        ops, refused = expected(program, case["token"], case["position"], case["refuse_at"], program_words, check_only)
        verdict = await run_token(dut, tokens, case["token"], case["position"], check_only,
                                  within=400 * (len(ops) + 2) + 1000)
        assert executor.ops == ops, f"case {number} ({case['why']}): ops {len(executor.ops)} offered, {len(ops)} expected"
        assert verdict == refused, f"case {number} ({case['why']}): verdict {verdict}, expected {int(refused)}"
