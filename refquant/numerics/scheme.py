"""Quantization schemes: bit width, sign, symmetry, range and granularity.

Spec: specs/quantization.md, section 1.  The integer range of a scheme is the
closed interval ``[qmin, qmax]``:

=========  ===========  ==========================  =========================
signed     narrow       qmin                        qmax
=========  ===========  ==========================  =========================
True       False        ``-2**(bits-1)``            ``2**(bits-1) - 1``
True       True         ``-(2**(bits-1) - 1)``      ``2**(bits-1) - 1``
False      False        ``0``                       ``2**bits - 1``
False      True         ``1``                       ``2**bits - 1``
=========  ===========  ==========================  =========================
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from refquant._validation import IntRange, OneOf, check, check_type
from refquant.errors import InvalidArgumentError

__all__ = ["GRANULARITIES", "QuantScheme", "smallest_int_dtype"]

GRANULARITIES = ("per_tensor", "per_channel", "per_group")

_SIGNED = (np.int8, np.int16, np.int32, np.int64)
_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)


def smallest_int_dtype(qmin: int, qmax: int) -> np.dtype:
    """Return the smallest NumPy integer dtype holding every integer of [qmin, qmax].

    Unsigned when ``qmin >= 0``, signed otherwise.

    >>> smallest_int_dtype(-127, 127), smallest_int_dtype(0, 511)
    (dtype('int8'), dtype('uint16'))
    """
    for dtype in _UNSIGNED if qmin >= 0 else _SIGNED:
        info = np.iinfo(dtype)
        if info.min <= qmin and qmax <= info.max:
            return np.dtype(dtype)
    raise InvalidArgumentError(
        f"[qmin, qmax] must fit in a 64-bit integer; got qmin={qmin}, qmax={qmax}"
    )


@dataclass(frozen=True)
class QuantScheme:
    """How real numbers map to ``bits``-bit integer codes.

    Parameters
    ----------
    bits : int in [2, 16]
        Code width.
    signed : bool
        Signed codes (two's complement range) or unsigned codes.
    symmetric : bool
        If True the zero point is fixed at the middle of the range
        (``(qmin + qmax + 1) // 2``: 0 for signed, ``2**(bits-1)`` for unsigned)
        and the scale is ``max|x| / ((qmax - qmin) / 2)``.
    narrow_range : bool
        Drop the most negative code: signed ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``
        (TFLite int8 weights: [-127, 127]); unsigned ``[1, 2**bits - 1]``.
    granularity : {"per_tensor", "per_channel", "per_group"}
        One (scale, zero_point) for the whole tensor, one per index along
        ``axis``, or one per block of ``group_size`` consecutive elements along
        ``axis`` (for every index of the other axes; the last block may be
        smaller).
    axis : int or None
        Required for per_channel and per_group, must be None for per_tensor.
        Negative values count from the end of the tensor's shape.
    group_size : int >= 1 or None
        Required for per_group, must be None otherwise.

    >>> s = QuantScheme(bits=8, signed=True, symmetric=True, narrow_range=True)
    >>> s.qmin, s.qmax, s.dtype
    (-127, 127, dtype('int8'))
    """

    bits: int = 8
    signed: bool = True
    symmetric: bool = False
    narrow_range: bool = False
    granularity: str = "per_tensor"
    axis: int | None = None
    group_size: int | None = None

    def __post_init__(self):
        check("bits", self.bits, IntRange(2, 16))
        for name in ("signed", "symmetric", "narrow_range"):
            check_type(name, getattr(self, name), (bool, np.bool_), "a bool")
        check("granularity", self.granularity, OneOf(GRANULARITIES))
        self._check_axis_and_group()

    def _check_axis_and_group(self) -> None:
        g = self.granularity
        if g == "per_tensor" and self.axis is not None:
            raise InvalidArgumentError(
                f"axis must be None when granularity='per_tensor'; got "
                f"axis={self.axis!r}. Use granularity='per_channel' for an axis"
            )
        if g != "per_tensor":
            if isinstance(self.axis, bool) or not isinstance(
                self.axis, numbers.Integral
            ):
                raise InvalidArgumentError(
                    f"axis must be an int when granularity={g!r}; got "
                    f"axis={self.axis!r}"
                )
        if g == "per_group":
            check("group_size", self.group_size, IntRange(1, None))
        elif self.group_size is not None:
            raise InvalidArgumentError(
                f"group_size must be None when granularity={g!r}; got "
                f"group_size={self.group_size!r}. Use granularity='per_group'"
            )

    @property
    def qmin(self) -> int:
        """Smallest code: ``-2**(bits-1)`` (+1 if narrow) signed, 0 (1) unsigned."""
        if self.signed:
            return -(2 ** (self.bits - 1)) + int(self.narrow_range)
        return int(self.narrow_range)

    @property
    def qmax(self) -> int:
        """Largest code: ``2**(bits-1) - 1`` signed, ``2**bits - 1`` unsigned."""
        if self.signed:
            return 2 ** (self.bits - 1) - 1
        return 2**self.bits - 1

    @property
    def dtype(self) -> np.dtype:
        """Smallest integer dtype holding [qmin, qmax] (int8, uint8, int16...)."""
        return smallest_int_dtype(self.qmin, self.qmax)

    @property
    def symmetric_zero_point(self) -> int:
        """Zero point of a symmetric scheme: ``(qmin + qmax + 1) // 2``."""
        return (self.qmin + self.qmax + 1) // 2

    def normalized_axis(self, ndim: int, name: str = "x") -> int:
        """Return ``axis`` in ``[0, ndim)`` or raise naming the tensor's rank."""
        axis = int(self.axis)
        if not -ndim <= axis < ndim:
            raise InvalidArgumentError(
                f"axis must be in [{-ndim}, {ndim - 1}] for {name} with ndim={ndim}; "
                f"got axis={axis}"
            )
        return axis % ndim
