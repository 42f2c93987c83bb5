"""Static full-integer quantization: calibrate, choose qparams, quantize weights.

Every tensor gets per-tensor qparams: graph input and the outputs of Conv2D,
DepthwiseConv2D, Dense, Add, GlobalAvgPool and Concat from their observers;
MaxPool, AvgPool, Pad, Flatten, Reshape, ReLU and ReLU6 reuse their input's
qparams (their codes are a selection, clamp or window mean of the input codes;
TFLite's AVERAGE_POOL_2D requires equal input and output qparams); Softmax and
Sigmoid output on ``(1/2**b, -2**(b-1))`` and Tanh on ``(1/2**(b-1), 0)``
(int8: TFLite's fixed grids).  Spec: specs/ptq.md, section 4.
"""

from __future__ import annotations

import numpy as np

from refquant.errors import InvalidArgumentError
from refquant.graph.graph import Graph
from refquant.graph.nodes import Node
from refquant.ptq.calibrate import calibrate
from refquant.ptq.config import WEIGHTED_OPS, QuantConfig
from refquant.ptq.engine import FIXED_OUTPUT_QPARAMS, SHARED_QPARAMS_OPS
from refquant.ptq.qmodel import QuantizedModel
from refquant.ptq.qtensors import QuantizedNode, TensorQParams
from refquant.ptq.weights import quantize_bias, quantize_weight

__all__ = ["batch_norm_as_depthwise", "observed_tensors", "quantize_static"]


def batch_norm_as_depthwise(graph: Graph) -> Graph:
    """Rewrite each remaining BatchNorm as a 1x1 DepthwiseConv2D (NHWC only).

    ``weight[0, 0, 0, c] = gamma / sqrt(var + eps)``, ``bias = beta - mean *
    weight`` (float64, stored float32), so the integer engine can run it.
    """
    nodes = []
    for n in graph.nodes:
        if n.op != "BatchNorm":
            nodes.append(n)
            continue
        p = {k: n.params[k].astype(np.float64) for k in n.params}
        scale = p["gamma"] / np.sqrt(p["var"] + n.attrs["epsilon"])
        nodes.append(
            Node(
                n.name,
                "DepthwiseConv2D",
                n.inputs,
                params={
                    "weight": scale.reshape(1, 1, 1, -1).astype(np.float32),
                    "bias": (p["beta"] - p["mean"] * scale).astype(np.float32),
                },
            )
        )
    return graph.replace(nodes=nodes)


def observed_tensors(graph: Graph) -> list[str]:
    """Tensors whose qparams come from an observer: the input and every node
    that is neither qparams-sharing nor fixed-grid."""
    names = list(graph.inputs)
    for n in graph.nodes:
        if n.op not in SHARED_QPARAMS_OPS and n.op not in FIXED_OUTPUT_QPARAMS:
            names.append(n.name)
    return names


def _fixed(op: str, bits: int) -> TensorQParams:
    if op == "Tanh":
        return TensorQParams(2.0 ** -(bits - 1), 0, bits)
    return TensorQParams(2.0**-bits, -(2 ** (bits - 1)), bits)


def _settings(config, graph, name):
    node = graph.producer(name)
    return config.settings_for(name, None if node is None else node.op)


def _tensor_qparams(graph, config, observers) -> dict:
    qp = {}
    for name in graph.inputs:
        s = _settings(config, graph, name)
        r = observers[name].compute_qparams(s.activation_scheme())
        qp[name] = TensorQParams(float(r.scale), int(r.zero_point), s.activation_bits)
    for n in graph.nodes:
        s = _settings(config, graph, n.name)
        if n.op in SHARED_QPARAMS_OPS:
            qp[n.name] = qp[n.inputs[0]]
        elif n.op in FIXED_OUTPUT_QPARAMS:
            qp[n.name] = _fixed(n.op, s.activation_bits)
        else:
            r = observers[n.name].compute_qparams(s.activation_scheme())
            qp[n.name] = TensorQParams(
                float(r.scale), int(r.zero_point), s.activation_bits
            )
    return qp


def _quantize_node(n: Node, config: QuantConfig, qp: dict) -> QuantizedNode:
    if n.op not in WEIGHTED_OPS:
        return QuantizedNode(n.name, n.op, n.inputs, n.attrs)
    s = config.settings_for(n.name, n.op)
    if s.weight_granularity == "per_group":
        raise NotImplementedError(
            f"node {n.name!r}: per_group weights run only in mode='weight_only'; "
            "static integer kernels take per-tensor or per-channel weight scales"
        )
    w = n.params["weight"]
    weight = quantize_weight(n.op, w, s)
    bias = n.params.get("bias")
    if bias is not None:
        bias, weight = quantize_bias(
            n.op, w, bias, weight, qp[n.inputs[0]].scale, n.name
        )
    return QuantizedNode(n.name, n.op, n.inputs, n.attrs, weight, bias)


def quantize_static(
    graph: Graph,
    calibration_data,
    config: QuantConfig,
    *,
    batch_size: int = 32,
    progress=None,
) -> QuantizedModel:
    """Calibrate ``graph`` (folded and fused) and build the static model."""
    graph = batch_norm_as_depthwise(graph)
    for n in graph.nodes:
        if n.op == "Add" and len(n.inputs) != 2:
            raise NotImplementedError(
                f"node {n.name!r}: static Add takes exactly 2 inputs; got "
                f"{len(n.inputs)}"
            )
    observers = {
        t: _settings(config, graph, t).make_observer() for t in observed_tensors(graph)
    }
    calibrate(
        graph, calibration_data, observers, batch_size=batch_size, progress=progress
    )
    qp = _tensor_qparams(graph, config, observers)
    nodes = [_quantize_node(n, config, qp) for n in graph.nodes]
    return QuantizedModel(
        nodes, graph.inputs, graph.outputs, qp, mode="static", name=graph.name
    )


def check_names(graph: Graph, config: QuantConfig) -> None:
    known = set(graph.inputs) | {n.name for n in graph.nodes}
    unknown = config.unknown_names(known)
    if unknown:
        raise InvalidArgumentError(
            f"config.by_name names {unknown[0]!r}, which is no layer of graph "
            f"{graph.name!r} (after batch-norm folding and activation fusion)"
        )
