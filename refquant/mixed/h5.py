"""Save and load a MixedModel as HDF5, each layer with its precision.

Layout (version 1)::

    /                     attrs format="refquant.mixed_model", format_version=1,
                          name, inputs (JSON), outputs (JSON), num_layers
    /tensors              attr names (JSON list); datasets scale float64,
                          zero_point int32, bits int32: int8 activation qparams
    /layers/NNNNNN        attrs name, op, inputs (JSON), attrs (JSON),
                          precision ("" for unweighted ops), meta (JSON);
                          one dataset per stored tensor (layers.LAYOUT names
                          and dtypes; "param.<k>" float32), except:
                          int4 / ternary / binary "weight": uint8, the codes
                          packed at 4 / 2 / 1 bits (attrs packed_bits, shape);
                          "weight_zero_point": int8

Packing (version 2; version 1 files, unpacked, are still read): the codes
become unsigned ``u = code - lo`` (``lo = qmin`` of a signed int4 scheme, 0
unsigned; -1 ternary; binary ``u = (code + 1) // 2``), flattened in C order
and written ``bits`` to a value, least significant bit first, into
``ceil(size * bits / 8)`` bytes (``np.packbits(..., bitorder="little")``).

So the datasets hold what :meth:`MixedModel.size` counts: the sum of the
datasets' ``nbytes`` differs from ``size_bytes()`` only by the activation
qparams, which the size counts per use (float32 scale, int8 zero point: 5 B
per int8-layer input and output, 12 B for the int16 scales of an int16 layer,
kept in its meta attribute) and the file keeps once per tensor in /tensors
(16 B each): ``|payload - size_bytes()| <= 16 * num_tensors + 12 * num_layers``
(``PAYLOAD_OVERHEAD_PER_TENSOR``, ``PAYLOAD_OVERHEAD_PER_LAYER``).  HDF5
metadata (group headers, attributes) comes on top of the payload.

Writing goes to a temporary file beside the target, then a rename.  Reading
executes nothing: only hard links, plain numeric datasets, string / integer
attributes and JSON (json.loads) are read, and every layer is validated by
the :class:`~refquant.mixed.layers.MixedLayer` and
:class:`~refquant.mixed.model.MixedModel` constructors.  Spec:
specs/mixed_precision.md, section 8.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from refquant._fileio import atomic_path
from refquant.errors import InvalidArgumentError, InvalidTypeError, UnsafeFileError
from refquant.graph.nodes import OPS, Node
from refquant.mixed.layers import LAYOUT, PRECISIONS, MixedLayer
from refquant.mixed.model import MixedModel
from refquant.ptq.qtensors import TensorQParams

__all__ = ["FORMAT", "FORMAT_VERSION", "load_mixed_model", "save_mixed_model"]

FORMAT = "refquant.mixed_model"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
MAX_STRING = 1 << 20
#: Bits per stored weight code of the packed precisions.
PACKED_BITS = {"int4": 4, "ternary": 2, "binary": 1}
#: Bound of ``|dataset bytes - MixedModel.size_bytes()|`` (module docstring).
PAYLOAD_OVERHEAD_PER_TENSOR = 16
PAYLOAD_OVERHEAD_PER_LAYER = 12


def _h5py():
    try:
        import h5py
    except ImportError:
        from refquant.datasets import OptionalDependencyError

        raise OptionalDependencyError(
            "saving and loading mixed models needs h5py; `pip install h5py`"
        ) from None
    return h5py


def _json(value) -> str:
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(i) for i in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            return float(v)
        return v

    return json.dumps(plain(value), allow_nan=False)


def save_mixed_model(model: MixedModel, path) -> Path:
    """Write ``model`` to ``path`` (HDF5, temporary name then rename)."""
    if not isinstance(model, MixedModel):
        raise InvalidTypeError(
            f"model must be a MixedModel; got model of type {type(model).__name__}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike; got path={path!r}")
    final = Path(path)
    if not final.parent.is_dir():
        raise InvalidArgumentError(
            f"path must be in an existing folder; got path={str(final)!r}"
        )
    h5py = _h5py()
    with atomic_path(final, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["name"] = model.name
        f.attrs["inputs"] = _json(model.inputs)
        f.attrs["outputs"] = _json(model.outputs)
        f.attrs["num_layers"] = len(model.layers)
        t = f.create_group("tensors")
        names = list(model.tensor_qparams)
        qps = [model.tensor_qparams[k] for k in names]
        t.attrs["names"] = _json(names)
        t.create_dataset("scale", data=np.array([q.scale for q in qps], np.float64))
        t.create_dataset(
            "zero_point", data=np.array([q.zero_point for q in qps], np.int32)
        )
        t.create_dataset("bits", data=np.array([q.bits for q in qps], np.int32))
        g = f.create_group("layers")
        for i, layer in enumerate(model.layers):
            _write_layer(g.create_group(f"{i:06d}"), layer)
    return final


def _write_layer(g, layer: MixedLayer) -> None:
    g.attrs["name"] = layer.name
    g.attrs["op"] = layer.op
    g.attrs["inputs"] = _json(layer.inputs)
    g.attrs["attrs"] = _json(dict(layer.attrs))
    g.attrs["precision"] = layer.precision or ""
    g.attrs["meta"] = _json(dict(layer.meta))
    for k, v in layer.tensors.items():
        if k == "weight" and layer.precision in PACKED_BITS:
            bits = PACKED_BITS[layer.precision]
            ds = g.create_dataset(k, data=pack_codes(v, bits, _code_low(layer)))
            ds.attrs["packed_bits"] = bits
            ds.attrs["shape"] = np.asarray(v.shape, np.int64)
        elif k == "weight_zero_point":
            g.create_dataset(k, data=v.astype(np.int8))  # 4- and 8-bit codes' zps
        else:
            g.create_dataset(k, data=v)


def _code_low(layer: MixedLayer) -> int:
    """``lo`` of the packing: the smallest code of the layer's precision."""
    if layer.precision == "int4":
        scheme = layer.meta["scheme"]
        return -(1 << (int(scheme["bits"]) - 1)) if scheme["signed"] else 0
    return -1  # ternary {-1, 0, 1}; binary {-1, 1} (see pack_codes)


def pack_codes(codes, bits: int, low: int) -> np.ndarray:
    """uint8 bytes of ``u = codes - low`` at ``bits`` per value, LSB first.

    Binary (``bits == 1``) maps ``{-1, +1}`` to ``{0, 1}`` (``u = (c + 1) // 2``).

    >>> pack_codes(np.array([-1, 0, 1, 1, 0], np.int8), 2, -1).tolist()
    [164, 1]
    """
    c = np.asarray(codes, np.int16).ravel()
    u = (c + 1) // 2 if bits == 1 else c - low
    if u.size and (u.min() < 0 or u.max() >= 1 << bits):
        raise InvalidArgumentError(
            f"codes must fit {bits} bits above {low}; got codes in "
            f"[{int(c.min())}, {int(c.max())}]"
        )
    planes = (u.astype(np.uint8)[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_codes(packed, bits: int, low: int, shape) -> np.ndarray:
    """int8 codes of shape ``shape`` from :func:`pack_codes` bytes."""
    n = int(np.prod(shape, dtype=np.int64))
    planes = np.unpackbits(packed, count=n * bits, bitorder="little")
    u = planes.reshape(n, bits).astype(np.int16) @ (1 << np.arange(bits)).astype(
        np.int16
    )
    c = 2 * u - 1 if bits == 1 else u + low
    return c.astype(np.int8).reshape(tuple(shape))


# ---------------------------------------------------------------------- load
def _bad(where: str, what: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid mixed model file: {where} {what}")


def _str(obj, key, where) -> str:
    if key not in obj.attrs:
        raise _bad(where, f"lacks attribute {key!r}")
    v = obj.attrs[key]
    if isinstance(v, bytes):
        v = v.decode("utf-8", errors="strict")
    if not isinstance(v, str) or len(v) > MAX_STRING:
        raise _bad(f"{where} attribute {key!r}", "must be a string of at most 1 MiB")
    return v


def _loads(obj, key, where):
    try:
        return json.loads(_str(obj, key, where))
    except ValueError as exc:
        raise _bad(f"{where} attribute {key!r}", f"is not JSON ({exc})") from None


def _members(h5py, group, where):
    for key in group.keys():
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise UnsafeFileError(
                f"{where}/{key} is a {type(link).__name__}; only hard links inside "
                "the file are followed"
            )
    return list(group.keys())


def _array(h5py, group, key, where) -> np.ndarray:
    ds = group[key]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "iuf":
        raise _bad(f"{where}/{key}", "must be a dataset of a plain numeric dtype")
    return ds[()]


def load_mixed_model(path) -> MixedModel:
    """Read a model written by :func:`save_mixed_model` (validated)."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike; got path={path!r}")
    if not Path(path).is_file():
        raise InvalidArgumentError(f"path must name an existing file; got {path!r}")
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise _bad(str(path), f"is not HDF5 ({exc})") from None
    with f:
        if _str(f, "format", "/") != FORMAT:
            raise _bad("/", f"format must be {FORMAT!r}")
        version = f.attrs.get("format_version")
        if not isinstance(version, (int, np.integer)) or version not in READ_VERSIONS:
            raise _bad("/", f"format_version must be 1 or 2; got {version!r}")
        _members(h5py, f, "")
        t = f["tensors"]
        _members(h5py, t, "/tensors")
        names = _loads(t, "names", "/tensors")
        arrs = [_array(h5py, t, k, "/tensors") for k in ("scale", "zero_point", "bits")]
        if not isinstance(names, list) or any(len(a) != len(names) for a in arrs):
            raise _bad("/tensors", "names and datasets must have equal lengths")
        qp = {
            str(n): TensorQParams(float(s), int(z), int(b))
            for n, s, z, b in zip(names, *arrs)
        }
        group = f["layers"]
        keys = sorted(_members(h5py, group, "/layers"))
        layers = [_read_layer(h5py, group[k], f"/layers/{k}") for k in keys]
        return MixedModel(
            layers,
            _loads(f, "inputs", "/"),
            _loads(f, "outputs", "/"),
            qp,
            name=_str(f, "name", "/"),
        )


def _unpacked(ds, precision, meta, where) -> np.ndarray:
    """The int8 codes of a packed weight dataset (validated before decoding)."""
    where = f"{where}/weight"
    bits, shape = ds.attrs["packed_bits"], np.asarray(ds.attrs.get("shape", []))
    if precision not in PACKED_BITS or bits != PACKED_BITS[precision]:
        raise _bad(where, f"packed_bits must match precision {precision!r}")
    if shape.ndim != 1 or shape.dtype.kind not in "iu" or np.any(shape < 0):
        raise _bad(where, "attribute 'shape' must be a 1-D array of ints >= 0")
    if ds.dtype != np.uint8 or ds.ndim != 1:
        raise _bad(where, "packed codes must be a 1-D uint8 dataset")
    n = int(np.prod(shape, dtype=np.int64)) if shape.size else 1
    if ds.shape[0] != -(-n * int(bits) // 8):
        raise _bad(where, f"must hold ceil({n} * {bits} / 8) bytes; got {ds.shape[0]}")
    scheme = meta.get("scheme", {}) if isinstance(meta, dict) else {}
    low = -1
    if precision == "int4":
        if not isinstance(scheme, dict) or not isinstance(scheme.get("bits"), int):
            raise _bad(where, "needs meta['scheme'] with int bits")
        low = -(1 << (scheme["bits"] - 1)) if scheme.get("signed") else 0
    codes = unpack_codes(ds[()], int(bits), low, tuple(int(d) for d in shape))
    if precision == "ternary" and codes.size and codes.max() > 1:
        raise _bad(where, "ternary codes must be in {-1, 0, 1}")
    return codes


def _read_layer(h5py, g, where) -> MixedLayer:
    name, op = _str(g, "name", where), _str(g, "op", where)
    if op not in OPS:
        raise _bad(where, f"op must be one of the known ops; got {op!r}")
    precision = _str(g, "precision", where) or None
    if precision is not None and precision not in PRECISIONS:
        raise _bad(where, f"precision must be one of {PRECISIONS}; got {precision!r}")
    inputs, attrs = _loads(g, "inputs", where), _loads(g, "attrs", where)
    meta = _loads(g, "meta", where)
    if not isinstance(attrs, dict) or not isinstance(meta, dict):
        raise _bad(where, "attrs and meta must be JSON objects")
    keys = _members(h5py, g, where)
    allowed = set(LAYOUT[precision])
    for k in keys:
        if k not in allowed and not k.startswith("param."):
            raise _bad(f"{where}/{k}", f"is not part of a {precision} layer")
    tensors = {k: _array(h5py, g, k, where) for k in keys}
    if "weight" in g and "packed_bits" in g["weight"].attrs:
        tensors["weight"] = _unpacked(g["weight"], precision, meta, where)
    if "weight_zero_point" in tensors:
        tensors["weight_zero_point"] = tensors["weight_zero_point"].astype(np.int64)
    params = {}
    if precision is not None and "weight" in tensors:  # shapes only, for checks
        params = {
            k: np.zeros(tensors[k].shape, np.float32)
            for k in ("weight", "bias")
            if k in tensors
        }
    else:
        params = {k[6:]: v for k, v in tensors.items() if k.startswith("param.")}
    node = Node(name, op, inputs, params=params, attrs=attrs)  # validates attrs
    if "scheme" in meta:
        meta["scheme"] = dict(meta["scheme"])
    return MixedLayer(name, op, node.inputs, node.attrs, precision, tensors, meta)
