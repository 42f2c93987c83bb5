"""Every weight scheme of refquant on the real weights of a trained network.

Loads the MNIST CNN's trained weights (fetched and sha256-checked by
``refquant.assets``), quantizes each weight tensor with per-tensor, per-channel
and per-group schemes at 8 and 4 bits, binary, ternary, fp16 and bf16, and
prints the SQNR of each against FP32 together with the stored size.

    python examples/weight_schemes_on_real_weights.py [--asset mobilenet_v2]
"""

from __future__ import annotations

import argparse

import numpy as np

import refquant
from refquant import assets
from refquant.io import load_torch_state_dict


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    noise = float(np.sum((x.astype(np.float64) - y) ** 2))
    signal = float(np.sum(x.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


def schemes(ndim: int) -> dict:
    """Name -> QuantScheme; output channels are axis 0 of PyTorch weights."""
    channel = {"granularity": "per_channel", "axis": 0}
    group = {"granularity": "per_group", "axis": ndim - 1, "group_size": 32}
    return {
        "int8 per-tensor": refquant.QuantScheme(8, symmetric=True, narrow_range=True),
        "int8 per-channel": refquant.QuantScheme(
            8, symmetric=True, narrow_range=True, **channel
        ),
        "int4 per-channel": refquant.QuantScheme(4, symmetric=True, **channel),
        "int4 per-group 32": refquant.QuantScheme(4, symmetric=True, **group),
    }


def rows_for(name: str, w: np.ndarray):
    for label, scheme in schemes(w.ndim).items():
        if scheme.granularity == "per_group" and w.shape[-1] < 32:
            continue
        qp = refquant.qparams_from_tensor(w, scheme)
        w_hat = refquant.dequantize(refquant.quantize(w, qp), qp)
        bits = w.size * scheme.bits + qp.scale.size * 32
        yield label, sqnr_db(w, w_hat), bits / 8
    # binary codes pack into 1 bit, ternary into 2 bits; one float32 scale a row
    for label, fn, code_bits in (
        ("binary", refquant.binarize, 1),
        ("ternary", refquant.ternarize, 2),
    ):
        low = fn(w, axis=0)
        nbytes = (w.size * code_bits + low.scale.size * 32) / 8
        yield label, sqnr_db(w, low.dequantize()), nbytes
    yield "fp16", sqnr_db(w, refquant.to_float16(w).astype(np.float32)), w.size * 2
    yield "bf16", sqnr_db(w, refquant.to_bfloat16(w)), w.size * 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--asset", default="mnist_cnn", choices=["mnist_cnn", "mobilenet_v2"]
    )
    args = parser.parse_args(argv)
    (path,) = assets.asset_paths(args.asset, download=True)
    state = load_torch_state_dict(path)
    weights = {k: v for k, v in state.items() if k.endswith("weight") and v.ndim >= 2}
    print(f"{args.asset}: {len(weights)} weight tensors from {path.name}\n")
    print(f"{'tensor':<28} {'scheme':<18} {'SQNR dB':>8} {'bytes':>10}")
    for name, w in list(weights.items())[:6]:
        for label, db, nbytes in rows_for(name, w):
            print(f"{name:<28} {label:<18} {db:8.2f} {int(nbytes):>10,}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
