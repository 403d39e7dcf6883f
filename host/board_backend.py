"""The board back ends: ``sim``, ``sim:HOST:PORT``, ``serial:PORT[@BAUD]`` and ``pcie:DEVICE``.

Each runs the same integer model graph as ``emu`` with :class:`~neofpga.host.board_ops.BoardOps` as its
device side, over a :class:`~neofpga.host.link.Link` on pyserial (a real port, or the simulated
board's TCP socket, ``socket://``) or on XDMA's character devices (:class:`~.xdma.XdmaTransport`:
a PCIe board's, or the simulated PCIe board's named pipes). ``sim`` starts a simulated board
(building it the first time) and stops it when the model is closed.
"""

import os
import stat
import sys
import tempfile

import numpy as np

from ..contract.design import board_design, boards_running, simulated_parameters
from ..contract.dram import BOARD_DRAMS
from ..contract.errors import UserError
from ..contract.gateware_version import gateware_version
from ..contract.numerics import NUMERICS_VERSION
from ..contract.pcie import xdma_paths
from ..contract.protocol import GENERATE, GENERATED, STREAMED, Opcode, Stop, pack_record, record_size, unpack_record
from .backends import parse_backend
from .board_ops import BoardOps
from .driver import AcceleratorDriver, PlanningDriver, check_info
from .dram_init import initialise_dram
from .dram_program import DramProgram, dram_plan
from .golden import IntegerGPTNeo
from .link import Link, LinkError, StreamBroken
from .streamed_program import StreamedProgram
from .token_program import TokenProgram
from .xdma import XdmaTransport

__all__ = ["BoardModel", "ProgramModel", "HostEndsModel", "check_board_gateware", "connect_board",
           "open_board_model"]


class BoardModel(IntegerGPTNeo):
    """The integer model graph on a board; :meth:`device_stats` reports device cycles and link traffic."""

    def __init__(self, model, board_ops, link, name, on_close=None):
        super().__init__(model, board_ops, name=name)
        self.link, self.on_close = link, on_close
        self.driver = board_ops.driver
        self.link_at_start = (link.commands, link.bytes_sent, link.bytes_received)

    def device_stats(self):
        """Device cycles (all, in products, and where the device counts them in each vector op, in
        programs and in COPY), MACs, DRAM words read and written (where it has DRAM), link bytes
        since the weights were uploaded; over PCIe, the DMA transfers and bytes so far; where the
        host runs the model's ends, the seconds it spent on them."""
        link = {"link_commands": self.link.commands - self.link_at_start[0],
                "link_bytes_sent": self.link.bytes_sent - self.link_at_start[1],
                "link_bytes_received": self.link.bytes_received - self.link_at_start[2],
                "link_resends": self.link.resends}
        counters = self.driver.counters()
        vector = {f"device_{name}": counters[name] for name in ("embed_cycles", "norm_cycles", "sample_cycles",
                                                                "program_cycles", "copy_cycles", "dram_reads",
                                                                "dram_writes") if name in counters}
        return {"device_cycles": counters["cycles"], "device_matmul_cycles": counters["matmul_cycles"],
                "device_macs": counters["macs"], **vector, **link, **self._dma_stats(),
                **({"host_seconds": self.ops.host_seconds} if hasattr(self.ops, "host_seconds") else {})}

    def _dma_stats(self):
        """Over PCIe, the DMA transfers and bytes each way so far (the weight stream's too); else nothing."""
        transport = self.link.transport
        if not hasattr(transport, "weight_channel"):
            return {}
        weights = transport.weights
        stream = (weights.transfers, weights.bytes) if weights is not None else (0, 0)
        return {"dma_h2c_transfers": transport.transfers_sent + stream[0],
                "dma_h2c_bytes": transport.bytes_sent + stream[1],
                "dma_c2h_transfers": transport.transfers_received, "dma_c2h_bytes": transport.bytes_received,
                "dma_weight_transfers": stream[0], "dma_weight_bytes": stream[1]}

    def close(self):
        """Close the link, and stop the simulated board if this model started it."""
        self.link.close()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None


class ProgramModel(BoardModel):
    """The model on a board that runs its program (:class:`~neofpga.host.token_program.TokenProgram`).
    :meth:`generate_ids` lets the device run the whole loop (GENERATE); :meth:`forward` runs one
    TOKEN a token and reads the logits back, for what must see them (scoring, ``keep_logits``)."""

    GREEDY = dict(greedy=1)

    @property
    def context(self):
        """The tokens a sequence may hold: the program's context (on a device with DRAM, what its
        KV caches fit)."""
        return self.ops.context

    def forward(self, ids, last_only=False):
        """Logits [1, T, vocab] for token ids [1, T] that follow what the caches hold."""
        rows = []
        for last in self._tokens(ids):
            if last or not last_only:
                rows.append(self.ops.logits())
        return np.array(rows)[None].astype(np.float32) * self.logit_scale

    def generate_ids(self, prompt, count, eos, chooser, on_id):
        """GENERATE: the device runs ``prompt`` (ids) and chooses up to ``count`` ids as ``chooser``
        (an :class:`~neofpga.host.sampling.IntegerChooser`) would, each to ``on_id`` as it streams
        back; returns the :class:`~neofpga.contract.protocol.Stop`. A prompt longer than a frame
        holds goes in by TOKEN first; the first frame may take the link's timeout for each prompt
        token (the device runs them all before it streams). If the stream breaks (a lost or damaged frame, silence), the
        host stops the device and runs GENERATE again from the start with the ids it has and the
        state the last one carried, saying so on stderr; ``link.retries`` breaks in a row without
        a new id give up."""
        ids, start, produced, failures = [int(i) for i in prompt], self.length, 0, 0
        eos_field = dict(eos=eos, stop_at_eos=1) if eos is not None and 0 <= eos <= 0xFFFF else {}
        while True:
            got = []

            def on_frame(payload):
                streamed = unpack_record(STREAMED, payload)
                if streamed["index"] < len(got):  # a duplicated frame
                    return
                if streamed["index"] > len(got):
                    raise StreamBroken(f"GENERATE: id {produced + len(got)} was lost")
                got.append(streamed)
                on_id(streamed["id"])

            self.length = start
            fed = self._prefill_to_fit(ids)
            record = pack_record(GENERATE, position=self.length, count=min(count - produced, 0xFFFF), **eos_field,
                                 **chooser.settings)
            try:  # the prompt runs before the first frame: a command's time a token
                answer = unpack_record(GENERATED, self.link.stream(
                    Opcode.GENERATE, record + np.asarray(ids[fed:], "<u2").tobytes(), on_frame,
                    first_wait=self.link.timeout * (len(ids) - fed)))
                if answer["count"] != len(got):
                    raise StreamBroken(f"GENERATE: {answer['count'] - len(got)} of its last ids were lost")
            except StreamBroken as e:
                self.link.command(Opcode.INFO)  # stops the device if it still runs
                ids += [streamed["id"] for streamed in got]
                produced += len(got)
                failures = 0 if got else failures + 1
                if got:
                    chooser.state = got[-1]["state"]
                    stop = self._stopped(ids[-1], eos, start + len(ids), produced == count)
                    if stop is not None:  # only the answer was lost
                        self.length = start + len(ids) - 1
                        return stop
                if failures > self.link.retries:
                    raise LinkError(f"GENERATE failed {failures} times in a row: {e}") from None
                _log(f"{e}; running GENERATE again from the {len(ids)} tokens so far")
                self.link.resends += 1
                continue
            chooser.state = answer["state"]
            self.length = start + len(ids) + len(got) - 1
            return Stop(answer["stop"])

    def _prefill_to_fit(self, ids):
        """TOKEN for the first ids, as many as a GENERATE frame with the rest would not hold; how many."""
        room = (self.driver.device_info["max_payload"] - record_size(GENERATE)) // 2
        fed = max(len(ids) - room, 0)
        for _ in self._tokens([ids[:fed]]):
            pass
        return fed

    def _stopped(self, last, eos, tokens, counted):
        """Why a GENERATE whose stream holds ``tokens`` tokens, ``last`` the last id, stopped; None if it did not."""
        if last == eos:
            return Stop.EOS
        if tokens >= self.context:
            return Stop.CONTEXT
        return Stop.COUNT if counted else None

    def _tokens(self, ids):
        """TOKEN for each id in turn (choosing greedily: the choice is not used); yields whether it was the last."""
        ids = np.asarray(ids)
        if ids.shape[0] != 1:
            raise UserError(f"the board runs one sequence at a time, not a batch of {ids.shape[0]}")
        if self.length + ids.shape[1] > self.context:
            raise UserError(f"position {self.length + ids.shape[1] - 1} is past the device's context of "
                            f"{self.context} tokens")
        for i, token in enumerate(ids[0]):
            self.ops.token(token, self.length, self.GREEDY)
            self.length += 1
            yield i == ids.shape[1] - 1


SIMULATED_DRAM_TIMEOUT = 120.0
"""Seconds an answer may take from a simulated board with DRAM: a TinyStories-33M token is about 4
million cycles, some 10 s of simulation."""


class HostEndsModel(ProgramModel):
    """The model on a device that runs its blocks from DRAM while the host embeds each token and
    runs the head (:class:`~neofpga.host.dram_program.DramProgram`'s ``host_ends``): the host
    chooses every token, so the device runs no GENERATE loop."""

    generate_ids = None


def _log(text):
    print(text, file=sys.stderr, flush=True)


def check_board_gateware(info):
    """Refuse a real board whose gateware is not what this neofpga builds for its design."""
    names, parameters = boards_running(info)
    if not names:
        raise UserError(f"the board's design ({info['rows']}x{info['cols']} array, {info['weight_words']:,} weight "
                        f"words) is none that this neofpga builds: rebuild the bitstream (neofpga build) and flash it")
    version = gateware_version(parameters)
    if info["gateware_version"] != version:
        raise UserError(f"the board runs gateware {info['gateware_version']:016x}, this neofpga builds "
                        f"{version:016x} for {' and '.join(names)}: rebuild the bitstream (neofpga build "
                        f"--board {names[0] if len(names) == 1 else 'BOARD'}) and flash it")


def _low_latency(transport):
    """Ask the USB serial driver to pass short answers on at once (Linux's ftdi_sio then sets its
    latency timer to 1 ms, from 16): every command waits for an answer."""
    try:
        transport.set_low_latency_mode(True)
    except (AttributeError, NotImplementedError, OSError, ValueError):
        pass  # other systems, or a port that is not a tty: docs/BOARDS.md says how to set it by hand


def connect_board(backend, trace=None, uart=False, board=None, dram=False, dram_init=None, pcie=False, faults=None,
                  stream=False):
    """The :class:`AcceleratorDriver` of the device on board back end ``backend`` (a
    :class:`~neofpga.host.backends.Backend` or its text), its versions checked; returns (driver,
    close) where ``close`` closes the link and stops a simulated board this started.

    ``board``: with ``sim``, simulate that board's accelerator (``dram``: its DRAM design, the DRAM
    preloaded from the file ``dram_init`` if given); ``uart``: with ``sim``, the UART in the loop;
    ``pcie``: with ``sim``, the accelerator behind the simulated PCIe board's AXI4-Stream port and
    XDMA devices (a PCIe board's always is), ``faults`` injected there (:class:`~neofpga.sim.board_process.SimulatedBoard`'s);
    ``stream``: with ``sim`` and a PCIe ``board``, its streamed design.
    """
    backend = parse_backend(backend)
    if not backend.is_board:
        raise UserError(f"bad board device {str(backend)!r}: use sim, sim:HOST:PORT, serial:PORT[@BAUD] or "
                        f"pcie:DEVICE")
    if pcie and backend.kind != "sim":
        raise UserError("--pcie needs --device sim (a board's PCIe is --device pcie:/dev/xdma0)")
    started = pipes = None
    xdma = backend.port if backend.kind == "pcie" else None
    if backend.kind == "sim":
        from ..sim.simulated_board import start_simulated_board
        parameters = simulated_parameters(board, uart, dram, pcie, stream)
        timing = BOARD_DRAMS[board_design(board).dram] if dram else None
        if parameters.get("pcie_beat_bytes"):  # the simulated PCIe board's XDMA devices, in a folder of ours
            pipes = tempfile.TemporaryDirectory(prefix="neofpga-xdma-")
            xdma = f"{pipes.name}/xdma0"
        started = start_simulated_board(parameters, trace=trace, log=_log, dram=timing, dram_init=dram_init,
                                        xdma=xdma, faults=faults)
    simulated = backend.simulated or (xdma is not None and _is_pipe(xdma))
    try:
        transport = _open_transport(backend, started, xdma)
        link = Link(transport, timeout=(SIMULATED_DRAM_TIMEOUT if dram or stream else 10.0) if simulated else 1.0)

        def close():
            link.close()
            if started is not None:
                started.close()
            if pipes is not None:
                pipes.cleanup()

        try:
            driver = AcceleratorDriver(link)
            info = driver.device_info
            check_info(info, {"numerics_version": NUMERICS_VERSION})
            if backend.kind == "sim":
                check_info(info, {"gateware_version": gateware_version(parameters)})
            elif backend.kind == "sim-server" or (simulated and board is None and not boards_running(info)[0]):
                # a sim-server runs any board's design, or the simulated board's behind its link
                candidates = [simulated_parameters(name, pcie=xdma is not None) for name in (None, board)]
                if not any(info["gateware_version"] == gateware_version(p) for p in candidates):
                    raise UserError("the simulated board runs gateware this neofpga does not build: pass the "
                                    "--board it was started with, or restart neofpga sim-server from this neofpga")
            else:
                check_board_gateware(info)
            initialise_dram(driver, log=_log)
        except BaseException:
            link.close()
            raise
        return driver, close
    except BaseException:
        if started is not None:
            started.close()
        if pipes is not None:
            pipes.cleanup()
        raise


def _is_pipe(xdma):
    """Whether XDMA devices ``xdma`` are the simulated PCIe board's named pipes."""
    try:
        return stat.S_ISFIFO(os.stat(xdma_paths(xdma)[0]).st_mode)
    except OSError:
        return False


def _open_transport(backend, started, xdma):
    """The transport to the board: XDMA's devices at ``xdma``, else a serial port or the simulated
    board's TCP socket."""
    if xdma is not None:
        return XdmaTransport(xdma)
    import serial

    if backend.kind == "sim":
        url, baud = started.url, backend.baud
    elif backend.kind == "sim-server":
        url, baud = f"socket://{backend.host}:{backend.port}", backend.baud
    else:
        url, baud = backend.port, backend.baud
    try:
        transport = serial.serial_for_url(url, baudrate=baud, timeout=0.01)
    except (serial.SerialException, ValueError) as e:
        raise UserError(f"{backend}: cannot open {url} ({e})") from None
    if not backend.simulated:
        _low_latency(transport)
    return transport


def _fits_block_ram(image, board):
    """Whether the model's program fits board ``board``'s block-RAM design."""
    try:
        TokenProgram(image, PlanningDriver(simulated_parameters(board)))
        return True
    except UserError:
        return False


def _dram_image_file(image, board):
    """With ``sim`` and a board with a DRAM design: None if the model's program fits the board's
    block-RAM design, else a temporary file of its DRAM image for the DRAM design (as a board's
    memory would be loaded by neofpga before a run); a one-line error if it fits neither."""
    if _fits_block_ram(image, board):
        return None
    parameters = simulated_parameters(board, dram=True)
    plan = DramProgram(image, PlanningDriver(parameters), host_ends=dram_plan(image, parameters))
    file = tempfile.NamedTemporaryFile(prefix="neofpga-dram-", suffix=".bin")
    plan.dram_image().tofile(file.name)
    return file


def open_board_model(backend, image, residency="auto", trace=None, uart=False, board=None, per_op=False, pcie=False):
    """The model ``image`` on board back end ``backend``: its program (GENERATE, TOKEN) where the
    device runs programs and it fits, unless ``per_op`` or ``residency`` "stream"; else each op as
    its own command, with ``residency`` auto, resident or stream. On a device with DRAM, the program
    with everything in DRAM. ``sim`` with a ``board`` that has a DRAM design simulates that design
    when the model does not fit the board's block RAM, its DRAM preloaded with the model. ``uart``
    ``board`` and ``pcie``: as :func:`connect_board` takes them."""
    backend = parse_backend(backend)
    preload, stream = None, False
    if backend.kind == "sim" and board is not None and not per_op:
        if board_design(board).dram:
            preload = _dram_image_file(image, board)
        elif board_design(board).link == "pcie":
            stream = not _fits_block_ram(image, board)
    try:
        accelerator, close = connect_board(backend, trace, uart, board, dram=preload is not None,
                                           dram_init=preload and preload.name, pcie=pcie, stream=stream)
    finally:
        if preload is not None:
            preload.close()  # the board has read it
    try:
        if accelerator.device_info["stream_words"]:
            transport = accelerator.link.transport
            if not hasattr(transport, "weight_channel"):
                raise UserError("the device streams its weights over PCIe: connect it with --device pcie:DEVICE")
            _log("the model's blocks run on the device, their weights streamed over PCIe every token; "
                 "its embedding and head on the host")
            program = StreamedProgram(image, accelerator, transport.weight_channel(), log=_log)
            if program.context < image.config.max_position_embeddings:
                _log(f"the device's block RAM holds the KV caches of {program.context:,} tokens: that is the context")
            accelerator.reset_counters()
            return HostEndsModel(image, program, accelerator.link, str(backend), on_close=close)
        if accelerator.device_info["dram_words"]:
            host_ends = dram_plan(image, accelerator.device_info)
            if host_ends:
                _log("the model's blocks run from the device's DRAM, its embedding and head on the host")
            program = DramProgram(image, accelerator, preloaded=preload is not None, host_ends=host_ends, log=_log)
            if program.context < image.config.max_position_embeddings:
                _log(f"the DRAM holds the KV caches of {program.context:,} tokens: that is the context")
            accelerator.reset_counters()
            model = HostEndsModel if host_ends else ProgramModel
            return model(image, program, accelerator.link, str(backend), on_close=close)
        if accelerator.device_info["program_words"] and not per_op and residency in ("auto", "resident"):
            try:
                program = TokenProgram(image, accelerator)
                accelerator.reset_counters()
                return ProgramModel(image, program, accelerator.link, str(backend), on_close=close)
            except UserError as e:  # checked before anything is uploaded
                if isinstance(e, LinkError) or residency != "auto":
                    raise
                _log(f"the model's program does not fit the device ({e}): running it op by op")
                if board is not None and board_design(board).dram and not backend.simulated:
                    _log(f"(its weights fit {board}'s DRAM: build its DRAM bitstream, neofpga build --board "
                         f"{board} --dram, and flash it)")
        if residency == "auto":
            try:
                ops = BoardOps(image, accelerator, "resident")
            except UserError:
                ops = BoardOps(image, accelerator, "stream")
        else:
            ops = BoardOps(image, accelerator, residency)
        accelerator.reset_counters()  # the stats count from here
        return BoardModel(image, ops, accelerator.link, str(backend), on_close=close)
    except BaseException:
        close()
        raise
