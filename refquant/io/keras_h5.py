"""Keras HDF5 (.h5) reader: Sequential and functional models -> FP32 Graph.

Reads with h5py only (nothing from the file is executed): the JSON
``model_config`` attribute gives the layers and their wiring, and the
``/model_weights/<layer>`` groups give the weights, resolved through each
group's ``weight_names`` attribute relative to the group.  That rule covers
both layouts: Keras 3 (``<layer>/<model>/<layer>/kernel``) and tf-keras
(``<layer>/<layer>/kernel:0``).  Layouts are converted to the engine's:
conv HWIO -> OHWI, depthwise ``(kh, kw, C, M)`` -> ``(1, kh, kw, C*M)``,
dense ``(K, C_out)`` -> ``(C_out, K)``.  See specs/io_keras.md.
"""

from __future__ import annotations

import json
import os

import numpy as np

from refquant._validation import check_type
from refquant.errors import InvalidArgumentError
from refquant.graph.builders import GraphBuilder
from refquant.graph.graph import Graph

# Keras activation name -> (fused activation attr, separate op)
_ACTIVATIONS = {
    "linear": (None, None),
    None: (None, None),
    "relu": ("relu", None),
    "relu6": ("relu6", None),
    "softmax": (None, "Softmax"),
    "sigmoid": (None, "Sigmoid"),
    "tanh": (None, "Tanh"),
}
_SKIPPED = {"Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout"}


class UnsupportedLayerError(InvalidArgumentError):
    """A Keras layer (or a layer setting) that the graph cannot express."""


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _str_list(attr) -> list[str]:
    return [_text(v) for v in np.asarray(attr).ravel().tolist()]


def _unsupported(layer: dict, what: str):
    raise UnsupportedLayerError(
        f"layer {layer['config'].get('name')!r} of class {layer['class_name']!r}: "
        f"{what}"
    )


# ---------------------------------------------------------------- weights
def _layer_weights(f, name: str) -> dict[str, np.ndarray]:
    """Weights of one layer keyed by short name (``kernel``, ``gamma``...)."""
    groups = f["model_weights"] if "model_weights" in f else f
    if name not in groups:
        return {}
    group = groups[name]
    out = {}
    for wname in _str_list(group.attrs.get("weight_names", [])):
        short = wname.rsplit("/", 1)[-1].split(":", 1)[0]
        out[short] = np.asarray(group[wname], dtype=np.float32)
    return out


def _weight(layer, weights, *names):
    for n in names:
        if n in weights:
            return weights[n]
    _unsupported(layer, f"no weight named {' or '.join(names)} in the file")


# ---------------------------------------------------------------- layer rules
def _activation(layer) -> tuple[str | None, str | None]:
    act = layer["config"].get("activation", "linear")
    if isinstance(act, dict):  # Keras 3 may serialize {"config": "relu", ...}
        act = act.get("config", act.get("class_name"))
        act = act.get("name") if isinstance(act, dict) else act
    if act not in _ACTIVATIONS:
        _unsupported(
            layer,
            f"activation {act!r} is not supported; supported are "
            f"{sorted(k for k in _ACTIVATIONS if k)}",
        )
    return _ACTIVATIONS[act]


def _check_channels_last(layer):
    if layer["config"].get("data_format", "channels_last") != "channels_last":
        _unsupported(layer, "only data_format='channels_last' is supported")


def _conv_like(layer, weights):
    cfg = layer["config"]
    _check_channels_last(layer)
    attrs = {
        "strides": tuple(cfg.get("strides", (1, 1))),
        "dilations": tuple(cfg.get("dilation_rate", (1, 1))),
        "padding": cfg.get("padding", "valid"),
    }
    if cfg.get("padding") not in ("valid", "same"):
        _unsupported(layer, f"padding {cfg.get('padding')!r}")
    if layer["class_name"] == "DepthwiseConv2D":
        k = _weight(layer, weights, "depthwise_kernel", "kernel")  # (kh, kw, C, M)
        kh, kw, c, m = k.shape
        params = {"weight": k.reshape(1, kh, kw, c * m)}
        attrs["depth_multiplier"] = int(m)
        op = "DepthwiseConv2D"
    else:
        k = _weight(layer, weights, "kernel")  # HWIO (kh, kw, C_in/g, C_out)
        params = {"weight": k.transpose(3, 0, 1, 2)}
        attrs["groups"] = int(cfg.get("groups", 1))
        op = "Conv2D"
    if cfg.get("use_bias", True):
        params["bias"] = _weight(layer, weights, "bias")
    return op, params, attrs


def _dense(layer, weights):
    params = {"weight": _weight(layer, weights, "kernel").T}
    if layer["config"].get("use_bias", True):
        params["bias"] = _weight(layer, weights, "bias")
    return "Dense", params, {}


def _batch_norm(layer, weights):
    cfg = layer["config"]
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, 1, 3):  # the last axis of rank-2 or rank-4 (NHWC) data
        _unsupported(
            layer, f"axis {cfg.get('axis')!r}; only the last axis is supported"
        )
    mean = _weight(layer, weights, "moving_mean")
    ones = np.ones_like(mean)
    params = {
        "gamma": weights.get("gamma", ones) if cfg.get("scale", True) else ones,
        "beta": weights.get("beta", 0 * ones) if cfg.get("center", True) else 0 * ones,
        "mean": mean,
        "var": _weight(layer, weights, "moving_variance"),
    }
    return "BatchNorm", params, {"epsilon": float(cfg.get("epsilon", 1e-3))}


def _relu(layer, weights):
    cfg = layer["config"]
    slope = cfg.get("negative_slope", cfg.get("alpha", 0.0)) or 0.0
    if slope != 0.0 or (cfg.get("threshold") or 0.0) != 0.0:
        _unsupported(layer, "negative_slope and threshold must be 0")
    max_value = cfg.get("max_value")
    if max_value is None:
        return "ReLU", {}, {}
    if float(max_value) == 6.0:
        return "ReLU6", {}, {}
    _unsupported(layer, f"max_value {max_value!r}; only None and 6 are supported")


def _activation_layer(layer, weights):
    fused, op = _activation(layer)
    op = op or {"relu": "ReLU", "relu6": "ReLU6", None: None}[fused]
    return (op, {}, {}) if op else (None, {}, {})


def _pool(layer, weights):
    cfg = layer["config"]
    _check_channels_last(layer)
    op = "MaxPool" if layer["class_name"].startswith("Max") else "AvgPool"
    attrs = {
        "pool_size": tuple(cfg.get("pool_size", (2, 2))),
        "strides": tuple(cfg["strides"]) if cfg.get("strides") else None,
        "padding": cfg.get("padding", "valid"),
    }
    return op, {}, attrs


def _global_avg_pool(layer, weights):
    _check_channels_last(layer)
    return "GlobalAvgPool", {}, {"keepdims": bool(layer["config"].get("keepdims"))}


def _zero_padding(layer, weights):
    pad = layer["config"].get("padding", (1, 1))
    if isinstance(pad, int):
        pad = ((pad, pad), (pad, pad))
    elif all(isinstance(p, int) for p in pad):
        pad = ((pad[0], pad[0]), (pad[1], pad[1]))
    _check_channels_last(layer)
    return "Pad", {}, {"paddings": ((0, 0), tuple(pad[0]), tuple(pad[1]), (0, 0))}


def _concat(layer, weights):
    return "Concat", {}, {"axis": int(layer["config"].get("axis", -1))}


def _reshape(layer, weights):
    return "Reshape", {}, {"shape": tuple(layer["config"]["target_shape"])}


def _softmax(layer, weights):
    axis = layer["config"].get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if not isinstance(axis, int):
        _unsupported(layer, f"axis {axis!r}; only one int axis is supported")
    return "Softmax", {}, {"axis": axis}


def _simple(op):
    return lambda layer, weights: (op, {}, {})


_RULES = {
    "Conv2D": _conv_like,
    "DepthwiseConv2D": _conv_like,
    "Dense": _dense,
    "BatchNormalization": _batch_norm,
    "ReLU": _relu,
    "Activation": _activation_layer,
    "MaxPooling2D": _pool,
    "AveragePooling2D": _pool,
    "GlobalAveragePooling2D": _global_avg_pool,
    "Add": _simple("Add"),
    "Concatenate": _concat,
    "Flatten": _simple("Flatten"),
    "Reshape": _reshape,
    "ZeroPadding2D": _zero_padding,
    "Softmax": _softmax,
}
SUPPORTED_LAYERS = tuple(sorted(set(_RULES) | _SKIPPED | {"InputLayer"}))


def _add_layer(b: GraphBuilder, f, layer: dict, inputs: list[str]) -> str:
    """Append the nodes of one Keras layer; return the name of its output."""
    cls, name = layer["class_name"], layer["config"]["name"]
    if cls in _SKIPPED:
        return inputs[0]  # identity at inference
    if cls not in _RULES:
        _unsupported(
            layer, f"unsupported layer class; supported are {SUPPORTED_LAYERS}"
        )
    op, params, attrs = _RULES[cls](layer, _layer_weights(f, name))
    if op is None:
        return inputs[0]  # Activation('linear')
    fused, extra = (None, None)
    if cls in ("Conv2D", "DepthwiseConv2D", "Dense"):
        fused, extra = _activation(layer)
        attrs["activation"] = fused
    if extra is None:
        return b.add(op, inputs, name=name, params=params, **attrs)
    core = b.add(op, inputs, name=f"{name}/linear", params=params, **attrs)
    return b.add(extra, core, name=name)


# ---------------------------------------------------------------- topology
def _input_name(layer) -> str:
    return layer["config"]["name"]


def _sequential(b, f, config) -> str:
    layers = config["layers"] if isinstance(config, dict) else config
    first = layers[0] if layers else None
    if first is not None and first["class_name"] == "InputLayer":
        x = b.input(_input_name(first))
        layers = layers[1:]
    else:
        x = b.input("input")
    for layer in layers:
        if layer["class_name"] in ("Sequential", "Functional", "Model"):
            _unsupported(layer, "nested models are not supported")
        x = _add_layer(b, f, layer, [x])
    return x


def _history(obj, found: list) -> list:
    """Collect ``(layer, node_index, tensor_index)`` from inbound node args."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            found.append(tuple(obj["config"]["keras_history"]))
        else:
            for v in obj.values():
                _history(v, found)
    elif isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            found.append(tuple(obj[:3]))  # tf-keras [layer, node, tensor, kwargs]
        else:
            for v in obj:
                _history(v, found)
    return found


def _inbound(layer) -> list[str]:
    nodes = layer.get("inbound_nodes", [])
    if len(nodes) > 1:
        _unsupported(layer, "a layer called more than once (shared layer)")
    if not nodes:
        return []
    node = nodes[0]
    refs = _history(node.get("args", node) if isinstance(node, dict) else node, [])
    for ref in refs:
        if ref[1] != 0 or ref[2] != 0:
            _unsupported(
                layer, f"input {list(ref)} uses a shared or multi-output layer"
            )
    return [r[0] for r in refs]


def _endpoints(spec) -> list[str]:
    if spec and isinstance(spec[0], str):  # Keras 3 single ["name", 0, 0]
        spec = [spec]
    return [s[0] for s in spec]


def _functional(b, f, config) -> list[str]:
    tensor_of: dict[str, str] = {}
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            tensor_of[layer["config"]["name"]] = b.input(layer["config"]["name"])
            continue
        if layer["class_name"] in ("Sequential", "Functional", "Model"):
            _unsupported(layer, "nested models are not supported")
        srcs = _inbound(layer)
        missing = [s for s in srcs if s not in tensor_of]
        if missing or not srcs:
            _unsupported(layer, f"inputs {missing or srcs} are not defined before it")
        name = layer["config"]["name"]
        tensor_of[name] = _add_layer(b, f, layer, [tensor_of[s] for s in srcs])
    return [tensor_of[o] for o in _endpoints(config["output_layers"])]


def _model_config(f) -> dict:
    raw = f.attrs.get("model_config")
    if raw is None:
        raise InvalidArgumentError(
            "path must be a Keras .h5 saved with the model (model.save); this file "
            "has no 'model_config' attribute (weights-only files are not supported)"
        )
    try:
        return json.loads(_text(raw))
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"model_config is not valid JSON: {exc}") from exc


def load_keras_h5(path) -> Graph:
    """Read a Keras .h5 model (Sequential or functional) into an FP32 Graph.

    Node names are the Keras layer names; a Conv2D / Dense whose activation
    is softmax, sigmoid or tanh becomes ``<name>/linear`` plus an activation
    node named ``<name>``; relu and relu6 are fused into the node's
    ``activation`` attr.  Dropout-like layers are dropped (inference).

    Raises
    ------
    UnsupportedLayerError
        For a layer class or setting outside :data:`SUPPORTED_LAYERS`, naming
        the layer and its class.
    """
    check_type("path", path, (str, os.PathLike), "a path to a .h5 file")
    import h5py

    if not os.path.isfile(path):
        raise InvalidArgumentError(
            f"path must be an existing .h5 file; got path={path!r}"
        )
    with h5py.File(path, "r") as f:
        model = _model_config(f)
        cls, config = model.get("class_name"), model.get("config", {})
        b = GraphBuilder(
            config.get("name", "keras_model")
            if isinstance(config, dict)
            else "keras_model"
        )
        if cls == "Sequential":
            outputs = [_sequential(b, f, config)]
        elif cls in ("Functional", "Model"):
            outputs = _functional(b, f, config)
        else:
            raise UnsupportedLayerError(
                f"model class {cls!r} is not supported; supported are 'Sequential', "
                "'Functional' and 'Model'"
            )
        return b.build(outputs=outputs)
