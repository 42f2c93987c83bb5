"""Weight-only quantization: int8 or int4 codes (often per group), float math.

``w_hat = (q - zp) * s`` per tensor, channel or group of ``group_size`` along
the reduction axis K of the ``(C_out, K)`` view; the model runs the float
executor on ``w_hat`` (float32), activations untouched.  Spec: specs/ptq.md,
section 6.
"""

from __future__ import annotations

from refquant.graph.graph import Graph
from refquant.ptq.config import QuantConfig
from refquant.ptq.dynamic import quantize_weights_float_bias
from refquant.ptq.qmodel import QuantizedModel

__all__ = ["quantize_weight_only"]


def quantize_weight_only(graph: Graph, config: QuantConfig) -> QuantizedModel:
    """Weight-only model of a folded, fused graph (no calibration)."""
    return quantize_weights_float_bias(graph, config, "weight_only", allow_groups=True)
