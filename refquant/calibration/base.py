"""The observer protocol shared by every calibration method.

An observer streams over batches (``update``), combines with another observer of
the same kind (``merge``) and turns what it saw into a real range
(``compute_range``) or into quantization parameters (``compute_qparams``).  Its
memory does not grow with the number of batches.  See ``specs/calibration.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refquant._validation import IntRange, OneOf, check
from refquant.errors import InvalidArgumentError, RefquantError


@dataclass(frozen=True)
class RangeTarget:
    """What a range is searched for: the scheme fields that shape the grid."""

    bits: int = 8
    symmetric: bool = False
    narrow_range: bool = False
    signed: bool = True

    @classmethod
    def from_scheme(cls, scheme) -> RangeTarget:
        return cls(
            bits=int(scheme.bits),
            symmetric=bool(scheme.symmetric),
            narrow_range=bool(scheme.narrow_range),
            signed=bool(scheme.signed),
        )


class Observer:
    """Base class: streaming, mergeable statistics of one tensor.

    Subclasses implement ``_update(x)`` (``x`` a finite float64 array),
    ``_merge(other)``, ``_range(target)`` and ``_is_empty()``.
    """

    name = "observer"
    per_channel_supported = False

    def __init__(self, *, symmetric: bool = False, bits: int = 8, axis=None):
        check("symmetric", symmetric, OneOf((False, True)))
        check("bits", bits, IntRange(2, 16))
        if axis is not None:
            if not self.per_channel_supported:
                raise NotImplementedError(
                    f"{type(self).__name__} is per-tensor only; per-channel "
                    f"statistics (axis={axis!r}) are supported by 'minmax' and "
                    f"'moving_average'"
                )
            check("axis", axis, IntRange())
        self.symmetric = symmetric
        self.bits = bits
        self.axis = axis

    # -- streaming -------------------------------------------------------------
    def update(self, batch) -> Observer:
        """Add the statistics of ``batch`` (any shape of finite reals); returns self.

        An empty batch changes nothing.
        """
        from refquant.calibration.histogram import as_finite_float64

        x = as_finite_float64("batch", batch)
        if x.size:
            self._update(x)
        return self

    def merge(self, other: Observer) -> Observer:
        """Combine the statistics of ``other`` (same class and settings) in place."""
        if type(other) is not type(self):
            raise InvalidArgumentError(
                f"other must be a {type(self).__name__}; got other of type "
                f"{type(other).__name__}"
            )
        if other.settings() != self.settings():
            raise InvalidArgumentError(
                f"other must have the same settings as this observer "
                f"({self.settings()}); got other with {other.settings()}"
            )
        self._merge(other)
        return self

    def settings(self) -> dict:
        """The constructor parameters that two observers must share to merge."""
        return {"symmetric": self.symmetric, "bits": self.bits, "axis": self.axis}

    # -- results ---------------------------------------------------------------
    def compute_range(self, scheme=None):
        """Return ``(min_val, max_val)``: floats, or float64 arrays per channel.

        ``scheme`` (a :class:`~refquant.numerics.scheme.QuantScheme`) overrides
        the observer's ``bits`` and ``symmetric``; a symmetric range is
        ``(-t, t)``.
        """
        if self._is_empty():
            raise RefquantError(
                f"{type(self).__name__} has observed no data; call "
                f"update(batch) with at least one value before compute_range()"
            )
        if scheme is None:
            target = RangeTarget(self.bits, self.symmetric)
        else:
            self._check_scheme(scheme)
            target = RangeTarget.from_scheme(scheme)
        return self._range(target)

    def compute_qparams(self, scheme):
        """``compute_qparams(*self.compute_range(scheme), scheme)`` (numerics)."""
        from refquant.numerics.qparams import compute_qparams

        min_val, max_val = self.compute_range(scheme)
        return compute_qparams(min_val, max_val, scheme)

    def _check_scheme(self, scheme) -> None:
        granularity = getattr(scheme, "granularity", None)
        if granularity == "per_channel" and self.axis is None:
            raise InvalidArgumentError(
                f"scheme.granularity must be 'per_tensor' for a per-tensor "
                f"{type(self).__name__}; got scheme.granularity='per_channel'. "
                f"Build the observer with axis={scheme.axis} for per-channel ranges"
            )
        if granularity == "per_tensor" and self.axis is not None:
            raise InvalidArgumentError(
                f"scheme.granularity must be 'per_channel' for an observer with "
                f"axis={self.axis}; got scheme.granularity='per_tensor'"
            )
        if granularity == "per_channel" and scheme.axis != self.axis:
            raise InvalidArgumentError(
                f"scheme.axis must equal the observer's axis={self.axis!r}; got "
                f"scheme.axis={scheme.axis!r}"
            )
        if granularity not in ("per_tensor", "per_channel"):
            raise NotImplementedError(
                f"observers compute per-tensor and per-channel ranges only; got "
                f"scheme.granularity={granularity!r}"
            )

    def _is_empty(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


def symmetric_range(min_val, max_val):
    """``t = max(-min_val, max_val, 0)``; returns ``(-t, t)`` (scalars or arrays)."""
    t = np.maximum(np.maximum(-np.asarray(min_val), np.asarray(max_val)), 0.0)
    if np.ndim(t) == 0:
        return 0.0 - float(t), float(t)  # 0.0 - t: no negative zero
    return 0.0 - t, t
