"""Test support that other backends can reuse: exact oracles, Hypothesis
strategies and assertions.

``refquant.testing.strategies`` imports Hypothesis and is loaded only when
first used; the oracles and assertions need only the standard library and
NumPy.
"""

from __future__ import annotations

import importlib

from refquant.testing.assertions import assert_codes_equal, assert_within_bound

__all__ = ["assert_codes_equal", "assert_within_bound", "oracles", "strategies"]


def __getattr__(name: str):
    if name in ("oracles", "strategies"):
        module = importlib.import_module(f"refquant.testing.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'refquant.testing' has no attribute {name!r}")
