"""Export a static :class:`QuantizedModel` as an ONNX QDQ or QOperator model.

``export_onnx(qmodel, path, format=...)`` writes a graph that ONNX Runtime
runs with refquant's own qparams, so that its int8 output codes equal
``qmodel.run_codes(x, profile="onnxruntime")`` bit for bit (the input is
float32 NCHW; 4-D activations are NCHW in the file, NHWC in refquant).

Both formats keep every activation as int8 codes ``q`` with
``x ~= (q - zero_point) * scale`` (scale stored as float32, the value the
``onnxruntime`` profile uses anyway):

* ``"qoperator"``: QuantizeLinear at the input, then QLinearConv, QGemm
  (com.microsoft, Dense with an int32 bias), QLinearAdd,
  QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat
  (com.microsoft), and int8 MaxPool / Clip / Pad / Transpose / Flatten;
* ``"qdq"``: every arithmetic node reads ``DequantizeLinear`` of its int8
  inputs and of its int8 weight (per-channel ``axis=0``) and int32 bias
  (scale ``f32(s_in * s_w)``) and writes ``QuantizeLinear``; data movement
  stays on int8.

Fused activations (ReLU, ReLU6) become an int8 ``Clip`` to the bounds of
:func:`refquant.kernels.activations.activation_range` under the
``onnxruntime`` profile; a clamp that removes nothing is omitted.  The graph
outputs are the int8 codes of ``qmodel.outputs`` (``dequantize_outputs=True``
appends DequantizeLinear).  Spec: specs/io_onnx_quantized.md, section 2.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from refquant._validation import IntRange, OneOf, check, check_type
from refquant.errors import InvalidArgumentError
from refquant.io.onnx_import import UnsupportedOnnxError, _onnx
from refquant.kernels.activations import activation_range
from refquant.ptq.qmodel import QuantizedModel

__all__ = ["ACTIVATION_DTYPES", "FORMATS", "export_onnx"]

FORMATS = ("qdq", "qoperator")
ACTIVATION_DTYPES = ("int8", "uint8")
MS = "com.microsoft"
F32 = np.float32


def _pads(padding, what):
    """ONNX ``pads`` [top, left, bottom, right] or ``auto_pad`` for ``padding``."""
    if padding == "valid":
        return {"pads": [0, 0, 0, 0]}
    if padding == "same":
        return {"auto_pad": "SAME_UPPER"}  # extra cell at the end, as the engine
    (t, b), (left, r) = padding
    return {"pads": [int(t), int(left), int(b), int(r)]}


class _Writer:
    """Collects ONNX nodes and initializers for one quantized model."""

    def __init__(self, qm: QuantizedModel, fmt: str, onnx, nh, act_dtype):
        self.qm, self.fmt, self.onnx, self.nh = qm, fmt, onnx, nh
        self.dtype = np.dtype(act_dtype)
        self.shift = 128 if self.dtype == np.uint8 else 0  # uint8 code = q + 128
        self.nodes, self.inits, self.names = [], [], set()
        self.rank: dict[str, int] = {}
        self.deq: dict[str, str] = {}

    # ------------------------------------------------------------ helpers
    def const(self, name, value) -> str:
        if name not in self.names:
            self.names.add(name)
            self.inits.append(self.nh.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, outputs, *, domain="", name=None, **attrs):
        self.nodes.append(
            self.onnx.helper.make_node(
                op,
                list(inputs),
                list(outputs),
                name=name or outputs[0],
                domain=domain,
                **attrs,
            )
        )

    def qp(self, tensor) -> tuple[str, str]:
        """Initializer names of a tensor's float32 scale and int8 zero point."""
        p = self.qm.tensor_qparams[tensor]
        scale = self.const(f"{tensor}.scale", F32(p.scale))
        return scale, self.const(f"{tensor}.zero_point", self.code(p.zero_point))

    def code(self, q: int):
        """An int8 code in the file's activation type (uint8: ``q + 128``)."""
        return self.dtype.type(int(q) + self.shift)

    def dq(self, tensor, reader: str = "out") -> str:
        """``DequantizeLinear(tensor)`` dedicated to one reader node.

        ONNX Runtime fuses DequantizeLinear -> op -> QuantizeLinear into one
        integer op only when each DequantizeLinear feeds that op alone.
        """
        out = f"{tensor}.dq.{reader}"
        if out not in self.deq:
            self.node("DequantizeLinear", [tensor, *self.qp(tensor)], [out])
            self.deq[out] = out
        return out

    def quantize(self, real, out, tensor=None) -> None:
        """``out = QuantizeLinear(real)`` with the qparams of ``tensor`` (or out)."""
        qp = self.qp(tensor or out)
        self.node("QuantizeLinear", [real, *qp], [out], name=f"{out}/quantize")

    def bounds(self, n) -> tuple[int, int] | None:
        """Code bounds of the node's fused activation, None when it clamps nothing.

        ``activation_range`` under the ``onnxruntime`` profile (float32
        division of 0 and 6 by the output scale, ties to even).
        """
        act = n.attrs.get("activation")
        if n.op in ("ReLU", "ReLU6"):
            act = "relu" if n.op == "ReLU" else "relu6"
        p = self.qm.tensor_qparams[n.name]
        lo, hi = activation_range(act, p.scale, p.zero_point, np.int8, "onnxruntime")
        return None if (int(lo), int(hi)) == (-128, 127) else (int(lo), int(hi))

    def raw_name(self, n) -> str:
        """Where the op writes: the node's tensor, or a temporary before a Clip."""
        return n.name if self.bounds(n) is None else f"{n.name}.raw"

    def clamp(self, n, raw: str) -> None:
        """``n.name = Clip(raw, lo, hi)`` on int8 codes when a clamp is needed."""
        b = self.bounds(n)
        if b is None:
            if raw != n.name:
                self.node("Identity", [raw], [n.name])
            return
        lo = self.const(f"{n.name}.lo", self.code(b[0]))
        hi = self.const(f"{n.name}.hi", self.code(b[1]))
        self.node("Clip", [raw, lo, hi], [n.name], name=f"{n.name}/clip")

    # ------------------------------------------------------------ weights
    def weight(self, n):
        """int8 weight in ONNX layout, float32 scale, int8 zero point (names)."""
        w = n.weight
        if w.scheme.granularity == "per_group":
            raise UnsupportedOnnxError(
                f"node {n.name!r}: per-group weights have no ONNX QLinear form; "
                "use per_tensor or per_channel weights"
            )
        if np.any(w.zero_point != 0):
            raise UnsupportedOnnxError(
                f"node {n.name!r}: ONNX Runtime needs int8 weight zero points equal "
                f"to 0; got zero points in [{int(w.zero_point.min())}, "
                f"{int(w.zero_point.max())}] (quantize weights symmetrically)"
            )
        codes = w.codes
        if n.op == "Conv2D":
            codes = codes.transpose(0, 3, 1, 2)  # OHWI -> OIHW
        elif n.op == "DepthwiseConv2D":
            codes = codes.transpose(3, 0, 1, 2)  # 1HWC -> [C*M, 1, kh, kw]
        per_channel = w.scheme.granularity == "per_channel"
        scale = F32(w.scale.reshape(-1)) if per_channel else F32(w.scale.reshape(()))
        zp = np.zeros(scale.shape, np.int8)
        return (
            self.const(f"{n.name}.weight", np.ascontiguousarray(codes)),
            self.const(f"{n.name}.weight_scale", scale),
            self.const(f"{n.name}.weight_zero_point", zp),
        )

    def bias(self, n, c_out: int, scales) -> tuple[str, str]:
        """int32 bias name and the float32 bias scales ``f32(s_in * s_w)``."""
        b = np.zeros(c_out, np.int32) if n.bias is None else n.bias
        if b.dtype != np.int32:
            raise UnsupportedOnnxError(
                f"node {n.name!r}: bias must be int32 in a static model; got {b.dtype}"
            )
        s_in = F32(self.qm.tensor_qparams[n.inputs[0]].scale)
        s_b = np.broadcast_to((s_in * scales).astype(F32), (c_out,))
        return self.const(f"{n.name}.bias", b), np.ascontiguousarray(s_b)


# ---------------------------------------------------------------- node writers
def _conv(wr: _Writer, n):
    at = n.attrs
    w, ws, wz = wr.weight(n)
    c_out = n.weight.codes.shape[0 if n.op == "Conv2D" else 3]
    if n.op == "Conv2D":
        group = int(at["groups"])
    else:
        group = c_out // int(at["depth_multiplier"])
    kernel = list(n.weight.codes.shape[1:3])
    attrs = dict(
        kernel_shape=kernel,
        strides=list(at["strides"]),
        dilations=list(at["dilations"]),
        group=group,
        **_pads(at["padding"], n.name),
    )
    scale = wr.nh.to_array(next(i for i in wr.inits if i.name == ws))
    b, bs = wr.bias(n, c_out, scale)
    raw = wr.raw_name(n)
    x = n.inputs[0]
    if wr.fmt == "qoperator":
        wr.node(
            "QLinearConv", [x, *wr.qp(x), w, ws, wz, *wr.qp(n.name), b], [raw], **attrs
        )
    else:
        wd = _dq_weight(wr, n, w, ws, wz, axis=0)
        bd = _dq_bias(wr, n, b, bs)
        wr.node("Conv", [wr.dq(x, n.name), wd, bd], [f"{n.name}.real"], **attrs)
        wr.quantize(f"{n.name}.real", raw, n.name)
    wr.rank[n.name] = 4
    wr.clamp(n, raw)


def _dq_weight(wr, n, w, ws, wz, axis):
    out = f"{w}.dq"
    per_channel = n.weight.scheme.granularity == "per_channel"
    extra = {"axis": axis} if per_channel else {}
    wr.node("DequantizeLinear", [w, ws, wz], [out], **extra)
    return out


def _dq_bias(wr, n, b, s_b):
    """``DequantizeLinear(bias, f32(s_in * s_w), 0)`` (int32, per channel)."""
    out = f"{b}.dq"
    bs = wr.const(f"{b}.scale", s_b)
    zp = wr.const(f"{b}.zero_point", np.zeros(s_b.shape, np.int32))
    wr.node("DequantizeLinear", [b, bs, zp], [out], axis=0)
    return out


def _dense(wr: _Writer, n):
    x = n.inputs[0]
    if wr.rank[x] != 2:
        raise UnsupportedOnnxError(
            f"node {n.name!r}: Dense export needs a 2-D input (batch, features); "
            f"got rank {wr.rank[x]}"
        )
    w, ws, wz = wr.weight(n)
    scale = wr.nh.to_array(next(i for i in wr.inits if i.name == ws))
    b, bs = wr.bias(n, n.weight.codes.shape[0], scale)
    raw = wr.raw_name(n)
    if wr.fmt == "qoperator":
        wr.node(
            "QGemm",
            [x, *wr.qp(x), w, ws, wz, b, *wr.qp(n.name)],
            [raw],
            domain=MS,
            transB=1,
        )
    else:
        wd = _dq_weight(wr, n, w, ws, wz, axis=0)
        bd = _dq_bias(wr, n, b, bs)
        wr.node("Gemm", [wr.dq(x, n.name), wd, bd], [f"{n.name}.real"], transB=1)
        wr.quantize(f"{n.name}.real", raw, n.name)
    wr.rank[n.name] = 2
    wr.clamp(n, raw)


def _add(wr: _Writer, n):
    if len(n.inputs) != 2:
        raise UnsupportedOnnxError(f"node {n.name!r}: Add export takes 2 inputs")
    a, b = n.inputs
    raw = wr.raw_name(n)
    if wr.fmt == "qoperator":
        wr.node(
            "QLinearAdd", [a, *wr.qp(a), b, *wr.qp(b), *wr.qp(n.name)], [raw], domain=MS
        )
    else:
        wr.node("Add", [wr.dq(a, n.name), wr.dq(b, n.name)], [f"{n.name}.real"])
        wr.quantize(f"{n.name}.real", raw, n.name)
    wr.rank[n.name] = wr.rank[a]
    wr.clamp(n, raw)


def _global_avg_pool(wr: _Writer, n):
    x = n.inputs[0]
    pooled = f"{n.name}.nc11" if not n.attrs["keepdims"] else n.name
    if wr.fmt == "qoperator":
        wr.node(
            "QLinearGlobalAveragePool",
            [x, *wr.qp(x), *wr.qp(n.name)],
            [pooled],
            domain=MS,
            channels_last=0,
        )
    else:
        wr.node("GlobalAveragePool", [wr.dq(x, n.name)], [f"{n.name}.real"])
        wr.quantize(f"{n.name}.real", pooled, n.name)
    if not n.attrs["keepdims"]:
        wr.node("Flatten", [pooled], [n.name], name=f"{n.name}/flatten", axis=1)
    wr.rank[n.name] = 4 if n.attrs["keepdims"] else 2


def _pool_attrs(n):
    at = n.attrs
    k = list(at["pool_size"])
    return dict(
        kernel_shape=k, strides=list(at["strides"] or k), **_pads(at["padding"], n.name)
    )


def _max_pool(wr: _Writer, n):
    wr.node("MaxPool", [n.inputs[0]], [n.name], **_pool_attrs(n))
    wr.rank[n.name] = 4


def _avg_pool(wr: _Writer, n):
    x = n.inputs[0]
    attrs = dict(_pool_attrs(n), count_include_pad=int(n.attrs["count_include_pad"]))
    if wr.fmt == "qoperator":
        wr.node(
            "QLinearAveragePool",
            [x, *wr.qp(x), *wr.qp(n.name)],
            [n.name],
            domain=MS,
            channels_last=0,
            **attrs,
        )
    else:
        wr.node("AveragePool", [wr.dq(x, n.name)], [f"{n.name}.real"], **attrs)
        wr.quantize(f"{n.name}.real", n.name)
    wr.rank[n.name] = 4


def _flatten(wr: _Writer, n):
    x = n.inputs[0]
    if wr.rank[x] == 4:  # the engine flattens NHWC
        wr.node("Transpose", [x], [f"{n.name}.nhwc"], perm=[0, 2, 3, 1])
        x = f"{n.name}.nhwc"
    wr.node("Flatten", [x], [n.name], axis=1)
    wr.rank[n.name] = 2


def _relu(wr: _Writer, n):
    wr.rank[n.name] = wr.rank[n.inputs[0]]
    wr.clamp(n, n.inputs[0])


def _concat(wr: _Writer, n):
    rank = wr.rank[n.inputs[0]]
    axis = n.attrs["axis"] % rank
    if rank == 4:
        axis = (0, 2, 3, 1)[axis]
    y = wr.qm.tensor_qparams[n.name]
    same = all(
        (wr.qm.tensor_qparams[i].scale, wr.qm.tensor_qparams[i].zero_point)
        == (y.scale, y.zero_point)
        for i in n.inputs
    )
    if same:
        wr.node("Concat", list(n.inputs), [n.name], axis=axis)
    elif wr.fmt == "qoperator":
        args = [*wr.qp(n.name)]
        for i in n.inputs:
            args += [i, *wr.qp(i)]
        wr.node("QLinearConcat", args, [n.name], domain=MS, axis=axis)
    else:
        reals = [wr.dq(i, n.name) for i in n.inputs]
        wr.node("Concat", reals, [f"{n.name}.real"], axis=axis)
        wr.quantize(f"{n.name}.real", n.name)
    wr.rank[n.name] = rank


def _pad(wr: _Writer, n):
    x = n.inputs[0]
    pads = [tuple(p) for p in n.attrs["paddings"]]
    if len(pads) == 4:
        pads = [pads[i] for i in (0, 3, 1, 2)]  # NHWC -> NCHW
    flat = [int(p[0]) for p in pads] + [int(p[1]) for p in pads]
    from refquant.kernels.quantize_ops import quantize_linear

    p = wr.qm.tensor_qparams[n.name]
    fill = quantize_linear(
        np.float32([n.attrs["value"]]), p.scale, p.zero_point, profile="onnxruntime"
    )
    wr.node(
        "Pad",
        [
            x,
            wr.const(f"{n.name}.pads", np.int64(flat)),
            wr.const(f"{n.name}.value", wr.code(fill[0])),
        ],
        [n.name],
        mode="constant",
    )
    wr.rank[n.name] = wr.rank[x]


_WRITERS = {
    "Conv2D": _conv,
    "DepthwiseConv2D": _conv,
    "Dense": _dense,
    "Add": _add,
    "GlobalAvgPool": _global_avg_pool,
    "MaxPool": _max_pool,
    "AvgPool": _avg_pool,
    "Flatten": _flatten,
    "ReLU": _relu,
    "ReLU6": _relu,
    "Concat": _concat,
    "Pad": _pad,
}

_FOUR_D = ("Conv2D", "DepthwiseConv2D", "MaxPool", "AvgPool", "GlobalAvgPool", "Pad")


# ---------------------------------------------------------------- public
def _input_rank(qm: QuantizedModel) -> int:
    for n in qm.nodes:
        if qm.inputs[0] in n.inputs:
            return 4 if n.op in _FOUR_D else 2
    return 2


def _check(qmodel, path, fmt, opset):
    check_type("qmodel", qmodel, (QuantizedModel,), "a QuantizedModel")
    if qmodel.mode != "static":
        raise InvalidArgumentError(
            f"qmodel must be a static model (integer activations); got "
            f"mode={qmodel.mode!r}"
        )
    check_type("path", path, (str, os.PathLike), "a file path")
    check("format", fmt, OneOf(FORMATS))
    check("opset", opset, IntRange(13, 21))
    for k, p in qmodel.tensor_qparams.items():
        if p.bits != 8:
            raise UnsupportedOnnxError(
                f"tensor {k!r} has {p.bits}-bit activations; ONNX export needs "
                "8-bit activations"
            )
    for n in qmodel.nodes:
        if n.op not in _WRITERS:
            raise UnsupportedOnnxError(
                f"node {n.name!r}: op {n.op} has no ONNX export; exportable ops "
                f"are {sorted(_WRITERS)}"
            )


def export_onnx(
    qmodel,
    path,
    *,
    format="qdq",
    opset=17,
    activation_dtype="int8",
    dequantize_outputs=False,
):
    """Write ``qmodel`` as an ONNX model that ONNX Runtime runs bit-exactly.

    ``q_in = QuantizeLinear(x, s_in, zp_in)`` (float32 division, ties to
    even), then one ONNX op (QOperator) or DequantizeLinear -> op ->
    QuantizeLinear (QDQ) per node with refquant's qparams; the outputs are
    the int8 codes that ``qmodel.run_codes(x, profile="onnxruntime")``
    returns (NCHW for 4-D tensors).

    Parameters
    ----------
    qmodel : QuantizedModel
        A static model with 8-bit activations, int8 weights of zero point 0
        (per-tensor or per-channel) and int32 biases.
    path : str or os.PathLike
        Destination; written to a temporary name in the same folder, then
        renamed.
    format : {"qdq", "qoperator"}
    opset : int in [13, 21]
        Default-domain opset (com.microsoft opset 1 is added for QOperator).
    activation_dtype : {"int8", "uint8"}
        Type of the activation codes in the file.  ``"uint8"`` stores
        ``q + 128`` with zero point ``zp + 128``: the same real values and,
        since every ONNX Runtime kernel computes with ``q - zp``, the same
        results shifted by 128.  ONNX Runtime 1.32 on x86 fuses int8 QDQ
        convolutions only partly (specs/io_onnx_quantized.md, section 2.4);
        ``"uint8"`` QDQ fuses completely.
    dequantize_outputs : bool
        Append DequantizeLinear so that the outputs are float32.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    UnsupportedOnnxError
        An op, weight scheme or bit width that has no ONNX form; the message
        names the node.
    """
    onnx, nh = _onnx()
    _check(qmodel, path, format, opset)
    check("activation_dtype", activation_dtype, OneOf(ACTIVATION_DTYPES))
    check_type("dequantize_outputs", dequantize_outputs, (bool,), "a bool")
    wr = _Writer(qmodel, format, onnx, nh, activation_dtype)
    x = qmodel.inputs[0]
    rank = _input_rank(qmodel)
    wr.rank[x] = rank
    real_in = f"{x}.float"
    wr.quantize(real_in, x)
    for n in qmodel.nodes:
        _WRITERS[n.op](wr, n)
    outputs = list(qmodel.outputs)
    if dequantize_outputs:
        outputs = [wr.dq(o) for o in outputs]
    model = _model(
        wr,
        onnx,
        real_in,
        rank,
        outputs,
        opset,
        qmodel.name,
        None if dequantize_outputs else wr.dtype,
    )
    _write_atomic(onnx, model, os.fspath(path))
    return os.fspath(path)


def _model(wr, onnx, real_in, rank, outputs, opset, name, code_dtype):
    h, tp = onnx.helper, onnx.TensorProto
    dims = ["N"] + [f"d{i}" for i in range(1, rank)]
    out_type = {None: tp.FLOAT, np.int8: tp.INT8, np.uint8: tp.UINT8}[
        None if code_dtype is None else code_dtype.type
    ]
    graph = h.make_graph(
        wr.nodes,
        name,
        [h.make_tensor_value_info(real_in, tp.FLOAT, dims)],
        [h.make_tensor_value_info(o, out_type, None) for o in outputs],
        initializer=wr.inits,
    )
    imports = [h.make_opsetid("", opset), h.make_opsetid(MS, 1)]
    model = h.make_model(graph, opset_imports=imports, producer_name="refquant")
    model.ir_version = 8
    return model


def _write_atomic(onnx, model, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".onnx-export-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
