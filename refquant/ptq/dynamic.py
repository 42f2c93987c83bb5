"""Dynamic quantization: int8 weights now, activations quantized per batch later.

Weighted layers keep int8 weight codes and a float32 bias; at run time each
quantizes its input batch with ONNX DynamicQuantizeLinear (uint8, min-max of
the batch), accumulates exactly in integers and rescales to float
(``y = s_x * s_w[c] * acc + b``).  Every other op runs in float32.  No
calibration data is needed.  Spec: specs/ptq.md, section 6.
"""

from __future__ import annotations

import numpy as np

from refquant.graph.graph import Graph
from refquant.ptq.config import WEIGHTED_OPS, QuantConfig
from refquant.ptq.qmodel import QuantizedModel
from refquant.ptq.qtensors import QuantizedNode
from refquant.ptq.weights import quantize_weight

__all__ = ["quantize_dynamic", "quantize_weights_float_bias"]


def quantize_weights_float_bias(
    graph: Graph, config: QuantConfig, mode: str, allow_groups: bool
) -> QuantizedModel:
    """Quantize each weighted node's weight; bias and other params stay float."""
    nodes = []
    for n in graph.nodes:
        if n.op not in WEIGHTED_OPS:
            nodes.append(
                QuantizedNode(n.name, n.op, n.inputs, n.attrs, params=dict(n.params))
            )
            continue
        s = config.settings_for(n.name, n.op)
        if s.weight_granularity == "per_group" and not allow_groups:
            raise NotImplementedError(
                f"node {n.name!r}: per_group weights run only in "
                f"mode='weight_only'; dynamic integer accumulation takes "
                f"per-tensor or per-channel weight scales"
            )
        weight = quantize_weight(n.op, n.params["weight"], s)
        bias = n.params.get("bias")
        bias = None if bias is None else np.asarray(bias, np.float32)
        nodes.append(QuantizedNode(n.name, n.op, n.inputs, n.attrs, weight, bias))
    return QuantizedModel(
        nodes, graph.inputs, graph.outputs, mode=mode, name=graph.name
    )


def quantize_dynamic(graph: Graph, config: QuantConfig) -> QuantizedModel:
    """Dynamic model of a folded, fused graph (no calibration)."""
    return quantize_weights_float_bias(graph, config, "dynamic", allow_groups=False)
