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
from refquant.numerics.floatfmt import bfloat16_bits
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


# --- one rounding from the input's own value ---------------------------------

MAX_BF16 = 2.0**128 - 2.0**120  # 0x7F7F


def test_bfloat16_float64_input_is_rounded_once():
    x = np.array(
        [
            2.0**128 - 2.0**119 - 2.0**100,  # below the threshold: max finite
            2.0**128 - 2.0**119,  # the tie at the threshold: even is 2**128, inf
            1 + 2**-8 + 2**-30,  # above the tie: up (via float32 it was a tie)
            1 + 2**-8 - 2**-40,  # below the tie: down
            2.0**-134,  # half the smallest subnormal 2**-133: tie, even is 0
            3 * 2.0**-134,  # 1.5 quanta: tie, even is 2 quanta
            2.0**-134 + 2.0**-160,  # above half a quantum: 2**-133
            1e-300,  # far below: +0
        ]
    )
    expected = [MAX_BF16, math.inf, 1.0078125, 1.0, 0.0, 2.0**-132, 2.0**-133, 0.0]
    assert to_bfloat16(x).tolist() == expected
    assert to_bfloat16(np.array([1 + 2**-8], np.float32)).tolist() == [1.0]
    with pytest.warns(Float16OverflowWarning, match=r"^1 finite value"):
        to_bfloat16(x, report_overflow=True)


def test_bfloat16_bits_signs_and_nan():
    x = np.array([np.nan, -np.nan, -0.0, -1e-300, -1.0, MAX_BF16, -1e308])
    bits = [0x7FC0, 0xFFC0, 0x8000, 0x8000, 0xBF80, 0x7F7F, 0xFF80]
    assert bfloat16_bits(x).tolist() == bits
    assert bfloat16_bits(x[:3].astype(np.float32)).tolist() == bits[:3]


def test_bfloat16_integers_are_rounded_from_their_exact_value():
    n = np.array([2**62 + 2**54 + 1, 2**62 + 2**54, 257, -(2**63), 0], np.int64)
    # 2**62 has quantum 2**55: + 2**54 is the tie (even: down), + 1 tips it up;
    # int64 -> float64 first would round 2**62 + 2**54 + 1 to the tie
    expected = [2.0**62 + 2.0**55, 2.0**62, 256.0, -(2.0**63), 0.0]
    assert to_bfloat16(n).tolist() == expected
    assert to_bfloat16(np.array([2**64 - 1], np.uint64)).tolist() == [2.0**64]


def test_float16_float64_input_is_rounded_once():
    # via float32 both would land on a tie and round to even (1.0, inf)
    x = np.array([1 + 2**-11 + 2**-40, 65520 - 2**-30])
    assert to_float16(x).tolist() == [1 + 2**-10, 65504.0]


def _near_ties(quantum_exponents, mant_bits):
    """Values within a relative 2**-j of a tie of a format with mant_bits bits."""
    return st.builds(
        lambda m, k, j, s: math.ldexp(2 * m + 1, k) * (1 + s * 2.0**-j),
        st.integers(2**mant_bits, 2 ** (mant_bits + 1) - 1),
        st.integers(*quantum_exponents),
        st.integers(20, 60),
        st.sampled_from([-1, 0, 1]),
    )


@given(
    x=hnp.arrays(np.float64, 16, elements=_near_ties((-143, 119), 7)),
    sign=hnp.arrays(np.bool_, 16),
)
def test_bfloat16_near_ties_match_oracle(x, sign):
    x = np.where(sign, -x, x)
    expected = np.array([to_bfloat16_oracle(float(v)) for v in x], dtype=np.float32)
    assert_codes_equal(to_bfloat16(x).view(np.uint32), expected.view(np.uint32))


@given(x=hnp.arrays(np.float64, 16, elements=_near_ties((-35, 5), 10)))
def test_float16_near_ties_match_oracle(x):
    expected = _bits16([to_float16_oracle(float(v)) for v in x])
    assert_codes_equal(to_float16(x).view(np.uint16), expected)


@given(n=hnp.arrays(np.int64, 16, elements=st.integers(-(2**63), 2**63 - 1)))
def test_bfloat16_int64_matches_oracle(n):
    expected = np.array([to_bfloat16_oracle(int(v)) for v in n], dtype=np.float32)
    assert_codes_equal(to_bfloat16(n).view(np.uint32), expected.view(np.uint32))


@pytest.mark.skipif(
    np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here"
)
@pytest.mark.parametrize("fn", [to_float16, to_bfloat16, bfloat16_bits])
def test_wider_floats_are_refused(fn):
    with pytest.raises(InvalidTypeError, match=r"x must be float16, float32, float64"):
        fn(np.ones(2, np.longdouble))
