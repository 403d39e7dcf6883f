"""The token sequencer: TOKEN's two passes over the program in the PROGRAM memory.

It reads the program's :data:`~neofpga.contract.program.HEADER` and refuses the token unless the
program is of :data:`~neofpga.contract.program.PROGRAM_VERSION`, fits the memory, takes the id and
the position, and holds a SAMPLE. Then:

* **the check pass** offers every op, fetched and relocated by :class:`~.program_fetch.ProgramFetch`,
  with ``run`` 0: the executor answers whether it would refuse it, and changes nothing. A malformed
  entry, a refused op or a program without a SAMPLE refuses the token, and nothing has run;
* **the run pass** offers the ops again with ``run`` 1, and the executor answers each once it has
  run it.

The next entry is fetched while the executor works on the one before. This is
:class:`neofpga.host.accelerator_model.AcceleratorModel`'s TOKEN, less the ops themselves.
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.program import HEADER, PROGRAM_OPS, PROGRAM_VERSION
from ..contract.protocol import Opcode, record_size
from .program_fetch import ProgramFetch, RelocatedEntry
from .results import record_layout

__all__ = ["TokenRequest", "ProgramOp", "TokenSequencer"]

TokenRequest = data.StructLayout({"token": unsigned(16), "position": unsigned(16), "check_only": 1})
"""The token id to run the program for, and its position; ``check_only``: the check pass alone
(GENERATE checks every prompt token before it runs the first)."""

ProgramOp = data.StructLayout({"entry": RelocatedEntry, "run": 1})
"""An op for the executor: to check (``run`` 0) or to run."""


class TokenSequencer(wiring.Component):
    """Check, then run, the program for one token a request.

    Parameters
    ----------
    program_words : PROGRAM words in the memory (the header's included)
    address_width, word_bytes : the PROGRAM memory's word address and word (as :class:`~.program_fetch.ProgramFetch`'s)
    ops : the ops its programs may hold (as :class:`~.program_fetch.ProgramFetch`'s)

    Attributes
    ----------
    i : In(stream.Signature(TokenRequest))
        The tokens.
    o : Out(stream.Signature(1))
        Each token's verdict once it is finished: 1 if it was refused (nothing ran), 0 once all its
        ops have run.
    op : Out(stream.Signature(ProgramOp))
        The ops, in program order, checked then run.
    verdict : In(stream.Signature(1))
        The executor's answer to each op: for a check, 1 if it would refuse the op; for a run, any
        value once the op has run.
    addr, data : the PROGRAM memory's synchronous read port (as :class:`~.program_fetch.ProgramFetch`'s)
    context : Out(16)
        The program header's context, once a token's header is read (GENERATE's CONTEXT stop).
    """

    def __init__(self, program_words, address_width, word_bytes=1, ops=PROGRAM_OPS):
        self.program_words, self.word_bytes, self.ops = program_words, word_bytes, ops
        super().__init__({"i": In(stream.Signature(TokenRequest)), "o": Out(stream.Signature(1)),
                          "op": Out(stream.Signature(ProgramOp)), "verdict": In(stream.Signature(1)),
                          "addr": Out(address_width), "data": In(8 * word_bytes), "context": Out(16)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fetch = fetch = ProgramFetch(len(self.addr), self.word_bytes, self.ops)
        request = Signal(TokenRequest)
        header_words = -(-record_size(HEADER) // self.word_bytes)
        header_bits = Signal(8 * self.word_bytes * header_words)
        header = data.View(record_layout(HEADER), header_bits[:8 * record_size(HEADER)])
        count = Signal(range(header_words + 1))
        run = Signal()                 # the pass: 0 checks, 1 runs
        requested = Signal(16)         # the entries of this pass asked of the fetch unit
        offered = Signal(16)           # the entries of this pass answered by the executor
        outstanding = Signal(2)        # entries asked of the fetch unit and not yet taken from it
        samples = Signal()             # the check pass met a SAMPLE
        refused = Signal()

        m.d.comb += [self.addr.eq(fetch.addr), fetch.data.eq(self.data),
                     fetch.i.payload.entry.eq(requested + 1), fetch.i.payload.position.eq(request.position),
                     fetch.i.payload.token.eq(request.token),
                     self.op.payload.entry.eq(fetch.o.payload), self.op.payload.run.eq(run),
                     self.o.payload.eq(refused), self.context.eq(header.context)]
        # the next entry of the pass is asked for once the one before has left the fetch unit
        ask_ahead = (requested != header.entries) & (outstanding == 0)
        asked = fetch.i.valid & fetch.i.ready
        taken = fetch.o.valid & fetch.o.ready
        m.d.sync += outstanding.eq(outstanding + asked - taken)
        with m.If(asked):
            m.d.sync += requested.eq(requested + 1)

        def start_pass(m, to_run):
            m.d.sync += [run.eq(to_run), requested.eq(0), offered.eq(0)]
            m.next = "PASS"

        def refuse(m):
            m.d.sync += refused.eq(1)
            m.next = "DRAIN"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [request.eq(self.i.payload), count.eq(0), refused.eq(0), samples.eq(0)]
                    m.next = "HEADER"

            with m.State("HEADER"):  # the header's words, as the fetch unit reads an entry's
                m.d.comb += self.addr.eq(count)
                m.d.sync += count.eq(count + 1)
                with m.If(count != 0):
                    m.d.sync += header_bits.eq(Cat(header_bits[len(self.data):], self.data))
                with m.If(count == header_words):
                    m.next = "HEADER_CHECK"

            with m.State("HEADER_CHECK"):
                with m.If((header.version != PROGRAM_VERSION) | (header.entries == 0)
                          | (header.entries >= self.program_words)
                          | (request.token >= header.vocab) | (request.position >= header.context)):
                    refuse(m)
                with m.Else():
                    start_pass(m, 0)

            with m.State("PASS"):  # fetch ahead while the executor has the op before
                m.d.comb += fetch.i.valid.eq(ask_ahead)
                with m.If(fetch.o.valid & ~run & fetch.o.payload.malformed):
                    m.d.comb += fetch.o.ready.eq(1)
                    refuse(m)
                with m.Elif(fetch.o.valid):
                    m.d.comb += [self.op.valid.eq(1), fetch.o.ready.eq(self.op.ready)]
                    with m.If(self.op.ready):
                        with m.If(fetch.o.payload.opcode == Opcode.SAMPLE):
                            m.d.sync += samples.eq(1)
                        m.next = "VERDICT"

            with m.State("VERDICT"):
                m.d.comb += [self.verdict.ready.eq(1), fetch.i.valid.eq(ask_ahead)]
                with m.If(self.verdict.valid):
                    m.d.sync += offered.eq(offered + 1)
                    with m.If(~run & self.verdict.payload):
                        refuse(m)
                    with m.Elif(offered + 1 != header.entries):
                        m.next = "PASS"
                    with m.Elif(~run & ~samples):
                        refuse(m)
                    with m.Elif(~run & request.check_only):
                        m.next = "DONE"
                    with m.Elif(~run):
                        start_pass(m, 1)
                    with m.Else():
                        m.next = "DONE"

            with m.State("DRAIN"):  # an entry fetched ahead is dropped
                m.d.comb += fetch.o.ready.eq(1)
                with m.If((outstanding == 0) | ((outstanding == 1) & taken)):
                    m.next = "DONE"

            with m.State("DONE"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
