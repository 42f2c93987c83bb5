"""Integer execution of one quantized node, and its fake-quant simulation.

Engine: integer codes in, integer codes out, through refquant.kernels under a
profile.  Simulation: the same node in float64 on dequantized values with the
float kernels of the FP32 graph, then quantized (``half_even`` on the float64
quotient).  The two differ only where the float evaluation of the simulation
lands on the other side of a rounding tie; specs/ptq.md section 5 states the
bound that ``QuantizedModel.parity`` measures.

Where refquant.kernels has no kernel yet, the op is computed here from exact
integer sums and :func:`refquant.kernels.requantize.requantize_accumulator`
(see the TODO on each helper).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from refquant.errors import InvalidArgumentError
from refquant.graph.float_ops import FLOAT_KERNELS, output_size, resolve_padding
from refquant.kernels.activations import clamp_activation
from refquant.kernels.conv import conv2d, depthwise_conv2d
from refquant.kernels.elementwise import add
from refquant.kernels.linear import fully_connected
from refquant.kernels.quantize_ops import quantize_linear, requantize
from refquant.kernels.requantize import requantize_accumulator
from refquant.numerics.quantize import quantize

__all__ = ["FIXED_OUTPUT_QPARAMS", "SHARED_QPARAMS_OPS", "run_node", "simulate_node"]

#: Ops whose output reuses the input's qparams (pure data movement or clamps).
SHARED_QPARAMS_OPS = ("MaxPool", "Pad", "Flatten", "Reshape", "ReLU", "ReLU6")

#: Ops with a fixed int8 output grid (TFLite): (scale, zero_point).
FIXED_OUTPUT_QPARAMS = {
    "Softmax": (1.0 / 256.0, -128),
    "Sigmoid": (1.0 / 256.0, -128),
    "Tanh": (1.0 / 128.0, 0),
}


# --------------------------------------------------------------------- engine
def run_node(node, codes, qp, prof):
    """Output codes (int8) of ``node`` from input ``codes`` (list of int8 arrays).

    ``qp`` maps tensor names to :class:`TensorQParams`.
    """
    a = [qp[i] for i in node.inputs]
    y = qp[node.name]
    fn = _ENGINE.get(node.op)
    if fn is None:
        raise NotImplementedError(
            f"node {node.name!r}: op {node.op} has no integer implementation"
        )
    out = fn(node, codes, a, y, prof)
    return clamp_bits(out, y)


def clamp_bits(q, y):
    """Clamp int8 containers to ``[qmin, qmax]`` of sub-8-bit activations."""
    if y.bits == 8:
        return q
    return np.clip(q, y.qmin, y.qmax).astype(np.int8)


def _conv(node, codes, a, y, prof):
    at, w = node.attrs, node.weight
    return conv2d(codes[0], a[0].scale, a[0].zero_point, w.codes, w.scale,
                  w.zero_point, node.bias, y.scale, y.zero_point,
                  strides=at["strides"], dilations=at["dilations"],
                  groups=at["groups"], padding=at["padding"],
                  activation=at["activation"], profile=prof)  # fmt: skip


def _depthwise(node, codes, a, y, prof):
    at, w = node.attrs, node.weight
    return depthwise_conv2d(codes[0], a[0].scale, a[0].zero_point, w.codes,
                            w.scale, w.zero_point, node.bias, y.scale,
                            y.zero_point, depth_multiplier=at["depth_multiplier"],
                            strides=at["strides"], dilations=at["dilations"],
                            padding=at["padding"], activation=at["activation"],
                            profile=prof)  # fmt: skip


def _dense(node, codes, a, y, prof):
    w = node.weight
    return fully_connected(codes[0], a[0].scale, a[0].zero_point, w.codes, w.scale,
                           w.zero_point, node.bias, y.scale, y.zero_point,
                           activation=node.attrs["activation"],
                           profile=prof)  # fmt: skip


def _add(node, codes, a, y, prof):
    if len(codes) != 2:
        raise NotImplementedError(
            f"node {node.name!r}: quantized Add takes 2 inputs; got {len(codes)}"
        )
    return add(codes[0], a[0].scale, a[0].zero_point, codes[1], a[1].scale,
               a[1].zero_point, y.scale, y.zero_point,
               activation=node.attrs["activation"], profile=prof)  # fmt: skip


def _max_pool(node, codes, a, y, prof):
    # TODO(kernels.pooling.max_pool2d): integer max pool is missing; the float
    # kernel on codes widened to float32 is exact (|code| <= 128).
    v = FLOAT_KERNELS["MaxPool"].forward((codes[0].astype(np.float32),), {}, node.attrs)
    return v.astype(np.int8)


def window_sums(d, attrs):
    """Exact int64 window sums of ``d`` (NHWC, padding cells 0) and cell counts."""
    ph, pw = attrs["pool_size"]
    sh, sw = attrs["strides"] or (ph, pw)
    pads = resolve_padding(d.shape[1:3], (ph, pw), (sh, sw), (1, 1), attrs["padding"])
    oh = output_size(d.shape[1], ph, sh, 1, *pads[0])
    ow = output_size(d.shape[2], pw, sw, 1, *pads[1])
    dp = np.pad(d, ((0, 0), pads[0], pads[1], (0, 0)))
    win = sliding_window_view(dp, (ph, pw), axis=(1, 2))
    win = win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]
    acc = win.sum(axis=(-2, -1), dtype=np.int64)  # (N, oh, ow, C) int64, exact
    if attrs.get("count_include_pad", False) or pads == ((0, 0), (0, 0)):
        count = np.full((1, oh, ow, 1), ph * pw, dtype=np.int64)
    else:
        ones = np.pad(np.ones((1, *d.shape[1:3], 1), np.int64),
                      ((0, 0), pads[0], pads[1], (0, 0)))  # fmt: skip
        cw = sliding_window_view(ones, (ph, pw), axis=(1, 2))
        cw = cw[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]
        count = cw.sum(axis=(-2, -1))
    return acc, count


def _avg_pool(node, codes, a, y, prof):
    # TODO(kernels.pooling.average_pool2d): missing; this computes the exact
    # window sum of (q - zp_in) in int64 and requantizes with M = s_in /
    # (count * s_out).  The kernel should take count as an integer divisor so
    # that the exact profile does not see the float64 value of 1/count.
    acc, count = window_sums(codes[0].astype(np.int64) - a[0].zero_point, node.attrs)
    inv = np.broadcast_to(1.0 / count, acc.shape)
    return requantize_accumulator(acc, a[0].scale, inv, y.scale, y.zero_point,
                                  np.int8, prof)  # fmt: skip


def _global_avg_pool(node, codes, a, y, prof):
    # TODO(kernels.pooling.global_average_pool / kernels.reduce.mean): missing;
    # exact int64 sum over H, W of (q - zp_in), then M = s_in / (H*W * s_out)
    # (1/(H*W) enters as a float64 weight scale; see _avg_pool).
    q = codes[0]
    hw = q.shape[1] * q.shape[2]
    acc = (q.astype(np.int64) - a[0].zero_point).sum(
        axis=(1, 2), keepdims=node.attrs["keepdims"]
    )
    return requantize_accumulator(acc, a[0].scale, 1.0 / hw, y.scale, y.zero_point,
                                  np.int8, prof)  # fmt: skip


def _concat(node, codes, a, y, prof):
    # TODO(kernels.layout.concatenation): missing; each input is requantized
    # to the output qparams (kernels.quantize_ops.requantize) and joined.
    parts = [
        c
        if (p.scale, p.zero_point) == (y.scale, y.zero_point)
        else requantize(
            c,
            p.scale,
            p.zero_point,
            y.scale,
            y.zero_point,
            out_dtype=np.int8,
            profile=prof,
        )  # fmt: skip
        for c, p in zip(codes, a)
    ]
    return np.concatenate(parts, axis=node.attrs["axis"])


def _pad(node, codes, a, y, prof):
    # TODO(kernels.layout.pad): missing; np.pad with the code of the pad value.
    fill = int(quantize(np.float64(node.attrs["value"]), y.qparams()))
    return np.pad(codes[0], node.attrs["paddings"], constant_values=fill)


def _reshape(node, codes, a, y, prof):
    return FLOAT_KERNELS[node.op].forward((codes[0],), {}, node.attrs).astype(np.int8)


def _relu(node, codes, a, y, prof):
    act = "relu" if node.op == "ReLU" else "relu6"
    return clamp_activation(codes[0], act, y.scale, y.zero_point, np.int8, prof)


def _lut_op(node, codes, a, y, prof):
    # TODO(kernels.activations.softmax/logistic/tanh): missing; dequantize to
    # float64, apply the float op, quantize_linear under the profile to the
    # fixed output grid.  The kernels should replace this float detour.
    x = a[0].dequantize(codes[0])
    v = FLOAT_KERNELS[node.op].forward((x,), {}, node.attrs).astype(np.float64)
    return quantize_linear(v, y.scale, y.zero_point, profile=prof)


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
    "Softmax": _lut_op,
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


def check_codes(name, q):
    if q.dtype != np.int8:
        raise InvalidArgumentError(f"{name} must be int8 codes; got dtype {q.dtype}")


# ------------------------------------------------------------- conv + max pool
def fusable_max_pools(nodes, outputs) -> dict:
    """``{conv name: max-pool node}`` where a MaxPool is the conv's only reader.

    Requantization ``acc -> clamp(round(acc * M[c]) + zp)`` is non-decreasing
    in ``acc`` for ``M[c] > 0`` under every profile, so the max over a window
    commutes with it: pooling the int64 accumulators first gives bit-identical
    codes with a quarter of the requantizations for a 2x2 pool.
    """
    readers: dict = {}
    for n in nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    plan = {}
    for n in nodes:
        r = readers.get(n.name, [])
        if (n.op in ("Conv2D", "DepthwiseConv2D") and n.name not in outputs
                and len(r) == 1 and r[0].op == "MaxPool"
                and r[0].attrs["padding"] == "valid"):  # fmt: skip
            plan[n.name] = r[0]
    return plan


def run_conv_max_pool(node, pool, codes, qp, prof):
    """Codes of ``pool(node(codes))`` with the pool applied to accumulators."""
    from refquant.kernels.conv import conv2d_accumulator, depthwise_conv2d_accumulator
    from refquant.kernels.requantize import check_accumulator

    a, y, w, at = qp[node.inputs[0]], qp[node.name], node.weight, node.attrs
    if node.op == "Conv2D":
        acc = conv2d_accumulator(codes[0], a.zero_point, w.codes, w.zero_point,
                                 node.bias, strides=at["strides"],
                                 dilations=at["dilations"], groups=at["groups"],
                                 padding=at["padding"])  # fmt: skip
    else:
        acc = depthwise_conv2d_accumulator(
            codes[0],
            a.zero_point,
            w.codes,
            w.zero_point,
            node.bias,
            depth_multiplier=at["depth_multiplier"],
            strides=at["strides"],
            dilations=at["dilations"],
            padding=at["padding"],
        )
    acc = check_accumulator(acc, prof, bits=32, what=f"{node.op} accumulator")
    pooled = _max_window(acc, pool.attrs)  # int64, exact
    out = requantize_accumulator(pooled, a.scale, w.scale, y.scale, y.zero_point,
                                 np.int8, prof, channel_axis=-1,
                                 activation=at["activation"])  # fmt: skip
    return clamp_bits(out, y)


def _max_window(acc, attrs):
    """Max over ``pool_size`` windows at ``strides`` (valid padding), int64."""
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
