"""Requantization of exact integer accumulators to output codes.

Summary (spec: ``specs/kernels_pointwise.md`` section 1)::

    M   = s_in * s_w[c] / s_out                      (real multiplier)
    y   = round_profile(acc * M) + z_out             (profile rounding site)
    out = clip(y, act_lo, act_hi) clipped to out_dtype

The profile's ``requantize_method`` decides ``round_profile``:

* ``exact``: the rational ``acc * M`` (float64 scales taken as exact
  rationals) rounded by ``requantize_rounding`` -- correctly rounded.
* ``float64``: ``round(f64(acc) * M64)`` with ``M64`` per
  ``multiplier_formation``.
* ``float32``: ``round(f32(f32(acc) * M32))`` (ORT MLAS, XNNPACK, fbgemm).
* ``tflite_double`` / ``tflite_single`` / ``tflite_double_up``:
  ``quantize_multiplier(M64)`` then the fixed-point multiply of that name.
* ``tflite_int64``: the 16x8 int64 fixed-point multiply.
"""

from __future__ import annotations

import numpy as np

from refquant._validation import IntRange, check
from refquant.errors import AccumulatorOverflowError, InvalidArgumentError
from refquant.kernels import _arith
from refquant.kernels._checks import (
    along_axis,
    integer_values,
    out_dtype_of,
    qrange,
    scales,
    zero_points,
)
from refquant.kernels.activations import activation_range
from refquant.numerics import fixedpoint
from refquant.profiles import get_profile

_FIXED_POINT = {
    "tflite_double": "double",
    "tflite_single": "single",
    "tflite_double_up": "double_up",
}


def check_accumulator(acc, profile="exact", *, bits=32, what="accumulator"):
    """Apply the profile's overflow policy to integer accumulators.

    ``"error"``: raise :class:`~refquant.errors.AccumulatorOverflowError` if any
    value is outside ``[-2**(bits-1), 2**(bits-1) - 1]``; ``"wrap"``: return
    the values reduced modulo ``2**bits`` into that range (two's complement).

    Parameters
    ----------
    acc : array_like of int, or float32 / float64 array of integers
        Exact accumulators (int64, or the float form of
        :func:`~refquant.kernels.gemm.exact_affine_gemm`).
    profile : str or Profile
    bits : int
        Accumulator width, in [2, 64].
    what : str
        Name used in the error message (e.g. ``"conv2d accumulator"``).

    Returns
    -------
    numpy.ndarray of int64, or ``acc`` itself (float input, nothing wrapped)

    >>> check_accumulator(np.array([2**31]), "onnxruntime").tolist()
    [-2147483648]
    """
    prof = get_profile(profile)
    check("bits", bits, IntRange(2, 64))
    return _overflow_policy(integer_values(what, acc), prof, bits, what)


def _overflow_policy(acc, prof, bits, what):
    """:func:`check_accumulator` on values already known to be integers."""
    if acc.size == 0 or (bits == 64 and acc.dtype == np.int64):
        return acc
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    # two reductions, compared as Python numbers (exact for every dtype)
    if low <= acc.min().item() and acc.max().item() <= high:
        return acc
    if acc.dtype != np.int64:
        if bits == 64 or np.abs(acc).max() >= 2.0**63:
            raise AccumulatorOverflowError(
                f"{what} holds a float value outside int64; float accumulators "
                "must be exact integers"
            )
        acc = acc.astype(np.int64)
    outside = (acc < low) | (acc > high)
    if prof.overflow == "wrap":
        return ((acc - low) & (2**bits - 1)) + low
    first = int(acc[outside].flat[0])
    raise AccumulatorOverflowError(
        f"{what} overflows int{bits}: {int(outside.sum())} of {acc.size} values "
        f"are outside [{low}, {high}], e.g. {first}; profile {prof.name!r} has "
        "overflow='error' (use a profile with overflow='wrap' to emulate "
        "two's-complement wrap)"
    )


def _multiplier64(s_in, s_w, s_out, formation):
    if formation == "float32":
        prod = s_in.astype(np.float32) * s_w.astype(np.float32)
        return (prod / s_out.astype(np.float32)).astype(np.float64)
    return s_in * s_w / s_out


def _scaled_float(acc, m64, method):
    """``f64(acc) * M64`` or ``f32(f32(acc) * f32(M))`` as float64.

    ``acc`` is int64 or an integer-valued float array: converting either to
    float32 / float64 rounds the same integer once (RNE), so both give the
    same bits; a float64 ``acc`` is used without a copy.
    """
    if method == "float32":
        a32 = acc.astype(np.float32, copy=False)
        return (a32 * m64.astype(np.float32)).astype(np.float64)
    return acc.astype(np.float64, copy=False) * m64


def _fixed_point(acc, m64, method):
    mult, shift = fixedpoint.quantize_multiplier(
        np.asarray(m64), single_rounding=method == "tflite_single"
    )
    mult, shift = np.asarray(mult), np.asarray(shift)
    if method == "tflite_int64":
        if np.any(shift > 7):
            raise InvalidArgumentError(
                "requantize_method='tflite_int64' needs a multiplier below 2**7; "
                f"got M={float(np.max(m64))!r}"
            )
        return fixedpoint.multiply_by_quantized_multiplier_int64(acc, mult, shift)
    if np.any(shift > 30):
        raise InvalidArgumentError(
            f"requantize_method={method!r} needs a multiplier below 2**30; got "
            f"M={float(np.max(m64))!r}"
        )
    return fixedpoint.multiply_by_quantized_multiplier(
        acc, mult, shift, rounding=_FIXED_POINT[method]
    )


def requantize_accumulator(
    acc,
    input_scale,
    weight_scale,
    output_scale,
    output_zero_point,
    out_dtype,
    profile="exact",
    *,
    channel_axis=-1,
    activation=None,
):
    """Requantize exact integer accumulators: ``round(acc * M) + z_out``, clamped.

    ``M = input_scale * weight_scale / output_scale``; the profile decides how
    ``M`` is formed and how the product rounds (module docstring; spec
    ``specs/kernels_pointwise.md`` section 1).  The fused ``activation`` clamp
    and the ``out_dtype`` range are applied last.

    Parameters
    ----------
    acc : array_like of int, or float32 / float64 array of integers
        Exact accumulators, bias included: int64, or float32 / float64 arrays
        holding the exact integers (``exact_affine_gemm(..., result="float")``;
        integrality is checked, exactness is the caller's contract).  The
        float64 and float32 methods use float input directly (bit-identical
        to the int64 route: both convert the same integer once); the other
        methods convert it to int64 first.
    input_scale, weight_scale, output_scale : float or array_like
        Positive scales: scalars, 1-D per-channel vectors laid along
        ``channel_axis``, or arrays that broadcast to ``acc``.
    output_zero_point : int or array_like of int
    out_dtype : numpy dtype
        ``np.int8``, ``np.uint8``, ``np.int16``, ``np.uint16`` or ``np.int32``;
        16-bit outputs use the profile's ``requantize_int64_method`` (16x8).
    profile : str or Profile
    channel_axis : int
        Axis of ``acc`` that per-channel vectors follow.
    activation : None, "relu", "relu6" or "relu_n1_to_1"

    Returns
    -------
    numpy.ndarray of out_dtype

    >>> acc = np.array([-3, -2, -1, 1, 7])
    >>> requantize_accumulator(acc, 0.5, 0.5, 1.0, 0, np.int8, "exact").tolist()
    [-1, 0, 0, 0, 2]
    >>> requantize_accumulator(acc, 0.5, 0.5, 1.0, 0, np.int8,
    ...                        "tflite_reference").tolist()
    [-1, -1, 0, 1, 2]
    """
    return _requantize_integers(
        integer_values("acc", acc),
        input_scale,
        weight_scale,
        output_scale,
        output_zero_point,
        out_dtype,
        profile,
        channel_axis,
        activation,
    )


def _requantize_integers(
    acc,
    input_scale,
    weight_scale,
    output_scale,
    output_zero_point,
    out_dtype,
    profile,
    channel_axis,
    activation,
):
    """:func:`requantize_accumulator` on int64 or integer-valued float ``acc``
    (integrality already checked, or guaranteed by the caller)."""
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    shape, ndim = acc.shape, acc.ndim
    if ndim:
        check("channel_axis", channel_axis, IntRange(-ndim, ndim - 1))

    def param(name, value, conv):
        return along_axis(name, conv(name, value), ndim, shape, channel_axis)

    s_in = param("input_scale", input_scale, scales)
    s_w = param("weight_scale", weight_scale, scales)
    s_out = param("output_scale", output_scale, scales)
    z_out = param(
        "output_zero_point", output_zero_point, lambda n, v: zero_points(n, v, dtype)
    )
    method = prof.requantize_method
    if dtype.itemsize == 2:  # 16-bit activations: the 16x8 (int64) form
        method = prof.requantize_int64_method

    if acc.dtype != np.int64 and method not in ("float64", "float32"):
        acc = _exact_int64(acc)
    y = _round_scaled(acc, s_in, s_w, s_out, z_out, prof, method)
    lo, hi = activation_range(activation, s_out, z_out, dtype, prof)
    qmin, qmax = qrange(dtype)
    return np.clip(np.clip(y, lo, hi), qmin, qmax).astype(dtype)


def _exact_int64(acc):
    """Integer-valued float accumulators as int64 (exact below 2**63)."""
    if acc.size and np.abs(acc).max() >= 2.0**63:
        raise AccumulatorOverflowError(
            "acc holds a float value outside int64; float accumulators must be "
            "exact integers"
        )
    return acc.astype(np.int64)


def _round_scaled(acc, s_in, s_w, s_out, z_out, prof, method):
    """``round(acc * M) + z_out`` as int64 (before any clamp)."""
    big = 2.0**40  # beyond every output range: saturating stays exact
    if method == "exact":
        r = _arith.exact_round_ratio(
            [[acc, s_in, s_w]], [s_out], prof.requantize_rounding
        )
        return np.clip(r, -big, big).astype(np.int64) + z_out
    m64 = _multiplier64(s_in, s_w, s_out, prof.multiplier_formation)
    if method in ("float64", "float32"):
        v = _scaled_float(acc, m64, method)
        if prof.requantize_zero_point == "before_rounding":
            v = _arith.round_float(v + z_out, prof.requantize_rounding)
            return np.clip(v, -big, big).astype(np.int64)
        v = _arith.round_float(v, prof.requantize_rounding)
        return np.clip(v, -big, big).astype(np.int64) + z_out
    return _fixed_point(acc, m64, method) + z_out
