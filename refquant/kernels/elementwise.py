"""Quantized elementwise add and mul (NumPy broadcasting).

Real formulas (``d_a = a - z_a``, ``d_b = b - z_b``)::

    add: y = z_y + round((s_a * d_a + s_b * d_b) / s_y)
    mul: y = z_y + round(s_a * s_b * d_a * d_b / s_y)

then the fused activation clamp and the ``out_dtype`` range.  The profile's
``add_method`` / ``mul_method`` decides the arithmetic (spec:
``specs/kernels_pointwise.md`` section 3):

* ``exact``: the rational value above, rounded by ``requantize_rounding``.
* ``tflite_fixed_point``: TFLite reference ADD (inputs left-shifted by 20,
  per-input gemmlowp multipliers, double rounding) and MUL (gemmlowp double
  rounding of ``d_a * d_b`` with ``M = s_a * s_b / s_y``).
* ``onnxruntime_float32``: ORT MLAS QLinearAdd (x86 AVX2 vector path, fused
  multiply-adds for the constant term and each element; a single output value
  goes through the scalar helper) and QLinearMul in float32, ties to even.
* ``float32``: dequantize to float32 as ``fma(s, q, f32(-z * s))``, add /
  multiply in float32, quantize with the profile's quantize arithmetic and
  rounding (PyTorch fbgemm ``quantized::add``; onnx.reference graphs).
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError
from refquant.kernels import _arith
from refquant.kernels._checks import (
    check_qparams,
    codes_dtype,
    int_codes,
    out_dtype_of,
    qrange,
)
from refquant.kernels.activations import activation_range
from refquant.numerics import fixedpoint
from refquant.profiles import get_profile


def _prepare(
    a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point, dtype, op
):
    qa, qb = int_codes("a", a), int_codes("b", b)
    try:
        shape = np.broadcast_shapes(qa.shape, qb.shape)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"a and b must broadcast; got shapes {qa.shape} and {qb.shape}"
        ) from exc
    code_dtypes = {"a": codes_dtype(a), "b": codes_dtype(b), "out": dtype}
    v = check_qparams(
        op,
        code_dtypes,
        a_scale=a_scale,
        a_zero_point=a_zero_point,
        b_scale=b_scale,
        b_zero_point=b_zero_point,
        y_scale=y_scale,
        y_zero_point=y_zero_point,
    )
    params = {
        key: v[name].item()
        for key, name in (
            ("s_a", "a_scale"),
            ("s_b", "b_scale"),
            ("s_y", "y_scale"),
            ("z_a", "a_zero_point"),
            ("z_b", "b_zero_point"),
            ("z_y", "y_zero_point"),
        )
    }
    return np.broadcast_to(qa, shape), np.broadcast_to(qb, shape), params


def _finish(y, activation, p, dtype, prof):
    lo, hi = activation_range(activation, p["s_y"], p["z_y"], dtype, prof)
    qmin, qmax = qrange(dtype)
    return np.clip(np.clip(y, lo, hi), qmin, qmax).astype(dtype)


def _to_int(v):
    return np.clip(v, -(2.0**40), 2.0**40).astype(np.int64)


def _dequantize32(q, s, z):
    """``fma(s, q, f32(-z * s))`` rounded once to float32 (ATen's vectorized
    dequantize); ``s * q`` plus the float32 offset is exact in float64."""
    s32 = np.float32(s)
    offset = np.float32(-np.float32(z) * s32)
    return (np.float64(s32) * q + np.float64(offset)).astype(np.float32)


def _quantize32(v, p, prof):
    q = _arith.divide_round(
        v, p["s_y"], prof.quantize_arithmetic, prof.quantize_rounding
    )
    return _to_int(q) + p["z_y"]


# ------------------------------------------------------------------------ add
def _add_tflite(qa, qb, p, dtype):
    left_shift = 15 if dtype.itemsize == 2 else 20
    s_a, s_b, s_y = (float(np.float32(p[k])) for k in ("s_a", "s_b", "s_y"))
    twice_max = 2.0 * max(s_a, s_b)
    m_a, sh_a = fixedpoint.quantize_multiplier(s_a / twice_max)
    m_b, sh_b = fixedpoint.quantize_multiplier(s_b / twice_max)
    m_y, sh_y = fixedpoint.quantize_multiplier(twice_max / ((1 << left_shift) * s_y))
    mbqm = fixedpoint.multiply_by_quantized_multiplier
    scaled_a = mbqm((qa - p["z_a"]) << left_shift, m_a, sh_a)
    scaled_b = mbqm((qb - p["z_b"]) << left_shift, m_b, sh_b)
    return mbqm(scaled_a + scaled_b, m_y, sh_y) + p["z_y"]


def _add_tflite_pot_int16(qa, qb, p):
    """TFLite int16 ADD, shift-only path: ``None`` where LiteRT takes the other.

    Taken when every zero point is 0 and ``checked_log2`` finds all three
    scales powers of two.  One input must have the output's exponent and the
    other a smaller one (LiteRT Prepare refuses anything else); the finer input
    is divided by ``2**r`` with ties away from zero, then the int16 sum
    saturates.
    """
    if (p["z_a"], p["z_b"], p["z_y"]) != (0, 0, 0):
        return None
    logs = [fixedpoint.checked_log2(p[k]) for k in ("s_a", "s_b", "s_y")]
    if not all(pot for _, pot in logs):
        return None
    (e_a, _), (e_b, _), (e_y, _) = logs
    shift_a, shift_b = e_a - e_y, e_b - e_y
    if not ((shift_a == 0 or shift_b == 0) and shift_a <= 0 and shift_b <= 0):
        raise InvalidArgumentError(
            "the TFLite int16 power-of-two ADD needs one input at the output's "
            "scale and the other at an equal or finer one; got exponents "
            f"a {e_a}, b {e_b}, y {e_y}"
        )
    right = -shift_b if shift_a == 0 else -shift_a
    if right > 15:
        raise InvalidArgumentError(
            "the TFLite int16 power-of-two ADD shifts an int16 input right by at "
            f"most 15 bits; got a shift of {right} (scale exponents a {e_a}, "
            f"b {e_b}, y {e_y})"
        )
    kept, shifted = (qa, qb) if shift_a == 0 else (qb, qa)
    total = kept + fixedpoint.rounding_right_shift(shifted, right)
    return np.clip(total, -(2**15), 2**15 - 1)  # SaturatingAdd on int16


def _add_ort(qa, qb, p):
    """ORT MLAS QLinearAdd, x86: vector kernel, or the scalar helper for 1 value."""
    f32 = np.float32
    s_a, s_b, s_y = f32(p["s_a"]), f32(p["s_b"]), f32(p["s_y"])
    if qa.size == 1:  # MlasQLinearAddKernelRawHelper
        va = s_a * (qa - p["z_a"]).astype(f32)
        vb = s_b * (qb - p["z_b"]).astype(f32)
        return _to_int(np.rint((va + vb) / s_y)) + p["z_y"]
    r_a, r_b = f32(s_a / s_y), f32(s_b / s_y)
    # z_y - fma(r_a, z_a, f32(r_b * z_b)): the product-sum is exact in float64
    inner = np.float64(r_a) * p["z_a"] + np.float64(f32(r_b * f32(p["z_b"])))
    fixed = f32(f32(p["z_y"]) - f32(inner))
    # elements: fma(b, r_b, fma(a, r_a, fixed)); each float64 sum is exact, so
    # one rounding to float32 per fma
    t = (qa * np.float64(r_a) + np.float64(fixed)).astype(f32)
    v = (qb * np.float64(r_b) + np.float64(t)).astype(f32)
    return _to_int(np.rint(v))


def add(
    a,
    a_scale,
    a_zero_point,
    b,
    b_scale,
    b_zero_point,
    y_scale,
    y_zero_point,
    *,
    activation=None,
    out_dtype=np.int8,
    profile="exact",
    pot_scale_int16=False,
):
    """Quantized add: ``z_y + round((s_a * (a - z_a) + s_b * (b - z_b)) / s_y)``.

    Rounding per the profile's ``add_method`` (module docstring).  Ties
    (D9: ``2 + (-63)`` at scale 0.5 -> 1.0 is -30.5): exact -30 (half_even),
    tflite_reference -31, onnxruntime -30.

    ``pot_scale_int16`` is TFLite's ``AddOptions.pot_scale_int16`` and only
    matters for ``add_method="tflite_fixed_point"`` with int16 output: when
    True and all zero points are 0 and all scales are powers of two (TFLite
    ``CheckedLog2``), the shift-only path is used (the input at the finer
    scale is shifted to the output scale with ties away from zero, then the
    int16 sum saturates); otherwise the general path (left shift 15).  The
    schema default is True; False (the default here) always takes the
    general path.

    >>> add(np.int8([2]), 0.5, 0, np.int8([-63]), 0.5, 0, 1.0, 0).tolist()
    [-30]
    >>> add(np.int8([2]), 0.5, 0, np.int8([-63]), 0.5, 0, 1.0, 0,
    ...     profile="tflite_reference").tolist()
    [-31]
    """
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    if not isinstance(pot_scale_int16, (bool, np.bool_)):
        raise InvalidArgumentError(
            f"pot_scale_int16 must be a bool; got pot_scale_int16={pot_scale_int16!r}"
        )
    qa, qb, p = _prepare(
        a,
        a_scale,
        a_zero_point,
        b,
        b_scale,
        b_zero_point,
        y_scale,
        y_zero_point,
        dtype,
        "add",
    )
    method = prof.add_method
    if method == "exact":
        r = _arith.exact_round_ratio(
            [[qa - p["z_a"], p["s_a"]], [qb - p["z_b"], p["s_b"]]],
            [p["s_y"]],
            prof.requantize_rounding,
        )
        y = _to_int(r) + p["z_y"]
    elif method == "tflite_fixed_point":
        y = None
        if pot_scale_int16 and dtype == np.int16:
            y = _add_tflite_pot_int16(qa, qb, p)
        if y is None:
            y = _add_tflite(qa, qb, p, dtype)
    elif method == "onnxruntime_float32":
        y = _add_ort(qa, qb, p)
    else:
        v = _dequantize32(qa, p["s_a"], p["z_a"]) + _dequantize32(
            qb, p["s_b"], p["z_b"]
        )
        y = _quantize32(v, p, prof)
    return _finish(y, activation, p, dtype, prof)


# ------------------------------------------------------------------------ mul
def mul(
    a,
    a_scale,
    a_zero_point,
    b,
    b_scale,
    b_zero_point,
    y_scale,
    y_zero_point,
    *,
    activation=None,
    out_dtype=np.int8,
    profile="exact",
):
    """Quantized mul: ``z_y + round(s_a * s_b * (a - z_a) * (b - z_b) / s_y)``.

    ``tflite_fixed_point``: ``MBQM((a - z_a) * (b - z_b), quantize_multiplier(
    f64(s_a) * f64(s_b) / f64(s_y)))`` with double rounding;
    ``onnxruntime_float32``: ``rint(f32(prod) * f32(f32(s_a * s_b) / s_y) + z_y)``
    (ties decided on the output code);
    ``float32``: dequantize, multiply and quantize in float32.

    >>> mul(np.int8([3]), 0.5, 0, np.int8([-1]), 1.0, 0, 1.0, 0).tolist()
    [-2]
    >>> mul(np.int8([3]), 0.5, 0, np.int8([-1]), 1.0, 0, 1.0, 0,
    ...     profile="tflite_reference").tolist()
    [-1]
    """
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    qa, qb, p = _prepare(
        a,
        a_scale,
        a_zero_point,
        b,
        b_scale,
        b_zero_point,
        y_scale,
        y_zero_point,
        dtype,
        "mul",
    )
    prod = (qa - p["z_a"]) * (qb - p["z_b"])  # exact, |prod| <= 2**32
    method = prof.mul_method
    if method == "exact":
        r = _arith.exact_round_ratio(
            [[prod, p["s_a"], p["s_b"]]], [p["s_y"]], prof.requantize_rounding
        )
        y = _to_int(r) + p["z_y"]
    elif method == "tflite_fixed_point":
        m, sh = fixedpoint.quantize_multiplier(p["s_a"] * p["s_b"] / p["s_y"])
        y = fixedpoint.multiply_by_quantized_multiplier(prod, m, sh) + p["z_y"]
    elif method == "onnxruntime_float32":
        f32 = np.float32
        m32 = f32(f32(f32(p["s_a"]) * f32(p["s_b"])) / f32(p["s_y"]))
        # the output zero point is added in float32 before rounding (measured)
        y = _to_int(np.rint(prod.astype(f32) * m32 + f32(p["z_y"])))
    else:
        v = _dequantize32(qa, p["s_a"], p["z_a"]) * _dequantize32(
            qb, p["s_b"], p["z_b"]
        )
        y = _quantize32(v, p, prof)
    return _finish(y, activation, p, dtype, prof)
