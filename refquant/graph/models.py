"""Builders of the two reference networks from PyTorch state dicts.

Both return FP32 graphs in NHWC with BatchNorm nodes present (fold them with
:func:`refquant.graph.fold_batch_norm`).  Node names follow the PyTorch module
names (``features.3``, ``classifier.0``), so per-layer reports map back to
the original model.  Layout conversions (specs/graph.md section 7):

* conv OIHW ``[C_out, C_in/g, kh, kw]`` -> OHWI ``w.transpose(0, 2, 3, 1)``;
* depthwise ``[C, 1, kh, kw]`` -> ``[1, kh, kw, C]`` ``w.transpose(1, 2, 3, 0)``;
* the first dense layer after an NCHW flatten gets its input columns permuted
  so that the NHWC flatten feeds it the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from refquant._validation import check_type
from refquant.errors import InvalidArgumentError
from refquant.graph.builders import GraphBuilder
from refquant.graph.graph import Graph

# torchvision MobileNetV2 inverted-residual blocks (features.N) with stride 2;
# every other block has stride 1 (from its (t, c, n, s) setting table).
MOBILENET_V2_STRIDE2_BLOCKS = frozenset({2, 4, 7, 14})
TORCH_BN_EPSILON = 1e-5


# ---------------------------------------------------------------- layouts
def conv_weight_oihw_to_ohwi(w) -> np.ndarray:
    """PyTorch ``[C_out, C_in/g, kh, kw]`` -> engine ``[C_out, kh, kw, C_in/g]``."""
    return np.ascontiguousarray(np.asarray(w, dtype=np.float32).transpose(0, 2, 3, 1))


def depthwise_weight_torch_to_1hwc(w) -> np.ndarray:
    """PyTorch depthwise ``[C*M, 1, kh, kw]`` -> engine ``[1, kh, kw, C*M]``."""
    return np.ascontiguousarray(np.asarray(w, dtype=np.float32).transpose(1, 2, 3, 0))


def dense_columns_nchw_to_nhwc(w, channels: int, height: int, width: int):
    """Permute ``w[:, c*H*W + h*W + x]`` to ``w'[:, (h*W + x)*C + c]``.

    A dense layer trained after PyTorch's NCHW flatten then gives the same
    result after an NHWC flatten.
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] != channels * height * width:
        raise InvalidArgumentError(
            f"w must have shape (C_out, {channels}*{height}*{width}); got {w.shape}"
        )
    w4 = w.reshape(w.shape[0], channels, height, width)
    return np.ascontiguousarray(w4.transpose(0, 2, 3, 1).reshape(w.shape[0], -1))


# ---------------------------------------------------------------- state dicts
def _take(state_dict: Mapping, key: str, ndim: int | None = None) -> np.ndarray:
    if key not in state_dict:
        raise InvalidArgumentError(
            f"state_dict is missing key {key!r}; check that the weights belong to "
            "this architecture"
        )
    arr = np.asarray(state_dict[key], dtype=np.float32)
    if ndim is not None and arr.ndim != ndim:
        raise InvalidArgumentError(
            f"state_dict[{key!r}] must have rank {ndim}; got shape {arr.shape}"
        )
    return arr


def _bn_params(state_dict: Mapping, prefix: str) -> dict:
    return {
        "gamma": _take(state_dict, f"{prefix}.weight", 1),
        "beta": _take(state_dict, f"{prefix}.bias", 1),
        "mean": _take(state_dict, f"{prefix}.running_mean", 1),
        "var": _take(state_dict, f"{prefix}.running_var", 1),
    }


def _check_state_dict(state_dict) -> None:
    check_type("state_dict", state_dict, (Mapping,), "a mapping str -> array")


# ---------------------------------------------------------------- MNIST CNN
def mnist_cnn(state_dict: Mapping) -> Graph:
    """ccexam MNISTNet on NHWC ``(N, 28, 28, 1)`` normalized input -> 10 logits.

    Conv3x3(1->32, pad 1) - ReLU - MaxPool2 - Conv3x3(32->64, pad 1) - ReLU -
    MaxPool2 - Flatten - Dense(3136->128) - ReLU - Dense(128->10); keys
    ``features.{0,3}``, ``classifier.{0,2}``.  Preprocessing (not part of the
    graph): ``(x / 255 - 0.1307) / 0.3081``.
    """
    _check_state_dict(state_dict)
    w0 = _take(state_dict, "features.0.weight", 4)
    w3 = _take(state_dict, "features.3.weight", 4)
    fc0 = _take(state_dict, "classifier.0.weight", 2)
    side = int(round((fc0.shape[1] / w3.shape[0]) ** 0.5))
    b = GraphBuilder("mnist_cnn")
    x = b.input("input")
    x = b.add(
        "Conv2D",
        x,
        name="features.0",
        padding=1,
        params={
            "weight": conv_weight_oihw_to_ohwi(w0),
            "bias": _take(state_dict, "features.0.bias", 1),
        },
    )
    x = b.add("ReLU", x, name="features.1")
    x = b.add("MaxPool", x, name="features.2", pool_size=2)
    x = b.add(
        "Conv2D",
        x,
        name="features.3",
        padding=1,
        params={
            "weight": conv_weight_oihw_to_ohwi(w3),
            "bias": _take(state_dict, "features.3.bias", 1),
        },
    )
    x = b.add("ReLU", x, name="features.4")
    x = b.add("MaxPool", x, name="features.5", pool_size=2)
    x = b.add("Flatten", x, name="flatten")
    x = b.add(
        "Dense",
        x,
        name="classifier.0",
        params={
            "weight": dense_columns_nchw_to_nhwc(fc0, w3.shape[0], side, side),
            "bias": _take(state_dict, "classifier.0.bias", 1),
        },
    )
    x = b.add("ReLU", x, name="classifier.1")
    x = b.add(
        "Dense",
        x,
        name="classifier.2",
        params={
            "weight": _take(state_dict, "classifier.2.weight", 2),
            "bias": _take(state_dict, "classifier.2.bias", 1),
        },
    )
    return b.build(outputs=x)


# ---------------------------------------------------------------- MobileNetV2
def _conv_bn(b, sd, x, prefix, bn_prefix, *, stride=1, relu6=True, depthwise=False):
    """Conv (or depthwise) without bias, BatchNorm, optional ReLU6."""
    w = _take(sd, f"{prefix}.weight", 4)
    pad = (w.shape[2] // 2, w.shape[3] // 2)
    if depthwise:
        x = b.add(
            "DepthwiseConv2D",
            x,
            name=prefix,
            strides=stride,
            padding=pad,
            params={"weight": depthwise_weight_torch_to_1hwc(w)},
        )
    else:
        x = b.add(
            "Conv2D",
            x,
            name=prefix,
            strides=stride,
            padding=pad,
            params={"weight": conv_weight_oihw_to_ohwi(w)},
        )
    x = b.add(
        "BatchNorm",
        x,
        name=bn_prefix,
        epsilon=TORCH_BN_EPSILON,
        params=_bn_params(sd, bn_prefix),
    )
    if relu6:
        x = b.add("ReLU6", x, name=prefix.rsplit(".", 1)[0] + ".2")
    return x


def _inverted_residual(b, sd, x, k: int) -> str:
    p = f"features.{k}.conv"
    stride = 2 if k in MOBILENET_V2_STRIDE2_BLOCKS else 1
    block_in = x
    has_expand = f"{p}.3.weight" in sd
    i = 0
    if has_expand:
        x = _conv_bn(b, sd, x, f"{p}.0.0", f"{p}.0.1")
        i = 1
    x = _conv_bn(b, sd, x, f"{p}.{i}.0", f"{p}.{i}.1", stride=stride, depthwise=True)
    x = _conv_bn(b, sd, x, f"{p}.{i + 1}", f"{p}.{i + 2}", relu6=False)
    c_in = _take(sd, f"{p}.0.0.weight", 4).shape[0 if not has_expand else 1]
    c_out = _take(sd, f"{p}.{i + 1}.weight", 4).shape[0]
    if stride == 1 and c_in == c_out:
        x = b.add("Add", [block_in, x], name=f"features.{k}.add")
    return x


def mobilenet_v2(state_dict: Mapping) -> Graph:
    """torchvision MobileNetV2 on NHWC ``(N, 224, 224, 3)`` -> 1000 logits.

    features.0: Conv3x3 stride 2 pad 1 - BN - ReLU6; features.1..17: inverted
    residual blocks (1x1 expand - BN - ReLU6 when present, depthwise 3x3 pad 1
    - BN - ReLU6, 1x1 project - BN, Add when stride 1 and C_in == C_out);
    features.18: Conv1x1 - BN - ReLU6; GlobalAvgPool; classifier.1 Dense.
    Padding is explicit and symmetric ``kernel // 2`` (PyTorch), not "same".
    BatchNorm epsilon 1e-5.  Preprocessing (not part of the graph): ImageNet
    mean/std on RGB in [0, 1].
    """
    _check_state_dict(state_dict)
    b = GraphBuilder("mobilenet_v2")
    x = b.input("input")
    x = _conv_bn(b, state_dict, x, "features.0.0", "features.0.1", stride=2)
    k = 1
    while f"features.{k}.conv.0.0.weight" in state_dict:
        x = _inverted_residual(b, state_dict, x, k)
        k += 1
    if k == 1:
        _take(state_dict, "features.1.conv.0.0.weight")  # raises: not MobileNetV2
    x = _conv_bn(b, state_dict, x, f"features.{k}.0", f"features.{k}.1")
    x = b.add("GlobalAvgPool", x, name="pool")
    x = b.add(
        "Dense",
        x,
        name="classifier.1",
        params={
            "weight": _take(state_dict, "classifier.1.weight", 2),
            "bias": _take(state_dict, "classifier.1.bias", 1),
        },
    )
    return b.build(outputs=x)
