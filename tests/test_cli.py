"""The quantize, evaluate and demo commands, run in-process through cli.main.

A tiny Keras-layout .h5 CNN (written with h5py) and .npz data keep every run
fast; one test runs `refquant demo` on the real MNIST assets (skipped when the
cache is empty).  Invalid arguments must exit with 2 and name the argument.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from refquant.cli import main
from refquant.ptq import load_quantized_model


# ---------------------------------------------------------------- fixtures
def layer(cls, name, **config):
    return {"class_name": cls, "config": {"name": name, **config}}


def write_keras_cnn(path, rng):
    """Keras 3 layout: Conv2D(relu) - MaxPool - Flatten - Dense(4) on 6x6x2."""
    layers = [
        layer("InputLayer", "image", batch_shape=[None, 6, 6, 2]),
        layer(
            "Conv2D",
            "conv",
            filters=3,
            kernel_size=[3, 3],
            strides=[1, 1],
            padding="same",
            activation="relu",
            use_bias=True,
            data_format="channels_last",
            dilation_rate=[1, 1],
            groups=1,
        ),
        layer(
            "MaxPooling2D", "pool", pool_size=[2, 2], strides=[2, 2], padding="valid"
        ),
        layer("Flatten", "flat"),
        layer("Dense", "logits", units=4, activation="linear", use_bias=True),
    ]
    weights = {
        "conv": [
            ("kernel", rng.standard_normal((3, 3, 2, 3))),
            ("bias", rng.standard_normal(3) * 0.1),
        ],
        "logits": [
            ("kernel", rng.standard_normal((27, 4))),
            ("bias", rng.standard_normal(4) * 0.1),
        ],
    }
    config = {
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": layers},
    }
    names = [ly["config"]["name"] for ly in layers[1:]]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "3.15.1"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array(names, dtype=object)
        for name in names:
            g = mw.create_group(name)
            wnames = []
            for short, arr in weights.get(name, []):
                wname = f"sequential/{name}/{short}"
                g.create_dataset(wname, data=np.asarray(arr, np.float32))
                wnames.append(wname)
            g.attrs["weight_names"] = (
                np.array(wnames, dtype=object) if wnames else np.zeros(0)
            )
    return str(path)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    model = write_keras_cnn(tmp_path / "cnn.h5", rng)
    x = rng.standard_normal((40, 6, 6, 2)).astype(np.float32)
    y = np.arange(40) % 4
    np.savez(tmp_path / "data.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "labels.npy", y)
    return tmp_path, model


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def exits_2(capsys, *argv) -> str:
    """Run; expect exit 2 (returned or from argparse); return stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    _, err = capsys.readouterr()
    assert code == 2, err
    return err


# ---------------------------------------------------------------- main path
def test_quantize_then_evaluate(files, capsys):
    tmp, model = files
    out = tmp / "cnn-int8.h5"
    code, text, _ = run_cli(
        capsys,
        "quantize",
        model,
        "--data",
        tmp / "data.npz",
        "--calibration-samples",
        20,
        "-o",
        out,
        "-q",
    )
    assert code == 0
    assert "wrote:" in text and str(out) in text
    qm = load_quantized_model(out)
    assert qm.mode == "static"
    assert [n.name for n in qm.nodes] == ["conv", "pool", "flat", "logits"]
    code, text, _ = run_cli(
        capsys,
        "evaluate",
        model,
        out,
        "--data",
        tmp / "data.npz",
        "--out",
        tmp / "rep",
        "-q",
    )
    assert code == 0
    for field in ("size:", "top-1:", "agreement:", "recommendation:", "SQNR per layer"):
        assert field in text, field
    report = json.loads((tmp / "rep" / "report-cnn-int8.json").read_text())
    assert report["num_samples"] == 40 and report["num_classes"] == 4
    assert set(report["layer_sqnr_db"]) == {"conv", "pool", "logits"}
    assert report["sizes"]["fp32_bytes"] == 4 * (3 * 3 * 2 * 3 + 3 + 27 * 4 + 4)
    assert (tmp / "rep" / "report-cnn-int8.md").read_text().startswith("# ")


def test_evaluate_with_separate_labels_and_profile(files, capsys):
    tmp, model = files
    out = tmp / "q.h5"
    assert (
        run_cli(
            capsys,
            "quantize",
            model,
            "--data",
            tmp / "x.npy",
            "-o",
            out,
            "--observer",
            "percentile",
            "-q",
        )[0]
        == 0
    )
    code, text, _ = run_cli(
        capsys,
        "evaluate",
        model,
        out,
        "--data",
        tmp / "x.npy",
        "--labels",
        tmp / "labels.npy",
        "--profile",
        "tflite_reference",
        "--layer-sqnr",
        8,
        "--out",
        tmp / "r",
        "-q",
    )
    assert code == 0 and "profile tflite_reference" in text
    assert "over the first 8 inputs" in text


@pytest.mark.parametrize(
    "extra, mode_text",
    [
        (["--mode", "dynamic"], "dynamic"),
        (
            [
                "--mode",
                "weight_only",
                "--weight-bits",
                "4",
                "--granularity",
                "per_group",
                "--group-size",
                "9",
            ],
            "int4 weights per_group (group 9)",
        ),
        (["--per-tensor"], "int8 weights per_tensor"),
    ],
)
def test_quantize_modes(files, capsys, extra, mode_text):
    tmp, model = files
    out = tmp / "m.h5"
    data = [] if "--mode" in extra else ["--data", tmp / "data.npz"]
    code, text, _ = run_cli(capsys, "quantize", model, *data, *extra, "-o", out)
    assert code == 0 and mode_text in text
    assert load_quantized_model(out).size_bytes() > 0


def test_pth_state_dict_with_arch(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    shapes = {
        "features.0.weight": (2, 1, 3, 3),
        "features.0.bias": (2,),
        "features.3.weight": (3, 2, 3, 3),
        "features.3.bias": (3,),
        "classifier.0.weight": (8, 3 * 7 * 7),
        "classifier.0.bias": (8,),
        "classifier.2.weight": (10, 8),
        "classifier.2.bias": (10,),
    }
    sd = {
        k: torch.tensor(rng.standard_normal(s).astype(np.float32))
        for k, s in shapes.items()
    }
    torch.save(sd, tmp_path / "tiny.pth")
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "digits.npz", images=images, labels=np.arange(30) % 10)
    out = tmp_path / "tiny-int8.h5"
    code, text, _ = run_cli(
        capsys,
        "quantize",
        tmp_path / "tiny.pth",
        "--arch",
        "mnist_cnn",
        "--data",
        tmp_path / "digits.npz",
        "-o",
        out,
        "-q",
    )
    assert code == 0
    argv = [
        "--arch",
        "mnist_cnn",
        "--data",
        tmp_path / "digits.npz",
        "--out",
        tmp_path,
        "-q",
    ]
    code, text, _ = run_cli(capsys, "evaluate", tmp_path / "tiny.pth", out, *argv)
    assert code == 0 and "30 evaluated inputs, 10 classes" in text


@pytest.mark.parametrize("command", ["demo", "quantize", "evaluate"])
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"refquant {command}" in text


# ---------------------------------------------------------------- invalid input
def test_quantize_invalid_arguments(files, capsys):
    tmp, model = files
    data = tmp / "data.npz"
    bad_shape = tmp / "bad.npy"
    np.save(bad_shape, np.zeros((3, 5, 5, 2), np.float32))
    (tmp / "weights.bin").write_bytes(b"0")
    cases = [
        (["quantize", tmp / "missing.h5", "--data", data], "MODEL"),
        (["quantize", tmp / "weights.bin", "--data", data], ".onnx"),
        (["quantize", tmp / "m.pth", "--data", data], "MODEL"),
        (["quantize", model, "--arch", "mnist_cnn", "--data", data], "--arch"),
        (["quantize", model], "--data"),
        (["quantize", model, "--data", tmp / "nope.npz"], "--data"),
        (["quantize", model, "--data", bad_shape], "shape (5, 5, 2)"),
        (["quantize", model, "--data", data, "--weight-bits", 9], "--weight-bits"),
        (
            [
                "quantize",
                model,
                "--data",
                data,
                "--granularity",
                "per_group",
                "--group-size",
                8,
            ],
            "--mode weight_only",
        ),
        (
            ["quantize", model, "--mode", "weight_only", "--granularity", "per_group"],
            "--group-size",
        ),
        (["quantize", model, "--data", data, "--group-size", 8], "--group-size"),
        (
            ["quantize", model, "--data", data, "--calibration-samples", 0],
            "--calibration-samples",
        ),
        (["quantize", model, "--data", data, "--batch-size", 0], "--batch-size"),
        (["quantize", model, "--data", data, "--preprocess", "mnist"], "--preprocess"),
        (["quantize", model, "--data", data, "--mode", "int3"], "--mode"),
        (["quantize", model, "--data", data, "--observer", "magic"], "--observer"),
        (["quantize", model, "--data", data, "-o", tmp / "out.txt"], "--output"),
        (["quantize", model, "--data", data, "--x-key", "pixels"], "x_key"),
    ]
    for argv, name in cases:
        err = exits_2(capsys, *argv)
        assert name in err, (argv, err)


def test_pth_without_arch_names_the_argument(tmp_path, capsys):
    (tmp_path / "m.pth").write_bytes(b"PK")
    err = exits_2(capsys, "quantize", tmp_path / "m.pth", "--data", tmp_path)
    assert "--arch" in err and "mnist_cnn" in err


def test_evaluate_invalid_arguments(files, capsys):
    tmp, model = files
    q = tmp / "q.h5"
    assert (
        run_cli(capsys, "quantize", model, "--data", tmp / "data.npz", "-o", q, "-q")[0]
        == 0
    )
    other = write_keras_cnn(tmp / "other.h5", np.random.default_rng(9))
    with h5py.File(other, "r+") as f:  # same layers, another name for the conv
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][1]["config"]["name"] = "conv_b"
        f.attrs["model_config"] = json.dumps(cfg)
        f["model_weights"].move("conv", "conv_b")
        f["model_weights/conv_b"].move("sequential/conv", "sequential/conv_b")
        f["model_weights/conv_b"].attrs["weight_names"] = np.array(
            ["sequential/conv_b/kernel", "sequential/conv_b/bias"], dtype=object
        )
        f["model_weights"].attrs["layer_names"] = np.array(
            ["conv_b", "pool", "flat", "logits"], dtype=object
        )
    np.save(tmp / "short.npy", np.zeros(5, np.int64))
    (tmp / "afile").write_text("x")
    base = ["evaluate", model, q, "--data", tmp / "data.npz"]
    cases = [
        (
            ["evaluate", model, tmp / "missing.h5", "--data", tmp / "data.npz"],
            "QUANTIZED.h5",
        ),
        (["evaluate", model, model, "--data", tmp / "data.npz"], "QUANTIZED.h5"),
        (["evaluate", other, q, "--data", tmp / "data.npz"], "not in MODEL"),
        ([*base, "--labels", tmp / "short.npy"], "--labels"),
        ([*base, "--profile", "tpu"], "--profile"),
        ([*base, "--layer-sqnr", "some"], "--layer-sqnr"),
        ([*base, "--out", tmp / "afile"], "--out"),
        ([*base, "--class-names", tmp / "afile"], "--class-names"),
        (["evaluate", model, q], "--data"),
    ]
    for argv, name in cases:
        err = exits_2(capsys, *argv)
        assert name in err, (argv, err)


def test_demo_invalid_arguments(tmp_path, capsys):
    for argv, name in [
        (["demo", "--model", "resnet50"], "--model"),
        (["demo", "--calibration", 0, "--out", tmp_path], "--calibration"),
        (
            ["demo", "--model", "mobilenet_v2", "--calibration", 24, "--out", tmp_path],
            "--calibration",
        ),
        (["demo", "--profile", "fast"], "--profile"),
    ]:
        err = exits_2(capsys, *argv)
        assert name in err, (argv, err)


# ---------------------------------------------------------------- real assets
def _cached(*names):
    from refquant import assets

    return all(assets.is_cached(n) for n in names)


@pytest.mark.assets
@pytest.mark.skipif(
    not _cached("mnist_cnn", "mnist_5k", "foolbox_mnist"), reason="assets not cached"
)
def test_demo_on_real_mnist(tmp_path, capsys):
    code, text, err = run_cli(capsys, "demo", "--out", tmp_path, "--layer-sqnr", 125)
    assert code == 0, err
    agreement = float(re.search(r"agreement: ([0-9.]+)%", text).group(1))
    ratio = float(re.search(r"\(([0-9.]+)x smaller\)", text).group(1))
    assert agreement >= 99.8 and ratio >= 3.9
    assert "5020 evaluated inputs" in text and "recommendation: ship" in text
    assert "foolbox 20 (test digits): 20 inputs" in text
    report = json.loads((tmp_path / "report-mnist_cnn.json").read_text())
    assert report["flips"]["agreement"] >= 0.998
    assert report["accuracy_drop_points"] <= 0.1
    assert report["sizes"]["ratio"] >= 3.9
    assert set(report["layer_sqnr_db"]) == {
        "features.0",
        "features.2",
        "features.3",
        "features.5",
        "classifier.0",
        "classifier.2",
    }
    assert (tmp_path / "report-mnist_cnn.md").is_file()
    assert load_quantized_model(tmp_path / "mnist_cnn-int8.h5").mode == "static"
    assert "evaluating:" in err  # progress on stderr


# ---------------------------------------------------------------- budgets
def test_quantize_under_a_size_budget_writes_a_mixed_model(files, capsys):
    from refquant.mixed.h5 import load_mixed_model

    tmp, model = files
    out = tmp / "mixed.h5"
    code, text, _ = run_cli(
        capsys,
        "quantize",
        model,
        "--data",
        tmp / "data.npz",
        "--y-key",
        "y",
        "--size-budget",
        "3x",
        "--sensitivity-samples",
        "16",
        "-o",
        out,
        "-q",
    )
    assert code == 0, text
    budget = int(re.search(r"size <= ([\d,]+) B", text).group(1).replace(",", ""))
    size = int(re.search(r"measured:    bytes = (\d+)", text).group(1))
    assert size <= budget
    mixed = load_mixed_model(out)
    assert mixed.size_bytes() == size
    ratio = float(re.search(r"measured:    ratio = ([0-9.]+)\n", text).group(1))
    assert abs(ratio - mixed.fp32_size_bytes() / size) < 5e-4 * ratio  # 4 digits
    # what the file holds is what was reported (mixed/h5.py: qparams once
    # per tensor in the file, per use in the size)
    from refquant.mixed.h5 import (
        PAYLOAD_OVERHEAD_PER_LAYER as PER_LAYER,
    )
    from refquant.mixed.h5 import (
        PAYLOAD_OVERHEAD_PER_TENSOR as PER_TENSOR,
    )

    payload = []
    with h5py.File(out, "r") as f:
        f.visit(lambda key: payload.append(getattr(f[key], "nbytes", 0)) and None)
    bound = PER_TENSOR * len(mixed.tensor_qparams) + PER_LAYER * len(mixed.layers)
    assert abs(sum(payload) - size) <= bound
    assert sum(payload) <= budget + bound


def test_infeasible_size_budget_exits_1_with_a_plain_message(files, capsys):
    tmp, model = files
    code, _, err = run_cli(
        capsys,
        "quantize",
        model,
        "--data",
        tmp / "data.npz",
        "--size-budget",
        "1000x",
        "-o",
        tmp / "m.h5",
        "-q",
    )
    assert code == 1, err
    assert "no assignment of precisions meets --size-budget 1000x" in err
    assert "the smallest possible is" in err and "HiGHS" not in err
    assert not (tmp / "m.h5").exists()


def test_budget_options_reject_non_static_modes(files, capsys):
    tmp, model = files
    err = exits_2(
        capsys,
        "quantize",
        model,
        "--data",
        tmp / "x.npy",
        "--mode",
        "dynamic",
        "--size-budget",
        "3x",
        "-o",
        tmp / "m.h5",
    )
    assert "--mode" in err and "dynamic" in err


# ---------------------------------------------------------------- file hygiene
@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def test_written_files_get_the_umask_permissions(files, capsys, umask_027):
    from refquant._fileio import write_text_atomic

    tmp, model = files
    write_text_atomic(tmp / "note.txt", "x")
    assert stat.S_IMODE((tmp / "note.txt").stat().st_mode) == 0o640  # 0666 & ~027
    out = tmp / "perm.h5"
    code, _, err = run_cli(
        capsys, "quantize", model, "--data", tmp / "data.npz", "-o", out, "-q"
    )
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    os.chmod(out, 0o604)  # a replaced file keeps its own permissions
    assert (
        run_cli(capsys, "quantize", model, "--data", tmp / "data.npz", "-o", out, "-q")[
            0
        ]
        == 0
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o604


def test_atomic_writes_reject_folders_and_missing_folders(tmp_path):
    from refquant._fileio import write_text_atomic
    from refquant.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="not a folder"):
        write_text_atomic(tmp_path, "x")
    with pytest.raises(InvalidArgumentError, match="existing folder"):
        write_text_atomic(tmp_path / "nope" / "a.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_report_folder_is_ignored_by_git():
    root = Path(__file__).resolve().parents[1]
    lines = (root / ".gitignore").read_text().split()
    assert "/refquant-report/" in lines or "refquant-report/" in lines


# ---------------------------------------------------------------- damaged inputs
def test_damaged_input_files_exit_2_naming_the_argument(files, capsys):
    tmp, model = files
    data = tmp / "data.npz"
    (tmp / "garbage.h5").write_bytes(b"this is not HDF5 at all" * 10)
    raw = open(model, "rb").read()
    (tmp / "trunc.h5").write_bytes(raw[: len(raw) // 2])
    (tmp / "garbage.pth").write_bytes(b"garbage\n" * 8)
    (tmp / "garbage.npy").write_bytes(b"\x93NUMPY")
    (tmp / "garbage.npz").write_bytes(b"PK\x03\x04 broken zip")
    (tmp / "names.txt").write_bytes(b"\xff\xfe\xfa")
    q = tmp / "q.h5"
    assert run_cli(capsys, "quantize", model, "--data", data, "-o", q, "-q")[0] == 0
    ev = ["evaluate", model, q, "--data", data]
    cases = [
        (["quantize", tmp / "garbage.h5", "--data", data], "MODEL"),
        (["quantize", tmp / "trunc.h5", "--data", data], "MODEL"),
        (
            ["quantize", tmp / "garbage.pth", "--arch", "mnist_cnn", "--data", data],
            "MODEL",
        ),
        (["quantize", model, "--data", tmp / "garbage.npy"], "--data"),
        (["quantize", model, "--data", tmp / "garbage.npz"], "--data"),
        (["evaluate", model, tmp / "garbage.h5", "--data", data], "QUANTIZED.h5"),
        ([*ev, "--labels", tmp / "garbage.npy"], "--labels"),
        ([*ev, "--class-names", tmp / "names.txt"], "--class-names"),
        (["conformance", "verify", tmp / "garbage.h5"], "FILE.h5"),
        (["conformance", "verify", tmp / "missing.h5"], "FILE.h5"),
    ]
    for argv, name in cases:
        err = exits_2(capsys, *argv)
        assert f"error: {name}" in err and "Traceback" not in err, (argv, err)


def test_damaged_onnx_file_exits_2(tmp_path, capsys):
    pytest.importorskip("onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07garbage" * 5)
    err = exits_2(capsys, "quantize", tmp_path / "garbage.onnx", "--mode", "dynamic")
    assert "error: MODEL" in err and "garbage.onnx" in err


def test_output_folder_is_rejected_before_any_work(files, capsys, monkeypatch):
    import refquant.commands.quantize as quantize_cmd

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before --output was checked")

    monkeypatch.setattr(quantize_cmd, "load_fp32_model", no_work)
    tmp, model = files
    (tmp / "dir.h5").mkdir()
    data = tmp / "data.npz"
    cases = [
        (["quantize", model, "--data", data, "-o", tmp / "dir.h5"], "--output"),
        (["quantize", model, "--data", data, "-o", tmp / "no" / "m.h5"], "--output"),
        (["conformance", "export", tmp / "dir.h5"], "FILE.h5"),
        (["conformance", "export", tmp / "nodir" / "x.h5"], "FILE.h5"),
    ]
    for argv, name in cases:
        err = exits_2(capsys, *argv)
        assert f"{name} must be" in err and ".tmp" not in err, (argv, err)
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []


def test_a_bug_inside_refquant_still_shows_its_traceback(files, monkeypatch):
    import refquant.io.keras_h5 as keras_h5
    import refquant.ptq as ptq

    tmp, model = files

    def broken_loader(path):
        raise KeyError("a bug, not a bad file")

    monkeypatch.setattr(keras_h5, "load_keras_h5", broken_loader)
    with pytest.raises(KeyError):
        main(["quantize", model, "--data", str(tmp / "data.npz"), "-q"])
    monkeypatch.undo()

    def broken_quantize(*args, **kwargs):
        raise ValueError("a bug after the inputs were read")

    monkeypatch.setattr(ptq, "quantize_model", broken_quantize)
    with pytest.raises(ValueError, match="a bug after"):
        main(["quantize", model, "--data", str(tmp / "data.npz"), "-q"])


# ---------------------------------------------------------------- closed pipes
class ClosedPipe:
    """A standard output whose reader went away (``| head``)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_stdout_exits_quietly_after_saving_the_report(
    files, capsys, monkeypatch
):
    tmp, model = files
    q = tmp / "q.h5"
    assert (
        run_cli(capsys, "quantize", model, "--data", tmp / "data.npz", "-o", q, "-q")[0]
        == 0
    )
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    reports = tmp / "rep"
    argv = ["evaluate", model, q, "--data", tmp / "data.npz", "--out", reports, "-q"]
    assert main([str(a) for a in argv]) == 141
    assert sorted(p.name for p in reports.iterdir()) == ["report-q.json", "report-q.md"]
    assert main(["assets", "list"]) == 141
    assert "Traceback" not in capsys.readouterr().err


def test_closed_stdout_in_a_real_pipe_gives_no_traceback(tmp_path):
    script = (
        "import sys\n"
        "from refquant.cli import main\n"
        "sys.exit(main(['assets', 'list']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "REFQUANT_CACHE": str(tmp_path)},
    )
    proc.stdout.close()  # the reader leaves before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


# ---------------------------------------------------------------- help and docs
def _subparsers():
    from refquant.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, sub.choices


def _shell_commands(text: str) -> list:
    """``refquant ...`` command lines of a help text or README (joined at ``\\``,
    comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("refquant ") and "<" not in line and "..." not in line:
            lines.append(shlex.split(line)[1:])
    return lines


def test_every_option_has_help_and_every_command_has_quiet():
    _, commands = _subparsers()
    for name, parser in commands.items():
        options = [a for a in parser._actions if a.option_strings]
        for action in options:
            assert action.help, (name, action.option_strings)
        if name not in ("assets", "conformance"):
            assert "-q" in parser._option_string_actions, name


def test_help_examples_and_readme_commands_parse(capsys):
    parser, commands = _subparsers()
    root = Path(__file__).resolve().parents[1]
    readme = root.joinpath("README.md").read_text()
    texts = ["\n".join(re.findall(r"```sh\n(.*?)```", readme, re.S))]
    texts += [p.description or "" for p in commands.values()]
    lines = [argv for text in texts for argv in _shell_commands(text)]
    assert any(argv[0] == "quantize" and "--size-budget" in argv for argv in lines)
    for argv in lines:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"documented command does not parse: refquant {argv}")
    assert "`--profile` (the integer" not in readme  # quantize has no --profile
    assert "--profile" not in commands["quantize"].format_help()


def test_flags_are_named_and_ranges_enforced(files, capsys):
    tmp, model = files
    data, x = tmp / "data.npz", tmp / "x.npy"
    q = ["quantize", model, "--data", data, "-o", tmp / "m.h5", "-q"]
    wo = ["quantize", model, "--mode", "weight_only", "--granularity", "per_group"]
    cases = [
        ([*q, "--calibration-samples", 100000], "--calibration-samples", "[1, 40]"),
        ([*wo, "--group-size", 2**21], "--group-size", "[1, 1048576]"),
        ([*q, "--size-budget", "3x", "--batch-size", 0], "--batch-size", "0"),
        ([*q, "--max-drop", -1], "--max-drop", "[0, 100]"),
        ([*q, "--max-drop", 101], "--max-drop", "[0, 100]"),
        ([*q, "--size-budget", "lots"], "--size-budget", "3.5x"),
        ([*q, "--size-budget", "3x", "--precisions", "int9"], "--precisions", "int9"),
        ([*q, "--size-budget", "3x", "--keep-fp16", "nosuchlayer"], "--keep-fp16", ""),
        ([*q, "--size-budget", "3x", "--sensitivity-samples", 0], "--sensitivity", ""),
        (
            ["evaluate", model, tmp / "m.h5", "--data", data, "--layer-sqnr", 0],
            "--layer-sqnr",
            "0",
        ),
        (["assets", "fetch"], "asset names or --all", "neither"),
        (["assets", "fetch", "mnist_cnn", "--all"], "not both", ""),
        (["assets", "list", "mnist_cnn"], "no asset names", ""),
        (
            ["sensitivity", model, "--data", x, "--calibration-samples", -5, "-q"],
            "--calibration-samples",
            "[1, 39]",
        ),
        (["sensitivity", model, "--data", x, "--batch-size", 0], "--batch-size", ""),
        (["sensitivity", model, "--data", x, "--limit", 0], "--limit", ""),
        (["sensitivity", model, "--data", x, "--precisions", "x"], "--precisions", ""),
        (["sensitivity", model, "--data", tmp / "no.npy"], "--data", ""),
        (["sensitivity", "resnet", "--data", x], "MODEL", "mnist_cnn"),
    ]
    for argv, flag, detail in cases:
        err = exits_2(capsys, *argv)
        assert flag in err and detail in err, (argv, err)
        assert not re.search(r"\b(batch_size|max_drop|weight_group_size)\b", err)
    err = exits_2(capsys, *q, "--size-budget", "3x", "--keep-fp16", "nosuchlayer")
    assert "unknown layer 'nosuchlayer'" in err and "conv, logits" in err
    err = exits_2(capsys, "assets", "fetch")
    assert err.startswith("refquant assets: error:") and "not both" not in err


def test_sensitivity_accepts_model_files_like_quantize(files, capsys):
    tmp, model = files
    code, text, err = run_cli(
        capsys,
        "sensitivity",
        model,
        "--data",
        tmp / "x.npy",
        "--labels",
        tmp / "labels.npy",
        "--calibration-samples",
        20,
        "--precisions",
        "int8,int4",
        "--no-reverse",
        "--out",
        tmp / "sens",
        "-q",
    )
    assert code == 0, err
    assert "| conv |" in text and "| logits |" in text and err == ""
    assert (tmp / "sens.md").read_text().strip() == text.strip()
    assert json.loads((tmp / "sens.json").read_text())


# ---------------------------------------------------------------- degenerate
def write_keras_flatten_only(path):
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                layer("InputLayer", "image", batch_shape=[None, 6, 6, 2]),
                layer("Flatten", "flat"),
            ],
        },
    }
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "3.15.1"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array(["flat"], dtype=object)
        mw.create_group("flat").attrs["weight_names"] = np.zeros(0)
    return path


def test_models_without_weighted_layers_are_rejected(files, capsys):
    tmp, _ = files
    model = write_keras_flatten_only(tmp / "flat.h5")
    for argv in (
        ["quantize", model, "--data", tmp / "x.npy", "-o", tmp / "o.h5"],
        ["sensitivity", model, "--data", tmp / "x.npy"],
    ):
        err = exits_2(capsys, *argv)
        assert "MODEL must be a model with at least one Conv2D" in err, err
        assert "0 weighted" in err and "0 B" not in err
    assert not (tmp / "o.h5").exists()


def test_onnx_model_without_weighted_layers_is_rejected(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "add_only",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.ones(4, np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "add.onnx")
    err = exits_2(capsys, "quantize", tmp_path / "add.onnx", "--mode", "dynamic")
    assert "MODEL must be a model with at least one" in err and "0 weighted" in err


def test_sensitivity_damaged_npy_names_the_argument(files, capsys):
    tmp, model = files
    (tmp / "one.npy").write_bytes(b"x")
    for flag in ("--data", "--labels", "--calibration"):
        argv = ["sensitivity", model, "--data", tmp / "x.npy", flag, tmp / "one.npy"]
        err = exits_2(capsys, *argv)
        assert f"error: {flag}" in err and "pickled" not in err, (flag, err)
