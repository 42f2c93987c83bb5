"""StreamingHistogram: hand-computed bins, a Fraction oracle, exact merging."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant.calibration.histogram import StreamingHistogram, bin_width_for
from refquant.errors import InvalidArgumentError, NonFiniteInputError

NUM_BINS = 16

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
values_lists = st.lists(
    st.one_of(finite, st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0**-30, 3.0])),
    min_size=1,
    max_size=60,
)


def oracle(values, num_bins):
    """Width and counts with exact rational arithmetic."""
    absmax = max(abs(Fraction(v)) for v in values)
    if absmax == 0:
        pos = [0] * num_bins
        pos[0] = len(values)
        return None, pos, [0] * num_bins
    k = 0
    while absmax / Fraction(2) ** k >= num_bins:
        k += 1
    while absmax / Fraction(2) ** (k - 1) < num_bins:
        k -= 1
    w = Fraction(2) ** k
    pos, neg = [0] * num_bins, [0] * num_bins
    for v in values:
        f = Fraction(v)
        if f >= 0:
            pos[int(f // w)] += 1
        else:
            neg[int(-f // w)] += 1
    return float(w), pos, neg


def test_hand_computed_bins_and_widening():
    h = StreamingHistogram(num_bins=8)
    h.update([1.0])  # 1/0.25 = 4 < 8 and 1/0.125 = 8 is not: width 0.25
    assert h.width == 0.25
    assert h.pos_counts.tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    h.update([3.0, -0.3, 0.0])  # 3/0.5 = 6 < 8, 3/0.25 = 12: width 0.5
    assert h.width == 0.5
    assert h.pos_counts.tolist() == [1, 0, 1, 0, 0, 0, 1, 0]  # 0, 1.0, 3.0
    assert h.neg_counts.tolist() == [1, 0, 0, 0, 0, 0, 0, 0]  # -0.3
    assert (h.count, h.zero_count, h.min_val, h.max_val) == (4, 1, -0.3, 3.0)


def test_width_at_exact_power_of_two_boundary():
    # 8 / 1 = 8 is not < 8, so the width doubles to 2; 7.99 fits width 1.
    assert bin_width_for(8.0, 8) == 2.0
    assert bin_width_for(7.99, 8) == 1.0
    assert bin_width_for(1e-300, 2048) == oracle([1e-300], 2048)[0]


def test_all_zero_batches_then_data():
    h = StreamingHistogram(num_bins=8).update([0.0, 0.0, 0.0, 0.0])
    assert h.width is None and h.pos_counts[0] == 4
    h.update([0.5, -1.0])
    assert h.width == 0.25  # 1 / 0.25 = 4 < 8, 1 / 0.125 = 8 is not
    assert h.pos_counts.tolist() == [4, 0, 1, 0, 0, 0, 0, 0]  # zeros, 0.5
    assert h.neg_counts.tolist() == [0, 0, 0, 0, 1, 0, 0, 0]  # -1.0


@given(values_lists)
def test_matches_fraction_oracle(values):
    h = StreamingHistogram(NUM_BINS).update(values)
    w, pos, neg = oracle(values, NUM_BINS)
    assert h.width == w
    assert h.pos_counts.tolist() == pos
    assert h.neg_counts.tolist() == neg


@given(values_lists, st.lists(st.integers(0, 60), max_size=5))
def test_streaming_and_merging_equal_all_at_once(values, cuts):
    whole = StreamingHistogram(NUM_BINS).update(values)
    bounds = sorted({0, len(values), *(c % (len(values) + 1) for c in cuts)})
    parts = [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    streamed = StreamingHistogram(NUM_BINS)
    for part in parts:
        streamed.update(part)
    merged = StreamingHistogram(NUM_BINS)
    for part in reversed(parts):
        merged.merge(StreamingHistogram(NUM_BINS).update(part))
    assert streamed == whole
    assert merged == whole


def test_memory_is_bounded():
    rng = np.random.default_rng(3)
    h = StreamingHistogram(64)
    for scale in (1e-3, 1.0, 1e3, 1e6):
        h.update(rng.standard_normal(1000) * scale)
    assert h.pos_counts.shape == (64,) and h.neg_counts.shape == (64,)
    assert h.count == 4000


def test_invalid_inputs():
    with pytest.raises(InvalidArgumentError, match=r"num_bins must be an int in"):
        StreamingHistogram(num_bins=4)
    h = StreamingHistogram(8)
    with pytest.raises(NonFiniteInputError, match="batch must hold finite"):
        h.update([1.0, float("nan")])
    with pytest.raises(NonFiniteInputError, match="batch must hold finite"):
        h.update([float("inf")])
    with pytest.raises(InvalidArgumentError, match="batch must be an array of real"):
        h.update(["a"])
    with pytest.raises(InvalidArgumentError, match="other.num_bins must equal"):
        h.merge(StreamingHistogram(16).update([1.0]))
    with pytest.raises(InvalidArgumentError, match="other must be a Streaming"):
        h.merge([1.0])
