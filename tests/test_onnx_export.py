"""ONNX export of quantized models, checked against ONNX Runtime.

The oracle is ONNX Runtime itself (CPUExecutionProvider, 1.32): the exported
file runs there, and its int8 output codes must equal
``qmodel.run_codes(x, profile="onnxruntime")`` exactly, with graph
optimizations off (ORT_DISABLE_ALL) and at the default level (ORT_ENABLE_ALL).
Whole models: the MNIST CNN on 500 real digits and MobileNetV2 on the 20
labeled ImageNet images (skipped when the assets are not cached).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from refquant.errors import InvalidArgumentError, InvalidTypeError

LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_ALL")


def _ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def ort_codes(path, x_nhwc, level="ORT_DISABLE_ALL"):
    """ONNX Runtime's output codes for NHWC input (as int64; uint8 minus 128)."""
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(
        x_nhwc.transpose(0, 3, 1, 2) if x_nhwc.ndim == 4 else x_nhwc
    )
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    shift = 128 if y.dtype == np.uint8 else 0
    return y.astype(np.int64) - shift


def optimized_ops(path, level="ORT_ENABLE_ALL"):
    """Op types ONNX Runtime keeps after optimizing ``path`` at ``level``."""
    ort = _ort()
    import onnx

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3
    out = f"{path}.opt.onnx"
    so.optimized_model_filepath = out
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(out).graph.node]


# ---------------------------------------------------------------- tiny models
def _w(r, *shape):
    return (r.standard_normal(shape) * 0.3).astype(np.float32)


def residual_graph(seed=0):
    """Conv-ReLU6, depthwise-ReLU, 1x1 conv, Add, MaxPool, AvgPool, Concat,
    GlobalAvgPool, Dense: every exported op with a residual fan-out."""
    from refquant.graph.builders import GraphBuilder

    r = np.random.default_rng(seed)
    b = GraphBuilder("residual")
    x = b.input("input")
    c = b.add(
        "Conv2D",
        x,
        name="c1",
        padding=1,
        params={"weight": _w(r, 8, 3, 3, 3), "bias": _w(r, 8)},
    )
    c = b.add("ReLU6", c, name="c1.relu6")
    d = b.add(
        "DepthwiseConv2D",
        c,
        name="dw",
        padding="same",
        strides=2,
        params={"weight": _w(r, 1, 3, 3, 8), "bias": _w(r, 8)},
    )
    d = b.add("ReLU", d, name="dw.relu")
    p = b.add("Conv2D", d, name="pw", params={"weight": _w(r, 8, 1, 1, 8)})
    a = b.add("Add", [d, p], name="add")
    m = b.add("MaxPool", a, name="mp", pool_size=2)
    v = b.add("AvgPool", a, name="ap", pool_size=3, strides=2, padding=((1, 0), (1, 0)))
    cat = b.add("Concat", [m, v], name="cat")
    g = b.add("GlobalAvgPool", cat, name="gap")
    y = b.add("Dense", g, name="fc", params={"weight": _w(r, 5, 16), "bias": _w(r, 5)})
    return b.build(outputs=y)


def chain_graph(seed=1):
    """Conv-ReLU, MaxPool, Flatten of an NHWC map, Dense-ReLU, Dense (no fan-out)."""
    from refquant.graph.builders import GraphBuilder

    r = np.random.default_rng(seed)
    b = GraphBuilder("chain")
    x = b.input("input")
    x = b.add(
        "Conv2D",
        x,
        name="c1",
        padding=1,
        params={"weight": _w(r, 6, 3, 3, 2), "bias": _w(r, 6)},
    )
    x = b.add("ReLU", x, name="c1.relu")
    x = b.add("MaxPool", x, name="mp", pool_size=2)
    x = b.add("Flatten", x, name="flat")
    x = b.add(
        "Dense", x, name="fc1", params={"weight": _w(r, 12, 96), "bias": _w(r, 12)}
    )
    x = b.add("ReLU", x, name="fc1.relu")
    x = b.add("Dense", x, name="fc2", params={"weight": _w(r, 4, 12), "bias": _w(r, 4)})
    return b.build(outputs=x)


def _quantize(graph, shape, seed=2, **config):
    from refquant.ptq import QuantConfig, quantize_model

    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return quantize_model(graph, x, mode="static", config=QuantConfig(**config))


@pytest.fixture(scope="module")
def residual_model():
    return _quantize(residual_graph(), (24, 8, 8, 3))


@pytest.fixture(scope="module")
def chain_model():
    return _quantize(chain_graph(), (24, 8, 8, 2))


def _inputs(shape, seed=3):
    return (np.random.default_rng(seed).standard_normal(shape) * 1.5).astype(np.float32)


@pytest.mark.peers
@pytest.mark.parametrize("level", LEVELS)
def test_qoperator_residual_model_is_bit_exact(residual_model, tmp_path, level):
    from refquant.io.onnx_export import export_onnx

    path = export_onnx(residual_model, tmp_path / "m.onnx", format="qoperator")
    x = _inputs((64, 8, 8, 3))
    want = residual_model.run_codes(x, profile="onnxruntime")
    np.testing.assert_array_equal(ort_codes(path, x, level), want)


@pytest.mark.peers
@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("level", LEVELS)
def test_chain_model_is_bit_exact(chain_model, tmp_path, fmt, level):
    from refquant.io.onnx_export import export_onnx

    path = export_onnx(chain_model, tmp_path / "m.onnx", format=fmt)
    x = _inputs((64, 8, 8, 2))
    want = chain_model.run_codes(x, profile="onnxruntime")
    np.testing.assert_array_equal(ort_codes(path, x, level), want)


@pytest.mark.peers
def test_per_tensor_weights_and_float_outputs(tmp_path):
    from refquant.io.onnx_export import export_onnx

    qm = _quantize(chain_graph(), (24, 8, 8, 2), weight_granularity="per_tensor")
    path = export_onnx(
        qm, tmp_path / "m.onnx", format="qoperator", dequantize_outputs=True
    )
    x = _inputs((16, 8, 8, 2))
    ort = _ort()
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input.float": x.transpose(0, 3, 1, 2).copy()})
    assert y.dtype == np.float32
    out = qm.tensor_qparams[qm.outputs[0]]
    codes = qm.run_codes(x, profile="onnxruntime").astype(np.int64)
    # DequantizeLinear: f32(q - zp) * f32(s), one float32 rounding
    want = (codes - out.zero_point).astype(np.float32) * np.float32(out.scale)
    np.testing.assert_array_equal(y, want)


def _with_qparams(qm, tensor, scale, zero_point):
    from refquant.ptq.qmodel import QuantizedModel
    from refquant.ptq.qtensors import TensorQParams

    qp = dict(qm.tensor_qparams)
    qp[tensor] = TensorQParams(scale, zero_point)
    return QuantizedModel(qm.nodes, qm.inputs, qm.outputs, qp, name=qm.name)


@pytest.mark.peers
@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_relu6_clamp_that_bites_becomes_an_int8_clip(residual_model, tmp_path, fmt):
    import onnx

    from refquant.io.onnx_export import export_onnx

    # s = 0.05, zp = -10: ReLU6 keeps codes in [-10, -10 + 6 / 0.05] = [-10, 110]
    qm = _with_qparams(residual_model, "c1", 0.05, -10)
    path = export_onnx(qm, tmp_path / "m.onnx", format=fmt)
    model = onnx.load(path)
    clip = next(n for n in model.graph.node if n.name == "c1/clip")
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert (int(inits[clip.input[1]]), int(inits[clip.input[2]])) == (-10, 110)
    assert not any(n.op_type == "Clip" for n in model.graph.node if n is not clip)
    x = _inputs((32, 8, 8, 3))
    want, env = qm.run_codes(x, profile="onnxruntime", capture=True)
    assert env["c1"].max() == 110 and env["c1"].min() == -10  # the clamp acted
    if fmt == "qoperator":
        np.testing.assert_array_equal(ort_codes(path, x), want)


@pytest.mark.peers
def test_uint8_activations_shift_codes_by_128(chain_model, tmp_path):
    from refquant.io.onnx_export import export_onnx

    path = export_onnx(
        chain_model, tmp_path / "m.onnx", format="qoperator", activation_dtype="uint8"
    )
    x = _inputs((32, 8, 8, 2))
    np.testing.assert_array_equal(
        ort_codes(path, x), chain_model.run_codes(x, profile="onnxruntime")
    )


@pytest.mark.peers
def test_write_is_atomic_and_returns_the_path(chain_model, tmp_path):
    from refquant.io.onnx_export import export_onnx

    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    assert export_onnx(chain_model, target) == str(target)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
    assert target.read_bytes()[:4] != b"old"


# ---------------------------------------------------------------- invalid input
@pytest.mark.peers
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"format": "qlinear"},
            "format must be one of 'qdq', 'qoperator'; got format='qlinear'",
        ),
        ({"opset": 11}, r"opset must be an int in \[13, 21\]; got opset=11"),
        ({"activation_dtype": "int16"}, "activation_dtype must be one of"),
        ({"dequantize_outputs": 1}, "dequantize_outputs must be a bool"),
    ],
)
def test_invalid_arguments_are_named(chain_model, tmp_path, kwargs, match):
    from refquant.io.onnx_export import export_onnx

    with pytest.raises((InvalidArgumentError, InvalidTypeError), match=match):
        export_onnx(chain_model, tmp_path / "m.onnx", **kwargs)
    assert not os.listdir(tmp_path)


@pytest.mark.peers
def test_invalid_model_and_path(chain_model, tmp_path):
    from refquant.io.onnx_export import export_onnx

    with pytest.raises(InvalidTypeError, match="qmodel must be a QuantizedModel"):
        export_onnx("model.h5", tmp_path / "m.onnx")
    with pytest.raises(InvalidTypeError, match="path must be a file path"):
        export_onnx(chain_model, 3)
    from refquant.ptq import quantize_model

    x = _inputs((8, 8, 8, 2))
    dyn = quantize_model(chain_graph(), x, mode="dynamic")
    with pytest.raises(InvalidArgumentError, match="mode='dynamic'"):
        export_onnx(dyn, tmp_path / "m.onnx")


@pytest.mark.peers
def test_schemes_without_an_onnx_form_name_the_node(tmp_path):
    from refquant.io.onnx_export import export_onnx
    from refquant.io.onnx_import import UnsupportedOnnxError

    g = chain_graph()
    static = _quantize(g, (8, 8, 8, 2))
    from refquant.ptq import QuantConfig, quantize_model
    from refquant.ptq.qmodel import QuantizedModel

    cfg = QuantConfig(weight_granularity="per_group", weight_group_size=6)
    wo = quantize_model(g, _inputs((8, 8, 8, 2)), mode="weight_only", config=cfg)
    grouped = QuantizedModel(
        wo.nodes, static.inputs, static.outputs, static.tensor_qparams
    )
    with pytest.raises(UnsupportedOnnxError, match="node 'c1': per-group weights"):
        export_onnx(grouped, tmp_path / "m.onnx")
    asym = _quantize(g, (8, 8, 8, 2), weight_symmetric=False)
    with pytest.raises(UnsupportedOnnxError, match="zero points equal to 0"):
        export_onnx(asym, tmp_path / "m.onnx")
    four_bit = _quantize(g, (8, 8, 8, 2), activation_bits=4)
    with pytest.raises(UnsupportedOnnxError, match="4-bit activations"):
        export_onnx(four_bit, tmp_path / "m.onnx")


@pytest.mark.peers
def test_unsupported_op_is_named(tmp_path):
    from refquant.graph.builders import GraphBuilder
    from refquant.io.onnx_export import export_onnx
    from refquant.io.onnx_import import UnsupportedOnnxError

    r = np.random.default_rng(0)
    b = GraphBuilder("soft")
    x = b.input("input")
    y = b.add("Dense", x, name="fc", params={"weight": _w(r, 3, 4)})
    y = b.add("Softmax", y, name="probs")
    qm = _quantize(b.build(outputs=y), (8, 4))
    with pytest.raises(UnsupportedOnnxError, match="node 'probs': op Softmax"):
        export_onnx(qm, tmp_path / "m.onnx")


# ---------------------------------------------------------------- real models
def _cached(*names):
    from refquant import assets

    return all(assets.is_cached(n) for n in names)


def _state_dict(name):
    from refquant import assets
    from refquant.io.torch_pth import load_torch_state_dict

    (path,) = assets.asset_paths(name)
    return load_torch_state_dict(path)


def mnist_case():
    """MNIST CNN calibrated on 500 digits (50 per class); 500 eval digits."""
    from refquant import datasets
    from refquant.graph.models import mnist_cnn
    from refquant.ptq import quantize_model

    images, labels = datasets.mnist_5k(download=False)
    x = datasets.mnist_preprocess(images)
    cal = np.concatenate([np.flatnonzero(labels == c)[:50] for c in range(10)])
    ev = np.concatenate([np.flatnonzero(labels == c)[50:100] for c in range(10)])
    graph = mnist_cnn(_state_dict("mnist_cnn"))
    qm = quantize_model(graph, x[cal], mode="static", batch_size=125)
    return graph, qm, x[cal], x[ev], labels[ev]


def mobilenet_data():
    """MobileNetV2 FP32 graph, the 23 calibration photos, the 20 labeled images."""
    from refquant import datasets
    from refquant.graph.models import mobilenet_v2

    images, labels = datasets.foolbox_imagenet(download=False)
    x = datasets.imagenet_preprocess(images)
    cal = datasets.imagenet_preprocess(datasets.calibration_photos(download=False))
    return mobilenet_v2(_state_dict("mobilenet_v2")), cal, x, labels


def mobilenet_case():
    """MobileNetV2 calibrated on the 23 photos; the 20 labeled images."""
    from refquant.ptq import quantize_model

    graph, cal, x, labels = mobilenet_data()
    qm = quantize_model(graph, cal, mode="static", batch_size=8)
    return graph, qm, cal, x, labels


@pytest.mark.peers
@pytest.mark.assets
@pytest.mark.skipif(not _cached("mnist_cnn", "mnist_5k"), reason="assets not cached")
def test_mnist_cnn_export_is_bit_exact_on_500_digits(tmp_path):
    from refquant.io.onnx_export import export_onnx

    _, qm, _, x, labels = mnist_case()
    want = qm.run_codes(x, profile="onnxruntime")
    assert len(x) == 500 and (want.argmax(1) == labels).mean() > 0.98
    for fmt in ("qoperator", "qdq"):
        path = export_onnx(qm, tmp_path / f"{fmt}.onnx", format=fmt)
        for level in LEVELS:
            got = ort_codes(path, x, level)
            assert int((got != want).sum()) == 0, (fmt, level)


MOBILENET_ASSETS = ("mobilenet_v2", "foolbox_imagenet", "calibration_photos")


@pytest.mark.peers
@pytest.mark.assets
@pytest.mark.skipif(not _cached(*MOBILENET_ASSETS), reason="assets not cached")
def test_mobilenet_v2_qoperator_export_is_bit_exact(tmp_path):
    from refquant.io.onnx_export import export_onnx

    _, qm, _, x, labels = mobilenet_case()
    want = qm.run_codes(x, profile="onnxruntime")
    assert want.shape == (20, 1000) and int((want.argmax(1) == labels).sum()) >= 15
    path = export_onnx(qm, tmp_path / "qop.onnx", format="qoperator")
    for level in LEVELS:
        np.testing.assert_array_equal(ort_codes(path, x, level), want)
    # QDQ: ORT 1.32 fuses only part of an int8 QDQ graph with residual fan-out
    # (specs/io_onnx_quantized.md section 2.4): float Conv and Add remain.
    qdq = export_onnx(qm, tmp_path / "qdq.onnx", format="qdq")
    ops = optimized_ops(qdq)
    assert "QLinearConv" in ops and "Conv" in ops and "Add" in ops


@pytest.mark.peers
@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_pad_export_and_round_trip(tmp_path, fmt):
    from refquant.graph.builders import GraphBuilder
    from refquant.io.onnx_export import export_onnx
    from refquant.io.onnx_quantized_import import load_quantized_onnx

    r = np.random.default_rng(0)
    b = GraphBuilder("padded")
    x = b.input("input")
    x = b.add("Pad", x, name="pad", paddings=((0, 0), (1, 2), (0, 1), (0, 0)))
    x = b.add(
        "Conv2D", x, name="c", params={"weight": _w(r, 4, 3, 3, 2), "bias": _w(r, 4)}
    )
    qm = _quantize(b.build(outputs=x), (16, 6, 6, 2))
    x = _inputs((8, 6, 6, 2))
    want = qm.run_codes(x, profile="onnxruntime")
    path = export_onnx(qm, tmp_path / "m.onnx", format=fmt)
    np.testing.assert_array_equal(ort_codes(path, x).transpose(0, 2, 3, 1), want)
    back = load_quantized_onnx(path)
    assert [n.op for n in back.nodes] == ["Pad", "Conv2D"]
    np.testing.assert_array_equal(back.run_codes(x, profile="onnxruntime"), want)
