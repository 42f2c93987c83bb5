"""List or fetch the real example weights and images (sha256-checked).

refquant assets list
refquant assets fetch --all
refquant assets fetch mnist_cnn mnist_5k
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["list", "fetch"], help="what to do")
    parser.add_argument("names", nargs="*", metavar="NAME", help="asset names")
    parser.add_argument("--all", action="store_true", help="fetch every asset")
    parser.add_argument(
        "--cache-dir",
        help="cache folder (default: $REFQUANT_CACHE or ~/.cache/refquant)",
    )


def run(args) -> int:
    from refquant import assets

    argv = [args.action, *args.names]
    if args.all:
        argv.append("--all")
    if args.cache_dir:
        argv += ["--cache-dir", args.cache_dir]
    return assets.main(argv)
