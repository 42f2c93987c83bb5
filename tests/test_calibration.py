"""Observers: hand-computed ranges, required behaviours, oracles, bad input."""

import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refquant.calibration import (
    OBSERVERS,
    EntropyObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    make_observer,
)
from refquant.errors import (
    InvalidArgumentError,
    NonFiniteInputError,
    RefquantError,
)
from refquant.numerics.scheme import QuantScheme

SEEDS = [0, 1, 2]
finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
data_lists = st.lists(finite, min_size=1, max_size=80)


# -- min-max -------------------------------------------------------------------
def test_minmax_zero_batch_then_data_no_error():
    obs = MinMaxObserver()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs.update([0.0, 0.0, 0.0, 0.0])
        assert obs.compute_range() == (0.0, 0.0)
        obs.update([0.5, -1.0])
        assert obs.compute_range() == (-1.0, 0.5)
        qp = obs.compute_qparams(QuantScheme())
    # scale = 1.5 / 255; zero_point = -128 - half_even(-1 / scale) = -128 + 170
    assert float(qp.scale) == 1.5 / 255
    assert int(qp.zero_point) == 42


def test_minmax_per_channel_hand_computed():
    obs = MinMaxObserver(axis=0)
    obs.update([[-1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    obs.update([[0.25, 0.0, 0.0], [0.0, 3.0, -0.5]])
    lo, hi = obs.compute_range()
    assert lo.tolist() == [-1.0, -0.5] and hi.tolist() == [0.5, 3.0]
    scheme = QuantScheme(symmetric=True, granularity="per_channel", axis=0)
    qp = obs.compute_qparams(scheme)
    assert qp.scale.tolist() == [1.0 / 127.5, 3.0 / 127.5]  # absmax / 127.5
    assert qp.zero_point.tolist() == [0, 0]


def test_moving_average_hand_computed_and_merge():
    a = MovingAverageMinMaxObserver(averaging_constant=0.5)
    a.update([0.0, 4.0]).update([-2.0, 2.0])  # min 0 -> -1, max 4 -> 3
    assert a.compute_range() == (-1.0, 3.0)
    b = MovingAverageMinMaxObserver(averaging_constant=0.5).update([-4.0, 0.0])
    a.merge(b)  # weights 2 and 1: min (2*-1 + -4)/3 = -2, max (2*3 + 0)/3 = 2
    assert a.compute_range() == (-2.0, 2.0)
    assert a.num_batches == 3


@given(data_lists, st.integers(0, 80))
def test_minmax_merge_equals_all_at_once(values, cut):
    cut %= len(values) + 1
    left = MinMaxObserver().update(values[:cut])
    right = MinMaxObserver().update(values[cut:])
    whole = MinMaxObserver().update(values)
    merged = left.merge(right) if cut else right
    assert merged.compute_range() == whole.compute_range()
    assert merged.compute_range() == (min(values), max(values))


# -- post-ReLU data: asymmetric ranges -----------------------------------------
@pytest.mark.parametrize("name", sorted(OBSERVERS))
@pytest.mark.parametrize("seed", SEEDS)
def test_post_relu_uniform_gets_asymmetric_range(name, seed):
    x = np.random.default_rng(seed).uniform(0.0, 6.0, size=20_000)
    obs = make_observer(name)
    for batch in np.split(x, 4):
        obs.update(batch)
    lo, hi = obs.compute_range()
    assert 0.0 <= lo < 0.01 and 5.0 < hi <= 6.0
    qp = obs.compute_qparams(QuantScheme())
    assert int(qp.zero_point) == -128  # 0.0 maps to qmin: no code wasted on < 0
    sym_lo, sym_hi = make_observer(name, symmetric=True).update(x).compute_range()
    assert sym_lo == -sym_hi  # the symmetric variant is the one that mirrors


# -- entropy ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("symmetric", [True, False])
def test_entropy_ignores_single_outlier(seed, symmetric):
    x = np.random.default_rng(seed).standard_normal(100_000)
    obs = EntropyObserver(symmetric=symmetric)
    obs.update(x[:50_000]).update(np.append(x[50_000:], 50.0))
    lo, hi = obs.compute_range()
    assert 2.0 < hi < 10.0  # far below the outlier 50.0
    assert -10.0 < lo < -2.0


def slow_entropy_threshold(values, num_bins, start_bin, num_levels):
    """TensorRT's loop written out with Python lists and scipy's entropy."""
    stats = pytest.importorskip("scipy.stats")
    absmax = max(abs(Fraction(v)) for v in values)
    k = 0
    while absmax / Fraction(2) ** k >= num_bins:
        k += 1
    while absmax / Fraction(2) ** (k - 1) < num_bins:
        k -= 1
    w = Fraction(2) ** k
    bins = [0] * num_bins
    for v in values:
        bins[int(abs(Fraction(v)) // w)] += 1
    n = max(j for j, c in enumerate(bins) if c) + 1
    bins = bins[:n]
    bins[0] = bins[1]
    best_kl, best_i = None, None
    for i in range(min(start_bin, n), n + 1):
        p = bins[:i]
        p[-1] += sum(bins[i:])
        q = [0.0] * i
        for g in range(num_levels):
            members = [j for j in range(i) if (j * num_levels) // i == g]
            nonzero = [j for j in members if bins[j]]
            for j in nonzero:
                q[j] = sum(bins[m] for m in members) / len(nonzero)
        kl = stats.entropy(p, q) if sum(q) else float("inf")  # 0/0: no match
        if best_kl is None or kl <= best_kl:
            best_kl, best_i = kl, i
    return float(min(best_i * w, absmax))


@settings(max_examples=25)
@given(st.lists(st.floats(-8.0, 8.0, allow_nan=False), min_size=2, max_size=200))
def test_entropy_matches_slow_oracle(values):
    obs = EntropyObserver(symmetric=True, bits=4, num_bins=32, start_bin=4)
    t = obs.update(values).compute_range()[1]
    if max(abs(v) for v in values) == 0:
        assert t == 0.0
        return
    expected = slow_entropy_threshold(values, 32, 4, 8)
    assert t == expected


# -- percentile ------------------------------------------------------------------
def test_percentile_hand_computed():
    # 0..9 in bins of width 1; 20 % may lie outside -> 8 and 9 cut: t = 8.
    obs = PercentileObserver(percentile=80.0, symmetric=True, num_bins=16)
    assert obs.update(range(10)).compute_range() == (-8.0, 8.0)
    half = PercentileObserver(percentile=50.0, symmetric=True, num_bins=16)
    assert half.update(range(10)).compute_range() == (-5.0, 5.0)
    full = PercentileObserver(percentile=100.0, symmetric=True, num_bins=16)
    assert full.update(range(10)).compute_range() == (-9.0, 9.0)  # clipped to max
    # asymmetric, -5..4 in bins of width 0.5: 1 value (10 %) may leave per tail.
    # Upper: edge 3.5 has only the value 4 at or above it (bin [3.5, 4) is
    # empty), edge 3.0 has two -> 3.5. Lower: mirrored, -(4.5) -> -4.5.
    both = PercentileObserver(percentile=80.0, num_bins=16).update(range(-5, 5))
    assert both.histogram.width == 0.5
    assert both.compute_range() == (-4.5, 3.5)


@given(data_lists, st.floats(1.0, 100.0), st.floats(1.0, 100.0))
def test_percentile_monotone_in_percentile(values, p1, p2):
    p1, p2 = min(p1, p2), max(p1, p2)
    for symmetric in (True, False):
        a = PercentileObserver(percentile=p1, symmetric=symmetric, num_bins=64)
        b = PercentileObserver(percentile=p2, symmetric=symmetric, num_bins=64)
        lo1, hi1 = a.update(values).compute_range()
        lo2, hi2 = b.update(values).compute_range()
        assert hi1 <= hi2 and lo1 >= lo2


@given(data_lists, st.floats(1.0, 100.0))
def test_percentile_keeps_at_least_p_percent(values, p):
    obs = PercentileObserver(percentile=p, num_bins=64).update(values)
    lo, hi = obs.compute_range()
    inside = sum(lo <= v <= hi for v in values)
    assert inside >= len(values) * p / 100 * (1 - 1e-12)


def test_percentile_monotone_on_normal_data():
    x = np.random.default_rng(0).standard_normal(50_000)
    ts = [
        PercentileObserver(percentile=p, symmetric=True).update(x).compute_range()[1]
        for p in (90.0, 99.0, 99.9, 99.99, 100.0)
    ]
    assert ts == sorted(ts) and ts[0] < ts[-1]
    assert 1.55 < ts[0] < 1.75  # |N(0,1)| 90th percentile = 1.645


# -- MSE -------------------------------------------------------------------------
def brute_force_mse(values, lows, highs, scheme):
    """Quantize the raw data for every candidate with half_even (np.rint)."""
    out = []
    for lo, hi in zip(lows, highs):
        lo_, hi_ = min(lo, 0.0), max(hi, 0.0)
        if scheme.symmetric:
            s = max(-lo_, hi_) / ((scheme.qmax - scheme.qmin) / 2)
            z = 0
        else:
            s = (hi_ - lo_) / (scheme.qmax - scheme.qmin)
            z = int(np.clip(scheme.qmin - np.rint(lo_ / s), scheme.qmin, scheme.qmax))
        q = np.clip(np.rint(values / s) + z, scheme.qmin, scheme.qmax)
        out.append(np.mean(((q - z) * s - values) ** 2))
    return np.array(out)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("symmetric", [True, False])
def test_mse_range_minimizes_measured_error(seed, symmetric):
    # Values on bin centres (width 1/8 for num_bins=64) and exact zeros, so the
    # histogram represents the data exactly and the scan can use the raw data.
    rng = np.random.default_rng(seed)
    j = np.round(np.abs(rng.standard_normal(3000)) * 6).astype(int) % 44
    x = (j + 0.5) / 8 * rng.choice([-1.0, 1.0], size=j.size)
    x = np.concatenate([x, np.zeros(200), [5.0625]])  # 5.0625 = (40 + 1/2) / 8
    bits = 4
    obs = MSEObserver(symmetric=symmetric, bits=bits, num_bins=64, num_candidates=64)
    obs.update(x[:1000]).update(x[1000:])
    assert obs.histogram.width == 0.125
    scheme = QuantScheme(bits=bits, symmetric=symmetric)
    lows, highs = obs.candidates(symmetric)
    errors = brute_force_mse(x, lows, highs, scheme)
    lo, hi = obs.compute_range()
    best = int(np.argmin(errors))
    assert (lo, hi) == (lows[best], highs[best])
    np.testing.assert_allclose(obs.errors(scheme), errors, rtol=1e-12, atol=0)


def test_mse_hand_computed():
    # num_bins=8 -> width 0.5; the values 0.25, -0.25, 0.75, 3.75 are centres.
    # Candidates t_k = 0.9375 k; 2-bit symmetric: codes [-2, 1], s = t / 1.5.
    # k=1: s=0.625: errors^2 .0625 .0625 .015625 (0.75->0.625) 9.765625 (clip)
    # k=2: s=1.25:  .0625 .0625 .25 (0.75->1.25) 6.25 (3.75 -> 1.25)
    # k=3: s=1.875: .0625 .0625 .5625 (0.75->0) 3.515625 (3.75 -> 1.875)
    # k=4: s=2.5:   .0625 .0625 .5625 1.5625 (3.75 -> 2.5)
    obs = MSEObserver(symmetric=True, bits=2, num_candidates=4, num_bins=8)
    obs.update([0.25, -0.25, 0.75, 3.75])
    errors = obs.errors(QuantScheme(bits=2, symmetric=True))
    expected = [9.90625 / 4, 6.625 / 4, 4.203125 / 4, 2.25 / 4]
    np.testing.assert_allclose(errors, expected, rtol=1e-15, atol=0)
    assert obs.compute_range() == (-3.75, 3.75)


# -- histogram observers merge exactly -------------------------------------------
@settings(max_examples=20)
@given(data_lists, st.integers(0, 80), st.sampled_from(["percentile", "entropy"]))
def test_histogram_observer_merge_equals_all_at_once(values, cut, name):
    cut %= len(values) + 1
    kwargs = {"num_bins": 64}
    left = make_observer(name, **kwargs).update(values[:cut])
    right = make_observer(name, **kwargs).update(values[cut:])
    whole = make_observer(name, **kwargs).update(values)
    assert left.merge(right).compute_range() == whole.compute_range()


# -- factory and invalid input ----------------------------------------------------
def test_factory_builds_each_observer():
    for name, cls in OBSERVERS.items():
        assert type(make_observer(name)) is cls
    assert sorted(OBSERVERS) == [
        "entropy",
        "minmax",
        "moving_average",
        "mse",
        "percentile",
    ]


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("kl", {}, r"name must be one of 'minmax', "),
        ("minmax", {"percentile": 99.0}, r"unknown setting\(s\) percentile"),
        ("percentile", {"percentile": 0.0}, r"percentile must be a real number in"),
        ("percentile", {"percentile": 100.5}, r"got percentile=100.5"),
        ("moving_average", {"averaging_constant": 0.0}, "averaging_constant must"),
        ("entropy", {"num_bins": 4}, r"num_bins must be an int in \[8, "),
        ("entropy", {"start_bin": 0}, r"start_bin must be an int in \[1, "),
        ("entropy", {"stride": 0}, r"stride must be an int in \[1, "),
        ("mse", {"num_candidates": 0}, "num_candidates must be an int"),
        ("minmax", {"bits": 1}, r"bits must be an int in \[2, 16\]; got bits=1"),
        ("minmax", {"symmetric": "yes"}, "symmetric must be one of False, True"),
        ("minmax", {"axis": 1.5}, "axis must be an int"),
    ],
)
def test_invalid_settings_raise(name, kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        make_observer(name, **kwargs)


@pytest.mark.parametrize("name", ["percentile", "entropy", "mse"])
def test_histogram_observers_are_per_tensor_only(name):
    with pytest.raises(NotImplementedError, match="per-tensor only"):
        make_observer(name, axis=0)


@pytest.mark.parametrize("name", sorted(OBSERVERS))
def test_state_errors(name):
    obs = make_observer(name)
    with pytest.raises(RefquantError, match="observed no data"):
        obs.compute_range()
    obs.update(np.zeros((0, 3)))  # empty batch: ignored
    with pytest.raises(RefquantError, match="observed no data"):
        obs.compute_range()
    with pytest.raises(NonFiniteInputError, match="batch must hold finite"):
        obs.update([1.0, np.nan])
    with pytest.raises(InvalidArgumentError, match="other must be a"):
        obs.merge(MinMaxObserver() if name != "minmax" else EntropyObserver())
    obs.update([1.0, -2.0])
    with pytest.raises(InvalidArgumentError, match="must be 'per_tensor'"):
        obs.compute_qparams(QuantScheme(granularity="per_channel", axis=0))
    with pytest.raises(NotImplementedError, match="per_group"):
        obs.compute_qparams(QuantScheme(granularity="per_group", axis=0, group_size=2))


def test_merge_requires_same_settings():
    with pytest.raises(InvalidArgumentError, match="same settings"):
        PercentileObserver(percentile=99.0).merge(PercentileObserver(percentile=90.0))


def test_per_channel_errors():
    obs = MinMaxObserver(axis=1).update(np.ones((2, 3)))
    with pytest.raises(InvalidArgumentError, match="must have 3 channels"):
        obs.update(np.ones((2, 4)))
    with pytest.raises(InvalidArgumentError, match="axis must index a dimension"):
        MinMaxObserver(axis=2).update(np.ones((2, 3)))
    with pytest.raises(InvalidArgumentError, match="scheme.axis must equal"):
        obs.compute_qparams(QuantScheme(granularity="per_channel", axis=0))
    with pytest.raises(InvalidArgumentError, match="must be 'per_channel'"):
        obs.compute_qparams(QuantScheme())
