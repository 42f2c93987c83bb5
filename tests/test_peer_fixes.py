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
        x,
        0.5,
        0,
        w,
        0.5,
        0,
        bias,
        1.0,
        0,
        out_dtype=np.int16,
        profile="tflite_reference",
    )
    assert got.dtype == np.int16
    assert got.ravel().tolist() == [-8, 8, -1, 1, -1]


def test_conv_16x8_tflite_reference_keeps_the_int64_form():
    # The same accumulators through CONV_2D use the 16-bit multiplier form,
    # whose final shift rounds ties toward +inf: -7.5 -> -7, -0.5 -> 0.
    x = np.array([-30, 30, -2, 2, -3], np.int16).reshape(1, 1, 5, 1)
    w = np.ones((1, 1, 1, 1), np.int8)
    got = conv2d(
        x,
        0.5,
        0,
        w,
        0.5,
        0,
        np.zeros(1, np.int64),
        1.0,
        0,
        out_dtype=np.int16,
        profile="tflite_reference",
    )
    assert got.ravel().tolist() == [-7, 8, 0, 1, -1]


def test_for_op_overrides_the_16_bit_method_too():
    fc = get_profile("tflite_reference").for_op("fully_connected")
    assert (fc.requantize_int64_method, fc.requantize_rounding) == (
        "float64",
        "half_away",
    )
    assert get_profile("tflite_reference").requantize_int64_method == "tflite_int64"


# ----------------------------------------------------------------------------------
# int16 LOGISTIC / TANH under tflite_reference: fixed point, sigmoid(i/24) table


def _int16_op(op, x, s_x):
    from refquant.kernels import activations

    return getattr(activations, op)(
        np.asarray(x, np.int16),
        s_x,
        0,
        out_dtype=np.int16,
        profile="tflite_reference",
    ).tolist()


def test_int16_table_entries_are_tflite_values():
    from refquant.kernels.activations import _SIGMOID_TABLE

    # First and last entries of TFLite's sigmoid_table_uint16 (common.h).
    assert _SIGMOID_TABLE[:4].tolist() == [32768, 33451, 34133, 34813]
    assert _SIGMOID_TABLE[-3:].tolist() == [65534, 65534, 65535]
    assert np.all(np.diff(_SIGMOID_TABLE) >= 0)


def test_int16_logistic_hand_values():
    # s_x = 2^-12 (power of two): v = 3 x, index v >> 9, 9 fraction bits.
    # x = 0: r = 32768 * 2^9, (2^24 + 2^9) >> 10 = 16384 (= 1/2).
    # x = 100: v = 300, r = 32768 * 512 + 300 * 683 = 16982116,
    #   (16982116 + 512) >> 10 = 16584 (real 16584.0).
    # x = -100: (2^25 - 16982116 + 511) = 16572827, >> 10 = 16184 (= 2^15 - 16584).
    assert _int16_op("logistic", [0, 100, -100], 2.0**-12) == [16384, 16584, 16184]
    # s_x = 2^-11 is not the power-of-two case (12 - 11 != 0): m = 6 doubled
    # to 24576, shift 12, v = 6 x.  x = 32767: index >= 255 saturates,
    # ((0x7FFF << 10) + 512) >> 10 = 32767; x = -32768: (2^25 - (0x7FFF << 10)
    # + 511) >> 10 = 1 (the real value is 0.0037).
    assert _int16_op("logistic", [32767, -32768], 2.0**-11) == [32767, 1]


def test_int16_tanh_hand_values():
    # s_x = 2^-12: v = 3 x, index v >> 8, 8 fraction bits.
    # x = 100: v = 300, index 1, frac 44: r = 33451 * 256 + 44 * 682 = 8593464,
    #   (8593464 - 2^23 + 2^7) >> 8 = 800 (real 799.8).
    # x = -32768: saturates, (-(0xFFFF << 8) + 2^23 + 127) >> 8 = -32767
    #   (LiteRT tanh_16x8_pot); x = 32767 -> 32767; x = 0 -> 0.
    assert _int16_op("tanh", [100, -32768, 32767, 0], 2.0**-12) == [
        800,
        -32767,
        32767,
        0,
    ]
    # s_x = f32(0.0003): m = 3.6864 doubled 13 times, trunc(30198.99) = 30198;
    # x = -32768: v = (-32768 * 30198 + 4096) >> 13 = -120792, saturates:
    # -32767 (LiteRT tanh_16x8_s0p0003, first element).
    assert _int16_op("tanh", [-32768], 0.0003) == [-32767]


def test_int16_tflite_logistic_needs_the_fixed_qparams():
    import pytest

    from refquant.errors import InvalidArgumentError
    from refquant.kernels.activations import logistic, tanh

    x = np.zeros(2, np.int16)
    with pytest.raises(InvalidArgumentError, match="x_zero_point 0"):
        logistic(x, 2.0**-12, 3, out_dtype=np.int16, profile="tflite_reference")
    with pytest.raises(InvalidArgumentError, match="y_scale"):
        tanh(
            x,
            2.0**-12,
            0,
            y_scale=2.0**-14,
            y_zero_point=0,
            out_dtype=np.int16,
            profile="tflite_reference",
        )
    with pytest.raises(InvalidArgumentError, match="overflows int32"):
        logistic(
            np.int16([32767]),
            100.0,
            0,
            out_dtype=np.int16,
            profile="tflite_reference",
        )


def test_float32_lut_logistic_is_warning_free_at_exp_overflow():
    import warnings

    from refquant.kernels.activations import logistic

    # s_x = 1, x = -128: exp(128) exceeds float32 -> inf, 1 / (1 + inf) = 0,
    # code -128; x = 127: sigmoid = 1 -> 256 - 128 = 128, clamped to 127.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = logistic(np.int8([-128, 127]), 1.0, 0, profile="onnxruntime")
    assert got.tolist() == [-128, 127]


# ----------------------------------------------------------------------------------
# ORT QLinearConcat: dequantize in float32, divide by the output scale, RNE


def test_onnxruntime_concat_divides_the_float32_dequantized_value():
    from refquant.kernels.layout import concatenation

    f32 = np.float32
    s = float(f32(1.3770785331726074))
    # f32(117 * s) = 161.1182 (161.11819458...), f32(2 s) = 2.754157, and
    # 161.1182 / 2.754157 = 58.5000022... -> f32 58.500004 -> 59.  The
    # rational 117 s / (2 s) is 58.5 exactly, which ties to even (58).
    got = concatenation(
        [np.uint8([117, 116, 0]), np.uint8([9])],
        [s, 2 * s],
        [0, 0],
        2 * s,
        0,
        axis=0,
        out_dtype=np.uint8,
        profile="onnxruntime",
    )
    assert got.tolist() == [59, 58, 0, 9]  # 116 -> 58 exactly; 9 is copied
    exact = concatenation(
        [np.uint8([117])], [s], [0], 2 * s, 0, axis=0, out_dtype=np.uint8
    )
    assert exact.tolist() == [58]


def test_onnxruntime_concat_power_of_two_ties_go_to_even():
    from refquant.kernels.layout import concatenation

    # (q - 7) * 2^-3 / 2^-2 = (q - 7) / 2: q = 8 -> 0.5 -> 0, q = 10 -> 1.5 -> 2,
    # q = 6 -> -0.5 -> 0, q = 0 -> -3.5 -> -4; plus z_y = 128.
    got = concatenation(
        [np.uint8([8, 10, 6, 0])],
        [0.125],
        [7],
        0.25,
        128,
        axis=0,
        out_dtype=np.uint8,
        profile="onnxruntime",
    )
    assert got.tolist() == [128, 130, 128, 124]


def test_concat_method_is_validated():
    import pytest

    from refquant.errors import InvalidArgumentError
    from refquant.profiles import Profile

    with pytest.raises(InvalidArgumentError, match="concat_method must be one of"):
        Profile(name="p", description="", concat_method="float")


# ----------------------------------------------------------------------------------
# int16 ADD, TFLite shift-only path (pot_scale_int16)


def _add16(a, s_a, b, s_b, s_y, pot=True):
    from refquant.kernels.elementwise import add

    return add(
        np.int16(a),
        s_a,
        0,
        np.int16(b),
        s_b,
        0,
        s_y,
        0,
        out_dtype=np.int16,
        profile="tflite_reference",
        pot_scale_int16=pot,
    ).tolist()


def test_int16_add_pot_path_rounds_the_shifted_input_first():
    p10, p12 = 2.0**-10, 2.0**-12
    # b at 2^-12 is divided by 4, ties away: -2 -> -1 (-0.5), 2 -> 1, -6 -> -2
    # (-1.5), 6 -> 2, 5 -> 1 (1.25); plus a = 2: [1, 3, 0, 4, 3].  The real
    # sums are 1.5, 2.5, 0.5, 3.5, 3.25 (LiteRT add_16x8_pot: 2 + -2 -> 1).
    b = [-2, 2, -6, 6, 5]
    assert _add16([2] * 5, p10, b, p12, p10) == [1, 3, 0, 4, 3]
    # the general path (pot_scale_int16 false) rounds once: 1.5 -> 2
    assert _add16([2], p10, [-2], p12, p10, pot=False) == [2]
    # either input may be the shifted one
    assert _add16([-2], p12, [2], p10, p10) == [1]
    # the int16 sum saturates: 32767 + 2 -> 32767; -32768 - 2 -> -32768
    assert _add16([32767, -32768], p10, [8, -8], p12, p10) == [32767, -32768]


def test_int16_add_pot_flag_needs_power_of_two_scales():
    # s_a = 0.3 is no power of two: the general path, as with the flag off
    a, b = [7, -300, 1000], [5, 11, -9]
    assert _add16(a, 0.3, b, 2.0**-12, 2.0**-10) == _add16(
        a, 0.3, b, 2.0**-12, 2.0**-10, pot=False
    )


def test_int16_add_pot_invalid():
    import pytest

    from refquant.errors import InvalidArgumentError
    from refquant.kernels.elementwise import add

    with pytest.raises(InvalidArgumentError, match="one input at the output's"):
        _add16([1], 2.0**-12, [1], 2.0**-12, 2.0**-10)  # neither at 2^-10
    with pytest.raises(InvalidArgumentError, match="one input at the output's"):
        _add16([1], 2.0**-9, [1], 2.0**-10, 2.0**-10)  # a coarser than y
    with pytest.raises(InvalidArgumentError, match="at most 15 bits"):
        _add16([1], 2.0**-10, [1], 2.0**-30, 2.0**-10)
    with pytest.raises(InvalidArgumentError, match="pot_scale_int16 must be a bool"):
        add(np.int8([1]), 1.0, 0, np.int8([1]), 1.0, 0, 1.0, 0, pot_scale_int16=1)


def test_checked_log2():
    from refquant.numerics.fixedpoint import checked_log2

    # 2^-10 * (1 + 2^-12): log2 is off by 0.00035 < 1e-3, so TFLite calls it a
    # power of two; 2^-10 * 1.001 is off by 0.00144.
    assert checked_log2(2.0**-10 * (1 + 2.0**-12)) == (-10, True)
    assert checked_log2(2.0**-10 * 1.001) == (-10, False)
    assert checked_log2(1.5) == (1, False)  # log2 1.5 = 0.585 rounds to 1
    import pytest

    from refquant.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="scale must be a positive"):
        checked_log2(0.0)


# ----------------------------------------------------------------------------------
# int16 SOFTMAX under tflite_reference: exp and 1 / (1 + x) int16 tables


def test_int16_softmax_tables_hand_entries():
    from refquant.kernels.activations import _lut_lookup_int16, _softmax_luts

    luts = _softmax_luts()
    exp_lut, inv_lut = luts["exp"], luts["one_over_one_plus_x"]
    # exp table, step 10/512 on [-10, 0], output k = 32768 per unit:
    # i = 511: exp(-0.01953125) k = 32134.2 -> 32134; midpoint exp(-0.009765625)
    # k = 32449.6 -> 32450; interpolated midpoint RHAZ((32768 + 32134) / 2) =
    # 32451; error 1, bias RHAZ(0.5) = 1: 32133.  i = 512: exp(0) k = 32768,
    # clamped to 32767.
    assert exp_lut[511:].tolist() == [32133, 32767]
    # 1 / (1 + x) on [0, 1]: i = 511: k / (1 + 511/512) = 16400.02, no bias;
    # i = 512: k / 2 = 16384.
    assert inv_lut[511:].tolist() == [16400, 16384]
    assert exp_lut.size == inv_lut.size == 513
    # lookup 32767: index 511, offset 127: 32133 + (634 * 127 + 64) >> 7 = 32762
    # lookup 32744: index 511, offset 104: 16400 + (-16 * 104 + 64) >> 7 = 16387
    assert int(_lut_lookup_int16(np.int64(32767), exp_lut)) == 32762
    assert int(_lut_lookup_int16(np.int64(32744), inv_lut)) == 16387


def test_int16_softmax_equal_pair_is_one_half():
    from refquant.kernels.activations import softmax

    # Both exps 32762, sum 65524 (17 bits: headroom_plus_one 16);
    # ((65524 << 15) + 2^13) >> 14 = 131048, - 98304 = 32744 -> reciprocal
    # 16387; (32762 * 16387 + 2^14) >> 15 = 536887278 >> 15 = 16384.
    got = softmax(
        np.int16([[0, 0], [-7, -7]]),
        0.001,
        0,
        y_scale=2.0**-15,
        y_zero_point=0,
        out_dtype=np.int16,
        profile="tflite_reference",
    )
    assert got.dtype == np.int16 and got.tolist() == [[16384, 16384]] * 2


def test_int16_softmax_invalid():
    import pytest

    from refquant.errors import InvalidArgumentError
    from refquant.kernels.activations import softmax

    kw = dict(y_scale=2.0**-15, y_zero_point=0, out_dtype=np.int16)
    with pytest.raises(InvalidArgumentError, match="x_zero_point 0"):
        softmax(np.int16([[1, 2]]), 0.01, 3, profile="tflite_reference", **kw)
    with pytest.raises(NotImplementedError, match="int16 output"):
        softmax(
            np.int16([[1, 2]]),
            0.01,
            0,
            y_scale=2.0**-14,
            y_zero_point=0,
            out_dtype=np.int16,
            profile="tflite_reference",
        )
