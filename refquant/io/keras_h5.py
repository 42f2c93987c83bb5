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
from refquant.errors import CorruptFileError, InvalidArgumentError, RefquantError
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
# what a malformed config or weight group raises from the dict/list/h5py code
_MALFORMED = (KeyError, TypeError, AttributeError, IndexError, ValueError, OSError)


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
        if k.ndim != 4:
            _unsupported(layer, f"kernel has shape {list(k.shape)}; expected 4-D")
        kh, kw, c, m = k.shape
        params = {"weight": k.reshape(1, kh, kw, c * m)}
        attrs["depth_multiplier"] = int(m)
        op = "DepthwiseConv2D"
    else:
        k = _weight(layer, weights, "kernel")  # HWIO (kh, kw, C_in/g, C_out)
        if k.ndim != 4:
            _unsupported(layer, f"kernel has shape {list(k.shape)}; expected 4-D")
        _check_width(layer, "filters", k)
        params = {"weight": k.transpose(3, 0, 1, 2)}
        attrs["groups"] = int(cfg.get("groups", 1))
        op = "Conv2D"
    if cfg.get("use_bias", True):
        params["bias"] = _bias(
            layer, weights, params["weight"].shape[0 if op == "Conv2D" else -1]
        )
    return op, params, attrs


def _check_width(layer, key: str, kernel: np.ndarray) -> None:
    """``units`` / ``filters`` must be an int >= 1 equal to the kernel's last dim."""
    if key not in layer["config"]:
        return
    value = layer["config"][key]
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        _unsupported(layer, f"{key} must be an int >= 1; got {key}={value!r}")
    if kernel.ndim == 0 or kernel.shape[-1] != value:
        _unsupported(
            layer, f"{key}={value} but the kernel has shape {list(kernel.shape)}"
        )


def _dense(layer, weights):
    kernel = _weight(layer, weights, "kernel")
    if kernel.ndim != 2:
        _unsupported(layer, f"kernel has shape {list(kernel.shape)}; expected 2-D")
    _check_width(layer, "units", kernel)
    params = {"weight": kernel.T}
    if layer["config"].get("use_bias", True):
        params["bias"] = _bias(layer, weights, kernel.shape[-1])
    return "Dense", params, {}


def _bias(layer, weights, width: int) -> np.ndarray:
    bias = _weight(layer, weights, "bias")
    if bias.shape != (width,):
        _unsupported(
            layer, f"bias has shape {list(bias.shape)}; the kernel needs [{width}]"
        )
    return bias


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
    try:
        return _add_layer_nodes(b, f, layer, inputs)
    except RefquantError:
        raise
    except _MALFORMED as e:
        raise CorruptFileError(
            f"layer {layer['config']['name']!r} of class {layer['class_name']!r} "
            f"has a malformed config or weights ({type(e).__name__}: {e})"
        ) from None


def _add_layer_nodes(b: GraphBuilder, f, layer: dict, inputs: list[str]) -> str:
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


def _check_layers(config, need_outputs: bool) -> list:
    """The config's layer list, each a dict with str class_name and config.name."""
    layers = config.get("layers") if isinstance(config, dict) else config
    if not isinstance(layers, list):
        raise CorruptFileError(
            f"model_config must hold a list of layers; got {type(layers).__name__}"
        )
    for i, layer in enumerate(layers):
        cfg = layer.get("config") if isinstance(layer, dict) else None
        if not (
            isinstance(layer.get("class_name") if cfg is not None else None, str)
            and isinstance(cfg, dict)
            and isinstance(cfg.get("name"), str)
        ):
            raise CorruptFileError(
                f"model_config layer {i} must be an object with a str class_name "
                f"and a config with a str name; got {str(layer)[:200]}"
            )
    if need_outputs and "output_layers" not in config:
        raise CorruptFileError(
            "model_config of a functional model has no output_layers"
        )
    return layers


def _sequential(b, f, config) -> str:
    layers = _check_layers(config, need_outputs=False)
    first = layers[0] if layers else None
    if first is not None and first["class_name"] == "InputLayer":
        x = b.input(_input_name(first))
        layers = layers[1:]
    else:
        x = b.input("input")
    if not layers:
        raise CorruptFileError("model_config of a Sequential model has no layers")
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
    for layer in _check_layers(config, need_outputs=True):
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
    try:
        ends = _endpoints(config["output_layers"])
        return [tensor_of[o] for o in ends]
    except (KeyError, TypeError, IndexError):
        raise CorruptFileError(
            f"output_layers {str(config['output_layers'])[:200]} do not name "
            f"layers of the model; layers are {sorted(tensor_of)}"
        ) from None


def _model_config(f) -> dict:
    raw = f.attrs.get("model_config")
    if raw is None:
        raise InvalidArgumentError(
            "path must be a Keras .h5 saved with the model (model.save); this file "
            "has no 'model_config' attribute (weights-only files are not supported)"
        )
    try:
        model = json.loads(_text(raw))
    except RecursionError:
        raise CorruptFileError("model_config JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"model_config is not valid JSON: {exc}") from None
    if not isinstance(model, dict):
        raise CorruptFileError(
            f"model_config must be a JSON object; got {type(model).__name__}"
        )
    return model


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
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CorruptFileError(
            f"path={os.fspath(path)!r} is not a readable HDF5 (Keras .h5) file: {e}"
        ) from None
    try:
        with f:
            return _build(f)
    except RefquantError as e:
        if os.fspath(path) in str(e):
            raise
        try:
            named = type(e)(f"path={os.fspath(path)!r}: {e}")
        except TypeError:  # an error class with a different constructor
            raise e from None
        raise named from None
    except RecursionError:
        raise CorruptFileError(
            f"path={os.fspath(path)!r}: the model config is nested too deeply"
        ) from None
    except _MALFORMED as e:
        raise CorruptFileError(
            f"path={os.fspath(path)!r} has a malformed model: {type(e).__name__}: {e}"
        ) from None


def _build(f) -> Graph:
    model = _model_config(f)
    cls, config = model.get("class_name"), model.get("config", {})
    b = GraphBuilder(
        config.get("name", "keras_model")
        if isinstance(config, dict) and isinstance(config.get("name"), str)
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
