"""Quantization parameters (scale, zero_point) and how to compute them.

Spec: specs/quantization.md, sections 2 and 3.  Everything is computed in
float64; the zero point is rounded ``half_even`` and clamped to [qmin, qmax].

Shapes ("compact" form, expanded against a tensor by :meth:`QParams.expand`):

* per_tensor: ``()``
* per_channel: ``(C,)`` with ``C = x.shape[axis]``
* per_group: ``x.shape`` with ``x.shape[axis]`` replaced by
  ``ceil(x.shape[axis] / group_size)`` (one pair per block of ``group_size``
  consecutive elements along ``axis``, for every index of the other axes; the
  last block may be smaller).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from refquant._validation import check_type
from refquant.errors import (
    FallbackScaleWarning,
    InvalidArgumentError,
    InvalidTypeError,
    NonFiniteInputError,
)
from refquant.numerics.rounding import round_half_even
from refquant.numerics.scheme import QuantScheme

__all__ = [
    "ZERO_RANGE_SCALE",
    "QParams",
    "check_no_nan",
    "compute_qparams",
    "qparams_from_tensor",
    "validate_scale",
]

# Scale used when the (zero-extended) range has zero width, e.g. an all-zero
# channel: any positive scale maps 0 exactly; 1.0 is the documented choice.
ZERO_RANGE_SCALE = 1.0

_TINY = np.finfo(np.float64).tiny  # smallest normal float64, 2**-1022


def _first_index(mask: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _as_array(x, name: str) -> np.ndarray:
    """``np.asarray(x)``; masked and ragged input raise errors naming ``name``."""
    if isinstance(x, np.ma.MaskedArray):
        raise InvalidTypeError(
            f"{name} must be a plain array, not a numpy.ma.MaskedArray (its mask "
            f"would be ignored); pass {name}.filled(value) or {name}.compressed()"
        )
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as err:
        raise InvalidArgumentError(
            f"{name} must be a rectangular array of real numbers; got {name} of "
            f"type {type(x).__name__} that NumPy cannot convert ({err})"
        ) from None


def _as_real_array(x, name: str) -> np.ndarray:
    arr = _as_array(x, name)
    if arr.dtype.kind not in "fiu":
        raise InvalidTypeError(
            f"{name} must be a real numeric array (float or int); got {name} of "
            f"dtype {arr.dtype}"
        )
    return arr


def check_no_nan(x: np.ndarray, name: str = "x") -> None:
    """Raise :class:`NonFiniteInputError` naming the NaN count and first index."""
    if x.dtype.kind != "f":
        return
    mask = np.isnan(x)
    count = int(np.count_nonzero(mask))
    if count:
        raise NonFiniteInputError(
            f"{name} must not contain NaN; got {count} NaN value(s) in {name} of "
            f"shape {x.shape}, first at index {_first_index(mask)}"
        )


def validate_scale(scale, name: str = "scale", *, dtype=np.float64) -> np.ndarray:
    """Return ``scale`` as a float64 array; reject values that are not normal > 0.

    A scale must be finite, > 0 and normal (>= 2**-1022 in float64, >= 2**-126
    when ``dtype`` is float32, i.e. when the value is used in float32).
    """
    arr = np.asarray(scale)
    if arr.dtype.kind not in "fiu":
        raise InvalidTypeError(
            f"{name} must be a real number or array; got {name}={scale!r}"
        )
    arr = arr.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        cast = arr.astype(dtype)
        bad = ~(np.isfinite(cast) & (cast >= np.finfo(dtype).tiny))
    if np.any(bad):
        index = _first_index(bad) if arr.ndim else ()
        value = float(arr[index]) if arr.ndim else float(arr)
        where = f" at index {index}" if arr.ndim else ""
        kind = np.dtype(dtype).name
        raise InvalidArgumentError(
            f"{name} must be finite, > 0 and a normal {kind} (>= "
            f"{float(np.finfo(dtype).tiny)!r}); got {name}={value!r}{where} "
            f"({int(np.count_nonzero(bad))} invalid value(s))"
        )
    return arr


def _check_compact_shape(shape: tuple, scheme: QuantScheme, name: str) -> None:
    g = scheme.granularity
    ok = (
        (g == "per_tensor" and len(shape) == 0)
        or (g == "per_channel" and len(shape) == 1)
        or (g == "per_group" and len(shape) >= 1)
    )
    if not ok:
        allowed = {
            "per_tensor": "a scalar, shape ()",
            "per_channel": "1-D, shape (C,)",
            "per_group": "the tensor's shape with the axis split into groups",
        }[g]
        raise InvalidArgumentError(
            f"{name} must be {allowed} for granularity={g!r}; got {name} of shape "
            f"{shape}"
        )
    if g == "per_group":
        scheme.normalized_axis(len(shape), name)


def _check_zero_point(zp: np.ndarray, scheme: QuantScheme) -> np.ndarray:
    if zp.dtype.kind not in "iu":
        if zp.dtype.kind != "f" or not np.all(np.isfinite(zp) & (zp == np.rint(zp))):
            raise InvalidArgumentError(
                f"zero_point must hold integers; got zero_point={zp!r}"
            )
    zp = zp.astype(np.int64)
    bad = (zp < scheme.qmin) | (zp > scheme.qmax)
    if scheme.symmetric:
        bad |= zp != scheme.symmetric_zero_point
    if np.any(bad):
        value = int(zp[_first_index(bad)]) if zp.ndim else int(zp)
        allowed = (
            f"{scheme.symmetric_zero_point} (symmetric scheme)"
            if scheme.symmetric
            else f"an int in [{scheme.qmin}, {scheme.qmax}]"
        )
        raise InvalidArgumentError(
            f"zero_point must be {allowed}; got zero_point={value}"
        )
    return zp


@dataclass(frozen=True, eq=False)
class QParams:
    """Scale (float64) and zero point (int64) arrays plus the scheme they serve.

    ``x ~= (q - zero_point) * scale``.  Arrays are stored read-only in the
    compact shape of the granularity (see the module docstring); a scalar
    ``zero_point`` is broadcast to the shape of ``scale``.

    >>> qp = QParams(0.5, 0, QuantScheme(bits=8))
    >>> float(qp.scale), int(qp.zero_point)
    (0.5, 0)
    """

    scale: np.ndarray
    zero_point: np.ndarray
    scheme: QuantScheme

    def __post_init__(self):
        check_type("scheme", self.scheme, (QuantScheme,), "a QuantScheme")
        scale = validate_scale(self.scale, "scale").copy()
        _check_compact_shape(scale.shape, self.scheme, "scale")
        zp = _check_zero_point(np.asarray(self.zero_point), self.scheme)
        try:
            zp = np.broadcast_to(zp, scale.shape).copy()
        except ValueError:
            raise InvalidArgumentError(
                f"zero_point must have the shape of scale {scale.shape}; got "
                f"zero_point of shape {zp.shape}"
            ) from None
        scale.setflags(write=False)
        zp.setflags(write=False)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp)

    def expand(self, shape: tuple, name: str = "x") -> tuple[np.ndarray, np.ndarray]:
        """Return (scale, zero_point) arrays that broadcast against ``shape``.

        per_channel: reshaped to size C along ``axis`` and 1 elsewhere; per_group:
        each group's value repeated ``group_size`` times along ``axis``.
        """
        s = self.scheme
        if s.granularity == "per_tensor":
            return self.scale, self.zero_point
        axis = s.normalized_axis(len(shape), name)
        n = shape[axis]
        if s.granularity == "per_channel":
            if self.scale.shape != (n,):
                raise InvalidArgumentError(
                    f"per_channel qparams must have one scale per index of axis "
                    f"{axis} ({n}) of {name} with shape {shape}; got scale of shape "
                    f"{self.scale.shape}"
                )
            target = [1] * len(shape)
            target[axis] = n
            return self.scale.reshape(target), self.zero_point.reshape(target)
        return self._expand_groups(shape, axis, name)

    def _expand_groups(self, shape, axis, name):
        gs = self.scheme.group_size
        expected = list(shape)
        expected[axis] = -(-shape[axis] // gs)  # ceil division
        if self.scale.shape != tuple(expected):
            raise InvalidArgumentError(
                f"per_group qparams for {name} with shape {shape}, axis={axis}, "
                f"group_size={gs} must have shape {tuple(expected)}; got scale of "
                f"shape {self.scale.shape}"
            )
        index = np.arange(shape[axis]) // gs  # group of each position along axis
        scale = np.take(self.scale, index, axis=axis)
        zp = np.take(self.zero_point, index, axis=axis)
        return scale, zp


def _check_group_size(n: int, scheme: QuantScheme, name: str) -> None:
    gs = scheme.group_size
    if gs > n:
        raise InvalidArgumentError(
            f"group_size must be an int in [1, {n}] (the length of axis "
            f"{scheme.axis} of {name}); got group_size={gs}"
        )


def _check_range(lo: np.ndarray, hi: np.ndarray) -> None:
    for name, arr in (("min_val", lo), ("max_val", hi)):
        bad = ~np.isfinite(arr)
        if np.any(bad):
            index = _first_index(bad) if arr.ndim else ()
            value = float(arr[index]) if arr.ndim else float(arr)
            raise InvalidArgumentError(
                f"{name} must be finite; got {name}={value!r}"
                + (f" at index {index}" if arr.ndim else "")
            )
    bad = lo > hi
    if np.any(bad):
        index = _first_index(bad) if lo.ndim else ()
        raise InvalidArgumentError(
            f"min_val must be <= max_val; got min_val={float(lo[index])!r} > "
            f"max_val={float(hi[index])!r}" + (f" at index {index}" if lo.ndim else "")
        )


def _scale_and_zero_point(lo, hi, scheme):
    """Eq. (2.1)-(2.4): float64 scale and half_even-rounded, clamped zero point."""
    qmin, qmax = scheme.qmin, scheme.qmax
    lo = np.minimum(lo, 0.0)  # range extended to include 0
    hi = np.maximum(hi, 0.0)
    with np.errstate(over="ignore"):
        if scheme.symmetric:
            scale = np.maximum(-lo, hi) / ((qmax - qmin) / 2)
        else:
            scale = (hi - lo) / (qmax - qmin)
    if not np.all(np.isfinite(scale)):
        raise InvalidArgumentError(
            "max_val - min_val must be finite in float64; got a range that "
            "overflows float64"
        )
    zero_width = scale == 0.0
    tiny = (scale > 0.0) & (scale < _TINY)
    if np.any(tiny):
        warnings.warn(
            FallbackScaleWarning(
                f"{int(np.count_nonzero(tiny))} scale(s) below the smallest normal "
                f"float64 replaced by {ZERO_RANGE_SCALE}"
            ),
            stacklevel=3,
        )
    scale = np.where(zero_width | tiny, ZERO_RANGE_SCALE, scale)
    if scheme.symmetric:
        zp = np.full(scale.shape, scheme.symmetric_zero_point, dtype=np.int64)
    else:
        zp_real = qmin - round_half_even(lo / scale)
        zp = np.clip(zp_real, qmin, qmax).astype(np.int64)
    return scale, zp


def compute_qparams(min_val, max_val, scheme: QuantScheme) -> QParams:
    """QParams for an observed range [min_val, max_val] (float64, eq. 2.1-2.4).

    ``lo = min(min_val, 0)``, ``hi = max(max_val, 0)``; asymmetric:
    ``scale = (hi - lo) / (qmax - qmin)``, ``zero_point = clamp(qmin -
    half_even(lo / scale), qmin, qmax)``; symmetric: ``scale = max(-lo, hi) /
    ((qmax - qmin) / 2)``, ``zero_point = (qmin + qmax + 1) // 2``.  A zero-width
    range gives ``scale = 1.0`` (0 still maps exactly to ``zero_point``).

    ``min_val`` and ``max_val`` have the compact shape of the granularity:
    scalars for per_tensor, ``(C,)`` for per_channel, the grouped tensor shape
    for per_group.

    >>> qp = compute_qparams(1.0, 3.0, QuantScheme(bits=8, signed=False))
    >>> float(qp.scale) == 3 / 255, int(qp.zero_point)
    (True, 0)
    """
    check_type("scheme", scheme, (QuantScheme,), "a QuantScheme")
    lo = _as_real_array(min_val, "min_val").astype(np.float64)
    hi = _as_real_array(max_val, "max_val").astype(np.float64)
    if lo.shape != hi.shape:
        raise InvalidArgumentError(
            f"min_val and max_val must have the same shape; got min_val of shape "
            f"{lo.shape} and max_val of shape {hi.shape}"
        )
    _check_compact_shape(lo.shape, scheme, "min_val")
    _check_range(lo, hi)
    scale, zp = _scale_and_zero_point(lo, hi, scheme)
    return QParams(scale, zp, scheme)


def _tensor_range(x: np.ndarray, scheme: QuantScheme):
    g = scheme.granularity
    if g == "per_tensor":
        return x.min(), x.max()
    axis = scheme.normalized_axis(x.ndim, "x")
    if g == "per_channel":
        flat = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)  # (C, rest)
        if flat.shape[1] == 0:
            raise InvalidArgumentError(
                f"x must have at least one element per channel; got x of shape "
                f"{x.shape}"
            )
        return flat.min(axis=1), flat.max(axis=1)
    _check_group_size(x.shape[axis], scheme, "x")
    starts = np.arange(0, x.shape[axis], scheme.group_size)
    return np.minimum.reduceat(x, starts, axis=axis), np.maximum.reduceat(
        x, starts, axis=axis
    )


def qparams_from_tensor(x, scheme: QuantScheme) -> QParams:
    """QParams from the min-max of ``x`` per tensor, channel or group (eq. 2.5).

    >>> qp = qparams_from_tensor([[0.0, 1.0], [-2.0, 0.5]], QuantScheme(
    ...     bits=8, symmetric=True, narrow_range=True,
    ...     granularity="per_channel", axis=0))
    >>> (qp.scale * 127).tolist()
    [1.0, 2.0]
    """
    check_type("scheme", scheme, (QuantScheme,), "a QuantScheme")
    x = _as_real_array(x, "x").astype(np.float64)
    if x.size == 0:
        raise InvalidArgumentError(f"x must not be empty; got x of shape {x.shape}")
    check_no_nan(x, "x")
    if np.any(np.isinf(x)):
        count = int(np.count_nonzero(np.isinf(x)))
        raise NonFiniteInputError(
            f"x must be finite for min-max qparams; got {count} inf value(s), first "
            f"at index {_first_index(np.isinf(x))}"
        )
    lo, hi = _tensor_range(x, scheme)
    return compute_qparams(lo, hi, scheme)
