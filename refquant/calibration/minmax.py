"""Min-max and moving-average min-max observers (per tensor or per channel).

Min-max keeps the running extremes, ``min_val = min(min_val, min(batch))`` and
``max_val = max(max_val, max(batch))``; merging takes the extremes of both, so
it equals observing all data at once.  The moving average follows PyTorch's
``MovingAverageMinMaxObserver``: the first batch initialises, then
``min_val += c * (min(batch) - min_val)`` (likewise ``max_val``).
"""

from __future__ import annotations

import numpy as np

from refquant._validation import FloatRange, check
from refquant.calibration.base import Observer, symmetric_range
from refquant.errors import InvalidArgumentError


def batch_extremes(x: np.ndarray, axis):
    """Per-tensor ``(min, max)`` floats, or per-channel float64 arrays on ``axis``."""
    if axis is None:
        return float(x.min()), float(x.max())
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
        raise InvalidArgumentError(
            f"axis must index a dimension of the batch (ndim={x.ndim}); got axis={axis}"
        )
    rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)  # (C, rest)
    if rows.shape[1] == 0:
        raise InvalidArgumentError(
            f"batch must hold at least one value per channel; got batch of shape "
            f"{x.shape} with axis={axis}"
        )
    return rows.min(axis=1), rows.max(axis=1)


class _ExtremesObserver(Observer):
    per_channel_supported = True

    def __init__(self, *, symmetric=False, bits=8, axis=None):
        super().__init__(symmetric=symmetric, bits=bits, axis=axis)
        self.min_val = None
        self.max_val = None
        self.num_batches = 0

    def _is_empty(self) -> bool:
        return self.min_val is None

    def _check_channels(self, new_min) -> None:
        if self.min_val is None or self.axis is None:
            return
        if np.shape(new_min) != np.shape(self.min_val):
            raise InvalidArgumentError(
                f"batch must have {np.size(self.min_val)} channels along "
                f"axis={self.axis} like earlier batches; got {np.size(new_min)}"
            )

    def _range(self, target):
        if target.symmetric:
            return symmetric_range(self.min_val, self.max_val)
        if self.axis is None:
            return float(self.min_val), float(self.max_val)
        return self.min_val.copy(), self.max_val.copy()


class MinMaxObserver(_ExtremesObserver):
    """Running minimum and maximum: ``[min(x), max(x)]`` over every batch.

    Examples
    --------
    >>> obs = MinMaxObserver().update([0.0, 0.0, 0.0, 0.0]).update([0.5, -1.0])
    >>> obs.compute_range()
    (-1.0, 0.5)
    """

    name = "minmax"

    def _update(self, x: np.ndarray) -> None:
        lo, hi = batch_extremes(x, self.axis)
        self._check_channels(lo)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self.min_val = np.minimum(self.min_val, lo)
            self.max_val = np.maximum(self.max_val, hi)
        self.num_batches += 1

    def _merge(self, other: MinMaxObserver) -> None:
        if other.min_val is None:
            return
        self._check_channels(other.min_val)
        if self.min_val is None:
            self.min_val, self.max_val = other.min_val, other.max_val
        else:
            self.min_val = np.minimum(self.min_val, other.min_val)
            self.max_val = np.maximum(self.max_val, other.max_val)
        self.num_batches += other.num_batches


class MovingAverageMinMaxObserver(_ExtremesObserver):
    """Exponential moving average of batch extremes.

    ``m_1 = min(batch_1)``; ``m_k = m_{k-1} + c * (min(batch_k) - m_{k-1})``,
    likewise for the maximum, with ``c = averaging_constant`` in (0, 1].  The
    average depends on batch order, so no merge can equal one stream over all
    batches; :meth:`merge` takes the batch-count-weighted mean of the two states,
    ``m = (n_a m_a + n_b m_b) / (n_a + n_b)``, which is exact only when both
    states are equal.

    Examples
    --------
    >>> obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    >>> obs.update([0.0, 4.0]).update([-2.0, 2.0]).compute_range()
    (-1.0, 3.0)
    """

    name = "moving_average"

    def __init__(self, *, averaging_constant=0.01, symmetric=False, bits=8, axis=None):
        check("averaging_constant", averaging_constant, FloatRange(0.0, 1.0, True))
        super().__init__(symmetric=symmetric, bits=bits, axis=axis)
        self.averaging_constant = float(averaging_constant)

    def settings(self) -> dict:
        return {**super().settings(), "averaging_constant": self.averaging_constant}

    def _update(self, x: np.ndarray) -> None:
        lo, hi = batch_extremes(x, self.axis)
        self._check_channels(lo)
        c = self.averaging_constant
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self.min_val = self.min_val + c * (lo - self.min_val)
            self.max_val = self.max_val + c * (hi - self.max_val)
        self.num_batches += 1

    def _merge(self, other: MovingAverageMinMaxObserver) -> None:
        if other.min_val is None:
            return
        self._check_channels(other.min_val)
        if self.min_val is None:
            self.min_val, self.max_val = other.min_val, other.max_val
            self.num_batches = other.num_batches
            return
        n_a, n_b = self.num_batches, other.num_batches
        self.min_val = (n_a * self.min_val + n_b * other.min_val) / (n_a + n_b)
        self.max_val = (n_a * self.max_val + n_b * other.max_val) / (n_a + n_b)
        self.num_batches = n_a + n_b
