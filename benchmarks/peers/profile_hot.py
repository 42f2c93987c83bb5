"""cProfile of refquant's hot paths in the peer benchmark rows.

``python benchmarks/peers/profile_hot.py WORKDIR [--top 12]`` (WORKDIR from
``run_all.py --workdir``).  Prints the top functions by own time for:
MobileNetV2 inference at batch 1 and 8 and MNIST at batch 1 (fastest named
profile, ``onnxruntime``), and min-max / entropy calibration of MobileNetV2
on 40 augmented images (batches of 4), plus the wall time of MobileNetV2
batch 8 run as 8 calls of batch 1.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import measure  # noqa: E402


def show(title, fn, top):
    fn()  # warm-up: compiled programs, caches
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(fn)
    wall = time.perf_counter() - t0
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("tottime")
    stats.print_stats(top)
    body = out.getvalue().split("\n")
    start = next(i for i, ln in enumerate(body) if ln.strip().startswith("ncalls"))
    print(f"\n#### {title} (wall {1e3 * wall:.0f} ms under cProfile)\n")
    print("```")
    print(
        "\n".join(
            ln.replace(str(Path.cwd()) + "/", "") for ln in body[start:] if ln.strip()
        )
    )
    print("```")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdir")
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args(argv)
    work = C.Work(args.workdir)
    from refquant.ptq import QuantConfig, load_quantized_model, quantize_model

    for model, batch in (("mobilenet_v2", 1), ("mobilenet_v2", 8), ("mnist", 1)):
        qm = load_quantized_model(work.qmodel(model))
        x = np.load(work.array(f"{model}_eval"))[:batch]
        show(
            f"{model} batch {batch}, profile onnxruntime",
            lambda qm=qm, x=x: qm.run_codes(x, profile="onnxruntime"),
            args.top,
        )
    qm = load_quantized_model(work.qmodel("mobilenet_v2"))
    x = np.load(work.array("mobilenet_v2_eval"))[:8]
    qm.run_codes(x, profile="onnxruntime")
    t0 = time.perf_counter()
    qm.run_codes(x, profile="onnxruntime")
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(8):
        qm.run_codes(x[i : i + 1], profile="onnxruntime")
    t_each = time.perf_counter() - t0
    print(
        f"\nMobileNetV2, 8 images: one batch of 8 {1e3 * t_batch:.0f} ms, "
        f"8 calls of batch 1 {1e3 * t_each:.0f} ms\n"
    )
    graph = C.fp32_graph("mobilenet_v2")
    for method in ("minmax", "entropy"):
        cfg = QuantConfig(activation_observer=method)
        show(
            f"calibration {method}, 40 images in batches of 4",
            lambda cfg=cfg: quantize_model(
                graph, measure._augmented_batches(work, 40, 4), config=cfg, batch_size=4
            ),
            args.top,
        )


if __name__ == "__main__":
    main()
