"""Rows of integer_semantics.md section 6 that name ONNX Runtime / onnx.reference
values, each run live on its tiny input.

Every test asserts two things: the peer still gives the value measured in
section 6 (so a peer upgrade that changes it is noticed), and refquant under
the profile that emulates the peer gives the same codes. Rows already checked
elsewhere are not repeated here: D3 (``test_quantize_linear_float32_division_
tie``), D9 (``test_qlinear_add_tie_onnxruntime``) and D12
(``test_qlinear_conv_large_accumulator``) in test_onnx_single_op.py; the
LiteRT values of D1, D2, D4 to D12 and D23 in test_tflite_fixtures.py.

Rows D15 and D16 (scale 0 and a subnormal scale at run time) have no refquant
counterpart by design: refquant refuses scales that are not normal positive
float32 values, so those tests pin the peer values and the refusal.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
from peer_onnx import (  # noqa: E402
    dynamic_quantize_linear_model,
    nchw_to_nhwc,
    qlinear_average_pool_model,
    qlinear_matmul_model,
    quantize_linear_model,
    run_ort,
    run_reference,
)

pytestmark = pytest.mark.peers

PEERS = ("onnxruntime", "onnx_reference")
f32 = np.float32


def peer_runner(peer):
    if peer == "onnxruntime":
        pytest.importorskip("onnxruntime")
        return run_ort
    pytest.importorskip("onnx.reference")
    return run_reference


def kernel_module(name):
    return pytest.importorskip(f"refquant.kernels.{name}")


@pytest.mark.parametrize("peer", PEERS)
def test_d1_d2_quantize_ties_to_even(peer):
    """D1 / D2: QuantizeLinear 2.5 and -2.5 at (1, 0) -> 2 and -2."""
    run, qo = peer_runner(peer), kernel_module("quantize_ops")
    model = quantize_linear_model((2,), np.dtype(np.int8), (), 1)
    x = f32([2.5, -2.5])
    (expected,) = run(model, x, f32(1.0), np.int8(0))
    assert expected.tolist() == [2, -2]
    got = qo.quantize_linear(x, 1.0, 0, out_dtype=np.int8, profile=peer)
    assert got.tolist() == [2, -2]


@pytest.mark.parametrize("peer", PEERS)
def test_d8_shift_zero_tie(peer):
    """D8: M = 0.5, acc = -3 (-1.5) -> -2 (ties to even), via QLinearMatMul."""
    run, lin = peer_runner(peer), kernel_module("linear")
    i8 = np.dtype(np.int8)
    model = qlinear_matmul_model((1, 1), (1, 1), i8, i8, i8)
    a, b = np.int8([[-3]]), np.int8([[1]])
    (expected,) = run(model, a, 0.5, 0, b, 1.0, 0, 1.0, 0)
    assert expected.tolist() == [[-2]]
    got = lin.batch_matmul(
        a, 0.5, 0, b, 1.0, 0, 1.0, 0, out_dtype=np.int8, profile=peer
    )
    assert np.asarray(got).tolist() == [[-2]]


def test_d10_average_pool_tie_onnxruntime():
    """D10: QLinearAveragePool 2x2 windows with sums 2, -2, 6, -6 (means 0.5,
    -0.5, 1.5, -1.5) at (1, 0) -> 0, 0, 2, -2 (ties to even)."""
    pool = kernel_module("pooling")
    run = peer_runner("onnxruntime")
    i8 = np.dtype(np.int8)
    model = qlinear_average_pool_model((1, 1, 2, 8), i8, (2, 2), (2, 2))
    x = np.int8([[1, 1, -1, -1, 2, 2, -2, -2], [0, 0, 0, 0, 1, 1, -1, -1]])
    x = x.reshape(1, 1, 2, 8)
    (expected,) = run(model, x, 1.0, 0, 1.0, 0)
    assert expected.ravel().tolist() == [0, 0, 2, -2]
    got = pool.average_pool2d(
        nchw_to_nhwc(x),
        1.0,
        0,
        1.0,
        0,
        pool_size=(2, 2),
        strides=(2, 2),
        out_dtype=np.int8,
        profile="onnxruntime",
    )
    assert np.asarray(got).ravel().tolist() == [0, 0, 2, -2]


@pytest.mark.parametrize(
    "peer, scale", [("onnxruntime", 1.0), ("onnx_reference", float(f32(1 / 255)))]
)
def test_d13_dynamic_quantize_all_zero(peer, scale):
    """D13: DynamicQuantizeLinear of zeros: ORT scale 1, onnx.reference 1/255."""
    run, qo = peer_runner(peer), kernel_module("quantize_ops")
    x = np.zeros((3,), f32)
    y, y_s, y_zp = run(dynamic_quantize_linear_model((3,)), x)
    assert (y.tolist(), float(y_s), int(y_zp)) == ([0, 0, 0], scale, 0)
    q, s, zp = qo.dynamic_quantize_linear(x, profile=peer)
    assert (np.asarray(q).tolist(), float(f32(s)), int(zp)) == ([0, 0, 0], scale, 0)


@pytest.mark.parametrize("peer", PEERS)
def test_d17_dynamic_quantize_zero_point_tie(peer):
    """D17: range [-2.5, 252.5]: scale 1, zero point 2.5 -> 2 (ties to even)."""
    run, qo = peer_runner(peer), kernel_module("quantize_ops")
    x = f32([-2.5, 252.5, 0.0])
    y, y_s, y_zp = run(dynamic_quantize_linear_model((3,)), x)
    assert (float(y_s), int(y_zp)) == (1.0, 2)
    q, s, zp = qo.dynamic_quantize_linear(x, profile=peer)
    assert (float(f32(s)), int(zp)) == (1.0, 2)
    assert np.asarray(q).tolist() == y.tolist()


@pytest.mark.parametrize(
    "peer, scale, expected",
    [
        ("onnxruntime", 0.0, [-128, 127, -128, 127]),  # D15
        ("onnx_reference", 0.0, [-128, -128, -128, -128]),  # D15
        ("onnxruntime", 1e-45, [0, 127, -128, 127]),  # D16
        ("onnx_reference", 1e-45, [0, -128, -128, -128]),  # D16
    ],
)
def test_d15_d16_degenerate_scales(peer, scale, expected):
    """D15 / D16: scale 0 or subnormal at run time; refquant refuses both."""
    from refquant.errors import InvalidArgumentError

    run, qo = peer_runner(peer), kernel_module("quantize_ops")
    model = quantize_linear_model((4,), np.dtype(np.int8), (), 1)
    x = f32([0.0, 1.0, -1.0, 0.5])
    with np.errstate(all="ignore"):  # the peer divides by 0 / overflows
        (got_peer,) = run(model, x, f32(scale), np.int8(0))
    assert got_peer.tolist() == expected
    with pytest.raises(InvalidArgumentError, match="y_scale"):
        qo.quantize_linear(x, scale, 0, out_dtype=np.int8, profile=peer)


@pytest.mark.parametrize("peer", PEERS)
def test_d25_nan_quantizes_to_qmin(peer):
    """D25: QuantizeLinear NaN at (1, 0), int8 -> -128."""
    run, qo = peer_runner(peer), kernel_module("quantize_ops")
    model = quantize_linear_model((1,), np.dtype(np.int8), (), 1)
    x = f32([np.nan])
    with np.errstate(invalid="ignore"):  # the peer casts NaN
        (expected,) = run(model, x, f32(1.0), np.int8(0))
    assert expected.tolist() == [-128]
    assert qo.quantize_linear(x, 1.0, 0, out_dtype=np.int8, profile=peer).tolist() == [
        -128
    ]


def test_d21_matmul_integer_wraps_onnxruntime():
    """D21: MatMulInteger, K = 140000 products 127 * 127: ORT wraps mod 2^32."""
    import onnx
    from onnx import TensorProto, helper

    pytest.importorskip("onnxruntime")
    lin = kernel_module("linear")
    k = 140000
    node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
    graph = helper.make_graph(
        [node],
        "d21",
        [
            helper.make_tensor_value_info("A", TensorProto.INT8, (1, k)),
            helper.make_tensor_value_info("B", TensorProto.INT8, (k, 1)),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, (1, 1))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    a, b = np.full((1, k), 127, np.int8), np.full((k, 1), 127, np.int8)
    (expected,) = run_ort(model, a, b)
    assert expected.tolist() == [[-2036907296]]  # 2258060000 - 2^32
    got = lin.matmul_integer(a, b, profile="onnxruntime")
    assert np.asarray(got).tolist() == [[-2036907296]]
