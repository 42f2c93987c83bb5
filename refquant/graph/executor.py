"""Float executor: runs a Graph node by node on float32 NHWC batches.

The schedule is the graph's topological order.  Each node calls
``FLOAT_KERNELS[node.op].forward(inputs, node.params, node.attrs)``; a tensor
is dropped as soon as its last reader has run, unless it is an output or is
captured.  Because every intermediate can be captured by name, a later
backward pass walks the same order in reverse with the captured tensors and
needs nothing else from this module.  See specs/graph.md section 4.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from refquant._validation import IntRange, check, check_type
from refquant.errors import InvalidArgumentError
from refquant.graph.float_ops import FLOAT_KERNELS


def _feeds(graph, inputs) -> dict[str, np.ndarray]:
    """Map graph input names to float32 arrays with one shared batch size."""
    if isinstance(inputs, Mapping):
        missing = [k for k in graph.inputs if k not in inputs]
        extra = [k for k in inputs if k not in graph.inputs]
        if missing or extra:
            raise InvalidArgumentError(
                f"inputs must have exactly the keys {list(graph.inputs)}; got "
                f"{list(inputs)}"
            )
        feeds = dict(inputs)
    elif len(graph.inputs) == 1:
        feeds = {graph.inputs[0]: inputs}
    else:
        raise InvalidArgumentError(
            f"inputs must be a mapping name -> array for a graph with inputs "
            f"{list(graph.inputs)}; got {type(inputs).__name__}"
        )
    out = {}
    for name, value in feeds.items():
        check_type(f"inputs[{name!r}]", value, (np.ndarray,), "a numpy array")
        if value.ndim < 1 or not np.issubdtype(value.dtype, np.number):
            raise InvalidArgumentError(
                f"inputs[{name!r}] must be a numeric array with a batch axis; got "
                f"dtype {value.dtype} shape {value.shape}"
            )
        out[name] = np.asarray(value, dtype=np.float32)
    sizes = {v.shape[0] for v in out.values()}
    if len(sizes) != 1:
        raise InvalidArgumentError(
            f"inputs must share one batch size; got {[v.shape for v in out.values()]}"
        )
    return out


def _capture_names(graph, capture) -> tuple[str, ...]:
    if capture is True:
        return tuple(graph.inputs) + tuple(n.name for n in graph.nodes)
    if capture is False or capture is None:
        return ()
    names = (capture,) if isinstance(capture, str) else tuple(capture)
    known = set(graph.inputs) | {n.name for n in graph.nodes}
    for name in names:
        if name not in known:
            raise InvalidArgumentError(
                f"capture must be a bool or names of graph inputs or nodes; "
                f"{name!r} is neither"
            )
    return names


def _last_use(graph) -> dict[str, int]:
    last = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            last[name] = i
    return last


def forward(graph, feeds: Mapping[str, np.ndarray], keep=()) -> dict[str, np.ndarray]:
    """One pass over prepared feeds; returns outputs and the ``keep`` tensors."""
    keep = set(keep) | set(graph.outputs)
    last = _last_use(graph)
    env = dict(feeds)
    for i, node in enumerate(graph.nodes):
        args = tuple(env[name] for name in node.inputs)
        try:
            env[node.name] = FLOAT_KERNELS[node.op].forward(
                args, node.params, node.attrs
            )
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(
                f"node {node.name!r} ({node.op}): {exc}"
            ) from exc
        for name in set(node.inputs):
            if last[name] == i and name not in keep:
                del env[name]
    return {k: env[k] for k in keep}


def _package(graph, env, names, capture):
    outs = tuple(env[k] for k in graph.outputs)
    outs = outs[0] if len(outs) == 1 else outs
    if capture is False or capture is None:
        return outs
    return outs, {k: env[k] for k in names}


def iter_batches(
    graph,
    inputs,
    *,
    batch_size: int,
    capture: bool | Sequence[str] = False,
) -> Iterator:
    """Yield :func:`run`'s result for each consecutive batch of ``batch_size``.

    Memory stays bounded by one batch, so observers can stream statistics.
    """
    check("batch_size", batch_size, IntRange(1, None))
    feeds = _feeds(graph, inputs)
    names = _capture_names(graph, capture)
    total = next(iter(feeds.values())).shape[0]
    for start in range(0, total, batch_size):
        part = {k: v[start : start + batch_size] for k, v in feeds.items()}
        yield _package(graph, forward(graph, part, names), names, capture)


def run(
    graph,
    inputs,
    *,
    capture: bool | Sequence[str] = False,
    batch_size: int | None = None,
):
    """Float32 forward pass of ``graph``.

    Parameters
    ----------
    graph : Graph
    inputs : ndarray or mapping of str to ndarray
        One array for a one-input graph, else a mapping keyed by input name.
        Cast to float32; axis 0 is the batch.
    capture : bool or sequence of str
        False: return outputs only.  True: also every graph input and node
        output.  A sequence: also exactly those tensors.
    batch_size : int or None
        Run in consecutive batches of this size and concatenate; None runs the
        whole input at once.

    Returns
    -------
    outputs : ndarray, or tuple of ndarray in ``graph.outputs`` order
    activations : dict of str to ndarray
        Only when ``capture`` is not False.
    """
    if batch_size is None:
        feeds = _feeds(graph, inputs)
        names = _capture_names(graph, capture)
        return _package(graph, forward(graph, feeds, names), names, capture)
    parts = list(iter_batches(graph, inputs, batch_size=batch_size, capture=capture))
    return _concat(parts, capture)


def _concat(parts, capture):
    def cat(items):
        return np.concatenate(items, axis=0)

    if capture is False or capture is None:
        outs, acts = parts, None
    else:
        outs, acts = [p[0] for p in parts], [p[1] for p in parts]
    if isinstance(outs[0], tuple):
        joined = tuple(cat([o[i] for o in outs]) for i in range(len(outs[0])))
    else:
        joined = cat(outs)
    if acts is None:
        return joined
    return joined, {k: cat([a[k] for a in acts]) for k in acts[0]}
