"""Compare a quantized model with its FP32 original on your data, and report.

Runs MODEL (FP32) and QUANTIZED.h5 (written by `refquant quantize`) on the
inputs of --data, batch by batch, and reports: model sizes, top-1 and top-5
accuracy of both (with labels), per-class accuracy and false positive /
false negative rates with the classes that lost most first, confusion
changes, prediction flips, SQNR per layer and a recommendation (top-1 drop
under 2 points: ship; 2 to 4: mixed precision or QAT; over 4: both).  The
report is printed and saved as Markdown and JSON in --out.

examples:
  refquant evaluate mnist.pth mnist-int8.h5 --arch mnist_cnn --data test.npz
  refquant evaluate model.h5 model.static.h5 --data x.npy --labels y.npy \\
      --profile tflite_reference --out reports/

Labels come from --labels (.npy, .npz or .h5; -1 marks an unlabeled input),
else from the data file (y, labels, ...) or from the class sub-folders of an
image folder.  Without labels the report shows agreement and SQNR only.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from refquant.commands.quantize import (
    Progress,
    add_data_arguments,
    add_model_arguments,
    bad,
    check_batch_size,
    existing_path,
    load_fp32_model,
    load_inputs,
    reading,
    say,
)

DEFAULT_OUT = "refquant-report"


def add_arguments(parser) -> None:
    from refquant.profiles import PROFILES

    add_model_arguments(parser)
    parser.add_argument(
        "quantized",
        metavar="QUANTIZED.h5",
        help="quantized model written by `refquant quantize`",
    )
    add_data_arguments(parser, required=True)
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="true classes (.npy, .npz or .h5), one per input",
    )
    parser.add_argument(
        "--class-names", metavar="FILE", help="text file, one class name per line"
    )
    add_report_arguments(parser, tuple(PROFILES))


def add_report_arguments(parser, profiles, layer_sqnr_default: str = "all") -> None:
    """--profile, --layer-sqnr, --out, --quiet: shared with demo."""
    parser.add_argument(
        "--profile",
        choices=profiles,
        default="exact",
        help="integer numerics to emulate: exact (default, correctly rounded) or "
        "a backend's (tflite_reference, onnxruntime, ...)",
    )
    parser.add_argument(
        "--layer-sqnr",
        metavar="N|all|none",
        default="all",
        help="per-layer SQNR over the first N inputs, all of them or none; "
        f"default: {layer_sqnr_default}.  Capturing every layer is slower than "
        "the plain run",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help=f"folder for the Markdown and JSON reports (default ./{DEFAULT_OUT})",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress lines on stderr"
    )


def parse_layer_sqnr(value: str):
    """``all`` -> True, ``none`` -> False, ``N`` -> N (an int >= 1)."""
    text = str(value).strip().lower()
    if text in ("all", "true"):
        return True
    if text in ("none", "false"):
        return False
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 1:
        raise bad("--layer-sqnr", value, "an int >= 1, all or none")
    return n


def out_folder(value, create: bool = True) -> Path:
    """--out as a folder (created with its parents when ``create``)."""
    out = Path(value)
    if out.exists() and not out.is_dir():
        raise bad("--out", value, "a folder (this is a file)")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise bad("--out", value, f"a folder that can be created ({exc})") from None
    return out


def load_labels(path, n: int) -> np.ndarray:
    """Labels from a file; -1 marks an unlabeled input."""
    from refquant import datasets

    p = existing_path("--labels", path)
    with reading("--labels", p, "a readable .npy, .npz or HDF5 file"):
        x, y = datasets.load_array_data(p)
    y = np.asarray(x if y is None else y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)  # one-hot
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise bad(
            "--labels",
            p,
            f"integer class indices of shape ({n},); got shape "
            f"{y.shape}, dtype {y.dtype}",
        )
    return check_label_count(y, n, "--labels", p)


def check_label_count(y, n: int, argument: str, path) -> np.ndarray:
    if y.shape[0] != n:
        raise bad(
            argument, path, f"one label per input ({n} inputs); got {y.shape[0]} labels"
        )
    if y.size and int(y.min()) < -1:
        raise bad(
            argument,
            path,
            f"class indices >= 0, or -1 for unlabeled; got {int(y.min())}",
        )
    return y.astype(np.int64)


def load_class_names(path) -> list:
    p = existing_path("--class-names", path)
    with reading("--class-names", p, "a UTF-8 text file"):
        text = p.read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines()]
    return [n for n in names if n]


def check_classes(report_classes: int, class_names, path) -> None:
    if class_names is not None and len(class_names) != report_classes:
        raise bad(
            "--class-names",
            path,
            f"one name per model output "
            f"({report_classes}); got {len(class_names)} names",
        )


def load_quantized(path, graph):
    """A QuantizedModel from QUANTIZED.h5, checked against the FP32 graph."""
    from refquant.ptq import load_quantized_model, prepare_graph

    p = existing_path("QUANTIZED.h5", path)
    with reading("QUANTIZED.h5", p, "a model written by `refquant quantize`"):
        qm = load_quantized_model(p)
    prepared = prepare_graph(graph)
    missing = [n.name for n in qm.nodes if n.name not in prepared]
    if missing:
        raise bad(
            "QUANTIZED.h5",
            p,
            f"quantized from MODEL; its layers {missing[:3]} are not in MODEL",
        )
    return qm


def save_report(report, out: Path, stem: str) -> tuple:
    return report.save(out / stem)


def run(args) -> int:
    from refquant.evaluation.model_eval import evaluate_model

    check_batch_size(args.batch_size)
    layer_sqnr = parse_layer_sqnr(args.layer_sqnr)
    out_folder(args.out, create=False)
    graph = load_fp32_model(args.model, args.arch)
    qm = load_quantized(args.quantized, graph)
    x, y = load_inputs(args, graph)
    if args.labels is not None:
        y = load_labels(args.labels, len(x))
    elif y is not None:
        y = check_label_count(np.asarray(y), len(x), "--data", args.data)
    names = None if args.class_names is None else load_class_names(args.class_names)
    out = out_folder(args.out)
    n_out = int(np.asarray(graph.run(x[:1])).shape[-1])
    check_classes(n_out, names, args.class_names)
    if y is not None and y.size and int(y.max()) >= n_out:
        raise bad(
            "--labels" if args.labels else "--data",
            args.labels or args.data,
            f"class indices below {n_out} (the model's outputs); got {int(y.max())}",
        )
    t0 = time.perf_counter()
    say(
        f"evaluating {len(x)} inputs on FP32 and {qm.mode} ({args.profile})", args.quiet
    )
    report = evaluate_model(
        graph,
        qm,
        x,
        y,
        profile=args.profile,
        batch_size=args.batch_size,
        class_names=names,
        layer_sqnr=layer_sqnr,
        progress=Progress("evaluating", quiet=args.quiet),
        title=f"Quantization report: {Path(args.model).name}",
    )
    say(f"evaluated in {time.perf_counter() - t0:.1f} s", args.quiet)
    md, js = save_report(report, out, f"report-{Path(args.quantized).stem}")
    print(report.to_text())
    print(f"saved: {md}\n       {js}")
    return 0
