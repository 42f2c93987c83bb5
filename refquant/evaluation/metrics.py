"""Array-level metrics comparing FP32 and quantized model outputs.

Everything here takes plain arrays (logits ``(N, C)``, integer labels ``(N,)``)
and is independent of any model object.  Accuracies are fractions in [0, 1];
the report converts them to percentage points.  Top-k ties are broken toward
the lower class index (stable sort), the same rule as ``np.argmax``.
Spec: ``specs/evaluation.md``.
"""

from __future__ import annotations

import math

import numpy as np

from refquant._validation import IntRange, check
from refquant.errors import InvalidArgumentError, NonFiniteInputError

__all__ = [
    "class_accuracy_changes",
    "confusion_changes",
    "confusion_matrix",
    "layer_sqnr",
    "per_class_metrics",
    "prediction_flips",
    "recommendation",
    "sqnr_db",
    "top1_predictions",
    "topk_accuracy",
    "topk_correct",
]


# -- argument checks ----------------------------------------------------------------
def as_logits(name: str, logits) -> np.ndarray:
    """``logits`` as a float64 ``(N, C)`` array without NaN, ``N >= 1``, ``C >= 1``."""
    arr = np.asarray(logits)
    if arr.dtype.kind not in "fiu" or arr.ndim != 2 or 0 in arr.shape:
        raise InvalidArgumentError(
            f"{name} must be a non-empty 2-D real array (samples, classes); got "
            f"{name} of shape {arr.shape} and dtype {arr.dtype}"
        )
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise NonFiniteInputError(
            f"{name} must not contain NaN; got {int(np.isnan(arr).sum())} NaN value(s)"
        )
    return arr


def as_labels(name: str, labels, num_samples: int, num_classes: int) -> np.ndarray:
    """``labels`` as an int64 ``(num_samples,)`` array with values in [0, C)."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu" or arr.shape != (num_samples,):
        raise InvalidArgumentError(
            f"{name} must be a 1-D integer array of length {num_samples}; got "
            f"{name} of shape {arr.shape} and dtype {arr.dtype}"
        )
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        raise InvalidArgumentError(
            f"{name} must hold class indices in [0, {num_classes - 1}]; got "
            f"{name}[{int(np.argmax(bad))}]={int(arr[np.argmax(bad)])}"
        )
    return arr


# -- accuracy -------------------------------------------------------------------------
def top1_predictions(logits) -> np.ndarray:
    """``argmax_c logits[n, c]`` per sample (first maximum wins), int64 ``(N,)``.

    >>> top1_predictions([[0.1, 0.9, 0.9], [2.0, 1.0, 0.0]]).tolist()
    [1, 0]
    """
    return np.argmax(as_logits("logits", logits), axis=1).astype(np.int64)


def topk_correct(logits, labels, k: int = 1) -> int:
    """``#{n : labels[n] in topk(logits[n])}`` with ``min(k, C)`` classes kept.

    >>> topk_correct([[1.0, 1.0, 0.0]], [1], k=1)  # tie: class 0 wins
    0
    """
    check("k", k, IntRange(1, None))
    x = as_logits("logits", logits)
    y = as_labels("labels", labels, x.shape[0], x.shape[1])
    k = min(k, x.shape[1])
    order = np.argsort(-x, axis=1, kind="stable")[:, :k]  # (N, k) best first
    return int(np.count_nonzero(np.any(order == y[:, None], axis=1)))


def topk_accuracy(logits, labels, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``min(k, C)`` largest logits.

    ``acc = #{n : labels[n] in topk(logits[n])} / N``; ties go to the lower index.

    >>> topk_accuracy([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4]], [2, 0], k=2)
    1.0
    >>> topk_accuracy([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4]], [2, 0], k=1)
    0.0
    """
    return topk_correct(logits, labels, k) / np.shape(logits)[0]


# -- per class ---------------------------------------------------------------------
def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """``M[t, p] = #{n : labels[n] == t and predictions[n] == p}``, int64 ``(C, C)``.

    >>> confusion_matrix([0, 0, 1], [0, 1, 1], 2).tolist()
    [[1, 1], [0, 1]]
    """
    check("num_classes", num_classes, IntRange(1, None))
    y = np.asarray(labels)
    y = as_labels("labels", y, y.shape[0] if y.ndim == 1 else -1, num_classes)
    p = as_labels("predictions", predictions, y.shape[0], num_classes)
    flat = np.bincount(y * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_metrics(labels, predictions, num_classes: int) -> dict:
    """Per-class support, accuracy (recall), false positive and negative rates.

    With ``M`` the confusion matrix and ``N`` samples: ``support = sum_p M[c, p]``,
    ``accuracy = M[c, c] / support``, ``fnr = 1 - accuracy = (support - M[c, c])
    / support``, ``fpr = (sum_t M[t, c] - M[c, c]) / (N - support)``.  A ratio
    whose denominator is 0 is NaN.

    >>> m = per_class_metrics([0, 0, 1], [0, 1, 1], 2)
    >>> m["accuracy"].tolist(), m["false_positive_rate"].tolist()
    ([0.5, 1.0], [0.0, 0.5])
    """
    cm = confusion_matrix(labels, predictions, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    negatives = cm.sum() - support
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(support > 0, tp / support, np.nan)
        fnr = np.where(support > 0, (support - tp) / support, np.nan)
        fpr = np.where(negatives > 0, (predicted - tp) / negatives, np.nan)
    return {
        "support": support.astype(np.int64),
        "accuracy": accuracy,
        "false_positive_rate": fpr,
        "false_negative_rate": fnr,
    }


def class_accuracy_changes(labels, fp32_predictions, quant_predictions, num_classes):
    """Per-class rows sorted so the classes that lost most come first.

    Each row is a dict with ``class_index``, ``support``, ``fp32_accuracy``,
    ``quant_accuracy``, ``change`` (quantized minus FP32, a fraction),
    ``fp32_fpr``, ``quant_fpr``, ``fp32_fnr``, ``quant_fnr``.  Sort key:
    ``change`` ascending, then lost correct predictions (count) descending, then
    class index; classes without support come last.
    """
    a = per_class_metrics(labels, fp32_predictions, num_classes)
    b = per_class_metrics(labels, quant_predictions, num_classes)
    change = b["accuracy"] - a["accuracy"]
    correct_a = np.diag(confusion_matrix(labels, fp32_predictions, num_classes))
    correct_b = np.diag(confusion_matrix(labels, quant_predictions, num_classes))
    lost = correct_a - correct_b  # (C,) int64 correct predictions lost
    rows = []
    for c in range(num_classes):  # one row per class for the report
        rows.append(
            {
                "class_index": c,
                "support": int(a["support"][c]),
                "fp32_accuracy": float(a["accuracy"][c]),
                "quant_accuracy": float(b["accuracy"][c]),
                "change": float(change[c]),
                "fp32_fpr": float(a["false_positive_rate"][c]),
                "quant_fpr": float(b["false_positive_rate"][c]),
                "fp32_fnr": float(a["false_negative_rate"][c]),
                "quant_fnr": float(b["false_negative_rate"][c]),
            }
        )
    order = sorted(
        range(num_classes),
        key=lambda c: (a["support"][c] == 0, np.nan_to_num(change[c]), -lost[c], c),
    )
    return [rows[c] for c in order]


def confusion_changes(labels, fp32_predictions, quant_predictions, num_classes):
    """The ``(true, predicted)`` cells whose count changed, largest change first.

    Rows: ``{"true": t, "predicted": p, "fp32_count", "quant_count", "change"}``
    with ``change = quant_count - fp32_count != 0``; sorted by ``|change|``
    descending, then ``true``, then ``predicted``.
    """
    a = confusion_matrix(labels, fp32_predictions, num_classes)
    b = confusion_matrix(labels, quant_predictions, num_classes)
    delta = b - a
    t_idx, p_idx = np.nonzero(delta)
    order = np.lexsort((p_idx, t_idx, -np.abs(delta[t_idx, p_idx])))
    return [
        {
            "true": int(t_idx[i]),
            "predicted": int(p_idx[i]),
            "fp32_count": int(a[t_idx[i], p_idx[i]]),
            "quant_count": int(b[t_idx[i], p_idx[i]]),
            "change": int(delta[t_idx[i], p_idx[i]]),
        }
        for i in order
    ]


def prediction_flips(fp32_predictions, quant_predictions, labels=None) -> dict:
    """Agreement of the two top-1 predictions and, with labels, how flips went.

    ``agreement = #{fp32 == quant} / N``.  With labels: ``right_to_wrong`` (FP32
    correct, quantized wrong), ``wrong_to_right``, ``wrong_to_other_wrong`` (both
    wrong, different classes); ``right_to_wrong - wrong_to_right`` equals the
    drop in correct predictions.

    >>> prediction_flips([0, 1, 2, 2], [0, 2, 1, 2], labels=[0, 1, 1, 0])
    ... # doctest: +NORMALIZE_WHITESPACE
    {'num_samples': 4, 'agree': 2, 'disagree': 2, 'agreement': 0.5,
     'right_to_wrong': 1, 'wrong_to_right': 1, 'wrong_to_other_wrong': 0}
    """
    a = np.asarray(fp32_predictions)
    if a.size == 0:
        raise InvalidArgumentError("fp32_predictions must not be empty; got 0 samples")
    n = a.shape[0] if a.ndim == 1 else -1
    big = np.iinfo(np.int64).max
    a = as_labels("fp32_predictions", a, n, big)
    b = as_labels("quant_predictions", quant_predictions, a.shape[0], big)
    same = a == b
    out = {
        "num_samples": int(a.shape[0]),
        "agree": int(same.sum()),
        "disagree": int((~same).sum()),
        "agreement": float(same.mean()),
    }
    if labels is not None:
        y = as_labels("labels", labels, a.shape[0], big)
        ok_a, ok_b = a == y, b == y
        out["right_to_wrong"] = int((ok_a & ~ok_b).sum())
        out["wrong_to_right"] = int((~ok_a & ok_b).sum())
        out["wrong_to_other_wrong"] = int((~ok_a & ~ok_b & ~same).sum())
    return out


# -- signal quality -------------------------------------------------------------------
def sqnr_db(reference, test) -> float:
    """``10 log10(sum(reference**2) / sum((reference - test)**2))`` in float64.

    Zero error gives ``+inf`` (also when both are all zero: a perfect match);
    zero signal with nonzero error gives ``-inf``.

    >>> sqnr_db([3.0, 4.0], [3.0, 4.5])  # 25 / 0.25 = 100 -> 20 dB
    20.0
    >>> sqnr_db([1.0], [1.0])
    inf
    """
    r = np.asarray(reference)
    t = np.asarray(test)
    if r.dtype.kind not in "fiu" or t.dtype.kind not in "fiu":
        raise InvalidArgumentError(
            f"reference and test must be real arrays; got dtypes {r.dtype} and "
            f"{t.dtype}"
        )
    if r.shape != t.shape:
        raise InvalidArgumentError(
            f"reference and test must have the same shape; got {r.shape} and {t.shape}"
        )
    r, t = r.astype(np.float64), t.astype(np.float64)
    if not (np.isfinite(r).all() and np.isfinite(t).all()):
        raise NonFiniteInputError("reference and test must be finite for SQNR")
    noise = float(np.sum((r - t) ** 2))
    signal = float(np.sum(r**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def layer_sqnr(pairs) -> dict:
    """``{name: sqnr_db(float_activation, dequantized_activation)}`` in input order.

    ``pairs`` maps a layer name to a ``(float, dequantized)`` pair of arrays, or
    is an iterable of ``(name, float, dequantized)`` triples.
    """
    items = (
        pairs.items()
        if hasattr(pairs, "items")
        else ((name, (r, t)) for name, r, t in pairs)
    )
    out = {}
    for name, pair in items:  # one entry per layer
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise InvalidArgumentError(
                f"layer_sqnr[{name!r}] must be a (float, dequantized) pair of "
                f"arrays; got {type(pair).__name__}"
            )
        out[str(name)] = sqnr_db(pair[0], pair[1])
    return out


# -- recommendation -------------------------------------------------------------------
def recommendation(accuracy_drop_points: float) -> str:
    """What to do after a top-1 drop of ``accuracy_drop_points`` percentage points.

    ``drop < 2``: ``"ship"``; ``2 <= drop <= 4``: ``"mixed precision or QAT"``;
    ``drop > 4``: ``"mixed precision and QAT"``.  A negative drop (a gain) ships.

    >>> recommendation(1.99), recommendation(2.0), recommendation(4.01)
    ('ship', 'mixed precision or QAT', 'mixed precision and QAT')
    """
    d = float(accuracy_drop_points)
    if d != d:
        raise InvalidArgumentError(
            f"accuracy_drop_points must be a real number; got "
            f"accuracy_drop_points={accuracy_drop_points!r}"
        )
    if d < 2.0:
        return "ship"
    if d <= 4.0:
        return "mixed precision or QAT"
    return "mixed precision and QAT"
