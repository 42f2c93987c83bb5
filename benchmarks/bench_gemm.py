"""Speed of refquant's exact int8 GEMM and conv against NumPy, in one run.

For each shape, the median wall time of several runs of

* ``refquant``: :func:`refquant.kernels.gemm.exact_int_gemm` on int8 operands
  (conversion, centring, BLAS calls and the int64 result included), or
  :func:`refquant.kernels.conv.conv2d_accumulator` (im2col included);
* ``int64``: ``numpy.matmul`` on int64 copies of the same operands (for the
  conv: on the int64 im2col matrix, built beforehand and not timed);
* ``float32``: ``numpy.matmul`` on float32 copies (for the conv: on the float32
  im2col matrix; the ``f32+im2col`` column also times building it);

then the ratios ``int64 / refquant`` (goal >= 10) and ``refquant / float32``
(goal <= 2).  Usage: ``python benchmarks/bench_gemm.py [--repeats N] [--quick]``.
On a machine shared with other busy processes, multi-threaded BLAS stalls
for whole scheduler slices; run with ``OPENBLAS_NUM_THREADS=1`` in the
shell for stable, single-threaded ratios (the script never sets it).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from refquant.kernels.conv import conv2d, conv2d_accumulator
from refquant.kernels.gemm import exact_int_gemm, plan_gemm

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
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    b = rng.integers(-127, 128, (k, n)).astype(np.int8)
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    assert (exact_int_gemm(a, b) == a64 @ b64).all()
    t_ref, t_f32 = interleaved(
        [lambda: exact_int_gemm(a, b), lambda: a32 @ b32], repeats
    )
    t_i64 = median_time(lambda: a64 @ b64, int64_repeats)
    return name, plan_gemm(a, b).path, t_ref, t_i64, t_f32, None


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
    return name, "im2col+float32", t_ref, t_i64, t_f32, t_f32_im2col


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
        rows.append(bench_gemm(name, m, k, n, rng, args.repeats, args.int64_repeats))
    rows.append(bench_conv(rng, args.repeats, args.int64_repeats))

    print(
        f"numpy {np.__version__}; median of {args.repeats} runs "
        f"({args.int64_repeats} for int64); times in ms"
    )
    head = (
        f"{'shape':34} {'path':16} {'refquant':>9} {'int64':>9} {'float32':>8} "
        f"{'int64/rq':>9} {'rq/f32':>7} {'rq/(f32+im2col)':>16}"
    )
    print(head)
    for name, path, t_ref, t_i64, t_f32, t_f32_im2col in rows:
        extra = f"{t_ref / t_f32_im2col:16.2f}" if t_f32_im2col else f"{'':16}"
        print(
            f"{name:34} {path:16} {t_ref * 1e3:9.3f} {t_i64 * 1e3:9.1f} "
            f"{t_f32 * 1e3:8.3f} {t_i64 / t_ref:9.1f} {t_ref / t_f32:7.2f} {extra}"
        )
    times = bench_conv_requantized(rng, args.repeats)
    print(
        "full conv2d (accumulate + overflow check + requantize), ms: "
        + ", ".join(f"{p} {t * 1e3:.2f}" for p, t in times.items())
    )


if __name__ == "__main__":
    main()
