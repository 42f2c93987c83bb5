"""refquant.testing: the oracles on hand values, assertions, strategies."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given

from refquant.testing import assert_codes_equal, assert_within_bound
from refquant.testing.oracles import (
    BFLOAT16,
    FLOAT16,
    FLOAT32,
    dequantize_oracle,
    quantize_oracle,
    round_rational,
    round_to_format,
    to_bfloat16_oracle,
    to_float16_oracle,
)
from refquant.testing.strategies import quant_cases, schemes


@pytest.mark.parametrize(
    "value, rule, expected",
    [
        (Fraction(5, 2), "half_even", 2),
        (Fraction(-5, 2), "half_even", -2),
        (Fraction(7, 2), "half_even", 4),
        (Fraction(5, 2), "half_away", 3),
        (Fraction(-5, 2), "half_away", -3),
        (Fraction(-5, 2), "half_up", -2),
        (Fraction(-1, 2), "half_up", 0),
        (Fraction(-1, 3), "floor", -1),
        (Fraction(-1, 3), "ceil", 0),
        (Fraction(4), "ceil", 4),
        (Fraction(1, 2) - Fraction(1, 10**30), "half_away", 0),
    ],
)
def test_round_rational_hand_values(value, rule, expected):
    assert round_rational(value, rule) == expected


def test_round_rational_stochastic_and_errors():
    assert round_rational(Fraction(23, 10), "stochastic", 0.29) == 3
    assert round_rational(Fraction(23, 10), "stochastic", 0.31) == 2
    with pytest.raises(ValueError, match="needs u"):
        round_rational(Fraction(1, 3), "stochastic")
    with pytest.raises(ValueError, match="unknown rounding rule 'nearest'"):
        round_rational(Fraction(1, 3), "nearest")


def test_round_to_format_hand_values():
    assert round_to_format(Fraction(65519), FLOAT16) == 65504
    assert round_to_format(Fraction(65520), FLOAT16) == math.inf
    assert round_to_format(Fraction(-65520), FLOAT16) == -math.inf
    assert round_to_format(Fraction(1, 2**25), FLOAT16) == 0  # tie -> even 0
    assert round_to_format(Fraction(3, 2**26), FLOAT16) == Fraction(1, 2**24)
    assert round_to_format(Fraction(2**24 + 1), FLOAT32) == 2**24  # tie -> even
    assert round_to_format(Fraction(2**24 + 3), FLOAT32) == 2**24 + 4
    assert round_to_format(Fraction(257, 256), BFLOAT16) == 1
    assert round_to_format(Fraction(1, 10), FLOAT32) == Fraction(13421773, 2**27)


def test_float_oracles_hand_values():
    assert to_float16_oracle(65519.99) == 65504.0
    assert math.copysign(1, to_float16_oracle(-1e-10)) == -1
    assert math.isnan(to_float16_oracle(math.nan))
    assert to_bfloat16_oracle(1 + 3 * 2**-8) == 1.015625
    assert to_bfloat16_oracle(1e39) == math.inf


def test_quantize_oracle_hand_values():
    # x / scale = 2.5 exactly
    assert quantize_oracle(1.25, 0.5, 0, -128, 127, "half_even") == 2
    assert quantize_oracle(1.25, 0.5, 0, -128, 127, "half_away") == 3
    assert quantize_oracle(1.25, 0.5, 10, -128, 127, "floor") == 12
    assert quantize_oracle(1e30, 1e-10, 0, -128, 127) == 127
    assert quantize_oracle(-math.inf, 1.0, 0, 0, 255) == 0
    x, s = float(np.float32(-0.1155)), float(np.float32(0.001))
    assert quantize_oracle(x, s, 0, -128, 127, arithmetic="float32_divide") == -116
    assert quantize_oracle(x, s, 0, -128, 127, arithmetic="float32_reciprocal") == -115
    with pytest.raises(ValueError, match="NaN"):
        quantize_oracle(math.nan, 1.0, 0, -128, 127)
    with pytest.raises(ValueError, match="unknown arithmetic"):
        quantize_oracle(1.0, 1.0, 0, -128, 127, arithmetic="f16")


def test_dequantize_oracle_hand_values():
    assert dequantize_oracle(5, 0.5, 3) == 1.0
    assert dequantize_oracle(1, 0.1, 0, "float64") == 0.1
    assert dequantize_oracle(1, 0.1, 0) == float(np.float32(0.1))


def test_assert_codes_equal_reports_first_difference():
    assert_codes_equal(np.array([1, 2, 3], np.int8), np.array([1, 2, 3]))
    a = np.array([[1, 2], [3, 4]], np.int8)
    with pytest.raises(
        AssertionError,
        match=r"2 of 4 codes differ; first at index "
        r"\(0, 1\): actual=.*2.*expected=.*5",
    ):
        assert_codes_equal(a, np.array([[1, 5], [3, 0]]))
    with pytest.raises(
        AssertionError, match=r"shape \(2, 2\) != expected shape \(4,\)"
    ):
        assert_codes_equal(a, np.arange(4))
    with pytest.raises(AssertionError, match=r"dtype int8 != expected uint8"):
        assert_codes_equal(a, a, dtype=np.uint8)
    with pytest.raises(AssertionError, match=r"actual must hold integers"):
        assert_codes_equal(a.astype(float), a)
    big = np.array([2**63], dtype=np.uint64)
    with pytest.raises(AssertionError, match="1 of 1"):
        assert_codes_equal(big, np.array([-(2**63)], dtype=np.int64))


def test_assert_within_bound():
    assert_within_bound([1.0, np.nan, np.inf], [1.1, np.nan, np.inf], 0.1 + 1e-15)
    with pytest.raises(
        AssertionError,
        match=r"worst at index \(1,\): actual=.*3.0.*"
        r"expected=.*1.0.*bound=.*0.5",
    ):
        assert_within_bound([1.0, 3.0, 2.0], [1.0, 1.0, 1.5], 0.5)
    with pytest.raises(AssertionError, match="1 of 1"):
        assert_within_bound([np.inf], [-np.inf], 1.0)


@given(case=quant_cases())
def test_quant_cases_are_consistent(case):
    x, qp = case
    scale, zp = qp.expand(x.shape)
    assert np.broadcast_shapes(scale.shape, x.shape) == x.shape
    assert np.all(np.isfinite(x))


@given(scheme=schemes(shape=(3, 4)))
def test_schemes_are_valid(scheme):
    assert 2 <= scheme.bits <= 16
    if scheme.granularity == "per_group":
        assert 1 <= scheme.group_size <= (3, 4)[scheme.axis]
