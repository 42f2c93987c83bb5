"""Build every model and input of the peer benchmark in a work folder.

``python prepare.py WORKDIR [--calib-images N] [--tf-python PATH]``

1. Inputs (.npy): MNIST calibration / evaluation sets, the 43 ImageNet-like
   photos (centre crops, normalized), the 23-photo calibration set of the
   timed MobileNetV2 and the N-image augmented calibration set (uint8).
2. refquant static INT8 models (defaults: int8 per-channel symmetric weights,
   int8 per-tensor min-max activations), saved as HDF5 and exported with
   ``refquant.io.onnx_export`` as QOperator ONNX (opset 21) with int8
   activations (the model onnx.reference and ONNX Runtime run) and with
   uint8 activations (ONNX Runtime's fast U8S8 path; same real values).
3. FP32 ONNX models of the folded graphs (for ONNX Runtime's calibrators).
4. Keras ports of the same folded weights, converted by TensorFlow to full
   int8 .tflite with the same calibration inputs (LiteRT rows).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from _runner import emit, self_rss_mb  # noqa: E402

TF_PYTHON = "/work/tfvenv/bin/python"
QOP_OPSET = 21  # onnx.reference implements DequantizeLinear from opset 19 on


def prepare_inputs(work: C.Work, n_calib: int) -> dict:
    cal, x_eval, y_eval = C.mnist_sets()
    C.save_array(work.array("mnist_cal"), cal)
    C.save_array(work.array("mnist_eval"), x_eval)
    C.save_array(work.array("mnist_labels"), y_eval)
    photos, labels = C.imagenet_photos()
    center = C.imagenet_center_u8(photos)
    x = C.imagenet_normalize(center)
    C.save_array(work.array("mobilenet_v2_eval"), x)
    C.save_array(work.array("mobilenet_v2_labels"), labels)
    C.save_array(work.array("mobilenet_v2_cal"), x[20:])  # the 23 unlabeled
    t0 = time.perf_counter()
    C.save_array(work.array("mobilenet_v2_aug_u8"), C.augmented_u8(photos, n_calib))
    return {"photos": len(photos), "augment_s": time.perf_counter() - t0}


def prepare_refquant(work: C.Work, model: str) -> dict:
    from refquant.io.onnx_export import export_onnx
    from refquant.ptq import quantize_model, save_quantized_model

    graph = C.fp32_graph(model)
    cal = np.load(work.array(f"{model}_cal"))
    t0 = time.perf_counter()
    qm = quantize_model(graph, cal, batch_size=25)
    t_quant = time.perf_counter() - t0
    save_quantized_model(qm, work.qmodel(model))
    for act in ("int8", "uint8"):
        export_onnx(
            qm,
            work.onnx_qop(model, act),
            format="qoperator",
            opset=QOP_OPSET,
            activation_dtype=act,
        )
    C.save_onnx(C.fp32_onnx(graph), work.onnx_fp32(model))
    x_check = np.load(work.array(f"{model}_eval"))[:2]
    C.save_array(work.array(f"{model}_check_in"), x_check)
    C.save_array(work.array(f"{model}_check_out"), graph.run(x_check))
    _keras_spec(work, model, graph, cal.shape[1:])
    return {"quantize_s": t_quant, "calib_inputs": int(cal.shape[0])}


def _keras_spec(work, model, graph, input_shape) -> None:
    nodes, params = [], {}
    for n in graph.nodes:
        attrs = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in n.attrs.items()
        }
        nodes.append(
            {"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": attrs}
        )
        for k, v in n.params.items():
            params[f"{n.name}.{k}"] = np.asarray(v, np.float32)
    C.save_json(
        work.path(f"{model}.keras.json"),
        {
            "input": graph.inputs[0],
            "output": graph.outputs[0],
            "input_shape": list(input_shape),
            "nodes": nodes,
        },
    )
    np.savez(work.path(f"{model}.keras.npz"), **params)


def convert_tflite(work: C.Work, model: str, tf_python: str) -> dict:
    argv = [
        tf_python,
        str(Path(__file__).with_name("keras_tflite.py")),
        str(work.path(f"{model}.keras.json")),
        str(work.path(f"{model}.keras.npz")),
        str(work.array(f"{model}_cal")),
        str(work.array(f"{model}_check_in")),
        str(work.array(f"{model}_check_out")),
        str(work.tflite(model)),
    ]
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(
            f"TFLite conversion of {model} failed:\n{out.stderr[-3000:]}"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdir")
    p.add_argument("--calib-images", type=int, default=500)
    p.add_argument("--tf-python", default=TF_PYTHON)
    args = p.parse_args(argv)
    work = C.Work(args.workdir)
    info = {"inputs": prepare_inputs(work, args.calib_images)}
    for model in C.MODELS:
        info[model] = prepare_refquant(work, model)
    if args.tf_python and Path(args.tf_python).exists():
        for model in C.MODELS:
            info[model]["tflite"] = convert_tflite(work, model, args.tf_python)
    info["rss_mb"] = self_rss_mb()
    emit(info)


if __name__ == "__main__":
    main()
