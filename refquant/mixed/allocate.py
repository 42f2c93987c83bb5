"""Bit allocation: one precision per layer under a size or an accuracy budget.

A 0/1 integer program over ``x[l, p]`` (layer ``l`` at precision ``p``),
solved by :func:`scipy.optimize.milp` (SciPy is imported only here, when an
allocation runs)::

    sum_p x[l, p] = 1                                   for every layer l
    size budget:  minimize sum noise[l, p] x[l, p]
                  s.t.     sum bytes[l, p] x[l, p] <= budget - floor
    drop budget:  minimize sum bytes[l, p] x[l, p]
                  s.t.     sum drop[l, p] x[l, p] <= max_drop

``noise[l, p] = 10**(-sqnr_db / 10)`` is the output noise power of layer
``l`` alone at ``p`` relative to the signal and ``drop[l, p] = max(0,
100 * (m_fp32 - m))`` the metric drop in points, both measured by
:func:`refquant.mixed.sensitivity.measure_sensitivity`; summing them over
layers is the additive proxy.  The chosen model is then evaluated for real;
when the real drop misses the budget the result says so and the layer with
the largest noise reduction per added byte is raised, one at a time, until
the budget holds or the repair limit is reached.  Spec:
specs/mixed_precision.md, section 5.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from refquant._validation import FloatRange, IntRange, OneOf, check, check_type
from refquant.errors import InvalidArgumentError
from refquant.mixed.layers import PRECISIONS
from refquant.mixed.model import MixedModel, MixedQuantizer
from refquant.mixed.sensitivity import OutputStats, SensitivityResult

__all__ = [
    "Allocation",
    "InfeasibleBudgetError",
    "allocate",
    "evaluate_model",
    "parse_size_budget",
    "solve_allocation",
]

DROP_METRICS = ("agreement", "accuracy")
NOISE_CAP = 1e3  # noise of a layer whose output went non-finite


class InfeasibleBudgetError(InvalidArgumentError):
    """No assignment of the allowed precisions can meet the budget.

    ``smallest`` is the best any assignment reaches: bytes of the smallest
    model (size budget) or points of the smallest estimated drop (drop budget).
    """

    def __init__(self, message: str, smallest=None, fp32_bytes=None):
        super().__init__(message)
        self.smallest = smallest
        self.fp32_bytes = fp32_bytes


def smallest_model(quantizer, candidates=None, overrides=None) -> dict:
    """``{layer: precision}`` of the smallest model the choices allow: per
    layer the allowed precision of fewest bytes (ties: the earlier, wider one
    in :data:`PRECISIONS`)."""
    candidates = tuple(candidates or PRECISIONS)
    overrides = dict(overrides or {})
    out = {}
    for name in quantizer.layers:
        allowed = (overrides[name],) if name in overrides else candidates
        out[name] = min(allowed, key=lambda p: quantizer.layer_bytes(name, p))
    return out


def check_size_feasible(quantizer, nbytes: int, given, candidates, overrides):
    """Raise :class:`InfeasibleBudgetError` when even the smallest model the
    choices allow is larger than ``nbytes``."""
    smallest = quantizer.model(smallest_model(quantizer, candidates, overrides))
    size = smallest.size_bytes()
    if size > nbytes:
        fp32 = quantizer.model("fp32").size_bytes()
        raise InfeasibleBudgetError(
            f"no assignment of precisions meets size_budget={given!r} ({nbytes} "
            f"bytes); the smallest possible is {size} bytes "
            f"({fp32 / size:.2f}x smaller than FP32)",
            smallest=size,
            fp32_bytes=fp32,
        )


def parse_size_budget(budget, fp32_bytes: int) -> int:
    """Bytes of a size budget: an int (bytes) or ``"<r>x"`` (``fp32 / r``,
    floor) or a decimal string of bytes.

    >>> parse_size_budget("4x", 1000), parse_size_budget(300, 1000)
    (250, 300)
    """
    check("fp32_bytes", fp32_bytes, IntRange(1, None))
    if isinstance(budget, str):
        text = budget.strip().lower()
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*x", text)
        if m and float(m.group(1)) > 0:
            return int(fp32_bytes / float(m.group(1)))
        if text.isdigit() and int(text) > 0:
            return int(text)
        raise InvalidArgumentError(
            f"size budget must be bytes (an int > 0) or a compression ratio such "
            f"as '3.5x'; got budget={budget!r}"
        )
    check("size budget", budget, IntRange(1, None), "bytes, or a ratio like '3.5x'")
    return int(budget)


def solve_allocation(cost, sizes, *, size_budget=None, drop=None, drop_budget=None):
    """Solve the 0/1 program; returns the chosen column of each row.

    Parameters
    ----------
    cost : float array (L, P)
        Noise proxy; ``inf`` marks a forbidden choice.
    sizes : int array (L, P)
        Bytes of each choice.
    size_budget : int or None
        Size mode: minimize ``sum cost`` under ``sum sizes <= size_budget``.
    drop, drop_budget : float array (L, P), float
        Drop mode: minimize ``sum sizes`` (ties: less cost) under ``sum drop
        <= drop_budget``.

    Raises InfeasibleBudgetError when no choice meets the budget.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    cost, sizes = np.asarray(cost, np.float64), np.asarray(sizes, np.float64)
    L, P = cost.shape
    allowed = np.isfinite(cost).ravel()
    finite = np.where(np.isfinite(cost), cost, 0.0).ravel()
    one = np.kron(np.eye(L), np.ones(P))  # (L, L*P): one choice per layer
    cons = [LinearConstraint(one, 1, 1)]
    if size_budget is not None:
        c = finite + 1e-12 * sizes.ravel() / max(sizes.max(), 1)
        cons.append(LinearConstraint(sizes.ravel()[None], -np.inf, size_budget))
    else:
        d = np.where(np.isfinite(drop), drop, 0.0).ravel()
        scale = max(finite.max(), 1e-30) * L
        c = sizes.ravel() / max(sizes.max(), 1) + 1e-6 * finite / scale
        cons.append(LinearConstraint(d[None], -np.inf, drop_budget + 1e-9))
    ub = allowed.astype(np.float64)
    res = milp(
        c,
        constraints=cons,
        integrality=np.ones_like(c),
        bounds=Bounds(np.zeros_like(c), ub),
    )
    if res.x is None:  # res.message holds the solver's own wording
        least = int(np.where(np.isfinite(cost), sizes, np.inf).min(1).sum())
        raise InfeasibleBudgetError(
            f"no assignment of precisions meets the budget; the smallest possible "
            f"weighted layers take {least} bytes",
            smallest=least,
        )
    return np.round(res.x).reshape(L, P).argmax(axis=1)


@dataclass
class Allocation:
    """The chosen precisions, what the proxy predicted, what was measured.

    ``measured`` is the real evaluation of ``model`` (the result);
    ``estimated`` only records the proxy; ``met`` says whether the measured
    model meets the budget; ``notes`` explain misses and repairs.
    """

    precisions: dict
    model: MixedModel
    measured: dict
    estimated: dict
    budget: dict
    met: bool
    notes: list = field(default_factory=list)
    repairs: list = field(default_factory=list)

    def counts(self) -> dict:
        out: dict = {}
        for p in self.precisions.values():
            out[p] = out.get(p, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {
            "precisions": self.precisions,
            "counts": self.counts(),
            "measured": self.measured,
            "estimated": self.estimated,
            "budget": self.budget,
            "met": self.met,
            "notes": self.notes,
            "repairs": self.repairs,
        }


def evaluate_model(
    model: MixedModel, data, reference, labels=None, *, profile="exact", batch_size=32
) -> dict:
    """Real metrics of ``model`` against FP32 ``reference`` outputs, its size."""
    check_type("model", model, (MixedModel,), "a MixedModel")
    st = OutputStats(probabilities=False)
    for i in range(0, data.shape[0], batch_size):
        out = model.run(data[i : i + batch_size], profile=profile)
        st.update(
            reference[i : i + batch_size],
            out,
            None if labels is None else labels[i : i + batch_size],
        )
    r = st.result()
    r["bytes"] = model.size_bytes()
    r["ratio"] = model.fp32_size_bytes() / r["bytes"]
    return r


def _tables(quantizer, sens, candidates, overrides, metric):
    layers = quantizer.layers
    P = len(PRECISIONS)
    cost = np.full((len(layers), P), np.inf)
    drop = np.zeros((len(layers), P))
    sizes = np.zeros((len(layers), P), np.int64)
    fp32_metric = 1.0 if metric == "agreement" else sens.fp32["accuracy"]
    for i, name in enumerate(layers):
        allowed = (overrides[name],) if name in overrides else candidates
        for j, p in enumerate(PRECISIONS):
            sizes[i, j] = quantizer.layer_bytes(name, p)
            if p not in allowed:
                continue
            if p == "fp32":
                cost[i, j], drop[i, j] = 0.0, 0.0
                continue
            r = sens.get(name, p)
            s = r["sqnr_db"]
            cost[i, j] = 0.0 if s == math.inf else min(10 ** (-s / 10), NOISE_CAP)
            drop[i, j] = max(0.0, 100 * (fp32_metric - r[metric]))
    return cost, drop, sizes


def _check_args(
    quantizer, sens, size_budget, max_drop, metric, candidates, overrides, labels
):
    check_type("quantizer", quantizer, (MixedQuantizer,), "a MixedQuantizer")
    check_type("sensitivity", sens, (SensitivityResult,), "a SensitivityResult")
    if (size_budget is None) == (max_drop is None):
        raise InvalidArgumentError(
            "give exactly one of size_budget (bytes or '3.5x') and max_drop "
            f"(points); got size_budget={size_budget!r}, max_drop={max_drop!r}"
        )
    if max_drop is not None:
        check("max_drop", max_drop, FloatRange(0.0, 100.0), "points, e.g. 0.5")
    check("metric", metric, OneOf(("auto",) + DROP_METRICS))
    if metric == "accuracy" and (labels is None or sens.fp32["accuracy"] is None):
        raise InvalidArgumentError(
            "metric='accuracy' needs labels (in the sensitivity run and here); "
            "use metric='agreement'"
        )
    for p in candidates:
        check("candidates entry", p, OneOf(PRECISIONS))
        if p != "fp32" and p not in sens.precisions:
            raise InvalidArgumentError(
                f"candidates entry {p!r} was not measured; measured precisions: "
                f"{sens.precisions}"
            )
    check_type("overrides", overrides, (dict,), "a dict layer -> precision")
    quantizer.check_precisions(overrides)


def allocate(
    quantizer,
    sensitivity,
    data,
    labels=None,
    *,
    size_budget=None,
    max_drop=None,
    metric="auto",
    candidates=None,
    overrides=None,
    reference=None,
    profile="exact",
    batch_size=32,
    max_repairs=20,
) -> Allocation:
    """Choose a precision per layer (MILP), evaluate for real, repair if missed.

    Parameters
    ----------
    quantizer : MixedQuantizer
    sensitivity : SensitivityResult
        Measured with the same quantizer (view ``alone``).
    data, labels : evaluation inputs and optional labels (-1: unlabeled)
    size_budget : int or str
        Bytes, or a compression ratio over FP32 such as ``"3.5x"``.
    max_drop : float
        Largest allowed drop of ``metric`` in percentage points.
    metric : {"auto", "agreement", "accuracy"}
        ``auto``: accuracy when labels exist, else agreement with FP32.
    candidates : sequence of str or None
        Precisions the search may use (default: every measured one and fp32).
    overrides : dict layer -> precision
        Layers fixed by hand (e.g. keep some FP16, put others in INT4).
    reference : float ndarray or None
        FP32 outputs of ``data`` (computed when None).
    profile, batch_size : as for :meth:`MixedModel.run`
    max_repairs : int
        Upper bound on greedy repair steps (each one a real evaluation).
    """
    candidates = tuple(candidates or ("fp32", *sensitivity.precisions))
    overrides = dict(overrides or {})
    if metric == "auto":
        metric = (
            "accuracy"
            if labels is not None and sensitivity.fp32["accuracy"] is not None
            else "agreement"
        )
    _check_args(
        quantizer,
        sensitivity,
        size_budget,
        max_drop,
        metric,
        candidates,
        overrides,
        labels,
    )
    check("max_repairs", max_repairs, IntRange(0, 10_000))
    layers = quantizer.layers
    cost, drop, sizes = _tables(quantizer, sensitivity, candidates, overrides, metric)
    floor = quantizer.size_floor()
    if reference is None:
        reference = quantizer.model("fp32").run(data, batch_size=batch_size)
    fp32_eval = _fp32_metric(reference, labels, metric)
    if size_budget is not None:
        fp32_bytes = quantizer.model("fp32").size_bytes()
        nbytes = parse_size_budget(size_budget, fp32_bytes)
        check_size_feasible(quantizer, nbytes, size_budget, candidates, overrides)
        budget = {"kind": "size", "bytes": nbytes, "given": size_budget}
        choice = solve_allocation(cost, sizes, size_budget=nbytes - floor)
    else:
        least = float(np.where(np.isfinite(cost), drop, np.inf).min(1).sum())
        if least > max_drop + 1e-9:
            raise InfeasibleBudgetError(
                f"no assignment of precisions meets max_drop={max_drop!r}; the "
                f"smallest estimated drop is {least:.3f} points",
                smallest=least,
            )
        budget = {"kind": "drop", "metric": metric, "max_drop": float(max_drop)}
        choice = solve_allocation(cost, sizes, drop=drop, drop_budget=max_drop)
    rows = np.arange(len(layers))
    estimated = {
        "layer_bytes": int(sizes[rows, choice].sum()) + floor,
        "noise": float(cost[rows, choice].sum()),
        "drop_points": float(drop[rows, choice].sum()),
    }
    if estimated["noise"] > 0:
        estimated["sqnr_db"] = -10 * math.log10(estimated["noise"])
    prec = {n: PRECISIONS[c] for n, c in zip(layers, choice)}
    model = quantizer.model(prec)
    measured = evaluate_model(
        model, data, reference, labels, profile=profile, batch_size=batch_size
    )
    alloc = Allocation(prec, model, measured, estimated, budget, True)
    _judge(alloc, fp32_eval, metric)
    if budget["kind"] == "drop" and not alloc.met:
        _repair(
            alloc,
            quantizer,
            cost,
            sizes,
            choice,
            data,
            reference,
            labels,
            fp32_eval,
            metric,
            profile,
            batch_size,
            max_repairs,
        )
    return alloc


def _fp32_metric(reference, labels, metric):
    if metric == "agreement":
        return 1.0
    known = np.asarray(labels) >= 0
    return float(np.mean(reference.argmax(1)[known] == np.asarray(labels)[known]))


def _judge(alloc, fp32_eval, metric) -> None:
    b, m = alloc.budget, alloc.measured
    if b["kind"] == "size":
        alloc.met = m["bytes"] <= b["bytes"]
        if not alloc.met:
            alloc.notes.append(f"size {m['bytes']} B exceeds the budget {b['bytes']} B")
        return
    real = 100 * (fp32_eval - m[metric])
    m["drop_points"] = real
    alloc.met = real <= b["max_drop"] + 1e-9
    if not alloc.met:
        alloc.notes.append(
            f"measured {metric} drop {real:.3f} points misses the budget "
            f"{b['max_drop']} (proxy estimate {alloc.estimated['drop_points']:.3f})"
        )


def _repair(
    alloc,
    quantizer,
    cost,
    sizes,
    choice,
    data,
    reference,
    labels,
    fp32_eval,
    metric,
    profile,
    batch_size,
    max_repairs,
) -> None:
    layers = quantizer.layers
    choice = choice.copy()
    for _ in range(max_repairs):
        step = _best_upgrade(cost, sizes, choice)
        if step is None:
            alloc.notes.append("no upgrade left; the budget cannot be met")
            return
        i, j = step
        alloc.repairs.append(
            {"layer": layers[i], "from": PRECISIONS[choice[i]], "to": PRECISIONS[j]}
        )
        choice[i] = j
        prec = {n: PRECISIONS[c] for n, c in zip(layers, choice)}
        model = quantizer.model(prec)
        alloc.precisions, alloc.model = prec, model
        alloc.measured = evaluate_model(
            model, data, reference, labels, profile=profile, batch_size=batch_size
        )
        alloc.repairs[-1]["drop_points"] = 100 * (fp32_eval - alloc.measured[metric])
        _judge(alloc, fp32_eval, metric)
        if alloc.met:
            alloc.notes.append(f"budget met after {len(alloc.repairs)} repair step(s)")
            return
    alloc.notes.append(f"budget still missed after {max_repairs} repair steps")


def _best_upgrade(cost, sizes, choice):
    """``(layer, precision)`` with the largest noise reduction per added byte."""
    best, best_score = None, 0.0
    for i, c in enumerate(choice):
        for j in range(cost.shape[1]):
            gain = cost[i, c] - cost[i, j]
            if not np.isfinite(cost[i, j]) or gain <= 0:
                continue
            score = gain / max(int(sizes[i, j] - sizes[i, c]), 1)
            if score > best_score:
                best, best_score = (i, j), score
    return best
