"""Pareto front of size against quality, from a sweep of size budgets.

Each budget is allocated by :func:`refquant.mixed.allocate.allocate` and the
chosen model evaluated for real; the uniform references (FP32, FP16, INT8,
INT4 weight-only) are evaluated beside them.  A point is on the front when
no other point is at most as large and strictly better (higher agreement,
then higher SQNR), or strictly smaller and at least as good.  Spec:
specs/mixed_precision.md, section 6.
"""

from __future__ import annotations

import numpy as np

from refquant._validation import check_type
from refquant.errors import InvalidArgumentError
from refquant.mixed.allocate import allocate, evaluate_model
from refquant.mixed.model import MixedQuantizer

__all__ = ["UNIFORM_MARKERS", "mark_front", "pareto_sweep"]

#: Uniform references evaluated beside the sweep.
UNIFORM_MARKERS = ("fp32", "fp16", "int8", "int4")


def mark_front(points: list, key: str = "agreement") -> list:
    """Set ``point["on_front"]``: not dominated in (smaller bytes, larger
    ``key``, larger ``sqnr_db``)."""
    for p in points:
        p["on_front"] = not any(_dominates(q, p, key) for q in points if q is not p)
    return points


def _dominates(q, p, key) -> bool:
    qa, pa = (q[key], q["sqnr_db"]), (p[key], p["sqnr_db"])
    no_worse = q["bytes"] <= p["bytes"] and qa >= pa
    better = q["bytes"] < p["bytes"] or qa > pa
    return no_worse and better


def pareto_sweep(
    quantizer,
    sensitivity,
    data,
    labels=None,
    *,
    ratios=None,
    reference=None,
    candidates=None,
    overrides=None,
    profile="exact",
    batch_size=32,
    markers=UNIFORM_MARKERS,
    progress=None,
) -> list:
    """Evaluate a mixed model at each compression ratio and the uniform markers.

    Parameters
    ----------
    ratios : sequence of float
        Compression ratios over FP32 (e.g. ``[2, 3, 4, 5, 6]``); default:
        eight ratios from 1.5x to the smallest model's ratio * 0.98.
    markers : sequence of str
        Uniform precisions to evaluate as reference points.
    progress : callable(done, total) or None

    Returns
    -------
    list of dict
        One point per evaluation: ``label``, ``kind`` ("uniform" or "mixed"),
        ``bytes``, ``ratio``, ``agreement``, ``accuracy``, ``sqnr_db``, ``kl``,
        ``counts`` (layers per precision), ``on_front``.
    """
    check_type("quantizer", quantizer, (MixedQuantizer,), "a MixedQuantizer")
    if reference is None:
        reference = quantizer.model("fp32").run(data, batch_size=batch_size)
    fp32_bytes = quantizer.model("fp32").size_bytes()
    if ratios is None:
        cands = candidates or ("fp32", *sensitivity.precisions)
        smallest = quantizer.size_floor() + sum(
            min(quantizer.layer_bytes(n, p) for p in cands) for n in quantizer.layers
        )
        top = 0.98 * fp32_bytes / smallest
        ratios = list(np.geomspace(1.5, max(top, 1.6), 8))
    ratios = [float(r) for r in ratios]
    for r in ratios:
        if not r > 1.0:
            raise InvalidArgumentError(
                f"ratios must be compression ratios > 1; got ratio={r!r}"
            )
    points, total = [], len(markers) + len(ratios)
    for p in markers:
        m = quantizer.model(p)
        r = evaluate_model(
            m, data, reference, labels, profile=profile, batch_size=batch_size
        )
        points.append(
            {
                "label": f"uniform {p}",
                "kind": "uniform",
                "counts": {p: len(quantizer.layers)},
                **r,
            }
        )
        _tick(progress, len(points), total)
    for ratio in ratios:
        a = allocate(
            quantizer,
            sensitivity,
            data,
            labels,
            size_budget=f"{ratio}x",
            candidates=candidates,
            overrides=overrides,
            reference=reference,
            profile=profile,
            batch_size=batch_size,
        )
        points.append(
            {
                "label": f"mixed <= {ratio:.2f}x",
                "kind": "mixed",
                "counts": a.counts(),
                "precisions": a.precisions,
                **a.measured,
            }
        )
        _tick(progress, len(points), total)
    return mark_front(points)


def _tick(progress, done, total):
    if progress is not None:
        progress(done, total)
