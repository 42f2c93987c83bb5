"""Conformance corpus: golden integer vectors of every kernel under every profile.

``export_corpus(path)`` runs a fixed table of edge cases (ties, saturation,
INT32_MIN, shift 0, zero-point extremes, the measured discrepancy rows D1-D25)
and seeded random cases through refquant's kernels and fixed-point primitives
and writes inputs, qparams, options and outputs to an HDF5 file whose layout
(``specs/conformance_corpus.md``) can be read with h5py alone.
``verify_corpus(path)`` reads such a file back, validates every field, re-runs
each case and reports the cases whose outputs differ.

The kernels are data: :data:`KERNELS` maps a name to a :class:`KernelEntry`
that declares the case's arrays, attributes and outputs, how to run it and
which cases to generate.  Adding a kernel is adding one entry.

Reading a file executes nothing from it: kernel and profile names are looked
up in refquant's own tables, every attribute is checked against its declared
kind, links must be hard links inside the file, and datasets must be plain
integer or float arrays stored contiguously or with the gzip / shuffle /
fletcher32 filters only (no external, virtual or plugin-filtered storage).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from refquant._fileio import atomic_path
from refquant._validation import IntRange, check
from refquant.errors import (
    AccumulatorOverflowError,
    InvalidArgumentError,
    InvalidTypeError,
    NonFiniteInputError,
)
from refquant.numerics import fixedpoint
from refquant.profiles import PROFILES, get_profile

__all__ = [
    "ANY_PROFILE",
    "FORMAT_NAME",
    "KERNELS",
    "LAYOUT_VERSION",
    "CorpusFormatError",
    "ExportSummary",
    "KernelEntry",
    "Mismatch",
    "VerifyReport",
    "export_corpus",
    "verify_corpus",
]

FORMAT_NAME = "refquant-conformance"
LAYOUT_VERSION = 1
#: Profile group of kernels whose result does not depend on the profile.
ANY_PROFILE = "any"
#: Errors a case may expect instead of outputs (the profile rejects the input).
EXPECTED_ERRORS = {
    "AccumulatorOverflowError": AccumulatorOverflowError,
    "NonFiniteInputError": NonFiniteInputError,
}
CASE_KINDS = ("edge", "random")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_MAX_ELEMENTS = 1 << 24  # per dataset; the corpus stays small
_ALLOWED_FILTERS = (1, 2, 3)  # H5Z deflate (gzip), shuffle, fletcher32
_GZIP_ABOVE = 4096  # bytes: larger datasets are written gzip-compressed


class CorpusFormatError(InvalidArgumentError):
    """A conformance file is not a valid corpus of the supported layout."""


class CorpusNotFoundError(CorpusFormatError, FileNotFoundError):
    """The conformance file to verify does not exist."""


# ===================================================================== fields
@dataclass(frozen=True)
class Param:
    """One attribute of a case: ``kind`` decides its HDF5 type and decoding.

    Kinds: ``float`` (float64 scalar), ``floats`` (float64 scalar or 1-D),
    ``int`` (int64 scalar), ``ints`` (int64 scalar or 1-D), ``pair`` (int64
    shape (2,)), ``matrix`` (int64 shape (n, 2)), ``bool`` (int64 0 or 1),
    ``dtype`` (str: int8, uint8, int16, int32), ``activation`` (str: none,
    relu, relu6, relu_n1_to_1), ``padding`` (str valid / same, or int64 shape
    (2, 2)), ``choice`` (str among ``choices``).
    """

    name: str
    kind: str
    optional: bool = False
    choices: tuple = ()


@dataclass(frozen=True)
class Array:
    """One dataset of a case with its allowed dtypes (``list``: name_0, ...)."""

    name: str
    dtypes: tuple
    optional: bool = False
    is_list: bool = False


@dataclass
class Case:
    """One golden case: inputs and attributes by name, optional profile subset."""

    name: str
    kind: str
    note: str
    data: dict
    profiles: tuple | None = None


@dataclass(frozen=True)
class KernelEntry:
    """A kernel of the corpus: declared fields, runner and case generator.

    ``run(data, profile)`` returns a dict of output arrays (``profile`` is
    None for profile-independent entries); ``cases(rng)`` returns the
    :class:`Case` list, the same for every profile.
    """

    name: str
    arrays: tuple
    params: tuple
    outputs: tuple
    run: Callable
    cases: Callable
    profile_free: bool = False


ACTIVATION_NAMES = ("none", "relu", "relu6", "relu_n1_to_1")
DTYPE_NAMES = ("int8", "uint8", "int16", "int32")
CODES = ("int8", "uint8", "int16")
INT = ("int8", "uint8", "int16", "int32", "int64")


def _encode_param(p: Param, value):
    """Python value -> HDF5 attribute value of the declared kind."""
    k = p.kind
    if k == "float":
        return np.float64(value)
    if k in ("floats",):
        return np.asarray(value, dtype=np.float64)
    if k in ("int", "bool"):
        return np.int64(int(value))
    if k in ("ints", "pair", "matrix"):
        return np.asarray(value, dtype=np.int64)
    if k == "dtype":
        return np.dtype(value).name
    if k == "activation":
        return "none" if value is None else str(value)
    if k == "padding":
        return value if isinstance(value, str) else np.asarray(value, dtype=np.int64)
    return str(value)  # choice


def _bad(where: str, what: str, value) -> CorpusFormatError:
    return CorpusFormatError(f"{where}: {what}; got {value!r}")


def _decode_param(p: Param, value, where: str):
    """HDF5 attribute value -> Python value, validated against ``p.kind``."""
    where = f"{where} attribute {p.name!r}"
    k = p.kind
    if k in ("dtype", "activation", "choice") or (
        k == "padding" and isinstance(value, str)
    ):
        allowed = {
            "dtype": DTYPE_NAMES,
            "activation": ACTIVATION_NAMES,
            "choice": p.choices,
            "padding": ("valid", "same"),
        }[k]
        if not isinstance(value, str) or value not in allowed:
            raise _bad(where, f"must be a str, one of {list(allowed)}", value)
        if k == "dtype":
            return np.dtype(value)
        if k == "activation":
            return None if value == "none" else value
        return value
    arr = np.asarray(value)
    want_float = k in ("float", "floats")
    if arr.dtype != (np.float64 if want_float else np.int64):
        kind = "float64" if want_float else "int64"
        raise _bad(where, f"must be {kind}", f"dtype {arr.dtype}")
    shapes = {
        "float": "0-d",
        "int": "0-d",
        "bool": "0-d",
        "floats": "0-d or 1-D",
        "ints": "0-d or 1-D",
        "pair": "(2,)",
        "padding": "(2, 2)",
        "matrix": "(n, 2)",
    }[k]
    ok = {
        "0-d": arr.ndim == 0,
        "0-d or 1-D": arr.ndim <= 1,
        "(2,)": arr.shape == (2,),
        "(2, 2)": arr.shape == (2, 2),
        "(n, 2)": arr.ndim == 2 and arr.shape[1] == 2,
    }[shapes]
    if not ok:
        raise _bad(where, f"must have shape {shapes}", f"shape {arr.shape}")
    if k == "bool" and int(arr) not in (0, 1):
        raise _bad(where, "must be 0 or 1", int(arr))
    if k == "float":
        return float(arr)
    if k == "floats":
        return float(arr) if arr.ndim == 0 else arr.copy()
    if k == "int":
        return int(arr)
    if k == "bool":
        return bool(int(arr))
    if k == "ints":
        return int(arr) if arr.ndim == 0 else tuple(int(v) for v in arr)
    if k == "pair":
        return (int(arr[0]), int(arr[1]))
    return tuple(tuple(int(v) for v in row) for row in arr)  # padding, matrix


# ============================================================ kernel runners
def _k():
    """The kernel modules, imported on first use."""
    from refquant.kernels import (
        activations,
        conv,
        elementwise,
        layout,
        linear,
        pooling,
        quantize_ops,
        reduce,
        requantize,
    )

    return {
        "activations": activations,
        "conv": conv,
        "elementwise": elementwise,
        "layout": layout,
        "linear": linear,
        "pooling": pooling,
        "quantize_ops": quantize_ops,
        "reduce": reduce,
        "requantize": requantize,
    }


def _run_quantize(d, prof):
    y = _k()["quantize_ops"].quantize_linear(
        d["x"],
        d["y_scale"],
        d["y_zero_point"],
        axis=d["axis"],
        out_dtype=d["out_dtype"],
        profile=prof,
    )
    return {"y": y}


def _run_dequantize(d, prof):
    y = _k()["quantize_ops"].dequantize_linear(
        d["q"], d["scale"], d["zero_point"], axis=d["axis"], profile=prof
    )
    return {"y": y}


def _run_requantize(d, prof):
    y = _k()["quantize_ops"].requantize(
        d["q"],
        d["in_scale"],
        d["in_zero_point"],
        d["out_scale"],
        d["out_zero_point"],
        out_dtype=d["out_dtype"],
        profile=prof,
    )
    return {"y": y}


def _run_requantize_accumulator(d, prof):
    y = _k()["requantize"].requantize_accumulator(
        d["acc"],
        d["input_scale"],
        d["weight_scale"],
        d["output_scale"],
        d["output_zero_point"],
        d["out_dtype"],
        prof,
        activation=d["activation"],
    )
    return {"y": y}


def _run_dynamic_quantize(d, prof):
    q, s, z = _k()["quantize_ops"].dynamic_quantize_linear(d["x"], profile=prof)
    return {
        "y": q,
        "y_scale": np.asarray(s, dtype=np.float64),
        "y_zero_point": np.asarray(z, dtype=np.int64),
    }


def _conv_common(d):
    return dict(
        strides=d["strides"],
        dilations=d["dilations"],
        padding=d["padding"],
        activation=d["activation"],
        out_dtype=d["out_dtype"],
    )


def _run_conv2d(d, prof):
    y = _k()["conv"].conv2d(
        d["x"],
        d["x_scale"],
        d["x_zero_point"],
        d["w"],
        d["w_scale"],
        d["w_zero_point"],
        d["bias"],
        d["y_scale"],
        d["y_zero_point"],
        groups=d["groups"],
        profile=prof,
        **_conv_common(d),
    )
    return {"y": y}


def _run_depthwise(d, prof):
    y = _k()["conv"].depthwise_conv2d(
        d["x"],
        d["x_scale"],
        d["x_zero_point"],
        d["w"],
        d["w_scale"],
        d["w_zero_point"],
        d["bias"],
        d["y_scale"],
        d["y_zero_point"],
        depth_multiplier=d["depth_multiplier"],
        profile=prof,
        **_conv_common(d),
    )
    return {"y": y}


def _run_fully_connected(d, prof):
    y = _k()["linear"].fully_connected(
        d["x"],
        d["x_scale"],
        d["x_zero_point"],
        d["w"],
        d["w_scale"],
        d["w_zero_point"],
        d["bias"],
        d["y_scale"],
        d["y_zero_point"],
        activation=d["activation"],
        out_dtype=d["out_dtype"],
        profile=prof,
    )
    return {"y": y}


def _run_batch_matmul(d, prof):
    y = _k()["linear"].batch_matmul(
        d["a"],
        d["a_scale"],
        d["a_zero_point"],
        d["b"],
        d["b_scale"],
        d["b_zero_point"],
        d["y_scale"],
        d["y_zero_point"],
        out_dtype=d["out_dtype"],
        profile=prof,
    )
    return {"y": y}


def _run_matmul_integer(d, prof):
    y = _k()["linear"].matmul_integer(
        d["a"], d["b"], d["a_zero_point"], d["b_zero_point"], profile=prof
    )
    return {"y": y}


def _run_conv_integer(d, prof):
    y = _k()["linear"].conv_integer(
        d["x"],
        d["w"],
        d["x_zero_point"],
        d["w_zero_point"],
        strides=d["strides"],
        dilations=d["dilations"],
        groups=d["groups"],
        padding=d["padding"],
        profile=prof,
    )
    return {"y": y}


def _elementwise_runner(op):
    def run(d, prof):
        fn = getattr(_k()["elementwise"], op)
        y = fn(
            d["a"],
            d["a_scale"],
            d["a_zero_point"],
            d["b"],
            d["b_scale"],
            d["b_zero_point"],
            d["y_scale"],
            d["y_zero_point"],
            activation=d["activation"],
            out_dtype=d["out_dtype"],
            profile=prof,
        )
        return {"y": y}

    return run


def _run_average_pool(d, prof):
    y = _k()["pooling"].average_pool2d(
        d["x"],
        d["x_scale"],
        d["x_zero_point"],
        d["y_scale"],
        d["y_zero_point"],
        pool_size=d["pool_size"],
        strides=d["strides"],
        padding=d["padding"],
        count_include_pad=d["count_include_pad"],
        activation=d["activation"],
        out_dtype=d["out_dtype"],
        profile=prof,
    )
    return {"y": y}


def _run_global_average_pool(d, prof):
    y = _k()["pooling"].global_average_pool(
        d["x"],
        d["x_scale"],
        d["x_zero_point"],
        d["y_scale"],
        d["y_zero_point"],
        out_dtype=d["out_dtype"],
        profile=prof,
    )
    return {"y": y}


def _run_max_pool(d, prof):
    y = _k()["pooling"].max_pool2d(
        d["x"], pool_size=d["pool_size"], strides=d["strides"], padding=d["padding"]
    )
    return {"y": y}


def _run_mean(d, prof):
    y = _k()["reduce"].mean(
        d["x"],
        d["x_scale"],
        d["x_zero_point"],
        d["y_scale"],
        d["y_zero_point"],
        axes=d["axes"],
        keepdims=d["keepdims"],
        out_dtype=d["out_dtype"],
        profile=prof,
    )
    return {"y": y}


def _run_concatenation(d, prof):
    y = _k()["layout"].concatenation(
        list(d["inputs"]),
        d["scales"],
        d["zero_points"],
        d["y_scale"],
        d["y_zero_point"],
        axis=d["axis"],
        out_dtype=d["out_dtype"],
        profile=prof,
    )
    return {"y": y}


def _run_pad(d, prof):
    return {"y": _k()["layout"].pad(d["x"], d["paddings"], d["zero_point"])}


def _run_clamp(d, prof):
    y = _k()["activations"].clamp_activation(
        d["q"], d["activation"], d["scale"], d["zero_point"], d["out_dtype"], prof
    )
    return {"y": y}


def _run_softmax(d, prof):
    y = _k()["activations"].softmax(
        d["x"],
        d["x_scale"],
        d["x_zero_point"],
        beta=d["beta"],
        y_scale=d["y_scale"],
        y_zero_point=d["y_zero_point"],
        out_dtype=d["out_dtype"],
        profile=prof,
    )
    return {"y": y}


def _lut_runner(op):
    def run(d, prof):
        fn = getattr(_k()["activations"], op)
        y = fn(
            d["x"],
            d["x_scale"],
            d["x_zero_point"],
            y_scale=d["y_scale"],
            y_zero_point=d["y_zero_point"],
            out_dtype=d["out_dtype"],
            profile=prof,
        )
        return {"y": y}

    return run


def _run_quantize_multiplier(d, prof):
    m, s = fixedpoint.quantize_multiplier(
        d["real"], single_rounding=d["single_rounding"]
    )
    return {
        "multiplier": np.asarray(m).astype(np.int32),
        "shift": np.asarray(s).astype(np.int32),
    }


def _run_srdhm(d, prof):
    y = fixedpoint.saturating_doubling_high_mul(d["a"], d["b"])
    return {"y": y.astype(np.int32)}


def _run_rrs(d, prof):
    y = fixedpoint.rounding_right_shift(d["x"], d["exponent"])
    return {"y": y.astype(np.int32)}


def _run_mbqm(d, prof):
    y = fixedpoint.multiply_by_quantized_multiplier(
        d["x"], d["multiplier"], d["shift"], rounding=d["rounding"]
    )
    return {"y": y.astype(np.int64)}


def _run_mbqm64(d, prof):
    y = fixedpoint.multiply_by_quantized_multiplier_int64(
        d["x"], d["multiplier"], d["shift"]
    )
    return {"y": y.astype(np.int64)}


# ================================================================ case tables
F32 = np.float32


def _f32(v) -> float:
    """A float64 holding the float32 nearest ``v`` (scales every backend stores)."""
    return float(np.float32(v))


def _codes(rng, shape, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=np.int64).astype(
        dtype
    )


def _scale(rng, low=-9, high=-3) -> float:
    """A float32-representable scale ``m * 2**e``, m in [1, 2), e in [low, high]."""
    return _f32(np.ldexp(rng.uniform(1.0, 2.0), int(rng.integers(low, high + 1))))


def _zp(rng, dtype) -> int:
    info = np.iinfo(dtype)
    if dtype == np.int16:
        return 0
    return int(rng.integers(info.min, int(info.max) + 1))


def _c(name, note, kind="edge", profiles=None, **data):
    return Case(name, kind, note, data, profiles)


# D-rows: integer_semantics.md section 6 (measured discrepancies)
def _quantize_cases(rng):
    ties = np.arange(-6, 6, dtype=np.float32) + F32(0.5)
    cases = [
        _c("d1_d2_ties", "D1/D2: x = +-2.5, s = 1", x=F32([2.5, -2.5])),
        _c("ties_sweep", "k + 0.5 for k in [-6, 5], s = 1", x=ties),
        _c(
            "d3_division_vs_reciprocal",
            "D3: x = -0.1155f, s = 0.001f",
            x=F32([-0.1155]),
            y_scale=_f32(0.001),
        ),
        _c(
            "saturation_inf",
            "+-inf and huge values saturate",
            x=F32([np.inf, -np.inf, 1e30, -1e30, 127.5, -128.5, 126.5]),
        ),
        _c(
            "zero_point_min",
            "zp = qmin (-128)",
            x=F32([0.0, -0.5, 0.5, 1.5, 254.5, 300.0]),
            y_zero_point=-128,
        ),
        _c(
            "uint8_zero_point_max",
            "uint8 zp = 255",
            x=F32([0.0, -0.5, 0.5, -1.5, -255.5, 2.0]),
            y_zero_point=255,
            out_dtype="uint8",
        ),
        _c(
            "int16_ties",
            "int16 out, ties at s = 2**-10",
            x=np.ldexp(ties, -10).astype(np.float32),
            y_scale=2.0**-10,
            out_dtype="int16",
        ),
        _c(
            "d25_nan",
            "D25: NaN gives qmin (ORT, onnx.reference) or is an error",
            x=F32([np.nan, 1.0]),
        ),
        _c(
            "per_axis",
            "per-axis scales and zero points along axis 1",
            x=(rng.standard_normal((3, 4)) * 2).astype(np.float32),
            y_scale=np.array([_f32(0.01), _f32(0.02), _f32(0.05), _f32(0.1)]),
            y_zero_point=np.array([-128, 0, 5, 127]),
            axis=1,
        ),
    ]
    for i, dt in enumerate(("int8", "uint8", "int16")):
        s = _scale(rng, -8, -2)
        z = _zp(rng, np.dtype(dt))
        span = s * (np.iinfo(dt).max - np.iinfo(dt).min) * 0.6
        x = rng.uniform(-span, span, size=17).astype(np.float32)
        x[:4] = F32((np.arange(4) + 0.5 + rng.integers(-20, 20)) * s)  # near ties
        cases.append(
            _c(
                f"random_{i:03d}",
                "seeded",
                "random",
                x=x,
                y_scale=s,
                y_zero_point=z,
                out_dtype=dt,
            )
        )
    return _defaults(cases, y_scale=1.0, y_zero_point=0, out_dtype="int8", axis=None)


def _defaults(cases, **defaults):
    for c in cases:
        for k, v in defaults.items():
            c.data.setdefault(k, v)
    return cases


def _dequantize_cases(rng):
    cases = [
        _c(
            "int8_extremes",
            "qmin, qmax, zp at extremes",
            q=np.int8([-128, -1, 0, 1, 127]),
            scale=_f32(0.1),
            zero_point=-128,
        ),
        _c(
            "uint8_zp_max",
            "uint8 with zp 255",
            q=np.uint8([0, 128, 255]),
            scale=_f32(0.003),
            zero_point=255,
        ),
        _c(
            "per_axis",
            "per-axis along axis 0",
            q=_codes(rng, (2, 3), np.int8),
            scale=np.array([_f32(0.5), _f32(0.007)]),
            zero_point=np.array([0, -3]),
            axis=0,
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            q=_codes(rng, (11,), np.int16),
            scale=_scale(rng),
            zero_point=0,
        ),
    ]
    return _defaults(cases, axis=None)


def _requantize_cases(rng):
    cases = [
        _c(
            "d8_shift0_ties",
            "D8: M = 0.5 ties at shift 0",
            q=np.int8([-5, -3, -1, 1, 3, 5]),
            in_scale=0.5,
        ),
        _c(
            "d4_quarter",
            "D4: M = 0.25, q = -2 and +-6",
            q=np.int8([-2, 2, -6, 6]),
            in_scale=0.25,
        ),
        _c(
            "zero_point_extremes",
            "z_in = -128, z_out = 127, saturation",
            q=np.int8([-128, -127, 0, 127]),
            in_zero_point=-128,
            out_zero_point=127,
            in_scale=0.75,
        ),
        _c(
            "int8_to_uint8",
            "int8 -> uint8 at scale ratio 3",
            q=np.int8([-128, -3, 0, 5, 127]),
            in_scale=3.0,
            out_zero_point=128,
            out_dtype="uint8",
        ),
    ]
    for i in range(2):
        cases.append(
            _c(
                f"random_{i:03d}",
                "seeded",
                "random",
                q=_codes(rng, (13,), np.int8),
                in_scale=_scale(rng),
                in_zero_point=_zp(rng, np.int8),
                out_scale=_scale(rng),
                out_zero_point=_zp(rng, np.int8),
            )
        )
    return _defaults(
        cases, in_zero_point=0, out_scale=1.0, out_zero_point=0, out_dtype="int8"
    )


def _requantize_accumulator_cases(rng):
    acc = rng.integers(-(2**20), 2**20, size=24, dtype=np.int64).astype(np.int32)
    cases = [
        _c(
            "d4_double_vs_single",
            "D4: M = 0.25, acc = -2",
            acc=np.int32([-2]),
            input_scale=0.25,
        ),
        _c(
            "d5_double_rounding",
            "D5: M = 0.0625, acc = 7",
            acc=np.int32([7]),
            input_scale=0.0625,
        ),
        _c(
            "d6_vector_path",
            "D6: M = 0.125, acc = -5",
            acc=np.int32([-5]),
            input_scale=0.125,
        ),
        _c(
            "d8_shift0",
            "D8: M = 0.5, acc = -3",
            acc=np.int32([-3, 3, -1, 1]),
            input_scale=0.5,
        ),
        _c(
            "d12_large_acc",
            "D12: acc = 2**25 + 1, M = 2**-26",
            acc=np.int32([2**25 + 1, -(2**25) - 1]),
            input_scale=2.0**-26,
        ),
        _c(
            "int32_extremes",
            "INT32_MIN and INT32_MAX at M = 2**-24",
            acc=np.int32([INT32_MIN, INT32_MAX, INT32_MIN + 1]),
            input_scale=2.0**-24,
        ),
        _c(
            "per_channel_relu6",
            "per-channel M along the last axis, relu6 clamp",
            acc=np.int32([[-300, 17, 900], [5, -7, 2000]]),
            input_scale=0.05,
            weight_scale=np.array([0.5, 0.25, 0.125]),
            output_scale=_f32(0.1),
            output_zero_point=-10,
            activation="relu6",
        ),
        _c(
            "int16_out",
            "int16 output (16x8 int64 form)",
            acc=np.int32([-(2**20) - 1, -3, 3, 2**20 + 1]),
            input_scale=2.0**-6,
            out_dtype="int16",
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            acc=acc,
            input_scale=_scale(rng, -12, -10),
            weight_scale=_scale(rng, -8, -6),
            output_scale=_scale(rng, -8, -6),
            output_zero_point=_zp(rng, np.int8),
        ),
    ]
    return _defaults(
        cases,
        weight_scale=1.0,
        output_scale=1.0,
        output_zero_point=0,
        out_dtype="int8",
        activation=None,
    )


def _dynamic_quantize_cases(rng):
    cases = [
        _c("d13_all_zero", "D13: all-zero input", x=F32([0, 0, 0])),
        _c("positive", "min 0 extended", x=F32([1, 2, 3])),
        _c("tie_zero_point", "D17-like range [-2.5, 252.5]", x=F32([-2.5, 252.5, 0])),
        _c(
            "random_000",
            "seeded",
            "random",
            x=rng.standard_normal(9).astype(np.float32),
        ),
    ]
    return cases


def _conv_x(rng, shape, dtype=np.int8):
    return _codes(rng, shape, dtype)


def _conv2d_cases(rng):
    one = np.ones((1, 1, 1, 1), np.int8)
    cases = [
        _c(
            "d8_ties_shift0",
            "1x1 conv, M = 0.5: every output a tie",
            x=np.int8([-3, -1, 1, 3, 5]).reshape(1, 1, 5, 1),
            w=one,
            x_scale=0.5,
        ),
        _c(
            "d4_d5_d6_per_channel",
            "per-channel M = 0.25, 0.0625, 0.125 with acc -2, 7, -5",
            x=np.ones((1, 1, 1, 1), np.int8),
            w=np.int8([-2, 7, -5]).reshape(3, 1, 1, 1),
            w_scale=np.array([0.25, 0.0625, 0.125]),
        ),
        _c(
            "same_padding_zp_min",
            "SAME padding with x_zero_point = -128, stride 2",
            x=_conv_x(rng, (1, 5, 5, 2)),
            w=_codes(rng, (3, 3, 3, 2), np.int8),
            x_zero_point=-128,
            x_scale=_f32(0.02),
            w_scale=np.array([_f32(0.01), _f32(0.02), _f32(0.005)]),
            y_scale=_f32(0.5),
            padding="same",
            strides=(2, 2),
        ),
        _c(
            "explicit_padding_dilation",
            "explicit padding ((1, 0), (2, 1)), dilation 2",
            x=_conv_x(rng, (1, 5, 6, 1)),
            w=_codes(rng, (2, 2, 2, 1), np.int8),
            x_zero_point=7,
            x_scale=_f32(0.03),
            w_scale=_f32(0.01),
            y_scale=_f32(0.05),
            padding=((1, 0), (2, 1)),
            dilations=(2, 2),
        ),
        _c(
            "groups_relu6",
            "groups = 2, relu6 in the output domain",
            x=_conv_x(rng, (1, 3, 3, 4)),
            w=_codes(rng, (4, 2, 2, 2), np.int8),
            bias=np.int32([100, -100, 0, 5000]),
            x_scale=_f32(0.05),
            w_scale=_f32(0.02),
            y_scale=_f32(0.03),
            y_zero_point=-128,
            groups=2,
            activation="relu6",
        ),
        _c(
            "saturation",
            "outputs beyond int8 saturate at -128 / 127",
            x=np.int8([127, -128, 127, 127]).reshape(1, 2, 2, 1),
            w=np.int8([127, -127]).reshape(2, 1, 1, 1),
        ),
        _c(
            "bias_overflow",
            "acc + bias leaves int32 (error or wrap per profile)",
            x=np.int8([127]).reshape(1, 1, 1, 1),
            w=np.int8([127]).reshape(1, 1, 1, 1),
            bias=np.int32([INT32_MAX - 100]),
            x_scale=2.0**-16,
            w_scale=2.0**-16,
        ),
        _c(
            "uint8",
            "uint8 activations and output, zp 128",
            x=_conv_x(rng, (1, 3, 3, 2), np.uint8),
            w=_codes(rng, (2, 3, 3, 2), np.int8),
            x_zero_point=128,
            y_zero_point=128,
            x_scale=_f32(0.04),
            w_scale=_f32(0.01),
            y_scale=_f32(0.1),
            out_dtype="uint8",
        ),
        _c(
            "int16x8",
            "16x8: int16 activations, int8 weights, int64 bias, int16 output",
            x=_conv_x(rng, (1, 3, 3, 2), np.int16),
            w=_codes(rng, (2, 2, 2, 2), np.int8),
            bias=np.int64([1 << 20, -(1 << 20)]),
            x_scale=2.0**-12,
            w_scale=np.array([2.0**-7, _f32(0.003)]),
            y_scale=2.0**-10,
            out_dtype="int16",
        ),
    ]
    for i in range(3):
        c_in, c_out, k = int(rng.integers(1, 4)), int(rng.integers(1, 4)), 3
        cases.append(
            _c(
                f"random_{i:03d}",
                "seeded",
                "random",
                x=_conv_x(rng, (1, 4, 5, c_in)),
                w=_codes(rng, (c_out, k, k, c_in), np.int8),
                bias=rng.integers(-2000, 2000, size=c_out).astype(np.int32),
                x_scale=_scale(rng),
                x_zero_point=_zp(rng, np.int8),
                w_scale=np.array([_scale(rng) for _ in range(c_out)]),
                y_scale=_scale(rng, -4, -1),
                y_zero_point=_zp(rng, np.int8),
                padding=("valid", "same")[i % 2],
                strides=(1 + i % 2, 1),
            )
        )
    return _defaults(cases, **_CONV_DEFAULTS, groups=1)


_CONV_DEFAULTS = dict(
    bias=None,
    x_scale=1.0,
    x_zero_point=0,
    w_scale=1.0,
    w_zero_point=0,
    y_scale=1.0,
    y_zero_point=0,
    strides=(1, 1),
    dilations=(1, 1),
    padding="valid",
    activation=None,
    out_dtype="int8",
)


def _depthwise_cases(rng):
    cases = [
        _c(
            "d8_ties_shift0",
            "1x1 depthwise, M = 0.5: ties",
            x=np.int8([-3, -1, 1, 3]).reshape(1, 2, 2, 1),
            w=np.ones((1, 1, 1, 1), np.int8),
            x_scale=0.5,
        ),
        _c(
            "depth_multiplier_same",
            "depth multiplier 2, SAME padding, zp -128",
            x=_conv_x(rng, (1, 4, 4, 2)),
            w=_codes(rng, (1, 3, 3, 4), np.int8),
            x_zero_point=-128,
            x_scale=_f32(0.02),
            w_scale=np.array([_f32(v) for v in (0.01, 0.02, 0.005, 0.03)]),
            y_scale=_f32(0.2),
            depth_multiplier=2,
            padding="same",
        ),
        _c(
            "stride_dilation_relu",
            "stride 2, dilation 2, relu",
            x=_conv_x(rng, (1, 6, 6, 3)),
            w=_codes(rng, (1, 2, 2, 3), np.int8),
            bias=np.int32([-500, 0, 500]),
            x_scale=_f32(0.05),
            w_scale=_f32(0.02),
            y_scale=_f32(0.04),
            strides=(2, 2),
            dilations=(2, 2),
            activation="relu",
        ),
        _c(
            "bias_overflow",
            "acc + bias below INT32_MIN",
            x=np.int8([127]).reshape(1, 1, 1, 1),
            w=np.int8([-128]).reshape(1, 1, 1, 1),
            bias=np.int32([INT32_MIN + 5]),
            x_scale=2.0**-16,
            w_scale=2.0**-16,
        ),
    ]
    for i in range(2):
        c = int(rng.integers(1, 4))
        cases.append(
            _c(
                f"random_{i:03d}",
                "seeded",
                "random",
                x=_conv_x(rng, (1, 5, 4, c)),
                w=_codes(rng, (1, 3, 3, c), np.int8),
                bias=rng.integers(-2000, 2000, size=c).astype(np.int32),
                x_scale=_scale(rng),
                x_zero_point=_zp(rng, np.int8),
                w_scale=np.array([_scale(rng) for _ in range(c)]),
                y_scale=_scale(rng, -5, -2),
                y_zero_point=_zp(rng, np.int8),
                padding=("same", "valid")[i % 2],
            )
        )
    return _defaults(cases, **_CONV_DEFAULTS, depth_multiplier=1)


def _fully_connected_cases(rng):
    cases = [
        _c(
            "d7_fc_rounding",
            "D7: M = 0.25, acc = -2 and 1",
            x=np.int8([[-2], [1], [2], [-6]]),
            w=np.int8([[1]]),
            x_scale=0.5,
            w_scale=0.5,
        ),
        _c(
            "per_channel_relu_n1_to_1",
            "per-channel weights, relu_n1_to_1",
            x=_codes(rng, (2, 5), np.int8),
            w=_codes(rng, (3, 5), np.int8),
            bias=np.int32([10, -10, 300]),
            x_scale=_f32(0.05),
            w_scale=np.array([_f32(0.01), _f32(0.02), _f32(0.03)]),
            y_scale=_f32(0.01),
            activation="relu_n1_to_1",
        ),
        _c(
            "bias_overflow",
            "acc + bias above INT32_MAX",
            x=np.int8([[127, 127]]),
            w=np.int8([[127, 127]]),
            bias=np.int32([INT32_MAX - 1000]),
            x_scale=2.0**-16,
            w_scale=2.0**-16,
        ),
        _c(
            "int16x8",
            "16x8 fully connected",
            x=_codes(rng, (2, 4), np.int16),
            w=_codes(rng, (2, 4), np.int8),
            bias=np.int64([-(1 << 22), 1 << 22]),
            x_scale=2.0**-12,
            w_scale=_f32(0.01),
            y_scale=2.0**-9,
            out_dtype="int16",
        ),
        _c(
            "uint8_zp",
            "uint8 activations, zp 255",
            x=_codes(rng, (2, 6), np.uint8),
            w=_codes(rng, (2, 6), np.int8),
            x_zero_point=255,
            y_zero_point=0,
            x_scale=_f32(0.02),
            w_scale=_f32(0.02),
            y_scale=_f32(0.1),
            out_dtype="uint8",
        ),
    ]
    for i in range(2):
        k, c_out = int(rng.integers(3, 40)), int(rng.integers(1, 5))
        cases.append(
            _c(
                f"random_{i:03d}",
                "seeded",
                "random",
                x=_codes(rng, (3, k), np.int8),
                w=_codes(rng, (c_out, k), np.int8),
                bias=rng.integers(-5000, 5000, size=c_out).astype(np.int32),
                x_scale=_scale(rng),
                x_zero_point=_zp(rng, np.int8),
                w_scale=np.array([_scale(rng) for _ in range(c_out)]),
                y_scale=_scale(rng, -4, -1),
                y_zero_point=_zp(rng, np.int8),
            )
        )
    defaults = {k: v for k, v in _CONV_DEFAULTS.items() if k in _FC_PARAMS}
    return _defaults(cases, **defaults)


_FC_PARAMS = (
    "bias",
    "x_scale",
    "x_zero_point",
    "w_scale",
    "w_zero_point",
    "y_scale",
    "y_zero_point",
    "activation",
    "out_dtype",
)


def _overflow_k():
    # 131073 * (-128) * (-128) = 2**31 + 16384: one past int32
    return 131073


def _batch_matmul_cases(rng):
    k = _overflow_k()
    cases = [
        _c(
            "d12_like_ties",
            "M = 0.5 ties, per-tensor",
            a=np.uint8([[3, 1], [5, 1]]),
            b=np.int8([[1], [0]]),
            a_scale=0.5,
        ),
        _c(
            "per_column_b_broadcast",
            "b per column, batch dims broadcast (2, 1) x (3,)",
            a=_codes(rng, (2, 1, 2, 4), np.uint8),
            b=_codes(rng, (3, 4, 3), np.int8),
            a_zero_point=128,
            a_scale=_f32(0.02),
            b_scale=np.array([_f32(0.01), _f32(0.03), _f32(0.05)]),
            b_zero_point=np.array([0, -5, 5]),
            y_scale=_f32(0.3),
            y_zero_point=-3,
        ),
        _c(
            "d21_int32_overflow",
            "D21-like: K = 131073 of (-128)*(-128) leaves int32",
            a=np.full((1, k), -128, np.int8),
            b=np.full((k, 1), -128, np.int8),
            a_scale=2.0**-20,
            b_scale=2.0**-20,
        ),
    ]
    for i in range(2):
        kk = int(rng.integers(2, 30))
        cases.append(
            _c(
                f"random_{i:03d}",
                "seeded",
                "random",
                a=_codes(rng, (2, 3, kk), np.int8),
                b=_codes(rng, (2, kk, 4), np.int8),
                a_scale=_scale(rng),
                a_zero_point=_zp(rng, np.int8),
                b_scale=_scale(rng),
                b_zero_point=_zp(rng, np.int8),
                y_scale=_scale(rng, -4, -1),
                y_zero_point=_zp(rng, np.int8),
            )
        )
    return _defaults(
        cases,
        a_scale=1.0,
        a_zero_point=0,
        b_scale=1.0,
        b_zero_point=0,
        y_scale=1.0,
        y_zero_point=0,
        out_dtype="int8",
    )


def _matmul_integer_cases(rng):
    k = _overflow_k()
    cases = [
        _c(
            "d21_wrap",
            "D21-like: K = 131073 of (-128)*(-128) (wrap or error)",
            a=np.full((1, k), -128, np.int8),
            b=np.full((k, 1), -128, np.int8),
        ),
        _c(
            "uint8_zero_points",
            "uint8 with per-row / per-column zero points",
            a=_codes(rng, (2, 3), np.uint8),
            b=_codes(rng, (3, 2), np.uint8),
            a_zero_point=np.array([0, 255]),
            b_zero_point=np.array([128, 7]),
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            a=_codes(rng, (3, 9), np.int8),
            b=_codes(rng, (9, 2), np.int8),
            a_zero_point=_zp(rng, np.int8),
            b_zero_point=_zp(rng, np.int8),
        ),
    ]
    return _defaults(cases, a_zero_point=0, b_zero_point=0)


def _conv_integer_cases(rng):
    k = _overflow_k()
    cases = [
        _c(
            "d21_wrap",
            "1x1 conv over 131073 channels of (-128)*(-128) (wrap or error)",
            x=np.full((1, 1, 1, k), -128, np.int8),
            w=np.full((1, 1, 1, k), -128, np.int8),
        ),
        _c(
            "uint8_same_padding",
            "uint8, zero points 128 / per-channel, SAME padding, stride 2",
            x=_codes(rng, (1, 5, 5, 2), np.uint8),
            w=_codes(rng, (3, 3, 3, 2), np.uint8),
            x_zero_point=128,
            w_zero_point=np.array([0, 255, 9]),
            strides=(2, 2),
            padding="same",
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            x=_codes(rng, (1, 4, 4, 4), np.int8),
            w=_codes(rng, (2, 2, 2, 2), np.int8),
            x_zero_point=_zp(rng, np.int8),
            groups=2,
            dilations=(2, 1),
        ),
    ]
    return _defaults(
        cases,
        x_zero_point=0,
        w_zero_point=0,
        strides=(1, 1),
        dilations=(1, 1),
        groups=1,
        padding="valid",
    )


def _elementwise_cases(op):
    def cases(rng):
        if op == "add":
            tie = _c(
                "d9_add_tie",
                "D9: 2 + (-63) at 0.5 + 0.5 -> 1.0 (-30.5)",
                a=np.int8([2, 1, 3]),
                b=np.int8([-63, 0, 0]),
                a_scale=0.5,
                b_scale=0.5,
            )
        else:
            tie = _c(
                "ties",
                "3 * -1 at 0.5 * 1 -> 1.0 (-1.5) and friends",
                a=np.int8([3, 3, 1, -1, 5]),
                b=np.int8([-1, 1, 1, 1, -1]),
                a_scale=0.5,
            )
        out = [
            tie,
            _c(
                "saturation_zp_extremes",
                "zero points -128 / 127, outputs saturate",
                a=np.int8([-128, 127, 127, -128]),
                b=np.int8([127, 127, -128, -128]),
                a_zero_point=-128,
                b_zero_point=127,
                a_scale=_f32(0.5),
                b_scale=_f32(0.25),
                y_scale=_f32(0.125),
            ),
            _c(
                "broadcast_relu6",
                "broadcast (2, 3) with (3,), relu6",
                a=_codes(rng, (2, 3), np.int8),
                b=_codes(rng, (3,), np.int8),
                a_scale=_f32(0.05),
                b_scale=_f32(0.07),
                y_scale=_f32(0.06 if op == "add" else 0.2),
                y_zero_point=-20,
                activation="relu6",
            ),
            _c(
                "uint8",
                "uint8 inputs and output",
                a=_codes(rng, (5,), np.uint8),
                b=_codes(rng, (5,), np.uint8),
                a_zero_point=128,
                b_zero_point=3,
                y_zero_point=100,
                a_scale=_f32(0.02),
                b_scale=_f32(0.04),
                y_scale=_f32(0.05 if op == "add" else 0.5),
                out_dtype="uint8",
            ),
            _c(
                "int16",
                "int16 inputs and output, zero points 0",
                a=_codes(rng, (6,), np.int16),
                b=_codes(rng, (6,), np.int16),
                a_scale=2.0**-10,
                b_scale=_f32(0.0007),
                y_scale=2.0**-9 if op == "add" else 2.0**-4,
                out_dtype="int16",
            ),
        ]
        for i in range(2):
            out.append(
                _c(
                    f"random_{i:03d}",
                    "seeded",
                    "random",
                    a=_codes(rng, (4, 5), np.int8),
                    b=_codes(rng, (4, 5), np.int8),
                    a_scale=_scale(rng),
                    a_zero_point=_zp(rng, np.int8),
                    b_scale=_scale(rng),
                    b_zero_point=_zp(rng, np.int8),
                    y_scale=_scale(
                        rng, -6 if op == "add" else -2, -3 if op == "add" else 0
                    ),
                    y_zero_point=_zp(rng, np.int8),
                )
            )
        return _defaults(
            out,
            a_scale=1.0,
            a_zero_point=0,
            b_scale=1.0,
            b_zero_point=0,
            y_scale=1.0,
            y_zero_point=0,
            activation=None,
            out_dtype="int8",
        )

    return cases


def _average_pool_cases(rng):
    x_rand = _codes(rng, (1, 5, 5, 2), np.int8)
    cases = [
        _c(
            "d10_tie",
            "D10: 2x2 windows with code sums 2 and -2 (means +-0.5)",
            x=np.int8([1, 1, -1, -1, 0, 0, 0, 0]).reshape(1, 2, 4, 1),
            pool_size=(2, 2),
            strides=(2, 2),
        ),
        _c(
            "d11_zero_point",
            "D11: zp 10, window means 10.5 and 9.5 in codes",
            x=np.int8([10, 11, 9, 10, 11, 10, 10, 9]).reshape(1, 2, 4, 1),
            x_zero_point=10,
            y_zero_point=10,
            pool_size=(2, 2),
            strides=(2, 2),
        ),
        _c(
            "same_padding",
            "SAME padding: border windows count only in-image taps",
            x=x_rand,
            x_scale=_f32(0.1),
            y_scale=_f32(0.1),
            x_zero_point=-3,
            y_zero_point=-3,
            pool_size=(3, 3),
            strides=(2, 2),
            padding="same",
        ),
        _c(
            "rescale_count_include_pad",
            "different output qparams, count_include_pad",
            x=x_rand,
            x_scale=_f32(0.1),
            y_scale=_f32(0.07),
            x_zero_point=-3,
            y_zero_point=4,
            pool_size=(2, 2),
            strides=(1, 1),
            padding=((1, 1), (1, 0)),
            count_include_pad=True,
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            x=_codes(rng, (2, 4, 6, 3), np.int8),
            pool_size=(2, 3),
            strides=(2, 1),
        ),
    ]
    return _defaults(
        cases,
        x_scale=1.0,
        x_zero_point=0,
        y_scale=1.0,
        y_zero_point=0,
        padding="valid",
        count_include_pad=False,
        activation=None,
        out_dtype="int8",
    )


def _global_average_pool_cases(rng):
    cases = [
        _c(
            "tie",
            "2x2 image, mean 0.5 and -0.5",
            x=np.int8([1, -1, 1, -1, 0, 0, 0, 0]).reshape(1, 2, 2, 2),
        ),
        _c(
            "rescale",
            "different output qparams",
            x=_codes(rng, (2, 3, 3, 4), np.int8),
            x_scale=_f32(0.05),
            x_zero_point=-128,
            y_scale=_f32(0.02),
            y_zero_point=10,
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            x=_codes(rng, (1, 4, 4, 3), np.int8),
            x_zero_point=-7,
            y_zero_point=-7,
        ),
    ]
    return _defaults(
        cases,
        x_scale=1.0,
        x_zero_point=0,
        y_scale=1.0,
        y_zero_point=0,
        out_dtype="int8",
    )


def _max_pool_cases(rng):
    cases = [
        _c(
            "same_padding_qmin",
            "SAME padding over values at qmin: padding never wins",
            x=np.full((1, 3, 3, 1), -128, np.int8),
            pool_size=(2, 2),
            strides=(2, 2),
            padding="same",
        ),
        _c(
            "uint8",
            "uint8 codes",
            x=_codes(rng, (1, 4, 4, 2), np.uint8),
            pool_size=(2, 2),
            strides=(2, 2),
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            x=_codes(rng, (2, 5, 5, 3), np.int8),
            pool_size=(3, 2),
            strides=(1, 2),
            padding=((1, 1), (0, 1)),
        ),
    ]
    return _defaults(cases, padding="valid")


def _mean_cases(rng):
    cases = [
        _c(
            "d24_mean_5x5",
            "D24: 5x5 mean, (0.05, -7) -> (0.02, 5)",
            x=_codes(rng, (1, 5, 5, 16), np.int8),
            x_scale=_f32(0.05),
            x_zero_point=-7,
            y_scale=_f32(0.02),
            y_zero_point=5,
            axes=(1, 2),
        ),
        _c(
            "ties",
            "means at +-0.5 over the last axis",
            x=np.int8([[1, 0], [-1, 0], [3, 0], [-3, 0]]),
            axes=(1,),
            keepdims=False,
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            x=_codes(rng, (2, 3, 4), np.int8),
            x_scale=_scale(rng),
            x_zero_point=_zp(rng, np.int8),
            y_scale=_scale(rng),
            y_zero_point=_zp(rng, np.int8),
            axes=(0, 2),
        ),
    ]
    return _defaults(
        cases,
        x_scale=1.0,
        x_zero_point=0,
        y_scale=1.0,
        y_zero_point=0,
        keepdims=True,
        out_dtype="int8",
    )


def _concatenation_cases(rng):
    cases = [
        _c(
            "equal_qparams",
            "inputs already in the output qparams (copied)",
            inputs=[_codes(rng, (2, 2), np.int8), _codes(rng, (2, 3), np.int8)],
            scales=np.array([_f32(0.1), _f32(0.1)]),
            zero_points=(4, 4),
            y_scale=_f32(0.1),
            y_zero_point=4,
        ),
        _c(
            "differing_qparams_ties",
            "requantized inputs with ties (M = 0.5)",
            inputs=[np.int8([[1, 3, -1, -3]]), np.int8([[5]])],
            scales=np.array([0.5, 1.0]),
            zero_points=(0, 0),
        ),
        _c(
            "uint8_differing",
            "uint8 inputs with differing qparams, axis 0",
            inputs=[_codes(rng, (1, 3), np.uint8), _codes(rng, (2, 3), np.uint8)],
            scales=np.array([_f32(0.02), _f32(0.05)]),
            zero_points=(128, 0),
            y_scale=_f32(0.03),
            y_zero_point=100,
            axis=0,
            out_dtype="uint8",
        ),
    ]
    return _defaults(cases, y_scale=1.0, y_zero_point=0, axis=-1, out_dtype="int8")


def _pad_cases(rng):
    return [
        _c(
            "int8_zp_min",
            "pad with zero point -128",
            x=_codes(rng, (1, 2, 2, 1), np.int8),
            paddings=((0, 0), (1, 2), (0, 1), (0, 0)),
            zero_point=-128,
        ),
        _c(
            "uint8_zp_max",
            "pad with zero point 255",
            x=_codes(rng, (2, 3), np.uint8),
            paddings=((1, 0), (2, 2)),
            zero_point=255,
        ),
    ]


def _clamp_cases(rng):
    q = np.arange(-128, 128, dtype=np.int64).astype(np.int8)
    cases = [
        _c(
            "relu6_coarse_scale",
            "relu6 at scale 12: bound 0.5 rounds per profile",
            q=q,
            activation="relu6",
            scale=12.0,
        ),
        _c(
            "relu_n1_to_1_ties",
            "relu_n1_to_1 at scale 0.4 (bounds +-2.5 ties)",
            q=q,
            activation="relu_n1_to_1",
            scale=0.4,
            zero_point=3,
        ),
        _c(
            "relu_zp_max",
            "relu with zero point 127",
            q=q,
            activation="relu",
            scale=_f32(0.1),
            zero_point=127,
        ),
        _c(
            "uint8_relu6",
            "uint8 relu6",
            q=np.arange(256).astype(np.uint8),
            activation="relu6",
            scale=_f32(0.03),
            zero_point=10,
            out_dtype="uint8",
        ),
    ]
    return _defaults(cases, zero_point=0, out_dtype="int8")


def _softmax_cases(rng):
    d23 = np.int8([56, 9, 31, -65, 7, -21, -87, 4, -125, 92]).reshape(1, 10)
    cases = [
        _c("d23_row", "D23: the measured row at s = 0.1", x=d23, x_scale=0.1),
        _c(
            "equal_entries",
            "equal entries give exact ties",
            x=np.int8([[0, 0], [5, 5], [-128, -128]]),
            x_scale=_f32(0.1),
        ),
        _c(
            "uint8_beta",
            "uint8 output, beta 0.5",
            x=_codes(rng, (2, 5), np.uint8),
            x_scale=_f32(0.2),
            x_zero_point=128,
            beta=0.5,
            y_zero_point=0,
            out_dtype="uint8",
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            x=_codes(rng, (3, 7), np.int8),
            x_scale=_scale(rng, -6, -2),
            x_zero_point=_zp(rng, np.int8),
        ),
    ]
    return _defaults(
        cases,
        x_zero_point=0,
        beta=1.0,
        y_scale=1 / 256,
        y_zero_point=-128,
        out_dtype="int8",
    )


def _lut_cases(op):
    def cases(rng):
        every = np.arange(-128, 128).astype(np.int8)
        y_int8 = (1 / 256, -128) if op == "logistic" else (1 / 128, 0)
        y_uint8 = (1 / 256, 0) if op == "logistic" else (1 / 128, 128)
        out = [
            _c("all_codes_s0.1", "every int8 code at s = 0.1", x=every, x_scale=0.1),
            _c(
                "all_codes_zp",
                "every int8 code, s = 0.0625, zp -20",
                x=every,
                x_scale=0.0625,
                x_zero_point=-20,
            ),
            _c(
                "uint8_all_codes",
                "every uint8 code, zp 128",
                x=np.arange(256).astype(np.uint8),
                x_scale=_f32(0.05),
                x_zero_point=128,
                y_scale=y_uint8[0],
                y_zero_point=y_uint8[1],
                out_dtype="uint8",
            ),
            _c(
                "int16_sweep",
                "every 257th int16 code at s = 2**-12, output (1/32768, 0)",
                x=np.arange(-32768, 32768, 257).astype(np.int16),
                x_scale=2.0**-12,
                y_scale=1 / 32768,
                y_zero_point=0,
                out_dtype="int16",
            ),
            _c(
                "random_000",
                "seeded",
                "random",
                x=_codes(rng, (20,), np.int8),
                x_scale=_scale(rng, -7, -2),
                x_zero_point=_zp(rng, np.int8),
            ),
        ]
        return _defaults(
            out,
            x_zero_point=0,
            y_scale=y_int8[0],
            y_zero_point=y_int8[1],
            out_dtype="int8",
        )

    return cases


def _quantize_multiplier_cases(rng):
    real = np.array(
        [
            0.0,
            1.0,
            0.5,
            0.3,
            0.25,
            2.0**-31,
            2.0**-32,
            2.0**-33,
            1.0 - 2.0**-33,  # mantissa rounds to 2**31: carry into the shift
            0.5 - 2.0**-34,
            2.0**30,
            2.0**31,  # single rounding caps the shift at 30
            1e-10,
            0.0625,
        ]
    )
    cases = [
        _c("edges", "0, powers of two, carry, flush, large", real=real),
        _c(
            "edges_single",
            "same values, single-rounding cap",
            real=real,
            single_rounding=True,
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            real=np.ldexp(rng.uniform(0.5, 1.0, 32), rng.integers(-35, 10, 32)),
        ),
    ]
    return _defaults(cases, single_rounding=False)


def _srdhm_cases(rng):
    a = [INT32_MIN, INT32_MIN, INT32_MAX, INT32_MAX, 0, -3, 3, -1, 1, 2**30, -(2**30)]
    b = [
        INT32_MIN,
        INT32_MAX,
        INT32_MAX,
        INT32_MIN,
        INT32_MIN,
        2**30,
        2**30,
        2**30,
        2**30,
        2**30,
        2**30,
    ]
    return [
        _c(
            "edges",
            "INT32_MIN x INT32_MIN saturates; ties at +-k*2**30",
            a=np.int32(a),
            b=np.int32(b),
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            a=_codes(rng, (64,), np.int32),
            b=_codes(rng, (64,), np.int32),
        ),
    ]


def _rrs_cases(rng):
    x = [5, -5, -6, 6, 3, -3, INT32_MIN, INT32_MAX, 1, -1, INT32_MIN, INT32_MAX, 7]
    e = [1, 1, 2, 2, 0, 0, 31, 31, 1, 1, 0, 0, 3]
    return [
        _c(
            "edges",
            "ties away from zero, shift 0, shift 31, INT32_MIN / MAX",
            x=np.int32(x),
            exponent=np.int32(e),
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            x=_codes(rng, (64,), np.int32),
            exponent=rng.integers(0, 32, 64).astype(np.int32),
        ),
    ]


def _mbqm_cases(rng):
    half = 2**30  # multiplier of M = 0.5 * 2**shift
    rows = [  # (x, multiplier, shift): D4, D5, D6, D8, INT32_MIN, shift 0 / > 0
        (-2, half, -1),
        (7, half, -3),
        (-5, half, -2),
        (-3, half, 0),
        (3, half, 0),
        (INT32_MIN, INT32_MAX, 0),
        (INT32_MIN, half, 0),
        (INT32_MAX, INT32_MAX, 0),
        (-1, half, 1),
        (12345, 1288490189, -1),
        (-(2**20), 1518500250, 5),
        (1000, half, -31),
        (0, 0, 0),
    ]
    x, m, s = (np.array(col) for col in zip(*rows))
    rand_s = rng.integers(-31, 1, 48)
    rand_m = rng.integers(2**30, 2**31, 48)
    rand_x = rng.integers(-(2**31), 2**31, 48)
    cases = []
    for rounding in ("double", "single", "double_up"):
        cases.append(
            _c(
                f"edges_{rounding}",
                f"D4-D8 rows, INT32_MIN, shift 0 and > 0 ({rounding})",
                x=x.astype(np.int32),
                multiplier=m.astype(np.int32),
                shift=s.astype(np.int32),
                rounding=rounding,
            )
        )
        cases.append(
            _c(
                f"random_{rounding}",
                "seeded",
                "random",
                x=rand_x.astype(np.int32),
                multiplier=rand_m.astype(np.int32),
                shift=rand_s.astype(np.int32),
                rounding=rounding,
            )
        )
    return cases


def _mbqm64_cases(rng):
    rows = [
        (-2, 2**30, -1),
        (-1, 2**30, -1),
        (1, 2**30, -1),
        (2, 2**30, -1),
        (2**47 - 1, INT32_MAX, 0),
        (-(2**47) + 1, 0x7FFF0000, -15),
        (3, 0x7FFF0000 - 1, 0),
        (-3, 2**30, 7),
        (12345678901, 1288490189, -20),
    ]
    x, m, s = (np.array(col) for col in zip(*rows))
    return [
        _c(
            "edges",
            "ties up, 16-bit multiplier reduction, |x| near 2**47",
            x=x.astype(np.int64),
            multiplier=m.astype(np.int32),
            shift=s.astype(np.int32),
        ),
        _c(
            "random_000",
            "seeded",
            "random",
            x=rng.integers(-(2**40), 2**40, 48),
            multiplier=rng.integers(2**30, 2**31, 48).astype(np.int32),
            shift=rng.integers(-31, 8, 48).astype(np.int32),
        ),
    ]


# ===================================================================== registry
def _p(name, kind, optional=False, choices=()):
    return Param(name, kind, optional, choices)


_WEIGHTED = (
    Array("x", CODES),
    Array("w", ("int8", "uint8")),
    Array("bias", ("int32", "int64"), optional=True),
)
_WEIGHTED_PARAMS = (
    _p("x_scale", "float"),
    _p("x_zero_point", "int"),
    _p("w_scale", "floats"),
    _p("w_zero_point", "ints"),
    _p("y_scale", "float"),
    _p("y_zero_point", "int"),
    _p("activation", "activation"),
    _p("out_dtype", "dtype"),
)
_CONV_PARAMS = _WEIGHTED_PARAMS + (
    _p("strides", "pair"),
    _p("dilations", "pair"),
    _p("padding", "padding"),
)
_BINARY_PARAMS = (
    _p("a_scale", "float"),
    _p("a_zero_point", "int"),
    _p("b_scale", "float"),
    _p("b_zero_point", "int"),
    _p("y_scale", "float"),
    _p("y_zero_point", "int"),
    _p("activation", "activation"),
    _p("out_dtype", "dtype"),
)
_UNARY_QP = (
    _p("x_scale", "float"),
    _p("x_zero_point", "int"),
    _p("y_scale", "float"),
    _p("y_zero_point", "int"),
    _p("out_dtype", "dtype"),
)
_Y = (Array("y", CODES),)


def _entry(name, arrays, params, outputs, run, cases, profile_free=False):
    return KernelEntry(name, arrays, params, outputs, run, cases, profile_free)


KERNELS: dict[str, KernelEntry] = {
    e.name: e
    for e in (
        _entry(
            "quantize_linear",
            (Array("x", ("float32",)),),
            (
                _p("y_scale", "floats"),
                _p("y_zero_point", "ints"),
                _p("axis", "int", optional=True),
                _p("out_dtype", "dtype"),
            ),
            _Y,
            _run_quantize,
            _quantize_cases,
        ),
        _entry(
            "dequantize_linear",
            (Array("q", CODES),),
            (
                _p("scale", "floats"),
                _p("zero_point", "ints"),
                _p("axis", "int", optional=True),
            ),
            (Array("y", ("float32", "float64")),),
            _run_dequantize,
            _dequantize_cases,
        ),
        _entry(
            "requantize",
            (Array("q", CODES),),
            (
                _p("in_scale", "float"),
                _p("in_zero_point", "int"),
                _p("out_scale", "float"),
                _p("out_zero_point", "int"),
                _p("out_dtype", "dtype"),
            ),
            _Y,
            _run_requantize,
            _requantize_cases,
        ),
        _entry(
            "requantize_accumulator",
            (Array("acc", ("int32",)),),
            (
                _p("input_scale", "float"),
                _p("weight_scale", "floats"),
                _p("output_scale", "float"),
                _p("output_zero_point", "int"),
                _p("activation", "activation"),
                _p("out_dtype", "dtype"),
            ),
            _Y,
            _run_requantize_accumulator,
            _requantize_accumulator_cases,
        ),
        _entry(
            "dynamic_quantize_linear",
            (Array("x", ("float32",)),),
            (),
            (
                Array("y", ("uint8",)),
                Array("y_scale", ("float64",)),
                Array("y_zero_point", ("int64",)),
            ),
            _run_dynamic_quantize,
            _dynamic_quantize_cases,
        ),
        _entry(
            "conv2d",
            _WEIGHTED,
            _CONV_PARAMS + (_p("groups", "int"),),
            _Y,
            _run_conv2d,
            _conv2d_cases,
        ),
        _entry(
            "depthwise_conv2d",
            _WEIGHTED,
            _CONV_PARAMS + (_p("depth_multiplier", "int"),),
            _Y,
            _run_depthwise,
            _depthwise_cases,
        ),
        _entry(
            "fully_connected",
            _WEIGHTED,
            _WEIGHTED_PARAMS,
            _Y,
            _run_fully_connected,
            _fully_connected_cases,
        ),
        _entry(
            "batch_matmul",
            (Array("a", ("int8", "uint8")), Array("b", ("int8", "uint8"))),
            (
                _p("a_scale", "floats"),
                _p("a_zero_point", "ints"),
                _p("b_scale", "floats"),
                _p("b_zero_point", "ints"),
                _p("y_scale", "float"),
                _p("y_zero_point", "int"),
                _p("out_dtype", "dtype"),
            ),
            _Y,
            _run_batch_matmul,
            _batch_matmul_cases,
        ),
        _entry(
            "matmul_integer",
            (Array("a", ("int8", "uint8")), Array("b", ("int8", "uint8"))),
            (_p("a_zero_point", "ints"), _p("b_zero_point", "ints")),
            (Array("y", ("int32",)),),
            _run_matmul_integer,
            _matmul_integer_cases,
        ),
        _entry(
            "conv_integer",
            (Array("x", ("int8", "uint8")), Array("w", ("int8", "uint8"))),
            (
                _p("x_zero_point", "int"),
                _p("w_zero_point", "ints"),
                _p("strides", "pair"),
                _p("dilations", "pair"),
                _p("groups", "int"),
                _p("padding", "padding"),
            ),
            (Array("y", ("int32",)),),
            _run_conv_integer,
            _conv_integer_cases,
        ),
        _entry(
            "add",
            (Array("a", CODES), Array("b", CODES)),
            _BINARY_PARAMS,
            _Y,
            _elementwise_runner("add"),
            _elementwise_cases("add"),
        ),
        _entry(
            "mul",
            (Array("a", CODES), Array("b", CODES)),
            _BINARY_PARAMS,
            _Y,
            _elementwise_runner("mul"),
            _elementwise_cases("mul"),
        ),
        _entry(
            "average_pool2d",
            (Array("x", CODES),),
            _UNARY_QP
            + (
                _p("pool_size", "pair"),
                _p("strides", "pair"),
                _p("padding", "padding"),
                _p("count_include_pad", "bool"),
                _p("activation", "activation"),
            ),
            _Y,
            _run_average_pool,
            _average_pool_cases,
        ),
        _entry(
            "global_average_pool",
            (Array("x", CODES),),
            _UNARY_QP,
            _Y,
            _run_global_average_pool,
            _global_average_pool_cases,
        ),
        _entry(
            "max_pool2d",
            (Array("x", CODES),),
            (_p("pool_size", "pair"), _p("strides", "pair"), _p("padding", "padding")),
            _Y,
            _run_max_pool,
            _max_pool_cases,
            profile_free=True,
        ),
        _entry(
            "mean",
            (Array("x", CODES),),
            _UNARY_QP + (_p("axes", "ints"), _p("keepdims", "bool")),
            _Y,
            _run_mean,
            _mean_cases,
        ),
        _entry(
            "concatenation",
            (Array("inputs", CODES, is_list=True),),
            (
                _p("scales", "floats"),
                _p("zero_points", "ints"),
                _p("y_scale", "float"),
                _p("y_zero_point", "int"),
                _p("axis", "int"),
                _p("out_dtype", "dtype"),
            ),
            _Y,
            _run_concatenation,
            _concatenation_cases,
        ),
        _entry(
            "pad",
            (Array("x", CODES),),
            (_p("paddings", "matrix"), _p("zero_point", "int")),
            _Y,
            _run_pad,
            _pad_cases,
            profile_free=True,
        ),
        _entry(
            "clamp_activation",
            (Array("q", CODES),),
            (
                _p("activation", "activation"),
                _p("scale", "float"),
                _p("zero_point", "int"),
                _p("out_dtype", "dtype"),
            ),
            _Y,
            _run_clamp,
            _clamp_cases,
        ),
        _entry(
            "softmax",
            (Array("x", CODES),),
            _UNARY_QP + (_p("beta", "float"),),
            _Y,
            _run_softmax,
            _softmax_cases,
        ),
        _entry(
            "logistic",
            (Array("x", CODES),),
            _UNARY_QP,
            _Y,
            _lut_runner("logistic"),
            _lut_cases("logistic"),
        ),
        _entry(
            "tanh",
            (Array("x", CODES),),
            _UNARY_QP,
            _Y,
            _lut_runner("tanh"),
            _lut_cases("tanh"),
        ),
        _entry(
            "quantize_multiplier",
            (Array("real", ("float64",)),),
            (_p("single_rounding", "bool"),),
            (Array("multiplier", ("int32",)), Array("shift", ("int32",))),
            _run_quantize_multiplier,
            _quantize_multiplier_cases,
            profile_free=True,
        ),
        _entry(
            "saturating_doubling_high_mul",
            (Array("a", ("int32",)), Array("b", ("int32",))),
            (),
            (Array("y", ("int32",)),),
            _run_srdhm,
            _srdhm_cases,
            profile_free=True,
        ),
        _entry(
            "rounding_right_shift",
            (Array("x", ("int32",)), Array("exponent", ("int32",))),
            (),
            (Array("y", ("int32",)),),
            _run_rrs,
            _rrs_cases,
            profile_free=True,
        ),
        _entry(
            "multiply_by_quantized_multiplier",
            (
                Array("x", ("int32",)),
                Array("multiplier", ("int32",)),
                Array("shift", ("int32",)),
            ),
            (_p("rounding", "choice", choices=fixedpoint.MULTIPLY_ROUNDINGS),),
            (Array("y", ("int64",)),),
            _run_mbqm,
            _mbqm_cases,
            profile_free=True,
        ),
        _entry(
            "multiply_by_quantized_multiplier_int64",
            (
                Array("x", ("int64",)),
                Array("multiplier", ("int32",)),
                Array("shift", ("int32",)),
            ),
            (),
            (Array("y", ("int64",)),),
            _run_mbqm64,
            _mbqm64_cases,
            profile_free=True,
        ),
    )
}


# ================================================================ encode / run
def _encode_case(entry: KernelEntry, case: Case) -> tuple[dict, dict]:
    """Case data -> (datasets by name, attributes by name) as stored."""
    arrays, attrs = {}, {}
    for a in entry.arrays:
        value = case.data.get(a.name)
        if value is None:
            if not a.optional:
                raise InvalidArgumentError(f"case {case.name!r} lacks array {a.name!r}")
            continue
        if a.is_list:
            attrs[f"num_{a.name}"] = np.int64(len(value))
            for i, v in enumerate(value):
                arrays[f"{a.name}_{i}"] = np.asarray(v)
        else:
            arrays[a.name] = np.asarray(value)
    for p in entry.params:
        value = case.data.get(p.name)
        if value is None and p.kind != "activation":
            if not p.optional:
                raise InvalidArgumentError(f"case {case.name!r} lacks param {p.name!r}")
            continue
        attrs[p.name] = _encode_param(p, value)
    unknown = (
        set(case.data) - {a.name for a in entry.arrays} - {p.name for p in entry.params}
    )
    if unknown:
        raise InvalidArgumentError(
            f"case {case.name!r} of {entry.name} has undeclared fields "
            f"{sorted(unknown)}"
        )
    return arrays, attrs


def _decode_case(entry: KernelEntry, arrays: dict, attrs: dict, where: str) -> dict:
    """Stored datasets and attributes -> the keyword data a runner takes."""
    data = {}
    for a in entry.arrays:
        if a.is_list:
            n = attrs.get(f"num_{a.name}")
            count = _decode_param(Param(f"num_{a.name}", "int"), n, where)
            if count < 1:
                raise _bad(where, f"attribute 'num_{a.name}' must be >= 1", count)
            data[a.name] = [
                _dataset(arrays, f"{a.name}_{i}", a.dtypes, where) for i in range(count)
            ]
        elif a.name in arrays or not a.optional:
            data[a.name] = _dataset(arrays, a.name, a.dtypes, where)
        else:
            data[a.name] = None
    for p in entry.params:
        if p.name in attrs:
            data[p.name] = _decode_param(p, attrs[p.name], where)
        elif p.optional:
            data[p.name] = None
        else:
            raise CorpusFormatError(f"{where}: missing attribute {p.name!r}")
    return data


def _dataset(arrays, name, dtypes, where):
    if name not in arrays:
        raise CorpusFormatError(f"{where}: missing dataset {name!r}")
    arr = arrays[name]
    if arr.dtype.name not in dtypes:
        raise CorpusFormatError(
            f"{where}: dataset {name!r} must have dtype one of {list(dtypes)}; got "
            f"{arr.dtype.name}"
        )
    return arr


def _execute(entry: KernelEntry, data: dict, profile_name: str):
    """Run one case: ("ok", outputs), ("error", class name) or ("unsupported", msg)."""
    prof = None if entry.profile_free else get_profile(profile_name)
    try:
        outputs = entry.run(data, prof)
    except tuple(EXPECTED_ERRORS.values()) as exc:
        return "error", type(exc).__name__
    except (InvalidArgumentError, InvalidTypeError, NotImplementedError) as exc:
        return "unsupported", f"{type(exc).__name__}: {exc}"
    return "ok", {k: np.asarray(v) for k, v in outputs.items()}


# ===================================================================== export
@dataclass
class ExportSummary:
    """What :func:`export_corpus` wrote."""

    path: str
    seed: int
    profiles: tuple
    kernels: tuple
    n_cases: int
    n_expected_errors: int
    unsupported: list = field(default_factory=list)
    size_bytes: int = 0

    def __str__(self) -> str:
        lines = [
            f"wrote {self.n_cases} cases ({self.n_expected_errors} expecting an "
            f"error) of {len(self.kernels)} kernels under {len(self.profiles)} "
            f"profiles to {self.path} ({self.size_bytes} bytes, seed {self.seed})"
        ]
        if self.unsupported:
            lines.append(f"{len(self.unsupported)} case/profile pairs not supported:")
            lines += [f"  {u}" for u in self.unsupported]
        return "\n".join(lines)


def _names(name, value, allowed) -> tuple:
    shown = ", ".join(repr(a) for a in allowed)
    if value is None:
        return tuple(allowed)
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise InvalidTypeError(
            f"{name} must be a list of names from {shown}; got {name}={value!r}"
        )
    value = list(value)
    bad = [v for v in value if not isinstance(v, str) or v not in allowed]
    if not value or bad:
        raise InvalidArgumentError(
            f"{name} must be a non-empty list of names from {shown}; got "
            f"{name}={value!r}"
        )
    return tuple(dict.fromkeys(value))


def _path(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(
            f"path must be a str or os.PathLike; got path={path!r} of type "
            f"{type(path).__name__}"
        )
    return os.fspath(path)


def _kernel_rng(seed: int, name: str) -> np.random.Generator:
    """One stream per kernel, so selecting kernels does not change their data."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _collect(kernels, profiles, seed):
    """(kernel, profile, case, arrays, attrs, outcome) rows and unsupported list."""
    rows, unsupported = [], []
    for kname in kernels:
        entry = KERNELS[kname]
        cases = entry.cases(_kernel_rng(seed, kname))
        names = [c.name for c in cases]
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"{kname} has duplicate case names {names}")
        encoded = [(c, *_encode_case(entry, c)) for c in cases]
        for pname in (ANY_PROFILE,) if entry.profile_free else profiles:
            for case, arrays, attrs in encoded:
                if case.profiles is not None and pname not in case.profiles:
                    continue
                where = f"/{kname}/{pname}/{case.name}"
                data = _decode_case(entry, arrays, attrs, where)
                status, out = _execute(entry, data, pname)
                if status == "unsupported":
                    unsupported.append(f"{where[1:]}: {out}")
                    continue
                rows.append((kname, pname, case, arrays, attrs, status, out))
    return rows, unsupported


def _write_dataset(group, name, arr):
    kwargs = {"track_times": False}
    if arr.nbytes > _GZIP_ABOVE:
        kwargs.update(compression="gzip", compression_opts=4)
    group.create_dataset(name, data=arr, **kwargs)


def _write(path, rows, unsupported, meta):
    import h5py

    from refquant import __version__

    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["layout_version"] = np.int64(LAYOUT_VERSION)
        f.attrs["refquant_version"] = __version__
        f.attrs["seed"] = np.int64(meta["seed"])
        f.attrs["profiles"] = ",".join(meta["profiles"])
        f.attrs["kernels"] = ",".join(meta["kernels"])
        for kname, pname, case, arrays, attrs, status, out in rows:
            g = f.require_group(kname).require_group(pname).create_group(case.name)
            g.attrs["kind"] = case.kind
            g.attrs["note"] = case.note
            for k, v in attrs.items():
                g.attrs[k] = v
            for k, v in arrays.items():
                _write_dataset(g, k, v)
            if status == "error":
                g.attrs["expected_error"] = out
            else:
                for k, v in out.items():
                    _write_dataset(g, k, v)
        for line in unsupported:
            where, _, reason = line.partition(": ")
            kname, pname, cname = where.split("/")
            g = f.require_group(kname).require_group(pname)
            g.attrs["unsupported_cases"] = "\n".join(
                filter(
                    None, [g.attrs.get("unsupported_cases", ""), f"{cname}: {reason}"]
                )
            )


def export_corpus(path, *, profiles=None, kernels=None, seed=0) -> ExportSummary:
    """Write the conformance corpus to an HDF5 file (layout version 1).

    For every kernel of :data:`KERNELS` (or ``kernels``) and every profile (or
    ``profiles``) the kernel supports, the edge table and the seeded random
    cases are run and their integer inputs, qparams, options and outputs
    written as ``/<kernel>/<profile>/<case>`` (``specs/conformance_corpus.md``).
    Profile-independent kernels (fixed-point primitives, max pool, pad) are
    written once under the profile group ``"any"``.  The file is written to a
    temporary name beside ``path`` and renamed; the same seed gives the same
    bytes.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.h5`` file (replaced if it exists).
    profiles : list of str, optional
        Profile names from :data:`refquant.profiles.PROFILES`; default all.
    kernels : list of str, optional
        Kernel names from :data:`KERNELS`; default all.
    seed : int
        Seed of the random cases, >= 0.

    Returns
    -------
    ExportSummary
    """
    path = _path(path)
    profiles = _names("profiles", profiles, tuple(PROFILES))
    kernels = _names("kernels", kernels, tuple(KERNELS))
    check("seed", seed, IntRange(0, 2**63 - 1))
    rows, unsupported = _collect(kernels, profiles, seed)
    meta = {"seed": seed, "profiles": profiles, "kernels": kernels}
    with atomic_path(path, suffix=".h5.tmp") as tmp:
        _write(str(tmp), rows, unsupported, meta)
    return ExportSummary(
        path=path,
        seed=seed,
        profiles=profiles,
        kernels=kernels,
        n_cases=len(rows),
        n_expected_errors=sum(r[5] == "error" for r in rows),
        unsupported=unsupported,
        size_bytes=os.path.getsize(path),
    )


# ===================================================================== verify
@dataclass(frozen=True)
class Mismatch:
    """One case whose re-run differs from the file: ``case`` is its HDF5 path."""

    case: str
    output: str
    detail: str

    def __str__(self) -> str:
        return f"{self.case} [{self.output}]: {self.detail}"


@dataclass
class VerifyReport:
    """Result of :func:`verify_corpus`: cases checked and the mismatches."""

    path: str
    layout_version: int
    n_cases: int
    mismatches: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def __str__(self) -> str:
        head = (
            f"{self.path}: {self.n_cases} cases checked, "
            f"{len(self.mismatches)} mismatches"
        )
        return "\n".join([head] + [f"  {m}" for m in self.mismatches])


def _members(group, where):
    """Children of a group, refusing soft and external links."""
    import h5py

    out = {}
    for name in group:
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise CorpusFormatError(
                f"{where}/{name}: must be a hard link inside the file; got "
                f"{type(link).__name__}"
            )
        out[name] = group[name]
    return out


def _read_dataset(ds, where):
    """A dataset's values after checking its storage and dtype."""
    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if any(f not in _ALLOWED_FILTERS for f in filters):
        raise CorpusFormatError(
            f"{where}: filters {filters} are not allowed (gzip, shuffle and "
            "fletcher32 only)"
        )
    if ds.is_virtual or plist.get_external_count():
        raise CorpusFormatError(f"{where}: external or virtual storage is not allowed")
    if ds.dtype.kind not in "iuf" or ds.dtype.byteorder == ">":
        raise CorpusFormatError(
            f"{where}: dtype must be a little-endian integer or float; got {ds.dtype}"
        )
    if ds.size > _MAX_ELEMENTS:
        raise CorpusFormatError(
            f"{where}: {ds.size} elements exceed the limit of {_MAX_ELEMENTS}"
        )
    return np.asarray(ds[()])


def _check_root(f, path):
    fmt = f.attrs.get("format")
    if fmt != FORMAT_NAME:
        raise CorpusFormatError(
            f"{path}: root attribute 'format' must be {FORMAT_NAME!r}; got {fmt!r}"
        )
    version = f.attrs.get("layout_version")
    if (
        version is None
        or np.asarray(version).dtype != np.int64
        or np.ndim(version)
        or int(version) != LAYOUT_VERSION
    ):
        raise CorpusFormatError(
            f"{path}: root attribute 'layout_version' must be the int64 "
            f"{LAYOUT_VERSION} this refquant reads; got layout_version={version!r}"
        )
    return int(version)


def _case_header(attrs, where):
    """Pop and check ``kind``, ``note`` and ``expected_error``; return the error."""
    kind, note = attrs.pop("kind", None), attrs.pop("note", None)
    if kind not in CASE_KINDS:
        raise _bad(where, f"attribute 'kind' must be one of {list(CASE_KINDS)}", kind)
    if not isinstance(note, str):
        raise _bad(where, "attribute 'note' must be a str", note)
    error = attrs.pop("expected_error", None)
    if error is not None and error not in EXPECTED_ERRORS:
        allowed = list(EXPECTED_ERRORS)
        raise _bad(where, f"attribute 'expected_error' must be one of {allowed}", error)
    return error


def _read_case(group, entry, where):
    """(data, expected outputs, expected error or None) of one case."""
    attrs = dict(group.attrs)
    error = _case_header(attrs, where)
    arrays = {}
    for name, obj in _members(group, where).items():
        if not hasattr(obj, "dtype"):
            raise CorpusFormatError(f"{where}/{name}: must be a dataset")
        arrays[name] = _read_dataset(obj, f"{where}/{name}")
    outputs = {}
    for o in entry.outputs:
        if error is None:
            outputs[o.name] = _dataset(arrays, o.name, o.dtypes, where)
        elif o.name in arrays:
            raise CorpusFormatError(
                f"{where}: a case with expected_error must not hold output {o.name!r}"
            )
        arrays.pop(o.name, None)
    data = _decode_case(entry, arrays, attrs, where)
    _check_known(entry, arrays, attrs, where)
    return data, outputs, error


def _check_known(entry, arrays, attrs, where):
    array_names = set()
    for a in entry.arrays:
        if a.is_list:
            n = attrs.get(f"num_{a.name}")
            count = int(n) if isinstance(n, np.integer) else 0
            array_names |= {f"{a.name}_{i}" for i in range(count)}
        else:
            array_names.add(a.name)
    attr_names = {p.name for p in entry.params} | {
        f"num_{a.name}" for a in entry.arrays if a.is_list
    }
    extra = sorted(set(arrays) - array_names) + sorted(set(attrs) - attr_names)
    if extra:
        raise CorpusFormatError(f"{where}: unknown fields {extra} for {entry.name}")


def _compare(where, expected, got, mismatches):
    for name, want in expected.items():
        have = got.get(name)
        if have is None:
            mismatches.append(Mismatch(where, name, "output missing from the re-run"))
        elif have.dtype != want.dtype or have.shape != want.shape:
            mismatches.append(
                Mismatch(
                    where,
                    name,
                    f"dtype/shape {have.dtype}{have.shape} != file "
                    f"{want.dtype}{want.shape}",
                )
            )
        elif not np.array_equal(have, want, equal_nan=have.dtype.kind == "f"):
            differ = ~(
                (have == want) | (np.isnan(have) & np.isnan(want))
                if have.dtype.kind == "f"
                else (have == want)
            )
            i = tuple(int(v) for v in np.argwhere(differ)[0])
            mismatches.append(
                Mismatch(
                    where,
                    name,
                    f"{int(differ.sum())} of {want.size} values differ; first at "
                    f"{i}: refquant {have[i]!r}, file {want[i]!r}",
                )
            )


def _verify_case(group, entry, pname, where, mismatches):
    data, expected, error = _read_case(group, entry, where)
    status, out = _execute(entry, data, pname)
    if status == "unsupported":
        raise CorpusFormatError(f"{where}: the case's inputs are rejected: {out}")
    if error is not None:
        if status != "error" or out != error:
            got = out if status == "error" else "outputs"
            mismatches.append(Mismatch(where, "expected_error", f"{error} != {got}"))
        return
    if status == "error":
        mismatches.append(Mismatch(where, "outputs", f"refquant raised {out}"))
        return
    _compare(where, expected, out, mismatches)


def verify_corpus(path) -> VerifyReport:
    """Re-run every case of a conformance file and report the mismatches.

    The file is validated as it is read (format name, layout version, kernel
    and profile names, dataset dtypes and storage, attribute kinds and shapes)
    and nothing in it is executed.  Integer outputs compare exactly; float
    outputs (dequantize) compare bit for bit.

    Raises
    ------
    CorpusFormatError
        The file is not a corpus of layout version 1 or a field is invalid.

    Returns
    -------
    VerifyReport
        ``report.ok`` is True when every case matches.
    """
    import h5py

    path = _path(path)
    if not os.path.isfile(path):
        raise CorpusNotFoundError(
            f"path must name an existing conformance file; got path={path!r} "
            + ("(a folder)" if os.path.isdir(path) else "(no such file)")
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CorpusFormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        version = _check_root(f, path)
        report = VerifyReport(path, version, 0)
        for kname, kgroup in _members(f, "").items():
            entry = KERNELS.get(kname)
            if entry is None:
                raise _bad(
                    f"/{kname}", f"unknown kernel, not one of {list(KERNELS)}", kname
                )
            allowed = (ANY_PROFILE,) if entry.profile_free else tuple(PROFILES)
            for pname, pgroup in _members(kgroup, f"/{kname}").items():
                if pname not in allowed:
                    raise _bad(
                        f"/{kname}/{pname}",
                        f"profile must be one of {list(allowed)}",
                        pname,
                    )
                for cname, cgroup in _members(pgroup, f"/{kname}/{pname}").items():
                    where = f"/{kname}/{pname}/{cname}"
                    _verify_case(cgroup, entry, pname, where, report.mismatches)
                    report.n_cases += 1
        _check_complete(f, path, report.n_cases)
    return report


def _listed(f, key: str, path: str) -> list[str] | None:
    """The comma-separated names of root attribute ``key`` (None when absent)."""
    value = f.attrs.get(key)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise CorpusFormatError(
            f"{path}: root attribute {key!r} must be a comma-separated str; "
            f"got {key}={value!r}"
        )
    return [v for v in value.split(",") if v]


def _check_complete(f, path: str, n_cases: int) -> None:
    """Every kernel and profile the root attributes list must hold >= 1 case.

    A corpus stripped of its cases (or of some kernels) would otherwise verify
    with nothing compared.
    """
    kernels, profiles = _listed(f, "kernels", path), _listed(f, "profiles", path)
    empty = []
    for kname in kernels if kernels is not None else list(f):
        entry = KERNELS.get(kname)
        if entry is None:
            raise CorpusFormatError(
                f"{path}: root attribute 'kernels' names {kname!r}, not one of "
                f"{list(KERNELS)}"
            )
        wanted = (ANY_PROFILE,) if entry.profile_free else (profiles or [])
        for pname in wanted:
            group = f.get(f"{kname}/{pname}")
            if group is None or not len(group):
                empty.append(f"/{kname}/{pname}")
    if n_cases == 0:
        raise CorpusFormatError(
            f"{path}: the corpus holds no cases, so there is nothing to verify"
        )
    if empty:
        raise CorpusFormatError(
            f"{path}: {len(empty)} kernel/profile pair(s) that the root attributes "
            f"list hold no cases: {', '.join(empty[:5])}"
            + (" ..." if len(empty) > 5 else "")
        )
