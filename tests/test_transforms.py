"""fold_batch_norm and fuse_activations: structure, purity, and numeric bounds.

Folding bound (specs/graph.md, eq. 6.3), per output element, u = 2**-24:
``|y_folded - y_bn| <= (2K + 6) u (|scale| (sum |w||x| + |b| + |mean|) + |beta|)``
with K the dot-product length.  The right side is computed in float64 from
|w| and |x| with an independent direct convolution (the test's oracle).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_graph import conv_oracle

from refquant.errors import InvalidTypeError
from refquant.graph import (
    Graph,
    GraphBuilder,
    Node,
    fold_batch_norm,
    fuse_activations,
)

U32 = 2.0**-24


def bn_params(r, c):
    return {
        "gamma": r.uniform(-2, 2, c),
        "beta": r.uniform(-1, 1, c),
        "mean": r.uniform(-1, 1, c),
        "var": r.uniform(0.0, 3, c),
    }


def fold_bound(mag, b, p, eps, k):
    scale = np.abs(np.asarray(p["gamma"], np.float64)) / np.sqrt(
        np.asarray(p["var"], np.float64) + eps
    )
    inner = mag + np.abs(b) + np.abs(np.asarray(p["mean"], np.float64))
    return (2 * k + 6) * U32 * (scale * inner + np.abs(p["beta"]))


def single(op, weight, bias, bnp, eps, **attrs):
    b = GraphBuilder()
    x = b.input("x")
    y = b.add(op, x, name="core", params={"weight": weight, "bias": bias}, **attrs)
    b.add("BatchNorm", y, name="bn", params=bnp, epsilon=eps)
    return b.build()


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**31 - 1), op=st.sampled_from(["Conv2D", "Depthwise", "Dense"])
)
def test_fold_single_layer_within_bound(seed, op):
    r = np.random.default_rng(seed)
    eps = float(r.choice([1e-5, 1e-3]))
    x = r.standard_normal((2, 5, 5, 3)).astype(np.float32) * 4
    if op == "Conv2D":
        w = r.standard_normal((4, 3, 3, 3)).astype(np.float32)
        attrs, w_oracle, groups, k = {"padding": "same"}, w, 1, 27
    elif op == "Depthwise":
        w = r.standard_normal((1, 3, 3, 6)).astype(np.float32)
        attrs = {"padding": "same", "depth_multiplier": 2}
        w_oracle, groups, k, op = w.transpose(3, 1, 2, 0), 3, 9, "DepthwiseConv2D"
    else:
        x = x.reshape(2, -1)
        w = r.standard_normal((4, 75)).astype(np.float32)
        attrs, k = {}, 75
    c_out = w.shape[-1] if op == "DepthwiseConv2D" else w.shape[0]
    bias = r.standard_normal(c_out).astype(np.float32)
    bnp = bn_params(r, c_out)
    g = single(op, w, bias, bnp, eps, **attrs)
    folded = fold_batch_norm(g)
    assert [n.op for n in folded.nodes] == [op] and folded.outputs == ("core",)
    if op == "Dense":
        mag = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    else:
        pads = ((1, 1), (1, 1))
        _, mag = conv_oracle(x, w_oracle, None, (1, 1), (1, 1), pads, groups)
    diff = np.abs(folded.run(x).astype(np.float64) - g.run(x).astype(np.float64))
    assert np.all(diff <= fold_bound(mag, bias, bnp, eps, k))


def test_fold_hand_example():
    # w = 2, b = 1, gamma = 3, beta = 0.5, mean = 1, var = 4 - eps -> scale 1.5
    g = single(
        "Dense",
        [[2.0]],
        [1.0],
        {"gamma": [3.0], "beta": [0.5], "mean": [1.0], "var": [3.75]},
        0.25,
    )
    f = fold_batch_norm(g)
    core = f.node("core")
    assert core.params["weight"][0, 0] == 3.0  # 2 * 1.5
    assert core.params["bias"][0] == 0.5  # (1 - 1) * 1.5 + 0.5
    np.testing.assert_array_equal(f.run(np.array([[2.0]])), [[6.5]])
    np.testing.assert_array_equal(g.run(np.array([[2.0]])), [[6.5]])


def test_fold_adds_bias_when_absent_and_keeps_names():
    r = np.random.default_rng(1)
    b = GraphBuilder()
    x = b.input("x")
    c = b.add("Conv2D", x, name="c", params={"weight": np.ones((2, 1, 1, 2))})
    n = b.add("BatchNorm", c, name="n", params=bn_params(r, 2))
    b.add("ReLU6", n, name="act")
    g = b.build()
    f = fold_batch_norm(g)
    assert [n.name for n in f.nodes] == ["c", "act"]
    assert f.node("act").inputs == ("c",) and "bias" in f.node("c").params
    assert len(g.nodes) == 3  # pure: the argument is unchanged


def test_fold_leaves_unfoldable_batch_norms():
    r = np.random.default_rng(2)
    p = bn_params(r, 2)
    w = {"weight": np.ones((2, 1, 1, 2))}
    b = GraphBuilder()
    x = b.input("x")
    c1 = b.add("Conv2D", x, name="c1", params=w)
    b1 = b.add("BatchNorm", c1, name="bn_shared", params=p)  # c1 also feeds add
    a = b.add("Add", [c1, b1], name="add")
    b2 = b.add("BatchNorm", a, name="bn_after_add", params=p)
    c2 = b.add("Conv2D", b2, name="c2", params=w, activation="relu")
    b3 = b.add("BatchNorm", c2, name="bn_after_act", params=p)
    c3 = b.add("Conv2D", b3, name="c3", params=w)
    b4 = b.add("BatchNorm", c3, name="bn_of_output", params=p)
    g = b.build(outputs=[b4, c3])  # c3 is itself an output
    f = fold_batch_norm(g)
    assert [n.op for n in f.nodes] == [n.op for n in g.nodes]
    xin = r.standard_normal((1, 2, 2, 2)).astype(np.float32)
    for got, want in zip(f.run(xin), g.run(xin)):
        np.testing.assert_array_equal(got, want)


def test_fuse_activations_exact_and_structural():
    r = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.input("x")
    c = b.add(
        "Conv2D",
        x,
        name="c",
        params={"weight": r.standard_normal((4, 3, 3, 2))},
        padding="same",
    )
    a1 = b.add("ReLU6", c, name="a1")
    d = b.add(
        "DepthwiseConv2D",
        a1,
        name="d",
        params={"weight": r.standard_normal((1, 3, 3, 4))},
    )
    a2 = b.add("ReLU", d, name="a2")
    s = b.add("Add", [a2, a2], name="s")
    a3 = b.add("ReLU6", s, name="a3")
    t = b.add("Tanh", a3, name="t")
    a4 = b.add("ReLU", t, name="a4")  # Tanh takes no activation: stays
    g = b.build(outputs=[a4, a1])  # a1 is an output: the conv keeps its ReLU6 node?
    f = fuse_activations(g)
    # c feeds only a1 (an output is a1, not c): fused, and the output name moves
    assert [n.name for n in f.nodes] == ["c", "d", "s", "t", "a4"]
    assert f.outputs == ("a4", "c")
    assert f.node("c").attrs["activation"] == "relu6"
    assert f.node("d").attrs["activation"] == "relu"
    assert f.node("s").attrs["activation"] == "relu6"
    assert f.node("s").inputs == ("d", "d")
    xin = r.standard_normal((2, 6, 6, 2)).astype(np.float32) * 3
    for got, want in zip(f.run(xin), g.run(xin)):
        np.testing.assert_array_equal(got, want)  # bit-identical


def test_fuse_skips_shared_and_already_activated_producers():
    b = GraphBuilder()
    x = b.input("x")
    d = b.add("Dense", x, name="d", params={"weight": [[1.0]]})
    r1 = b.add("ReLU", d, name="r1")
    r2 = b.add("ReLU6", d, name="r2")
    e = b.add("Dense", x, name="e", params={"weight": [[1.0]]}, activation="relu")
    r3 = b.add("ReLU6", e, name="r3")
    g = b.build(outputs=[r1, r2, r3])
    assert [n.name for n in fuse_activations(g).nodes] == [n.name for n in g.nodes]


def test_transforms_reject_non_graph():
    for fn in (fold_batch_norm, fuse_activations):
        with pytest.raises(InvalidTypeError, match="graph must be a refquant"):
            fn([Node("r", "ReLU", ["x"])])


def test_fold_then_fuse_mobilenet_style_block():
    r = np.random.default_rng(4)
    b = GraphBuilder()
    x = b.input("x")
    h = b.add("Conv2D", x, params={"weight": r.standard_normal((6, 1, 1, 3))})
    h = b.add("BatchNorm", h, params=bn_params(r, 6))
    h = b.add("ReLU6", h)
    h = b.add(
        "DepthwiseConv2D",
        h,
        params={"weight": r.standard_normal((1, 3, 3, 6))},
        padding=1,
    )
    h = b.add("BatchNorm", h, params=bn_params(r, 6))
    h = b.add("ReLU6", h)
    h = b.add("Conv2D", h, params={"weight": r.standard_normal((3, 1, 1, 6))})
    h = b.add("BatchNorm", h, params=bn_params(r, 3))
    y = b.add("Add", [x, h])
    g = b.build(outputs=y)
    f = fuse_activations(fold_batch_norm(g))
    assert [n.op for n in f.nodes] == ["Conv2D", "DepthwiseConv2D", "Conv2D", "Add"]
    xin = r.standard_normal((2, 5, 5, 3)).astype(np.float32)
    want = g.run(xin).astype(np.float64)
    # three stacked layers: a loose relative bound (per-layer bound is tested above)
    err = np.abs(f.run(xin) - want).max() / np.abs(want).max()
    assert err < 1e-5
    assert isinstance(f, Graph)
