"""Evaluation: size, accuracy, per-class changes, flips, SQNR and the report.

:func:`evaluate_outputs` compares FP32 and quantized outputs (array-level);
:func:`refquant.evaluation.model_eval.evaluate_model` runs both models and
adds per-layer SQNR; :func:`evaluate` is the public entry point to either.
Spec: ``specs/evaluation.md``, ``specs/cli.md``.
"""

from __future__ import annotations

from refquant.evaluation.metrics import (
    class_accuracy_changes,
    confusion_changes,
    confusion_matrix,
    layer_sqnr,
    per_class_metrics,
    prediction_flips,
    recommendation,
    sqnr_db,
    top1_predictions,
    topk_accuracy,
    topk_correct,
)
from refquant.evaluation.report import EvaluationReport, evaluate_outputs
from refquant.evaluation.size import (
    ModelSize,
    StoredTensor,
    model_size,
    quantized_tensor,
    size_ratio,
    stored_tensor,
)

__all__ = [
    "EvaluationReport",
    "ModelSize",
    "StoredTensor",
    "class_accuracy_changes",
    "confusion_changes",
    "confusion_matrix",
    "evaluate",
    "evaluate_outputs",
    "layer_sqnr",
    "model_size",
    "per_class_metrics",
    "prediction_flips",
    "quantized_tensor",
    "recommendation",
    "size_ratio",
    "sqnr_db",
    "stored_tensor",
    "top1_predictions",
    "topk_accuracy",
    "topk_correct",
]


def evaluate(fp32, quantized, *args, **kwargs) -> EvaluationReport:
    """Report what quantization changed, from two models or from their outputs.

    * ``evaluate(fp32_model, quantized_model, x, labels=None, *, profile=
      "exact", batch_size=64, class_names=None, layer_sqnr=True,
      progress=None, subsets=None)`` when ``fp32`` is a Graph: runs both
      models (see :func:`refquant.evaluation.model_eval.evaluate_model`).
    * ``evaluate(fp32_logits, quant_logits, labels=None, class_names=None,
      layer_sqnr=None, sizes=None, **options)`` otherwise: compares outputs
      (see :func:`evaluate_outputs`).

    >>> r = evaluate([[2.0, 1.0], [0.0, 1.0]], [[2.0, 1.5], [1.0, 0.0]], [0, 1])
    >>> r.accuracy_drop_points, r.recommendation, r.flips["right_to_wrong"]
    (50.0, 'mixed precision and QAT', 1)
    """
    from refquant.graph.graph import Graph

    if isinstance(fp32, Graph):
        from refquant.evaluation.model_eval import evaluate_model

        return evaluate_model(fp32, quantized, *args, **kwargs)
    return evaluate_outputs(fp32, quantized, *args, **kwargs)
