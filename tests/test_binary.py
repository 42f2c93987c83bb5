"""binarize / ternarize: hand rows, least-squares optimality, errors."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant import binarize, ternarize
from refquant.errors import InvalidArgumentError, InvalidTypeError, NonFiniteInputError
from refquant.testing.assertions import assert_codes_equal, assert_within_bound


def test_binarize_hard_row_sign_of_zero_is_plus_one():
    r = binarize(np.array([-0.5, 0.0, 0.3]), axis=None)
    assert_codes_equal(r.codes, np.array([-1, 1, 1], np.int8), dtype=np.int8)
    assert_within_bound(r.scale, 0.8 / 3, 1e-16)  # (0.5 + 0 + 0.3) / 3
    assert binarize(np.array([-0.0])).codes.tolist() == [1]


def test_binarize_per_output_channel():
    w = np.array([[1.0, -3.0], [0.0, 0.0], [-2.0, 0.5]])
    r = binarize(w, axis=0)
    assert r.codes.tolist() == [[1, -1], [1, 1], [-1, 1]]
    assert r.scale.tolist() == [2.0, 0.0, 1.25]
    assert r.dequantize().tolist() == [[2.0, -2.0], [0.0, 0.0], [-1.25, 1.25]]
    codes, scale = r  # unpacks as (codes, scale)
    assert codes is r.codes and scale is r.scale


def test_ternarize_hand_rows():
    w = np.array([[0.1, -1.0, 0.9, 0.0], [2.0, -2.0, 0.5, -0.5]])
    # row 0: mean|w| = 0.5, delta = 0.35; row 1: mean|w| = 1.25, delta = 0.875
    r = ternarize(w, axis=0)
    assert r.codes.tolist() == [[0, -1, 1, 0], [1, -1, 0, 0]]
    assert_within_bound(r.scale, [0.95, 2.0], 1e-15)


def test_ternarize_threshold_is_strict():
    w = np.array([0.7, 1.0, 1.3])
    assert np.mean(np.abs(w)) == 1.0 and 0.7 * 1.0 == w[0]  # delta equals w[0]
    r = ternarize(w, axis=None)
    assert r.codes.tolist() == [0, 1, 1]
    assert_within_bound(r.scale, 1.15, 1e-15)


def test_all_zero_slices():
    w = np.zeros((2, 3))
    t = ternarize(w)
    assert t.codes.tolist() == [[0, 0, 0], [0, 0, 0]] and t.scale.tolist() == [0, 0]
    b = binarize(w)
    assert b.codes.tolist() == [[1, 1, 1], [1, 1, 1]] and b.scale.tolist() == [0, 0]
    assert not b.dequantize().any()


def test_conv_weight_axes():
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 2))  # OHWI
    r = ternarize(w, axis=0)
    assert r.scale.shape == (4,) and r.codes.shape == w.shape and r.axis == 0
    d = binarize(w, axis=-1)
    assert d.scale.shape == (2,) and d.axis == 3
    assert_within_bound(d.scale, np.abs(w).mean(axis=(0, 1, 2)), 1e-15)


def _squared_error(w, codes, alpha):
    return float(np.sum((w - alpha * codes) ** 2))


def _closed_form(w, codes):
    """alpha* = sum(w * c) / sum(c * c), exact in Fractions."""
    num = sum(Fraction(float(a)) * int(c) for a, c in zip(w, codes))
    den = sum(int(c) * int(c) for c in codes)
    return num / den if den else Fraction(0)


weights = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
    elements=st.floats(-10, 10),
)


@pytest.mark.parametrize("method", ["binary", "ternary"])
@given(w=weights, factor=st.floats(0, 1.5))
def test_scale_is_least_squares_optimal(method, w, factor):
    r = binarize(w, axis=0) if method == "binary" else ternarize(w, 0, factor)
    for i in range(w.shape[0]):
        row, codes, alpha = w[i], r.codes[i], float(r.scale[i])
        exact = _closed_form(row, codes)
        assert abs(Fraction(alpha) - exact) <= abs(exact) * Fraction(1, 2**48)
        best = _squared_error(row, codes, alpha)
        tol = 1e-9 * (1 + best)
        for other in (alpha * 1.01, alpha * 0.99, alpha + 1e-3, alpha - 1e-3):
            assert best <= _squared_error(row, codes, other) + tol


normal_or_zero = st.floats(-10, 10).filter(lambda v: v == 0 or abs(v) > 1e-290)
ordinary_weights = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
    elements=normal_or_zero,
)


@given(
    w=ordinary_weights, factor=st.floats(0, 1.5).filter(lambda k: k == 0 or k > 1e-9)
)
def test_ternary_codes_follow_threshold(w, factor):
    # for weights and delta of ordinary size (1.4) equals the plain float64
    # formula; subnormal deltas are covered by the exact oracle below
    r = ternarize(w, axis=0, threshold_factor=factor)
    delta = factor * np.abs(w).mean(axis=1, keepdims=True)
    expected = np.where(w > delta, 1, np.where(w < -delta, -1, 0))
    assert_codes_equal(r.codes, expected.astype(np.int8), dtype=np.int8)


@given(w=weights)
def test_binary_codes_follow_sign(w):
    assert_codes_equal(binarize(w).codes, np.where(w >= 0, 1, -1).astype(np.int8))


@pytest.mark.parametrize("fn", [binarize, ternarize])
@pytest.mark.parametrize(
    "w, kwargs, error, pattern",
    [
        (
            np.ones((2, 2)),
            dict(axis=2),
            InvalidArgumentError,
            r"axis must be in \[-2, 1\] for w with ndim=2; got axis=2",
        ),
        (
            np.ones((2, 2)),
            dict(axis=0.5),
            InvalidArgumentError,
            r"axis must be an int or None; got axis=0.5",
        ),
        (np.array([1.0, np.nan]), {}, NonFiniteInputError, r"1 NaN.*index \(1,\)"),
        (np.array([1.0, np.inf]), {}, InvalidArgumentError, r"w must be finite"),
        (np.zeros((0, 3)), {}, InvalidArgumentError, r"w must not be empty"),
        (np.array(["a"]), {}, InvalidTypeError, r"w must be a real numeric"),
        ([[1.0], [1.0, 2.0]], {}, InvalidArgumentError, r"w must be a rectangular"),
        (np.ma.array([1.0], mask=[1]), {}, InvalidTypeError, r"w must be a plain"),
        (np.array([True]), {}, InvalidTypeError, r"w of dtype bool"),
    ],
)
def test_invalid_input(fn, w, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        fn(w, **kwargs)


@pytest.mark.parametrize("factor", [-0.1, float("nan"), float("inf"), "0.7", None])
def test_invalid_threshold_factor(factor):
    with pytest.raises(InvalidArgumentError, match=f"threshold_factor={factor!r}"):
        ternarize(np.ones(3), threshold_factor=factor)


# --- huge and tiny magnitudes: means are taken with a power-of-two shift -----

U = 2.0**-1074  # one unit of the smallest subnormal


@pytest.mark.filterwarnings("error")
def test_huge_weights_keep_their_codes_and_finite_scale():
    t = ternarize(np.array([[3e307] * 7]))  # the plain sum 2.1e308 overflows
    assert t.codes.tolist() == [[1] * 7]
    assert_within_bound(t.scale, [3e307], 3e307 * 2**-50)  # 7 additions, /7
    big = 1.5 * 2.0**1022  # scaled by 2**-1023: 0.75, sum 5.25, mean 0.75, exact
    t = ternarize(np.array([[big] * 7]))
    assert t.codes.tolist() == [[1] * 7] and t.scale.tolist() == [big]
    t = ternarize([[1e308, 1e308, -1e308]])  # mean 1e308 / 3, delta 0.7e308 / 3
    assert t.codes.tolist() == [[1, 1, -1]] and t.scale.tolist() == [1e308]
    b = binarize([[1e308, 1e308, -1e308]])
    assert b.scale.tolist() == [1e308]
    assert b.dequantize().tolist() == [[1e308, 1e308, -1e308]]
    # k * mean = 1e6 * 1e308 exceeds every float: no weight passes, alpha 0
    t = ternarize([[1e308, 1e308]], threshold_factor=1e6)
    assert t.codes.tolist() == [[0, 0]] and t.scale.tolist() == [0.0]
    # k = 0 keeps 1e-300 next to 1e300: alpha = (1e300 + 1e-300) / 2 -> 1e300 / 2
    t = ternarize([[1e300, -1e-300]], threshold_factor=0)
    assert t.codes.tolist() == [[1, -1]] and t.scale.tolist() == [1e300 / 2]


@pytest.mark.filterwarnings("error")
def test_subnormal_weights_by_hand():
    # |w| = 1, 0, 2 units: mean 1 unit, delta 0.7 unit; alpha = 3/2 unit -> 2 units
    t = ternarize([[U, 0.0, -2 * U]])
    assert t.codes.tolist() == [[1, 0, -1]] and t.scale.tolist() == [2 * U]
    b = binarize([[U, 0.0, -2 * U]])  # alpha = 3 / 3 units
    assert b.codes.tolist() == [[1, 1, -1]] and b.scale.tolist() == [U]
    b = binarize([[3 * U, U]], axis=None)  # alpha = 4 / 2 units
    assert b.scale.shape == () and float(b.scale) == 2 * U


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("method", ["binary", "ternary"])
@given(
    w=ordinary_weights,
    shift=st.integers(0, 1019),
    factor=st.floats(0, 1.5),
)
def test_power_of_two_scaling_is_exact_up_to_the_largest_float(
    method, w, shift, factor
):
    # |w| <= 10 < 2**4, so w * 2**shift <= 2**1023 is exact and finite
    def run(v):
        return binarize(v) if method == "binary" else ternarize(v, 0, factor)

    small, big = run(w), run(np.ldexp(w, shift))
    assert_codes_equal(big.codes, small.codes, dtype=np.int8)
    assert_codes_equal(
        big.scale.view(np.int64), np.ldexp(small.scale, shift).view(np.int64)
    )


def _extreme_weights(exponents):
    mantissa = st.integers(-(2**53) + 1, 2**53 - 1)
    return st.integers(*exponents).flatmap(
        lambda e: st.lists(
            st.lists(mantissa, min_size=1, max_size=6), min_size=1, max_size=4
        ).map(
            lambda rows: (
                [
                    [float(np.ldexp(float(m), e)) for m in row[: len(rows[0])]]
                    for row in rows
                    if len(row) >= len(rows[0])
                ]
                or [[0.0]]
            )
        )
    )


BANDS = {"huge": (900, 970), "tiny": (-1130, -1000)}  # |w| < 2**1023 / >= 0


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("band", sorted(BANDS))
@pytest.mark.parametrize("method", ["binary", "ternary"])
@given(data=st.data(), factor=st.floats(0, 1.5))
def test_extreme_magnitudes_match_exact_oracle(band, method, data, factor):
    w = np.array(data.draw(_extreme_weights(BANDS[band])), dtype=np.float64)
    r = binarize(w) if method == "binary" else ternarize(w, 0, factor)
    assert np.all(np.isfinite(r.scale))
    for row, codes, alpha in zip(w, r.codes, r.scale):
        a = [abs(Fraction(float(v))) for v in row]
        if method == "ternary":
            delta = Fraction(factor) * sum(a) / len(a)
            band_width = delta * Fraction(1, 2**40) + Fraction(U)
            for v, c, m in zip(row, codes, a):
                if abs(m - delta) > band_width:  # not within delta's rounding
                    assert int(c) == (0 if m <= delta else (1 if v > 0 else -1))
        exact = _closed_form(row, codes)
        assert abs(Fraction(float(alpha)) - exact) <= exact / 2**48 + Fraction(U)
        assert alpha <= max(abs(row))
