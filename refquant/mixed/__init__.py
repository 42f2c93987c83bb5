"""Mixed precision: per-layer sensitivity, bit allocation, Pareto front.

>>> import numpy as np
>>> from refquant.graph import sequential
>>> g = sequential([("Dense", {"weight": np.eye(2, dtype=np.float32)}, {})])
>>> mq = MixedQuantizer(g, np.float32([[1.0, -1.0], [0.5, 0.25]]))
>>> mq.model("int8").run(np.float32([[1.0, -1.0]])).round(2).tolist()
[[1.0, -1.0]]

Spec: specs/mixed_precision.md.  SciPy (``scipy.optimize.milp``) is imported
only when an allocation runs.
"""

from __future__ import annotations

from refquant.mixed.layers import PRECISIONS, MixedLayer
from refquant.mixed.model import MixedModel, MixedQuantizer, Trace

__all__ = ["PRECISIONS", "MixedLayer", "MixedModel", "MixedQuantizer", "Trace"]
