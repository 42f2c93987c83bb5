"""refquant side by side with its peers: one command, one table of ratios.

``python benchmarks/peers/run_all.py [--quick] [--update-results]``

Builds the models and inputs in a temporary work folder (prepare.py), then
runs every measurement in its own process (measure.py through _runner.py)
one after the other, so each peak RSS is the operating system's count for
that process alone.  Rows:

1. int8 MobileNetV2 inference, batch 1 and 8: refquant vs onnx.reference on
   refquant's own QOperator export (goal: >= 20x faster).
2. int8 MNIST CNN and MobileNetV2: refquant vs LiteRT BUILTIN_REF (goal:
   faster) and vs ONNX Runtime's default CPU kernels (goal: within 3x).
3. Static calibration of MobileNetV2 on N (default 500) images with min-max,
   entropy and percentile: refquant's observers vs ONNX Runtime's
   calibrators (goal: faster and lower peak memory).
4. Quantize + evaluate end to end: refquant vs ORT quantize_static + ORT.

Ratios are ``peer time / refquant time`` (above 1: refquant is faster).
refquant's speed column is its fastest profile that reproduces a named
backend; the ``exact`` profile is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _runner import ChildFailed, median, ratio_text, run_child  # noqa: E402

NAMED_PROFILES = ("onnx_reference", "onnxruntime", "tflite_reference")
TF_PYTHON = "/work/tfvenv/bin/python"
ONNX_REFERENCE_PYTHON = "/work/onnx123venv/bin/python"
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"

#: (warmup, max timed runs, timed-seconds budget) per (model, batch); at least
#: 3 timed runs are always made.
REPS = {
    ("mnist", 1): (3, 30, 3.0),
    ("mnist", 8): (2, 20, 3.0),
    ("mobilenet_v2", 1): (1, 7, 12.0),
    ("mobilenet_v2", 8): (1, 5, 20.0),
}
QUICK_REPS = (0, 1, 0.0)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.workdir
        self.log = []
        self.results = {}

    def child(self, key, argv, python=None, timeout=900.0):
        cmd = [python or sys.executable, str(HERE / "measure.py"), self.work, *argv]
        load0 = os.getloadavg()[0]
        try:
            r = run_child(cmd, timeout=timeout, env=_child_env())
        except ChildFailed as exc:
            print(f"FAILED {key}: {exc}", file=sys.stderr, flush=True)
            self.results[key] = None
            return None
        r["load1"] = (load0, os.getloadavg()[0])
        self.results[key] = r
        what = (
            r.get("times")
            and f"median {1e3 * median(r['times']):.2f} ms"
            or (f"{r.get('seconds', 0):.1f} s")
        )
        print(
            f"  {key}: {what}, peak RSS {r['peak_rss_mb']:.0f} MB, load {load0:.1f}",
            flush=True,
        )
        return r

    # ------------------------------------------------------------ inference
    def infer(self, engine, model, batch, profile="exact", python=None):
        warm, reps, budget = QUICK_REPS if self.args.quick else REPS[(model, batch)]
        argv = [
            "infer",
            engine,
            model,
            str(batch),
            "--profile",
            profile,
            "--warmup",
            str(warm),
            "--reps",
            str(max(reps, 1)),
            "--budget",
            str(budget),
            "--save-out",
            f"out_{engine}_{profile}_{model}_{batch}",
        ]
        return self.child(("infer", engine, profile, model, batch), argv, python)

    def inference_rows(self):
        for model, batch in (
            ("mobilenet_v2", 1),
            ("mobilenet_v2", 8),
            ("mnist", 1),
            ("mnist", 8),
        ):
            print(f"inference {model} batch {batch}", flush=True)
            for profile in ("exact", *NAMED_PROFILES):
                self.infer("refquant", model, batch, profile)
            if model == "mobilenet_v2":
                self.infer(
                    "onnxref", model, batch, python=self.args.onnx_reference_python
                )
            for engine in ("ort", "ort_int8", "litert_ref", "litert"):
                if engine.startswith("litert") and not self.has_tflite:
                    continue
                self.infer(engine, model, batch)

    # ------------------------------------------------------------ calibration
    def calibration_rows(self):
        n = str(self.args.calib_images)
        for method in ("minmax", "entropy", "percentile"):
            print(f"calibration {method} on {n} images", flush=True)
            self.child(
                ("calib", "refquant", method),
                ["calib", "refquant", method, "--images", n, "--batch", "4"],
            )
            stride = "0" if method == "minmax" else str(self.args.ort_stride)
            self.child(
                ("calib", "ort", method),
                ["calib", "ort", method, "--images", n, "--stride", stride],
            )

    def e2e_rows(self):
        for model in ("mnist", "mobilenet_v2"):
            print(f"end to end {model}", flush=True)
            self.child(
                ("e2e", "refquant", model),
                ["e2e", "refquant", model, "--profile", "onnxruntime"],
            )
            self.child(("e2e", "ort", model), ["e2e", "ort", model])

    def prepare(self):
        if self.args.skip_prepare:
            self.results["prepare"] = {"wall_s": 0.0}
            self.has_tflite = (Path(self.work) / "mnist.int8.tflite").exists()
            return
        cmd = [
            sys.executable,
            str(HERE / "prepare.py"),
            self.work,
            "--calib-images",
            str(self.args.calib_images),
            "--tf-python",
            self.args.tf_python,
        ]
        print("prepare: models, exports, TFLite conversion", flush=True)
        self.results["prepare"] = run_child(cmd, timeout=900.0, env=_child_env())
        self.has_tflite = (Path(self.work) / "mnist.int8.tflite").exists()


BLAS_THREADS = {}  # set from --blas-threads


def _child_env():
    env = dict(os.environ)
    env.update(BLAS_THREADS)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# ---------------------------------------------------------------- report
def machine() -> list[str]:
    import numpy as np

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        (ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")),
        "0",
    )
    blas = _blas()
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("onnx", "onnxruntime", "ai_edge_litert"):
        versions[mod] = _version(mod)
    onnx_ref = _version_of_python(ONNX_REFERENCE_PYTHON, "onnx")
    return [
        f"- CPU: {cpu}; `nproc` = {os.cpu_count()}; memory "
        f"{int(mem) / 2**20:.1f} GiB; {platform.platform()}",
        "- "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; onnx.reference rows: onnx {onnx_ref}; numpy BLAS: {blas}",
    ]


def _commit():
    out = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(HERE), "status", "--porcelain", "--", "../../refquant"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out.stdout.strip() + (" + uncommitted refquant changes" if dirty else "")


def _version(mod):
    from importlib import metadata

    name = {"ai_edge_litert": "ai-edge-litert"}.get(mod, mod)
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _version_of_python(python, mod):
    if not Path(python).exists():
        return "(same as above)"
    out = subprocess.run(
        [python, "-c", f"import {mod}; print({mod}.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "?"


def _blas():
    import numpy as np

    cfg = np.show_config(mode="dicts") or {}
    b = cfg.get("Build Dependencies", {}).get("blas", {})
    return f"{b.get('name', '?')} {b.get('version', '')}".strip()


def _ms(r):
    return 1e3 * median(r["times"]) if r and r.get("times") else None


def _fmt_ms(v):
    return "failed" if v is None else (f"{v:.3g}" if v < 100 else f"{v:.0f}")


def _agree(work, a, b):
    import numpy as np

    pa, pb = Path(work) / f"{a}.npy", Path(work) / f"{b}.npy"
    if not (pa.exists() and pb.exists()):
        return "-"
    x, y = np.load(pa).astype(np.int64), np.load(pb).astype(np.int64)
    if x.shape != y.shape:
        return "shape differs"
    same = int((x == y).sum())
    top1 = int(
        (x.reshape(len(x), -1).argmax(1) == y.reshape(len(y), -1).argmax(1)).sum()
    )
    return f"{same}/{x.size} codes equal, top-1 {top1}/{len(x)}"


def inference_table(b: Bench) -> list[str]:
    R = b.results
    lines = [
        "| model | batch | peer | peer ms | refquant profile (fastest named) | "
        "refquant ms | ratio peer/refquant | refquant `exact` ms | goal | "
        "peer peak RSS MB | refquant peak RSS MB | "
        "outputs vs refquant (same profile) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    peers = [
        (
            "onnxref",
            "onnx.reference (refquant's QOperator export, int8 act)",
            "onnx_reference",
            ">= 20x faster",
        ),
        (
            "litert_ref",
            "LiteRT BUILTIN_REF (TF-converted int8 .tflite)",
            "tflite_reference",
            "faster",
        ),
        (
            "ort",
            "ONNX Runtime default CPU (QOperator export, uint8 act)",
            "onnxruntime",
            "within 3x (ratio >= 0.33)",
        ),
        (
            "ort_int8",
            "ONNX Runtime default CPU (QOperator export, int8 act)",
            "onnxruntime",
            "info",
        ),
        (
            "litert",
            "LiteRT default resolver, XNNPACK, 2 threads",
            "tflite_reference",
            "info",
        ),
    ]
    for model, batch in (
        ("mobilenet_v2", 1),
        ("mobilenet_v2", 8),
        ("mnist", 1),
        ("mnist", 8),
    ):
        named = {
            p: R.get(("infer", "refquant", p, model, batch)) for p in NAMED_PROFILES
        }
        timed = {p: _ms(r) for p, r in named.items() if _ms(r) is not None}
        fastest = min(timed, key=timed.get) if timed else None
        exact = R.get(("infer", "refquant", "exact", model, batch))
        for engine, label, same_profile, goal in peers:
            r = R.get(("infer", engine, "exact", model, batch))
            if (engine, model, batch) not in b.planned:
                continue
            rq = named.get(fastest)
            peer_ms, rq_ms = _ms(r), _ms(rq)
            ratio = ratio_text(peer_ms, rq_ms) if peer_ms and rq_ms else "-"
            agree = (
                "different quantizer (TFLite converter)"
                if engine.startswith("litert")
                else _agree(
                    b.work,
                    f"out_refquant_{same_profile}_{model}_{batch}",
                    f"out_{engine}_exact_{model}_{batch}",
                )
            )
            lines.append(
                f"| {model} | {batch} | {label} | {_fmt_ms(peer_ms)} | {fastest} | "
                f"{_fmt_ms(rq_ms)} | {ratio} | {_fmt_ms(_ms(exact))} | {goal} | "
                f"{_rss(r)} | {_rss(rq)} | {agree} |"
            )
    lines.append("")
    lines.append("refquant per profile (median ms):")
    lines.append("")
    lines.append(
        "| model | batch | exact | onnx_reference | onnxruntime | tflite_reference |"
    )
    lines.append("|---|---|---|---|---|---|")
    for model, batch in (
        ("mobilenet_v2", 1),
        ("mobilenet_v2", 8),
        ("mnist", 1),
        ("mnist", 8),
    ):
        cells = [
            _fmt_ms(_ms(R.get(("infer", "refquant", p, model, batch))))
            for p in ("exact", *NAMED_PROFILES)
        ]
        lines.append(f"| {model} | {batch} | " + " | ".join(cells) + " |")
    return lines


def _rss(r):
    return "-" if not r else f"{r['peak_rss_mb']:.0f}"


def calibration_table(b: Bench) -> list[str]:
    R = b.results
    lines = [
        "| method | refquant s | ONNX Runtime s | time ratio ORT/refquant | "
        "refquant peak RSS MB | ORT peak RSS MB | memory ratio ORT/refquant | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in ("minmax", "entropy", "percentile"):
        rq, ort = R.get(("calib", "refquant", method)), R.get(("calib", "ort", method))
        if rq is None and ort is None:
            continue
        t = ratio_text(ort["seconds"], rq["seconds"]) if rq and ort else "-"
        m = f"{ort['peak_rss_mb'] / rq['peak_rss_mb']:.2f}x" if rq and ort else "-"
        lines.append(
            f"| {method} | {_s(rq)} | {_s(ort)} | {t} | {_rss(rq)} | {_rss(ort)} | {m} "
            "| faster, lower peak memory |"
        )
    return lines


def _s(r):
    return "failed" if not r else f"{r['seconds']:.1f}"


def e2e_table(b: Bench) -> list[str]:
    R = b.results
    lines = [
        "| model | tool | quantize s | evaluate s | total s | top-1 on labeled | "
        "inputs evaluated | peak RSS MB | ratio ORT/refquant (total) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model in ("mnist", "mobilenet_v2"):
        rq, ort = R.get(("e2e", "refquant", model)), R.get(("e2e", "ort", model))
        for tool, r in (
            ("refquant (onnxruntime profile)", rq),
            ("ORT quantize_static + ORT", ort),
        ):
            if r is None:
                lines.append(f"| {model} | {tool} | failed | | | | | | |")
                continue
            ratio = (
                ratio_text(ort["seconds"], rq["seconds"])
                if (rq and ort and r is rq)
                else ""
            )
            lines.append(
                f"| {model} | {tool} | {r['quantize_s']:.2f} | {r['eval_s']:.2f} | "
                f"{r['seconds']:.2f} | {r['correct']}/{r['labeled']} | "
                f"{r['evaluated']} | {_rss(r)} | {ratio} |"
            )
    return lines


def report(b: Bench, total_s: float, argv) -> str:
    prep = b.results.get("prepare", {})
    tfl = {m: prep.get(m, {}).get("tflite") for m in ("mnist", "mobilenet_v2")}
    lines = [
        f"Run of `python benchmarks/peers/run_all.py {' '.join(argv)}`: "
        f"{total_s / 60:.1f} min wall in all (prepare {prep.get('wall_s', 0):.0f} s); "
        f"load average at the start {b.load0[0]:.2f}, at the end "
        f"{os.getloadavg()[0]:.2f}; refquant at commit {_commit()}"
        + (f"; BLAS threads {b.args.blas_threads}" if b.args.blas_threads else "")
        + ".",
        "",
        *machine(),
        f"- TFLite conversion (TensorFlow {(tfl['mnist'] or {}).get('tf', '-')}): "
        + ", ".join(
            f"{m} {v['convert_s']:.1f} s, Keras port vs refquant FP32 max "
            f"|diff| {v['fp32_max_abs_diff']:.1e}"
            for m, v in tfl.items()
            if v
        )
        + ".",
        "",
        "### Inference (median of the timed runs, each peer in its own process)",
        "",
        *inference_table(b),
        "",
        f"### Static calibration of MobileNetV2 on {b.args.calib_images} images",
        "",
        *calibration_table(b),
        "",
        "### Quantize + evaluate end to end",
        "",
        *e2e_table(b),
    ]
    return "\n".join(lines) + "\n"


def update_results(text: str, path: Path = RESULTS) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in old or END not in old:
        old = old + f"\n{BEGIN}\n{END}\n"
    head, rest = old.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{text}{END}{tail}"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 timed call per row, 50 calibration images",
    )
    p.add_argument("--workdir", default="", help="keep generated files here")
    p.add_argument("--calib-images", type=int, default=None)
    p.add_argument(
        "--ort-stride",
        type=int,
        default=50,
        help="CalibStridedMinMax for ORT's histogram calibrators",
    )
    p.add_argument("--only", default="infer,calib,e2e")
    p.add_argument(
        "--skip-prepare",
        action="store_true",
        help="reuse the models already in --workdir",
    )
    p.add_argument(
        "--blas-threads",
        type=int,
        default=0,
        help="OPENBLAS/OMP threads of every child (0: NumPy's default)",
    )
    p.add_argument("--tf-python", default=TF_PYTHON)
    p.add_argument(
        "--onnx-reference-python",
        default=ONNX_REFERENCE_PYTHON,
        help="interpreter whose onnx package runs the onnx.reference rows",
    )
    p.add_argument(
        "--update-results",
        action="store_true",
        help=f"write the tables into {RESULTS.name}",
    )
    args = p.parse_args(argv)
    if args.blas_threads:
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            BLAS_THREADS[k] = str(args.blas_threads)
    if args.calib_images is None:
        args.calib_images = 50 if args.quick else 500
    if not Path(args.onnx_reference_python).exists():
        args.onnx_reference_python = sys.executable
    tmp = None
    if not args.workdir:
        tmp = tempfile.mkdtemp(prefix="refquant-peers-")
        args.workdir = tmp
    b = Bench(args)
    b.load0 = os.getloadavg()
    t0 = time.perf_counter()
    try:
        b.prepare()
        b.planned = {
            (e, m, bt)
            for e in ("onnxref",)
            for m, bt in (("mobilenet_v2", 1), ("mobilenet_v2", 8))
        }
        b.planned |= {
            (e, m, bt)
            for e in ("ort", "ort_int8", "litert_ref", "litert")
            for m in ("mnist", "mobilenet_v2")
            for bt in (1, 8)
        }
        only = set(args.only.split(","))
        if "infer" in only:
            b.inference_rows()
        if "calib" in only:
            b.calibration_rows()
        if "e2e" in only:
            b.e2e_rows()
        text = report(b, time.perf_counter() - t0, argv)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(text)
    if args.update_results:
        update_results(text)


if __name__ == "__main__":
    main()
