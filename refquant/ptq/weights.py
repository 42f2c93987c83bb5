"""Weight and bias quantization shared by the three modes.

Weights: ``q = clamp(half_even(w / s_w) + zp_w, qmin, qmax)`` with min-max
qparams per tensor, per output channel or per group of the ``(C_out, K)``
view.  Bias (static): ``b_q = half_even(b / (s_in * s_w[c]))`` in int32; a
channel whose bias would leave int32 gets a larger weight scale
``s_w[c] = |b[c]| / (s_in * (2**31 - 1))`` (named warning), never a clipped
bias.  Spec: specs/ptq.md, section 3.
"""

from __future__ import annotations

import warnings

import numpy as np

from refquant.errors import FallbackScaleWarning
from refquant.numerics.qparams import QParams, qparams_from_tensor
from refquant.numerics.quantize import quantize
from refquant.numerics.rounding import round_half_even
from refquant.numerics.scheme import QuantScheme
from refquant.ptq.config import LayerSettings
from refquant.ptq.qtensors import QuantizedWeight, to_matrix, weight_matrix_shape

__all__ = ["quantize_bias", "quantize_weight"]

INT32_MAX = 2**31 - 1


def _group_scheme(op: str, shape: tuple, settings: LayerSettings) -> QuantScheme:
    k = weight_matrix_shape(op, shape)[1]
    return QuantScheme(
        bits=settings.weight_bits,
        signed=True,
        symmetric=settings.weight_symmetric,
        narrow_range=settings.weight_narrow_range,
        granularity="per_group",
        axis=1,
        group_size=min(settings.weight_group_size, k),
    )


def quantize_weight(op: str, w: np.ndarray, settings: LayerSettings) -> QuantizedWeight:
    """Min-max quantized weight of ``op`` under ``settings`` (int8 containers).

    Per-group groups run along the reduction axis K of the ``(C_out, K)`` view;
    a group size larger than K becomes K for that layer.
    """
    w = np.asarray(w, dtype=np.float64)
    if settings.weight_granularity == "per_group":
        scheme = _group_scheme(op, w.shape, settings)
        m = to_matrix(op, w)
        qp = qparams_from_tensor(m, scheme)
        codes_m = quantize(m, qp).astype(np.int8)
        codes = (
            codes_m.T.reshape(w.shape)
            if op == "DepthwiseConv2D"
            else codes_m.reshape(w.shape)
        )
        return QuantizedWeight(codes, qp.scale, qp.zero_point, scheme, op)
    scheme = settings.weight_scheme(op)
    qp = qparams_from_tensor(w, scheme)
    codes = quantize(w, qp).astype(np.int8)
    return QuantizedWeight(codes, qp.scale, qp.zero_point, scheme, op)


def _requantize_weight(op, w, weight: QuantizedWeight, scale) -> QuantizedWeight:
    qp = QParams(scale, weight.zero_point, weight.scheme)
    codes = quantize(np.asarray(w, np.float64), qp).astype(np.int8)
    return QuantizedWeight(codes, qp.scale, qp.zero_point, weight.scheme, op)


def quantize_bias(
    op, w, bias, weight: QuantizedWeight, input_scale: float, name: str = "layer"
):
    """Return ``(bias_int32, weight)``: ``half_even(b / (s_in * s_w))``.

    ``weight`` is returned re-quantized with larger scales on the channels
    whose bias would not fit int32 (a :class:`FallbackScaleWarning` says how
    many).
    """
    b = np.asarray(bias, dtype=np.float64)
    s_w = np.broadcast_to(weight.scale, b.shape).astype(np.float64)
    need = np.abs(b) / (input_scale * INT32_MAX)
    grow = need > s_w
    if np.any(grow):
        warnings.warn(
            FallbackScaleWarning(
                f"{name}: {int(grow.sum())} channel(s) had a bias beyond int32 at "
                f"s_in * s_w; their weight scale was raised to fit"
            ),
            stacklevel=3,
        )
        if weight.scale.ndim == 0:
            new_scale = np.float64(max(float(weight.scale), float(need.max())))
        else:
            new_scale = np.where(grow, need * (1 + 2**-40), weight.scale)
        weight = _requantize_weight(op, w, weight, new_scale)
        s_w = np.broadcast_to(weight.scale, b.shape)
    q = round_half_even(b / (input_scale * s_w))
    q = np.clip(q, -INT32_MAX - 1, INT32_MAX)  # no-op after the scale fix
    return q.astype(np.int32), weight
