"""Single-op ONNX models on Hypothesis inputs: refquant == the ONNX peers, exactly.

Profile ``"onnxruntime"`` is compared with ``onnxruntime.InferenceSession``
(CPUExecutionProvider, one thread) and profile ``"onnx_reference"`` with
``onnx.reference.ReferenceEvaluator``, element for element, on every example.
The com.microsoft contrib ops (QLinearAdd, QLinearAveragePool,
QLinearGlobalAveragePool) exist only in ONNX Runtime, so they are checked
against ONNX Runtime alone.

Inputs are built to hit rounding ties: power-of-two scales make the
requantization multiplier ``2^-j`` so that accumulators land on half-points,
quantize inputs are ``(n + 1/2) * scale``, and random scales cover the general
case (including float32 divisions that round onto a tie). Every tensor is a
graph input, so one session per shape signature is created and cached.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from peer_onnx import (  # noqa: E402
    dynamic_quantize_linear_model,
    nchw_to_nhwc,
    nhwc_to_nchw,
    oihw_to_ohwi,
    qlinear_add_model,
    qlinear_average_pool_model,
    qlinear_conv_model,
    qlinear_global_average_pool_model,
    qlinear_matmul_model,
    quantize_linear_model,
    run_ort,
    run_reference,
)

pytestmark = pytest.mark.peers

PEERS = ("onnxruntime", "onnx_reference")
f32 = np.float32


def peer_runner(peer):
    """The runner of a peer; skips when the peer is not installed."""
    if peer == "onnxruntime":
        pytest.importorskip("onnxruntime")
        return run_ort
    pytest.importorskip("onnx.reference")
    return run_reference


def kernel_module(name):
    return pytest.importorskip(f"refquant.kernels.{name}")


def assert_same_codes(actual, expected, context):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (context, actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (context, actual.dtype, expected.dtype)
    bad = np.flatnonzero(actual != expected)
    assert bad.size == 0, (
        f"{bad.size}/{expected.size} codes differ; first flat index {bad[0]}: "
        f"refquant {actual.ravel()[bad[0]]}, peer {expected.ravel()[bad[0]]}; "
        f"{context}"
    )


# ----------------------------------------------------------------------------------
# strategies


def info(dtype):
    return np.iinfo(dtype)


@st.composite
def scales(draw, low=2.0**-12, high=4.0):
    """A float32 scale: a power of two (ties) or a random float32 value."""
    if draw(st.booleans()):
        lo, hi = int(np.log2(low)), int(np.log2(high))
        return float(2.0 ** draw(st.integers(lo, hi)))
    return float(f32(draw(st.floats(low, high))))


def zero_points(dtype):
    return st.integers(int(info(dtype).min), int(info(dtype).max))


def codes(dtype, shape):
    i = info(dtype)
    return hnp.arrays(dtype, shape, elements=st.integers(int(i.min), int(i.max)))


@st.composite
def quantize_inputs(draw, shape, scale, reach):
    """float32 x near (n + frac) * scale with |n| <= reach; frac often 1/2."""
    n = draw(hnp.arrays(np.int64, shape, elements=st.integers(-reach, reach)))
    frac = draw(
        hnp.arrays(
            np.float64,
            shape,
            elements=st.sampled_from([0.5, -0.5, 0.0, 0.25])
            | st.floats(-0.5, 0.5, allow_nan=False),
        )
    )
    return ((n + frac) * np.asarray(scale, dtype=np.float64)).astype(f32)


# ----------------------------------------------------------------------------------
# QuantizeLinear


QUANTIZE_CASES = [
    # (x shape, out dtype, per-axis along 1)
    ((2, 3, 4, 5), np.int8, False),
    ((2, 3, 4, 5), np.uint8, False),
    ((2, 3, 4, 5), np.int16, False),
    ((2, 3, 4, 5), np.int8, True),
    ((2, 3, 4, 5), np.uint8, True),
    ((37,), np.int8, False),
]


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("x_shape, out_dtype, per_axis", QUANTIZE_CASES)
def test_quantize_linear(peer, x_shape, out_dtype, per_axis):
    run = peer_runner(peer)
    qo = kernel_module("quantize_ops")
    scale_shape = (x_shape[1],) if per_axis else ()
    model = quantize_linear_model(x_shape, np.dtype(out_dtype), scale_shape, 1)
    reach = 2 * int(info(out_dtype).max) + 4  # past both ends: saturation too

    @given(data=st.data())
    def check(data):
        if per_axis:
            s = np.array([data.draw(scales()) for _ in range(x_shape[1])])
            zp = np.array([data.draw(zero_points(out_dtype)) for _ in s])
            s_b = s.reshape((1, -1) + (1,) * (len(x_shape) - 2))
        else:
            s = data.draw(scales())
            zp = data.draw(zero_points(out_dtype))
            s_b = s
        x = data.draw(quantize_inputs(x_shape, s_b, reach))
        (expected,) = run(model, x, np.asarray(s, f32), np.asarray(zp, out_dtype))
        got = qo.quantize_linear(
            x, s, zp, axis=1 if per_axis else None, out_dtype=out_dtype, profile=peer
        )
        assert_same_codes(got, expected, f"quantize scale={s!r} zp={zp!r}")

    check()


@pytest.mark.parametrize("peer", PEERS)
def test_quantize_linear_float32_division_tie(peer):
    """x / s rounds onto a tie in float32 (D3): -0.1155 / 0.001 -> -115.5 -> -116."""
    run = peer_runner(peer)
    qo = kernel_module("quantize_ops")
    model = quantize_linear_model((4,), np.dtype(np.int8), (), 1)
    x = f32([-0.1155, 0.1155, -0.0025, 2.5])
    (expected,) = run(model, x, f32(0.001), np.int8(0))
    assert expected.tolist() == [-116, 116, -2, 127]  # the peer itself, as measured
    got = qo.quantize_linear(x, float(f32(0.001)), 0, out_dtype=np.int8, profile=peer)
    assert_same_codes(got, expected, "x=-0.1155f, s=0.001f")


# ----------------------------------------------------------------------------------
# DynamicQuantizeLinear


@pytest.mark.parametrize("peer", PEERS)
def test_dynamic_quantize_linear(peer):
    run = peer_runner(peer)
    qo = kernel_module("quantize_ops")
    model = dynamic_quantize_linear_model((3, 4))

    special = st.sampled_from(
        [
            np.zeros((3, 4)),
            np.full((3, 4), 2.5),
            np.full((3, 4), -1.0),
            np.linspace(-2.5, 252.5, 12).reshape(3, 4),
            np.linspace(-1.5, 253.5, 12).reshape(3, 4),
        ]
    ).map(lambda a: a.astype(f32))
    random = hnp.arrays(
        f32, (3, 4), elements=st.floats(-100, 100, allow_nan=False, width=32)
    )

    @given(x=special | random)
    def check(x):
        # refquant rejects subnormal scales by design (every backend stores
        # normal float32 scales); keep the range where the scale is normal.
        span = float(max(x.max(), 0)) - float(min(x.min(), 0))
        assume(span == 0 or span / 255 >= np.finfo(f32).tiny)
        y, y_s, y_zp = run(model, x)
        q, s, zp = qo.dynamic_quantize_linear(x, profile=peer)
        assert_same_codes(np.asarray(q), y, f"x={x.tolist()}")
        assert f32(s) == y_s, f"scale refquant {s!r} != peer {y_s!r}; x={x.tolist()}"
        assert int(zp) == int(y_zp), f"zero point {zp} != {y_zp}; x={x.tolist()}"

    check()


# ----------------------------------------------------------------------------------
# QLinearMatMul


MATMUL_CASES = [
    # (a shape, b shape, a dtype, b dtype, y dtype, per-column b scales)
    ((4, 16), (16, 5), np.uint8, np.uint8, np.uint8, False),
    ((4, 16), (16, 5), np.int8, np.int8, np.int8, False),
    ((4, 16), (16, 5), np.uint8, np.int8, np.uint8, True),
    ((2, 3, 7), (2, 7, 4), np.int8, np.int8, np.int8, False),
    ((2, 3, 7), (7, 4), np.uint8, np.uint8, np.uint8, True),
]


@st.composite
def output_scale(draw, product, k):
    """y_scale = product * 2^j (ties at every odd multiple) or a random multiple."""
    if draw(st.booleans()):
        return float(f32(product * 2.0 ** draw(st.integers(0, 9))))
    return float(f32(product * draw(st.floats(0.5, 40.0)) * np.sqrt(k)))


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("a_shape, b_shape, ta, tb, ty, per_col", MATMUL_CASES)
def test_qlinear_matmul(peer, a_shape, b_shape, ta, tb, ty, per_col):
    run = peer_runner(peer)
    lin = kernel_module("linear")
    ta, tb, ty = np.dtype(ta), np.dtype(tb), np.dtype(ty)
    n_out = b_shape[-1]
    model = qlinear_matmul_model(a_shape, b_shape, ta, tb, ty, n_out if per_col else 1)
    k = a_shape[-1]

    @given(data=st.data())
    def check(data):
        a = data.draw(codes(ta, a_shape))
        b = data.draw(codes(tb, b_shape))
        a_s = data.draw(scales())
        b_s = data.draw(scales())
        a_zp = data.draw(zero_points(ta))
        b_zp = data.draw(zero_points(tb))
        y_s = data.draw(output_scale(a_s * b_s, k))
        y_zp = data.draw(zero_points(ty))
        if per_col:
            b_s = np.array([data.draw(scales()) for _ in range(n_out)])
            b_zp = np.full(n_out, b_zp)
        (expected,) = run(model, a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp)
        got = lin.batch_matmul(
            a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp, out_dtype=ty, profile=peer
        )
        assert_same_codes(
            got,
            expected,
            f"a_s={a_s} a_zp={a_zp} b_s={b_s} b_zp={b_zp} "
            f"y_s={y_s} y_zp={y_zp}; a={a.tolist()} b={b.tolist()}",
        )

    check()


# ----------------------------------------------------------------------------------
# QLinearConv


CONV_CASES = [
    # x NCHW, w OIHW, dtypes (x, w, y), attributes
    dict(
        x=(1, 3, 6, 7),
        w=(4, 3, 3, 3),
        t=(np.uint8, np.int8, np.uint8),
        strides=(1, 1),
        dilations=(1, 1),
        pads=(1, 1, 1, 1),
        group=1,
    ),
    dict(
        x=(2, 4, 7, 6),
        w=(6, 2, 3, 2),
        t=(np.int8, np.int8, np.int8),
        strides=(2, 1),
        dilations=(1, 2),
        pads=(0, 1, 2, 0),
        group=2,
    ),
    dict(
        x=(1, 2, 5, 5),
        w=(3, 2, 1, 1),
        t=(np.uint8, np.uint8, np.uint8),
        strides=(1, 1),
        dilations=(1, 1),
        pads=(0, 0, 0, 0),
        group=1,
    ),
]


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c['x']}-{c['w']}")
def test_qlinear_conv(peer, case):
    run = peer_runner(peer)
    conv = kernel_module("conv")
    tx, tw, ty = (np.dtype(t) for t in case["t"])
    attrs = {k: case[k] for k in ("strides", "dilations", "pads", "group")}
    model = qlinear_conv_model(
        case["x"], case["w"], tx, tw, ty, per_channel=True, bias=True, **attrs
    )
    c_out, cg, kh, kw = case["w"]
    k = cg * kh * kw
    pads = case["pads"]

    @given(data=st.data())
    def check(data):
        x = data.draw(codes(tx, case["x"]))
        w = data.draw(codes(tw, case["w"]))
        x_s = data.draw(scales())
        x_zp = data.draw(zero_points(tx))
        w_s = np.array([data.draw(scales()) for _ in range(c_out)])
        # ONNX Runtime wants one weight zero point for all channels (and 0 for
        # int8 weights); onnx.reference takes any.
        w_zp = data.draw(zero_points(tw)) if tw == np.uint8 else 0
        w_zp = np.full(c_out, w_zp)
        y_s = data.draw(output_scale(x_s * float(w_s[0]), k))
        y_zp = data.draw(zero_points(ty))
        big = data.draw(st.booleans())  # accumulators past 2^24 (float32 rounding)
        lim = 2**26 if big else 2**12
        bias = data.draw(
            hnp.arrays(np.int32, (c_out,), elements=st.integers(-lim, lim))
        )
        (expected,) = run(model, x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, bias)
        got = conv.conv2d(
            nchw_to_nhwc(x),
            x_s,
            x_zp,
            oihw_to_ohwi(w),
            w_s,
            w_zp,
            bias,
            y_s,
            y_zp,
            strides=case["strides"],
            dilations=case["dilations"],
            groups=case["group"],
            padding=((pads[0], pads[2]), (pads[1], pads[3])),
            out_dtype=ty,
            profile=peer,
        )
        assert_same_codes(
            nhwc_to_nchw(got),
            expected,
            f"x_s={x_s} x_zp={x_zp} w_s={w_s.tolist()} "
            f"w_zp={w_zp[0]} y_s={y_s} y_zp={y_zp} bias={bias.tolist()}",
        )

    check()


@pytest.mark.parametrize("peer", PEERS)
def test_qlinear_conv_large_accumulator(peer):
    """acc = 2^25 + 1, M = 2^-26 (D12): ORT rounds f32(acc); onnx.reference does not."""
    run = peer_runner(peer)
    conv = kernel_module("conv")
    u8 = np.dtype(np.uint8)
    model = qlinear_conv_model(
        (1, 1, 1, 3), (1, 1, 1, 1), u8, u8, u8, per_channel=False, bias=True
    )
    x = np.zeros((1, 1, 1, 3), np.uint8)
    w = np.ones((1, 1, 1, 1), np.uint8)
    s = float(2.0**-13)
    bias = np.array([2**25 + 1], np.int32)
    (expected,) = run(model, x, s, 0, w, s, 0, 1.0, 0, bias)
    assert expected.ravel().tolist() == ([0] * 3 if peer == "onnxruntime" else [1] * 3)
    got = conv.conv2d(
        nchw_to_nhwc(x),
        s,
        0,
        oihw_to_ohwi(w),
        s,
        0,
        bias,
        1.0,
        0,
        out_dtype=np.uint8,
        profile=peer,
    )
    assert_same_codes(nhwc_to_nchw(got), expected, "acc=2^25+1, M=2^-26")


# ----------------------------------------------------------------------------------
# com.microsoft contrib ops: ONNX Runtime only (onnx.reference has no kernels)


ADD_CASES = [
    ((2, 3, 4, 5), (2, 3, 4, 5), np.int8),
    ((2, 3, 4, 5), (2, 3, 4, 5), np.uint8),
    ((1, 4, 4, 8), (1, 1, 1, 8), np.int8),
]


@pytest.mark.parametrize("a_shape, b_shape, dtype", ADD_CASES)
def test_qlinear_add_onnxruntime(a_shape, b_shape, dtype):
    run = peer_runner("onnxruntime")
    ew = kernel_module("elementwise")
    dtype = np.dtype(dtype)
    model = qlinear_add_model(a_shape, dtype, b_shape)

    @given(data=st.data())
    def check(data):
        a = data.draw(codes(dtype, a_shape))
        b = data.draw(codes(dtype, b_shape))
        a_s, b_s = data.draw(scales()), data.draw(scales())
        a_zp, b_zp, y_zp = (data.draw(zero_points(dtype)) for _ in range(3))
        base = max(a_s, b_s)
        if data.draw(st.booleans()):
            y_s = float(base * 2.0 ** data.draw(st.integers(0, 3)))
        else:
            y_s = float(f32(base * data.draw(st.floats(0.5, 4.0))))
        (expected,) = run(model, a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp)
        got = ew.add(
            a,
            a_s,
            a_zp,
            b,
            b_s,
            b_zp,
            y_s,
            y_zp,
            out_dtype=dtype,
            profile="onnxruntime",
        )
        assert_same_codes(
            got,
            expected,
            f"a_s={a_s} a_zp={a_zp} b_s={b_s} b_zp={b_zp} "
            f"y_s={y_s} y_zp={y_zp}; a={a.ravel().tolist()} b={b.ravel().tolist()}",
        )

    check()


def test_qlinear_add_tie_onnxruntime():
    """(0.5, 0) + (0.5, 0) -> (1, 0), 2 + (-63) = -30.5 -> ORT -30 (D9)."""
    run = peer_runner("onnxruntime")
    ew = kernel_module("elementwise")
    model = qlinear_add_model((1,), np.dtype(np.int8), (1,))
    a, b = np.array([2], np.int8), np.array([-63], np.int8)
    (expected,) = run(model, a, 0.5, 0, b, 0.5, 0, 1.0, 0)
    assert expected.tolist() == [-30]
    got = ew.add(a, 0.5, 0, b, 0.5, 0, 1.0, 0, out_dtype=np.int8, profile="onnxruntime")
    assert_same_codes(got, expected, "2 + (-63) at 0.5")


def test_qlinear_add_fixed_part_fma_onnxruntime():
    """ORT's vector QLinearAdd forms the constant term with a fused multiply-add.

    int8 a = 61 (1.0, 127), b = 3 (0.5, -128), y (0.9999899864196777, -1);
    r_a = f32(s_a / s_y), r_b = f32(s_b / s_y). ORT's constant term
    z_y - fma(r_a, z_a, f32(r_b * z_b)) is -64.000626f and the element lands
    just above -1.5 -> -1 (every element, for 2 or more elements); the
    separately rounded term -64.00063f lands just below -1.5 -> -2 (what ORT
    gives for a single element, and what refquant gives).
    """
    run = peer_runner("onnxruntime")
    ew = kernel_module("elementwise")
    model = qlinear_add_model((16,), np.dtype(np.int8), (16,))
    a, b = np.full(16, 61, np.int8), np.full(16, 3, np.int8)
    s_y = float(f32(0.9999899864196777))
    (expected,) = run(model, a, 1.0, 127, b, 0.5, -128, s_y, -1)
    assert expected.tolist() == [-1] * 16  # the peer itself
    got = ew.add(
        a, 1.0, 127, b, 0.5, -128, s_y, -1, out_dtype=np.int8, profile="onnxruntime"
    )
    assert_same_codes(got, expected, "a=61 (1, 127), b=3 (0.5, -128), y (0.99999, -1)")


POOL_CASES = [
    # x NCHW, kernel, strides, pads (t, l, b, r), count_include_pad, dtype
    ((1, 3, 6, 8), (2, 2), (2, 2), (0, 0, 0, 0), 0, np.int8),
    ((2, 2, 7, 7), (3, 3), (2, 2), (1, 1, 1, 1), 0, np.uint8),
    ((1, 2, 5, 6), (3, 2), (1, 2), (1, 0, 1, 1), 1, np.int8),
]


@pytest.mark.parametrize("x_shape, kernel, strides, pads, cip, dtype", POOL_CASES)
def test_qlinear_average_pool_onnxruntime(x_shape, kernel, strides, pads, cip, dtype):
    run = peer_runner("onnxruntime")
    pool = kernel_module("pooling")
    dtype = np.dtype(dtype)
    model = qlinear_average_pool_model(x_shape, dtype, kernel, strides, pads, cip)
    i = info(dtype)

    @given(data=st.data())
    def check(data):
        narrow = data.draw(st.booleans())  # small codes: window sums end in .5
        lo, hi = (-3, 3) if narrow else (int(i.min), int(i.max))
        if dtype == np.uint8 and narrow:
            lo, hi = 0, 6
        x = data.draw(hnp.arrays(dtype, x_shape, elements=st.integers(lo, hi)))
        x_s = data.draw(scales())
        x_zp = data.draw(zero_points(dtype))
        same = data.draw(st.booleans())
        y_s = x_s if same else data.draw(scales())
        y_zp = x_zp if same else data.draw(zero_points(dtype))
        (expected,) = run(model, x, x_s, x_zp, y_s, y_zp)
        got = pool.average_pool2d(
            nchw_to_nhwc(x),
            x_s,
            x_zp,
            y_s,
            y_zp,
            pool_size=kernel,
            strides=strides,
            padding=((pads[0], pads[2]), (pads[1], pads[3])),
            count_include_pad=bool(cip),
            out_dtype=dtype,
            profile="onnxruntime",
        )
        assert_same_codes(
            nhwc_to_nchw(got),
            expected,
            f"x_s={x_s} x_zp={x_zp} y_s={y_s} y_zp={y_zp}; x={x.ravel().tolist()}",
        )

    check()


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_qlinear_global_average_pool_onnxruntime(dtype):
    run = peer_runner("onnxruntime")
    pool = kernel_module("pooling")
    dtype = np.dtype(dtype)
    x_shape = (2, 5, 3, 4)
    model = qlinear_global_average_pool_model(x_shape, dtype)

    @given(data=st.data())
    def check(data):
        x = data.draw(codes(dtype, x_shape))
        x_s = data.draw(scales())
        x_zp = data.draw(zero_points(dtype))
        same = data.draw(st.booleans())
        y_s = x_s if same else data.draw(scales())
        y_zp = x_zp if same else data.draw(zero_points(dtype))
        # ORT (MLAS) refuses x_s / (y_s * H * W) outside [2^-32, 256).
        assume(x_s / (y_s * x_shape[2] * x_shape[3]) < 256)
        (expected,) = run(model, x, x_s, x_zp, y_s, y_zp)
        got = pool.global_average_pool(
            nchw_to_nhwc(x),
            x_s,
            x_zp,
            y_s,
            y_zp,
            out_dtype=dtype,
            profile="onnxruntime",
        )
        got = np.asarray(got).reshape(x_shape[0], x_shape[1])
        assert_same_codes(
            got,
            expected.reshape(x_shape[0], x_shape[1]),
            f"x_s={x_s} x_zp={x_zp} y_s={y_s} y_zp={y_zp}; x={x.ravel().tolist()}",
        )

    check()
