"""The ``refquant`` command.

Each subcommand lives in its own module under :mod:`refquant.commands` and is
imported only when it runs, so ``refquant --help`` stays fast.  A subcommand
module provides ``add_arguments(parser)`` and ``run(args) -> int``.

Exit codes: 0 success, 1 the job failed (a check, a download, a budget), 2 the
command line or an input file was wrong, 141 standard output was closed early
(``refquant ... | head``; files the command writes are saved before it prints,
so no work is lost), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: Exit code of a command whose standard output was closed (128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141

# name -> (module, one-line help)
SUBCOMMANDS = {
    "demo": (
        "refquant.commands.demo",
        "quantize a real model (MNIST CNN or MobileNetV2) and report",
    ),
    "quantize": (
        "refquant.commands.quantize",
        "quantize an FP32 model (.pth, Keras .h5, .onnx) to a refquant .h5",
    ),
    "evaluate": (
        "refquant.commands.evaluate",
        "compare a quantized model with its FP32 original on data",
    ),
    "assets": (
        "refquant.commands.assets",
        "list or fetch the real example weights and images",
    ),
    "conformance": (
        "refquant.commands.conformance",
        "export or verify the golden-vector conformance corpus (HDF5)",
    ),
    "sensitivity": (
        "refquant.commands.sensitivity",
        "per-layer mixed-precision sensitivity of a model on real data",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refquant",
        description="Reference quantization: calibrate, quantize, run integer-only "
        "and report, bit-exact with named backends.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _version() -> str:
    from refquant import __version__

    return f"refquant {__version__}"


def main(argv=None) -> int:
    from refquant.errors import RefquantError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (RefquantError, FileNotFoundError, PermissionError) as exc:
        print(f"refquant {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"refquant {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point the closed standard output at /dev/null so that the interpreter's
    final flush does not fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (captured); nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
