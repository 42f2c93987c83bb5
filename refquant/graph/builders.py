"""Builders: a DAG builder for any network and a Sequential builder for chains.

>>> b = SequentialBuilder(input_name="x")
>>> _ = b.add("Dense", params={"weight": [[1.0, -1.0]]}).add("ReLU")
>>> g = b.build()
>>> g.run(np.array([[3.0, 1.0], [1.0, 3.0]], dtype=np.float32)).ravel()
array([2., 0.], dtype=float32)

See specs/graph.md section 5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np  # noqa: F401  (doctest namespace)

from refquant._validation import check_type
from refquant.errors import InvalidArgumentError
from refquant.graph.graph import Graph
from refquant.graph.nodes import Node


class GraphBuilder:
    """Collects inputs and nodes of a DAG, then builds a validated :class:`Graph`.

    ``add`` returns the new node's name, which later ``add`` calls use as an
    input; names default to ``<op lowercase>_<k>``.

    Examples
    --------
    >>> b = GraphBuilder()
    >>> x = b.input("x")
    >>> r = b.add("ReLU", x)
    >>> y = b.add("Add", [x, r], name="residual")
    >>> b.build(outputs=y).run(np.array([[-1.0, 2.0]], dtype=np.float32))
    array([[-1.,  4.]], dtype=float32)
    """

    def __init__(self, name: str = "graph"):
        check_type("name", name, (str,), "a str")
        self.name = name
        self._inputs: list[str] = []
        self._nodes: list[Node] = []
        self._counts: dict[str, int] = {}
        self._taken: set[str] = set()

    def input(self, name: str = "input") -> str:
        """Declare a graph input and return its name."""
        check_type("name", name, (str,), "a str")
        self._claim(name)
        self._inputs.append(name)
        return name

    def add(
        self,
        op: str,
        inputs: str | Sequence[str],
        *,
        name: str | None = None,
        params: Mapping | None = None,
        **attrs,
    ) -> str:
        """Append a node ``op(inputs)`` and return its name."""
        if name is None:
            name = self._fresh(op)
        self._claim(name)
        node = Node(name, op, inputs, params or {}, attrs)
        self._nodes.append(node)
        return name

    def add_node(self, node: Node) -> str:
        """Append an already built node and return its name."""
        check_type("node", node, (Node,), "a Node")
        self._claim(node.name)
        self._nodes.append(node)
        return node.name

    def build(self, outputs: str | Sequence[str] | None = None) -> Graph:
        """Validate and return the graph; outputs default to the last node."""
        if outputs is None:
            if not self._nodes:
                raise InvalidArgumentError(
                    "outputs must be given when the builder holds no node"
                )
            outputs = self._nodes[-1].name
        return Graph(self._nodes, self._inputs, outputs, name=self.name)

    def _claim(self, name: str) -> None:
        if name in self._taken:
            raise InvalidArgumentError(
                f"duplicate name {name!r}: node and input names must be unique"
            )
        self._taken.add(name)

    def _fresh(self, op: str) -> str:
        base = op.lower() if isinstance(op, str) else "node"
        while True:
            k = self._counts.get(base, 0)
            self._counts[base] = k + 1
            candidate = f"{base}_{k}"
            if candidate not in self._taken:
                return candidate


class SequentialBuilder:
    """A chain: each ``add`` reads the previous node (or the input).

    ``add`` returns the builder itself, so calls chain.
    """

    def __init__(self, name: str = "sequential", input_name: str = "input"):
        self._builder = GraphBuilder(name)
        self.last = self._builder.input(input_name)

    def add(
        self,
        op: str,
        *,
        name: str | None = None,
        params: Mapping | None = None,
        **attrs,
    ) -> SequentialBuilder:
        """Append ``op`` reading the current last tensor."""
        self.last = self._builder.add(op, self.last, name=name, params=params, **attrs)
        return self

    def build(self) -> Graph:
        """Validate and return the graph; its one output is the last node."""
        return self._builder.build(outputs=self.last)


def sequential(
    layers: Sequence[tuple], *, input_name: str = "input", name: str = "sequential"
) -> Graph:
    """Build a chain from ``(op, params, attrs)`` or ``(op, params, attrs, name)``.

    >>> g = sequential([("ReLU6", {}, {})])
    >>> g.run(np.array([[-1.0, 7.0]], dtype=np.float32))
    array([[0., 6.]], dtype=float32)
    """
    b = SequentialBuilder(name=name, input_name=input_name)
    for k, layer in enumerate(layers):
        if not isinstance(layer, (tuple, list)) or len(layer) not in (3, 4):
            raise InvalidArgumentError(
                f"layers[{k}] must be (op, params, attrs) or (op, params, attrs, "
                f"name); got {layer!r}"
            )
        op, params, attrs = layer[:3]
        b.add(op, name=layer[3] if len(layer) == 4 else None, params=params, **attrs)
    return b.build()
