"""The design's parameters: the array, the memories of each board's accelerator, the link's rate.

An accelerator is described by one dict of parameters (:func:`accelerator_parameters`), the
keyword arguments of :class:`neofpga.hdl.accelerator.Accelerator`; INFO reports them back, so the
host can tell which design a board runs (:func:`boards_running`) without elaborating any gateware.
"""

from dataclasses import dataclass

from .dram import BOARD_DRAMS
from .dram_control import controller_code
from .errors import UserError

__all__ = ["ARRAY_ROWS", "ARRAY_COLS", "PROGRAM_ROWS", "DEFAULT_BAUD", "FRAME_TIMEOUT_SECONDS", "SIMULATED_BOARD",
           "RESIDENT_MEMORIES", "DRAM_MEMORIES", "STREAM_LOCAL_WORDS", "STREAMED_WORDS", "PCIE_BEAT_BYTES", "PCIE_MAX_PAYLOAD",
           "SIMULATED_UART_DIVISOR", "BoardDesign", "BOARD_DESIGNS", "board_design", "accelerator_parameters",
           "pcie_link", "simulated_parameters", "boards_running"]

ARRAY_ROWS, ARRAY_COLS = 9, 16
"""The simulated board's systolic array: 144 MACs a cycle, as many as 144 of an ECP5-85F's 156
MULT18X18D. The boards' arrays are their designs' (:data:`BOARD_DESIGNS`)."""

PROGRAM_ROWS = 2
"""The rows of a board's array where it runs the model's program. A program runs every token,
the prompt's too, as one row (M = 1): rows past the first idle, and a token takes as many cycles
on 2 rows as on 9. Two rows keep the default model's activations in banks of 1,024 words (one
DP16KD each) and leave 7 DP16KD, 112 MULT18X18D and most of a 9-row array's logic to the
program units, which need them to fit and route (docs/BOARDS.md)."""

DEFAULT_BAUD = 3_000_000
"""The boards' UART rate: the FT231X's fastest, and an exact divisor of their clocks."""

FRAME_TIMEOUT_SECONDS = 0.05
"""Silence inside a frame for this long makes it TRUNCATED (a board's ``timeout_cycles``)."""

SIMULATED_BOARD = dict(
    rows=ARRAY_ROWS, cols=ARRAY_COLS,
    activation_words=2 ** 17,     # 16-bit words a bank: 9 x 256 KiB
    weight_words=2 ** 22,         # bytes a bank: 16 x 4 MiB
    constant_words=2 ** 16,       # requantizer records
    gelu_tables=16, softmax_length=2048, max_payload=4096, timeout_cycles=2 ** 20, clock_hz=100_000_000,
    norm_length=1024, program_words=1024,
)
"""The design ``--device sim`` runs: a 9 x 16 array with memories (80 MB in all) for the default
model with its weights resident and TinyStories-33M's shape streamed, context 2048; the vector ops
and programs (the whole token on the device) for rows up to 1,024 and programs of 1,023 ops."""

SIMULATED_UART_DIVISOR = 4
"""Clock cycles a bit with the UART in the simulated loop (``uart_divisor``): the fastest the receiver takes."""

# The default model with its weights and program resident (docs/BOARDS.md, docs/PROGRAM.md): per
# weight bank 16,384 bytes of matrices (wpe's included) + 4,096 of global-layer KV caches
# (2 x 256 tokens) + 1,024 of local ring buffers (2 x 64 tokens) = 21,504 (the banks in pairs, 21
# DP16KD a pair); activation banks of 1,024 words (1 DP16KD); 5,312 CONSTANTS words (3,456
# requantizer records, 1,280 of the embedding's rows, 576 LayerNorm columns: 18 DP16KD); a GELU
# table per layer; a 256-key softmax; the vector ops for rows up to 256; 68 ops and the header in
# 80 PROGRAM words.
RESIDENT_MEMORIES = dict(activation_words=1024, weight_words=21504, constant_words=5312, gelu_tables=4,
                         softmax_length=256, max_payload=4096, norm_length=256, program_words=80)
# The default model streamed (--residency stream, each matrix sent before its product): per weight
# bank the KV caches (5,120 bytes) and the largest matrix (the head's 4,096) in 5 DP16KD; the head's
# 1,024 requantizer records; one GELU table. 4 x 16 MACs: the array and units in 72 MULT18X18D.
STREAMED_MEMORIES = dict(activation_words=1024, weight_words=10240, constant_words=1024, gelu_tables=1,
                         softmax_length=256, max_payload=4096)
# TinyStories-33M with everything in DRAM (host/dram_program.py), and any smaller model alike: one
# activation bank (programs run one row) for its row (8,192 words) and logits (50,257); in each
# weight bank EMBED's two rows (2 x 768); the records copied in for one op (a product's 4,080, the
# P x V's 768, a LayerNorm's 768, the embedding's 32); 4 GELU tables, a 2,048-key softmax, rows of
# 768, 256 program entries (TinyStories-33M's program has 230).
DRAM_MEMORIES = dict(activation_words=8192 + 50257, weight_words=2048, constant_words=6144, gelu_tables=4,
                     softmax_length=2048, max_payload=4096, norm_length=768, program_words=256)
# A PCIe board's design for a model whose weights do not fit it (neofpga's NiteFury streaming
# TinyStories-33M, host/streamed_program.py): the DRAM design's program and memories, its DRAM space
# 65,536 words (1 MiB) of block RAM for the KV caches and records and, above them, 2**23 words
# (128 MiB) that the host streams in the order the program reads them (hdl/streamed_memory.py).
STREAM_LOCAL_WORDS, STREAMED_WORDS = 2 ** 16, 2 ** 23
SMALL_ECP5 = ("even streamed, the default model's KV caches and largest matrix need 80 DP16KD with 16 weight "
              "banks (72 with 8), and this FPGA has {}")


@dataclass(frozen=True)
class BoardDesign:
    """The accelerator a board holds: its array, clock and memories; or why none fits its FPGA."""

    clock_hz: int
    rows: int = ARRAY_ROWS
    cols: int = ARRAY_COLS
    memories: dict = None
    does_not_fit: str = ""
    dram: str = ""  #: the family of BOARD_DRAMS whose DRAM the board has, for its DRAM design ("": none)
    link: str = "uart"  #: the host's link: "uart" (a byte stream) or "pcie" (XDMA's AXI4-Stream, PCIE_BEAT_BYTES a beat)


BOARD_DESIGNS = {
    "ulx3s-85f": BoardDesign(30_000_000, rows=PROGRAM_ROWS, memories=RESIDENT_MEMORIES, dram="ulx3s"),
    "ulx3s-45f": BoardDesign(30_000_000, rows=4, memories=STREAMED_MEMORIES),
    "ulx3s-25f": BoardDesign(100_000_000, does_not_fit=SMALL_ECP5.format(56)),
    "ulx3s-12f": BoardDesign(100_000_000, does_not_fit=SMALL_ECP5.format(32)),
    "ecpix5-85": BoardDesign(36_000_000, rows=PROGRAM_ROWS, memories=RESIDENT_MEMORIES, dram="ecpix5"),
    "nitefury": BoardDesign(100_000_000, rows=ARRAY_ROWS, memories=RESIDENT_MEMORIES, link="pcie"),
}
"""Each board's design, by the board's name (boards/catalog.py holds its platform, pins and tools).
The ECP5 boards' clocks are exactly what their PLLs make: 30 MHz divides into 3 Mbaud exactly. The
NiteFury's (Artix-7 XC7A200T, speed 2; PCIe Gen2 x4) is a target for Vivado's timing report: no
Vivado has built it here (docs/BOARDS.md); its 740 DSP48E1 and 365 RAMB36 take the 9 x 16 array
and the default model resident."""

PCIE_BEAT_BYTES = 8
"""Bytes of a beat of the PCIe boards' AXI4-Stream host port (XDMA's 64-bit AXI4-Stream at Gen2 x4)."""

PCIE_MAX_PAYLOAD = 65520
"""The longest payload of a PCIe design's frames: each DMA transfer costs tens of microseconds
(contract/pcie.py), so a WRITE carries as much as the frame's 16-bit length allows, and its frame
(header and CRC too) fills 8,192 beats of the frame buffer exactly."""


def board_design(name):
    """The design of the board called ``name``; a one-line error for an unknown board or one that
    nothing fits."""
    try:
        design = BOARD_DESIGNS[name]
    except KeyError:
        raise UserError(f"unknown board {name!r}: neofpga builds for {', '.join(BOARD_DESIGNS)}") from None
    if design.memories is None:
        raise UserError(f"{name}: the accelerator does not fit: {design.does_not_fit}")
    return design


def accelerator_parameters(design, rows=None, cols=None, clock_hz=None, dram=False, stream=False):
    """The accelerator parameters of board design ``design``, with another array or clock if given;
    with ``dram``, of its DRAM design (one row, :data:`DRAM_MEMORIES` and the board's DRAM); with
    ``stream``, of a PCIe board's streamed design (the DRAM design's, its DRAM block RAM and the
    host's weight stream); a PCIe board's with its link's (:func:`pcie_link`). Frames time out
    after :data:`FRAME_TIMEOUT_SECONDS` of silence."""
    clock_hz = clock_hz or design.clock_hz
    timing = dict(timeout_cycles=round(clock_hz * FRAME_TIMEOUT_SECONDS), clock_hz=clock_hz)
    if stream:
        parameters = dict(rows=rows or 1, cols=cols or design.cols, **DRAM_MEMORIES,
                          dram_words=STREAM_LOCAL_WORDS + STREAMED_WORDS, stream_words=STREAMED_WORDS, **timing)
    elif dram:
        parameters = dict(rows=rows or 1, cols=cols or design.cols, **DRAM_MEMORIES,
                          dram_words=BOARD_DRAMS[design.dram].words, **timing)
    else:
        parameters = dict(rows=rows or design.rows, cols=cols or design.cols, **design.memories, **timing)
    return {**parameters, **pcie_link()} if design.link == "pcie" else parameters


def pcie_link():
    """The accelerator parameters of a PCIe link: XDMA's beats, and frames of :data:`PCIE_MAX_PAYLOAD`."""
    return {"pcie_beat_bytes": PCIE_BEAT_BYTES, "max_payload": PCIE_MAX_PAYLOAD}


def simulated_parameters(board=None, uart=False, dram=False, pcie=False, stream=False):
    """The accelerator ``--device sim`` runs: the simulated board's, or that of the board named
    ``board`` (with ``dram``, its DRAM design); ``uart``: with the UART PHYs in the loop; ``pcie``:
    behind an AXI4-Stream port of ``pcie_beat_bytes`` a beat, as XDMA drives it (a PCIe board's
    design, the NiteFury's, is always); ``stream``: a PCIe board's streamed design."""
    if dram and (board is None or not board_design(board).dram):
        raise UserError(f"{board or 'the simulated board'} has no DRAM design")
    if stream and (board is None or board_design(board).link != "pcie"):
        raise UserError(f"{board or 'the simulated board'} has no streamed design: a PCIe board has (nitefury)")
    parameters = (dict(SIMULATED_BOARD) if board is None
                  else accelerator_parameters(board_design(board), dram=dram, stream=stream))
    pcie = pcie or (board is not None and board_design(board).link == "pcie")
    if uart and pcie:
        raise UserError("a simulated board has one link: the UART (--uart) or PCIe (pcie:, a PCIe board)")
    if pcie:
        return {**parameters, **pcie_link()}
    return {**parameters, "uart_divisor": SIMULATED_UART_DIVISOR} if uart else parameters


def boards_running(info):
    """The parameters of the design a board's INFO describes, and the boards whose design it is
    (with INFO's array and clock): (names, parameters), or ([], None)."""
    names, matched = [], None
    for name, design in BOARD_DESIGNS.items():
        stream = bool(info.get("stream_words"))
        if design.memories is None or (info.get("dram_words") and not (design.link == "pcie" if stream
                                                                       else design.dram)):
            continue
        parameters = accelerator_parameters(design, info["rows"], info["cols"], info["clock_hz"],
                                            dram=bool(info.get("dram_words")) and not stream, stream=stream)
        if info.get("dram_controller"):  # a board's DRAM bitstream: its LiteDRAM's registers too
            parameters["dram_controller"] = controller_code(design.dram)
        if all(parameters[key] == info[key] for key in parameters if key in info):
            names.append(name)
            matched = parameters  # boards whose parameters match INFO's have the same parameters
    return names, matched
