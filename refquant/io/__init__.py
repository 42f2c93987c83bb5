"""Readers and writers for model files.

Submodules load on first use so that ``import refquant.io`` stays NumPy-only:
``torch_pth`` (PyTorch ``.pth`` state dicts through a restricted unpickler),
``safetensors`` and ``keras_h5`` (Keras ``.h5``, needs h5py).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_torch_state_dict": "refquant.io.torch_pth",
    "load_torch_pickle": "refquant.io.torch_pth",
    "load_safetensors": "refquant.io.safetensors",
    "save_safetensors": "refquant.io.safetensors",
    "load_keras_h5": "refquant.io.keras_h5",
}
_SUBMODULES = {"torch_pth", "safetensors", "keras_h5"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"refquant.io.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'refquant.io' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
