"""Integer fully connected, batched matmul and the ONNX *Integer ops.

``acc[..., o] = bias[o] + sum_k (X[..., k] - x_zp) * (W[o, k] - w_zp[o])``
(fully connected, TFLite ``[C_out, K]`` weights) and
``acc[..., i, j] = sum_k (A[..., i, k] - a_zp[i]) * (B[..., k, j] - b_zp[j])``
(matmul), exact in int64 on :func:`refquant.kernels.gemm.exact_affine_gemm`,
then the profile's overflow policy and requantization (see
specs/kernels_conv_linear.md, sections 4-6).
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.kernels.conv import (
    _bias_array,
    _channel_zero_point,
    _check_weight_scale,
    _finish,
    _int_array,
    _output_qparams,
    _scalar_zero_point,
    conv2d_accumulator,
)
from refquant.kernels.gemm import PreparedGemmOperand, exact_affine_gemm
from refquant.profiles import get_profile

_MATMUL_DTYPES = (np.int8, np.uint8)


def fully_connected(
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
    activation=None,
    out_dtype=np.int8,
    profile="exact",
) -> np.ndarray:
    """Quantized fully connected: ``y = requantize(X' W'^T + bias)``.

    ``y[..., o] = clamp(zp_y + round(acc[..., o] * s_x * s_w[o] / s_y),
    act_min, act_max)`` with ``acc`` as in the module docstring; the profile's
    fully-connected rounding applies (``Profile.for_op("fully_connected")``:
    TFLite's reference kernel rounds in float64, ties away from zero).  16x8:
    int16 ``x`` with zero point 0, int8 weights, int64 bias.

    Parameters
    ----------
    x : ndarray of int8, uint8 or int16, shape (..., K)
    w : ndarray of int8 or uint8, shape (C_out, K), or PreparedGemmOperand
        A prepared operand is ``prepare_weights(w.T, w_zero_point)``
        (:func:`refquant.kernels.gemm.prepare_weights`, shape (K, C_out)): the
        weight is converted and summed once for every call that reuses it.
    w_scale, w_zero_point : scalar or shape (C_out,)
        With a prepared ``w``, ``w_zero_point`` is None or the prepared one.
    bias : array of int, shape (C_out,), or None
    Other parameters as in :func:`refquant.kernels.conv.conv2d`.

    Returns
    -------
    ndarray of out_dtype, shape x.shape[:-1] + (C_out,)

    Examples
    --------
    >>> x = np.array([[10, -4]], np.int8)
    >>> w = np.array([[1, 2], [3, -1]], np.int8)
    >>> fully_connected(x, 0.5, 0, w, 1.0, 0, np.array([1, 0]), 1.0, 0).tolist()
    [[2, 17]]
    """
    prof = get_profile(profile).for_op("fully_connected")
    acc = _fc_accumulator(
        x, x_zero_point, w, w_zero_point, bias, float_ok=_float_requantize(prof, x)
    )
    _check_weight_scale(w_scale, acc.shape[-1])
    if acc.dtype.kind == "f":
        args = (x_scale, w_scale, y_scale, y_zero_point, activation, out_dtype)
        return _finish_exact_float(acc, x, *args, prof)
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
        "fully_connected",
    )


def _finish_exact_float(
    acc, x, x_scale, w_scale, y_scale, y_zero_point, activation, out_dtype, prof
):
    """``conv._finish`` for the GEMM's float result: the same argument checks,
    overflow policy and requantization, without the integrality pass (the
    values are exact integers by the GEMM's contract, integer_gemm.md 7)."""
    from refquant.kernels import requantize

    x_scale, w_scale, y_scale, y_zero_point = _output_qparams(
        "fully_connected", x_scale, w_scale, y_scale, y_zero_point, out_dtype
    )
    bits = 64 if x.dtype == np.int16 else 32
    acc = requantize._overflow_policy(acc, prof, bits, "fully_connected accumulator")
    return requantize._requantize_integers(
        acc,
        x_scale,
        w_scale,
        y_scale,
        y_zero_point,
        out_dtype,
        prof,
        -1,
        activation,
    )


def _float_requantize(prof, x) -> bool:
    """True when the requantization converts ``acc`` to float anyway, so the
    GEMM may hand over its exact float result without an int64 pass."""
    wide = np.asarray(x).dtype == np.int16  # 16x8: 16-bit output method
    method = prof.requantize_int64_method if wide else prof.requantize_method
    return method in ("float64", "float32")


def fully_connected_accumulator(x, x_zero_point, w, w_zero_point, bias=None):
    """Exact int64 accumulators of :func:`fully_connected`, no overflow policy.

    ``w`` may be a :class:`~refquant.kernels.gemm.PreparedGemmOperand` made by
    ``prepare_weights(w.T, w_zero_point)``; ``w_zero_point`` is then None or
    equal to the prepared zero point.
    """
    return _fc_accumulator(x, x_zero_point, w, w_zero_point, bias, float_ok=False)


def _fc_accumulator(x, x_zero_point, w, w_zero_point, bias, *, float_ok):
    """int64 accumulators, or (``float_ok``) the GEMM's exact float result.

    With ``float_ok`` the bias is added in float64 when ``max|acc| +
    max|bias| <= 2**53`` (every sum exact); otherwise the result is int64.
    """
    x = _int_array("x", x, (np.int8, np.uint8, np.int16))
    if x.ndim < 1:
        raise InvalidArgumentError(f"x must have at least 1 dimension; got x={x!r}")
    prepared = w if isinstance(w, PreparedGemmOperand) else None
    if prepared is not None:
        w_t = prepared.values  # (K, C_out)
        _int_array("w", w_t, (np.int8, np.uint8))
        if w_t.ndim != 2 or w_t.shape[0] != x.shape[-1] or 0 in w_t.shape:
            raise InvalidArgumentError(
                f"a prepared w must have shape (K, C_out) with K = x.shape[-1] = "
                f"{x.shape[-1]} (prepare_weights(w.T, w_zero_point)); got "
                f"shape={w_t.shape}"
            )
        given_zw = w_zero_point
        w_zero_point = prepared.zero_point if w_zero_point is None else w_zero_point
        w_dtype, c_out = w_t.dtype, w_t.shape[1]
    else:
        w = _int_array("w", w, (np.int8, np.uint8))
        if w.ndim != 2 or w.shape[1] != x.shape[-1] or 0 in w.shape:
            raise InvalidArgumentError(
                f"w must have shape (C_out, K) with K = x.shape[-1] = "
                f"{x.shape[-1]}; got w.shape={w.shape}"
            )
        w_dtype, c_out = w.dtype, w.shape[0]
    if x.dtype == np.int16 and w_dtype != np.int8:
        raise InvalidTypeError(
            f"16x8 kernels need int8 weights; got w.dtype={w_dtype} with int16 "
            f"activations"
        )
    zx = _scalar_zero_point("x_zero_point", x_zero_point, x.dtype)
    zw = _channel_zero_point("w_zero_point", w_zero_point, w_dtype, c_out)
    if prepared is not None and given_zw is not None:
        _check_prepared_zero_point(zw, prepared.zero_point, c_out)
    bias = _bias_array(bias, c_out, x.dtype)

    x2 = x.reshape(-1, x.shape[-1])  # (batches, K)
    b = w.T if prepared is None else prepared
    result = "float" if float_ok else "int64"
    acc = exact_affine_gemm(x2, zx, b, zw, result=result)  # (batches, C_out), exact
    acc = acc.reshape(x.shape[:-1] + (c_out,))
    if bias is None:
        return acc
    if acc.dtype == np.int64:
        return acc + bias
    acc_max = float(np.abs(acc).max()) if acc.size else 0.0
    bias_max = max(abs(int(bias.min())), abs(int(bias.max())))  # no int64 abs
    if acc_max + bias_max <= 2**53:  # float64 sums of integers below 2**53 are exact
        return np.add(acc, bias, dtype=np.float64)
    return acc.astype(np.int64) + bias


def _check_prepared_zero_point(zw, prepared_zw, c_out: int) -> None:
    same = np.array_equal(
        np.broadcast_to(zw, (c_out,)), np.broadcast_to(prepared_zw, (c_out,))
    )
    if not same:
        raise InvalidArgumentError(
            "w_zero_point must be None or equal the prepared weight's zero point "
            f"{prepared_zw.tolist()!r}; got w_zero_point={zw.tolist()!r}"
        )


def batch_matmul(
    a,
    a_scale,
    a_zero_point,
    b,
    b_scale,
    b_zero_point,
    y_scale,
    y_zero_point,
    *,
    out_dtype=np.int8,
    profile="exact",
) -> np.ndarray:
    """Quantized matmul with ONNX QLinearMatMul semantics.

    ``y[..., i, j] = sat(zp_y + round(acc[..., i, j] * s_a[i] * s_b[j] / s_y))``
    with ``acc`` the exact ``sum_k (A - a_zp[i]) (B - b_zp[j])``; a's scale and
    zero point are per tensor or per row, b's per tensor or per column; batch
    dimensions broadcast as in :func:`numpy.matmul` (a 1-D operand is promoted
    and the added axis removed).  The int32 accumulator obeys the profile's
    overflow policy.

    Parameters
    ----------
    a : ndarray of int8 or uint8, shape (..., M, K) or (K,)
    a_scale, a_zero_point : scalar or shape (M,)
    b : ndarray of int8 or uint8, shape (..., K, N) or (K,)
    b_scale, b_zero_point : scalar or shape (N,)
    y_scale : float
    y_zero_point : int
    out_dtype : numpy integer dtype
    profile : str or Profile

    Examples
    --------
    >>> a = np.array([[3, 5]], np.uint8)
    >>> b = np.array([[1], [1]], np.int8)
    >>> batch_matmul(a, 0.5, 0, b, 0.5, 0, 1.0, 0).tolist()  # 8 * 0.25 = 2
    [[2]]
    """
    prof = get_profile(profile)
    a2, b2, squeeze = _promote(a, b)
    m, n = a2.shape[-2], b2.shape[-1]
    za = _vector_param("a_zero_point", a_zero_point, m, "rows of a")
    zb = _vector_param("b_zero_point", b_zero_point, n, "columns of b")
    sa = _vector_param("a_scale", a_scale, m, "rows of a", kind="scale")
    sb = _vector_param("b_scale", b_scale, n, "columns of b", kind="scale")
    from refquant.kernels._checks import check_qparams, out_dtype_of

    v = check_qparams(
        "batch_matmul",
        {"out": out_dtype_of(out_dtype)},  # a and b zero points: _matmul_acc
        a_scale=sa,
        b_scale=sb,
        y_scale=y_scale,
        y_zero_point=y_zero_point,
    )
    y_scale, y_zero_point = v["y_scale"], v["y_zero_point"]
    acc = _matmul_acc(a2, za, b2, zb)  # (..., M, N) int64, exact
    acc = _finish_matmul(acc, prof, "batch_matmul")
    s_in = sa.reshape((1,) * (acc.ndim - 2) + (m, 1)) if sa.ndim else sa
    from refquant.kernels.requantize import requantize_accumulator

    y = requantize_accumulator(
        acc, s_in, sb, y_scale, y_zero_point, out_dtype, prof, channel_axis=-1
    )
    return _squeeze(y, squeeze)


def matmul_integer(a, b, a_zero_point=0, b_zero_point=0, *, profile="exact"):
    """ONNX MatMulInteger: ``int32(sum_k (A - a_zp[i]) * (B - b_zp[j]))``.

    The exact sum is computed in int64; outside int32 it raises
    (``overflow="error"`` profiles) or wraps modulo 2**32 (``onnxruntime``,
    ``onnx_reference``).  Zero points are per tensor, per row of a or per
    column of b.  Shapes as in :func:`batch_matmul`.

    >>> a = np.full((1, 2), 127, np.int8)
    >>> matmul_integer(a, a.T, profile="onnxruntime").tolist()
    [[32258]]
    """
    prof = get_profile(profile)
    a2, b2, squeeze = _promote(a, b)
    za = _vector_param("a_zero_point", a_zero_point, a2.shape[-2], "rows of a")
    zb = _vector_param("b_zero_point", b_zero_point, b2.shape[-1], "columns of b")
    acc = _matmul_acc(a2, za, b2, zb)
    acc = _finish_matmul(acc, prof, "matmul_integer")
    return _squeeze(acc.astype(np.int32), squeeze)


def conv_integer(
    x,
    w,
    x_zero_point=0,
    w_zero_point=0,
    *,
    strides=(1, 1),
    dilations=(1, 1),
    groups=1,
    padding="valid",
    profile="exact",
):
    """ONNX ConvInteger in refquant's layouts: int32 accumulators, no bias.

    ``y[n, y, x, o] = int32(sum (X - x_zp) * (W[o] - w_zp[o]))`` with x NHWC
    (N, H, W, C_in) and w OHWI (C_out, kh, kw, C_in / groups); transpose ONNX's
    NCHW / OIHW tensors with ``x.transpose(0, 2, 3, 1)`` and
    ``w.transpose(0, 2, 3, 1)``.  ONNX ``auto_pad="SAME_UPPER"`` is
    ``padding="same"``; explicit ``pads=[t, l, b, r]`` is ``((t, b), (l, r))``.
    Overflow of int32 raises or wraps per the profile.

    >>> x = np.full((1, 1, 2, 1), 255, np.uint8)
    >>> w = np.full((1, 1, 2, 1), 255, np.uint8)
    >>> conv_integer(x, w).ravel().tolist()
    [130050]
    """
    prof = get_profile(profile)
    x = _int_array("x", x, _MATMUL_DTYPES)
    acc = conv2d_accumulator(
        x,
        x_zero_point,
        w,
        w_zero_point,
        None,
        strides=strides,
        dilations=dilations,
        groups=groups,
        padding=padding,
    )
    return _finish_matmul(acc, prof, "conv_integer").astype(np.int32)


# -- helpers --------------------------------------------------------------------


def _promote(a, b):
    """numpy.matmul's 1-D promotion; returns (a2, b2, axes to squeeze)."""
    a = _int_array("a", a, _MATMUL_DTYPES)
    b = _int_array("b", b, _MATMUL_DTYPES)
    if a.ndim == 0 or b.ndim == 0:
        raise InvalidArgumentError(
            f"a and b must have at least 1 dimension; got a.shape={a.shape}, "
            f"b.shape={b.shape}"
        )
    squeeze = []
    if a.ndim == 1:
        a = a[None, :]
        squeeze.append(-2)
    if b.ndim == 1:
        b = b[:, None]
        squeeze.append(-1)
    if a.shape[-1] != b.shape[-2]:
        raise InvalidArgumentError(
            f"a.shape[-1] must equal b.shape[-2] (K); got a.shape={a.shape}, "
            f"b.shape={b.shape}"
        )
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise InvalidArgumentError(
            f"batch dimensions of a and b must broadcast; got a.shape={a.shape}, "
            f"b.shape={b.shape}"
        ) from None
    return a, b, tuple(squeeze)


def _squeeze(y: np.ndarray, axes: tuple) -> np.ndarray:
    return np.squeeze(y, axis=axes) if axes else y


def _vector_param(name, value, length, what, kind="zero_point") -> np.ndarray:
    arr = np.asarray(value)
    if kind == "scale":
        ok = arr.dtype != np.bool_ and arr.dtype.kind in "iuf"  # real numbers
    else:
        ok = arr.dtype != np.bool_ and np.issubdtype(arr.dtype, np.integer)
    if not ok:
        allowed = "float" if kind == "scale" else "int"
        raise InvalidTypeError(
            f"{name} must be a {allowed} or a 1-D array of length {length} "
            f"({what}); got {name}={value!r}"
        )
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != length):
        raise InvalidArgumentError(
            f"{name} must be a scalar or a 1-D array of length {length} ({what}); "
            f"got {name}.shape={arr.shape}"
        )
    return arr.astype(np.float64 if kind == "scale" else np.int64)


def _matmul_acc(a, za, b, zb) -> np.ndarray:
    for name, z, x in (("a_zero_point", za, a), ("b_zero_point", zb, b)):
        info = np.iinfo(x.dtype)
        if z.size and (z.min() < info.min or z.max() > info.max):
            raise InvalidArgumentError(
                f"{name} must lie in [{info.min}, {info.max}] ({x.dtype}); got "
                f"{name}={z.tolist()!r}"
            )
    return exact_affine_gemm(a, za, b, zb)


def _finish_matmul(acc, prof, what: str) -> np.ndarray:
    from refquant.kernels.requantize import check_accumulator

    return check_accumulator(acc, prof, bits=32, what=f"{what} accumulator")
