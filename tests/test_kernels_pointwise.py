"""Pointwise kernels: exact oracles, FP32 error bounds, invalid input, peers."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refquant.errors import (
    InvalidArgumentError,
    InvalidTypeError,
    NonFiniteInputError,
)
from refquant.kernels import activations, elementwise, layout, pooling, reduce
from refquant.kernels import quantize_ops as qo
from refquant.profiles import PROFILES
from refquant.testing.fixedpoint_oracles import round_fraction

ALL = sorted(PROFILES)
F32 = np.float32
scale_st = st.floats(0.005, 2.0, allow_subnormal=False).map(lambda v: float(F32(v)))
zp_st = st.integers(-20, 20)


def codes(n):
    return st.lists(st.integers(-128, 127), min_size=n, max_size=n).map(
        lambda v: np.array(v, dtype=np.int8)
    )


def _fr(v):
    return Fraction(float(v))


# ============================================================ exact oracles
@given(
    x=st.lists(st.floats(-300, 300, width=32), min_size=1, max_size=8),
    s=scale_st,
    z=zp_st,
)
def test_quantize_linear_exact_matches_oracle(x, s, z):
    x = np.array(x, dtype=F32)
    got = qo.quantize_linear(x, s, z)
    want = [
        min(max(round_fraction(_fr(v) / _fr(s), "half_even") + z, -128), 127) for v in x
    ]
    assert got.tolist() == want


@given(
    a=codes(6),
    b=codes(6),
    s=st.tuples(scale_st, scale_st, scale_st),
    z=st.tuples(zp_st, zp_st, zp_st),
)
def test_add_and_mul_exact_match_oracle(a, b, s, z):
    sa, sb, sy = s
    za, zb, zy = z
    got_add = elementwise.add(a, sa, za, b, sb, zb, sy, zy)
    got_mul = elementwise.mul(a, sa, za, b, sb, zb, sy, zy)
    for i in range(6):
        da, db = int(a[i]) - za, int(b[i]) - zb
        t_add = (_fr(sa) * da + _fr(sb) * db) / _fr(sy)
        t_mul = _fr(sa) * _fr(sb) * da * db / _fr(sy)
        assert got_add[i] == min(
            max(round_fraction(t_add, "half_even") + zy, -128), 127
        )
        assert got_mul[i] == min(
            max(round_fraction(t_mul, "half_even") + zy, -128), 127
        )


@given(x=codes(16), s=st.tuples(scale_st, scale_st), z=st.tuples(zp_st, zp_st))
def test_average_pool_and_mean_exact_match_oracle(x, s, z):
    (sx, sy), (zx, zy) = s, z
    img = x.reshape(1, 4, 4, 1)
    got = pooling.average_pool2d(img, sx, zx, sy, zy, pool_size=2, strides=2)
    got_mean = reduce.mean(img, sx, zx, sy, zy, axes=(1, 2))
    for i in range(2):
        for j in range(2):
            win = img[0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 0].astype(int) - zx
            t = _fr(sx) * int(win.sum()) / (4 * _fr(sy))
            want = min(max(round_fraction(t, "half_even") + zy, -128), 127)
            assert got[0, i, j, 0] == want
    t = _fr(sx) * int((img.astype(int) - zx).sum()) / (16 * _fr(sy))
    assert got_mean.ravel()[0] == min(
        max(round_fraction(t, "half_even") + zy, -128), 127
    )


def test_average_pool_same_padding_excludes_pad_taps():
    x = np.int8([4, 8, 12, 16]).reshape(1, 2, 2, 1)
    got = pooling.average_pool2d(
        x, 1.0, 0, 1.0, 0, pool_size=3, strides=1, padding="same"
    )
    # every 3x3 window around a 2x2 image covers all 4 pixels: mean 10
    assert got.ravel().tolist() == [10, 10, 10, 10]
    inc = pooling.average_pool2d(
        x,
        1.0,
        0,
        1.0,
        0,
        pool_size=3,
        strides=1,
        padding="same",
        count_include_pad=True,
    )
    assert inc.ravel().tolist() == [4, 4, 4, 4]  # 40 / 9 = 4.44


def test_max_pool_ignores_padding_and_global_average():
    x = np.int8([-100, -90, -80, -70]).reshape(1, 2, 2, 1)
    got = pooling.max_pool2d(x, pool_size=3, strides=2, padding="same")
    assert got.ravel().tolist() == [-70]
    g = pooling.global_average_pool(x, 0.5, 0, 1.0, 0)
    assert g.shape == (1, 1, 1, 1) and g.ravel().tolist() == [-42]  # -42.5 -> -42


def test_concatenation_and_pad():
    a, b = np.int8([[1, 3]]), np.int8([[5]])
    got = layout.concatenation([a, b], [0.5, 2.0], [1, 0], 1.0, 0, axis=1)
    # (1-1)*0.5 = 0, (3-1)*0.5 = 1, 5*2 = 10
    assert got.tolist() == [[0, 1, 10]]
    with pytest.raises(InvalidArgumentError, match="equal int8 input and output"):
        layout.concatenation(
            [a, b], [0.5, 2.0], [1, 0], 1.0, 0, profile="tflite_reference"
        )
    padded = layout.pad(np.int8([[1]]), [(1, 0), (0, 2)], 7)
    assert padded.tolist() == [[7, 7, 7], [1, 7, 7]]


def test_quantize_dequantize_requantize_round_trip():
    q = qo.quantize_linear(F32([0.26, -1.0]), [0.5, 0.25], 0, axis=0)
    assert q.tolist() == [1, -4]  # 0.52 -> 1, -4
    back = qo.dequantize_linear(q, [0.5, 0.25], 0, axis=0)
    assert back.tolist() == [0.5, -1.0]
    assert qo.dequantize_linear(q, 0.5, 0, profile="onnxruntime").dtype == F32
    r = qo.requantize(np.int8([5, -5]), 0.5, 1, 1.0, 0, out_dtype=np.uint8)
    assert r.tolist() == [2, 0]  # 2.0 and -3.0 saturates to 0


def test_activation_clamps_in_the_quantized_domain():
    q = np.int8([-128, 0, 127])
    relu6 = activations.clamp_activation(q, "relu6", 0.05, -128, np.int8)
    assert relu6.tolist() == [-128, -8, -8]  # 6 / 0.05 = 120 -> -128 + 120 = -8
    assert activations.clamp_activation(
        q, "relu_n1_to_1", 0.01, 0, np.int8
    ).tolist() == [
        -100,
        0,
        100,
    ]


def test_fixed_output_qparams_defaults():
    x = np.int8([0])
    assert activations.logistic(x, 0.1, 0).tolist() == [0]  # 0.5 * 256 - 128
    assert activations.logistic(
        x.astype(np.uint8), 0.1, 0, out_dtype=np.uint8
    ).tolist() == [128]
    assert activations.tanh(x, 0.1, 0).tolist() == [0]
    assert activations.softmax(np.int8([[3, 3, 3, 3]]), 0.1, 0).tolist() == [[-64] * 4]


# ================================================= FP32 bounds per profile
def _lsb_error(y, zy, real, sy):
    """|output - real| in output LSB; saturated outputs count as 0 error."""
    info = np.iinfo(y.dtype)
    err = np.abs((y.astype(np.float64) - zy) - real / sy)
    saturated = ((y == info.min) & (real / sy + zy < info.min)) | (
        (y == info.max) & (real / sy + zy > info.max)
    )
    return np.where(saturated, 0.0, err)


@pytest.mark.parametrize("profile", ALL)
@given(
    a=codes(8),
    b=codes(8),
    s=st.tuples(scale_st, scale_st, scale_st),
    z=st.tuples(zp_st, zp_st, zp_st),
)
def test_add_within_stated_bound_of_float(profile, a, b, s, z):
    """Bounds (output LSB): exact 0.5; tflite 1 + 4 max(s_a, s_b) / (2**20 s_y)
    + |t| 2**-28 (two double roundings, 2**-31 multipliers); float32 paths
    0.5 + (|s_a d_a| + |s_b d_b| + |z_y| s_y) / s_y * 2**-20."""
    (sa, sb, sy), (za, zb, zy) = s, z
    y = elementwise.add(
        a, sa, za, b, sb, zb, sy, zy, out_dtype=np.int16, profile=profile
    )
    real = sa * (a.astype(float) - za) + sb * (b.astype(float) - zb)
    method = PROFILES[profile].add_method
    mag = (
        np.abs(sa * (a.astype(float) - za)) + np.abs(sb * (b.astype(float) - zb))
    ) / sy
    bound = {
        "exact": 0.5 + 0 * mag,
        "tflite_fixed_point": 1 + 4 * max(sa, sb) / (2**20 * sy) + mag * 2.0**-28,
        "onnxruntime_float32": 0.5 + (mag + abs(zy)) * 2.0**-20,
        "float32": 0.5 + (mag + abs(zy)) * 2.0**-20,
    }[method]
    assert np.all(_lsb_error(y, zy, real, sy) <= bound + 1e-9)


@pytest.mark.parametrize("profile", ALL)
@given(
    a=codes(8),
    b=codes(8),
    s=st.tuples(scale_st, scale_st, scale_st),
    z=st.tuples(zp_st, zp_st, zp_st),
)
def test_mul_within_stated_bound_of_float(profile, a, b, s, z):
    """Bounds: exact 0.5; tflite 0.5 + 0.5 (double rounding) + |t| 2**-30;
    float32 paths 0.5 + (|t| + |z_y|) 2**-20."""
    (sa, sb, sy), (za, zb, zy) = s, z
    y = elementwise.mul(
        a, sa, za, b, sb, zb, sy, zy, out_dtype=np.int32, profile=profile
    )
    real = sa * sb * (a.astype(float) - za) * (b.astype(float) - zb)
    t = np.abs(real / sy)
    bound = {
        "exact": 0.5 + 0 * t,
        "tflite_fixed_point": 1.0 + t * 2.0**-30,
        "onnxruntime_float32": 0.5 + (t + abs(zy)) * 2.0**-20,
        "float32": 0.5 + (t + abs(zy)) * 2.0**-20,
    }[PROFILES[profile].mul_method]
    assert np.all(_lsb_error(y, zy, real, sy) <= bound + 1e-9)


@pytest.mark.parametrize("profile", ALL)
@given(x=codes(16), s=scale_st, z=zp_st)
def test_pool_and_mean_within_stated_bound_of_float(profile, x, s, z):
    """Same qparams in and out (TFLite's requirement).  Bounds: exact and
    tflite average pool 0.5 (both round the exact mean to nearest); float32
    0.5 + (|mean| / s + |z|) 2**-20; tflite mean 1 + |t| 2**-28 (truncated
    multiplier 2**-29 relative, double rounding)."""
    img = x.reshape(1, 4, 4, 1)
    prof = PROFILES[profile]
    y = pooling.average_pool2d(
        img, s, z, s, z, pool_size=2, strides=2, out_dtype=np.int16, profile=prof
    )
    win = (img.astype(float) - z).reshape(1, 2, 2, 2, 2, 1).transpose(0, 1, 3, 5, 2, 4)
    real = s * win.mean(axis=(4, 5))
    t = np.abs(real / s)
    pool_bound = (
        0.5 + (t + abs(z)) * 2.0**-20 if prof.average_pool_method == "float32" else 0.5
    )
    assert np.all(_lsb_error(y, z, real, s) <= pool_bound + 1e-9)
    m = reduce.mean(img, s, z, s, z, axes=(1, 2), out_dtype=np.int16, profile=prof)
    real_m = s * (img.astype(float) - z).mean()
    tm = abs(real_m / s)
    mean_bound = {
        "exact": 0.5,
        "tflite_reference": 1 + tm * 2.0**-28,
        "float32": 0.5 + (tm + abs(z)) * 2.0**-20,
    }[prof.mean_method]
    assert np.all(_lsb_error(m, z, real_m, s) <= mean_bound + 1e-9)


@pytest.mark.parametrize("profile", ALL)
@given(x=codes(10), s=st.floats(0.01, 0.5))
@settings(max_examples=30)
def test_activations_within_stated_bound_of_float(profile, x, s):
    """logistic / tanh: 0.5 LSB plus float32 evaluation error (< 2**-16 LSB at
    these output scales); softmax: exact 0.5, TFLite fixed point and float32
    within 1 LSB (tested bound: gemmlowp's exp and reciprocal are accurate to a
    few 2**-31 ulps, far below 1/256, but no closed-form proof is given)."""
    row = x.reshape(1, 10)
    real = s * row.astype(float)
    for fn, f, sy, zy in (
        (activations.logistic, lambda v: 1 / (1 + np.exp(-v)), 1 / 256, -128),
        (activations.tanh, np.tanh, 1 / 128, 0),
    ):
        y = fn(row, s, 0, profile=profile)
        inside = (y > -128) & (y < 127)
        err = _lsb_error(y, zy, f(real), sy)[inside]
        assert np.all(err <= 0.5 + 2.0**-16)
    y = activations.softmax(row, s, 0, profile=profile)
    p = np.exp(real - real.max()) / np.exp(real - real.max()).sum()
    bound = 0.5 if profile == "exact" else 1.0
    inside = y < 127
    assert np.all(_lsb_error(y, -128, p, 1 / 256)[inside] <= bound + 1e-9)


# ============================================================ invalid input
BAD_CALLS = [
    (lambda: qo.quantize_linear([1, 2], 1.0, 0), InvalidTypeError, "x must be a float"),
    (lambda: qo.quantize_linear(F32([1]), -1.0, 0), InvalidArgumentError, "y_scale"),
    (
        lambda: qo.quantize_linear(F32([1]), 1.0, 300),
        InvalidArgumentError,
        "y_zero_point",
    ),
    (
        lambda: qo.quantize_linear(F32([1]), 1.0, 0, out_dtype=np.float32),
        InvalidArgumentError,
        "out_dtype",
    ),
    (lambda: qo.quantize_linear(F32([np.nan]), 1.0, 0), NonFiniteInputError, "NaN"),
    (
        lambda: qo.dequantize_linear(F32([1.0]), 1.0, 0),
        InvalidTypeError,
        "q must be an integer",
    ),
    (
        lambda: qo.requantize(np.int8([1]), 1.0, 0, 0.0, 0, out_dtype=np.int8),
        InvalidArgumentError,
        "out_scale",
    ),
    (lambda: qo.dynamic_quantize_linear(F32([np.inf])), NonFiniteInputError, "finite"),
    (
        lambda: elementwise.add(
            np.int8([1]), 1.0, 0, np.int8([1, 2]), 1.0, 0, 1.0, 0, activation="tanh"
        ),
        InvalidArgumentError,
        "activation",
    ),
    (
        lambda: elementwise.add(
            np.int8([1, 2]), 1.0, 0, np.int8([1, 2, 3]), 1.0, 0, 1.0, 0
        ),
        InvalidArgumentError,
        "broadcast",
    ),
    (
        lambda: elementwise.mul(
            np.int8([1]), [1.0, 2.0], 0, np.int8([1]), 1.0, 0, 1.0, 0
        ),
        InvalidArgumentError,
        "per-tensor",
    ),
    (
        lambda: pooling.average_pool2d(
            np.int8([1]), 1.0, 0, 1.0, 0, pool_size=2, strides=1
        ),
        InvalidArgumentError,
        "NHWC",
    ),
    (
        lambda: pooling.average_pool2d(
            np.zeros((1, 2, 2, 1), np.int8), 1.0, 0, 1.0, 0, pool_size=0, strides=1
        ),
        InvalidArgumentError,
        "pool_size",
    ),
    (
        lambda: pooling.average_pool2d(
            np.zeros((1, 2, 2, 1), np.int8),
            1.0,
            0,
            2.0,
            0,
            pool_size=2,
            strides=1,
            profile="tflite_reference",
        ),
        InvalidArgumentError,
        "equal input and",
    ),
    (
        lambda: pooling.max_pool2d(
            np.zeros((1, 2, 2, 1), np.int8), pool_size=2, strides=1, padding="full"
        ),
        InvalidArgumentError,
        "padding",
    ),
    (
        lambda: pooling.global_average_pool(np.int8([1]), 1.0, 0, 1.0, 0),
        InvalidArgumentError,
        "NHWC",
    ),
    (
        lambda: reduce.mean(np.int8([1, 2]), 1.0, 0, 1.0, 0, axes=3),
        InvalidArgumentError,
        "axes",
    ),
    (lambda: layout.pad(np.int8([1]), [(1, -1)], 0), InvalidArgumentError, "paddings"),
    (
        lambda: layout.pad(np.int8([1]), [(1, 1)], 200),
        InvalidArgumentError,
        "zero_point",
    ),
    (lambda: layout.concatenation([], [], [], 1.0, 0), InvalidTypeError, "inputs"),
    (
        lambda: activations.clamp_activation(np.int8([1]), "relu7", 1.0, 0, np.int8),
        InvalidArgumentError,
        "activation",
    ),
    (
        lambda: activations.softmax(np.int8([1]), 1.0, 0, beta=-1.0),
        InvalidArgumentError,
        "beta",
    ),
    (
        lambda: activations.softmax(
            np.int8([1]), 1.0, 0, y_scale=0.1, profile="tflite_reference"
        ),
        NotImplementedError,
        "fixed-point softmax",
    ),
    (
        lambda: activations.logistic(np.int8([1]), 1.0, 0, out_dtype=np.int32),
        InvalidArgumentError,
        "default output qparams",
    ),
    (
        lambda: activations.tanh(F32([1]), 1.0, 0),
        InvalidTypeError,
        "x must be an integer",
    ),
]


@pytest.mark.parametrize("call, error, match", BAD_CALLS)
def test_invalid_input_raises_named_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ============================================================ live peers
def _ort_session(op, x_names, inputs, init, domain="com.microsoft", **attrs):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    node = helper.make_node(op, x_names, ["y"], domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(n, TensorProto.INT8, list(v.shape))
            for n, v in inputs.items()
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT8, None)],
        initializer=init,
    )
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", 17),
            helper.make_opsetid("com.microsoft", 1),
        ],
    )
    del onnx
    sess = ort.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, inputs)[0]


def _init(**params):
    from onnx import TensorProto, helper

    out = []
    for name, v in params.items():
        if isinstance(v, float):
            out.append(helper.make_tensor(name, TensorProto.FLOAT, [], [v]))
        else:
            out.append(helper.make_tensor(name, TensorProto.INT8, [], [v]))
    return out


@pytest.mark.peers
@pytest.mark.parametrize(
    "op, fn", [("QLinearAdd", elementwise.add), ("QLinearMul", elementwise.mul)]
)
@given(
    a=codes(37),
    b=codes(37),
    s=st.tuples(scale_st, scale_st, st.sampled_from([0.25, 0.5, 1.0, 0.37])),
    z=st.tuples(zp_st, zp_st, zp_st),
)
@settings(max_examples=25)
def test_onnxruntime_add_mul_bit_exact(op, fn, a, b, s, z):
    pytest.importorskip("onnxruntime")
    (sa, sb, sy), (za, zb, zy) = s, z
    init = _init(sa=sa, za=za, sb=sb, zb=zb, sy=float(F32(sy)), zy=zy)
    got = _ort_session(
        op, ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], {"a": a, "b": b}, init
    )
    mine = fn(a, sa, za, b, sb, zb, float(F32(sy)), zy, profile="onnxruntime")
    assert mine.tolist() == got.tolist()


@pytest.mark.peers
@given(
    x=st.lists(st.integers(-128, 127), min_size=72, max_size=72),
    s=st.tuples(scale_st, scale_st),
    z=st.tuples(zp_st, zp_st),
    same=st.booleans(),
)
@settings(max_examples=25)
def test_onnxruntime_average_pools_bit_exact(x, s, z, same):
    pytest.importorskip("onnxruntime")
    img = np.array(x, dtype=np.int8).reshape(1, 4, 6, 3)
    (sx, sy), (zx, zy) = s, z
    if same:
        sx, sy = 0.5, 0.5
    init = _init(sx=sx, zx=zx, sy=sy, zy=zy)
    names = ["x", "sx", "zx", "sy", "zy"]
    got = _ort_session(
        "QLinearAveragePool",
        names,
        {"x": img},
        init,
        kernel_shape=[2, 2],
        strides=[2, 2],
        channels_last=1,
    )
    mine = pooling.average_pool2d(
        img, sx, zx, sy, zy, pool_size=2, strides=2, profile="onnxruntime"
    )
    assert mine.tolist() == got.tolist()
    got = _ort_session(
        "QLinearGlobalAveragePool", names, {"x": img}, init, channels_last=1
    )
    mine = pooling.global_average_pool(img, sx, zx, sy, zy, profile="onnxruntime")
    assert mine.ravel().tolist() == got.ravel().tolist()
