"""Import an already-quantized ONNX model (QOperator or QDQ) as a QuantizedModel.

``load_quantized_onnx(path)`` reads a graph whose activations are 8-bit codes
``q`` with ``x ~= (q - zero_point) * scale`` and returns a static
:class:`~refquant.ptq.qmodel.QuantizedModel` that runs it on the integer
engine (NHWC).  Two passes:

1. **QDQ folding.**  ``DequantizeLinear`` of a constant is a quantized
   constant (codes, scale, zero point, axis).  A float op whose run-time
   inputs are all ``DequantizeLinear`` outputs, whose constant inputs are
   quantized constants and whose only reader is one ``QuantizeLinear``
   becomes the QOperator op (Conv -> QLinearConv, Gemm -> QGemm, MatMul ->
   QLinearMatMul, Add -> QLinearAdd, GlobalAveragePool ->
   QLinearGlobalAveragePool, AveragePool -> QLinearAveragePool, Concat ->
   QLinearConcat).  Data movement (MaxPool, Transpose, Flatten, Reshape,
   Relu, Clip) between ``DequantizeLinear`` and ``QuantizeLinear`` runs on
   the codes when both sides have the same qparams.
2. **QOperator conversion.**  Each integer op becomes one
   :class:`~refquant.ptq.qtensors.QuantizedNode` with its weight codes in the
   engine's layout (conv OIHW -> OHWI, depthwise -> 1HWC, Gemm/MatMul ->
   ``(C_out, K)``), its int32 bias and its output qparams.

A graph with DynamicQuantizeLinear -> ConvInteger / MatMulInteger -> Cast
-> Mul chains (ONNX Runtime ``quantize_dynamic``) becomes a
``mode="dynamic"`` model instead (spec section 3.4).

uint8 activations and weights are held as int8 codes ``q - 128`` with zero
point ``zp - 128``: every value ``q - zp`` is unchanged, so integer
accumulators and the real values are identical.  (ONNX Runtime's
QLinearAdd folds the zero points into a float32 term, so for uint8 tensors
its rounding can differ from the int8 form; see specs/io_onnx_quantized.md
section 3.4.)  Spec: specs/io_onnx_quantized.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refquant.errors import RefquantError
from refquant.io.onnx_import import (
    UnsupportedOnnxError,
    _as_model,
    _attrs,
    _check_not_degenerate,
    _malformed,
    _onnx,
    _source,
)
from refquant.numerics.scheme import QuantScheme
from refquant.ptq.qmodel import QuantizedModel
from refquant.ptq.qtensors import QuantizedNode, QuantizedWeight, TensorQParams

__all__ = ["QUANTIZED_OPS", "load_quantized_onnx"]

F32 = np.float32

#: Float ops folded from DequantizeLinear -> op -> QuantizeLinear patterns.
QDQ_COMPUTE = {
    "Conv": "QLinearConv",
    "Gemm": "QGemm",
    "MatMul": "QLinearMatMul",
    "Add": "QLinearAdd",
    "GlobalAveragePool": "QLinearGlobalAveragePool",
    "AveragePool": "QLinearAveragePool",
    "Concat": "QLinearConcat",
}
#: Ops that move or clamp codes without arithmetic.
CODE_OPS = (
    "MaxPool",
    "Transpose",
    "Flatten",
    "Reshape",
    "Relu",
    "Clip",
    "Identity",
    "Pad",
)

_OUT_OF_SCOPE = {
    "DynamicQuantizeLSTM": "the quantized LSTM is out of scope for the integer "
    "engine (no recurrent ops)",
    "DynamicQuantizeMatMul": "the com.microsoft fused dynamic MatMul is not "
    "supported (only the DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul "
    "pattern is)",
    "ConvInteger": "only DynamicQuantizeLinear -> ConvInteger -> Cast -> "
    "Mul(Mul(x_scale, w_scale)) is supported (int32 consumers such as a bias "
    "quantized at run time are not)",
    "MatMulInteger": "only DynamicQuantizeLinear -> MatMulInteger -> Cast -> "
    "Mul(Mul(x_scale, w_scale)) with a constant 2-D weight is supported",
    "DynamicQuantizeLinear": "supported only as the input of a ConvInteger or "
    "MatMulInteger pattern",
}
DYNAMIC_OPS = (
    "DynamicQuantizeLinear",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "DynamicQuantizeLSTM",
)


@dataclass(frozen=True)
class _QConst:
    """A quantized constant: ``(codes - zero_point) * scale`` along ``axis``."""

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int


@dataclass
class _Tensor:
    """A run-time code tensor: refquant name, qparams, rank, NHWC-held flag."""

    name: str
    qp: TensorQParams
    rank: int
    nhwc: bool  # the engine holds onnx_tensor.transpose(0, 2, 3, 1)
    pooled: bool = False  # spatial size known to be 1x1


def _to_int8(codes: np.ndarray) -> np.ndarray:
    """uint8 codes -> int8 ``q - 128``; int8 unchanged; anything else rejected."""
    if codes.dtype == np.uint8:
        return (codes.astype(np.int16) - 128).astype(np.int8)
    return codes


def _zp_int8(zp: np.ndarray) -> np.ndarray:
    zp = np.asarray(zp)
    return zp.astype(np.int64) - (128 if zp.dtype == np.uint8 else 0)


# ---------------------------------------------------------------- importer
class _Importer:
    def __init__(self, model, onnx, nh):
        self.onnx, self.nh, self.model = onnx, nh, model
        g = model.graph
        self.consts = {t.name: nh.to_array(t) for t in g.initializer}
        self.qconsts: dict[str, _QConst] = {}
        self.tensors: dict[str, _Tensor] = {}
        self.floats: dict[str, str] = {}  # float tensor -> code tensor it dequantizes
        self.nodes: list[QuantizedNode] = []
        self.qparams: dict[str, TensorQParams] = {}
        self.input_name: str | None = None
        self.float_input: str | None = None
        self.node = None

    # ------------------------------------------------------------ errors
    def where(self, node=None) -> str:
        node = node or self.node
        label = node.name or f"<unnamed, output {node.output[0]!r}>"
        return f"ONNX node {label!r} ({node.op_type})"

    def unsupported(self, what: str, node=None):
        raise UnsupportedOnnxError(f"{self.where(node)}: {what}")

    # ------------------------------------------------------------ values
    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            self.unsupported(f"{what} {name!r} must be a constant")
        return self.consts[name]

    def scalar_qparams(self, s_name, z_name, what) -> TensorQParams:
        s = np.asarray(self.const(s_name, f"{what} scale"), dtype=np.float64)
        z = (
            np.asarray(self.const(z_name, f"{what} zero point"))
            if z_name
            else (np.zeros((), np.uint8))
        )
        if s.size != 1 or z.size != 1:
            self.unsupported(
                f"{what} qparams must be per-tensor; got scale shape {s.shape}"
            )
        if z.dtype not in (np.int8, np.uint8):
            self.unsupported(f"{what} zero point must be int8 or uint8; got {z.dtype}")
        return TensorQParams(float(F32(s.reshape(()))), int(_zp_int8(z).reshape(())))

    def code(self, name: str) -> _Tensor:
        if name not in self.tensors:
            if name in self.floats or name == self.float_input:
                self.unsupported(
                    f"input {name!r} is a float tensor where integer codes are needed"
                )
            self.unsupported(f"input {name!r} is not a quantized run-time tensor")
        return self.tensors[name]

    def check_qparams(self, t: _Tensor, s_name, z_name, what):
        qp = self.scalar_qparams(s_name, z_name, what)
        if (qp.scale, qp.zero_point) != (t.qp.scale, t.qp.zero_point):
            self.unsupported(
                f"{what} qparams {qp.scale}, {qp.zero_point} differ from "
                f"those of its producer {t.qp.scale}, {t.qp.zero_point}"
            )

    # ------------------------------------------------------------ emitting
    def emit(
        self,
        op,
        inputs,
        out,
        qp,
        *,
        rank,
        nhwc,
        weight=None,
        bias=None,
        pooled=False,
        **attrs,
    ) -> None:
        name = out
        while name in self.qparams:
            name += "_"
        node = QuantizedNode(
            name, op, [t.name for t in inputs], attrs, weight=weight, bias=bias
        )
        self.nodes.append(node)
        self.qparams[name] = qp
        self.tensors[out] = _Tensor(name, qp, rank, nhwc, pooled)

    def alias(self, out: str, t: _Tensor, **changes) -> None:
        self.tensors[out] = _Tensor(**{**t.__dict__, **changes})

    # ------------------------------------------------------------ driver
    def run(self) -> QuantizedModel:
        g = self.model.graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UnsupportedOnnxError(
                f"the ONNX graph must have one run-time input; got "
                f"{[i.name for i in inputs]}"
            )
        self.float_input = inputs[0].name
        nodes = list(g.node)
        for node in nodes:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.consts[node.output[0]] = self.nh.to_array(node.attribute[0].t)
        nodes = [n for n in nodes if n.op_type != "Constant"]
        nodes = _fold_qdq(self, nodes)
        _check_op_types(nodes)
        for node in nodes:
            self.node = node
            _HANDLERS[node.op_type](self, node, _attrs(self.onnx, node))
        outputs = [self.graph_output(o.name) for o in g.output]
        if self.input_name is None:
            raise UnsupportedOnnxError("the graph input is never quantized")
        self.qparams.setdefault(self.input_name, self.tensors[self.input_name].qp)
        name = g.name or "onnx_quantized"
        return QuantizedModel(
            self.nodes,
            [self.input_name],
            outputs,
            self.qparams,
            mode="static",
            name=name,
        )

    def graph_output(self, name: str) -> str:
        code = self.floats.get(name, name)
        if code not in self.tensors:
            raise UnsupportedOnnxError(
                f"ONNX graph output {name!r} is not a quantized tensor or the "
                "DequantizeLinear of one"
            )
        t = self.tensors[code]
        if t.rank == 4 and not t.nhwc:
            raise UnsupportedOnnxError(
                f"ONNX graph output {name!r} is a 4-D tensor in NHWC order"
            )
        return t.name


def _check_op_types(nodes) -> None:
    """Raise one error naming every unsupported op type, its count and first node."""
    bad: dict[str, list] = {}
    for node in nodes:
        ok = node.op_type in _HANDLERS and node.domain in (
            "",
            "ai.onnx",
            "com.microsoft",
        )
        if not ok:
            bad.setdefault(node.op_type, []).append(node)
    if not bad:
        return
    parts = []
    for op, found in bad.items():
        first = found[0].name or found[0].output[0]
        why = _OUT_OF_SCOPE.get(
            op,
            "a float op outside a DequantizeLinear -> op "
            "-> QuantizeLinear group; the importer runs "
            "integer codes only",
        )
        if op not in _OUT_OF_SCOPE and op not in (*QDQ_COMPUTE, *CODE_OPS):
            why = "not supported"
        parts.append(f"{op} ({len(found)} nodes, first {first!r}): {why}")
    raise UnsupportedOnnxError(
        f"{len(bad)} ONNX op types are not supported by load_quantized_onnx: "
        + "; ".join(parts)
        + f". Supported op types are {sorted(QUANTIZED_OPS)}"
    )


# ---------------------------------------------------------------- QDQ folding
def _fold_qdq(imp: _Importer, nodes: list) -> list:
    """Rewrite DequantizeLinear -> op -> QuantizeLinear groups as QOperator nodes."""
    h = imp.onnx.helper
    producer = {o: n for n in nodes for o in n.output}
    readers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    graph_outs = {o.name for o in imp.model.graph.output}
    drop: set[int] = set()
    out: list = []

    def dq_of(name):
        p = producer.get(name)
        return p if p is not None and p.op_type == "DequantizeLinear" else None

    def sole_q(name):
        r = readers.get(name, [])
        if len(r) == 1 and r[0].op_type == "QuantizeLinear" and name not in graph_outs:
            return r[0]
        return None

    for n in nodes:  # quantized constants
        if n.op_type == "DequantizeLinear" and n.input[0] in imp.consts:
            a = _attrs(imp.onnx, n)
            zp = (
                imp.consts[n.input[2]]
                if len(n.input) > 2 and n.input[2]
                else np.zeros_like(imp.consts[n.input[1]], np.int8)
            )
            imp.qconsts[n.output[0]] = _QConst(
                imp.consts[n.input[0]], imp.consts[n.input[1]], zp, a.get("axis", 1)
            )
            drop.add(id(n))
    for n in nodes:
        if id(n) in drop or n.op_type not in (*QDQ_COMPUTE, *CODE_OPS):
            continue
        runtime = [
            i for i in n.input if i and i not in imp.consts and i not in imp.qconsts
        ]
        dqs = [dq_of(i) for i in runtime]
        q = sole_q(n.output[0])
        if not runtime or any(d is None for d in dqs) or q is None:
            continue
        if any(len(readers[d.output[0]]) != 1 for d in dqs if d.output[0]):
            pass  # a shared DequantizeLinear is read again below; keep it
        qin = {
            i: (d.input[0], d.input[1], d.input[2] if len(d.input) > 2 else "")
            for i, d in zip(runtime, dqs)
        }
        new = _qdq_node(imp, h, n, q, qin)
        if new is None:
            continue
        for d in dqs:
            if len(readers[d.output[0]]) == 1:
                drop.add(id(d))
        drop.add(id(q))
        out.append((n, new))
    replaced = {id(n): new for n, new in out}
    result = []
    for n in nodes:
        if id(n) in drop:
            continue
        result.extend(replaced.get(id(n), [n]))
    return result


def _qdq_node(imp, h, n, q, qin):
    """The QOperator node(s) for float node ``n`` between DQ inputs and Q ``q``."""
    y, ys, yz = q.output[0], q.input[1], q.input[2] if len(q.input) > 2 else ""
    attrs = _attrs(imp.onnx, n)
    op = n.op_type
    if op in CODE_OPS:
        ((x, xs, xz),) = qin.values()
        if not _same_qparams(imp, xs, xz, ys, yz):
            return None
        rest = [i for i in n.input[1:]]
        if op in ("Relu", "Clip"):
            return [h.make_node(f"QDQ{op}", [x, xs, xz, *rest], [y], name=n.name)]
        return [h.make_node(op, [x, *rest], [y], name=n.name, **attrs)]
    qop = QDQ_COMPUTE[op]
    ms = (
        {"domain": "com.microsoft"}
        if qop not in ("QLinearConv", "QLinearMatMul")
        else {}
    )
    if op in ("Conv", "Gemm", "MatMul"):
        x, xs, xz = qin[n.input[0]]
        w = imp.qconsts.get(n.input[1])
        if w is None:
            return None
        wname = f"{n.name}/weight"
        imp.qconsts[wname] = w
        b = n.input[2] if len(n.input) > 2 and n.input[2] else ""
        bname = ""
        if b:
            bq = imp.qconsts.get(b)
            if bq is None or bq.codes.dtype != np.int32:
                return None
            bname = f"{n.name}/bias"
            imp.consts[bname] = bq.codes
        if op == "Conv":
            args = [x, xs, xz, wname, "", "", ys, yz, bname]
            return [h.make_node(qop, args, [y], name=n.name, **attrs)]
        if op == "MatMul":
            return [
                h.make_node(qop, [x, xs, xz, wname, "", "", ys, yz], [y], name=n.name)
            ]
        args = [x, xs, xz, wname, "", "", bname, ys, yz]
        return [h.make_node(qop, args, [y], name=n.name, **ms, **attrs)]
    if op == "Add":
        (a, as_, az), (b, bs, bz) = (qin[i] for i in n.input)
        return [
            h.make_node(qop, [a, as_, az, b, bs, bz, ys, yz], [y], name=n.name, **ms)
        ]
    if op in ("GlobalAveragePool", "AveragePool"):
        x, xs, xz = qin[n.input[0]]
        return [h.make_node(qop, [x, xs, xz, ys, yz], [y], name=n.name, **ms, **attrs)]
    args = [ys, yz]
    for i in n.input:
        args += list(qin[i])
    return [h.make_node(qop, args, [y], name=n.name, **ms, **attrs)]


def _same_qparams(imp, xs, xz, ys, yz) -> bool:
    def val(name, default):
        return np.asarray(imp.consts[name]) if name else default

    try:
        s1, s2 = val(xs, None), val(ys, None)
        z1, z2 = val(xz, np.uint8(0)), val(yz, np.uint8(0))
    except KeyError:
        return False
    return bool(np.all(s1 == s2) and np.all(_zp_int8(z1) == _zp_int8(z2)))


# ---------------------------------------------------------------- weights
def _weight_const(imp, name, s_name, z_name, axis) -> _QConst:
    if name in imp.qconsts and not s_name:
        return imp.qconsts[name]
    codes = imp.const(name, "weight")
    return _QConst(
        codes,
        imp.const(s_name, "weight scale"),
        imp.const(z_name, "weight zero point") if z_name else np.zeros((), codes.dtype),
        axis,
    )


def _quantized_weight(imp, w: _QConst, codes_engine, op, c_out) -> QuantizedWeight:
    """QuantizedWeight from ONNX codes already in the engine's layout."""
    if codes_engine.dtype not in (np.int8, np.uint8):
        imp.unsupported(f"weights must be int8 or uint8; got {codes_engine.dtype}")
    scale = np.asarray(w.scale, dtype=F32).astype(np.float64).reshape(-1)
    zp = _zp_int8(np.asarray(w.zero_point)).reshape(-1)
    if scale.size not in (1, c_out) or zp.size not in (1, c_out):
        imp.unsupported(
            f"weight scale must be per-tensor or per output channel "
            f"({c_out}); got {scale.size} values"
        )
    per_channel = scale.size > 1 or zp.size > 1
    if per_channel:
        scale = np.broadcast_to(scale, (c_out,)).copy()
        zp = np.broadcast_to(zp, (c_out,)).copy()
    axis = {"Conv2D": 0, "Dense": 0, "DepthwiseConv2D": 3}[op]
    scheme = QuantScheme(
        bits=8,
        signed=True,
        symmetric=bool(np.all(zp == 0)),
        granularity="per_channel" if per_channel else "per_tensor",
        axis=axis if per_channel else None,
    )
    if not per_channel:
        scale, zp = scale.reshape(()), zp.reshape(())
    return QuantizedWeight(
        _to_int8(codes_engine), scale, zp.astype(np.int64), scheme, op
    )


def _bias(imp, name, c_out):
    if not name:
        return None
    b = np.asarray(imp.const(name, "bias"))
    if b.dtype != np.int32:
        imp.unsupported(f"bias must be int32; got {b.dtype}")
    return np.ascontiguousarray(np.broadcast_to(b.reshape(-1), (c_out,)))


# ---------------------------------------------------------------- handlers
def _opt(node, k):
    return node.input[k] if len(node.input) > k and node.input[k] else ""


def _quantize_linear(imp, node, attrs):
    if node.input[0] != imp.float_input or imp.input_name is not None:
        imp.unsupported(
            "QuantizeLinear is supported on the graph input only; "
            "float tensors inside the graph are not"
        )
    qp = imp.scalar_qparams(node.input[1], _opt(node, 2), "input")
    imp.input_name = node.output[0]
    imp.tensors[node.output[0]] = _Tensor(
        node.output[0], qp, _input_rank(imp), nhwc=_input_rank(imp) == 4
    )


def _input_rank(imp) -> int:
    vi = next(i for i in imp.model.graph.input if i.name == imp.float_input)
    return len(vi.type.tensor_type.shape.dim)


def _dequantize_linear(imp, node, attrs):
    t = imp.code(node.input[0])
    imp.check_qparams(t, node.input[1], _opt(node, 2), "DequantizeLinear")
    imp.floats[node.output[0]] = node.input[0]


def _padding(imp, attrs, k):
    auto = attrs.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return "valid"
    if auto == "SAME_UPPER":
        return "same"
    if auto != "NOTSET":
        imp.unsupported(f"auto_pad {auto!r} is not supported")
    p = list(attrs.get("pads", [0] * 2 * k))
    if len(p) != 4:
        imp.unsupported(f"only 2-D pooling and convolution are supported; pads={p}")
    return ((p[0], p[2]), (p[1], p[3]))


def _spatial(imp, name) -> _Tensor:
    t = imp.code(name)
    if t.rank != 4 or not t.nhwc:
        imp.unsupported(f"input {name!r} must be a 4-D NCHW tensor")
    return t


def _qlinear_conv(imp, node, attrs):
    x = _spatial(imp, node.input[0])
    imp.check_qparams(x, node.input[1], node.input[2], "x")
    wq = _weight_const(imp, node.input[3], _opt(node, 4), _opt(node, 5), 0)
    y = imp.scalar_qparams(node.input[6], node.input[7], "y")
    w = np.asarray(wq.codes)
    if w.ndim != 4:
        imp.unsupported(f"only 2-D convolution is supported; weight shape {w.shape}")
    group = int(attrs.get("group", 1))
    common = dict(
        strides=tuple(attrs.get("strides", (1, 1))),
        dilations=tuple(attrs.get("dilations", (1, 1))),
        padding=_padding(imp, attrs, 2),
        activation=None,
    )
    c_out = w.shape[0]
    if group > 1 and w.shape[1] == 1:
        op, codes = "DepthwiseConv2D", w.transpose(1, 2, 3, 0)
        common["depth_multiplier"] = c_out // group
    else:
        op, codes = "Conv2D", w.transpose(0, 2, 3, 1)
        common["groups"] = group
    weight = _quantized_weight(imp, wq, np.ascontiguousarray(codes), op, c_out)
    bias = _bias(imp, _opt(node, 8), c_out)
    imp.emit(
        op,
        [x],
        node.output[0],
        y,
        rank=4,
        nhwc=True,
        weight=weight,
        bias=bias,
        **common,
    )


def _dense(imp, node, x, wq, w_kn, bias_name, y):
    """Dense from a constant ``w_kn`` of shape (K, C_out)."""
    if x.rank != 2:
        imp.unsupported(f"the input must be 2-D (batch, features); got rank {x.rank}")
    c_out = w_kn.shape[1]
    weight = _quantized_weight(imp, wq, np.ascontiguousarray(w_kn.T), "Dense", c_out)
    imp.emit(
        "Dense",
        [x],
        node.output[0],
        y,
        rank=2,
        nhwc=False,
        weight=weight,
        bias=_bias(imp, bias_name, c_out),
        activation=None,
    )


def _qgemm(imp, node, attrs):
    if attrs.get("transA", 0) or float(attrs.get("alpha", 1.0)) != 1.0:
        imp.unsupported("transA=1 or alpha != 1 is not supported")
    if float(attrs.get("beta", 1.0)) != 1.0:
        imp.unsupported("beta != 1 is not supported")
    x = imp.code(node.input[0])
    imp.check_qparams(x, node.input[1], node.input[2], "A")
    wq = _weight_const(imp, node.input[3], _opt(node, 4), _opt(node, 5), 1)
    w = np.asarray(wq.codes)
    w_kn = w.T if attrs.get("transB", 0) else w
    if not _opt(node, 7):
        imp.unsupported("QGemm without y_scale (float output) is not supported")
    y = imp.scalar_qparams(node.input[7], _opt(node, 8), "y")
    _dense(imp, node, x, wq, w_kn, _opt(node, 6), y)


def _qlinear_matmul(imp, node, attrs):
    x = imp.code(node.input[0])
    imp.check_qparams(x, node.input[1], node.input[2], "a")
    wq = _weight_const(imp, node.input[3], _opt(node, 4), _opt(node, 5), 1)
    w = np.asarray(wq.codes)
    if w.ndim != 2:
        imp.unsupported(f"the constant operand must be 2-D; got {w.shape}")
    y = imp.scalar_qparams(node.input[6], node.input[7], "y")
    _dense(imp, node, x, wq, w, "", y)


def _qlinear_add(imp, node, attrs):
    a, b = imp.code(node.input[0]), imp.code(node.input[3])
    imp.check_qparams(a, node.input[1], node.input[2], "A")
    imp.check_qparams(b, node.input[4], _opt(node, 5), "B")
    if (a.rank, a.nhwc) != (b.rank, b.nhwc):
        imp.unsupported("both inputs must have the same rank (no broadcasting)")
    y = imp.scalar_qparams(node.input[6], _opt(node, 7), "C")
    imp.emit(
        "Add", [a, b], node.output[0], y, rank=a.rank, nhwc=a.nhwc, activation=None
    )


def _qlinear_global_average_pool(imp, node, attrs):
    if attrs.get("channels_last", 0):
        imp.unsupported("channels_last=1 is not supported")
    x = _spatial(imp, node.input[0])
    imp.check_qparams(x, node.input[1], node.input[2], "x")
    y = imp.scalar_qparams(node.input[3], node.input[4], "y")
    imp.emit(
        "GlobalAvgPool",
        [x],
        node.output[0],
        y,
        rank=4,
        nhwc=True,
        pooled=True,
        keepdims=True,
    )


def _pool_attrs(imp, attrs):
    k = tuple(attrs["kernel_shape"])
    if attrs.get("ceil_mode", 0) or tuple(attrs.get("dilations", (1, 1))) != (1, 1):
        imp.unsupported("ceil_mode=1 or dilations are not supported")
    return dict(
        pool_size=k,
        strides=tuple(attrs.get("strides", k)),
        padding=_padding(imp, attrs, 2),
    )


def _qlinear_average_pool(imp, node, attrs):
    if attrs.get("channels_last", 0):
        imp.unsupported("channels_last=1 is not supported")
    x = _spatial(imp, node.input[0])
    imp.check_qparams(x, node.input[1], node.input[2], "x")
    y = imp.scalar_qparams(node.input[3], node.input[4], "y")
    imp.emit(
        "AvgPool",
        [x],
        node.output[0],
        y,
        rank=4,
        nhwc=True,
        count_include_pad=bool(attrs.get("count_include_pad", 0)),
        **_pool_attrs(imp, attrs),
    )


def _max_pool(imp, node, attrs):
    if len([o for o in node.output if o]) > 1:
        imp.unsupported("the Indices output is not supported")
    x = _spatial(imp, node.input[0])
    imp.emit(
        "MaxPool",
        [x],
        node.output[0],
        x.qp,
        rank=4,
        nhwc=True,
        **_pool_attrs(imp, attrs),
    )


def _qlinear_concat(imp, node, attrs):
    y = imp.scalar_qparams(node.input[0], node.input[1], "Y")
    parts = []
    for k in range(2, len(node.input), 3):
        t = imp.code(node.input[k])
        imp.check_qparams(t, node.input[k + 1], node.input[k + 2], "input")
        parts.append(t)
    _concat(imp, node, attrs, parts, y)


def _concat(imp, node, attrs, parts, y):
    rank, nhwc = parts[0].rank, parts[0].nhwc
    if any((p.rank, p.nhwc) != (rank, nhwc) for p in parts):
        imp.unsupported("inputs must share rank and layout")
    axis = int(attrs["axis"]) % rank
    if nhwc:
        axis = (0, 3, 1, 2)[axis]  # ONNX NCHW axis -> NHWC axis
    imp.emit("Concat", parts, node.output[0], y, rank=rank, nhwc=nhwc, axis=axis)


def _plain_concat(imp, node, attrs):
    parts = [imp.code(i) for i in node.input]
    qp = parts[0].qp
    if any((p.qp.scale, p.qp.zero_point) != (qp.scale, qp.zero_point) for p in parts):
        imp.unsupported("Concat of codes needs equal input qparams (use QLinearConcat)")
    _concat(imp, node, attrs, parts, qp)


def _transpose(imp, node, attrs):
    x = imp.code(node.input[0])
    perm = tuple(attrs.get("perm", range(x.rank)[::-1]))
    if x.rank == 4 and x.nhwc and perm == (0, 2, 3, 1):
        return imp.alias(node.output[0], x, nhwc=False)  # engine order = ONNX now
    if x.rank == 4 and not x.nhwc and perm == (0, 3, 1, 2):
        return imp.alias(node.output[0], x, nhwc=True)
    if perm == tuple(range(x.rank)):
        return imp.alias(node.output[0], x)
    imp.unsupported(
        f"Transpose perm={list(perm)} of a rank-{x.rank} tensor is not supported"
    )


def _flatten(imp, node, attrs):
    x = imp.code(node.input[0])
    if int(attrs.get("axis", 1)) != 1:
        imp.unsupported("only axis=1 is supported")
    _flatten_to_2d(imp, node, x)


def _flatten_to_2d(imp, node, x):
    if x.rank == 2:
        return imp.alias(node.output[0], x)
    if x.rank == 4 and x.nhwc and not x.pooled:
        imp.unsupported(
            "flattening an NCHW tensor with spatial size above 1x1 is "
            "not supported (insert Transpose(0, 2, 3, 1) before it)"
        )
    imp.emit("Flatten", [x], node.output[0], x.qp, rank=2, nhwc=False)


def _reshape(imp, node, attrs):
    x = imp.code(node.input[0])
    shape = [int(v) for v in imp.const(node.input[1], "shape").reshape(-1)]
    if len(shape) == 2 and shape[1] == -1 and shape[0] in (0, 1, -1):
        return _flatten_to_2d(imp, node, x)
    imp.unsupported(f"Reshape to {shape} is supported only as a flatten to (batch, -1)")


def _identity(imp, node, attrs):
    imp.alias(node.output[0], imp.code(node.input[0]))


def _clip_codes(imp, node, attrs):
    """Clip/Relu on codes (int8 Clip, or a folded DQ -> Relu/Clip -> Q)."""
    from refquant.kernels.activations import activation_range

    x = imp.code(node.input[0])
    qp = x.qp
    if node.op_type in ("QDQClip", "QDQRelu"):  # float bounds, dequantized values
        lo_f = float(imp.const(node.input[3], "min")) if _opt(node, 3) else None
        hi_f = float(imp.const(node.input[4], "max")) if _opt(node, 4) else None
        if node.op_type == "QDQRelu":
            lo_f = 0.0
        kinds = {(0.0, None): "ReLU", (0.0, 6.0): "ReLU6"}
        op = kinds.get((lo_f, hi_f))
    else:
        lo = int(_zp_int8(imp.const(node.input[1], "min")))
        hi = int(_zp_int8(imp.const(node.input[2], "max"))) if _opt(node, 2) else 127
        op = None
        for cand, act in (("ReLU", "relu"), ("ReLU6", "relu6")):
            b = activation_range(act, qp.scale, qp.zero_point, np.int8, "onnxruntime")
            if (int(b[0]), int(b[1])) == (lo, hi):
                op = cand
                break
    if op is None:
        imp.unsupported(
            "only ReLU (min 0) and ReLU6 (min 0, max 6) clamps are "
            "supported on quantized tensors"
        )
    imp.emit(op, [x], node.output[0], qp, rank=x.rank, nhwc=x.nhwc)


def _pad(imp, node, attrs):
    """Constant Pad of an NCHW tensor; the value is a code (int8 / uint8 file)
    or a real value (folded QDQ), kept as the real value of its code."""
    from refquant.kernels.quantize_ops import quantize_linear

    x = _spatial(imp, node.input[0])
    if attrs.get("mode", "constant") != "constant" or _opt(node, 3):
        imp.unsupported("only constant padding of all axes is supported")
    pads = [int(v) for v in imp.const(node.input[1], "pads").reshape(-1)]
    value = (
        np.asarray(imp.const(node.input[2], "value"))
        if _opt(node, 2)
        else (np.zeros((), np.int8))
    )
    qp = x.qp
    if value.dtype.kind in "iu":
        code = int(_zp_int8(value)) if value.dtype == np.uint8 else int(value)
    else:
        code = int(
            quantize_linear(
                np.float32([value]), qp.scale, qp.zero_point, profile="onnxruntime"
            )[0]
        )
    real = (code - qp.zero_point) * np.float32(qp.scale)
    back = quantize_linear(
        np.float32([real]), qp.scale, qp.zero_point, profile="onnxruntime"
    )
    if int(back[0]) != code:
        imp.unsupported(f"pad code {code} has no real value that quantizes back")
    nchw = list(zip(pads[:4], pads[4:]))
    paddings = [nchw[i] for i in (0, 2, 3, 1)]  # NCHW pairs -> NHWC pairs
    imp.emit(
        "Pad",
        [x],
        node.output[0],
        qp,
        rank=4,
        nhwc=True,
        paddings=paddings,
        value=float(real),
    )


_HANDLERS = {
    "Pad": _pad,
    "QuantizeLinear": _quantize_linear,
    "DequantizeLinear": _dequantize_linear,
    "QLinearConv": _qlinear_conv,
    "QLinearMatMul": _qlinear_matmul,
    "QGemm": _qgemm,
    "QLinearAdd": _qlinear_add,
    "QLinearGlobalAveragePool": _qlinear_global_average_pool,
    "QLinearAveragePool": _qlinear_average_pool,
    "QLinearConcat": _qlinear_concat,
    "MaxPool": _max_pool,
    "Concat": _plain_concat,
    "Transpose": _transpose,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Identity": _identity,
    "Clip": _clip_codes,
    "QDQClip": _clip_codes,
    "QDQRelu": _clip_codes,
}

QUANTIZED_OPS = frozenset(set(_HANDLERS) - {"QDQClip", "QDQRelu"}) | frozenset(
    (*QDQ_COMPUTE, "Relu", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger")
)
"""ONNX op types :func:`load_quantized_onnx` accepts (QDQ float ops folded)."""


# ---------------------------------------------------------------- public
def load_quantized_onnx(path_or_model, *, name: str | None = None) -> QuantizedModel:
    """Import a quantized ONNX model (QOperator or QDQ) as a static QuantizedModel.

    Every tensor keeps the file's qparams exactly: ``x ~= (q - zp) * s`` with
    ``s`` the float32 scale and ``q`` int8 codes (uint8 codes become
    ``q - 128`` with ``zp - 128``).  Running the result with
    ``profile="onnxruntime"`` reproduces ONNX Runtime's integer kernels.

    Parameters
    ----------
    path_or_model : str, os.PathLike, bytes or onnx.ModelProto
    name : str, optional
        Name of the returned model (default: the ONNX graph name).

    Returns
    -------
    QuantizedModel
        ``mode="static"``; input NHWC float32, outputs the codes of the ONNX
        outputs (``run`` dequantizes them).  ``mode="dynamic"`` for graphs
        with DynamicQuantizeLinear chains (float outputs).

    Raises
    ------
    UnsupportedOnnxError
        An op outside :data:`QUANTIZED_OPS` (the message names the op and its
        node), a dynamic op outside the supported chain (DynamicQuantizeLSTM
        is out of scope), or a pattern the engine cannot express.
    """
    onnx, nh = _onnx()
    model = _as_model(onnx, path_or_model)
    if name is not None and not isinstance(name, str):
        from refquant.errors import InvalidTypeError

        raise InvalidTypeError(f"name must be a str or None; got name={name!r}")
    _check_not_degenerate(model, _source(path_or_model))
    try:
        if any(n.op_type in DYNAMIC_OPS for n in model.graph.node):
            qm = _load_dynamic(model, onnx, nh)
        else:
            qm = _Importer(model, onnx, nh).run()
    except RefquantError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        raise _malformed(_source(path_or_model), e) from None
    except (RecursionError, OSError) as e:
        raise _malformed(_source(path_or_model), e) from None
    if name is not None:
        qm.name = name
    return qm


# ---------------------------------------------------------------- dynamic
def _load_dynamic(model, onnx, nh) -> QuantizedModel:
    """A dynamically quantized graph as a ``mode="dynamic"`` QuantizedModel.

    Each ``DynamicQuantizeLinear -> ConvInteger / MatMulInteger -> Cast ->
    Mul(Mul(x_scale, w_scale))`` chain becomes a float Conv / MatMul whose
    weight holds the codes; :func:`~refquant.io.onnx_import.load_onnx` lays out
    the graph (a following constant Add becomes the bias), and the weighted
    nodes get their codes, scales and zero points back.  The model then
    quantizes each weighted node's input per batch (uint8 min-max),
    accumulates exactly and scales in float (``QuantizedModel.run``).
    """
    from refquant.io.onnx_import import load_onnx

    model, records = _dynamic_to_float(model, onnx, nh)
    leftover = [n for n in model.graph.node if n.op_type in DYNAMIC_OPS]
    if leftover:
        _check_op_types(leftover)
    graph = load_onnx(model)
    nodes = []
    for n in graph.nodes:
        rec = records.get(n.name)
        if n.op in ("Conv2D", "DepthwiseConv2D", "Dense") and rec is not None:
            nodes.append(_dynamic_node(n, rec))
        elif n.op in ("Conv2D", "DepthwiseConv2D", "Dense"):
            raise UnsupportedOnnxError(
                f"node {n.name!r}: a float {n.op} in a dynamically quantized graph "
                "(mixed float and quantized weights are not supported)"
            )
        else:
            nodes.append(
                QuantizedNode(n.name, n.op, n.inputs, n.attrs, params=dict(n.params))
            )
    return QuantizedModel(
        nodes, graph.inputs, graph.outputs, mode="dynamic", name=graph.name
    )


def _dynamic_node(n, rec) -> QuantizedNode:
    codes = np.rint(np.asarray(n.params["weight"], np.float64))
    codes = codes.astype(np.uint8 if rec.codes.dtype == np.uint8 else np.int8)
    c_out = codes.shape[3] if n.op == "DepthwiseConv2D" else codes.shape[0]

    class _Imp:  # error context for _quantized_weight
        @staticmethod
        def unsupported(what):
            raise UnsupportedOnnxError(f"node {n.name!r}: {what}")

    weight = _quantized_weight(_Imp, rec, codes, n.op, c_out)
    bias = n.params.get("bias")
    attrs = {**n.attrs}
    return QuantizedNode(
        n.name,
        n.op,
        n.inputs,
        attrs,
        weight=weight,
        bias=None if bias is None else np.float32(bias),
    )


def _dynamic_to_float(model, onnx, nh):
    """Replace each supported dynamic chain by a float op over the weight codes."""
    h = onnx.helper
    g = model.graph
    consts = {t.name: nh.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = nh.to_array(n.attribute[0].t)
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    drop, new_nodes, records, new_inits = set(), {}, {}, []
    for n in g.node:
        if n.op_type not in ("ConvInteger", "MatMulInteger"):
            continue
        chain = _dynamic_chain(n, producer, readers, consts)
        if chain is None:
            continue
        dql, cast, mul, smul, w_scale = chain
        out = mul.output[0]
        w = consts[n.input[1]]
        wz = (
            consts[n.input[3]]
            if len(n.input) > 3 and n.input[3]
            else (np.zeros((), w.dtype))
        )
        records[out] = _QConst(w, w_scale, wz, 0)
        wname = f"{out}/weight_codes"
        new_inits.append(nh.from_array(w.astype(np.float32), wname))
        attrs = _attrs(onnx, n)
        op = "Conv" if n.op_type == "ConvInteger" else "MatMul"
        new_nodes[id(n)] = h.make_node(
            op, [dql.input[0], wname], [out], name=n.name, **attrs
        )
        drop.update({id(cast), id(mul), id(smul)})
    for n in g.node:  # a DynamicQuantizeLinear read only by replaced chains
        if n.op_type == "DynamicQuantizeLinear":
            users = [r for o in n.output for r in readers.get(o, [])]
            if users and all(id(r) in new_nodes or id(r) in drop for r in users):
                drop.add(id(n))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for n in g.node:
        if id(n) not in drop:
            out.graph.node.append(new_nodes.get(id(n), n))
    out.graph.initializer.extend(new_inits)
    return out, records


def _dynamic_chain(n, producer, readers, consts):
    """(DQL, Cast, Mul, scale Mul, w_scale) of a supported chain, else None."""
    dql = producer.get(n.input[0])
    if dql is None or dql.op_type != "DynamicQuantizeLinear":
        return None
    if len(n.input) < 3 or n.input[2] != dql.output[2] or n.input[1] not in consts:
        return None
    if len(n.input) > 3 and n.input[3] and n.input[3] not in consts:
        return None
    (cast,) = (
        readers.get(n.output[0], [None, None])[:1]
        if len(readers.get(n.output[0], [])) == 1
        else (None,)
    )
    if cast is None or cast.op_type != "Cast":
        return None
    r = readers.get(cast.output[0], [])
    if len(r) != 1 or r[0].op_type != "Mul":
        return None
    mul = r[0]
    other = mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0]
    smul = producer.get(other)
    if smul is None or smul.op_type != "Mul" or dql.output[1] not in smul.input:
        return None
    w_scale_name = smul.input[1] if smul.input[0] == dql.output[1] else smul.input[0]
    if w_scale_name not in consts:
        return None
    if len(readers.get(other, [])) != 1:
        return None
    return dql, cast, mul, smul, consts[w_scale_name]
