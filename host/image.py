"""The quantized model image: one versioned, checksummed file with everything a device needs.

Layout (all integers little-endian)::

    b"NEOFPGA\\0"              8 bytes, magic
    format version            u32
    header length H           u32
    header                    H bytes of UTF-8 JSON: config, tokenizer, generation config,
                              numerics version, activation scales, and for every tensor its
                              dtype, shape, offset and length in the data section
    data                      the tensors' bytes, each 64-byte aligned
    SHA-256                   32 bytes over everything before it

Loading checks the magic, version, lengths and checksum before it trusts a byte, so a truncated,
corrupted or foreign file is a one-line error. Arrays round-trip bit for bit.
"""

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contract.errors import UserError
from ..contract.numerics import NUMERICS_VERSION
from .model.config import GPTNeoConfig
from .model.tokenizer import TextTokenizer

__all__ = ["MAGIC", "FORMAT_VERSION", "QuantizedModel", "save_image", "load_image", "is_image"]

MAGIC = b"NEOFPGA\0"
FORMAT_VERSION = 1
_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "float32")
_ALIGN = 64


@dataclass
class QuantizedModel:
    """A GPT-Neo model in the device's numeric formats (see docs/NUMERICS.md).

    ``tensors`` holds the integer weights, biases and requantizer constants and the host's float32
    parameters, by name; ``scales`` the float32 activation scales fixed by calibration.
    """

    config: GPTNeoConfig
    tokenizer: TextTokenizer
    tensors: dict
    scales: dict
    generation_config: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)  # largest |value| seen at each site, for reports
    numerics_version: int = NUMERICS_VERSION
    source: str = ""


def save_image(model, path):
    """Write ``model`` to ``path`` (the file is written whole, then renamed into place)."""
    entries, chunks, offset = {}, [], 0
    for name, array in sorted(model.tensors.items()):  # canonical order: equal models, equal bytes
        array = np.ascontiguousarray(array)
        if array.dtype.name not in _DTYPES:
            raise ValueError(f"tensor {name} has dtype {array.dtype}, not one of {_DTYPES}")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        pad = -offset % _ALIGN
        chunks.append(b"\0" * pad + data)
        offset += pad
        entries[name] = {"dtype": array.dtype.name, "shape": list(array.shape), "offset": offset,
                         "nbytes": len(data)}
        offset += len(data)
    header = json.dumps({
        "numerics_version": model.numerics_version,
        "config": model.config.to_dict(),
        "generation_config": model.generation_config,
        "tokenizer": model.tokenizer.to_str(),
        "scales": {name: float(np.float32(value)) for name, value in model.scales.items()},
        "calibration": model.calibration,
        "tensors": entries,
        "source": model.source,
    }, sort_keys=True).encode()
    body = MAGIC + struct.pack("<II", FORMAT_VERSION, len(header)) + header + b"".join(chunks)
    path = Path(path)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(body + hashlib.sha256(body).digest())
    temporary.replace(path)


def is_image(path):
    """True if ``path`` is a file that starts like a neofpga image."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def load_image(path):
    """Read an image written by :func:`save_image`; every defect is a one-line ``UserError``."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if not blob.startswith(MAGIC):
        raise UserError(f"{path}: not a neofpga model image (bad magic)")
    if len(blob) < len(MAGIC) + 8 + 32:
        raise UserError(f"{path}: truncated model image ({len(blob)} bytes)")
    version, header_length = struct.unpack_from("<II", blob, len(MAGIC))
    if version != FORMAT_VERSION:
        raise UserError(f"{path}: image format version {version}, this neofpga reads version {FORMAT_VERSION} "
                        f"(re-run neofpga quantize)")
    body, digest = blob[:-32], blob[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise UserError(f"{path}: checksum mismatch: the image is truncated or corrupted")
    start = len(MAGIC) + 8
    try:
        header = json.loads(body[start:start + header_length])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable image header ({e})") from None
    if header.get("numerics_version") != NUMERICS_VERSION:
        raise UserError(f"{path}: numerics version {header.get('numerics_version')}, this neofpga implements "
                        f"version {NUMERICS_VERSION} (re-run neofpga quantize)")
    data = memoryview(body)[start + header_length:]
    tensors = {}
    for name, entry in header["tensors"].items():
        if entry["dtype"] not in _DTYPES or entry["offset"] + entry["nbytes"] > len(data):
            raise UserError(f"{path}: tensor {name} lies outside the image")
        dtype = np.dtype(entry["dtype"]).newbyteorder("<")
        array = np.frombuffer(data[entry["offset"]:entry["offset"] + entry["nbytes"]], dtype=dtype)
        tensors[name] = array.reshape(entry["shape"]).astype(np.dtype(entry["dtype"]))
    return QuantizedModel(
        config=GPTNeoConfig.from_dict(header["config"], source=str(path)),
        tokenizer=TextTokenizer.from_str(header["tokenizer"]),
        tensors=tensors,
        scales={name: np.float32(value) for name, value in header["scales"].items()},
        generation_config=header["generation_config"],
        calibration=header.get("calibration", {}),
        numerics_version=header["numerics_version"],
        source=header.get("source", ""),
    )
