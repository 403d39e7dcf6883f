"""The vector ops: EMBED, NORM and SAMPLE (contract/protocol.py) on the accelerator's banks.

:class:`VectorOps` checks an op, then runs it, bit for bit as the reference device does
(``_plan_embed``, ``_plan_norm`` and ``_plan_sample`` of host/accelerator_model.py):

* **NORM** reads the residual row (and the addend row, alternating word by word) into the
  LayerNorm unit (:class:`~.layer_norm.LayerNorm`), writing each saturated sum back as it goes;
  then it streams the NORM_COLUMN words into the unit and writes its outputs to the out row;
* **EMBED** reads the token's and the position's CONSTANT records, then their int8 rows, word by
  word alternately, through a requantizer (the LayerNorm unit's, shared: the two never run at
  once), and writes each pair's saturated sum;
* **SAMPLE** reads the row of codes into the sampler (:class:`~.sampler.Sampler`) and holds its
  CHOICE.

The banks are reached through one read port (a word of any bank a cycle, its data a cycle later,
registered here a cycle more: the path from a block RAM through the banks' read multiplexers
takes most of a cycle at the boards' clocks) and the result path's write stream, which is always
ready. A NORM whose addend row starts before
its residual row in the same bank and overlaps it is undefined (contract/protocol.py): the sums
are written back while the row is still read.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..contract.numerics import CONSTANT_BITS, NORM_EPSILON_MAX, RESIDUAL, SAMPLE_CANDIDATES, TOP_P_BITS
from ..contract.protocol import CHOICE, EMBED, MATMUL, NORM, SAMPLE, Opcode, Space, record_size
from .banks import CONSTANT_WIDTH
from .layer_norm import LayerNorm
from .requantizer import Requantizer
from .results import ResultWrite, record_layout
from .sampler import Sampler

__all__ = ["VECTOR_OPS", "VectorOps"]

VECTOR_OPS = {Opcode.EMBED: EMBED, Opcode.NORM: NORM, Opcode.SAMPLE: SAMPLE}
"""The ops :class:`VectorOps` runs, with their records."""

PRODUCT_BITS = 16  # EMBED's row numbers, (id // cols) and (position // cols), taken a bit a cycle


def _saturated_sum(a, b):
    """``a + b`` (int16) saturated to the residual's limits."""
    total = a + b
    low, high = RESIDUAL
    return Mux(total > high, high, Mux(total < low, low, total))


class VectorOps(wiring.Component):
    """Check, then run, one EMBED, NORM or SAMPLE a ``start``.

    Parameters
    ----------
    rows, cols : the activation and weight banks (``cols`` a power of two)
    activation_words, weight_words, constant_words : words in each bank of each space
    norm_length : the longest NORM row
    address_width : width of a bank address

    Attributes
    ----------
    opcode, record : In
        The op and its record (the low bytes of ``record``), held from ``start`` until ``done``
        (or a refusal).
    start : In(1)
        Check the op; if it is good, run it at once (unless ``check_only``).
    check_only : In(1)
        With ``start``: only check the op (a program's check pass).
    checked, refused : Out(1)
        ``checked`` is set for one cycle once the checks are done, with ``refused`` their verdict
        (the reference device's BAD_ARGUMENT); a refused op changes nothing.
    busy : Out(1)
        The op runs: the read port and the write stream are this unit's.
    done : Out(1)
        Set for one cycle once the op's last word is written (SAMPLE: its choice is held).
    choice : Out(record_layout(CHOICE))
        SAMPLE's id and the PRNG's state after it.
    reading, space, bank, address : Out
        Read the word of this space, bank and address in this cycle.
    word : In(CONSTANT_WIDTH)
        The word read in the cycle before, zero extended.
    write : Out(stream.Signature(ResultWrite(address_width)))
        The words to write (``ready`` is not waited for).
    """

    def __init__(self, *, rows, cols, activation_words, weight_words, constant_words, norm_length, address_width):
        self.rows, self.cols = rows, cols
        self.activation_words, self.weight_words, self.constant_words = activation_words, weight_words, constant_words
        self.norm_length, self.address_width = norm_length, address_width
        super().__init__({
            "opcode": In(8), "record": In(8 * record_size(MATMUL)),
            "start": In(1), "check_only": In(1), "checked": Out(1), "refused": Out(1), "busy": Out(1), "done": Out(1),
            "choice": Out(record_layout(CHOICE)),
            "reading": Out(1), "space": Out(8), "bank": Out(8), "address": Out(address_width),
            "word": In(CONSTANT_WIDTH),
            "write": Out(stream.Signature(ResultWrite(address_width))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.layer_norm = layer_norm = LayerNorm(self.norm_length, shared_requantizer=True)
        m.submodules.requantizer = requantizer = Requantizer()
        m.submodules.sampler = sampler = Sampler()
        m.submodules.columns = columns = fifo.SyncFIFO(width=48, depth=4)
        embed, norm, sample = (data.View(record_layout(fields), self.record[:8 * record_size(fields)])
                               for fields in (EMBED, NORM, SAMPLE))
        opcode = self.opcode
        column_shift = exact_log2(self.cols)
        check_only = Signal()

        # EMBED's row starts, token_base + (id // cols) * d and likewise, found by the check
        token_row, position_row = Signal(34), Signal(34)
        token_left, position_left = Signal(PRODUCT_BITS), Signal(PRODUCT_BITS)  # the row numbers' bits left
        addend_d = Signal(34)  # d, shifted left a bit a step

        # the reads: issued in one cycle, their word out of the banks in the next, registered: it
        # arrives two cycles after the read
        index = Signal(17)            # the row's next word to read
        second = Signal()             # of a pair of reads: the addend's, or the position's
        issued, issued_second = Signal(), Signal()
        read, read_second, read_index = Signal(), Signal(), Signal(17)  # the word out of the banks
        arrived, arrived_second = Signal(), Signal()
        arrived_index = Signal(17)
        word = Signal(CONSTANT_WIDTH)
        m.d.sync += [read.eq(issued), read_second.eq(issued_second), read_index.eq(index),
                     arrived.eq(read), arrived_second.eq(read_second), arrived_index.eq(read_index),
                     word.eq(self.word)]
        m.d.comb += self.reading.eq(issued)
        value16 = word[:16].as_signed()
        value8 = word[:8].as_signed()

        refused = self._refused(m, embed, norm, sample, token_row, position_row)

        first_part = Signal(signed(16))      # residual word, or EMBED's token part
        written = Signal(17)                 # EMBED's sums written, NORM's outputs written
        token_record, position_record = Signal(CONSTANT_WIDTH), Signal(CONSTANT_WIDTH)
        column_read, column_arrived = Signal(), Signal()  # a column word out of the banks, registered
        column_index = Signal(17)
        add = norm.add != 0
        write = self.write.payload

        # the LayerNorm unit's parameters and the sampler's, from the held record
        m.d.comb += [layer_norm.mean_multiplier.eq(norm.mean_multiplier), layer_norm.mean_shift.eq(norm.mean_shift),
                     layer_norm.epsilon.eq(norm.epsilon), layer_norm.multiplier.eq(norm.multiplier),
                     layer_norm.shift.eq(norm.shift), layer_norm.low.eq(norm.low), layer_norm.high.eq(norm.high),
                     sampler.greedy.eq(sample.greedy[0]), sampler.pre.eq(sample.pre),
                     sampler.constant.eq(sample.constant),
                     sampler.shift.eq(sample.shift), sampler.candidates.eq(sample.k), sampler.top_p.eq(sample.top_p),
                     sampler.state.eq(sample.state)]
        # NORM's columns: read ahead into a FIFO, which the unit takes from
        m.d.sync += [column_read.eq(0), column_arrived.eq(column_read)]
        m.d.comb += [columns.w_en.eq(column_arrived), columns.w_data.eq(word[:48]),
                     layer_norm.columns.valid.eq(columns.r_rdy), columns.r_en.eq(layer_norm.columns.ready),
                     layer_norm.columns.payload.bias.eq(columns.r_data[:32]),
                     layer_norm.columns.payload.gain.eq(columns.r_data[32:48])]
        m.d.comb += [requantizer.o.ready.eq(1), layer_norm.o.ready.eq(1), write.weights.eq(0)]
        with m.If(opcode == Opcode.NORM):  # the requantizer is the LayerNorm unit's, else EMBED's
            wiring.connect(m, layer_norm.requantize, requantizer.i)
            wiring.connect(m, requantizer.o, layer_norm.requantized)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [token_row.eq(embed.token_base), position_row.eq(embed.position_base),
                                 token_left.eq(embed.id >> column_shift),
                                 position_left.eq(embed.position >> column_shift),
                                 addend_d.eq(embed.d), check_only.eq(self.check_only)]
                    m.next = "CHECK"
                    with m.If(opcode == Opcode.EMBED):
                        m.next = "ROWS"
            with m.State("ROWS"):  # EMBED's row starts by shift and add (no multiplier), a bit a cycle
                token_rest, position_rest = token_left >> 1, position_left >> 1
                m.d.sync += [token_row.eq(token_row + Mux(token_left[0], addend_d, 0)),
                             position_row.eq(position_row + Mux(position_left[0], addend_d, 0)),
                             token_left.eq(token_rest), position_left.eq(position_rest), addend_d.eq(addend_d << 1)]
                with m.If(~(token_rest | position_rest).any()):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += self.refused.eq(refused)
                m.next = "VERDICT"
            with m.State("VERDICT"):
                m.d.comb += self.checked.eq(1)
                m.d.sync += [index.eq(0), second.eq(0), written.eq(0), column_index.eq(0)]
                with m.If(self.refused | check_only):
                    m.next = "IDLE"
                with m.Elif(opcode == Opcode.EMBED):
                    m.next = "EMBED_RECORDS"
                with m.Elif(opcode == Opcode.NORM):
                    m.next = "NORM_IN"
                with m.Else():
                    m.next = "SAMPLE_IN"

            # -- NORM ------------------------------------------------------------------------
            with m.State("NORM_IN"):  # residual (and addend) words in, sums written back
                m.d.comb += self.busy.eq(1)
                with m.If(index != norm.d):
                    m.d.comb += [issued.eq(1), issued_second.eq(second), self.space.eq(Space.ACTIVATIONS),
                                 self.bank.eq(Mux(second, norm.addend_bank, norm.residual_bank)),
                                 self.address.eq(Mux(second, norm.addend_address, norm.residual_address) + index)]
                    with m.If(add & ~second):
                        m.d.sync += second.eq(1)
                    with m.Else():
                        m.d.sync += [second.eq(0), index.eq(index + 1)]
                last = arrived_index == norm.d - 1
                with m.If(arrived & ~arrived_second & add):
                    m.d.sync += first_part.eq(value16)
                with m.If(arrived & ~arrived_second & ~add):
                    m.d.comb += [layer_norm.i.valid.eq(1), layer_norm.i.payload.x.eq(value16),
                                 layer_norm.i.payload.last.eq(last)]
                with m.If(arrived & arrived_second):
                    total = _saturated_sum(first_part, value16)
                    m.d.comb += [layer_norm.i.valid.eq(1), layer_norm.i.payload.x.eq(total),
                                 layer_norm.i.payload.last.eq(last),
                                 self.write.valid.eq(1), write.bank.eq(norm.residual_bank),
                                 write.address.eq(norm.residual_address + arrived_index), write.value.eq(total)]
                with m.If(arrived & last & (arrived_second | ~add)):
                    m.next = "NORM_OUT"
            with m.State("NORM_OUT"):  # the columns in, the normalised row out
                m.d.comb += self.busy.eq(1)
                in_flight = columns.level + column_read + column_arrived
                with m.If((column_index != norm.d) & (in_flight < columns.depth)):
                    m.d.comb += [issued.eq(1), self.space.eq(Space.CONSTANTS),
                                 self.address.eq(norm.columns + column_index)]
                    m.d.sync += [column_read.eq(1), column_index.eq(column_index + 1)]
                with m.If(layer_norm.o.valid):
                    m.d.comb += [self.write.valid.eq(1), write.bank.eq(norm.out_bank),
                                 write.address.eq(norm.out_address + written), write.value.eq(layer_norm.o.payload.y)]
                    m.d.sync += written.eq(written + 1)
                    with m.If(layer_norm.o.payload.last):
                        m.next = "DONE"

            # -- EMBED -----------------------------------------------------------------------
            with m.State("EMBED_RECORDS"):  # the two CONSTANT records, read in index's cycles 0 and 1
                m.d.comb += [self.busy.eq(1), self.space.eq(Space.CONSTANTS),
                             self.address.eq(Mux(index[0], embed.position_constants + embed.position,
                                                 embed.token_constants + embed.id))]
                m.d.comb += issued.eq(index < 2)
                m.d.sync += index.eq(index + 1)
                with m.If(index == 2):
                    m.d.sync += token_record.eq(word)
                with m.If(index == 3):
                    m.d.sync += [position_record.eq(word), index.eq(0)]
                    m.next = "EMBED_IN"
            with m.State("EMBED_IN"):  # the two rows' words in turn through the requantizer
                m.d.comb += self.busy.eq(1)
                with m.If(index != embed.d):
                    m.d.comb += [issued.eq(1), issued_second.eq(second), self.space.eq(Space.WEIGHTS),
                                 self.bank.eq(Mux(second, embed.position, embed.id)[:column_shift]),
                                 self.address.eq(Mux(second, position_row, token_row) + index)]
                    m.d.sync += second.eq(~second)
                    with m.If(second):
                        m.d.sync += index.eq(index + 1)
                record = Mux(arrived_second, position_record, token_record)
                m.d.comb += [requantizer.i.valid.eq(arrived), requantizer.i.payload.acc.eq(value8),
                             requantizer.i.payload.bias.eq(record[:32]),
                             requantizer.i.payload.multiplier.eq(record[32:48]),
                             requantizer.i.payload.shift.eq(record[48:56]),
                             requantizer.i.payload.low.eq(RESIDUAL[0]), requantizer.i.payload.high.eq(RESIDUAL[1])]
                with m.If(requantizer.o.valid):
                    self._embed_result(m, requantizer, first_part, written, embed)
                with m.If(written == embed.d):
                    m.next = "DONE"

            # -- SAMPLE ----------------------------------------------------------------------
            with m.State("SAMPLE_IN"):  # the codes into the sampler, then its choice
                m.d.comb += self.busy.eq(1)
                with m.If(index != sample.n):
                    m.d.comb += [issued.eq(1), self.space.eq(Space.ACTIVATIONS), self.bank.eq(sample.bank),
                                 self.address.eq(sample.address + index)]
                    m.d.sync += index.eq(index + 1)
                m.d.comb += [sampler.i.valid.eq(arrived), sampler.i.payload.code.eq(value16),
                             sampler.i.payload.last.eq(arrived_index == sample.n - 1),
                             sampler.o.ready.eq(1)]
                with m.If(sampler.o.valid):
                    m.d.sync += [self.choice.id.eq(sampler.o.payload.id), self.choice.state.eq(sampler.o.payload.state)]
                    m.next = "DONE"

            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m

    def _embed_result(self, m, requantizer, first_part, written, embed):
        """The requantizer's results come in pairs (token part, position part): each pair's sum is written."""
        pending = Signal()  # the token part of a pair is held
        with m.If(~pending):
            m.d.sync += [first_part.eq(requantizer.o.payload), pending.eq(1)]
        with m.Else():
            write = self.write.payload
            m.d.comb += [self.write.valid.eq(1), write.bank.eq(embed.out_bank),
                         write.address.eq(embed.out_address + written),
                         write.value.eq(_saturated_sum(first_part, requantizer.o.payload))]
            m.d.sync += [pending.eq(0), written.eq(written + 1)]

    def _refused(self, m, embed, norm, sample, token_row, position_row):
        """Whether the reference device refuses the held op (EMBED's rows found by then)."""
        rows, activations = self.rows, self.activation_words

        def row_past_end(bank, address, length, banks, depth):
            return (bank >= banks) | (address + length > depth)

        embed_refused = ((embed.d == 0)
                         | (token_row + embed.d > self.weight_words) | (position_row + embed.d > self.weight_words)
                         | (embed.token_constants + embed.id >= self.constant_words)
                         | (embed.position_constants + embed.position >= self.constant_words)
                         | row_past_end(embed.out_bank, embed.out_address, embed.d, rows, activations))
        norm_refused = ((norm.d == 0) | (norm.d > self.norm_length) | (norm.epsilon > NORM_EPSILON_MAX)
                        | row_past_end(norm.residual_bank, norm.residual_address, norm.d, rows, activations)
                        | ((norm.add != 0) & row_past_end(norm.addend_bank, norm.addend_address, norm.d, rows,
                                                          activations))
                        | (norm.columns + norm.d > self.constant_words)
                        | row_past_end(norm.out_bank, norm.out_address, norm.d, rows, activations))
        settings_refused = ((sample.k == 0) | (sample.k > SAMPLE_CANDIDATES) | (sample.top_p == 0)
                            | (sample.top_p > 2 ** TOP_P_BITS) | (sample.pre > 16)
                            | (sample.constant >= 2 ** CONSTANT_BITS))
        sample_refused = ((sample.n == 0) | (sample.greedy > 1) | ((sample.greedy == 0) & settings_refused)
                          | row_past_end(sample.bank, sample.address, sample.n, rows, activations))
        refused = Signal()
        with m.Switch(self.opcode):
            with m.Case(Opcode.EMBED):
                m.d.comb += refused.eq(embed_refused)
            with m.Case(Opcode.NORM):
                m.d.comb += refused.eq(norm_refused)
            with m.Default():
                m.d.comb += refused.eq(sample_refused)
        return refused
