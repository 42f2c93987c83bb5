"""Quantize a trained FP32 model and write it as a refquant HDF5 file.

MODEL is a PyTorch state dict (.pth/.pt, give --arch), a Keras .h5 file or an
ONNX model (.onnx, needs the onnx package).  --data holds a few hundred
representative inputs: a .npy or .npz file, an HDF5 file or a folder of
images (sub-folders are classes).  Batch-norms are folded, activations fused,
activation ranges calibrated on --data, and the result runs on refquant's
integer engine (mode static) or quantizes activations at run time (dynamic)
or keeps them in float (weight_only).

examples:
  refquant quantize mnist.pth --arch mnist_cnn --data digits.npz -o mnist-int8.h5
  refquant quantize model.h5 --data calib.npy --observer entropy
  refquant quantize model.onnx --mode weight_only --weight-bits 4 \\
      --granularity per_group --group-size 32 -o model-int4.h5
  refquant quantize mnist.pth --arch mnist_cnn --data digits.npz \\
      --y-key y --size-budget 5x -o mnist-mixed.h5

With --size-budget or --max-drop a precision is chosen per layer (mixed
precision: FP16, BF16, INT16, INT8, INT4, ternary, binary) from measured
sensitivities, then the chosen model is evaluated for real on --data; a
missed budget is reported and the command exits 1.

Inputs must be shaped and scaled as the FP32 model expects (NHWC for images),
unless --preprocess says how (mnist, imagenet, unit); with --arch the matching
preprocessing is applied to uint8 images automatically.  Then run
`refquant evaluate MODEL OUT.h5 --data ...` to see what quantization changed.
"""

from __future__ import annotations

import contextlib
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from refquant.errors import InvalidArgumentError, RefquantError

ARCHS = ("mnist_cnn", "mobilenet_v2")
PREPROCESS = ("auto", "none", "unit", "mnist", "imagenet")
PTH_SUFFIXES = (".pth", ".pt")
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
#: Input shape (without the batch axis) of each built-in architecture.
ARCH_INPUT_SHAPES = {"mnist_cnn": (28, 28, 1), "mobilenet_v2": (224, 224, 3)}


# ---------------------------------------------------------------- progress
class Progress:
    """Progress lines on stderr: ``label: done/total`` (overwritten on a tty)."""

    def __init__(self, label: str, stream=None, quiet: bool = False):
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        self.start = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        tenth = 10 * done // max(total, 1)
        if not self.tty and tenth == self._last and done < total:
            return  # on a pipe or a file: one line per tenth
        self._last = tenth
        secs = time.perf_counter() - self.start
        end = "\n" if (done >= total or not self.tty) else ""
        text = f"{self.label}: {done}/{total} ({secs:.1f} s)"
        print(("\r" if self.tty else "") + text, end=end, file=self.stream, flush=True)


def say(text: str, quiet: bool = False) -> None:
    """One status line on stderr."""
    if not quiet:
        print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- arguments
def add_model_arguments(parser) -> None:
    """MODEL, --arch: shared by quantize and evaluate."""
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="FP32 model: .pth/.pt state dict (with --arch), Keras .h5 or .onnx",
    )
    parser.add_argument(
        "--arch",
        choices=ARCHS,
        help="architecture of a .pth state dict (required for .pth files)",
    )


def add_data_arguments(parser, required: bool) -> None:
    """--data, --x-key, --y-key, --preprocess, --batch-size."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="FILE|DIR",
        required=required,
        help=".npy, .npz, .h5/.hdf5 file, or a folder of images (sub-folders are "
        "classes)",
    )
    g.add_argument(
        "--x-key",
        help="array of inputs in an .npz/.h5 file (default: "
        "x, images, data, inputs, ... or the only array)",
    )
    g.add_argument(
        "--y-key",
        help="array of labels in an .npz/.h5 file (default: y, labels, targets, ...)",
    )
    g.add_argument(
        "--preprocess",
        choices=PREPROCESS,
        default="auto",
        help="how to turn the data into model inputs: none (as stored, cast to "
        "float32), unit (x / 255), mnist ((x/255 - 0.1307) / 0.3081), imagenet "
        "(resize 256, crop 224, mean/std); auto (default): mnist or imagenet for "
        "uint8 data with --arch, else none",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="inputs per forward pass (default 32; memory grows with it)",
    )


def add_quant_arguments(parser) -> None:
    """--mode and the weight / activation settings (a QuantConfig)."""
    from refquant.calibration import OBSERVERS

    g = parser.add_argument_group("quantization")
    g.add_argument(
        "--mode",
        choices=("static", "dynamic", "weight_only"),
        default="static",
        help="static (default): integer weights and activations, calibrated on "
        "--data; dynamic: int8 weights, activations quantized per batch at run "
        "time; weight_only: quantized weights, float activations",
    )
    g.add_argument(
        "--weight-bits",
        type=int,
        default=8,
        help="weight code width in [2, 8] (default 8)",
    )
    g.add_argument(
        "--granularity",
        choices=("per_channel", "per_tensor", "per_group"),
        default=None,
        help="weight scales per output channel (default), one per tensor, or per "
        "group of --group-size along the reduction axis (weight_only mode)",
    )
    g.add_argument(
        "--group-size",
        type=int,
        default=None,
        help="group length for --granularity per_group, e.g. 32 or 64",
    )
    g.add_argument(
        "--per-tensor",
        action="store_true",
        help="shorthand for --granularity per_tensor",
    )
    g.add_argument(
        "--observer",
        choices=tuple(OBSERVERS),
        default="minmax",
        help="activation range observer (static mode; default minmax)",
    )
    g.add_argument(
        "--calibration-samples",
        type=int,
        default=None,
        metavar="N",
        help="calibrate on the first N inputs of --data, N in [1, inputs in "
        "--data] (default: all)",
    )


def add_arguments(parser) -> None:
    from refquant.mixed.budget import add_budget_arguments

    add_model_arguments(parser)
    add_data_arguments(parser, required=False)
    add_quant_arguments(parser)
    add_budget_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT.h5",
        help="quantized model file (default: MODEL's name with "
        ".<mode>.h5, in the current folder)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress lines on stderr"
    )


# ---------------------------------------------------------------- loading
def bad(argument: str, value, allowed: str) -> InvalidArgumentError:
    """``<argument> must be <allowed>; got <argument>=<value>``."""
    return InvalidArgumentError(f"{argument} must be {allowed}; got {argument}={value}")


#: Errors a parser of a damaged or hostile input file can raise on its own.
READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    RecursionError,
    MemoryError,
    zipfile.BadZipFile,
)
#: (module, class) of third-party parse errors, matched only when imported.
THIRD_PARTY_READ_ERRORS = (
    ("google.protobuf.message", "DecodeError"),
    ("onnx.checker", "ValidationError"),
    ("onnx.onnx_cpp2py_export.checker", "ValidationError"),
)


def _read_errors() -> tuple:
    found = list(READ_ERRORS)
    for module_name, name in THIRD_PARTY_READ_ERRORS:
        cls = getattr(sys.modules.get(module_name), name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            found.append(cls)
    return tuple(found)


@contextlib.contextmanager
def reading(argument: str, value, what: str):
    """Turn a failure to read input file ``value`` into an error naming
    ``argument``: ``<argument> must be <what> (<reason>); got <argument>=...``.

    Wrap only the step that parses the file: refquant errors are relabelled,
    and the builtin errors a parser raises on a damaged file (``READ_ERRORS``,
    protobuf and onnx checker errors) become :class:`InvalidArgumentError`.
    Any other exception is a bug and propagates unchanged.
    """
    try:
        yield
    except RefquantError as exc:
        if f"{argument}=" in str(exc):
            raise
        text = str(exc)
        if str(value) in text:  # the loader named the file: say which argument
            message = f"{argument}: {text}"
        else:
            message = f"{argument} must be {what} ({text}); got {argument}={value}"
        try:
            relabelled = type(exc)(message)
        except Exception:  # an error class with another signature
            relabelled = InvalidArgumentError(message)
        raise relabelled from None
    except _read_errors() as exc:
        reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        raise bad(argument, value, f"{what} ({reason})") from None


def check_output_file(argument: str, value, suffixes=(".h5", ".hdf5")) -> Path:
    """``value`` as a writable file name: not a folder, in an existing folder,
    ending in one of ``suffixes``; checked before any work is done."""
    out = Path(value)
    if suffixes and out.suffix.lower() not in suffixes:
        raise bad(argument, value, f"a file name ending in {' or '.join(suffixes)}")
    if out.is_dir():
        raise bad(argument, value, "a file name, not a folder")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise bad(argument, value, "a path in an existing folder")
    return out


def existing_path(argument: str, value, want_dir_ok: bool = False) -> Path:
    p = Path(value)
    if not p.exists():
        raise bad(
            argument,
            value,
            "an existing file"
            + (" or folder" if want_dir_ok else "")
            + " (no such path)",
        )
    if p.is_dir() and not want_dir_ok:
        raise bad(argument, value, "a file, not a folder")
    return p


def load_fp32_model(path, arch=None):
    """An FP32 :class:`Graph` from a .pth state dict (with ``arch``), Keras .h5
    or ONNX file, with at least one weighted layer (see :func:`check_weighted`)."""
    graph = _load_fp32_graph(path, arch)
    check_weighted(graph, path)
    return graph


def check_weighted(graph, path) -> None:
    """Refuse a model with no layers or no weighted layer (Conv2D,
    DepthwiseConv2D, Dense) or no parameters: there is nothing to quantize,
    and a size ratio over 0 FP32 bytes means nothing."""
    from refquant.ptq.config import WEIGHTED_OPS

    weighted = [n for n in graph.nodes if n.op in WEIGHTED_OPS]
    if not graph.nodes or not weighted or graph.num_params == 0:
        ops = sorted({n.op for n in graph.nodes})
        raise bad(
            "MODEL",
            path,
            f"a model with at least one {', '.join(WEIGHTED_OPS)} layer and "
            f"parameters to quantize; it has {len(graph.nodes)} layers "
            f"({', '.join(ops) or 'none'}), {len(weighted)} weighted, "
            f"{graph.num_params} parameters",
        )


def _load_fp32_graph(path, arch=None):
    p = existing_path("MODEL", path)
    suffix = p.suffix.lower()
    if suffix in PTH_SUFFIXES:
        if arch is None:
            raise bad(
                "--arch",
                None,
                f"one of {', '.join(ARCHS)} for a .pth state dict such as MODEL={p}",
            )
        from refquant.graph import models
        from refquant.io.torch_pth import load_torch_state_dict

        with reading("MODEL", p, "a readable PyTorch state dict"):
            state = load_torch_state_dict(p)
        with reading("MODEL", p, f"a state dict of --arch {arch}"):
            return getattr(models, arch)(state)
    if arch is not None:
        raise bad(
            "--arch",
            arch,
            "omitted unless MODEL is a .pth/.pt state dict "
            f"(MODEL={p} describes its own architecture)",
        )
    if suffix in KERAS_SUFFIXES:
        from refquant.io.keras_h5 import load_keras_h5

        with reading("MODEL", p, "a readable Keras .h5 model"):
            return load_keras_h5(p)
    if suffix == ".onnx":
        from refquant.io.onnx_import import load_onnx

        with reading("MODEL", p, "a readable ONNX model"):
            return load_onnx(p)
    raise bad("MODEL", p, "a .pth/.pt state dict, a Keras .h5 or an .onnx file")


def resolve_preprocess(preprocess: str, arch, x) -> str:
    """The preprocessing of ``x``: ``auto`` picks from ``arch`` and the dtype."""
    raw = _is_uint8(x)
    if preprocess != "auto":
        if preprocess in ("mnist", "imagenet", "unit") and not raw:
            raise bad(
                "--preprocess",
                preprocess,
                "none (or auto) for float data; "
                "mnist, imagenet and unit take uint8 images",
            )
        return preprocess
    if raw and arch == "mnist_cnn":
        return "mnist"
    if raw and arch == "mobilenet_v2":
        return "imagenet"
    return "none"


def _is_uint8(x) -> bool:
    if isinstance(x, list):
        return all(np.asarray(im).dtype == np.uint8 for im in x)
    return x.dtype == np.uint8


def apply_preprocess(kind: str, x, data_arg: str = "--data") -> np.ndarray:
    """float32 model inputs from the stored data (see --preprocess)."""
    from refquant import datasets

    if kind == "mnist":
        return datasets.mnist_preprocess(np.asarray(x))
    if kind == "imagenet":
        return datasets.imagenet_preprocess(x)
    if isinstance(x, list):
        shapes = sorted({np.asarray(im).shape for im in x})[:3]
        raise bad(
            data_arg,
            f"images of different sizes {shapes}",
            "inputs of one shape; use --preprocess imagenet to resize and crop",
        )
    if x.dtype.kind not in "fiub":
        raise bad(data_arg, f"an array of dtype {x.dtype}", "numeric inputs")
    x = x.astype(np.float32)
    return x / np.float32(255) if kind == "unit" else x


def load_inputs(args, model=None):
    """``(x, y)`` from --data after --preprocess; checked against ``model``."""
    from refquant import datasets

    p = existing_path("--data", args.data, want_dir_ok=True)
    with reading("--data", p, "readable .npy, .npz, HDF5 or image data"):
        x, y = datasets.load_array_data(p, x_key=args.x_key, y_key=args.y_key)
    n = len(x)
    if n == 0:
        raise bad("--data", p, "a file or folder with at least one input")
    kind = resolve_preprocess(args.preprocess, getattr(args, "arch", None), x)
    x = apply_preprocess(kind, x)
    if x.ndim < 2:
        raise bad(
            "--data",
            f"{p} (inputs of shape {x.shape})",
            "an array (N, ...) with a batch axis first",
        )
    if not np.all(np.isfinite(x)):
        raise bad("--data", p, "finite inputs (it holds NaN or inf)")
    if model is not None:
        check_fits(model, x, getattr(args, "arch", None), p)
    return x, y


def check_fits(model, x, arch, path) -> None:
    """Raise naming --data when one input does not run through ``model``."""
    want = ARCH_INPUT_SHAPES.get(arch)
    if want is not None and tuple(x.shape[1:]) != want:
        raise bad(
            "--data",
            f"{path} (inputs of shape {tuple(x.shape[1:])})",
            f"inputs of shape {want} for --arch {arch} (NHWC); check --preprocess",
        )
    try:
        model.run(x[:1])
    except (RefquantError, ValueError) as exc:
        raise bad(
            "--data",
            f"{path} (inputs of shape {tuple(x.shape[1:])})",
            f"inputs the model accepts (NHWC for images): {exc}",
        ) from None


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise bad("--batch-size", batch_size, "an int >= 1")


def quant_config(args):
    """A :class:`QuantConfig` from the quantization arguments."""
    from refquant.ptq import QuantConfig

    if not 2 <= args.weight_bits <= 8:
        raise bad("--weight-bits", args.weight_bits, "an int in [2, 8]")
    gran = args.granularity
    if args.per_tensor:
        if gran not in (None, "per_tensor"):
            raise bad("--granularity", gran, "omitted or per_tensor with --per-tensor")
        gran = "per_tensor"
    gran = gran or "per_channel"
    if gran == "per_group":
        if args.mode != "weight_only":
            raise bad(
                "--granularity",
                gran,
                "per_channel or per_tensor unless --mode weight_only",
            )
        if args.group_size is None or not 1 <= args.group_size <= 2**20:
            raise bad(
                "--group-size",
                args.group_size,
                "an int in [1, 1048576] (e.g. 32 or 64) with --granularity per_group",
            )
    elif args.group_size is not None:
        raise bad(
            "--group-size", args.group_size, "omitted unless --granularity per_group"
        )
    settings = {
        "weight_bits": args.weight_bits,
        "weight_granularity": gran,
        "activation_observer": args.observer,
    }
    if gran == "per_group":
        settings["weight_group_size"] = args.group_size
    return QuantConfig(**settings)


def calibration_slice(args, x):
    """The first --calibration-samples inputs: N in [1, len(x)], the inputs
    --data holds (asking for more than there are is an error, not a cap)."""
    n = args.calibration_samples
    if n is None:
        return x
    if not 1 <= n <= len(x):
        raise bad(
            "--calibration-samples",
            n,
            f"an int in [1, {len(x)}] (--data holds {len(x)} inputs)",
        )
    return x[:n]


def default_output(model_path, mode: str) -> Path:
    return Path(f"{Path(model_path).stem}.{mode}.h5")


def describe_config(args, cfg) -> str:
    d = cfg.defaults
    w = f"int{d.weight_bits} weights {d.weight_granularity}"
    if d.weight_granularity == "per_group":
        w += f" (group {d.weight_group_size})"
    if args.mode == "static":
        return f"{w}, int{d.activation_bits} activations ({d.activation_observer})"
    if args.mode == "dynamic":
        return f"{w}, activations quantized per batch at run time"
    return f"{w}, float activations"


# ---------------------------------------------------------------- run
def run(args) -> int:
    from refquant.ptq import quantize_model, save_quantized_model

    check_batch_size(args.batch_size)
    cfg = quant_config(args)
    out = Path(args.output) if args.output else default_output(args.model, args.mode)
    check_output_file("--output", out)
    if out.resolve() == Path(args.model).resolve():
        raise bad("--output", out, "a new file, not MODEL itself")
    if args.mode == "static" and args.data is None:
        raise bad(
            "--data",
            None,
            "a file or folder of calibration inputs for "
            "--mode static (dynamic and weight_only need none)",
        )
    graph = load_fp32_model(args.model, args.arch)
    x_cal = None
    if args.data is not None:
        x, y = load_inputs(args, graph)
        x_cal = calibration_slice(args, x)
    if args.size_budget is not None or args.max_drop is not None:
        return run_mixed(args, graph, x, y, x_cal, out)
    t0 = time.perf_counter()
    qm = quantize_model(
        graph,
        x_cal,
        mode=args.mode,
        config=cfg,
        batch_size=args.batch_size,
        progress=Progress("calibrating", quiet=args.quiet)
        if args.mode == "static"
        else None,
    )
    t1 = time.perf_counter()
    save_quantized_model(qm, out)
    fp32, quant = qm.fp32_size_bytes(), qm.size_bytes()
    print(
        f"model:       {args.model} ({graph.num_params:,} parameters, "
        f"{len(qm.nodes)} layers after folding)"
    )
    if x_cal is not None and args.mode == "static":
        print(f"calibration: {len(x_cal)} inputs from {args.data} ({t1 - t0:.1f} s)")
    print(f"quantized:   {args.mode}, {describe_config(args, cfg)}")
    print(f"size:        FP32 {fp32:,} B -> {quant:,} B ({fp32 / quant:.2f}x smaller)")
    print(f"wrote:       {out}")
    return 0


def run_mixed(args, graph, x, y, x_cal, out) -> int:
    """``--size-budget`` / ``--max-drop``: allocate, measure, save, report."""
    from refquant.mixed.allocate import InfeasibleBudgetError
    from refquant.mixed.budget import apply_budget
    from refquant.mixed.h5 import save_mixed_model

    if args.mode != "static":
        raise bad("--mode", args.mode, "static with --size-budget or --max-drop")
    try:
        alloc = apply_budget(
            args,
            graph,
            x,
            y,
            calibration_data=x_cal,
            batch_size=args.batch_size,
            progress=Progress("sensitivity", quiet=args.quiet),
        )
    except InfeasibleBudgetError as exc:
        print(f"refquant quantize: {infeasible_message(args, exc)}", file=sys.stderr)
        return 1
    save_mixed_model(alloc.model, out)
    counts = ", ".join(f"{n} {p}" for p, n in sorted(alloc.counts().items()))
    print(f"model:       {args.model} ({graph.num_params:,} parameters)")
    print(f"budget:      {describe_budget(alloc.budget)}")
    print(f"precisions:  {counts}")
    for key, value in alloc.measured.items():
        print(f"measured:    {key} = {format_measure(value)}")
    for note in alloc.notes:
        print(f"note:        {note}")
    print(f"wrote:       {out}")
    if not alloc.met:
        print(
            "refquant quantize: the measured model misses the budget", file=sys.stderr
        )
        return 1
    return 0


def infeasible_message(args, exc) -> str:
    """The plain sentence for a budget no assignment of precisions meets."""
    if args.size_budget is not None and exc.fp32_bytes:
        return (
            f"no assignment of precisions meets --size-budget {args.size_budget}; "
            f"the smallest possible is {exc.smallest:,} B "
            f"({exc.fp32_bytes / exc.smallest:.2f}x smaller than FP32 "
            f"{exc.fp32_bytes:,} B)"
        )
    if args.max_drop is not None and exc.smallest is not None:
        return (
            f"no assignment of precisions meets --max-drop {args.max_drop}; the "
            f"smallest estimated drop is {exc.smallest:.3f} points"
        )
    flag = "--size-budget" if args.size_budget is not None else "--max-drop"
    return f"no assignment of precisions meets {flag}: {exc}"


def describe_budget(budget: dict) -> str:
    if budget["kind"] == "size":
        return f"size <= {budget['bytes']:,} B (--size-budget {budget['given']})"
    return f"{budget['metric']} drop <= {budget['max_drop']} points (--max-drop)"


def format_measure(value) -> str:
    """Measured numbers as people read them: ints whole, floats to 4 digits."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value)}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)
