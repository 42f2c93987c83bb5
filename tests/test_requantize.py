"""Accumulator requantization under every profile, against exact oracles."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant.errors import (
    AccumulatorOverflowError,
    InvalidArgumentError,
    InvalidTypeError,
)
from refquant.kernels.requantize import check_accumulator, requantize_accumulator
from refquant.profiles import PROFILES, get_profile
from refquant.testing import fixedpoint_oracles as oracle

ACC = np.arange(-7, 8)


def rq(acc, m, profile, **kw):
    return requantize_accumulator(acc, m, 1.0, 1.0, 0, np.int8, profile, **kw).tolist()


# ------------------------------------------------ tie tables (measured, 3.1)
@pytest.mark.parametrize(
    "m, ref, xnn",
    [
        (
            0.5,
            [-3, -3, -2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3, 3, 4],
            [-4, -3, -2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2, 3, 4],
        ),
        (
            0.25,
            [-2, -2, -1, -1, -1, -1, 0, 0, 1, 1, 1, 1, 2, 2, 2],
            [-2, -2, -1, -1, -1, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2],
        ),
        (
            0.125,
            [-1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
            [-1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
        ),
    ],
)
def test_conv_tie_tables(m, ref, xnn):
    assert rq(ACC, m, "tflite_reference") == ref
    # fp32 RNE is the arithmetic of XNNPACK, ORT and fbgemm alike
    assert rq(ACC, m, "onnxruntime") == xnn
    assert rq(ACC, m, "pytorch_fbgemm") == xnn
    assert rq(ACC, m, "onnx_reference") == xnn  # zp 0: same as after rounding
    assert rq(ACC, m, "exact") == xnn  # power-of-two M: fp32 is exact here


def test_single_rounding_profile_table():
    single = get_profile("tflite_reference").replace(
        name="tflite_single", requantize_method="tflite_single"
    )
    assert rq(ACC, 0.25, single) == [-2, -1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2]


def test_fully_connected_override_of_tflite_reference():
    # integer_semantics.md 3.2: FC REF is fp64 with ties away from zero
    fc = get_profile("tflite_reference").for_op("fully_connected")
    got = rq(np.arange(-6, 7), 0.25, fc)
    assert got == [-2, -1, -1, -1, -1, 0, 0, 0, 1, 1, 1, 1, 2]


def test_large_accumulator_float32_conversion():
    # D12: acc = 2**25 + 1, 2**25 + 3, -(2**25 + 1) with M = 2**-26
    acc = np.array([2**25 + 1, 2**25 + 3, -(2**25 + 1)])
    m = 2.0**-26
    assert rq(acc, m, "onnxruntime") == [0, 1, 0]
    assert rq(acc, m, "onnx_reference") == [1, 1, -1]
    assert rq(acc, m, "tflite_reference") == [1, 1, -1]
    assert rq(acc, m, "exact") == [1, 1, -1]


def test_onnx_reference_adds_zero_point_before_rounding():
    # 0.5 + 1 = 1.5 -> rint 2 (onnx.reference); rint(0.5) + 1 = 1 (ORT)
    args = (np.array([1, 3]), 0.5, 1.0, 1.0, 1, np.int8)
    assert requantize_accumulator(*args, "onnx_reference").tolist() == [2, 2]
    assert requantize_accumulator(*args, "onnxruntime").tolist() == [1, 3]


def test_16x8_uses_int64_form():
    acc = np.arange(-8, 9)
    got = requantize_accumulator(acc, 0.25, 1.0, 1.0, 0, np.int16, "tflite_reference")
    assert got.tolist() == [-2, -2, -1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    exact = requantize_accumulator(acc, 0.25, 1.0, 1.0, 0, np.int16, "exact")
    assert exact.tolist() == [-2, -2, -2, -1, -1, -1, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


# --------------------------------------------------------- exact vs oracle
scale_st = st.floats(1e-6, 1e3, allow_subnormal=False)
pow2_st = st.integers(-20, 6).map(lambda e: 2.0**e)


@given(
    acc=st.lists(st.integers(-(2**40), 2**40), min_size=3, max_size=12),
    s_in=st.one_of(scale_st, pow2_st),
    s_w=st.lists(st.one_of(scale_st, pow2_st), min_size=3, max_size=3),
    s_out=st.one_of(scale_st, pow2_st),
    zp=st.integers(-128, 127),
    rule=st.sampled_from(["half_even", "half_away", "half_up", "floor", "ceil"]),
)
def test_exact_matches_fraction_oracle(acc, s_in, s_w, s_out, zp, rule):
    n = len(acc) // 3 * 3
    acc = np.array(acc[:n]).reshape(-1, 3)
    prof = get_profile("exact").replace(name="x", requantize_rounding=rule)
    got = requantize_accumulator(acc, s_in, s_w, s_out, zp, np.int8, prof)
    for i, row in enumerate(acc.tolist()):
        for c, a in enumerate(row):
            want = oracle.exact_requantize(a, s_in, s_w[c], s_out, zp, -128, 127, rule)
            assert got[i, c] == want


def test_exact_on_ties_of_non_power_of_two_scales():
    # M = 0.3 * 5 / 3 = 0.5 over rationals only when taken exactly
    s_in, s_w, s_out = 0.1, 0.5, 0.1
    acc = np.arange(-9, 10)
    got = requantize_accumulator(acc, s_in, s_w, s_out, 0, np.int8, "exact")
    want = [
        oracle.exact_requantize(int(a), s_in, s_w, s_out, 0, -128, 127, "half_even")
        for a in acc
    ]
    assert got.tolist() == want


@given(
    acc=st.integers(-(2**31), 2**31 - 1),
    m=st.floats(2.0**-31, 0.99, allow_subnormal=False),
    zp=st.integers(-128, 127),
)
def test_tflite_reference_is_quantized_multiplier_double(acc, m, zp):
    q, shift = oracle.quantize_multiplier(m)
    want = oracle.multiply_by_quantized_multiplier(acc, q, shift, "double") + zp
    got = requantize_accumulator([acc], m, 1.0, 1.0, zp, np.int8, "tflite_reference")
    assert got[0] == min(max(want, -128), 127)


@given(
    acc=st.integers(-(2**31), 2**31 - 1),
    s=st.tuples(scale_st, scale_st, scale_st),
    zp=st.integers(0, 255),
)
def test_onnxruntime_float32_formula(acc, s, zp):
    s_in, s_w, s_out = (np.float32(v) for v in s)
    m32 = np.float32(np.float32(s_in * s_w) / s_out)
    v = np.float32(np.float32(acc) * m32)
    want = int(np.clip(np.rint(v) + zp, 0, 255))
    got = requantize_accumulator([acc], *s, zp, np.uint8, "onnxruntime")
    assert got[0] == want


# -------------------------------------------------- per channel + clamps
def test_per_channel_along_axis_and_activation():
    acc = np.array([[10, -10], [30, -30]])  # channel axis 0 here
    got = requantize_accumulator(
        acc, 1.0, [0.5, 0.25], 1.0, -3, np.int8, "exact", channel_axis=0
    )
    # row 0: 10 * 0.5 = 5, -5; row 1: 30 * 0.25 = 7.5 -> 8 (even), -7.5 -> -8
    assert got.tolist() == [[2, -8], [5, -11]]
    relu = requantize_accumulator(
        acc,
        1.0,
        [0.5, 0.25],
        1.0,
        -3,
        np.int8,
        "exact",
        channel_axis=0,
        activation="relu",
    )
    assert relu.tolist() == [[2, -3], [5, -3]]


def test_saturation_to_out_dtype():
    got = requantize_accumulator([10**6, -(10**6)], 1.0, 1.0, 1.0, 0, np.uint8)
    assert got.tolist() == [255, 0]


# ---------------------------------------------------- FP32 error bounds
def _bound(prof, acc_m, rs):
    """Proved bound on |(y - zp) - acc * M| in output LSB (specs section 1.4).

    0.5 for the final rounding, plus |acc * M| times the relative error of the
    multiplier (formation: float64 ~2**-52 per operation, float32 <= 5 * 2**-24
    < 2**-21) and of the product (float32: 2 roundings; gemmlowp q: 2**-31;
    16-bit reduced q: 2**-15), plus the first rounding of double rounding.
    """
    mag = np.abs(acc_m)
    formation = {"float64": 2.0**-50, "float32": 2.0**-21}[prof.multiplier_formation]
    method = prof.requantize_method
    extra = {
        "exact": 0 * mag,
        "float64": mag * (2.0**-51 + formation),
        "float32": mag * (2.0**-22 + formation),
        "tflite_double": 0.5 * 2.0**-rs + mag * 2.0**-30,
        "tflite_int64": mag * 2.0**-14,
    }[method]
    return 0.5 + extra


@pytest.mark.parametrize("name", sorted(PROFILES))
@given(
    acc=st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=20),
    s=st.tuples(scale_st, scale_st, scale_st),
)
def test_error_against_real_value_is_bounded(name, acc, s):
    prof = get_profile(name)
    s_in, s_w, s_out = s
    m = s_in * s_w / s_out
    if not 2.0**-30 < m < 2.0**6:
        return
    acc = np.array(acc)
    y = requantize_accumulator(acc, s_in, s_w, s_out, 0, np.int32, prof)
    real = acc * float(Fraction(s_in) * Fraction(s_w) / Fraction(s_out))
    rs = max(-int(np.frexp(m)[1]), 0)  # right shift of quantize_multiplier(m)
    bound = _bound(prof, real, rs)
    assert np.all(np.abs(y - real) <= bound + 1e-9)


# ---------------------------------------------------------- overflow
def test_check_accumulator_wrap_matches_ort():
    # D21: 140000 x (127 * 127) wraps to -2036907296 in ORT MatMulInteger
    acc = np.array([140000 * 127 * 127])
    assert check_accumulator(acc, "onnxruntime").tolist() == [-2036907296]
    assert check_accumulator(acc, "onnx_reference").tolist() == [-2036907296]
    with pytest.raises(AccumulatorOverflowError, match="overflows int32"):
        check_accumulator(acc, "exact", what="matmul accumulator")
    with pytest.raises(AccumulatorOverflowError, match="matmul accumulator"):
        check_accumulator(acc, "tflite_reference", what="matmul accumulator")


def test_check_accumulator_in_range_and_widths():
    acc = np.array([-(2**31), 2**31 - 1])
    assert check_accumulator(acc, "exact").tolist() == acc.tolist()
    assert check_accumulator([2**15], "onnxruntime", bits=16).tolist() == [-(2**15)]
    assert check_accumulator([2**62], "exact", bits=64).tolist() == [2**62]


def test_check_accumulator_rejects():
    with pytest.raises(InvalidArgumentError, match=r"bits must be an int in \[2, 64\]"):
        check_accumulator([1], "exact", bits=65)
    with pytest.raises(InvalidTypeError, match="accumulator must be an integer"):
        check_accumulator([1.5], "exact")


# ---------------------------------------------------------- invalid input
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"input_scale": 0.0}, InvalidArgumentError, "input_scale must be a positive"),
        ({"weight_scale": -1.0}, InvalidArgumentError, "weight_scale must be"),
        ({"output_scale": float("nan")}, InvalidArgumentError, "output_scale must"),
        ({"output_scale": 1e-310}, InvalidArgumentError, "output_scale must"),
        ({"output_zero_point": 200}, InvalidArgumentError, r"in \[-128, 127\]"),
        ({"out_dtype": np.float32}, InvalidArgumentError, "out_dtype must be one of"),
        ({"profile": "tflite"}, InvalidArgumentError, "profile must be one of"),
        ({"activation": "gelu"}, InvalidArgumentError, "activation must be one of"),
        ({"weight_scale": [1.0, 2.0, 3.0]}, InvalidArgumentError, "length 2"),
        ({"channel_axis": 2}, InvalidArgumentError, "channel_axis must be"),
        ({"acc": np.array([[0.5, 1.0]])}, InvalidTypeError, "acc must be an integer"),
    ],
)
def test_requantize_accumulator_rejects(kwargs, error, match):
    args = {
        "acc": np.array([[1, 2]]),
        "input_scale": 1.0,
        "weight_scale": 1.0,
        "output_scale": 1.0,
        "output_zero_point": 0,
        "out_dtype": np.int8,
        "profile": "exact",
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        requantize_accumulator(**args)


def test_exact_with_accumulators_beyond_float64_integers():
    # |acc| >= 2**53 takes the two-term split of the exact path
    acc = np.array([2**62 - 1, -(2**62) + 3, 2**53 + 1, -(2**53) - 3])
    s_in, s_w, s_out = 2.0**-41, 0.3, 0.7
    got = requantize_accumulator(acc, s_in, s_w, s_out, 0, np.int32, "exact")
    big = 2**31
    want = [
        oracle.exact_requantize(int(a), s_in, s_w, s_out, 0, -big, big - 1, "half_even")
        for a in acc
    ]
    assert got.tolist() == want
    ties = requantize_accumulator(
        np.array([2**60 + 2**39, 2**60 + 3 * 2**39]), 2.0**-40, 1.0, 1.0, 0, np.int32
    )
    # (2**60 + 2**39) / 2**40 = 2**20 + 0.5 -> even 2**20; + 1.5 -> 2**20 + 2
    assert ties.tolist() == [2**20, 2**20 + 2]
