"""Model-level evaluation: both models streamed over batches, layer SQNR, report.

Expected values are hand computations (exactly representable inputs give zero
error, sizes from specs/evaluation.md section 6) or the whole-array formula
``sqnr_db`` of specs/evaluation.md (5.1) applied to the concatenated tensors,
against which the streamed sums are compared with a stated bound.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refquant import evaluate
from refquant.errors import InvalidArgumentError, InvalidTypeError, NonFiniteInputError
from refquant.evaluation import EvaluationReport, sqnr_db
from refquant.evaluation.model_eval import (
    ModelEvaluationReport,
    compare_models,
    evaluate_model,
    graph_size,
)
from refquant.graph import sequential
from refquant.ptq import prepare_graph, quantize_model


def identity_model():
    """Dense(eye(3)): with inputs on the quantization grid nothing is lost."""
    g = sequential([("Dense", {"weight": np.eye(3, dtype=np.float32)}, {}, "fc")])
    # calibration range [-2, 1.984375] = [-128, 127] / 64: scale 1/64, zero
    # point 0; weight codes 127 at scale 1/127, so the multiplier is
    # (1/64) (1/127) / (1/64) and acc = 127 k requantizes to k exactly.
    # Inputs k / 64 are exact in float32, so every stage is exact.
    cal = np.float32([[-2.0, 1.984375, 0.0], [1.984375, -2.0, 0.0]])
    return g, quantize_model(g, cal)


def grid_inputs(qm):
    assert qm.tensor_qparams["input"].scale == 1 / 64
    k = np.array([[40, 2, -3], [1, 90, 0], [5, 6, 100], [-50, -60, -10]])
    return (k / 64).astype(np.float32), k


def conv_model(rng):
    layers = [
        (
            "Conv2D",
            {
                "weight": rng.standard_normal((4, 3, 3, 2)).astype(np.float32),
                "bias": rng.standard_normal(4).astype(np.float32),
            },
            {"padding": 1},
            "conv",
        ),
        ("ReLU", {}, {}, "relu"),
        ("MaxPool", {}, {"pool_size": 2}, "pool"),
        ("Flatten", {}, {}, "flat"),
        (
            "Dense",
            {
                "weight": rng.standard_normal((5, 64)).astype(np.float32) * 0.2,
                "bias": np.zeros(5, np.float32),
            },
            {},
            "fc",
        ),
    ]
    g = sequential(layers, name="tiny_cnn")
    x = rng.standard_normal((23, 8, 8, 2)).astype(np.float32)
    return g, quantize_model(g, x[:12], batch_size=5), x


# ------------------------------------------------------------------ exact cases
def test_exact_inputs_give_infinite_sqnr_and_full_agreement():
    g, qm = identity_model()
    x, k = grid_inputs(qm)
    labels = np.argmax(k, axis=1)  # [0, 1, 2, 2]: all correct by construction
    r = evaluate_model(g, qm, x, labels, batch_size=3)
    assert r.layer_sqnr_db == {"fc": math.inf}
    assert r.logit_sqnr_db == math.inf
    assert r.flips["agreement"] == 1.0 and r.flips["disagree"] == 0
    assert r.accuracy["fp32"]["top1"] == 100.0
    assert r.accuracy_drop_points == 0.0 and r.recommendation == "ship"


def test_unlabeled_inputs_count_for_agreement_only():
    g, qm = identity_model()
    x, k = grid_inputs(qm)
    # predictions are [0, 1, 2, 2]; labels: right, wrong, unlabeled, right
    labels = np.array([0, 0, -1, 2])
    r = evaluate_model(g, qm, x, labels, layer_sqnr=False)
    assert r.num_samples == 3  # the labeled ones
    assert r.accuracy["fp32"]["top1"] == pytest.approx(200 / 3, abs=1e-9)
    assert r.coverage == {
        "num_inputs": 4,
        "num_labeled": 3,
        "agree": 4,
        "agreement": 1.0,
        "logit_sqnr_db": math.inf,
        "layer_sqnr_inputs": 0,
    }
    assert r.layer_sqnr_db == {}


def test_sizes_are_counted_by_hand():
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    g = sequential([("Dense", {"weight": w, "bias": np.ones(3, np.float32)}, {}, "fc")])
    # FP32: 12 weights + 3 biases, 4 bytes each = 60 bytes.
    assert graph_size(g).total_bytes == 60
    assert graph_size(g).bytes_by("kind") == {"weight": 48, "bias": 12}
    qm = quantize_model(g, np.float32([[0, 1, 2, 3], [-1, 0, 1, 0]]))
    # int8 codes 12 B + 3 float32 scales 12 B + 3 int8 zero points 3 B + int32
    # bias 12 B + (scale 4 B + zero point 1 B) for "input" and "fc" = 49 B.
    r = evaluate_model(g, qm, np.float32([[1, 2, 3, 4]]))
    assert (r.sizes["fp32_bytes"], r.sizes["quantized_bytes"]) == (60, 49)
    assert r.sizes["ratio"] == 60 / 49


# ------------------------------------------------------------------ streaming
def full_array_oracle(g, qm, x, names, batch_size):
    """sqnr_db (5.1) on the concatenated tensors.

    The float executor runs in the same batches (float32 GEMM blocking can
    change the last bit with the batch size); integer codes do not depend on
    batching.
    """
    _, acts = prepare_graph(g).run(x, capture=names, batch_size=batch_size)
    _, codes = qm.run_codes(x, capture=True)
    return {
        k: sqnr_db(acts[k], qm.tensor_qparams[k].dequantize(codes[k])) for k in names
    }


@pytest.mark.parametrize("batch_size", [1, 4, 23, 100])
def test_streamed_layer_sqnr_matches_whole_tensors(batch_size):
    g, qm, x = conv_model(np.random.default_rng(3))
    c = compare_models(g, qm, x, batch_size=batch_size)
    assert list(c.layer_sqnr_db) == ["conv", "pool", "fc"]  # relu fused, flat skipped
    want = full_array_oracle(g, qm, x, ["conv", "pool", "fc"], batch_size)
    for k, v in want.items():  # float64 sums in another order: 1e-9 dB bound
        assert abs(c.layer_sqnr_db[k] - v) <= 1e-9, k
    np.testing.assert_array_equal(c.quant_logits, qm.run(x))
    want_fp32 = prepare_graph(g).run(x, batch_size=batch_size)
    np.testing.assert_array_equal(c.fp32_logits, want_fp32)


def test_layer_sqnr_over_first_inputs_only():
    g, qm, x = conv_model(np.random.default_rng(4))
    c = compare_models(g, qm, x, batch_size=4, layer_sqnr=7)
    assert c.layer_sqnr_inputs == 7
    want = full_array_oracle(g, qm, x[:7], ["conv", "pool", "fc"], 4)
    for k, v in want.items():
        assert abs(c.layer_sqnr_db[k] - v) <= 1e-9, k
    np.testing.assert_array_equal(c.quant_logits, qm.run(x))  # all 23 outputs


def test_progress_reports_every_batch():
    g, qm, x = conv_model(np.random.default_rng(5))
    calls = []
    compare_models(
        g, qm, x[:5], batch_size=2, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_dynamic_model_has_no_layer_sqnr():
    g, _, x = conv_model(np.random.default_rng(6))
    qm = quantize_model(g, mode="dynamic")
    r = evaluate_model(g, qm, x, np.zeros(len(x), np.int64))
    assert r.layer_sqnr_db == {} and r.model["mode"] == "dynamic"
    assert "not available" in r.to_text()


# ------------------------------------------------------------------ report
def test_report_sections_subsets_and_json():
    g, qm, x = conv_model(np.random.default_rng(7))
    y = np.arange(len(x)) % 5
    r = evaluate_model(
        g,
        qm,
        x,
        y,
        subsets={"first": slice(0, 10), "odd": np.arange(1, 23, 2)},
        title="T",
    )
    assert isinstance(r, ModelEvaluationReport)
    rows = {s["name"]: s for s in r.subsets}
    assert (rows["first"]["num_inputs"], rows["odd"]["num_inputs"]) == (10, 11)
    assert rows["first"]["num_labeled"] == 10
    md = r.to_markdown()
    for heading in (
        "# T",
        "## Run",
        "## By input set",
        "## Model size",
        "## Prediction flips",
        "## Per class",
        "## SQNR per layer",
    ):
        assert heading in md, heading
    data = json.loads(r.to_json())
    assert data["model"]["fp32_name"] == "tiny_cnn"
    assert data["coverage"]["num_inputs"] == 23
    assert [s["name"] for s in data["subsets"]] == ["first", "odd"]
    text = r.to_text(max_rows=2)
    assert "size:" in text and "recommendation:" in text


def test_evaluate_dispatches_on_the_first_argument():
    g, qm = identity_model()
    x, _ = grid_inputs(qm)
    assert isinstance(evaluate(g, qm, x), ModelEvaluationReport)
    r = evaluate([[2.0, 1.0]], [[2.0, 1.5]])
    assert type(r) is EvaluationReport


# ------------------------------------------------------------------ invalid input
def test_invalid_arguments():
    g, qm = identity_model()
    x, _ = grid_inputs(qm)
    other = sequential([("Dense", {"weight": np.eye(3, dtype=np.float32)}, {}, "z")])
    cases = [
        (InvalidTypeError, "fp32_model", lambda: evaluate_model(x, qm, x)),
        (InvalidTypeError, "quantized_model", lambda: evaluate_model(g, g, x)),
        (InvalidArgumentError, "quantized from", lambda: evaluate_model(other, qm, x)),
        (InvalidTypeError, "x must", lambda: evaluate_model(g, qm, x.tolist())),
        (
            InvalidArgumentError,
            "float array",
            lambda: evaluate_model(g, qm, x.astype(np.int32)),
        ),
        (
            NonFiniteInputError,
            "finite",
            lambda: evaluate_model(g, qm, np.full((1, 3), np.nan, np.float32)),
        ),
        (
            InvalidArgumentError,
            "length 4",
            lambda: evaluate_model(g, qm, x, np.zeros(3, np.int64)),
        ),
        (
            InvalidArgumentError,
            "-1 for unlabeled",
            lambda: evaluate_model(g, qm, x, np.array([0, 1, -2, 0])),
        ),
        (
            InvalidArgumentError,
            "below 3",
            lambda: evaluate_model(g, qm, x, np.array([0, 1, 3, 0])),
        ),
        (
            InvalidArgumentError,
            "batch_size",
            lambda: evaluate_model(g, qm, x, batch_size=0),
        ),
        (
            InvalidArgumentError,
            "layer_sqnr",
            lambda: evaluate_model(g, qm, x, layer_sqnr=0),
        ),
        (
            InvalidTypeError,
            "progress",
            lambda: evaluate_model(g, qm, x, progress="yes"),
        ),
        (
            InvalidArgumentError,
            r"subsets\['s'\] indices",
            lambda: evaluate_model(g, qm, x, subsets={"s": np.array([0, 9])}),
        ),
        (
            InvalidArgumentError,
            r"subsets\['e'\] must",
            lambda: evaluate_model(g, qm, x, subsets={"e": slice(0, 0)}),
        ),
        (
            InvalidArgumentError,
            "max_rows",
            lambda: evaluate_model(g, qm, x).to_text(max_rows=0),
        ),
        (InvalidTypeError, "graph", lambda: graph_size(qm)),
    ]
    for exc, text, call in cases:
        with pytest.raises(exc, match=text):
            call()
