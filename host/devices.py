"""Device strings (``--device``) and model sources: every back end behind ``reset``/``forward``/``close``."""

import sys
from dataclasses import dataclass
from pathlib import Path

from .board import BOARD_DEVICES, is_board_device, open_board_model
from .errors import UserError
from .image import is_image, load_image
from .reference import FloatDevice, GPTNeo

__all__ = ["DEVICES", "DEFAULT_DEVICE", "DEFAULT_MODEL", "DEFAULT_IMAGE",
           "ModelSource", "load_source", "open_model", "parse_device_list"]

DEVICES = {
    "cpu": "float32 numpy reference",
    "hf": "transformers on torch (needs neofpga[hf])",
    "emu": "the integer golden model in numpy (bit-identical to the gateware)",
    **BOARD_DEVICES,
}
DEFAULT_DEVICE = "emu"

DEFAULT_MODEL = Path(__file__).parent / "default_model"
DEFAULT_IMAGE = DEFAULT_MODEL.with_name("default_model.neofpga")


@dataclass
class ModelSource:
    """What ``--model`` names: a float checkpoint, a quantized image, or (the default) both."""

    name: str
    checkpoint: object = None   # model.Checkpoint
    image: object = None        # image.QuantizedModel

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
        image = load_image(DEFAULT_IMAGE) if DEFAULT_IMAGE.exists() else None
        return ModelSource("the default model", load_checkpoint(DEFAULT_MODEL), image)
    if is_image(spec):
        return ModelSource(str(spec), image=load_image(spec))
    return ModelSource(str(spec), checkpoint=load_checkpoint(spec))


def open_model(device, source, residency="auto", trace=None, uart=False, board=None):
    """The model for ``device`` on ``source``; an unknown device is a ``UserError``.

    ``residency``, ``trace``, ``uart`` and ``board`` concern the board devices (see :mod:`neofpga.host.board`)."""
    if trace is not None and device != "sim":
        raise UserError("--trace needs --device sim (the board it starts records the waveform)")
    if uart and device != "sim":
        raise UserError("--uart needs --device sim (it builds the simulated board with the UART in the loop)")
    if board is not None and device.startswith("serial:"):
        raise UserError("--board is for simulated boards: a real one says what it is")
    if device == "cpu":
        weights = source.float_weights()
        return GPTNeo(source.config, weights, FloatDevice(source.config, weights), name="cpu")
    if device == "hf":
        if source.checkpoint is None:
            raise UserError(f"{source.name}: the hf back end runs Hugging Face folders, not quantized images")
        from .hf_backend import HFModel
        return HFModel(source.checkpoint)
    if device == "emu":
        from .golden import golden_model
        return golden_model(source.quantized())
    if is_board_device(device):
        return open_board_model(device, source.quantized(), residency, trace, uart, board)
    raise UserError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")


def parse_device_list(text, at_least=1):
    """``"cpu,hf"`` to a list of device strings, checked."""
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if len(devices) < at_least:
        raise UserError(f"--devices needs at least {at_least} comma-separated devices, got {text!r}")
    for device in devices:
        if device not in DEVICES and not is_board_device(device):
            raise UserError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    return devices
