"""ONNX backend node test vectors (onnx==1.22.0) under the ``onnx_reference`` profile.

The onnx wheel ships, for each operator case, ``model.onnx`` and
``test_data_set_*/{input,output}_*.pb``. For the quantization operators in
refquant's scope each case is read with ``onnx.numpy_helper``, run through the
matching refquant kernel (NCHW / OIHW transposed to NHWC / OHWI and back) and
compared exactly with the stored output. Cases outside refquant's scope are
listed in ``OUT_OF_SCOPE`` with the reason and reported as skips.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402
from peer_onnx import nchw_to_nhwc, nhwc_to_nchw, oihw_to_ohwi  # noqa: E402

pytestmark = pytest.mark.peers

PROFILE = "onnx_reference"
OPS = (
    "quantizelinear",
    "dequantizelinear",
    "dynamicquantizelinear",
    "qlinearconv",
    "qlinearmatmul",
    "convinteger",
    "matmulinteger",
)

#: Cases of those operators that refquant does not implement, with the reason.
OUT_OF_SCOPE = {
    "test_quantizelinear_blocked_asymmetric": "blocked quantization (block_size)",
    "test_quantizelinear_blocked_symmetric": "blocked quantization (block_size)",
    "test_dequantizelinear_blocked": "blocked quantization (block_size)",
    "test_quantizelinear_e4m3fn": "float8 output type",
    "test_quantizelinear_e5m2": "float8 output type",
    "test_dequantizelinear_e4m3fn": "float8 input type",
    "test_dequantizelinear_e4m3fn_float16": "float8 input type",
    "test_dequantizelinear_e4m3fn_zero_point": "float8 input type",
    "test_dequantizelinear_e5m2": "float8 input type",
    "test_quantizelinear_float4e2m1": "float4 output type",
    "test_dequantizelinear_float4e2m1": "float4 input type",
    "test_quantizelinear_int4": "packed 4-bit integer type",
    "test_quantizelinear_uint4": "packed 4-bit integer type",
    "test_dequantizelinear_int4": "packed 4-bit integer type",
    "test_dequantizelinear_uint4": "packed 4-bit integer type",
    "test_quantizelinear_int2": "packed 2-bit integer type",
    "test_quantizelinear_uint2": "packed 2-bit integer type",
    "test_dequantizelinear_int2": "packed 2-bit integer type",
    "test_dequantizelinear_uint2": "packed 2-bit integer type",
    "test_dynamicquantizelinear_expanded": "same vectors as the plain case",
    "test_dynamicquantizelinear_max_adjusted_expanded": "same vectors",
    "test_dynamicquantizelinear_min_adjusted_expanded": "same vectors",
}


def node_dir():
    return os.path.join(
        os.path.dirname(onnx.__file__), "backend", "test", "data", "node"
    )


def all_cases():
    root = node_dir()
    if not os.path.isdir(root):
        return []
    pattern = re.compile("^test_(" + "|".join(OPS) + ")(_|$)")
    return sorted(n for n in os.listdir(root) if pattern.match(n))


def load_case(name):
    """(node, attributes, [(inputs, outputs) per data set]) of one case."""
    model = onnx.load(os.path.join(node_dir(), name, "model.onnx"))
    (node,) = model.graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    data_sets = []
    for ds in sorted(glob.glob(os.path.join(node_dir(), name, "test_data_set_*"))):
        ins = [_read_pb(f) for f in sorted(glob.glob(os.path.join(ds, "input_*.pb")))]
        outs = [_read_pb(f) for f in sorted(glob.glob(os.path.join(ds, "output_*.pb")))]
        data_sets.append((ins, outs))
    return node, attrs, data_sets


def _read_pb(path):
    tensor = onnx.TensorProto()
    with open(path, "rb") as f:
        tensor.ParseFromString(f.read())
    return numpy_helper.to_array(tensor)


def scalar_or_array(v, cast):
    """Size-1 (per-tensor) parameters as a Python scalar, else an array."""
    v = np.asarray(v)
    return cast(v.reshape(())) if v.size == 1 else v


def fscale(v):
    """ONNX scales (float32 or float16) as exact Python floats / float64 arrays."""
    return scalar_or_array(np.asarray(v).astype(np.float64), float)


def izp(v):
    return scalar_or_array(np.asarray(v).astype(np.int64), int)


def assert_codes_equal(actual, expected, what):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    mism = np.flatnonzero(actual.astype(np.int64) != expected.astype(np.int64))
    assert mism.size == 0, (
        f"{what}: {mism.size} of {expected.size} codes differ; first at flat index "
        f"{mism[0]}: refquant {actual.ravel()[mism[0]]}, "
        f"onnx {expected.ravel()[mism[0]]}"
    )


# ----------------------------------------------------------------------------------
# one runner per operator: (attrs, inputs) -> outputs as refquant computes them


def run_quantizelinear(attrs, ins):
    qo = pytest.importorskip("refquant.kernels.quantize_ops")
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 else np.zeros(np.shape(scale), np.uint8)
    out_dtype = zp.dtype
    axis = None
    if np.size(scale) > 1:
        axis = attrs.get("axis", 1) % x.ndim
    y = qo.quantize_linear(
        x, fscale(scale), izp(zp), axis=axis, out_dtype=out_dtype, profile=PROFILE
    )
    return [y]


def run_dequantizelinear(attrs, ins):
    qo = pytest.importorskip("refquant.kernels.quantize_ops")
    q, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 else np.zeros(np.shape(scale), q.dtype)
    axis = None
    if np.size(scale) > 1:
        axis = attrs.get("axis", 1) % q.ndim
    y = qo.dequantize_linear(q, fscale(scale), izp(zp), axis=axis, profile=PROFILE)
    return [np.asarray(y).astype(np.float32)]


def run_dynamicquantizelinear(attrs, ins):
    qo = pytest.importorskip("refquant.kernels.quantize_ops")
    q, scale, zp = qo.dynamic_quantize_linear(ins[0], profile=PROFILE)
    return [q, np.float32(scale), np.uint8(zp)]


def run_qlinearmatmul(attrs, ins):
    lin = pytest.importorskip("refquant.kernels.linear")
    a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp = ins
    y = lin.batch_matmul(
        a,
        fscale(a_s),
        izp(a_zp),
        b,
        fscale(b_s),
        izp(b_zp),
        fscale(y_s),
        izp(y_zp),
        out_dtype=y_zp.dtype,
        profile=PROFILE,
    )
    return [y]


def onnx_conv_options(attrs, w_shape):
    kh, kw = w_shape[2:]
    pads = attrs.get("pads", [0, 0, 0, 0])
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        pytest.skip(f"auto_pad={attrs['auto_pad']!r} not mapped")
    if list(attrs.get("kernel_shape", [kh, kw])) != [kh, kw]:
        raise AssertionError("kernel_shape disagrees with the weights")
    return dict(
        strides=tuple(attrs.get("strides", [1, 1])),
        dilations=tuple(attrs.get("dilations", [1, 1])),
        groups=attrs.get("group", 1),
        padding=((pads[0], pads[2]), (pads[1], pads[3])),
    )


def run_qlinearconv(attrs, ins):
    conv = pytest.importorskip("refquant.kernels.conv")
    x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp = ins[:8]
    bias = ins[8] if len(ins) > 8 else None
    c_out = w.shape[0]
    w_s = np.broadcast_to(np.asarray(w_s, np.float64), (c_out,))
    w_zp = np.broadcast_to(np.asarray(w_zp, np.int64), (c_out,))
    y = conv.conv2d(
        nchw_to_nhwc(x),
        fscale(x_s),
        izp(x_zp),
        oihw_to_ohwi(w),
        w_s,
        w_zp,
        bias,
        fscale(y_s),
        izp(y_zp),
        out_dtype=y_zp.dtype,
        profile=PROFILE,
        **onnx_conv_options(attrs, w.shape),
    )
    return [nhwc_to_nchw(y)]


def run_convinteger(attrs, ins):
    lin = pytest.importorskip("refquant.kernels.linear")
    x, w = ins[0], ins[1]
    x_zp = ins[2] if len(ins) > 2 else np.zeros((), x.dtype)
    w_zp = ins[3] if len(ins) > 3 else np.zeros((), w.dtype)
    acc = lin.conv_integer(
        nchw_to_nhwc(x),
        oihw_to_ohwi(w),
        izp(x_zp),
        izp(w_zp),
        profile=PROFILE,
        **onnx_conv_options(attrs, w.shape),
    )
    return [nhwc_to_nchw(acc)]


def run_matmulinteger(attrs, ins):
    lin = pytest.importorskip("refquant.kernels.linear")
    a, b = ins[0], ins[1]
    a_zp = ins[2] if len(ins) > 2 else np.zeros((), a.dtype)
    b_zp = ins[3] if len(ins) > 3 else np.zeros((), b.dtype)
    return [lin.matmul_integer(a, b, izp(a_zp), izp(b_zp), profile=PROFILE)]


RUNNERS = {
    "QuantizeLinear": run_quantizelinear,
    "DequantizeLinear": run_dequantizelinear,
    "DynamicQuantizeLinear": run_dynamicquantizelinear,
    "QLinearMatMul": run_qlinearmatmul,
    "QLinearConv": run_qlinearconv,
    "ConvInteger": run_convinteger,
    "MatMulInteger": run_matmulinteger,
}


def test_every_quantization_case_is_classified():
    cases = all_cases()
    assert len(cases) >= 40, f"expected the 1.22.0 node vectors; found {len(cases)}"
    stale = sorted(set(OUT_OF_SCOPE) - set(cases))
    assert not stale, f"OUT_OF_SCOPE names cases that do not exist: {stale}"


@pytest.mark.parametrize("case", all_cases())
def test_node_vector(case):
    if case in OUT_OF_SCOPE:
        pytest.skip(f"out of scope: {OUT_OF_SCOPE[case]}")
    node, attrs, data_sets = load_case(case)
    assert data_sets, f"{case} has no test_data_set"
    for ins, outs in data_sets:
        got = RUNNERS[node.op_type](attrs, ins)
        assert len(got) == len(outs)
        for i, (actual, expected) in enumerate(zip(got, outs)):
            what = f"{case} output {i}"
            if expected.dtype.kind == "f":
                actual = np.asarray(actual, dtype=expected.dtype)
                assert actual.shape == expected.shape, what
                same_bits = np.array_equal(
                    actual.reshape(-1).view(np.uint8),
                    expected.reshape(-1).view(np.uint8),
                )
                assert same_bits, f"{what}: refquant {actual} != onnx {expected}"
            else:
                assert_codes_equal(actual, expected, what)
                got_dtype = np.asarray(actual).dtype
                assert got_dtype == expected.dtype, (
                    f"{what}: dtype {got_dtype} != {expected.dtype}"
                )
