"""Stream calibration data through the FP32 graph and feed one observer per tensor.

Memory is bounded by one batch: each node's output is handed to its observer
as soon as it is computed and freed after its last reader, as the float
executor does (specs/graph.md section 4).  Observers never hold activations,
only their streaming statistics.  Spec: specs/ptq.md, section 4.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from refquant._validation import IntRange, check, check_type
from refquant.calibration.base import Observer
from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.graph.float_ops import FLOAT_KERNELS
from refquant.graph.graph import Graph

__all__ = ["calibrate", "iter_calibration_batches"]


def iter_calibration_batches(data, batch_size: int):
    """Yield float32 batches from an array (sliced) or an iterable of arrays.

    Returns ``(iterator, total)``; ``total`` is the sample count when known.
    """
    check("batch_size", batch_size, IntRange(1, None))
    if isinstance(data, np.ndarray):
        _check_batch("calibration_data", data)
        if data.shape[0] == 0:
            raise InvalidArgumentError(
                "calibration_data must hold at least one sample; got shape "
                f"{data.shape}"
            )
        gen = (data[i : i + batch_size] for i in range(0, data.shape[0], batch_size))
        return gen, int(data.shape[0])
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise InvalidTypeError(
            "calibration_data must be a float array (N, ...) or an iterable of "
            f"such batches; got {type(data).__name__}"
        )

    def checked():
        for i, b in enumerate(data):
            _check_batch(f"calibration_data batch {i}", b)
            yield b

    return checked(), None


def _check_batch(name, b):
    if not isinstance(b, np.ndarray) or b.ndim < 1 or b.dtype.kind not in "fiu":
        raise InvalidTypeError(
            f"{name} must be a numeric numpy array with a batch axis; got "
            f"{type(b).__name__}"
            + (f" of dtype {b.dtype}" if isinstance(b, np.ndarray) else "")
        )


def calibrate(
    graph: Graph,
    calibration_data,
    observers: Mapping[str, Observer],
    *,
    batch_size: int = 32,
    progress: Callable | None = None,
) -> dict[str, Observer]:
    """Update ``observers[t]`` with every value of tensor ``t`` over the data.

    Parameters
    ----------
    graph : Graph
        One-input FP32 graph.
    calibration_data : float ndarray (N, ...) or iterable of batches
    observers : mapping of tensor name (graph input or node) to Observer
    batch_size : int
        Samples per forward pass when ``calibration_data`` is an array.
    progress : callable(done, total) or None
        Called after each batch with the samples done so far and the total
        (None when the data is an iterable of unknown length).

    Returns
    -------
    dict
        The same observers, updated.
    """
    check_type("graph", graph, (Graph,), "a refquant.graph.Graph")
    check_type("observers", observers, (Mapping,), "a mapping name -> Observer")
    names = set(graph.inputs) | {n.name for n in graph.nodes}
    for k, obs in observers.items():
        if k not in names:
            raise InvalidArgumentError(
                f"observers key {k!r} names no graph input or node of {graph.name!r}"
            )
        check_type(f"observers[{k!r}]", obs, (Observer,), "an Observer")
    if progress is not None and not callable(progress):
        raise InvalidTypeError(
            f"progress must be a callable(done, total) or None; got {progress!r}"
        )
    if len(graph.inputs) != 1:
        raise NotImplementedError("calibration supports one-input graphs")
    batches, total = iter_calibration_batches(calibration_data, batch_size)
    done = 0
    for batch in batches:
        _observe_batch(graph, batch.astype(np.float32), observers)
        done += int(batch.shape[0])
        if progress is not None:
            progress(done, total)
    if done == 0:
        raise InvalidArgumentError("calibration_data yielded no samples")
    return dict(observers)


def _observe_batch(graph, x, observers):
    """One forward pass; each tensor is observed once, then freed when dead."""
    last = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            last[name] = i
    env = {graph.inputs[0]: x}
    if graph.inputs[0] in observers:
        observers[graph.inputs[0]].update(x)
    for i, node in enumerate(graph.nodes):
        args = tuple(env[k] for k in node.inputs)
        try:
            out = FLOAT_KERNELS[node.op].forward(args, node.params, node.attrs)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(
                f"node {node.name!r} ({node.op}): {exc}"
            ) from exc
        if node.name in observers:
            observers[node.name].update(out)
        env[node.name] = out
        for k in set(node.inputs):
            if last[k] == i:
                del env[k]
