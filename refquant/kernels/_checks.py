"""Argument checks and broadcasting shared by the pointwise integer kernels."""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError, InvalidTypeError

OUT_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32)
_DTYPE_NAMES = "np.int8, np.uint8, np.int16, np.uint16, np.int32"


def out_dtype_of(out_dtype, name="out_dtype") -> np.dtype:
    """Validate an integer output dtype and return it as ``np.dtype``."""
    try:
        dt = np.dtype(out_dtype)
    except TypeError as exc:
        raise InvalidTypeError(
            f"{name} must be one of {_DTYPE_NAMES}; got {name}={out_dtype!r}"
        ) from exc
    if dt not in [np.dtype(d) for d in OUT_DTYPES]:
        raise InvalidArgumentError(
            f"{name} must be one of {_DTYPE_NAMES}; got {name}={out_dtype!r}"
        )
    return dt


def qrange(dtype) -> tuple[int, int]:
    """Closed integer range ``(qmin, qmax)`` of an integer dtype."""
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def int_codes(name, q) -> np.ndarray:
    """Integer codes as int64 (rejects float, bool and object arrays).

    An int64 array is returned as is (no copy): callers must not write to it.
    """
    arr = np.asarray(q)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidTypeError(
            f"{name} must be an integer array (quantized codes); got {name} of "
            f"dtype {arr.dtype}"
        )
    return arr.astype(np.int64, copy=False)


FLOAT_ACCUMULATOR_DTYPES = (np.float32, np.float64)
_BLOCK = 1 << 15


def _has_fraction(arr) -> bool:
    """True if any value is not a finite integer (``x - trunc(x) != 0``)."""
    flat = arr.reshape(-1)
    tmp = np.empty(min(flat.size, _BLOCK), dtype=arr.dtype)
    with np.errstate(invalid="ignore"):  # inf - inf is NaN: nonzero, rejected
        for start in range(0, flat.size, _BLOCK):  # blocks of 32768 values
            block = flat[start : start + _BLOCK]
            t = tmp[: block.size]
            np.trunc(block, out=t)
            np.subtract(block, t, out=t)
            if t.any():
                return True
    return False


def integer_values(name, acc) -> np.ndarray:
    """Exact integer accumulators: int64, or float32 / float64 holding integers.

    Integer arrays become int64 (no copy when already int64).  float32 and
    float64 arrays (the ``result="float"`` form of
    :func:`refquant.kernels.gemm.exact_affine_gemm`) are returned unchanged
    after one cheap check that every value is a finite integer (``x -
    trunc(x) == 0``; NaN and inf fail it), made in cache-sized blocks.  That
    the integers are the *exact* accumulators is the caller's contract: the
    GEMM guarantees it (float32 within 2**24, float64 within 2**53).
    """
    arr = np.asarray(acc)
    if arr.dtype in FLOAT_ACCUMULATOR_DTYPES:
        if _has_fraction(arr):
            raise InvalidTypeError(
                f"{name} must be an integer array (or a float32 / float64 array "
                f"holding exact integers); got {name} of dtype {arr.dtype} with a "
                "non-integer or non-finite value"
            )
        return arr
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidTypeError(
            f"{name} must be an integer array or a float32 / float64 array of "
            f"exact integers; got {name} of dtype {arr.dtype}"
        )
    return arr.astype(np.int64, copy=False)


def scales(name, value) -> np.ndarray:
    """Positive, finite scale(s) inside the normal float32 range, as float64."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidTypeError(
            f"{name} must be a positive float or array of floats; got {name}={value!r}"
        ) from exc
    tiny, big = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
    bad = ~np.isfinite(arr) | (arr < tiny) | (arr > big)
    if arr.size == 0 or bad.any():
        shown = arr[bad].flat[0] if arr.size else value
        raise InvalidArgumentError(
            f"{name} must be a positive, finite, normal float in [{tiny!r}, "
            f"{big!r}] (the normal float32 range every backend stores); got "
            f"{name}={shown!r}"
        )
    return arr


def zero_points(name, value, dtype=None) -> np.ndarray:
    """Integer zero point(s) as int64, inside ``dtype``'s range when given."""
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.rint(arr))):
            raise InvalidArgumentError(
                f"{name} must be an integer or integer array; got {name}={value!r}"
            )
    arr = arr.astype(np.int64)
    if dtype is not None:
        lo, hi = qrange(dtype)
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise InvalidArgumentError(
                f"{name} must be in [{lo}, {hi}] for {np.dtype(dtype).name}; "
                f"got {name}={value!r}"
            )
    return arr


def along_axis(name, param, ndim, shape, axis) -> np.ndarray:
    """Broadcast a scalar, a 1-D per-channel vector or a full-rank array.

    A 1-D array of length ``shape[axis]`` is laid along ``axis``; a scalar
    stays 0-d; an array with ``ndim`` dimensions must broadcast to ``shape``.
    """
    param = np.asarray(param)
    if param.ndim == 0:
        return param
    if param.ndim == 1 and ndim >= 1:
        axis = axis % ndim
        if param.shape[0] not in (1, shape[axis]):
            raise InvalidArgumentError(
                f"{name} must have length {shape[axis]} (axis {axis}) or be a "
                f"scalar; got {name} of shape {param.shape}"
            )
        new_shape = [1] * ndim
        new_shape[axis] = param.shape[0]
        return param.reshape(new_shape)
    try:
        np.broadcast_shapes(param.shape, tuple(shape))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"{name} of shape {param.shape} does not broadcast to {tuple(shape)}"
        ) from exc
    return param


def clip_to(values, dtype) -> np.ndarray:
    """Clamp float or int values to ``dtype``'s range and cast."""
    lo, hi = qrange(dtype)
    return np.clip(values, lo, hi).astype(dtype)
