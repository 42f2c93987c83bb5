"""gemmlowp / TFLite fixed-point multiplier arithmetic, vectorized over int64.

A real multiplier ``M >= 0`` is stored as an int32 ``multiplier`` in
``[2**30, 2**31)`` (a Q0.31 fraction in [0.5, 1)) and a power-of-two ``shift``:
``M ~= multiplier * 2**(shift - 31)``.  Integer values are then scaled by
``M`` with integer operations only.  Every function takes and returns int64
NumPy arrays (scalars broadcast) and checks its contract ranges; see
``specs/fixed_point.md`` for the equations and rounding rules.

Division convention: NumPy ``>>`` is an arithmetic shift, i.e. floor division by
a power of two; C ``/`` truncates toward zero, which is emulated explicitly
where gemmlowp relies on it.
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
MULTIPLY_ROUNDINGS = ("double", "single", "double_up")


# ------------------------------------------------------------------ checking
def _as_int64(name, value):
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArgumentError(
            f"{name} must be an integer array; got {name} of dtype {arr.dtype}"
        )
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise InvalidArgumentError(f"{name} must fit int64; got {name}={arr.max()}")
    return arr.astype(np.int64)


def _check_range(name, arr, low, high, what=""):
    if arr.size == 0:
        return
    bad = (arr < low) | (arr > high)
    if bad.any():
        value = arr[bad].flat[0]
        raise InvalidArgumentError(
            f"{name} must be in [{low}, {high}]{what}; got {name}={int(value)}"
        )


def _scalar_or_array(template, *arrays):
    if np.ndim(template) == 0:
        return tuple(int(a) for a in arrays)
    return arrays


# ------------------------------------------------------------ multiplier form
def quantize_multiplier(real, *, single_rounding: bool = False):
    """Quantize a real multiplier to ``(multiplier, shift)``.

    ``real = frac * 2**shift`` with ``frac`` in [0.5, 1) (``frexp``), then
    ``multiplier = round_half_away(frac * 2**31)`` (TFLite ``std::round``).

    Special cases, in order: ``real == 0`` gives ``(0, 0)``; a multiplier that
    rounds to ``2**31`` becomes ``2**30`` with ``shift + 1``; ``shift < -31``
    flushes to ``(0, 0)``; with ``single_rounding=True`` a ``shift > 30`` is
    capped to ``(2**31 - 1, 30)`` (TFLite's single-rounding build).

    Parameters
    ----------
    real : float or array_like of float
        Non-negative finite multiplier(s); values >= 1 are allowed.
    single_rounding : bool
        Apply the single-rounding build's cap on the shift.

    Returns
    -------
    (multiplier, shift) : ints, or int64 arrays for array input
        ``multiplier`` in {0} U [2**30, 2**31 - 1].

    >>> quantize_multiplier(0.3)
    (1288490189, -1)
    >>> quantize_multiplier(1.0)
    (1073741824, 1)
    """
    m = np.asarray(real, dtype=np.float64)
    if m.size and (not np.all(np.isfinite(m)) or np.any(m < 0)):
        bad = m[~np.isfinite(m) | (m < 0)].flat[0]
        raise InvalidArgumentError(
            f"real must be a finite number >= 0; got real={float(bad)!r}"
        )
    frac, shift = np.frexp(m)
    q = np.floor(frac * 2.0**31 + 0.5).astype(np.int64)  # exact: frac*2^31 < 2^31
    shift = shift.astype(np.int64)
    carry = q == 2**31
    q = np.where(carry, 2**30, q)
    shift = np.where(carry, shift + 1, shift)
    flush = (shift < -31) | (m == 0)
    q = np.where(flush, 0, q)
    shift = np.where(flush, 0, shift)
    if single_rounding:
        cap = shift > 30
        q = np.where(cap, INT32_MAX, q)
        shift = np.where(cap, 30, shift)
    return _scalar_or_array(real, q, shift)


def checked_log2(scale) -> tuple[int, bool]:
    """TFLite ``CheckedLog2``: ``(e, is_pot)`` with ``e = round(log2 scale)``.

    Evaluated in float32 as TFLite does: ``l = f32(logf(s) * f32(1 / logf(2)))``,
    ``e = RHAZ(l)`` (``std::round``, half away), ``is_pot = |l - e| < 1e-3``.
    A scale within a factor ``2**0.001`` of a power of two therefore counts as
    one.

    >>> checked_log2(2.0**-10), checked_log2(0.3)
    ((-10, True), (-2, False))
    """
    f32 = np.float32
    s = f32(scale)
    if not (np.isfinite(s) and s > 0):
        raise InvalidArgumentError(
            f"scale must be a positive finite float; got scale={scale!r}"
        )
    log2 = f32(np.log(s)) * (f32(1) / f32(np.log(f32(2))))
    rounded = float(np.copysign(np.floor(abs(log2) + 0.5), log2))  # half_away
    return int(rounded), bool(abs(f32(log2 - f32(rounded))) < f32(1e-3))


# ------------------------------------------------------------ core primitives
def _srdhm(a, b):
    ab = a * b  # |a|, |b| <= 2**31: fits int64
    nudge = np.where(ab >= 0, 2**30, 1 - 2**30)
    v = ab + nudge
    q = v >> 31
    q = q + ((v < 0) & ((v & (2**31 - 1)) != 0))  # floor -> truncation
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def _rdbpot(x, exponent):
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_doubling_high_mul(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: ``round(a * b / 2**31)``.

    Ties round toward +inf (the nudge is ``2**30`` for ``a*b >= 0`` and
    ``1 - 2**30`` otherwise, then C truncating division).  The only saturating
    case is ``a == b == INT32_MIN``, which returns ``INT32_MAX``.

    Parameters
    ----------
    a, b : array_like of int
        Values in the int32 range [-2**31, 2**31 - 1].

    >>> int(saturating_doubling_high_mul(-3, 2**30))
    -1
    """
    a = _as_int64("a", a)
    b = _as_int64("b", b)
    _check_range("a", a, INT32_MIN, INT32_MAX)
    _check_range("b", b, INT32_MIN, INT32_MAX)
    return _srdhm(a, b)


def rounding_right_shift(x, exponent):
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent``, ties away from 0.

    ``mask = 2**e - 1``, ``remainder = x & mask``, ``threshold = (mask >> 1) +
    (x < 0)``, result ``(x >> e) + (remainder > threshold)``.

    Parameters
    ----------
    x : array_like of int
        Values in the int32 range.
    exponent : array_like of int
        Shift amounts in [0, 31].

    >>> rounding_right_shift([5, -5, -6], [1, 1, 2]).tolist()
    [3, -3, -2]
    """
    x = _as_int64("x", x)
    exponent = _as_int64("exponent", exponent)
    _check_range("x", x, INT32_MIN, INT32_MAX)
    _check_range("exponent", exponent, 0, 31)
    return _rdbpot(x, exponent)


def _rounding_shift_up(x, exponent):
    """``(x + 2**(e-1)) >> e`` for e > 0, identity for e == 0 (ties up)."""
    half = np.where(exponent > 0, np.int64(1) << np.maximum(exponent - 1, 0), 0)
    return (x + half) >> exponent


def multiply_by_quantized_multiplier(x, multiplier, shift, *, rounding="double"):
    """TFLite ``MultiplyByQuantizedMultiplier``: ``x * multiplier * 2**(shift-31)``.

    ``rounding="double"`` (TFLite default build, reference kernels):
    ``ls = max(shift, 0)``, ``rs = max(-shift, 0)``, result
    ``RDBPOT(SRDHM(x * 2**ls, multiplier), rs)`` -- two roundings, the first
    ties up, the second ties away from zero.

    ``rounding="single"`` (``TFLITE_SINGLE_ROUNDING``, ruy): ``total = 31 -
    shift``, result ``(x * multiplier + 2**(total-1)) >> total`` -- one
    rounding, ties toward +inf.  Needs ``multiplier >= 0`` and ``shift`` in
    [-31, 30].

    ``rounding="double_up"`` (TFLite optimized NEON path, ``vqrdmulh`` then
    ``vrshl``): ``SRDHM(x * 2**ls, multiplier)`` then a right shift by ``rs``
    with ties toward +inf.

    Parameters
    ----------
    x : array_like of int
        int32-range values; for the double forms ``x * 2**max(shift, 0)`` must
        also fit int32 (TFLite multiplies in plain int32).
    multiplier : array_like of int
        In [0, 2**31 - 1] (0 or [2**30, 2**31) from :func:`quantize_multiplier`).
    shift : array_like of int
        In [-31, 30].

    >>> multiply_by_quantized_multiplier(-2, 2**30, -1).item()
    -1
    >>> multiply_by_quantized_multiplier(-2, 2**30, -1, rounding="single").item()
    0
    """
    if rounding not in MULTIPLY_ROUNDINGS:
        raise InvalidArgumentError(
            f"rounding must be one of {', '.join(map(repr, MULTIPLY_ROUNDINGS))}; "
            f"got rounding={rounding!r}"
        )
    x = _as_int64("x", x)
    multiplier = _as_int64("multiplier", multiplier)
    shift = _as_int64("shift", shift)
    _check_range("x", x, INT32_MIN, INT32_MAX)
    _check_range("multiplier", multiplier, 0, INT32_MAX)
    _check_range("shift", shift, -31, 30)
    if rounding == "single":
        total = 31 - shift
        return (x * multiplier + (np.int64(1) << (total - 1))) >> total
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = x << left
    _check_range("x * 2**max(shift, 0)", shifted, INT32_MIN, INT32_MAX)
    high = _srdhm(shifted, multiplier)
    if rounding == "double":
        return _rdbpot(high, right)
    return _rounding_shift_up(high, right)


def multiply_by_quantized_multiplier_int64(x, multiplier, shift):
    """TFLite int64 ``MultiplyByQuantizedMultiplier`` (16x8 kernels).

    The multiplier is first reduced to 16 bits, ties up:
    ``reduced = (multiplier + 2**15) >> 16`` if ``multiplier < 0x7FFF0000``
    else ``0x7FFF``; then ``total = 15 - shift`` and the result is
    ``(x * reduced + 2**(total-1)) >> total`` -- one rounding, ties toward +inf.
    The result is returned as int64 (TFLite casts it to int32; callers clamp).

    Parameters
    ----------
    x : array_like of int
        ``|x| < 2**47``.
    multiplier : array_like of int
        In [0, 2**31 - 1].
    shift : array_like of int
        In [-31, 7].

    >>> multiply_by_quantized_multiplier_int64([-2, -1, 1, 2], 2**30, -1).tolist()
    [0, 0, 0, 1]
    """
    x = _as_int64("x", x)
    multiplier = _as_int64("multiplier", multiplier)
    shift = _as_int64("shift", shift)
    _check_range("x", x, -(2**47) + 1, 2**47 - 1)
    _check_range("multiplier", multiplier, 0, INT32_MAX)
    _check_range("shift", shift, -31, 7)
    reduced = np.where(multiplier < 0x7FFF0000, (multiplier + 2**15) >> 16, 0x7FFF)
    total = 15 - shift
    return (x * reduced + (np.int64(1) << (total - 1))) >> total
