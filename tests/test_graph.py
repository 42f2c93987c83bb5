"""Graph, nodes, builders and the float executor against slow float64 oracles.

Float results are compared with the float32 accumulation bound
``|y32 - y64| <= (K + 2) * 2**-24 * sum |w| |x| + 2**-24 * |y64|`` (a dot product
of length K in any summation order, then one bias add), computed per output.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.graph import (
    OPS,
    Graph,
    GraphBuilder,
    Node,
    SequentialBuilder,
    iter_batches,
    run,
    sequential,
)
from refquant.graph.float_ops import FLOAT_KERNELS, resolve_padding

U32 = 2.0**-24


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- oracles
def conv_oracle(x, w, b, strides, dilations, pads, groups):
    """Direct convolution, float64, loops over output positions (slow)."""
    x = np.pad(x.astype(np.float64), ((0, 0), *pads, (0, 0)))
    c_out, kh, kw, cg = w.shape
    n, hp, wp, _ = x.shape
    (sh, sw), (dh, dw) = strides, dilations
    oh = (hp - (kh - 1) * dh - 1) // sh + 1
    ow = (wp - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((n, oh, ow, c_out))
    mag = np.zeros_like(y)
    per = c_out // groups
    for p, q, o in itertools.product(range(oh), range(ow), range(c_out)):
        g = o // per
        rows = p * sh + np.arange(kh) * dh
        cols = q * sw + np.arange(kw) * dw
        patch = x[:, rows][:, :, cols][..., g * cg : (g + 1) * cg]  # (n,kh,kw,cg)
        y[:, p, q, o] = (patch * w[o]).sum(axis=(1, 2, 3))
        mag[:, p, q, o] = (np.abs(patch) * np.abs(w[o])).sum(axis=(1, 2, 3))
    if b is not None:
        y += b
    return y, mag


def assert_within_dot_bound(y32, y64, mag, k):
    bound = (k + 2) * U32 * mag + U32 * np.abs(y64) + 1e-30
    assert y32.dtype == np.float32
    assert y32.shape == y64.shape
    assert np.all(np.abs(y32.astype(np.float64) - y64) <= bound)


def one(op, inputs=("x",), params=None, **attrs):
    return Graph([Node("y", op, inputs, params or {}, attrs)], list(inputs), "y")


# ---------------------------------------------------------------- nodes
def test_node_normalizes_attrs_and_freezes_params():
    w = np.ones((4, 3, 3, 2))
    n = Node("c", "Conv2D", "x", {"weight": w}, {"strides": 2, "padding": 1})
    assert n.inputs == ("x",)
    assert n.attrs["strides"] == (2, 2)
    assert n.attrs["padding"] == ((1, 1), (1, 1))
    assert n.attrs["dilations"] == (1, 1) and n.attrs["groups"] == 1
    assert n.params["weight"].dtype == np.float32
    with pytest.raises(ValueError):
        n.params["weight"][0, 0, 0, 0] = 2.0  # read-only
    w[0, 0, 0, 0] = 5.0
    assert n.params["weight"][0, 0, 0, 0] == 1.0  # copied


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"op": "Conv3D"}, "op must be one of"),
        ({"name": ""}, "name must be a non-empty str"),
        ({"attrs": {"strides": 0}}, "strides must be an int >= 1"),
        ({"attrs": {"padding": "full"}}, "padding must be one of"),
        ({"attrs": {"padding": (-1, 0)}}, "padding must be 'valid'"),
        ({"attrs": {"activation": "gelu"}}, "activation must be one of"),
        ({"attrs": {"groups": 3}}, "groups must divide C_out=4"),
        ({"attrs": {"kernel": 3}}, "has no attr 'kernel'"),
        ({"params": {}}, "needs param 'weight'"),
        ({"params": {"weight": np.ones((4, 3, 3))}}, "must have shape"),
        ({"params": {"weight": np.ones((4, 1, 1, 1)), "bias": np.ones(3)}}, "bias"),
        ({"params": {"weight": np.full((4, 1, 1, 1), np.nan)}}, "must be finite"),
        ({"params": {"weight": np.ones((4, 1, 1, 1)), "scale": 1}}, "no param"),
        ({"inputs": ("a", "b")}, "takes 1 input"),
    ],
)
def test_node_rejects_invalid(kwargs, match):
    base = {
        "name": "c",
        "op": "Conv2D",
        "inputs": ("x",),
        "params": {"weight": np.ones((4, 1, 1, 2))},
        "attrs": {},
    }
    base.update(kwargs)
    with pytest.raises(InvalidArgumentError, match=match):
        Node(**base)


def test_node_rejects_bad_types_and_batchnorm_params():
    with pytest.raises(InvalidTypeError, match="name must be"):
        Node(3, "ReLU", ["x"])
    with pytest.raises(InvalidArgumentError, match="'var' must be >= 0"):
        Node(
            "b", "BatchNorm", "x", {"gamma": [1], "beta": [0], "mean": [0], "var": [-1]}
        )
    with pytest.raises(InvalidArgumentError, match="needs attr 'pool_size'"):
        Node("p", "MaxPool", "x")
    with pytest.raises(InvalidArgumentError, match="takes 2 to any number"):
        Node("a", "Add", ["x"])


def test_every_op_has_a_float_kernel():
    assert set(OPS) == set(FLOAT_KERNELS)


# ---------------------------------------------------------------- graph
def test_graph_validation_errors():
    relu = Node("r", "ReLU", ["x"])
    with pytest.raises(InvalidArgumentError, match="unknown tensor 'zz'"):
        Graph([Node("r", "ReLU", ["zz"])], "x", "r")
    with pytest.raises(InvalidArgumentError, match="duplicate name 'r'"):
        Graph([relu, Node("r", "ReLU", ["x"])], "x", "r")
    with pytest.raises(InvalidArgumentError, match="duplicate name 'x'"):
        Graph([Node("x", "ReLU", ["x"])], "x", "x")
    cyc = [Node("a", "Add", ["x", "b"]), Node("b", "ReLU", ["a"])]
    with pytest.raises(InvalidArgumentError, match="cycle through nodes"):
        Graph(cyc, "x", "b")
    with pytest.raises(InvalidArgumentError, match="graph output 'q'"):
        Graph([relu], "x", "q")
    with pytest.raises(InvalidArgumentError, match="at least one"):
        Graph([relu], [], "r")
    with pytest.raises(InvalidTypeError, match="iterable of Node"):
        Graph(["r"], "x", "r")
    with pytest.raises(InvalidArgumentError, match="must be a node"):
        Graph([relu], "x", "r").node("nope")


def test_graph_sorts_nodes_topologically_and_stably():
    nodes = [
        Node("c", "Add", ["a", "b"]),
        Node("a", "ReLU", ["x"]),
        Node("b", "ReLU6", ["x"]),
    ]
    g = Graph(nodes, "x", "c")
    assert [n.name for n in g.nodes] == ["a", "b", "c"]
    assert g.producer("a").op == "ReLU" and g.producer("x") is None
    assert [n.name for n in g.consumers("x")] == ["a", "b"]
    x = np.array([[-2.0, 3.0, 9.0]], np.float32)
    np.testing.assert_array_equal(g.run(x), [[0.0, 6.0, 15.0]])


def test_run_capture_and_batches():
    b = GraphBuilder()
    x = b.input("x")
    r = b.add("ReLU", x, name="r")
    t = b.add("Tanh", x, name="t")
    g = b.build(outputs=[r, t])
    data = rng().standard_normal((7, 3)).astype(np.float32)
    outs = g.run(data)
    assert isinstance(outs, tuple) and len(outs) == 2
    np.testing.assert_array_equal(outs[0], np.maximum(data, 0))
    outs2, acts = g.run(data, capture=True, batch_size=3)
    assert set(acts) == {"x", "r", "t"}
    np.testing.assert_array_equal(acts["x"], data)
    np.testing.assert_array_equal(outs2[1], outs[1])
    _, acts = g.run(data, capture=["t"])
    assert list(acts) == ["t"]
    chunks = list(iter_batches(g, data, batch_size=3))
    assert [c[0].shape[0] for c in chunks] == [3, 3, 1]
    outs3 = run(g, {"x": data.astype(np.float64)}, batch_size=2)
    np.testing.assert_array_equal(outs3[0], outs[0])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g, x: g.run(x, capture=["nope"]), "capture must be"),
        (lambda g, x: g.run(x, batch_size=0), "batch_size must be an int >= 1"),
        (lambda g, x: g.run({"y": x}), "exactly the keys"),
        (lambda g, x: g.run(x.tolist()), "must be a numpy array"),
        (lambda g, x: g.run(x.astype(str)), "numeric array"),
    ],
)
def test_run_rejects_invalid(call, match):
    g = one("ReLU")
    with pytest.raises((InvalidArgumentError, InvalidTypeError), match=match):
        call(g, np.zeros((2, 3), np.float32))


def test_run_reports_node_on_shape_error():
    g = one("Dense", params={"weight": np.ones((2, 5))})
    with pytest.raises(InvalidArgumentError, match="node 'y' \\(Dense\\).*K=5"):
        g.run(np.zeros((1, 4), np.float32))


def test_builders():
    g = (
        SequentialBuilder(input_name="img")
        .add("Flatten")
        .add("Dense", name="fc", params={"weight": [[1.0, 2.0]], "bias": [0.5]})
        .build()
    )
    assert g.inputs == ("img",) and g.outputs == ("fc",)
    assert [n.name for n in g.nodes] == ["flatten_0", "fc"]
    y = g.run(np.array([[[1.0], [-1.0]]], np.float32))
    np.testing.assert_array_equal(y, [[1.0 - 2.0 + 0.5]])  # hand computed
    b = GraphBuilder()
    b.input("x")
    with pytest.raises(InvalidArgumentError, match="duplicate name 'x'"):
        b.add("ReLU", "x", name="x")
    with pytest.raises(InvalidArgumentError, match="outputs must be given"):
        GraphBuilder().build()
    with pytest.raises(InvalidArgumentError, match="layers\\[0\\] must be"):
        sequential([("ReLU",)])


# ---------------------------------------------------------------- conv family
CONV_CASES = [
    # (H, W, C_in, C_out, k, strides, dilations, padding, groups)
    (5, 5, 2, 3, (3, 3), (1, 1), (1, 1), "valid", 1),
    (5, 6, 2, 3, (3, 3), (2, 2), (1, 1), "same", 1),
    (6, 6, 3, 4, (3, 2), (2, 1), (1, 1), "same", 1),
    (7, 7, 2, 2, (3, 3), (1, 1), (2, 2), "same", 1),
    (6, 5, 4, 6, (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), 2),
    (4, 4, 4, 4, (1, 1), (1, 1), (1, 1), "valid", 4),
    (6, 6, 2, 3, (2, 2), (3, 2), (2, 1), ((0, 2), (1, 0)), 1),
    (4, 4, 3, 5, (1, 1), (2, 2), (1, 1), "valid", 1),
]


@pytest.mark.parametrize("h, w, cin, cout, k, s, d, pad, groups", CONV_CASES)
def test_conv2d_matches_direct_oracle(h, w, cin, cout, k, s, d, pad, groups):
    r = rng(h * 100 + cout)
    x = r.standard_normal((2, h, w, cin)).astype(np.float32)
    wt = r.standard_normal((cout, *k, cin // groups)).astype(np.float32)
    b = r.standard_normal(cout).astype(np.float32)
    g = one(
        "Conv2D",
        params={"weight": wt, "bias": b},
        strides=s,
        dilations=d,
        padding=pad,
        groups=groups,
    )
    pads = resolve_padding((h, w), k, s, d, pad if pad != "same" else "same")
    y64, mag = conv_oracle(x, wt, b, s, d, pads, groups)
    assert_within_dot_bound(g.run(x), y64, mag, k[0] * k[1] * cin // groups)


@pytest.mark.parametrize("mult", [1, 2])
@pytest.mark.parametrize(
    "s, d, pad",
    [
        ((1, 1), (1, 1), "same"),
        ((2, 2), (1, 1), ((1, 1), (1, 1))),
        ((2, 1), (1, 2), "valid"),
    ],
)
def test_depthwise_matches_grouped_conv_oracle(mult, s, d, pad):
    r = rng(mult)
    c = 3
    x = r.standard_normal((2, 7, 6, c)).astype(np.float32)
    wt = r.standard_normal((1, 3, 3, c * mult)).astype(np.float32)
    b = r.standard_normal(c * mult).astype(np.float32)
    g = one(
        "DepthwiseConv2D",
        params={"weight": wt, "bias": b},
        strides=s,
        dilations=d,
        padding=pad,
        depth_multiplier=mult,
    )
    # depthwise == grouped conv with groups=C, C_in/groups = 1, w[o] = wt[..., o]
    w_conv = wt.transpose(3, 1, 2, 0)  # (C*M, 3, 3, 1)
    pads = resolve_padding((7, 6), (3, 3), s, d, pad)
    y64, mag = conv_oracle(x, w_conv, b, s, d, pads, c)
    assert_within_dot_bound(g.run(x), y64, mag, 9)


def test_conv_hand_example_and_activation():
    # 1x3x3x1 input 1..9, 2x2 kernel of ones, stride 1, valid -> sums of 2x2 blocks
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    g = one(
        "Conv2D",
        params={"weight": np.ones((1, 2, 2, 1)), "bias": [-14.0]},
        activation="relu6",
    )
    # sums 12, 16, 24, 28 ; minus 14 -> -2, 2, 10, 14 ; relu6 -> 0, 2, 6, 6
    np.testing.assert_array_equal(g.run(x).ravel(), [0, 2, 6, 6])


def test_conv_rejects_mismatched_input():
    g = one("Conv2D", params={"weight": np.ones((2, 3, 3, 2))})
    with pytest.raises(InvalidArgumentError, match="3 channels"):
        g.run(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(InvalidArgumentError, match="does not fit"):
        g.run(np.zeros((1, 2, 2, 2), np.float32))
    with pytest.raises(InvalidArgumentError, match="rank 4"):
        g.run(np.zeros((1, 5, 2), np.float32))


@given(
    st.integers(1, 9),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(1, 2),
    st.sampled_from(["valid", "same"]),
)
def test_resolve_padding_same_gives_ceil_output(size, k, s, d, padding):
    (pads, _) = resolve_padding((size, size), (k, k), (s, s), (d, d), padding)
    span = (k - 1) * d + 1
    out = (size + sum(pads) - span) // s + 1
    if padding == "same":
        assert out == -(-size // s)
        assert 0 <= pads[1] - pads[0] <= 1
    else:
        assert pads == (0, 0)


# ---------------------------------------------------------------- other ops
def test_dense_and_batch_norm_hand_values():
    g = one("Dense", params={"weight": [[1.0, 2.0], [0.0, -1.0]], "bias": [1, 0]})
    np.testing.assert_array_equal(g.run(np.array([[3.0, 4.0]])), [[12.0, -4.0]])
    bn = one(
        "BatchNorm",
        params={"gamma": [2.0], "beta": [1.0], "mean": [3.0], "var": [3.75]},
        epsilon=0.25,
    )
    # (5 - 3) / sqrt(4) * 2 + 1 = 3
    np.testing.assert_array_equal(bn.run(np.array([[5.0]])), [[3.0]])


def test_pooling_hand_values():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    mp = one("MaxPool", pool_size=2)
    np.testing.assert_array_equal(mp.run(x).ravel(), [5, 7, 13, 15])
    ap = one("AvgPool", pool_size=2)
    np.testing.assert_array_equal(ap.run(x).ravel(), [2.5, 4.5, 10.5, 12.5])
    x3 = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    # same, 2x2 stride 2 on 3x3: pads (0,1),(0,1); corner cell 8 alone
    ap_same = one("AvgPool", pool_size=2, padding="same")
    np.testing.assert_array_equal(ap_same.run(x3).ravel(), [2, 3.5, 6.5, 8])
    ap_incl = one("AvgPool", pool_size=2, padding="same", count_include_pad=True)
    np.testing.assert_array_equal(ap_incl.run(x3).ravel(), [2, 7 / 4, 13 / 4, 2])
    mp_same = one("MaxPool", pool_size=2, padding="same")
    np.testing.assert_array_equal(
        (-x3 - 1)[0, ::2, ::2, 0].ravel(), mp_same.run(-x3 - 1).ravel()
    )
    gap = one("GlobalAvgPool")
    np.testing.assert_array_equal(gap.run(x3), [[4.0]])
    assert one("GlobalAvgPool", keepdims=True).run(x3).shape == (1, 1, 1, 1)


def test_elementwise_and_layout_ops():
    x = np.array([[-2.0, 0.0, 3.0, 8.0]], np.float32)
    np.testing.assert_array_equal(one("ReLU").run(x), [[0, 0, 3, 8]])
    np.testing.assert_array_equal(one("ReLU6").run(x), [[0, 0, 3, 6]])
    np.testing.assert_allclose(
        one("Tanh").run(x), np.tanh(x.astype(np.float64)), rtol=4 * U32, atol=0
    )
    sig64 = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(one("Sigmoid").run(x), sig64, rtol=8 * U32)
    big = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    np.testing.assert_array_equal(one("Sigmoid").run(big), [[1.0, 0.5, 0.0]])
    sm = one("Softmax").run(np.array([[0.0, np.log(3.0)]], np.float32))
    np.testing.assert_allclose(sm, [[0.25, 0.75]], rtol=8 * U32)
    np.testing.assert_allclose(one("Softmax").run(big).sum(), 1.0, rtol=4 * U32)
    g = Graph(
        [Node("y", "Add", ["a", "b"], attrs={"activation": "relu"})], ["a", "b"], "y"
    )
    np.testing.assert_array_equal(g.run({"a": x, "b": x}), [[0, 0, 6, 16]])
    with pytest.raises(InvalidArgumentError, match="share one shape"):
        g.run({"a": x, "b": x[:, :2]})
    cat = Graph([Node("y", "Concat", ["a", "b"], attrs={"axis": 1})], ["a", "b"], "y")
    np.testing.assert_array_equal(cat.run({"a": x[:, :1], "b": x[:, 1:]}), x)
    with pytest.raises(InvalidArgumentError, match="Concat along axis=1"):
        cat.run({"a": x[:, :1], "b": x[:1, 1:].reshape(1, 3, 1)})
    x4 = np.arange(12, dtype=np.float32).reshape(1, 2, 3, 2)
    np.testing.assert_array_equal(one("Flatten").run(x4), x4.reshape(1, 12))
    np.testing.assert_array_equal(
        one("Reshape", shape=(6, -1)).run(x4), x4.reshape(1, 6, 2)
    )
    with pytest.raises(InvalidArgumentError, match="Reshape cannot"):
        one("Reshape", shape=(5,)).run(x4)
    p = one("Pad", paddings=((0, 0), (1, 0), (0, 0), (0, 1)), value=-1.0).run(x4)
    assert p.shape == (1, 3, 3, 3) and p[0, 0, 0, 0] == -1 and p[0, 1, 0, 2] == -1
    with pytest.raises(InvalidArgumentError, match="one \\(before, after\\) pair"):
        one("Pad", paddings=((1, 1),)).run(x4)
