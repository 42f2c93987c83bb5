"""``refquant sensitivity`` and the budget options for ``refquant quantize``."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from refquant.cli import main
from refquant.errors import InvalidArgumentError
from refquant.mixed.budget import add_budget_arguments, apply_budget, parse_layer_list
from tests.test_mixed import residual_graph


def budget_args(argv):
    p = argparse.ArgumentParser()
    add_budget_arguments(p)
    return p.parse_args(argv)


def test_parse_layer_list():
    assert parse_layer_list(" a, b,,c ") == ["a", "b", "c"]
    assert parse_layer_list("") == []


def test_no_budget_gives_none():
    x = np.zeros((2, 6, 6, 2), np.float32)
    assert apply_budget(budget_args([]), residual_graph(), x) is None


def test_size_budget_with_overrides_runs_for_real():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (10, 6, 6, 2)).astype(np.float32)
    args = budget_args(
        [
            "--size-budget",
            "2x",
            "--keep-fp16",
            "conv1",
            "--force-int4",
            "fc",
            "--sensitivity-samples",
            "4",
        ]
    )
    a = apply_budget(args, residual_graph(), x, calibration_data=x, batch_size=5)
    assert a.precisions["conv1"] == "fp16" and a.precisions["fc"] == "int4"
    assert a.met and a.measured["bytes"] * 2 <= a.model.fp32_size_bytes()
    assert a.measured["count"] == 10


def test_budget_argument_errors():
    x = np.zeros((4, 6, 6, 2), np.float32)
    args = budget_args(["--max-drop", "1", "--keep-fp16", "fc", "--force-int4", "fc"])
    with pytest.raises(InvalidArgumentError, match="both --keep-fp16 and --force"):
        apply_budget(args, residual_graph(), x)
    with pytest.raises(SystemExit):
        budget_args(["--drop-metric", "f1"])


def test_sensitivity_command_bad_model(capsys):
    assert main(["sensitivity", "resnet", "--data", "mnist"]) == 2
    assert "MODEL must be one of" in capsys.readouterr().err


def test_sensitivity_command_bad_data_file(tmp_path, capsys):
    bad = tmp_path / "x.npy"
    bad.write_bytes(b"nope")
    (tmp_path / "m.onnx").write_bytes(b"")
    pytest.importorskip("onnx")
    assert main(["sensitivity", str(tmp_path / "m.onnx"), "--data", str(bad)]) == 2


@pytest.mark.assets
def test_sensitivity_command_on_mnist(tmp_path, capsys):
    pytest.importorskip("refquant.assets")
    from refquant import assets

    try:
        assets.asset_paths("mnist_cnn")
    except Exception:  # noqa: BLE001 - asset not fetched
        pytest.skip("run `refquant assets fetch mnist_cnn mnist_5k` first")
    out = tmp_path / "s"
    rc = main(
        [
            "sensitivity",
            "mnist_cnn",
            "--data",
            "mnist",
            "--limit",
            "50",
            "--calibration-samples",
            "50",
            "--precisions",
            "int8,ternary",
            "--no-reverse",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    md = (tmp_path / "s.md").read_text()
    assert md.count("\n") == 2 + 4  # header, rule, four weighted layers
    assert "classifier.0" in md
