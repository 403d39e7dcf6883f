"""The accelerator's top level: link bytes in and out, memories, the matmul sequencer and the units.

It executes the commands of host/protocol.py one at a time, each answered once:

* INFO: the build's parameters and gateware version;
* WRITE, READ: words of the activation banks, weight banks, requantizer constants (GELU knots
  write only), every argument checked before anything is written;
* MATMUL: a product on the systolic array whose results go through :class:`ResultPath` into the
  banks, once its fields and every address it reads or writes are checked; answered when the last
  result is written;
* COUNTERS, RESET_COUNTERS: cycles, matmul cycles, MACs, commands and errors.

A good command frame with the opcode and sequence number of the previous good one is a retry: a
WRITE, MATMUL or RESET_COUNTERS that succeeded is answered again without being applied again.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..host.numerics import NUMERICS_VERSION
from ..host.protocol import (
    ACCESS, ANSWER, CONSTANT, COUNTERS, ERROR, INFO, INFO_MAGIC, MATMUL, READ, WORD_BYTES, Error, Mode, Opcode,
    Space, pack_record, record_size)
from .framing import FrameReceiver, FrameTransmitter
from .gelu import KNOTS
from .matmul import MatmulSequencer
from .results import ResultPath, record_layout

__all__ = ["Accelerator"]


class _ReadPort:
    """The address, enable and data of a bank read port, for the sequencer to drive in turn."""

    def __init__(self, address_width, width, name):
        self.addr = Signal(address_width, name=f"{name}_addr")
        self.en = Signal(name=f"{name}_en")
        self.data = Signal(width, name=f"{name}_data")


class Accelerator(wiring.Component):
    """The device: ``i`` and ``o`` carry link bytes (behind a UART, or raw in the simulated board).

    Parameters
    ----------
    rows, cols : the systolic array (``cols`` a power of two)
    activation_words, weight_words, constant_words : words in each activation bank (16-bit), each
        weight bank (8-bit), and the constants memory (one CONSTANT record a word)
    gelu_tables : knot tables of the GELU unit
    softmax_length : the longest softmax row (the model's context)
    max_payload : the frame buffer, in bytes
    timeout_cycles : cycles of silence inside a frame after which it is TRUNCATED
    clock_hz : reported by INFO
    gateware_version : reported by INFO (a hash of the Verilog built with it 0: see host/board)
    """

    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def __init__(self, *, rows, cols, activation_words, weight_words, constant_words, gelu_tables=4,
                 softmax_length=256, max_payload=4096, timeout_cycles=1_000_000, clock_hz=0,
                 gateware_version=0):
        self.rows, self.cols = rows, cols
        self.depths = {Space.ACTIVATIONS: activation_words, Space.WEIGHTS: weight_words,
                       Space.CONSTANTS: constant_words, Space.GELU: KNOTS * gelu_tables}
        self.gelu_tables, self.softmax_length = gelu_tables, softmax_length
        self.max_payload, self.timeout_cycles = max_payload, timeout_cycles
        self.info = pack_record(
            INFO, magic=INFO_MAGIC, gateware_version=gateware_version, numerics_version=NUMERICS_VERSION,
            rows=rows, cols=cols, activation_words=activation_words, weight_words=weight_words,
            constant_words=constant_words, gelu_tables=gelu_tables, max_payload=max_payload,
            softmax_length=softmax_length, clock_hz=clock_hz)
        self.address_width = max(d - 1 for d in self.depths.values()).bit_length()
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rows, cols, aw = self.rows, self.cols, self.address_width
        m.submodules.rx = rx = FrameReceiver(self.max_payload, self.timeout_cycles)
        m.submodules.tx = tx = FrameTransmitter()
        wiring.connect(m, wiring.flipped(self.i), rx.i)
        wiring.connect(m, tx.o, wiring.flipped(self.o))

        # -- memories and the compute path -----------------------------------------------------
        constant_width = 8 * record_size(CONSTANT)
        a_banks = [memory.Memory(shape=16, depth=self.depths[Space.ACTIVATIONS], init=[]) for _ in range(rows)]
        w_banks = [memory.Memory(shape=8, depth=self.depths[Space.WEIGHTS], init=[]) for _ in range(cols)]
        constants = memory.Memory(shape=constant_width, depth=self.depths[Space.CONSTANTS], init=[])
        for index, bank in enumerate(a_banks):
            m.submodules[f"a_bank{index}"] = bank
        for index, bank in enumerate(w_banks):
            m.submodules[f"w_bank{index}"] = bank
        m.submodules.constants = constants
        a_reads = [bank.read_port() for bank in a_banks]
        w_reads = [bank.read_port() for bank in w_banks]
        a_writes = [bank.write_port() for bank in a_banks]
        w_writes = [bank.write_port() for bank in w_banks]
        c_read, c_write = constants.read_port(), constants.write_port()

        a_proxies = [_ReadPort(aw, 16, f"seq_a{r}") for r in range(rows)]
        w_proxies = [_ReadPort(aw, 8, f"seq_w{c}") for c in range(cols)]
        m.submodules.sequencer = sequencer = MatmulSequencer(rows, cols, a_proxies, w_proxies, aw)
        m.submodules.results = results = ResultPath(rows, cols, aw, self.gelu_tables, self.softmax_length)
        # the array's result beats reach the result path through a small FIFO, which cuts the
        # ready path from the units back to the array's output buffer (a long route on a big FPGA)
        m.submodules.beats = beats = fifo.SyncFIFO(width=len(sequencer.o.payload.as_value()), depth=4)
        m.d.comb += [beats.w_data.eq(sequencer.o.payload), beats.w_en.eq(sequencer.o.valid),
                     sequencer.o.ready.eq(beats.w_rdy),
                     results.i.payload.eq(beats.r_data), results.i.valid.eq(beats.r_rdy),
                     beats.r_en.eq(results.i.ready)]

        # -- command state -----------------------------------------------------------------------
        opcode, sequence, length = Signal(8), Signal(8), Signal(16)
        record = Signal(8 * record_size(MATMUL))
        access = data.View(record_layout(READ), record[:8 * record_size(READ)])
        matmul = data.View(record_layout(MATMUL), record)
        m.d.comb += results.command.eq(matmul)
        byte_index = Signal(16)       # the payload byte being fetched
        fetched = Signal()            # rx.payload_data holds the byte at byte_index
        m.d.comb += rx.payload_addr.eq(byte_index)
        previous_opcode, previous_sequence, previous_applied = Signal(8), Signal(8), Signal()

        # answers
        answer_opcode, answer_length = Signal(8), Signal(16)
        error_code = Signal(8)
        applied = Signal()            # this command changed the device (for the retry rule)
        sent = Signal(16)             # answer payload bytes sent

        # counters
        cycles, matmul_cycles, macs = Signal(64), Signal(64), Signal(64)
        commands, errors = Signal(32), Signal(32)
        multiplicand, product = Signal(36), Signal(36)  # COUNT_MACS
        multiplier, second_factor = Signal(12), Signal()
        refused, ranges_done = Signal(), Signal()  # a check's verdict, registered
        counters = Signal(8 * record_size(COUNTERS))
        m.d.sync += cycles.eq(cycles + 1)

        # word transfers (WRITE, READ)
        space, bank, address = access.space, access.bank, access.address
        word_bytes = Signal(range(13))
        m.d.comb += word_bytes.eq(Array(Const(WORD_BYTES[s], 4) for s in Space)[space[:2]])
        word = Signal(constant_width)  # WRITE's word so far
        assembled = Signal(constant_width)  # ... with the byte taken this cycle
        byte_in_word = Signal(range(13))
        word_count = Signal(17)
        byte_count = Signal(21)  # word_count * word_bytes, by shifts and adds: no multiplier on this path
        m.d.comb += byte_count.eq(Array(sum(word_count << bit for bit in range(4) if WORD_BYTES[s] >> bit & 1)
                                        for s in Space)[space[:2]])
        remaining = Signal(17)
        depth = Signal(33)
        banks = Signal(9)
        m.d.comb += [depth.eq(Array(Const(self.depths[s], 33) for s in Space)[space[:2]]),
                     banks.eq(Array(Const(n, 9) for n in (rows, cols, 1, 1))[space[:2]])]

        def answer(m, code=None, payload_length=0):
            """Go and send the answer: an error ``code``, or the command's answer."""
            if code is not None:
                m.d.sync += [answer_opcode.eq(ERROR), answer_length.eq(1), error_code.eq(code)]
            else:
                m.d.sync += [answer_opcode.eq(opcode | ANSWER), answer_length.eq(payload_length)]
            m.d.sync += sent.eq(0)
            m.next = "ANSWER_HEADER"

        # the read ports: the sequencer's while a product runs, else READ's
        reading = Signal()
        read_address = Signal(aw)
        for r, (port, proxy) in enumerate(zip(a_reads, a_proxies)):
            m.d.comb += [port.addr.eq(Mux(reading, read_address, proxy.addr)),
                         port.en.eq(Mux(reading, (space == Space.ACTIVATIONS) & (bank == r), proxy.en)),
                         proxy.data.eq(port.data)]
        for c, (port, proxy) in enumerate(zip(w_reads, w_proxies)):
            m.d.comb += [port.addr.eq(Mux(reading, read_address, proxy.addr)),
                         port.en.eq(Mux(reading, (space == Space.WEIGHTS) & (bank == c), proxy.en)),
                         proxy.data.eq(port.data)]
        m.d.comb += [c_read.addr.eq(Mux(reading, read_address, results.constant_address)),
                     c_read.en.eq(Mux(reading, space == Space.CONSTANTS, results.constant_enable)),
                     results.constant_data.eq(c_read.data)]
        read_word = Signal(constant_width)
        m.d.comb += read_word.eq(Array([Array(p.data for p in a_reads)[bank], Array(p.data for p in w_reads)[bank],
                                        c_read.data, 0])[space[:2]])

        # The write ports: ResultPath's while a product runs, else WRITE's. Both requests come
        # from registers (the result path's output; WRITE's completed word, its address and
        # whether it is complete), so the frame buffer's read and the result path's arithmetic
        # each have a cycle to themselves before the fan-out to every bank.
        writing = Signal()            # WRITE's word is complete this cycle
        m.d.comb += [assembled.eq(word), assembled.word_select(byte_in_word, 8).eq(rx.payload_data)]
        write_address = Signal(aw)
        stored, stored_word, stored_address = Signal(), Signal(constant_width), Signal(aw)  # WRITE's, registered
        m.d.sync += [stored.eq(writing), stored_word.eq(assembled), stored_address.eq(write_address)]
        result, result_valid = Signal.like(results.o.payload), Signal()  # the result path's output, registered
        m.d.comb += results.o.ready.eq(1)
        m.d.sync += [result.eq(results.o.payload), result_valid.eq(results.o.valid)]
        for r, port in enumerate(a_writes):
            m.d.comb += [port.addr.eq(Mux(stored, stored_address, result.address)),
                         port.data.eq(Mux(stored, stored_word[:16], result.value)),
                         port.en.eq(Mux(stored, (space == Space.ACTIVATIONS) & (bank == r),
                                        result_valid & ~result.weights & (result.bank == r)))]
        for c, port in enumerate(w_writes):
            m.d.comb += [port.addr.eq(Mux(stored, stored_address, result.address)),
                         port.data.eq(Mux(stored, stored_word[:8], result.value[:8])),
                         port.en.eq(Mux(stored, (space == Space.WEIGHTS) & (bank == c),
                                        result_valid & result.weights & (result.bank == c)))]
        m.d.comb += [c_write.addr.eq(stored_address), c_write.data.eq(stored_word),
                     c_write.en.eq(stored & (space == Space.CONSTANTS)),
                     results.gelu_load.payload.address.eq(stored_address),
                     results.gelu_load.payload.value.eq(stored_word[:18]),
                     results.gelu_load.valid.eq(stored & (space == Space.GELU))]

        record_bytes = {Opcode.INFO: 0, Opcode.COUNTERS: 0, Opcode.RESET_COUNTERS: 0,
                        Opcode.WRITE: record_size(ACCESS), Opcode.READ: record_size(READ),
                        Opcode.MATMUL: record_size(MATMUL)}
        known = Signal()
        record_length = Signal(16)
        m.d.comb += known.eq(0)
        with m.Switch(opcode):
            for code, size in record_bytes.items():
                with m.Case(code):
                    m.d.comb += [known.eq(1), record_length.eq(size)]

        # MATMUL's checks: the rows (or columns) left to step over, and the end of each region
        transposed = matmul.out_transposed != 0
        out_banks = Mux(matmul.out_space == Space.WEIGHTS, cols, rows)
        a_end, w_end, out_end = Signal(34), Signal(34), Signal(34)
        a_left, w_left, out_left = Signal(14), Signal(14), Signal(14)

        info = Array(Const(b, 8) for b in self.info)
        payload_byte = Signal(8)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(rx.frame.valid):
                    frame = rx.frame.payload
                    m.d.sync += [opcode.eq(frame.opcode), sequence.eq(frame.sequence), length.eq(frame.length),
                                 byte_index.eq(0), fetched.eq(0), applied.eq(0), record.eq(0)]
                    with m.If(frame.error != 0):
                        m.d.sync += [answer_opcode.eq(ERROR), answer_length.eq(1), error_code.eq(frame.error),
                                     sent.eq(0)]
                        m.next = "ANSWER_HEADER"
                    with m.Else():
                        m.next = "CHECK"

            with m.State("CHECK"):
                is_retry = (opcode == previous_opcode) & (sequence == previous_sequence) & previous_applied
                with m.If(is_retry):
                    m.d.sync += applied.eq(1)
                    answer(m, payload_length=0)
                with m.Elif(~known):
                    answer(m, Error.UNKNOWN_OPCODE)
                with m.Elif((opcode == Opcode.WRITE) & (length < record_length)):
                    answer(m, Error.BAD_ARGUMENT)
                with m.Elif((opcode != Opcode.WRITE) & (length != record_length)):
                    answer(m, Error.BAD_ARGUMENT)
                with m.Else():
                    m.next = "LOAD_RECORD"

            with m.State("LOAD_RECORD"):  # the record's bytes into ``record``, one every two cycles
                with m.If(byte_index == record_length):
                    m.next = "DISPATCH"
                with m.Elif(~fetched):
                    m.d.sync += fetched.eq(1)
                with m.Else():
                    m.d.sync += [record.word_select(byte_index[:6], 8).eq(rx.payload_data),
                                 byte_index.eq(byte_index + 1), fetched.eq(0)]

            with m.State("DISPATCH"):
                with m.Switch(opcode):
                    with m.Case(Opcode.INFO):
                        answer(m, payload_length=len(self.info))
                    with m.Case(Opcode.COUNTERS):
                        m.d.sync += counters.eq(Cat(cycles, matmul_cycles, macs, commands, errors))
                        answer(m, payload_length=record_size(COUNTERS))
                    with m.Case(Opcode.RESET_COUNTERS):
                        m.d.sync += [cycles.eq(0), matmul_cycles.eq(0), macs.eq(0), commands.eq(0),
                                     errors.eq(0), applied.eq(1)]
                        answer(m, payload_length=0)
                    with m.Case(Opcode.WRITE):
                        m.d.sync += [remaining.eq(length - record_size(ACCESS)), word_count.eq(0)]
                        m.next = "COUNT_WORDS"
                    with m.Case(Opcode.READ):
                        m.d.sync += [remaining.eq(0), word_count.eq(access.words)]
                        m.next = "CHECK_ACCESS"
                    with m.Case(Opcode.MATMUL):
                        m.next = "CHECK_MATMUL"

            with m.State("COUNT_WORDS"):  # how many words WRITE carries, by repeated subtraction
                with m.If(remaining >= word_bytes):
                    m.d.sync += [remaining.eq(remaining - word_bytes), word_count.eq(word_count + 1)]
                with m.Else():
                    m.next = "CHECK_ACCESS"

            # Each check registers its verdict a cycle before acting on it: the comparisons and
            # the state machine's next state are then not one combinational path.
            with m.State("CHECK_ACCESS"):
                readable = (opcode == Opcode.WRITE) | (space != Space.GELU)
                fits = byte_count <= self.max_payload
                m.d.sync += refused.eq((space > Space.GELU) | (bank >= banks) | (remaining != 0) | ~readable
                                       | ~fits | (address + word_count > depth))
                m.next = "ACCESS_VERDICT"

            with m.State("ACCESS_VERDICT"):
                with m.If(refused):
                    answer(m, Error.BAD_ARGUMENT)
                with m.Elif(opcode == Opcode.WRITE):
                    m.d.sync += [write_address.eq(address), byte_in_word.eq(0), fetched.eq(0)]
                    m.next = "WRITE"
                with m.Else():
                    m.d.sync += read_address.eq(address)
                    answer(m, payload_length=byte_count[:16])

            with m.State("WRITE"):  # payload bytes into words, one a cycle, each word written as it completes
                take = fetched & (byte_index != length)  # rx.payload_data holds the byte at byte_index
                m.d.comb += [rx.payload_addr.eq(Mux(take, byte_index + 1, byte_index)),
                             writing.eq(take & (byte_in_word + 1 == word_bytes))]
                with m.If(byte_index == length):
                    m.d.sync += applied.eq(1)
                    answer(m, payload_length=0)
                with m.Elif(~fetched):
                    m.d.sync += fetched.eq(1)
                with m.Else():
                    m.d.sync += byte_index.eq(byte_index + 1)
                    with m.If(writing):
                        m.d.sync += [write_address.eq(write_address + 1), byte_in_word.eq(0)]
                    with m.Else():
                        m.d.sync += [word.word_select(byte_in_word, 8).eq(rx.payload_data),
                                     byte_in_word.eq(byte_in_word + 1)]

            with m.State("CHECK_MATMUL"):  # the fields; then CHECK_RANGES, the addresses
                size_ok = ((matmul.m >= 1) & (matmul.m < 4096) & (matmul.k >= 1) & (matmul.k < 4096)
                           & (matmul.n >= 1) & (matmul.n < 4096))
                softmax_ok = (matmul.m == 1) & (matmul.n <= self.softmax_length)
                m.d.sync += refused.eq(~size_ok | (matmul.mode > Mode.SOFTMAX)
                                       | ((matmul.mode == Mode.SOFTMAX) & ~softmax_ok)
                                       | (matmul.out_space > Space.WEIGHTS)
                                       | (transposed & (matmul.out_space != Space.WEIGHTS))
                                       | (~transposed & (matmul.out_bank0 >= out_banks))
                                       | ((matmul.mode == Mode.GELU) & (matmul.gelu_table >= self.gelu_tables))
                                       | ((matmul.mode != Mode.SOFTMAX)
                                          & (matmul.constants + matmul.n > self.depths[Space.CONSTANTS])))
                m.next = "MATMUL_VERDICT"

            with m.State("MATMUL_VERDICT"):
                with m.If(refused):
                    answer(m, Error.BAD_ARGUMENT)
                with m.Else():
                    m.d.sync += [
                        a_end.eq(matmul.a_base + matmul.k), a_left.eq(matmul.m),
                        w_end.eq(matmul.w_base + matmul.k), w_left.eq(matmul.n),
                        out_end.eq(matmul.out_address0 + Mux(transposed, matmul.out_offset + matmul.m, matmul.n)),
                        out_left.eq(Mux(transposed, matmul.n,
                                        Mux(matmul.out_banked != 0, matmul.out_bank0 + matmul.m, matmul.m))),
                    ]
                    m.next = "CHECK_RANGES"

            # The end (last address + 1) of A, W and the results in their banks, one stride a cycle:
            # a_end = a_base + k + ((m - 1) // rows) * a_stride, and likewise (host/protocol.py's
            # layouts). Strides only add, so an end past its bank ends the check at once (and the
            # ends stay below 2**33).
            out_step = Mux(transposed, cols, Mux(matmul.out_banked != 0, out_banks, 1))
            with m.State("CHECK_RANGES"):
                out_depth = Mux(matmul.out_space == Space.WEIGHTS, self.depths[Space.WEIGHTS],
                                self.depths[Space.ACTIVATIONS])
                m.d.sync += [refused.eq((a_end > self.depths[Space.ACTIVATIONS]) | (w_end > self.depths[Space.WEIGHTS])
                                        | (out_end > out_depth)),
                             ranges_done.eq((a_left <= rows) & (w_left <= cols) & (out_left <= out_step))]
                m.next = "RANGES_VERDICT"

            with m.State("RANGES_VERDICT"):
                m.next = "CHECK_RANGES"
                with m.If(refused):
                    answer(m, Error.BAD_ARGUMENT)
                with m.Elif(ranges_done):
                    m.d.sync += [multiplicand.eq(matmul.m), multiplier.eq(matmul.k), product.eq(0),
                                 second_factor.eq(0)]
                    m.next = "COUNT_MACS"
                with m.Else():
                    with m.If(a_left > rows):
                        m.d.sync += [a_left.eq(a_left - rows), a_end.eq(a_end + matmul.a_stride)]
                    with m.If(w_left > cols):
                        m.d.sync += [w_left.eq(w_left - cols), w_end.eq(w_end + matmul.w_stride)]
                    with m.If(out_left > out_step):
                        m.d.sync += [out_left.eq(out_left - out_step), out_end.eq(out_end + matmul.out_stride)]

            # macs += m * k * n, shifting and adding a bit of k, then of n, a cycle (at most 26
            # cycles): a combinational product of three 12-bit fields would limit the clock
            with m.State("COUNT_MACS"):
                with m.If(multiplier != 0):
                    with m.If(multiplier[0]):
                        m.d.sync += product.eq(product + multiplicand)
                    m.d.sync += [multiplicand.eq(multiplicand << 1), multiplier.eq(multiplier >> 1)]
                with m.Elif(~second_factor):
                    m.d.sync += [multiplicand.eq(product), multiplier.eq(matmul.n), product.eq(0),
                                 second_factor.eq(1)]
                with m.Else():
                    m.d.sync += macs.eq(macs + product)
                    m.next = "MATMUL"

            with m.State("MATMUL"):
                command = sequencer.command.payload
                m.d.comb += [sequencer.command.valid.eq(1),
                             command.m.eq(matmul.m), command.k.eq(matmul.k), command.n.eq(matmul.n),
                             command.a_base.eq(matmul.a_base), command.a_stride.eq(matmul.a_stride),
                             command.w_base.eq(matmul.w_base), command.w_stride.eq(matmul.w_stride)]
                m.d.sync += matmul_cycles.eq(matmul_cycles + 1)
                with m.If(sequencer.command.ready):
                    m.next = "MATMUL_RESULTS"

            with m.State("MATMUL_RESULTS"):
                m.d.sync += matmul_cycles.eq(matmul_cycles + 1)
                with m.If(result_valid & result.last):
                    m.next = "MATMUL_DONE"

            with m.State("MATMUL_DONE"):  # a cycle between the result path and the answer, for timing
                m.d.sync += applied.eq(1)
                answer(m, payload_length=0)

            with m.State("ANSWER_HEADER"):
                m.d.comb += [tx.frame.valid.eq(1), tx.frame.payload.opcode.eq(answer_opcode),
                             tx.frame.payload.sequence.eq(sequence), tx.frame.payload.length.eq(answer_length)]
                with m.If(tx.frame.ready):
                    m.d.sync += [fetched.eq(0), byte_in_word.eq(0)]
                    m.next = "ANSWER_PAYLOAD"

            with m.State("ANSWER_PAYLOAD"):
                with m.If(sent == answer_length):
                    m.next = "DONE"
                with m.Elif(answer_opcode == (Opcode.READ | ANSWER)):
                    m.next = "READ_FETCH"
                with m.Else():
                    with m.If(answer_opcode == ERROR):
                        m.d.comb += payload_byte.eq(error_code)
                    with m.Elif(answer_opcode == (Opcode.INFO | ANSWER)):
                        m.d.comb += payload_byte.eq(info[sent[:6]])
                    with m.Else():
                        m.d.comb += payload_byte.eq(counters.word_select(sent[:5], 8))
                    m.d.comb += [tx.payload.valid.eq(1), tx.payload.payload.eq(payload_byte)]
                    with m.If(tx.payload.ready):
                        m.d.sync += sent.eq(sent + 1)

            # READ's words: address the bank, take its data a cycle later, send the word's bytes
            with m.State("READ_FETCH"):
                m.d.comb += reading.eq(1)
                m.next = "READ_LATCH"

            with m.State("READ_LATCH"):
                m.d.sync += [word.eq(read_word), byte_in_word.eq(0), read_address.eq(read_address + 1)]
                m.next = "READ_SEND"

            with m.State("READ_SEND"):
                m.d.comb += [tx.payload.valid.eq(1), tx.payload.payload.eq(word.word_select(byte_in_word, 8))]
                with m.If(tx.payload.ready):
                    m.d.sync += [sent.eq(sent + 1), byte_in_word.eq(byte_in_word + 1)]
                    with m.If(byte_in_word + 1 == word_bytes):
                        m.next = "ANSWER_PAYLOAD"

            with m.State("DONE"):
                m.d.comb += rx.frame.ready.eq(1)
                with m.If(rx.frame.payload.error == 0):  # damaged frames leave the retry rule alone
                    m.d.sync += [previous_opcode.eq(opcode), previous_sequence.eq(sequence),
                                 previous_applied.eq(applied)]
                with m.If(answer_opcode != ERROR):
                    m.d.sync += commands.eq(commands + 1)
                with m.Else():
                    m.d.sync += errors.eq(errors + 1)
                m.next = "IDLE"
        return m
