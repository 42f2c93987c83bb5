"""Size accounting, evaluate()/evaluate_outputs() and the saved report."""

import json
import math

import numpy as np
import pytest

import refquant
from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.evaluation import (
    EvaluationReport,
    ModelSize,
    StoredTensor,
    evaluate,
    evaluate_outputs,
    model_size,
    quantized_tensor,
    size_ratio,
    stored_tensor,
)
from refquant.evaluation.size import container_bits

Y = [0, 0, 0, 1, 1, 2]
A = np.eye(3)[[0, 0, 1, 1, 1, 2]]  # FP32 logits (one-hot)
B = np.eye(3)[[0, 1, 1, 1, 2, 2]]  # quantized logits


# -- size ----------------------------------------------------------------------------
def test_tensor_bytes_by_hand():
    assert StoredTensor("w", 1001, "int4").nbytes == 501  # two codes per byte
    assert StoredTensor("w", 1000, "int8").nbytes == 1000
    assert StoredTensor("w", 3, "int3").nbytes == 2  # 4-bit containers: 12 bits
    assert StoredTensor("w", 9, "uint1").nbytes == 2
    assert StoredTensor("w", 5, "int5").nbytes == 5
    assert StoredTensor("w", 3, "bfloat16").nbytes == 6
    assert StoredTensor("w", 10, "float32").nbytes == 40
    assert StoredTensor("w", 0, "float32").nbytes == 0
    assert [container_bits(b) for b in (1, 2, 3, 4, 7, 8, 9, 16, 17)] == [
        1,
        2,
        4,
        4,
        8,
        8,
        16,
        16,
        32,
    ]


def test_model_size_and_ratio_by_hand():
    # Dense 64 -> 10: FP32 weight 640*4 + bias 10*4 = 2600 bytes.
    fp32 = model_size(
        [
            stored_tensor("fc.weight", np.zeros((10, 64), np.float32)),
            stored_tensor("fc.bias", np.zeros(10, np.float32), kind="bias"),
        ]
    )
    assert fp32.total_bytes == 2600
    # int8 per-channel: 640 codes + 10 float32 scales + 10 int8 zero points
    # + 10 int32 biases = 640 + 40 + 10 + 40 = 730 bytes.
    quant = model_size(
        [
            quantized_tensor("fc.weight", 640, 8, num_params=10),
            stored_tensor("fc.bias", np.zeros(10, np.int32), kind="bias"),
        ]
    )
    assert quant.total_bytes == 730
    assert quant.bytes_by("kind") == {
        "weight": 640,
        "scale": 40,
        "zero_point": 10,
        "bias": 40,
    }
    assert quant.bytes_by("dtype") == {"int8": 650, "float32": 40, "int32": 40}
    assert size_ratio(fp32, quant) == 2600 / 730
    # int4 per-group (group 32): 320 bytes of codes, 20 scales, 20 int4 zps
    int4 = model_size(quantized_tensor("w", 640, 4, num_params=20))
    assert [t.nbytes for t in int4.tensors] == [320, 80, 10]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: StoredTensor("w", 3, "int0"), r"dtype must be one of float64"),
        (lambda: StoredTensor("w", 3, "float8"), r"got dtype='float8'"),
        (lambda: StoredTensor("w", -1, "int8"), r"num_elements must be an int >= 0"),
        (lambda: StoredTensor("w", 1, "int8", kind="code"), r"kind must be one of"),
        (lambda: container_bits(65), r"bits must be an int in \[1, 64\]"),
        (lambda: quantized_tensor("w", 4, 8, num_params=0), r"num_params must be"),
        (lambda: quantized_tensor("w", 4, 40), r"bits must be an int in \[1, 32\]"),
        (lambda: model_size([1]), r"tensors must be StoredTensor entries"),
        (lambda: size_ratio(10, 0), r"quantized must be > 0 bytes"),
        (lambda: size_ratio(-1, 10), r"fp32 must be an int >= 0"),
        (lambda: ModelSize(()).bytes_by("name"), r"field must be one of"),
        (lambda: stored_tensor("w", [1.0], dtype="q8"), r"got dtype='q8'"),
    ],
)
def test_size_invalid_input(call, message):
    with pytest.raises(InvalidArgumentError, match=message):
        call()


# -- evaluate ------------------------------------------------------------------------
def test_evaluate_hand_example():
    report = evaluate(
        A,
        B,
        Y,
        class_names=["cat", "dog", "fox"],
        layer_sqnr={"conv": ([3.0, 4.0], [3.0, 4.5]), "fc": 12.5},
        sizes=(2600, 730),
        top_k=2,
    )
    assert isinstance(report, EvaluationReport)
    assert report.accuracy == {
        "fp32": {"top1": 100 * 5 / 6, "top5": 100.0},
        "quantized": {"top1": 50.0, "top5": 100 * 5 / 6},
    }
    assert report.accuracy_drop_points == 100 * 2 / 6
    assert report.recommendation == "mixed precision and QAT"
    assert [r["class_name"] for r in report.per_class] == ["dog", "cat", "fox"]
    assert report.flips["right_to_wrong"] == 2 and report.flips["agree"] == 4
    assert [
        (r["true_name"], r["predicted_name"]) for r in report.confusion_changes
    ] == [
        ("cat", "cat"),
        ("cat", "dog"),
        ("dog", "dog"),
        ("dog", "fox"),
    ]
    assert report.layer_sqnr_db == {"conv": 20.0, "fc": 12.5}
    assert report.sizes["ratio"] == 2600 / 730
    # logits: signal 6 ones, error 2 rows differing in two entries: 6 / 4
    assert report.logit_sqnr_db == pytest.approx(10 * math.log10(6 / 4), abs=1e-12)


def test_top_level_evaluate_and_evaluate_outputs_agree():
    assert refquant.evaluate is evaluate
    a = evaluate(A, B, Y).to_dict()
    b = evaluate_outputs(A, B, Y).to_dict()
    assert a == b


def test_drop_of_exactly_two_points():
    y = np.zeros(100, dtype=np.int64)
    fp32 = np.eye(2)[(np.arange(100) >= 50).astype(int)]  # 50 correct
    quant = np.eye(2)[(np.arange(100) >= 48).astype(int)]  # 48 correct
    report = evaluate_outputs(fp32, quant, y)
    assert report.accuracy_drop_points == 2.0
    assert report.recommendation == "mixed precision or QAT"


def test_without_labels():
    report = evaluate_outputs(A, B)
    assert report.accuracy is None and report.recommendation is None
    assert report.per_class is None and report.confusion_changes is None
    assert report.flips == {
        "num_samples": 6,
        "agree": 4,
        "disagree": 2,
        "agreement": 4 / 6,
    }
    assert "Recommendation: none" in report.to_markdown()


def test_markdown_and_json_content(tmp_path):
    report = evaluate(
        A, B, Y, class_names=["cat", "d|g", "fox"], layer_sqnr={"same": ([1.0], [1.0])}
    )
    md = report.to_markdown()
    assert "**Recommendation: mixed precision and QAT**" in md
    assert "| top-1 accuracy | 83.33% | 50.00% | -33.33 points |" in md
    assert "d\\|g" in md  # table cells escape '|'
    assert "| same | +inf dB |" in md
    data = json.loads(report.to_json())
    assert data["layer_sqnr_db"] == {"same": "inf"}
    assert data["per_class"][0]["class_name"] == "d|g"
    md_path, json_path = report.save(tmp_path / "report")
    assert md_path.read_text() == md
    assert json.loads(json_path.read_text()) == report.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


def test_nan_rates_become_null_in_json():
    # Every label is class 0: class 0 has no negatives, so its FPR is 0/0 = NaN;
    # class 1 has no support and is left out of the per-class rows.
    report = evaluate_outputs(np.eye(2)[[0, 1]], np.eye(2)[[0, 0]], [0, 0])
    assert [r["class_index"] for r in report.per_class] == [0]
    assert math.isnan(report.per_class[0]["fp32_fpr"])
    text = report.to_json()
    assert "NaN" not in text and "Infinity" not in text
    row = json.loads(text)["per_class"][0]
    assert row["fp32_fpr"] is None and row["change"] == 0.5
    assert "| 0 | 2 | 50.00% | 100.00% | +50.00 | n/a |" in report.to_markdown()


def test_save_leaves_old_file_intact_on_failure(tmp_path, monkeypatch):
    report = evaluate_outputs(A, B, Y)
    md_path, _ = report.save(tmp_path / "r")
    before = md_path.read_text()

    def broken(self):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(EvaluationReport, "to_markdown", broken)
    with pytest.raises(RuntimeError):
        report.save(tmp_path / "r.md")
    assert md_path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"quant_logits": A[:, :2]}, r"quant_logits must have the shape of"),
        ({"fp32_logits": [1.0, 2.0]}, r"fp32_logits must be a non-empty 2-D"),
        ({"fp32_logits": np.full((6, 3), np.nan)}, r"fp32_logits must not contain"),
        ({"labels": [0, 0, 0, 1, 1, 3]}, r"labels must hold class indices"),
        ({"labels": [0, 1]}, r"labels must be a 1-D integer array of length 6"),
        ({"class_names": ["a"]}, r"class_names must have one name per class \(3\)"),
        ({"sizes": {"fp32": 1}}, r"sizes must have exactly the keys"),
        ({"sizes": 5}, r"sizes must be \(fp32, quantized\)"),
        ({"sizes": (10, -1)}, r"sizes\['quantized'\] must be an int >= 0"),
        ({"layer_sqnr": [1.0]}, r"layer_sqnr must be a mapping"),
        ({"layer_sqnr": {"x": "a"}}, r"layer_sqnr\['x'\] must be a number"),
        ({"top_k": 0}, r"top_k must be an int >= 1; got top_k=0"),
    ],
)
def test_evaluate_invalid_input(kwargs, message):
    args = {"fp32_logits": A, "quant_logits": B, "labels": Y, **kwargs}
    with pytest.raises(InvalidArgumentError, match=message):
        evaluate_outputs(**args)


def test_evaluate_rejects_non_string_title():
    with pytest.raises(InvalidTypeError, match=r"title must be a str; got title=3"):
        evaluate_outputs(A, B, Y, title=3)
