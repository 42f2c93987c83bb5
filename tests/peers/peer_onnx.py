"""Single-op ONNX models and runners for the ONNX Runtime / onnx.reference checks.

Every model keeps all tensors (data, scales, zero points, weights, bias) as graph
inputs, so one model (and one ORT session) serves every value of the inputs of a
given shape and dtype signature. Sessions are cached per signature.

Layouts are ONNX's: activations NCHW, conv weights OIHW. The helpers
``nchw_to_nhwc`` / ``nhwc_to_nchw`` / ``oihw_to_ohwi`` convert to and from
refquant's layouts.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 21
MS_DOMAIN = "com.microsoft"

_NP_TO_ONNX = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int16): TensorProto.INT16,
    np.dtype(np.uint16): TensorProto.UINT16,
    np.dtype(np.int32): TensorProto.INT32,
}


def nchw_to_nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def nhwc_to_nchw(x):
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def oihw_to_ohwi(w):
    return np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1)))


def _value_info(name, dtype, shape):
    return helper.make_tensor_value_info(name, _NP_TO_ONNX[np.dtype(dtype)], shape)


def _model(node, inputs, outputs, *, ms=False):
    """inputs / outputs: lists of (name, dtype, shape)."""
    graph = helper.make_graph(
        [node],
        "single_op",
        [_value_info(*spec) for spec in inputs],
        [_value_info(*spec) for spec in outputs],
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if ms:
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


# ----------------------------------------------------------------------------------
# model builders (all arguments hashable so the builders can be cached)


@functools.cache
def quantize_linear_model(x_shape, out_dtype, scale_shape=(), axis=1):
    out_dtype = np.dtype(out_dtype)
    node = helper.make_node(
        "QuantizeLinear", ["x", "y_scale", "y_zero_point"], ["y"], axis=axis
    )
    return _model(
        node,
        [
            ("x", np.float32, x_shape),
            ("y_scale", np.float32, scale_shape),
            ("y_zero_point", out_dtype, scale_shape),
        ],
        [("y", out_dtype, x_shape)],
    )


@functools.cache
def dequantize_linear_model(x_shape, in_dtype, scale_shape=(), axis=1):
    node = helper.make_node(
        "DequantizeLinear", ["x", "x_scale", "x_zero_point"], ["y"], axis=axis
    )
    return _model(
        node,
        [
            ("x", in_dtype, x_shape),
            ("x_scale", np.float32, scale_shape),
            ("x_zero_point", in_dtype, scale_shape),
        ],
        [("y", np.float32, x_shape)],
    )


@functools.cache
def dynamic_quantize_linear_model(x_shape):
    node = helper.make_node(
        "DynamicQuantizeLinear", ["x"], ["y", "y_scale", "y_zero_point"]
    )
    return _model(
        node,
        [("x", np.float32, x_shape)],
        [
            ("y", np.uint8, x_shape),
            ("y_scale", np.float32, ()),
            ("y_zero_point", np.uint8, ()),
        ],
    )


@functools.cache
def qlinear_matmul_model(a_shape, b_shape, a_dtype, b_dtype, y_dtype, b_scale_len=1):
    y_shape = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2])) + (
        a_shape[-2],
        b_shape[-1],
    )
    names = [
        "a",
        "a_scale",
        "a_zero_point",
        "b",
        "b_scale",
        "b_zero_point",
        "y_scale",
        "y_zero_point",
    ]
    node = helper.make_node("QLinearMatMul", names, ["y"])
    bq = (b_scale_len,) if b_scale_len > 1 else ()
    return _model(
        node,
        [
            ("a", a_dtype, a_shape),
            ("a_scale", np.float32, ()),
            ("a_zero_point", a_dtype, ()),
            ("b", b_dtype, b_shape),
            ("b_scale", np.float32, bq),
            ("b_zero_point", b_dtype, bq),
            ("y_scale", np.float32, ()),
            ("y_zero_point", y_dtype, ()),
        ],
        [("y", y_dtype, y_shape)],
    )


def conv_out_size(n, k, stride, dilation, pad_lo, pad_hi):
    return (n + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


@functools.cache
def qlinear_conv_model(
    x_shape,
    w_shape,
    x_dtype,
    w_dtype,
    y_dtype,
    *,
    per_channel,
    bias,
    strides=(1, 1),
    dilations=(1, 1),
    pads=(0, 0, 0, 0),
    group=1,
):
    """x NCHW, w OIHW; pads ONNX order (top, left, bottom, right)."""
    n, _, h, w = x_shape
    c_out, _, kh, kw = w_shape
    oh = conv_out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    ow = conv_out_size(w, kw, strides[1], dilations[1], pads[1], pads[3])
    names = [
        "x",
        "x_scale",
        "x_zero_point",
        "w",
        "w_scale",
        "w_zero_point",
        "y_scale",
        "y_zero_point",
    ]
    wq = (c_out,) if per_channel else ()
    inputs = [
        ("x", x_dtype, x_shape),
        ("x_scale", np.float32, ()),
        ("x_zero_point", x_dtype, ()),
        ("w", w_dtype, w_shape),
        ("w_scale", np.float32, wq),
        ("w_zero_point", w_dtype, wq),
        ("y_scale", np.float32, ()),
        ("y_zero_point", y_dtype, ()),
    ]
    if bias:
        names.append("B")
        inputs.append(("B", np.int32, (c_out,)))
    node = helper.make_node(
        "QLinearConv",
        names,
        ["y"],
        kernel_shape=[kh, kw],
        strides=list(strides),
        dilations=list(dilations),
        pads=list(pads),
        group=group,
    )
    return _model(node, inputs, [("y", y_dtype, (n, c_out, oh, ow))])


@functools.cache
def qlinear_add_model(shape, dtype, b_shape=None):
    b_shape = shape if b_shape is None else b_shape
    y_shape = tuple(np.broadcast_shapes(shape, b_shape))
    names = [
        "A",
        "A_scale",
        "A_zero_point",
        "B",
        "B_scale",
        "B_zero_point",
        "C_scale",
        "C_zero_point",
    ]
    node = helper.make_node("QLinearAdd", names, ["C"], domain=MS_DOMAIN)
    return _model(
        node,
        [
            ("A", dtype, shape),
            ("A_scale", np.float32, ()),
            ("A_zero_point", dtype, ()),
            ("B", dtype, b_shape),
            ("B_scale", np.float32, ()),
            ("B_zero_point", dtype, ()),
            ("C_scale", np.float32, ()),
            ("C_zero_point", dtype, ()),
        ],
        [("C", dtype, y_shape)],
        ms=True,
    )


@functools.cache
def qlinear_average_pool_model(
    x_shape, dtype, kernel, strides, pads=(0, 0, 0, 0), count_include_pad=0
):
    """x NCHW; pads ONNX order (top, left, bottom, right)."""
    n, c, h, w = x_shape
    oh = conv_out_size(h, kernel[0], strides[0], 1, pads[0], pads[2])
    ow = conv_out_size(w, kernel[1], strides[1], 1, pads[1], pads[3])
    names = ["X", "x_scale", "x_zero_point", "y_scale", "y_zero_point"]
    node = helper.make_node(
        "QLinearAveragePool",
        names,
        ["Y"],
        domain=MS_DOMAIN,
        kernel_shape=list(kernel),
        strides=list(strides),
        pads=list(pads),
        count_include_pad=count_include_pad,
    )
    return _model(
        node,
        [
            ("X", dtype, x_shape),
            ("x_scale", np.float32, ()),
            ("x_zero_point", dtype, ()),
            ("y_scale", np.float32, ()),
            ("y_zero_point", dtype, ()),
        ],
        [("Y", dtype, (n, c, oh, ow))],
        ms=True,
    )


@functools.cache
def qlinear_global_average_pool_model(x_shape, dtype):
    n, c = x_shape[:2]
    names = ["X", "x_scale", "x_zero_point", "y_scale", "y_zero_point"]
    node = helper.make_node(
        "QLinearGlobalAveragePool", names, ["Y"], domain=MS_DOMAIN, channels_last=0
    )
    return _model(
        node,
        [
            ("X", dtype, x_shape),
            ("x_scale", np.float32, ()),
            ("x_zero_point", dtype, ()),
            ("y_scale", np.float32, ()),
            ("y_zero_point", dtype, ()),
        ],
        [("Y", dtype, (n, c, 1, 1))],
        ms=True,
    )


# ----------------------------------------------------------------------------------
# runners


_SESSIONS: dict = {}
_EVALUATORS: dict = {}


def _ort_session(model):
    # Models come from the cached builders and live for the whole run, so
    # their id is a stable key (protobuf messages are not hashable).
    key = id(model)
    if key not in _SESSIONS:
        _SESSIONS[key] = (model, _new_ort_session(model))
    return _SESSIONS[key][1]


def _new_ort_session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _reference_evaluator(model):
    from onnx.reference import ReferenceEvaluator

    key = id(model)
    if key not in _EVALUATORS:
        _EVALUATORS[key] = (model, ReferenceEvaluator(model))
    return _EVALUATORS[key][1]


def _feeds(model, values):
    names = [vi.name for vi in model.graph.input]
    if len(names) != len(values):
        raise ValueError(f"model takes {names}; got {len(values)} values")
    out = {}
    for vi, value in zip(model.graph.input, values):
        dtype = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        out[vi.name] = np.asarray(value, dtype=dtype)
    return out


def run_ort(model, *values):
    """Run the model on ONNX Runtime (CPUExecutionProvider); list of outputs."""
    return _ort_session(model).run(None, _feeds(model, values))


def run_reference(model, *values):
    """Run the model on onnx.reference.ReferenceEvaluator; list of outputs."""
    return list(_reference_evaluator(model).run(None, _feeds(model, values)))


@functools.cache
def qlinear_mul_model(shape, dtype, b_shape=None):
    """com.microsoft QLinearMul; inputs as QLinearAdd."""
    b_shape = shape if b_shape is None else b_shape
    y_shape = tuple(np.broadcast_shapes(shape, b_shape))
    names = [
        "A",
        "A_scale",
        "A_zero_point",
        "B",
        "B_scale",
        "B_zero_point",
        "C_scale",
        "C_zero_point",
    ]
    node = helper.make_node("QLinearMul", names, ["C"], domain=MS_DOMAIN)
    return _model(
        node,
        [
            ("A", dtype, shape),
            ("A_scale", np.float32, ()),
            ("A_zero_point", dtype, ()),
            ("B", dtype, b_shape),
            ("B_scale", np.float32, ()),
            ("B_zero_point", dtype, ()),
            ("C_scale", np.float32, ()),
            ("C_zero_point", dtype, ()),
        ],
        [("C", dtype, y_shape)],
        ms=True,
    )


@functools.cache
def qlinear_concat_model(shapes, dtype, axis):
    """com.microsoft QLinearConcat: Y_scale, Y_zero_point, then (X, s, zp) each."""
    names = ["Y_scale", "Y_zero_point"]
    inputs = [("Y_scale", np.float32, ()), ("Y_zero_point", dtype, ())]
    for i, shape in enumerate(shapes):
        names += [f"X{i}", f"X{i}_scale", f"X{i}_zero_point"]
        inputs += [
            (f"X{i}", dtype, shape),
            (f"X{i}_scale", np.float32, ()),
            (f"X{i}_zero_point", dtype, ()),
        ]
    y_shape = list(shapes[0])
    y_shape[axis] = sum(s[axis] for s in shapes)
    node = helper.make_node("QLinearConcat", names, ["Y"], domain=MS_DOMAIN, axis=axis)
    return _model(node, inputs, [("Y", dtype, tuple(y_shape))], ms=True)


@functools.cache
def qlinear_sigmoid_model(shape, dtype):
    """com.microsoft QLinearSigmoid: X, X_scale, X_zero_point, Y_scale, Y_zp."""
    names = ["X", "X_scale", "X_zero_point", "Y_scale", "Y_zero_point"]
    node = helper.make_node("QLinearSigmoid", names, ["Y"], domain=MS_DOMAIN)
    return _model(
        node,
        [
            ("X", dtype, shape),
            ("X_scale", np.float32, ()),
            ("X_zero_point", dtype, ()),
            ("Y_scale", np.float32, ()),
            ("Y_zero_point", dtype, ()),
        ],
        [("Y", dtype, shape)],
        ms=True,
    )
