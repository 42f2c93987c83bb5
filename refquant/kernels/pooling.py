"""Quantized pooling over NHWC activations: average, global average and max.

Average pooling of codes ``x`` (``S`` = sum of ``x - z_x`` over the in-image
taps of a window, ``n`` = number of those taps, or the full window with
``count_include_pad``)::

    y = z_y + round(s_x * S / (n * s_y))

The profile's ``average_pool_method`` decides the rounding (spec:
``specs/kernels_pointwise.md`` section 4):

* ``exact``: the rational value, rounded by ``requantize_rounding``.
* ``tflite_raw_q_half_away``: TFLite sums the raw codes and divides with ties
  away from zero in the code domain (input and output qparams must match).
* ``float32``: dequantize each tap to float32, sum the taps in row-major order
  in float32, divide by ``n`` and by ``s_y`` in float32, add ``z_y`` in float32
  and round by ``quantize_rounding`` (ONNX Runtime QLinearAveragePool; the zero
  point enters before rounding, measured bit-exact against ORT 1.32).

Padding cells never contribute a value; max pooling takes the maximum over the
in-image taps.
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError
from refquant.kernels import _arith
from refquant.kernels._checks import (
    int_codes,
    out_dtype_of,
    qrange,
    scales,
    zero_points,
)
from refquant.kernels.activations import activation_range
from refquant.profiles import get_profile


# ---------------------------------------------------------------- geometry
def _pair(name, value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{name} must be an int or a pair of ints >= 1; got {name}={value!r}"
        ) from exc
    if a < 1 or b < 1:
        raise InvalidArgumentError(
            f"{name} must be an int or a pair of ints >= 1; got {name}={value!r}"
        )
    return a, b


def _pads(padding, size, kernel, stride):
    """((top, bottom), (left, right)) for "valid", "same" or explicit padding."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        out = []
        for n, k, s in zip(size, kernel, stride):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    try:
        (t, b), (lft, r) = padding
        pads = ((int(t), int(b)), (int(lft), int(r)))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            "padding must be 'valid', 'same' or ((top, bottom), (left, right)); "
            f"got padding={padding!r}"
        ) from exc
    if min(min(p) for p in pads) < 0:
        raise InvalidArgumentError(f"padding must be >= 0; got padding={padding!r}")
    return pads


def _windows(x, fill, pool_size, strides, padding):
    """Windows of the padded input and of the in-image mask.

    Returns arrays of shape (N, OH, OW, C, kh, kw) and (1, OH, OW, 1, kh, kw).
    """
    if x.ndim != 4:
        raise InvalidArgumentError(f"x must be NHWC (4-D); got x of shape {x.shape}")
    kernel = _pair("pool_size", pool_size)
    stride = _pair("strides", strides)
    (t, b), (lft, r) = _pads(padding, x.shape[1:3], kernel, stride)
    xp = np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)), constant_values=fill)
    mask = np.pad(
        np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64),
        ((0, 0), (t, b), (lft, r), (0, 0)),
    )
    if xp.shape[1] < kernel[0] or xp.shape[2] < kernel[1]:
        raise InvalidArgumentError(
            f"pool_size {kernel} is larger than the padded input {xp.shape[1:3]}"
        )
    view = np.lib.stride_tricks.sliding_window_view
    win = view(xp, kernel, axis=(1, 2))[:, :: stride[0], :: stride[1]]
    mwin = view(mask, kernel, axis=(1, 2))[:, :: stride[0], :: stride[1]]
    return win, mwin


# ---------------------------------------------------------------- average
def _average_float32(win, mwin, count, s_x, z_x, s_y, z_y, prof):
    deq = np.float32(s_x) * (win - z_x).astype(np.float32)
    deq = np.where(mwin.astype(bool), deq, np.float32(0))
    total = np.zeros(deq.shape[:4], dtype=np.float32)
    for i in range(deq.shape[4]):  # taps in row-major order, float32 sums
        for j in range(deq.shape[5]):
            total = total + deq[..., i, j]
    mean = total / count.astype(np.float32)
    v = mean / np.float32(s_y) + np.float32(z_y)  # zero point before rounding
    q = _arith.round_float(v, prof.quantize_rounding)
    return np.clip(q, -(2.0**40), 2.0**40).astype(np.int64)


def _half_away_divide(total, count):
    half = count // 2
    return np.where(total > 0, (total + half) // count, -((-total + half) // count))


def average_pool2d(
    x,
    x_scale,
    x_zero_point,
    y_scale,
    y_zero_point,
    *,
    pool_size,
    strides,
    padding="valid",
    count_include_pad=False,
    activation=None,
    out_dtype=np.int8,
    profile="exact",
):
    """Average pooling: ``z_y + round(s_x * S / (n * s_y))`` per window (NHWC).

    See the module docstring for ``S``, ``n`` and the profile methods.  D10:
    a 2x2 window with code sum 2 (mean 0.5, zp 0) gives 1 under
    tflite_reference (ties away) and 0 under exact and onnxruntime.

    >>> x = np.int8([1, 1, 0, 0]).reshape(1, 2, 2, 1)
    >>> average_pool2d(x, 1.0, 0, 1.0, 0, pool_size=2, strides=2).ravel().tolist()
    [0]
    >>> average_pool2d(x, 1.0, 0, 1.0, 0, pool_size=2, strides=2,
    ...                profile="tflite_reference").ravel().tolist()
    [1]
    """
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    q = int_codes("x", x)
    s_x, s_y = float(_one("x_scale", x_scale)), float(_one("y_scale", y_scale))
    z_x = int(_one("x_zero_point", x_zero_point, zero_points))
    z_y = int(_one("y_zero_point", y_zero_point, zero_points, dtype))
    win, mwin = _windows(q, z_x, pool_size, strides, padding)
    inside = mwin.sum(axis=(4, 5))  # (1, OH, OW, 1) in-image taps
    count = (
        np.full_like(inside, win.shape[4] * win.shape[5])
        if count_include_pad
        else inside
    )
    if np.any(count == 0):
        raise InvalidArgumentError("a pooling window holds no in-image tap")
    method = prof.average_pool_method
    if method == "tflite_raw_q_half_away":
        if (s_x, z_x) != (s_y, z_y) or count_include_pad:
            raise InvalidArgumentError(
                "profile method 'tflite_raw_q_half_away' needs equal input and "
                "output qparams and count_include_pad=False (TFLite "
                f"AVERAGE_POOL_2D); got x=({s_x}, {z_x}), y=({s_y}, {z_y}), "
                f"count_include_pad={count_include_pad}"
            )
        raw = (win * mwin).sum(axis=(4, 5))
        y = _half_away_divide(raw, count)
    elif method == "float32":
        y = _average_float32(win, mwin, count, s_x, z_x, s_y, z_y, prof)
    else:
        total = ((win - z_x) * mwin).sum(axis=(4, 5))  # exact int64
        r = _arith.exact_round_ratio(
            [[total, s_x]], [count, s_y], prof.requantize_rounding
        )
        y = np.clip(r, -(2.0**40), 2.0**40).astype(np.int64) + z_y
    lo, hi = activation_range(activation, s_y, z_y, dtype, prof)
    qmin, qmax = qrange(dtype)
    return np.clip(np.clip(y, lo, hi), qmin, qmax).astype(dtype)


def _one(name, value, conv=None, dtype=None):
    arr = scales(name, value) if conv is None else conv(name, value, dtype)
    if arr.size != 1:
        raise InvalidArgumentError(
            f"{name} must be per-tensor (a scalar); got shape {arr.shape}"
        )
    return arr.reshape(()).item()


def global_average_pool(
    x,
    x_scale,
    x_zero_point,
    y_scale,
    y_zero_point,
    *,
    out_dtype=np.int8,
    profile="exact",
):
    """Global average pooling over H and W of NHWC codes -> (N, 1, 1, C).

    ``exact``: ``z_y + round(s_x * S / (H * W * s_y))``.  ``float32`` (ORT
    QLinearGlobalAveragePool): ``rint(f32(S) * f32(s_x / (s_y * f32(H*W))))``
    then ``+ z_y``.  ``tflite_raw_q_half_away`` pools the whole image with
    TFLite's average-pool rule.

    >>> x = np.int8([1, 2, 3, 4]).reshape(1, 2, 2, 1)
    >>> global_average_pool(x, 1.0, 0, 1.0, 0).ravel().tolist()
    [2]
    """
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    q = int_codes("x", x)
    if q.ndim != 4:
        raise InvalidArgumentError(f"x must be NHWC (4-D); got x of shape {q.shape}")
    if prof.average_pool_method != "float32":
        return average_pool2d(
            q,
            x_scale,
            x_zero_point,
            y_scale,
            y_zero_point,
            pool_size=q.shape[1:3],
            strides=1,
            out_dtype=dtype,
            profile=prof,
        )
    s_x, s_y = float(_one("x_scale", x_scale)), float(_one("y_scale", y_scale))
    z_x = int(_one("x_zero_point", x_zero_point, zero_points))
    z_y = int(_one("y_zero_point", y_zero_point, zero_points, dtype))
    n = q.shape[1] * q.shape[2]
    total = (q - z_x).sum(axis=(1, 2), keepdims=True)  # exact
    f32 = np.float32
    scale = f32(f32(s_x) / f32(f32(s_y) * f32(n)))
    y = np.clip(np.rint(total.astype(f32) * scale), -(2.0**40), 2.0**40)
    qmin, qmax = qrange(dtype)
    return np.clip(y.astype(np.int64) + z_y, qmin, qmax).astype(dtype)


# ---------------------------------------------------------------- max
def max_pool2d(x, *, pool_size, strides, padding="valid"):
    """Max pooling of codes over the in-image taps of each window (NHWC).

    Exact in every profile (a max of integers); padding cells never win.

    >>> x = np.int8([-5, 7, 3, -1]).reshape(1, 2, 2, 1)
    >>> max_pool2d(x, pool_size=2, strides=1).ravel().tolist()
    [7]
    """
    q = np.asarray(x)
    codes = int_codes("x", q)
    win, _ = _windows(codes, np.iinfo(np.int64).min, pool_size, strides, padding)
    return win.max(axis=(4, 5)).astype(q.dtype)
