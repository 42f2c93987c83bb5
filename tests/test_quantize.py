"""quantize / dequantize / fake_quantize: hard inputs, arithmetics, properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant import QParams, QuantScheme, dequantize, fake_quantize, quantize
from refquant.errors import InvalidArgumentError, InvalidTypeError, NonFiniteInputError
from refquant.numerics.quantize import ARITHMETICS
from refquant.testing.assertions import assert_codes_equal, assert_within_bound
from refquant.testing.oracles import dequantize_oracle, quantize_oracle
from refquant.testing.strategies import codes_for, quant_cases

INT8 = QuantScheme(bits=8)
RULES = ("half_even", "half_away", "half_up", "floor", "ceil")
TIE_X = [0.25, 0.75, 1.25, 1.75, -0.25, -1.25]  # x / 0.5 = .5, 1.5, 2.5, 3.5, -.5, -2.5
# hand-computed rows of the hard-input table (scale 0.5, zero point 0)
TIE_ROWS = {
    "half_even": [0, 2, 2, 4, 0, -2],
    "half_away": [1, 2, 3, 4, -1, -3],
    "half_up": [1, 2, 3, 4, 0, -2],
    "floor": [0, 1, 2, 3, -1, -3],
    "ceil": [1, 2, 3, 4, 0, -2],
}


@pytest.mark.parametrize("arithmetic", ARITHMETICS)
@pytest.mark.parametrize("rule", RULES)
def test_tie_rows(rule, arithmetic):
    q = quantize(TIE_X, QParams(0.5, 0, INT8), rule, arithmetic=arithmetic)
    assert_codes_equal(q, np.array(TIE_ROWS[rule], np.int8), dtype=np.int8)


@pytest.mark.parametrize("arithmetic", ARITHMETICS)
@pytest.mark.parametrize("scale", [1e-10, 1.0])
def test_huge_values_saturate(arithmetic, scale):
    x = [1e30, 3e9, np.inf, -1e30, -3e9, -np.inf]
    q = quantize(x, QParams(scale, 0, INT8), arithmetic=arithmetic)
    assert q.tolist() == [127, 127, 127, -128, -128, -128]


@pytest.mark.parametrize(
    "scheme, lo, hi",
    [
        (QuantScheme(signed=False), 0, 255),
        (QuantScheme(bits=16), -32768, 32767),
        (QuantScheme(bits=16, signed=False), 0, 65535),
        (QuantScheme(symmetric=True, narrow_range=True), -127, 127),
    ],
)
def test_saturation_never_wraps(scheme, lo, hi):
    zp = scheme.symmetric_zero_point if scheme.symmetric else 0
    q = quantize([1e30, 3e9, -3e9, 65536.0], QParams(1.0, zp, scheme))
    assert q.dtype == scheme.dtype
    assert q.tolist() == [hi, hi, lo, hi]


def test_nan_raises_with_count_and_first_index():
    x = np.array([[0.0, 1.0, np.nan], [np.nan, 2.0, np.nan]])
    with pytest.raises(NonFiniteInputError, match=r"3 NaN.*first at index \(0, 2\)"):
        quantize(x, QParams(0.5, 0, INT8))


def test_nan_policies():
    qp = QParams(0.5, 3, INT8)
    assert quantize([np.nan, 1.0], qp, nan="zero_point").tolist() == [3, 5]
    assert quantize([np.nan, 1.0], qp, nan="qmin").tolist() == [-128, 5]


@pytest.mark.parametrize(
    "scale, shown",
    [
        (0.0, "scale=0.0"),
        (-0.5, "scale=-0.5"),
        (np.inf, "scale=inf"),
        (np.nan, "scale=nan"),
        (5e-324, "scale=5e-324"),
    ],
)
def test_bad_scale_passed_to_quantize(scale, shown):
    qp = QParams(1.0, 0, INT8)
    object.__setattr__(qp, "scale", np.array(scale))  # bypass construction checks
    with pytest.raises(InvalidArgumentError, match=f"scale must be finite.*{shown}"):
        quantize([1.0], qp)
    with pytest.raises(InvalidArgumentError, match=shown):
        QParams(scale, 0, INT8)


def test_scale_subnormal_in_float32_is_rejected_for_float32_arithmetic():
    qp = QParams(1e-40, 0, INT8)  # normal float64, subnormal float32
    assert quantize([0.0], qp).tolist() == [0]
    with pytest.raises(InvalidArgumentError, match=r"normal float32.*scale=1e-40"):
        quantize([0.0], qp, arithmetic="float32_divide")


# shared/reference/integer_semantics.md, D3: x = f32(-0.1155), s = f32(0.001):
# ONNX Runtime (float32 division) -116, PyTorch (reciprocal) -115, exact -115.
X_D3, S_D3 = float(np.float32(-0.1155)), float(np.float32(0.001))


@pytest.mark.parametrize(
    "arithmetic, expected",
    [("float32_divide", -116), ("float32_reciprocal", -115), ("exact", -115)],
)
def test_division_vs_reciprocal_peer_row(arithmetic, expected):
    q = quantize([X_D3], QParams(S_D3, 0, INT8), arithmetic=arithmetic)
    assert q.tolist() == [expected]


# near-ties where f64(x / scale) lands exactly on k + 1/2 but the real quotient
# does not: found by search, confirmed by the Fraction oracle below.
NEAR_TIES = [
    (26.610225535342586, 0.5167034084532541, 52, 51),  # real 51.4999999999999967
    (13.820980501615587, 0.15271801659243742, 90, 91),  # real 90.5000000000000044
    (-16.09099441810687, 0.4290931844828499, -38, -37),
]


@pytest.mark.parametrize("x, scale, float64_code, exact_code", NEAR_TIES)
def test_exact_arithmetic_decides_near_ties(x, scale, float64_code, exact_code):
    s = QuantScheme(bits=16)
    qp = QParams(scale, 0, s)
    assert quantize([x], qp).tolist() == [float64_code]
    for rule in ("half_even", "half_away", "half_up"):
        assert quantize([x], qp, rule, arithmetic="exact").tolist() == [exact_code]
        assert quantize_oracle(x, scale, 0, s.qmin, s.qmax, rule, "exact") == exact_code


def test_per_channel_and_per_group_broadcast():
    x = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    pc = QParams([1.0, 0.5], [0, 1], QuantScheme(granularity="per_channel", axis=0))
    assert quantize(x, pc).tolist() == [[1, 2, 3], [3, 5, 7]]
    pg = QParams(
        np.array([[1.0, 0.25], [0.5, 2.0]]),
        0,
        QuantScheme(granularity="per_group", axis=1, group_size=2),
    )
    assert quantize(x, pg).tolist() == [[1, 2, 12], [2, 4, 2]]  # 3/2=1.5 -> 2


def test_codes_use_smallest_dtype():
    for scheme, dtype in [
        (QuantScheme(bits=4), np.int8),
        (QuantScheme(bits=8, signed=False), np.uint8),
        (QuantScheme(bits=12), np.int16),
        (QuantScheme(bits=16, signed=False), np.uint16),
    ]:
        assert quantize([0.0], QParams(1.0, scheme.qmin + 1, scheme)).dtype == dtype


def test_dequantize_default_float32_and_option_float64():
    qp = QParams(0.1, 2, INT8)
    out = dequantize(np.array([2, 3, -128], np.int8), qp)
    assert out.dtype == np.float32
    assert out.tolist() == [dequantize_oracle(q, 0.1, 2) for q in (2, 3, -128)]
    out64 = dequantize(np.array([3], np.int8), qp, dtype=np.float64)
    assert out64.tolist() == [dequantize_oracle(3, 0.1, 2, "float64")]


def test_dequantize_float16_rounds_once_and_overflows_to_inf():
    qp = QParams(0.1, 0, INT8)
    out = dequantize(np.array([1, -3], np.int8), qp, dtype="float16")
    # f64(0.1) -> float16: quantum 2**-14 in [2**-4, 2**-3); 1638.4 -> 1638
    # -3 * 0.1 = -0.30000000000000004, quantum 2**-12: -1228.8 -> -1229
    assert out.dtype == np.float16
    assert out.tolist() == [1638 * 2**-14, -1229 * 2**-12]
    big = dequantize(
        np.array([127, -128], np.int8), QParams(1000.0, 0, INT8), dtype=np.float16
    )
    assert big.tolist() == [math.inf, -math.inf]  # 127000 and -128000 >= 65520


def test_fake_quantize_dtypes_and_values():
    qp = QParams(0.5, 0, INT8)
    assert fake_quantize(np.array([0.3, 0.74, 100.0]), qp).tolist() == [0.5, 0.5, 63.5]
    assert fake_quantize(np.array([0.3], np.float32), qp).dtype == np.float32
    assert fake_quantize(np.array([0.3]), qp).dtype == np.float64
    assert fake_quantize([1.25], qp, "half_away").tolist() == [1.5]


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(rounding="nearest"), InvalidArgumentError, r"rounding=.nearest."),
        (
            dict(arithmetic="float16"),
            InvalidArgumentError,
            r"arithmetic must be one of .*got arithmetic='float16'",
        ),
        (
            dict(nan="ignore"),
            InvalidArgumentError,
            r"nan must be one of .*nan='ignore'",
        ),
        (
            dict(qparams=(0.5, 0)),
            InvalidTypeError,
            r"qparams must be a QParams; got qparams=\(0.5, 0\)",
        ),
        (dict(x=np.array(["1.0"])), InvalidTypeError, r"x must be a real numeric"),
        (dict(x=[[1.0], [1.0, 2.0]]), InvalidArgumentError, r"x must be a rectangular"),
        (
            dict(x=np.ma.array([1.0, 2.0], mask=[0, 1])),
            InvalidTypeError,
            r"x must be a plain array, not a numpy.ma.MaskedArray .*x.filled",
        ),
        (dict(x=np.array([1 + 2j])), InvalidTypeError, r"got x of dtype complex128"),
        (dict(x=np.array([True])), InvalidTypeError, r"got x of dtype bool"),
        (dict(x=[1.0, None]), InvalidTypeError, r"got x of dtype object"),
        (dict(x=np.array([1, 2], object)), InvalidTypeError, r"got x of dtype object"),
        (dict(rounding="stochastic"), InvalidTypeError, r"rng=None"),
        (dict(rng=3), InvalidArgumentError, r"rng=3 with rounding='half_even'"),
    ],
)
def test_quantize_invalid(kwargs, error, pattern):
    args = dict(x=[1.0], qparams=QParams(0.5, 0, INT8))
    args.update(kwargs)
    x, qp = args.pop("x"), args.pop("qparams")
    with pytest.raises(error, match=pattern):
        quantize(x, qp, **args)
    if "arithmetic" not in args and "nan" not in args and "rng" not in args:
        with pytest.raises(error, match=pattern):
            fake_quantize(x, qp, **args)


def test_quantize_shape_mismatch():
    pc = QParams([1.0, 2.0], 0, QuantScheme(granularity="per_channel", axis=1))
    with pytest.raises(InvalidArgumentError, match=r"axis 1 \(3\).*shape \(2,\)"):
        quantize(np.zeros((2, 3)), pc)
    with pytest.raises(
        InvalidArgumentError, match=r"axis must be in \[-1, 0\].*axis=1"
    ):
        quantize(np.zeros(2), pc)


@pytest.mark.parametrize(
    "q, kwargs, error, pattern",
    [
        (np.array([0.5]), {}, InvalidArgumentError, r"q must be an array of integer"),
        (np.array([200]), {}, InvalidArgumentError, r"\[-128, 127\]; got codes in"),
        *[
            (
                np.array([1]),
                dict(dtype=bad),
                InvalidArgumentError,
                r"dtype must be one of float16, float32, float64 .*got dtype=" + shown,
            )
            for bad, shown in [
                ("bogus", "'bogus'"),
                (None, "None"),
                (np.int8, r"<class 'numpy.int8'>"),
                ("complex64", "'complex64'"),
            ]
        ],
        (np.array([1]), dict(qparams="qp"), InvalidTypeError, r"qparams='qp'"),
        ([[1], [1, 2]], {}, InvalidArgumentError, r"q must be a rectangular array"),
        (np.ma.array([1]), {}, InvalidTypeError, r"q must be a plain array, not a"),
        (np.array([True]), {}, InvalidArgumentError, r"integer codes.*dtype bool"),
    ],
)
def test_dequantize_invalid(q, kwargs, error, pattern):
    qp = kwargs.pop("qparams", QParams(0.5, 0, INT8))
    with pytest.raises(error, match=pattern):
        dequantize(q, qp, **kwargs)


# ---------------------------------------------------------------- properties


def _range_bounds(qp, shape):
    scale, zp = qp.expand(shape)
    low = (qp.scheme.qmin - zp) * scale
    high = (qp.scheme.qmax - zp) * scale
    return np.broadcast_to(scale, shape), low, high


@pytest.mark.parametrize("arithmetic", ["float64", "exact"])
@given(case=quant_cases())
def test_round_trip_error_and_clamp(arithmetic, case):
    x, qp = case
    q = quantize(x, qp, arithmetic=arithmetic)
    assert q.dtype == qp.scheme.dtype
    assert q.min() >= qp.scheme.qmin and q.max() <= qp.scheme.qmax
    scale, low, high = _range_bounds(qp, x.shape)
    back = dequantize(q, qp, dtype=np.float64)
    inside = (x >= low) & (x <= high)
    # real error <= scale / 2 with each element's own scale; float64 adds ulps of x
    bound = scale / 2 + np.abs(x) * 2.0**-50
    assert_within_bound(back[inside], x[inside], bound[inside])
    assert_codes_equal(
        q[x > high + scale], np.full((x > high + scale).sum(), qp.scheme.qmax, q.dtype)
    )
    assert_codes_equal(
        q[x < low - scale], np.full((x < low - scale).sum(), qp.scheme.qmin, q.dtype)
    )


@given(data=st.data(), case=quant_cases())
def test_quantize_of_dequantize_is_identity(data, case):
    _, qp = case
    q = data.draw(codes_for(qp, case.x.shape))
    for dtype in (np.float32, np.float64):
        assert_codes_equal(quantize(dequantize(q, qp, dtype=dtype), qp), q)
    zero = quantize(np.zeros(case.x.shape), qp)
    assert_codes_equal(
        zero, np.broadcast_to(qp.expand(case.x.shape)[1], zero.shape).astype(zero.dtype)
    )
    assert not dequantize(zero, qp).any()  # 0 is exactly representable


@pytest.mark.parametrize("arithmetic", ARITHMETICS)
@pytest.mark.parametrize("rule", RULES)
@settings(max_examples=25)
@given(case=quant_cases(), step=st.floats(0, 1e3))
def test_monotone(rule, arithmetic, case, step):
    x, qp = case
    scale = np.broadcast_to(qp.expand(x.shape)[0], x.shape)
    lower = quantize(x, qp, rule, arithmetic=arithmetic).astype(np.int64)
    upper = quantize(x + step * scale, qp, rule, arithmetic=arithmetic).astype(np.int64)
    assert np.all(upper >= lower)
    flat = np.sort(x.ravel())
    per_tensor = QParams(
        float(qp.scale.ravel()[0]),
        int(qp.zero_point.ravel()[0]),
        QuantScheme(
            bits=qp.scheme.bits,
            signed=qp.scheme.signed,
            narrow_range=qp.scheme.narrow_range,
            symmetric=qp.scheme.symmetric,
        ),
    )
    codes = quantize(flat, per_tensor, rule, arithmetic=arithmetic).astype(np.int64)
    assert np.all(np.diff(codes) >= 0)


@pytest.mark.parametrize("arithmetic", ARITHMETICS)
@pytest.mark.parametrize("rule", RULES)
@settings(max_examples=25)
@given(case=quant_cases(max_dims=2, max_side=4))
def test_every_arithmetic_matches_oracle(rule, arithmetic, case):
    x, qp = case
    scale, zp = (np.broadcast_to(a, x.shape) for a in qp.expand(x.shape))
    s = qp.scheme
    expected = np.array(
        [
            quantize_oracle(
                float(v), float(sc), int(z), s.qmin, s.qmax, rule, arithmetic
            )
            for v, sc, z in zip(x.ravel(), scale.ravel(), zp.ravel())
        ]
    ).reshape(x.shape)
    assert_codes_equal(quantize(x, qp, rule, arithmetic=arithmetic), expected)


@pytest.mark.parametrize("rule", ["half_even", "half_away", "half_up", "floor", "ceil"])
@given(
    scale=st.floats(1e-6, 1e6),
    k=st.integers(-40000, 40000),
    offset=st.sampled_from([0.0, 0.5]),
    ulps=st.integers(-3, 3),
)
def test_exact_arithmetic_near_ties_match_oracle(rule, scale, k, offset, ulps):
    x = (k + offset) * scale  # rounded: the real quotient is near, not at, k + offset
    x = float(np.nextafter(x, np.inf if ulps > 0 else -np.inf)) if ulps else x
    for _ in range(abs(ulps) - 1):
        x = float(np.nextafter(x, np.inf if ulps > 0 else -np.inf))
    s = QuantScheme(bits=16)
    expected = quantize_oracle(x, scale, 0, s.qmin, s.qmax, rule, "exact")
    assert quantize([x], QParams(scale, 0, s), rule, arithmetic="exact").tolist() == [
        expected
    ]


@given(case=quant_cases(max_dims=2, max_side=5), seed=st.integers(0, 2**32 - 1))
def test_stochastic_matches_oracle(case, seed):
    x, qp = case
    scale, zp = (np.broadcast_to(a, x.shape) for a in qp.expand(x.shape))
    u = np.random.default_rng(seed).random(x.shape)
    s = qp.scheme
    expected = np.array(
        [
            quantize_oracle(
                float(v),
                float(sc),
                int(z),
                s.qmin,
                s.qmax,
                "stochastic",
                "exact",
                float(ui),
            )
            for v, sc, z, ui in zip(x.ravel(), scale.ravel(), zp.ravel(), u.ravel())
        ]
    ).reshape(x.shape)
    out = quantize(x, qp, "stochastic", arithmetic="exact", rng=seed)
    assert_codes_equal(out, expected)
    again = quantize(x, qp, "stochastic", rng=np.random.default_rng(seed))
    assert np.all(np.abs(again.astype(int) - out.astype(int)) <= 1)


@given(x=hnp.arrays(np.float32, 8, elements=st.floats(-300, 300, width=32)))
def test_fake_quantize_is_idempotent(x):
    qp = QParams(0.75, -3, INT8)
    once = fake_quantize(x, qp)
    assert once.dtype == np.float32
    assert np.array_equal(fake_quantize(once, qp), once)
