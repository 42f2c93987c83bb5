"""ONNX Runtime com.microsoft QLinearMul, QLinearConcat and QLinearSigmoid.

Single-op models (every tensor a graph input, one cached session per shape
signature) run on Hypothesis inputs; profile ``"onnxruntime"`` must equal ONNX
Runtime (CPUExecutionProvider, one thread) code for code. onnx.reference has
no kernels for the com.microsoft domain, so ORT is the only peer here.

Ties are constructed, not left to chance: power-of-two scales make
``s_a * s_b / s_y`` and ``s_i / s_y`` equal to ``2^-j`` so odd products and
odd codes land on half-points, and sigmoid(0) = 1/2 is quantized with an
output scale chosen so that ``f32(0.5 / s_y)`` is exactly ``k + 1/2``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from peer_onnx import (  # noqa: E402
    qlinear_concat_model,
    qlinear_mul_model,
    qlinear_sigmoid_model,
    run_ort,
)

pytestmark = pytest.mark.peers

PROFILE = "onnxruntime"
f32 = np.float32


def kernel_module(name):
    return pytest.importorskip(f"refquant.kernels.{name}")


def assert_same_codes(actual, expected, context):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (context, actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (context, actual.dtype, expected.dtype)
    bad = np.flatnonzero(actual != expected)
    assert bad.size == 0, (
        f"{bad.size}/{expected.size} codes differ; first flat index {bad[0]}: "
        f"refquant {actual.ravel()[bad[0]]}, ORT {expected.ravel()[bad[0]]}; "
        f"{context}"
    )


@st.composite
def scales(draw, low=2.0**-10, high=4.0):
    """A float32 scale: a power of two (ties) or a random float32 value."""
    if draw(st.booleans()):
        return float(2.0 ** draw(st.integers(int(np.log2(low)), int(np.log2(high)))))
    return float(f32(draw(st.floats(low, high))))


def zero_points(dtype):
    i = np.iinfo(dtype)
    return st.integers(int(i.min), int(i.max))


@st.composite
def codes(draw, dtype, shape, narrow=False):
    i = np.iinfo(dtype)
    lo, hi = int(i.min), int(i.max)
    if narrow:  # small distances from a mid code: products end in .5 often
        mid = 0 if lo < 0 else 128
        lo, hi = mid - 9, mid + 9
    return draw(hnp.arrays(dtype, shape, elements=st.integers(lo, hi)))


# ----------------------------------------------------------------------------------
# QLinearMul


MUL_CASES = [
    ((2, 3, 4, 5), (2, 3, 4, 5), np.int8),
    ((2, 3, 4, 5), (2, 3, 4, 5), np.uint8),
    ((1, 4, 4, 8), (1, 1, 1, 8), np.int8),
    ((3,), (3,), np.uint8),
]


@pytest.mark.parametrize("a_shape, b_shape, dtype", MUL_CASES)
def test_qlinear_mul(a_shape, b_shape, dtype):
    ew = kernel_module("elementwise")
    dtype = np.dtype(dtype)
    model = qlinear_mul_model(a_shape, dtype, b_shape)

    @given(data=st.data())
    def check(data):
        tie = data.draw(st.booleans())
        a = data.draw(codes(dtype, a_shape, narrow=tie))
        b = data.draw(codes(dtype, b_shape, narrow=tie))
        a_s, b_s = data.draw(scales()), data.draw(scales())
        if tie:  # zero points at the middle code, M = 2^-j: ties at odd products
            a_zp = b_zp = y_zp = 0 if dtype == np.int8 else 128
            y_s = float(a_s * b_s * 2.0 ** data.draw(st.integers(1, 4)))
        else:
            a_zp, b_zp, y_zp = (data.draw(zero_points(dtype)) for _ in range(3))
            y_s = float(f32(a_s * b_s * data.draw(st.floats(2.0, 3000.0))))
        assume(2.0**-30 < y_s < 2.0**30)
        (expected,) = run_ort(model, a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp)
        got = ew.mul(
            a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp, out_dtype=dtype, profile=PROFILE
        )
        assert_same_codes(
            got,
            expected,
            f"a_s={a_s} a_zp={a_zp} b_s={b_s} b_zp={b_zp} y_s={y_s} y_zp={y_zp}; "
            f"a={a.ravel().tolist()} b={b.ravel().tolist()}",
        )

    check()


def test_qlinear_mul_ties():
    """(0.5, 0) x (1, 0) -> (1, 0): odd products are ties; ORT rounds to even."""
    ew = kernel_module("elementwise")
    model = qlinear_mul_model((8,), np.dtype(np.int8), (8,))
    a = np.int8([1, 3, 5, 7, -1, -3, -5, -7])
    b = np.ones(8, np.int8)
    (expected,) = run_ort(model, a, 0.5, 0, b, 1.0, 0, 1.0, 0)
    assert expected.tolist() == [0, 2, 2, 4, 0, -2, -2, -4]  # measured (4.5)
    got = ew.mul(a, 0.5, 0, b, 1.0, 0, 1.0, 0, out_dtype=np.int8, profile=PROFILE)
    assert_same_codes(got, expected, "odd codes at (0.5, 0) x (1, 0)")


# ----------------------------------------------------------------------------------
# QLinearConcat


CONCAT_CASES = [
    # (shapes, axis, dtype)
    (((1, 2, 3, 4), (1, 2, 3, 2)), 3, np.int8),
    (((2, 1, 3, 2), (2, 4, 3, 2), (2, 2, 3, 2)), 1, np.uint8),
    (((5, 3), (5, 3)), 0, np.int8),
]


@pytest.mark.parametrize("shapes, axis, dtype", CONCAT_CASES)
def test_qlinear_concat(shapes, axis, dtype):
    lay = kernel_module("layout")
    dtype = np.dtype(dtype)
    model = qlinear_concat_model(shapes, dtype, axis)

    @given(data=st.data())
    def check(data):
        y_s = data.draw(scales())
        y_zp = data.draw(zero_points(dtype))
        xs, ss, zs = [], [], []
        for shape in shapes:
            xs.append(data.draw(codes(dtype, shape)))
            kind = data.draw(st.sampled_from(["same", "pot", "random"]))
            if kind == "same":  # ORT copies the input unchanged
                s, z = y_s, y_zp
            elif kind == "pot":  # s / y_s = 2^-j: odd distances are ties
                s = float(y_s * 2.0 ** -data.draw(st.integers(1, 3)))
                z = data.draw(zero_points(dtype))
            else:
                s, z = data.draw(scales()), data.draw(zero_points(dtype))
            ss.append(s)
            zs.append(z)
        feeds = [y_s, y_zp]
        for x, s, z in zip(xs, ss, zs):
            feeds += [x, s, z]
        (expected,) = run_ort(model, *feeds)
        got = lay.concatenation(
            xs, ss, zs, y_s, y_zp, axis=axis, out_dtype=dtype, profile=PROFILE
        )
        assert_same_codes(
            got,
            expected,
            f"scales={ss} zps={zs} y=({y_s}, {y_zp}); "
            f"xs={[x.ravel().tolist() for x in xs]}",
        )

    check()


# ----------------------------------------------------------------------------------
# QLinearSigmoid


@st.composite
def sigmoid_output_qparams(draw, dtype):
    """Output qparams; half the time s_y with f32(0.5 / s_y) == k + 1/2 exactly,
    so x == x_zp (sigmoid 1/2) quantizes onto a tie."""
    if draw(st.booleans()):
        k = draw(st.integers(0, 200))
        s_y = f32(0.5 / (k + 0.5))
        assume(f32(0.5) / s_y == f32(k + 0.5))
        z = 0 if dtype == np.uint8 else -128
        return float(s_y), z
    if draw(st.booleans()):
        return 1 / 256, (0 if dtype == np.uint8 else -128)
    return draw(scales(2.0**-10, 0.1)), draw(zero_points(dtype))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_qlinear_sigmoid(dtype):
    act = kernel_module("activations")
    dtype = np.dtype(dtype)
    i = np.iinfo(dtype)
    x = np.arange(int(i.min), int(i.max) + 1).astype(dtype)  # every code
    model = qlinear_sigmoid_model(x.shape, dtype)

    @given(
        x_s=scales(2.0**-8, 0.5),
        x_zp=zero_points(dtype),
        y=sigmoid_output_qparams(dtype),
    )
    def check(x_s, x_zp, y):
        y_s, y_zp = y
        (expected,) = run_ort(model, x, x_s, x_zp, y_s, y_zp)
        got = act.logistic(
            x,
            x_s,
            x_zp,
            y_scale=y_s,
            y_zero_point=y_zp,
            out_dtype=dtype,
            profile=PROFILE,
        )
        assert_same_codes(got, expected, f"x_s={x_s} x_zp={x_zp} y_s={y_s} y_zp={y_zp}")

    check()


def test_qlinear_sigmoid_tie():
    """sigmoid(0) = 1/2 at s_y = f32(1/5): 0.5 / s_y = 2.5 -> ORT 2 (ties to even)."""
    act = kernel_module("activations")
    model = qlinear_sigmoid_model((2,), np.dtype(np.int8))
    x = np.int8([0, 0])
    s_y = float(f32(0.2))
    assert f32(0.5) / f32(s_y) == f32(2.5)
    (expected,) = run_ort(model, x, 0.1, 0, s_y, 0)
    assert expected.tolist() == [2, 2]
    got = act.logistic(
        x, 0.1, 0, y_scale=s_y, y_zero_point=0, out_dtype=np.int8, profile=PROFILE
    )
    assert_same_codes(got, expected, "sigmoid(0) at s_y = f32(0.2)")


SIGMOID_TABLE_CASES = [
    # (dtype, x_s, x_zp, y_s, y_zp): every input code against ORT's table
    (np.int8, 0.0625, 0, float(f32(1 / 235)), -128),  # x = -49 near a tie
    (np.uint8, 0.0625, 49, float(f32(1 / 235)), 0),  # x = 0, the same value
    (np.int8, float(f32(0.1358)), 121, float(f32(0.000505)), -128),  # FMA at 60
    (np.uint8, float(f32(0.2297)), 41, float(f32(0.004008)), 0),  # FMA at 95
    (np.uint8, 0.5, 128, 1 / 256, 0),  # reaches MLAS's [-18, 18] clamp
    (np.int8, float(f32(3e-4)), 5, float(f32(2e-5)), 3),  # saturates near 1/2
    (np.int8, 2.0**-4, 0, float(f32(0.2)), 0),  # sigmoid(0) / s_y = 2.5
]


@pytest.mark.parametrize("dtype, x_s, x_zp, y_s, y_zp", SIGMOID_TABLE_CASES)
def test_qlinear_sigmoid_every_code(dtype, x_s, x_zp, y_s, y_zp):
    """Deterministic: the whole 256-entry table for fixed qparams."""
    act = kernel_module("activations")
    dtype = np.dtype(dtype)
    i = np.iinfo(dtype)
    x = np.arange(int(i.min), int(i.max) + 1).astype(dtype)
    model = qlinear_sigmoid_model(x.shape, dtype)
    (expected,) = run_ort(model, x, x_s, x_zp, y_s, y_zp)
    got = act.logistic(
        x,
        x_s,
        x_zp,
        y_scale=y_s,
        y_zero_point=y_zp,
        out_dtype=dtype,
        profile=PROFILE,
    )
    assert_same_codes(got, expected, f"({x_s}, {x_zp}) -> ({y_s}, {y_zp})")


def test_qlinear_sigmoid_near_tie_measured():
    """int8 x = -49 at (1/16, 0) -> (f32(1/235), -128): ORT 1.32 gives -118
    (MLAS sigmoid / s_y = 10.4999895) where the real value 10.500005 gives -117."""
    act = kernel_module("activations")
    model = qlinear_sigmoid_model((1,), np.dtype(np.int8))
    x = np.int8([-49])
    s_y = float(f32(1 / 235))
    (expected,) = run_ort(model, x, 0.0625, 0, s_y, -128)
    assert expected.tolist() == [-118]
    got = act.logistic(
        x,
        0.0625,
        0,
        y_scale=s_y,
        y_zero_point=-128,
        out_dtype=np.int8,
        profile=PROFILE,
    )
    assert_same_codes(got, expected, "x = -49")


CONCAT_TABLE_CASES = [
    # (dtype, s, z, y_s, y_z): every input code against ORT's lookup table
    (
        np.uint8,
        float(f32(1.3770785331726074)),
        0,
        2 * float(f32(1.3770785331726074)),
        0,
    ),
    (np.uint8, 0.125, 7, 0.25, 128),  # (q - 7) / 2: every odd distance a tie
    (np.int8, 2.0**-4, -3, 2.0**-1, 5),  # (q + 3) / 8: ties at odd multiples of 4
    (np.int8, float(f32(0.1)), -3, float(f32(0.3)), 5),
    (np.int8, 3.0, 0, float(f32(0.7)), -128),  # saturates both ways
    (np.uint8, float(f32(0.0173)), 255, float(f32(0.0519)), 3),
]


@pytest.mark.parametrize("dtype, s, z, y_s, y_z", CONCAT_TABLE_CASES)
def test_qlinear_concat_every_code(dtype, s, z, y_s, y_z):
    """Deterministic: all codes of one input rescaled, the other copied."""
    lay = kernel_module("layout")
    dtype = np.dtype(dtype)
    i = np.iinfo(dtype)
    x0 = np.arange(int(i.min), int(i.max) + 1).astype(dtype)
    x1 = np.array([i.min, 0, i.max], dtype)
    model = qlinear_concat_model((x0.shape, x1.shape), dtype, 0)
    (expected,) = run_ort(model, y_s, y_z, x0, s, z, x1, y_s, y_z)
    got = lay.concatenation(
        [x0, x1],
        [s, y_s],
        [z, y_z],
        y_s,
        y_z,
        axis=0,
        out_dtype=dtype,
        profile=PROFILE,
    )
    assert_same_codes(got, expected, f"({s}, {z}) -> ({y_s}, {y_z})")


def test_qlinear_concat_rescale_divides_the_dequantized_value():
    """ORT rescales a QLinearConcat input through a lookup table built as
    ``rint(f32(f32(s * (q - z)) / s_y)) + z_y`` (measured: 0 of 153600 codes
    differ over 600 random qparams). uint8 q = 117 at (s, 0), s_y = 2 s exactly:
    ``f32(117 * s) / s_y = 58.500004`` -> ORT 59, although 117 / 2 = 58.5."""
    lay = kernel_module("layout")
    u8 = np.dtype(np.uint8)
    model = qlinear_concat_model(((1,), (1,)), u8, 0)
    s = float(f32(1.3770785331726074))
    y_s = 2 * s
    x0, x1 = np.uint8([117]), np.uint8([0])
    (expected,) = run_ort(model, y_s, 0, x0, s, 0, x1, y_s, 0)
    assert expected.tolist() == [59, 0]
    got = lay.concatenation(
        [x0, x1], [s, y_s], [0, 0], y_s, 0, axis=0, out_dtype=u8, profile=PROFILE
    )
    assert_same_codes(got, expected, f"q=117 at ({s}, 0) -> ({y_s}, 0)")
