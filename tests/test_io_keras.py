"""Keras .h5 reader on files written here with h5py in both layouts.

The files follow the measured layouts of Keras 3.15 (``model_weights/<layer>/
<model>/<layer>/kernel``, str attributes) and tf-keras 2.21 (``model_weights/
<layer>/<layer>/kernel:0``, bytes attributes).  Expected outputs come from
float64 NumPy code written in Keras's own layouts (HWIO kernels, (in, out)
dense kernels); bound ``1e-5 * max |y|`` (float32 dot products of length <= 54).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from refquant.errors import (  # noqa: E402
    CorruptFileError,
    InvalidArgumentError,
    InvalidTypeError,
)
from refquant.io.keras_h5 import UnsupportedLayerError, load_keras_h5  # noqa: E402

LAYOUTS = ["keras3", "tf_keras"]


# ---------------------------------------------------------------- writer
def layer(cls, name, **config):
    return {"class_name": cls, "config": {"name": name, **config}}


def write_h5(path, model_config, weights, layout, model_name="sequential"):
    """Write a Keras-style .h5: ``weights`` maps layer -> [(short, array)]."""
    as_attr = (
        (lambda names: np.array([n.encode() for n in names]))
        if (layout == "tf_keras")
        else (lambda names: np.array(names, dtype=object))
    )
    layers = model_config["config"]["layers"]
    names = [ly["config"]["name"] for ly in layers if ly["class_name"] != "InputLayer"]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "3.15.1" if layout == "keras3" else "2.21.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(model_config)
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = as_attr(names)
        for name in names:
            g = mw.create_group(name)
            wnames = []
            for short, arr in weights.get(name, []):
                wname = (
                    f"{model_name}/{name}/{short}"
                    if layout == "keras3"
                    else f"{name}/{short}:0"
                )
                g.create_dataset(wname, data=np.asarray(arr, np.float32))
                wnames.append(wname)
            g.attrs["weight_names"] = as_attr(wnames) if wnames else np.zeros(0)
    return str(path)


# ---------------------------------------------------------------- oracles
def conv_hwio(x, k, b, pads, stride=1):
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    kh, kw = k.shape[:2]
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], oh, ow, k.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = xp[
                :,
                i : i + (oh - 1) * stride + 1 : stride,
                j : j + (ow - 1) * stride + 1 : stride,
            ]
            y += np.einsum("nhwc,co->nhwo", patch, k[i, j])
    return y + b


def depthwise_hwcm(x, k):
    kh, kw, c, m = k.shape
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    y = np.zeros((x.shape[0], oh, ow, c, m))
    for i in range(kh):
        for j in range(kw):
            y += x[:, i : i + oh, j : j + ow, :, None] * k[i, j]
    return y.reshape(x.shape[0], oh, ow, c * m)  # output channel c*M + m


def close(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


# ---------------------------------------------------------------- sequential
def sequential_model(r, cls_input_key):
    layers = [
        layer("InputLayer", "image", **{cls_input_key: [None, 6, 6, 2]}),
        layer(
            "Conv2D",
            "conv1",
            filters=3,
            kernel_size=[3, 3],
            strides=[1, 1],
            padding="same",
            activation="relu",
            use_bias=True,
            data_format="channels_last",
            dilation_rate=[1, 1],
            groups=1,
        ),
        layer(
            "BatchNormalization", "bn1", axis=-1, epsilon=0.001, center=True, scale=True
        ),
        layer("ReLU", "relu6", max_value=6.0, negative_slope=0.0, threshold=0.0),
        layer(
            "DepthwiseConv2D",
            "dw",
            kernel_size=[3, 3],
            strides=[1, 1],
            padding="valid",
            depth_multiplier=2,
            activation="linear",
            use_bias=False,
        ),
        layer(
            "MaxPooling2D", "pool", pool_size=[2, 2], strides=[2, 2], padding="valid"
        ),
        layer("Dropout", "drop", rate=0.5),
        layer("Flatten", "flat"),
        layer("Dense", "logits", units=4, activation="softmax", use_bias=True),
    ]
    w = {
        "conv1": [
            ("kernel", r.standard_normal((3, 3, 2, 3))),
            ("bias", r.standard_normal(3)),
        ],
        "bn1": [
            ("gamma", r.uniform(0.5, 2, 3)),
            ("beta", r.standard_normal(3)),
            ("moving_mean", r.standard_normal(3)),
            ("moving_variance", r.uniform(0.5, 2, 3)),
        ],
        "dw": [("depthwise_kernel", r.standard_normal((3, 3, 3, 2)))],
        "logits": [
            ("kernel", r.standard_normal((24, 4))),
            ("bias", r.standard_normal(4)),
        ],
    }
    config = {
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": layers},
    }
    return config, {k: [(s, np.float32(a)) for s, a in v] for k, v in w.items()}


def sequential_oracle(x, w):
    p = {k: {s: a.astype(np.float64) for s, a in v} for k, v in w.items()}
    h = np.maximum(
        conv_hwio(x, p["conv1"]["kernel"], p["conv1"]["bias"], ((1, 1), (1, 1))), 0
    )
    bn = p["bn1"]
    h = (h - bn["moving_mean"]) / np.sqrt(bn["moving_variance"] + 1e-3)
    h = np.clip(h * bn["gamma"] + bn["beta"], 0, 6)
    h = depthwise_hwcm(h, p["dw"]["depthwise_kernel"])  # (N, 4, 4, 6)
    n = h.shape[0]
    h = h.reshape(n, 2, 2, 2, 2, 6).max(axis=(2, 4)).reshape(n, -1)
    z = h @ p["logits"]["kernel"] + p["logits"]["bias"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sequential_both_layouts(tmp_path, layout):
    r = np.random.default_rng(0)
    key = "batch_shape" if layout == "keras3" else "batch_input_shape"
    config, w = sequential_model(r, key)
    if layout == "tf_keras":  # tf-keras names the depthwise kernel differently
        config["config"]["layers"][4]["config"]["name"] = "dw"
    g = load_keras_h5(write_h5(tmp_path / "m.h5", config, w, layout))
    assert [n.op for n in g.nodes] == [
        "Conv2D",
        "BatchNorm",
        "ReLU6",
        "DepthwiseConv2D",
        "MaxPool",
        "Flatten",
        "Dense",
        "Softmax",
    ]
    assert g.inputs == ("image",) and g.outputs == ("logits",)
    assert g.node("conv1").attrs["activation"] == "relu"
    assert g.node("conv1").params["weight"].shape == (3, 3, 3, 2)  # OHWI
    assert g.node("dw").params["weight"].shape == (1, 3, 3, 6)
    assert g.node("logits/linear").params["weight"].shape == (4, 24)
    x = r.standard_normal((3, 6, 6, 2)).astype(np.float32)
    close(g.run(x), sequential_oracle(x.astype(np.float64), w))


def test_keras3_depthwise_variable_named_kernel(tmp_path):
    r = np.random.default_rng(1)
    config, w = sequential_model(r, "batch_shape")
    w["dw"] = [("kernel", w["dw"][0][1])]
    g = load_keras_h5(write_h5(tmp_path / "m.h5", config, w, "keras3"))
    x = r.standard_normal((2, 6, 6, 2)).astype(np.float32)
    close(
        g.run(x),
        sequential_oracle(
            x.astype(np.float64), {**w, "dw": [("depthwise_kernel", w["dw"][0][1])]}
        ),
    )


# ---------------------------------------------------------------- functional
def ref(name, layout):
    if layout == "keras3":
        return {
            "class_name": "__keras_tensor__",
            "config": {
                "shape": None,
                "dtype": "float32",
                "keras_history": [name, 0, 0],
            },
        }
    return [name, 0, 0, {}]


def call(cls, name, inputs, layout, **config):
    ly = layer(cls, name, **config)
    ly["name"] = name
    refs = [ref(i, layout) for i in inputs]
    if layout == "keras3":
        args = [refs] if len(refs) > 1 else refs
        ly["inbound_nodes"] = [{"args": args, "kwargs": {}}]
    else:
        ly["inbound_nodes"] = [refs]
    return ly


def functional_model(layout):
    inp = layer("InputLayer", "x", batch_shape=[None, 4, 4, 3])
    inp["name"], inp["inbound_nodes"] = "x", []
    layers = [
        inp,
        call(
            "Conv2D",
            "c",
            ["x"],
            layout,
            filters=3,
            kernel_size=[1, 1],
            strides=[1, 1],
            padding="valid",
            activation="linear",
            use_bias=True,
        ),
        call("Add", "add", ["x", "c"], layout),
        call("Activation", "act", ["add"], layout, activation="relu"),
        call("ZeroPadding2D", "zp", ["act"], layout, padding=[[1, 0], [0, 1]]),
        call(
            "AveragePooling2D",
            "ap",
            ["zp"],
            layout,
            pool_size=[2, 2],
            strides=[2, 2],
            padding="valid",
        ),
        call("GlobalAveragePooling2D", "gap", ["ap"], layout, keepdims=False),
        call("GlobalAveragePooling2D", "gap2", ["x"], layout),
        call("Concatenate", "cat", ["gap", "gap2"], layout, axis=-1),
        call(
            "Dense", "out", ["cat"], layout, units=2, activation="tanh", use_bias=False
        ),
    ]
    outputs = [["out", 0, 0]] if layout == "tf_keras" else ["out", 0, 0]
    return {
        "class_name": "Functional",
        "config": {
            "name": "resnet",
            "layers": layers,
            "input_layers": [["x", 0, 0]],
            "output_layers": outputs,
        },
    }


@pytest.mark.parametrize("layout", LAYOUTS)
def test_functional_residual_both_layouts(tmp_path, layout):
    r = np.random.default_rng(2)
    kc, bc = r.standard_normal((1, 1, 3, 3)), r.standard_normal(3)
    kd = r.standard_normal((6, 2))
    w = {"c": [("kernel", kc), ("bias", bc)], "out": [("kernel", kd)]}
    path = write_h5(tmp_path / "f.h5", functional_model(layout), w, layout, "resnet")
    g = load_keras_h5(path)
    assert g.inputs == ("x",) and g.outputs == ("out",)
    assert g.node("add").inputs == ("x", "c")
    x = r.standard_normal((2, 4, 4, 3))
    h = np.maximum(x + conv_hwio(x, kc, bc, ((0, 0), (0, 0))), 0)
    h = np.pad(h, ((0, 0), (1, 0), (0, 1), (0, 0)))  # (2, 5, 5, 3)
    h = h[:, :4, :4].reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4))  # valid 2x2 pool
    feat = np.concatenate([h.mean(axis=(1, 2)), x.mean(axis=(1, 2))], axis=1)
    close(g.run(x.astype(np.float32)), np.tanh(feat @ kd))


# ---------------------------------------------------------------- errors
def test_unsupported_layer_names_layer_and_class(tmp_path):
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                layer("InputLayer", "in", batch_shape=[None, 3]),
                layer("LSTM", "rnn", units=4),
            ],
        },
    }
    path = write_h5(tmp_path / "u.h5", config, {}, "keras3")
    with pytest.raises(UnsupportedLayerError, match="layer 'rnn' of class 'LSTM'"):
        load_keras_h5(path)


@pytest.mark.parametrize(
    "bad_layer, match",
    [
        (
            layer(
                "Conv2D",
                "c",
                filters=1,
                kernel_size=[1, 1],
                data_format="channels_first",
            ),
            "channels_last",
        ),
        (layer("Dense", "d", units=1, activation="gelu"), "activation 'gelu'"),
        (layer("ReLU", "r", negative_slope=0.1), "negative_slope"),
        (layer("ReLU", "r", max_value=4.0), "max_value 4.0"),
        (
            layer("Conv2D", "c", filters=1, kernel_size=[1, 1], padding="causal"),
            "padding 'causal'",
        ),
    ],
)
def test_unsupported_settings(tmp_path, bad_layer, match):
    weights = {
        "c": [("kernel", np.ones((1, 1, 1, 1))), ("bias", np.ones(1))],
        "d": [("kernel", np.ones((1, 1))), ("bias", np.ones(1))],
    }
    first = layer("InputLayer", "in", batch_shape=[None, 1, 1, 1])
    config = {
        "class_name": "Sequential",
        "config": {"name": "s", "layers": [first, bad_layer]},
    }
    path = write_h5(tmp_path / "u.h5", config, weights, "keras3")
    with pytest.raises(UnsupportedLayerError, match=match):
        load_keras_h5(path)


def test_shared_layer_and_missing_weights(tmp_path):
    model = functional_model("keras3")
    model["config"]["layers"][1]["inbound_nodes"] *= 2
    path = write_h5(tmp_path / "s.h5", model, {}, "keras3", "resnet")
    with pytest.raises(UnsupportedLayerError, match="shared layer"):
        load_keras_h5(path)
    path = write_h5(tmp_path / "w.h5", functional_model("keras3"), {}, "keras3")
    with pytest.raises(UnsupportedLayerError, match="no weight named kernel"):
        load_keras_h5(path)


def test_bad_paths_and_files(tmp_path):
    with pytest.raises(InvalidTypeError, match="path must be"):
        load_keras_h5(3)
    with pytest.raises(InvalidArgumentError, match="existing .h5 file"):
        load_keras_h5(str(tmp_path / "nope.h5"))
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.create_group("model_weights")
    with pytest.raises(InvalidArgumentError, match="no 'model_config'"):
        load_keras_h5(str(tmp_path / "w.h5"))
    with h5py.File(tmp_path / "j.h5", "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Subclassed"})
    with pytest.raises(UnsupportedLayerError, match="model class 'Subclassed'"):
        load_keras_h5(str(tmp_path / "j.h5"))


# ---------------------------------------------------------------- hostile files
def _raw_h5(path, model_config: str, weights=None):
    """An .h5 whose model_config attribute is the given text, verbatim."""
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = model_config
        mw = f.create_group("model_weights")
        for lname, arrays in (weights or {}).items():
            g = mw.create_group(lname)
            for short, arr in arrays:
                g.create_dataset(f"{lname}/{short}:0", data=arr)
            g.attrs["weight_names"] = np.array(
                [f"{lname}/{s}:0".encode() for s, _ in arrays]
            )
    return path


def _seq(layers):
    return json.dumps({"class_name": "Sequential", "config": {"layers": layers}})


DENSE_W = [("kernel", np.ones((3, 2), np.float32)), ("bias", np.zeros(2, np.float32))]


def test_non_hdf5_and_truncated_files_name_the_file(tmp_path):
    good = write_h5(
        tmp_path / "good.h5",
        {"class_name": "Sequential", "config": {"layers": [layer("Dense", "d")]}},
        {"d": DENSE_W},
        "tf_keras",
    )
    cases = {
        "empty.h5": b"",
        "garbage.h5": b"this is not HDF5\n" * 8,
        "trunc.h5": open(good, "rb").read()[:1000],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CorruptFileError, match="not a readable HDF5") as info:
            load_keras_h5(tmp_path / name)
        assert name in str(info.value)


@pytest.mark.parametrize(
    "config, message",
    [
        ("[]", "model_config must be a JSON object; got list"),
        ("null", "model_config must be a JSON object; got NoneType"),
        ('"hello"', "model_config must be a JSON object; got str"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"class_name": "Sequential", "config": {}}', "list of layers; got NoneType"),
        ('{"class_name": "Sequential", "config": {"layers": 5}}', "got int"),
        (_seq([{"config": {"name": "d"}}]), "layer 0 must be an object"),
        (_seq([]), "Sequential model has no layers"),
        (
            json.dumps({"class_name": "Functional", "config": {"layers": []}}),
            "no output_layers",
        ),
        (
            json.dumps(
                {
                    "class_name": "Functional",
                    "config": {
                        "layers": [layer("InputLayer", "in")],
                        "output_layers": [["zzz", 0, 0]],
                    },
                }
            ),
            r"output_layers \[\['zzz', 0, 0\]\] do not name layers",
        ),
    ],
)
def test_malformed_model_config_is_named(tmp_path, config, message):
    path = _raw_h5(tmp_path / "bad_cfg.h5", config)
    with pytest.raises(CorruptFileError, match=message) as info:
        load_keras_h5(path)
    assert "bad_cfg.h5" in str(info.value)


@pytest.mark.parametrize(
    "config, weights, error, message",
    [
        (
            {"units": -2},
            DENSE_W,
            UnsupportedLayerError,
            "layer 'd' of class 'Dense': units must be an int >= 1; got units=-2",
        ),
        (
            {"units": 3},
            DENSE_W,
            UnsupportedLayerError,
            r"layer 'd' .*units=3 but the kernel has shape \[3, 2\]",
        ),
        (
            {"units": 2},
            [DENSE_W[0], ("bias", np.zeros(5, np.float32))],
            UnsupportedLayerError,
            r"layer 'd' .*bias has shape \[5\]; the kernel needs \[2\]",
        ),
        (
            {"units": 2},
            [("kernel", np.array([b"ab", b"cd"])), DENSE_W[1]],
            CorruptFileError,
            "layer 'd' of class 'Dense' has a malformed config or weights",
        ),
    ],
)
def test_bad_layer_settings_and_weights_name_the_layer(
    tmp_path, config, weights, error, message
):
    path = _raw_h5(
        tmp_path / "bad_layer.h5", _seq([layer("Dense", "d", **config)]), {"d": weights}
    )
    with pytest.raises(error, match=message) as info:
        load_keras_h5(path)
    assert "bad_layer.h5" in str(info.value)
