"""Fixed-point arithmetic: edge tables, exact oracles and invalid input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant.errors import InvalidArgumentError
from refquant.numerics import fixedpoint as fp
from refquant.testing import fixedpoint_oracles as oracle

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
int32s = st.integers(I32_MIN, I32_MAX)


def _edges():
    vals = {0, 1, -1, I32_MIN, I32_MAX, I32_MIN + 1, I32_MAX - 1}
    for i in range(31):
        for d in (-2, -1, 0, 1, 2):
            for v in (2**i + d, -(2**i) + d):
                if I32_MIN <= v <= I32_MAX:
                    vals.add(v)
    return np.array(sorted(vals), dtype=np.int64)


EDGES = _edges()


# ------------------------------------------------------- quantize_multiplier
@pytest.mark.parametrize(
    "real, expected",
    [  # integer_semantics.md 2.1 worked values
        (0.5, (1073741824, 0)),
        (0.25, (1073741824, -1)),
        (0.0625, (1073741824, -3)),
        (0.125, (1073741824, -2)),
        (0.3, (1288490189, -1)),
        (0.375, (1610612736, -1)),
        (0.75, (1610612736, 0)),
        (3.0, (1610612736, 2)),
        (1.0, (1073741824, 1)),
        (1 - 2**-40, (1073741824, 1)),  # mantissa rounds to 2**31
        (2.0**-32, (1073741824, -31)),  # kept
        (1e-10, (0, 0)),  # shift < -31 flushed
        (0.0, (0, 0)),
    ],
)
def test_quantize_multiplier_table(real, expected):
    assert fp.quantize_multiplier(real) == expected
    assert oracle.quantize_multiplier(real) == expected


def test_quantize_multiplier_single_rounding_caps_shift():
    assert fp.quantize_multiplier(2.0**40, single_rounding=True) == (I32_MAX, 30)
    assert fp.quantize_multiplier(2.0**40) == (2**30, 41)


def test_quantize_multiplier_vectorized_matches_oracle_near_powers_of_two():
    reals = np.array(
        [2.0**e * f for e in range(-40, 12) for f in (1 - 2**-33, 1, 1 + 2**-30)]
    )
    mult, shift = fp.quantize_multiplier(reals)
    expected = [oracle.quantize_multiplier(float(r)) for r in reals]
    assert list(zip(mult.tolist(), shift.tolist())) == expected


@given(st.floats(0, 1e6, allow_subnormal=False))
def test_quantize_multiplier_matches_oracle(real):
    assert fp.quantize_multiplier(real) == oracle.quantize_multiplier(real)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_quantize_multiplier_rejects(bad):
    with pytest.raises(InvalidArgumentError, match="real must be"):
        fp.quantize_multiplier(bad)


# ------------------------------------------------------------------- SRDHM
def test_srdhm_documented_values():
    a = [1, -1, -3, I32_MIN, I32_MIN]
    b = [2**30, 2**30, 2**30, I32_MIN, 2**30]
    got = fp.saturating_doubling_high_mul(a, b).tolist()
    assert got == [1, 0, -1, I32_MAX, -(2**30)]


def test_srdhm_edge_table_matches_oracle():
    a, b = np.meshgrid(EDGES[::3], EDGES[::5])
    got = fp.saturating_doubling_high_mul(a, b)
    for x, y, g in zip(a.ravel(), b.ravel(), got.ravel()):
        assert g == oracle.saturating_doubling_high_mul(int(x), int(y))


@given(int32s, int32s)
def test_srdhm_matches_oracle(a, b):
    got = fp.saturating_doubling_high_mul(a, b)
    assert int(got) == oracle.saturating_doubling_high_mul(a, b)


def test_srdhm_rejects_out_of_range():
    with pytest.raises(InvalidArgumentError, match=r"a must be in \[-2147483648"):
        fp.saturating_doubling_high_mul(2**31, 1)
    with pytest.raises(InvalidArgumentError, match="b must be an integer array"):
        fp.saturating_doubling_high_mul(1, 0.5)


# ------------------------------------------------------ rounding_right_shift
def test_rounding_right_shift_documented_values():
    got = fp.rounding_right_shift([5, -5, -6, I32_MIN, 7, 7], [1, 1, 2, 31, 0, 31])
    assert got.tolist() == [3, -3, -2, -1, 7, 0]


def test_rounding_right_shift_edge_table_matches_oracle():
    x, e = np.meshgrid(EDGES, np.arange(32))
    got = fp.rounding_right_shift(x, e)
    for xi, ei, g in zip(x.ravel()[::7], e.ravel()[::7], got.ravel()[::7]):
        assert g == oracle.rounding_right_shift(int(xi), int(ei))


@given(int32s, st.integers(0, 31))
def test_rounding_right_shift_matches_oracle(x, e):
    assert int(fp.rounding_right_shift(x, e)) == oracle.rounding_right_shift(x, e)


@pytest.mark.parametrize("e", [-1, 32])
def test_rounding_right_shift_rejects_exponent(e):
    with pytest.raises(InvalidArgumentError, match=r"exponent must be in \[0, 31\]"):
        fp.rounding_right_shift(1, e)


# ------------------------------------------------------------------- MBQM
# integer_semantics.md 2.4 worked examples: (q, shift, acc, double, single, up)
WORKED = [
    (2**30, 0, -1, 0, 0, 0),
    (2**30, 0, -3, -1, -1, -1),
    (2**30, -1, -2, -1, 0, 0),
    (2**30, -1, -6, -2, -1, -1),
    (2**30, -2, 3, 1, 0, 1),
    (2**30, -2, -5, -1, -1, 0),
    (2**30, -3, 7, 1, 0, 1),
    (1583594044, -9, 7984, 12, 11, 12),
]


@pytest.mark.parametrize("q, shift, acc, double, single, up", WORKED)
def test_mbqm_worked_examples(q, shift, acc, double, single, up):
    mbqm = fp.multiply_by_quantized_multiplier
    assert int(mbqm(acc, q, shift, rounding="double")) == double
    assert int(mbqm(acc, q, shift, rounding="single")) == single
    assert int(mbqm(acc, q, shift, rounding="double_up")) == up


def test_mbqm_tie_tables_of_tflite_conv():
    # integer_semantics.md 3.1: acc = -7..7, REF (double) and OPT (double_up)
    acc = np.arange(-7, 8)
    ref = {
        0: [-3, -3, -2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3, 3, 4],
        -1: [-2, -2, -1, -1, -1, -1, 0, 0, 1, 1, 1, 1, 2, 2, 2],
        -2: [-1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
    }
    opt = {
        -1: [-1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2],
        -2: [-1, -1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
    }
    single = [-2, -1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    mbqm = fp.multiply_by_quantized_multiplier
    for shift, row in ref.items():
        assert mbqm(acc, 2**30, shift).tolist() == row
    for shift, row in opt.items():
        assert mbqm(acc, 2**30, shift, rounding="double_up").tolist() == row
    assert mbqm(acc, 2**30, -1, rounding="single").tolist() == single


@given(
    st.integers(-(2**24), 2**24),
    st.integers(2**30, I32_MAX),
    st.integers(-31, 6),
    st.sampled_from(["double", "single", "double_up"]),
)
def test_mbqm_matches_oracle(x, q, shift, rounding):
    got = fp.multiply_by_quantized_multiplier(x, q, shift, rounding=rounding)
    assert int(got) == oracle.multiply_by_quantized_multiplier(x, q, shift, rounding)


def test_mbqm_edge_table_matches_oracle():
    for rounding in ("double", "single", "double_up"):
        for shift in (0, -1, -31, 1):
            x = EDGES if shift <= 0 else EDGES[np.abs(EDGES) < 2**30]
            for q in (0, 2**30, I32_MAX, 1583594044):
                got = fp.multiply_by_quantized_multiplier(
                    x, q, shift, rounding=rounding
                )
                want = [
                    oracle.multiply_by_quantized_multiplier(int(v), q, shift, rounding)
                    for v in x
                ]
                assert got.tolist() == want


def test_mbqm_int32_min_and_shift_zero():
    mbqm = fp.multiply_by_quantized_multiplier
    assert int(mbqm(I32_MIN, I32_MAX, 0)) == -I32_MAX
    assert int(mbqm(I32_MIN, 2**30, 0)) == -(2**30)
    assert int(mbqm(I32_MAX, I32_MAX, 0)) == I32_MAX - 1


def test_mbqm_rejects_contract_violations():
    mbqm = fp.multiply_by_quantized_multiplier
    with pytest.raises(InvalidArgumentError, match=r"shift must be in \[-31, 30\]"):
        mbqm(1, 2**30, 31)
    with pytest.raises(InvalidArgumentError, match="multiplier must be in"):
        mbqm(1, -1, 0)
    with pytest.raises(InvalidArgumentError, match=r"x \* 2\*\*max\(shift, 0\)"):
        mbqm(2**30, 2**30, 1)
    with pytest.raises(InvalidArgumentError, match="rounding must be one of"):
        mbqm(1, 2**30, 0, rounding="nearest")


# ------------------------------------------------------------- int64 MBQM
def test_mbqm_int64_documented_sequence():
    # integer_semantics.md 2.5: M = 0.25, acc = -8..8 (measured on 16x8 conv)
    got = fp.multiply_by_quantized_multiplier_int64(np.arange(-8, 9), 2**30, -1)
    assert got.tolist() == [-2, -2, -1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


@given(
    st.integers(-(2**47) + 1, 2**47 - 1),
    st.integers(0, I32_MAX),
    st.integers(-31, 7),
)
def test_mbqm_int64_matches_oracle(x, q, shift):
    got = fp.multiply_by_quantized_multiplier_int64(x, q, shift)
    assert int(got) == oracle.multiply_by_quantized_multiplier_int64(x, q, shift)


def test_mbqm_int64_saturated_multiplier():
    # q >= 0x7FFF0000 uses reduced multiplier 0x7FFF
    got = fp.multiply_by_quantized_multiplier_int64(2**20, 0x7FFFFFFF, 0)
    assert int(got) == oracle.multiply_by_quantized_multiplier_int64(
        2**20, 0x7FFFFFFF, 0
    )
    assert int(got) == (2**20 * 0x7FFF + 2**14) >> 15


def test_mbqm_int64_rejects():
    with pytest.raises(InvalidArgumentError, match=r"shift must be in \[-31, 7\]"):
        fp.multiply_by_quantized_multiplier_int64(1, 2**30, 8)
    with pytest.raises(InvalidArgumentError, match="x must be in"):
        fp.multiply_by_quantized_multiplier_int64(2**47, 2**30, 0)
