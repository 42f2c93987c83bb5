"""Fused activation clamps and the nonlinear activations (softmax, logistic, tanh).

Fused clamps act in the output's quantized domain (TFLite
``CalculateActivationRangeQuantized``)::

    lo_q = max(qmin, zero_point + round(lo / scale))
    hi_q = min(qmax, zero_point + round(hi / scale))

where ``(lo, hi)`` is ``(0, inf)`` for relu, ``(0, 6)`` for relu6 and
``(-1, 1)`` for relu_n1_to_1, and ``round(f / scale)`` follows the profile's
quantize arithmetic and rounding rule (TFLite: float32 division, ties away).
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError
from refquant.kernels import _arith
from refquant.kernels._checks import (
    check_qparams,
    codes_dtype,
    out_dtype_of,
    qrange,
    scales,
    zero_points,
)
from refquant.profiles import get_profile

ACTIVATIONS = (None, "relu", "relu6", "relu_n1_to_1")
_BOUNDS = {"relu": (0.0, None), "relu6": (0.0, 6.0), "relu_n1_to_1": (-1.0, 1.0)}


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise InvalidArgumentError(
            "activation must be one of None, 'relu', 'relu6', 'relu_n1_to_1'; "
            f"got activation={activation!r}"
        )


def activation_range(activation, scale, zero_point, out_dtype, profile="exact"):
    """Quantized clamp bounds ``(lo_q, hi_q)`` of a fused activation.

    ``lo_q = max(qmin, zp + round(lo / scale))``, ``hi_q = min(qmax, zp +
    round(hi / scale))``; the division and rounding follow the profile's
    ``quantize_arithmetic`` and ``quantize_rounding``.

    Returns
    -------
    (lo_q, hi_q) : int64 arrays broadcast like ``scale`` and ``zero_point``.

    >>> [int(v) for v in activation_range("relu6", 12.0, 0, np.int8,
    ...                                   "tflite_reference")]
    [0, 1]
    >>> [int(v) for v in activation_range("relu6", 12.0, 0, np.int8, "exact")]
    [0, 0]
    """
    _check_activation(activation)
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    s = scales("scale", scale)
    zp = zero_points("zero_point", zero_point, dtype)
    qmin, qmax = qrange(dtype)
    lo = np.full(np.broadcast_shapes(s.shape, zp.shape), qmin, dtype=np.int64)
    hi = np.full(lo.shape, qmax, dtype=np.int64)
    if activation is None:
        return lo, hi
    f_lo, f_hi = _BOUNDS[activation]
    arith, rule = prof.quantize_arithmetic, prof.quantize_rounding
    q_lo = _arith.divide_round(np.full(lo.shape, f_lo), s, arith, rule)
    lo = np.maximum(lo, zp + np.clip(q_lo, -(2**40), 2**40).astype(np.int64))
    if f_hi is not None:
        q_hi = _arith.divide_round(np.full(hi.shape, f_hi), s, arith, rule)
        hi = np.minimum(hi, zp + np.clip(q_hi, -(2**40), 2**40).astype(np.int64))
    return lo, hi


def clamp_activation(q, activation, scale, zero_point, out_dtype, profile="exact"):
    """Apply a fused activation clamp to quantized codes.

    ``out = clip(q, lo_q, hi_q)`` with the bounds of :func:`activation_range`
    (values are first clamped to ``out_dtype``).  ``profile`` (an extension
    of the contract signature, default ``"exact"``) decides the rounding of
    the bounds.

    >>> clamp_activation(np.array([-5, 3, 100], np.int8), "relu6", 0.1, -2,
    ...                  np.int8).tolist()
    [-2, 3, 58]
    """
    from refquant.kernels._checks import int_codes

    dtype = out_dtype_of(out_dtype)
    codes = int_codes("q", q)
    lo, hi = activation_range(activation, scale, zero_point, dtype, profile)
    return np.clip(codes, lo, hi).astype(dtype)


# ================================================================ nonlinear
_FIXED_OUTPUT = {  # (scale, zero_point) of the fixed output quantization
    ("softmax", "int8"): (1 / 256, -128),
    ("softmax", "uint8"): (1 / 256, 0),
    ("softmax", "int16"): (1 / 32768, 0),
    ("logistic", "int8"): (1 / 256, -128),
    ("logistic", "uint8"): (1 / 256, 0),
    ("logistic", "int16"): (1 / 32768, 0),
    ("tanh", "int8"): (1 / 128, 0),
    ("tanh", "uint8"): (1 / 128, 128),
    ("tanh", "int16"): (1 / 32768, 0),
}


def _output_qparams(op, dtype, y_scale, y_zero_point):
    default = _FIXED_OUTPUT.get((op, dtype.name))
    if (y_scale is None or y_zero_point is None) and default is None:
        raise InvalidArgumentError(
            f"{op} has no default output qparams for {dtype.name}; pass y_scale "
            "and y_zero_point"
        )
    s = default[0] if y_scale is None else y_scale
    z = default[1] if y_zero_point is None else y_zero_point
    v = check_qparams(op, {"out": dtype}, y_scale=s, y_zero_point=z)
    return float(v["y_scale"]), int(v["y_zero_point"])


def _inputs(x, x_scale, x_zero_point, op):
    from refquant.kernels._checks import int_codes

    q = int_codes("x", x)
    v = check_qparams(
        op, {"x": codes_dtype(x)}, x_scale=x_scale, x_zero_point=x_zero_point
    )
    return q, float(v["x_scale"]), int(v["x_zero_point"])


def _quantize_exact(real, s_y, z_y, dtype):
    """``clamp(round_half_even(real / s_y) + z_y)`` for float64 ``real``."""
    q = _arith.divide_round(real, s_y, "exact", "half_even")
    qmin, qmax = qrange(dtype)
    return np.clip(q + z_y, qmin, qmax).astype(dtype)


def _quantize_float32(real32, s_y, z_y, dtype, prof):
    q = _arith.divide_round(
        real32, s_y, prof.quantize_arithmetic, prof.quantize_rounding
    )
    qmin, qmax = qrange(dtype)
    return np.clip(q + z_y, qmin, qmax).astype(dtype)


# ------------------------------------------------------- TFLite float LUT
_F32_TRANSFORMS = {
    # float32 results of the C++ expressions, each op rounded once (expf and
    # tanhf taken as correctly rounded)
    "logistic": lambda v: np.float32(1) / (np.float32(1) + _expf(-v)),
    "tanh": lambda v: np.tanh(v.astype(np.float64)).astype(np.float32),
}


def _expf(v):
    """``f32(exp(v))`` for float32 ``v``; exp above the float32 range is +inf.

    The float64 exponential is rounded once to float32 (RNE); values beyond
    the largest float32 become +inf, as the C ``expf`` gives (no warning).
    """
    with np.errstate(over="ignore"):
        return np.exp(v.astype(np.float64)).astype(np.float32)


# ------------------------------------------- ONNX Runtime MLAS logistic
#: Odd / even coefficients of MLAS's rational logistic approximation
#: ``sigmoid(v) ~ 1/2 + v P(v^2) / Q(v^2)`` on ``v`` clamped to [-18, 18]
#: (the Eigen coefficients), as the float32 values MLAS stores.
_MLAS_LOGISTIC_P = tuple(
    np.float32(c)
    for c in (
        4.37031012579801e-11,
        1.15627324459942e-07,
        6.08574864600143e-05,
        8.51377133304701e-03,
        2.48287947061529e-01,
    )
)
_MLAS_LOGISTIC_Q = tuple(
    np.float32(c)
    for c in (
        6.10247389755681e-13,
        5.76102136993427e-09,
        6.29106785017040e-06,
        1.70198817374094e-03,
        1.16817656904453e-01,
        9.93151921023180e-01,
    )
)
_MLAS_LOGISTIC_RANGE = np.float32(18.0)


def _fma_f32(a, b, c):
    """Fused ``f32(a * b + c)`` for float32 arrays: one rounding, half_even.

    ``a * b`` is exact in float64 (two 24-bit significands); the float64 sum
    is made round-to-odd (TwoSum gives its exact error ``e``; an inexact sum
    with an even last bit moves one ulp toward ``e``), and a round-to-odd
    float64 rounds to float32 exactly as the real ``a b + c`` would (53 >= 24
    + 2 bits).
    """
    prod = a.astype(np.float64) * b.astype(np.float64)  # exact
    addend = np.broadcast_to(np.float64(c), prod.shape)
    total = prod + addend
    virtual = total - prod
    err = (prod - (total - virtual)) + (addend - virtual)  # TwoSum: exact
    even = (total.view(np.int64) & 1) == 0
    toward = np.where(err > 0, np.inf, -np.inf)
    total = np.where((err != 0) & even, np.nextafter(total, toward), total)
    return total.astype(np.float32)  # half_even of a round-to-odd value


def _mlas_logistic(v):
    """MLAS ``MlasLogisticKernelFma3`` on float32 ``v`` (x86-64 with FMA3).

    ``u = clamp(v, -18, 18)``, ``w = f32(u u)``; ``P`` and ``Q`` by Horner
    steps that are each one fused multiply-add (one rounding); ``p = f32(u
    P)``, then ``max(0, f32(f32(p / Q) + 1/2))`` (no upper clamp on this
    path).  Every float32 operation rounds half_even.
    """
    u = np.clip(v.astype(np.float32), -_MLAS_LOGISTIC_RANGE, _MLAS_LOGISTIC_RANGE)
    w = u * u
    p = _fma_f32(w, np.full_like(w, _MLAS_LOGISTIC_P[0]), _MLAS_LOGISTIC_P[1])
    for coef in _MLAS_LOGISTIC_P[2:]:
        p = _fma_f32(p, w, coef)
    q = _fma_f32(w, np.full_like(w, _MLAS_LOGISTIC_Q[0]), _MLAS_LOGISTIC_Q[1])
    for coef in _MLAS_LOGISTIC_Q[2:]:
        q = _fma_f32(q, w, coef)
    return np.maximum(u * p / q + np.float32(0.5), np.float32(0.0))


_F64_TRANSFORMS = {
    "logistic": lambda v: 0.5 * (1.0 + np.tanh(0.5 * v)),
    "tanh": np.tanh,
}


def _tflite_lut(op, q, s_x, z_x, s_y, z_y, dtype):
    """TFLite ``LUTPopulateInt8``: float32 transform, ties away, reciprocal."""
    deq = np.float32(s_x) * (q - z_x).astype(np.float32)
    f = _F32_TRANSFORMS[op](deq)
    inverse = np.float32(1) / np.float32(s_y)
    v = _arith.round_float(f * inverse, "half_away") + np.float32(z_y)
    qmin, qmax = qrange(dtype)
    return np.clip(v, qmin, qmax).astype(dtype)


# ------------------------------------------ TFLite int16 fixed point (16x8)
_SIGMOID_STEP = 24  # table entry i holds sigmoid(i / 24)
_SIGMOID_ONE = 65536  # unsigned 0.16 format


def _sigmoid_table_u16() -> np.ndarray:
    """TFLite's 256-entry ``sigmoid_table_uint16``: sigmoid(i/24) in 0.16.

    Entry ``i < 255`` is ``round(2**16 (3/4 f(i) + 1/2 f(i + 1/2) - 1/4 f(i +
    1)))`` with ``f(u) = sigmoid(u / 24)``: the sample lowered by half the
    error of linear interpolation at the interval's midpoint (every value lies
    at least 0.004 from a tie, so float64 decides the rounding).  The last
    entry is 65535, the top of uint16, as in TFLite's table.

    >>> _sigmoid_table_u16()[:3].tolist()
    [32768, 33451, 34133]
    """
    u = np.arange(255, dtype=np.float64)

    def f(v):
        return 1.0 / (1.0 + np.exp(-v / _SIGMOID_STEP))

    fitted = _SIGMOID_ONE * (0.75 * f(u) + 0.5 * f(u + 0.5) - 0.25 * f(u + 1.0))
    table = np.empty(256, dtype=np.int64)
    table[:255] = _arith.round_float(fitted, "half_even").astype(np.int64)
    table[255] = _SIGMOID_ONE - 1
    return table


_SIGMOID_TABLE = _sigmoid_table_u16()


def _int16_input_rescale(op, s_x):
    """TFLite Prepare of int16 LOGISTIC / TANH: ``(multiplier, left_shift)``.

    Power of two (``CheckedLog2`` within 1e-3) with ``12 + log2 s_x`` equal to
    0 (logistic) or 0, 1 (tanh): ``(3 * 2**k, 0)``.  Otherwise ``m = f64(f32(
    s_x)) * 4096 * 3`` is doubled, counting ``left_shift``, while ``m <=
    32767 / 2`` and ``left_shift <= 30``; ``multiplier = trunc(m)``.  Either
    way ``x * multiplier / 2**left_shift`` has the scale ``1 / (3 * 4096)``
    (logistic) of the table index.
    """
    from refquant.numerics.fixedpoint import checked_log2

    log2, pot = checked_log2(s_x)
    k = 12 + log2
    if pot and k in ((0,) if op == "logistic" else (0, 1)):
        return 3 << k, 0
    m = float(np.float32(s_x)) * 4096.0 * 3.0
    shift = 0
    while m <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        m *= 2.0
    return int(m), shift  # static_cast<int32_t>: truncation


def _tflite_int16(op, q, s_x, z_x, s_y, z_y):
    """TFLite reference int16 LOGISTIC / TANH (fixed point, 0.16 table)."""
    if z_x != 0 or (s_y, z_y) != (2.0**-15, 0):
        raise InvalidArgumentError(
            f"the TFLite int16 {op} needs x_zero_point 0 and output (2**-15, 0); "
            f"got x_zero_point={z_x}, y_scale={s_y!r}, y_zero_point={z_y}"
        )
    multiplier, shift = _int16_input_rescale(op, s_x)
    product = q * multiplier + ((1 << (shift - 1)) if shift else 0)
    if product.size and (product.min() < -(2**31) or product.max() > 2**31 - 1):
        raise InvalidArgumentError(
            f"x_scale={s_x!r} is too large for the TFLite int16 {op}: the input "
            f"rescale x * {multiplier} overflows int32"
        )
    v = product >> shift  # floor
    a = np.abs(v)
    bits = 9 if op == "logistic" else 8  # tanh(x) = 2 sigmoid(2x) - 1
    index = a >> bits
    low = np.minimum(index, 254)
    ua, ub = _SIGMOID_TABLE[low], _SIGMOID_TABLE[low + 1]
    frac = a & ((1 << bits) - 1)
    r = (ua << bits) + frac * (ub - ua)  # 0.(16 + bits), interpolated
    if op == "logistic":
        r = np.where(index >= 255, 0x7FFF << 10, r)
        r = np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1)
        return (r >> 10).astype(np.int16)  # half_up on 0.25 -> 0.15
    r = np.where(index >= 255, 0xFFFF << 8, r)
    r = np.where(v >= 0, r - (1 << 23) + (1 << 7), (1 << 23) - r + (1 << 7) - 1)
    return (r >> 8).astype(np.int16)  # 2 s - 1 in 0.15, half_up


def _pointwise(op, x, x_scale, x_zero_point, y_scale, y_zero_point, out_dtype, profile):
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    q, s_x, z_x = _inputs(x, x_scale, x_zero_point, op)
    s_y, z_y = _output_qparams(op, dtype, y_scale, y_zero_point)
    method = getattr(prof, f"{op}_method")
    if method == "tflite_float_lut" and dtype == np.int16:
        return _tflite_int16(op, q, s_x, z_x, s_y, z_y)
    if method == "tflite_float_lut":
        return _tflite_lut(op, q, s_x, z_x, s_y, z_y, dtype)
    if method == "mlas_logistic_lut":
        deq = np.float32(s_x) * (q - z_x).astype(np.float32)
        return _quantize_float32(_mlas_logistic(deq), s_y, z_y, dtype, prof)
    if method == "float32_lut":
        deq = np.float32(s_x) * (q - z_x).astype(np.float32)
        return _quantize_float32(_F32_TRANSFORMS[op](deq), s_y, z_y, dtype, prof)
    real = _F64_TRANSFORMS[op](s_x * (q - z_x).astype(np.float64))
    return _quantize_exact(real, s_y, z_y, dtype)


def logistic(
    x,
    x_scale,
    x_zero_point,
    *,
    y_scale=None,
    y_zero_point=None,
    out_dtype=np.int8,
    profile="exact",
):
    """Quantized logistic: ``z_y + round(sigmoid(s_x * (x - z_x)) / s_y)``.

    Output qparams default to the fixed TFLite ones: (1/256, -128) for int8,
    (1/256, 0) for uint8, (1/32768, 0) for int16.  ``exact``: sigmoid in
    float64, ties to even (sigmoid of a nonzero rational is irrational, so only
    genuine ties are exact; float64 error < 2**-50 relative);
    ``tflite_float_lut``: TFLite ``LUTPopulateInt8`` (float32, reciprocal of
    ``s_y``, ties away); ``float32_lut``: float32 sigmoid quantized with the
    profile's quantize rule; ``mlas_logistic_lut`` (ONNX Runtime
    QLinearSigmoid): ``f32(s_x) * f32(x - z_x)``, MLAS's rational
    approximation with fused multiply-adds (:func:`_mlas_logistic`), then
    ``RNE(f32(sigmoid / s_y)) + z_y`` clamped.  The approximation is within
    2**-22 of sigmoid, so near a tie it can round the other way: int8 ``x =
    -49`` at (0.0625, 0) -> (f32(1/235), -128) gives -118 where the real value
    (10.500005 before rounding) gives -117.

    >>> logistic(np.int8([0, 127]), 0.1, 0).tolist()
    [0, 127]
    """
    return _pointwise(
        "logistic", x, x_scale, x_zero_point, y_scale, y_zero_point, out_dtype, profile
    )


def tanh(
    x,
    x_scale,
    x_zero_point,
    *,
    y_scale=None,
    y_zero_point=None,
    out_dtype=np.int8,
    profile="exact",
):
    """Quantized tanh: ``z_y + round(tanh(s_x * (x - z_x)) / s_y)``.

    Output qparams default to (1/128, 0) for int8, (1/128, 128) for uint8 and
    (1/32768, 0) for int16; methods as for :func:`logistic`.

    >>> tanh(np.int8([-128, 0, 5]), 0.1, 0).tolist()
    [-128, 0, 59]
    """
    return _pointwise(
        "tanh", x, x_scale, x_zero_point, y_scale, y_zero_point, out_dtype, profile
    )


# ------------------------------------------------- gemmlowp fixed point
# Raw int32 values held in int64 arrays; Q(m).(31-m) formats as in gemmlowp.
_INT32_MAX = 2**31 - 1
_EXP_BARREL = (  # exponent -> raw Q0.31 of exp(-2**exponent)
    (-2, 1672461947),
    (-1, 1302514674),
    (0, 790015084),
    (1, 290630308),
    (2, 39332535),
    (3, 720401),
    (4, 242),
)


def _srdhm(a, b):
    from refquant.numerics.fixedpoint import _srdhm

    return _srdhm(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))


def _rdbpot(x, exponent):
    from refquant.numerics.fixedpoint import _rdbpot

    return _rdbpot(np.asarray(x, dtype=np.int64), np.int64(exponent))


def _saturating_shift_left(x, exponent):
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent > 0>`` on int32 raws."""
    threshold = (1 << (31 - exponent)) - 1
    out = x << exponent
    out = np.where(x > threshold, _INT32_MAX, out)
    return np.where(x < -threshold, -(2**31), out)


def _exp_on_interval_quarter(a):
    """exp(a) for Q0.31 ``a`` in [-1/4, 0): Taylor series around -1/8."""
    constant_term = 1895147668  # exp(-1/8)
    one_third = 715827883
    x = a + (1 << 28)
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _rdbpot(x4, 2)
    poly = _rdbpot(_srdhm(x4_over_4 + x3, one_third) + x2, 1)
    return constant_term + _srdhm(constant_term, x + poly)


def _exp_on_negative_values(a, integer_bits):
    """gemmlowp ``exp_on_negative_values`` of Q(integer_bits) raws -> Q0.31."""
    frac_bits = 31 - integer_bits
    quarter = 1 << (frac_bits - 2)
    a_mod = (a & (quarter - 1)) - quarter
    result = _exp_on_interval_quarter(_saturating_shift_left(a_mod, integer_bits))
    remainder = a_mod - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (frac_bits + exponent))) != 0
            result = np.where(bit, _srdhm(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, _INT32_MAX, result)


def _rounding_half_sum(a, b):
    total = a + b
    sign = np.where(total >= 0, 1, -1)
    v = total + sign
    return np.where(v >= 0, v // 2, -((-v) // 2))  # C truncating division


def _one_over_one_plus_x(a):
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1`` (Q0.31 in and out)."""
    half_denominator = _rounding_half_sum(a, _INT32_MAX)
    x = 1515870810 + _srdhm(half_denominator, -1010580540)  # Q2.29
    for _ in range(3):  # Newton-Raphson steps
        one_minus = (1 << 29) - _srdhm(half_denominator, x)
        x = x + _saturating_shift_left(_srdhm(x, one_minus), 2)
    return _saturating_shift_left(x, 1)


def _reciprocal(total, integer_bits):
    """TFLite ``GetReciprocal``: (Q0.31 scale, num_bits_over_unit)."""
    bit_length = np.frexp(total.astype(np.float64))[1].astype(np.int64)
    headroom_plus_one = 32 - bit_length
    num_bits_over_unit = integer_bits - headroom_plus_one
    shifted_minus_one = (total << headroom_plus_one) - (1 << 31)
    return _one_over_one_plus_x(shifted_minus_one), num_bits_over_unit


def _softmax_tflite(q, s_x, beta, dtype):
    """TFLite reference int8/uint8 softmax in gemmlowp fixed point."""
    from refquant.numerics.fixedpoint import quantize_multiplier

    real = min(float(beta) * float(np.float32(s_x)) * 2.0 ** (31 - 5), 2.0**31 - 1)
    multiplier, left_shift = quantize_multiplier(real)
    radius = int(np.floor((2**5 - 1) * 2.0 ** (31 - 5) / 2.0**left_shift))
    diff = q - q.max(axis=-1, keepdims=True)
    valid = diff >= -radius
    rescaled = _srdhm(np.where(valid, diff, 0) << left_shift, multiplier)  # Q5.26
    exps = _exp_on_negative_values(rescaled, 5)  # Q0.31
    total = np.where(valid, _rdbpot(exps, 12), 0).sum(axis=-1, keepdims=True)
    scale, bits_over_unit = _reciprocal(total, 12)
    out = _rdbpot_array(_srdhm(scale, exps), bits_over_unit + 31 - 8)
    qmin, qmax = qrange(dtype)
    out = np.where(valid, out + qmin, qmin)
    return np.clip(out, qmin, qmax).astype(dtype)


# ----------------------------------------------- TFLite int16 softmax (LUTs)
_INT16_RANGE = 65535  # int16 max - int16 min


def _lut_int16(transform, input_scale, input_zero_point):
    """TFLite ``LUTPopulateInt16<double>``: 513 int16 samples on 512 steps.

    Output range symmetric (scale ``2 / 65535``, zero point 0).  For ``i <
    512``: ``lut[i] = clamp(RHAZ(f(x_i) k) - RHAZ(e / 2))`` where ``k =
    65536 / (out_max - out_min)`` and ``e = RHAZ((f(x_{i+1}) k + RHAZ(f(x_i)
    k)) / 2) - RHAZ(f(x_i + step / 2) k)`` is the rounded interpolation error
    at the midpoint; ``lut[512] = clamp(RHAZ(f(x_max) k))``.  float64 in
    TFLite's operation order; ``transform`` is a scalar libm function.
    """
    in_min = input_scale * (-32768 - input_zero_point)
    in_max = input_scale * (32767 - input_zero_point)
    out_scale = 2.0 / _INT16_RANGE
    k = 65536.0 / (out_scale * 32767 - out_scale * -32768)
    step = (in_max - in_min) / 512
    i = np.arange(512, dtype=np.float64)
    f = np.vectorize(transform, otypes=[np.float64])
    val = f(in_min + i * step)
    mid = f(in_min + i * step + step / 2)
    nxt = f(in_min + (i + 1) * step)

    def rhaz(v):
        return _arith.round_float(v, "half_away")

    sample = rhaz(val * k)
    err = rhaz((nxt * k + rhaz(val * k)) / 2) - rhaz(mid * k)
    lut = np.empty(513, dtype=np.float64)
    lut[:512] = sample - rhaz(err / 2)
    lut[512] = rhaz(transform(in_max) * k)
    return np.clip(lut, -32768, 32767).astype(np.int64)


_SOFTMAX_LUTS: dict = {}


def _softmax_luts():
    """The exp table on [-10, 0] and the 1 / (1 + x) table on [0, 1]."""
    if not _SOFTMAX_LUTS:
        import math

        _SOFTMAX_LUTS["exp"] = _lut_int16(math.exp, 10.0 / _INT16_RANGE, 32767)
        _SOFTMAX_LUTS["one_over_one_plus_x"] = _lut_int16(
            lambda v: 1.0 / (1.0 + v), 1.0 / _INT16_RANGE, -32768
        )
    return _SOFTMAX_LUTS


def _lut_lookup_int16(value, lut):
    """TFLite int16 ``LUTLookup``: 9-bit index, 7-bit linear interpolation."""
    index = 256 + (value >> 7)
    offset = value & 0x7F
    base = lut[index]
    slope = lut[index + 1] - base
    return base + ((slope * offset + 64) >> 7)  # half_up on Q0.7


def _softmax_tflite_int16(q, s_x, beta):
    """TFLite reference ``SoftmaxInt16``: exp LUT, sum, 1 / (1 + x) LUT."""
    from refquant.numerics.fixedpoint import (
        multiply_by_quantized_multiplier,
        quantize_multiplier,
    )

    luts = _softmax_luts()
    f32 = np.float32
    real = float(f32(f32(s_x) * f32(beta))) / (10.0 / 65535.0)
    multiplier, shift = quantize_multiplier(real)
    diff = q - q.max(axis=-1, keepdims=True)  # in [-65535, 0]
    scaled = multiply_by_quantized_multiplier(diff, multiplier, shift)
    exps = _lut_lookup_int16(np.clip(scaled + 32767, -32768, 32767), luts["exp"])
    total = exps.sum(axis=-1, keepdims=True)  # Q16.15
    headroom_plus_one = 32 - np.frexp(total.astype(np.float64))[1].astype(np.int64)
    shifted = ((total << (headroom_plus_one - 1)) + (1 << 13)) >> 14
    centred = np.clip(shifted - ((1 << 15) + (1 << 16)), -32768, 32767)
    reciprocal = _lut_lookup_int16(centred, luts["one_over_one_plus_x"])  # Q0.15
    right = 31 - headroom_plus_one
    out = (exps * reciprocal + (np.int64(1) << (right - 1))) >> right  # half_up
    return np.clip(out, 0, 32767).astype(np.int16)


def _rdbpot_array(x, exponent):
    from refquant.numerics.fixedpoint import _rdbpot

    return _rdbpot(x, np.broadcast_to(exponent, x.shape).astype(np.int64))


def softmax(
    x,
    x_scale,
    x_zero_point,
    *,
    beta=1.0,
    y_scale=1 / 256,
    y_zero_point=-128,
    out_dtype=np.int8,
    profile="exact",
):
    """Quantized softmax over the last axis.

    ``y = z_y + round(softmax(beta * s_x * (x - z_x)) / s_y)``.  ``exact``:
    float64 evaluation, ties to even (exact ties only arise from equal entries,
    which float64 computes exactly); ``tflite_fixed_point``: TFLite reference
    kernel in gemmlowp fixed point (Q5.26 differences, Q12.19 sum, Newton
    reciprocal; needs output (1/256, -128) for int8 or (1/256, 0) for uint8);
    ``float32``: dequantize, float32 softmax, quantize with the profile's rule.

    An empty last axis (shape ``(..., 0)``) gives an empty result of the same
    shape (there is nothing to normalise); the arguments are still checked.

    >>> softmax(np.int8([[0, 0]]), 0.1, 0).tolist()
    [[0, 0]]
    """
    prof = get_profile(profile)
    dtype = out_dtype_of(out_dtype)
    q, s_x, z_x = _inputs(x, x_scale, x_zero_point, "softmax")
    if q.ndim == 0:
        raise InvalidArgumentError("x must have at least one axis for softmax")
    s_y, z_y = _output_qparams("softmax", dtype, y_scale, y_zero_point)
    if not (isinstance(beta, (int, float)) and np.isfinite(beta) and beta > 0):
        raise InvalidArgumentError(
            f"beta must be a finite float > 0; got beta={beta!r}"
        )
    if q.shape[-1] == 0:  # no entries to normalise: the empty result
        return np.empty(q.shape, dtype=dtype)
    method = prof.softmax_method
    if method == "tflite_fixed_point":
        expected = _FIXED_OUTPUT.get(("softmax", dtype.name))
        if (s_y, z_y) != expected:
            raise NotImplementedError(
                "the TFLite fixed-point softmax is implemented for int8 output "
                "(1/256, -128), uint8 output (1/256, 0) and int16 output "
                f"(1/32768, 0); got {dtype.name} output ({s_y}, {z_y})"
            )
        if dtype == np.int16:
            if z_x != 0 or q.size and (q.min() < -32768 or q.max() > 32767):
                raise InvalidArgumentError(
                    "the TFLite int16 softmax needs int16 codes x with "
                    f"x_zero_point 0; got x_zero_point={z_x}"
                )
            return _softmax_tflite_int16(q, s_x, beta)
        return _softmax_tflite(q, s_x, beta, dtype)
    if method == "float32":
        d = (
            np.float32(beta)
            * np.float32(s_x)
            * (q - q.max(axis=-1, keepdims=True)).astype(np.float32)
        )
        e = np.exp(d.astype(np.float64)).astype(np.float32)
        p = e / e.sum(axis=-1, keepdims=True, dtype=np.float32)
        return _quantize_float32(p, s_y, z_y, dtype, prof)
    d = beta * s_x * (q - q.max(axis=-1, keepdims=True)).astype(np.float64)
    e = np.exp(d)
    return _quantize_exact(e / e.sum(axis=-1, keepdims=True), s_y, z_y, dtype)
