"""Speed of refquant's exact int8 GEMM and convolutions against NumPy, in one run.

For each shape, the median wall time of several runs of

* ``refquant``: :func:`refquant.kernels.gemm.exact_int_gemm` on int8 operands
  (conversion, centring, BLAS calls and the int64 result included), in three
  forms: ``raw`` (both operands int8 arrays), ``prepared`` (the right operand
  made once by :func:`refquant.kernels.gemm.prepare_weights`, as a quantized
  model does with its weights) and ``prepared, float`` (``result="float"``:
  the exact integers left in float32 / float64, no int64 pass);
  :func:`refquant.kernels.conv.conv2d_accumulator` (im2col included) and
  :func:`refquant.kernels.conv.depthwise_conv2d_accumulator`;
* ``int64``: ``numpy.matmul`` on int64 copies of the same operands (conv: on
  the int64 im2col matrix, built beforehand and not timed; depthwise: the same
  per-tap multiply-add loop on an int64 copy of the padded input);
* ``float32``: the same on float32 copies (conv: ``f32+im2col`` also times
  building the float32 im2col matrix);

then the ratios ``int64 / refquant`` (goal >= 10) and ``refquant / float32``
(goal <= 2).  refquant and float32 are timed in turn within each round
(interleaved) so that load from other processes falls on both alike.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_gemm.py [--repeats N] [--quick]

The script never sets thread counts itself.  On a machine shared with other
busy processes multi-threaded BLAS stalls for whole scheduler slices, so set
``OPENBLAS_NUM_THREADS=1`` (or ``OMP_NUM_THREADS=1`` / ``MKL_NUM_THREADS=1``
for other BLAS builds) in the shell for stable, single-threaded ratios.  The
output is a Markdown report headed by the machine description.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from refquant.kernels.conv import (
    conv2d,
    conv2d_accumulator,
    depthwise_conv2d_accumulator,
)
from refquant.kernels.gemm import exact_int_gemm, plan_gemm, prepare_weights

# (name, M, K, N): MobileNetV2 layers as GEMMs (224x224 input) and a square one.
GEMMS = [
    ("mnv2 1x1 expand 56x56 24->144", 3136, 24, 144),
    ("mnv2 1x1 project 56x56 144->24", 3136, 144, 24),
    ("mnv2 1x1 expand 14x14 64->384", 196, 64, 384),
    ("mnv2 1x1 project 7x7 960->320", 49, 960, 320),
    ("mnv2 1x1 last 7x7 320->1280", 49, 320, 1280),
    ("mnv2 classifier 1280->1000", 1, 1280, 1000),
    ("square 1024x1024x1024", 1024, 1024, 1024),
]
CONV = ("conv 3x3 same 56x56x64->64", (1, 56, 56, 64), (64, 3, 3, 64))
# (name, input shape NHWC, stride): MobileNetV2 3x3 depthwise layers.
DEPTHWISE = [
    ("dw 3x3 s2 112x112x96", (1, 112, 112, 96), 2),
    ("dw 3x3 s1 56x56x144", (1, 56, 56, 144), 1),
    ("dw 3x3 s1 14x14x384", (1, 14, 14, 384), 1),
]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns, repeats: int) -> list[float]:
    """Median time of each function, the functions timed in turn each round so
    that load from other processes falls on all of them alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def bench_gemm(name, m, k, n, rng, repeats, int64_repeats):
    """Rows (name, variant, path, t_ref, t_i64, t_f32, None) for one GEMM."""
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    b = rng.integers(-127, 128, (k, n)).astype(np.int8)
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    prepared = prepare_weights(b)
    expected = a64 @ b64
    assert (exact_int_gemm(a, b) == expected).all()
    assert (exact_int_gemm(a, prepared) == expected).all()
    as_float = exact_int_gemm(a, prepared, result="float")
    assert (as_float == expected).all()
    t_raw, t_prep, t_float, t_f32 = interleaved(
        [
            lambda: exact_int_gemm(a, b),
            lambda: exact_int_gemm(a, prepared),
            lambda: exact_int_gemm(a, prepared, result="float"),
            lambda: a32 @ b32,
        ],
        repeats,
    )
    t_i64 = median_time(lambda: a64 @ b64, int64_repeats)
    path = plan_gemm(a, b).path
    return [
        (name, "raw", path, t_raw, t_i64, t_f32, None),
        (name, "prepared", path, t_prep, t_i64, t_f32, None),
        (name, f"prepared, {as_float.dtype.name}", path, t_float, t_i64, t_f32, None),
    ]


def _im2col(x, kh, kw):
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (N, H, W, C, kh, kw)
    win = win.transpose(0, 1, 2, 4, 5, 3)
    return win.reshape(-1, kh * kw * x.shape[3])


def bench_conv(rng, repeats, int64_repeats):
    name, x_shape, w_shape = CONV
    x = rng.integers(-128, 128, x_shape).astype(np.int8)
    w = rng.integers(-127, 128, w_shape).astype(np.int8)
    kh, kw = w_shape[1:3]
    w_mat = w.reshape(w_shape[0], -1).T  # (K, C_out)
    p64, w64 = _im2col(x.astype(np.int64), kh, kw), w_mat.astype(np.int64)
    x32, w32 = x.astype(np.float32), w_mat.astype(np.float32)
    p32 = _im2col(x32, kh, kw)
    acc = conv2d_accumulator(x, 0, w, 0, padding="same")
    assert (acc.reshape(-1, w_shape[0]) == p64 @ w64).all()
    t_ref, t_f32, t_f32_im2col = interleaved(
        [
            lambda: conv2d_accumulator(x, 0, w, 0, padding="same"),
            lambda: p32 @ w32,
            lambda: _im2col(x32, kh, kw) @ w32,
        ],
        repeats,
    )
    t_i64 = median_time(lambda: p64 @ w64, int64_repeats)
    return [(name, "raw", "im2col+float32", t_ref, t_i64, t_f32, t_f32_im2col)]


def _depthwise_taps(xp, w, stride, out_hw):
    """sum_{i,j} xp[:, y*s + i, x*s + j, :] * w[i, j], one pass per tap."""
    acc = None
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            tap = xp[
                :,
                i : i + (out_hw[0] - 1) * stride + 1 : stride,
                j : j + (out_hw[1] - 1) * stride + 1 : stride,
                :,
            ]
            acc = tap * w[i, j] if acc is None else acc + tap * w[i, j]
    return acc


def bench_depthwise(name, x_shape, stride, rng, repeats, int64_repeats):
    x = rng.integers(-128, 128, x_shape).astype(np.int8)
    w = rng.integers(-127, 128, (1, 3, 3, x_shape[3])).astype(np.int8)
    kw = dict(strides=(stride, stride), padding="same")
    acc = depthwise_conv2d_accumulator(x, 0, w, 0, **kw)
    out_hw = acc.shape[1:3]
    pads = [max((o - 1) * stride + 3 - n, 0) for o, n in zip(out_hw, x_shape[1:3])]
    xp = np.pad(
        x,
        (
            (0, 0),
            (pads[0] // 2, pads[0] - pads[0] // 2),
            (pads[1] // 2, pads[1] - pads[1] // 2),
            (0, 0),
        ),
    )
    x64, w64 = xp.astype(np.int64), w[0].astype(np.int64)
    x32, w32 = xp.astype(np.float32), w[0].astype(np.float32)
    assert (_depthwise_taps(x64, w64, stride, out_hw) == acc).all()
    t_ref, t_f32 = interleaved(
        [
            lambda: depthwise_conv2d_accumulator(x, 0, w, 0, **kw),
            lambda: _depthwise_taps(x32, w32, stride, out_hw),
        ],
        repeats,
    )
    t_i64 = median_time(
        lambda: _depthwise_taps(x64, w64, stride, out_hw), int64_repeats
    )
    return [(name, "raw", "per-tap float32", t_ref, t_i64, t_f32, None)]


def bench_conv_requantized(rng, repeats):
    _, x_shape, w_shape = CONV
    x = rng.integers(-128, 128, x_shape).astype(np.int8)
    w = rng.integers(-127, 128, w_shape).astype(np.int8)
    sw = rng.uniform(0.001, 0.01, w_shape[0])
    bias = rng.integers(-1000, 1000, w_shape[0]).astype(np.int32)
    out = {}
    for profile in ("exact", "tflite_reference", "onnxruntime"):
        out[profile] = median_time(
            lambda p=profile: conv2d(
                x, 0.05, -3, w, sw, 0, bias, 0.2, 4, padding="same", profile=p
            ),
            repeats,
        )
    return out


def machine_description() -> list[str]:
    """nproc, CPU model, Python, NumPy and its BLAS, thread settings as found."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            models = [ln.split(":", 1)[1].strip() for ln in f if "model name" in ln]
        cpu = models[0] if models else cpu
    except OSError:
        pass
    blas = "unknown"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # older NumPy: no mode="dicts"
        pass
    lines = [
        f"- nproc: {os.cpu_count()}; CPU: {cpu}",
        f"- Python {platform.python_version()}, NumPy {np.__version__}, BLAS {blas}",
    ]
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            lines.append(
                f"- threadpoolctl: {pool.get('internal_api')} "
                f"{pool.get('version')}, {pool.get('num_threads')} threads"
            )
    except ImportError:
        lines.append("- threadpoolctl: not installed")
    env = {
        k: os.environ[k]
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        if k in os.environ
    }
    lines.append(f"- thread variables set in the shell: {env or 'none'}")
    if hasattr(os, "getloadavg"):
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        lines.append(f"- load average (1, 5, 15 min) at the start: {load}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--int64-repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the 1024^3 GEMM")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for name, m, k, n in GEMMS:
        if args.quick and m == 1024:
            continue
        rows += bench_gemm(name, m, k, n, rng, args.repeats, args.int64_repeats)
    rows += bench_conv(rng, args.repeats, args.int64_repeats)
    for name, x_shape, stride in DEPTHWISE:
        rows += bench_depthwise(
            name, x_shape, stride, rng, args.repeats, args.int64_repeats
        )

    print("# Exact int8 GEMM and convolutions against NumPy\n")
    print("\n".join(machine_description()))
    print(
        f"- median of {args.repeats} runs ({args.int64_repeats} for int64); "
        "times in ms\n"
    )
    print(
        "| shape | refquant form | path | refquant | int64 | float32 "
        "| int64/rq | rq/f32 | rq/(f32+im2col) |"
    )
    print("|---|---|---|--:|--:|--:|--:|--:|--:|")
    for name, form, path, t_ref, t_i64, t_f32, t_f32_im2col in rows:
        extra = f"{t_ref / t_f32_im2col:.2f}" if t_f32_im2col else ""
        print(
            f"| {name} | {form} | {path} | {t_ref * 1e3:.3f} | {t_i64 * 1e3:.1f} "
            f"| {t_f32 * 1e3:.3f} | {t_i64 / t_ref:.1f} | {t_ref / t_f32:.2f} "
            f"| {extra} |"
        )
    times = bench_conv_requantized(rng, args.repeats)
    print(
        "\nfull conv2d 3x3 56x56x64->64 (accumulate + overflow check + "
        "requantize), ms: " + ", ".join(f"{p} {t * 1e3:.2f}" for p, t in times.items())
    )


if __name__ == "__main__":
    main()
