"""MSE observer: the range whose quantization error on the histogram is smallest.

Candidates shrink the observed range by ``k / num_candidates``; each is turned
into qparams exactly as :func:`refquant.numerics.qparams.compute_qparams` does,
and its mean squared error is measured on the histogram's bin centres.
"""

from __future__ import annotations

import numpy as np

from refquant._validation import IntRange, check
from refquant.calibration.percentile import HistogramObserver

# Candidate rows fake-quantized per NumPy call: bounds the temporary matrix.
_CHUNK_ELEMENTS = 1 << 20


def representative_values(histogram) -> tuple[np.ndarray, np.ndarray]:
    """``(values, counts)`` standing for the observed data.

    Exact zeros are represented by 0; every other value by the centre of its
    bin, ``+-(j + 1/2) * width``.  Empty bins are dropped.
    """
    h = histogram
    pos = h.pos_counts.copy()
    pos[0] -= h.zero_count
    centres = (np.arange(h.num_bins, dtype=np.float64) + 0.5) * h.width
    values = np.concatenate([[0.0], centres, -centres])
    counts = np.concatenate([[h.zero_count], pos, h.neg_counts]).astype(np.float64)
    keep = counts > 0
    return values[keep], counts[keep]


def candidate_errors(values, counts, lows, highs, scheme) -> np.ndarray:
    """Mean squared error ``sum(counts * (fq_k(v) - v)**2) / sum(counts)`` per k."""
    from dataclasses import replace

    from refquant.numerics.qparams import QParams, compute_qparams
    from refquant.numerics.quantize import fake_quantize

    rows = replace(scheme, granularity="per_channel", axis=0, group_size=None)
    qp = compute_qparams(lows, highs, rows)  # (K,) scales and zero points
    errors = np.empty(lows.shape[0], dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(1, values.size))
    for start in range(0, lows.shape[0], step):  # chunks of candidates
        end = min(start + step, lows.shape[0])
        chunk = QParams(qp.scale[start:end], qp.zero_point[start:end], rows)
        grid = np.broadcast_to(values, (end - start, values.size))  # (k, M)
        fq = fake_quantize(grid, chunk, "half_even")  # float64
        errors[start:end] = ((fq - values) ** 2 @ counts) / counts.sum()
    return errors


class MSEObserver(HistogramObserver):
    """Range minimising the quantization mean squared error over candidates.

    Candidate ``k = 1 .. num_candidates`` is ``(a_k * lo, a_k * hi)`` with
    ``a_k = k / num_candidates``, ``lo = min(min_val, 0)``, ``hi = max(max_val,
    0)``; symmetric schemes use ``(-a_k * t, a_k * t)`` with ``t = max|x|``.
    The error of a candidate is measured on :func:`representative_values` with
    the qparams ``compute_qparams`` gives for the candidate range and
    ``half_even`` rounding.  The first (narrowest) minimum wins.

    Examples
    --------
    >>> obs = MSEObserver(symmetric=True, num_candidates=4, num_bins=8)
    >>> obs.update([0.25, -0.25, 0.75, 3.75]).compute_range()
    (-3.75, 3.75)
    """

    name = "mse"

    def __init__(
        self, *, symmetric=False, bits=8, num_bins=2048, num_candidates=512, axis=None
    ):
        check("num_candidates", num_candidates, IntRange(1, 2**16))
        super().__init__(symmetric=symmetric, bits=bits, num_bins=num_bins, axis=axis)
        self.num_candidates = int(num_candidates)

    def settings(self) -> dict:
        return {**super().settings(), "num_candidates": self.num_candidates}

    def candidates(self, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
        """The candidate ranges ``(lows, highs)``, arrays of shape (num_candidates,)."""
        h = self.histogram
        a = np.arange(1, self.num_candidates + 1) / self.num_candidates
        lo, hi = min(h.min_val, 0.0), max(h.max_val, 0.0)
        if symmetric:
            lo, hi = -h.absmax, h.absmax
        return a * lo, a * hi

    def errors(self, scheme) -> np.ndarray:
        """Measured MSE of every candidate under ``scheme`` (a QuantScheme)."""
        values, counts = representative_values(self.histogram)
        lows, highs = self.candidates(bool(scheme.symmetric))
        return candidate_errors(values, counts, lows, highs, scheme)

    def _range(self, target):
        from refquant.numerics.scheme import QuantScheme

        h = self.histogram
        if h.absmax == 0.0:
            return 0.0, 0.0
        scheme = QuantScheme(
            bits=target.bits,
            signed=target.signed,
            symmetric=target.symmetric,
            narrow_range=target.narrow_range,
        )
        lows, highs = self.candidates(target.symmetric)
        best = int(np.argmin(self.errors(scheme)))  # first minimum
        return float(lows[best]), float(highs[best])
