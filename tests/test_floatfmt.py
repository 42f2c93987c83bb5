"""float16 / bfloat16 casts: hard rows, exact oracles, overflow reporting."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant import to_bfloat16, to_float16
from refquant.errors import Float16OverflowWarning, InvalidTypeError
from refquant.testing.assertions import assert_codes_equal
from refquant.testing.oracles import to_bfloat16_oracle, to_float16_oracle

FP16_ROW = [70000.0, -1e30, 65504.0, 65519.99, 65520.0, 65536.0]


def test_float16_hard_row():
    out = to_float16(np.array(FP16_ROW))
    assert out.dtype == np.float16
    assert out.tolist() == [math.inf, -math.inf, 65504.0, 65504.0, math.inf, math.inf]


def test_float16_overflow_is_reported_on_request():
    with pytest.warns(Float16OverflowWarning, match=r"^4 finite value"):
        to_float16(np.array(FP16_ROW), report_overflow=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_float16(np.array(FP16_ROW))  # silent by default
        to_float16(np.array([np.inf, 1.0]), report_overflow=True)  # inf is no overflow


def test_float16_ties_subnormals_nan_and_signed_zero():
    x = np.array([1 + 2**-11, 1 + 3 * 2**-11, 2**-25, 3 * 2**-26, -1e-10, np.nan])
    out = to_float16(x)
    assert out[:4].tolist() == [1.0, 1 + 2**-9, 0.0, 2**-24]  # ties to even
    assert out[4] == 0 and np.signbit(out[4])
    assert np.isnan(out[5])
    assert to_float16([1, 2]).tolist() == [1.0, 2.0]


def test_bfloat16_rows():
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 3.4e38, 3.3895313892515355e38, -0.0, 1e-45])
    out = to_bfloat16(x)
    assert out.dtype == np.float32
    assert out[:4].tolist() == [1.0, 1.015625, math.inf, 3.3895313892515355e38]
    assert out[4] == 0 and np.signbit(out[4])
    assert out[5] == 0  # f32(1e-45) = 2**-149: bits 0x00000001 round down to 0
    nan = to_bfloat16(np.array([np.nan, -np.nan]))
    assert np.isnan(nan).all()
    assert not (to_bfloat16(np.array([1.1, -7.3])).view(np.uint32) & 0xFFFF).any()


def test_bfloat16_overflow_is_reported_on_request():
    with pytest.warns(Float16OverflowWarning, match=r"^2 finite value.*bfloat16"):
        to_bfloat16(np.array([3.4e38, 1e39, 1.0]), report_overflow=True)


def _bits16(values):
    return np.array(values, dtype=np.float16).view(np.uint16)


any64 = st.floats(allow_nan=False, allow_infinity=True)
near_fp16 = st.floats(-7e4, 7e4) | st.floats(-1e-4, 1e-4)


@given(x=hnp.arrays(np.float64, 16, elements=any64 | near_fp16))
def test_float16_matches_oracle_float64_input(x):
    expected = _bits16([to_float16_oracle(float(v)) for v in x])
    assert_codes_equal(to_float16(x).view(np.uint16), expected)


@given(x=hnp.arrays(np.float32, 16, elements=st.floats(width=32, allow_nan=False)))
def test_float16_matches_oracle_float32_input(x):
    expected = _bits16([to_float16_oracle(float(v)) for v in x])
    assert_codes_equal(to_float16(x).view(np.uint16), expected)


@given(x=hnp.arrays(np.float64, 16, elements=any64 | st.floats(-4e38, 4e38)))
def test_bfloat16_matches_oracle(x):
    expected = np.array([to_bfloat16_oracle(float(v)) for v in x], dtype=np.float32)
    assert_codes_equal(to_bfloat16(x).view(np.uint32), expected.view(np.uint32))


@given(x=hnp.arrays(np.float32, 16, elements=st.floats(width=32, allow_nan=False)))
def test_bfloat16_matches_oracle_float32_input(x):
    expected = np.array([to_bfloat16_oracle(float(v)) for v in x], dtype=np.float32)
    assert_codes_equal(to_bfloat16(x).view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("fn", [to_float16, to_bfloat16])
def test_invalid_input(fn):
    with pytest.raises(
        InvalidTypeError, match=r"report_overflow must be a bool.*'yes'"
    ):
        fn([1.0], report_overflow="yes")
    with pytest.raises(InvalidTypeError, match=r"x must be a real numeric.*<U1"):
        fn(np.array(["a"]))
