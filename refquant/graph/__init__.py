"""The FP32 model graph: nodes, float executor, builders, transforms, models.

See specs/graph.md.
"""

from refquant.graph.builders import GraphBuilder, SequentialBuilder, sequential
from refquant.graph.executor import iter_batches, run
from refquant.graph.graph import Graph
from refquant.graph.nodes import ACTIVATIONS, OP_SPECS, OPS, Node
from refquant.graph.transforms import fold_batch_norm, fuse_activations

__all__ = [
    "ACTIVATIONS",
    "OPS",
    "OP_SPECS",
    "Graph",
    "GraphBuilder",
    "Node",
    "SequentialBuilder",
    "fold_batch_norm",
    "fuse_activations",
    "iter_batches",
    "run",
    "sequential",
]
