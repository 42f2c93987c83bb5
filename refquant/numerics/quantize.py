"""Quantize, dequantize and fake-quantize (spec: specs/quantization.md, sec. 4-5).

``q = clamp(round(x / scale) + zero_point, qmin, qmax)`` with a named rounding
rule (default ``half_even``) and a named arithmetic for ``x / scale``:

=======================  ===================================================
``arithmetic``           how ``t = x / scale`` is evaluated
=======================  ===================================================
``"float64"``            ``f64(x) / f64(scale)`` (default)
``"float32_divide"``     ``f32(x) / f32(scale)`` (ONNX, ONNX Runtime)
``"float32_reciprocal"`` ``f32(x) * f32(1 / f32(scale))`` (PyTorch, TFLite opt.)
``"exact"``              the rule applied to the exact real quotient of the
                         float64 values ``x`` and ``scale``
=======================  ===================================================

The sum is clamped in float before the cast to the integer dtype, so +-inf and
huge values saturate to ``qmin`` / ``qmax`` and never wrap.
"""

from __future__ import annotations

import numpy as np

from refquant._validation import OneOf, check, check_type
from refquant.errors import InvalidArgumentError
from refquant.numerics.qparams import (
    QParams,
    _as_array,
    _as_real_array,
    check_no_nan,
    validate_scale,
)
from refquant.numerics.rounding import (
    apply_rounding,
    as_generator,
    check_rounding,
    round_floor,
)

__all__ = [
    "ARITHMETICS",
    "DEQUANTIZE_DTYPES",
    "NAN_POLICIES",
    "dequantize",
    "fake_quantize",
    "quantize",
    "sign_of_x_minus_b_times_scale",
]

ARITHMETICS = ("float64", "float32_divide", "float32_reciprocal", "exact")
NAN_POLICIES = ("raise", "zero_point", "qmin")

# Beyond this |x / scale| every code saturates for bits <= 16, so the exact
# correction is skipped there (and its float64 steps cannot overflow).
_EXACT_LIMIT = 2.0**40
_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp splitting constant for float64


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp split: ``a = hi + lo`` exactly, each with <= 26 significant bits."""
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker's product: ``p + err == a * b`` exactly (no over- or underflow)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    err = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, err


def sign_of_x_minus_b_times_scale(x, b, scale) -> np.ndarray:
    """Exact ``sign(x - b * scale)`` for float64 x, b (|b| <= 2**41), scale > 0 normal.

    ``scale = m * 2**e`` (frexp, exact); ``x * 2**-e - b * m`` has the sign wanted;
    ``b * m = p + err`` exactly (Dekker) and ``x * 2**-e - p`` is exact near the
    decision point (Sterbenz), so ``sign((x * 2**-e - p) - err)`` is exact.  For
    ``b == 0`` the sign is ``sign(x)``.
    """
    m, e = np.frexp(scale)
    xs = np.ldexp(x, -e)  # exact unless it underflows, then |xs| << |b * m|
    p, err = _two_product(b, m)
    return np.where(b == 0, np.sign(x), np.sign((xs - p) - err))


def _exact_nearest(x, scale, t, rule):
    """Nearest-integer rules on the exact quotient x / scale (t = f64(x / scale))."""
    f = np.floor(t)
    sign = sign_of_x_minus_b_times_scale(x, f + 0.5, scale)
    if rule == "half_even":
        tie = f + np.mod(f, 2.0)  # the even one of f, f + 1
    elif rule == "half_away":
        tie = f + (f >= 0)
    else:  # half_up
        tie = f + 1.0
    return np.where(sign > 0, f + 1.0, np.where(sign < 0, f, tie))


def _exact_floor(x, scale, t):
    k = np.rint(t)
    return k - (sign_of_x_minus_b_times_scale(x, k, scale) < 0)


def _exact_round(x, scale, rule, rng):
    """Round ``x / scale`` (real quotient of float64 values) with ``rule`` exactly."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        t = x / scale
    far = ~(np.abs(t) <= _EXACT_LIMIT)  # saturates anyway (also +-inf)
    x0 = np.where(far, 0.0, x)
    t0 = np.where(far, 0.0, t)
    if rule in ("half_even", "half_away", "half_up"):
        r = _exact_nearest(x0, scale, t0, rule)
    elif rule == "floor":
        r = _exact_floor(x0, scale, t0)
    elif rule == "ceil":
        r = -_exact_floor(-x0, scale, -t0)
    else:  # stochastic: exact floor, float64 fraction as P(up)
        f = _exact_floor(x0, scale, t0)
        u = as_generator(rng).random(np.shape(t0))
        r = f + (u < np.clip(t0 - f, 0.0, 1.0))
    return np.where(far, round_floor(t), r)


def _rounded_quotient(x, scale, rounding, arithmetic, rng) -> np.ndarray:
    """Return ``round(x / scale)`` as float64 integers (or +-inf) per ``arithmetic``."""
    if arithmetic == "exact":
        return _exact_round(x.astype(np.float64), scale, rounding, rng)
    with np.errstate(over="ignore", divide="ignore"):
        if arithmetic == "float64":
            t = x.astype(np.float64) / scale
        elif arithmetic == "float32_divide":
            t = x.astype(np.float32) / scale.astype(np.float32)
        else:  # float32_reciprocal
            inv = np.float32(1.0) / scale.astype(np.float32)
            t = x.astype(np.float32) * inv
    return apply_rounding(t, rounding, rng=rng).astype(np.float64)


def _check_options(qparams, rounding, arithmetic, nan, rng) -> None:
    check_type("qparams", qparams, (QParams,), "a QParams")
    check_rounding(rounding, rng)
    check("arithmetic", arithmetic, OneOf(ARITHMETICS))
    check("nan", nan, OneOf(NAN_POLICIES))


def quantize(
    x,
    qparams: QParams,
    rounding: str = "half_even",
    *,
    arithmetic: str = "float64",
    nan: str = "raise",
    rng=None,
) -> np.ndarray:
    """``q = clamp(round(x / scale) + zero_point, qmin, qmax)`` (eq. 4.1-4.3).

    Parameters
    ----------
    x : array_like of float or int
    qparams : QParams
        Per-tensor, per-channel or per-group parameters matching ``x``'s shape.
    rounding : str
        Rule for ``round``: half_even (default), half_away, half_up, floor,
        ceil or stochastic (needs ``rng``, an int seed or a Generator).
    arithmetic : str
        How ``x / scale`` is evaluated: "float64" (default), "float32_divide",
        "float32_reciprocal" or "exact" (see the module docstring).
    nan : str
        "raise" (default: :class:`~refquant.errors.NonFiniteInputError` naming
        the count and the first index), "zero_point" or "qmin" (NaN maps to
        that code).

    Returns
    -------
    ndarray of ``qparams.scheme.dtype`` (int8, uint8, int16 or uint16).

    >>> from refquant.numerics.scheme import QuantScheme
    >>> qp = QParams(0.5, 0, QuantScheme(bits=8))
    >>> quantize([0.25, 0.75, -1.25, 1e30], qp).tolist()
    [0, 2, -2, 127]
    """
    _check_options(qparams, rounding, arithmetic, nan, rng)
    x = _as_real_array(x, "x")
    scheme = qparams.scheme
    float32 = arithmetic.startswith("float32")
    validate_scale(qparams.scale, "scale", dtype=np.float32 if float32 else np.float64)
    nan_mask = np.isnan(x) if x.dtype.kind == "f" else None
    if nan == "raise":
        check_no_nan(x, "x")
    elif nan_mask is not None:
        x = np.where(nan_mask, 0, x)
    scale, zero_point = qparams.expand(x.shape)

    r = _rounded_quotient(x, scale, rounding, arithmetic, rng)  # float64, may be inf
    v = np.clip(r + zero_point, scheme.qmin, scheme.qmax)  # clamp in float
    q = v.astype(scheme.dtype)

    if nan != "raise" and nan_mask is not None and nan_mask.any():
        fill = zero_point if nan == "zero_point" else scheme.qmin
        q[nan_mask] = np.broadcast_to(fill, x.shape)[nan_mask]
    return q


DEQUANTIZE_DTYPES = ("float16", "float32", "float64")


def _output_dtype(dtype) -> np.dtype:
    """``np.dtype(dtype)`` if it names float16, float32 or float64; else an error."""
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DEQUANTIZE_DTYPES:
        raise InvalidArgumentError(
            f"dtype must be one of {', '.join(DEQUANTIZE_DTYPES)} (a NumPy dtype "
            f"or its name); got dtype={dtype!r}"
        )
    return dt


def dequantize(q, qparams: QParams, *, dtype=np.float32) -> np.ndarray:
    """``x = (q - zero_point) * scale`` in float64, returned as ``dtype`` (eq. 5.1).

    The default output is float32 (the type every backend dequantizes to): the
    float64 product is rounded once, half_even, to float32.  ``dtype`` may be
    float16, float32 or float64 (None is refused): float64 gives the unrounded
    product; float16 rounds it once and turns |x| >= 65520 into +-inf.

    >>> from refquant.numerics.scheme import QuantScheme
    >>> qp = QParams(0.5, 3, QuantScheme(bits=8))
    >>> dequantize([3, 4, -128], qp).tolist()
    [0.0, 0.5, -65.5]
    """
    check_type("qparams", qparams, (QParams,), "a QParams")
    dtype = _output_dtype(dtype)
    q = _as_array(q, "q")
    if q.dtype.kind not in "iu":
        raise InvalidArgumentError(
            f"q must be an array of integer codes; got q of dtype {q.dtype}"
        )
    scheme = qparams.scheme
    if q.size and (q.min() < scheme.qmin or q.max() > scheme.qmax):
        raise InvalidArgumentError(
            f"q must hold codes in [{scheme.qmin}, {scheme.qmax}]; got codes in "
            f"[{int(q.min())}, {int(q.max())}]"
        )
    scale, zero_point = qparams.expand(q.shape, "q")
    x = (q.astype(np.int64) - zero_point).astype(np.float64) * scale  # float64
    with np.errstate(over="ignore"):  # float16 only: |x| >= 65520 -> +-inf
        return x.astype(dtype)  # half_even, one rounding


def fake_quantize(
    x,
    qparams: QParams,
    rounding: str = "half_even",
    *,
    arithmetic: str = "float64",
    nan: str = "raise",
    rng=None,
) -> np.ndarray:
    """``dequantize(quantize(x))``: x snapped to the quantization grid.

    Output dtype: float64 for float64 input, float32 otherwise.

    >>> from refquant.numerics.scheme import QuantScheme
    >>> fake_quantize([0.3, 0.74], QParams(0.5, 0, QuantScheme(bits=8))).tolist()
    [0.5, 0.5]
    """
    x = _as_real_array(x, "x")
    q = quantize(x, qparams, rounding, arithmetic=arithmetic, nan=nan, rng=rng)
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    return dequantize(q, qparams, dtype=dtype)
