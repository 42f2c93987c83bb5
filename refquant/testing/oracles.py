"""Slow, exact scalar oracles (Python ints and ``fractions.Fraction``).

Each oracle restates one equation of the specs with exact rational arithmetic
and no NumPy, so the vectorized code can be tested against it element by
element.  Floating-point steps that a backend performs (float64 or float32
division, the float32 reciprocal, the final float32 cast) are modeled by
:func:`round_to_format`, which rounds an exact rational to a binary format with
round-to-nearest-even, gradual underflow and overflow to infinity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "BFLOAT16",
    "FLOAT16",
    "FLOAT32",
    "FLOAT64",
    "FloatFormat",
    "dequantize_oracle",
    "quantize_oracle",
    "round_rational",
    "round_to_format",
    "to_bfloat16_oracle",
    "to_float16_oracle",
]


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format: ``mant_bits`` stored fraction bits,
    normal exponents in ``[emin, emax]``."""

    name: str
    mant_bits: int
    emin: int
    emax: int


FLOAT16 = FloatFormat("float16", 10, -14, 15)
BFLOAT16 = FloatFormat("bfloat16", 7, -126, 127)
FLOAT32 = FloatFormat("float32", 23, -126, 127)
FLOAT64 = FloatFormat("float64", 52, -1022, 1023)

NEAREST_RULES = ("half_even", "half_away", "half_up")


def round_rational(value: Fraction, rule: str, u: float | None = None) -> int:
    """Round an exact rational to an integer with the named rule.

    ``stochastic`` needs ``u`` in [0, 1): the result is ``floor + (u < frac)``.
    """
    value = Fraction(value)
    low = math.floor(value)
    frac = value - low  # in [0, 1)
    if rule == "floor":
        return low
    if rule == "ceil":
        return low + (frac > 0)
    if rule == "stochastic":
        if u is None:
            raise ValueError("stochastic rounding needs u in [0, 1)")
        return low + (Fraction(u) < frac)
    if rule not in NEAREST_RULES:
        raise ValueError(f"unknown rounding rule {rule!r}")
    half = Fraction(1, 2)
    if frac != half:
        return low + (frac > half)
    if rule == "half_even":
        return low + (low % 2)
    if rule == "half_away":
        return low + 1 if value > 0 else low
    return low + 1  # half_up


def round_to_format(value: Fraction, fmt: FloatFormat) -> Fraction | float:
    """Round an exact rational to ``fmt`` (nearest, ties to even).

    Returns the rounded value as a ``Fraction``, or ``+-math.inf`` on overflow.
    """
    value = Fraction(value)
    if value == 0:
        return Fraction(0)
    a = abs(value)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1  # now 2**e <= a < 2**(e + 1)
    e = max(e, fmt.emin)  # subnormals share the quantum of the smallest binade
    quantum = Fraction(2) ** (e - fmt.mant_bits)
    rounded = round_rational(a / quantum, "half_even") * quantum
    if rounded >= Fraction(2) ** (fmt.emax + 1):
        return math.copysign(math.inf, value)
    return rounded if value > 0 else -rounded


def _to_float(value: Fraction | float, like: float) -> float:
    if isinstance(value, float):  # +-inf
        return value
    return math.copysign(float(value), like) if value == 0 else float(value)


def to_float16_oracle(x: float) -> float:
    """float16 value of the float ``x`` (one RNE rounding), as a Python float."""
    if math.isnan(x) or math.isinf(x):
        return x
    return _to_float(round_to_format(Fraction(x), FLOAT16), x)


def to_bfloat16_oracle(x: float | int) -> float:
    """bfloat16 value of the exact number ``x`` (one RNE rounding), as a float.

    Exact for every float64, float32 and float16 value and every int: the
    input is read as a ``Fraction`` and rounded once, never through float32.
    """
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return x
    like = x if isinstance(x, float) else (1.0 if x >= 0 else -1.0)
    return _to_float(round_to_format(Fraction(x), BFLOAT16), like)


def _quotient(x: float, scale: float, arithmetic: str) -> Fraction | float:
    """``x / scale`` as the named arithmetic computes it (exact or rounded)."""
    if arithmetic == "exact":
        return Fraction(x) / Fraction(scale)
    if arithmetic == "float64":
        return round_to_format(Fraction(x) / Fraction(scale), FLOAT64)
    x32 = round_to_format(Fraction(x), FLOAT32)
    s32 = round_to_format(Fraction(scale), FLOAT32)
    if isinstance(x32, float):
        return x32
    if arithmetic == "float32_divide":
        return round_to_format(x32 / s32, FLOAT32)
    if arithmetic == "float32_reciprocal":
        inverse = round_to_format(1 / s32, FLOAT32)
        if isinstance(inverse, float):
            return math.copysign(math.inf, x) if x32 != 0 else Fraction(0)
        return round_to_format(x32 * inverse, FLOAT32)
    raise ValueError(f"unknown arithmetic {arithmetic!r}")


def quantize_oracle(
    x: float,
    scale: float,
    zero_point: int,
    qmin: int,
    qmax: int,
    rounding: str = "half_even",
    arithmetic: str = "exact",
    u: float | None = None,
) -> int:
    """``clamp(round(x / scale) + zero_point, qmin, qmax)`` for one element.

    ``arithmetic`` names how ``x / scale`` is evaluated ("exact", "float64",
    "float32_divide", "float32_reciprocal"); +-inf saturate; NaN raises.
    """
    if math.isnan(x):
        raise ValueError("x is NaN")
    if math.isinf(x):
        return qmax if x > 0 else qmin
    t = _quotient(x, scale, arithmetic)
    if isinstance(t, float):  # overflowed to +-inf
        return qmax if t > 0 else qmin
    return min(max(round_rational(t, rounding, u) + zero_point, qmin), qmax)


def dequantize_oracle(
    q: int, scale: float, zero_point: int, dtype: str = "float32"
) -> float:
    """``(q - zero_point) * scale`` rounded to float64, then to ``dtype``."""
    exact = (int(q) - int(zero_point)) * Fraction(scale)
    value = round_to_format(exact, FLOAT64)
    if dtype == "float32" and not isinstance(value, float):
        value = round_to_format(value, FLOAT32)
    return _to_float(value, 1.0)
