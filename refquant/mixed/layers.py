"""One layer of a mixed-precision model: its stored tensors, size and forward.

Precisions of a weighted layer (Conv2D, DepthwiseConv2D, Dense):

=========  ==================================================================
fp32       float32 weight and bias, float32 math
fp16       ``x, w, b`` rounded to float16 (half_even), float32 accumulation,
           output rounded to float16 (half_even)
bf16       the same with bfloat16 (half_even on the low 16 bits of float32)
int16      16x8: int16 symmetric activations (zero point 0), int8 per-channel
           weights, int64 bias and accumulator, on the integer kernels
int8       the static int8 node of the integer engine (codes in, codes out)
int4       weight-only: int4 per-group codes (groups along K), dequantized
           weight, float32 activations and math
ternary    weight ``alpha[c] * {-1, 0, +1}`` (TWN threshold), float32 math
binary     weight ``alpha[c] * {-1, +1}``, float32 math
=========  ==================================================================

Only ``int8`` layers keep integer tensors between layers; every other
precision reads and writes float32 tensors (an int16 layer quantizes its
input and dequantizes its output itself).  Spec: specs/mixed_precision.md,
sections 2-3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from refquant._validation import OneOf, check
from refquant.errors import InvalidArgumentError
from refquant.evaluation.size import StoredTensor, quantized_tensor, stored_tensor
from refquant.graph.float_ops import FLOAT_KERNELS
from refquant.numerics.floatfmt import bfloat16_bits, to_float16
from refquant.numerics.rounding import round_half_even
from refquant.numerics.scheme import QuantScheme
from refquant.ptq.config import WEIGHTED_OPS, weight_axis
from refquant.ptq.qtensors import QuantizedNode, QuantizedWeight

__all__ = ["FLOAT_PRECISIONS", "PRECISIONS", "MixedLayer", "layer_forward"]

#: Every precision a weighted layer can take, from the most to the least bits.
PRECISIONS = ("fp32", "fp16", "bf16", "int16", "int8", "int4", "ternary", "binary")
#: Precisions whose layer reads and writes float32 tensors.
FLOAT_PRECISIONS = ("fp32", "fp16", "bf16", "int16", "int4", "ternary", "binary")
INT16_QMAX = 32767

# stored datasets of each precision: key -> allowed dtype names
LAYOUT = {
    "fp32": {"weight": ("float32",), "bias": ("float32",)},
    "fp16": {"weight": ("float16",), "bias": ("float16",)},
    "bf16": {"weight": ("uint16",), "bias": ("uint16",)},
    "int8": {
        "weight": ("int8",),
        "weight_scale": ("float64",),
        "weight_zero_point": ("int64",),
        "bias": ("int32",),
    },
    "int16": {
        "weight": ("int8",),
        "weight_scale": ("float64",),
        "weight_zero_point": ("int64",),
        "bias": ("int64",),
    },
    "int4": {
        "weight": ("int8",),
        "weight_scale": ("float64",),
        "weight_zero_point": ("int64",),
        "bias": ("float32",),
    },
    "ternary": {
        "weight": ("int8",),
        "weight_scale": ("float32",),
        "bias": ("float32",),
    },
    "binary": {"weight": ("int8",), "weight_scale": ("float32",), "bias": ("float32",)},
    None: {},
}


@dataclass(frozen=True, eq=False)
class MixedLayer:
    """A node of a mixed model with the tensors its precision stores.

    Parameters
    ----------
    name, op, inputs, attrs
        As in the FP32 graph (after batch-norm folding and activation fusion).
    precision : str or None
        One of :data:`PRECISIONS` for a weighted op; None for every other op
        (it runs in the domain of its inputs, see :mod:`refquant.mixed.model`).
    tensors : mapping of str to ndarray
        ``weight``, ``weight_scale``, ``weight_zero_point``, ``bias`` as the
        precision stores them (``LAYOUT``); ``param.<k>`` float32 params of
        an unweighted op.
    meta : mapping
        ``scheme`` (int8 / int16 / int4 weight scheme fields), ``input_scale``
        and ``output_scale`` (int16 activations).
    """

    name: str
    op: str
    inputs: tuple
    attrs: Mapping
    precision: str | None
    tensors: Mapping = field(default_factory=dict)
    meta: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        if self.op in WEIGHTED_OPS:
            check(
                f"precision of layer {self.name!r}", self.precision, OneOf(PRECISIONS)
            )
        elif self.precision is not None:
            raise InvalidArgumentError(
                f"precision of layer {self.name!r} must be None for op {self.op} "
                f"(only {', '.join(WEIGHTED_OPS)} take a precision); got "
                f"precision={self.precision!r}"
            )
        tensors = {}
        allowed = LAYOUT[self.precision]
        for k, v in dict(self.tensors).items():
            arr = np.array(v)
            ok = allowed.get(k, ("float32",) if k.startswith("param.") else ())
            if arr.dtype.name not in ok:
                raise InvalidArgumentError(
                    f"layer {self.name!r} ({self.precision}): tensor {k!r} must have "
                    f"dtype in {ok}; got dtype {arr.dtype.name}"
                )
            arr.setflags(write=False)
            tensors[k] = arr
        if self.precision is not None and "weight" not in tensors:
            raise InvalidArgumentError(f"layer {self.name!r} needs a 'weight' tensor")
        object.__setattr__(self, "tensors", MappingProxyType(tensors))
        self._check_shapes()

    def _check_shapes(self) -> None:
        if self.precision in ("int8", "int16", "int4"):
            object.__setattr__(self, "_qweight", self.quantized_weight())
        if self.precision in ("int16",):
            for k in ("input_scale", "output_scale"):
                v = self.meta.get(k)
                if not isinstance(v, float) or not (v > 0 and np.isfinite(v)):
                    raise InvalidArgumentError(
                        f"layer {self.name!r} (int16): meta[{k!r}] must be a "
                        f"positive finite float; got {v!r}"
                    )

    # ---------------------------------------------------------------- views
    @property
    def is_integer(self) -> bool:
        """True when the layer reads and writes int8 codes (``int8``)."""
        return self.precision == "int8"

    def quantized_weight(self) -> QuantizedWeight:
        """The :class:`QuantizedWeight` of an int8 / int16 / int4 layer."""
        t = self.tensors
        scheme = QuantScheme(**dict(self.meta["scheme"]))
        return QuantizedWeight(
            t["weight"], t["weight_scale"], t["weight_zero_point"], scheme, self.op
        )

    def quantized_node(self) -> QuantizedNode:
        """The integer-engine node (int8 layers and unweighted ops)."""
        if self.precision is None:
            return QuantizedNode(self.name, self.op, self.inputs, self.attrs)
        return QuantizedNode(
            self.name,
            self.op,
            self.inputs,
            self.attrs,
            self._qweight,
            self.tensors.get("bias"),
        )

    def float_params(self) -> dict:
        """float32 weight and bias of a float-domain layer (format-rounded)."""
        t, p = self.tensors, self.precision
        if p is None:
            return {k[6:]: v for k, v in t.items() if k.startswith("param.")}
        if p == "bf16":
            out = {k: _bf16_values(v) for k, v in t.items()}
        elif p in ("ternary", "binary"):
            shape = [1] * t["weight"].ndim
            shape[weight_axis(self.op)] = -1
            w = t["weight_scale"].reshape(shape) * t["weight"].astype(np.float32)
            out = {"weight": w, "bias": t.get("bias")}
        elif p == "int4":
            w = self._qweight.dequantize(np.float64).astype(np.float32)
            out = {"weight": w, "bias": t.get("bias")}
        else:
            out = {k: v.astype(np.float32) for k, v in t.items()}
        return {k: v for k, v in out.items() if v is not None}

    # ---------------------------------------------------------------- size
    def stored_tensors(self) -> list[StoredTensor]:
        """What the layer stores, as :mod:`refquant.mixed.h5` writes it: codes
        at their bit width (int4 4, ternary 2, binary 1 bit, packed), float64
        weight scales, int8 zero points (see :meth:`MixedModel.size`)."""
        t, p, n = self.tensors, self.precision, self.name
        if p is None:
            return [stored_tensor(f"{n}.{k[6:]}", v, "other") for k, v in t.items()]
        out = []
        size = int(t["weight"].size)
        if p in ("fp32", "fp16"):
            out.append(stored_tensor(f"{n}.weight", t["weight"], "weight"))
        elif p == "bf16":
            out.append(StoredTensor(f"{n}.weight", size, "bfloat16", "weight"))
        elif p in ("int8", "int16", "int4"):
            w = self._qweight
            out += quantized_tensor(
                f"{n}.weight",
                size,
                w.scheme.bits,
                w.num_params,
                scale_dtype="float64",  # stored as float64: bit-exact integer math
                zero_point_dtype="int8",
            )
        else:
            bits = "int2" if p == "ternary" else "uint1"
            out.append(StoredTensor(f"{n}.weight", size, bits, "weight"))
            out.append(stored_tensor(f"{n}.weight.scale", t["weight_scale"], "scale"))
        if "bias" in t:
            dtype = "bfloat16" if p == "bf16" else None
            out.append(stored_tensor(f"{n}.bias", t["bias"], "bias", dtype))
        if p == "int16":
            for k in ("input", "output"):
                out.append(StoredTensor(f"{n}.{k}_scale", 1, "float32", "scale"))
                out.append(
                    StoredTensor(f"{n}.{k}_zero_point", 1, "int16", "zero_point")
                )
        return out


def _bf16_values(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


# ------------------------------------------------------------------- building
def weight_layer(
    node,
    precision: str,
    *,
    int8_node=None,
    int16_scales=None,
    group_size: int = 32,
    ternary_threshold: float = 0.7,
) -> MixedLayer:
    """Quantize one weighted FP32 node (folded, fused) to ``precision``.

    ``int8_node`` is the node of the calibrated static int8 model (its codes
    and int32 bias are reused as they are); ``int16_scales`` the symmetric
    int16 ``(input_scale, output_scale)``.
    """
    from refquant.numerics.binary import binarize, ternarize
    from refquant.ptq.config import LayerSettings
    from refquant.ptq.weights import quantize_weight

    w = np.asarray(node.params["weight"], np.float32)
    b = node.params.get("bias")
    b32 = None if b is None else np.asarray(b, np.float32)
    tensors, meta = {}, {}
    if precision == "fp32":
        tensors = {"weight": w, "bias": b32}
    elif precision == "fp16":
        tensors = {"weight": to_float16(w), "bias": _maybe(to_float16, b32)}
    elif precision == "bf16":
        tensors = {"weight": bfloat16_bits(w), "bias": _maybe(bfloat16_bits, b32)}
    elif precision == "int8":
        qw = int8_node.weight
        tensors = _qweight_tensors(qw)
        tensors["bias"] = int8_node.bias
        meta["scheme"] = _scheme_dict(qw.scheme)
    elif precision == "int16":
        qw = quantize_weight(node.op, w, LayerSettings())
        s_in, s_out = int16_scales
        tensors = _qweight_tensors(qw)
        if b32 is not None:
            s_w = np.broadcast_to(qw.scale, b32.shape)
            tensors["bias"] = round_half_even(b32 / (s_in * s_w)).astype(np.int64)
        meta = {
            "scheme": _scheme_dict(qw.scheme),
            "input_scale": float(s_in),
            "output_scale": float(s_out),
        }
    elif precision == "int4":
        settings = LayerSettings(
            weight_bits=4, weight_granularity="per_group", weight_group_size=group_size
        )
        qw = quantize_weight(node.op, w, settings)
        tensors = {**_qweight_tensors(qw), "bias": b32}
        meta["scheme"] = _scheme_dict(qw.scheme)
    else:
        axis = weight_axis(node.op)
        r = (
            ternarize(w, axis, ternary_threshold)
            if precision == "ternary"
            else binarize(w, axis)
        )
        tensors = {
            "weight": r.codes,
            "weight_scale": r.scale.astype(np.float32),
            "bias": b32,
        }
    tensors = {k: v for k, v in tensors.items() if v is not None}
    return MixedLayer(
        node.name, node.op, node.inputs, node.attrs, precision, tensors, meta
    )


def plain_layer(node) -> MixedLayer:
    """An unweighted node (its float params kept as float32)."""
    tensors = {f"param.{k}": np.asarray(v, np.float32) for k, v in node.params.items()}
    return MixedLayer(node.name, node.op, node.inputs, node.attrs, None, tensors)


def _maybe(fn, v):
    return None if v is None else fn(v)


def _qweight_tensors(qw: QuantizedWeight) -> dict:
    return {
        "weight": qw.codes,
        "weight_scale": np.asarray(qw.scale, np.float64),
        "weight_zero_point": np.asarray(qw.zero_point, np.int64),
    }


def _scheme_dict(s: QuantScheme) -> dict:
    keys = (
        "bits",
        "signed",
        "symmetric",
        "narrow_range",
        "granularity",
        "axis",
        "group_size",
    )
    return {k: getattr(s, k) for k in keys}


# -------------------------------------------------------------------- forward
def layer_forward(layer: MixedLayer, args: tuple, profile) -> np.ndarray:
    """float32 output of a float-domain layer from float32 inputs ``args``.

    fp16 / bf16: ``y = fmt(op(fmt(x), fmt(w), fmt(b)))`` with the op in float32
    (float32 accumulation) and ``fmt`` the half_even cast.  int16: see
    :func:`int16_forward`.  Others: the float32 op on the stored weight.
    """
    p = layer.precision
    if p == "int16":
        return int16_forward(layer, args[0], profile)
    params = layer.float_params()
    if p == "fp16":
        args = tuple(to_float16(a).astype(np.float32) for a in args)
    elif p == "bf16":
        args = tuple(round_to_bfloat16(a) for a in args)
    y = FLOAT_KERNELS[layer.op].forward(args, params, layer.attrs)
    if p == "fp16":
        return to_float16(y).astype(np.float32)
    if p == "bf16":
        return round_to_bfloat16(y)
    return np.asarray(y, dtype=np.float32)


def round_to_bfloat16(x) -> np.ndarray:
    """``bf16(x)`` of finite float32 values (or +-inf), returned as float32.

    ``u = bits(x)``; ``(u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000`` in uint32:
    round half_even on the low 16 bits, the same values as
    :func:`refquant.numerics.floatfmt.to_bfloat16` without its NaN handling
    (activations here are finite), in one uint32 pass.
    """
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(
        0xFFFF0000
    )
    return r.view(np.float32)


def int16_forward(layer: MixedLayer, x: np.ndarray, profile) -> np.ndarray:
    """16x8 layer: ``q_x = quantize_linear(x, s_in, 0)`` (int16, profile
    rounding), the integer kernel with int64 accumulation and requantization
    to ``(s_out, 0)`` int16, then ``y = q_y * s_out`` (float32)."""
    from refquant.kernels.conv import conv2d, depthwise_conv2d
    from refquant.kernels.linear import fully_connected
    from refquant.kernels.quantize_ops import quantize_linear

    s_in, s_out = layer.meta["input_scale"], layer.meta["output_scale"]
    q = quantize_linear(
        np.asarray(x, np.float32), s_in, 0, out_dtype=np.int16, profile=profile
    )
    w, at, bias = layer._qweight, layer.attrs, layer.tensors.get("bias")
    common = dict(activation=at.get("activation"), out_dtype=np.int16, profile=profile)
    if layer.op == "Conv2D":
        y = conv2d(
            q,
            s_in,
            0,
            w.codes,
            w.scale,
            w.zero_point,
            bias,
            s_out,
            0,
            strides=at["strides"],
            dilations=at["dilations"],
            groups=at["groups"],
            padding=at["padding"],
            **common,
        )
    elif layer.op == "DepthwiseConv2D":
        y = depthwise_conv2d(
            q,
            s_in,
            0,
            w.codes,
            w.scale,
            w.zero_point,
            bias,
            s_out,
            0,
            depth_multiplier=at["depth_multiplier"],
            strides=at["strides"],
            dilations=at["dilations"],
            padding=at["padding"],
            **common,
        )
    else:
        y = fully_connected(
            q, s_in, 0, w.codes, w.scale, w.zero_point, bias, s_out, 0, **common
        )
    return (y.astype(np.float64) * s_out).astype(np.float32)


def int16_scale(qparams) -> float:
    """``max(|(qmin - zp) s|, |(qmax - zp) s|) / 32767``: the symmetric int16
    scale covering the calibrated int8 range of a tensor (1.0 if it is 0)."""
    lo = (qparams.qmin - qparams.zero_point) * qparams.scale
    hi = (qparams.qmax - qparams.zero_point) * qparams.scale
    amax = max(abs(lo), abs(hi))
    return amax / INT16_QMAX if amax > 0 else 1.0
