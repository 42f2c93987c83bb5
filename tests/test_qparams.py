"""qparams: hard inputs, peer-measured values, shapes per granularity, errors."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant import (
    QParams,
    QuantScheme,
    compute_qparams,
    dequantize,
    qparams_from_tensor,
    quantize,
)
from refquant.errors import (
    FallbackScaleWarning,
    InvalidArgumentError,
    InvalidTypeError,
    NonFiniteInputError,
)
from refquant.testing.assertions import assert_codes_equal, assert_within_bound
from refquant.testing.strategies import schemes

UINT8 = QuantScheme(bits=8, signed=False)
INT8 = QuantScheme(bits=8)
INT8_SYM = QuantScheme(bits=8, symmetric=True)
INT8_SYM_NARROW = QuantScheme(bits=8, symmetric=True, narrow_range=True)
ULP = 2.0**-52


def test_range_excluding_zero_is_extended():
    # hard input: uint8 asymmetric on [1, 3] -> range [0, 3]
    qp = compute_qparams(1.0, 3.0, UINT8)
    assert_within_bound(qp.scale, 3 / 255, 3 / 255 * ULP)
    assert int(qp.zero_point) == 0
    q = quantize([1.0, 3.0], qp)
    assert_codes_equal(q, np.array([85, 255], np.uint8), dtype=np.uint8)
    assert_within_bound(dequantize(q, qp), [1.0, 3.0], 3 / 255 / 2)


@pytest.mark.parametrize("scheme, code", [(UINT8, 255), (INT8, 127)])
def test_constant_tensor(scheme, code):
    # hard input: [3, 3, 3] -> range [0, 3]; 3 maps to qmax and back to exactly 3.0
    qp = qparams_from_tensor(np.array([3.0, 3.0, 3.0]), scheme)
    assert int(qp.zero_point) == scheme.qmin
    q = quantize([3.0, 3.0, 3.0], qp)
    assert q.tolist() == [code] * 3
    assert dequantize(q, qp).tolist() == [3.0, 3.0, 3.0]


@pytest.mark.parametrize("scheme", [INT8_SYM_NARROW, UINT8, INT8])
def test_all_zero_channel(scheme):
    # hard input: one all-zero channel: codes == zero point, exact zeros, no warning
    s = dataclass_replace(scheme, granularity="per_channel", axis=0)
    w = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [2.0, 1.0, -3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qp = qparams_from_tensor(w, s)
        q = quantize(w, qp)
        back = dequantize(q, qp)
    assert qp.scale[1] == 1.0  # documented zero-width scale
    assert_codes_equal(q[1], np.full(3, qp.zero_point[1], dtype=s.dtype))
    assert back[1].tolist() == [0.0, 0.0, 0.0]
    assert not np.isnan(back).any()


def dataclass_replace(scheme, **changes):
    import dataclasses

    return dataclasses.replace(scheme, **changes)


def test_zero_width_range_documented_scale():
    for scheme in (INT8, UINT8, INT8_SYM):
        qp = compute_qparams(0.0, 0.0, scheme)
        assert float(qp.scale) == 1.0
        assert int(quantize(0.0, qp)) == int(qp.zero_point)
        assert float(dequantize(quantize(0.0, qp), qp)) == 0.0


# Values measured with PyTorch MinMaxObserver (shared/reference/
# integer_semantics.md, section 5); PyTorch stores float32 scales, so compare
# within float32 precision.
PEER_ROWS = [
    ((-1.0, 2.0), UINT8, 0.0117647061, 85),
    ((-1.0, 2.0), INT8, 0.0117647061, -43),
    ((-1.0, 2.0), INT8_SYM, 0.0156862754, 0),
    ((-1.0, 2.0), INT8_SYM_NARROW, 0.0157480314, 0),
    ((-2.5, 252.5), UINT8, 1.0, 2),  # zero-point tie -> half_even
    ((-3.5, 251.5), UINT8, 1.0, 4),
]


@pytest.mark.parametrize("rng_, scheme, scale, zero_point", PEER_ROWS)
def test_matches_peer_values(rng_, scheme, scale, zero_point):
    qp = compute_qparams(*rng_, scheme)
    assert_within_bound(qp.scale, scale, scale * 2.0**-23)
    assert int(qp.zero_point) == zero_point


def test_symmetric_uint8_uses_mid_zero_point():
    qp = compute_qparams(-1.0, 0.5, QuantScheme(signed=False, symmetric=True))
    assert int(qp.zero_point) == 128
    assert_within_bound(qp.scale, 1 / 127.5, ULP)


def test_per_channel_peer_rows():
    # PyTorch PerChannel qint8 symmetric rows [-1, 0.5], [0, 0], [0.25, 3]:
    # scales [0.0078431377, (eps; refquant: 1.0), 0.0235294122]
    s = QuantScheme(symmetric=True, granularity="per_channel", axis=0)
    qp = qparams_from_tensor(np.array([[-1.0, 0.5], [0.0, 0.0], [0.25, 3.0]]), s)
    assert qp.scale.shape == (3,)
    assert_within_bound(qp.scale, [0.0078431377, 1.0, 0.0235294122], 2e-9)
    assert qp.zero_point.tolist() == [0, 0, 0]


def test_per_group_shapes_and_values():
    # axis 1 of length 5 in groups of 2 -> groups [0:2], [2:4], [4:5]
    x = np.array([[-1.0, 1.0, 0.0, 2.0, 5.1], [0.5, 0.25, -4.0, 1.0, -7.0]])
    s = QuantScheme(
        symmetric=True, narrow_range=True, granularity="per_group", axis=1, group_size=2
    )
    qp = qparams_from_tensor(x, s)
    assert qp.scale.shape == (2, 3)
    absmax = np.array([[1.0, 2.0, 5.1], [0.5, 4.0, 7.0]])
    assert_within_bound(qp.scale, absmax / 127, absmax / 127 * ULP)
    scale, zp = qp.expand(x.shape)
    assert scale.shape == (2, 5)
    assert_within_bound(scale[1], np.array([0.5, 0.5, 4.0, 4.0, 7.0]) / 127, 1e-15)


def test_asymmetric_per_channel_axis_last():
    x = np.array([[[0.0, -1.0], [2.0, 3.0]]])  # shape (1, 2, 2), axis -1
    qp = qparams_from_tensor(
        x, QuantScheme(signed=False, granularity="per_channel", axis=-1)
    )
    assert_within_bound(qp.scale, [2 / 255, 4 / 255], 1e-17)
    assert qp.zero_point.tolist() == [
        0,
        64,
    ]  # 0 - half_even(-1 / (4/255)) = 63.75 -> 64


@given(
    scheme=schemes(),
    lo=st.floats(-1e6, 1e6),
    width=st.floats(0, 1e6),
)
def test_range_and_zero_are_covered(scheme, lo, width):
    qp = compute_qparams(lo, lo + width, scheme)
    assert qp.scheme.qmin <= int(qp.zero_point) <= qp.scheme.qmax
    assert float(dequantize(quantize(0.0, qp), qp, dtype=np.float64)) == 0.0
    ends = np.array([min(lo, 0.0), max(lo + width, 0.0)])
    back = dequantize(quantize(ends, qp), qp, dtype=np.float64)
    # real error <= scale / 2; float64 steps add a few ulps of |x|
    assert_within_bound(back, ends, float(qp.scale) / 2 + np.abs(ends) * 2.0**-50)


def test_subnormal_scale_falls_back_with_warning():
    with pytest.warns(FallbackScaleWarning, match="1 scale"):
        qp = compute_qparams(0.0, 1e-310, INT8)
    assert float(qp.scale) == 1.0


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (
            dict(min_val=2.0, max_val=1.0),
            InvalidArgumentError,
            r"min_val must be <= max_val; got min_val=2.0 > max_val=1.0",
        ),
        (dict(min_val=np.nan, max_val=1.0), InvalidArgumentError, r"min_val=nan"),
        (
            dict(min_val=0.0, max_val=np.inf),
            InvalidArgumentError,
            r"max_val must be finite; got max_val=inf",
        ),
        (
            dict(min_val=[0.0], max_val=[1.0, 2.0]),
            InvalidArgumentError,
            r"same shape.*\(1,\).*\(2,\)",
        ),
        (
            dict(min_val=[0.0], max_val=[1.0]),
            InvalidArgumentError,
            r"min_val must be a scalar.*per_tensor.*\(1,\)",
        ),
        (dict(min_val="a", max_val=1.0), InvalidTypeError, r"min_val must be a real"),
        (dict(min_val=-1e308, max_val=1e308), InvalidArgumentError, r"overflows"),
        (
            dict(min_val=0.0, max_val=1.0, scheme="int8"),
            InvalidTypeError,
            r"scheme must be a QuantScheme; got scheme='int8'",
        ),
    ],
)
def test_compute_qparams_invalid(kwargs, error, pattern):
    kwargs.setdefault("scheme", INT8)
    with pytest.raises(error, match=pattern):
        compute_qparams(**kwargs)


def test_per_channel_needs_1d_range():
    s = QuantScheme(granularity="per_channel", axis=0)
    with pytest.raises(InvalidArgumentError, match=r"min_val must be 1-D.*shape \(\)"):
        compute_qparams(0.0, 1.0, s)


@pytest.mark.parametrize(
    "scale, shown",
    [
        (0.0, "scale=0.0"),
        (-1.0, "scale=-1.0"),
        (np.inf, "scale=inf"),
        (np.nan, "scale=nan"),
        (1e-310, "scale=1e-310"),
    ],
)
def test_qparams_rejects_bad_scale(scale, shown):
    with pytest.raises(
        InvalidArgumentError, match=f"finite, > 0 and a normal.*{shown}"
    ):
        QParams(scale, 0, INT8)


def test_qparams_rejects_bad_scale_in_array_with_index():
    s = QuantScheme(granularity="per_channel", axis=0)
    with pytest.raises(InvalidArgumentError, match=r"scale=-2.0 at index \(1,\)"):
        QParams([1.0, -2.0, 0.0], 0, s)


@pytest.mark.parametrize(
    "zp, scheme, pattern",
    [
        (128, INT8, r"zero_point must be an int in \[-128, 127\]; got zero_point=128"),
        (-1, UINT8, r"got zero_point=-1"),
        (3, INT8_SYM, r"zero_point must be 0 \(symmetric scheme\); got zero_point=3"),
        (0.5, INT8, r"zero_point must hold integers"),
    ],
)
def test_qparams_rejects_bad_zero_point(zp, scheme, pattern):
    with pytest.raises(InvalidArgumentError, match=pattern):
        QParams(1.0, zp, scheme)


def test_qparams_arrays_are_read_only():
    qp = QParams([1.0, 2.0], [0, 1], QuantScheme(granularity="per_channel", axis=0))
    with pytest.raises(ValueError):
        qp.scale[0] = 0.0


def test_qparams_from_tensor_nan_reports_count_and_index():
    x = np.array([[1.0, 2.0], [np.nan, np.nan]])
    with pytest.raises(NonFiniteInputError, match=r"2 NaN.*first at index \(1, 0\)"):
        qparams_from_tensor(x, INT8)


@pytest.mark.parametrize(
    "x, scheme, error, pattern",
    [
        (np.array([1.0, np.inf]), INT8, NonFiniteInputError, r"1 inf.*index \(1,\)"),
        (np.zeros((0,)), INT8, InvalidArgumentError, r"x must not be empty"),
        (
            np.zeros((2, 3)),
            QuantScheme(granularity="per_group", axis=1, group_size=4),
            InvalidArgumentError,
            r"group_size must be an int in \[1, 3\].*group_size=4",
        ),
        (
            np.zeros((2, 3)),
            QuantScheme(granularity="per_channel", axis=2),
            InvalidArgumentError,
            r"axis must be in \[-2, 1\].*axis=2",
        ),
        (np.array(["a"]), INT8, InvalidTypeError, r"x must be a real"),
        ([[1.0], [1.0, 2.0]], INT8, InvalidArgumentError, r"x must be a rectangular"),
        (np.ma.array([1.0], mask=[1]), INT8, InvalidTypeError, r"not a numpy.ma"),
        (np.array([1j]), INT8, InvalidTypeError, r"x of dtype complex128"),
        (np.array([False]), INT8, InvalidTypeError, r"x of dtype bool"),
        (
            np.zeros((2, 3)),
            "per_tensor",
            InvalidTypeError,
            r"scheme must be a QuantScheme",
        ),
    ],
)
def test_qparams_from_tensor_invalid(x, scheme, error, pattern):
    with pytest.raises(error, match=pattern):
        qparams_from_tensor(x, scheme)


def test_expand_rejects_mismatched_shapes():
    pc = QParams([1.0, 2.0], 0, QuantScheme(granularity="per_channel", axis=0))
    pattern = r"one scale per index of axis 0 \(3\).*\(2,\)"
    with pytest.raises(InvalidArgumentError, match=pattern):
        pc.expand((3, 4))
    pg = QParams(
        np.ones((2, 2)), 0, QuantScheme(granularity="per_group", axis=1, group_size=2)
    )
    with pytest.raises(InvalidArgumentError, match=r"must have shape \(2, 3\)"):
        pg.expand((2, 5))
