"""Named, vectorized rounding rules (spec: specs/rounding.md).

Every rounding site in refquant names one of these rules:

======================  ==========================================  ============
name                    rule                                        2.5, -2.5
======================  ==========================================  ============
``half_even``           nearest integer, ties to the even one       2, -2
``half_away``           nearest integer, ties away from zero        3, -3
``half_up``             nearest integer, ties toward +inf           3, -2
``floor``               largest integer <= x                        2, -3
``ceil``                smallest integer >= x                       3, -2
``stochastic``          floor(x) + 1 with probability x - floor(x)  2 or 3, ...
======================  ==========================================  ============

Each function maps a real array to a float array of the same floating dtype
(integer input is widened to float64) holding integer values; +-inf and NaN pass
through unchanged.  Tie detection is exact: ``d = x - rint(x)`` is computed
without rounding error (Sterbenz), so ``d == +-0.5`` identifies exactly the
inputs that lie halfway between two integers.
"""

from __future__ import annotations

import numbers

import numpy as np

from refquant._validation import OneOf, check
from refquant.errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "ROUNDING_RULES",
    "apply_rounding",
    "as_generator",
    "ceil",
    "floor",
    "half_away",
    "half_even",
    "half_up",
    "round_ceil",
    "round_floor",
    "round_half_away",
    "round_half_even",
    "round_half_up",
    "round_stochastic",
    "stochastic",
]


def _as_float_array(x, name: str = "x") -> np.ndarray:
    """Return ``x`` as a floating array; integers widen to float64."""
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        return arr
    if arr.dtype.kind in "iu":
        return arr.astype(np.float64)
    raise InvalidTypeError(
        f"{name} must be a real numeric array (float or int); got {name} of dtype "
        f"{arr.dtype}"
    )


def _tie_offset(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Return ``x - r`` for ``r = rint(x)``; exact, in [-0.5, 0.5] (NaN at inf)."""
    with np.errstate(invalid="ignore"):
        return x - r


def round_half_even(x) -> np.ndarray:
    """Round to nearest, ties to even: ``rint(x)`` (IEEE default, RNE).

    >>> round_half_even([0.5, 1.5, 2.5, -0.5, -2.5]).tolist()
    [0.0, 2.0, 2.0, -0.0, -2.0]
    """
    return np.rint(_as_float_array(x))


def round_half_away(x) -> np.ndarray:
    """Round to nearest, ties away from zero (C ``round``, RHAZ).

    ``r = rint(x)``; where ``x - r == 0.5`` and x > 0, add 1; where
    ``x - r == -0.5`` and x < 0, subtract 1.

    >>> round_half_away([0.5, 1.5, 2.5, -0.5, -2.5]).tolist()
    [1.0, 2.0, 3.0, -1.0, -3.0]
    """
    x = _as_float_array(x)
    r = np.rint(x)
    d = _tie_offset(x, r)
    up = (d == 0.5) & (x > 0)
    down = (d == -0.5) & (x < 0)
    return r + up.astype(x.dtype) - down.astype(x.dtype)


def round_half_up(x) -> np.ndarray:
    """Round to nearest, ties toward +inf: ``floor(x + 1/2)`` evaluated exactly.

    ``r = rint(x)``; where ``x - r == 0.5`` (a tie rounded down), add 1.

    >>> round_half_up([0.5, 1.5, 2.5, -0.5, -2.5]).tolist()
    [1.0, 2.0, 3.0, 0.0, -2.0]
    """
    x = _as_float_array(x)
    r = np.rint(x)
    return r + (_tie_offset(x, r) == 0.5).astype(x.dtype)


def round_floor(x) -> np.ndarray:
    """Round toward -inf: ``floor(x)``.

    >>> round_floor([0.5, 2.5, -0.5, -2.5]).tolist()
    [0.0, 2.0, -1.0, -3.0]
    """
    return np.floor(_as_float_array(x))


def round_ceil(x) -> np.ndarray:
    """Round toward +inf: ``ceil(x)``.

    >>> round_ceil([0.5, 2.5, -0.5, -2.5]).tolist()
    [1.0, 3.0, -0.0, -2.0]
    """
    return np.ceil(_as_float_array(x))


def as_generator(rng, name: str = "rng") -> np.random.Generator:
    """Return a Generator for an explicit int seed or a Generator.

    ``None`` is refused: stochastic rounding must be reproducible.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if int(rng) < 0:
            raise InvalidArgumentError(
                f"{name} must be an int seed >= 0 or a numpy.random.Generator; "
                f"got {name}={rng!r}"
            )
        return np.random.default_rng(int(rng))
    raise InvalidTypeError(
        f"{name} must be an int seed >= 0 or a numpy.random.Generator; got "
        f"{name}={rng!r} of type {type(rng).__name__}. Stochastic rounding needs "
        "an explicit seed"
    )


def round_stochastic(x, rng) -> np.ndarray:
    """Round down or up at random: ``floor(x) + (u < x - floor(x))``.

    ``u = rng.random(x.shape)`` (float64 uniform on [0, 1), drawn in C order), so
    ``P(up) = x - floor(x)`` and integers never move.  ``rng`` is an int seed or a
    ``numpy.random.Generator``; ``x - floor(x)`` is evaluated in float64.

    >>> round_stochastic([1.0, 2.0, -3.0], rng=0).tolist()
    [1.0, 2.0, -3.0]
    """
    x = _as_float_array(x)
    generator = as_generator(rng)
    f = np.floor(x)
    with np.errstate(invalid="ignore"):
        frac = x.astype(np.float64) - f.astype(np.float64)  # [0, 1]; NaN at inf
    u = generator.random(x.shape)
    return f + (u < frac).astype(x.dtype)


half_even = round_half_even
half_away = round_half_away
half_up = round_half_up
floor = round_floor
ceil = round_ceil
stochastic = round_stochastic

# rule name -> vectorized function (``stochastic`` takes an extra ``rng``)
ROUNDING_RULES = {
    "half_even": round_half_even,
    "half_away": round_half_away,
    "half_up": round_half_up,
    "floor": round_floor,
    "ceil": round_ceil,
    "stochastic": round_stochastic,
}

ROUNDING_NAMES = OneOf(tuple(ROUNDING_RULES))


def check_rounding(rule, rng=None, name: str = "rounding") -> None:
    """Validate a rounding rule name and its ``rng`` (required for stochastic)."""
    check(name, rule, ROUNDING_NAMES)
    if rule == "stochastic":
        as_generator(rng)
    elif rng is not None:
        raise InvalidArgumentError(
            f"rng is only used by rounding='stochastic'; got rng={rng!r} with "
            f"{name}={rule!r}"
        )


def apply_rounding(x, rule: str, *, rng=None) -> np.ndarray:
    """Round ``x`` with the named rule (one of :data:`ROUNDING_RULES`).

    >>> apply_rounding([2.5, -2.5], "half_up").tolist()
    [3.0, -2.0]
    """
    check_rounding(rule, rng)
    if rule == "stochastic":
        return round_stochastic(x, rng)
    return ROUNDING_RULES[rule](x)
