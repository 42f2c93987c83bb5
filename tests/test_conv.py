"""conv2d and depthwise_conv2d against direct-loop Python-int oracles."""

from fractions import Fraction

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
from refquant.kernels.conv import (
    conv2d,
    conv2d_accumulator,
    depthwise_conv2d,
    depthwise_conv2d_accumulator,
)
from refquant.testing.kernel_oracles import (
    conv2d_oracle,
    depthwise_conv2d_oracle,
    requantize_oracle,
    same_padding,
)

ACT = {np.int8: (-128, 127), np.uint8: (0, 255), np.int16: (-(2**15), 2**15 - 1)}


@st.composite
def window(draw):
    """Strides, dilations, kernel and padding with a non-empty output."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(
        st.one_of(
            st.sampled_from(["valid", "same"]),
            st.tuples(
                st.tuples(st.integers(0, 2), st.integers(0, 2)),
                st.tuples(st.integers(0, 2), st.integers(0, 2)),
            ),
        )
    )
    min_h = (kh - 1) * dilations[0] + 1
    min_w = (kw - 1) * dilations[1] + 1
    h = draw(st.integers(min_h, min_h + 4))
    w = draw(st.integers(min_w, min_w + 4))
    return dict(
        kernel=(kh, kw),
        strides=strides,
        dilations=dilations,
        padding=padding,
        hw=(h, w),
    )


@st.composite
def conv_case(draw, depthwise=False):
    x_dtype = draw(st.sampled_from([np.int8, np.uint8, np.int16]))
    w_dtype = (
        np.int8 if x_dtype == np.int16 else draw(st.sampled_from([np.int8, np.uint8]))
    )
    win = draw(window())
    n = draw(st.integers(1, 2))
    groups = 1 if depthwise else draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    c_in = groups * cg
    lo, hi = ACT[x_dtype]
    x = draw(hnp.arrays(x_dtype, (n, *win["hw"], c_in), elements=st.integers(lo, hi)))
    zx = 0 if x_dtype == np.int16 else draw(st.integers(lo, hi))
    wi = np.iinfo(w_dtype)
    if depthwise:
        dm = draw(st.integers(1, 3))
        c_out = c_in * dm
        w_shape = (1, *win["kernel"], c_out)
    else:
        dm = None
        c_out = groups * draw(st.integers(1, 3))
        w_shape = (c_out, *win["kernel"], cg)
    w = draw(hnp.arrays(w_dtype, w_shape))
    zw = draw(
        st.one_of(
            st.integers(int(wi.min), int(wi.max)),
            hnp.arrays(
                np.int64, (c_out,), elements=st.integers(int(wi.min), int(wi.max))
            ),
        )
    )
    bias_hi = 2**40 if x_dtype == np.int16 else 2**31 - 1
    bias = draw(
        st.one_of(
            st.none(),
            hnp.arrays(np.int64, (c_out,), elements=st.integers(-bias_hi - 1, bias_hi)),
        )
    )
    return dict(x=x, zx=zx, w=w, zw=zw, bias=bias, groups=groups, dm=dm, **win)


def _kw(case, depthwise=False):
    kw = dict(
        strides=case["strides"], dilations=case["dilations"], padding=case["padding"]
    )
    if depthwise:
        kw["depth_multiplier"] = case["dm"]
    else:
        kw["groups"] = case["groups"]
    return kw


# -- exactness of the accumulators ---------------------------------------------


@given(conv_case())
def test_conv2d_accumulator_matches_oracle(case):
    args = (case["x"], case["zx"], case["w"], case["zw"], case["bias"])
    got = conv2d_accumulator(*args, **_kw(case))
    expected = conv2d_oracle(*args, **_kw(case))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


@given(conv_case(depthwise=True))
def test_depthwise_accumulator_matches_oracle(case):
    args = (case["x"], case["zx"], case["w"], case["zw"], case["bias"])
    got = depthwise_conv2d_accumulator(*args, **_kw(case, True))
    expected = depthwise_conv2d_oracle(*args, **_kw(case, True))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "size, k, s, d, pads",
    [
        (5, 3, 2, 1, (1, 1)),  # out 3: total 2*2 + 3 - 5 = 2
        (6, 3, 2, 1, (0, 1)),  # out 3: total 2*2 + 3 - 6 = 1, extra at the end
        (4, 3, 1, 2, (2, 2)),  # dilated extent 5: total 3 + 5 - 4 = 4
        (7, 1, 3, 1, (0, 0)),
    ],
)
def test_same_padding_by_hand(size, k, s, d, pads):
    assert same_padding(size, k, s, d) == pads
    x = np.zeros((1, size, 1, 1), np.int8)
    w = np.ones((1, k, 1, 1), np.int8)
    x_out = conv2d_accumulator(
        x, 0, w, 0, strides=(s, 1), dilations=(d, 1), padding="same"
    )
    assert x_out.shape[1] == -(-size // s)


def test_padding_holds_the_zero_point():
    # x = zero point everywhere: every tap, padded or not, adds exactly 0.
    x = np.full((1, 3, 3, 2), -7, np.int8)
    w = np.full((4, 3, 3, 2), 127, np.int8)
    acc = conv2d_accumulator(x, -7, w, 0, np.arange(4), padding="same")
    assert (acc == np.arange(4)).all()


def test_conv2d_worked_example():
    # specs/kernels_conv_linear.md, section 2.6: every number by hand.
    x = np.array([[5, 3], [2, 8]], np.int8).reshape(1, 2, 2, 1)
    w = np.array([[1, -2], [3, 4]], np.int8).reshape(1, 2, 2, 1)
    acc = conv2d_accumulator(x, 2, w, 0, np.array([10]), padding="same")
    # x - 2 = [[3, 1], [0, 6]], padded below and right with 0.
    # (0,0): 3*1 + 1*-2 + 0*3 + 6*4 = 25; (0,1): 1*1 + 6*3 = 19;
    # (1,0): 0*1 + 6*-2 = -12; (1,1): 6*1 = 6; then + bias 10.
    assert acc.ravel().tolist() == [35, 29, -2, 16]
    y = conv2d(x, 0.5, 2, w, 0.25, 0, np.array([10]), 1.0, -3, padding="same")
    # M = 0.125: 4.375 -> 4, 3.625 -> 4, -0.25 -> 0, 2.0 -> 2; then + (-3).
    assert y.ravel().tolist() == [1, 1, -3, -1]
    y6 = conv2d(
        x,
        0.5,
        2,
        w,
        0.25,
        0,
        np.array([10]),
        1.0,
        -3,
        padding="same",
        activation="relu6",
        profile="tflite_reference",
    )
    # TFLite double rounding, M = 0.125 = (2**30, shift -2): 35 -> SRDHM 17.5
    # -> 18 (ties up) -> 18 / 4 = 4.5 -> 5 (ties away): 5 - 3 = 2, not 1.
    # RELU6 range [max(-128, -3), min(127, -3 + 6)] = [-3, 3].
    assert y6.ravel().tolist() == [2, 1, -3, -1]


def test_depthwise_worked_example():
    x = np.array([1, 2, 3, 4], np.int8).reshape(1, 1, 2, 2)
    w = np.array([1, 2, 3, -1], np.int8).reshape(1, 1, 1, 4)
    # output channel o reads input channel o // 2: [1*1, 1*2, 2*3, 2*-1]
    acc = depthwise_conv2d_accumulator(x, 0, w, 0, None, depth_multiplier=2)
    assert acc.tolist() == [[[[1, 2, 6, -2], [3, 6, 12, -4]]]]


# -- requantized outputs ----------------------------------------------------------


@settings(max_examples=30)
@given(case=conv_case(), data=st.data())
def test_conv2d_exact_profile_matches_fraction_oracle(case, data):
    x_dtype = case["x"].dtype.type
    c_out = case["w"].shape[0]
    w_scale = data.draw(hnp.arrays(np.float64, (c_out,), elements=st.floats(1e-3, 1.0)))
    x_scale = data.draw(st.floats(1e-3, 1.0))
    y_scale = data.draw(st.floats(1e-2, 50.0))
    out_dtype = np.int16 if x_dtype == np.int16 else np.int8
    y_zp = 0 if out_dtype == np.int16 else data.draw(st.integers(-128, 127))
    act = data.draw(st.sampled_from([None, "relu", "relu6", "relu_n1_to_1"]))
    args = (case["x"], case["zx"], case["w"], case["zw"], case["bias"])
    acc = conv2d_oracle(*args, **_kw(case))
    if x_dtype != np.int16 and np.abs(acc).max() > 2**31 - 1:
        with pytest.raises(AccumulatorOverflowError):
            conv2d(
                case["x"],
                x_scale,
                case["zx"],
                case["w"],
                w_scale,
                case["zw"],
                case["bias"],
                y_scale,
                y_zp,
                **_kw(case),
                activation=act,
                out_dtype=out_dtype,
            )
        return
    got = conv2d(
        case["x"],
        x_scale,
        case["zx"],
        case["w"],
        w_scale,
        case["zw"],
        case["bias"],
        y_scale,
        y_zp,
        **_kw(case),
        activation=act,
        out_dtype=out_dtype,
    )
    expected = requantize_oracle(
        acc, x_scale, w_scale, y_scale, y_zp, out_dtype, activation=act
    )
    assert got.dtype == out_dtype
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=30)
@given(case=conv_case(depthwise=True), data=st.data())
def test_depthwise_exact_profile_matches_fraction_oracle(case, data):
    x_dtype = case["x"].dtype.type
    c_out = case["w"].shape[3]
    w_scale = data.draw(hnp.arrays(np.float64, (c_out,), elements=st.floats(1e-3, 1.0)))
    out_dtype = np.int16 if x_dtype == np.int16 else np.uint8
    y_zp = 0 if out_dtype == np.int16 else data.draw(st.integers(0, 255))
    args = (case["x"], case["zx"], case["w"], case["zw"], case["bias"])
    acc = depthwise_conv2d_oracle(*args, **_kw(case, True))
    if x_dtype != np.int16 and np.abs(acc).max() > 2**31 - 1:
        return
    got = depthwise_conv2d(
        case["x"],
        0.02,
        case["zx"],
        case["w"],
        w_scale,
        case["zw"],
        case["bias"],
        0.7,
        y_zp,
        **_kw(case, True),
        out_dtype=out_dtype,
    )
    expected = requantize_oracle(acc, 0.02, w_scale, 0.7, y_zp, out_dtype)
    np.testing.assert_array_equal(got, expected)


def _float_conv(x, sx, zx, w, sw, bias, padding):
    """float64 conv of the dequantized operands (direct loops, tiny shapes)."""
    xf = (x.astype(np.float64) - zx) * sx
    wf = w.astype(np.float64) * np.asarray(sw)[:, None, None, None]
    xq = np.round(xf / sx).astype(np.int64)  # the dequantized integers again
    acc = conv2d_oracle(
        xq,
        0,
        np.round(wf / np.asarray(sw)[:, None, None, None]).astype(np.int64),
        0,
        bias,
        padding=padding,
    )
    return acc.astype(np.float64) * sx * np.asarray(sw)


@settings(max_examples=30)
@given(data=st.data())
def test_fp32_bound_half_lsb_under_exact(data):
    # |dequantize(y) - float_conv(dequantize(x), dequantize(w))| <= s_y / 2
    # for every output that is not clamped to the int8 range.
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-128, 128, (1, 4, 4, 3)).astype(np.int8)
    w = rng.integers(-127, 128, (2, 3, 3, 3)).astype(np.int8)
    sw = rng.uniform(0.001, 0.05, 2)
    sx, zx = data.draw(st.floats(0.01, 0.2)), int(rng.integers(-20, 20))
    bias = rng.integers(-500, 500, 2)
    sy, zy = data.draw(st.floats(0.05, 2.0)), int(rng.integers(-10, 10))
    y = conv2d(x, sx, zx, w, sw, 0, bias, sy, zy, padding="same")
    real = _float_conv(x, sx, zx, w, sw, bias, "same")
    err = np.abs((y.astype(np.float64) - zy) * sy - real)
    inside = (y > -128) & (y < 127)
    assert (err[inside] <= sy / 2 * (1 + 1e-9)).all()
    ideal = np.round(real / sy) + zy
    assert (y[~inside] == np.clip(ideal[~inside], -128, 127)).all()


def test_16x8_int64_bias_and_accumulator():
    x = np.full((1, 1, 1, 4), 2**15 - 1, np.int16)
    w = np.full((2, 1, 1, 4), 127, np.int8)
    bias = np.array([2**40, -(2**40)], np.int64)  # does not fit int32: fine here
    acc = conv2d_accumulator(x, 0, w, 0, bias)
    assert acc.ravel().tolist() == [4 * 32767 * 127 + 2**40, 4 * 32767 * 127 - 2**40]
    y = conv2d(x, 2.0**-10, 0, w, 2.0**-10, 0, bias, 2.0**4, 0, out_dtype=np.int16)
    exact = [Fraction(int(a), 2**24) for a in acc.ravel()]
    assert y.ravel().tolist() == [min(32767, max(-32768, round(v))) for v in exact]


# -- errors ------------------------------------------------------------------------


def test_bias_overflow_names_channel_and_value():
    x = np.zeros((1, 1, 1, 1), np.int8)
    w = np.ones((3, 1, 1, 1), np.int8)
    bias = np.array([0, 5, 2**31], np.int64)
    with pytest.raises(
        InvalidArgumentError, match=r"bias\[2\]=2147483648 does not fit int32"
    ):
        conv2d(x, 1.0, 0, w, 1.0, 0, bias, 1.0, 0)
    wd = np.ones((1, 1, 1, 3), np.int8)
    with pytest.raises(InvalidArgumentError, match=r"bias\[2\]=2147483648"):
        depthwise_conv2d(x, 1.0, 0, wd, 1.0, 0, bias, 1.0, 0, depth_multiplier=3)
    neg = np.array([-(2**31) - 1, 0, 0], np.int64)
    with pytest.raises(InvalidArgumentError, match=r"bias\[0\]=-2147483649"):
        conv2d(x, 1.0, 0, w, 1.0, 0, neg, 1.0, 0)


def test_accumulator_overflow_error_versus_wrap():
    x = np.full((1, 1, 1, 2), 127, np.int8)
    w = np.full((1, 1, 1, 2), 127, np.int8)
    bias = np.array([2**31 - 1 - 32258 + 1])  # acc = 2**31: one past int32
    with pytest.raises(AccumulatorOverflowError, match="conv2d accumulator"):
        conv2d(x, 1.0, 0, w, 1.0, 0, bias, 1.0, 0, profile="exact")
    # wrap: 2**31 -> -2**31; times M = 2**-24 -> -128 exactly
    y = conv2d(x, 2.0**-12, 0, w, 2.0**-12, 0, bias, 1.0, 0, profile="onnxruntime")
    assert y.ravel().tolist() == [-128]
    wd = np.full((1, 1, 1, 2), 127, np.int8)
    with pytest.raises(AccumulatorOverflowError, match="depthwise_conv2d"):
        depthwise_conv2d(x, 1.0, 0, wd, 1.0, 0, np.array([2**31 - 1] * 2), 1.0, 0)


X = np.zeros((1, 4, 4, 2), np.int8)
W = np.zeros((3, 3, 3, 2), np.int8)
GOOD = dict(
    x=X,
    x_scale=0.1,
    x_zero_point=0,
    w=W,
    w_scale=0.1,
    w_zero_point=0,
    bias=None,
    y_scale=0.1,
    y_zero_point=0,
)


@pytest.mark.parametrize(
    "change, error, text",
    [
        (dict(x=X.astype(np.float32)), InvalidTypeError, "x must have dtype"),
        (dict(x=X.tolist()), InvalidTypeError, "x must be a numpy array"),
        (dict(x=X[0]), InvalidArgumentError, "x must be 4-D NHWC"),
        (dict(w=W.astype(np.int16)), InvalidTypeError, "w must have dtype"),
        (dict(w=W[..., :1]), InvalidArgumentError, "groups must divide"),
        (
            dict(x_zero_point=200),
            InvalidArgumentError,
            "x_zero_point must be an int in",
        ),
        (dict(x_zero_point=0.5), InvalidArgumentError, "x_zero_point must be an int"),
        (
            dict(w_zero_point=np.zeros(2, np.int64)),
            InvalidArgumentError,
            "w_zero_point must be a scalar or have shape (3,)",
        ),
        (dict(w_zero_point=300), InvalidArgumentError, "w_zero_point must lie in"),
        (
            dict(bias=np.zeros(2, np.int32)),
            InvalidArgumentError,
            "bias must have shape (3,)",
        ),
        (
            dict(bias=np.zeros(3, np.float32)),
            InvalidTypeError,
            "bias must be an integer",
        ),
        (dict(w_scale=np.ones(2)), InvalidArgumentError, "w_scale must be a scalar or"),
        (dict(y_scale=0.0), InvalidArgumentError, "y_scale"),
        (dict(strides=(0, 1)), InvalidArgumentError, "strides must be a pair"),
        (dict(strides=2), InvalidArgumentError, "strides must be a pair"),
        (dict(dilations=(1, 1, 1)), InvalidArgumentError, "dilations must be a pair"),
        (dict(groups=0), InvalidArgumentError, "groups must be an int >= 1"),
        (dict(groups=2), InvalidArgumentError, "groups must divide"),
        (dict(padding="SAME"), InvalidArgumentError, "padding must be 'valid'"),
        (dict(padding=((1, -1), (0, 0))), InvalidArgumentError, "padding must be"),
        (dict(dilations=(3, 1)), InvalidArgumentError, "does not fit the padded input"),
        (dict(activation="relu7"), InvalidArgumentError, "activation"),
        (dict(out_dtype=np.float32), InvalidArgumentError, "out_dtype"),
        (dict(profile="tflite"), InvalidArgumentError, "profile must be one of"),
        (
            dict(x=X.astype(np.int16), x_zero_point=3),
            InvalidArgumentError,
            "must be 0 for int16",
        ),
        (
            dict(x=X.astype(np.int16), w=W.astype(np.uint8)),
            InvalidTypeError,
            "16x8 kernels need int8 weights",
        ),
    ],
)
def test_conv2d_rejects(change, error, text):
    kwargs = {**GOOD, **change}
    with pytest.raises(error) as info:
        conv2d(**kwargs)
    assert text in str(info.value)


WD = np.zeros((1, 3, 3, 4), np.int8)


@pytest.mark.parametrize(
    "change, error, text",
    [
        (
            dict(w=np.zeros((1, 3, 3, 3), np.int8)),
            InvalidArgumentError,
            "w must have shape (1, kh, kw, C_in * depth_multiplier)",
        ),
        (
            dict(w=np.zeros((2, 3, 3, 4), np.int8)),
            InvalidArgumentError,
            "w must have shape",
        ),
        (dict(depth_multiplier=0), InvalidArgumentError, "depth_multiplier must be"),
        (dict(depth_multiplier=1.5), InvalidArgumentError, "depth_multiplier must be"),
        (dict(x=X.astype(np.uint16)), InvalidTypeError, "x must have dtype"),
        (dict(w_scale=np.ones(3)), InvalidArgumentError, "w_scale must be a scalar or"),
        (dict(padding=None), InvalidArgumentError, "padding must be"),
        (dict(bias=np.array([0, 0, 0, 2**40])), InvalidArgumentError, "bias[3]="),
    ],
)
def test_depthwise_rejects(change, error, text):
    kwargs = {**GOOD, "w": WD, "depth_multiplier": 2, **change}
    with pytest.raises(error) as info:
        depthwise_conv2d(**kwargs)
    assert text in str(info.value)
