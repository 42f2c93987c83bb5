"""Sensitivity, allocation and Pareto reports: Markdown, JSON, optional plot.

The sensitivity table lists layers from most to least sensitive (lowest SQNR
at the ranking precision, ``int8`` by default), with each precision's SQNR
and stored bytes.  The plot needs matplotlib (optional extra); without it
:func:`plot_pareto` raises :class:`refquant.datasets.OptionalDependencyError`.
Spec: specs/mixed_precision.md, section 7.
"""

from __future__ import annotations

import json
import math

from refquant._fileio import write_text_atomic
from refquant.errors import InvalidArgumentError

__all__ = ["pareto_markdown", "plot_pareto", "sensitivity_markdown", "to_json"]


def _num(v, fmt="{:.2f}"):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return fmt.format(v)


def sensitivity_markdown(result, *, rank_by: str = "int8", top=None) -> str:
    """Markdown: one row per layer, most sensitive first; per precision
    ``SQNR dB / bytes``; then agreement / accuracy at ``rank_by``; the
    ``all_but`` column when measured."""
    order = result.ranking(rank_by)
    if top is not None:
        order = order[:top]
    precs = list(result.precisions)
    has_rev = any(r["view"] == "all_but" for r in result.rows)
    head = ["rank", "layer", "op", "params"] + [f"{p} SQNR dB / bytes" for p in precs]
    head += [f"{rank_by} agree", f"{rank_by} KL"]
    if result.fp32["accuracy"] is not None:
        head.append(f"{rank_by} acc")
    if has_rev:
        head.append(f"all {result.base_precision} but this FP32: SQNR dB")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, name in enumerate(order, 1):
        r0 = result.get(name, rank_by)
        cells = [str(k), name, r0["op"], str(r0["params"])]
        for p in precs:
            r = result.get(name, p)
            cells.append(f"{_num(r['sqnr_db'])} / {r['bytes']}")
        cells += [f"{r0['agree_count']}/{r0['count']}", _num(r0["kl"], "{:.2e}")]
        if result.fp32["accuracy"] is not None:
            cells.append(_num(100 * r0["accuracy"]))
        if has_rev:
            try:
                cells.append(_num(result.get(name, "fp32", "all_but")["sqnr_db"]))
            except InvalidArgumentError:
                cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pareto_markdown(points, *, key: str = "agreement") -> str:
    """Markdown table of sweep points, smallest first; ``*`` marks the front."""
    head = [
        "model",
        "bytes",
        "ratio",
        "agreement",
        "accuracy",
        "SQNR dB",
        "KL",
        "precisions",
        "front",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in sorted(points, key=lambda q: q["bytes"]):
        acc = "-" if p.get("accuracy") is None else f"{100 * p['accuracy']:.2f}%"
        mix = ", ".join(f"{k} {v}" for k, v in sorted(p["counts"].items()))
        lines.append(
            f"| {p['label']} | {p['bytes']} | {p['ratio']:.2f} | "
            f"{p['agree_count']}/{p['count']} | {acc} | {_num(p['sqnr_db'])} | "
            f"{_num(p['kl'], '{:.2e}')} | {mix} | {'*' if p['on_front'] else ''} |"
        )
    return "\n".join(lines)


def to_json(obj, path=None) -> str:
    """JSON text of a result (``to_dict()`` when it has one); written
    atomically to ``path`` when given.  Infinite SQNR becomes the string
    ``"inf"``."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj

    def plain(v):
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            return plain(v.item())
        if hasattr(v, "tolist"):
            return plain(v.tolist())
        return v

    text = json.dumps(plain(data), indent=1, allow_nan=False)
    if path is not None:
        write_text_atomic(path, text + "\n")
    return text


def plot_pareto(points, path, *, key: str = "agreement") -> None:
    """Size (x, bytes, log) against ``key`` (y); uniform points marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from refquant.datasets import OptionalDependencyError

        raise OptionalDependencyError(
            "plot_pareto needs matplotlib; `pip install matplotlib`"
        ) from None
    from refquant._fileio import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    mixed = sorted(
        (p for p in points if p["kind"] == "mixed"), key=lambda p: p["bytes"]
    )
    ax.plot([p["bytes"] for p in mixed], [p[key] for p in mixed], "o-", label="mixed")
    for p in points:
        if p["kind"] == "uniform":
            ax.plot(p["bytes"], p[key], "s")
            ax.annotate(p["label"], (p["bytes"], p[key]), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("bytes")
    ax.set_ylabel(key)
    ax.legend()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
