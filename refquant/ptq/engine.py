"""Integer execution of one quantized node, and its fake-quant simulation.

Engine: integer codes in, integer codes out, every op through the kernel of
refquant.kernels that the profile parameterises (conv2d, depthwise_conv2d,
fully_connected, add, max_pool2d, average_pool2d, global_average_pool or mean,
concatenation, pad, softmax, logistic, tanh, clamp_activation), so every
rounding site follows the profile.  :func:`run_node` is the plain, one call
per node path; :mod:`refquant.ptq.program` compiles the same semantics once
per model and profile for speed and is tested bit for bit against it.

Simulation: the same node in float64 on dequantized values with the float
kernels of the FP32 graph, then quantized (``half_even`` on the float64
quotient).  The two differ only where the float evaluation of the simulation
lands on the other side of a rounding tie; specs/ptq.md section 5 states the
bound that ``QuantizedModel.parity`` measures.
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError
from refquant.graph.float_ops import FLOAT_KERNELS, resolve_padding
from refquant.kernels.activations import clamp_activation, logistic, softmax, tanh
from refquant.kernels.conv import conv2d, depthwise_conv2d
from refquant.kernels.elementwise import add
from refquant.kernels.layout import concatenation, pad
from refquant.kernels.linear import fully_connected
from refquant.kernels.pooling import average_pool2d, global_average_pool, max_pool2d
from refquant.kernels.quantize_ops import quantize_linear
from refquant.kernels.reduce import mean
from refquant.numerics.quantize import quantize
from refquant.profiles import get_profile

__all__ = [
    "FIXED_OUTPUT_QPARAMS",
    "SHARED_QPARAMS_OPS",
    "check_profile_support",
    "run_node",
    "simulate_node",
]

#: Ops whose output reuses the input's qparams: pure data movement, clamps and
#: average pooling (TFLite AVERAGE_POOL_2D requires equal input and output
#: qparams; the mean of a window never leaves the input's range).
SHARED_QPARAMS_OPS = (
    "MaxPool",
    "AvgPool",
    "Pad",
    "Flatten",
    "Reshape",
    "ReLU",
    "ReLU6",
)

#: Ops with a fixed int8 output grid (TFLite): (scale, zero_point).
FIXED_OUTPUT_QPARAMS = {
    "Softmax": (1.0 / 256.0, -128),
    "Sigmoid": (1.0 / 256.0, -128),
    "Tanh": (1.0 / 128.0, 0),
}

#: Profiles whose backend runs conv and fully connected only with symmetric
#: weights (weight zero point 0): TFLite's int8 spec for CONV_2D,
#: DEPTHWISE_CONV_2D and FULLY_CONNECTED; ONNX Runtime's QLinearConv with int8
#: activations and int8 weights.
_ZERO_WEIGHT_ZP = {
    "tflite_reference": ("Conv2D", "DepthwiseConv2D", "Dense"),
    "onnxruntime": ("Conv2D", "DepthwiseConv2D"),
}


# --------------------------------------------------------------------- engine
def run_node(node, codes, qp, prof):
    """Output codes (int8) of ``node`` from input ``codes`` (list of int8 arrays).

    ``qp`` maps tensor names to :class:`TensorQParams`; ``prof`` is a profile
    name or :class:`~refquant.profiles.Profile`.  One kernel call per node;
    sub-8-bit outputs are then clamped to ``[qmin, qmax]``.
    """
    prof = get_profile(prof)
    a = [qp[i] for i in node.inputs]
    y = qp[node.name]
    fn = _ENGINE.get(node.op)
    if fn is None:
        raise NotImplementedError(
            f"node {node.name!r}: op {node.op} has no integer implementation"
        )
    check_profile_support(node, qp, prof)
    out = fn(node, codes, a, y, prof)
    return clamp_bits(out, y)


def check_profile_support(node, qp, prof) -> None:
    """Raise when the backend that ``prof`` emulates cannot run ``node``.

    Weighted layers need weight zero point 0 under tflite_reference (conv,
    depthwise, fully connected) and onnxruntime (QLinearConv with int8
    weights); Concat under tflite_reference needs equal input and output
    qparams (checked by the kernel).
    """
    ops = _ZERO_WEIGHT_ZP.get(prof.name, ())
    if node.op in ops and node.weight is not None and np.any(node.weight.zero_point):
        raise InvalidArgumentError(
            f"node {node.name!r}: profile {prof.name!r} runs {node.op} only with "
            f"symmetric int8 weights (weight zero point 0); got weight zero "
            f"points in [{int(np.min(node.weight.zero_point))}, "
            f"{int(np.max(node.weight.zero_point))}]; quantize with "
            f"weight_symmetric=True"
        )


def clamp_bits(q, y):
    """Clamp int8 containers to ``[qmin, qmax]`` of sub-8-bit activations."""
    if y.bits == 8:
        return q
    return np.clip(q, y.qmin, y.qmax).astype(np.int8)


def _conv(node, codes, a, y, prof):
    at, w = node.attrs, node.weight
    return conv2d(
        codes[0],
        a[0].scale,
        a[0].zero_point,
        w.codes,
        w.scale,
        w.zero_point,
        node.bias,
        y.scale,
        y.zero_point,
        strides=at["strides"],
        dilations=at["dilations"],
        groups=at["groups"],
        padding=at["padding"],
        activation=at["activation"],
        profile=prof,
    )


def _depthwise(node, codes, a, y, prof):
    at, w = node.attrs, node.weight
    return depthwise_conv2d(
        codes[0],
        a[0].scale,
        a[0].zero_point,
        w.codes,
        w.scale,
        w.zero_point,
        node.bias,
        y.scale,
        y.zero_point,
        depth_multiplier=at["depth_multiplier"],
        strides=at["strides"],
        dilations=at["dilations"],
        padding=at["padding"],
        activation=at["activation"],
        profile=prof,
    )


def _dense(node, codes, a, y, prof):
    w = node.weight
    return fully_connected(
        codes[0],
        a[0].scale,
        a[0].zero_point,
        w.codes,
        w.scale,
        w.zero_point,
        node.bias,
        y.scale,
        y.zero_point,
        activation=node.attrs["activation"],
        profile=prof,
    )


def _add(node, codes, a, y, prof):
    if len(codes) != 2:
        raise NotImplementedError(
            f"node {node.name!r}: quantized Add takes 2 inputs; got {len(codes)}"
        )
    return add(
        codes[0],
        a[0].scale,
        a[0].zero_point,
        codes[1],
        a[1].scale,
        a[1].zero_point,
        y.scale,
        y.zero_point,
        activation=node.attrs["activation"],
        profile=prof,
    )


def pool_geometry(shape, attrs):
    """``(pool_size, strides, explicit pads)`` of a pooling node on ``shape``."""
    ph, pw = attrs["pool_size"]
    strides = tuple(attrs["strides"] or (ph, pw))
    pads = resolve_padding(shape[1:3], (ph, pw), strides, (1, 1), attrs["padding"])
    return (ph, pw), strides, pads


def _max_pool(node, codes, a, y, prof):
    size, strides, pads = pool_geometry(codes[0].shape, node.attrs)
    return max_pool2d(codes[0], pool_size=size, strides=strides, padding=pads)


def _avg_pool(node, codes, a, y, prof):
    size, strides, pads = pool_geometry(codes[0].shape, node.attrs)
    return average_pool2d(
        codes[0],
        a[0].scale,
        a[0].zero_point,
        y.scale,
        y.zero_point,
        pool_size=size,
        strides=strides,
        padding=pads,
        count_include_pad=node.attrs["count_include_pad"],
        profile=prof,
    )


def _global_avg_pool(node, codes, a, y, prof):
    # TFLite converts a global average pool to MEAN over H and W; ONNX has
    # GlobalAveragePool (QLinearGlobalAveragePool in ORT's QOperator form).
    q = codes[0]
    if prof.average_pool_method == "tflite_raw_q_half_away":
        out = mean(
            q,
            a[0].scale,
            a[0].zero_point,
            y.scale,
            y.zero_point,
            axes=(1, 2),
            keepdims=True,
            profile=prof,
        )
    else:
        out = global_average_pool(
            q, a[0].scale, a[0].zero_point, y.scale, y.zero_point, profile=prof
        )
    return out if node.attrs["keepdims"] else out[:, 0, 0, :]


def _concat(node, codes, a, y, prof):
    return concatenation(
        list(codes),
        [p.scale for p in a],
        [p.zero_point for p in a],
        y.scale,
        y.zero_point,
        axis=node.attrs["axis"],
        profile=prof,
    )


def pad_code(node, y, prof) -> int:
    """Code of the pad value: ``quantize_linear(value)`` under the profile."""
    value = np.float32([node.attrs["value"]])
    return int(quantize_linear(value, y.scale, y.zero_point, profile=prof)[0])


def _pad(node, codes, a, y, prof):
    return pad(codes[0], node.attrs["paddings"], pad_code(node, y, prof))


def _reshape(node, codes, a, y, prof):
    return FLOAT_KERNELS[node.op].forward((codes[0],), {}, node.attrs).astype(np.int8)


def _relu(node, codes, a, y, prof):
    act = "relu" if node.op == "ReLU" else "relu6"
    return clamp_activation(codes[0], act, y.scale, y.zero_point, np.int8, prof)


def _softmax(node, codes, a, y, prof):
    q = codes[0]
    axis = node.attrs["axis"] % q.ndim
    q = np.moveaxis(q, axis, -1)
    out = softmax(
        q,
        a[0].scale,
        a[0].zero_point,
        y_scale=y.scale,
        y_zero_point=y.zero_point,
        profile=prof,
    )
    return np.moveaxis(out, -1, axis)


def _lut_op(node, codes, a, y, prof):
    fn = logistic if node.op == "Sigmoid" else tanh
    return fn(
        codes[0],
        a[0].scale,
        a[0].zero_point,
        y_scale=y.scale,
        y_zero_point=y.zero_point,
        profile=prof,
    )


def _not_static(node, codes, a, y, prof):
    raise NotImplementedError(
        f"node {node.name!r}: op {node.op} must be folded before static "
        "quantization (BatchNorm is folded or rewritten as a 1x1 depthwise conv)"
    )


_ENGINE = {
    "Conv2D": _conv,
    "DepthwiseConv2D": _depthwise,
    "Dense": _dense,
    "Add": _add,
    "MaxPool": _max_pool,
    "AvgPool": _avg_pool,
    "GlobalAvgPool": _global_avg_pool,
    "Concat": _concat,
    "Pad": _pad,
    "Flatten": _reshape,
    "Reshape": _reshape,
    "ReLU": _relu,
    "ReLU6": _relu,
    "Softmax": _softmax,
    "Sigmoid": _lut_op,
    "Tanh": _lut_op,
    "BatchNorm": _not_static,
}


# ------------------------------------------------------------------ simulation
def simulate_node(node, values, qp):
    """Simulated output codes of ``node`` from float64 input ``values``.

    ``y = float_op(values, dequantized weight, bias_int * s_in * s_w)`` then
    ``quantize(y, qp[node.name])`` (float64 quotient, ``half_even``).
    """
    y_qp = qp[node.name]
    if node.op in ("MaxPool", "Flatten", "Reshape", "Pad"):
        real = FLOAT_KERNELS[node.op].forward(tuple(values), {}, node.attrs)
        return np.asarray(quantize(np.asarray(real, np.float64), y_qp.qparams()))
    bias_scale = None
    if node.weight is not None:
        bias_scale = qp[node.inputs[0]].scale * node.weight.scale
    params = node.float_params(bias_scale)
    real = FLOAT_KERNELS[node.op].forward(tuple(values), params, node.attrs)
    real = np.asarray(real, dtype=np.float64)
    return quantize(real, y_qp.qparams())


# ------------------------------------------------------------- conv + max pool
def fusable_max_pools(nodes, outputs) -> dict:
    """``{conv name: max-pool node}`` where a MaxPool is the conv's only reader.

    Requantization ``acc -> clamp(round(acc * M[c]) + zp)`` is non-decreasing
    in ``acc`` for ``M[c] > 0`` under every profile, so the max over a window
    commutes with it: pooling the int64 accumulators first gives bit-identical
    codes with a quarter of the requantizations for a 2x2 pool
    (:mod:`refquant.ptq.program`).
    """
    readers: dict = {}
    for n in nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    plan = {}
    for n in nodes:
        r = readers.get(n.name, [])
        if (
            n.op in ("Conv2D", "DepthwiseConv2D")
            and n.name not in outputs
            and len(r) == 1
            and r[0].op == "MaxPool"
            and r[0].attrs["padding"] == "valid"
        ):
            plan[n.name] = r[0]
    return plan


def max_window(acc, attrs):
    """Max over ``pool_size`` windows at ``strides`` (valid padding), any dtype."""
    ph, pw = attrs["pool_size"]
    sh, sw = attrs["strides"] or (ph, pw)
    oh = (acc.shape[1] - ph) // sh + 1
    ow = (acc.shape[2] - pw) // sw + 1
    out = None
    for i in range(ph):  # loop over the window taps only
        for j in range(pw):
            tap = acc[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw]
            out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    return out
