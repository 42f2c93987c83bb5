"""Slow exact scalar oracles for fixed-point and requantization arithmetic.

Each function takes Python ints / floats and computes with Python ints or
:class:`fractions.Fraction` only, one element at a time, straight from the
written definition (gemmlowp, TFLite).  They exist to test the vectorized
implementations in :mod:`refquant.numerics.fixedpoint` and
:mod:`refquant.kernels.requantize`; they are not fast.
"""

from __future__ import annotations

import math
from fractions import Fraction

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def c_div(a: int, b: int) -> int:
    """C integer division: the quotient truncated toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def round_fraction(t: Fraction, rule: str) -> int:
    """Round a rational exactly by a named rule."""
    t = Fraction(t)
    floor = math.floor(t)
    frac = t - floor
    half = Fraction(1, 2)
    if rule == "floor":
        return floor
    if rule == "ceil":
        return math.ceil(t)
    if rule == "half_up":
        return floor + (frac >= half)
    if rule == "half_away":
        return floor + (frac >= half if t >= 0 else frac > half)
    if rule == "half_even":
        return floor + (frac > half or (frac == half and floor % 2 == 1))
    raise ValueError(f"unknown rounding rule {rule!r}")


def quantize_multiplier(real: float, single_rounding: bool = False):
    """``(multiplier, shift)`` with ``real ~= multiplier * 2**(shift - 31)``."""
    if real == 0:
        return 0, 0
    frac = Fraction(real)
    shift = 0
    while frac >= 1:
        frac /= 2
        shift += 1
    while frac < Fraction(1, 2):
        frac *= 2
        shift -= 1
    q = round_fraction(frac * 2**31, "half_away")
    if q == 2**31:
        q, shift = 2**30, shift + 1
    if shift < -31:
        return 0, 0
    if single_rounding and shift > 30:
        return INT32_MAX, 30
    return q, shift


def saturating_doubling_high_mul(a: int, b: int) -> int:
    """gemmlowp SRDHM from its definition (nudge, C truncating division)."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    return c_div(ab + nudge, 2**31)


def rounding_right_shift(x: int, exponent: int) -> int:
    """RoundingDivideByPOT: ``x / 2**exponent`` rounded half away from zero."""
    return round_fraction(Fraction(x, 2**exponent), "half_away")


def multiply_by_quantized_multiplier(x, multiplier, shift, rounding="double"):
    """TFLite MBQM in its double, single or double_up form."""
    if rounding == "single":
        return round_fraction(Fraction(x * multiplier, 2 ** (31 - shift)), "half_up")
    left, right = max(shift, 0), max(-shift, 0)
    high = saturating_doubling_high_mul(x * 2**left, multiplier)
    if rounding == "double":
        return rounding_right_shift(high, right)
    return round_fraction(Fraction(high, 2**right), "half_up")


def multiply_by_quantized_multiplier_int64(x: int, multiplier: int, shift: int):
    """TFLite int64 MBQM: 16-bit multiplier (ties up), one rounding (ties up)."""
    if multiplier < 0x7FFF0000:
        reduced = round_fraction(Fraction(multiplier, 2**16), "half_up")
    else:
        reduced = 0x7FFF
    return round_fraction(Fraction(x * reduced, 2 ** (15 - shift)), "half_up")


def exact_requantize(acc, s_in, s_w, s_out, zero_point, qmin, qmax, rule):
    """``clamp(round(acc * s_in * s_w / s_out) + zero_point)`` over rationals."""
    t = Fraction(acc) * Fraction(s_in) * Fraction(s_w) / Fraction(s_out)
    return min(max(round_fraction(t, rule) + zero_point, qmin), qmax)
