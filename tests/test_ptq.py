"""Post-training quantization: config resolution, calibration, the three modes.

Expected qparams are recomputed here from their formulas (specs/ptq.md);
output errors are checked against the bound of specs/ptq.md section 7.
"""

from __future__ import annotations

import numpy as np
import pytest

from refquant.calibration import make_observer
from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.graph import GraphBuilder, sequential
from refquant.ptq import (
    LayerSettings,
    QuantConfig,
    calibrate,
    prepare_graph,
    quantize_model,
)


def dense_graph(rng, k=6, c=4):
    w = rng.standard_normal((c, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) * 0.1
    return sequential([("Dense", {"weight": w, "bias": b}, {}, "fc")]), w, b


# ------------------------------------------------------------------ config
def test_config_resolution_order():
    cfg = QuantConfig(
        activation_observer="percentile",
        by_op={"Dense": {"weight_granularity": "per_tensor", "weight_bits": 6}},
        by_name={"fc2": {"weight_bits": 4}},
    )
    assert cfg.settings_for("conv", "Conv2D").weight_granularity == "per_channel"
    assert cfg.settings_for("fc1", "Dense").weight_bits == 6
    fc2 = cfg.settings_for("fc2", "Dense")
    assert (fc2.weight_bits, fc2.weight_granularity) == (4, "per_tensor")
    assert fc2.activation_observer == "percentile"


def test_default_settings_are_the_documented_ones():
    s = LayerSettings()
    w = s.weight_scheme("Conv2D")
    assert (w.bits, w.symmetric, w.narrow_range, w.granularity, w.axis) == (
        8,
        True,
        True,
        "per_channel",
        0,
    )
    assert s.weight_scheme("DepthwiseConv2D").axis == 3
    a = s.activation_scheme()
    assert (a.bits, a.symmetric, a.granularity, a.qmin, a.qmax) == (
        8,
        False,
        "per_tensor",
        -128,
        127,
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight_bits": 9}, "weight_bits must be an int in \\[2, 8\\]"),
        ({"weight_granularity": "per_row"}, "weight_granularity must be one of"),
        ({"weight_granularity": "per_group"}, "weight_group_size"),
        ({"weight_group_size": 32}, "weight_group_size must be None"),
        ({"activation_bits": 16}, "activation_bits must be an int in \\[2, 8\\]"),
        ({"activation_observer": "kl"}, "activation_observer must be one of"),
        ({"activation_observer_options": {"bits": 4}}, "must not set 'bits'"),
        ({"weight_symmetric": 1}, "weight_symmetric must be one of"),
        ({"colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_config_rejects_bad_settings(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        QuantConfig(**kwargs)


def test_config_rejects_bad_overrides():
    with pytest.raises(InvalidArgumentError, match="by_op key must be one of"):
        QuantConfig(by_op={"Dens": {}})
    with pytest.raises(InvalidArgumentError, match="weight_bits must be"):
        QuantConfig(by_name={"fc": {"weight_bits": 1}})
    with pytest.raises(InvalidTypeError, match="by_name\\['fc'\\] must be a mapping"):
        QuantConfig(by_name={"fc": 4})
    with pytest.raises(InvalidArgumentError, match="op must be one of"):
        QuantConfig().settings_for("x", "Conv3D")


# ------------------------------------------------------------------ calibrate
def test_calibration_streams_and_matches_one_pass(rng):
    g, _, _ = dense_graph(rng)
    x = rng.standard_normal((37, 6)).astype(np.float32)
    seen = []
    observers = {"fc": make_observer("minmax"), "input": make_observer("minmax")}
    obs = calibrate(
        g, x, observers, batch_size=5, progress=lambda d, t: seen.append((d, t))
    )
    y = g.run(x)
    assert obs["fc"].compute_range() == (float(y.min()), float(y.max()))
    assert obs["input"].compute_range() == (float(x.min()), float(x.max()))
    assert seen[-1] == (37, 37) and len(seen) == 8
    batches = [x[:10], x[10:]]  # an iterable of batches gives the same range
    obs2 = calibrate(g, batches, {"fc": make_observer("minmax")})
    assert obs2["fc"].compute_range() == obs["fc"].compute_range()


def test_calibrate_invalid_input(rng):
    g, _, _ = dense_graph(rng)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(InvalidArgumentError, match="observers key 'nope'"):
        calibrate(g, x, {"nope": make_observer("minmax")})
    with pytest.raises(InvalidTypeError, match="observers\\['fc'\\] must be"):
        calibrate(g, x, {"fc": 3})
    with pytest.raises(InvalidTypeError, match="calibration_data must be"):
        calibrate(g, "data", {})
    with pytest.raises(InvalidArgumentError, match="at least one sample"):
        calibrate(g, x[:0], {})
    with pytest.raises(InvalidArgumentError, match="batch_size must be"):
        calibrate(g, x, {}, batch_size=0)
    with pytest.raises(InvalidTypeError, match="graph must be"):
        calibrate("g", x, {})
    with pytest.raises(InvalidTypeError, match="progress must be"):
        calibrate(g, x, {}, progress=5)


# ------------------------------------------------------------------ static
def test_static_dense_qparams_and_error_bound(rng):
    g, w, b = dense_graph(rng)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    qm = quantize_model(g, x)
    y = g.run(x).astype(np.float64)
    # qparams by hand: eq. (4.1) asymmetric int8 input/output, (3.1) weights
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    s_x = (hi - lo) / 255
    assert qm.tensor_qparams["input"].scale == pytest.approx(s_x, rel=1e-12)
    assert qm.tensor_qparams["input"].zero_point == -128 - round(lo / s_x)
    s_w = np.abs(w.astype(np.float64)).max(axis=1) / 127
    node = qm.node("fc")
    np.testing.assert_allclose(node.weight.scale, s_w, rtol=1e-12)
    assert node.bias.dtype == np.int32
    np.testing.assert_array_equal(node.bias, np.rint(b / (s_x * s_w)))
    # bound (7.1): sum_k (|w| s_x/2 + (|x|+s_x/2) s_w/2) + s_x s_w/2 + s_y/2
    s_y = qm.tensor_qparams["fc"].scale
    bound = (
        np.abs(w) @ np.full(6, s_x / 2)
        + (np.abs(x) + s_x / 2) @ np.ones((6, 4)) * s_w / 2
        + s_x * s_w / 2
        + s_y / 2
    )
    err = np.abs(qm.run(x).astype(np.float64) - y)
    assert np.all(err <= bound * (1 + 1e-6))


def test_static_matches_float_on_conv_net(rng):
    g = small_convnet(rng)
    x = rng.standard_normal((16, 8, 8, 3)).astype(np.float32)
    qm = quantize_model(g, x, batch_size=4)
    y, yq = g.run(x), qm.run(x)
    # end-to-end: int8 grid through 6 layers stays within 5% of the output range
    assert np.abs(yq - y).max() <= 0.05 * (y.max() - y.min())


def small_convnet(rng):
    b = GraphBuilder("small")
    x = b.input("input")
    h = b.add(
        "Conv2D",
        x,
        name="c1",
        padding="same",
        params={
            "weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
            "bias": rng.standard_normal(8).astype(np.float32) * 0.1,
        },
    )
    h = b.add(
        "BatchNorm",
        h,
        name="bn",
        params={
            "gamma": rng.uniform(0.5, 1.5, 8).astype(np.float32),
            "beta": rng.standard_normal(8).astype(np.float32) * 0.1,
            "mean": rng.standard_normal(8).astype(np.float32) * 0.1,
            "var": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        },
    )
    h = b.add("ReLU6", h, name="r1")
    d = b.add(
        "DepthwiseConv2D",
        h,
        name="dw",
        padding=1,
        params={"weight": rng.standard_normal((1, 3, 3, 8)).astype(np.float32) * 0.3},
    )
    s = b.add("Add", [h, d], name="add", activation="relu")
    m = b.add("MaxPool", s, name="mp", pool_size=2)
    a = b.add("AvgPool", s, name="ap", pool_size=2)
    c = b.add("Concat", [m, a], name="cat")
    c = b.add("Pad", c, name="pad", paddings=((0, 0), (1, 1), (1, 1), (0, 0)))
    p = b.add("GlobalAvgPool", c, name="gap")
    o = b.add(
        "Dense",
        p,
        name="fc",
        params={
            "weight": rng.standard_normal((5, 16)).astype(np.float32) * 0.3,
            "bias": np.zeros(5, np.float32),
        },
    )
    return b.build(outputs=o)


def test_overrides_are_honored(rng):
    g = small_convnet(rng)
    x = rng.standard_normal((8, 8, 8, 3)).astype(np.float32)
    x[0, 0, 0, 0] = 40.0  # one outlier in the input
    cfg = QuantConfig(
        by_op={"Dense": {"weight_granularity": "per_tensor"}},
        by_name={
            "c1": {"weight_bits": 4},
            "input": {
                "activation_observer": "percentile",
                "activation_observer_options": {"percentile": 99.0},
            },
            "dw": {"activation_bits": 4, "activation_symmetric": True},
        },
    )
    qm = quantize_model(g, x, config=cfg)
    assert qm.node("fc").weight.scale.shape == ()
    assert qm.node("dw").weight.scale.shape == (8,)
    c1 = qm.node("c1").weight
    assert c1.scheme.bits == 4 and np.abs(c1.codes).max() == 7
    assert qm.tensor_qparams["input"].scale < 40.0 / 255  # outlier clipped
    dw = qm.tensor_qparams["dw"]
    assert (dw.bits, dw.zero_point) == (4, 0)
    _, codes = qm.run_codes(x, capture=True)
    assert codes["dw"].min() >= -8 and codes["dw"].max() <= 7


def test_unfolded_batch_norm_runs_as_depthwise(rng):
    bn = {
        "gamma": np.float32([2, 0.5]),
        "beta": np.float32([0.1, -0.2]),
        "mean": np.float32([0.3, 0.0]),
        "var": np.float32([1.0, 4.0]),
    }
    g = sequential([("ReLU", {}, {}), ("BatchNorm", bn, {})])
    x = rng.standard_normal((20, 3, 3, 2)).astype(np.float32)
    qm = quantize_model(g, x)
    assert qm.nodes[1].op == "DepthwiseConv2D"
    y = g.run(x)
    assert np.abs(qm.run(x) - y).max() <= 0.02 * (y.max() - y.min())


# ------------------------------------------------------------------ other modes
def test_dynamic_and_weight_only(rng):
    g = small_convnet(rng)
    x = rng.standard_normal((4, 8, 8, 3)).astype(np.float32)
    y = g.run(x)
    dyn = quantize_model(g, mode="dynamic")
    assert dyn.mode == "dynamic" and dyn.node("fc").bias.dtype == np.float32
    assert np.abs(dyn.run(x) - y).max() <= 0.05 * (y.max() - y.min())
    cfg = QuantConfig(
        weight_bits=4, weight_granularity="per_group", weight_group_size=32
    )
    wo = quantize_model(g, mode="weight_only", config=cfg)
    w = wo.node("fc").weight
    assert w.scale.shape == (5, 1)  # K = 16 < 32: one group per row
    assert np.abs(w.codes).max() <= 7
    assert np.abs(wo.run(x) - y).max() <= 0.2 * (y.max() - y.min())
    # weight-only equals the float graph on the dequantized weights
    pg = prepare_graph(g)
    nodes = [
        n.replace(
            params={**n.params, "weight": wo.node(n.name).weight.dequantize(np.float32)}
        )
        if "weight" in n.params
        else n
        for n in pg.nodes
    ]
    np.testing.assert_array_equal(wo.run(x), pg.replace(nodes=nodes).run(x))


def test_per_group_rejected_outside_weight_only(rng):
    g, _, _ = dense_graph(rng)
    cfg = QuantConfig(weight_granularity="per_group", weight_group_size=2)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    for mode in ("static", "dynamic"):
        with pytest.raises(NotImplementedError, match="per_group"):
            quantize_model(g, x, mode=mode, config=cfg)


def test_quantize_model_invalid_input(rng):
    g, _, _ = dense_graph(rng)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(InvalidTypeError, match="graph must be"):
        quantize_model("graph", x)
    with pytest.raises(InvalidArgumentError, match="mode must be one of"):
        quantize_model(g, x, mode="qat")
    with pytest.raises(InvalidArgumentError, match="batch_size must be an int >= 1"):
        quantize_model(g, x, batch_size=0)
    with pytest.raises(InvalidTypeError, match="calibration_data must be"):
        quantize_model(g, None)
    with pytest.raises(InvalidTypeError, match="progress must be"):
        quantize_model(g, x, progress="yes")
    with pytest.raises(InvalidArgumentError, match="config must be None"):
        quantize_model(g, x, config=3)
    with pytest.raises(InvalidArgumentError, match="names 'fc9', which is no layer"):
        quantize_model(g, x, config=QuantConfig(by_name={"fc9": {"weight_bits": 4}}))
    with pytest.raises(InvalidTypeError, match="calibration_data batch 0"):
        quantize_model(g, [[1.0, 2.0]])


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# ------------------------------------------------------------------ real assets
def _cached(*names):
    from refquant import assets

    return all(assets.is_cached(n) for n in names)


@pytest.mark.assets
@pytest.mark.skipif(not _cached("mnist_cnn", "mnist_5k"), reason="assets not cached")
def test_mnist_cnn_static_int8_agrees_with_fp32():
    from refquant import assets, datasets
    from refquant.graph.models import mnist_cnn
    from refquant.io.torch_pth import load_torch_state_dict

    (path,) = assets.asset_paths("mnist_cnn")
    g = mnist_cnn(load_torch_state_dict(path))
    images, labels = datasets.mnist_5k(download=False)
    x = datasets.mnist_preprocess(images)
    idx = np.concatenate([np.flatnonzero(labels == c)[:50] for c in range(10)])
    qm = quantize_model(g, x[idx], batch_size=100)
    xe, ye = x[:1000], labels[:1000]
    p0, p1 = g.run(xe).argmax(1), qm.run(xe).argmax(1)
    assert (p0 == p1).mean() >= 0.998  # acceptance: >= 99.8% agreement
    assert (p1 == ye).mean() >= (p0 == ye).mean() - 0.001
    assert qm.fp32_size_bytes() / qm.size_bytes() >= 3.9
