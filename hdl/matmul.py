"""The matmul sequencer: any M x K x N product tiled over a :class:`SystolicArray`.

Operands live in banked memories, laid out so that one read of every bank gives one array step:

* activations ``A`` [M, K]: ``rows`` banks of 16-bit words; ``A[m][k]`` is in bank ``m % rows``
  at address ``a_base + (m // rows) * a_stride + k``;
* weights ``W`` [N, K] (the product is ``A @ W.T``): ``cols`` banks of 8-bit words; ``W[n][k]`` is
  in bank ``n % cols`` at address ``w_base + (n // cols) * w_stride + k``.

The sequencer walks the output tiles (column tiles outside, row tiles inside) and streams each
tile's K steps into the array. With ``w_stream``, a command whose ``w_dram`` is set takes its
weights from that stream instead, one word of ``cols`` bytes a step in the same order (the weight
fetch engine's, hdl/weight_fetch.py); results leave as one beat per output row: the row's ``cols`` sums
starting at column ``column``. Rows past M are dropped; columns past N carry whatever the banks
held and are the consumer's to ignore. A new command starts as soon as the previous one's last
step has entered the array, so consecutive products run back to back.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract.protocol import MATMUL_SIZE_BITS
from .systolic import SystolicArray

__all__ = ["MatmulCommand", "MatmulResult", "MatmulSequencer"]


def MatmulCommand(address_width, size_width=MATMUL_SIZE_BITS, w_stream=False):
    """One product: its sizes and where its operands are (and, with ``w_stream``, whether its
    weights come from the stream)."""
    return data.StructLayout({
        "m": unsigned(size_width), "k": unsigned(size_width), "n": unsigned(size_width),
        "a_base": unsigned(address_width), "a_stride": unsigned(address_width),
        "w_base": unsigned(address_width), "w_stride": unsigned(address_width),
        **({"w_dram": 1} if w_stream else {}),
    })


def MatmulResult(cols, size_width=MATMUL_SIZE_BITS):
    """One output row of a tile: its row index, first column, the sums, and the command's end."""
    return data.StructLayout({"row": unsigned(size_width), "column": unsigned(size_width),
                              "sums": data.ArrayLayout(signed(32), cols), "last": 1})


class MatmulSequencer(wiring.Component):
    """Runs :func:`MatmulCommand` products over a ``rows x cols`` systolic array.

    ``a_ports`` (``rows`` of them) and ``w_ports`` (``cols``) are synchronous read ports of the
    operand banks, owned by the caller; the sequencer drives their addresses and enables. With
    ``w_stream``, the component has a ``w_stream`` input (words of ``cols`` bytes, bank ``c`` the
    ``c``-th byte) that commands with ``w_dram`` take their weights from.
    """

    def __init__(self, rows, cols, a_ports, w_ports, address_width, size_width=MATMUL_SIZE_BITS, w_stream=False):
        assert len(a_ports) == rows and len(w_ports) == cols
        self.rows, self.cols = rows, cols
        self.a_ports, self.w_ports = a_ports, w_ports
        self.address_width, self.size_width, self.streamed = address_width, size_width, w_stream
        super().__init__({
            "command": In(stream.Signature(MatmulCommand(address_width, size_width, w_stream))),
            "o": Out(stream.Signature(MatmulResult(cols, size_width))),
            "busy": Out(1),
            **({"w_stream": In(stream.Signature(8 * cols))} if w_stream else {}),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols, sw = self.rows, self.cols, self.size_width
        m.submodules.array = array = SystolicArray(rows, cols)

        # The output side needs each running command's M and N; it learns them through this queue.
        m.submodules.sizes = sizes = fifo.SyncFIFOBuffered(width=2 * sw, depth=4)

        # -- step generator: (column tile, row tile, k) over the current command ----------------
        # Tile positions are kept as running bases (row_base = row tile * rows, ...): no multipliers.
        running = Signal()
        command = Signal.like(self.command.payload)
        k = Signal(sw)
        row_base, col_base = Signal(sw), Signal(sw)
        a_tile, w_tile = Signal(self.address_width), Signal(self.address_width)  # bank address of k = 0
        a_address, w_address = Signal(self.address_width), Signal(self.address_width)
        m.d.comb += self.command.ready.eq(~running & sizes.w_stream.ready)
        m.d.comb += [sizes.w_stream.valid.eq(self.command.valid & self.command.ready),
                     sizes.w_stream.payload.eq(Cat(self.command.payload.m, self.command.payload.n))]

        # stage 2 holds the step whose operands the banks are reading
        step_valid, step_first, step_last = Signal(), Signal(), Signal()
        move = Signal()  # the generator's step enters stage 2
        can_move = running & (~step_valid | array.i.ready)
        if self.streamed:  # a streamed step waits for its word, taken as the banks' words are read
            can_move &= ~command.w_dram | self.w_stream.valid
        m.d.comb += move.eq(can_move)
        if self.streamed:
            streamed_word, step_streamed = Signal(8 * cols), Signal()
            m.d.comb += self.w_stream.ready.eq(move & command.w_dram)
            with m.If(move):
                m.d.sync += [streamed_word.eq(self.w_stream.payload), step_streamed.eq(command.w_dram)]
        for port in (*self.a_ports, *self.w_ports):
            m.d.comb += port.en.eq(move)
        for port in self.a_ports:
            m.d.comb += port.addr.eq(a_address)
        for port in self.w_ports:
            m.d.comb += port.addr.eq(w_address)

        last_k, last_row_tile, last_col_tile = Signal(), Signal(), Signal()
        m.d.comb += [last_k.eq(k + 1 == command.k), last_row_tile.eq(row_base + rows >= command.m),
                     last_col_tile.eq(col_base + cols >= command.n)]

        with m.If(self.command.valid & self.command.ready):
            payload = self.command.payload
            m.d.sync += [running.eq(1), command.eq(payload), k.eq(0), row_base.eq(0), col_base.eq(0),
                         a_tile.eq(payload.a_base), w_tile.eq(payload.w_base),
                         a_address.eq(payload.a_base), w_address.eq(payload.w_base)]
        with m.If(move):
            m.d.sync += [step_valid.eq(1), step_first.eq(k == 0), step_last.eq(last_k)]
            with m.If(~last_k):
                m.d.sync += [k.eq(k + 1), a_address.eq(a_address + 1), w_address.eq(w_address + 1)]
            with m.Elif(~last_row_tile):
                m.d.sync += [k.eq(0), row_base.eq(row_base + rows),
                             a_tile.eq(a_tile + command.a_stride), a_address.eq(a_tile + command.a_stride),
                             w_address.eq(w_tile)]
            with m.Elif(~last_col_tile):
                m.d.sync += [k.eq(0), row_base.eq(0), col_base.eq(col_base + cols),
                             a_tile.eq(command.a_base), a_address.eq(command.a_base),
                             w_tile.eq(w_tile + command.w_stride), w_address.eq(w_tile + command.w_stride)]
            with m.Else():
                m.d.sync += running.eq(0)
        with m.Elif(array.i.ready):
            m.d.sync += step_valid.eq(0)

        m.d.comb += [array.i.valid.eq(step_valid), array.i.payload.first.eq(step_first),
                     array.i.payload.last.eq(step_last)]
        m.d.comb += [array.i.payload.a[r].eq(port.data) for r, port in enumerate(self.a_ports)]
        if self.streamed:
            m.d.comb += [array.i.payload.b[c].eq(Mux(step_streamed, streamed_word.word_select(c, 8), port.data))
                         for c, port in enumerate(self.w_ports)]
        else:
            m.d.comb += [array.i.payload.b[c].eq(port.data) for c, port in enumerate(self.w_ports)]

        # -- output side: name every array row beat, drop rows past M ---------------------------
        out_m, out_n = Signal(sw), Signal(sw)
        m.d.comb += [out_m.eq(sizes.r_stream.payload[:sw]), out_n.eq(sizes.r_stream.payload[sw:])]
        out_row_base, out_col_base, out_r = Signal(sw), Signal(sw), Signal(range(rows))
        # the beat's row (out_row_base + out_r) and whether it is kept (row < M), in registers
        # updated with them: the array's output handshake does not wait for an adder
        row, keep = Signal(sw), Signal(init=1)
        tile_end, last_row_tile_out, last_col_tile_out = Signal(), Signal(), Signal()
        m.d.comb += [tile_end.eq(out_r == rows - 1),
                     last_row_tile_out.eq(out_row_base + rows >= out_m),
                     last_col_tile_out.eq(out_col_base + cols >= out_n)]
        m.d.comb += [
            self.o.valid.eq(array.o.valid & keep),
            self.o.payload.row.eq(row),
            self.o.payload.column.eq(out_col_base),
            self.o.payload.sums.eq(array.o.payload),
            self.o.payload.last.eq((row + 1 == out_m) & last_col_tile_out),
            array.o.ready.eq(self.o.ready | ~keep),
            sizes.r_stream.ready.eq(array.o.valid & array.o.ready & tile_end & last_row_tile_out
                                    & last_col_tile_out),
        ]
        next_row = Signal(sw)
        with m.If(~tile_end):
            m.d.comb += next_row.eq(row + 1)
        with m.Elif(~last_row_tile_out):
            m.d.comb += next_row.eq(out_row_base + rows)
        with m.If(array.o.valid & array.o.ready):
            m.d.sync += [out_r.eq(out_r + 1), row.eq(next_row),
                         keep.eq((next_row == 0) | (next_row < out_m))]  # a product's row 0 is always kept
            with m.If(tile_end):
                m.d.sync += out_r.eq(0)
                with m.If(~last_row_tile_out):
                    m.d.sync += out_row_base.eq(out_row_base + rows)
                with m.Else():
                    m.d.sync += out_row_base.eq(0)
                    m.d.sync += out_col_base.eq(Mux(last_col_tile_out, 0, out_col_base + cols))

        m.d.comb += self.busy.eq(running | step_valid | sizes.r_stream.valid)
        return m
