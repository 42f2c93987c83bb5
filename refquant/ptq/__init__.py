"""Post-training quantization: static full-integer, dynamic and weight-only.

>>> import numpy as np
>>> from refquant.graph import sequential
>>> g = sequential([("Dense", {"weight": np.eye(2, dtype=np.float32)}, {})])
>>> qm = quantize_model(g, np.float32([[1.0, -1.0], [0.5, 0.25]]))
>>> qm.run(np.float32([[1.0, -1.0]])).round(2).tolist()
[[1.0, -1.0]]

Spec: specs/ptq.md.  Saving and loading: :mod:`refquant.ptq.serialize`.
"""

from __future__ import annotations

from refquant._validation import IntRange, OneOf, check, check_type
from refquant.errors import InvalidTypeError
from refquant.graph.graph import Graph
from refquant.graph.transforms import fold_batch_norm, fuse_activations
from refquant.ptq.calibrate import calibrate
from refquant.ptq.config import LayerSettings, QuantConfig, as_config
from refquant.ptq.qmodel import MODES, QuantizedModel
from refquant.ptq.qtensors import QuantizedNode, QuantizedWeight, TensorQParams

__all__ = [
    "MODES",
    "LayerSettings",
    "QuantConfig",
    "QuantizedModel",
    "QuantizedNode",
    "QuantizedWeight",
    "TensorQParams",
    "calibrate",
    "load_quantized_model",
    "prepare_graph",
    "quantize_model",
    "save_quantized_model",
]


def prepare_graph(graph: Graph) -> Graph:
    """``fuse_activations(fold_batch_norm(graph))``: what every mode quantizes."""
    check_type("graph", graph, (Graph,), "a refquant.graph.Graph")
    return fuse_activations(fold_batch_norm(graph))


def quantize_model(
    graph: Graph,
    calibration_data=None,
    *,
    mode: str = "static",
    config=None,
    batch_size: int = 32,
    progress=None,
) -> QuantizedModel:
    """Quantize an FP32 graph after folding batch norms and fusing activations.

    Parameters
    ----------
    graph : Graph
        One-input FP32 network (NHWC).
    calibration_data : float ndarray (N, ...) or iterable of batches
        Representative inputs, preprocessed as for the FP32 model; required
        for ``mode="static"``, ignored by the other modes.
    mode : {"static", "dynamic", "weight_only"}
        static: integer weights and activations (runs on the integer engine);
        dynamic: int8 weights, activations quantized per batch at run time;
        weight_only: quantized weights, float activations.
    config : QuantConfig, mapping or None
        Defaults: int8 per-channel symmetric narrow-range weights, int8
        per-tensor asymmetric min-max activations, int32 bias.
    batch_size : int
        Samples per calibration forward pass (memory is bounded by one batch).
    progress : callable(done, total) or None
        Called after each calibration batch.

    Returns
    -------
    QuantizedModel
    """
    check_type("graph", graph, (Graph,), "a refquant.graph.Graph")
    check("mode", mode, OneOf(MODES))
    check("batch_size", batch_size, IntRange(1, None))
    if progress is not None and not callable(progress):
        raise InvalidTypeError(
            f"progress must be a callable(done, total) or None; got {progress!r}"
        )
    cfg = as_config(config)
    prepared = prepare_graph(graph)
    from refquant.ptq.static import check_names

    check_names(prepared, cfg)
    if mode == "static":
        if calibration_data is None:
            raise InvalidTypeError(
                "calibration_data must be a float array (N, ...) or an iterable of "
                "batches for mode='static'; got None"
            )
        from refquant.ptq.static import quantize_static

        return quantize_static(
            prepared, calibration_data, cfg, batch_size=batch_size, progress=progress
        )
    if mode == "dynamic":
        from refquant.ptq.dynamic import quantize_dynamic

        return quantize_dynamic(prepared, cfg)
    from refquant.ptq.weight_only import quantize_weight_only

    return quantize_weight_only(prepared, cfg)


def save_quantized_model(model, path) -> None:
    """Write ``model`` to HDF5; see :func:`refquant.ptq.serialize.save`."""
    from refquant.ptq.serialize import save

    save(model, path)


def load_quantized_model(path) -> QuantizedModel:
    """Read a model written by :func:`save_quantized_model` (validated)."""
    from refquant.ptq.serialize import load

    return load(path)
