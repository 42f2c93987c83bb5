"""Integer 2-D convolution and depthwise convolution (NHWC, TFLite layouts).

``acc[n, y, x, o] = bias[o] + sum_{i, j, c} (X[n, y*sh + i*dh - pt,
x*sw + j*dw - pl, g*Cg + c] - x_zp) * (W[o, i, j, c] - w_zp[o])``, exact in
int64, then the profile's overflow policy and requantization (see
specs/kernels_conv_linear.md).

Padding cells hold the input zero point, so they add exactly 0 (TFLite skips
those taps; ONNX pads with the zero point: the two agree).  conv2d runs an
im2col copy made with :func:`numpy.lib.stride_tricks.sliding_window_view`
into :func:`refquant.kernels.gemm.exact_affine_gemm`; depthwise_conv2d loops
over the ``kh * kw`` kernel taps only, never over pixels or channels.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.kernels.gemm import exact_affine_gemm
from refquant.profiles import get_profile

ACTIVATION_DTYPES = (np.int8, np.uint8, np.int16)
WEIGHT_DTYPES = (np.int8, np.uint8)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def conv2d(
    x,
    x_scale,
    x_zero_point,
    w,
    w_scale,
    w_zero_point,
    bias,
    y_scale,
    y_zero_point,
    *,
    strides=(1, 1),
    dilations=(1, 1),
    groups=1,
    padding="valid",
    activation=None,
    out_dtype=np.int8,
    profile="exact",
) -> np.ndarray:
    """Quantized conv2d: ``y = requantize(acc)``, acc as in the module docstring.

    ``y = clamp(zp_y + round(acc * s_x * s_w[o] / s_y), act_min, act_max)``;
    the profile decides the rounding (``exact``: the correctly rounded value,
    ties to even) and whether an int32 overflow of ``acc`` raises or wraps.
    16x8: int16 ``x`` with zero point 0, int8 weights, int64 bias and int64
    accumulation.  Spec: specs/kernels_conv_linear.md, section 2.

    Parameters
    ----------
    x : ndarray of int8, uint8 or int16, shape (N, H, W, C_in)
    x_scale : float
    x_zero_point : int
    w : ndarray of int8 or uint8, shape (C_out, kh, kw, C_in // groups)
    w_scale : float or array of float, shape (C_out,)
    w_zero_point : int or array of int, shape (C_out,)
    bias : array of int, shape (C_out,), or None
        int32 values (int64 for 16x8) at scale ``s_x * s_w[o]``.
    y_scale : float
    y_zero_point : int
    strides, dilations : (int, int)
    groups : int
    padding : "valid", "same" or ((top, bottom), (left, right))
    activation : None, "relu", "relu6" or "relu_n1_to_1"
    out_dtype : numpy integer dtype of the result
    profile : str or refquant.profiles.Profile

    Returns
    -------
    ndarray of out_dtype, shape (N, H_out, W_out, C_out)

    Examples
    --------
    >>> x = np.array([1, 2, 3, 4], np.int8).reshape(1, 2, 2, 1)
    >>> w = np.ones((1, 2, 2, 1), np.int8)
    >>> conv2d(x, 0.5, 0, w, 0.25, 0, None, 0.5, 0).ravel().tolist()
    [2]
    """
    prof = get_profile(profile)
    acc = conv2d_accumulator(
        x,
        x_zero_point,
        w,
        w_zero_point,
        bias,
        strides=strides,
        dilations=dilations,
        groups=groups,
        padding=padding,
    )  # (N, H_out, W_out, C_out) int64, exact
    _check_weight_scale(w_scale, w.shape[0])
    return _finish(
        acc,
        x,
        x_scale,
        w_scale,
        y_scale,
        y_zero_point,
        activation,
        out_dtype,
        prof,
        "conv2d",
    )


def depthwise_conv2d(
    x,
    x_scale,
    x_zero_point,
    w,
    w_scale,
    w_zero_point,
    bias,
    y_scale,
    y_zero_point,
    *,
    depth_multiplier=1,
    strides=(1, 1),
    dilations=(1, 1),
    padding="valid",
    activation=None,
    out_dtype=np.int8,
    profile="exact",
) -> np.ndarray:
    """Quantized depthwise conv2d; output channel ``o = c * depth_multiplier + m``.

    ``acc[n, y, x, o] = bias[o] + sum_{i, j} (X[n, y*sh + i*dh - pt,
    x*sw + j*dw - pl, o // depth_multiplier] - x_zp) * (W[0, i, j, o] -
    w_zp[o])``, then requantized as in :func:`conv2d` (per-channel scales along
    the last weight axis).  Spec: specs/kernels_conv_linear.md, section 3.

    Parameters are those of :func:`conv2d` except ``w`` of shape
    ``(1, kh, kw, C_in * depth_multiplier)`` and ``depth_multiplier``.

    Examples
    --------
    >>> x = np.array([1, 2, 3, 4], np.int8).reshape(1, 1, 2, 2)
    >>> w = np.array([1, 2, 3, -1], np.int8).reshape(1, 1, 1, 4)
    >>> depthwise_conv2d(x, 1.0, 0, w, 1.0, 0, None, 1.0, 0,
    ...                  depth_multiplier=2).tolist()
    [[[[1, 2, 6, -2], [3, 6, 12, -4]]]]
    """
    prof = get_profile(profile)
    acc = depthwise_conv2d_accumulator(
        x,
        x_zero_point,
        w,
        w_zero_point,
        bias,
        depth_multiplier=depth_multiplier,
        strides=strides,
        dilations=dilations,
        padding=padding,
    )  # (N, H_out, W_out, C_in * depth_multiplier) int64, exact
    _check_weight_scale(w_scale, w.shape[3])
    return _finish(
        acc,
        x,
        x_scale,
        w_scale,
        y_scale,
        y_zero_point,
        activation,
        out_dtype,
        prof,
        "depthwise_conv2d",
    )


def conv2d_accumulator(
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
) -> np.ndarray:
    """Exact int64 accumulators of conv2d (module docstring formula), no overflow
    policy applied; see :func:`conv2d` for the parameters."""
    x = _activation_array("x", x)
    w = _weight_array("w", w, x)
    c_out, kh, kw, cg = w.shape
    groups = _groups(groups, x.shape[3], c_out, cg)
    zx = _scalar_zero_point("x_zero_point", x_zero_point, x.dtype)
    zw = _channel_zero_point("w_zero_point", w_zero_point, w.dtype, c_out)
    bias = _bias_array(bias, c_out, x.dtype)
    geom = _geometry(x.shape, (kh, kw), strides, dilations, padding)

    patches = _im2col(x, zx, geom, groups)  # (G, N*H_out*W_out, kh*kw*Cg)
    w_mat = w.reshape(groups, c_out // groups, kh * kw * cg).transpose(0, 2, 1)
    zw_g = zw.reshape(groups, c_out // groups) if zw.ndim else zw
    acc = exact_affine_gemm(patches, zx, w_mat, zw_g)  # (G, M, C_out/G) int64
    acc = acc.transpose(1, 0, 2).reshape(x.shape[0], geom.out_h, geom.out_w, c_out)
    return acc if bias is None else acc + bias  # (N, H_out, W_out, C_out) int64


def depthwise_conv2d_accumulator(
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
) -> np.ndarray:
    """Exact int64 accumulators of depthwise_conv2d, no overflow policy
    applied; one vectorized multiply-add per kernel tap."""
    x = _activation_array("x", x)
    w = _weight_array("w", w, x)
    dm = _positive_int("depth_multiplier", depth_multiplier)
    c_in = x.shape[3]
    if w.shape[0] != 1 or w.shape[3] != c_in * dm:
        raise InvalidArgumentError(
            f"w must have shape (1, kh, kw, C_in * depth_multiplier) = "
            f"(1, kh, kw, {c_in * dm}); got w.shape={w.shape}"
        )
    _, kh, kw, c_out = w.shape
    zx = _scalar_zero_point("x_zero_point", x_zero_point, x.dtype)
    zw = _channel_zero_point("w_zero_point", w_zero_point, w.dtype, c_out)
    bias = _bias_array(bias, c_out, x.dtype)
    geom = _geometry(x.shape, (kh, kw), strides, dilations, padding)

    dtype = _exact_tap_dtype(kh * kw, x.dtype, zx, w.dtype, zw)
    xs = _centred_padded(x, zx, geom, dtype)  # (N, Hp, Wp, C_in), X - x_zp
    ws = (w[0].astype(np.int64) - zw).astype(dtype).reshape(kh, kw, c_in, dm)
    if dm == 1:
        ws = ws[..., 0]  # (kh, kw, C_in): plain 4-D products are faster
    acc = np.empty((x.shape[0], geom.out_h, geom.out_w) + ws.shape[2:], dtype)
    tmp = np.empty_like(acc)
    for i in range(kh):
        for j in range(kw):
            tap = _tap(xs, geom, i, j)  # (N, H_out, W_out, C_in)
            tap = tap if dm == 1 else tap[..., None]
            if i == j == 0:
                np.multiply(tap, ws[i, j], out=acc)
            else:
                np.multiply(tap, ws[i, j], out=tmp)
                acc += tmp  # every partial sum exact in dtype
    acc = acc.reshape(x.shape[0], geom.out_h, geom.out_w, c_out).astype(np.int64)
    return acc if bias is None else acc + bias


# -- shared by conv2d, depthwise_conv2d and refquant.kernels.linear -----------


def _finish(
    acc,
    x,
    x_scale,
    w_scale,
    y_scale,
    y_zero_point,
    activation,
    out_dtype,
    prof,
    op: str,
):
    """Overflow policy, then requantization along the last (channel) axis."""
    from refquant.kernels.requantize import check_accumulator, requantize_accumulator

    x_scale, w_scale, y_scale, y_zero_point = _output_qparams(
        op, x_scale, w_scale, y_scale, y_zero_point, out_dtype
    )
    bits = 64 if x.dtype == np.int16 else 32
    acc = check_accumulator(acc, prof, bits=bits, what=f"{op} accumulator")
    return requantize_accumulator(
        acc,
        x_scale,
        w_scale,
        y_scale,
        y_zero_point,
        out_dtype,
        prof,
        channel_axis=-1,
        activation=activation,
    )


def _output_qparams(op, x_scale, w_scale, y_scale, y_zero_point, out_dtype):
    """The scale arguments and ``y_zero_point`` checked against the kernel's
    contract (``_checks.KERNEL_QPARAMS``), named as the caller named them."""
    from refquant.kernels._checks import check_qparams, out_dtype_of

    v = check_qparams(
        op,
        {"out": out_dtype_of(out_dtype)},
        x_scale=x_scale,
        w_scale=w_scale,
        y_scale=y_scale,
        y_zero_point=y_zero_point,
    )
    return v["x_scale"], v["w_scale"], v["y_scale"], v["y_zero_point"]


class _Geometry:
    """Output size and explicit padding of one 2-D window operation."""

    def __init__(self, out_h, out_w, pads, strides, dilations, kernel):
        self.out_h, self.out_w = out_h, out_w
        self.pads = pads  # ((top, bottom), (left, right))
        self.strides, self.dilations, self.kernel = strides, dilations, kernel


def _geometry(x_shape, kernel, strides, dilations, padding) -> _Geometry:
    strides = _int_pair("strides", strides)
    dilations = _int_pair("dilations", dilations)
    sizes = x_shape[1:3]
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]  # dilated extent
    pads = _pads(padding, sizes, span, strides)
    out = [
        (n + p[0] + p[1] - e) // s + 1 for n, p, e, s in zip(sizes, pads, span, strides)
    ]
    if min(out) < 1:
        raise InvalidArgumentError(
            f"the dilated kernel {tuple(span)} does not fit the padded input "
            f"{tuple(n + p[0] + p[1] for n, p in zip(sizes, pads))}; got "
            f"x.shape={tuple(x_shape)}, padding={padding!r}, "
            f"dilations={dilations}"
        )
    return _Geometry(out[0], out[1], pads, strides, dilations, tuple(kernel))


def _pads(padding, sizes, span, strides):
    """((top, bottom), (left, right)); "same" is TensorFlow's (extra at the end)."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            pads = []
            for n, e, s in zip(sizes, span, strides):
                out = -(-n // s)  # ceil(n / s)
                total = max((out - 1) * s + e - n, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
    else:
        try:
            pads = tuple(tuple(p) for p in padding)
        except TypeError:
            pads = ()
        ok = len(pads) == 2 and all(
            len(p) == 2 and all(_is_int(v) and v >= 0 for v in p) for p in pads
        )
        if ok:
            return tuple((int(p[0]), int(p[1])) for p in pads)
    raise InvalidArgumentError(
        "padding must be 'valid', 'same' or ((top, bottom), (left, right)) of "
        f"non-negative ints; got padding={padding!r}"
    )


def _padded(x: np.ndarray, zx: int, geom: _Geometry) -> np.ndarray:
    (pt, pb), (pl, pr) = geom.pads
    if pt == pb == pl == pr == 0:
        return x
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=zx)


def _centred_padded(x: np.ndarray, zx: int, geom: _Geometry, dtype) -> np.ndarray:
    """X - x_zp in dtype, padded with 0 (the zero point, centred); one pass."""
    (pt, pb), (pl, pr) = geom.pads
    n, h, w, c = x.shape
    out = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype)
    np.subtract(x, dtype(zx), out=out[:, pt : pt + h, pl : pl + w, :], dtype=dtype)
    return out


def _tap(xs: np.ndarray, geom: _Geometry, i: int, j: int) -> np.ndarray:
    """X_padded[:, y*sh + i*dh, x*sw + j*dw, :] for every output (y, x)."""
    (sh, sw), (dh, dw) = geom.strides, geom.dilations
    y0, x0 = i * dh, j * dw
    return xs[
        :,
        y0 : y0 + (geom.out_h - 1) * sh + 1 : sh,
        x0 : x0 + (geom.out_w - 1) * sw + 1 : sw,
        :,
    ]  # (N, H_out, W_out, C) view


def _im2col(x: np.ndarray, zx: int, geom: _Geometry, groups: int) -> np.ndarray:
    """Patches (G, N*H_out*W_out, kh*kw*Cg), column order (i, j, c) as OHWI."""
    (sh, sw), (dh, dw) = geom.strides, geom.dilations
    kh, kw = geom.kernel
    xp = _padded(x, zx, geom)
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    win = sliding_window_view(xp, span, axis=(1, 2))  # (N, Hs, Ws, C, eh, ew)
    win = win[:, ::sh, ::sw, :, ::dh, ::dw][:, : geom.out_h, : geom.out_w]
    n, oh, ow, c = win.shape[:4]
    win = win.reshape(n, oh, ow, groups, c // groups, kh, kw)
    win = win.transpose(3, 0, 1, 2, 5, 6, 4)  # (G, N, H_out, W_out, kh, kw, Cg)
    return win.reshape(groups, n * oh * ow, kh * kw * (c // groups))  # copy


def _exact_tap_dtype(taps, x_dtype, zx, w_dtype, zw):
    """float32 when every partial sum of the taps is an integer below 2**24."""
    xi, wi = np.iinfo(x_dtype), np.iinfo(w_dtype)
    dev_x = max(int(xi.max) - zx, zx - int(xi.min))
    zw_lo, zw_hi = int(np.min(zw)), int(np.max(zw))
    dev_w = max(int(wi.max) - zw_lo, zw_hi - int(wi.min))
    bound = taps * dev_x * dev_w
    if bound <= 2**24:
        return np.float32
    if bound <= 2**53:
        return np.float64
    return np.int64


# -- argument checks ------------------------------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _int_array(name: str, x, allowed: tuple) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise InvalidTypeError(
            f"{name} must be a numpy array of integer codes; got {name} of type "
            f"{type(x).__name__}"
        )
    if x.dtype.type not in allowed:
        names = ", ".join(np.dtype(d).name for d in allowed)
        raise InvalidTypeError(
            f"{name} must have dtype {names}; got {name}.dtype={x.dtype}"
        )
    return x


def _activation_array(name: str, x) -> np.ndarray:
    x = _int_array(name, x, ACTIVATION_DTYPES)
    if x.ndim != 4:
        raise InvalidArgumentError(
            f"{name} must be 4-D NHWC (N, H, W, C); got {name}.shape={x.shape}"
        )
    return x


def _weight_array(name: str, w, x: np.ndarray) -> np.ndarray:
    w = _int_array(name, w, WEIGHT_DTYPES)
    if w.ndim != 4:
        raise InvalidArgumentError(f"{name} must be 4-D; got {name}.shape={w.shape}")
    if x.dtype == np.int16 and w.dtype != np.int8:
        raise InvalidTypeError(
            f"16x8 kernels need int8 weights; got {name}.dtype={w.dtype} with "
            f"int16 activations"
        )
    if 0 in w.shape:
        raise InvalidArgumentError(
            f"{name} must not be empty; got {name}.shape={w.shape}"
        )
    return w


def _positive_int(name: str, v) -> int:
    if not _is_int(v) or v < 1:
        raise InvalidArgumentError(f"{name} must be an int >= 1; got {name}={v!r}")
    return int(v)


def _int_pair(name: str, v) -> tuple[int, int]:
    try:
        pair = tuple(v)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(_is_int(p) and p >= 1 for p in pair):
        raise InvalidArgumentError(
            f"{name} must be a pair of ints >= 1 (height, width); got {name}={v!r}"
        )
    return int(pair[0]), int(pair[1])


def _groups(groups, c_in: int, c_out: int, cg: int) -> int:
    groups = _positive_int("groups", groups)
    if c_in != groups * cg or c_out % groups:
        raise InvalidArgumentError(
            f"groups must divide C_out and satisfy C_in == groups * w.shape[3]; "
            f"got groups={groups}, C_in={c_in}, C_out={c_out}, w.shape[3]={cg}"
        )
    return groups


def _scalar_zero_point(name: str, z, dtype) -> int:
    info = np.iinfo(dtype)
    if isinstance(z, np.ndarray) and z.ndim == 0:
        z = z[()]
    if not _is_int(z) or not info.min <= z <= info.max:
        raise InvalidArgumentError(
            f"{name} must be an int in [{info.min}, {info.max}] "
            f"({np.dtype(dtype).name}); got {name}={z!r}"
        )
    if dtype == np.int16 and z != 0:
        raise InvalidArgumentError(
            f"{name} must be 0 for int16 activations (16x8 kernels); got {name}={z}"
        )
    return int(z)


def _channel_zero_point(name: str, z, dtype, c_out: int) -> np.ndarray:
    """Scalar or (C_out,) zero points as int64, each within dtype's range."""
    info = np.iinfo(dtype)
    if _is_int(z):
        z = np.int64(z)
    z = np.asarray(z)
    if z.dtype == np.bool_ or not np.issubdtype(z.dtype, np.integer):
        raise InvalidTypeError(
            f"{name} must be an int or an int array of shape ({c_out},); got "
            f"{name}={z!r}"
        )
    if z.ndim not in (0, 1) or (z.ndim == 1 and z.shape[0] != c_out):
        raise InvalidArgumentError(
            f"{name} must be a scalar or have shape ({c_out},); got "
            f"{name}.shape={z.shape}"
        )
    bad = np.flatnonzero((z < info.min) | (z > info.max))
    if bad.size:
        where = f"[{bad[0]}]" if z.ndim else ""
        raise InvalidArgumentError(
            f"{name} must lie in [{info.min}, {info.max}] ({np.dtype(dtype).name}); "
            f"got {name}{where}={int(z.reshape(-1)[bad[0]])}"
        )
    return z.astype(np.int64)


def _bias_array(bias, c_out: int, x_dtype) -> np.ndarray | None:
    """int64 copy of the bias after the range check: int32 values, int64 for
    16x8.  A value that does not fit is an error, never clipped."""
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.dtype == np.bool_ or not np.issubdtype(b.dtype, np.integer):
        raise InvalidTypeError(
            f"bias must be an integer array of shape ({c_out},) or None; got "
            f"bias.dtype={b.dtype}"
        )
    if b.shape != (c_out,):
        raise InvalidArgumentError(
            f"bias must have shape ({c_out},) (one value per output channel); got "
            f"bias.shape={b.shape}"
        )
    lo, hi, kind = (
        (INT64_MIN, INT64_MAX, "int64")
        if x_dtype == np.int16
        else (INT32_MIN, INT32_MAX, "int32")
    )
    bad = np.flatnonzero((b < lo) | (b > hi))
    if bad.size:
        c, v = int(bad[0]), int(b[bad[0]])
        raise InvalidArgumentError(
            f"bias[{c}]={v} does not fit {kind} [{lo}, {hi}] for output channel "
            f"{c} ({bad.size} channel(s) out of range); the bias is never clipped: "
            f"choose a larger input or weight scale so that bias / (s_in * s_w[c]) "
            f"fits"
        )
    return b.astype(np.int64)


def _check_weight_scale(w_scale, c_out: int) -> None:
    s = np.asarray(w_scale)
    if s.ndim > 1 or (s.ndim == 1 and s.shape[0] != c_out):
        raise InvalidArgumentError(
            f"w_scale must be a scalar or have shape ({c_out},) (one scale per "
            f"output channel); got w_scale.shape={s.shape}"
        )
