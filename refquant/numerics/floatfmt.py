"""Casts to float16 and bfloat16 (spec: specs/float_formats.md).

Both round to nearest, ties to even (IEEE 754 RNE), once, from the exact input
value (float64 input is never rounded through float32; float32 and float16
input is rounded from its bits; integers from their exact value); NaN stays
NaN; a finite value at or beyond the overflow threshold becomes +-inf (float16:
|x| >= 65520 = 2**16 - 2**4; bfloat16: |x| >= 2**128 - 2**119).  With
``report_overflow=True`` a :class:`~refquant.errors.Float16OverflowWarning`
gives the number of finite inputs that became infinite.
"""

from __future__ import annotations

import warnings

import numpy as np

from refquant._validation import check_type
from refquant.errors import Float16OverflowWarning, InvalidTypeError
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


def _cast_input(x) -> np.ndarray:
    """x as float16/32/64 or integer array; wider floats would need two roundings."""
    x = _as_real_array(x, "x")
    if x.dtype.kind == "f" and x.dtype.itemsize > 8:
        raise InvalidTypeError(
            f"x must be float16, float32, float64 or an integer array; got x of "
            f"dtype {x.dtype} (cast it to float64 first if one extra rounding is "
            f"acceptable)"
        )
    return x


def to_float16(x, *, report_overflow: bool = False) -> np.ndarray:
    """``fp16(x)``: IEEE binary16, round to nearest even, one rounding from x.

    float64 input is rounded once, from its own bits (NumPy's float64 -> float16
    cast, not via float32).  |x| >= 65520 -> +-inf.

    >>> to_float16([70000.0, 65519.99, 65520.0, 1.0 + 2.0**-11]).tolist()
    [inf, 65504.0, inf, 1.0]
    """
    check_type("report_overflow", report_overflow, (bool,), "a bool")
    x = _cast_input(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)  # exact below 2**53; larger ints become inf anyway
    with np.errstate(over="ignore", invalid="ignore"):
        y = x.astype(np.float16)
    _report(x, y, "float16", report_overflow)
    return y


def _float32_to_bfloat16(x32: np.ndarray) -> np.ndarray:
    """RNE on the low 16 bits of f32: ``(u + 0x7FFF + ((u >> 16) & 1)) >> 16``."""
    u = x32.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan_bits = ((u >> 16) & 0x8000) | 0x7FC0
    return np.where(np.isnan(x32), nan_bits, rounded).astype(np.uint16)


def _float64_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """RNE of float64 x to 8 significant bits: ``half_even(x * 2**(8-e)) * 2**(e-8)``.

    ``x = f * 2**e`` (frexp, f in [0.5, 1)); ``e`` is raised to -125 below the
    smallest normal 2**-126, so subnormals share the quantum 2**-133.  Both
    power-of-two scalings are exact; ``rint`` is half_even; a result >= 2**128
    becomes +-inf in the cast to float32, which is exact otherwise.
    """
    e = np.maximum(np.frexp(x)[1], -125)
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.ldexp(np.rint(np.ldexp(x, 8 - e)), e - 8).astype(np.float32)
    nan_bits = np.where(np.signbit(x), 0xFFC0, 0x7FC0).astype(np.uint16)
    return np.where(np.isnan(x), nan_bits, _float32_to_bfloat16(y))


def _int_to_float64_round_to_odd(n: np.ndarray) -> np.ndarray:
    """float64 of integer n rounded to odd (exact for |n| < 2**53).

    ``a = |n|`` (uint64), ``s = max(bit_length(a) - 53, 0)``, ``t = (a >> s) |
    sticky`` where sticky is 1 if any shifted-out bit is 1.  53 >= 8 + 2 bits
    rounded to odd, then RNE to bfloat16, equals one RNE of n.
    """
    if n.dtype.itemsize < 8:
        return n.astype(np.float64)  # exact
    u = n.astype(np.uint64)  # two's complement for int64
    a = np.where(n < 0, ~u + np.uint64(1), u)  # |n|, 2**63 for INT64_MIN
    s = np.maximum(np.frexp(a.astype(np.float64))[1] - 53, 0).astype(np.uint64)
    sticky = (a & ((np.uint64(1) << s) - np.uint64(1))) != 0
    t = (a >> s) | sticky.astype(np.uint64)  # < 2**53
    return np.copysign(np.ldexp(t.astype(np.float64), s.astype(np.int64)), n)


def bfloat16_bits(x) -> np.ndarray:
    """bfloat16 bits (uint16) of ``x`` rounded once to nearest even.

    float32 and float16 input: ``u = bits(f32(x))``, ``(u + 0x7FFF + ((u >> 16)
    & 1)) >> 16``.  float64 input: rounded directly to 8 significant bits (never
    through float32).  Integers: from their exact value.  A NaN keeps its sign
    and becomes the quiet NaN ``0x7FC0``.
    """
    x = _cast_input(x)
    if x.dtype.kind != "f":
        return _float64_to_bfloat16(_int_to_float64_round_to_odd(x))
    if x.dtype == np.float64:
        return _float64_to_bfloat16(x)
    return _float32_to_bfloat16(x.astype(np.float32))  # float16 -> f32 is exact


def to_bfloat16(x, *, report_overflow: bool = False) -> np.ndarray:
    """``bf16(x)`` returned as float32 values: one RNE rounding from the input.

    float32 input: RNE on the low 16 bits of its bits; float64 input: RNE to 8
    significant bits straight from the float64 value (no float32 step, so
    ``1 + 2**-8 + 2**-30`` gives 1.0078125 and the overflow threshold is
    2**128 - 2**119 for both).

    >>> to_bfloat16([1.00390625, 1.01171875, 1 + 2**-8 + 2**-30, 3.4e38]).tolist()
    [1.0, 1.015625, 1.0078125, inf]
    """
    check_type("report_overflow", report_overflow, (bool,), "a bool")
    x = _cast_input(x)
    y = (bfloat16_bits(x).astype(np.uint32) << 16).view(np.float32)
    _report(x, y, "bfloat16", report_overflow)
    return y
