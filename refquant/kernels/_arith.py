"""Vectorized rounding of float arrays and exact rounding of real ratios.

Two tools shared by the integer kernels:

* :func:`round_float` rounds a float array by a named rule, exactly (no
  ``floor(x + 0.5)`` double rounding).
* :func:`exact_round_ratio` rounds ``t = (sum_k prod(numerators[k])) /
  prod(denominator)`` to an integer by a named rule, where every factor is an
  int64 or float64 array.  ``t`` is a rational number; the result is the
  correctly rounded integer, decided with error-free float64 transformations
  (Dekker's TwoProduct, Knuth's TwoSum and Shewchuk's expansion growth), so no
  Python integers are needed.  A float64 estimate decides every element whose
  estimate is farther than its error bound from a multiple of 1/2; only the
  remaining (near-tie) elements go through the exact expansion arithmetic.
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError
from refquant.numerics.rounding import apply_rounding

ROUNDING_RULES = ("half_even", "half_away", "half_up", "floor", "ceil")

_SPLITTER = 134217729.0  # 2**27 + 1, Dekker's split constant for float64
_SAFE_ESTIMATE = 2.0**40  # |estimate| beyond this saturates every integer dtype
_MAX_EXPONENT = 900  # exponents kept within +-900 keep every error term normal


def round_float(x, rule: str) -> np.ndarray:
    """Round a float array to integral float values by a named rule.

    Delegates to :func:`refquant.numerics.rounding.apply_rounding` (exact tie
    detection; ``half_up`` is not ``floor(x + 0.5)``).

    >>> round_float(np.array([-2.5, -1.5, 0.5, 2.5]), "half_away")
    array([-3., -2.,  1.,  3.])
    """
    if rule not in ROUNDING_RULES:
        raise InvalidArgumentError(
            f"rounding must be one of {', '.join(map(repr, ROUNDING_RULES))}; "
            f"got rounding={rule!r}"
        )
    return apply_rounding(x, rule)


# ---------------------------------------------------------------- exact pieces
def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _expansion_product(x_terms, y_terms):
    out = []
    for x in x_terms:
        for y in y_terms:
            out.extend(_two_prod(x, y))
    return out


def _sign_of_sum(terms):
    """Exact sign of a sum of float64 arrays (Shewchuk grow-expansion)."""
    expansion = [terms[0]]
    for term in terms[1:]:
        q = term
        grown = []
        for e in expansion:
            q, h = _two_sum(q, e)
            grown.append(h)
        grown.append(q)
        expansion = grown
    sign = np.zeros(np.shape(expansion[0]), dtype=np.int64)
    for e in expansion:  # increasing magnitude: the last nonzero one decides
        sign = np.where(e != 0, np.sign(e).astype(np.int64), sign)
    return sign


def _int_terms(v):
    """Float64 arrays summing exactly to an int64 array (one or two terms)."""
    v = np.asarray(v, dtype=np.int64)
    if v.size == 0 or np.abs(v).max() < 2**53:
        return [v.astype(np.float64)]  # exact in float64: one term suffices
    hi = (v >> 26) << 26  # at most 37 significant bits
    return [hi.astype(np.float64), (v - hi).astype(np.float64)]


class _Factors:
    """A product of int64 and float64 factors, normalised for exact work."""

    def __init__(self, factors, shape):
        self.ints = []
        self.mantissas = []
        self.exponent = np.zeros(shape, dtype=np.int64)
        for f in factors:
            f = np.broadcast_to(np.asarray(f), shape)
            if np.issubdtype(f.dtype, np.integer):
                self.ints.append(f.astype(np.int64))
            else:
                m, e = np.frexp(f.astype(np.float64))
                self.mantissas.append(m)
                self.exponent = self.exponent + e

    def terms(self, mask, exponent_shift):
        """Float64 expansion of the product on ``mask``, times 2**shift."""
        mantissas = [m[mask] for m in self.mantissas] or [np.ones(mask.sum())]
        first = np.ldexp(mantissas[0], exponent_shift)
        terms = [first]
        for m in mantissas[1:]:
            terms = _expansion_product(terms, [m])
        for v in self.ints:
            terms = _expansion_product(terms, _int_terms(v[mask]))
        return terms

    def sign(self):
        sign = np.ones(self.exponent.shape, dtype=np.int64)
        for v in self.ints:
            sign = sign * np.sign(v)
        for m in self.mantissas:
            sign = sign * np.sign(m).astype(np.int64)
        return sign


def _estimate(numerators, denominator, shape):
    """Float64 estimate of the ratio and a bound on its absolute error."""
    den = np.ones(shape)
    for f in denominator:
        den = den * np.asarray(f, dtype=np.float64)
    total = np.zeros(shape)
    magnitude = np.zeros(shape)
    for product in numerators:
        term = np.ones(shape)
        for f in product:
            term = term * np.asarray(f, dtype=np.float64)
        total = total + term
        magnitude = magnitude + np.abs(term)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # each product and the quotient carry at most ~8 float64 roundings
        return total / den, magnitude / den * 2.0**-45


def exact_round_ratio(numerators, denominator, rule: str):
    """Correctly rounded ``sum_k prod(numerators[k]) / prod(denominator)``.

    Parameters
    ----------
    numerators : list of list of array_like
        Sum of products; each factor an int64 or float64 array (broadcast).
    denominator : list of array_like
        Positive factors (int64 or float64).
    rule : str
        Rounding rule (``half_even``, ``half_away``, ``half_up``, ``floor``,
        ``ceil``), applied to the exact rational value.

    Returns
    -------
    numpy.ndarray of float64
        Integral values; magnitudes beyond 2**40 are returned as the estimate
        (callers clamp to an integer dtype, which makes them exact).
    """
    arrays = [f for p in numerators for f in p] + list(denominator)
    shape = np.broadcast_shapes(*(np.shape(f) for f in arrays))
    r, error = _estimate(numerators, denominator, shape)
    result = round_float(r, rule)

    near = np.abs(2 * r - np.rint(2 * r)) <= 2 * error
    ambiguous = near & (np.abs(r) < _SAFE_ESTIMATE)
    zero = r == 0
    if len(numerators) == 1:
        ambiguous &= ~zero
    else:
        zero &= False
    if zero.any():
        result = np.where(zero, _round_tiny(numerators, shape, rule), result)
    if ambiguous.any():
        result = np.array(result, copy=True)
        result[ambiguous] = _exact_subset(
            numerators, denominator, shape, r, ambiguous, rule
        )
    return result


def _round_tiny(numerators, shape, rule):
    """Rounding of a single product whose estimate is 0 (so |t| < 1/2)."""
    sign = _Factors(numerators[0], shape).sign()
    if rule == "floor":
        return np.where(sign < 0, -1.0, 0.0)
    if rule == "ceil":
        return np.where(sign > 0, 1.0, 0.0)
    return np.zeros(shape)


def _exact_subset(numerators, denominator, shape, r, mask, rule):
    num = [_Factors(p, shape) for p in numerators]
    den = _Factors(denominator, shape)
    den_exp = den.exponent[mask]
    shifts = [n.exponent[mask] - den_exp for n in num]
    for s in shifts:
        if np.any(np.abs(s) > _MAX_EXPONENT):
            raise InvalidArgumentError(
                "the exact path needs scales within 2**900 of each other; got "
                f"an exponent difference of {int(np.max(np.abs(s)))}"
            )
    num_terms = [t for n, s in zip(num, shifts) for t in n.terms(mask, s)]
    den_terms = den.terms(mask, np.zeros_like(den_exp))

    def sign_minus(m):  # sign(t - m), m a float64 array of multiples of 1/2
        neg = [-t for t in _expansion_product(den_terms, [m])]
        return _sign_of_sum(num_terms + neg)

    floor = np.floor(r[mask])
    below = sign_minus(floor) < 0
    above = ~below & (sign_minus(floor + 1) >= 0)
    floor = floor - below + above  # exact floor(t)
    is_int = sign_minus(floor) == 0
    half = sign_minus(floor + 0.5)
    if rule == "floor":
        return floor
    if rule == "ceil":
        return floor + ~is_int
    if rule == "half_up":
        return floor + (half >= 0)
    if rule == "half_away":
        return floor + np.where(floor >= 0, half >= 0, half > 0)
    odd = np.mod(floor, 2) == 1
    return floor + ((half > 0) | ((half == 0) & odd))


# ------------------------------------------------------------- x / scale
QUANTIZE_ARITHMETICS = ("exact", "float64", "float32_divide", "float32_reciprocal")


def divide_round(x, scale, arithmetic: str, rule: str) -> np.ndarray:
    """Round ``x / scale`` to integral float64 values.

    ``arithmetic`` picks how the quotient is evaluated: ``exact`` (the real
    quotient of the float64 values, correctly rounded), ``float64``
    (``f64(x) / f64(scale)``), ``float32_divide`` (``f32(x) / f32(scale)``) or
    ``float32_reciprocal`` (``f32(x) * f32(1 / f32(scale))``); ``rule`` then
    rounds it.  NaN stays NaN and +-inf stays +-inf (callers clamp).
    """
    x = np.asarray(x)
    scale = np.asarray(scale, dtype=np.float64)
    if arithmetic == "exact":
        x64 = x.astype(np.float64)
        finite = np.isfinite(x64)
        safe = np.where(finite, x64, 0.0)
        out = exact_round_ratio([[safe]], [scale], rule)
        return np.where(finite, out, x64 / scale)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if arithmetic == "float64":
            q = x.astype(np.float64) / scale
        elif arithmetic == "float32_divide":
            q = x.astype(np.float32) / scale.astype(np.float32)
        elif arithmetic == "float32_reciprocal":
            inverse = np.float32(1.0) / scale.astype(np.float32)
            q = x.astype(np.float32) * inverse
        else:
            raise InvalidArgumentError(
                "arithmetic must be one of "
                f"{', '.join(map(repr, QUANTIZE_ARITHMETICS))}; "
                f"got arithmetic={arithmetic!r}"
            )
    return round_float(q, rule).astype(np.float64)
