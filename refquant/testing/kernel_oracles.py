"""Slow, obviously correct oracles for the integer conv / linear kernels.

Everything here works on Python ints and :class:`fractions.Fraction`, one output
element at a time, and shares no code with :mod:`refquant.kernels`, so a kernel
tested against it is tested against an independent statement of its formula.
Use tiny shapes: the loops run in Python.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = [
    "same_padding",
    "conv2d_oracle",
    "depthwise_conv2d_oracle",
    "matmul_oracle",
    "round_fraction",
    "requantize_oracle",
    "activation_range_oracle",
]


def same_padding(size: int, kernel: int, stride: int, dilation: int):
    """TensorFlow SAME padding (before, after) for one spatial axis."""
    extent = dilation * (kernel - 1) + 1
    out = math.ceil(size / stride)
    total = max(0, stride * (out - 1) + extent - size)
    return total // 2, total - total // 2


def _explicit(padding, h, w, kh, kw, strides, dilations):
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return (
            same_padding(h, kh, strides[0], dilations[0]),
            same_padding(w, kw, strides[1], dilations[1]),
        )
    return tuple(padding[0]), tuple(padding[1])


def _pixel(x, n, yy, xx, c, zx):
    """x[n, yy, xx, c] - zx, or 0 for a cell outside the image (padding)."""
    if 0 <= yy < len(x[0]) and 0 <= xx < len(x[0][0]):
        return x[n][yy][xx][c] - zx
    return 0


def conv2d_oracle(
    x,
    x_zero_point,
    w,
    w_zero_point,
    bias=None,
    *,
    strides=(1, 1),
    dilations=(1, 1),
    groups=1,
    padding="valid",
):
    """int64 array of ``bias[o] + sum (x - zx) * (w - zw[o])`` by direct loops.

    x: (N, H, W, C_in) NHWC; w: (C_out, kh, kw, C_in // groups) OHWI.
    """
    xl, wl = np.asarray(x).tolist(), np.asarray(w).tolist()
    n_b, h, wd, c_in = np.shape(x)
    c_out, kh, kw, cg = np.shape(w)
    zw = np.broadcast_to(np.asarray(w_zero_point), (c_out,)).tolist()
    b = [0] * c_out if bias is None else np.asarray(bias).tolist()
    (pt, pb), (pl, pr) = _explicit(padding, h, wd, kh, kw, strides, dilations)
    oh = (h + pt + pb - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + pl + pr - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    per_group = c_out // groups
    out = np.zeros((n_b, oh, ow, c_out), dtype=object)
    for n in range(n_b):
        for oy in range(oh):
            for ox in range(ow):
                for o in range(c_out):
                    g = o // per_group
                    total = b[o]
                    for i in range(kh):
                        for j in range(kw):
                            yy = oy * strides[0] + i * dilations[0] - pt
                            xx = ox * strides[1] + j * dilations[1] - pl
                            for c in range(cg):
                                xv = _pixel(xl, n, yy, xx, g * cg + c, x_zero_point)
                                total += xv * (wl[o][i][j][c] - zw[o])
                    out[n, oy, ox, o] = total
    return out.astype(np.int64)


def depthwise_conv2d_oracle(
    x,
    x_zero_point,
    w,
    w_zero_point,
    bias=None,
    *,
    depth_multiplier=1,
    strides=(1, 1),
    dilations=(1, 1),
    padding="valid",
):
    """Depthwise conv by direct loops; output channel o reads input o // dm."""
    xl, wl = np.asarray(x).tolist(), np.asarray(w).tolist()
    n_b, h, wd, _ = np.shape(x)
    _, kh, kw, c_out = np.shape(w)
    zw = np.broadcast_to(np.asarray(w_zero_point), (c_out,)).tolist()
    b = [0] * c_out if bias is None else np.asarray(bias).tolist()
    (pt, pb), (pl, pr) = _explicit(padding, h, wd, kh, kw, strides, dilations)
    oh = (h + pt + pb - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + pl + pr - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((n_b, oh, ow, c_out), dtype=object)
    for n in range(n_b):
        for oy in range(oh):
            for ox in range(ow):
                for o in range(c_out):
                    total = b[o]
                    for i in range(kh):
                        for j in range(kw):
                            yy = oy * strides[0] + i * dilations[0] - pt
                            xx = ox * strides[1] + j * dilations[1] - pl
                            xv = _pixel(
                                xl, n, yy, xx, o // depth_multiplier, x_zero_point
                            )
                            total += xv * (wl[0][i][j][o] - zw[o])
                    out[n, oy, ox, o] = total
    return out.astype(np.int64)


def matmul_oracle(a, a_zero_point, b, b_zero_point):
    """``sum_k (a[i, k] - za[i]) * (b[k, j] - zb[j])`` for 2-D a, b, Python ints."""
    al, bl = np.asarray(a).tolist(), np.asarray(b).tolist()
    m, k = np.shape(a)
    n = np.shape(b)[1]
    za = np.broadcast_to(np.asarray(a_zero_point), (m,)).tolist()
    zb = np.broadcast_to(np.asarray(b_zero_point), (n,)).tolist()
    out = [[0] * n for _ in range(m)]
    for i in range(m):
        for j in range(n):
            out[i][j] = sum((al[i][t] - za[i]) * (bl[t][j] - zb[j]) for t in range(k))
    return np.array(out, dtype=object)


def round_fraction(v: Fraction, rule: str = "half_even") -> int:
    """Round a rational to an int by a named rule (half_even, half_away,
    half_up, floor, ceil)."""
    fl = math.floor(v)
    rem = v - fl  # in [0, 1)
    if rule == "floor":
        return fl
    if rule == "ceil":
        return fl + (rem > 0)
    if rem != Fraction(1, 2):
        return fl + (rem > Fraction(1, 2))
    if rule == "half_even":
        return fl + (fl % 2)
    if rule == "half_up":
        return fl + 1
    if rule == "half_away":
        return fl + (v > 0)
    raise ValueError(f"unknown rounding rule {rule!r}")


def activation_range_oracle(
    activation, scale, zero_point, qmin, qmax, rule="half_even"
):
    """Quantized clamp bounds ``[max(qmin, zp + round(lo / s)), min(qmax, zp +
    round(hi / s))]`` with the real ``x / s`` (no float division)."""
    s = Fraction(scale)
    bounds = {
        None: (None, None),
        "relu": (0, None),
        "relu6": (0, 6),
        "relu_n1_to_1": (-1, 1),
    }[activation]
    lo = (
        qmin
        if bounds[0] is None
        else max(qmin, zero_point + round_fraction(Fraction(bounds[0]) / s, rule))
    )
    hi = (
        qmax
        if bounds[1] is None
        else min(qmax, zero_point + round_fraction(Fraction(bounds[1]) / s, rule))
    )
    return lo, hi


def requantize_oracle(
    acc,
    input_scale,
    weight_scale,
    output_scale,
    output_zero_point,
    out_dtype,
    *,
    rule="half_even",
    activation=None,
):
    """Exact requantization of an int accumulator array along its last axis:
    ``clamp(zp + round(acc * s_in * s_w[c] / s_out), lo, hi)``, Fractions only."""
    acc = np.asarray(acc)
    info = np.iinfo(out_dtype)
    c = acc.shape[-1] if acc.ndim else 1
    sw = np.broadcast_to(np.asarray(weight_scale, dtype=np.float64), (c,)).tolist()
    lo, hi = activation_range_oracle(
        activation, output_scale, output_zero_point, int(info.min), int(info.max), rule
    )
    mult = [Fraction(input_scale) * Fraction(s) / Fraction(output_scale) for s in sw]
    flat = acc.reshape(-1, c).tolist() if acc.ndim else [[int(acc)]]
    out = [
        [
            min(hi, max(lo, output_zero_point + round_fraction(v * mult[ch], rule)))
            for ch, v in enumerate(row)
        ]
        for row in flat
    ]
    return np.array(out, dtype=np.int64).reshape(acc.shape).astype(out_dtype)
