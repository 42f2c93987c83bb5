"""fully_connected, batch_matmul, matmul_integer and conv_integer."""

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
from refquant.kernels.gemm import prepare_weights
from refquant.kernels.linear import (
    batch_matmul,
    conv_integer,
    fully_connected,
    fully_connected_accumulator,
    matmul_integer,
)
from refquant.testing.kernel_oracles import (
    conv2d_oracle,
    matmul_oracle,
    requantize_oracle,
    round_fraction,
)

ACT = {np.int8: (-128, 127), np.uint8: (0, 255), np.int16: (-(2**15), 2**15 - 1)}


@st.composite
def fc_case(draw):
    x_dtype = draw(st.sampled_from([np.int8, np.uint8, np.int16]))
    w_dtype = (
        np.int8 if x_dtype == np.int16 else draw(st.sampled_from([np.int8, np.uint8]))
    )
    lo, hi = ACT[x_dtype]
    batch = draw(st.sampled_from([(1,), (3,), (2, 2)]))
    k, c_out = draw(st.integers(1, 12)), draw(st.integers(1, 5))
    x = draw(hnp.arrays(x_dtype, (*batch, k), elements=st.integers(lo, hi)))
    zx = 0 if x_dtype == np.int16 else draw(st.integers(lo, hi))
    wi = np.iinfo(w_dtype)
    w = draw(hnp.arrays(w_dtype, (c_out, k)))
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
        hnp.arrays(np.int64, (c_out,), elements=st.integers(-bias_hi - 1, bias_hi))
    )
    return x, zx, w, zw, bias


def fc_oracle(x, zx, w, zw, bias):
    x2 = x.reshape(-1, x.shape[-1])
    acc = matmul_oracle(x2, zx, w.T, zw) + np.asarray(bias, dtype=object)
    return acc.reshape(x.shape[:-1] + (w.shape[0],))


@given(fc_case())
def test_fully_connected_accumulator_matches_oracle(case):
    got = fully_connected_accumulator(*case)
    assert got.dtype == np.int64
    assert (got.astype(object) == fc_oracle(*case)).all()


@given(fc_case())
def test_fully_connected_prepared_weight_matches_oracle(case):
    x, zx, w, zw, bias = case
    prepared = prepare_weights(w.T, zw)
    expected = fc_oracle(*case)
    for given_zw in (None, zw):
        got = fully_connected_accumulator(x, zx, prepared, given_zw, bias)
        assert got.dtype == np.int64
        assert (got.astype(object) == expected).all()


def test_fully_connected_prepared_weight_requantizes_like_raw():
    rng = np.random.default_rng(8)
    x = rng.integers(-128, 128, (3, 1280)).astype(np.int8)
    w = rng.integers(-127, 128, (10, 1280)).astype(np.int8)
    sw = rng.uniform(1e-3, 1e-2, 10)
    bias = rng.integers(-5000, 5000, 10)
    raw = fully_connected(x, 0.05, -3, w, sw, 0, bias, 0.5, 1)
    prepared = prepare_weights(w.T, 0)
    got = fully_connected(x, 0.05, -3, prepared, sw, None, bias, 0.5, 1)
    np.testing.assert_array_equal(got, raw)
    acc = fully_connected_accumulator(x, -3, prepared, None, bias)
    expected = fc_oracle(x, -3, w, 0, bias)
    assert (acc.astype(object) == expected).all()


@pytest.mark.parametrize(
    "prepared, zw, error, text",
    [
        (
            prepare_weights(np.zeros((3, 4), np.int8), 1),
            2,
            InvalidArgumentError,
            "w_zero_point must be None or equal the prepared weight's zero point 1",
        ),
        (
            prepare_weights(np.zeros((4, 3), np.int8)),
            None,
            InvalidArgumentError,
            "a prepared w must have shape (K, C_out)",
        ),
        (
            prepare_weights(np.zeros((3, 4), np.int16)),
            None,
            InvalidTypeError,
            "w must have dtype",
        ),
    ],
)
def test_fully_connected_prepared_rejects(prepared, zw, error, text):
    x = np.zeros((2, 3), np.int8)
    with pytest.raises(error) as info:
        fully_connected_accumulator(x, 0, prepared, zw)
    assert text in str(info.value)


@settings(max_examples=40)
@given(case=fc_case(), data=st.data())
def test_fully_connected_exact_profile(case, data):
    x, zx, w, zw, bias = case
    c_out = w.shape[0]
    sw = data.draw(hnp.arrays(np.float64, (c_out,), elements=st.floats(1e-4, 0.1)))
    sx, sy = data.draw(st.floats(1e-3, 1.0)), data.draw(st.floats(1e-2, 100.0))
    out_dtype = np.int16 if x.dtype == np.int16 else np.int8
    zy = 0 if out_dtype == np.int16 else data.draw(st.integers(-128, 127))
    act = data.draw(st.sampled_from([None, "relu", "relu6"]))
    acc = fc_oracle(*case)
    if x.dtype != np.int16 and np.abs(acc).max() > 2**31 - 1:
        with pytest.raises(AccumulatorOverflowError, match="fully_connected"):
            fully_connected(
                x, sx, zx, w, sw, zw, bias, sy, zy, activation=act, out_dtype=out_dtype
            )
        return
    got = fully_connected(
        x, sx, zx, w, sw, zw, bias, sy, zy, activation=act, out_dtype=out_dtype
    )
    expected = requantize_oracle(
        acc.astype(np.int64), sx, sw, sy, zy, out_dtype, activation=act
    )
    np.testing.assert_array_equal(got, expected)


def test_fully_connected_tflite_reference_rounds_float64_half_away():
    # integer_semantics.md D7: M = 0.25, acc = -2 / 1 -> FC REF -1 / 0.
    x = np.array([[-2], [1]], np.int8)
    w = np.array([[1]], np.int8)
    got = fully_connected(
        x, 0.5, 0, w, 0.5, 0, None, 1.0, 0, profile="tflite_reference"
    )
    assert got.ravel().tolist() == [-1, 0]
    exact = fully_connected(x, 0.5, 0, w, 0.5, 0, None, 1.0, 0)  # -0.5, 0.25
    assert exact.ravel().tolist() == [0, 0]


def test_fully_connected_hand_example():
    x = np.array([[10, -4]], np.int8)
    w = np.array([[1, 2], [3, -1]], np.int8)
    # acc = [10 - 8 + 1, 30 + 4 + 0] = [3, 34]; M = 0.5 -> 1.5 -> 2, 17
    got = fully_connected(x, 0.5, 0, w, 1.0, 0, np.array([1, 0]), 1.0, 0)
    assert got.tolist() == [[2, 17]]


def _qlinear_matmul_oracle(a, sa, za, b, sb, zb, sy, zy, out_dtype):
    """Fraction oracle of QLinearMatMul with per-row a and per-column b params."""
    acc = matmul_oracle(a, za, b, zb)
    m, n = acc.shape
    sa = np.broadcast_to(np.asarray(sa, np.float64), (m,))
    sb = np.broadcast_to(np.asarray(sb, np.float64), (n,))
    info = np.iinfo(out_dtype)
    out = np.empty((m, n), np.int64)
    for i in range(m):
        for j in range(n):
            v = acc[i, j] * Fraction(sa[i]) * Fraction(sb[j]) / Fraction(sy)
            out[i, j] = min(int(info.max), max(int(info.min), zy + round_fraction(v)))
    return out.astype(out_dtype)


@settings(max_examples=40)
@given(data=st.data())
def test_batch_matmul_per_row_and_per_column(data):
    a_dtype = data.draw(st.sampled_from([np.int8, np.uint8]))
    b_dtype = data.draw(st.sampled_from([np.int8, np.uint8]))
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    a = data.draw(hnp.arrays(a_dtype, (m, k)))
    b = data.draw(hnp.arrays(b_dtype, (k, n)))
    ia, ib = np.iinfo(a_dtype), np.iinfo(b_dtype)
    za = data.draw(
        st.one_of(
            st.integers(int(ia.min), int(ia.max)),
            hnp.arrays(np.int64, (m,), elements=st.integers(int(ia.min), int(ia.max))),
        )
    )
    zb = data.draw(
        st.one_of(
            st.integers(int(ib.min), int(ib.max)),
            hnp.arrays(np.int64, (n,), elements=st.integers(int(ib.min), int(ib.max))),
        )
    )
    sa = data.draw(
        st.one_of(
            st.floats(1e-3, 1.0),
            hnp.arrays(np.float64, (m,), elements=st.floats(1e-3, 1.0)),
        )
    )
    sb = data.draw(
        st.one_of(
            st.floats(1e-3, 1.0),
            hnp.arrays(np.float64, (n,), elements=st.floats(1e-3, 1.0)),
        )
    )
    sy = data.draw(st.floats(1e-2, 10.0))
    out_dtype = data.draw(st.sampled_from([np.int8, np.uint8]))
    zy = data.draw(st.integers(*ACT[out_dtype]))
    got = batch_matmul(a, sa, za, b, sb, zb, sy, zy, out_dtype=out_dtype)
    expected = _qlinear_matmul_oracle(a, sa, za, b, sb, zb, sy, zy, out_dtype)
    np.testing.assert_array_equal(got, expected)


def test_batch_matmul_ties_to_even_onnxruntime():
    # integer_semantics.md 4.4: a = -9..9, b = 1, b_scale 0.5 (ORT measured).
    a = np.arange(-9, 10, dtype=np.int8).reshape(-1, 1)
    b = np.ones((1, 1), np.int8)
    expected = [-4, -4, -4, -3, -2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2, 3, 4, 4, 4]
    for profile in ("onnxruntime", "exact"):
        got = batch_matmul(a, 1.0, 0, b, 0.5, 0, 1.0, 0, profile=profile)
        assert got.ravel().tolist() == expected


def test_batch_matmul_broadcasts_batch_dims_and_1d():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (2, 1, 3, 4)).astype(np.uint8)
    b = rng.integers(-128, 128, (3, 4, 2)).astype(np.int8)
    got = batch_matmul(a, 0.1, 7, b, 0.05, 0, 0.5, 3)
    assert got.shape == (2, 3, 3, 2)
    for i in range(2):
        for j in range(3):
            expected = _qlinear_matmul_oracle(
                a[i, 0], 0.1, 7, b[j], 0.05, 0, 0.5, 3, np.int8
            )
            np.testing.assert_array_equal(got[i, j], expected)
    v = rng.integers(-128, 128, 4).astype(np.int8)
    assert batch_matmul(v, 0.1, 0, b[0], 0.05, 0, 0.5, 0).shape == (2,)
    assert batch_matmul(a[0, 0], 0.1, 0, v, 0.05, 0, 0.5, 0).shape == (3,)
    assert matmul_integer(v, v).shape == ()


def test_matmul_integer_wraps_like_onnxruntime_d21():
    # integer_semantics.md D21: 140000 x (127 * 127) = 2258060000 -> wraps.
    a = np.full((1, 140000), 127, np.int8)
    b = np.full((140000, 1), 127, np.int8)
    got = matmul_integer(a, b, profile="onnxruntime")
    assert got.dtype == np.int32
    assert got.tolist() == [[-2036907296]]
    with pytest.raises(AccumulatorOverflowError, match="matmul_integer"):
        matmul_integer(a, b)


@given(data=st.data())
def test_matmul_integer_matches_oracle(data):
    m, k, n = (data.draw(st.integers(1, 6)) for _ in range(3))
    a = data.draw(hnp.arrays(np.uint8, (m, k)))
    b = data.draw(hnp.arrays(np.int8, (k, n)))
    za = data.draw(hnp.arrays(np.int64, (m,), elements=st.integers(0, 255)))
    zb = data.draw(st.integers(-128, 127))
    got = matmul_integer(a, b, za, zb)
    assert got.dtype == np.int32
    assert (got.astype(object) == matmul_oracle(a, za, b, zb)).all()


def test_conv_integer_hand_and_oracle():
    x = np.full((1, 1, 2, 1), 255, np.uint8)
    w = np.full((1, 1, 2, 1), 255, np.uint8)
    assert conv_integer(x, w).ravel().tolist() == [2 * 255 * 255]
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (1, 5, 5, 4)).astype(np.uint8)
    w = rng.integers(0, 256, (6, 3, 3, 2)).astype(np.uint8)
    zw = rng.integers(0, 256, 6)
    got = conv_integer(x, w, 3, zw, strides=(2, 1), groups=2, padding=((1, 0), (2, 1)))
    expected = conv2d_oracle(
        x, 3, w, zw, None, strides=(2, 1), groups=2, padding=((1, 0), (2, 1))
    )
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


def test_conv_integer_wraps_or_raises():
    x = np.full((1, 1, 1, 70000), 127, np.int8)
    w = np.full((1, 1, 1, 70000), -128, np.int8)
    exact = 70000 * 255 * -128  # x_zero_point -128: 127 - (-128) = 255
    assert exact < -(2**31)
    wrapped = (exact + 2**31) % 2**32 - 2**31
    assert conv_integer(x, w, -128, profile="onnxruntime").ravel().tolist() == [wrapped]
    with pytest.raises(AccumulatorOverflowError, match="conv_integer"):
        conv_integer(x, w, -128)


# -- invalid input ---------------------------------------------------------------

XF = np.zeros((2, 3), np.int8)
WF = np.zeros((4, 3), np.int8)
FC = dict(
    x=XF,
    x_scale=0.1,
    x_zero_point=0,
    w=WF,
    w_scale=0.1,
    w_zero_point=0,
    bias=None,
    y_scale=0.1,
    y_zero_point=0,
)


@pytest.mark.parametrize(
    "change, error, text",
    [
        (dict(x=XF.astype(np.float64)), InvalidTypeError, "x must have dtype"),
        (dict(w=WF[:, :2]), InvalidArgumentError, "w must have shape (C_out, K)"),
        (dict(w=WF.astype(np.int32)), InvalidTypeError, "w must have dtype"),
        (
            dict(x=XF.astype(np.int16), w=WF.astype(np.uint8)),
            InvalidTypeError,
            "16x8 kernels need int8 weights",
        ),
        (
            dict(x_zero_point=128),
            InvalidArgumentError,
            "x_zero_point must be an int in",
        ),
        (
            dict(w_zero_point=np.zeros(3, np.int64)),
            InvalidArgumentError,
            "w_zero_point",
        ),
        (
            dict(bias=np.array([0, 0, 0, 2**31])),
            InvalidArgumentError,
            "bias[3]=2147483648 does not fit int32",
        ),
        (dict(w_scale=np.ones(3)), InvalidArgumentError, "w_scale must be a scalar or"),
        (dict(x_scale=-1.0), InvalidArgumentError, "x_scale must be a positive"),
        (dict(y_zero_point=300), InvalidArgumentError, "y_zero_point"),
        (dict(activation="tanh"), InvalidArgumentError, "activation"),
        (dict(profile=3), InvalidTypeError, "profile must be"),
    ],
)
def test_fully_connected_rejects(change, error, text):
    with pytest.raises(error) as info:
        fully_connected(**{**FC, **change})
    assert text in str(info.value)


A = np.zeros((2, 3), np.int8)
B = np.zeros((3, 4), np.int8)
BM = dict(
    a=A,
    a_scale=0.1,
    a_zero_point=0,
    b=B,
    b_scale=0.1,
    b_zero_point=0,
    y_scale=0.1,
    y_zero_point=0,
)


@pytest.mark.parametrize(
    "change, error, text",
    [
        (dict(a=A.astype(np.int16)), InvalidTypeError, "a must have dtype"),
        (
            dict(b=np.zeros((4, 4), np.int8)),
            InvalidArgumentError,
            "a.shape[-1] must equal",
        ),
        (dict(a=np.int8(3)), InvalidTypeError, "a must be a numpy array"),
        (
            dict(a=np.zeros((2, 2, 3), np.int8), b=np.zeros((3, 3, 4), np.int8)),
            InvalidArgumentError,
            "batch dimensions of a and b must broadcast",
        ),
        (dict(a_scale=np.ones(3)), InvalidArgumentError, "a_scale must be a scalar or"),
        (dict(b_scale=np.ones(3)), InvalidArgumentError, "b_scale must be a scalar or"),
        (dict(b_scale=0.0), InvalidArgumentError, "b_scale must be a positive"),
        (dict(a_scale="x"), InvalidTypeError, "a_scale must be a float"),
        (dict(a_zero_point=0.5), InvalidTypeError, "a_zero_point must be a int"),
        (dict(a_zero_point=200), InvalidArgumentError, "a_zero_point must lie in"),
        (
            dict(b_zero_point=np.zeros(2, np.int64)),
            InvalidArgumentError,
            "b_zero_point",
        ),
        (dict(out_dtype=np.float16), InvalidArgumentError, "out_dtype"),
    ],
)
def test_batch_matmul_rejects(change, error, text):
    with pytest.raises(error) as info:
        batch_matmul(**{**BM, **change})
    assert text in str(info.value)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(a=A.astype(np.float32), b=B), InvalidTypeError, "a must have dtype"),
        (
            dict(a=A, b=B, a_zero_point=np.zeros(3, np.int64)),
            InvalidArgumentError,
            "a_zero_point must be a scalar or a 1-D array of length 2",
        ),
        (dict(a=A, b=B, profile="ort"), InvalidArgumentError, "profile must be one of"),
    ],
)
def test_matmul_integer_rejects(kwargs, error, text):
    with pytest.raises(error) as info:
        matmul_integer(**kwargs)
    assert text in str(info.value)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (
            dict(x=np.zeros((1, 3, 3, 2), np.int16), w=np.zeros((1, 1, 1, 2), np.int8)),
            InvalidTypeError,
            "x must have dtype",
        ),
        (
            dict(
                x=np.zeros((1, 3, 3, 2), np.uint8), w=np.zeros((1, 1, 1, 3), np.uint8)
            ),
            InvalidArgumentError,
            "groups must divide",
        ),
        (
            dict(
                x=np.zeros((1, 3, 3, 2), np.uint8),
                w=np.zeros((1, 1, 1, 2), np.uint8),
                w_zero_point=-1,
            ),
            InvalidArgumentError,
            "w_zero_point must lie in",
        ),
        (
            dict(
                x=np.zeros((1, 3, 3, 2), np.uint8),
                w=np.zeros((1, 1, 1, 2), np.uint8),
                padding="full",
            ),
            InvalidArgumentError,
            "padding must be",
        ),
    ],
)
def test_conv_integer_rejects(kwargs, error, text):
    with pytest.raises(error) as info:
        conv_integer(**kwargs)
    assert text in str(info.value)


def test_fp32_bound_fully_connected():
    # dequantized output within s_y / 2 of the float64 product of the
    # dequantized operands, for every output not clamped to the range.
    rng = np.random.default_rng(21)
    x = rng.integers(-128, 128, (16, 32)).astype(np.int8)
    w = rng.integers(-127, 128, (8, 32)).astype(np.int8)
    sw = rng.uniform(1e-3, 1e-2, 8)
    sx, zx, sy, zy = 0.05, 4, 0.3, -2
    bias = rng.integers(-2000, 2000, 8)
    y = fully_connected(x, sx, zx, w, sw, 0, bias, sy, zy)
    real = ((x.astype(np.float64) - zx) * sx) @ (w * sw[:, None]).T + bias * sx * sw
    inside = (y > -128) & (y < 127)
    err = np.abs((y.astype(np.float64) - zy) * sy - real)
    assert inside.mean() > 0.5
    assert (err[inside] <= sy / 2 * (1 + 1e-9)).all()
