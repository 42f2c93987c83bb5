"""Worst-case accumulator width of integer dot products.

``bound = K * max|x - x_zp| * max|w - w_zp| (+ max|bias|)`` and
``accumulator_bits = bound.bit_length() + 1`` (the sign bit): the fewest bits
of a two's-complement accumulator that holds every reachable sum.

With an arbitrary zero point a b-bit code minus its zero point spans
``[-(2**b - 1), 2**b - 1]`` (int8 127 - (-128) = 255); without a zero point a
signed code reaches ``2**(b-1)`` (-128), or ``2**(b-1) - 1`` in the narrow
range (TFLite weights, [-127, 127]); an unsigned code reaches ``2**b - 1``.
Spec: specs/kernels_conv_linear.md, section 7.
"""

from __future__ import annotations

import numbers

from refquant.errors import (
    AccumulatorOverflowError,
    InvalidArgumentError,
    InvalidTypeError,
)

INT32_MAX = 2**31 - 1

_DEFAULTS = {
    "input_signed": True,
    "weight_signed": True,
    "input_zero_point": True,  # activations are asymmetric
    "weight_zero_point": False,  # weights are symmetric, zero point 0
    "weight_narrow_range": False,
    "bias_max_abs": 0,
}
_BOOL_KEYS = tuple(k for k, v in _DEFAULTS.items() if isinstance(v, bool))


def max_code_magnitude(bits: int, *, signed=True, zero_point=False, narrow=False):
    """Largest ``|q - zp|`` of a ``bits``-bit code (see module docstring).

    >>> max_code_magnitude(8, zero_point=True), max_code_magnitude(8)
    (255, 128)
    """
    if zero_point:
        return 2**bits - 1
    if signed:
        return 2 ** (bits - 1) - (1 if narrow else 0)
    return 2**bits - 1


def accumulator_bound(k, input_bits, weight_bits, **options) -> int:
    """``K * max|x - x_zp| * max|w - w_zp| + bias_max_abs`` as a Python int.

    Options (keyword): input_signed, weight_signed, input_zero_point,
    weight_zero_point, weight_narrow_range (bool) and bias_max_abs (int >= 0);
    defaults are TFLite's int8 scheme (asymmetric signed activations,
    symmetric full-range signed weights, no bias).

    >>> accumulator_bound(1024, 8, 8)  # 1024 * 255 * 128
    33423360
    """
    row = _layer_row(
        {
            "name": "-",
            "k": k,
            "input_bits": input_bits,
            "weight_bits": weight_bits,
            **options,
        },
        "layer",
    )
    return row["worst_case_abs"]


def overflow_report(layers) -> list[dict]:
    """Worst-case accumulator bits of each layer and whether int32 holds them.

    Parameters
    ----------
    layers : iterable of dict or tuple
        Each a tuple ``(name, K, input_bits, weight_bits)`` or a dict with keys
        ``name``, ``k``, ``input_bits``, ``weight_bits`` and optionally the
        options of :func:`accumulator_bound`.

    Returns
    -------
    list of dict
        One per layer: the inputs, ``max_input``, ``max_weight``,
        ``worst_case_abs``, ``accumulator_bits``, ``fits_int32`` and
        ``max_k_int32`` (the largest K that still fits int32).

    Examples
    --------
    >>> r = overflow_report([("conv1", 27, 8, 8), ("fc", 140000, 8, 8)])
    >>> [(x["name"], x["accumulator_bits"], x["fits_int32"]) for x in r]
    [('conv1', 21, True), ('fc', 34, False)]
    """
    if isinstance(layers, (str, bytes, dict)) or not _iterable(layers):
        raise InvalidTypeError(
            "layers must be a list of (name, K, input_bits, weight_bits) tuples or "
            f"dicts; got layers={layers!r}"
        )
    return [_layer_row(layer, f"layers[{i}]") for i, layer in enumerate(layers)]


def check_layer_fits_int32(layer) -> dict:
    """Return the report row of one layer, or raise
    :class:`~refquant.errors.AccumulatorOverflowError` if its worst case does
    not fit int32, naming the layer, K and the bits needed."""
    row = _layer_row(layer, "layer")
    if not row["fits_int32"]:
        raise AccumulatorOverflowError(
            f"layer {row['name']!r}: worst-case accumulator needs "
            f"{row['accumulator_bits']} bits (K={row['k']}, |acc| <= "
            f"{row['worst_case_abs']}), more than int32; K must be at most "
            f"{row['max_k_int32']} for these bit widths"
        )
    return row


def _iterable(x) -> bool:
    try:
        iter(x)
    except TypeError:
        return False
    return True


def _layer_row(layer, where: str) -> dict:
    spec = _normalize(layer, where)
    max_in = max_code_magnitude(
        spec["input_bits"],
        signed=spec["input_signed"],
        zero_point=spec["input_zero_point"],
    )
    max_w = max_code_magnitude(
        spec["weight_bits"],
        signed=spec["weight_signed"],
        zero_point=spec["weight_zero_point"],
        narrow=spec["weight_narrow_range"],
    )
    worst = spec["k"] * max_in * max_w + spec["bias_max_abs"]
    room = INT32_MAX - spec["bias_max_abs"]
    return {
        **spec,
        "max_input": max_in,
        "max_weight": max_w,
        "worst_case_abs": worst,
        "accumulator_bits": worst.bit_length() + 1,
        "fits_int32": worst <= INT32_MAX,
        "max_k_int32": room // (max_in * max_w) if room >= 0 else 0,
    }


def _normalize(layer, where: str) -> dict:
    if isinstance(layer, dict):
        unknown = set(layer) - {"name", "k", "input_bits", "weight_bits", *_DEFAULTS}
        if unknown:
            raise InvalidArgumentError(
                f"{where} has unknown keys {sorted(unknown)}; allowed: name, k, "
                f"input_bits, weight_bits, {', '.join(_DEFAULTS)}"
            )
        missing = [
            key
            for key in ("name", "k", "input_bits", "weight_bits")
            if key not in layer
        ]
        if missing:
            raise InvalidArgumentError(f"{where} is missing keys {missing}")
        spec = {**_DEFAULTS, **layer}
    elif isinstance(layer, (tuple, list)) and len(layer) == 4:
        spec = {
            **_DEFAULTS,
            "name": layer[0],
            "k": layer[1],
            "input_bits": layer[2],
            "weight_bits": layer[3],
        }
    else:
        raise InvalidTypeError(
            f"{where} must be a (name, K, input_bits, weight_bits) tuple or a dict; "
            f"got {where}={layer!r}"
        )
    _check_fields(spec, where)
    return {
        key: spec[key] for key in ("name", "k", "input_bits", "weight_bits", *_DEFAULTS)
    }


def _check_fields(spec: dict, where: str) -> None:
    if not isinstance(spec["name"], str):
        raise InvalidTypeError(f"{where} name must be a str; got name={spec['name']!r}")
    for key, low, high in (
        ("k", 1, None),
        ("input_bits", 1, 32),
        ("weight_bits", 1, 32),
        ("bias_max_abs", 0, None),
    ):
        v = spec[key]
        ok = isinstance(v, numbers.Integral) and not isinstance(v, bool)
        if not ok or v < low or (high is not None and v > high):
            allowed = f"an int in [{low}, {high}]" if high else f"an int >= {low}"
            raise InvalidArgumentError(
                f"{where} {key} must be {allowed}; got {key}={v!r}"
            )
        spec[key] = int(v)
    for key in _BOOL_KEYS:
        if not isinstance(spec[key], bool):
            raise InvalidTypeError(
                f"{where} {key} must be a bool; got {key}={spec[key]!r}"
            )
