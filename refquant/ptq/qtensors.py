"""Containers of a quantized model: activation qparams, weights, nodes.

``x ~= (q - zero_point) * scale`` for every tensor.  Activations are
per-tensor signed codes in int8 containers clamped to ``[qmin, qmax]`` of
``bits``; weights keep their :class:`~refquant.numerics.scheme.QuantScheme`
(per-tensor, per-channel along the op's output axis, or per-group on the
``(C_out, K)`` matrix view).  Spec: specs/ptq.md, section 3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from refquant._validation import IntRange, check, check_type
from refquant.errors import InvalidArgumentError
from refquant.numerics.qparams import QParams, validate_scale
from refquant.numerics.quantize import dequantize
from refquant.numerics.scheme import QuantScheme

__all__ = ["QuantizedNode", "QuantizedWeight", "TensorQParams", "weight_matrix_shape"]


@dataclass(frozen=True)
class TensorQParams:
    """Per-tensor activation qparams: ``x ~= (q - zero_point) * scale``.

    Codes are int8 containers holding ``[qmin, qmax] = [-2**(bits-1),
    2**(bits-1) - 1]``.

    >>> TensorQParams(0.5, -3).qmin, TensorQParams(0.5, -3, bits=4).qmax
    (-128, 7)
    """

    scale: float
    zero_point: int
    bits: int = 8

    def __post_init__(self):
        check("bits", self.bits, IntRange(2, 8))
        s = validate_scale(self.scale, "scale")
        if s.ndim:
            raise InvalidArgumentError(
                f"scale must be a scalar for a per-tensor activation; got shape "
                f"{s.shape}"
            )
        zp = self.zero_point
        if isinstance(zp, np.integer):
            zp = int(zp)
        check("zero_point", zp, IntRange(self.qmin, self.qmax))
        object.__setattr__(self, "scale", float(s))
        object.__setattr__(self, "zero_point", int(zp))

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def scheme(self) -> QuantScheme:
        return QuantScheme(bits=self.bits, signed=True)

    def qparams(self) -> QParams:
        return QParams(self.scale, self.zero_point, self.scheme)

    def dequantize(self, q) -> np.ndarray:
        """``(q - zero_point) * scale`` in float64 (exact for int8 codes)."""
        return (np.asarray(q, dtype=np.int64) - self.zero_point) * self.scale


def weight_matrix_shape(op: str, shape: tuple) -> tuple[int, int]:
    """``(C_out, K)`` view used by per-group weights.

    Conv2D ``[C_out, kh, kw, Cg]`` -> ``(C_out, kh*kw*Cg)``; Dense as is;
    DepthwiseConv2D ``[1, kh, kw, C]`` -> ``(C, kh*kw)`` (transposed).
    """
    if op == "DepthwiseConv2D":
        return shape[3], shape[1] * shape[2]
    return shape[0], int(np.prod(shape[1:]))


def to_matrix(op: str, w: np.ndarray) -> np.ndarray:
    """The ``(C_out, K)`` view of a weight (a copy for depthwise)."""
    if op == "DepthwiseConv2D":
        return w.reshape(-1, w.shape[3]).T
    return w.reshape(w.shape[0], -1)


def from_matrix(op: str, m: np.ndarray, shape: tuple) -> np.ndarray:
    """Inverse of :func:`to_matrix`."""
    if op == "DepthwiseConv2D":
        return np.ascontiguousarray(m.T).reshape(shape)
    return m.reshape(shape)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """Integer weight codes with their qparams.

    ``codes`` has the op's layout (OHWI, 1HWC, (C_out, K)); for per_group
    schemes the qparams refer to :func:`to_matrix` of the codes (groups of
    ``group_size`` along K).
    """

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    scheme: QuantScheme
    op: str

    def __post_init__(self):
        check_type("scheme", self.scheme, (QuantScheme,), "a QuantScheme")
        codes = np.asarray(self.codes)
        if codes.dtype != np.int8:
            raise InvalidArgumentError(
                f"weight codes must be int8; got dtype {codes.dtype}"
            )
        if codes.size and (
            codes.min() < self.scheme.qmin or codes.max() > self.scheme.qmax
        ):
            raise InvalidArgumentError(
                f"weight codes must lie in [{self.scheme.qmin}, {self.scheme.qmax}]; "
                f"got [{int(codes.min())}, {int(codes.max())}]"
            )
        qp = QParams(self.scale, self.zero_point, self.scheme)
        qp.expand(self._qshape(codes), "weight")  # shape check
        codes = codes.copy()
        codes.setflags(write=False)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "scale", qp.scale)
        object.__setattr__(self, "zero_point", qp.zero_point)

    def _qshape(self, codes) -> tuple:
        if self.scheme.granularity == "per_group":
            return weight_matrix_shape(self.op, codes.shape)
        return codes.shape

    def qparams(self) -> QParams:
        return QParams(self.scale, self.zero_point, self.scheme)

    @property
    def num_params(self) -> int:
        """Number of (scale, zero_point) pairs."""
        return int(self.scale.size)

    def dequantize(self, dtype=np.float64) -> np.ndarray:
        """``(codes - zero_point) * scale`` in the op's layout (float64 default)."""
        qp = self.qparams()
        if self.scheme.granularity == "per_group":
            m = dequantize(to_matrix(self.op, self.codes), qp, dtype=np.float64)
            return from_matrix(self.op, m, self.codes.shape).astype(dtype)
        return dequantize(self.codes, qp, dtype=np.float64).astype(dtype)


@dataclass(frozen=True, eq=False)
class QuantizedNode:
    """One node of a quantized model.

    Parameters
    ----------
    name, op, inputs, attrs
        As in the FP32 graph (``op`` one of :data:`refquant.graph.OPS`).
    weight : QuantizedWeight or None
    bias : ndarray or None
        int32 at ``s_in * s_w[c]`` (static) or float32 (dynamic, weight-only).
    params : mapping of str to float32 arrays
        Float params left unquantized (BatchNorm statistics in float modes).
    """

    name: str
    op: str
    inputs: tuple
    attrs: Mapping = field(default_factory=dict)
    weight: QuantizedWeight | None = None
    bias: np.ndarray | None = None
    params: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))
        params = {}
        for k, v in dict(self.params).items():
            arr = np.array(v, dtype=np.float32)
            arr.setflags(write=False)
            params[k] = arr
        object.__setattr__(self, "params", MappingProxyType(params))
        if self.bias is not None:
            b = np.array(self.bias)
            if b.dtype not in (np.int32, np.float32) or b.ndim != 1:
                raise InvalidArgumentError(
                    f"node {self.name!r}: bias must be a 1-D int32 or float32 "
                    f"array; got dtype {b.dtype} shape {b.shape}"
                )
            b.setflags(write=False)
            object.__setattr__(self, "bias", b)

    def float_params(self, bias_scale=None) -> dict:
        """Params for the float kernels: dequantized weight and float bias."""
        out = dict(self.params)
        if self.weight is not None:
            out["weight"] = self.weight.dequantize(np.float64)
        if self.bias is not None:
            if self.bias.dtype == np.int32:
                out["bias"] = self.bias.astype(np.float64) * bias_scale
            else:
                out["bias"] = self.bias
        return out
