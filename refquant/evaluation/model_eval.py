"""Model-level evaluation: run an FP32 graph and its quantized model, then report.

Both models see the same inputs, batch by batch, so memory is bounded by one
batch.  The FP32 side is ``prepare_graph(fp32_model)`` (batch norms folded,
activations fused: the graph that was quantized, whose node names match the
quantized nodes).  Per layer ``L`` the streamed sums

    S[L] = sum over batches of sum(r**2)           (float64)
    E[L] = sum over batches of sum((r - t)**2)     (float64)

with ``r`` the FP32 activation and ``t = (q - zero_point) * scale`` the
dequantized codes of the same tensor give ``sqnr_db[L] = 10 log10(S / E)``,
the value :func:`refquant.evaluation.sqnr_db` gives on the concatenated
tensors up to float64 summation order.  Spec: ``specs/cli.md`` section 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from refquant._validation import IntRange, check, check_type
from refquant.errors import InvalidArgumentError, InvalidTypeError, NonFiniteInputError
from refquant.evaluation.metrics import prediction_flips, sqnr_db
from refquant.evaluation.report import (
    EvaluationReport,
    evaluate_outputs,
    fmt_db,
    md_cell,
)
from refquant.evaluation.size import ModelSize, model_size, stored_tensor

__all__ = [
    "LAYOUT_OPS",
    "ModelComparison",
    "ModelEvaluationReport",
    "compare_models",
    "evaluate_model",
    "graph_size",
]

#: Ops whose output holds the same codes as their input; not listed per layer.
LAYOUT_OPS = frozenset({"Flatten", "Reshape", "Transpose"})


@dataclass
class ModelComparison:
    """Outputs of both models on the same inputs, and the streamed layer SQNR."""

    fp32_logits: np.ndarray
    quant_logits: np.ndarray
    layer_sqnr_db: dict = field(default_factory=dict)
    layer_sqnr_inputs: int = 0


# -- argument checks ------------------------------------------------------------------
def _check_models(fp32_model, quantized_model):
    from refquant.graph.graph import Graph
    from refquant.ptq import QuantizedModel, prepare_graph

    check_type("fp32_model", fp32_model, (Graph,), "a refquant.graph.Graph")
    check_type(
        "quantized_model",
        quantized_model,
        (QuantizedModel,),
        "a refquant.ptq.QuantizedModel",
    )
    prepared = prepare_graph(fp32_model)
    missing = [n.name for n in quantized_model.nodes if n.name not in prepared]
    if missing:
        raise InvalidArgumentError(
            f"quantized_model must be quantized from fp32_model: its layers "
            f"{missing[:3]} are not in prepare_graph(fp32_model)"
        )
    return prepared


def _check_inputs(x) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise InvalidTypeError(
            f"x must be a numpy float array (N, ...) with N >= 1; got x of type "
            f"{type(x).__name__}"
        )
    if x.ndim < 2 or x.shape[0] < 1 or x.dtype.kind != "f":
        raise InvalidArgumentError(
            f"x must be a float array (N, ...) with N >= 1; got dtype {x.dtype}, "
            f"shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise NonFiniteInputError("x must hold finite values; got NaN or inf")
    return x


def _check_labels(labels, n: int):
    """int64 ``(n,)`` labels; -1 marks an unlabeled sample."""
    if labels is None:
        return None
    y = np.asarray(labels)
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise InvalidArgumentError(
            f"labels must be a 1-D integer array of length {n} (-1: unlabeled); "
            f"got labels of shape {y.shape} and dtype {y.dtype}"
        )
    y = y.astype(np.int64)
    if np.any(y < -1):
        raise InvalidArgumentError(
            f"labels must be class indices >= 0, or -1 for unlabeled; got "
            f"labels containing {int(y.min())}"
        )
    return y


def _check_progress(progress):
    if progress is not None and not callable(progress):
        raise InvalidTypeError(
            f"progress must be a callable(done, total) or None; got {progress!r}"
        )


# -- streaming both models ------------------------------------------------------------
def _sqnr_from_sums(signal: float, noise: float) -> float:
    """(5.1) of specs/evaluation.md from the two sums: +inf for zero error."""
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _sqnr_layers(prepared, quantized_model) -> list:
    """Quantized tensors compared with the FP32 activation of the same name."""
    return [
        n.name
        for n in quantized_model.nodes
        if n.op not in LAYOUT_OPS and n.name in prepared
    ]


def compare_models(
    fp32_model,
    quantized_model,
    x,
    *,
    profile="exact",
    batch_size: int = 64,
    layer_sqnr=True,
    progress=None,
) -> ModelComparison:
    """Run both models on ``x`` in batches; outputs and per-layer SQNR.

    Layer SQNR needs a static model (integer activations with qparams); for the
    dynamic and weight-only modes ``layer_sqnr_db`` stays empty.

    Parameters
    ----------
    fp32_model : Graph
        The FP32 network the quantized model came from.
    quantized_model : QuantizedModel
    x : float ndarray (N, ...)
        Preprocessed inputs, batch first.
    profile : str or Profile
        Numerics profile of the integer engine.
    batch_size : int
        Samples per forward pass of each model.
    layer_sqnr : bool or int
        True: stream every layer's SQNR over all inputs (see the module
        docstring); an int ``M >= 1``: over the first ``M`` inputs only
        (capturing every layer is slower than the plain run); False: none.
    progress : callable(done, total) or None
        Called after each batch with the samples done so far.
    """
    from refquant.profiles import get_profile

    prepared = _check_models(fp32_model, quantized_model)
    x = _check_inputs(x)
    check("batch_size", batch_size, IntRange(1, None))
    limit = _sqnr_limit(layer_sqnr, x.shape[0])
    _check_progress(progress)
    prof = get_profile(profile)
    if len(quantized_model.outputs) != 1:
        raise NotImplementedError(
            f"evaluation compares one output tensor; the quantized model has "
            f"{len(quantized_model.outputs)}"
        )
    static = quantized_model.mode == "static"
    names = _sqnr_layers(prepared, quantized_model) if limit and static else []
    limit = limit if names else 0
    sums = {k: [0.0, 0.0] for k in names}  # name -> [signal, noise]
    fp32_parts, quant_parts = [], []
    total = x.shape[0]
    for start in range(0, total, batch_size):
        xb = x[start : start + batch_size]
        cut = min(max(limit - start, 0), xb.shape[0])  # captured inputs
        if cut:
            parts = _run_captured(
                prepared, quantized_model, xb[:cut], prof, names, sums
            )
            fp32_parts.append(parts[0])
            quant_parts.append(parts[1])
        if cut < xb.shape[0]:
            fp32_parts.append(_single(prepared.run(xb[cut:]), "FP32 model"))
            quant_parts.append(quantized_model.run(xb[cut:], profile=prof))
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return ModelComparison(
        fp32_logits=np.concatenate(fp32_parts),
        quant_logits=np.concatenate(quant_parts),
        layer_sqnr_db={k: _sqnr_from_sums(*sums[k]) for k in names},
        layer_sqnr_inputs=limit,
    )


def _sqnr_limit(layer_sqnr, n: int) -> int:
    """Number of leading inputs whose layers are captured."""
    if layer_sqnr is True:
        return n
    if layer_sqnr is False or layer_sqnr is None:
        return 0
    check(
        "layer_sqnr",
        layer_sqnr,
        IntRange(1, None),
        "or True (all inputs) or False (none)",
    )
    return min(int(layer_sqnr), n)


def _single(out, what: str) -> np.ndarray:
    if isinstance(out, tuple):
        raise NotImplementedError(
            f"evaluation compares one output tensor; the {what} has {len(out)}"
        )
    return out


def _run_captured(prepared, qm, xb, prof, names, sums):
    """One batch through both models capturing ``names``; adds to ``sums``."""
    fp32_out, acts = prepared.run(xb, capture=names)
    codes, env = qm.run_codes(xb, profile=prof, capture=True)
    for k in names:  # one entry per layer, each a whole-batch array op
        r = acts[k].astype(np.float64)
        t = qm.tensor_qparams[k].dequantize(env[k])  # float64
        if not np.all(np.isfinite(r)):
            raise NonFiniteInputError(f"the FP32 activation of {k!r} is not finite")
        sums[k][0] += float(np.sum(r * r))
        sums[k][1] += float(np.sum((r - t) ** 2))
    quant_out = qm.tensor_qparams[qm.outputs[0]].dequantize(codes).astype(np.float32)
    return _single(fp32_out, "FP32 model"), quant_out


# -- sizes ---------------------------------------------------------------------------
def graph_size(graph) -> ModelSize:
    """Every float param of ``graph`` as a float32 tensor (weight, bias, other).

    Measured on ``prepare_graph(graph)``: the folded network that a float32
    deployment stores, the same tensors the quantized model stores in integer
    form.
    """
    from refquant.graph.graph import Graph
    from refquant.ptq import prepare_graph

    check_type("graph", graph, (Graph,), "a refquant.graph.Graph")
    tensors = []
    for n in prepare_graph(graph).nodes:
        for k, v in n.params.items():
            kind = k if k in ("weight", "bias") else "other"
            tensors.append(stored_tensor(f"{n.name}.{k}", v, kind, dtype="float32"))
    return model_size(tensors)


# -- the report -----------------------------------------------------------------------
@dataclass
class ModelEvaluationReport(EvaluationReport):
    """An :class:`EvaluationReport` with what only a model run knows.

    ``model``: names, mode and profile.  ``coverage``: all inputs, labeled or
    not (agreement and logit SQNR over every input).  ``subsets``: the same
    numbers for named parts of the inputs.  When some labels are -1, the
    inherited fields (accuracy, per class, flips, confusion) cover the labeled
    inputs only and ``coverage`` covers all.
    """

    model: dict = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)
    subsets: list = field(default_factory=list)

    def to_dict(self) -> dict:
        from refquant.evaluation.report import json_safe

        out = super().to_dict()
        out.update(
            json_safe(
                {
                    "model": self.model,
                    "coverage": self.coverage,
                    "subsets": self.subsets,
                }
            )
        )
        return out

    def to_markdown(self) -> str:
        base = super().to_markdown()
        extra = "\n\n".join(
            s for s in (self._model_markdown(), self._subsets_markdown()) if s
        )
        head, sep, tail = base.partition("\n## ")
        return f"{head.rstrip()}\n\n{extra}\n{sep}{tail}" if sep else base + extra

    def _model_markdown(self) -> str:
        m, c = self.model, self.coverage
        lines = ["## Run", ""]
        for key, label in (
            ("fp32_name", "FP32 model"),
            ("quantized_name", "quantized model"),
            ("mode", "mode"),
            ("profile", "profile"),
        ):
            if key in m:
                lines.append(f"- {label}: {m[key]}")
        if c:
            lines.append(
                f"- inputs: {c['num_inputs']} ({c['num_labeled']} labeled); "
                f"agreement on all: {100 * c['agreement']:.2f}%, logit SQNR on "
                f"all: {fmt_db(c['logit_sqnr_db'])}"
            )
            if c.get("layer_sqnr_inputs"):
                lines.append(
                    f"- SQNR per layer over the first {c['layer_sqnr_inputs']} inputs"
                )
        return "\n".join(lines)

    def _subsets_markdown(self) -> str:
        if not self.subsets:
            return ""
        lines = [
            "## By input set",
            "",
            "| inputs | count | FP32 top-1 | quant top-1 | agreement | logit SQNR |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in self.subsets:
            lines.append(
                f"| {md_cell(r['name'])} | {r['num_inputs']} | "
                f"{_acc_cell(r, 'fp32_correct')} | {_acc_cell(r, 'quant_correct')} "
                f"| {r['agree']}/{r['num_inputs']} ({100 * r['agreement']:.2f}%) | "
                f"{fmt_db(r['logit_sqnr_db'])} |"
            )
        return "\n".join(lines)

    def to_text(self, max_rows: int = 10) -> str:
        """A terminal view: summary, input sets, flips, the worst classes,
        confusion changes and layers (``max_rows`` each); Markdown has more."""
        check("max_rows", max_rows, IntRange(1, None))
        return _text_report(self, max_rows)


def _acc_cell(row: dict, key: str) -> str:
    n = row["num_labeled"]
    if not n:
        return "n/a"
    return f"{row[key]}/{n} ({100 * row[key] / n:.2f}%)"


def _subset_row(name, idx, fp32_logits, quant_logits, labels) -> dict:
    a, b = fp32_logits[idx], quant_logits[idx]
    if a.shape[0] == 0:
        raise InvalidArgumentError(f"subsets[{name!r}] must select >= 1 input; got 0")
    pa, pb = a.argmax(axis=1), b.argmax(axis=1)
    row = {
        "name": str(name),
        "num_inputs": int(a.shape[0]),
        "agree": int((pa == pb).sum()),
        "agreement": float((pa == pb).mean()),
        "logit_sqnr_db": sqnr_db(a, b),
        "num_labeled": 0,
    }
    if labels is not None:
        y = labels[idx]
        known = y >= 0
        row["num_labeled"] = int(known.sum())
        row["fp32_correct"] = int((pa[known] == y[known]).sum())
        row["quant_correct"] = int((pb[known] == y[known]).sum())
    return row


def _subset_index(name, idx, n):
    if isinstance(idx, slice):
        return np.arange(n)[idx]
    arr = np.asarray(idx)
    if arr.dtype == bool and arr.shape == (n,):
        return np.flatnonzero(arr)
    if arr.dtype.kind not in "iu" or arr.ndim != 1 or arr.size == 0:
        raise InvalidArgumentError(
            f"subsets[{name!r}] must be a slice, a boolean mask of length {n} or "
            f"a 1-D array of indices; got {type(idx).__name__}"
        )
    if arr.min() < 0 or arr.max() >= n:
        raise InvalidArgumentError(
            f"subsets[{name!r}] indices must lie in [0, {n - 1}]; got "
            f"[{int(arr.min())}, {int(arr.max())}]"
        )
    return arr


def evaluate_model(
    fp32_model,
    quantized_model,
    x,
    labels=None,
    *,
    profile="exact",
    batch_size: int = 64,
    class_names=None,
    layer_sqnr=True,
    progress=None,
    subsets=None,
    top_k: int = 5,
    title: str = "Quantization report",
) -> ModelEvaluationReport:
    """Run both models on ``x`` and report what quantization changed.

    Sizes are :func:`graph_size` of the FP32 model and
    ``quantized_model.size()``; outputs and layer SQNR come from
    :func:`compare_models`; the rest is :func:`evaluate_outputs` on the labeled
    inputs (all inputs when ``labels`` is None).

    Parameters
    ----------
    fp32_model : Graph
    quantized_model : QuantizedModel
    x : float ndarray (N, ...)
        Preprocessed as for the FP32 model.
    labels : int array (N,), optional
        True classes; -1 marks an input without a label (it counts for
        agreement and SQNR, not for accuracy).
    profile, batch_size, layer_sqnr, progress
        See :func:`compare_models`.
    class_names : sequence of str, optional
    subsets : mapping of str to slice / index array / bool mask, optional
        Named parts of ``x`` reported on their own (count, top-1, agreement,
        logit SQNR).
    top_k : int
        Second accuracy reported (default top-5).
    title : str
    """
    comparison = compare_models(
        fp32_model,
        quantized_model,
        x,
        profile=profile,
        batch_size=batch_size,
        layer_sqnr=layer_sqnr,
        progress=progress,
    )
    a, b = comparison.fp32_logits, comparison.quant_logits
    n = a.shape[0]
    y = _check_labels(labels, n)
    known = np.ones(n, bool) if y is None else y >= 0
    if y is not None and known.any() and int(y.max()) >= a.shape[1]:
        raise InvalidArgumentError(
            f"labels must be class indices below {a.shape[1]} (the model's "
            f"outputs); got a label {int(y.max())}"
        )
    use = known if known.any() else np.ones(n, bool)
    base = evaluate_outputs(
        a[use],
        b[use],
        labels=None if y is None or not known.any() else y[use],
        class_names=class_names,
        layer_sqnr=comparison.layer_sqnr_db,
        sizes=(graph_size(fp32_model), quantized_model.size()),
        top_k=top_k,
        title=title,
    )
    report = ModelEvaluationReport(**vars(base))
    report.model = _model_info(fp32_model, quantized_model, profile)
    flips = prediction_flips(a.argmax(axis=1), b.argmax(axis=1))
    report.coverage = {
        "num_inputs": n,
        "num_labeled": int(known.sum()) if y is not None else 0,
        "agree": flips["agree"],
        "agreement": flips["agreement"],
        "logit_sqnr_db": sqnr_db(a, b),
        "layer_sqnr_inputs": comparison.layer_sqnr_inputs,
    }
    report.subsets = [
        _subset_row(name, _subset_index(name, idx, n), a, b, y)
        for name, idx in dict(subsets or {}).items()
    ]
    return report


def _model_info(fp32_model, qm, profile) -> dict:
    from refquant.profiles import get_profile

    return {
        "fp32_name": fp32_model.name,
        "quantized_name": qm.name,
        "mode": qm.mode,
        "profile": get_profile(profile).name,
    }


# -- terminal rendering ---------------------------------------------------------------
def _text_report(r: ModelEvaluationReport, max_rows: int) -> str:
    lines = [r.title, "=" * len(r.title)]
    lines += _text_summary(r)
    if r.subsets:
        lines += ["", "By input set:"]
        for s in r.subsets:
            acc = ""
            if s["num_labeled"]:
                acc = (
                    f"  top-1 FP32 {_acc_cell(s, 'fp32_correct')}, quantized "
                    f"{_acc_cell(s, 'quant_correct')};"
                )
            lines.append(
                f"  {s['name']}: {s['num_inputs']} inputs;{acc} agreement "
                f"{100 * s['agreement']:.2f}%, logit SQNR {fmt_db(s['logit_sqnr_db'])}"
            )
    lines += _text_flips(r)
    lines += _text_classes(r, max_rows)
    lines += _text_layers(r, max_rows)
    return "\n".join(lines) + "\n"


def _text_summary(r) -> list:
    m = r.model
    out = [
        f"{m.get('fp32_name', 'FP32')} -> {m.get('mode', '?')} quantized, "
        f"profile {m.get('profile', '?')}; {r.num_samples} evaluated inputs, "
        f"{r.num_classes} classes"
    ]
    if r.sizes:
        s = r.sizes
        out.append(
            f"size:      FP32 {s['fp32_bytes']:,} B -> quantized "
            f"{s['quantized_bytes']:,} B ({s['ratio']:.2f}x smaller)"
        )
    if r.accuracy:
        for key, label in (("top1", "top-1"), ("top5", f"top-{r.top_k}")):
            fa, qa = r.accuracy["fp32"][key], r.accuracy["quantized"][key]
            out.append(
                f"{label + ':':<10} FP32 {fa:.2f}% -> quantized {qa:.2f}% "
                f"({qa - fa:+.2f} points)"
            )
    out.append(
        f"agreement: {100 * r.flips['agreement']:.2f}% "
        f"({r.flips['agree']} of {r.flips['num_samples']} top-1 predictions "
        f"unchanged); logit SQNR {fmt_db(r.logit_sqnr_db)}"
    )
    c = r.coverage
    if c and c["num_inputs"] != r.num_samples:
        out.append(
            f"all {c['num_inputs']} inputs (labeled or not): agreement "
            f"{100 * c['agreement']:.2f}%, logit SQNR "
            f"{fmt_db(c['logit_sqnr_db'])}"
        )
    if r.recommendation is None:
        out.append("recommendation: none (no labels, accuracy drop unknown)")
    else:
        out.append(
            f"recommendation: {r.recommendation} (top-1 drop "
            f"{r.accuracy_drop_points:.2f} points; under 2: ship, 2 to 4: "
            f"mixed precision or QAT, over 4: both)"
        )
    return out


def _text_flips(r) -> list:
    f = r.flips
    if "right_to_wrong" not in f:
        return []
    return [
        "",
        f"Prediction flips: {f['disagree']} (right -> wrong "
        f"{f['right_to_wrong']}, wrong -> right {f['wrong_to_right']}, wrong -> "
        f"other wrong {f['wrong_to_other_wrong']})",
    ]


def _pct(v: float) -> str:
    return "  n/a " if v != v else f"{100 * v:6.2f}"


def _text_classes(r, max_rows: int) -> list:
    out = []
    rows = [c for c in (r.per_class or []) if c["support"] > 0]
    if rows:
        out += [
            "",
            f"Per class, the classes that lost most first (top {max_rows}; "
            "accuracy / false positive / false negative rates, %):",
            "  class         n   acc FP32 -> quant   FPR FP32 -> quant   "
            "FNR FP32 -> quant",
        ]
        for c in rows[:max_rows]:
            out.append(
                f"  {str(c['class_name'])[:10]:<10} {c['support']:4d}   "
                f"{_pct(c['fp32_accuracy'])} -> {_pct(c['quant_accuracy'])}   "
                f"{_pct(c['fp32_fpr'])} -> {_pct(c['quant_fpr'])}   "
                f"{_pct(c['fp32_fnr'])} -> {_pct(c['quant_fnr'])}"
            )
    if r.confusion_changes is not None:
        if not r.confusion_changes:
            out += ["", "Confusion changes: none"]
        else:
            out += [
                "",
                "Confusion changes (true -> predicted: FP32 count -> quantized count):",
            ]
            for c in r.confusion_changes[:max_rows]:
                out.append(
                    f"  {c['true_name']} -> {c['predicted_name']}: "
                    f"{c['fp32_count']} -> {c['quant_count']} "
                    f"({c['change']:+d})"
                )
    return out


def _text_layers(r, max_rows: int) -> list:
    if not r.layer_sqnr_db:
        return ["", "SQNR per layer: not available (needs a static model)"]
    items = sorted(r.layer_sqnr_db.items(), key=lambda kv: (kv[1], kv[0]))
    over = r.coverage.get("layer_sqnr_inputs", 0)
    out = [
        "",
        f"SQNR per layer over the first {over} inputs, lowest first "
        f"({min(max_rows, len(items))} of {len(items)}; all in the Markdown "
        "report):",
    ]
    width = max(len(k) for k, _ in items[:max_rows])
    out += [f"  {k:<{width}}  {fmt_db(v)}" for k, v in items[:max_rows]]
    return out
