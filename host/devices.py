"""Device strings (``--device``) to models that all share the ``reset``/``forward``/``close`` interface."""

from .errors import UserError
from .reference import FloatDevice, GPTNeo

__all__ = ["DEVICES", "DEFAULT_DEVICE", "open_model", "parse_device_list"]

DEVICES = {
    "cpu": "float32 numpy reference",
    "hf": "transformers on torch (needs neofpga[hf])",
}
DEFAULT_DEVICE = "cpu"


def open_model(device, checkpoint):
    """The model for ``device`` on ``checkpoint``; an unknown device is a ``UserError``."""
    if device == "cpu":
        return GPTNeo(checkpoint, FloatDevice(checkpoint.config, checkpoint.weights), name="cpu")
    if device == "hf":
        from .hf_backend import HFModel
        return HFModel(checkpoint)
    raise UserError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")


def parse_device_list(text, at_least=1):
    """``"cpu,hf"`` to a list of device strings, checked."""
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if len(devices) < at_least:
        raise UserError(f"--devices needs at least {at_least} comma-separated devices, got {text!r}")
    for device in devices:
        if device not in DEVICES:
            raise UserError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    return devices
