"""Layout kernels on quantized codes: pad and concatenation.

``pad`` fills with a zero point (real 0).  ``concatenation`` re-expresses every
input in the output qparams, ``y_i = z_y + round((x_i - z_i) * s_i / s_y)``,
then joins them; inputs whose qparams equal the output's are copied.  Spec:
``specs/kernels_pointwise.md`` section 7.
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.kernels import _arith, _checks
from refquant.kernels._checks import int_codes, out_dtype_of, qrange
from refquant.kernels.requantize import requantize_accumulator
from refquant.profiles import get_profile


def pad(x, paddings, zero_point):
    """Pad codes with ``zero_point``: ``paddings[i] = (before_i, after_i)``.

    >>> pad(np.int8([[1, 2]]), [(0, 0), (1, 1)], -3).tolist()
    [[-3, 1, 2, -3]]
    """
    arr = np.asarray(x)
    int_codes("x", arr)
    try:
        pads = [(int(b), int(a)) for b, a in paddings]
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            "paddings must be a sequence of (before, after) int pairs, one per "
            f"axis; got paddings={paddings!r}"
        ) from exc
    if len(pads) != arr.ndim or any(min(p) < 0 for p in pads):
        raise InvalidArgumentError(
            f"paddings must hold {arr.ndim} pairs of ints >= 0; got "
            f"paddings={paddings!r}"
        )
    z = int(_checks.zero_points("zero_point", zero_point, arr.dtype).reshape(()))
    return np.pad(arr, pads, constant_values=z)


def _tflite_scaled(q, s, z, s_y, z_y):
    """TFLite ConcatenationWithScaling: ``RHAZ(q * scale + bias) + z_y`` in float32."""
    scale = np.float32(np.float32(s) * np.float32(np.float32(1.0) / np.float32(s_y)))
    bias = np.float32(-np.float32(z) * scale)
    v = q.astype(np.float32) * scale + bias
    return _arith.round_float(v, "half_away").astype(np.int64) + z_y


def _onnxruntime_scaled(q, s, z, s_y, z_y):
    """ORT QLinearConcat table: ``RNE(f32(f32(s (q - z)) / s_y)) + z_y``.

    Each input code is dequantized in float32 (one rounding of the product),
    divided by the float32 output scale (one rounding), then rounded half to
    even (MLAS QuantizeLinear).
    """
    f32 = np.float32
    real = f32(s) * (q - z).astype(np.float32)
    v = real / f32(s_y)
    return _arith.round_float(v, "half_even").astype(np.int64) + z_y


def concatenation(
    inputs,
    scales,
    zero_points,
    y_scale,
    y_zero_point,
    *,
    axis=-1,
    out_dtype=np.int8,
    profile="exact",
):
    """Concatenate codes with differing qparams along ``axis``.

    Inputs whose ``(scale, zero_point)`` equal the output's are copied; the
    others are rescaled by the profile's ``concat_method``: ``requantize``
    (accumulator requantization, ``acc = x_i - z_i``, ``M = s_i / s_y``),
    ``tflite_with_scaling`` (LiteRT rejects differing int8 qparams; uint8
    ``ConcatenationWithScaling``, float32, ties away) or
    ``onnxruntime_dequantize`` (``RNE(f32(f32(s_i (x_i - z_i)) / s_y)) + z_y``,
    ORT's lookup table).

    >>> concatenation([np.int8([1, 3]), np.int8([4])], [0.5, 1.0], [0, 0],
    ...               1.0, 0).tolist()
    [0, 2, 4]
    """
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise InvalidTypeError(
            f"inputs must be a non-empty list of code arrays; got inputs={inputs!r}"
        )
    n = len(inputs)
    s_list = np.broadcast_to(_checks.scales("scales", scales), (n,))
    z_list = np.broadcast_to(_checks.zero_points("zero_points", zero_points), (n,))
    s_y = float(_checks.scales("y_scale", y_scale).reshape(()))
    z_y = int(_checks.zero_points("y_zero_point", y_zero_point, dtype).reshape(()))
    qmin, qmax = qrange(dtype)
    parts = []
    for i, q in enumerate(inputs):  # one step per input tensor, not per element
        codes = int_codes(f"inputs[{i}]", q)
        s, z = float(s_list[i]), int(z_list[i])
        same_scale = s == s_y
        if prof.concat_method == "onnxruntime_dequantize":  # ORT compares floats
            same_scale = np.float32(s) == np.float32(s_y)
        if same_scale and z == z_y:
            parts.append(codes)
        elif prof.concat_method == "tflite_with_scaling":
            if dtype == np.int8:
                raise InvalidArgumentError(
                    "TFLite CONCATENATION requires equal int8 input and output "
                    f"qparams; got inputs[{i}]=({s}, {z}) and y=({s_y}, {z_y})"
                )
            parts.append(np.clip(_tflite_scaled(codes, s, z, s_y, z_y), qmin, qmax))
        elif prof.concat_method == "onnxruntime_dequantize":
            parts.append(_onnxruntime_scaled(codes, s, z, s_y, z_y))
        else:
            parts.append(
                requantize_accumulator(codes - z, s, 1.0, s_y, z_y, dtype, prof)
            )
    try:
        out = np.concatenate(parts, axis=axis)
    except (ValueError, np.exceptions.AxisError) as exc:
        raise InvalidArgumentError(
            f"cannot concatenate along axis={axis}: {exc}"
        ) from exc
    return np.clip(out, qmin, qmax).astype(dtype)
