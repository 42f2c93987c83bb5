"""overflow_report: worst-case accumulator bits, checked by hand and attained."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refquant
from refquant.errors import (
    AccumulatorOverflowError,
    InvalidArgumentError,
    InvalidTypeError,
)
from refquant.kernels.linear import matmul_integer
from refquant.kernels.overflow import (
    accumulator_bound,
    check_layer_fits_int32,
    max_code_magnitude,
    overflow_report,
)


def test_hand_values():
    rows = overflow_report([("conv1", 27, 8, 8), ("fc", 140000, 8, 8)])
    # 27 * 255 * 128 = 881280 < 2**20 -> 20 magnitude bits + sign = 21
    assert rows[0]["worst_case_abs"] == 881280
    assert rows[0]["accumulator_bits"] == 21
    assert rows[0]["fits_int32"] is True
    # 140000 * 255 * 128 = 4569600000 >= 2**32 -> 33 + 1 = 34 bits
    assert rows[1]["worst_case_abs"] == 4569600000
    assert rows[1]["accumulator_bits"] == 34
    assert rows[1]["fits_int32"] is False
    # (2**31 - 1) // 32640 = 65793
    assert rows[0]["max_k_int32"] == 65793


@pytest.mark.parametrize(
    "bits, options, expected",
    [
        (8, dict(), 128),
        (8, dict(narrow=True), 127),
        (8, dict(zero_point=True), 255),
        (8, dict(signed=False), 255),
        (16, dict(), 32768),
        (4, dict(zero_point=True), 15),
    ],
)
def test_max_code_magnitude(bits, options, expected):
    assert max_code_magnitude(bits, **options) == expected


def test_dict_layers_and_options():
    rows = overflow_report(
        [
            dict(name="dw", k=9, input_bits=16, weight_bits=8, input_zero_point=False),
            dict(
                name="fc",
                k=1024,
                input_bits=8,
                weight_bits=8,
                weight_narrow_range=True,
                bias_max_abs=2**31 - 1 - 1024 * 255 * 127,
            ),
        ]
    )
    assert rows[0]["worst_case_abs"] == 9 * 32768 * 128
    assert rows[1]["worst_case_abs"] == 2**31 - 1
    assert rows[1]["fits_int32"] is True
    assert rows[1]["accumulator_bits"] == 32


@given(k=st.integers(1, 2**20), bits=st.integers(2, 16))
def test_bits_are_the_fewest_that_hold_the_bound(k, bits):
    bound = accumulator_bound(k, bits, bits)
    b = overflow_report([("l", k, bits, bits)])[0]["accumulator_bits"]
    assert -(2 ** (b - 1)) <= -bound and bound <= 2 ** (b - 1) - 1
    assert bound > 2 ** (b - 2) - 1  # one bit fewer would not hold it


@pytest.mark.parametrize("k", [1, 3, 1000])
def test_bound_is_attained(k):
    # x = 127 with zero point -128 (255) against w = -128: |acc| = K * 255 * 128
    x = np.full((1, k), 127, np.int8)
    w = np.full((k, 1), -128, np.int8)
    acc = matmul_integer(x, w, -128, 0)
    assert abs(int(acc[0, 0])) == accumulator_bound(k, 8, 8)


def test_check_layer_fits_int32_agrees_with_the_kernels():
    assert check_layer_fits_int32(("small", 65793, 8, 8))["fits_int32"]
    with pytest.raises(AccumulatorOverflowError, match="'big'.*34 bits.*65793"):
        check_layer_fits_int32(("big", 140000, 8, 8))
    x = np.full((1, 65794), 127, np.int8)  # one past max_k_int32 overflows
    w = np.full((65794, 1), -128, np.int8)
    with pytest.raises(AccumulatorOverflowError):
        matmul_integer(x, w, -128, 0)


def test_public_export():
    assert refquant.overflow_report is overflow_report


@pytest.mark.parametrize(
    "layers, error, text",
    [
        ("conv", InvalidTypeError, "layers must be a list"),
        (5, InvalidTypeError, "layers must be a list"),
        ([("a", 3, 8)], InvalidTypeError, "layers[0] must be a (name, K, input_bits"),
        (
            [("a", 0, 8, 8)],
            InvalidArgumentError,
            "layers[0] k must be an int >= 1; got k=0",
        ),
        (
            [("a", 3, 8, 40)],
            InvalidArgumentError,
            "weight_bits must be an int in [1, 32]",
        ),
        ([("a", 3.0, 8, 8)], InvalidArgumentError, "k must be an int"),
        ([(1, 3, 8, 8)], InvalidTypeError, "name must be a str"),
        ([dict(name="a", k=3, input_bits=8)], InvalidArgumentError, "missing keys"),
        (
            [dict(name="a", k=3, input_bits=8, weight_bits=8, depth=2)],
            InvalidArgumentError,
            "unknown keys ['depth']",
        ),
        (
            [dict(name="a", k=3, input_bits=8, weight_bits=8, input_signed=1)],
            InvalidTypeError,
            "input_signed must be a bool",
        ),
        (
            [dict(name="a", k=3, input_bits=8, weight_bits=8, bias_max_abs=-1)],
            InvalidArgumentError,
            "bias_max_abs must be an int >= 0",
        ),
    ],
)
def test_overflow_report_rejects(layers, error, text):
    with pytest.raises(error) as info:
        overflow_report(layers)
    assert text in str(info.value)


def test_check_layer_and_bound_reject():
    with pytest.raises(InvalidTypeError, match="layer must be"):
        check_layer_fits_int32("x")
    with pytest.raises(InvalidArgumentError, match="input_bits must be"):
        accumulator_bound(3, 0, 8)
