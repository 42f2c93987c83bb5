"""Export or verify the conformance corpus: golden integer vectors in HDF5.

refquant conformance export corpus.h5
refquant conformance export corpus.h5 --profiles exact tflite_reference
refquant conformance export small.h5 --kernels conv2d add --seed 7
refquant conformance verify corpus.h5

export runs the edge tables and the seeded random cases of every kernel under
every profile and writes inputs, qparams, options and outputs (layout:
specs/conformance_corpus.md).  verify re-runs every case of a file and lists
the cases that differ; it exits with 1 if any does, 2 if the file is invalid.
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = sub.add_parser("export", help="write the corpus to FILE.h5")
    export.add_argument("file", metavar="FILE.h5", help="destination file")
    export.add_argument(
        "--profiles", nargs="+", metavar="PROFILE", help="profile names (default all)"
    )
    export.add_argument(
        "--kernels", nargs="+", metavar="KERNEL", help="kernel names (default all)"
    )
    export.add_argument(
        "--seed", type=int, default=0, help="seed of the random cases (default 0)"
    )
    verify = sub.add_parser("verify", help="re-run every case of FILE.h5")
    verify.add_argument("file", metavar="FILE.h5", help="corpus file")


def run(args) -> int:
    from refquant import conformance
    from refquant.commands.quantize import check_output_file, existing_path, reading

    if args.action == "export":
        check_output_file("FILE.h5", args.file)
        summary = conformance.export_corpus(
            args.file, profiles=args.profiles, kernels=args.kernels, seed=args.seed
        )
        print(summary)
        return 0
    path = existing_path("FILE.h5", args.file)
    with reading("FILE.h5", path, "a conformance corpus"):
        report = conformance.verify_corpus(path)
    print(report)
    return 0 if report.ok else 1
