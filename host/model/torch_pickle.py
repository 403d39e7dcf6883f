"""Read a ``pytorch_model.bin`` state dict without torch, refusing anything that is not a tensor.

``torch.load`` unpickles arbitrary objects, so a malicious checkpoint can run code. This reader
opens the zip archive torch writes (``<name>/data.pkl`` plus one ``<name>/data/<key>`` record per
storage) with an unpickler whose only globals are an ordered dict and safe stand-ins for torch's
tensor-rebuilding functions; any other global is refused.
"""

import pickle
import zipfile
from collections import OrderedDict

import numpy as np

from ...contract.errors import UserError
from .tensors import array_from_bytes

__all__ = ["load_torch_state_dict"]

# torch's typed storage classes, by the dtype names the safetensors reader uses.
_STORAGE_DTYPES = {
    "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16", "DoubleStorage": "F64",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL",
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and its siblings inside the pickle."""

    def __init__(self, dtype):
        self.dtype = dtype


class _Refused(Exception):
    pass


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    """``torch._utils._rebuild_tensor_v2`` in numpy: a strided view of a storage, copied out."""
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise _Refused(f"tensor with size {size} and stride {stride}")
    flat = storage
    if 0 in size:
        return np.zeros(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= flat.size:
        raise _Refused(f"tensor view (offset {offset}, size {size}, stride {stride}) outside its storage "
                       f"of {flat.size} elements")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                           strides=[s * flat.itemsize for s in stride], writeable=False)
    return np.array(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *_ignored):
    return data


class _TensorOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, read_storage):
        super().__init__(file)
        self._read_storage = read_storage

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise _Refused(f"refused to unpickle {module}.{name}: only tensors are allowed")

    def persistent_load(self, saved_id):
        if (not isinstance(saved_id, tuple) or len(saved_id) != 5 or saved_id[0] != "storage"
                or not isinstance(saved_id[1], _StorageType)):
            raise _Refused(f"unexpected persistent id {saved_id!r:.80}")
        _, storage_type, key, _location, numel = saved_id
        return self._read_storage(str(key), storage_type.dtype, numel)


def load_torch_state_dict(path):
    """Return ``{name: ndarray}`` from a torch zip checkpoint, or raise a one-line ``UserError``."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UserError(f"{path}: not a torch zip archive (legacy or corrupted pytorch_model.bin; "
                        f"re-save it with torch >= 1.6 or convert it to safetensors)") from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise UserError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() != b"little":
            raise UserError(f"{path}: big-endian torch checkpoints are not supported")
        storages = {}

        def read_storage(key, dtype, numel):
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise _Refused(f"missing storage record {record}")
                storages[key] = array_from_bytes(archive.read(record), dtype, (numel,), path)
            return storages[key]

        try:
            with archive.open(pickles[0]) as f:
                state = _TensorOnlyUnpickler(f, read_storage).load()
        except _Refused as e:
            raise UserError(f"{path}: {e}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as e:
            raise UserError(f"{path}: malformed torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise UserError(f"{path}: expected a flat state dict of tensors")
    return dict(state)
