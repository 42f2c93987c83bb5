"""Reference-model builders: layout conversion, key errors, real accuracy, torch.

Synthetic-weight tests compare against independent re-implementations that
work in PyTorch's own NCHW layout (a float64 NumPy one here, and
torch.nn.functional when torch is installed).  Bounds: float32 results agree
with the float64 NCHW oracle to ``1e-5 * max |logit|`` (a few float32 dot
products of length <= 3136 stacked; the worst case seen is about 1e-7), and
with torch to ``2e-5 * max |logit|`` on MobileNetV2 (52 stacked layers).
"""

from __future__ import annotations

import numpy as np
import pytest

from refquant import assets
from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.graph import fold_batch_norm, fuse_activations
from refquant.graph.models import (
    MOBILENET_V2_STRIDE2_BLOCKS,
    conv_weight_oihw_to_ohwi,
    dense_columns_nchw_to_nhwc,
    depthwise_weight_torch_to_1hwc,
    mnist_cnn,
    mobilenet_v2,
)


# ---------------------------------------------------------------- synthetic
def mnist_state_dict(seed=0):
    r = np.random.default_rng(seed)
    shapes = {
        "features.0.weight": (32, 1, 3, 3),
        "features.0.bias": (32,),
        "features.3.weight": (64, 32, 3, 3),
        "features.3.bias": (64,),
        "classifier.0.weight": (128, 3136),
        "classifier.0.bias": (128,),
        "classifier.2.weight": (10, 128),
        "classifier.2.bias": (10,),
    }
    return {
        k: (r.standard_normal(s) * 0.1).astype(np.float32) for k, s in shapes.items()
    }


def nchw_conv3x3_pad1(x, w, b):
    """PyTorch Conv2d(k=3, padding=1) in NCHW, float64, one loop per tap."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, wd = x.shape[2:]
    y = np.zeros((x.shape[0], w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            y += np.einsum(
                "nchw,oc->nohw", xp[:, :, i : i + h, j : j + wd], w[:, :, i, j]
            )
    return y + b[None, :, None, None]


def nchw_maxpool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def mnist_oracle_nchw(sd, x_nchw):
    p = {k: v.astype(np.float64) for k, v in sd.items()}
    h = np.maximum(
        nchw_conv3x3_pad1(x_nchw, p["features.0.weight"], p["features.0.bias"]), 0
    )
    h = nchw_maxpool2(h)
    h = np.maximum(
        nchw_conv3x3_pad1(h, p["features.3.weight"], p["features.3.bias"]), 0
    )
    h = nchw_maxpool2(h).reshape(x_nchw.shape[0], -1)  # PyTorch NCHW flatten
    h = np.maximum(h @ p["classifier.0.weight"].T + p["classifier.0.bias"], 0)
    return h @ p["classifier.2.weight"].T + p["classifier.2.bias"]


def test_mnist_cnn_matches_nchw_oracle():
    sd = mnist_state_dict()
    g = mnist_cnn(sd)
    assert g.num_params == 421_642
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28))
    want = mnist_oracle_nchw(sd, x)
    got = g.run(x.transpose(0, 2, 3, 1).astype(np.float32))
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_layout_helpers_hand_values():
    w = np.arange(2 * 3 * 1 * 2).reshape(2, 3, 1, 2)  # OIHW
    ohwi = conv_weight_oihw_to_ohwi(w)
    assert ohwi.shape == (2, 1, 2, 3) and ohwi[1, 0, 1, 2] == w[1, 2, 0, 1]
    dw = depthwise_weight_torch_to_1hwc(np.arange(8).reshape(2, 1, 2, 2))
    assert dw.shape == (1, 2, 2, 2) and dw[0, 1, 0, 1] == 6  # w[1, 0, 1, 0]
    # C=2, H=1, W=2: NCHW columns [c0w0, c0w1, c1w0, c1w1] -> NHWC [c0w0, c1w0, ...]
    fc = dense_columns_nchw_to_nhwc(np.array([[10, 11, 20, 21]]), 2, 1, 2)
    np.testing.assert_array_equal(fc, [[10, 20, 11, 21]])
    with pytest.raises(InvalidArgumentError, match="must have shape"):
        dense_columns_nchw_to_nhwc(np.ones((2, 5)), 2, 1, 2)


def test_builders_reject_bad_state_dicts():
    sd = mnist_state_dict()
    with pytest.raises(InvalidTypeError, match="state_dict must be a mapping"):
        mnist_cnn([1, 2])
    missing = {k: v for k, v in sd.items() if k != "features.3.bias"}
    with pytest.raises(InvalidArgumentError, match="missing key 'features.3.bias'"):
        mnist_cnn(missing)
    bad = {**sd, "features.0.weight": sd["features.0.weight"][0]}
    with pytest.raises(InvalidArgumentError, match="must have rank 4"):
        mnist_cnn(bad)
    with pytest.raises(InvalidArgumentError, match="missing key .features.0.0.weight"):
        mobilenet_v2(sd)


SETTING = [
    (1, 4, 1, 1),
    (2, 6, 2, 2),
    (2, 8, 3, 2),
    (2, 8, 4, 2),
    (2, 12, 3, 1),
    (2, 16, 3, 2),
    (2, 20, 1, 1),
]  # fmt: skip (t, c, n, s), tiny widths


def tiny_mobilenet_state_dict(seed=0, classes=7, last=24):
    """torchvision MobileNetV2 keys and block pattern with tiny widths."""
    r = np.random.default_rng(seed)
    sd = {}

    def conv(key, shape):
        sd[key] = (r.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(
            np.float32
        )

    def bn(key, c):
        sd[f"{key}.weight"] = r.uniform(0.5, 1.5, c).astype(np.float32)
        sd[f"{key}.bias"] = r.uniform(-0.2, 0.2, c).astype(np.float32)
        sd[f"{key}.running_mean"] = r.uniform(-0.2, 0.2, c).astype(np.float32)
        sd[f"{key}.running_var"] = r.uniform(0.5, 2, c).astype(np.float32)

    conv("features.0.0.weight", (6, 3, 3, 3))
    bn("features.0.1", 6)
    c_in, k = 6, 1
    for t, c, n, s in SETTING:
        for i in range(n):
            assert (k in MOBILENET_V2_STRIDE2_BLOCKS) == (s == 2 and i == 0)
            p, hidden, j = f"features.{k}.conv", c_in * t, 0
            if t != 1:
                conv(f"{p}.0.0.weight", (hidden, c_in, 1, 1))
                bn(f"{p}.0.1", hidden)
                j = 1
            conv(f"{p}.{j}.0.weight", (hidden, 1, 3, 3))
            bn(f"{p}.{j}.1", hidden)
            conv(f"{p}.{j + 1}.weight", (c, hidden, 1, 1))
            bn(f"{p}.{j + 2}", c)
            c_in, k = c, k + 1
    conv(f"features.{k}.0.weight", (last, c_in, 1, 1))
    bn(f"features.{k}.1", last)
    conv("classifier.1.weight", (classes, last))
    sd["classifier.1.bias"] = r.uniform(-0.1, 0.1, classes).astype(np.float32)
    return sd


def test_mobilenet_v2_structure_on_tiny_weights():
    g = mobilenet_v2(tiny_mobilenet_state_dict())
    ops = [n.op for n in g.nodes]
    assert ops.count("DepthwiseConv2D") == 17 and ops.count("BatchNorm") == 52
    assert ops.count("Add") == 10  # stride-1 blocks with C_in == C_out
    assert g.node("features.0.0").attrs["padding"] == ((1, 1), (1, 1))
    assert g.node("features.2.conv.1.0").attrs["strides"] == (2, 2)
    assert g.node("features.3.add").inputs == ("features.2.conv.3", "features.3.conv.3")
    y = g.run(np.zeros((2, 32, 32, 3), np.float32))
    assert y.shape == (2, 7)
    f = fuse_activations(fold_batch_norm(g))
    assert [n.op for n in f.nodes].count("BatchNorm") == 0
    x = np.random.default_rng(2).standard_normal((2, 32, 32, 3)).astype(np.float32)
    want = g.run(x).astype(np.float64)
    assert np.abs(f.run(x) - want).max() <= 1e-5 * np.abs(want).max()


# ---------------------------------------------------------------- torch peer
def torch_mobilenet_v2(torch, sd, x_nchw):
    """MobileNetV2 forward in torch.nn.functional, NCHW, from the state dict."""
    fn = torch.nn.functional
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}

    def cbr(h, conv_key, bn_key, stride=1, groups=1, act=True):
        w = t[f"{conv_key}.weight"]
        h = fn.conv2d(h, w, stride=stride, padding=w.shape[2] // 2, groups=groups)
        h = fn.batch_norm(
            h,
            t[f"{bn_key}.running_mean"],
            t[f"{bn_key}.running_var"],
            t[f"{bn_key}.weight"],
            t[f"{bn_key}.bias"],
            False,
            0.0,
            1e-5,
        )
        return fn.relu6(h) if act else h

    h = cbr(torch.from_numpy(x_nchw), "features.0.0", "features.0.1", stride=2)
    k = 1
    while f"features.{k}.conv.0.0.weight" in t:
        p, stride = f"features.{k}.conv", 2 if k in (2, 4, 7, 14) else 1
        j = 1 if f"{p}.3.weight" in t else 0
        y = cbr(h, f"{p}.0.0", f"{p}.0.1") if j else h
        y = cbr(y, f"{p}.{j}.0", f"{p}.{j}.1", stride, groups=y.shape[1])
        y = cbr(y, f"{p}.{j + 1}", f"{p}.{j + 2}", act=False)
        h = h + y if stride == 1 and h.shape == y.shape else y
        k += 1
    h = cbr(h, f"features.{k}.0", f"features.{k}.1").mean(dim=(2, 3))
    return fn.linear(h, t["classifier.1.weight"], t["classifier.1.bias"]).numpy()


def test_tiny_mobilenet_v2_matches_torch():
    torch = pytest.importorskip("torch")
    sd = tiny_mobilenet_state_dict(seed=3)
    x = np.random.default_rng(4).standard_normal((2, 3, 40, 40)).astype(np.float32)
    want = torch_mobilenet_v2(torch, sd, x)
    got = mobilenet_v2(sd).run(x.transpose(0, 2, 3, 1))
    assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()


# ---------------------------------------------------------------- real assets
def need(*names):
    missing = [n for n in names if not assets.is_cached(n)]
    return pytest.mark.skipif(bool(missing), reason=f"assets not cached: {missing}")


def load_state_dict(name):
    from refquant.io.torch_pth import load_torch_state_dict

    (path,) = assets.asset_paths(name)
    return load_torch_state_dict(path)


@pytest.fixture(scope="module")
def mnist_graph():
    return mnist_cnn(load_state_dict("mnist_cnn"))


@pytest.fixture(scope="module")
def mobilenet_sd():
    return load_state_dict("mobilenet_v2")


@pytest.mark.assets
@need("mnist_cnn", "mnist_5k", "foolbox_mnist")
def test_mnist_cnn_fp32_accuracy(mnist_graph):
    from refquant import datasets

    images, labels = datasets.mnist_5k(download=False)
    x = datasets.mnist_preprocess(images)
    pred = mnist_graph.run(x, batch_size=1000).argmax(axis=1)
    assert int((pred == labels).sum()) == 4993  # 99.86%, as measured with torch
    images, labels = datasets.foolbox_mnist(download=False)
    pred = mnist_graph.run(datasets.mnist_preprocess(images)).argmax(axis=1)
    assert int((pred == labels).sum()) == 20


@pytest.mark.assets
@need("mobilenet_v2", "foolbox_imagenet")
def test_mobilenet_v2_fp32_top1(mobilenet_sd):
    from refquant import datasets

    images, labels = datasets.foolbox_imagenet(download=False)
    x = datasets.imagenet_preprocess(images)
    g = mobilenet_v2(mobilenet_sd)
    assert (
        g.num_params - sum(v.size for k, v in mobilenet_sd.items() if "running" in k)
        == 3_504_872
    )
    logits = g.run(x, batch_size=10)
    assert int((logits.argmax(axis=1) == labels).sum()) == 18
    folded = fuse_activations(fold_batch_norm(g)).run(x, batch_size=10)
    assert np.array_equal(folded.argmax(axis=1), logits.argmax(axis=1))
    assert np.abs(folded - logits).max() <= 2e-5 * np.abs(logits).max()


@pytest.mark.assets
@need("mobilenet_v2", "foolbox_imagenet", "mnist_cnn", "foolbox_mnist")
def test_real_models_match_torch(mobilenet_sd, mnist_graph):
    torch = pytest.importorskip("torch")
    from refquant import datasets

    images, _ = datasets.foolbox_imagenet(download=False)
    x = datasets.imagenet_preprocess(images[:6])
    want = torch_mobilenet_v2(torch, mobilenet_sd, x.transpose(0, 3, 1, 2).copy())
    got = mobilenet_v2(mobilenet_sd).run(x)
    assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()
    digits, _ = datasets.foolbox_mnist(download=False)
    xm = datasets.mnist_preprocess(digits)
    sd = {k: np.asarray(v) for k, v in load_state_dict("mnist_cnn").items()}
    want = torch_mnist(torch, sd, xm.transpose(0, 3, 1, 2).copy())
    got = mnist_graph.run(xm)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def torch_mnist(torch, sd, x_nchw):
    """MNISTNet forward in torch.nn.functional (NCHW, NCHW flatten)."""
    fn = torch.nn.functional
    t = {k: torch.from_numpy(v) for k, v in sd.items()}
    h = torch.from_numpy(x_nchw)
    for k in ("features.0", "features.3"):
        h = fn.conv2d(h, t[f"{k}.weight"], t[f"{k}.bias"], padding=1)
        h = fn.max_pool2d(fn.relu(h), 2)
    h = fn.relu(
        fn.linear(h.flatten(1), t["classifier.0.weight"], t["classifier.0.bias"])
    )
    return fn.linear(h, t["classifier.2.weight"], t["classifier.2.bias"]).numpy()


def test_mnist_cnn_matches_torch_on_synthetic_weights():
    torch = pytest.importorskip("torch")
    sd = mnist_state_dict(seed=5)
    x = np.random.default_rng(6).standard_normal((4, 1, 28, 28)).astype(np.float32)
    want = torch_mnist(torch, sd, x)
    got = mnist_cnn(sd).run(x.transpose(0, 2, 3, 1))
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
