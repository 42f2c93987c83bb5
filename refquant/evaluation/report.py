"""The evaluation report: what quantization changed, overall, per class, per layer.

:func:`evaluate_outputs` builds an :class:`EvaluationReport` from FP32 and
quantized logits (plus optional labels, class names, per-layer SQNR and model
sizes); the report renders itself as Markdown and JSON and saves both files
atomically (temporary name, then rename).  Spec: ``specs/evaluation.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refquant._fileio import write_text_atomic
from refquant._validation import IntRange, check, check_type
from refquant.errors import InvalidArgumentError
from refquant.evaluation import metrics
from refquant.evaluation.size import ModelSize, as_bytes, model_size, size_ratio

__all__ = ["EvaluationReport", "evaluate_outputs"]

# Rows shown in Markdown tables; the JSON file always holds every row.
MARKDOWN_ROWS = 20


@dataclass
class EvaluationReport:
    """Everything :func:`evaluate_outputs` measured; plain data, JSON-ready.

    Accuracies are percentages (0-100); ``accuracy_drop_points`` is FP32 top-1
    minus quantized top-1 in percentage points.  Fields that need labels are
    None without them.
    """

    num_samples: int
    num_classes: int
    class_names: list
    top_k: int
    flips: dict
    logit_sqnr_db: float
    accuracy: dict | None = None
    accuracy_drop_points: float | None = None
    recommendation: str | None = None
    per_class: list | None = None
    confusion_changes: list | None = None
    layer_sqnr_db: dict = field(default_factory=dict)
    sizes: dict | None = None
    title: str = "Quantization report"

    # -- JSON -----------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-safe dict: ``+inf``/``-inf`` become ``"inf"``/``"-inf"``, NaN None."""
        raw = {
            "title": self.title,
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "top_k": self.top_k,
            "accuracy": self.accuracy,
            "accuracy_drop_points": self.accuracy_drop_points,
            "recommendation": self.recommendation,
            "flips": self.flips,
            "logit_sqnr_db": self.logit_sqnr_db,
            "layer_sqnr_db": self.layer_sqnr_db,
            "sizes": self.sizes,
            "per_class": self.per_class,
            "confusion_changes": self.confusion_changes,
            "class_names": self.class_names,
        }
        return json_safe(raw)

    def to_json(self) -> str:
        """``json.dumps(self.to_dict(), indent=2)`` (strict JSON, no NaN)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    # -- Markdown -------------------------------------------------------------
    def to_markdown(self) -> str:
        """A human-readable report (tables cut at 20 rows; the JSON has all)."""
        parts = [f"# {self.title}", "", self._summary_markdown()]
        for section in (
            self._size_markdown,
            self._flips_markdown,
            self._per_class_markdown,
            self._confusion_markdown,
            self._layer_markdown,
        ):
            text = section()
            if text:
                parts += ["", text]
        return "\n".join(parts).rstrip() + "\n"

    def _summary_markdown(self) -> str:
        lines = [
            f"{self.num_samples} samples, {self.num_classes} classes.",
            "",
            self._recommendation_line(),
            "",
            "| metric | FP32 | quantized | change |",
            "|---|---:|---:|---:|",
        ]
        if self.accuracy is not None:
            for key, label in (("top1", "top-1"), ("top5", f"top-{self.top_k}")):
                a, b = self.accuracy["fp32"][key], self.accuracy["quantized"][key]
                lines.append(
                    f"| {label} accuracy | {a:.2f}% | {b:.2f}% | {b - a:+.2f} points |"
                )
        lines.append(
            f"| top-1 agreement with FP32 | | {100 * self.flips['agreement']:.2f}% | |"
        )
        lines.append(f"| logit SQNR | | {fmt_db(self.logit_sqnr_db)} | |")
        if self.sizes is not None:
            a, b = self.sizes["fp32_bytes"], self.sizes["quantized_bytes"]
            lines.append(
                f"| model size | {a:,} B | {b:,} B | {self.sizes['ratio']:.2f}x "
                f"smaller |"
            )
        return "\n".join(lines)

    def _recommendation_line(self) -> str:
        if self.recommendation is None:
            return (
                "**Recommendation: none** (no labels, so the accuracy drop is "
                "unknown; see agreement and SQNR)."
            )
        return (
            f"**Recommendation: {self.recommendation}** (top-1 drop "
            f"{self.accuracy_drop_points:.2f} points; under 2: ship, 2 to 4: mixed "
            f"precision or QAT, over 4: both)."
        )

    def _size_markdown(self) -> str:
        if self.sizes is None:
            return ""
        kinds = list(
            dict.fromkeys(
                [
                    *self.sizes["fp32"]["bytes_by_kind"],
                    *self.sizes["quantized"]["bytes_by_kind"],
                ]
            )
        )
        lines = ["## Model size (bytes)", "", "| stored as | FP32 | quantized |"]
        lines.append("|---|---:|---:|")
        for kind in kinds:
            a = self.sizes["fp32"]["bytes_by_kind"].get(kind, 0)
            b = self.sizes["quantized"]["bytes_by_kind"].get(kind, 0)
            lines.append(f"| {kind} | {a:,} | {b:,} |")
        lines.append(
            f"| **total** | **{self.sizes['fp32_bytes']:,}** | "
            f"**{self.sizes['quantized_bytes']:,}** |"
        )
        return "\n".join(lines)

    def _flips_markdown(self) -> str:
        f = self.flips
        lines = [
            "## Prediction flips (FP32 vs quantized top-1)",
            "",
            f"- agree: {f['agree']} of {f['num_samples']} "
            f"({100 * f['agreement']:.2f}%)",
            f"- disagree: {f['disagree']}",
        ]
        if "right_to_wrong" in f:
            lines += [
                f"- right -> wrong: {f['right_to_wrong']}",
                f"- wrong -> right: {f['wrong_to_right']}",
                f"- wrong -> other wrong: {f['wrong_to_other_wrong']}",
            ]
        return "\n".join(lines)

    def _per_class_markdown(self) -> str:
        if not self.per_class:
            return ""
        lines = [
            "## Per class (classes that lost most first)",
            "",
            "| class | support | FP32 acc | quant acc | change | FP32 FPR | "
            "quant FPR | FP32 FNR | quant FNR |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.per_class[:MARKDOWN_ROWS]:
            lines.append(
                f"| {md_cell(r['class_name'])} | {r['support']} | "
                f"{fmt_pct(r['fp32_accuracy'])} | {fmt_pct(r['quant_accuracy'])} | "
                f"{fmt_points(r['change'])} | {fmt_pct(r['fp32_fpr'])} | "
                f"{fmt_pct(r['quant_fpr'])} | {fmt_pct(r['fp32_fnr'])} | "
                f"{fmt_pct(r['quant_fnr'])} |"
            )
        return "\n".join(lines + more_rows(len(self.per_class)))

    def _confusion_markdown(self) -> str:
        if self.confusion_changes is None:
            return ""
        if not self.confusion_changes:
            return "## Confusion changes\n\nNo (true, predicted) count changed."
        lines = [
            "## Confusion changes (largest first)",
            "",
            "| true | predicted | FP32 count | quant count | change |",
            "|---|---|---:|---:|---:|",
        ]
        for r in self.confusion_changes[:MARKDOWN_ROWS]:
            lines.append(
                f"| {md_cell(r['true_name'])} | {md_cell(r['predicted_name'])} | "
                f"{r['fp32_count']} | {r['quant_count']} | {r['change']:+d} |"
            )
        return "\n".join(lines + more_rows(len(self.confusion_changes)))

    def _layer_markdown(self) -> str:
        if not self.layer_sqnr_db:
            return ""
        lines = ["## SQNR per layer", "", "| layer | SQNR |", "|---|---:|"]
        lines += [
            f"| {md_cell(name)} | {fmt_db(v)} |"
            for name, v in self.layer_sqnr_db.items()
        ]
        return "\n".join(lines)

    # -- files ----------------------------------------------------------------
    def save(self, path_stem) -> tuple[Path, Path]:
        """Write ``<path_stem>.md`` and ``<path_stem>.json``; return both paths.

        Each file is written to a temporary name in the same folder and renamed
        over the target, so a reader never sees a partial file.
        """
        stem = Path(path_stem)
        if stem.suffix in (".md", ".json"):
            stem = stem.with_suffix("")
        md_path, json_path = stem.with_suffix(".md"), stem.with_suffix(".json")
        write_text_atomic(md_path, self.to_markdown())
        write_text_atomic(json_path, self.to_json())
        return md_path, json_path


# -- helpers -----------------------------------------------------------------
def json_safe(value):
    """NumPy scalars to Python; ``+-inf`` to ``"inf"``/``"-inf"``; NaN to None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def fmt_db(value: float) -> str:
    if math.isinf(value):
        return "+inf dB" if value > 0 else "-inf dB"
    return f"{value:.2f} dB"


def fmt_pct(fraction: float) -> str:
    return "n/a" if fraction != fraction else f"{100 * fraction:.2f}%"


def fmt_points(fraction: float) -> str:
    return "n/a" if fraction != fraction else f"{100 * fraction:+.2f}"


def md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def more_rows(total: int) -> list:
    if total <= MARKDOWN_ROWS:
        return []
    return ["", f"({total - MARKDOWN_ROWS} more rows in the JSON report.)"]


# -- building the report -----------------------------------------------------
def evaluate_outputs(
    fp32_logits,
    quant_logits,
    labels=None,
    class_names=None,
    layer_sqnr=None,
    sizes=None,
    *,
    top_k: int = 5,
    title: str = "Quantization report",
) -> EvaluationReport:
    """Compare FP32 and quantized outputs and return an :class:`EvaluationReport`.

    Parameters
    ----------
    fp32_logits, quant_logits : array (N, C)
        Outputs of the two models on the same N samples (logits or scores).
    labels : int array (N,), optional
        True classes; enables accuracy, per-class rates, confusion changes, the
        flip directions and the recommendation.
    class_names : sequence of C str, optional
        Names for the report (default ``"0"``, ``"1"``, ...).
    layer_sqnr : mapping, optional
        Layer name to SQNR in dB, or to a ``(float, dequantized)`` pair of
        activations (the SQNR is then computed, see :func:`metrics.sqnr_db`).
    sizes : optional
        ``(fp32, quantized)`` or ``{"fp32": ..., "quantized": ...}``; each an
        int byte count, a :class:`ModelSize` or a list of ``StoredTensor``.
    top_k : int
        The second accuracy reported (``min(top_k, C)``; default top-5).
    """
    check("top_k", top_k, IntRange(1, None))
    check_type("title", title, (str,), "a str")
    a = metrics.as_logits("fp32_logits", fp32_logits)
    b = metrics.as_logits("quant_logits", quant_logits)
    if a.shape != b.shape:
        raise InvalidArgumentError(
            f"quant_logits must have the shape of fp32_logits {a.shape}; got "
            f"quant_logits of shape {b.shape}"
        )
    n, c = a.shape
    names = class_name_list(class_names, c)
    pred_a, pred_b = np.argmax(a, axis=1), np.argmax(b, axis=1)
    report = EvaluationReport(
        num_samples=n,
        num_classes=c,
        class_names=names,
        top_k=min(int(top_k), c),
        flips=metrics.prediction_flips(pred_a, pred_b, labels),
        logit_sqnr_db=metrics.sqnr_db(a, b),
        layer_sqnr_db=layer_sqnr_table(layer_sqnr),
        sizes=size_table(sizes),
        title=str(title),
    )
    if labels is not None:
        add_label_metrics(report, a, b, labels, names, top_k)
    return report


def add_label_metrics(report, a, b, labels, names, top_k) -> None:
    """Fill the fields that need labels: accuracy, per class, confusion changes."""
    y = metrics.as_labels("labels", labels, a.shape[0], a.shape[1])
    c = a.shape[1]
    n = a.shape[0]
    correct = {
        key: (metrics.topk_correct(x, y, 1), metrics.topk_correct(x, y, top_k))
        for key, x in (("fp32", a), ("quantized", b))
    }
    report.accuracy = {  # 100 * count / n: one rounding (nearest, float64)
        key: {"top1": 100 * c1 / n, "top5": 100 * c5 / n}
        for key, (c1, c5) in correct.items()
    }
    drop = correct["fp32"][0] - correct["quantized"][0]
    report.accuracy_drop_points = 100 * drop / n  # exact at the 2 and 4 borders
    pred_a, pred_b = np.argmax(a, axis=1), np.argmax(b, axis=1)
    report.recommendation = metrics.recommendation(report.accuracy_drop_points)
    rows = metrics.class_accuracy_changes(y, pred_a, pred_b, c)
    report.per_class = [
        {"class_name": names[r["class_index"]], **r} for r in rows if r["support"]
    ]
    report.confusion_changes = [
        {"true_name": names[r["true"]], "predicted_name": names[r["predicted"]], **r}
        for r in metrics.confusion_changes(y, pred_a, pred_b, c)
    ]


def class_name_list(class_names, num_classes: int) -> list:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(x) for x in class_names]
    if len(names) != num_classes:
        raise InvalidArgumentError(
            f"class_names must have one name per class ({num_classes}); got "
            f"{len(names)} names"
        )
    return names


def layer_sqnr_table(layer_sqnr) -> dict:
    if layer_sqnr is None:
        return {}
    if not hasattr(layer_sqnr, "items"):
        raise InvalidArgumentError(
            f"layer_sqnr must be a mapping of layer name to dB or to a (float, "
            f"dequantized) pair; got layer_sqnr of type {type(layer_sqnr).__name__}"
        )
    out = {}
    for name, value in layer_sqnr.items():  # one entry per layer
        if isinstance(value, tuple | list):
            out[str(name)] = metrics.layer_sqnr({name: tuple(value)})[str(name)]
        elif isinstance(value, int | float | np.floating | np.integer):
            out[str(name)] = float(value)
        else:
            raise InvalidArgumentError(
                f"layer_sqnr[{name!r}] must be a number (dB) or a (float, "
                f"dequantized) pair; got {type(value).__name__}"
            )
    return out


def size_table(sizes) -> dict | None:
    if sizes is None:
        return None
    if isinstance(sizes, dict):
        if set(sizes) != {"fp32", "quantized"}:
            raise InvalidArgumentError(
                f"sizes must have exactly the keys 'fp32' and 'quantized'; got "
                f"keys {sorted(sizes)}"
            )
        fp32, quant = sizes["fp32"], sizes["quantized"]
    elif isinstance(sizes, tuple | list) and len(sizes) == 2:
        fp32, quant = sizes
    else:
        raise InvalidArgumentError(
            "sizes must be (fp32, quantized) or {'fp32': ..., 'quantized': ...}; "
            f"got sizes of type {type(sizes).__name__}"
        )
    return {
        "fp32_bytes": as_bytes("sizes['fp32']", fp32),
        "quantized_bytes": as_bytes("sizes['quantized']", quant),
        "ratio": size_ratio(fp32, quant),
        "fp32": size_detail(fp32),
        "quantized": size_detail(quant),
    }


def size_detail(size) -> dict:
    if isinstance(size, ModelSize):
        return size.to_dict()
    if isinstance(size, list | tuple):
        return model_size(size).to_dict()
    return {
        "total_bytes": int(size),
        "num_tensors": None,
        "bytes_by_kind": {},
        "bytes_by_dtype": {},
    }
