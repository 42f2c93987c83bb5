"""Argument checks and broadcasting shared by the pointwise integer kernels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refquant.errors import InvalidArgumentError, InvalidTypeError

OUT_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32)
_DTYPE_NAMES = "np.int8, np.uint8, np.int16, np.uint16, np.int32"


def out_dtype_of(out_dtype, name="out_dtype") -> np.dtype:
    """Validate an integer output dtype and return it as ``np.dtype``."""
    try:
        dt = np.dtype(out_dtype)
    except TypeError as exc:
        raise InvalidTypeError(
            f"{name} must be one of {_DTYPE_NAMES}; got {name}={out_dtype!r}"
        ) from exc
    if dt not in [np.dtype(d) for d in OUT_DTYPES]:
        raise InvalidArgumentError(
            f"{name} must be one of {_DTYPE_NAMES}; got {name}={out_dtype!r}"
        )
    return dt


def qrange(dtype) -> tuple[int, int]:
    """Closed integer range ``(qmin, qmax)`` of an integer dtype."""
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def int_codes(name, q) -> np.ndarray:
    """Integer codes as int64 (rejects float, bool and object arrays).

    An int64 array is returned as is (no copy): callers must not write to it.
    """
    arr = np.asarray(q)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidTypeError(
            f"{name} must be an integer array (quantized codes); got {name} of "
            f"dtype {arr.dtype}"
        )
    return arr.astype(np.int64, copy=False)


FLOAT_ACCUMULATOR_DTYPES = (np.float32, np.float64)
_BLOCK = 1 << 15


def _has_fraction(arr) -> bool:
    """True if any value is not a finite integer (``x - trunc(x) != 0``)."""
    flat = arr.reshape(-1)
    tmp = np.empty(min(flat.size, _BLOCK), dtype=arr.dtype)
    with np.errstate(invalid="ignore"):  # inf - inf is NaN: nonzero, rejected
        for start in range(0, flat.size, _BLOCK):  # blocks of 32768 values
            block = flat[start : start + _BLOCK]
            t = tmp[: block.size]
            np.trunc(block, out=t)
            np.subtract(block, t, out=t)
            if t.any():
                return True
    return False


def integer_values(name, acc) -> np.ndarray:
    """Exact integer accumulators: int64, or float32 / float64 holding integers.

    Integer arrays become int64 (no copy when already int64).  float32 and
    float64 arrays (the ``result="float"`` form of
    :func:`refquant.kernels.gemm.exact_affine_gemm`) are returned unchanged
    after one cheap check that every value is a finite integer (``x -
    trunc(x) == 0``; NaN and inf fail it), made in cache-sized blocks.  That
    the integers are the *exact* accumulators is the caller's contract: the
    GEMM guarantees it (float32 within 2**24, float64 within 2**53).
    """
    arr = np.asarray(acc)
    if arr.dtype in FLOAT_ACCUMULATOR_DTYPES:
        if _has_fraction(arr):
            raise InvalidTypeError(
                f"{name} must be an integer array (or a float32 / float64 array "
                f"holding exact integers); got {name} of dtype {arr.dtype} with a "
                "non-integer or non-finite value"
            )
        return arr
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidTypeError(
            f"{name} must be an integer array or a float32 / float64 array of "
            f"exact integers; got {name} of dtype {arr.dtype}"
        )
    return arr.astype(np.int64, copy=False)


def _real_array(name, value, what) -> np.ndarray:
    """``value`` as an array of real numbers (int or float, never bool or str)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidTypeError(f"{name} must be {what}; got {name}={value!r}") from exc
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise InvalidTypeError(
            f"{name} must be {what}; got {name}={value!r} of type "
            f"{type(value).__name__}"
        )
    return arr


def scales(name, value) -> np.ndarray:
    """Positive, finite scale(s) inside the normal float32 range, as float64."""
    what = "a positive real number (or an array of them)"
    arr = _real_array(name, value, what).astype(np.float64)
    tiny, big = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
    bad = ~np.isfinite(arr) | (arr < tiny) | (arr > big)
    if arr.size == 0 or bad.any():
        shown = float(arr[bad].flat[0]) if arr.size else value
        raise InvalidArgumentError(
            f"{name} must be a positive, finite, normal float in [{tiny!r}, "
            f"{big!r}] (the normal float32 range every backend stores); got "
            f"{name}={shown!r}"
        )
    return arr


def zero_points(name, value, dtype=None) -> np.ndarray:
    """Integer zero point(s) as int64, inside ``dtype``'s range when given."""
    arr = _real_array(name, value, "an integer (or an integer array)")
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(arr) & (arr == np.rint(arr))
        if not integral.all() or (arr.size and np.abs(arr).max() >= 2.0**63):
            raise InvalidArgumentError(
                f"{name} must be an integer or integer array; got {name}={value!r}"
            )
    if arr.dtype == np.uint64 and arr.size and arr.max() > 2**63 - 1:
        raise InvalidArgumentError(f"{name} must fit int64; got {name}={value!r}")
    arr = arr.astype(np.int64)
    if dtype is not None:
        lo, hi = qrange(dtype)
        bad = (arr < lo) | (arr > hi)
        if bad.any():
            shown = int(arr[bad].flat[0])
            raise InvalidArgumentError(
                f"{name} must be an integer in [{lo}, {hi}] (the "
                f"{np.dtype(dtype).name} range of its codes); got {name}={shown}"
            )
    return arr


# ------------------------------------------------ quantization parameter table
PER_TENSOR, PER_CHANNEL, PER_AXIS = "per-tensor", "per-channel", "per-axis"


@dataclass(frozen=True)
class QParam:
    """Contract of one scale or zero-point argument.

    ``kind`` is ``"scale"`` (a positive real in the normal float32 range) or
    ``"zero_point"`` (an integer within the range of the codes named by
    ``codes``: an argument name, or ``"out"`` for ``out_dtype``).  ``shape``
    is :data:`PER_TENSOR` (one value), :data:`PER_CHANNEL` (scalar or one value
    per output channel) or :data:`PER_AXIS` (scalar or one value along
    ``axis``); the kernels check the lengths of the vector forms.
    """

    kind: str
    shape: str = PER_TENSOR
    codes: str | None = None


def _tensor(prefix, codes, shape=PER_TENSOR):
    return {
        f"{prefix}_scale": QParam("scale", shape),
        f"{prefix}_zero_point": QParam("zero_point", shape, codes),
    }


_BINARY = {**_tensor("a", "a"), **_tensor("b", "b"), **_tensor("y", "out")}
_WEIGHTED = {
    **_tensor("x", "x"),
    **_tensor("w", "w", PER_CHANNEL),
    **_tensor("y", "out"),
}
_UNARY = {**_tensor("x", "x"), **_tensor("y", "out")}

#: Every kernel's scale and zero-point arguments, as data (one checker reads it;
#: ``tests/test_kernel_validation.py`` feeds each one invalid values).
KERNEL_QPARAMS = {
    "add": _BINARY,
    "mul": _BINARY,
    "conv2d": _WEIGHTED,
    "depthwise_conv2d": _WEIGHTED,
    "fully_connected": _WEIGHTED,
    "batch_matmul": {
        **_tensor("a", "a", PER_CHANNEL),
        **_tensor("b", "b", PER_CHANNEL),
        **_tensor("y", "out"),
    },
    "quantize_linear": {
        "y_scale": QParam("scale", PER_AXIS),
        "y_zero_point": QParam("zero_point", PER_AXIS, "out"),
    },
    "dequantize_linear": {
        "scale": QParam("scale", PER_AXIS),
        "zero_point": QParam("zero_point", PER_AXIS, "q"),
    },
    "requantize": {**_tensor("in", "q"), **_tensor("out", "out")},
    "logistic": _UNARY,
    "tanh": _UNARY,
    "softmax": _UNARY,
}

#: Codes wider than 32 bits (int64 arrays, Python lists) bound zero points by
#: the widest code type the kernels produce.
_WIDEST_CODES = np.dtype(np.int32)


def codes_dtype(codes) -> np.dtype:
    """The dtype whose range bounds the zero point of integer ``codes``."""
    dt = np.asarray(codes).dtype
    if dt.kind not in "iu" or dt.itemsize > 4:
        return _WIDEST_CODES
    return dt


def check_qparams(kernel: str, code_dtypes: dict, **values) -> dict:
    """Check scale / zero-point arguments against :data:`KERNEL_QPARAMS`.

    ``code_dtypes`` maps the ``codes`` names of the table (``"x"``, ``"out"``,
    ...) to dtypes.  Returns float64 / int64 arrays by argument name; per-tensor
    arguments come back 0-d.  Raises :class:`InvalidTypeError` for non-real
    values and :class:`InvalidArgumentError` naming the argument, the value
    and what is allowed.
    """
    rules = KERNEL_QPARAMS[kernel]
    out = {}
    for name, value in values.items():
        rule = rules[name]
        if rule.kind == "scale":
            arr = scales(name, value)
        else:
            arr = zero_points(name, value, code_dtypes[rule.codes])
        if rule.shape == PER_TENSOR:
            arr = _per_tensor(kernel, name, arr)
        out[name] = arr
    return out


def _per_tensor(kernel, name, arr) -> np.ndarray:
    if arr.size == 1:
        return arr.reshape(())
    vectors = [n for n, r in KERNEL_QPARAMS[kernel].items() if r.shape != PER_TENSOR]
    allowed = (
        f"only {', '.join(vectors)} may hold one value per channel"
        if vectors
        else f"{kernel} takes no per-channel values"
    )
    shown = arr.reshape(-1)[:4].tolist()
    raise InvalidArgumentError(
        f"{name} must be a single value (per-tensor) for {kernel}; got {name} of "
        f"shape {arr.shape}: {shown}{'...' if arr.size > 4 else ''} ({allowed})"
    )


def along_axis(name, param, ndim, shape, axis) -> np.ndarray:
    """Broadcast a scalar, a 1-D per-channel vector or a full-rank array.

    A 1-D array of length ``shape[axis]`` is laid along ``axis``; a scalar
    stays 0-d; an array with ``ndim`` dimensions must broadcast to ``shape``.
    """
    param = np.asarray(param)
    if param.ndim == 0:
        return param
    if param.ndim == 1 and ndim >= 1:
        axis = axis % ndim
        if param.shape[0] not in (1, shape[axis]):
            raise InvalidArgumentError(
                f"{name} must have length {shape[axis]} (axis {axis}) or be a "
                f"scalar; got {name} of shape {param.shape}"
            )
        new_shape = [1] * ndim
        new_shape[axis] = param.shape[0]
        return param.reshape(new_shape)
    try:
        np.broadcast_shapes(param.shape, tuple(shape))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"{name} of shape {param.shape} does not broadcast to {tuple(shape)}"
        ) from exc
    return param


def clip_to(values, dtype) -> np.ndarray:
    """Clamp float or int values to ``dtype``'s range and cast."""
    lo, hi = qrange(dtype)
    return np.clip(values, lo, hi).astype(dtype)
