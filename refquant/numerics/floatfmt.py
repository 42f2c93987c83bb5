"""Casts to float16 and bfloat16 (spec: specs/float_formats.md).

Both round to nearest, ties to even (IEEE 754 RNE); NaN stays NaN; a finite
value at or beyond the overflow threshold becomes +-inf (float16: |x| >= 65520;
bfloat16: |x| >= 2**128 - 2**119).  With ``report_overflow=True`` a
:class:`~refquant.errors.Float16OverflowWarning` gives the number of finite
inputs that became infinite.
"""

from __future__ import annotations

import warnings

import numpy as np

from refquant._validation import check_type
from refquant.errors import Float16OverflowWarning
from refquant.numerics.qparams import _as_real_array

__all__ = ["bfloat16_bits", "to_bfloat16", "to_float16"]


def _report(x: np.ndarray, y: np.ndarray, fmt: str, report: bool) -> None:
    if not report:
        return
    with np.errstate(invalid="ignore"):
        count = int(np.count_nonzero(np.isfinite(x) & np.isinf(y)))
    if count:
        warnings.warn(
            Float16OverflowWarning(
                f"{count} finite value(s) overflowed to +-inf in the cast to {fmt}"
            ),
            stacklevel=3,
        )


def to_float16(x, *, report_overflow: bool = False) -> np.ndarray:
    """``fp16(x)``: IEEE binary16, round to nearest even, one rounding from x.

    float64 input is rounded once (not via float32).  |x| >= 65520 -> +-inf.

    >>> to_float16([70000.0, 65519.99, 65520.0, 1.0 + 2.0**-11]).tolist()
    [inf, 65504.0, inf, 1.0]
    """
    check_type("report_overflow", report_overflow, (bool,), "a bool")
    x = _as_real_array(x, "x")
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        y = x.astype(np.float16)
    _report(x, y, "float16", report_overflow)
    return y


def bfloat16_bits(x) -> np.ndarray:
    """Upper 16 bits of ``f32(x)`` rounded to nearest even, as uint16 bfloat16 bits.

    ``u = bits(f32(x))``; ``u + 0x7FFF + ((u >> 16) & 1)`` then ``>> 16`` (RNE on
    the low 16 bits); a NaN keeps its sign and becomes the quiet NaN ``0x7FC0``.
    """
    x32 = np.asarray(x, dtype=np.float32)
    u = x32.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan_bits = ((u >> 16) & 0x8000) | 0x7FC0
    return np.where(np.isnan(x32), nan_bits, rounded).astype(np.uint16)


def to_bfloat16(x, *, report_overflow: bool = False) -> np.ndarray:
    """``bf16(f32(x))`` returned as float32 values: RNE on the low 16 bits of f32.

    float64 input is first rounded to float32 (RNE), then to bfloat16: two
    roundings, as every bfloat16 conversion from float32 does.

    >>> to_bfloat16([1.00390625, 1.01171875, 3.4e38]).tolist()
    [1.0, 1.015625, inf]
    """
    check_type("report_overflow", report_overflow, (bool,), "a bool")
    x = _as_real_array(x, "x")
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    bits = bfloat16_bits(x32).astype(np.uint32) << 16
    y = bits.view(np.float32)
    _report(x, y, "bfloat16", report_overflow)
    return y
