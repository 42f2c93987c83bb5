"""Read and write the safetensors format with NumPy alone.

Layout (specs/io_weights.md, section 3)::

    [0, 8)            N, unsigned 64-bit little-endian header length
    [8, 8 + N)        UTF-8 JSON object: name -> {"dtype", "shape",
                      "data_offsets": [begin, end]}, optional "__metadata__"
                      (str -> str); trailing spaces allowed
    [8 + N, EOF)      the byte buffer; tensor bytes are buffer[begin:end],
                      little-endian, C order

Every tensor must cover ``prod(shape) * itemsize`` bytes and the tensors must
tile the buffer exactly (no gap, no overlap, nothing after the last one).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import struct

import numpy as np

from refquant._fileio import write_bytes_atomic
from refquant.errors import CorruptFileError, InvalidArgumentError, InvalidTypeError

__all__ = ["load_safetensors", "save_safetensors", "SAFETENSORS_DTYPES"]

# safetensors dtype tag -> NumPy little-endian dtype ("BF16" is special-cased)
SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
    "C64": "<c8",
}
_TAG_OF_KIND = {np.dtype(v).newbyteorder("="): k for k, v in SAFETENSORS_DTYPES.items()}
_TAG_OF_KIND[np.dtype(np.uint16)] = "U16"  # BF16 shares the storage type
MAX_HEADER_BYTES = 100_000_000
MAX_RANK = 64  # NumPy's largest ndim


def _bad(path: str, reason: str) -> CorruptFileError:
    return CorruptFileError(f"path={path!r} is not a valid safetensors file: {reason}")


def _parse_header(raw: bytes, path: str) -> dict:
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise _bad(path, "the header repeats a tensor name")
        return dict(pairs)

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"header is not UTF-8 JSON ({e})") from None
    except RecursionError:
        raise _bad(path, "header JSON is nested too deeply") from None
    except CorruptFileError:
        raise
    except ValueError as e:  # e.g. an integer with more digits than Python allows
        raise _bad(path, f"header JSON holds an unreadable value ({e})") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise _bad(path, "__metadata__ must map str to str")
    return header


def _entry_layout(name: str, entry, path: str) -> tuple[np.dtype, tuple, int, int]:
    """Check one header entry; return (dtype, shape, begin, end)."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"entry {name!r} must have exactly dtype, shape, data_offsets")
    tag, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if tag not in SAFETENSORS_DTYPES:
        raise _bad(
            path,
            f"entry {name!r} has dtype {tag!r}; supported are "
            + ", ".join(SAFETENSORS_DTYPES),
        )
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise _bad(path, f"entry {name!r} has shape {shape!r}, not a list of ints >= 0")
    if len(shape) > MAX_RANK:
        raise _bad(path, f"entry {name!r} has {len(shape)} dims; at most {MAX_RANK}")
    if not (
        isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
    ):
        raise _bad(path, f"entry {name!r} has data_offsets {offsets!r}")
    dtype = np.dtype(SAFETENSORS_DTYPES[tag])
    begin, end = offsets
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise _bad(
            path,
            f"entry {name!r}: data_offsets {offsets} span {end - begin} bytes but "
            f"shape {shape} of {tag} needs {math.prod(shape) * dtype.itemsize}",
        )
    if math.prod(shape) == 0:
        try:  # zero bytes; only checks that NumPy can represent the shape
            np.empty(shape, dtype=np.uint8)
        except (ValueError, OverflowError) as e:
            raise _bad(
                path, f"entry {name!r} has impossible shape {shape}: {e}"
            ) from None
    return dtype, tuple(shape), begin, end


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tiling(spans: list, buffer_len: int, path: str) -> None:
    cursor = 0
    for begin, end, name in sorted(spans):
        if begin != cursor:
            raise _bad(
                path,
                f"entry {name!r} starts at byte {begin} of the buffer; expected "
                f"{cursor} (tensors must tile the buffer without gaps or overlap)",
            )
        cursor = end
    if cursor != buffer_len:
        raise _bad(path, f"tensors cover {cursor} bytes; the buffer has {buffer_len}")


def load_safetensors(path) -> dict[str, np.ndarray]:
    """Read every tensor of a ``.safetensors`` file into NumPy arrays.

    Values are copied bit for bit (no arithmetic, no rounding), except BF16,
    which widens exactly to float32: ``f32_bits = bf16_bits << 16``.

    Returns
    -------
    dict[str, numpy.ndarray]
        Native-endian C-contiguous arrays in the order of the header.

    Raises
    ------
    InvalidArgumentError
        The header length, JSON, a dtype, a shape or the offsets are invalid.
    """
    path = _check_path(path)
    try:
        return _load(path)
    except OSError as e:
        raise _bad(path, f"it could not be read ({type(e).__name__}: {e})") from None


def _load(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) != 8:
            raise _bad(path, f"file has {len(head)} bytes, fewer than 8")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, file_size - 8):
            raise _bad(
                path,
                f"header length {n} exceeds the file ({file_size} bytes) or "
                f"the limit {MAX_HEADER_BYTES}",
            )
        header = _parse_header(f.read(n), path)
        buffer = f.read()
    layouts = {name: _entry_layout(name, e, path) for name, e in header.items()}
    _check_tiling([(b, e, k) for k, (_, _, b, e) in layouts.items()], len(buffer), path)
    return {
        name: _decode(buffer[b:e], dtype, shape, header[name]["dtype"])
        for name, (dtype, shape, b, e) in layouts.items()
    }


def _decode(raw: bytes, dtype: np.dtype, shape: tuple, tag: str) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    if tag == "BF16":
        arr = (arr.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return arr.reshape(shape)


def save_safetensors(tensors, path, metadata=None) -> None:
    """Write ``{name: array}`` as safetensors (temporary file, then rename).

    Tensors are laid out by decreasing item size, then by name, so every
    tensor starts at a multiple of its item size; the header is padded with
    spaces to a multiple of 8 bytes.

    Parameters
    ----------
    tensors : mapping of str to numpy.ndarray
        Supported dtypes: float64/32/16, int64/32/16/8, uint64/32/16/8, bool,
        complex64.
    path : str or os.PathLike
        Destination; its folder must exist.
    metadata : mapping of str to str, optional
        Stored as ``__metadata__``.
    """
    entries = _check_tensors(tensors)
    meta = _check_metadata(metadata)
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike; got path={path!r}")
    path = os.fspath(path)
    order = sorted(entries, key=lambda k: (-entries[k].dtype.itemsize, k))
    header, cursor = ({"__metadata__": meta} if meta else {}), 0
    for name in order:
        a = entries[name]
        header[name] = {
            "dtype": _TAG_OF_KIND[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [cursor, cursor + a.nbytes],
        }
        cursor += a.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    _atomic_write(path, [struct.pack("<Q", len(blob)), blob], order, entries)


def _check_tensors(tensors) -> dict[str, np.ndarray]:
    if not isinstance(tensors, dict):
        raise InvalidTypeError(
            f"tensors must be a dict of str to numpy.ndarray; got "
            f"tensors of type {type(tensors).__name__}"
        )
    out = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise InvalidArgumentError(
                f"tensor names must be str other than '__metadata__'; got {name!r}"
            )
        if not isinstance(value, np.ndarray):
            raise InvalidTypeError(
                f"tensors[{name!r}] must be a numpy.ndarray; got {type(value).__name__}"
            )
        native = value.dtype.newbyteorder("=")
        if native not in _TAG_OF_KIND:
            raise InvalidArgumentError(
                f"tensors[{name!r}] has dtype {value.dtype}; allowed are "
                "float64/32/16, int64/32/16/8, uint64/32/16/8, bool, complex64"
            )
        out[name] = np.asarray(value, dtype=native.newbyteorder("<"), order="C")
    return out


def _check_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidTypeError(
            f"metadata must be a dict of str to str or None; got metadata={metadata!r}"
        )
    return dict(metadata)


def _atomic_write(path: str, head: list, order: list, entries: dict) -> None:
    body = (entries[name].tobytes(order="C") for name in order)
    write_bytes_atomic(path, itertools.chain(head, body))


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
