"""ONNX FP32 importer: an ONNX ``ModelProto`` -> an FP32 :class:`Graph` (NHWC).

``load_onnx(path_or_model)`` walks the ONNX nodes in order and emits graph
nodes that compute the same function in the engine's layouts.  Each run-time
ONNX tensor is tracked with a permutation ``perm`` such that the engine holds
``onnx_tensor.transpose(perm)``: 4-D activations are kept NHWC
(``perm = (0, 2, 3, 1)``), everything else in ONNX order.  A ``Transpose``
node is inserted only where an op needs the other order; an ONNX Transpose
that keeps the batch axis first changes ``perm`` and emits nothing.  Weights
are converted once: conv OIHW -> OHWI, depthwise ``[C*M, 1, kh, kw]`` ->
``[1, kh, kw, C*M]``, Gemm/MatMul -> ``[C_out, K]``.  Initializers and
``Constant`` nodes are both constants; ops whose inputs are all constant
(Reshape, Cast, Shape, Slice, Gather, Concat, arithmetic...) are folded with
NumPy at import time.  See specs/io_onnx.md.

``onnx`` is an optional extra (``pip install 'refquant[peers]'``); it is
imported on the first call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from refquant._validation import check_type
from refquant.errors import CorruptFileError, InvalidArgumentError, RefquantError
from refquant.graph.graph import Graph
from refquant.graph.nodes import Node

__all__ = ["UnsupportedOnnxError", "load_onnx", "SUPPORTED_OPS"]

NHWC = (0, 2, 3, 1)
_WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")


class UnsupportedOnnxError(RefquantError, NotImplementedError):
    """An ONNX op, attribute value or pattern that the importer cannot express."""


# ---------------------------------------------------------------- onnx module
def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        from refquant.datasets import OptionalDependencyError

        raise OptionalDependencyError(
            "load_onnx needs the onnx package, an optional extra of refquant; "
            "install it with `pip install 'refquant[peers]'`"
        ) from None
    return onnx, numpy_helper


def _as_model(onnx, model):
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise InvalidArgumentError(
                f"path_or_model must be an existing .onnx file or an "
                f"onnx.ModelProto; got path_or_model={path!r} (no such file)"
            )
        return _parsed(lambda: onnx.load(path), f"path_or_model={path!r}")
    if isinstance(model, (bytes, bytearray)):
        blob = bytes(model)
        return _parsed(
            lambda: onnx.load_from_string(blob),
            f"path_or_model (bytes of length {len(blob)})",
        )
    check_type(
        "path_or_model",
        model,
        (str, os.PathLike, bytes, onnx.ModelProto),
        "a path to an .onnx file, its bytes or an onnx.ModelProto",
    )
    return model  # unreachable: check_type raised


def _parsed(load, source: str):
    """``load()`` with every parse or external-data failure named as a file error.

    onnx raises protobuf's DecodeError for corrupt bytes and its own
    ValidationError for external data outside the model's folder, behind a
    symbolic link or missing; an empty file parses as a ModelProto without a
    graph.
    """
    try:
        model = load()
    except RecursionError:
        raise CorruptFileError(
            f"{source} is not a readable ONNX model: its messages are nested too deeply"
        ) from None
    except MemoryError:
        raise CorruptFileError(
            f"{source} is not a readable ONNX model: it asks for more memory than "
            "is available"
        ) from None
    except Exception as e:  # DecodeError, ValidationError, OSError, ...
        raise CorruptFileError(
            f"{source} is not a readable ONNX model: {type(e).__name__}: {e}"
        ) from None
    if not model.HasField("graph") or not (
        len(model.graph.node) or len(model.graph.output)
    ):
        raise CorruptFileError(
            f"{source} is not a readable ONNX model: it holds no graph (no nodes "
            "and no outputs; an empty or non-ONNX file)"
        )
    return model


def _source(path_or_model) -> str:
    if isinstance(path_or_model, (str, os.PathLike)):
        return f"path_or_model={os.fspath(path_or_model)!r}"
    if isinstance(path_or_model, (bytes, bytearray)):
        return f"path_or_model (bytes of length {len(path_or_model)})"
    return "path_or_model (an onnx.ModelProto)"


def _check_not_degenerate(model, source: str) -> None:
    """A graph must declare an output and compute it with at least one node."""
    if not len(model.graph.output):
        raise CorruptFileError(f"{source} holds an ONNX graph without outputs")
    if not len(model.graph.node):
        raise CorruptFileError(
            f"{source} holds an ONNX graph without nodes (nothing to compute)"
        )


def _malformed(source: str, exc: BaseException) -> CorruptFileError:
    """A library error raised while reading a parsed model, named as a file error."""
    if isinstance(exc, RecursionError):
        what = "its graph is nested too deeply"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return CorruptFileError(f"{source} holds a malformed ONNX graph: {what}")


# ---------------------------------------------------------------- tensors
@dataclass(frozen=True)
class _Act:
    """A run-time tensor: the engine holds ``onnx_tensor.transpose(perm)``.

    ``shape`` is the ONNX-order shape (None for an unknown dim).  ``colperm``
    is set on a 2-D tensor flattened from NHWC: engine column ``j`` holds ONNX
    column ``colperm[j]``.
    """

    name: str
    perm: tuple[int, ...]
    shape: tuple[int | None, ...]
    colperm: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)


def _identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def _inverse(perm) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _native_perm(rank: int) -> tuple[int, ...]:
    """The layout the importer prefers: NHWC for 4-D, ONNX order otherwise."""
    return NHWC if rank == 4 else _identity(rank)


def _same_memory_order(act: _Act) -> bool:
    """True when the engine's row-major order equals ONNX's (size-1 axes aside)."""
    axes = [a for a in act.perm if act.shape[a] != 1]
    return axes == sorted(axes) and act.colperm is None


def _prod(dims) -> int | None:
    out = 1
    for d in dims:
        if d is None:
            return None
        out *= d
    return out


def _attrs(onnx, node) -> dict:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


# ---------------------------------------------------------------- importer
class _Importer:
    def __init__(self, model, onnx, numpy_helper):
        self.onnx, self.nh = onnx, numpy_helper
        self.model = model
        self.opset = next(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1
        )
        g = model.graph
        self.consts: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in g.initializer
        }
        self.batch_mask: dict[str, np.ndarray] = {}  # const shape values
        self.acts: dict[str, _Act] = {}
        self.nodes: dict[str, Node] = {}
        self.aliases: dict[str, int] = {}
        self.taken: set[str] = set()
        self.skip: set[int] = set()
        self.inputs: list[str] = []
        self.graph_outputs = {o.name for o in g.output}
        self.consumers: dict[str, list] = {}
        for node in g.node:
            for i in node.input:
                if i:
                    self.consumers.setdefault(i, []).append(node)
        self.node: object = None

    # ------------------------------------------------------------ errors
    def where(self, node=None) -> str:
        node = node or self.node
        label = node.name or f"<unnamed, output {node.output[0]!r}>"
        return f"ONNX node {label!r} ({node.op_type})"

    def unsupported(self, what: str, node=None):
        raise UnsupportedOnnxError(f"{self.where(node)}: {what}")

    # ------------------------------------------------------------ values
    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            self.unsupported(
                f"{what} {name!r} must be a constant (initializer or "
                "Constant node); it is computed at run time"
            )
        return self.consts[name]

    def plain_const(self, name: str, what: str) -> np.ndarray:
        """A constant that does not hold the symbolic batch size."""
        if name in self.batch_mask and self.batch_mask[name].any():
            self.unsupported(
                f"{what} {name!r} holds the run-time batch size; only "
                "Reshape, Concat, Slice, Gather, Cast, Squeeze and "
                "Unsqueeze may use it"
            )
        return self.const(name, what)

    def act(self, name: str) -> _Act:
        if name not in self.acts:
            if name in self.consts:
                self.unsupported(
                    f"input {name!r} is a constant where a run-time tensor is needed"
                )
            self.unsupported(f"input {name!r} is unknown")
        return self.acts[name]

    def optional_input(self, k: int) -> str | None:
        node = self.node
        return node.input[k] if len(node.input) > k and node.input[k] else None

    def set_const(self, name: str, value, mask=None) -> None:
        self.consts[name] = np.asarray(value)
        if mask is not None and np.any(mask):
            self.batch_mask[name] = np.asarray(mask, dtype=bool)

    def alias(self, onnx_name: str, act: _Act) -> None:
        self.aliases[act.name] = self.aliases.get(act.name, 0) + 1
        self.acts[onnx_name] = act

    # ------------------------------------------------------------ emitting
    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def emit(self, op, inputs, base, *, params=None, **attrs) -> str:
        name = self.fresh(base)
        try:
            self.nodes[name] = Node(name, op, inputs, params or {}, attrs)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"{self.where()}: {exc}") from exc
        return name

    def to_perm(self, act: _Act, perm: tuple[int, ...]) -> _Act:
        """The same ONNX tensor held in layout ``perm`` (a Transpose if needed)."""
        if act.colperm is not None:
            self.unsupported(
                "a flattened NHWC tensor feeds an op other than Gemm/MatMul"
            )
        if act.perm == perm:
            return act
        inv = _inverse(act.perm)
        p = tuple(inv[b] for b in perm)
        key = f"{act.name}/transpose_{''.join(map(str, perm))}"
        if key in self.nodes:
            return _Act(key, perm, act.shape)
        self.taken.add(key)
        self.nodes[key] = Node(key, "Transpose", [act.name], {}, {"perm": p})
        return _Act(key, perm, act.shape)

    def output(self, op, inputs, *, perm, dims, params=None, **attrs) -> _Act:
        """Emit the node for ONNX output 0 and register its tensor."""
        onnx_name = self.node.output[0]
        name = self.emit(op, inputs, onnx_name, params=params, **attrs)
        act = _Act(name, tuple(perm), tuple(dims))
        self.acts[onnx_name] = act
        return act

    # ------------------------------------------------------------ driver
    def run(self) -> Graph:
        g = self.model.graph
        for vi in g.input:
            if vi.name in self.consts:
                continue  # an initializer listed as an input (IR < 4)
            self.add_input(vi)
        for k, node in enumerate(g.node):  # constants first: patterns read them
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.node = node
                _constant(self, node, _attrs(self.onnx, node))
                self.skip.add(k)
        for k, node in enumerate(g.node):
            if k in self.skip:
                continue
            self.node = node
            if node.domain not in ("", "ai.onnx"):
                self.unsupported(
                    f"domain {node.domain!r} is not supported; only "
                    "the default ONNX domain is"
                )
            handler = _HANDLERS.get(node.op_type)
            if handler is None:
                raise UnsupportedOnnxError(
                    f"ONNX op type {node.op_type!r} (node {node.name!r}) is not "
                    f"supported; supported op types are {sorted(SUPPORTED_OPS)}"
                )
            handler(self, node, _attrs(self.onnx, node))
        outputs = [self.graph_output(o.name) for o in g.output]
        name = g.name or "onnx_model"
        return Graph(list(self.nodes.values()), self.inputs, outputs, name=name)

    def add_input(self, vi) -> None:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or tt.elem_type != 1:
            raise UnsupportedOnnxError(
                f"ONNX graph input {vi.name!r} must be a float32 tensor; got "
                f"elem_type {tt.elem_type}"
            )
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tt.shape.dim
        )
        if len(dims) < 1:
            raise UnsupportedOnnxError(
                f"ONNX graph input {vi.name!r} must have a batch axis; got rank 0"
            )
        self.taken.add(vi.name)
        self.inputs.append(vi.name)
        self.acts[vi.name] = _Act(vi.name, _native_perm(len(dims)), dims)

    def graph_output(self, name: str) -> str:
        if name not in self.acts:
            raise UnsupportedOnnxError(
                f"ONNX graph output {name!r} is a constant or is never produced"
            )
        act = self.acts[name]
        if act.colperm is not None:
            raise UnsupportedOnnxError(
                f"ONNX graph output {name!r} is a flattened NHWC tensor"
            )
        return self.to_perm(act, _native_perm(act.rank)).name


# ---------------------------------------------------------------- geometry
def _spatial_padding(imp, attrs, in_hw, kernel, strides, dilations):
    """``"valid"``, ``"same"`` or ``((top, bottom), (left, right))``."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return "valid"
    if auto == "SAME_UPPER":
        return "same"  # extra cell at the end: the engine's "same" rule
    if auto == "SAME_LOWER":
        if None in in_hw:
            imp.unsupported("auto_pad SAME_LOWER needs a known input height and width")
        pads = []
        for n, k, s, d in zip(in_hw, kernel, strides, dilations):
            out = -(-n // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
            pads.append((total - total // 2, total // 2))  # extra at the start
        return tuple(pads)
    if auto != "NOTSET":
        imp.unsupported(
            f"auto_pad {auto!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
        )
    p = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(p) != 4 or min(p) < 0:
        imp.unsupported(f"pads must be 4 ints >= 0 (2-D); got pads={p}")
    return ((p[0], p[2]), (p[1], p[3]))


def _out_hw(in_hw, kernel, strides, dilations, padding):
    out = []
    for i, (n, k, s, d) in enumerate(zip(in_hw, kernel, strides, dilations)):
        if n is None:
            out.append(None)
        elif padding == "same":
            out.append(-(-n // s))
        else:
            b, a = (0, 0) if padding == "valid" else padding[i]
            out.append((n + b + a - (k - 1) * d - 1) // s + 1)
    return tuple(out)


def _spatial_input(imp, name) -> _Act:
    act = imp.act(name)
    if act.rank != 4:
        imp.unsupported(
            f"only 2-D spatial ops (rank-4 NCHW inputs) are supported; "
            f"input {name!r} has rank {act.rank}"
        )
    return imp.to_perm(act, NHWC)


# ---------------------------------------------------------------- conv, dense
def _conv(imp, node, attrs):
    x = _spatial_input(imp, node.input[0])
    w = imp.plain_const(node.input[1], "weight").astype(np.float32)
    b = imp.optional_input(2)
    if w.ndim != 4:
        imp.unsupported(f"only 2-D convolution is supported; weight shape {w.shape}")
    group = int(attrs.get("group", 1))
    kernel = tuple(w.shape[2:])
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    padding = _spatial_padding(imp, attrs, x.shape[2:], kernel, strides, dilations)
    params = {} if b is None else {"bias": imp.plain_const(b, "bias")}
    common = dict(strides=strides, dilations=dilations, padding=padding)
    if group > 1 and w.shape[1] == 1:  # group == C_in: depthwise
        op = "DepthwiseConv2D"
        params["weight"] = np.ascontiguousarray(w.transpose(1, 2, 3, 0))
        common["depth_multiplier"] = w.shape[0] // group
    else:
        op = "Conv2D"
        params["weight"] = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        common["groups"] = group
    if x.shape[1] is not None and x.shape[1] != w.shape[1] * group:
        imp.unsupported(
            f"input has {x.shape[1]} channels; weight {w.shape} with "
            f"group={group} expects {w.shape[1] * group}"
        )
    hw = _out_hw(x.shape[2:], kernel, strides, dilations, padding)
    imp.output(
        op,
        [x.name],
        perm=NHWC,
        dims=(x.shape[0], w.shape[0], *hw),
        params=params,
        **common,
    )


def _dense_input(imp, name) -> _Act:
    act = imp.act(name)
    if act.colperm is not None:
        return act
    return imp.to_perm(act, _identity(act.rank))


def _dense(imp, x: _Act, weight: np.ndarray, bias):
    """Emit Dense ``y = x @ weight.T + bias``; weight (C_out, K) in ONNX columns."""
    if x.colperm is not None:
        weight = weight[:, x.colperm]  # engine column j holds ONNX column colperm[j]
    if x.shape[-1] is not None and x.shape[-1] != weight.shape[1]:
        imp.unsupported(
            f"input has {x.shape[-1]} features; weight expects {weight.shape[1]}"
        )
    params = {"weight": np.ascontiguousarray(weight, dtype=np.float32)}
    if bias is not None:
        params["bias"] = bias
    rank = x.rank
    imp.output(
        "Dense",
        [x.name],
        perm=_identity(rank),
        dims=(*x.shape[:-1], weight.shape[0]),
        params=params,
    )


def _gemm(imp, node, attrs):
    if attrs.get("transA", 0):
        imp.unsupported("transA=1 transposes the batch axis")
    x = _dense_input(imp, node.input[0])
    if x.rank != 2:
        imp.unsupported(f"Gemm input must have rank 2; got rank {x.rank}")
    b = imp.plain_const(node.input[1], "B").astype(np.float64)
    b = b.T if attrs.get("transB", 0) else b  # (K, M)
    weight = (float(attrs.get("alpha", 1.0)) * b.T).astype(np.float32)
    bias = None
    c_name = imp.optional_input(2)
    if c_name is not None:
        c = imp.plain_const(c_name, "C").astype(np.float64)
        m = weight.shape[0]
        if c.size not in (1, m) or c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
            imp.unsupported(
                f"C of shape {c.shape} must broadcast along the output "
                f"features only, as (), ({m},) or (1, {m})"
            )
        bias = np.broadcast_to(float(attrs.get("beta", 1.0)) * c.ravel(), (m,))
        bias = bias.astype(np.float32)
    _dense(imp, x, weight, bias)


def _matmul(imp, node, attrs):
    a, b = node.input[:2]
    if imp.is_const(a) and imp.is_const(b):
        return _fold(imp, node, np.matmul)
    if not imp.is_const(b):
        imp.unsupported(
            "MatMul is supported with a constant right-hand side (a weight) only"
        )
    w = imp.plain_const(b, "B")
    if w.ndim != 2:
        imp.unsupported(f"the constant MatMul operand must have rank 2; got {w.shape}")
    x = _dense_input(imp, a)
    if x.rank < 2:
        imp.unsupported("MatMul input must have rank >= 2 (batch first)")
    _dense(imp, x, np.asarray(w, np.float32).T, None)


def _batch_norm(imp, node, attrs):
    if attrs.get("training_mode", 0) or len([o for o in node.output if o]) > 1:
        imp.unsupported("training mode (running statistics outputs) is not supported")
    x = imp.act(node.input[0])
    if x.rank not in (2, 4):
        imp.unsupported(f"input must have rank 2 or 4; got rank {x.rank}")
    x = imp.to_perm(x, _native_perm(x.rank))  # channel axis 1 held last
    keys = ("gamma", "beta", "mean", "var")
    params = {k: imp.plain_const(n, k) for k, n in zip(keys, node.input[1:5])}
    imp.output(
        "BatchNorm",
        [x.name],
        perm=x.perm,
        dims=x.shape,
        params=params,
        epsilon=float(attrs.get("epsilon", 1e-5)),
    )


# ---------------------------------------------------------------- elementwise
def _unary(op):
    def handler(imp, node, attrs):
        x = imp.act(node.input[0])
        x = imp.to_perm(x, x.perm)  # rejects a flattened NHWC tensor
        imp.output(op, [x.name], perm=x.perm, dims=x.shape)

    return handler


def _identity_op(imp, node, attrs):
    src = node.input[0]
    if imp.is_const(src):
        return imp.set_const(node.output[0], imp.consts[src], imp.batch_mask.get(src))
    imp.alias(node.output[0], imp.act(src))


def _clip(imp, node, attrs):
    x = imp.act(node.input[0])
    if imp.opset < 11:
        low, high = attrs.get("min"), attrs.get("max")
    else:
        lo_name, hi_name = imp.optional_input(1), imp.optional_input(2)
        low = None if lo_name is None else float(imp.plain_const(lo_name, "min"))
        high = None if hi_name is None else float(imp.plain_const(hi_name, "max"))
    low = None if low is None or low == -np.inf else float(low)
    high = None if high is None or high == np.inf else float(high)
    shape = dict(perm=x.perm, dims=x.shape)
    if low == 0.0 and high == 6.0:
        act = imp.output("ReLU6", [x.name], **shape)
    elif low == 0.0 and high is None:
        act = imp.output("ReLU", [x.name], **shape)
    else:
        act = imp.output("Clip", [x.name], min=low, max=high, **shape)
    return act


def _hard_sigmoid(imp, node, attrs):
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    x = imp.act(node.input[0])
    out = node.output[0]
    users = imp.consumers.get(out, [])
    # x * HardSigmoid(x; 1/6, 1/2) is HardSwish (PyTorch exports below opset 14)
    if (
        np.float32(alpha) == np.float32(1 / 6)
        and beta == 0.5
        and out not in imp.graph_outputs
        and len(users) == 1
        and users[0].op_type == "Mul"
        and sorted(users[0].input) == sorted([node.input[0], out])
    ):
        imp.skip.add(_index(imp, users[0]))
        imp.node = users[0]
        imp.output("HardSwish", [x.name], perm=x.perm, dims=x.shape)
        return
    imp.output(
        "HardSigmoid", [x.name], perm=x.perm, dims=x.shape, alpha=alpha, beta=beta
    )


def _index(imp, node) -> int:
    for k, n in enumerate(imp.model.graph.node):
        if n is node:
            return k
    raise AssertionError("node not in graph")  # unreachable


def _scalar_const(imp, name):
    if not imp.is_const(name) or name in imp.batch_mask:
        return None
    c = imp.consts[name]
    return float(c.ravel()[0]) if c.size == 1 else None


def _sole_user(imp, name, op_type):
    users = imp.consumers.get(name, [])
    if name in imp.graph_outputs or len(users) != 1 or users[0].op_type != op_type:
        return None
    return users[0]


def _match_hard_swish(imp, node) -> bool:
    """``x * clip(x + 3, 0, 6) / 6`` (Paddle, older exporters) -> HardSwish."""
    a, b = node.input[:2]
    x_name, three = (a, b) if imp.is_const(b) else (b, a)
    if imp.is_const(x_name) or _scalar_const(imp, three) != 3.0:
        return False
    clip = _sole_user(imp, node.output[0], "Clip")
    if clip is None or imp.opset < 11:
        return False
    bounds = [_scalar_const(imp, n) if n else None for n in clip.input[1:3]]
    if bounds != [0.0, 6.0]:
        return False
    mul = _sole_user(imp, clip.output[0], "Mul")
    if mul is None or sorted(mul.input) != sorted([x_name, clip.output[0]]):
        return False
    div = _sole_user(imp, mul.output[0], "Div")
    if div is None or div.input[0] != mul.output[0]:
        return False
    if _scalar_const(imp, div.input[1]) != 6.0:
        return False
    x = imp.act(x_name)
    for n in (clip, mul, div):
        imp.skip.add(_index(imp, n))
    imp.node = div
    imp.output("HardSwish", [x.name], perm=x.perm, dims=x.shape)
    return True


_NP_BINARY: dict[str, Callable] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
}


def _fold(imp, node, fn, mask_fn=None):
    """Evaluate a node whose inputs are all constant."""
    names = [n for n in node.input if n]
    if mask_fn is None:
        values = [imp.plain_const(n, "input") for n in names]
        imp.set_const(node.output[0], fn(*values))
        return
    values = [imp.const(n, "input") for n in names]
    masks = [
        imp.batch_mask.get(n, np.zeros(np.shape(v), bool))
        for n, v in zip(names, values)
    ]
    imp.set_const(node.output[0], fn(*values), mask_fn(*masks))


def _const_param(imp, c: np.ndarray, x: _Act) -> np.ndarray:
    """ONNX-broadcast constant -> a param that broadcasts against one sample."""
    c = np.asarray(c, dtype=np.float32)
    if c.size == 1 or np.all(c == c.ravel()[0]):
        return np.asarray(c.ravel()[0], dtype=np.float32)
    if c.ndim > x.rank:
        imp.unsupported(
            f"constant of shape {c.shape} has a higher rank than the "
            f"tensor it combines with (rank {x.rank})"
        )
    c = c.reshape((1,) * (x.rank - c.ndim) + c.shape)
    if c.shape[0] != 1:
        imp.unsupported(f"constant of shape {c.shape} varies along the batch axis")
    for d, n in zip(c.shape, x.shape):
        if d != 1 and n is not None and d != n:
            imp.unsupported(
                f"constant of shape {c.shape} does not broadcast to {x.shape}"
            )
    return np.ascontiguousarray(c.transpose(x.perm)[0])


def _fold_into_bias(imp, x: _Act, c: np.ndarray, x_name: str) -> bool:
    """``Add(conv_or_dense(x), c)`` with ``c`` per output channel -> the bias."""
    node = imp.nodes.get(x.name)
    if (
        node is None
        or node.op not in _WEIGHTED
        or node.attrs["activation"] is not None
        or imp.aliases.get(x.name, 0)
        or x_name in imp.graph_outputs
        or len(imp.consumers.get(x_name, [])) != 1
    ):
        return False
    w = node.params["weight"]
    c_out = w.shape[-1] if node.op == "DepthwiseConv2D" else w.shape[0]
    c = np.asarray(c, dtype=np.float32)
    axis = 1 if x.rank == 4 else x.rank - 1  # the ONNX channel axis
    c = c.reshape((1,) * (x.rank - c.ndim) + c.shape) if c.ndim <= x.rank else c
    if c.ndim != x.rank or any(d != 1 for i, d in enumerate(c.shape) if i != axis):
        return False
    if c.shape[axis] not in (1, c_out):
        return False
    old = node.params.get("bias", np.zeros(c_out, np.float32))
    bias = old + np.broadcast_to(c.ravel(), (c_out,)).astype(np.float32)
    imp.nodes[x.name] = node.replace(params={**node.params, "bias": bias})
    return True


def _binary(imp, node, attrs):
    op = node.op_type
    a, b = node.input[:2]
    if imp.is_const(a) and imp.is_const(b):
        return _fold(imp, node, _NP_BINARY[op])
    if op == "Add" and _match_hard_swish(imp, node):
        return None
    if not imp.is_const(a) and not imp.is_const(b):
        return _binary_acts(imp, node, op, imp.act(a), imp.act(b))
    c_first = imp.is_const(a)
    x_name, c_name = (b, a) if c_first else (a, b)
    x = imp.act(x_name)
    c = imp.plain_const(c_name, "operand").astype(np.float64)
    if op == "Add" and _fold_into_bias(imp, x, c, x_name):
        return imp.alias(node.output[0], x)
    if x.colperm is not None:
        imp.unsupported("a flattened NHWC tensor feeds an op other than Gemm/MatMul")
    scale, shift = None, None
    if op == "Add":
        shift = c
    elif op == "Mul":
        scale = c
    elif op == "Sub":
        scale, shift = (-1.0, c) if c_first else (None, -c)
    elif c_first:
        imp.unsupported("Div of a constant by a run-time tensor is not supported")
    else:
        scale = 1.0 / c  # float64 reciprocal, stored float32 (round to nearest)
    params = {}
    if scale is not None:
        params["scale"] = _const_param(imp, np.asarray(scale), x)
    if shift is not None:
        params["shift"] = _const_param(imp, np.asarray(shift), x)
    imp.output("ScaleShift", [x.name], perm=x.perm, dims=x.shape, params=params)


def _binary_acts(imp, node, op, x: _Act, y: _Act):
    if x.rank != y.rank:
        imp.unsupported(
            f"run-time operands of ranks {x.rank} and {y.rank}; "
            "broadcasting across ranks is not supported"
        )
    y = imp.to_perm(y, x.perm)
    x = imp.to_perm(x, x.perm)
    shape = tuple(
        p if q == 1 else q if p == 1 else p if p is not None else q
        for p, q in zip(x.shape, y.shape)
    )
    if op == "Mul":
        imp.output("Mul", [x.name, y.name], perm=x.perm, dims=shape)
        return
    if op == "Div":
        imp.unsupported("Div of two run-time tensors is not supported")
    known = None not in x.shape and None not in y.shape
    if known and x.shape != y.shape:
        imp.unsupported(
            f"{op} of run-time tensors of shapes {x.shape} and "
            f"{y.shape}: broadcasting is not supported"
        )
    if op == "Sub":
        neg = imp.emit(
            "ScaleShift",
            [y.name],
            f"{node.output[0]}/negate",
            params={"scale": np.float32(-1)},
        )
        y = _Act(neg, y.perm, y.shape)
    imp.output("Add", [x.name, y.name], perm=x.perm, dims=shape)


# ---------------------------------------------------------------- pooling
def _pool(op):
    def handler(imp, node, attrs):
        if len([o for o in node.output if o]) > 1:
            imp.unsupported("the Indices output is not supported")
        x = _spatial_input(imp, node.input[0])
        kernel = tuple(attrs["kernel_shape"])
        strides = tuple(attrs.get("strides", (1, 1)))
        if tuple(attrs.get("dilations", (1, 1))) != (1, 1):
            imp.unsupported("pooling with dilations != 1 is not supported")
        padding = _spatial_padding(imp, attrs, x.shape[2:], kernel, strides, (1, 1))
        hw = _out_hw(x.shape[2:], kernel, strides, (1, 1), padding)
        if attrs.get("ceil_mode", 0):
            _check_ceil_mode(imp, x.shape[2:], kernel, strides, padding)
        extra = {}
        if op == "AvgPool":
            extra["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
        imp.output(
            op,
            [x.name],
            perm=NHWC,
            dims=(*x.shape[:2], *hw),
            pool_size=kernel,
            strides=strides,
            padding=padding,
            **extra,
        )

    return handler


def _check_ceil_mode(imp, in_hw, kernel, strides, padding):
    """ceil_mode=1 is accepted where it gives the same size as floor."""
    if padding == "same":
        return
    for i, (n, k, s) in enumerate(zip(in_hw, kernel, strides)):
        b, a = (0, 0) if padding == "valid" else padding[i]
        if n is None or (n + b + a - k) % s:
            imp.unsupported(
                "ceil_mode=1 where it changes the output size (or "
                "with an unknown input size) is not supported"
            )


def _global_avg_pool(imp, node, attrs):
    x = _spatial_input(imp, node.input[0])
    imp.output(
        "GlobalAvgPool", [x.name], perm=NHWC, dims=(*x.shape[:2], 1, 1), keepdims=True
    )


def _reduce_mean(imp, node, attrs):
    """ReduceMean over the two spatial axes of a 4-D tensor: GlobalAvgPool."""
    x = imp.act(node.input[0])
    axes = attrs.get("axes")
    if axes is None and imp.optional_input(1) is not None:
        axes = imp.plain_const(node.input[1], "axes").ravel().tolist()
    axes = sorted(int(a) % x.rank for a in (axes or []))
    if x.rank != 4 or axes != [2, 3]:
        what = f"axes={axes} on rank {x.rank}"
        imp.unsupported(f"ReduceMean only over axes [2, 3] of a 4-D tensor; {what}")
    x = imp.to_perm(x, NHWC)
    if attrs.get("keepdims", 1):
        imp.output(
            "GlobalAvgPool",
            [x.name],
            perm=NHWC,
            dims=(*x.shape[:2], 1, 1),
            keepdims=True,
        )
    else:
        imp.output(
            "GlobalAvgPool", [x.name], perm=(0, 1), dims=x.shape[:2], keepdims=False
        )


# ---------------------------------------------------------------- layout
def _feeds_only_dense(imp, name: str) -> bool:
    """True when every reader of ``name`` is a Gemm/MatMul with a constant weight."""
    users = imp.consumers.get(name, [])
    if not users or name in imp.graph_outputs:
        return False
    for u in users:
        trans_a = any(a.name == "transA" and a.i for a in u.attribute)
        if u.op_type not in ("Gemm", "MatMul") or u.input[0] != name or trans_a:
            return False
        if len(u.input) < 2 or u.input[1] not in imp.consts:
            return False
    return True


def _flatten_act(imp, x: _Act, out_name: str) -> None:
    """Flatten to (N, prod(rest)) in ONNX element order."""
    k = _prod(x.shape[1:])
    if x.rank == 2 and x.perm == (0, 1):
        return imp.alias(out_name, x)
    if _same_memory_order(x):
        act = imp.output("Flatten", [x.name], perm=(0, 1), dims=(x.shape[0], k))
        return None
    if x.perm == NHWC and k is not None and _feeds_only_dense(imp, out_name):
        c, h, w = x.shape[1:]
        colperm = np.arange(k).reshape(c, h, w).transpose(1, 2, 0).ravel()
        act = imp.output("Flatten", [x.name], perm=(0, 1), dims=(x.shape[0], k))
        imp.acts[out_name] = _Act(act.name, act.perm, act.shape, colperm)
        return None
    x = imp.to_perm(x, _identity(x.rank))
    imp.output("Flatten", [x.name], perm=(0, 1), dims=(x.shape[0], k))
    return None


def _flatten(imp, node, attrs):
    axis = int(attrs.get("axis", 1))
    if imp.is_const(node.input[0]):
        v = imp.plain_const(node.input[0], "input")
        axis = axis % max(v.ndim, 1) if axis < 0 else axis
        return imp.set_const(node.output[0], v.reshape(_prod(v.shape[:axis]), -1))
    x = imp.act(node.input[0])
    if axis < 0:
        axis += x.rank
    if axis != 1:
        imp.unsupported(
            f"Flatten with axis={axis} mixes the batch axis; only axis=1 is supported"
        )
    return _flatten_act(imp, x, node.output[0])


def _reshape_target(imp, node, attrs, x: _Act) -> tuple[int, ...]:
    """The output shape without the batch axis (one -1 allowed)."""
    name = node.input[1] if len(node.input) > 1 else None
    shape = np.asarray(imp.const(name, "shape")) if name else np.asarray(attrs["shape"])
    mask = imp.batch_mask.get(name, np.zeros(shape.shape, bool)) if name else None
    t = [int(v) for v in shape.ravel()]
    if mask is not None and mask.ravel()[1:].any():
        imp.unsupported("the batch size appears in the target shape after axis 0")
    if attrs.get("allowzero", 0) and 0 in t:
        imp.unsupported("allowzero=1 with a 0 in the target shape")
    for i, v in enumerate(t[1:], start=1):
        if v == 0:
            if i >= x.rank or x.shape[i] is None:
                imp.unsupported(f"target dim {i} copies an unknown input dim")
            t[i] = x.shape[i]
    batch_like = (
        not t
        or t[0] == 0
        or (mask is not None and mask.ravel()[:1].any())
        or (t[0] == -1 and -1 not in t[1:])
        or (x.shape[0] is not None and t[0] == x.shape[0])
    )
    if not batch_like or not t:
        imp.unsupported(f"Reshape to {t} does not keep the batch axis first")
    rest = tuple(t[1:])
    known_in, known_out = _prod(x.shape[1:]), _prod(rest)
    if -1 not in rest and known_in is not None and known_in != known_out:
        imp.unsupported(f"cannot reshape {x.shape} to (N, *{rest})")
    if -1 in rest and known_in is not None:
        rest = tuple(known_in // -_prod(rest) if v == -1 else v for v in rest)
    return rest


def _reshape(imp, node, attrs):
    data = node.input[0]
    if imp.is_const(data):
        shape = [int(v) for v in imp.plain_const(node.input[1], "shape").ravel()]
        v = imp.plain_const(data, "data")
        shape = [v.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return imp.set_const(node.output[0], v.reshape(shape))
    x = imp.act(data)
    rest = _reshape_target(imp, node, attrs, x)
    out_shape = (x.shape[0], *rest)
    if out_shape == x.shape and None not in rest:
        return imp.alias(node.output[0], x)
    if len(rest) == 1 and rest[0] != -1:
        return _flatten_act(imp, x, node.output[0])
    if not _same_memory_order(x):
        x = imp.to_perm(x, _identity(x.rank))
    shape = tuple(None if v == -1 else v for v in out_shape)
    imp.output("Reshape", [x.name], perm=_identity(len(shape)), dims=shape, shape=rest)
    return None


def _transpose(imp, node, attrs):
    src = node.input[0]
    if imp.is_const(src):
        v = imp.plain_const(src, "data")
        perm = attrs.get("perm", list(range(v.ndim))[::-1])
        return imp.set_const(node.output[0], np.transpose(v, perm))
    x = imp.act(src)
    p = tuple(attrs.get("perm", list(range(x.rank))[::-1]))
    if sorted(p) != list(range(x.rank)) or p[0] != 0:
        imp.unsupported(f"perm {list(p)} moves the batch axis")
    if x.colperm is not None:
        imp.unsupported("a flattened NHWC tensor feeds an op other than Gemm/MatMul")
    inv = _inverse(p)
    perm = tuple(inv[a] for a in x.perm)
    shape = tuple(x.shape[i] for i in p)
    imp.alias(node.output[0], _Act(x.name, perm, shape))
    return None


def _concat(imp, node, attrs):
    names = [n for n in node.input if n]
    axis = int(attrs["axis"])
    if all(imp.is_const(n) for n in names):
        return _fold(
            imp,
            node,
            lambda *v: np.concatenate(v, axis=axis),
            lambda *m: np.concatenate(m, axis=axis),
        )
    acts = [imp.act(n) for n in names]
    first = acts[0]
    axis = axis + first.rank if axis < 0 else axis
    if axis == 0:
        imp.unsupported("Concat along the batch axis is not supported")
    acts = [imp.to_perm(a, first.perm) for a in acts]
    sizes = [a.shape[axis] for a in acts]
    total = None if None in sizes else sum(sizes)
    shape = tuple(total if i == axis else d for i, d in enumerate(first.shape))
    imp.output(
        "Concat",
        [a.name for a in acts],
        perm=first.perm,
        dims=shape,
        axis=first.perm.index(axis),
    )
    return None


def _softmax(imp, node, attrs):
    x = imp.act(node.input[0])
    default = 1 if imp.opset < 13 else -1
    axis = int(attrs.get("axis", default))
    axis = axis + x.rank if axis < 0 else axis
    if imp.opset < 13 and any(d != 1 for d in x.shape[axis + 1 :]):
        imp.unsupported(
            "opset < 13 Softmax over several trailing axes (not the "
            "last one) is not supported"
        )
    if axis == 0:
        imp.unsupported("Softmax along the batch axis is not supported")
    x = imp.to_perm(x, x.perm)  # rejects a flattened NHWC tensor
    imp.output("Softmax", [x.name], perm=x.perm, dims=x.shape, axis=x.perm.index(axis))


def _pad(imp, node, attrs):
    x = imp.act(node.input[0])
    if attrs.get("mode", "constant") != "constant":
        imp.unsupported(f"mode {attrs['mode']!r}; only 'constant' is supported")
    if imp.opset < 11:
        pads, value = list(attrs["pads"]), float(attrs.get("value", 0.0))
    else:
        pads = [int(v) for v in imp.plain_const(node.input[1], "pads").ravel()]
        v_name, axes_name = imp.optional_input(2), imp.optional_input(3)
        value = 0.0 if v_name is None else float(imp.plain_const(v_name, "value"))
        if axes_name is not None:
            axes = [int(a) % x.rank for a in imp.plain_const(axes_name, "axes")]
            full = [0] * (2 * x.rank)
            for k, a in enumerate(axes):
                full[a], full[a + x.rank] = pads[k], pads[k + len(axes)]
            pads = full
    r = x.rank
    if len(pads) != 2 * r or min(pads) < 0:
        imp.unsupported(f"pads must be {2 * r} ints >= 0; got {pads}")
    if pads[0] or pads[r]:
        imp.unsupported("padding the batch axis is not supported")
    if x.colperm is not None:
        imp.unsupported("a flattened NHWC tensor feeds an op other than Gemm/MatMul")
    onnx_pairs = [(pads[i], pads[i + r]) for i in range(r)]
    paddings = [onnx_pairs[a] for a in x.perm]
    shape = tuple(
        None if d is None else d + sum(onnx_pairs[i]) for i, d in enumerate(x.shape)
    )
    imp.output("Pad", [x.name], perm=x.perm, dims=shape, paddings=paddings, value=value)


# ---------------------------------------------------------------- constants
def _constant(imp, node, attrs):
    if "value" in attrs:
        value = imp.nh.to_array(attrs["value"])
    elif "value_float" in attrs:
        value = np.asarray(attrs["value_float"], np.float32)
    elif "value_floats" in attrs:
        value = np.asarray(attrs["value_floats"], np.float32)
    elif "value_int" in attrs:
        value = np.asarray(attrs["value_int"], np.int64)
    elif "value_ints" in attrs:
        value = np.asarray(attrs["value_ints"], np.int64)
    else:
        imp.unsupported(
            f"Constant with attribute {sorted(attrs)} (sparse or "
            "string values) is not supported"
        )
    imp.set_const(node.output[0], value)


def _shape(imp, node, attrs):
    x = imp.act(node.input[0])
    if None in x.shape[1:]:
        imp.unsupported(
            f"Shape of a tensor with unknown dims {x.shape} (only the "
            "batch size may be unknown)"
        )
    dims = np.array([-1, *x.shape[1:]], dtype=np.int64)
    mask = np.zeros(len(dims), bool)
    mask[0] = True
    start, end = attrs.get("start", 0), attrs.get("end", len(dims))
    imp.set_const(node.output[0], dims[start:end], mask[start:end])


def _cast(imp, node, attrs):
    to = imp.onnx.helper.tensor_dtype_to_np_dtype(attrs["to"])
    src = node.input[0]
    if imp.is_const(src):
        return imp.set_const(
            node.output[0], imp.consts[src].astype(to), imp.batch_mask.get(src)
        )
    if np.dtype(to) != np.float32:
        imp.unsupported(f"Cast of a run-time tensor to {np.dtype(to)}; only float32")
    return imp.alias(node.output[0], imp.act(src))


def _slice(imp, node, attrs):
    data = imp.const(node.input[0], "data")
    if imp.opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes"), None
    else:
        starts = imp.plain_const(node.input[1], "starts").ravel()
        ends = imp.plain_const(node.input[2], "ends").ravel()
        a_name, s_name = imp.optional_input(3), imp.optional_input(4)
        axes = None if a_name is None else imp.plain_const(a_name, "axes").ravel()
        steps = None if s_name is None else imp.plain_const(s_name, "steps").ravel()
    axes = range(len(starts)) if axes is None else axes
    index = [slice(None)] * data.ndim
    for k, a in enumerate(axes):
        step = 1 if steps is None else int(steps[k])
        index[int(a)] = slice(int(starts[k]), int(ends[k]), step)
    _fold(imp, node, lambda v, *_: v[tuple(index)], lambda m, *_: m[tuple(index)])


def _gather(imp, node, attrs):
    axis = int(attrs.get("axis", 0))
    _fold(
        imp,
        node,
        lambda v, i: np.take(v, i, axis=axis),
        lambda m, _: np.take(m, imp.consts[node.input[1]], axis=axis),
    )


def _axes(imp, node, attrs):
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    name = imp.optional_input(1)
    return None if name is None else [int(a) for a in imp.plain_const(name, "axes")]


def _unsqueeze(imp, node, attrs):
    axes = _axes(imp, node, attrs)

    def fn(v, *_):
        out = np.asarray(v)
        for a in sorted(a % (out.ndim + len(axes)) for a in axes):
            out = np.expand_dims(out, a)
        return out

    if not imp.is_const(node.input[0]):
        imp.unsupported("Unsqueeze of a run-time tensor is not supported")
    _fold(imp, node, fn, fn)


def _squeeze(imp, node, attrs):
    axes = _axes(imp, node, attrs)

    def fn(v, *_):
        v = np.asarray(v)
        return np.squeeze(v) if axes is None else np.squeeze(v, tuple(axes))

    if not imp.is_const(node.input[0]):
        imp.unsupported("Squeeze of a run-time tensor is not supported")
    _fold(imp, node, fn, fn)


def _const_only(fn):
    def handler(imp, node, attrs):
        if not all(imp.is_const(n) for n in node.input if n):
            imp.unsupported("supported on constants only (folded at import)")
        _fold(imp, node, fn)

    return handler


_HANDLERS: dict[str, Callable] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _batch_norm,
    "Relu": _unary("ReLU"),
    "Sigmoid": _unary("Sigmoid"),
    "Tanh": _unary("Tanh"),
    "HardSwish": _unary("HardSwish"),
    "HardSigmoid": _hard_sigmoid,
    "Clip": _clip,
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Div": _binary,
    "Concat": _concat,
    "MaxPool": _pool("MaxPool"),
    "AveragePool": _pool("AvgPool"),
    "GlobalAveragePool": _global_avg_pool,
    "ReduceMean": _reduce_mean,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Softmax": _softmax,
    "Pad": _pad,
    "Constant": _constant,
    "Identity": _identity_op,
    "Dropout": _identity_op,
    "Shape": _shape,
    "Cast": _cast,
    "Slice": _slice,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Sqrt": _const_only(np.sqrt),
    "Neg": _const_only(np.negative),
}

SUPPORTED_OPS = frozenset(_HANDLERS)
"""ONNX op types (default domain) that :func:`load_onnx` accepts."""


# ---------------------------------------------------------------- public
def load_onnx(path_or_model, *, name: str | None = None) -> Graph:
    """Import an FP32 ONNX model as a :class:`Graph` that computes the same function.

    ``graph.run(x_nhwc) == onnx_model(x_nchw)`` up to float32 rounding: 4-D
    inputs and outputs are NHWC (``x_nchw.transpose(0, 2, 3, 1)``), every other
    tensor keeps ONNX's axis order.  Nothing is rounded to integers; weights
    are copied as float32 (Gemm ``alpha``/``beta`` and the reciprocal of a Div
    constant are formed in float64 and rounded to nearest even).

    Parameters
    ----------
    path_or_model : str, os.PathLike, bytes or onnx.ModelProto
        An ``.onnx`` file, its serialized bytes, or a loaded model.
    name : str or None
        The graph's name; None takes the ONNX graph's name.

    Returns
    -------
    Graph
        Node names are the ONNX output tensor names (inserted layout
        Transposes are named ``<tensor>/transpose_<perm>``).

    Raises
    ------
    UnsupportedOnnxError
        An op type outside :data:`SUPPORTED_OPS`, or an attribute value or
        pattern the graph cannot express; the message names the op type and
        the node.
    refquant.datasets.OptionalDependencyError
        onnx is not installed (``pip install 'refquant[peers]'``).
    """
    if name is not None:
        check_type("name", name, (str,), "a str or None")
    onnx, numpy_helper = _onnx()
    model = _as_model(onnx, path_or_model)
    _check_not_degenerate(model, _source(path_or_model))
    try:
        graph = _Importer(model, onnx, numpy_helper).run()
    except RefquantError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        raise _malformed(_source(path_or_model), e) from None
    except (RecursionError, OSError) as e:
        raise _malformed(_source(path_or_model), e) from None
    return graph if name is None else graph.replace(name=name)
