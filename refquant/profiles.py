"""Numerics profiles: one named choice for every rounding site of the engine.

A :class:`Profile` decides, for each place where the integer engine rounds or
overflows, which arithmetic and which rounding rule is used.  The profile
``"exact"`` is the ideal (every result is the correctly rounded value of the
real-number formula, ties to even); the other profiles reproduce one backend
bit for bit (see ``specs/profiles.md`` and the measurements in
``integer_semantics.md``).

Rounding-rule names used throughout: ``half_even``, ``half_away``, ``half_up``
(ties toward +inf), ``floor``, ``ceil``.

>>> get_profile("tflite_reference").requantize_method
'tflite_double'
>>> get_profile("exact").for_op("fully_connected").requantize_method
'exact'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from refquant.errors import InvalidArgumentError, InvalidTypeError

ROUNDING_RULES = ("half_even", "half_away", "half_up", "floor", "ceil")

#: How ``x / scale`` is evaluated before rounding (quantize, activation ranges).
QUANTIZE_ARITHMETICS = ("exact", "float64", "float32_divide", "float32_reciprocal")

#: How an integer accumulator is scaled by ``M = s_in * s_w / s_out``.
#: exact: correctly rounded rational ``acc * M`` (rule from requantize_rounding);
#: float64: ``round(f64(acc) * M64)``; float32: ``round(f32(f32(acc) * M32))``;
#: tflite_double / tflite_single / tflite_double_up: gemmlowp quantized multiplier
#: with the TFLite reference, single-rounding and NEON-vector (ties-up shift)
#: forms; tflite_int64: the 16x8 int64 form (16-bit multiplier, ties up).
REQUANTIZE_METHODS = (
    "exact",
    "float64",
    "float32",
    "tflite_double",
    "tflite_single",
    "tflite_double_up",
    "tflite_int64",
)

#: How ``M`` is formed from the scales when a float method uses it.
#: float64: ``f64(s_in) * f64(s_w) / f64(s_out)``;
#: float32: ``f32(f32(s_in * s_w) / s_out)`` (ORT, XNNPACK, fbgemm).
MULTIPLIER_FORMATIONS = ("float64", "float32")

ADD_METHODS = ("exact", "tflite_fixed_point", "onnxruntime_float32", "float32")
MUL_METHODS = ("exact", "tflite_fixed_point", "onnxruntime_float32", "float32")
AVERAGE_POOL_METHODS = ("exact", "tflite_raw_q_half_away", "float32")
MEAN_METHODS = ("exact", "tflite_reference", "float32")
SOFTMAX_METHODS = ("exact", "tflite_fixed_point", "float32")
LUT_METHODS = ("exact", "tflite_float_lut", "float32_lut")
#: logistic only: mlas_logistic_lut (ORT QLinearSigmoid: float32 dequantize,
#: MLAS's rational approximation with fused multiply-adds, float32 divide by
#: ``s_y``, ties to even).
LOGISTIC_METHODS = LUT_METHODS + ("mlas_logistic_lut",)
#: How concatenation re-expresses an input whose qparams differ from the
#: output's: requantize (the accumulator requantization with M = s_i / s_y);
#: tflite_with_scaling (LiteRT: int8 refused, uint8 float32 ``q c + b`` ties
#: away); onnxruntime_dequantize (ORT QLinearConcat table: ``RNE(f32(f32(s_i
#: (q - z_i)) / s_y)) + z_y``).
CONCAT_METHODS = ("requantize", "tflite_with_scaling", "onnxruntime_dequantize")
DYNAMIC_QUANTIZE_METHODS = ("exact", "onnxruntime", "onnx_reference")
OVERFLOW_POLICIES = ("error", "wrap")
#: What quantize does with NaN: raise, or give qmin (ORT x86, onnx.reference).
NAN_POLICIES = ("error", "qmin")
#: Where the output zero point enters a float requantization: after rounding
#: (ties decided on the real value; ORT, TFLite) or before (ties decided on the
#: output code; onnx.reference adds ``y_zero_point`` in float64, then rints).
ZERO_POINT_ORDERS = ("after_rounding", "before_rounding")
OPS_WITH_OVERRIDES = ("fully_connected",)

_CHOICES = {
    "quantize_arithmetic": QUANTIZE_ARITHMETICS,
    "quantize_rounding": ROUNDING_RULES,
    "multiplier_formation": MULTIPLIER_FORMATIONS,
    "requantize_method": REQUANTIZE_METHODS,
    "requantize_rounding": ROUNDING_RULES,
    "requantize_int64_method": REQUANTIZE_METHODS,
    "requantize_zero_point": ZERO_POINT_ORDERS,
    "fully_connected_requantize_method": REQUANTIZE_METHODS + (None,),
    "fully_connected_requantize_rounding": ROUNDING_RULES + (None,),
    "add_method": ADD_METHODS,
    "mul_method": MUL_METHODS,
    "average_pool_method": AVERAGE_POOL_METHODS,
    "mean_method": MEAN_METHODS,
    "softmax_method": SOFTMAX_METHODS,
    "logistic_method": LOGISTIC_METHODS,
    "tanh_method": LUT_METHODS,
    "concat_method": CONCAT_METHODS,
    "dynamic_quantize_method": DYNAMIC_QUANTIZE_METHODS,
    "overflow": OVERFLOW_POLICIES,
    "nan_policy": NAN_POLICIES,
}


@dataclass(frozen=True)
class Profile:
    """Every rounding site of the integer engine, named.

    Attributes
    ----------
    name : str
        Profile name (a key of :data:`PROFILES` for the built-in ones).
    description : str
        What the profile emulates.
    quantize_arithmetic : str
        Evaluation of ``x / scale`` in quantize and in activation ranges, one of
        :data:`QUANTIZE_ARITHMETICS`.
    quantize_rounding : str
        Rounding rule of quantize and of activation-range bounds.
    multiplier_formation : str
        How float requantization methods form ``M = s_in * s_w / s_out``.
    requantize_method : str
        Accumulator requantization (conv, depthwise, matmul, mul), one of
        :data:`REQUANTIZE_METHODS`.
    requantize_rounding : str
        Rounding rule of the ``exact``, ``float64`` and ``float32`` methods
        (the fixed-point methods have their own, fixed rules).
    requantize_int64_method : str
        Requantization of int64 accumulators of 16x8 kernels.
    requantize_zero_point : str
        ``"after_rounding"`` or ``"before_rounding"`` (float methods only).
    fully_connected_requantize_method, fully_connected_requantize_rounding
        Override for fully connected, 8-bit and 16-bit outputs alike, or
        ``None`` (TFLite's reference fully connected uses float64 with ties
        away from zero, also for 16x8).
    add_method, mul_method : str
        Rescaling of elementwise add and mul.
    average_pool_method, mean_method : str
        Division rule of average pooling and mean.
    softmax_method, logistic_method, tanh_method : str
        Evaluation of the nonlinear activations.
    concat_method : str
        Rescaling of concatenation inputs whose qparams differ from the
        output's, one of :data:`CONCAT_METHODS`.
    dynamic_quantize_method : str
        Parameter rules of DynamicQuantizeLinear (they differ on all-zero input).
    overflow : str
        ``"error"``: an accumulator outside int32 raises
        :class:`~refquant.errors.AccumulatorOverflowError`; ``"wrap"``: it wraps
        modulo 2**32 (two's complement).
    nan_policy : str
        ``"error"`` (NaN input raises) or ``"qmin"`` (NaN quantizes to qmin).
    """

    name: str
    description: str
    quantize_arithmetic: str = "exact"
    quantize_rounding: str = "half_even"
    multiplier_formation: str = "float64"
    requantize_method: str = "exact"
    requantize_rounding: str = "half_even"
    requantize_int64_method: str = "exact"
    requantize_zero_point: str = "after_rounding"
    fully_connected_requantize_method: str | None = None
    fully_connected_requantize_rounding: str | None = None
    add_method: str = "exact"
    mul_method: str = "exact"
    average_pool_method: str = "exact"
    mean_method: str = "exact"
    softmax_method: str = "exact"
    logistic_method: str = "exact"
    tanh_method: str = "exact"
    concat_method: str = "requantize"
    dynamic_quantize_method: str = "exact"
    overflow: str = "error"
    nan_policy: str = "error"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgumentError(
                f"name must be a non-empty str; got name={self.name!r}"
            )
        for field, allowed in _CHOICES.items():
            value = getattr(self, field)
            if value not in allowed:
                shown = ", ".join(repr(a) for a in allowed)
                raise InvalidArgumentError(
                    f"{field} must be one of {shown}; got {field}={value!r}"
                )

    def for_op(self, op: str) -> Profile:
        """Return the profile an op should use (applies per-op overrides).

        Only ``"fully_connected"`` has an override today; every other op name
        returns ``self``.  The override replaces both the 8-bit and the 16-bit
        (``requantize_int64_method``) requantization: TFLite's reference fully
        connected rounds ``f64(acc) * M`` half away from zero for int8 and int16
        outputs alike, whereas 16x8 conv and depthwise use the int64 form.

        >>> fc = get_profile("tflite_reference").for_op("fully_connected")
        >>> fc.requantize_method, fc.requantize_int64_method
        ('float64', 'float64')
        """
        if not isinstance(op, str):
            raise InvalidTypeError(f"op must be a str; got op={op!r}")
        if op == "fully_connected" and self.fully_connected_requantize_method:
            rounding = self.fully_connected_requantize_rounding
            method = self.fully_connected_requantize_method
            return dataclasses.replace(
                self,
                requantize_method=method,
                requantize_int64_method=method,
                requantize_rounding=rounding or self.requantize_rounding,
                fully_connected_requantize_method=None,
                fully_connected_requantize_rounding=None,
            )
        return self

    def replace(self, **changes) -> Profile:
        """Return a copy with some rounding sites changed (validated)."""
        return dataclasses.replace(self, **changes)


EXACT = Profile(
    name="exact",
    description=(
        "Correctly rounded real-number result at every site, ties to even; "
        "int32 accumulator overflow is an error."
    ),
)

TFLITE_REFERENCE = Profile(
    name="tflite_reference",
    description=(
        "TFLite / LiteRT reference kernels (OpResolverType.BUILTIN_REF), "
        "default double-rounding build."
    ),
    quantize_arithmetic="float32_divide",
    quantize_rounding="half_away",
    multiplier_formation="float64",
    requantize_method="tflite_double",
    requantize_rounding="half_away",
    requantize_int64_method="tflite_int64",
    fully_connected_requantize_method="float64",
    fully_connected_requantize_rounding="half_away",
    add_method="tflite_fixed_point",
    mul_method="tflite_fixed_point",
    average_pool_method="tflite_raw_q_half_away",
    mean_method="tflite_reference",
    softmax_method="tflite_fixed_point",
    logistic_method="tflite_float_lut",
    tanh_method="tflite_float_lut",
    concat_method="tflite_with_scaling",
    dynamic_quantize_method="exact",
    overflow="error",
)

ONNXRUNTIME = Profile(
    name="onnxruntime",
    description=(
        "ONNX Runtime CPU execution provider (MLAS): float32 scales, "
        "float32 multiply, ties to even; int32 accumulators wrap."
    ),
    quantize_arithmetic="float32_divide",
    quantize_rounding="half_even",
    multiplier_formation="float32",
    requantize_method="float32",
    requantize_rounding="half_even",
    requantize_int64_method="float32",
    add_method="onnxruntime_float32",
    mul_method="onnxruntime_float32",
    average_pool_method="float32",
    mean_method="float32",
    softmax_method="float32",
    logistic_method="mlas_logistic_lut",
    tanh_method="float32_lut",
    concat_method="onnxruntime_dequantize",
    dynamic_quantize_method="onnxruntime",
    overflow="wrap",
    nan_policy="qmin",
)

ONNX_REFERENCE = Profile(
    name="onnx_reference",
    description=(
        "onnx.reference.ReferenceEvaluator (NumPy): float32 division for "
        "quantize; requantization f64(acc) * f64(float32 multiplier) + "
        "zero point, then ties to even."
    ),
    quantize_arithmetic="float32_divide",
    quantize_rounding="half_even",
    multiplier_formation="float32",
    requantize_method="float64",
    requantize_rounding="half_even",
    requantize_int64_method="float64",
    requantize_zero_point="before_rounding",
    add_method="float32",
    mul_method="float32",
    average_pool_method="float32",
    mean_method="float32",
    softmax_method="float32",
    logistic_method="float32_lut",
    tanh_method="float32_lut",
    dynamic_quantize_method="onnx_reference",
    overflow="wrap",
    nan_policy="qmin",
)

PYTORCH_FBGEMM = Profile(
    name="pytorch_fbgemm",
    description=(
        "PyTorch quantized CPU ops under the fbgemm / x86 engine: reciprocal "
        "multiply for quantize, float32 requantization, ties to even."
    ),
    quantize_arithmetic="float32_reciprocal",
    quantize_rounding="half_even",
    multiplier_formation="float32",
    requantize_method="float32",
    requantize_rounding="half_even",
    requantize_int64_method="float32",
    add_method="float32",
    mul_method="float32",
    average_pool_method="float32",
    mean_method="float32",
    softmax_method="float32",
    logistic_method="float32_lut",
    tanh_method="float32_lut",
    dynamic_quantize_method="exact",
    overflow="error",
)

#: Built-in profiles by name.
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (EXACT, TFLITE_REFERENCE, ONNXRUNTIME, ONNX_REFERENCE, PYTORCH_FBGEMM)
}


def get_profile(name_or_profile="exact") -> Profile:
    """Resolve a profile name or :class:`Profile` to a :class:`Profile`.

    >>> get_profile("onnxruntime").overflow
    'wrap'
    """
    if isinstance(name_or_profile, Profile):
        return name_or_profile
    if isinstance(name_or_profile, str):
        if name_or_profile in PROFILES:
            return PROFILES[name_or_profile]
        allowed = ", ".join(repr(n) for n in PROFILES)
        raise InvalidArgumentError(
            f"profile must be one of {allowed} or a refquant.profiles.Profile; "
            f"got profile={name_or_profile!r}"
        )
    raise InvalidTypeError(
        "profile must be a str naming a profile or a refquant.profiles.Profile; "
        f"got profile={name_or_profile!r} of type {type(name_or_profile).__name__}"
    )
