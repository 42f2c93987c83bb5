"""Percentile observer: the range that keeps ``percentile`` percent of the values.

Works on the mergeable :class:`StreamingHistogram`, so thresholds are bin edges
(multiples of the power-of-two bin width), clipped to the observed extremes.
"""

from __future__ import annotations

import numpy as np

from refquant._validation import FloatRange, IntRange, check
from refquant.calibration.base import Observer
from refquant.calibration.histogram import StreamingHistogram


class HistogramObserver(Observer):
    """Base of the observers that keep a :class:`StreamingHistogram`."""

    def __init__(self, *, symmetric=False, bits=8, num_bins=2048, axis=None):
        check("num_bins", num_bins, IntRange(8, 2**20))
        super().__init__(symmetric=symmetric, bits=bits, axis=axis)
        self.histogram = StreamingHistogram(num_bins)

    def settings(self) -> dict:
        return {**super().settings(), "num_bins": self.histogram.num_bins}

    def _update(self, x: np.ndarray) -> None:
        self.histogram.update(x)

    def _merge(self, other: HistogramObserver) -> None:
        self.histogram.merge(other.histogram)

    def _is_empty(self) -> bool:
        return self.histogram.count == 0


def upper_tail_edge(counts: np.ndarray, edges: np.ndarray, allowed: float) -> float:
    """Smallest edge ``edges[k]`` with ``sum(counts[k:]) <= allowed``.

    ``counts`` are in ascending value order, ``edges`` has one more entry.
    """
    tail = np.cumsum(counts[::-1])[::-1]  # (n,) count in bins k..n-1
    above = np.concatenate([tail, [0]])  # (n+1,) count at or above edges[k]
    k = int(np.argmax(above <= allowed))
    return float(edges[k])


class PercentileObserver(HistogramObserver):
    """Range holding at least ``percentile`` percent of the observed values.

    Symmetric: ``t`` is the smallest bin edge with
    ``count(|x| in bins at or above t) <= (1 - p/100) * count``, clipped to
    ``max|x|``; the range is ``(-t, t)``.  Asymmetric: each tail may hold
    ``(1 - p/100) / 2 * count`` values; ``max_val`` is the smallest edge whose
    upper tail fits, ``min_val`` the largest edge whose lower tail fits, each
    clipped to the observed extremes.  Thresholds grow monotonically with ``p``.

    Examples
    --------
    >>> obs = PercentileObserver(percentile=80.0, symmetric=True, num_bins=16)
    >>> obs.update(range(10)).compute_range()  # bins of width 1; 8 and 9 cut
    (-8.0, 8.0)
    """

    name = "percentile"

    def __init__(
        self, *, percentile=99.99, symmetric=False, bits=8, num_bins=2048, axis=None
    ):
        check("percentile", percentile, FloatRange(0.0, 100.0, low_open=True))
        super().__init__(symmetric=symmetric, bits=bits, num_bins=num_bins, axis=axis)
        self.percentile = float(percentile)

    def settings(self) -> dict:
        return {**super().settings(), "percentile": self.percentile}

    def _range(self, target):
        h = self.histogram
        if h.absmax == 0.0:
            return 0.0, 0.0
        outside = h.count * (100.0 - self.percentile) / 100.0
        if target.symmetric:
            counts = h.abs_counts()
            edges = np.arange(h.num_bins + 1, dtype=np.float64) * h.width
            t = min(upper_tail_edge(counts, edges, outside), h.absmax)
            return 0.0 - t, t
        counts, edges = h.signed_counts()
        hi = upper_tail_edge(counts, edges, outside / 2)
        lo = -upper_tail_edge(counts[::-1], -edges[::-1], outside / 2)
        return max(lo, h.min_val), min(hi, h.max_val)
