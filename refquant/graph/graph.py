"""The FP32 model graph: named inputs, nodes in topological order, outputs.

A :class:`Graph` is immutable: transforms return new graphs.  Construction
checks that names are unique, that every node input names a graph input or a
node, that every output names one, and that the nodes form no cycle; the nodes
are then stored in a topological order that keeps the given order wherever the
dependencies allow.  See specs/graph.md section 1.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from refquant._validation import check_type
from refquant.errors import InvalidArgumentError
from refquant.graph.nodes import Node


def _names(what: str, value) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    if not items:
        raise InvalidArgumentError(f"{what} must name at least one tensor; got []")
    for v in items:
        check_type(what, v, (str,), "a str or a sequence of str")
    if len(set(items)) != len(items):
        raise InvalidArgumentError(f"{what} must not repeat a name; got {list(items)}")
    return items


def topological_order(nodes: Sequence[Node], inputs: Iterable[str]) -> list[Node]:
    """Kahn's algorithm; ties broken by position in ``nodes`` (stable).

    Raises InvalidArgumentError on an unknown input or a cycle, naming the
    nodes involved.
    """
    known = set(inputs)
    producers = {n.name: i for i, n in enumerate(nodes)}
    waiting = [0] * len(nodes)
    users: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for i, node in enumerate(nodes):
        for name in node.inputs:
            if name in producers:
                waiting[i] += 1
                users[producers[name]].append(i)
            elif name not in known:
                raise InvalidArgumentError(
                    f"node {node.name!r} ({node.op}) reads unknown tensor {name!r}; "
                    "it is neither a graph input nor a node"
                )
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        stuck = [n.name for i, n in enumerate(nodes) if waiting[i] > 0]
        raise InvalidArgumentError(f"the graph has a cycle through nodes {stuck}")
    return order


class Graph:
    """An FP32 network: ``inputs`` -> ``nodes`` (topological) -> ``outputs``.

    Parameters
    ----------
    nodes : iterable of Node
        In any order; stored topologically sorted.
    inputs : str or sequence of str
        Names of the graph inputs (NHWC float32 tensors, batch first).
    outputs : str or sequence of str
        Names of the tensors returned by :meth:`run` (inputs or nodes).
    name : str
        A label for summaries.

    Examples
    --------
    >>> g = Graph([Node("r", "ReLU", ["x"])], inputs="x", outputs="r")
    >>> g.run(np.array([[-1.0, 2.0]], dtype=np.float32))
    array([[0., 2.]], dtype=float32)
    """

    def __init__(self, nodes: Iterable[Node], inputs, outputs, *, name="graph"):
        nodes = list(nodes)
        for node in nodes:
            check_type("nodes", node, (Node,), "an iterable of Node")
        check_type("name", name, (str,), "a str")
        self.inputs = _names("inputs", inputs)
        self.outputs = _names("outputs", outputs)
        self.name = name
        seen = set(self.inputs)
        for node in nodes:
            if node.name in seen:
                raise InvalidArgumentError(
                    f"duplicate name {node.name!r}: node names and graph input "
                    "names must be unique"
                )
            seen.add(node.name)
        self.nodes: tuple[Node, ...] = tuple(topological_order(nodes, self.inputs))
        self._by_name = {n.name: n for n in self.nodes}
        for out in self.outputs:
            if out not in seen:
                raise InvalidArgumentError(
                    f"graph output {out!r} names no graph input and no node"
                )

    # ------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __contains__(self, name) -> bool:
        return name in self._by_name

    def node(self, name: str) -> Node:
        """The node called ``name`` (KeyError-free: InvalidArgumentError)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidArgumentError(
                f"name must be a node of graph {self.name!r}; got name={name!r}"
            ) from None

    def producer(self, tensor: str) -> Node | None:
        """The node whose output is ``tensor``; None for a graph input."""
        return self._by_name.get(tensor)

    def consumers(self, tensor: str) -> tuple[Node, ...]:
        """Nodes that read ``tensor``, in topological order."""
        return tuple(n for n in self.nodes if tensor in n.inputs)

    @property
    def num_params(self) -> int:
        """Total float parameters, BatchNorm statistics included."""
        return sum(n.num_params for n in self.nodes)

    def replace(self, *, nodes=None, inputs=None, outputs=None, name=None) -> Graph:
        """A new graph with some parts changed (validated again)."""
        return Graph(
            self.nodes if nodes is None else nodes,
            self.inputs if inputs is None else inputs,
            self.outputs if outputs is None else outputs,
            name=self.name if name is None else name,
        )

    def summary(self) -> str:
        """One line per node: name, op, inputs, param shapes."""
        lines = [f"Graph {self.name!r}: inputs {list(self.inputs)}"]
        for n in self.nodes:
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in n.params.items())
            lines.append(f"  {n.name:<28} {n.op:<16} <- {list(n.inputs)} {shapes}")
        lines.append(f"outputs {list(self.outputs)}; {self.num_params} params")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Graph({self.name!r}, {len(self.nodes)} nodes, inputs="
            f"{list(self.inputs)}, outputs={list(self.outputs)})"
        )

    # ------------------------------------------------------------ running
    def run(
        self,
        inputs: np.ndarray | Mapping[str, np.ndarray],
        *,
        capture: bool | Sequence[str] = False,
        batch_size: int | None = None,
    ):
        """Float forward pass; see :func:`refquant.graph.executor.run`."""
        from refquant.graph.executor import run

        return run(self, inputs, capture=capture, batch_size=batch_size)

    def iter_batches(
        self,
        inputs: np.ndarray | Mapping[str, np.ndarray],
        *,
        batch_size: int,
        capture: bool | Sequence[str] = False,
    ):
        """Stream the forward pass; see :func:`refquant.graph.executor.iter_batches`."""
        from refquant.graph.executor import iter_batches

        return iter_batches(self, inputs, batch_size=batch_size, capture=capture)
