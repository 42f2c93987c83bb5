"""Float32 forward kernels of the graph ops (NHWC), one function per op.

Every kernel has the signature ``forward(inputs, params, attrs) -> ndarray``:
``inputs`` is the tuple of input arrays in the node's order, ``params`` and
``attrs`` are the node's.  Kernels are pure: no state, no caching.  The
registry :data:`FLOAT_KERNELS` maps an op name to a :class:`FloatKernel`, whose
``backward`` slot is reserved for gradients (quantization-aware training,
AdaRound, GPTQ): a backward kernel will take ``(grad_output, inputs, output,
params, attrs)`` and return ``(grad_inputs, grad_params)``, so adding one needs
no change to the forward kernels or to the executor's scheduling.

Arithmetic is float32 throughout (accumulation order is BLAS's for matmuls and
tap order for depthwise and pooling); nothing is rounded to integers here.
See specs/graph.md section 3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from refquant.errors import InvalidArgumentError

F32 = np.float32


# ---------------------------------------------------------------- geometry
def resolve_padding(
    in_hw: tuple[int, int],
    kernel_hw: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    padding,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ``((top, bottom), (left, right))`` for a padding attr.

    ``"same"`` follows TensorFlow: ``out = ceil(in / stride)``,
    ``total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)``,
    ``top = total // 2`` (floor), ``bottom = total - top``.

    >>> resolve_padding((5, 5), (3, 3), (2, 2), (1, 1), "same")
    ((1, 1), (1, 1))
    >>> resolve_padding((4, 4), (3, 3), (2, 2), (1, 1), "same")
    ((0, 1), (0, 1))
    """
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding != "same":
        return tuple(tuple(p) for p in padding)
    pads = []
    for size, k, s, d in zip(in_hw, kernel_hw, strides, dilations):
        out = -(-size // s)  # ceil
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def output_size(size: int, k: int, s: int, d: int, before: int, after: int) -> int:
    """``floor((size + before + after - (k - 1) * d - 1) / s) + 1``."""
    return (size + before + after - (k - 1) * d - 1) // s + 1


def _pad_spatial(x, pads, value=0.0):
    if pads == ((0, 0), (0, 0)):
        return x
    (t, b), (left, r) = pads
    n, h, w, c = x.shape
    xp = np.full((n, h + t + b, w + left + r, c), value, dtype=x.dtype)
    xp[:, t : t + h, left : left + w] = x
    return xp


def _check_rank(x, rank, what):
    if x.ndim != rank:
        raise InvalidArgumentError(
            f"{what} input must have rank {rank} (NHWC); got shape {x.shape}"
        )


def _geometry(x, kernel_hw, strides, dilations, padding, what):
    """Padding and output size; error when the window exceeds the input."""
    _check_rank(x, 4, what)
    pads = resolve_padding(x.shape[1:3], kernel_hw, strides, dilations, padding)
    out_hw = tuple(
        output_size(n, k, s, d, *p)
        for n, k, s, d, p in zip(x.shape[1:3], kernel_hw, strides, dilations, pads)
    )
    if min(out_hw) < 1:
        raise InvalidArgumentError(
            f"{what}: kernel {kernel_hw} with dilations {dilations} does not fit "
            f"input HxW {x.shape[1:3]} with padding {pads}"
        )
    return pads, out_hw


def _tap_slices(i, j, out_hw, strides, dilations):
    """Slices of the padded input seen by kernel tap (i, j) at every output."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, strides, dilations
    return (
        slice(None),
        slice(i * dh, i * dh + (oh - 1) * sh + 1, sh),
        slice(j * dw, j * dw + (ow - 1) * sw + 1, sw),
    )


def _apply_activation(y, activation):
    if activation == "relu":
        return np.maximum(y, F32(0), out=y)
    if activation == "relu6":
        return np.clip(y, F32(0), F32(6), out=y)
    return y


# ---------------------------------------------------------------- conv family
def im2col(x, kernel_hw, strides, dilations, out_hw):
    """Patches ``(N, H_out, W_out, kh, kw, C)`` of a padded NHWC input.

    A strided view of ``x`` (sliding_window_view); no copy is made here.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel_hw, strides, dilations
    (oh, ow) = out_hw
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    win = sliding_window_view(x, span, axis=(1, 2))  # (N, H', W', C, sh_, sw_)
    win = win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, :, ::dh, ::dw]
    return win.transpose(0, 1, 2, 4, 5, 3)


def conv2d(inputs, params, attrs):
    """``y[n,p,q,o] = b[o] + sum_{i,j,c} xpad[n, p*sh + i*dh, q*sw + j*dw, g*Cg + c]
    * w[o, i, j, c]`` with ``g = o // (C_out / groups)``; float32 im2col + matmul.
    """
    (x,) = inputs
    w = params["weight"]  # (C_out, kh, kw, Cg)
    c_out, kh, kw, cg = w.shape
    groups = attrs["groups"]
    strides, dilations = attrs["strides"], attrs["dilations"]
    pads, (oh, ow) = _geometry(
        x, (kh, kw), strides, dilations, attrs["padding"], "Conv2D"
    )
    if x.shape[3] != cg * groups:
        raise InvalidArgumentError(
            f"Conv2D input has {x.shape[3]} channels; weight expects "
            f"C_in/groups * groups = {cg} * {groups}"
        )
    n = x.shape[0]
    xp = _pad_spatial(x, pads)
    if (kh, kw) == (1, 1) and strides == (1, 1):
        cols = xp.reshape(n * oh * ow, 1, groups, cg)
    else:
        cols = im2col(xp, (kh, kw), strides, dilations, (oh, ow))
        cols = cols.reshape(n * oh * ow, kh * kw, groups, cg)  # copies (im2col)
    cols = cols.transpose(2, 0, 1, 3).reshape(groups, n * oh * ow, kh * kw * cg)
    wg = w.reshape(groups, c_out // groups, kh * kw * cg)
    y = np.matmul(cols, wg.transpose(0, 2, 1))  # (groups, N*Ho*Wo, C_out/groups)
    y = y.transpose(1, 0, 2).reshape(n, oh, ow, c_out)
    if "bias" in params:
        y = y + params["bias"]
    return _apply_activation(np.ascontiguousarray(y, dtype=F32), attrs["activation"])


_CACHE_FLOATS = 1 << 18  # 1 MiB of float32 per output chunk


def _depthwise_taps(xp, w, strides, dilations, out):
    """``out = sum over taps (i, j) of xp[tap slice] * w[0, i, j]``, in place."""
    _, kh, kw, _ = w.shape
    out_hw = out.shape[1:3]
    tap = np.empty_like(out)
    out.fill(0)
    for i in range(kh):
        for j in range(kw):
            np.multiply(
                xp[_tap_slices(i, j, out_hw, strides, dilations)], w[0, i, j], out=tap
            )
            out += tap


def depthwise_conv2d(inputs, params, attrs):
    """``y[n,p,q,o] = b[o] + sum_{i,j} xpad[n, p*sh + i*dh, q*sw + j*dw, o // M]
    * w[0, i, j, o]`` with ``M = depth_multiplier``; loops over the kh*kw taps.
    """
    (x,) = inputs
    w = params["weight"]  # (1, kh, kw, C*M)
    _, kh, kw, cm = w.shape
    m = attrs["depth_multiplier"]
    strides, dilations = attrs["strides"], attrs["dilations"]
    pads, out_hw = _geometry(
        x, (kh, kw), strides, dilations, attrs["padding"], "DepthwiseConv2D"
    )
    if x.shape[3] * m != cm:
        raise InvalidArgumentError(
            f"DepthwiseConv2D input has {x.shape[3]} channels; weight expects "
            f"C_in*depth_multiplier = {cm} with depth_multiplier={m}"
        )
    xp = _pad_spatial(x, pads)
    if m > 1:
        xp = np.repeat(xp, m, axis=3)  # channel o reads input channel o // M
    y = np.empty((x.shape[0], *out_hw, cm), dtype=F32)
    step = max(1, _CACHE_FLOATS // (out_hw[0] * out_hw[1] * cm))
    for n0 in range(0, x.shape[0], step):  # batch chunks that stay in cache
        _depthwise_taps(xp[n0 : n0 + step], w, strides, dilations, y[n0 : n0 + step])
    if "bias" in params:
        y += params["bias"]
    return _apply_activation(y, attrs["activation"])


def dense(inputs, params, attrs):
    """``y[..., o] = b[o] + sum_k x[..., k] * w[o, k]`` (float32 matmul)."""
    (x,) = inputs
    w = params["weight"]
    if x.shape[-1] != w.shape[1]:
        raise InvalidArgumentError(
            f"Dense input has {x.shape[-1]} features on its last axis; weight "
            f"(C_out, K) expects K={w.shape[1]}"
        )
    y = x @ w.T
    if "bias" in params:
        y = y + params["bias"]
    return _apply_activation(np.asarray(y, dtype=F32), attrs["activation"])


def batch_norm_scale_shift(params, epsilon):
    """``scale = gamma / sqrt(var + epsilon)``, ``shift = beta - mean * scale``.

    Computed in float64, returned as float32 ``(C,)`` arrays.
    """
    g, b, m, v = (
        params[k].astype(np.float64) for k in ("gamma", "beta", "mean", "var")
    )
    scale = g / np.sqrt(v + epsilon)
    return scale.astype(F32), (b - m * scale).astype(F32)


def batch_norm(inputs, params, attrs):
    """``y = x * scale + shift`` on the last axis (see batch_norm_scale_shift)."""
    (x,) = inputs
    scale, shift = batch_norm_scale_shift(params, attrs["epsilon"])
    if x.shape[-1] != scale.shape[0]:
        raise InvalidArgumentError(
            f"BatchNorm input has {x.shape[-1]} channels on its last axis; params "
            f"have {scale.shape[0]}"
        )
    y = np.multiply(x, scale, dtype=F32)
    y += shift
    return y


# ---------------------------------------------------------------- pooling
def _pool_taps(x, attrs, what, fill):
    kh, kw = attrs["pool_size"]
    strides = attrs["strides"]
    pads, out_hw = _geometry(x, (kh, kw), strides, (1, 1), attrs["padding"], what)
    xp = _pad_spatial(x, pads, fill)
    taps = (
        xp[_tap_slices(i, j, out_hw, strides, (1, 1))]
        for i in range(kh)
        for j in range(kw)
    )
    return taps, pads, out_hw


def max_pool(inputs, params, attrs):
    """``y = max over the window``; padded cells hold -inf (never chosen)."""
    taps, _, _ = _pool_taps(inputs[0], attrs, "MaxPool", -np.inf)
    y = next(taps).copy()
    for t in taps:
        np.maximum(y, t, out=y)
    return y


def avg_pool(inputs, params, attrs):
    """``y = sum over the window / count``; count is kh*kw when
    count_include_pad, else the number of real (unpadded) cells.
    """
    x = inputs[0]
    taps, pads, out_hw = _pool_taps(x, attrs, "AvgPool", 0.0)
    y = next(taps).copy()
    for t in taps:
        y += t
    kh, kw = attrs["pool_size"]
    if attrs["count_include_pad"] or pads == ((0, 0), (0, 0)):
        return (y / F32(kh * kw)).astype(F32, copy=False)
    ones = np.ones((1, *x.shape[1:3], 1), dtype=F32)
    count_attrs = {**attrs, "count_include_pad": True}
    count = avg_pool((ones,), params, count_attrs) * F32(kh * kw)
    return (y / count).astype(F32, copy=False)


def global_avg_pool(inputs, params, attrs):
    """``y[n, c] = mean_{h,w} x[n, h, w, c]`` (keepdims keeps (N, 1, 1, C))."""
    (x,) = inputs
    _check_rank(x, 4, "GlobalAvgPool")
    return x.mean(axis=(1, 2), keepdims=attrs["keepdims"], dtype=F32)


# ---------------------------------------------------------------- elementwise
def add(inputs, params, attrs):
    """``y = sum_i inputs[i]`` (same shapes), then the activation."""
    shapes = {t.shape for t in inputs}
    if len(shapes) != 1:
        raise InvalidArgumentError(
            f"Add inputs must share one shape; got {[t.shape for t in inputs]}"
        )
    y = inputs[0].astype(F32, copy=True)
    for t in inputs[1:]:
        y += t
    return _apply_activation(y, attrs["activation"])


def relu(inputs, params, attrs):
    """``y = max(x, 0)``."""
    return np.maximum(inputs[0], F32(0))


def relu6(inputs, params, attrs):
    """``y = min(max(x, 0), 6)``."""
    return np.clip(inputs[0], F32(0), F32(6))


def softmax(inputs, params, attrs):
    """``y = exp(x - max) / sum exp(x - max)`` along ``axis``."""
    x = inputs[0]
    e = np.exp(x - x.max(axis=attrs["axis"], keepdims=True))
    return (e / e.sum(axis=attrs["axis"], keepdims=True)).astype(F32, copy=False)


def sigmoid(inputs, params, attrs):
    """``y = 1 / (1 + exp(-x))``, evaluated as ``exp(-log(1 + exp(-x)))``."""
    return np.exp(-np.logaddexp(F32(0), -inputs[0])).astype(F32, copy=False)


def tanh(inputs, params, attrs):
    """``y = tanh(x)``."""
    return np.tanh(inputs[0])


# ---------------------------------------------------------------- layout
def concat(inputs, params, attrs):
    """``y = concatenate(inputs, axis)``."""
    try:
        return np.concatenate(inputs, axis=attrs["axis"])
    except (ValueError, np.exceptions.AxisError) as exc:
        raise InvalidArgumentError(
            f"Concat along axis={attrs['axis']} failed for shapes "
            f"{[t.shape for t in inputs]}: {exc}"
        ) from exc


def flatten(inputs, params, attrs):
    """``y = x.reshape(N, -1)`` in row-major (NHWC) order."""
    x = inputs[0]
    return x.reshape(x.shape[0], -1)


def reshape(inputs, params, attrs):
    """``y = x.reshape((N, *shape))``; the batch axis is kept."""
    x = inputs[0]
    try:
        return x.reshape((x.shape[0], *attrs["shape"]))
    except ValueError as exc:
        raise InvalidArgumentError(
            f"Reshape cannot turn shape {x.shape} into (N, *{attrs['shape']})"
        ) from exc


def pad(inputs, params, attrs):
    """``y = pad(x, paddings, constant value)``; batch padding must be (0, 0)."""
    x = inputs[0]
    paddings = attrs["paddings"]
    if len(paddings) != x.ndim or paddings[0] != (0, 0):
        raise InvalidArgumentError(
            f"Pad paddings must give one (before, after) pair per axis of the "
            f"rank-{x.ndim} input, with (0, 0) for the batch axis; got {paddings}"
        )
    return np.pad(x, paddings, constant_values=attrs["value"])


# ---------------------------------------------------------------- added ops
def mul(inputs, params, attrs):
    """``y = inputs[0] * inputs[1] * ...`` with NumPy broadcasting (float32).

    The batch axis must agree; other axes broadcast (a squeeze-excitation gate
    ``(N, 1, 1, C)`` times a feature map ``(N, H, W, C)``).
    """
    if len({t.ndim for t in inputs}) != 1 or len({t.shape[0] for t in inputs}) != 1:
        raise InvalidArgumentError(
            f"Mul inputs must share rank and batch size; got "
            f"{[t.shape for t in inputs]}"
        )
    try:
        y = np.multiply(inputs[0], inputs[1], dtype=F32)
        for t in inputs[2:]:
            y = np.multiply(y, t, dtype=F32)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"Mul inputs do not broadcast: {[t.shape for t in inputs]}"
        ) from exc
    return y


def _broadcast_param(x, p, key):
    if p.ndim > x.ndim - 1:
        raise InvalidArgumentError(
            f"ScaleShift param {key!r} of shape {p.shape} must broadcast against "
            f"one sample of shape {x.shape[1:]} (rank <= {x.ndim - 1})"
        )
    try:
        fits = np.broadcast_shapes(x.shape[1:], p.shape) == x.shape[1:]
    except ValueError:
        fits = False
    if not fits:
        raise InvalidArgumentError(
            f"ScaleShift param {key!r} of shape {p.shape} does not broadcast to "
            f"one sample of shape {x.shape[1:]}"
        )
    return p


def scale_shift(inputs, params, attrs):
    """``y = x * scale + shift`` (float32, two roundings), params broadcast
    against one sample ``x[n]``; a missing param is 1 (scale) or 0 (shift).
    """
    (x,) = inputs
    y = np.asarray(x, dtype=F32)
    if "scale" in params:
        y = np.multiply(y, _broadcast_param(x, params["scale"], "scale"), dtype=F32)
    if "shift" in params:
        y = np.add(y, _broadcast_param(x, params["shift"], "shift"), dtype=F32)
    return y.copy() if y is x else y


def clip(inputs, params, attrs):
    """``y = min(max(x, min), max)``; a None bound is absent."""
    low, high = attrs["min"], attrs["max"]
    y = np.array(inputs[0], dtype=F32, copy=True)
    if low is not None:
        np.maximum(y, F32(low), out=y)
    if high is not None:
        np.minimum(y, F32(high), out=y)
    return y


def hard_sigmoid(inputs, params, attrs):
    """``y = max(0, min(1, alpha * x + beta))`` in float32 (ONNX HardSigmoid)."""
    y = np.multiply(inputs[0], F32(attrs["alpha"]), dtype=F32)
    y += F32(attrs["beta"])
    return np.clip(y, F32(0), F32(1), out=y)


def hard_swish(inputs, params, attrs):
    """``y = x * min(max(x + 3, 0), 6) / 6`` in float32, in that order
    (PyTorch's hardswish; ONNX HardSwish is the same function).
    """
    x = np.asarray(inputs[0], dtype=F32)
    gate = np.clip(x + F32(3), F32(0), F32(6))
    y = np.multiply(x, gate, out=gate)
    y /= F32(6)
    return y


def transpose(inputs, params, attrs):
    """``y = x.transpose(perm)`` (contiguous copy); ``perm[0] == 0``."""
    x = inputs[0]
    perm = attrs["perm"]
    if len(perm) != x.ndim:
        raise InvalidArgumentError(
            f"Transpose perm {perm} has {len(perm)} axes; the input has rank "
            f"{x.ndim} (shape {x.shape})"
        )
    return np.ascontiguousarray(x.transpose(perm))


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class FloatKernel:
    """The float kernels of one op: ``forward`` now, ``backward`` later."""

    forward: Callable[[tuple, Mapping, Mapping], np.ndarray]
    backward: Callable | None = None


FLOAT_KERNELS: dict[str, FloatKernel] = {
    "Conv2D": FloatKernel(conv2d),
    "DepthwiseConv2D": FloatKernel(depthwise_conv2d),
    "Dense": FloatKernel(dense),
    "BatchNorm": FloatKernel(batch_norm),
    "ReLU": FloatKernel(relu),
    "ReLU6": FloatKernel(relu6),
    "MaxPool": FloatKernel(max_pool),
    "AvgPool": FloatKernel(avg_pool),
    "GlobalAvgPool": FloatKernel(global_avg_pool),
    "Add": FloatKernel(add),
    "Concat": FloatKernel(concat),
    "Flatten": FloatKernel(flatten),
    "Reshape": FloatKernel(reshape),
    "Pad": FloatKernel(pad),
    "Softmax": FloatKernel(softmax),
    "Sigmoid": FloatKernel(sigmoid),
    "Tanh": FloatKernel(tanh),
    "Mul": FloatKernel(mul),
    "ScaleShift": FloatKernel(scale_shift),
    "Clip": FloatKernel(clip),
    "HardSigmoid": FloatKernel(hard_sigmoid),
    "HardSwish": FloatKernel(hard_swish),
    "Transpose": FloatKernel(transpose),
}
