"""Back ends (what ``--device`` names) and model sources: every back end behind ``reset``/``forward``/``close``.

A back end is who computes the device ops (the attention blocks, MLP blocks and head): the float
reference, transformers, the golden model, or a device over the link (a board, or the simulated
board). :func:`parse_backend` reads a ``--device`` string once into a :class:`Backend`; everything
after it takes that.
"""

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..contract.design import DEFAULT_BAUD
from ..contract.errors import UserError
from .image import is_image, load_image
from .reference import FloatOps, GPTNeo

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "DEFAULT_MODEL", "DEFAULT_IMAGE", "Backend", "parse_backend",
           "parse_backends", "ModelSource", "load_source", "open_model"]

BACKENDS = {
    "cpu": "float32 numpy reference",
    "hf": "transformers on torch (needs neofpga[hf])",
    "emu": "the integer golden model in numpy (bit-identical to the gateware)",
    "sim": "the gateware on a simulated board (Verilator; built on first use)",
    "sim:HOST:PORT": "a simulated board already running (neofpga sim-server)",
    "serial:PORT[@BAUD]": f"a board on a serial port (default {DEFAULT_BAUD} baud)",
    "pcie:DEVICE": "a board over PCIe DMA, XDMA's /dev/xdma0 (its _h2c_0 and _c2h_0), or a simulated "
                   "one's (neofpga sim-server --xdma)",
}
DEFAULT_BACKEND = "emu"
_SIM_SERVER = re.compile(r"sim:(?P<host>[^:]+):(?P<port>\d+)$")
_SERIAL = re.compile(r"serial:(?P<port>[^@]+)(@(?P<baud>\d+))?$")
_PCIE = re.compile(r"pcie:(?P<device>.+)$")


@dataclass(frozen=True)
class Backend:
    """A parsed ``--device``: ``kind`` is cpu, hf, emu, sim (a simulated board this starts),
    sim-server (one already running at ``host``:``port``), serial (``port`` at ``baud``) or pcie
    (XDMA's devices, ``port`` their prefix)."""

    text: str
    kind: str
    host: str = None
    port: object = None
    baud: int = None

    @property
    def is_board(self):
        """Whether a device over the link computes the device ops."""
        return self.kind in ("sim", "sim-server", "serial", "pcie")

    @property
    def integer(self):
        """Whether the back end computes in the device's integers (``emu`` and the boards)."""
        return self.kind not in ("cpu", "hf")

    @property
    def simulated(self):
        """Whether the device is the simulated board."""
        return self.kind in ("sim", "sim-server")

    def __str__(self):
        return self.text


def parse_backend(text):
    """``--device`` text to a :class:`Backend`; a one-line error for a malformed or unknown one."""
    if isinstance(text, Backend):
        return text
    if text in ("cpu", "hf", "emu", "sim"):
        return Backend(text, text, baud=DEFAULT_BAUD if text == "sim" else None)
    if match := _SIM_SERVER.match(text):
        return Backend(text, "sim-server", host=match["host"], port=int(match["port"]), baud=DEFAULT_BAUD)
    if match := _SERIAL.match(text):
        return Backend(text, "serial", port=match["port"], baud=int(match["baud"] or DEFAULT_BAUD))
    if match := _PCIE.match(text):
        return Backend(text, "pcie", port=match["device"])
    if text.startswith(("sim:", "serial:", "pcie:")):
        raise UserError(f"bad board device {text!r}: use sim, sim:HOST:PORT, serial:PORT[@BAUD] or pcie:DEVICE")
    raise UserError(f"unknown device {text!r} (choose from {', '.join(BACKENDS)})")


def parse_backends(text, at_least=1):
    """``"cpu,hf"`` to a list of :class:`Backend`."""
    backends = [parse_backend(part.strip()) for part in text.split(",") if part.strip()]
    if len(backends) < at_least:
        raise UserError(f"--devices needs at least {at_least} comma-separated devices, got {text!r}")
    return backends


DEFAULT_MODEL = Path(__file__).parent / "default_model"
DEFAULT_IMAGE = DEFAULT_MODEL.with_name("default_model.neofpga")


@dataclass
class ModelSource:
    """What ``--model`` names: a float checkpoint, a quantized image, or (the default) both."""

    name: str
    checkpoint: object = None   # model.Checkpoint
    image: object = None        # image.QuantizedModel
    image_file: Path = None     # the image beside the checkpoint, read when first needed

    @property
    def config(self):
        return (self.checkpoint or self.image).config

    @property
    def tokenizer(self):
        return (self.checkpoint or self.image).tokenizer

    @property
    def generation_config(self):
        return (self.checkpoint or self.image).generation_config

    @property
    def eos_id(self):
        eos = self.generation_config.get("eos_token_id", self.config.eos_token_id)
        return eos[0] if isinstance(eos, list) else eos

    def quantized(self):
        """The quantized model: the image, or the checkpoint quantized now on the default calibration text."""
        if self.image is None and self.image_file is not None:
            self.image = load_image(self.image_file)
        if self.image is None:
            from .quantize import quantize_checkpoint
            from .training.corpus import calibration_text

            ids = self.tokenizer.encode(calibration_text())
            print(f"quantizing {self.name} (calibration: {len(ids)} tokens of story text)", file=sys.stderr)
            self.image = quantize_checkpoint(self.checkpoint, ids, source=self.name)
        return self.image

    def float_weights(self):
        """Float32 weights for the reference: the checkpoint's, or the image's dequantized."""
        if self.checkpoint is not None:
            return self.checkpoint.weights
        from .quantize import dequantized_weights
        return dequantized_weights(self.image)


def load_source(spec):
    """Load ``--model``: a checkpoint folder or hub id, an image file, or None for the shipped model."""
    from .model import load_checkpoint

    if spec is None:
        if not DEFAULT_MODEL.exists():
            raise UserError("no --model given and no default model is installed")
        image_file = DEFAULT_IMAGE if DEFAULT_IMAGE.exists() else None  # quantize rewrites it without reading it
        return ModelSource("the default model", load_checkpoint(DEFAULT_MODEL), image_file=image_file)
    if is_image(spec):
        return ModelSource(str(spec), image=load_image(spec))
    return ModelSource(str(spec), checkpoint=load_checkpoint(spec))


def open_model(backend, source, residency="auto", trace=None, uart=False, board=None, per_op=False, pcie=False):
    """The model on ``backend`` (a :class:`Backend` or its text) for ``source``.

    ``residency``, ``trace``, ``uart``, ``board``, ``per_op`` and ``pcie`` concern the board back
    ends (see :mod:`neofpga.host.board_backend`)."""
    backend = parse_backend(backend)
    if trace is not None and backend.kind != "sim":
        raise UserError("--trace needs --device sim (the board it starts records the waveform)")
    if uart and backend.kind != "sim":
        raise UserError("--uart needs --device sim (it builds the simulated board with the UART in the loop)")
    if pcie and backend.kind != "sim":
        raise UserError("--pcie needs --device sim (a board's PCIe is --device pcie:/dev/xdma0)")
    if board is not None and backend.kind in ("serial", "pcie"):
        raise UserError("--board is for simulated boards: a real one says what it is")
    if backend.kind == "cpu":
        weights = source.float_weights()
        return GPTNeo(source.config, weights, FloatOps(source.config, weights), name="cpu")
    if backend.kind == "hf":
        if source.checkpoint is None:
            raise UserError(f"{source.name}: the hf back end runs Hugging Face folders, not quantized images")
        from .hf_backend import HFModel
        return HFModel(source.checkpoint)
    if backend.kind == "emu":
        from .golden import golden_model
        return golden_model(source.quantized())
    from .board_backend import open_board_model
    return open_board_model(backend, source.quantized(), residency, trace, uart, board, per_op, pcie)
