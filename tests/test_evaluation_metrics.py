"""Metrics on a tiny hand-computed example, edge cases and invalid input."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant.errors import InvalidArgumentError, NonFiniteInputError
from refquant.evaluation import (
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

# Hand example: 6 samples, 3 classes.
Y = [0, 0, 0, 1, 1, 2]
A = [0, 0, 1, 1, 1, 2]  # FP32 top-1
B = [0, 1, 1, 1, 2, 2]  # quantized top-1


def test_confusion_matrices_by_hand():
    assert confusion_matrix(Y, A, 3).tolist() == [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert confusion_matrix(Y, B, 3).tolist() == [[1, 2, 0], [0, 1, 1], [0, 0, 1]]


def test_per_class_rates_by_hand():
    m = per_class_metrics(Y, B, 3)
    # support [3, 2, 1]; TP [1, 1, 1]; predicted counts [1, 3, 2]
    assert m["support"].tolist() == [3, 2, 1]
    np.testing.assert_allclose(m["accuracy"], [1 / 3, 1 / 2, 1], rtol=1e-15)
    np.testing.assert_allclose(m["false_negative_rate"], [2 / 3, 1 / 2, 0], rtol=1e-15)
    # FP = predicted - TP = [0, 2, 1]; negatives = 6 - support = [3, 4, 5]
    np.testing.assert_allclose(m["false_positive_rate"], [0, 2 / 4, 1 / 5], rtol=1e-15)


def test_per_class_without_support_is_nan():
    m = per_class_metrics([0, 0], [0, 1], 3)
    assert math.isnan(m["accuracy"][2]) and math.isnan(m["false_negative_rate"][2])
    assert m["false_positive_rate"][1] == 0.5  # 1 FP among 2 negatives


def test_classes_that_lost_most_come_first():
    rows = class_accuracy_changes(Y, A, B, 3)
    # changes: class 0: 1/3 - 2/3; class 1: 1/2 - 1; class 2: 0
    assert [r["class_index"] for r in rows] == [1, 0, 2]
    assert rows[0]["change"] == pytest.approx(-0.5, abs=1e-15)
    assert rows[1]["change"] == pytest.approx(-1 / 3, abs=1e-15)
    assert rows[0]["fp32_fpr"] == pytest.approx(1 / 4, abs=1e-15)
    assert rows[0]["quant_fpr"] == pytest.approx(2 / 4, abs=1e-15)


def test_confusion_changes_by_hand():
    rows = confusion_changes(Y, A, B, 3)
    got = [(r["true"], r["predicted"], r["fp32_count"], r["quant_count"]) for r in rows]
    assert got == [(0, 0, 2, 1), (0, 1, 1, 2), (1, 1, 2, 1), (1, 2, 0, 1)]
    assert [r["change"] for r in rows] == [-1, 1, -1, 1]
    assert confusion_changes(Y, A, A, 3) == []


def test_confusion_changes_sorted_by_size():
    y = [0, 0, 0, 1]
    rows = confusion_changes(y, [0, 0, 0, 1], [1, 1, 0, 0], 2)
    assert [(r["true"], r["predicted"], r["change"]) for r in rows] == [
        (0, 0, -2),
        (0, 1, 2),
        (1, 0, 1),
        (1, 1, -1),
    ]


def test_prediction_flips_by_hand():
    f = prediction_flips(A, B, labels=Y)
    assert f == {
        "num_samples": 6,
        "agree": 4,
        "disagree": 2,
        "agreement": 4 / 6,
        "right_to_wrong": 2,
        "wrong_to_right": 0,
        "wrong_to_other_wrong": 0,
    }
    g = prediction_flips([1, 2, 0], [2, 1, 0], labels=[0, 1, 0])
    assert (g["right_to_wrong"], g["wrong_to_right"], g["wrong_to_other_wrong"]) == (
        0,
        1,
        1,
    )
    assert "right_to_wrong" not in prediction_flips(A, B)


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    )
)
def test_flips_account_for_accuracy_change(rows):
    y, a, b = (list(c) for c in zip(*rows))
    f = prediction_flips(a, b, labels=y)
    correct_a = sum(p == t for p, t in zip(a, y))
    correct_b = sum(p == t for p, t in zip(b, y))
    assert f["right_to_wrong"] - f["wrong_to_right"] == correct_a - correct_b
    assert f["agree"] + f["disagree"] == len(y)
    changes = confusion_changes(y, a, b, 4)
    assert sum(r["change"] for r in changes) == 0


def test_topk_with_ties_by_hand():
    logits = np.eye(3)[A]  # one-hot: ties among the zeros go to the lower index
    assert topk_correct(logits, Y, 1) == 5
    assert topk_correct(logits, Y, 2) == 6
    quant = np.eye(3)[B]
    assert topk_correct(quant, Y, 1) == 3
    assert topk_correct(quant, Y, 2) == 5  # sample 4: top-2 (2, 0), label 1
    assert topk_accuracy(quant, Y, 5) == 1.0  # k > C keeps all classes
    assert topk_accuracy([[1.0, 1.0, 0.0]], [1], 1) == 0.0
    assert top1_predictions([[1.0, 1.0, 0.0]]).tolist() == [0]


def test_sqnr_by_hand_and_special_cases():
    assert sqnr_db([3.0, 4.0], [3.0, 4.5]) == 20.0  # 25 / 0.25
    assert sqnr_db([1.0, 0.0], [0.0, 0.0]) == 0.0
    assert sqnr_db([1.0, 2.0], [1.0, 2.0]) == math.inf
    assert sqnr_db([0.0, 0.0], [0.0, 0.0]) == math.inf
    assert sqnr_db([0.0, 0.0], [0.0, 1e-3]) == -math.inf
    assert sqnr_db(np.int8([10, -10]), np.int8([9, -10])) == pytest.approx(
        10 * math.log10(200), abs=1e-12
    )
    got = layer_sqnr({"a": ([3.0, 4.0], [3.0, 4.5]), "b": ([1.0], [1.0])})
    assert got == {"a": 20.0, "b": math.inf}
    assert layer_sqnr([("c", [1.0, 0.0], [0.0, 0.0])]) == {"c": 0.0}


def test_recommendation_borders():
    assert recommendation(-3.0) == "ship"
    assert recommendation(1.999) == "ship"
    assert recommendation(2.0) == "mixed precision or QAT"
    assert recommendation(4.0) == "mixed precision or QAT"
    assert recommendation(4.001) == "mixed precision and QAT"


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: topk_accuracy([1.0, 2.0], [0]), InvalidArgumentError, "logits must"),
        (lambda: topk_accuracy([[np.nan, 1.0]], [0]), NonFiniteInputError, "NaN"),
        (
            lambda: topk_accuracy([[1.0, 2.0]], [2]),
            InvalidArgumentError,
            r"labels must hold class indices in \[0, 1\]; got labels\[0\]=2",
        ),
        (
            lambda: topk_accuracy([[1.0, 2.0]], [0, 1]),
            InvalidArgumentError,
            "labels must be a 1-D integer array of length 1",
        ),
        (
            lambda: topk_accuracy([[1.0, 2.0]], [0], k=0),
            InvalidArgumentError,
            r"k must be an int >= 1; got k=0",
        ),
        (lambda: topk_correct([[1.0]], [0.5]), InvalidArgumentError, "integer"),
        (lambda: top1_predictions([["a"]]), InvalidArgumentError, "logits must"),
        (
            lambda: confusion_matrix([0], [3], 2),
            InvalidArgumentError,
            "predictions must hold class indices",
        ),
        (
            lambda: confusion_matrix([0], [0], 0),
            InvalidArgumentError,
            "num_classes must be an int >= 1",
        ),
        (
            lambda: per_class_metrics([0], [0, 1], 2),
            InvalidArgumentError,
            "predictions must be a 1-D integer array of length 1",
        ),
        (
            lambda: class_accuracy_changes([0], [0], [5], 2),
            InvalidArgumentError,
            "predictions must hold",
        ),
        (
            lambda: confusion_changes([0], [9], [0], 2),
            InvalidArgumentError,
            "predictions must hold",
        ),
        (
            lambda: prediction_flips([0, 1], [0]),
            InvalidArgumentError,
            "quant_predictions must be a 1-D integer array of length 2",
        ),
        (lambda: prediction_flips([], []), InvalidArgumentError, "must not be empty"),
        (lambda: sqnr_db([1.0], [1.0, 2.0]), InvalidArgumentError, "same shape"),
        (lambda: sqnr_db(["a"], ["b"]), InvalidArgumentError, "real arrays"),
        (lambda: sqnr_db([np.inf], [1.0]), NonFiniteInputError, "finite"),
        (
            lambda: layer_sqnr({"x": [1.0]}),
            InvalidArgumentError,
            r"layer_sqnr\['x'\] must be a \(float, dequantized\) pair",
        ),
        (
            lambda: recommendation(float("nan")),
            InvalidArgumentError,
            "accuracy_drop_points must be a real number",
        ),
    ],
)
def test_invalid_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
