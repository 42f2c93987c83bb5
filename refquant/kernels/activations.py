"""Fused activation clamps and the nonlinear activations (softmax, logistic, tanh).

Fused clamps act in the output's quantized domain (TFLite
``CalculateActivationRangeQuantized``)::

    lo_q = max(qmin, zero_point + round(lo / scale))
    hi_q = min(qmax, zero_point + round(hi / scale))

where ``(lo, hi)`` is ``(0, inf)`` for relu, ``(0, 6)`` for relu6 and
``(-1, 1)`` for relu_n1_to_1, and ``round(f / scale)`` follows the profile's
quantize arithmetic and rounding rule (TFLite: float32 division, ties away).
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError
from refquant.kernels import _arith
from refquant.kernels._checks import out_dtype_of, qrange, scales, zero_points
from refquant.profiles import get_profile

ACTIVATIONS = (None, "relu", "relu6", "relu_n1_to_1")
_BOUNDS = {"relu": (0.0, None), "relu6": (0.0, 6.0), "relu_n1_to_1": (-1.0, 1.0)}


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise InvalidArgumentError(
            "activation must be one of None, 'relu', 'relu6', 'relu_n1_to_1'; "
            f"got activation={activation!r}"
        )


def activation_range(activation, scale, zero_point, out_dtype, profile="exact"):
    """Quantized clamp bounds ``(lo_q, hi_q)`` of a fused activation.

    ``lo_q = max(qmin, zp + round(lo / scale))``, ``hi_q = min(qmax, zp +
    round(hi / scale))``; the division and rounding follow the profile's
    ``quantize_arithmetic`` and ``quantize_rounding``.

    Returns
    -------
    (lo_q, hi_q) : int64 arrays broadcast like ``scale`` and ``zero_point``.

    >>> [int(v) for v in activation_range("relu6", 12.0, 0, np.int8,
    ...                                   "tflite_reference")]
    [0, 1]
    >>> [int(v) for v in activation_range("relu6", 12.0, 0, np.int8, "exact")]
    [0, 0]
    """
    _check_activation(activation)
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    s = scales("scale", scale)
    zp = zero_points("zero_point", zero_point, dtype)
    qmin, qmax = qrange(dtype)
    lo = np.full(np.broadcast_shapes(s.shape, zp.shape), qmin, dtype=np.int64)
    hi = np.full(lo.shape, qmax, dtype=np.int64)
    if activation is None:
        return lo, hi
    f_lo, f_hi = _BOUNDS[activation]
    arith, rule = prof.quantize_arithmetic, prof.quantize_rounding
    q_lo = _arith.divide_round(np.full(lo.shape, f_lo), s, arith, rule)
    lo = np.maximum(lo, zp + np.clip(q_lo, -(2**40), 2**40).astype(np.int64))
    if f_hi is not None:
        q_hi = _arith.divide_round(np.full(hi.shape, f_hi), s, arith, rule)
        hi = np.minimum(hi, zp + np.clip(q_hi, -(2**40), 2**40).astype(np.int64))
    return lo, hi


def clamp_activation(q, activation, scale, zero_point, out_dtype, profile="exact"):
    """Apply a fused activation clamp to quantized codes.

    ``out = clip(q, lo_q, hi_q)`` with the bounds of :func:`activation_range`
    (values are first clamped to ``out_dtype``).  ``profile`` (an extension
    of the contract signature, default ``"exact"``) decides the rounding of
    the bounds.

    >>> clamp_activation(np.array([-5, 3, 100], np.int8), "relu6", 0.1, -2,
    ...                  np.int8).tolist()
    [-2, 3, 58]
    """
    from refquant.kernels._checks import int_codes

    dtype = out_dtype_of(out_dtype)
    codes = int_codes("q", q)
    lo, hi = activation_range(activation, scale, zero_point, dtype, profile)
    return np.clip(codes, lo, hi).astype(dtype)
