"""QuantizeLinear, DequantizeLinear, requantize and DynamicQuantizeLinear.

``q = clamp(round(x / y_scale) + y_zero_point, qmin, qmax)``: the profile
decides how ``x / y_scale`` is evaluated (``quantize_arithmetic``) and rounded
(``quantize_rounding``), and what NaN gives (``nan_policy``); +-inf saturate.
Spec: ``specs/kernels_pointwise.md`` section 2.
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError, InvalidTypeError, NonFiniteInputError
from refquant.kernels import _arith
from refquant.kernels._checks import (
    along_axis,
    check_qparams,
    codes_dtype,
    int_codes,
    out_dtype_of,
    qrange,
)
from refquant.kernels.requantize import requantize_accumulator
from refquant.profiles import get_profile


def _float_input(x):
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidTypeError(
            f"x must be a float array; got x of dtype {arr.dtype} (integer codes "
            "go through requantize or dequantize_linear)"
        )
    return arr


def _per_axis(name, arr, x, axis):
    if axis is None:
        if arr.ndim:
            return along_axis(name, arr, x.ndim, x.shape, -1 if x.ndim else 0)
        return arr
    return along_axis(name, arr, x.ndim, x.shape, axis)


def quantize_linear(
    x, y_scale, y_zero_point, *, axis=None, out_dtype=np.int8, profile="exact"
):
    """Quantize floats: ``clamp(round(x / y_scale) + y_zero_point, qmin, qmax)``.

    ``round(x / y_scale)`` follows the profile (exact: the real quotient, ties to
    even; tflite_reference: float32 division, ties away; onnxruntime and
    onnx_reference: float32 division, ties to even; pytorch_fbgemm: float32
    reciprocal multiply, ties to even).  NaN raises
    :class:`~refquant.errors.NonFiniteInputError` unless the profile's
    ``nan_policy`` is ``"qmin"``.  ``axis`` lays a 1-D ``y_scale`` /
    ``y_zero_point`` along that axis (per-axis quantization).

    >>> quantize_linear(np.float32([2.5, -2.5]), 1.0, 0).tolist()
    [2, -2]
    >>> quantize_linear(np.float32([2.5, -2.5]), 1.0, 0,
    ...                 profile="tflite_reference").tolist()
    [3, -3]
    """
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    x = _float_input(x)
    v = check_qparams(
        "quantize_linear", {"out": dtype}, y_scale=y_scale, y_zero_point=y_zero_point
    )
    s = _per_axis("y_scale", v["y_scale"], x, axis)
    zp = _per_axis("y_zero_point", v["y_zero_point"], x, axis)
    nan = np.isnan(x)
    if nan.any() and prof.nan_policy == "error":
        raise NonFiniteInputError(
            f"x holds {int(nan.sum())} NaN values; profile {prof.name!r} has "
            "nan_policy='error' (ORT and onnx.reference give qmin)"
        )
    q = _arith.divide_round(
        np.where(nan, 0, x), s, prof.quantize_arithmetic, prof.quantize_rounding
    )
    qmin, qmax = qrange(dtype)
    big = 2.0**40
    out = np.clip(q, -big, big).astype(np.int64) + zp
    out = np.where(nan, qmin, out)
    return np.clip(out, qmin, qmax).astype(dtype)


def dequantize_linear(q, scale, zero_point, *, axis=None, profile="exact"):
    """Dequantize codes: ``(q - zero_point) * scale``.

    ``exact``: the float64 product (correctly rounded); every other profile
    returns float32 ``f32(scale * (q - zero_point))`` (one rounding of the
    exact product when ``scale`` is a float32 value).

    >>> dequantize_linear(np.int8([-3, 5]), 0.5, 1).tolist()
    [-2.0, 2.0]
    """
    prof = get_profile(profile)
    codes = int_codes("q", q)
    v = check_qparams(
        "dequantize_linear",
        {"q": codes_dtype(q)},
        scale=scale,
        zero_point=zero_point,
    )
    s = _per_axis("scale", v["scale"], codes, axis)
    zp = _per_axis("zero_point", v["zero_point"], codes, axis)
    real = (codes - zp) * s  # float64; exact when scale is a float32 value
    if prof.name == "exact":
        return real
    return real.astype(np.float32)


def requantize(
    q, in_scale, in_zero_point, out_scale, out_zero_point, *, out_dtype, profile="exact"
):
    """Re-express codes in new qparams: ``round((q - z_in) * s_in / s_out) + z_out``.

    The rounding is the profile's accumulator requantization with
    ``acc = q - z_in`` and ``M = s_in / s_out`` (TFLite REQUANTIZE: gemmlowp
    double rounding).

    >>> requantize(np.int8([1, 3]), 0.5, 0, 1.0, 0, out_dtype=np.int8).tolist()
    [0, 2]
    """
    codes = int_codes("q", q)
    v = check_qparams(
        "requantize",
        {"q": codes_dtype(q), "out": out_dtype_of(out_dtype)},
        in_scale=in_scale,
        in_zero_point=in_zero_point,
        out_scale=out_scale,
        out_zero_point=out_zero_point,
    )
    return requantize_accumulator(
        codes - v["in_zero_point"],
        v["in_scale"],
        1.0,
        v["out_scale"],
        v["out_zero_point"],
        out_dtype,
        profile,
    )


def _check_float32_range(lo, hi, profile_name):
    """Refuse an input whose range ``hi - lo`` overflows float32 (the float32
    scale ``(hi - lo) / 255`` would be inf)."""
    with np.errstate(over="ignore"):
        width = hi - lo  # float32, rounded half_even
    if not np.isfinite(width):
        raise InvalidArgumentError(
            f"x spans [{float(lo):.7g}, {float(hi):.7g}] (with 0): the range "
            f"{float(hi) - float(lo):.7g} exceeds the largest float32 "
            f"{float(np.finfo(np.float32).max):.7g}, so profile {profile_name!r} "
            "cannot form its float32 scale (hi - lo) / 255; scale x down, or use "
            "profile 'exact' (float64)"
        )


def dynamic_quantize_linear(x, *, profile="exact"):
    """ONNX DynamicQuantizeLinear: uint8 codes with computed scale and zero point.

    ``lo = min(0, min x)``, ``hi = max(0, max x)``, ``scale = (hi - lo) / 255``,
    ``zero_point = round(clamp(0 - lo / scale, 0, 255))``, then
    ``q = quantize_linear(x, scale, zero_point)``.  An all-zero input differs
    (D13): onnxruntime gives ``scale = 1``, onnx_reference ``scale = 1/255``;
    exact gives 1 (the documented zero-width fallback).  ORT and onnx.reference
    work in float32 with ties to even; exact in float64 with exact rounding.

    Returns
    -------
    (q, scale, zero_point) : (uint8 array, float, int)

    >>> q, s, z = dynamic_quantize_linear(np.float32([1, 2, 3]), profile="onnxruntime")
    >>> q.tolist(), float(s), z
    ([85, 170, 255], 0.0117647061124444, 0)
    """
    prof = get_profile(profile)
    x = _float_input(x)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise NonFiniteInputError(
            "x must be a non-empty array of finite values for dynamic quantization"
        )
    method = prof.dynamic_quantize_method
    if method == "exact":
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = 1.0 if hi == lo else (hi - lo) / 255.0
        zp_real = np.clip(_arith.divide_round(-lo, scale, "exact", "half_even"), 0, 255)
        zp = int(zp_real)
    else:
        x = x.astype(np.float32)
        lo = np.float32(min(x.min(), 0))
        hi = np.float32(max(x.max(), 0))
        _check_float32_range(lo, hi, prof.name)
        if method == "onnxruntime":
            scale = (
                np.float32(1.0) if hi == lo else np.float32((hi - lo) / np.float32(255))
            )
        else:  # onnx.reference parenthesises the zero-width case differently
            scale = np.float32(np.float32(1.0) if hi == lo else hi - lo) / np.float32(
                255
            )
        zp = int(np.rint(np.clip(np.float32(0) - lo / scale, 0, 255)))
    q = quantize_linear(x, scale, zp, out_dtype=np.uint8, profile=prof)
    return q, scale, zp
