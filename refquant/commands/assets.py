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
    from refquant.errors import InvalidArgumentError

    if args.action == "list" and (args.names or args.all):
        raise InvalidArgumentError(
            f"list takes no asset names and no --all; got {' '.join(args.names)}"
            f"{' --all' if args.all else ''}".rstrip()
        )
    if args.action == "fetch" and not args.names and not args.all:
        raise InvalidArgumentError(
            "fetch needs asset names or --all (see `refquant assets list`); got neither"
        )
    if args.action == "fetch" and args.names and args.all:
        raise InvalidArgumentError(
            f"fetch takes asset names or --all, not both; got {' '.join(args.names)}"
            " --all"
        )
    argv = [args.action, *args.names]
    if args.all:
        argv.append("--all")
    if args.cache_dir:
        argv += ["--cache-dir", args.cache_dir]
    return assets.main(argv)
