"""Assertions that report the first differing element and both values."""

from __future__ import annotations

import numpy as np

__all__ = ["assert_codes_equal", "assert_within_bound"]


def _first_index(mask: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def assert_codes_equal(actual, expected, *, dtype=None, err_msg: str = "") -> None:
    """Assert integer codes are exactly equal (same shape; optional dtype).

    On failure the message gives the number of differing codes, the first
    differing index and the actual and expected values there.
    """
    a, e = np.asarray(actual), np.asarray(expected)
    prefix = f"{err_msg}: " if err_msg else ""
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise AssertionError(f"{prefix}dtype {a.dtype} != expected {np.dtype(dtype)}")
    if a.shape != e.shape:
        raise AssertionError(f"{prefix}shape {a.shape} != expected shape {e.shape}")
    for name, arr in (("actual", a), ("expected", e)):
        if arr.dtype.kind not in "iub":
            raise AssertionError(f"{prefix}{name} must hold integers; got {arr.dtype}")
    differ = a.astype(object) != e.astype(object) if a.size else np.zeros(a.shape, bool)
    differ = np.asarray(differ, dtype=bool)
    if differ.any():
        i = _first_index(differ)
        raise AssertionError(
            f"{prefix}{int(differ.sum())} of {a.size} codes differ; first at index "
            f"{i}: actual={a[i]!r}, expected={e[i]!r}"
        )


def assert_within_bound(actual, expected, bound, *, err_msg: str = "") -> None:
    """Assert ``|actual - expected| <= bound`` element-wise (bound broadcasts).

    NaN matches only NaN and +-inf only the same infinity.  On failure the
    message gives the count, the worst index, both values and the bound there.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    prefix = f"{err_msg}: " if err_msg else ""
    if a.shape != e.shape:
        raise AssertionError(f"{prefix}shape {a.shape} != expected shape {e.shape}")
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), a.shape)
    with np.errstate(invalid="ignore"):
        err = np.abs(a - e)
        same_special = (np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))
        bad = ~((err <= b) | same_special)
    if bad.any():
        excess = np.where(bad, np.nan_to_num(err - b, nan=np.inf), -np.inf)
        i = _first_index(excess == excess.max())
        raise AssertionError(
            f"{prefix}{int(bad.sum())} of {a.size} values exceed the bound; worst at "
            f"index {i}: actual={a[i]!r}, expected={e[i]!r}, |diff|={err[i]!r}, "
            f"bound={b[i]!r}"
        )
