"""Raw tensor bytes to numpy arrays, for the dtypes checkpoints use (bfloat16 included)."""

import numpy as np

from ...contract.errors import UserError

__all__ = ["array_from_bytes"]

# safetensors' dtype names; the torch pickle reader maps its storage types onto these.
# bfloat16 is read as its 16 raw bits and widened exactly to float32.
_NUMPY_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}


def array_from_bytes(data, dtype, shape, source):
    """Interpret little-endian ``data`` as a C-contiguous array of ``shape``."""
    if dtype not in _NUMPY_DTYPES:
        raise UserError(f"{source}: tensor dtype {dtype} is not supported")
    array = np.frombuffer(data, dtype=_NUMPY_DTYPES[dtype])
    expected = int(np.prod(shape, dtype=np.int64))
    if array.size != expected:
        raise UserError(f"{source}: tensor data holds {array.size} elements, its shape {list(shape)} needs "
                        f"{expected}")
    if dtype == "BF16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.reshape(shape)
