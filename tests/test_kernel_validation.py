"""Every kernel rejects every invalid scale and zero point (table-driven).

The contracts come from ``refquant.kernels._checks.KERNEL_QPARAMS``; for each
kernel a valid call is built, then each scale / zero-point argument in turn is
replaced by a value outside its contract.  The error must be a RefquantError
that names the argument.
"""

from __future__ import annotations

import numpy as np
import pytest

from refquant.errors import InvalidArgumentError, RefquantError
from refquant.kernels import activations, conv, elementwise, linear, quantize_ops
from refquant.kernels._checks import (
    KERNEL_QPARAMS,
    PER_TENSOR,
    check_qparams,
)

I8 = np.int8
X4 = np.arange(-2, 2, dtype=I8).reshape(1, 2, 2, 1)
W4 = np.ones((2, 1, 1, 1), I8)
XFC = np.array([[10, -4]], I8)
WFC = np.array([[1, 2], [3, -1]], I8)

# kernel -> (function, valid keyword arguments); every call returns codes
VALID = {
    "add": (
        elementwise.add,
        dict(
            a=np.int8([1, 2, 3]),
            a_scale=0.5,
            a_zero_point=0,
            b=np.int8([1, 2, 3]),
            b_scale=0.25,
            b_zero_point=0,
            y_scale=0.5,
            y_zero_point=0,
        ),
    ),
    "conv2d": (
        conv.conv2d,
        dict(
            x=X4,
            x_scale=0.5,
            x_zero_point=0,
            w=W4,
            w_scale=0.25,
            w_zero_point=0,
            bias=None,
            y_scale=0.5,
            y_zero_point=0,
        ),
    ),
    "depthwise_conv2d": (
        conv.depthwise_conv2d,
        dict(
            x=X4,
            x_scale=0.5,
            x_zero_point=0,
            w=np.ones((1, 1, 1, 1), I8),
            w_scale=0.25,
            w_zero_point=0,
            bias=None,
            y_scale=0.5,
            y_zero_point=0,
        ),
    ),
    "fully_connected": (
        linear.fully_connected,
        dict(
            x=XFC,
            x_scale=0.5,
            x_zero_point=0,
            w=WFC,
            w_scale=1.0,
            w_zero_point=0,
            bias=np.array([1, 0]),
            y_scale=1.0,
            y_zero_point=0,
        ),
    ),
    "batch_matmul": (
        linear.batch_matmul,
        dict(
            a=np.array([[3, 5]], I8),
            a_scale=0.5,
            a_zero_point=0,
            b=np.array([[1], [1]], I8),
            b_scale=0.5,
            b_zero_point=0,
            y_scale=1.0,
            y_zero_point=0,
        ),
    ),
    "quantize_linear": (
        quantize_ops.quantize_linear,
        dict(x=np.float32([1.0, -2.0]), y_scale=0.5, y_zero_point=0),
    ),
    "dequantize_linear": (
        quantize_ops.dequantize_linear,
        dict(q=np.int8([1, -2]), scale=0.5, zero_point=0),
    ),
    "requantize": (
        quantize_ops.requantize,
        dict(
            q=np.int8([1, 3]),
            in_scale=0.5,
            in_zero_point=0,
            out_scale=1.0,
            out_zero_point=0,
            out_dtype=I8,
        ),
    ),
    "logistic": (
        activations.logistic,
        dict(
            x=np.int8([-3, 0, 3]),
            x_scale=0.5,
            x_zero_point=0,
            y_scale=1 / 256,
            y_zero_point=-128,
        ),
    ),
    "tanh": (
        activations.tanh,
        dict(
            x=np.int8([-3, 0, 3]),
            x_scale=0.5,
            x_zero_point=0,
            y_scale=1 / 128,
            y_zero_point=0,
        ),
    ),
    "softmax": (
        activations.softmax,
        dict(
            x=np.int8([[-3, 0, 3]]),
            x_scale=0.5,
            x_zero_point=0,
            y_scale=1 / 256,
            y_zero_point=-128,
        ),
    ),
}
VALID["mul"] = (elementwise.mul, VALID["add"][1])

BAD_SCALES = ["0.5", True, 1j, 0.0, -0.5, np.nan, np.inf, 1e-300, 1e300, [], "x"]
BAD_ZERO_POINTS = [300, -129, 2**40, 1.5, "0", True, np.nan]  # int8 codes here
BAD_PER_TENSOR = {"scale": [0.5, 2.0], "zero_point": [0, 1]}
PROFILES = ["exact", "tflite_reference", "onnxruntime"]


def cases():
    for kernel, rules in KERNEL_QPARAMS.items():
        for name, rule in rules.items():
            bad = BAD_SCALES if rule.kind == "scale" else BAD_ZERO_POINTS
            for value in bad:
                yield kernel, name, value
            if rule.shape == PER_TENSOR:
                yield kernel, name, BAD_PER_TENSOR[rule.kind]


def test_every_kernel_has_a_valid_call():
    assert set(VALID) == set(KERNEL_QPARAMS)


@pytest.mark.parametrize("kernel", sorted(VALID))
@pytest.mark.parametrize("profile", PROFILES)
def test_valid_calls_run(kernel, profile):
    fn, kwargs = VALID[kernel]
    out = fn(**kwargs, profile=profile)
    assert np.asarray(out).size > 0


@pytest.mark.parametrize("kernel, name, value", list(cases()))
@pytest.mark.parametrize("profile", PROFILES)
def test_kernel_rejects_invalid_qparam(kernel, name, value, profile):
    fn, kwargs = VALID[kernel]
    with pytest.raises(RefquantError) as info:
        fn(**{**kwargs, name: value}, profile=profile)
    assert name in str(info.value)


def test_tester_repros():
    """The values that used to pass silently."""
    a = np.int8([1, 2, 3])
    with pytest.raises(InvalidArgumentError, match=r"a_zero_point.*\[-128, 127\]"):
        elementwise.add(a, 0.5, 300, a, 0.25, 0, 0.5, 0)
    with pytest.raises(InvalidArgumentError, match="got a_zero_point=1099511627776"):
        elementwise.mul(a, 0.5, 2**40, a, 0.25, 0, 0.5, 0)
    with pytest.raises(InvalidArgumentError, match="zero_point=200"):
        quantize_ops.dequantize_linear(np.int8([1]), 0.1, 200)
    b = np.array([1, 0])
    with pytest.raises(InvalidArgumentError, match=r"x_scale.*per-tensor.*w_scale"):
        linear.fully_connected(XFC, np.array([0.5, 2.0]), 0, WFC, 1.0, 0, b, 1.0, 0)
    with pytest.raises(RefquantError, match="x_scale='0.5'"):
        linear.fully_connected(XFC, "0.5", 0, WFC, 1.0, 0, b, 1.0, 0)


def test_zero_point_bounded_by_the_codes_dtype():
    """uint8 codes allow 200; int8 codes do not; int64 codes are bounded by
    int32, the widest code type."""
    u = quantize_ops.dequantize_linear(np.uint8([201]), 0.5, 200)
    assert u.tolist() == [0.5]
    wide = quantize_ops.dequantize_linear(np.int64([5]), 0.5, 2**31 - 1 - 10**9)
    assert wide.tolist() == [(5 - (2**31 - 1 - 10**9)) * 0.5]
    with pytest.raises(InvalidArgumentError, match=r"\[-2147483648, 2147483647\]"):
        quantize_ops.dequantize_linear(np.int64([5]), 0.5, 2**31)


def test_per_channel_weights_still_allowed():
    """w_scale and w_zero_point may hold one value per output channel."""
    b = np.array([1, 0])
    y = linear.fully_connected(XFC, 0.5, 0, WFC, np.array([1.0, 0.5]), 0, b, 1.0, 0)
    # channel 0: (10 + -8 + 1) * 0.5 = 1.5 -> 2; channel 1: (30 + 4) * 0.25 = 8.5 -> 8
    assert y.tolist() == [[2, 8]]


def test_size_one_arrays_count_as_per_tensor():
    v = check_qparams("add", {"a": I8}, a_scale=[0.5], a_zero_point=np.int8([3]))
    assert v["a_scale"].shape == () and int(v["a_zero_point"]) == 3


@pytest.mark.parametrize("profile", PROFILES)
def test_softmax_empty_last_axis_gives_empty_result(profile):
    y = activations.softmax(np.zeros((2, 0), I8), 0.1, 0, profile=profile)
    assert y.shape == (2, 0) and y.dtype == np.int8
    with pytest.raises(InvalidArgumentError, match="x_zero_point"):
        activations.softmax(np.zeros((2, 0), I8), 0.1, 300, profile=profile)


@pytest.mark.parametrize("profile", ["onnxruntime", "onnx_reference"])
def test_dynamic_quantize_range_too_wide_for_float32(profile):
    import warnings

    x = np.float32([3e38, -3e38])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning first
        with pytest.raises(InvalidArgumentError) as info:
            quantize_ops.dynamic_quantize_linear(x, profile=profile)
    text = str(info.value)
    assert "x spans [-3e+38, 3e+38]" in text and "6e+38" in text
    assert "largest float32" in text and profile in text
    assert "y_scale" not in text


def test_dynamic_quantize_wide_range_exact_profile():
    """float64: scale = 6e38 / 255 (rounded from float32 inputs), zero point
    round(3e38 / scale) = round(127.5) -> 128 (half_even on the real quotient)."""
    x = np.float32([3e38, -3e38])
    q, scale, zp = quantize_ops.dynamic_quantize_linear(x, profile="exact")
    assert scale == (float(x[0]) - float(x[1])) / 255
    assert zp == 128 and q.tolist() == [255, 0]
