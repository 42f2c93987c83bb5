"""Section 6 of integer_semantics.md: each measured discrepancy, per profile.

Every expected value below is the value measured on the named runtime (or
stated from its source) in ``integer_semantics.md``; the exact values are hand
computed from the real formula.  Rows about calibration (D14, D17 observer
part, D18, D19) and the PyTorch float bias (D20) concern qparams / linear
layers, which live outside the pointwise engine.
"""

import numpy as np
import pytest

from refquant.errors import (
    AccumulatorOverflowError,
    InvalidArgumentError,
    NonFiniteInputError,
)
from refquant.kernels.activations import softmax
from refquant.kernels.elementwise import add
from refquant.kernels.pooling import average_pool2d
from refquant.kernels.quantize_ops import dynamic_quantize_linear, quantize_linear
from refquant.kernels.requantize import check_accumulator, requantize_accumulator
from refquant.numerics.fixedpoint import saturating_doubling_high_mul
from refquant.profiles import get_profile

F32 = np.float32
SINGLE = get_profile("tflite_reference").replace(
    name="tflite_single_rounding", requantize_method="tflite_single"
)
OPT = get_profile("tflite_reference").replace(
    name="tflite_optimized", requantize_method="tflite_double_up"
)


def ql(x, s, profile, zp=0):
    return int(quantize_linear(F32([x]), F32(s), zp, profile=profile)[0])


def rq(acc, m, profile):
    out = requantize_accumulator([acc], m, 1.0, 1.0, 0, np.int8, profile)
    return int(out[0])


@pytest.mark.parametrize(
    "profile, d1, d2",
    [
        ("exact", 2, -2),
        ("onnxruntime", 2, -2),
        ("onnx_reference", 2, -2),
        ("pytorch_fbgemm", 2, -2),
        ("tflite_reference", 3, -3),
    ],
)
def test_d1_d2_quantize_ties(profile, d1, d2):
    assert ql(2.5, 1.0, profile) == d1
    assert ql(-2.5, 1.0, profile) == d2


@pytest.mark.parametrize(
    "profile, expected",
    [
        ("onnxruntime", -116),
        ("onnx_reference", -116),
        ("tflite_reference", -116),
        ("pytorch_fbgemm", -115),
        ("exact", -115),
    ],
)
def test_d3_division_vs_reciprocal(profile, expected):
    assert ql(-0.1155, 0.001, profile) == expected


@pytest.mark.parametrize(
    "profile, expected",
    [
        ("tflite_reference", -1),
        (SINGLE, 0),
        (OPT, 0),
        ("onnxruntime", 0),
        ("exact", 0),
    ],
)
def test_d4_double_vs_single_rounding(profile, expected):
    assert rq(-2, 0.25, profile) == expected


@pytest.mark.parametrize(
    "profile, expected",
    [("tflite_reference", 1), (OPT, 1), (SINGLE, 0), ("onnxruntime", 0), ("exact", 0)],
)
def test_d5_double_rounding_error(profile, expected):
    assert rq(7, 0.0625, profile) == expected


@pytest.mark.parametrize(
    "profile, expected",
    [("tflite_reference", -1), (OPT, 0), ("onnxruntime", -1), ("exact", -1)],
)
def test_d6_vector_rounding_shift(profile, expected):
    assert rq(-5, 0.125, profile) == expected


@pytest.mark.parametrize(
    "profile, expected",
    [
        (get_profile("tflite_reference").for_op("fully_connected"), [-1, 0]),
        (OPT, [0, 1]),
        ("onnxruntime", [0, 0]),
        # conv-style MBQM double rounding of acc = 1: SRDHM(1, 2**30) = 1 (0.5
        # ties up), then RDBPOT(1, 1) = 1 -- the FC override avoids this
        ("tflite_reference", [-1, 1]),
        ("exact", [0, 0]),
    ],
)
def test_d7_fully_connected_reference(profile, expected):
    got = requantize_accumulator([-2, 1], 0.25, 1.0, 1.0, 0, np.int8, profile)
    assert got.tolist() == expected


@pytest.mark.parametrize(
    "profile, expected",
    [
        ("tflite_reference", -1),
        (SINGLE, -1),
        (OPT, -1),
        ("onnxruntime", -2),
        ("pytorch_fbgemm", -2),
        ("exact", -2),
    ],
)
def test_d8_shift_zero_ties(profile, expected):
    assert rq(-3, 0.5, profile) == expected


@pytest.mark.parametrize(
    "profile, expected",
    [
        ("tflite_reference", -31),
        ("onnxruntime", -30),
        ("pytorch_fbgemm", -30),
        ("exact", -30),
    ],
)
def test_d9_add_ties(profile, expected):
    got = add(np.int8([2]), 0.5, 0, np.int8([-63]), 0.5, 0, 1.0, 0, profile=profile)
    assert int(got[0]) == expected


@pytest.mark.parametrize(
    "profile, expected",
    [("tflite_reference", 1), ("onnxruntime", 0), ("pytorch_fbgemm", 0), ("exact", 0)],
)
def test_d10_average_pool_ties(profile, expected):
    x = np.int8([1, 1, 0, 0]).reshape(1, 2, 2, 1)  # window sum 2, mean 0.5
    got = average_pool2d(x, 1.0, 0, 1.0, 0, pool_size=2, strides=2, profile=profile)
    assert int(got.ravel()[0]) == expected


@pytest.mark.parametrize("profile, expected", [("tflite_reference", 11), ("exact", 10)])
def test_d11_average_pool_ties_with_zero_point(profile, expected):
    # codes (10, 11) with zp 10: real mean 0.5; TFLite rounds 10.5 in the code
    # domain away from zero -> 11; exact rounds 0.5 to even -> 0 -> code 10
    x = np.int8([10, 11]).reshape(1, 1, 2, 1)
    got = average_pool2d(
        x, 1.0, 10, 1.0, 10, pool_size=(1, 2), strides=1, profile=profile
    )
    assert int(got.ravel()[0]) == expected


@pytest.mark.parametrize(
    "profile, expected",
    [("onnxruntime", 0), ("onnx_reference", 1), ("tflite_reference", 1), ("exact", 1)],
)
def test_d12_large_accumulator_to_float32(profile, expected):
    assert rq(2**25 + 1, 2.0**-26, profile) == expected


def test_d13_dynamic_quantize_all_zero():
    q, s, z = dynamic_quantize_linear(F32([0, 0, 0]), profile="onnxruntime")
    assert (q.tolist(), float(s), z) == ([0, 0, 0], 1.0, 0)
    q, s, z = dynamic_quantize_linear(F32([0, 0, 0]), profile="onnx_reference")
    assert (q.tolist(), s, z) == ([0, 0, 0], F32(1) / F32(255), 0)
    assert float(s) == pytest.approx(0.0039215689, abs=1e-10)


@pytest.mark.parametrize("profile", ["onnxruntime", "onnx_reference", "exact"])
def test_d17_dynamic_quantize_zero_point_tie(profile):
    # range [-1.5, 253.5]: scale 1, intermediate zero point 1.5 -> 2 (RNE)
    q, s, z = dynamic_quantize_linear(F32([-1.5, 253.5]), profile=profile)
    assert (float(s), z) == (1.0, 2)
    assert q.tolist() == [0, 255]  # -1.5 + 2 = 0.5 -> 0 (even); 255.5 saturates


@pytest.mark.parametrize(
    "profile",
    ["exact", "tflite_reference", "onnxruntime", "onnx_reference", "pytorch_fbgemm"],
)
@pytest.mark.parametrize("scale", [0.0, 1e-45])
def test_d15_d16_zero_and_subnormal_scales_are_rejected(profile, scale):
    # every backend differs here (and XNNPACK crashes): refquant refuses
    with pytest.raises(InvalidArgumentError, match="y_scale must be a positive"):
        quantize_linear(F32([0, 1, -1, 0.5]), scale, 0, profile=profile)


def test_d21_accumulator_overflow():
    acc = np.array([140000 * 127 * 127])
    assert check_accumulator(acc, "onnxruntime").tolist() == [-2036907296]
    with pytest.raises(AccumulatorOverflowError):
        check_accumulator(acc, "tflite_reference")  # C++ UB: refused
    with pytest.raises(AccumulatorOverflowError):
        check_accumulator(acc, "exact")


def test_d22_int32_min_saturation():
    got = saturating_doubling_high_mul(-(2**31), -(2**31))
    assert int(got) == 2**31 - 1


@pytest.mark.parametrize(
    "profile, expected", [("tflite_reference", 121), ("exact", 120)]
)
def test_d23_softmax(profile, expected):
    row = np.int8([[56, 9, 31, -65, 7, -21, -87, 4, -125, 92]])
    got = softmax(row, 0.1, 0, profile=profile)
    assert int(got[0, -1]) == expected


@pytest.mark.parametrize("profile", ["onnxruntime", "onnx_reference"])
def test_d25_nan_quantizes_to_qmin(profile):
    assert quantize_linear(F32([np.nan]), 1.0, 0, profile=profile).tolist() == [-128]


@pytest.mark.parametrize("profile", ["exact", "tflite_reference", "pytorch_fbgemm"])
def test_d25_nan_raises_where_unspecified(profile):
    with pytest.raises(NonFiniteInputError, match="NaN"):
        quantize_linear(F32([np.nan]), 1.0, 0, profile=profile)


# worked examples of 2.4 at the profile level: (M, acc, exact, double, fp32 RNE)
WORKED = [
    (0.5, -1, 0, 0, 0),
    (0.5, -3, -2, -1, -2),
    (0.25, -2, 0, -1, 0),
    (0.25, -6, -2, -2, -2),
    (0.125, 3, 0, 1, 0),
    (0.125, -5, -1, -1, -1),
    (0.0625, 7, 0, 1, 0),
    (1583594044 * 2.0**-40, 7984, 11, 12, 11),
]


@pytest.mark.parametrize("m, acc, exact, double, rne", WORKED)
def test_worked_examples_per_profile(m, acc, exact, double, rne):
    assert rq(acc, m, "exact") == exact
    assert rq(acc, m, "tflite_reference") == double
    assert rq(acc, m, "onnxruntime") == rne
