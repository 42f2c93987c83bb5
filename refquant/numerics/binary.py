"""Binary and ternary weights with least-squares scales (spec: specs/binary_ternary.md).

For fixed codes ``c`` the scale minimizing ``sum((w - alpha * c)**2)`` over one
slice is ``alpha = sum(w * c) / sum(c * c) = sum(|w| where c != 0) / count(c != 0)``
(eq. 1.3); a slice whose codes are all 0 gets ``alpha = 0``.

Means are taken as ``2**e * mean(|w| * 2**-e)`` with ``2**e`` just above the
slice's max |w| (eq. 1.4), so no sum overflows or loses subnormal bits: every
finite w gets a finite alpha (``alpha <= max |w|``) and the right codes.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from refquant._validation import FloatRange, check
from refquant.errors import InvalidArgumentError
from refquant.numerics.qparams import _as_real_array, check_no_nan

__all__ = ["LowBitWeights", "binarize", "ternarize"]


@dataclass(frozen=True, eq=False)
class LowBitWeights:
    """Result of :func:`binarize` / :func:`ternarize`.

    Attributes
    ----------
    codes : ndarray of int8
        Same shape as ``w``; values in {-1, +1} (binary) or {-1, 0, +1}.
    scale : ndarray of float64
        One least-squares scale per index of ``axis``: shape ``(w.shape[axis],)``;
        shape ``()`` when ``axis`` is None (one scale for the tensor).
    axis : int or None
        The axis the scales run along (normalized to be >= 0).
    """

    codes: np.ndarray
    scale: np.ndarray
    axis: int | None

    def dequantize(self) -> np.ndarray:
        """``w_hat = scale * codes`` in float64, the scale broadcast along ``axis``."""
        if self.axis is None:
            return self.scale * self.codes
        shape = [1] * self.codes.ndim
        shape[self.axis] = self.scale.size
        return self.scale.reshape(shape) * self.codes

    def __iter__(self):  # ``codes, scale = binarize(w)``
        return iter((self.codes, self.scale))


def _prepare(w, axis) -> tuple[np.ndarray, int | None, tuple]:
    w = _as_real_array(w, "w").astype(np.float64)
    if w.size == 0:
        raise InvalidArgumentError(f"w must not be empty; got w of shape {w.shape}")
    check_no_nan(w, "w")
    if np.any(np.isinf(w)):
        raise InvalidArgumentError("w must be finite; got w containing inf")
    if axis is None:
        return w, None, tuple(range(w.ndim))
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise InvalidArgumentError(f"axis must be an int or None; got axis={axis!r}")
    if not -w.ndim <= axis < w.ndim:
        raise InvalidArgumentError(
            f"axis must be in [{-w.ndim}, {w.ndim - 1}] for w with ndim={w.ndim}; "
            f"got axis={axis}"
        )
    axis = int(axis) % w.ndim
    others = tuple(i for i in range(w.ndim) if i != axis)
    return w, axis, others


def _slice_exponent(a, others) -> np.ndarray:
    """``e`` with ``max_S(a) = f * 2**e``, f in [0.5, 1); 0 for an all-zero slice."""
    return np.frexp(np.max(a, axis=others, keepdims=True))[1]


def _scaled_mean(a, keep, e, others) -> np.ndarray:
    """``mean_S(a * 2**-e where keep)`` (0 if none kept), each term in [0, 1).

    Scaling by the power of two ``2**-e`` is exact (an element more than
    2**1022 times smaller than the slice maximum may lose bits it could not
    contribute anyway), so the sum stays <= count and never overflows, and
    ``2**e * mean`` is the float64 mean wherever that mean does not overflow.
    """
    with np.errstate(under="ignore"):
        scaled = np.ldexp(np.where(keep, a, 0.0), -e)  # float64, in [0, 1)
    count = np.sum(keep, axis=others, keepdims=True)
    return np.sum(scaled, axis=others, keepdims=True) / np.maximum(count, 1)


def _least_squares_scale(a, codes, e, others) -> np.ndarray:
    """Eq. (1.3): ``sum(|w| * |c|) / sum(|c|)`` per slice; 0 where every c is 0.

    Computed as ``2**e * mean(|w| * 2**-e)`` over the nonzero codes: finite for
    every finite w, since alpha <= max_S |w|.
    """
    mean = _scaled_mean(a, codes != 0, e, others)
    return np.squeeze(np.ldexp(mean, e), axis=others)  # <= max |w|: no overflow


def binarize(w, axis: int | None = 0) -> LowBitWeights:
    """``c = +1 if w >= 0 else -1`` (sign(0) = +1), ``alpha = mean(|w|)`` per slice.

    ``alpha`` (one per index of ``axis``, over all other axes) minimizes
    ``sum((w - alpha * c)**2)`` for these codes (XNOR-Net / BWN scale).

    >>> r = binarize([[-0.5, 0.0, 0.3]], axis=0)
    >>> r.codes.tolist(), r.scale.tolist()
    ([[-1, 1, 1]], [0.26666666666666666])
    """
    w, axis, others = _prepare(w, axis)
    a = np.abs(w)
    codes = np.where(w >= 0, 1, -1).astype(np.int8)  # -0.0 >= 0: +1
    e = _slice_exponent(a, others)
    return LowBitWeights(codes, _least_squares_scale(a, codes, e, others), axis)


def ternarize(w, axis: int | None = 0, threshold_factor: float = 0.7) -> LowBitWeights:
    """``c = +1 if w > delta, -1 if w < -delta, else 0``, least-squares ``alpha``.

    ``delta = threshold_factor * mean(|w|)`` per slice (TWN: 0.7); comparisons
    are strict, so ``|w| == delta`` gives 0.  ``alpha = mean(|w|)`` over the
    nonzero codes of the slice, 0 if there are none.

    >>> r = ternarize([[0.1, -1.0, 0.9, 0.0]], axis=0)
    >>> r.codes.tolist(), r.scale.tolist()
    ([[0, -1, 1, 0]], [0.95])
    """
    check("threshold_factor", threshold_factor, FloatRange(0.0, 1e6), "TWN uses 0.7")
    w, axis, others = _prepare(w, axis)
    a = np.abs(w)
    e = _slice_exponent(a, others)
    mean = _scaled_mean(a, np.ones(w.shape, bool), e, others)  # mean|w| * 2**-e
    up = np.minimum(e, 0)  # compare a * 2**-up with delta * 2**-up: both exact
    with np.errstate(over="ignore"):
        delta = np.ldexp(float(threshold_factor) * mean, e - up)  # inf: > max|w|
    kept = np.ldexp(a, -up) > delta
    codes = (np.where(w < 0, -1, 1) * kept).astype(np.int8)
    return LowBitWeights(codes, _least_squares_scale(a, codes, e, others), axis)
