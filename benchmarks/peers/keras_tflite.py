"""Keras port of a folded refquant graph, converted to a full-int8 .tflite.

Run with the TensorFlow interpreter (``/work/tfvenv/bin/python``), never with
refquant's: it reads only the files written by ``prepare.py``::

    python keras_tflite.py SPEC.json PARAMS.npz CALIB.npy CHECK_IN.npy
        CHECK_OUT.npy OUT.tflite

SPEC.json lists the nodes (name, op, inputs, attrs) of the graph; PARAMS.npz
holds ``<node>.weight`` (refquant layouts: OHWI, 1HWC, (out, in)) and
``<node>.bias``.  The converter gets the calibration inputs as its
representative data set, int8 input and output, TFLITE_BUILTINS_INT8 only.
Prints one JSON line: conversion seconds and the largest |Keras - refquant|
FP32 output difference on CHECK_IN.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np


def _layer(keras, n, params, x):
    layers, at = keras.layers, n["attrs"]
    if n["op"] in ("Conv2D", "DepthwiseConv2D"):
        (t, b), (left, r) = at["padding"]
        if t or b or left or r:
            x = layers.ZeroPadding2D(((t, b), (left, r)), name=n["name"] + ".pad")(x)
        w = params[n["name"] + ".weight"]
        if n["op"] == "Conv2D":
            layer = layers.Conv2D(
                w.shape[0],
                w.shape[1:3],
                strides=at["strides"],
                dilation_rate=at["dilations"],
                name=n["name"],
            )
            kernel = w.transpose(1, 2, 3, 0)  # OHWI -> HWIO
        else:
            layer = layers.DepthwiseConv2D(
                w.shape[1:3],
                strides=at["strides"],
                dilation_rate=at["dilations"],
                name=n["name"],
            )
            kernel = w[0][..., None]  # 1HWC -> (kh, kw, C, 1)
        x = layer(x)
        layer.set_weights([kernel, params[n["name"] + ".bias"]])
    elif n["op"] == "Dense":
        w = params[n["name"] + ".weight"]
        layer = layers.Dense(w.shape[0], name=n["name"])
        x = layer(x)
        layer.set_weights([w.T, params[n["name"] + ".bias"]])
    elif n["op"] == "MaxPool":
        x = layers.MaxPooling2D(
            at["pool_size"], at["strides"] or at["pool_size"], name=n["name"]
        )(x)
    elif n["op"] == "GlobalAvgPool":
        x = layers.GlobalAveragePooling2D(name=n["name"])(x)
    elif n["op"] == "Flatten":
        x = layers.Flatten(name=n["name"])(x)
    else:
        raise NotImplementedError(f"node {n['name']!r}: op {n['op']} not ported")
    act = at.get("activation")
    if act == "relu":
        x = layers.ReLU(name=n["name"] + ".relu")(x)
    elif act == "relu6":
        x = layers.ReLU(6.0, name=n["name"] + ".relu6")(x)
    return x


def build(keras, spec, params):
    inp = keras.Input(shape=tuple(spec["input_shape"]), batch_size=None, name="input")
    env = {spec["input"]: inp}
    for n in spec["nodes"]:
        if n["op"] == "Add":
            env[n["name"]] = keras.layers.Add(name=n["name"])(
                [env[i] for i in n["inputs"]]
            )
        else:
            env[n["name"]] = _layer(keras, n, params, env[n["inputs"][0]])
    return keras.Model(inp, env[spec["output"]])


def main(argv):
    spec_path, params_path, calib_path, check_in, check_out, out_path = argv
    import tensorflow as tf

    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    params = dict(np.load(params_path))
    model = build(tf.keras, spec, params)
    x_check = np.load(check_in)
    diff = float(
        np.abs(
            model.predict(x_check, batch_size=1, verbose=0) - np.load(check_out)
        ).max()
    )
    calib = np.load(calib_path)

    def representative():
        for i in range(calib.shape[0]):
            yield [calib[i : i + 1].astype(np.float32)]

    t0 = time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    blob = conv.convert()
    seconds = time.perf_counter() - t0
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(out_path) or ".")
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.replace(tmp, out_path)
    print(
        json.dumps(
            {
                "convert_s": seconds,
                "fp32_max_abs_diff": diff,
                "bytes": len(blob),
                "tf": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
