"""Entropy (KL-divergence) observer in the manner of TensorRT's calibrator.

The clipping threshold ``t`` minimises ``KL(P || Q)`` between the histogram of
``|x|`` clipped at ``t`` (``P``) and the same histogram merged into
``num_levels`` groups and spread back (``Q``).  Every choice is listed in
``specs/calibration.md`` section 5.
"""

from __future__ import annotations

import numpy as np

from refquant._validation import IntRange, check
from refquant.calibration.percentile import HistogramObserver


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """``sum_j P_j log(P_j / Q_j)`` over ``P_j > 0`` with ``P = p / sum p``,
    ``Q = q / sum q``; ``+inf`` when some ``p_j > 0`` has ``q_j == 0``."""
    support = p > 0
    if np.any(q[support] <= 0):
        return float("inf")
    p_n = p[support] / p.sum()
    q_n = q[support] / q.sum()
    return float(np.sum(p_n * np.log(p_n / q_n)))


def expand_quantized(bins: np.ndarray, num_levels: int) -> np.ndarray:
    """``Q`` for the first ``i = len(bins)`` bins merged into ``num_levels`` groups.

    Bin ``j`` belongs to group ``g_j = floor(j * num_levels / i)`` (exact integer
    division).  Each nonzero bin gets its group's sum divided by the number of
    nonzero bins in the group; zero bins stay 0.
    """
    i = bins.shape[0]
    group = (np.arange(i, dtype=np.int64) * num_levels) // i  # (i,) floor
    nonzero = bins != 0
    group_sum = np.bincount(group, weights=bins, minlength=num_levels)
    group_nonzero = np.bincount(group, weights=nonzero, minlength=num_levels)
    share = group_sum[group] / np.maximum(group_nonzero[group], 1)
    return np.where(nonzero, share, 0.0)


def entropy_divergences(counts: np.ndarray, num_levels: int, candidates) -> np.ndarray:
    """KL divergence for every candidate bin count ``i`` in ``candidates``.

    ``counts`` is the histogram of ``|x|`` with bin 0 already replaced (see
    :class:`EntropyObserver`); for candidate ``i`` the reference is
    ``P = counts[:i]`` with ``sum(counts[i:])`` added to ``P[i-1]``.
    """
    out = np.empty(len(candidates), dtype=np.float64)
    for n, i in enumerate(candidates):  # one pass per threshold, not per value
        reference = counts[:i].copy()
        reference[-1] += counts[i:].sum()
        out[n] = kl_divergence(reference, expand_quantized(counts[:i], num_levels))
    return out


class EntropyObserver(HistogramObserver):
    """Threshold minimising the KL divergence of the clipped ``|x|`` histogram.

    1. Histogram of ``|x|``: bins of the power-of-two width ``w`` of
       :class:`StreamingHistogram`; ``n`` = index of the last nonzero bin + 1
       (between ``num_bins / 2`` and ``num_bins``).
    2. ``counts[0] = counts[1]`` (TensorRT's zero-bin rule: a spike of exact
       zeros, e.g. after ReLU, must not dominate the divergence).
    3. ``num_levels = 2**bits`` when the scheme is asymmetric and no value is
       negative, else ``2**(bits - 1)``.
    4. Candidates ``i = start, start + stride, ..., <= n`` with
       ``start = min(start_bin, n)``; ``KL(i)`` from :func:`entropy_divergences`.
    5. The **last** (largest) ``i`` reaching the minimum wins;
       ``t = min(i * w, max|x|)``.

    The range is ``(-t, t)`` when symmetric, else ``(max(min_val, -t),
    min(max_val, t))``.

    Examples
    --------
    >>> obs = EntropyObserver(symmetric=True, start_bin=8)
    >>> x = np.concatenate([np.linspace(-1.0, 1.0, 1001), [50.0]])
    >>> obs.update(x).compute_range()  # the outlier 50.0 is clipped
    (-1.0, 1.0)
    """

    name = "entropy"

    def __init__(
        self,
        *,
        symmetric=False,
        bits=8,
        num_bins=2048,
        start_bin=128,
        stride=1,
        axis=None,
    ):
        check("start_bin", start_bin, IntRange(1, 2**20))
        check("stride", stride, IntRange(1, 2**20))
        super().__init__(symmetric=symmetric, bits=bits, num_bins=num_bins, axis=axis)
        self.start_bin = int(start_bin)
        self.stride = int(stride)

    def settings(self) -> dict:
        return {
            **super().settings(),
            "start_bin": self.start_bin,
            "stride": self.stride,
        }

    def threshold(self, bits=None, unsigned=False) -> float:
        """The KL-optimal magnitude ``t`` (steps 1-5 of the class docstring)."""
        h = self.histogram
        if h.absmax == 0.0:
            return 0.0
        bits = self.bits if bits is None else bits
        num_levels = 2 ** (bits if unsigned else bits - 1)
        counts = h.abs_counts().astype(np.float64)
        n = int(np.flatnonzero(counts)[-1]) + 1
        counts = counts[:n]
        if n > 1:
            counts[0] = counts[1]
        candidates = np.arange(min(self.start_bin, n), n + 1, self.stride)
        divergences = entropy_divergences(counts, num_levels, candidates)
        best = np.flatnonzero(divergences == divergences.min())[-1]  # last argmin
        return min(float(candidates[best]) * h.width, h.absmax)

    def _range(self, target):
        h = self.histogram
        unsigned = not target.symmetric and h.min_val >= 0.0
        t = self.threshold(target.bits, unsigned)
        if target.symmetric:
            return 0.0 - t, t
        return max(h.min_val, 0.0 - t), min(h.max_val, t)
