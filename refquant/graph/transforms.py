"""Graph rewrites that keep the function: batch-norm folding, activation fusion.

Both are pure: they return a new :class:`Graph` and leave the argument alone.
A removed node's name is rewired to the node that absorbed it, in node inputs
and graph outputs alike.  See specs/graph.md section 6.
"""

from __future__ import annotations

import numpy as np

from refquant._validation import check_type
from refquant.graph.graph import Graph
from refquant.graph.nodes import Node

FOLD_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")
FUSE_INTO = ("Conv2D", "DepthwiseConv2D", "Dense", "Add")
FUSABLE = {"ReLU": "relu", "ReLU6": "relu6"}


def _sole_reader(graph: Graph, producer: Node, reader: Node) -> bool:
    """True when ``reader`` is the only use of ``producer``'s output."""
    if producer.name in graph.outputs:
        return False
    users = graph.consumers(producer.name)
    return (
        len(users) == 1
        and users[0] is reader
        and reader.inputs.count(producer.name) == 1
    )


def _rewire(graph: Graph, nodes: list[Node], renames: dict[str, str]) -> Graph:
    def rename(name):
        while name in renames:
            name = renames[name]
        return name

    rewired = [n.replace(inputs=[rename(i) for i in n.inputs]) for n in nodes]
    outputs = [rename(o) for o in graph.outputs]
    return Graph(rewired, graph.inputs, outputs, name=graph.name)


def fold_scale_shift(node: Node, scale: np.ndarray, shift: np.ndarray) -> Node:
    """Absorb ``y -> y * scale + shift`` (per output channel) into ``node``.

    ``w'[o] = w[o] * scale[o]`` along the op's output axis and
    ``b'[o] = b[o] * scale[o] + shift[o]`` (``b = 0`` when absent), in float64,
    stored as float32 (round to nearest even).
    """
    w = node.params["weight"].astype(np.float64)
    c_out = w.shape[-1] if node.op == "DepthwiseConv2D" else w.shape[0]
    bias = node.params.get("bias", np.zeros(c_out, np.float32)).astype(np.float64)
    s = scale.astype(np.float64)
    if node.op == "DepthwiseConv2D":
        w_folded = w * s  # output axis is the last one
    else:
        w_folded = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    params = {
        "weight": w_folded.astype(np.float32),
        "bias": (bias * s + shift.astype(np.float64)).astype(np.float32),
    }
    return node.replace(params=params)


def fold_batch_norm(graph: Graph) -> Graph:
    """Fold each BatchNorm into the Conv2D, DepthwiseConv2D or Dense before it.

    With ``scale = gamma / sqrt(var + epsilon)`` (float64) the folded op has
    ``w' = w * scale`` on its output channels and
    ``b' = (b - mean) * scale + beta``.  A BatchNorm is folded only when its
    producer is one of those ops, has no fused activation, and feeds nothing
    else (not even a graph output); other BatchNorms stay.  The folded node
    keeps the producer's name; readers of the BatchNorm are rewired to it.
    """
    check_type("graph", graph, (Graph,), "a refquant.graph.Graph")
    replaced: dict[str, Node] = {}
    dropped: dict[str, str] = {}
    for bn in graph.nodes:
        prev = graph.producer(bn.inputs[0]) if bn.op == "BatchNorm" else None
        if prev is None or prev.op not in FOLD_INTO:
            continue
        if prev.attrs["activation"] is not None or not _sole_reader(graph, prev, bn):
            continue
        g, b, m, v = (
            bn.params[k].astype(np.float64) for k in ("gamma", "beta", "mean", "var")
        )
        scale = g / np.sqrt(v + bn.attrs["epsilon"])
        replaced[prev.name] = fold_scale_shift(prev, scale, b - m * scale)
        dropped[bn.name] = prev.name
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in dropped]
    return _rewire(graph, nodes, dropped)


def fuse_activations(graph: Graph) -> Graph:
    """Move each ReLU / ReLU6 into the ``activation`` attr of the op before it.

    Fused when the producer is Conv2D, DepthwiseConv2D, Dense or Add, has no
    activation yet, and feeds only this activation node.  Exact: max and clip
    commute with nothing else in between, so outputs are bit-identical.
    """
    check_type("graph", graph, (Graph,), "a refquant.graph.Graph")
    replaced: dict[str, Node] = {}
    dropped: dict[str, str] = {}
    for act in graph.nodes:
        prev = graph.producer(act.inputs[0]) if act.op in FUSABLE else None
        if prev is None or prev.op not in FUSE_INTO or prev.name in replaced:
            continue
        if prev.attrs["activation"] is not None or not _sole_reader(graph, prev, act):
            continue
        replaced[prev.name] = prev.replace(
            attrs={**prev.attrs, "activation": FUSABLE[act.op]}
        )
        dropped[act.name] = prev.name
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in dropped]
    return _rewire(graph, nodes, dropped)
