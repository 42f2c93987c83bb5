"""Nodes of the FP32 model graph and the table of ops they may name.

A node is one op applied to named inputs: ``Node(name, op, inputs, params,
attrs)``.  ``params`` hold float32 arrays in the engine's layouts (NHWC
activations; conv weights OHWI ``[C_out, kh, kw, C_in/groups]``; depthwise
``[1, kh, kw, C_in*depth_multiplier]``; dense ``[C_out, K]``); ``attrs`` hold
plain Python values.  Construction validates and normalizes everything, so a
node that exists is well formed.  See specs/graph.md section 2.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from refquant._validation import FloatRange, OneOf, check, check_type
from refquant.errors import InvalidArgumentError

ACTIVATIONS = (None, "relu", "relu6")

_MISSING = object()


@dataclass(frozen=True)
class OpSpec:
    """What one op accepts: input count, params and attrs with their defaults."""

    name: str
    min_inputs: int = 1
    max_inputs: int | None = 1
    params: tuple[str, ...] = ()
    optional_params: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)


_CONV_ATTRS = {
    "strides": (1, 1),
    "dilations": (1, 1),
    "padding": "valid",
    "activation": None,
}
_POOL_ATTRS = {"pool_size": _MISSING, "strides": None, "padding": "valid"}

OP_SPECS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec(
            "Conv2D",
            params=("weight",),
            optional_params=("bias",),
            attrs={**_CONV_ATTRS, "groups": 1},
        ),
        OpSpec(
            "DepthwiseConv2D",
            params=("weight",),
            optional_params=("bias",),
            attrs={**_CONV_ATTRS, "depth_multiplier": 1},
        ),
        OpSpec(
            "Dense",
            params=("weight",),
            optional_params=("bias",),
            attrs={"activation": None},
        ),
        OpSpec(
            "BatchNorm",
            params=("gamma", "beta", "mean", "var"),
            attrs={"epsilon": 1e-5},
        ),
        OpSpec("ReLU"),
        OpSpec("ReLU6"),
        OpSpec("MaxPool", attrs=dict(_POOL_ATTRS)),
        OpSpec("AvgPool", attrs={**_POOL_ATTRS, "count_include_pad": False}),
        OpSpec("GlobalAvgPool", attrs={"keepdims": False}),
        OpSpec("Add", min_inputs=2, max_inputs=None, attrs={"activation": None}),
        OpSpec("Concat", min_inputs=1, max_inputs=None, attrs={"axis": -1}),
        OpSpec("Flatten"),
        OpSpec("Reshape", attrs={"shape": _MISSING}),
        OpSpec("Pad", attrs={"paddings": _MISSING, "value": 0.0}),
        OpSpec("Softmax", attrs={"axis": -1}),
        OpSpec("Sigmoid"),
        OpSpec("Tanh"),
        # added for imported models (ONNX): elementwise and layout ops
        OpSpec("Mul", min_inputs=2, max_inputs=None),
        OpSpec("ScaleShift", optional_params=("scale", "shift")),
        OpSpec("Clip", attrs={"min": None, "max": None}),
        OpSpec("HardSigmoid", attrs={"alpha": 0.2, "beta": 0.5}),
        OpSpec("HardSwish"),
        OpSpec("Transpose", attrs={"perm": _MISSING}),
    )
}

OPS = tuple(OP_SPECS)


# ---------------------------------------------------------------- attr rules
def _int_tuple(name: str, value, length: int, low: int) -> tuple[int, ...]:
    """Normalize an int or a sequence of ``length`` ints, each >= ``low``."""
    items = [value] * length if isinstance(value, numbers.Integral) else value
    ok = (
        isinstance(items, Sequence)
        and not isinstance(items, str)
        and len(items) == length
        and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low
            for v in items
        )
    )
    if not ok:
        raise InvalidArgumentError(
            f"{name} must be an int >= {low} or a sequence of {length} such ints; "
            f"got {name}={value!r}"
        )
    return tuple(int(v) for v in items)


def normalize_padding(name: str, value):
    """Return ``"valid"``, ``"same"`` or ``((top, bottom), (left, right))``.

    An int ``p`` means ``((p, p), (p, p))``; a pair ``(ph, pw)`` of ints means
    ``((ph, ph), (pw, pw))``.
    """
    if isinstance(value, str):
        check(name, value, OneOf(("valid", "same")))
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, Sequence) and len(value) == 2:
        if all(isinstance(v, numbers.Integral) for v in value):
            value = ((value[0], value[0]), (value[1], value[1]))
        try:
            return tuple(_int_tuple(name, v, 2, 0) for v in value)
        except InvalidArgumentError:
            pass
    raise InvalidArgumentError(
        f"{name} must be 'valid', 'same', an int >= 0, (ph, pw) or "
        f"((top, bottom), (left, right)) of ints >= 0; got {name}={value!r}"
    )


def _normalize_paddings(name: str, value) -> tuple[tuple[int, int], ...]:
    ok = isinstance(value, Sequence) and len(value) >= 1
    if ok:
        try:
            return tuple(_int_tuple(name, v, 2, 0) for v in value)
        except (InvalidArgumentError, TypeError):
            pass
    raise InvalidArgumentError(
        f"{name} must be a sequence of (before, after) int pairs >= 0, one per "
        f"axis including the batch axis; got {name}={value!r}"
    )


def _normalize_shape(name: str, value) -> tuple[int, ...]:
    ok = isinstance(value, Sequence) and not isinstance(value, str)
    ok = ok and all(
        isinstance(v, numbers.Integral)
        and not isinstance(v, bool)
        and (v > 0 or v == -1)
        for v in value
    )
    if not ok or sum(1 for v in value if v == -1) > 1:
        raise InvalidArgumentError(
            f"{name} must be a sequence of ints > 0 (at most one -1), batch axis "
            f"excluded; got {name}={value!r}"
        )
    return tuple(int(v) for v in value)


def _normalize_attr(op: str, key: str, value):
    where = f"{op} attr {key}"
    if key in ("strides", "dilations", "pool_size"):
        if key == "strides" and value is None:
            return None
        return _int_tuple(where, value, 2, 1)
    if key == "padding":
        return normalize_padding(where, value)
    if key == "activation":
        check(where, value, OneOf(ACTIVATIONS))
        return value
    if key in ("groups", "depth_multiplier"):
        return _int_tuple(where, value, 1, 1)[0]
    if key == "axis":
        return _int_tuple(where, value, 1, -(2**31))[0]
    if key in ("keepdims", "count_include_pad"):
        check_type(where, value, (bool, np.bool_), "a bool")
        return bool(value)
    if key == "epsilon":
        _check_positive_float(where, value)
        return float(value)
    if key == "value":
        check_type(where, value, (numbers.Real,), "a real number")
        return float(value)
    if key == "shape":
        return _normalize_shape(where, value)
    if key == "paddings":
        return _normalize_paddings(where, value)
    if key in ("alpha", "beta"):
        check(where, value, FloatRange(None, None))
        _check_finite(where, value)
        return float(value)
    if key in ("min", "max"):
        if value is None:
            return None
        check(where, value, FloatRange(None, None))
        return float(value)
    if key == "perm":
        return _normalize_perm(where, value)
    raise AssertionError(f"no rule for attr {key}")  # unreachable: table-driven


def _check_positive_float(name: str, value) -> None:
    check(name, value, FloatRange(0.0, None, low_open=True))


def _check_finite(name: str, value) -> None:
    if not np.isfinite(float(value)):
        raise InvalidArgumentError(
            f"{name} must be a finite real number; got {name}={value!r}"
        )


def _normalize_perm(name: str, value) -> tuple[int, ...]:
    """A permutation of ``range(rank)`` that keeps the batch axis first."""
    ok = isinstance(value, Sequence) and not isinstance(value, str) and value
    ok = ok and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value
    )
    if not ok or sorted(value) != list(range(len(value))) or value[0] != 0:
        raise InvalidArgumentError(
            f"{name} must be a permutation of 0..rank-1 with perm[0] == 0 (the "
            f"batch axis stays first); got {name}={value!r}"
        )
    return tuple(int(v) for v in value)


def _check_attr_relations(name: str, op: str, attrs: dict) -> None:
    """Constraints between attrs of one node (Clip needs min <= max)."""
    low, high = attrs.get("min"), attrs.get("max")
    if op == "Clip" and low is not None and high is not None and low > high:
        raise InvalidArgumentError(
            f"node {name!r}: Clip attrs must satisfy min <= max; got min={low!r}, "
            f"max={high!r}"
        )


def _normalize_attrs(spec: OpSpec, node_name: str, attrs: Mapping) -> dict:
    unknown = sorted(set(attrs) - set(spec.attrs))
    if unknown:
        raise InvalidArgumentError(
            f"node {node_name!r}: op {spec.name} has no attr {unknown[0]!r}; "
            f"allowed attrs are {sorted(spec.attrs)}"
        )
    out = {}
    for key, default in spec.attrs.items():
        value = attrs.get(key, default)
        if value is _MISSING:
            raise InvalidArgumentError(
                f"node {node_name!r}: op {spec.name} needs attr {key!r}"
            )
        out[key] = _normalize_attr(spec.name, key, value)
    if "pool_size" in out and out["strides"] is None:
        out["strides"] = out["pool_size"]  # Keras and PyTorch default
    return out


# ---------------------------------------------------------------- params
def _as_param(node_name: str, key: str, value) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float32, copy=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"node {node_name!r}: param {key!r} must be a float array; got {value!r}"
        ) from exc
    if not np.all(np.isfinite(arr)):
        raise InvalidArgumentError(
            f"node {node_name!r}: param {key!r} must be finite; it holds NaN or inf"
        )
    arr.setflags(write=False)
    return arr


def _shape_error(node_name, op, key, shape, allowed):
    raise InvalidArgumentError(
        f"node {node_name!r}: {op} param {key!r} must have shape {allowed}; "
        f"got shape {tuple(shape)}"
    )


def _check_param_shapes(name: str, op: str, p: dict, attrs: dict) -> None:
    if op in ("Conv2D", "DepthwiseConv2D", "Dense"):
        w = p["weight"]
        rank = 2 if op == "Dense" else 4
        if w.ndim != rank or (op == "DepthwiseConv2D" and w.shape[0] != 1):
            allowed = {
                "Conv2D": "(C_out, kh, kw, C_in/groups) (OHWI)",
                "DepthwiseConv2D": "(1, kh, kw, C_in*depth_multiplier)",
                "Dense": "(C_out, K)",
            }[op]
            _shape_error(name, op, "weight", w.shape, allowed)
        c_out = w.shape[-1] if op == "DepthwiseConv2D" else w.shape[0]
        if "bias" in p and p["bias"].shape != (c_out,):
            _shape_error(name, op, "bias", p["bias"].shape, f"({c_out},)")
        if op == "Conv2D" and c_out % attrs["groups"]:
            raise InvalidArgumentError(
                f"node {name!r}: Conv2D attr groups must divide C_out={c_out}; "
                f"got groups={attrs['groups']}"
            )
        if op == "DepthwiseConv2D" and c_out % attrs["depth_multiplier"]:
            raise InvalidArgumentError(
                f"node {name!r}: DepthwiseConv2D attr depth_multiplier must divide "
                f"C_in*depth_multiplier={c_out}; got "
                f"depth_multiplier={attrs['depth_multiplier']}"
            )
    if op == "BatchNorm":
        c = p["gamma"].shape
        for key in ("gamma", "beta", "mean", "var"):
            if p[key].ndim != 1 or p[key].shape != c:
                _shape_error(name, op, key, p[key].shape, f"(C,) with C={c}")
        if np.any(p["var"] < 0):
            raise InvalidArgumentError(
                f"node {name!r}: BatchNorm param 'var' must be >= 0; got min "
                f"{float(p['var'].min())!r}"
            )


def _normalize_params(spec: OpSpec, name: str, params: Mapping) -> dict:
    allowed = spec.params + spec.optional_params
    for key in params:
        if key not in allowed:
            raise InvalidArgumentError(
                f"node {name!r}: op {spec.name} has no param {key!r}; allowed "
                f"params are {list(allowed)}"
            )
    for key in spec.params:
        if key not in params:
            raise InvalidArgumentError(
                f"node {name!r}: op {spec.name} needs param {key!r}"
            )
    return {k: _as_param(name, k, v) for k, v in params.items() if v is not None}


# ---------------------------------------------------------------- the node
@dataclass(frozen=True, eq=False)
class Node:
    """One op applied to named inputs; immutable once built.

    Parameters
    ----------
    name : str
        Unique name in its graph; later nodes refer to its output by it.
    op : str
        One of :data:`OPS`.
    inputs : sequence of str
        Names of graph inputs or of earlier nodes, in the op's order.
    params : mapping of str to array_like
        Copied to read-only float32 arrays (layouts in the module docstring).
    attrs : mapping
        Op attributes; missing ones take the defaults of ``OP_SPECS[op]``.

    Examples
    --------
    >>> n = Node("r", "ReLU", ["x"])
    >>> n.inputs, dict(n.attrs)
    (('x',), {})
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    params: Mapping[str, np.ndarray] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        check_type("name", self.name, (str,), "a non-empty str")
        if not self.name:
            raise InvalidArgumentError("name must be a non-empty str; got name=''")
        check("op", self.op, OneOf(OPS))
        spec = OP_SPECS[self.op]
        inputs = (self.inputs,) if isinstance(self.inputs, str) else self.inputs
        inputs = tuple(inputs)
        for i in inputs:
            check_type(f"node {self.name!r} input", i, (str,), "a str")
        high = spec.max_inputs
        if len(inputs) < spec.min_inputs or (high is not None and len(inputs) > high):
            allowed = f"{spec.min_inputs}" + (
                "" if high == spec.min_inputs else f" to {high or 'any number'}"
            )
            raise InvalidArgumentError(
                f"node {self.name!r}: op {self.op} takes {allowed} input(s); got "
                f"{len(inputs)}: {list(inputs)}"
            )
        attrs = _normalize_attrs(spec, self.name, dict(self.attrs))
        params = _normalize_params(spec, self.name, dict(self.params))
        _check_param_shapes(self.name, self.op, params, attrs)
        _check_attr_relations(self.name, self.op, attrs)
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "attrs", MappingProxyType(attrs))
        object.__setattr__(self, "params", MappingProxyType(params))

    def replace(self, **changes) -> Node:
        """Return a copy with some fields changed (validated again)."""
        fields = {
            "name": self.name,
            "op": self.op,
            "inputs": self.inputs,
            "params": dict(self.params),
            "attrs": dict(self.attrs),
        }
        fields.update(changes)
        return Node(**fields)

    @property
    def num_params(self) -> int:
        """Number of float parameters (BatchNorm statistics included)."""
        return int(sum(p.size for p in self.params.values()))

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape) for k, v in self.params.items()}
        return (
            f"Node({self.name!r}, {self.op!r}, inputs={list(self.inputs)}, "
            f"params={shapes}, attrs={dict(self.attrs)})"
        )
