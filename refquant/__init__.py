"""refquant: a pure-NumPy reference framework for neural-network quantization.

Public names are resolved lazily from the module that implements them, so
``import refquant`` imports NumPy alone; SciPy and h5py load only when a name
that needs them is first used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # numerics (issue: foundation)
    "QuantScheme": "refquant.numerics.scheme",
    "QParams": "refquant.numerics.qparams",
    "compute_qparams": "refquant.numerics.qparams",
    "qparams_from_tensor": "refquant.numerics.qparams",
    "quantize": "refquant.numerics.quantize",
    "dequantize": "refquant.numerics.quantize",
    "fake_quantize": "refquant.numerics.quantize",
    "binarize": "refquant.numerics.binary",
    "ternarize": "refquant.numerics.binary",
    "to_float16": "refquant.numerics.floatfmt",
    "to_bfloat16": "refquant.numerics.floatfmt",
    # integer engine
    "get_profile": "refquant.profiles",
    "Profile": "refquant.profiles",
    "PROFILES": "refquant.profiles",
    "overflow_report": "refquant.kernels.overflow",
    # main job
    "evaluate": "refquant.evaluation",
    "evaluate_outputs": "refquant.evaluation",
    "EvaluationReport": "refquant.evaluation",
    "make_observer": "refquant.calibration",
    "Graph": "refquant.graph",
    "load_keras_h5": "refquant.io.keras_h5",
    "quantize_model": "refquant.ptq",
    "QuantizedModel": "refquant.ptq",
    "load_torch_state_dict": "refquant.io.torch_pth",
    "load_safetensors": "refquant.io.safetensors",
    "load_onnx": "refquant.io.onnx_import",
    "export_onnx": "refquant.io.onnx_export",
    "load_quantized_onnx": "refquant.io.onnx_quantized_import",
    "export_corpus": "refquant.conformance",
    "verify_corpus": "refquant.conformance",
    "MixedQuantizer": "refquant.mixed",
    "MixedModel": "refquant.mixed",
}

_SUBMODULES = {
    "numerics",
    "kernels",
    "profiles",
    "testing",
    "errors",
    "calibration",
    "graph",
    "io",
    "ptq",
    "evaluation",
    "assets",
    "datasets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"refquant.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'refquant' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
