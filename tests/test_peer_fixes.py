"""Regression tests for kernels where the emulated backend was measured to differ.

Every expected value is computed by hand (written out in the comments) or by an
independent Python-int / Fraction oracle in this file; the peer runtimes
themselves are exercised in tests/peers/.
"""

from __future__ import annotations

import numpy as np

from refquant.kernels.conv import conv2d
from refquant.kernels.linear import fully_connected
from refquant.profiles import get_profile

# ----------------------------------------------------------------------------------
# 16x8 fully connected under tflite_reference: float64, ties away from zero


def test_fc_16x8_tflite_reference_rounds_half_away_like_int8():
    # x at (0.5, 0), w = 1 at 0.5, y at (1, 0): acc = x, M = 0.25.
    # x = -30: exact -7.5 -> half away -8 (LiteRT fc_16x8_per_channel_ties);
    # x = 30: 7.5 -> 8; x = -2: -0.5 -> -1; x = 2: 0.5 -> 1; x = -3: -0.75 -> -1.
    x = np.array([[-30], [30], [-2], [2], [-3]], np.int16)
    w = np.array([[1]], np.int8)
    bias = np.zeros(1, np.int64)
    got = fully_connected(
        x, 0.5, 0, w, 0.5, 0, bias, 1.0, 0, out_dtype=np.int16,
        profile="tflite_reference",
    )  # fmt: skip
    assert got.dtype == np.int16
    assert got.ravel().tolist() == [-8, 8, -1, 1, -1]


def test_conv_16x8_tflite_reference_keeps_the_int64_form():
    # The same accumulators through CONV_2D use the 16-bit multiplier form,
    # whose final shift rounds ties toward +inf: -7.5 -> -7, -0.5 -> 0.
    x = np.array([-30, 30, -2, 2, -3], np.int16).reshape(1, 1, 5, 1)
    w = np.ones((1, 1, 1, 1), np.int8)
    got = conv2d(
        x, 0.5, 0, w, 0.5, 0, np.zeros(1, np.int64), 1.0, 0, out_dtype=np.int16,
        profile="tflite_reference",
    )  # fmt: skip
    assert got.ravel().tolist() == [-7, 8, 0, 1, -1]


def test_for_op_overrides_the_16_bit_method_too():
    fc = get_profile("tflite_reference").for_op("fully_connected")
    assert (fc.requantize_int64_method, fc.requantize_rounding) == (
        "float64",
        "half_away",
    )
    assert get_profile("tflite_reference").requantize_int64_method == "tflite_int64"
