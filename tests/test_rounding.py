"""Rounding rules: hand tables, exact tie detection, oracle properties, errors."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.numerics import rounding
from refquant.numerics.rounding import ROUNDING_RULES, apply_rounding
from refquant.testing.oracles import round_rational

TIES = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5]
# hand-computed: each column is the rule applied to TIES
TIE_TABLE = {
    "half_even": [0, 2, 2, 0, -2, -2],
    "half_away": [1, 2, 3, -1, -2, -3],
    "half_up": [1, 2, 3, 0, -1, -2],
    "floor": [0, 1, 2, -1, -2, -3],
    "ceil": [1, 2, 3, 0, -1, -2],
}
# the largest double below 0.5: floor(x + 0.5) would wrongly give 1
BELOW_HALF = 0.49999999999999994
NEAR = [BELOW_HALF, -BELOW_HALF, 2.0**52 + 1, -(2.0**52) - 1, 1e300, 0.0]
NEAR_TABLE = {
    "half_even": [0, 0, 2**52 + 1, -(2**52) - 1, 1e300, 0],
    "half_away": [0, 0, 2**52 + 1, -(2**52) - 1, 1e300, 0],
    "half_up": [0, 0, 2**52 + 1, -(2**52) - 1, 1e300, 0],
    "floor": [0, -1, 2**52 + 1, -(2**52) - 1, 1e300, 0],
    "ceil": [1, 0, 2**52 + 1, -(2**52) - 1, 1e300, 0],
}
DETERMINISTIC = tuple(TIE_TABLE)


@pytest.mark.parametrize("rule", DETERMINISTIC)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tie_table(rule, dtype):
    out = apply_rounding(np.array(TIES, dtype=dtype), rule)
    assert out.dtype == dtype
    assert out.tolist() == TIE_TABLE[rule]


@pytest.mark.parametrize("rule", DETERMINISTIC)
def test_near_ties_and_large_values(rule):
    assert apply_rounding(np.array(NEAR), rule).tolist() == NEAR_TABLE[rule]


@pytest.mark.parametrize("rule", DETERMINISTIC)
def test_inf_and_nan_pass_through(rule):
    out = apply_rounding(np.array([np.inf, -np.inf, np.nan]), rule)
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2])


def test_integer_input_widens_to_float64():
    out = rounding.half_even(np.array([1, -2], dtype=np.int32))
    assert out.dtype == np.float64 and out.tolist() == [1.0, -2.0]


def test_short_aliases_are_the_rules():
    assert rounding.half_even is rounding.round_half_even
    assert rounding.half_away is rounding.round_half_away
    assert rounding.half_up is rounding.round_half_up
    assert rounding.floor is rounding.round_floor
    assert rounding.ceil is rounding.round_ceil
    assert rounding.stochastic is rounding.round_stochastic
    assert set(ROUNDING_RULES) == set(DETERMINISTIC) | {"stochastic"}


finite64 = st.floats(allow_nan=False, allow_infinity=False)
finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
halves = st.integers(-(2**30), 2**30).map(lambda k: k + 0.5)


@pytest.mark.parametrize("rule", DETERMINISTIC)
@given(values=st.lists(st.one_of(finite64, halves), min_size=1, max_size=20))
def test_rule_matches_exact_oracle_float64(rule, values):
    expected = [round_rational(Fraction(v), rule) for v in values]
    out = apply_rounding(np.array(values), rule)
    assert [int(v) for v in out] == expected


@pytest.mark.parametrize("rule", DETERMINISTIC)
@given(x=hnp.arrays(np.float32, 12, elements=st.one_of(finite32, halves)))
def test_rule_matches_exact_oracle_float32(rule, x):
    expected = [round_rational(Fraction(float(v)), rule) for v in x]
    assert [int(v) for v in apply_rounding(x, rule)] == expected


@given(
    x=hnp.arrays(np.float64, 16, elements=st.floats(-1e6, 1e6)),
    seed=st.integers(0, 2**32 - 1),
)
def test_stochastic_matches_oracle_with_same_uniforms(x, seed):
    u = np.random.default_rng(seed).random(x.shape)
    expected = [
        round_rational(Fraction(float(v)), "stochastic", ui) for v, ui in zip(x, u)
    ]
    out = apply_rounding(x, "stochastic", rng=seed)
    assert [int(v) for v in out] == expected


def test_stochastic_is_reproducible_and_keeps_integers():
    x = np.array([0.25, -1.75, 3.0, -4.0])
    a = rounding.round_stochastic(x, 7)
    b = rounding.round_stochastic(x, np.random.default_rng(7))
    assert a.tolist() == b.tolist()
    assert a[2] == 3.0 and a[3] == -4.0
    assert a[0] in (0.0, 1.0) and a[1] in (-2.0, -1.0)


def test_stochastic_probability_up_is_fraction():
    # 20000 draws of 0.3: the count of ups is Binomial(20000, 0.3); 6 sigma ~ 390
    out = rounding.round_stochastic(np.full(20000, 2.3), rng=12345)
    ups = int(np.count_nonzero(out == 3.0))
    assert set(np.unique(out).tolist()) <= {2.0, 3.0}
    assert abs(ups - 6000) < 390


@pytest.mark.parametrize("bad", ["nearest", "HALF_EVEN", "round", 3, None])
def test_unknown_rule_name(bad):
    with pytest.raises(
        InvalidArgumentError, match=r"rounding must be one of .*half_even"
    ):
        apply_rounding([1.5], bad)
    with pytest.raises(InvalidArgumentError, match=f"rounding={bad!r}"):
        apply_rounding([1.5], bad)


def test_stochastic_needs_an_explicit_rng():
    with pytest.raises(InvalidTypeError, match=r"rng=None"):
        apply_rounding([1.5], "stochastic")
    with pytest.raises(InvalidTypeError, match=r"rng='seed'"):
        rounding.round_stochastic([1.5], "seed")
    with pytest.raises(InvalidArgumentError, match=r"rng=-1"):
        rounding.round_stochastic([1.5], -1)


def test_rng_with_a_deterministic_rule_is_rejected():
    with pytest.raises(InvalidArgumentError, match=r"rng=0 with rounding='floor'"):
        apply_rounding([1.5], "floor", rng=0)


@pytest.mark.parametrize("rule", DETERMINISTIC)
@pytest.mark.parametrize("bad", [np.array(["a"]), np.array([1 + 2j])])
def test_non_real_input_is_rejected(rule, bad):
    with pytest.raises(
        InvalidTypeError, match=f"x must be a real numeric array.*{bad.dtype}"
    ):
        ROUNDING_RULES[rule](bad)
