"""Quantized mean over axes.

``y = z_y + round(s_x * S / (N * s_y))`` with ``S = sum(x - z_x)`` over the
reduced axes and ``N`` their element count.  The profile's ``mean_method``
decides the arithmetic (spec: ``specs/kernels_pointwise.md`` section 5):

* ``exact``: the rational value, rounded by ``requantize_rounding``.
* ``tflite_reference``: TFLite ``QuantizedMeanOrSum``: ``(m, e) =
  quantize_multiplier(s_x / s_y)``, ``k = min(floor(log2 N), 32, 31 + e)``,
  ``m' = trunc(m * 2**k / N)``, ``y = MBQM(S, m', e - k) + z_y`` (double
  rounding).
* ``float32``: dequantize to float32, mean, quantize with the profile's
  quantize rule (ORT QLinearReduceMean semantics; not bit-verified).
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError
from refquant.kernels import _arith
from refquant.kernels._checks import int_codes, out_dtype_of, qrange, zero_points
from refquant.kernels.pooling import _one
from refquant.numerics import fixedpoint
from refquant.profiles import get_profile


def _axes(axes, ndim):
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        axes = (int(axes),)
    try:
        axes = tuple(int(a) for a in axes)
    except TypeError as exc:
        raise InvalidArgumentError(
            f"axes must be an int or a sequence of ints; got axes={axes!r}"
        ) from exc
    norm = tuple(sorted({a % ndim for a in axes})) if ndim else ()
    if not axes or any(not -ndim <= a < ndim for a in axes):
        raise InvalidArgumentError(
            f"axes must be non-empty and in [{-ndim}, {ndim - 1}]; got axes={axes!r}"
        )
    return norm


def _tflite_mean(total, n, s_x, s_y):
    m, e = fixedpoint.quantize_multiplier(
        float(np.float32(s_x)) / float(np.float32(s_y))
    )
    k = min(int(n).bit_length() - 1, 32, 31 + e)
    m2 = (m << k) // n  # non-negative: floor == C truncation
    return fixedpoint.multiply_by_quantized_multiplier(total, m2, e - k)


def mean(
    x,
    x_scale,
    x_zero_point,
    y_scale,
    y_zero_point,
    *,
    axes,
    keepdims=True,
    out_dtype=np.int8,
    profile="exact",
):
    """Quantized mean: ``z_y + round(s_x * sum(x - z_x) / (N * s_y))``.

    >>> x = np.int8([[1, 2], [3, 4]])
    >>> mean(x, 1.0, 0, 1.0, 0, axes=1, keepdims=False).tolist()
    [2, 4]
    >>> mean(x, 1.0, 0, 1.0, 0, axes=1, keepdims=False,
    ...      profile="tflite_reference").tolist()
    [2, 4]
    """
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    q = int_codes("x", x)
    ax = _axes(axes, q.ndim)
    s_x, s_y = float(_one("x_scale", x_scale)), float(_one("y_scale", y_scale))
    z_x = int(_one("x_zero_point", x_zero_point, zero_points))
    z_y = int(_one("y_zero_point", y_zero_point, zero_points, dtype))
    n = int(np.prod([q.shape[a] for a in ax]))
    if n == 0:
        raise InvalidArgumentError("mean over an empty axis is undefined")
    total = (q - z_x).sum(axis=ax, keepdims=keepdims)  # exact int64
    method = prof.mean_method
    if method == "tflite_reference":
        y = _tflite_mean(total, n, s_x, s_y) + z_y
    elif method == "float32":
        deq = np.float32(s_x) * (q - z_x).astype(np.float32)
        avg = (deq.sum(axis=ax, keepdims=keepdims, dtype=np.float64) / n).astype(
            np.float32
        )
        r = _arith.divide_round(
            avg, s_y, prof.quantize_arithmetic, prof.quantize_rounding
        )
        y = np.clip(r, -(2.0**40), 2.0**40).astype(np.int64) + z_y
    else:
        r = _arith.exact_round_ratio([[total, s_x]], [n, s_y], prof.requantize_rounding)
        y = np.clip(r, -(2.0**40), 2.0**40).astype(np.int64) + z_y
    qmin, qmax = qrange(dtype)
    return np.clip(y, qmin, qmax).astype(dtype)
