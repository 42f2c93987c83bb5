"""Read PyTorch ``.pth`` state dicts with NumPy alone, refusing any code.

Both container formats that ``torch.save`` writes are read (specs/io_weights.md):

* zip (default since torch 1.6): ``<dir>/data.pkl`` holds the object pickle,
  ``<dir>/data/<key>`` the raw bytes of each storage and ``<dir>/byteorder``
  their byte order (``little`` when the record is absent);
* legacy: five consecutive pickles (magic number, protocol version, system
  info, the object, the sorted storage keys) followed, per key, by an int64
  element count and the raw little-endian bytes.

The object pickle is read by :class:`RestrictedUnpickler`.  Its ``find_class``
resolves only the tensor-rebuild functions, ``collections.OrderedDict`` and the
``torch.*Storage`` types, each to a NumPy stand-in defined here; every other
global raises :class:`~refquant.errors.UnsafeFileError` naming it, before any
call is made.  torch is never imported.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

from refquant.errors import (
    CorruptFileError,
    InvalidArgumentError,
    InvalidTypeError,
    UnsafeFileError,
)

__all__ = ["RestrictedUnpickler", "load_torch_pickle", "load_torch_state_dict"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> NumPy dtype character code (byte order added later)
STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",  # read as uint16, widened exactly to float32
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
    "ComplexDoubleStorage": "c16",
    "ComplexFloatStorage": "c8",
    "UntypedStorage": "u1",
}
_STORAGE_MODULES = ("torch", "torch.cuda")
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A tensor may not hold more elements than its storage, and all tensors together
# may not hold more than this many times the storage bytes present in the file
# (views of one storage, such as tied weights, count once per view).
MAX_VIEW_AMPLIFICATION = 4
MAX_TENSOR_RANK = 64  # NumPy's largest ndim


class _FormatError(Exception):
    """The bytes do not follow the format; re-raised with the file name."""


@dataclass(frozen=True)
class StorageType:
    """Stand-in for ``torch.<Name>Storage``: only carries the element type."""

    name: str

    @property
    def code(self) -> str:
        return STORAGE_DTYPES[self.name]


class _Storage:
    """A storage whose bytes are filled after (legacy) or during (zip) loading."""

    __slots__ = ("key", "stype", "numel", "data", "root", "root_offset")

    def __init__(self, key, stype, numel, root=None, root_offset=0):
        self.key = key
        self.stype = stype
        self.numel = numel
        self.data = None  # 1-D native-endian ndarray once read
        self.root = root
        self.root_offset = root_offset

    def array(self) -> np.ndarray:
        if self.root is not None:
            base = self.root.array()
            stop = self.root_offset + self.numel
            if stop > base.size:
                raise _FormatError(f"storage view {self.key!r} exceeds its root")
            return base[self.root_offset : stop]
        if self.data is None:
            raise _FormatError(f"storage {self.key!r} has no data in the file")
        return self.data


class _PendingTensor:
    """Arguments of one tensor rebuild; validated and materialized at the end."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


# --------------------------------------------------------------------------
# stand-ins for the functions a torch pickle is allowed to call


def _rebuild_tensor(storage, storage_offset, size, stride):
    if not isinstance(storage, _Storage):
        raise _FormatError("a tensor was rebuilt from something that is no storage")
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, hooks=None, *_
):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *_):
    if not isinstance(data, _PendingTensor):
        raise _FormatError("a parameter was rebuilt from something that is no tensor")
    return data


_ALLOWED_CALLABLES = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only tensor rebuilds, OrderedDict and storages.

    Parameters
    ----------
    file : binary file object
        Positioned at the start of one pickle.
    storages : callable or None
        ``storages(pid_tuple) -> _Storage`` answers persistent ids; ``None``
        means the pickle may not contain any.
    source : str
        Name of the file, used in error messages.
    """

    def __init__(self, file, storages=None, source="<bytes>"):
        super().__init__(file)
        self._storages = storages
        self._source = source

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_CALLABLES:
            return _ALLOWED_CALLABLES[(module, name)]
        if module in _STORAGE_MODULES and name in STORAGE_DTYPES:
            return StorageType(name)
        raise UnsafeFileError(
            f"{self._source} asks to load the global {module}.{name}; a PyTorch "
            "state dict may only reference torch._utils._rebuild_tensor*, "
            "torch._utils._rebuild_parameter, collections.OrderedDict and "
            "torch.*Storage, so the file was rejected before anything ran"
        )

    def persistent_load(self, pid):
        if self._storages is None:
            raise _FormatError("unexpected persistent id outside the object pickle")
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            raise UnsafeFileError(
                f"{self._source} stores a whole nn.Module with its source code; "
                "only state dicts (name -> tensor) are read"
            )
        return self._storages(pid)


# --------------------------------------------------------------------------
# storage bytes


def _numpy_dtype(code: str, byteorder: str) -> np.dtype:
    prefix = "<" if byteorder == "little" else ">"
    return np.dtype(prefix + ("u2" if code == "bf16" else code))


def _decode_storage(raw: bytes, code: str, byteorder: str) -> np.ndarray:
    """Raw bytes -> 1-D native-endian array (bfloat16 widened to float32)."""
    flat = np.frombuffer(raw, dtype=_numpy_dtype(code, byteorder))
    flat = flat.astype(flat.dtype.newbyteorder("="))  # copy, native order
    if code == "bf16":
        return (flat.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return flat


def _check_pid(pid, n_fields: int):
    if not (isinstance(pid, tuple) and len(pid) == n_fields and pid[0] == "storage"):
        raise _FormatError(f"malformed storage reference {pid!r}")
    _, stype, key, _location, numel = pid[:5]
    if not isinstance(stype, StorageType):
        raise _FormatError(f"storage reference names no storage type: {stype!r}")
    if not (isinstance(key, str) and _KEY_PATTERN.fullmatch(key)):
        raise _FormatError(f"storage key {key!r} is not a plain name")
    if not _is_count(numel):
        raise _FormatError(f"storage {key!r} has an invalid size {numel!r}")
    return stype, key, numel


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --------------------------------------------------------------------------
# tensor materialization


class _Budget:
    """Bytes that tensors may still materialize: a multiple of the storage bytes."""

    def __init__(self, storages):
        present = sum(s.array().nbytes for s in storages if s.root is None)
        self.left = MAX_VIEW_AMPLIFICATION * present
        self.present = present
        self.done: dict[int, np.ndarray] = {}  # id(pending tensor) -> array

    def take(self, nbytes: int) -> None:
        if nbytes > self.left:
            raise _FormatError(
                f"its tensors would need more than {MAX_VIEW_AMPLIFICATION} times "
                f"the {self.present} storage bytes present in the file"
            )
        self.left -= nbytes


def _materialize(t: _PendingTensor, budget: _Budget) -> np.ndarray:
    """``as_strided`` on the storage after proving every index is in bounds."""
    base = t.storage.array() if isinstance(t.storage, _Storage) else None
    if base is None or not _is_count(t.offset):
        raise _FormatError(f"tensor with invalid storage, offset {t.offset!r}")
    if not (isinstance(t.size, (tuple, list)) and isinstance(t.stride, (tuple, list))):
        raise _FormatError("tensor whose size or stride is not a tuple")
    size, stride, offset = tuple(t.size), tuple(t.stride), t.offset
    if len(size) != len(stride) or len(size) > MAX_TENSOR_RANK:
        raise _FormatError(
            f"tensor with invalid storage, offset or rank (size {len(size)} dims, "
            f"stride {len(stride)} dims; at most {MAX_TENSOR_RANK})"
        )
    if not all(_is_count(v) for v in size + stride):
        raise _FormatError(f"tensor with invalid size {size} or stride {stride}")
    numel = 1
    for n in size:
        numel *= n
    if numel == 0:
        return np.zeros(_empty_shape(size), dtype=base.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= base.size:
        raise _FormatError(
            f"tensor (offset {offset}, size {size}, stride {stride}) reads "
            f"past its storage of {base.size} elements"
        )
    if numel > base.size:
        raise _FormatError(
            f"tensor of size {size} (stride {stride}) holds {numel} elements but "
            f"its storage has only {base.size}; repeated (stride-0 or "
            "overlapping) elements beyond the storage are refused"
        )
    budget.take(numel * base.itemsize)
    view = np.lib.stride_tricks.as_strided(
        base[offset:],
        shape=size,
        strides=tuple(s * base.itemsize for s in stride),
        writeable=False,
    )
    return np.array(view, order="C")  # copy


def _empty_shape(size: tuple) -> tuple:
    """Shape of an empty tensor, refused when NumPy could not represent it."""
    try:
        np.empty(size, dtype=np.uint8)  # zero bytes; checks NumPy's limits only
    except (ValueError, OverflowError) as e:
        raise _FormatError(
            f"empty tensor with an impossible size {size}: {e}"
        ) from None
    return size


def _storages_of(obj, found: dict) -> None:
    """Collect the storages (and their roots) reachable from pending tensors."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, _PendingTensor) and isinstance(item.storage, _Storage):
            s = item.storage
            while s is not None:
                found[id(s)] = s
                s = s.root
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _resolve(obj, budget: _Budget | None = None):
    """Replace every pending tensor in a nested dict/list/tuple by an array."""
    if budget is None:
        found: dict = {}
        _storages_of(obj, found)
        budget = _Budget(found.values())
    if isinstance(obj, _PendingTensor):
        if id(obj) not in budget.done:  # one pickled tensor, referenced twice
            budget.done[id(obj)] = _materialize(obj, budget)
        return budget.done[id(obj)]
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) is collections.OrderedDict else {}
        for k, v in obj.items():
            out[k] = _resolve(v, budget)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, budget) for v in obj)
    if isinstance(obj, _Storage):
        raise _FormatError("a bare storage outside any tensor is not supported")
    return obj


# --------------------------------------------------------------------------
# the two containers


def _load_zip(path: str) -> object:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            if any(n.split("/", 1)[-1].startswith("code/") for n in names):
                raise _FormatError("TorchScript archives are not state dicts")
            raise _FormatError("zip archive without exactly one <dir>/data.pkl")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = _zip_byteorder(zf, prefix + "byteorder", set(names))
        cache: dict[str, _Storage] = {}

        def storages(pid):
            stype, key, numel = _check_pid(pid, 5)
            if key not in cache:
                cache[key] = _Storage(key, stype, numel)
                width = _numpy_dtype(stype.code, byteorder).itemsize
                raw = _zip_record(zf, f"{prefix}data/{key}", numel * width)
                cache[key].data = _decode_storage(raw, stype.code, byteorder)
            return cache[key]

        raw_pickle = zf.read(pkls[0])
        obj = RestrictedUnpickler(io.BytesIO(raw_pickle), storages, path).load()
    return _resolve(obj)


def _zip_byteorder(zf, name: str, names: set) -> str:
    if name not in names:
        return "little"
    value = zf.read(name).decode("ascii", "replace").strip()
    if value not in ("little", "big"):
        raise _FormatError(f"byteorder record says {value!r}, not little or big")
    return value


def _zip_record(zf, name: str, nbytes: int) -> bytes:
    """Read one storage record after checking its size (no zip-bomb reads)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _FormatError(f"missing storage record {name!r}") from None
    if info.file_size != nbytes:
        raise _FormatError(
            f"record {name!r} has {info.file_size} bytes; the pickle says {nbytes}"
        )
    return zf.read(info)


def _load_legacy(path: str) -> object:
    with open(path, "rb") as f:
        try:
            magic = RestrictedUnpickler(f, None, path).load()
        except UnsafeFileError:
            raise
        except Exception:  # any parse failure of the first bytes: not torch
            magic = None
        if magic != LEGACY_MAGIC_NUMBER:
            raise _FormatError(
                "it is not a PyTorch file (neither a zip archive nor a legacy "
                "torch pickle starting with the torch magic number)"
            )
        protocol = RestrictedUnpickler(f, None, path).load()
        if protocol != LEGACY_PROTOCOL_VERSION:
            raise _FormatError(f"unsupported legacy protocol {protocol!r}")
        sys_info = RestrictedUnpickler(f, None, path).load()
        if not isinstance(sys_info, dict):
            raise _FormatError("legacy header has no system-info dict")
        roots: dict[str, _Storage] = {}
        obj = RestrictedUnpickler(f, _legacy_storages(roots), path).load()
        keys = RestrictedUnpickler(f, None, path).load()
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise _FormatError("legacy storage key list is malformed")
        for key in keys:
            _read_legacy_storage(f, roots, key)
    return _resolve(obj)


def _legacy_storages(roots: dict):
    views: dict[str, _Storage] = {}

    def storages(pid):
        stype, key, numel = _check_pid(pid, 6)
        root = roots.setdefault(key, _Storage(key, stype, numel))
        if root.stype != stype or root.numel != numel:
            raise _FormatError(f"storage {key!r} is declared twice differently")
        view = pid[5]
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise _FormatError(f"malformed storage view {view!r}")
        view_key, offset, view_numel = view
        if not (_is_count(offset) and _is_count(view_numel)):
            raise _FormatError(f"storage view {view!r} has invalid bounds")
        return views.setdefault(
            str(view_key), _Storage(str(view_key), stype, view_numel, root, offset)
        )

    return storages


def _read_legacy_storage(f, roots: dict, key: str) -> None:
    if key not in roots:
        raise _FormatError(f"storage {key!r} has data but no tensor uses it")
    storage = roots[key]
    head = f.read(8)
    if len(head) != 8:
        raise _FormatError(f"file ends before storage {key!r}")
    (count,) = struct.unpack("<q", head)
    if count != storage.numel:
        raise _FormatError(
            f"storage {key!r}: file says {count} elements, the pickle {storage.numel}"
        )
    width = _numpy_dtype(storage.stype.code, "little").itemsize
    if count * width > os.fstat(f.fileno()).st_size - f.tell():
        raise _FormatError(f"file ends inside storage {key!r}")
    raw = f.read(count * width)
    if len(raw) != count * width:
        raise _FormatError(f"file ends inside storage {key!r}")
    storage.data = _decode_storage(raw, storage.stype.code, "little")


# --------------------------------------------------------------------------
# public entry points


def load_torch_pickle(path) -> object:
    """Load the object saved by ``torch.save``, tensors becoming NumPy arrays.

    ``x[i_0, ..., i_k] = storage[offset + sum_j i_j * stride_j]`` for every
    tensor (no arithmetic, no rounding: values are copied bit for bit; bfloat16
    widens exactly to float32).  Dicts, lists, tuples and scalars are kept.

    Raises
    ------
    UnsafeFileError
        The pickle references any global outside the allow-list.
    InvalidArgumentError
        The file is missing, truncated or not a torch file.
    """
    path = _check_path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except UnsafeFileError:
        raise
    except (_FormatError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as e:
        raise CorruptFileError(
            f"path={path!r} is not a readable PyTorch state dict: {e}"
        ) from None
    except RecursionError:
        raise CorruptFileError(
            f"path={path!r} is not a readable PyTorch state dict: its objects are "
            "nested too deeply to read"
        ) from None
    except MemoryError:
        raise CorruptFileError(
            f"path={path!r} is not a readable PyTorch state dict: it asks for more "
            "memory than is available"
        ) from None
    except (TypeError, ValueError, AttributeError, IndexError, KeyError) as e:
        raise CorruptFileError(
            f"path={path!r} is not a readable PyTorch state dict: "
            f"{type(e).__name__}: {e}"
        ) from None
    except OSError as e:
        raise CorruptFileError(
            f"path={path!r} could not be read: {type(e).__name__}: {e}"
        ) from None


def load_torch_state_dict(path, key: str | None = None) -> dict[str, np.ndarray]:
    """Read a ``.pth`` state dict into ``{name: ndarray}`` without torch.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``torch.save`` (zip or legacy format; CUDA-saved
        files load to host memory, the storage location is ignored).
    key : str, optional
        For checkpoints such as ``{"model": state_dict, "epoch": 3}``, the
        entry that holds the state dict.  Nested dicts are flattened with
        ``"."`` between names, as ``nn.Module.state_dict`` names them.

    Returns
    -------
    dict[str, numpy.ndarray]
        C-contiguous native-endian copies, in the file's order.

    Examples
    --------
    >>> sd = load_torch_state_dict("mnist.pth")  # doctest: +SKIP
    >>> sd["conv1.weight"].shape  # doctest: +SKIP
    (32, 1, 3, 3)
    """
    obj = load_torch_pickle(path)
    if key is not None:
        if not isinstance(key, str):
            raise InvalidTypeError(f"key must be a str or None; got key={key!r}")
        if not isinstance(obj, dict) or key not in obj:
            found = sorted(map(str, obj)) if isinstance(obj, dict) else []
            raise InvalidArgumentError(
                f"key must name an entry of the saved dict; got key={key!r}, "
                f"entries are {found}"
            )
        obj = obj[key]
    if not isinstance(obj, dict):
        raise InvalidArgumentError(
            f"path={str(path)!r} holds a {type(obj).__name__}, not a state dict"
        )
    try:
        return _flatten(obj, "", str(path))
    except RecursionError:
        raise CorruptFileError(
            f"path={str(path)!r} nests its state dict too deeply to read"
        ) from None


def _flatten(tree: dict, prefix: str, path: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, value in tree.items():
        full = f"{prefix}{name}"
        if isinstance(value, dict):
            out.update(_flatten(value, full + ".", path))
        elif isinstance(value, np.ndarray):
            out[full] = value
        else:
            raise InvalidArgumentError(
                f"path={path!r}: entry {full!r} is a {type(value).__name__}, not "
                "a tensor; pass key=<name of the state dict entry> for checkpoints"
            )
    return out


def _check_path(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(
            f"path must be a str or os.PathLike; got path={path!r} of type "
            f"{type(path).__name__}"
        )
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidArgumentError(f"path must be an existing file; got path={path!r}")
    return path
