"""Float accumulators (the GEMM's ``result="float"``) requantize bit-identically.

``requantize_accumulator`` and ``check_accumulator`` accept float32 / float64
arrays of exact integers; ``fully_connected`` hands the GEMM's float result to
them when the profile's method converts to float anyway.  Every result is
compared with the int64 route on the same integers.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import (
    AccumulatorOverflowError,
    InvalidArgumentError,
    InvalidTypeError,
)
from refquant.kernels._checks import int_codes, integer_values
from refquant.kernels.linear import fully_connected, fully_connected_accumulator
from refquant.kernels.requantize import check_accumulator, requantize_accumulator
from refquant.profiles import PROFILES

PROFILE_NAMES = sorted(PROFILES)
OUT = [np.int8, np.uint8, np.int16]


@settings(max_examples=40)
@given(data=st.data())
def test_requantize_float_accumulators_are_bit_identical(data):
    profile = data.draw(st.sampled_from(PROFILE_NAMES))
    out_dtype = data.draw(st.sampled_from(OUT))
    limit = data.draw(st.sampled_from([2**24, 2**31 - 1, 2**53]))
    c = data.draw(st.integers(1, 4))
    acc = data.draw(hnp.arrays(np.int64, (3, c), elements=st.integers(-limit, limit)))
    s_w = data.draw(hnp.arrays(np.float64, (c,), elements=st.floats(1e-4, 1.0)))
    s_in = data.draw(st.floats(1e-4, 1.0))
    s_out = data.draw(st.floats(1e-3, 1e3))
    zp = 0 if out_dtype == np.int16 else data.draw(st.integers(0, 127))
    act = data.draw(st.sampled_from([None, "relu", "relu6"]))
    if profile == "tflite_reference" and out_dtype == np.int16:
        s_out = max(s_out, s_in * float(s_w.max()) / 64)  # int64 form: M < 2**6

    def run(a):
        return requantize_accumulator(
            a, s_in, s_w, s_out, zp, out_dtype, profile, activation=act
        )

    forms = [acc.astype(np.float64)]
    if limit <= 2**24:  # float32 holds these integers exactly
        forms.append(acc.astype(np.float32))
    try:
        want = run(acc)
    except InvalidArgumentError as exc:  # e.g. M out of a fixed-point range
        for form in forms:
            with pytest.raises(InvalidArgumentError, match=re.escape(str(exc))):
                run(form)
        return
    for form in forms:
        np.testing.assert_array_equal(run(form), want)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_check_accumulator_float_matches_int(profile):
    acc = np.array([0, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**40])
    prof = PROFILES[profile]
    if prof.overflow == "wrap":
        want = check_accumulator(acc, profile)
        got = check_accumulator(acc.astype(np.float64), profile)
        assert got.dtype == np.int64 and got.tolist() == want.tolist()
        # 2^31 wraps to -2^31, -2^31 - 1 to 2^31 - 1, 2^40 to 0
        assert want.tolist()[3:] == [-(2**31), 2**31 - 1, 0]
    else:
        with pytest.raises(AccumulatorOverflowError, match="overflows int32"):
            check_accumulator(acc.astype(np.float64), profile)
    inside = np.array([5.0, -(2.0**31), 2.0**31 - 1], np.float64)
    assert check_accumulator(inside, profile) is inside  # no conversion


def test_integer_values_checks_and_does_not_copy():
    a = np.arange(6, dtype=np.int64)
    assert int_codes("q", a) is a and integer_values("acc", a) is a
    f = np.array([1.0, -3.0, 2.0**52])
    assert integer_values("acc", f) is f
    for bad in ([0.5], [np.nan], [np.inf], [-np.inf]):
        with pytest.raises(InvalidTypeError, match="acc must be an integer array"):
            integer_values("acc", np.array(bad, np.float64))
    with pytest.raises(InvalidTypeError, match="acc must be an integer array"):
        integer_values("acc", np.array([True]))


def _fc_case(draw, k, x_dtype):
    lo, hi = (-(2**15), 2**15 - 1) if x_dtype == np.int16 else (-128, 127)
    x = draw(hnp.arrays(x_dtype, (3, k), elements=st.integers(lo, hi)))
    w = draw(hnp.arrays(np.int8, (2, k)))
    zx = 0 if x_dtype == np.int16 else draw(st.integers(lo, hi))
    bias_hi = 2**62 if x_dtype == np.int16 else 2**31 - 1
    bias = draw(
        st.one_of(
            st.none(),
            hnp.arrays(np.int64, (2,), elements=st.integers(-bias_hi, bias_hi)),
        )
    )
    return x, zx, w, bias


@settings(max_examples=40)
@given(data=st.data())
def test_fully_connected_float_route_is_bit_identical(data):
    profile = data.draw(st.sampled_from(PROFILE_NAMES))
    x_dtype = data.draw(st.sampled_from([np.int8, np.int16]))
    k = data.draw(st.sampled_from([1, 7, 1024, 1025]))  # float32 and float64 paths
    x, zx, w, bias = _fc_case(data.draw, k, x_dtype)
    out_dtype = np.int16 if x_dtype == np.int16 else np.int8
    s_x, s_y = data.draw(st.floats(1e-3, 1.0)), data.draw(st.floats(1e-2, 1e4))
    s_w = np.array([0.01, 0.02])
    acc = fully_connected_accumulator(x, zx, w, 0, bias)  # int64 route
    prof = PROFILES[profile]
    try:
        want = requantize_accumulator(
            check_accumulator(
                acc,
                prof.for_op("fully_connected"),
                bits=64 if x_dtype == np.int16 else 32,
            ),
            s_x,
            s_w,
            s_y,
            0,
            out_dtype,
            prof.for_op("fully_connected"),
        )
    except Exception as exc:  # the kernel must raise the same error
        with pytest.raises(type(exc)):
            fully_connected(
                x,
                s_x,
                zx,
                w,
                s_w,
                0,
                bias,
                s_y,
                0,
                out_dtype=out_dtype,
                profile=profile,
            )
        return
    got = fully_connected(
        x, s_x, zx, w, s_w, 0, bias, s_y, 0, out_dtype=out_dtype, profile=profile
    )
    np.testing.assert_array_equal(got, want)


def test_fully_connected_float_route_hand_example():
    # K = 1025: x all ones, w alternating +1, -1 (513 ones, 512 minus ones):
    # the GEMM returns a float 1.0 (no int64 pass); + bias 100 -> 101;
    # M = 1/2 -> 50.5: tflite_reference (float64, half away) 51, onnxruntime
    # (float32, half even) 50, exact (half even) 50.
    from refquant.kernels.gemm import exact_affine_gemm

    x = np.ones((1, 1025), np.int8)
    w = np.where(np.arange(1025) % 2 == 0, 1, -1).astype(np.int8)[None, :]
    assert exact_affine_gemm(x, 0, w.T, 0, result="float").dtype.kind == "f"
    got = {
        p: fully_connected(
            x, 1.0, 0, w, 1.0, 0, np.array([100]), 2.0, 0, profile=p
        ).tolist()
        for p in ("tflite_reference", "onnxruntime", "exact")
    }
    assert got == {
        "tflite_reference": [[51]],
        "onnxruntime": [[50]],
        "exact": [[50]],
    }
