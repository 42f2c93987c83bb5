"""Load the committed single-op .tflite fixtures and run them on LiteRT.

Everything the refquant side needs is read back through the LiteRT interpreter
itself (tensor details and ``get_tensor`` with
``experimental_preserve_all_tensors=True``), so no flatbuffer parser is needed:
quantization parameters, weights, bias, paddings and axes come from the model
as LiteRT sees it. Options that are not tensors (strides, padding mode, fused
activation, ...) come from ``manifest.json``, written by
``scripts/make_tflite_fixtures.py`` together with the models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"


def manifest():
    with open(FIXTURE_DIR / "manifest.json", encoding="utf-8") as f:
        return json.load(f)


@dataclass
class TensorInfo:
    """One tensor of the model: name, shape, dtype, qparams and (if constant) data."""

    name: str
    shape: tuple
    dtype: np.dtype
    scales: np.ndarray
    zero_points: np.ndarray
    quantized_dimension: int
    data: np.ndarray | None = None

    @property
    def scale(self):
        """Per-tensor scale as a Python float (the float32 value, exactly)."""
        if self.scales.size != 1:
            raise ValueError(f"{self.name} is per-axis; use .scales")
        return float(self.scales[0])

    @property
    def zero_point(self):
        if self.zero_points.size != 1:
            raise ValueError(f"{self.name} is per-axis; use .zero_points")
        return int(self.zero_points[0])


@dataclass
class LiteRTRun:
    """Result of one live run: the tensors by name and the single output."""

    tensors: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    output: np.ndarray | None = None


def load_inputs(name):
    """The committed inputs and the frozen generation-time output of a fixture."""
    with np.load(FIXTURE_DIR / f"{name}.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    n = sum(1 for k in arrays if k.startswith("input_"))
    return [arrays[f"input_{i}"] for i in range(n)], arrays["expected_0"]


def run_litert(name, inputs):
    """Run fixture ``name`` on LiteRT with the reference kernels (BUILTIN_REF)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_path=str(FIXTURE_DIR / f"{name}.tflite"),
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
        num_threads=1,
    )
    interp.allocate_tensors()
    input_details = interp.get_input_details()
    if len(input_details) != len(inputs):
        raise ValueError(f"{name}: model has {len(input_details)} inputs")
    for detail, value in zip(input_details, inputs):
        interp.set_tensor(detail["index"], value)
    interp.invoke()

    run = LiteRTRun()
    input_indices = [d["index"] for d in input_details]
    for detail in interp.get_tensor_details():
        q = detail["quantization_parameters"]
        info = TensorInfo(
            name=detail["name"],
            shape=tuple(int(d) for d in detail["shape"]),
            dtype=np.dtype(detail["dtype"]),
            scales=np.asarray(q["scales"], dtype=np.float32),
            zero_points=np.asarray(q["zero_points"], dtype=np.int64),
            quantized_dimension=int(q["quantized_dimension"]),
        )
        info.data = np.array(interp.get_tensor(detail["index"]))
        run.tensors[info.name] = info
    run.inputs = [
        run.tensors[d["name"]] for d in input_details if d["index"] in input_indices
    ]
    out_detail = interp.get_output_details()[0]
    run.output = np.array(interp.get_tensor(out_detail["index"]))
    return run
