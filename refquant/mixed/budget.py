"""Command-line budget options shared by ``refquant quantize`` and friends.

``add_budget_arguments(parser)`` adds ``--size-budget`` (bytes or a ratio
such as ``3.5x``), ``--max-drop`` (points), ``--drop-metric``,
``--keep-fp16`` / ``--force-int4`` (manual overrides, comma-separated layer
names), ``--precisions`` (candidates) and ``--sensitivity-samples``.
``apply_budget(args, graph, data, ...)`` runs sensitivity, allocation and the
real evaluation, and returns the :class:`~refquant.mixed.allocate.Allocation`
(None when no budget option was given).  Spec: specs/mixed_precision.md,
section 9.
"""

from __future__ import annotations

from refquant.errors import InvalidArgumentError
from refquant.mixed.layers import PRECISIONS

__all__ = ["add_budget_arguments", "apply_budget", "parse_layer_list"]


def add_budget_arguments(parser) -> None:
    """Add the mixed-precision budget options to an argparse parser."""
    g = parser.add_argument_group("mixed precision budget")
    g.add_argument(
        "--size-budget",
        metavar="SIZE",
        help="largest model: bytes, or compression over FP32 like 3.5x",
    )
    g.add_argument(
        "--max-drop",
        type=float,
        metavar="POINTS",
        help="largest drop of accuracy (with labels) or agreement, "
        "in percentage points, e.g. 0.5",
    )
    g.add_argument(
        "--drop-metric",
        choices=["auto", "accuracy", "agreement"],
        default="auto",
        help="what --max-drop measures: accuracy (needs labels), agreement with "
        "FP32 top-1, or auto (default: accuracy when labels exist)",
    )
    g.add_argument(
        "--precisions",
        default=",".join(p for p in PRECISIONS),
        help="candidate precisions, comma-separated",
    )
    g.add_argument(
        "--keep-fp16",
        default="",
        metavar="LAYERS",
        help="layers fixed in FP16, comma-separated",
    )
    g.add_argument(
        "--force-int4",
        default="",
        metavar="LAYERS",
        help="layers fixed in INT4 weight-only, comma-separated",
    )
    g.add_argument(
        "--sensitivity-samples",
        type=int,
        default=64,
        metavar="N",
        help="held-out samples for the per-layer sensitivity",
    )


def parse_layer_list(text: str) -> list:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in str(text or "").split(",") if t.strip()]


def _overrides(args, layers=None) -> dict:
    """``{layer: "fp16" | "int4"}`` from --keep-fp16 / --force-int4; names are
    checked against ``layers`` (the weighted layers) when given."""
    out = {}
    for flag, text, precision in (
        ("--keep-fp16", args.keep_fp16, "fp16"),
        ("--force-int4", args.force_int4, "int4"),
    ):
        for name in parse_layer_list(text):
            if layers is not None and name not in layers:
                shown = ", ".join(layers[:8]) + (", ..." if len(layers) > 8 else "")
                raise InvalidArgumentError(
                    f"{flag} names an unknown layer {name!r}; the {len(layers)} "
                    f"weighted layers are: {shown}"
                )
            if out.get(name, precision) != precision:
                raise InvalidArgumentError(
                    f"layer {name!r} is in both --keep-fp16 and --force-int4"
                )
            out[name] = precision
    return out


def check_budget_arguments(args) -> tuple:
    """Validate the budget flags; returns the candidate precisions."""
    cands = tuple(parse_layer_list(args.precisions))
    unknown = [p for p in cands if p not in PRECISIONS]
    if not cands or unknown:
        raise InvalidArgumentError(
            f"--precisions must be a comma-separated list of {', '.join(PRECISIONS)};"
            f" got --precisions={args.precisions!r}"
        )
    if args.max_drop is not None and not 0 <= args.max_drop <= 100:
        raise InvalidArgumentError(
            f"--max-drop must be points in [0, 100], e.g. 0.5; got "
            f"--max-drop={args.max_drop}"
        )
    if args.size_budget is not None and args.max_drop is not None:
        raise InvalidArgumentError(
            "give one of --size-budget and --max-drop, not both; got "
            f"--size-budget={args.size_budget}, --max-drop={args.max_drop}"
        )
    if args.size_budget is not None:
        from refquant.mixed.allocate import parse_size_budget

        try:
            parse_size_budget(args.size_budget, 1 << 40)
        except InvalidArgumentError:
            raise InvalidArgumentError(
                "--size-budget must be bytes (an int > 0) or a compression ratio "
                f"over FP32 such as 3.5x; got --size-budget={args.size_budget}"
            ) from None
    if args.sensitivity_samples < 1:
        raise InvalidArgumentError(
            "--sensitivity-samples must be an int >= 1; got "
            f"--sensitivity-samples={args.sensitivity_samples}"
        )
    return cands


def weighted_layers(graph) -> tuple:
    """Names of the layers a precision is chosen for (after folding)."""
    from refquant.ptq import prepare_graph
    from refquant.ptq.config import WEIGHTED_OPS
    from refquant.ptq.static import batch_norm_as_depthwise

    prepared = batch_norm_as_depthwise(prepare_graph(graph))
    return tuple(n.name for n in prepared.nodes if n.op in WEIGHTED_OPS)


def apply_budget(
    args,
    graph,
    data,
    labels=None,
    *,
    calibration_data=None,
    profile="exact",
    batch_size=32,
    progress=None,
):
    """Allocate precisions for ``graph`` under the budget in ``args``.

    ``data`` (float array) is split: the first ``--sensitivity-samples`` are
    used for sensitivity, all of it for the real evaluation.  Calibration uses
    ``calibration_data`` (default: ``data``).  Returns None when neither
    ``--size-budget`` nor ``--max-drop`` is set.
    """
    if args.size_budget is None and args.max_drop is None:
        return None
    from refquant.mixed.allocate import (
        allocate,
        check_size_feasible,
        parse_size_budget,
    )
    from refquant.mixed.model import MixedQuantizer
    from refquant.mixed.sensitivity import measure_sensitivity

    cands = check_budget_arguments(args)
    overrides = _overrides(args, weighted_layers(graph))
    measured = tuple(p for p in cands if p != "fp32")
    for p in set(overrides.values()) - set(measured):
        measured += (p,)
    mq = MixedQuantizer(
        graph,
        data if calibration_data is None else calibration_data,
        batch_size=batch_size,
    )
    if args.size_budget is not None:  # before the slow sensitivity runs
        nbytes = parse_size_budget(args.size_budget, mq.model("fp32").size_bytes())
        check_size_feasible(mq, nbytes, args.size_budget, cands, overrides)
    n = max(1, min(int(args.sensitivity_samples), data.shape[0]))
    sl = None if labels is None else labels[:n]
    sens = measure_sensitivity(
        mq,
        data[:n],
        sl,
        precisions=measured,
        reverse=False,
        batch_size=batch_size,
        profile=profile,
        progress=progress,
    )
    return allocate(
        mq,
        sens,
        data,
        labels,
        size_budget=args.size_budget,
        max_drop=args.max_drop,
        metric=args.drop_metric,
        candidates=cands,
        overrides=overrides,
        profile=profile,
        batch_size=batch_size,
    )
