"""A mergeable histogram of real values with power-of-two bin widths anchored at 0.

Bin ``j`` on the positive side holds the values ``x >= 0`` with
``floor(x / width) == j``; bin ``j`` on the negative side holds the values
``x < 0`` with ``floor(-x / width) == j`` (rounding rule: floor, exact because
``width`` is a power of two).  ``width`` is the smallest power of two for which
every observed magnitude lands in one of ``num_bins`` bins per side, so it
depends only on the largest magnitude seen.  When that grows, adjacent pairs of
bins are summed (``new[j] = old[2j] + old[2j+1]``), which is exact because
``floor(floor(x / w) / 2) == floor(x / (2 w))``.  Hence a histogram built batch
by batch, or merged from histograms of parts, equals the one built from all data
at once, bit for bit.  See ``specs/calibration.md`` section 2.
"""

from __future__ import annotations

import math

import numpy as np

from refquant._validation import IntRange, check
from refquant.errors import InvalidArgumentError, NonFiniteInputError


def as_finite_float64(name: str, values) -> np.ndarray:
    """Return ``values`` as a float64 array; raise if any entry is NaN or +-inf."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{name} must be an array of real numbers; got {name} of type "
            f"{type(values).__name__}"
        ) from exc
    if array.size and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise NonFiniteInputError(
            f"{name} must hold finite values only; got {name} with {bad} NaN or "
            f"infinite entries"
        )
    return array


def bin_width_for(absmax: float, num_bins: int) -> float:
    """Smallest power of two ``w`` with ``floor(absmax / w) <= num_bins - 1``.

    ``absmax`` must be finite and > 0.  The exponent is found from ``frexp`` and
    then corrected by whole steps, so the test ``absmax / w < num_bins`` is
    evaluated exactly (division by a power of two).
    """
    _, exponent = math.frexp(absmax / num_bins)
    k = exponent - 1
    while absmax / math.ldexp(1.0, k) >= num_bins:
        k += 1
    while k > -1074 and absmax / math.ldexp(1.0, k - 1) < num_bins:
        k -= 1
    return math.ldexp(1.0, k)


def log2_ratio(wide: float, narrow: float) -> int:
    """``e`` with ``wide == narrow * 2**e`` for two powers of two (exact)."""
    return math.frexp(wide)[1] - math.frexp(narrow)[1]


def coarsen(counts: np.ndarray, shift: int) -> np.ndarray:
    """Sum ``2**shift`` adjacent bins: ``new[j] = sum(counts[i] for i >> shift == j)``.

    The output has the input's length (trailing bins are zero).
    """
    if shift == 0:
        return counts
    n = counts.shape[-1]
    index = np.arange(n, dtype=np.int64) >> min(shift, 62)  # (n,) floor
    out = np.zeros_like(counts)
    np.add.at(out, index, counts)
    return out


class StreamingHistogram:
    """Counts of values in power-of-two-width bins on both sides of 0, mergeable.

    Parameters
    ----------
    num_bins : int
        Bins per side, in [8, 2**20]; the largest magnitude seen always falls in
        the top half of them, so ``[0, absmax]`` spans between ``num_bins / 2``
        and ``num_bins`` bins.

    Attributes
    ----------
    width : float or None
        Bin width (a power of two), None while every value seen is 0.
    pos_counts, neg_counts : ndarray of int64, shape (num_bins,)
        Counts of ``x >= 0`` and of ``x < 0`` per bin, as described above.
    zero_count : int
        Number of values exactly equal to 0 (they also count in ``pos_counts[0]``).
    count : int
        Number of values seen.
    min_val, max_val : float
        Exact extremes of the values seen (``+inf`` / ``-inf`` when empty).

    Examples
    --------
    >>> h = StreamingHistogram(num_bins=8)
    >>> _ = h.update([0.0, 1.0, 3.5]).update([-0.25])
    >>> h.width, h.pos_counts.tolist(), h.neg_counts.tolist()
    (0.5, [1, 0, 1, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0, 0, 0])
    """

    def __init__(self, num_bins: int = 2048):
        check("num_bins", num_bins, IntRange(8, 2**20))
        self.num_bins = int(num_bins)
        self.width = None
        self.pos_counts = np.zeros(self.num_bins, dtype=np.int64)
        self.neg_counts = np.zeros(self.num_bins, dtype=np.int64)
        self.zero_count = 0
        self.count = 0
        self.min_val = math.inf
        self.max_val = -math.inf

    @property
    def absmax(self) -> float:
        """Largest magnitude seen (0.0 when empty)."""
        if self.count == 0:
            return 0.0
        return max(-self.min_val, self.max_val)

    def _widen_to(self, width: float) -> None:
        if self.width is None:
            self.width = width
            return
        shift = log2_ratio(width, self.width)
        self.pos_counts = coarsen(self.pos_counts, shift)
        self.neg_counts = coarsen(self.neg_counts, shift)
        self.width = width

    def update(self, values) -> StreamingHistogram:
        """Add every element of ``values`` (any shape, finite reals)."""
        x = as_finite_float64("batch", values).ravel()
        if x.size == 0:
            return self
        self.count += int(x.size)
        self.zero_count += int(x.size - np.count_nonzero(x))
        self.min_val = min(self.min_val, float(x.min()))
        self.max_val = max(self.max_val, float(x.max()))
        if self.absmax == 0.0:
            self.pos_counts[0] += x.size
            return self
        needed = bin_width_for(self.absmax, self.num_bins)
        if self.width is None or needed > self.width:
            self._widen_to(needed)
        self._add_binned(x)
        return self

    def _add_binned(self, x: np.ndarray) -> None:
        negative = x < 0
        pos_index = np.floor(x[~negative] / self.width).astype(np.int64)  # floor
        neg_index = np.floor(-x[negative] / self.width).astype(np.int64)  # floor
        self.pos_counts += np.bincount(pos_index, minlength=self.num_bins)
        self.neg_counts += np.bincount(neg_index, minlength=self.num_bins)

    def merge(self, other: StreamingHistogram) -> StreamingHistogram:
        """Add the counts of ``other`` in place; equal to histogramming both inputs."""
        if not isinstance(other, StreamingHistogram):
            raise InvalidArgumentError(
                f"other must be a StreamingHistogram; got other of type "
                f"{type(other).__name__}"
            )
        if other.num_bins != self.num_bins:
            raise InvalidArgumentError(
                f"other.num_bins must equal num_bins={self.num_bins}; got "
                f"other.num_bins={other.num_bins}"
            )
        if other.count == 0:
            return self
        pos, neg = other.pos_counts, other.neg_counts
        if other.width is not None:
            if self.width is None or other.width > self.width:
                self._widen_to(other.width)
            shift = log2_ratio(self.width, other.width)
            pos, neg = coarsen(pos, shift), coarsen(neg, shift)
        self.pos_counts = self.pos_counts + pos
        self.neg_counts = self.neg_counts + neg
        self.count += other.count
        self.zero_count += other.zero_count
        self.min_val = min(self.min_val, other.min_val)
        self.max_val = max(self.max_val, other.max_val)
        return self

    def copy(self) -> StreamingHistogram:
        """Return an independent copy."""
        new = StreamingHistogram(self.num_bins)
        new.width = self.width
        new.pos_counts = self.pos_counts.copy()
        new.neg_counts = self.neg_counts.copy()
        new.zero_count = self.zero_count
        new.count, new.min_val, new.max_val = self.count, self.min_val, self.max_val
        return new

    def abs_counts(self) -> np.ndarray:
        """Counts of ``|x|``: ``pos_counts + neg_counts``.

        Bin ``j`` holds ``x`` in ``[j w, (j+1) w)`` and ``x`` in ``(-(j+1) w, -j w]``.
        """
        return self.pos_counts + self.neg_counts

    def signed_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Counts in ascending value order and their ``2 * num_bins + 1`` edges."""
        counts = np.concatenate([self.neg_counts[::-1], self.pos_counts])
        width = 1.0 if self.width is None else self.width
        k = np.arange(-self.num_bins, self.num_bins + 1, dtype=np.float64)
        return counts, k * width

    def __eq__(self, other) -> bool:
        if not isinstance(other, StreamingHistogram):
            return NotImplemented
        return (
            self.num_bins == other.num_bins
            and self.width == other.width
            and self.count == other.count
            and self.zero_count == other.zero_count
            and self.min_val == other.min_val
            and self.max_val == other.max_val
            and np.array_equal(self.pos_counts, other.pos_counts)
            and np.array_equal(self.neg_counts, other.neg_counts)
        )

    __hash__ = None
