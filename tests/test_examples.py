"""The examples run on the real weights and print what they promise."""

import importlib.util
from pathlib import Path

import pytest

from refquant import assets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.assets
def test_weight_schemes_example_orders_schemes_by_precision(capsys):
    if not assets.is_cached("mnist_cnn"):
        pytest.skip("run `python -m refquant.assets fetch mnist_cnn` first")
    example = _load("weight_schemes_on_real_weights")
    assert example.main([]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        parts = line.split()
        if line.startswith("classifier.0.weight"):
            rows[" ".join(parts[1:-2])] = float(parts[-2])
    # more bits and finer granularity never lose SQNR on a trained weight
    assert rows["fp16"] > rows["bf16"] > rows["int8 per-channel"]
    assert (
        rows["int8 per-channel"] > rows["int8 per-tensor"] > rows["int4 per-group 32"]
    )
    assert rows["int4 per-group 32"] > rows["int4 per-channel"] > rows["ternary"]
    assert rows["ternary"] > rows["binary"] > 0


def test_weight_schemes_example_rejects_unknown_asset(capsys):
    example = _load("weight_schemes_on_real_weights")
    with pytest.raises(SystemExit) as exc:
        example.main(["--asset", "resnet"])
    assert exc.value.code == 2
    assert "resnet" in capsys.readouterr().err
