"""Save and load a QuantizedModel as HDF5 (specs/quantized_model_h5.md).

Writing goes to a temporary file in the destination folder, then
``os.replace`` renames it, so a reader never sees a half-written model.
Reading executes nothing from the file: only hard links to groups and
datasets of plain numeric dtypes are followed, attributes are UTF-8 strings
or integers, structured values are JSON parsed by :func:`json.loads`, and
every field is validated (names, ops, attrs, shapes, dtypes, code ranges,
scales, wiring) before a model is built.  Anything else raises
:class:`~refquant.errors.UnsafeFileError` or
:class:`~refquant.errors.InvalidArgumentError` naming the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from refquant._fileio import atomic_path
from refquant.errors import (
    CorruptFileError,
    InvalidArgumentError,
    InvalidTypeError,
    RefquantError,
    UnsafeFileError,
)
from refquant.graph.nodes import OPS, Node
from refquant.numerics.scheme import GRANULARITIES, QuantScheme
from refquant.ptq.qmodel import MODES, QuantizedModel
from refquant.ptq.qtensors import QuantizedNode, QuantizedWeight, TensorQParams

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]

FORMAT = "refquant.quantized_model"
FORMAT_VERSION = 1
MAX_STRING = 1 << 20  # bytes of one JSON / string attribute
MAX_ELEMENTS = 1 << 31  # elements of one dataset
MAX_NODES = 100_000

_ROOT_ATTRS = {
    "format",
    "format_version",
    "mode",
    "name",
    "inputs",
    "outputs",
    "num_nodes",
}
_NODE_ATTRS = {"name", "op", "inputs", "attrs"}
_NODE_DATASETS = {"weight_codes", "weight_scale", "weight_zero_point", "bias"}
_SCHEME_KEYS = {
    "bits",
    "symmetric",
    "narrow_range",
    "granularity",
    "axis",
    "group_size",
}
_DTYPES = {
    "weight_codes": ("int8",),
    "weight_scale": ("float64",),
    "weight_zero_point": ("int64",),
    "bias": ("int32", "float32"),
    "param": ("float32",),
    "scale": ("float64",),
    "zero_point": ("int32",),
    "bits": ("int32",),
}


def _h5py():
    try:
        import h5py
    except ImportError:
        from refquant.datasets import OptionalDependencyError

        raise OptionalDependencyError(
            "saving and loading quantized models needs h5py; `pip install h5py`"
        ) from None
    return h5py


# ---------------------------------------------------------------------- save
def _json(value) -> str:
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(i) for i in v]
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            return float(v)
        return v

    return json.dumps(plain(value), allow_nan=False)


def _write(f, model: QuantizedModel) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["mode"] = model.mode
    f.attrs["name"] = model.name
    f.attrs["inputs"] = _json(model.inputs)
    f.attrs["outputs"] = _json(model.outputs)
    f.attrs["num_nodes"] = len(model.nodes)
    t = f.create_group("tensors")
    names = list(model.tensor_qparams)
    t.attrs["names"] = _json(names)
    qps = [model.tensor_qparams[k] for k in names]
    t.create_dataset("scale", data=np.array([q.scale for q in qps], np.float64))
    t.create_dataset("zero_point", data=np.array([q.zero_point for q in qps], np.int32))
    t.create_dataset("bits", data=np.array([q.bits for q in qps], np.int32))
    nodes = f.create_group("nodes")
    for i, n in enumerate(model.nodes):
        _write_node(nodes.create_group(f"{i:06d}"), n)


def _write_node(g, n: QuantizedNode) -> None:
    g.attrs["name"] = n.name
    g.attrs["op"] = n.op
    g.attrs["inputs"] = _json(n.inputs)
    g.attrs["attrs"] = _json(dict(n.attrs))
    if n.weight is not None:
        w = n.weight
        ds = g.create_dataset("weight_codes", data=w.codes)
        s = w.scheme
        ds.attrs["scheme"] = _json({k: getattr(s, k) for k in sorted(_SCHEME_KEYS)})
        g.create_dataset("weight_scale", data=np.asarray(w.scale, np.float64))
        g.create_dataset("weight_zero_point", data=np.asarray(w.zero_point, np.int64))
    if n.bias is not None:
        g.create_dataset("bias", data=n.bias)
    if n.params:
        p = g.create_group("params")
        for k, v in n.params.items():
            p.create_dataset(k, data=np.asarray(v, np.float32))


def save(model: QuantizedModel, path) -> Path:
    """Write ``model`` to ``path`` (HDF5) through a temporary file and a rename.

    Returns the final path.
    """
    if not isinstance(model, QuantizedModel):
        raise InvalidTypeError(
            f"model must be a QuantizedModel; got model of type {type(model).__name__}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike; got path={path!r}")
    h5py = _h5py()
    final = Path(path)
    if not final.parent.is_dir():
        raise InvalidArgumentError(
            f"path must be in an existing folder; got path={str(final)!r}"
        )
    with atomic_path(final, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
        _write(f, model)
    return final


# ---------------------------------------------------------------------- load
def _bad(where: str, what: str) -> CorruptFileError:
    return CorruptFileError(f"invalid quantized model file: {where} {what}")


def _check_scale(values, where: str) -> None:
    """Scales must be normal float32 numbers: every backend computes with them so."""
    arr = np.asarray(values, np.float64)
    tiny, big = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(arr) & (arr >= tiny) & (arr <= big))
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _bad(
            where,
            f"must hold scales in [{tiny!r}, {big!r}] (normal float32, > 0); got "
            f"{float(arr[index])!r}" + (f" at index {index}" if index else ""),
        )


def _check_members(h5py, group, allowed: set, where: str) -> None:
    for key in group.keys():
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise UnsafeFileError(
                f"{where}/{key} is a {type(link).__name__}; only hard links inside "
                "the file are followed"
            )
        if key not in allowed:
            raise _bad(
                f"{where}/{key}",
                f"is not part of the layout (allowed: {sorted(allowed)})",
            )
    for key in group.attrs.keys():
        if key not in _ROOT_ATTRS | _NODE_ATTRS | {"names", "scheme"}:
            raise _bad(f"{where} attribute {key!r}", "is not part of the layout")


def _str_attr(obj, key: str, where: str) -> str:
    if key not in obj.attrs:
        raise _bad(where, f"lacks attribute {key!r}")
    v = obj.attrs[key]
    if isinstance(v, bytes):
        v = v.decode("utf-8", errors="strict")
    if not isinstance(v, str):
        raise _bad(f"{where} attribute {key!r}", f"must be a string; got {type(v)}")
    if len(v) > MAX_STRING:
        raise _bad(f"{where} attribute {key!r}", f"is longer than {MAX_STRING}")
    return v


def _int_attr(obj, key: str, where: str) -> int:
    v = obj.attrs.get(key)
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    raise _bad(f"{where} attribute {key!r}", f"must be an integer; got {v!r}")


def _json_attr(obj, key: str, where: str):
    text = _str_attr(obj, key, where)
    try:
        return json.loads(text)
    except RecursionError:
        raise _bad(f"{where} attribute {key!r}", "is JSON nested too deeply") from None
    except ValueError as exc:
        raise _bad(f"{where} attribute {key!r}", f"is not valid JSON ({exc})") from None


def _str_list(value, where: str) -> tuple:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(where, f"must be a JSON list of non-empty strings; got {value!r}")
    return tuple(value)


def _dataset(h5py, group, key: str, kind: str, where: str) -> np.ndarray:
    if key not in group:
        raise _bad(f"{where}/{key}", "is missing")
    ds = group[key]
    if not isinstance(ds, h5py.Dataset):
        raise _bad(f"{where}/{key}", "must be a dataset")
    if ds.is_virtual or ds.external:
        raise UnsafeFileError(f"{where}/{key} reads data outside this file")
    if ds.dtype.name not in _DTYPES[kind]:
        raise _bad(
            f"{where}/{key}",
            f"must have dtype {' or '.join(_DTYPES[kind])}; got {ds.dtype}",
        )
    if ds.size > MAX_ELEMENTS:
        raise _bad(f"{where}/{key}", f"has {ds.size} elements (limit {MAX_ELEMENTS})")
    if ds.shape is None:
        raise _bad(f"{where}/{key}", "has no data")
    return np.asarray(ds[()])


def _read_scheme(value, where: str) -> QuantScheme:
    if not isinstance(value, dict) or set(value) != _SCHEME_KEYS:
        raise _bad(where, f"must be a JSON object with keys {sorted(_SCHEME_KEYS)}")
    if value["granularity"] not in GRANULARITIES:
        raise _bad(where, f"has granularity {value['granularity']!r}")
    try:
        return QuantScheme(signed=True, **value)
    except (InvalidArgumentError, InvalidTypeError) as exc:
        raise _bad(where, f"is not a valid scheme: {exc}") from None


def _read_weight(h5py, g, op: str, where: str) -> QuantizedWeight:
    codes = _dataset(h5py, g, "weight_codes", "weight_codes", where)
    scheme = _read_scheme(
        _json_attr(g["weight_codes"], "scheme", f"{where}/weight_codes"),
        f"{where}/weight_codes scheme",
    )
    if scheme.bits > 8:
        raise _bad(where, f"weight bits must be <= 8; got {scheme.bits}")
    scale = _dataset(h5py, g, "weight_scale", "weight_scale", where)
    _check_scale(scale, f"{where}/weight_scale")
    zp = _dataset(h5py, g, "weight_zero_point", "weight_zero_point", where)
    try:
        return QuantizedWeight(codes, scale, zp, scheme, op)
    except (InvalidArgumentError, InvalidTypeError) as exc:
        raise _bad(f"{where} weight", str(exc)) from None


def _read_node(h5py, g, mode: str, where: str) -> QuantizedNode:
    name = _str_attr(g, "name", where)
    op = _str_attr(g, "op", where)
    if op not in OPS:
        raise _bad(f"{where} op", f"must be one of {', '.join(OPS)}; got {op!r}")
    inputs = _str_list(_json_attr(g, "inputs", where), f"{where} inputs")
    attrs = _json_attr(g, "attrs", where)
    if not isinstance(attrs, dict):
        raise _bad(f"{where} attrs", "must be a JSON object")
    allowed = _NODE_DATASETS | {"params"}
    _check_members(h5py, g, allowed, where)
    weight = None
    if "weight_codes" in g:
        weight = _read_weight(h5py, g, op, where)
    elif "weight_scale" in g or "weight_zero_point" in g:
        raise _bad(where, "has weight qparams without weight_codes")
    bias = None
    if "bias" in g:
        bias = _dataset(h5py, g, "bias", "bias", where)
        if (bias.dtype == np.int32) != (mode == "static"):
            raise _bad(
                f"{where}/bias",
                f"dtype {bias.dtype} does not fit mode "
                f"{mode!r} (static: int32, else float32)",
            )
    params = {}
    if "params" in g:
        pg = g["params"]
        if not isinstance(pg, h5py.Group):
            raise _bad(f"{where}/params", "must be a group")
        _check_members(h5py, pg, {"gamma", "beta", "mean", "var"}, f"{where}/params")
        params = {k: _dataset(h5py, pg, k, "param", f"{where}/params") for k in pg}
    attrs = _validated_attrs(name, op, inputs, attrs, weight, bias, params, where)
    return QuantizedNode(name, op, inputs, attrs, weight, bias, params)


def _validated_attrs(name, op, inputs, attrs, weight, bias, params, where) -> dict:
    """Rebuild an FP32 Node: the graph's own checks validate attrs and shapes."""
    fparams = dict(params)
    if weight is not None:
        fparams["weight"] = np.zeros(weight.codes.shape, np.float32)
    if bias is not None:
        fparams["bias"] = np.zeros(bias.shape, np.float32)
    try:
        node = Node(name, op, inputs, params=fparams, attrs=attrs)
    except (InvalidArgumentError, InvalidTypeError) as exc:
        raise _bad(where, f"does not describe a valid {op} node: {exc}") from None
    return dict(node.attrs)


def _read_tensors(h5py, f, mode: str) -> dict:
    g = f["tensors"]
    if not isinstance(g, h5py.Group):
        raise _bad("/tensors", "must be a group")
    _check_members(h5py, g, {"scale", "zero_point", "bits"}, "/tensors")
    names = _str_list(_json_attr(g, "names", "/tensors"), "/tensors names")
    scale = _dataset(h5py, g, "scale", "scale", "/tensors")
    zp = _dataset(h5py, g, "zero_point", "zero_point", "/tensors")
    bits = _dataset(h5py, g, "bits", "bits", "/tensors")
    if not (scale.shape == zp.shape == bits.shape == (len(names),)):
        raise _bad("/tensors", f"datasets must each have shape ({len(names)},)")
    if mode != "static" and names:
        raise _bad("/tensors", f"must be empty for mode {mode!r}")
    out = {}
    for i, k in enumerate(names):
        _check_scale(scale[i], f"/tensors/scale entry {i} (tensor {k!r})")
        try:
            out[k] = TensorQParams(float(scale[i]), int(zp[i]), int(bits[i]))
        except (InvalidArgumentError, InvalidTypeError) as exc:
            raise _bad(f"/tensors entry {k!r}", str(exc)) from None
    if len(out) != len(names):
        raise _bad("/tensors names", "repeat a name")
    return out


def load(path) -> QuantizedModel:
    """Read and validate a model written by :func:`save`.

    Raises
    ------
    InvalidArgumentError
        A field is missing, has the wrong type, dtype, shape or value.
    UnsafeFileError
        The file links outside itself or to data this reader refuses.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike; got path={path!r}")
    h5py = _h5py()
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError(f"path must name an existing file; got {str(p)!r}")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise CorruptFileError(
            f"path must be an HDF5 file written by refquant; {str(p)!r} is not "
            f"readable as HDF5 ({exc})"
        ) from None
    try:
        with f:
            return _read(h5py, f)
    except RefquantError as exc:
        raise type(exc)(f"{str(p)!r}: {exc}") from None
    except RecursionError:
        raise CorruptFileError(
            f"{str(p)!r}: invalid quantized model file: nested too deeply"
        ) from None
    except (KeyError, OSError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptFileError(
            f"{str(p)!r}: invalid quantized model file: {type(exc).__name__}: {exc}"
        ) from None


def _read(h5py, f) -> QuantizedModel:
    fmt = _str_attr(f, "format", "/")
    if fmt != FORMAT:
        raise _bad("/ format", f"must be {FORMAT!r}; got {fmt!r}")
    version = _int_attr(f, "format_version", "/")
    if version != FORMAT_VERSION:
        raise _bad(
            "/ format_version",
            f"must be {FORMAT_VERSION}; got {version} "
            "(written by another refquant version)",
        )
    _check_members(h5py, f, {"tensors", "nodes"}, "")
    mode = _str_attr(f, "mode", "/")
    if mode not in MODES:
        raise _bad("/ mode", f"must be one of {MODES}; got {mode!r}")
    name = _str_attr(f, "name", "/")
    inputs = _str_list(_json_attr(f, "inputs", "/"), "/ inputs")
    outputs = _str_list(_json_attr(f, "outputs", "/"), "/ outputs")
    count = _int_attr(f, "num_nodes", "/")
    if not 0 < count <= MAX_NODES:
        raise _bad("/ num_nodes", f"must be in [1, {MAX_NODES}]; got {count}")
    if "tensors" not in f or "nodes" not in f:
        raise _bad("/", "lacks the group 'tensors' or 'nodes'")
    qp = _read_tensors(h5py, f, mode)
    ng = f["nodes"]
    if not isinstance(ng, h5py.Group):
        raise _bad("/nodes", "must be a group")
    keys = [f"{i:06d}" for i in range(count)]
    _check_members(h5py, ng, set(keys), "/nodes")
    if set(ng.keys()) != set(keys):
        raise _bad("/nodes", f"must hold exactly the groups 000000..{count - 1:06d}")
    nodes = []
    for k in keys:
        if not isinstance(ng[k], h5py.Group):
            raise _bad(f"/nodes/{k}", "must be a group")
        nodes.append(_read_node(h5py, ng[k], mode, f"/nodes/{k}"))
    try:
        return QuantizedModel(nodes, inputs, outputs, qp, mode=mode, name=name)
    except (InvalidArgumentError, InvalidTypeError, NotImplementedError) as exc:
        raise _bad("model", str(exc)) from None
