"""Save and load a MixedModel as HDF5, each layer with its precision.

Layout (version 1)::

    /                     attrs format="refquant.mixed_model", format_version=1,
                          name, inputs (JSON), outputs (JSON), num_layers
    /tensors              attr names (JSON list); datasets scale float64,
                          zero_point int32, bits int32: int8 activation qparams
    /layers/NNNNNN        attrs name, op, inputs (JSON), attrs (JSON),
                          precision ("" for unweighted ops), meta (JSON);
                          one dataset per stored tensor (layers.LAYOUT names
                          and dtypes; "param.<k>" float32)

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
FORMAT_VERSION = 1
MAX_STRING = 1 << 20


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
        g.create_dataset(k, data=v)


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
        if not isinstance(version, (int, np.integer)) or int(version) != 1:
            raise _bad("/", f"format_version must be 1; got {version!r}")
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
