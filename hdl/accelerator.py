"""The accelerator's top level: link bytes in and out, memories, the matmul sequencer and the units.

It executes the commands of contract/protocol.py one at a time, each answered once:

* INFO: the build's parameters and gateware version;
* WRITE, READ: words of the activation banks, weight banks, requantizer constants (GELU knots
  write only), every argument checked before anything is written;
* MATMUL: a product on the systolic array whose results go through :class:`ResultPath` into the
  banks, once its fields and every address it reads or writes are checked; answered when the last
  result is written;
* COUNTERS, RESET_COUNTERS: cycles, matmul cycles, MACs, commands and errors (and the vector ops'
  and programs' cycles, where there are vector ops);
* EMBED, NORM, SAMPLE (where ``norm_length`` is set): the vector ops of :class:`~.vector_ops.VectorOps`,
  checked, then run; SAMPLE answered with its CHOICE;
* TOKEN (where ``program_words`` is set too): the program in the PROGRAM memory (written by WRITE,
  8 bytes a word) for one token, every op checked by :class:`~.token_sequencer.TokenSequencer`'s
  first pass before its second runs them through the same states as the link's MATMUL and vector
  ops; answered with the last SAMPLE's CHOICE;
* with DRAM (where ``dram_words`` is set): WRITE and READ of the DRAM space, a word at a time
  through the DRAM port; COPY (of the link or a program), DRAM words into the weight banks or the
  constants, checked, then streamed; DRAM_TEST, a pattern written over DRAM and read back;
  products whose W lies in DRAM (WEIGHTS past ``weight_words``) fed by
  :class:`~.weight_fetch.WeightFetch`, and results written there through
  :class:`~.write_combiner.WriteCombiner` (a product ends once its last write has left);
* GENERATE: every prompt token's program checked, then run (all but the last choosing greedily),
  then each id chosen streamed in a STREAM frame and run, until the count, EOS or the context; a
  byte arriving while it runs stops it between two tokens (INTERRUPTED).

A retry of a command that changed the device is answered again without being applied again
(the retry rule and its APPLIED_ONCE commands are contract/protocol.py's).

This module is the state machine that runs the commands: ``elaborate`` wires the parts, and a
method for each group of states holds them (receiving and checking a command, word transfers,
MATMUL, the vector ops, answering, sending a READ's words). The memories and the sharing of their ports are
:class:`~.banks.Banks`; which opcodes exist and what a command may ask (its record's length, its
arguments, the addresses of a product) are :mod:`.commands`.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from ..contract.dram import DRAM_WORD_BYTES
from ..contract.dram_control import CONTROL_WORDS
from ..contract.numerics import GELU_KNOTS, NUMERICS_VERSION
from ..contract.program import PROGRAM_VERSION, program_ops
from ..contract.protocol import (
    ACCESS, ANSWER, APPLIED_ONCE, CHOICE, COPY, DRAM_TEST, DRAM_TESTED, ERROR, GENERATE, GENERATED, INFO_MAGIC,
    HEADER_BYTES, MATMUL, PROGRAM_ENTRY_BYTES, READ, SAMPLE, SETTINGS, STREAM, STREAMED, TOKEN, VECTOR_COUNTERS, WORD_BYTES, Error,
    Opcode, Space, Stop, counters_record, info_record, pack_record, record_size)
from .banks import CONSTANT_WIDTH, Banks
from .commands import (CONTROL_SPACES, DRAM_SPACES, PROGRAM_SPACES, RECORD_BYTES, SPACES, Decoder, RangeCheck, access_refused,
                       matmul_refused, payload_bytes, word_bytes_of)
from .dram_arbiter import DramArbiter
from .control_port import CONTROL_WORD_BITS, ControlPort
from .dram_port import DRAM_WORD_BITS, DramPort
from .weight_fetch import WeightFetch
from .word_gearbox import WordGearbox
from .write_combiner import WordWrite, WriteCombiner
from .axi_stream import AxiStream
from .beat_framing import BeatFrameReceiver
from .framing import FrameReceiver, FrameTransmitter
from .matmul import MatmulSequencer
from .results import ResultPath, record_layout
from .program_fetch import times_constant
from .token_sequencer import TokenSequencer
from .vector_ops import VECTOR_OPS, VectorOps

__all__ = ["PROGRAM_WORD_BYTES", "FETCH_DEPTH", "Accelerator"]

PROGRAM_WORD_BYTES = 8
"""Bytes of a word of the PROGRAM memory as the gateware holds it: a program entry is read in 10 cycles."""

FETCH_DEPTH = 32
"""DRAM words the weight fetch engine reads ahead of the array: more than a read's round trip
through LiteDRAM and the clock crossing takes at the DRAM's rate."""

assert SETTINGS[-1] == ("state", 4, False)  # the PRNG's state is the settings' last field


def _settings_at(fields):
    """The bit of record ``fields`` (SAMPLE, TOKEN, GENERATE: records that end with SETTINGS) where
    its SETTINGS begin."""
    return 8 * (record_size(fields) - record_size(SETTINGS))


class Accelerator(wiring.Component):
    """The device: ``i`` and ``o`` carry link bytes (behind a UART, or raw in the simulated board),
    ``o_last`` marking each answer frame's last byte; with ``pcie_beat_bytes``, ``i`` takes the
    beats of XDMA's AXI4-Stream, a frame a transfer, and WRITE's words are cut from them a beat a cycle.

    Parameters
    ----------
    rows, cols : the systolic array (``cols`` a power of two)
    activation_words, weight_words, constant_words : words in each activation bank (16-bit), each
        weight bank (8-bit), and the constants memory (one CONSTANT record a word)
    gelu_tables : knot tables of the GELU unit
    softmax_length : the longest softmax row (the model's context)
    max_payload : the frame buffer, in bytes
    norm_length : the longest NORM row; 0: no vector ops (EMBED, NORM, SAMPLE are unknown opcodes)
    program_words : PROGRAM words (program entries, the header's included); 0: no programs (TOKEN is
        unknown). Programs need the vector ops
    dram_words : DRAM words behind the ``dram`` port (a :class:`~.dram_port.DramPort`); 0: no DRAM.
        DRAM needs programs and 16 columns
    dram_controller : INFO's code of the DRAM controller (contract/dram_control.py) whose
        registers are behind the ``control`` port (a :class:`~.control_port.ControlPort`), the
        CONTROL space of CONTROL_WORDS words; 0: none (the DRAM needs no initialising). Needs DRAM
    stream_words : INFO's DRAM words, the last ones, that the host streams (behind the ``dram``
        port, :class:`~.streamed_memory.StreamedMemory`); 0: none. Needs DRAM
    pcie_beat_bytes : 0: ``i`` is a byte stream (:class:`~.framing.FrameReceiver`); else the bytes
        of a beat of ``i``, an AXI4-Stream (:class:`~.beat_framing.BeatFrameReceiver`), WRITE taking
        a beat a cycle and writing a word a cycle (:class:`~.word_gearbox.WordGearbox`)
    timeout_cycles : cycles of silence inside a frame after which it is TRUNCATED
    clock_hz : reported by INFO
    gateware_version : reported by INFO (see :mod:`neofpga.contract.gateware_version`)
    """

    def __init__(self, *, rows, cols, activation_words, weight_words, constant_words, gelu_tables=4,
                 softmax_length=256, max_payload=4096, norm_length=0, program_words=0, dram_words=0,
                 dram_controller=0, stream_words=0, pcie_beat_bytes=0, timeout_cycles=1_000_000, clock_hz=0,
                 gateware_version=0):
        if program_words and not norm_length:
            raise ValueError("a program's ops need the vector ops: give norm_length with program_words")
        if dram_words and (not program_words or cols != DRAM_WORD_BYTES):
            raise ValueError(f"a design with DRAM runs programs and has {DRAM_WORD_BYTES} columns, a byte of a DRAM "
                             f"word each")
        if dram_controller and not dram_words:
            raise ValueError("a DRAM controller needs DRAM: give dram_words with dram_controller")
        if not 0 <= stream_words < max(dram_words, 1):
            raise ValueError("the streamed words are some of the DRAM words, not all: give dram_words above them")
        control_words = CONTROL_WORDS if dram_controller else 0
        self.rows, self.cols = rows, cols
        self.depths = {Space.ACTIVATIONS: activation_words, Space.WEIGHTS: weight_words,
                       Space.CONSTANTS: constant_words, Space.GELU: GELU_KNOTS * gelu_tables}
        self.gelu_tables, self.softmax_length = gelu_tables, softmax_length
        self.max_payload, self.timeout_cycles = max_payload, timeout_cycles
        self.pcie_beat_bytes = pcie_beat_bytes
        self.norm_length, self.program_words = norm_length, program_words
        self.spaces = (CONTROL_SPACES if control_words else DRAM_SPACES if dram_words
                       else PROGRAM_SPACES if program_words else SPACES)
        if program_words:
            self.depths[Space.PROGRAM] = program_words
        self.dram_words = dram_words
        if dram_words:
            self.depths[Space.DRAM] = dram_words
        self.control_words = control_words
        if control_words:
            self.depths[Space.CONTROL] = control_words
        self.record_bytes = dict(RECORD_BYTES)
        if norm_length:
            self.record_bytes.update({opcode: record_size(fields) for opcode, fields in VECTOR_OPS.items()})
        if program_words:
            self.record_bytes.update({Opcode.TOKEN: record_size(TOKEN), Opcode.GENERATE: record_size(GENERATE)})
        if dram_words:
            self.record_bytes.update({Opcode.COPY: record_size(COPY), Opcode.DRAM_TEST: record_size(DRAM_TEST)})
        self.info = pack_record(
            info_record(bool(dram_words)), **(dict(dram_words=dram_words, dram_controller=dram_controller,
                                                   stream_words=stream_words) if dram_words else {}),
            magic=INFO_MAGIC,
            gateware_version=gateware_version, numerics_version=NUMERICS_VERSION,
            rows=rows, cols=cols, activation_words=activation_words, weight_words=weight_words,
            constant_words=constant_words, gelu_tables=gelu_tables, max_payload=max_payload,
            softmax_length=softmax_length, clock_hz=clock_hz, norm_length=norm_length,
            program_version=PROGRAM_VERSION if program_words else 0, program_words=program_words)
        # every space's addresses, WEIGHTS' continuing into DRAM
        self.address_width = (max(*self.depths.values(), weight_words + dram_words) - 1).bit_length()
        self.dram_address_width = (dram_words - 1).bit_length() if dram_words else 0
        link = AxiStream(pcie_beat_bytes) if pcie_beat_bytes else stream.Signature(8)
        super().__init__({"i": In(link), "o": Out(stream.Signature(8)), "o_last": Out(1),
                          **({"dram": Out(DramPort(self.dram_address_width))} if dram_words else {}),
                          **({"control": Out(ControlPort((control_words - 1).bit_length()))}
                             if control_words else {})})

    def elaborate(self, platform):
        m = Module()
        rows, cols, aw = self.rows, self.cols, self.address_width
        m.submodules.rx = rx = (BeatFrameReceiver(self.max_payload, self.timeout_cycles, self.pcie_beat_bytes)
                                if self.pcie_beat_bytes else FrameReceiver(self.max_payload, self.timeout_cycles))
        m.submodules.tx = tx = FrameTransmitter()
        wiring.connect(m, wiring.flipped(self.i), rx.i)
        wiring.connect(m, tx.o, wiring.flipped(self.o))
        m.d.comb += self.o_last.eq(tx.last)

        # -- memories and the compute path -----------------------------------------------------
        m.submodules.banks = banks = Banks(
            rows, cols, activation_words=self.depths[Space.ACTIVATIONS], weight_words=self.depths[Space.WEIGHTS],
            constant_words=self.depths[Space.CONSTANTS], address_width=aw, gelu_tables=self.gelu_tables,
            results_in_dram=bool(self.dram_words), select_registered=bool(self.norm_length))
        m.submodules.sequencer = sequencer = MatmulSequencer(rows, cols, banks.a_read, banks.w_read, aw,
                                                             w_stream=bool(self.dram_words))
        m.submodules.results = results = ResultPath(rows, cols, aw, self.gelu_tables, self.softmax_length)
        # the array's result beats reach the result path through a small FIFO, which cuts the
        # ready path from the units back to the array's output buffer (a long route on a big FPGA)
        m.submodules.beats = beats = fifo.SyncFIFO(width=len(sequencer.o.payload.as_value()), depth=4)
        m.d.comb += [beats.w_data.eq(sequencer.o.payload), beats.w_en.eq(sequencer.o.valid),
                     sequencer.o.ready.eq(beats.w_rdy),
                     results.i.payload.eq(beats.r_data), results.i.valid.eq(beats.r_rdy),
                     beats.r_en.eq(results.i.ready)]
        m.d.comb += [banks.c_read.addr.eq(results.constant_address), banks.c_read.en.eq(results.constant_enable),
                     results.constant_data.eq(banks.c_read.data)]
        dram = self._dram_parts(m, sequencer) if self.dram_words else None
        results_o_valid, results_o_ready = results.o.valid, banks.result.ready  # into the banks (and DRAM)
        if dram is not None:  # a result for DRAM goes into the banks (for its last flag) once the combiner takes it
            result = results.o.payload
            to_dram = result.weights & (result.address >= self.depths[Space.WEIGHTS])
            m.d.comb += [dram.combiner.i.valid.eq(results.o.valid & to_dram),
                         dram.combiner.i.payload.address.eq(result.address - self.depths[Space.WEIGHTS]),
                         dram.combiner.i.payload.lane.eq(result.bank), dram.combiner.i.payload.value.eq(result.value)]
            results_o_valid = results.o.valid & (~to_dram | dram.combiner.i.ready)
            results_o_ready = ~to_dram | dram.combiner.i.ready
        vector = None
        if self.norm_length:
            m.submodules.vector = vector = VectorOps(
                rows=rows, cols=cols, activation_words=self.depths[Space.ACTIVATIONS],
                weight_words=self.depths[Space.WEIGHTS], constant_words=self.depths[Space.CONSTANTS],
                norm_length=self.norm_length, address_width=aw)
            # the result path's writes, or the vector ops' while one runs (never both at once)
            m.d.comb += [banks.result.payload.eq(Mux(vector.busy, vector.write.payload, results.o.payload)),
                         banks.result.valid.eq(Mux(vector.busy, vector.write.valid, results_o_valid)),
                         results.o.ready.eq(results_o_ready), vector.write.ready.eq(banks.result.ready)]
        else:
            wiring.connect(m, results.o, banks.result)
        wiring.connect(m, banks.gelu_load, results.gelu_load)

        # -- the command: its header, its record and the checks (commands.py) -------------------
        opcode, sequence, length = Signal(8), Signal(8), Signal(16, name="length")
        record = Signal(8 * record_size(MATMUL))  # the longest record
        operation = Signal(8) if self.program_words else opcode  # the op that runs: the command's, or a program's
        access = data.View(record_layout(READ), record[:8 * record_size(READ)])
        matmul = data.View(record_layout(MATMUL), record)
        m.d.comb += results.command.eq(matmul)
        byte_index = Signal(16)       # the payload byte being fetched
        fetched = Signal()            # rx.payload_data holds the byte at byte_index
        m.d.comb += rx.payload_addr.eq(byte_index)
        m.submodules.decoder = decoder = Decoder(self.record_bytes)
        m.submodules.ranges = ranges = RangeCheck(rows, cols, activation_words=self.depths[Space.ACTIVATIONS],
                                                  weight_words=self.depths[Space.WEIGHTS], dram_words=self.dram_words)
        m.d.comb += [decoder.opcode.eq(opcode), ranges.command.eq(matmul)]
        refused, ranges_done = Signal(), Signal()  # a check's verdict, registered
        # the retry rule's memory: the previous good frame, and whether it was applied once
        previous_opcode, previous_sequence, previous_applied = Signal(8), Signal(8), Signal()

        # answers
        answer_opcode, answer_length = Signal(8), Signal(16, name="answer_length")
        error_code = Signal(8)
        sent = Signal(16)             # answer payload bytes sent

        # counters
        cycles, matmul_cycles, macs = Signal(64), Signal(64), Signal(64)
        commands, errors = Signal(32), Signal(32)
        multiplicand, product = Signal(36), Signal(36)  # COUNT_MACS
        multiplier, second_factor = Signal(12), Signal()
        vector_counters = [Signal(64, name=name) for name, _, _ in VECTOR_COUNTERS] if self.norm_length else []
        counters = Signal(8 * record_size(counters_record(self.norm_length, self.dram_words)))
        m.d.sync += cycles.eq(cycles + 1)

        # word transfers (WRITE, READ)
        if vector is None:
            m.d.comb += [banks.space.eq(access.space), banks.bank.eq(access.bank)]
        else:  # a running vector op reads through the same port
            m.d.comb += [vector.opcode.eq(operation), vector.record.eq(record), vector.word.eq(banks.read_word),
                         banks.space.eq(Mux(vector.busy, vector.space, access.space)),
                         banks.bank.eq(Mux(vector.busy, vector.bank, access.bank))]
        word_bytes = Signal(range(max(13, max(WORD_BYTES[space] for space in self.spaces) + 1)))
        m.d.comb += word_bytes.eq(word_bytes_of(access.space, self.spaces))
        word = Signal(DRAM_WORD_BITS if self.dram_words else CONSTANT_WIDTH)  # WRITE's word so far, or READ's
        byte_in_word = Signal(range(DRAM_WORD_BYTES + 1 if self.dram_words else 13))
        word_count = Signal(17)
        byte_count = Signal(21)
        m.d.comb += byte_count.eq(payload_bytes(access.space, word_count, self.spaces))
        remaining = Signal(17)
        reading = Signal()            # READ's address is read this cycle
        read_address = Signal(aw)
        writing = Signal()            # WRITE's word is complete this cycle
        write_address = Signal(aw)
        if vector is None:
            m.d.comb += [banks.reading.eq(reading), banks.read_address.eq(read_address)]
        else:
            m.d.comb += [banks.reading.eq(reading | vector.reading),
                         banks.read_address.eq(Mux(vector.busy, vector.address, read_address))]
        m.d.comb += [banks.writing.eq(writing), banks.write_address.eq(write_address),
                     # WRITE's word with the byte taken this cycle
                     banks.write_word.eq(word), banks.write_word.word_select(byte_in_word, 8).eq(rx.payload_data)]

        # INFO's bytes are a block-RAM ROM, so that their values (the gateware version, a hash of
        # the sources) live in its contents and do not shape the logic: an edit that changes
        # only the version leaves the netlist, and so its placement and routing, as they were
        m.submodules.info = info_rom = memory.Memory(shape=8, depth=len(self.info), init=self.info,
                                                     attrs={"ram_style": "block"})
        info = info_rom.read_port()
        m.d.comb += info.addr.eq(sent)  # ANSWER_PAYLOAD moves it on a byte as it sends one
        payload_byte = Signal(8)

        program = self._program_parts(m) if self.program_words else None
        control = self._control_parts(m) if self.control_words else None
        beats = self._beat_parts(m) if self.pcie_beat_bytes else None

        # what the groups of states share: the parts and the signals
        s = SimpleNamespace(
            rx=rx, tx=tx, banks=banks, sequencer=sequencer, decoder=decoder, ranges=ranges, vector=vector,
            program=program, dram=dram, control=control, beats=beats, opcode=opcode, operation=operation, sequence=sequence, length=length,
            record=record, access=access, matmul=matmul,
            byte_index=byte_index, fetched=fetched, refused=refused, ranges_done=ranges_done,
            previous_opcode=previous_opcode, previous_sequence=previous_sequence, previous_applied=previous_applied,
            answer_opcode=answer_opcode, answer_length=answer_length, error_code=error_code, sent=sent,
            info=info, payload_byte=payload_byte,
            cycles=cycles, matmul_cycles=matmul_cycles, macs=macs, commands=commands, errors=errors,
            multiplicand=multiplicand, product=product, multiplier=multiplier, second_factor=second_factor,
            counters=counters, vector_counters=vector_counters,
            word_bytes=word_bytes, word=word, byte_in_word=byte_in_word, word_count=word_count,
            byte_count=byte_count, remaining=remaining, reading=reading, read_address=read_address,
            writing=writing, write_address=write_address)

        # the groups in the order of their states, which is the order of the states in the Verilog
        with m.FSM() as fsm:
            self._command_states(m, s)
            self._transfer_states(m, s)
            self._matmul_states(m, s)
            if vector is not None:
                self._vector_states(m, s)
            if program is not None:
                self._program_states(m, s)
            if dram is not None:
                self._copy_states(m, s)
                self._dram_test_states(m, s)
            self._answer_states(m, s)
            self._read_answer_states(m, s)
            self._done_state(m, s)
        if program is not None:  # a program's cycles, but those sending a frame
            sending = fsm.ongoing("ANSWER_HEADER") | fsm.ongoing("ANSWER_PAYLOAD")
            program_cycles = vector_counters[-1]
            with m.If(program.in_program & ~sending):
                m.d.sync += program_cycles.eq(program_cycles + 1)
        return m

    @staticmethod
    def _answer(m, s, code=None, payload_length=0):
        """Go and send the answer: an error ``code``, or the command's answer."""
        if code is not None:
            m.d.sync += [s.answer_opcode.eq(ERROR), s.answer_length.eq(1), s.error_code.eq(code)]
        else:
            m.d.sync += [s.answer_opcode.eq(s.opcode | ANSWER), s.answer_length.eq(payload_length)]
        m.d.sync += s.sent.eq(0)
        m.next = "ANSWER_HEADER"

    def _finish_op(self, m, s, code=None, payload_length=0):
        """The end of a MATMUL or a vector op: the command's answer, or in a program its verdict."""
        if s.program is None:
            self._answer(m, s, code, payload_length)
            return
        with m.If(s.program.in_program):
            m.d.sync += s.program.refused.eq(code is not None)
            m.next = "PROGRAM_VERDICT"
        with m.Else():
            self._answer(m, s, code, payload_length)

    def _dram_parts(self, m, sequencer):
        """The DRAM path: the weight fetch engine feeding the sequencer, the write combiner taking
        results, READ's and WRITE's words, all through the arbiter onto the ``dram`` port; and the
        counters of its words read and written."""
        daw = self.dram_address_width
        m.submodules.fetch = fetch = WeightFetch(self.rows, self.cols, daw, depth=FETCH_DEPTH)
        m.submodules.combiner = combiner = WriteCombiner(daw)
        m.submodules.arbiter = arbiter = DramArbiter(daw)
        wiring.connect(m, arbiter.dram, wiring.flipped(self.dram))
        wiring.connect(m, fetch.o, sequencer.w_stream)
        d = SimpleNamespace(
            fetch=fetch, combiner=combiner, arbiter=arbiter,
            read=Signal(name="dram_link_read"),            # READ's word address is offered
            read_address=Signal(daw, name="dram_link_read_address"),
            taking=Signal(name="dram_link_taking"),        # READ or COPY waits for a word (not the fetch engine)
            take=Signal(name="dram_link_take"),            # ... and takes the one offered, if any
            write=Signal(name="dram_link_write"),          # WRITE's word waits to be written
            write_word=Signal(WordWrite(daw), name="dram_link_word"),
            reads=Signal(64, name="dram_reads"), writes=Signal(64, name="dram_writes"),
            copy_cycles=Signal(64, name="copy_cycles"))
        # reads: the fetch engine's, or READ's while it fetches a word (never both at once)
        m.d.comb += [arbiter.read.valid.eq(d.read | fetch.read.valid),
                     arbiter.read.payload.eq(Mux(d.read, d.read_address, fetch.read.payload)),
                     fetch.read.ready.eq(arbiter.read.ready & ~d.read),
                     fetch.rdata.payload.eq(arbiter.rdata.payload),
                     fetch.rdata.valid.eq(arbiter.rdata.valid & ~d.taking),
                     arbiter.rdata.ready.eq(Mux(d.taking, d.take, fetch.rdata.ready))]
        # writes: WRITE's word, else the combiner's
        m.d.comb += [arbiter.write.valid.eq(d.write | combiner.o.valid),
                     arbiter.write.payload.eq(Mux(d.write, d.write_word, combiner.o.payload)),
                     combiner.o.ready.eq(arbiter.write.ready & ~d.write)]
        with m.If(arbiter.write.ready & d.write):
            m.d.sync += d.write.eq(0)
        command = self.dram.cmd
        with m.If(command.valid & command.ready):
            with m.If(command.payload.we):
                m.d.sync += d.writes.eq(d.writes + 1)
            with m.Else():
                m.d.sync += d.reads.eq(d.reads + 1)
        return d

    def _control_parts(self, m):
        """The control port's state: a request made, and the answer awaited and kept."""
        c = SimpleNamespace(port=self.control, waiting=Signal(name="control_waiting"),
                            data=Signal(CONTROL_WORD_BITS, name="control_data"), busy=Signal(name="control_busy"))
        request, response = self.control.request, self.control.response
        m.d.comb += [c.busy.eq(request.valid | c.waiting), response.ready.eq(c.waiting)]
        with m.If(request.valid & request.ready):
            m.d.sync += [request.valid.eq(0), c.waiting.eq(1)]
        with m.If(response.valid & c.waiting):
            m.d.sync += [c.waiting.eq(0), c.data.eq(response.payload)]
        return c

    def _program_parts(self, m):
        """The PROGRAM memory, the token sequencer, and the registers of a running TOKEN."""
        depth = self.program_words * (PROGRAM_ENTRY_BYTES // PROGRAM_WORD_BYTES)
        # in LUT RAM where the block RAM is the weights' (a board's 80 entries are 800 words of 8
        # bytes); a DRAM design's 256 entries take 10 DP16KD, where LUT RAM would take some 5k LUTs
        m.submodules.program = program = memory.Memory(shape=8 * PROGRAM_WORD_BYTES, depth=depth, init=[],
                                                       attrs={"ram_style": "block" if self.dram_words
                                                              else "distributed"})
        write, read = program.write_port(granularity=8), program.read_port()
        m.submodules.tokens = tokens = TokenSequencer(self.program_words, bits_for(depth - 1), PROGRAM_WORD_BYTES,
                                                      program_ops(bool(self.dram_words)))
        m.d.comb += [read.addr.eq(tokens.addr), tokens.data.eq(read.data)]
        return SimpleNamespace(
            write=write, tokens=tokens,
            byte=Signal(bits_for(depth * PROGRAM_WORD_BYTES), name="program_byte"),  # WRITE's next byte
            in_program=Signal(name="in_program"),      # a TOKEN runs: ops end in a verdict, not an answer
            run=Signal(name="program_run"),            # the op is to run (not only to be checked)
            refused=Signal(name="program_refused"),    # the op's verdict
            settings=Signal(8 * record_size(SETTINGS) - 32, name="program_settings"),  # TOKEN's, but the state
            state=Signal(32, name="program_state"),    # the PRNG's, chained through the SAMPLEs
            force_greedy=Signal(name="force_greedy"),  # a GENERATE's prompt token before the last
            generating=Signal(name="generating"),      # a GENERATE runs: its tokens end in GENERATE_TOKEN_DONE
            checking=Signal(name="generate_checking"),  # ... and checks its prompt (the tokens run nothing)
            position=Signal(17, name="generate_position"),  # the token's position
            token=Signal(16, name="generate_token"),   # its id: the prompt's, or the last one chosen
            index=Signal(16, name="generate_index"),   # the ids streamed before the last one chosen
            start=Signal(16, name="generate_start"),   # GENERATE's fields, kept while its tokens run
            count=Signal(16, name="generate_count"), eos=Signal(16, name="generate_eos"),
            stop_at_eos=Signal(8, name="generate_stop_at_eos"),
            generated=Signal(record_layout(GENERATED), name="generated"),  # its answer, kept for a retry
            streamed=Signal(8 * record_size(STREAMED), name="streamed"))

    def _beat_parts(self, m):
        """WRITE from beats: the gearbox, and the reads of the frame buffer that feed it."""
        spaces = [space for space in self.spaces if space != Space.PROGRAM]  # PROGRAM is written a byte a cycle
        first = record_size(ACCESS) + HEADER_BYTES  # the frame's byte of a WRITE's first word
        m.submodules.gearbox = gearbox = WordGearbox(self.pcie_beat_bytes, max(WORD_BYTES[space] for space in spaces))
        m.d.comb += gearbox.skip.eq(first % self.pcie_beat_bytes)
        return SimpleNamespace(
            gearbox=gearbox, skip=first % self.pcie_beat_bytes,
            read_at=Signal(17, name="beat_read_at"),      # the payload byte whose beat is read next
            loaded=Signal(name="beat_loaded"),            # the buffer's read port holds a beat for the gearbox
            words_left=Signal(17, name="words_left"))     # WRITE's words still to write

    @staticmethod
    def _start_token(m, s):
        """TOKEN: its settings kept for the program's SAMPLEs, its id and position to the sequencer."""
        token = data.View(record_layout(TOKEN), s.record[:8 * record_size(TOKEN)])
        settings = s.record[_settings_at(TOKEN):]  # the state's bits fall off: it is kept on its own
        m.d.sync += [s.program.settings.eq(settings), s.program.state.eq(token.state), s.program.in_program.eq(1),
                     s.program.force_greedy.eq(0)]
        m.next = "TOKEN_START"

    def _program_states(self, m, s):
        """WRITE_PROGRAM, TOKEN_START, PROGRAM_OP, PROGRAM_DISPATCH, PROGRAM_VERDICT: the PROGRAM
        memory's bytes, and a TOKEN's ops (checked, then run) through the MATMUL and vector states."""
        p, tokens = s.program, s.program.tokens
        with m.State("WRITE_PROGRAM"):  # payload bytes into the memory, one a cycle
            take = s.fetched & (s.byte_index != s.length)
            m.d.comb += s.rx.payload_addr.eq(Mux(take, s.byte_index + 1, s.byte_index))
            with m.If(s.byte_index == s.length):
                self._answer(m, s, payload_length=0)
            with m.Elif(~s.fetched):
                m.d.sync += s.fetched.eq(1)
            with m.Else():
                lane = exact_log2(PROGRAM_WORD_BYTES)  # the byte's place in its word
                m.d.comb += [p.write.addr.eq(p.byte[lane:]),
                             p.write.data.eq(Cat(*[s.rx.payload_data] * PROGRAM_WORD_BYTES)),
                             p.write.en.eq(1 << p.byte[:lane])]
                m.d.sync += [s.byte_index.eq(s.byte_index + 1), p.byte.eq(p.byte + 1)]

        with m.State("TOKEN_START"):
            token = data.View(record_layout(TOKEN), s.record[:8 * record_size(TOKEN)])
            m.d.comb += [tokens.i.valid.eq(1), tokens.i.payload.token.eq(token.id),
                         tokens.i.payload.position.eq(token.position)]
            with m.If(tokens.i.ready):
                m.next = "PROGRAM_OP"

        with m.State("PROGRAM_OP"):  # the next op, or the token's verdict
            entry = tokens.op.payload.entry
            op_record = entry.record[:len(s.record)]
            settings_at = _settings_at(SAMPLE)
            with m.If(tokens.op.valid):
                m.d.comb += tokens.op.ready.eq(1)
                with m.If(entry.opcode == Opcode.SAMPLE):  # a program's SAMPLE chooses with TOKEN's settings
                    greedy = Mux(p.force_greedy, 1, p.settings[:8])
                    m.d.sync += s.record.eq(Cat(op_record[:settings_at], greedy, p.settings[8:], p.state,
                                                op_record[settings_at + 8 * record_size(SETTINGS):]))
                with m.Else():
                    m.d.sync += s.record.eq(op_record)
                m.d.sync += [s.operation.eq(entry.opcode), p.run.eq(tokens.op.payload.run)]
                m.next = "PROGRAM_DISPATCH"
            with m.Elif(tokens.o.valid & p.generating):
                m.d.comb += tokens.o.ready.eq(1)
                m.d.sync += p.refused.eq(tokens.o.payload)
                m.next = "GENERATE_TOKEN_DONE"
            with m.Elif(tokens.o.valid):
                m.d.comb += tokens.o.ready.eq(1)
                m.d.sync += p.in_program.eq(0)
                with m.If(tokens.o.payload):
                    self._answer(m, s, Error.BAD_ARGUMENT)
                with m.Else():
                    self._answer(m, s, payload_length=record_size(CHOICE))

        with m.State("PROGRAM_DISPATCH"):  # program entries hold only these ops (others are malformed)
            m.d.comb += s.vector.check_only.eq(~p.run)
            with m.If(s.operation == Opcode.MATMUL):
                m.next = "CHECK_MATMUL"
            if s.dram is not None:
                with m.Elif(s.operation == Opcode.COPY):
                    m.next = "CHECK_COPY"
            with m.Else():
                m.d.comb += s.vector.start.eq(1)
                m.next = "VECTOR"

        self._generate_states(m, s)

        with m.State("PROGRAM_VERDICT"):
            m.d.comb += [tokens.verdict.valid.eq(1), tokens.verdict.payload.eq(p.refused)]
            with m.If(tokens.verdict.ready):
                m.next = "PROGRAM_OP"

    def _generate_states(self, m, s):
        """GENERATE to GENERATE_NEXT: the prompt's tokens checked (check pass only), then run, then
        the loop: an id streamed, the stops, the id run."""
        p, tokens, rx = s.program, s.program.tokens, s.rx
        g = data.View(record_layout(GENERATE), s.record[:8 * record_size(GENERATE)])
        prompt_at = record_size(GENERATE)  # the payload's byte of the first id
        more_prompt = s.byte_index != s.length

        def finish(m, code=None, payload_length=0):
            m.d.sync += [p.generating.eq(0), p.in_program.eq(0)]
            self._answer(m, s, code, payload_length)

        def next_id(m, position):
            m.d.sync += [p.position.eq(position), s.fetched.eq(0), s.byte_in_word.eq(0)]
            m.next = "GENERATE_ID"

        with m.State("GENERATE"):  # the record kept (a program's ops load theirs in its place)
            with m.If(g.count == 0):
                self._answer(m, s, Error.BAD_ARGUMENT)
            with m.Else():
                m.d.sync += [p.settings.eq(s.record[_settings_at(GENERATE):]), p.state.eq(g.state),
                             p.start.eq(g.position), p.count.eq(g.count), p.eos.eq(g.eos),
                             p.stop_at_eos.eq(g.stop_at_eos), p.index.eq(0),
                             p.generating.eq(1), p.checking.eq(1), p.in_program.eq(1)]
                next_id(m, g.position)

        with m.State("GENERATE_ID"):  # the prompt's next id from the frame, a byte every two cycles
            with m.If(~s.fetched):
                m.d.sync += s.fetched.eq(1)
            with m.Else():
                m.d.sync += [p.token.word_select(s.byte_in_word[0], 8).eq(rx.payload_data),
                             s.byte_index.eq(s.byte_index + 1), s.fetched.eq(0), s.byte_in_word.eq(s.byte_in_word + 1)]
                with m.If(s.byte_in_word[0]):
                    m.next = "GENERATE_TOKEN"

        with m.State("GENERATE_TOKEN"):  # a token to the sequencer: checked only, or run
            m.d.sync += p.force_greedy.eq(more_prompt)
            with m.If(~p.checking & self.i.valid):  # a byte arrived: stop between two tokens
                finish(m, Error.INTERRUPTED)
            with m.Elif(p.position[16]):  # past any context
                finish(m, Error.BAD_ARGUMENT)
            with m.Else():
                m.d.comb += [tokens.i.valid.eq(1), tokens.i.payload.token.eq(p.token),
                             tokens.i.payload.position.eq(p.position), tokens.i.payload.check_only.eq(p.checking)]
                with m.If(tokens.i.ready):
                    m.next = "PROGRAM_OP"

        with m.State("GENERATE_TOKEN_DONE"):
            with m.If(p.refused):  # a prompt token (nothing has run), or a generated one
                finish(m, Error.BAD_ARGUMENT)
            with m.Elif(more_prompt):
                next_id(m, p.position + 1)
            with m.Elif(p.checking):  # every prompt token checked: run them from the first
                m.d.sync += [p.checking.eq(0), s.byte_index.eq(prompt_at)]
                next_id(m, p.start)
            with m.Else():  # an id chosen: streamed
                m.d.sync += [p.token.eq(s.vector.choice.id),
                             p.streamed.eq(Cat(p.index, s.vector.choice.id, s.vector.choice.state)),
                             s.answer_opcode.eq(STREAM), s.answer_length.eq(record_size(STREAMED)), s.sent.eq(0)]
                m.next = "ANSWER_HEADER"

        with m.State("GENERATE_NEXT"):  # after the STREAM frame: stop, or run the id at the next position
            stop = Signal(Stop, name="generate_stop")
            stopping = Signal()
            m.d.comb += stopping.eq(1)
            with m.If((p.stop_at_eos != 0) & (p.token == p.eos)):
                m.d.comb += stop.eq(Stop.EOS)
            with m.Elif(p.position + 2 >= tokens.context):  # the id's position is the context's last
                m.d.comb += stop.eq(Stop.CONTEXT)
            with m.Elif(p.index + 1 == p.count):
                m.d.comb += stop.eq(Stop.COUNT)
            with m.Else():
                m.d.comb += stopping.eq(0)
            with m.If(stopping):
                m.d.sync += [p.generated.count.eq(p.index + 1), p.generated.stop.eq(stop),
                             p.generated.state.eq(p.state)]
                finish(m, payload_length=record_size(GENERATED))
            with m.Else():
                m.d.sync += [p.index.eq(p.index + 1), p.position.eq(p.position + 1)]
                m.next = "GENERATE_TOKEN"

    def _command_states(self, m, s):
        """IDLE, CHECK, LOAD_RECORD, DISPATCH: take a frame, check its header, load its record, act on its opcode."""
        with m.State("IDLE"):
            with m.If(s.rx.frame.valid):
                frame = s.rx.frame.payload
                m.d.sync += [s.opcode.eq(frame.opcode), s.sequence.eq(frame.sequence), s.length.eq(frame.length),
                             s.byte_index.eq(0), s.fetched.eq(0), s.record.eq(0)]
                if s.program is not None:
                    m.d.sync += s.operation.eq(frame.opcode)
                with m.If(frame.error != 0):
                    m.d.sync += [s.answer_opcode.eq(ERROR), s.answer_length.eq(1), s.error_code.eq(frame.error),
                                 s.sent.eq(0)]
                    m.next = "ANSWER_HEADER"
                with m.Else():
                    m.next = "CHECK"

        with m.State("CHECK"):
            is_retry = (s.opcode == s.previous_opcode) & (s.sequence == s.previous_sequence) & s.previous_applied
            # a retry's answer again: TOKEN's CHOICE is still the vector ops', GENERATE's in its register
            with m.If(is_retry):
                self._answer(m, s, payload_length=0 if s.program is None else
                             Mux(s.opcode == Opcode.TOKEN, record_size(CHOICE),
                                 Mux(s.opcode == Opcode.GENERATE, record_size(GENERATED), 0)))
            with m.Elif(~s.decoder.known):
                self._answer(m, s, Error.UNKNOWN_OPCODE)
            with m.Elif((s.opcode == Opcode.WRITE) & (s.length < s.decoder.record_length)):
                self._answer(m, s, Error.BAD_ARGUMENT)
            fixed_length = s.opcode != Opcode.WRITE
            if s.program is not None:  # GENERATE: its record, then at least one id of two bytes
                fixed_length &= s.opcode != Opcode.GENERATE
                with m.Elif((s.opcode == Opcode.GENERATE)
                            & ((s.length <= s.decoder.record_length) | (s.length - s.decoder.record_length)[0])):
                    self._answer(m, s, Error.BAD_ARGUMENT)
            with m.Elif(fixed_length & (s.length != s.decoder.record_length)):
                self._answer(m, s, Error.BAD_ARGUMENT)
            with m.Else():
                m.next = "LOAD_RECORD"

        with m.State("LOAD_RECORD"):  # the record's bytes into ``record``, one every two cycles
            with m.If(s.byte_index == s.decoder.record_length):
                m.next = "DISPATCH"
            with m.Elif(~s.fetched):
                m.d.sync += s.fetched.eq(1)
            with m.Else():
                m.d.sync += [s.record.word_select(s.byte_index[:6], 8).eq(s.rx.payload_data),
                             s.byte_index.eq(s.byte_index + 1), s.fetched.eq(0)]

        with m.State("DISPATCH"):
            with m.Switch(s.opcode):
                with m.Case(Opcode.INFO):
                    self._answer(m, s, payload_length=len(self.info))
                with m.Case(Opcode.COUNTERS):
                    dram_counters = [] if s.dram is None else [s.dram.reads, s.dram.writes, s.dram.copy_cycles]
                    m.d.sync += s.counters.eq(Cat(s.cycles, s.matmul_cycles, s.macs, s.commands, s.errors,
                                                  *s.vector_counters, *dram_counters))
                    self._answer(m, s, payload_length=record_size(counters_record(self.norm_length, self.dram_words)))
                with m.Case(Opcode.RESET_COUNTERS):
                    m.d.sync += [s.cycles.eq(0), s.matmul_cycles.eq(0), s.macs.eq(0), s.commands.eq(0),
                                 s.errors.eq(0), *(counter.eq(0) for counter in s.vector_counters)]
                    if s.dram is not None:
                        m.d.sync += [s.dram.reads.eq(0), s.dram.writes.eq(0), s.dram.copy_cycles.eq(0)]
                    self._answer(m, s, payload_length=0)
                with m.Case(Opcode.WRITE):
                    m.d.sync += [s.remaining.eq(s.length - record_size(ACCESS)), s.word_count.eq(0)]
                    m.next = "COUNT_WORDS"
                with m.Case(Opcode.READ):
                    m.d.sync += [s.remaining.eq(0), s.word_count.eq(s.access.words)]
                    m.next = "CHECK_ACCESS"
                with m.Case(Opcode.MATMUL):
                    m.next = "CHECK_MATMUL"
                if s.vector is not None:
                    with m.Case(*VECTOR_OPS):
                        m.d.comb += s.vector.start.eq(1)
                        m.next = "VECTOR"
                if s.dram is not None:
                    with m.Case(Opcode.COPY):
                        m.next = "CHECK_COPY"
                    with m.Case(Opcode.DRAM_TEST):
                        m.next = "CHECK_DRAM_TEST"
                if s.program is not None:
                    with m.Case(Opcode.TOKEN):
                        self._start_token(m, s)
                    with m.Case(Opcode.GENERATE):
                        m.next = "GENERATE"

    def _transfer_states(self, m, s):
        """COUNT_WORDS, CHECK_ACCESS, ACCESS_VERDICT, WRITE: check a WRITE or READ, write WRITE's words."""
        with m.State("COUNT_WORDS"):  # how many words WRITE carries, by repeated subtraction
            def by_subtraction():
                with m.If(s.remaining >= s.word_bytes):
                    m.d.sync += [s.remaining.eq(s.remaining - s.word_bytes), s.word_count.eq(s.word_count + 1)]
                with m.Else():
                    m.next = "CHECK_ACCESS"
            if s.beats is None:
                by_subtraction()
            else:  # in one cycle where the word is a power of two: WRITE keeps a beat's rate
                with m.Switch(s.access.space):
                    for space in self.spaces:
                        if WORD_BYTES[space] & (WORD_BYTES[space] - 1) == 0:
                            with m.Case(space):
                                m.d.sync += [s.word_count.eq(s.remaining >> exact_log2(WORD_BYTES[space])),
                                             s.remaining.eq(s.remaining & (WORD_BYTES[space] - 1))]
                                m.next = "CHECK_ACCESS"
                    with m.Default():
                        by_subtraction()

        # Each check registers its verdict a cycle before acting on it: the comparisons and
        # the state machine's next state are then not one combinational path.
        with m.State("CHECK_ACCESS"):
            m.d.sync += s.refused.eq(access_refused(
                s.opcode, s.access, s.word_count, s.remaining, s.byte_count,
                rows=self.rows, cols=self.cols, depths=self.depths, max_payload=self.max_payload,
                spaces=self.spaces))
            m.next = "ACCESS_VERDICT"

        with m.State("ACCESS_VERDICT"):
            with m.If(s.refused):
                self._answer(m, s, Error.BAD_ARGUMENT)
            with m.Elif(s.opcode == Opcode.WRITE):
                m.d.sync += [s.write_address.eq(s.access.address), s.byte_in_word.eq(0), s.fetched.eq(0)]
                m.next = "WRITE"
                if s.beats is not None:
                    m.d.comb += s.beats.gearbox.start.eq(1)
                    m.d.sync += [s.beats.read_at.eq(record_size(ACCESS)), s.beats.loaded.eq(0),
                                 s.beats.words_left.eq(s.word_count)]
                if s.program is not None:
                    with m.If(s.access.space == Space.PROGRAM):
                        m.d.sync += s.program.byte.eq(times_constant(s.access.address, PROGRAM_ENTRY_BYTES))
                        m.next = "WRITE_PROGRAM"
            with m.Else():
                m.d.sync += s.read_address.eq(s.access.address)
                self._answer(m, s, payload_length=s.byte_count[:16])

        if s.beats is None:
            self._write_bytes_state(m, s)
        else:
            self._write_beats_state(m, s)

    def _write_bytes_state(self, m, s):
        """WRITE with a byte link: the payload's bytes into words, one a cycle."""
        with m.State("WRITE"):  # payload bytes into words, one a cycle, each word written as it completes
            take = s.fetched & (s.byte_index != s.length)  # rx.payload_data holds the byte at byte_index
            completes = s.byte_in_word + 1 == s.word_bytes
            finished, into_banks = s.byte_index == s.length, completes
            if s.dram is not None:  # a DRAM word waits while the one before it is still to be written
                to_dram = s.access.space == Space.DRAM
                take &= ~(to_dram & completes & s.dram.write)
                finished &= ~s.dram.write
                into_banks = completes & ~to_dram
                with m.If(take & completes & to_dram):
                    word = Signal(DRAM_WORD_BITS)
                    m.d.comb += [word.eq(s.word), word.word_select(s.byte_in_word, 8).eq(s.rx.payload_data)]
                    m.d.sync += [s.dram.write.eq(1), s.dram.write_word.address.eq(s.write_address),
                                 s.dram.write_word.word.data.eq(word), s.dram.write_word.word.we.eq(-1)]
            if s.control is not None:  # a register's write waits while the one before it is answered
                to_control = s.access.space == Space.CONTROL
                take &= ~(to_control & completes & s.control.busy)
                finished &= ~s.control.busy
                into_banks &= ~to_control
                with m.If(take & completes & to_control):
                    request = s.control.port.request
                    m.d.sync += [request.valid.eq(1), request.payload.address.eq(s.write_address),
                                 request.payload.data.eq(Cat(s.word[:CONTROL_WORD_BITS - 8], s.rx.payload_data)),
                                 request.payload.we.eq(1)]
            m.d.comb += [s.rx.payload_addr.eq(Mux(take, s.byte_index + 1, s.byte_index)),
                         s.writing.eq(take & into_banks)]
            word_done = s.writing if s.dram is None else take & completes
            with m.If(finished):
                self._answer(m, s, payload_length=0)
            with m.Elif(~s.fetched):
                m.d.sync += s.fetched.eq(1)
            with (m.Else() if s.dram is None else m.Elif(take)):
                m.d.sync += s.byte_index.eq(s.byte_index + 1)
                with m.If(word_done):
                    m.d.sync += [s.write_address.eq(s.write_address + 1), s.byte_in_word.eq(0)]
                with m.Else():
                    m.d.sync += [s.word.word_select(s.byte_in_word, 8).eq(s.rx.payload_data),
                                 s.byte_in_word.eq(s.byte_in_word + 1)]

    def _write_beats_state(self, m, s):
        """WRITE with a beat link: the frame buffer's beats, one a cycle, through the gearbox, and
        each word it gives written into its space as it comes (a DRAM word or a register waits
        while the one before it is still to be written)."""
        beats, gearbox = s.beats, s.beats.gearbox
        with m.State("WRITE"):
            more = beats.read_at < s.length + beats.skip  # the payload's last beat is not read yet
            read = more & (~beats.loaded | gearbox.i.ready)
            m.d.comb += [s.rx.payload_addr.eq(beats.read_at), s.rx.payload_en.eq(read),
                         gearbox.i.valid.eq(beats.loaded), gearbox.i.payload.eq(s.rx.payload_beat),
                         gearbox.word_bytes.eq(s.word_bytes)]
            with m.If(read):
                m.d.sync += [beats.read_at.eq(beats.read_at + self.pcie_beat_bytes), beats.loaded.eq(1)]
            with m.Elif(gearbox.i.ready):
                m.d.sync += beats.loaded.eq(0)

            word = gearbox.o.payload
            busy, into_banks = Const(0), Const(1)
            if s.dram is not None:
                to_dram = s.access.space == Space.DRAM
                busy |= s.dram.write
                into_banks &= ~to_dram
                with m.If(gearbox.o.valid & gearbox.o.ready & to_dram):
                    m.d.sync += [s.dram.write.eq(1), s.dram.write_word.address.eq(s.write_address),
                                 s.dram.write_word.word.data.eq(word), s.dram.write_word.word.we.eq(-1)]
            if s.control is not None:
                to_control = s.access.space == Space.CONTROL
                busy |= s.control.busy
                into_banks &= ~to_control
                with m.If(gearbox.o.valid & gearbox.o.ready & to_control):
                    request = s.control.port.request
                    m.d.sync += [request.valid.eq(1), request.payload.address.eq(s.write_address),
                                 request.payload.data.eq(word), request.payload.we.eq(1)]
            m.d.comb += [gearbox.o.ready.eq((beats.words_left != 0) & ~busy), s.banks.write_word.eq(word),
                         s.writing.eq(gearbox.o.valid & gearbox.o.ready & into_banks)]
            with m.If(gearbox.o.valid & gearbox.o.ready):
                m.d.sync += [s.write_address.eq(s.write_address + 1), beats.words_left.eq(beats.words_left - 1)]
            with m.If((beats.words_left == 0) & ~busy):
                self._answer(m, s, payload_length=0)

    def _matmul_states(self, m, s):
        """CHECK_MATMUL to MATMUL_DONE: check a MATMUL, count its MACs, run it and wait for its last result."""
        with m.State("CHECK_MATMUL"):  # the fields; then CHECK_RANGES, the addresses
            m.d.sync += s.refused.eq(matmul_refused(
                s.matmul, rows=self.rows, cols=self.cols, gelu_tables=self.gelu_tables,
                softmax_length=self.softmax_length, constant_words=self.depths[Space.CONSTANTS]))
            m.next = "MATMUL_VERDICT"

        with m.State("MATMUL_VERDICT"):
            with m.If(s.refused):
                self._finish_op(m, s, Error.BAD_ARGUMENT)
            with m.Else():
                m.d.comb += s.ranges.start.eq(1)
                m.next = "CHECK_RANGES"

        with m.State("CHECK_RANGES"):  # the ends of A, W and the output, one stride a cycle
            m.d.sync += [s.refused.eq(s.ranges.past_end), s.ranges_done.eq(s.ranges.done)]
            m.next = "RANGES_VERDICT"

        with m.State("RANGES_VERDICT"):
            m.next = "CHECK_RANGES"
            with m.If(s.refused):
                self._finish_op(m, s, Error.BAD_ARGUMENT)
            if s.program is not None:
                with m.Elif(s.ranges_done & s.program.in_program & ~s.program.run):  # checked, not to run
                    self._finish_op(m, s)
            with m.Elif(s.ranges_done):
                m.d.sync += [s.multiplicand.eq(s.matmul.m), s.multiplier.eq(s.matmul.k), s.product.eq(0),
                             s.second_factor.eq(0)]
                m.next = "COUNT_MACS"
            with m.Else():
                m.d.comb += s.ranges.step.eq(1)

        # macs += m * k * n, shifting and adding a bit of k, then of n, a cycle (at most 26
        # cycles): a combinational product of three 12-bit fields would limit the clock
        with m.State("COUNT_MACS"):
            with m.If(s.multiplier != 0):
                with m.If(s.multiplier[0]):
                    m.d.sync += s.product.eq(s.product + s.multiplicand)
                m.d.sync += [s.multiplicand.eq(s.multiplicand << 1), s.multiplier.eq(s.multiplier >> 1)]
            with m.Elif(~s.second_factor):
                m.d.sync += [s.multiplicand.eq(s.product), s.multiplier.eq(s.matmul.n), s.product.eq(0),
                             s.second_factor.eq(1)]
            with m.Else():
                m.d.sync += s.macs.eq(s.macs + s.product)
                m.next = "MATMUL"

        with m.State("MATMUL"):
            command, matmul = s.sequencer.command.payload, s.matmul
            # W in DRAM: the fetch engine takes the product with the sequencer
            in_dram = matmul.w_base >= self.depths[Space.WEIGHTS] if s.dram is not None else None
            m.d.comb += [s.sequencer.command.valid.eq(1 if s.dram is None else ~in_dram | s.dram.fetch.command.ready),
                         command.m.eq(matmul.m), command.k.eq(matmul.k), command.n.eq(matmul.n),
                         command.a_base.eq(matmul.a_base), command.a_stride.eq(matmul.a_stride),
                         command.w_base.eq(matmul.w_base), command.w_stride.eq(matmul.w_stride)]
            m.d.sync += s.matmul_cycles.eq(s.matmul_cycles + 1)
            started = s.sequencer.command.ready
            if s.dram is not None:
                fetch, weight_words = s.dram.fetch.command, self.depths[Space.WEIGHTS]
                m.d.comb += [command.w_dram.eq(in_dram), fetch.valid.eq(in_dram & s.sequencer.command.ready),
                             fetch.payload.m.eq(matmul.m), fetch.payload.k.eq(matmul.k), fetch.payload.n.eq(matmul.n),
                             fetch.payload.base.eq(matmul.w_base - weight_words),
                             fetch.payload.stride.eq(matmul.w_stride)]
                started &= ~in_dram | fetch.ready
            with m.If(started):
                m.next = "MATMUL_RESULTS"

        with m.State("MATMUL_RESULTS"):
            m.d.sync += s.matmul_cycles.eq(s.matmul_cycles + 1)
            with m.If(s.banks.result_last):
                m.next = "MATMUL_DONE" if s.dram is None else "MATMUL_DRAIN"

        if s.dram is not None:
            with m.State("MATMUL_DRAIN"):  # the results for DRAM written: the next op may read them
                m.d.sync += s.matmul_cycles.eq(s.matmul_cycles + 1)
                m.d.comb += s.dram.combiner.flush.eq(1)
                with m.If(s.dram.combiner.idle & s.dram.arbiter.idle):
                    m.next = "MATMUL_DONE"

        with m.State("MATMUL_DONE"):  # a cycle between the result path and the answer, for timing
            self._finish_op(m, s)

    def _copy_states(self, m, s):
        """CHECK_COPY, COPY_VERDICT, COPY_RUN: a COPY checked, then its DRAM words read (up to
        FETCH_DEPTH ahead) and written a word a cycle, each into every weight bank at once or into
        two CONSTANTS words (the banks' write ports, taken from WRITE's and the result path's)."""
        d, banks = s.dram, s.banks
        copy = data.View(record_layout(COPY), s.record[:8 * record_size(COPY)])
        into_weights = copy.space == Space.WEIGHTS
        issued, received = Signal(16, name="copy_issued"), Signal(16, name="copy_received")

        with m.State("CHECK_COPY"):
            constants_fit = copy.address + 2 * copy.words <= self.depths[Space.CONSTANTS]
            fits = Mux(into_weights, copy.address + copy.words <= self.depths[Space.WEIGHTS],
                       (copy.space == Space.CONSTANTS) & constants_fit)
            m.d.sync += [s.refused.eq((copy.words == 0) | (copy.source + copy.words > self.dram_words) | ~fits),
                         issued.eq(0), received.eq(0), d.copy_cycles.eq(d.copy_cycles + 1)]
            m.next = "COPY_VERDICT"

        with m.State("COPY_VERDICT"):
            m.d.sync += d.copy_cycles.eq(d.copy_cycles + 1)
            with m.If(s.refused):
                self._finish_op(m, s, Error.BAD_ARGUMENT)
            with m.Elif(s.program.in_program & ~s.program.run):  # checked, not to run
                self._finish_op(m, s)
            with m.Else():
                m.next = "COPY_RUN"

        with m.State("COPY_RUN"):
            m.d.sync += d.copy_cycles.eq(d.copy_cycles + 1)
            m.d.comb += [d.read.eq((issued != copy.words) & (issued - received < FETCH_DEPTH)),
                         d.read_address.eq(copy.source + issued), d.taking.eq(1)]
            with m.If(d.read & d.arbiter.read.ready):
                m.d.sync += issued.eq(issued + 1)
            with m.If(received == copy.words):  # (the last word is written in this cycle)
                self._finish_op(m, s)
            with m.Elif(d.arbiter.rdata.valid):  # a word a cycle: into every weight bank, or two records
                m.d.comb += [d.take.eq(1), banks.copy_word.eq(d.arbiter.rdata.payload),
                             banks.write_address.eq(Mux(into_weights, copy.address + received,
                                                        copy.address + 2 * received))]
                with m.If(into_weights):
                    m.d.comb += banks.copying.eq(1)
                with m.Else():
                    m.d.comb += banks.copying_records.eq(1)
                m.d.sync += received.eq(received + 1)

    def _dram_test_states(self, m, s):
        """CHECK_DRAM_TEST, DRAM_TEST_VERDICT, DRAM_TEST_WRITE, DRAM_TEST_READ: the pattern of
        contract/protocol.py's ``dram_test_word`` written over the words, then read back and
        compared; the errors and the first one's address answered (from the counters' register)."""
        d = s.dram
        test = data.View(record_layout(DRAM_TEST), s.record[:8 * record_size(DRAM_TEST)])
        issued, received = Signal(32, name="test_issued"), Signal(32, name="test_received")
        errors, first_error = Signal(32, name="test_errors"), Signal(32, name="test_first_error")

        def pattern(address):
            x = (address ^ test.seed)[:32]
            return Cat(x, ~x, x.rotate_left(16), x ^ 0xA5A5A5A5)

        with m.State("CHECK_DRAM_TEST"):
            m.d.sync += [s.refused.eq((test.words == 0) | (test.start + test.words > self.dram_words)),
                         issued.eq(0), received.eq(0), errors.eq(0), first_error.eq(0xFFFFFFFF)]
            m.next = "DRAM_TEST_VERDICT"

        with m.State("DRAM_TEST_VERDICT"):
            with m.If(s.refused):
                self._answer(m, s, Error.BAD_ARGUMENT)
            with m.Else():
                m.next = "DRAM_TEST_WRITE"

        with m.State("DRAM_TEST_WRITE"):  # a word into the write register whenever it is free
            with m.If(issued == test.words):
                with m.If(~d.write):
                    m.d.sync += issued.eq(0)
                    m.next = "DRAM_TEST_READ"
            with m.Elif(~d.write):
                address = test.start + issued
                m.d.sync += [d.write.eq(1), d.write_word.address.eq(address),
                             d.write_word.word.data.eq(pattern(address)), d.write_word.word.we.eq(-1),
                             issued.eq(issued + 1)]

        with m.State("DRAM_TEST_READ"):  # up to FETCH_DEPTH reads ahead, each word compared as it comes
            m.d.comb += [d.read.eq((issued != test.words) & (issued - received < FETCH_DEPTH)),
                         d.read_address.eq(test.start + issued), d.taking.eq(1), d.take.eq(1)]
            with m.If(d.read & d.arbiter.read.ready):
                m.d.sync += issued.eq(issued + 1)
            with m.If(received == test.words):
                m.d.sync += s.counters.eq(Cat(errors, first_error))
                self._answer(m, s, payload_length=record_size(DRAM_TESTED))
            with m.Elif(d.arbiter.rdata.valid):
                address = test.start + received
                m.d.sync += received.eq(received + 1)
                with m.If(d.arbiter.rdata.payload != pattern(address)):
                    m.d.sync += errors.eq(errors + 1)
                    with m.If(errors == 0):
                        m.d.sync += first_error.eq(address)

    def _vector_states(self, m, s):
        """VECTOR: an EMBED, NORM or SAMPLE, checked and (if good) run by the vector ops."""
        with m.State("VECTOR"):
            with m.Switch(s.operation):  # the cycles of each kind of op (its checks included)
                for opcode, counter in zip(VECTOR_OPS, s.vector_counters):
                    with m.Case(opcode):
                        m.d.sync += counter.eq(counter + 1)
            with m.If(s.vector.checked & s.vector.refused):
                self._finish_op(m, s, Error.BAD_ARGUMENT)
            if s.program is not None:
                with m.Elif(s.vector.checked & s.program.in_program & ~s.program.run):  # a program's check pass
                    self._finish_op(m, s)
            with m.Elif(s.vector.done):
                if s.program is not None:  # a program's SAMPLEs chain the PRNG's state
                    with m.If(s.operation == Opcode.SAMPLE):
                        m.d.sync += s.program.state.eq(s.vector.choice.state)
                self._finish_op(m, s, payload_length=Mux(s.opcode == Opcode.SAMPLE, record_size(CHOICE), 0))

    def _answer_states(self, m, s):
        """ANSWER_HEADER, ANSWER_PAYLOAD: send the answer's header, then its payload (READ's from READ_FETCH)."""
        with m.State("ANSWER_HEADER"):
            m.d.comb += [s.tx.frame.valid.eq(1), s.tx.frame.payload.opcode.eq(s.answer_opcode),
                         s.tx.frame.payload.sequence.eq(s.sequence), s.tx.frame.payload.length.eq(s.answer_length)]
            with m.If(s.tx.frame.ready):
                m.d.sync += [s.fetched.eq(0), s.byte_in_word.eq(0)]
                m.next = "ANSWER_PAYLOAD"

        with m.State("ANSWER_PAYLOAD"):
            with m.If(s.sent == s.answer_length):
                m.next = "DONE"
                if s.program is not None:  # a STREAM frame: GENERATE goes on
                    with m.If(s.answer_opcode == STREAM):
                        m.next = "GENERATE_NEXT"
            with m.Elif(s.answer_opcode == (Opcode.READ | ANSWER)):
                m.next = "READ_FETCH"
            with m.Else():
                with m.If(s.answer_opcode == ERROR):
                    m.d.comb += s.payload_byte.eq(s.error_code)
                with m.Elif(s.answer_opcode == (Opcode.INFO | ANSWER)):
                    m.d.comb += s.payload_byte.eq(s.info.data)
                    with m.If(s.tx.payload.ready):
                        m.d.comb += s.info.addr.eq(s.sent + 1)
                if s.vector is not None:  # SAMPLE's CHOICE, or TOKEN's (its last SAMPLE's)
                    with m.Elif((s.answer_opcode == (Opcode.SAMPLE | ANSWER))
                                | (s.answer_opcode == (Opcode.TOKEN | ANSWER))):
                        m.d.comb += s.payload_byte.eq(s.vector.choice.as_value().word_select(s.sent[:3], 8))
                if s.program is not None:
                    with m.Elif(s.answer_opcode == (Opcode.GENERATE | ANSWER)):
                        m.d.comb += s.payload_byte.eq(s.program.generated.as_value().word_select(s.sent[:3], 8))
                    with m.Elif(s.answer_opcode == STREAM):
                        m.d.comb += s.payload_byte.eq(s.program.streamed.word_select(s.sent[:3], 8))
                with m.Else():
                    select = (len(s.counters) // 8 - 1).bit_length()
                    m.d.comb += s.payload_byte.eq(s.counters.word_select(s.sent[:select], 8))
                m.d.comb += [s.tx.payload.valid.eq(1), s.tx.payload.payload.eq(s.payload_byte)]
                with m.If(s.tx.payload.ready):
                    m.d.sync += s.sent.eq(s.sent + 1)

    def _read_answer_states(self, m, s):
        """READ_FETCH, READ_LATCH, READ_SEND: READ's words, a bank read a cycle before its bytes are sent."""
        with m.State("READ_FETCH"):
            if s.dram is None:
                m.d.comb += s.reading.eq(1)
                m.next = "READ_LATCH"
            else:
                with m.If(s.access.space == Space.DRAM):  # the word's read offered to DRAM
                    m.d.comb += [s.dram.read.eq(1), s.dram.read_address.eq(s.read_address)]
                    with m.If(s.dram.arbiter.read.ready):
                        m.next = "READ_DRAM"
                if s.control is not None:
                    with m.Elif(s.access.space == Space.CONTROL):  # the register's read requested
                        request = s.control.port.request
                        m.d.sync += [request.valid.eq(1), request.payload.address.eq(s.read_address),
                                     request.payload.we.eq(0)]
                        m.next = "READ_CONTROL"
                with m.Else():
                    m.d.comb += s.reading.eq(1)
                    m.next = "READ_LATCH"

        if s.dram is not None:
            with m.State("READ_DRAM"):  # its word, when DRAM answers
                m.d.comb += [s.dram.taking.eq(1), s.dram.take.eq(1)]
                with m.If(s.dram.arbiter.rdata.valid):
                    m.d.sync += [s.word.eq(s.dram.arbiter.rdata.payload), s.byte_in_word.eq(0),
                                 s.read_address.eq(s.read_address + 1)]
                    m.next = "READ_SEND"

        if s.control is not None:
            with m.State("READ_CONTROL"):  # its data, when the controller answers
                with m.If(~s.control.busy):
                    m.d.sync += [s.word.eq(s.control.data), s.byte_in_word.eq(0),
                                 s.read_address.eq(s.read_address + 1)]
                    m.next = "READ_SEND"

        with m.State("READ_LATCH"):
            m.d.sync += [s.word.eq(s.banks.read_word), s.byte_in_word.eq(0), s.read_address.eq(s.read_address + 1)]
            m.next = "READ_SEND"

        with m.State("READ_SEND"):
            m.d.comb += [s.tx.payload.valid.eq(1), s.tx.payload.payload.eq(s.word.word_select(s.byte_in_word, 8))]
            with m.If(s.tx.payload.ready):
                m.d.sync += [s.sent.eq(s.sent + 1), s.byte_in_word.eq(s.byte_in_word + 1)]
                with m.If(s.byte_in_word + 1 == s.word_bytes):
                    m.next = "ANSWER_PAYLOAD"

    def _done_state(self, m, s):
        """DONE: release the frame, remember it for the retry rule, count the command or the error."""
        with m.State("DONE"):
            m.d.comb += s.rx.frame.ready.eq(1)
            with m.If(s.rx.frame.payload.error == 0):  # damaged frames leave the retry rule alone
                # a retry of this frame is answered, not applied, if it is one of APPLIED_ONCE and
                # succeeded (a retry's own answer is no error: a retry of a retry is recognised too)
                ops = APPLIED_ONCE if self.dram_words else APPLIED_ONCE - {Opcode.COPY}  # COPY: with DRAM
                applied_once = (s.answer_opcode != ERROR) & s.opcode.matches(*sorted(ops))
                m.d.sync += [s.previous_opcode.eq(s.opcode), s.previous_sequence.eq(s.sequence),
                             s.previous_applied.eq(applied_once)]
            with m.If(s.answer_opcode != ERROR):
                m.d.sync += s.commands.eq(s.commands + 1)
            with m.Else():
                m.d.sync += s.errors.eq(s.errors + 1)
            m.next = "IDLE"
