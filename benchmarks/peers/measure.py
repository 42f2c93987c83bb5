"""One measurement per process (started by run_all.py through _runner.py).

``python measure.py WORKDIR infer ENGINE MODEL BATCH [--profile P] ...``
``python measure.py WORKDIR calib ENGINE METHOD [--images N] [--batch B]``
``python measure.py WORKDIR e2e ENGINE MODEL [--profile P]``

Inference engines: ``refquant`` (``QuantizedModel.run_codes`` under a
profile), ``onnxref`` (onnx.reference on refquant's QOperator export, int8
activations), ``ort`` / ``ort_int8`` (ONNX Runtime, default session options,
on the uint8 / int8 QOperator export), ``litert_ref`` / ``litert`` (LiteRT
BUILTIN_REF kernels / default resolver with XNNPACK, 2 threads, on the
TensorFlow-converted int8 .tflite).  Every timed call maps the same float
input to int8 output codes (input quantization included).  Prints
``RESULT <json>`` with the per-call seconds and the RSS after setup.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from _runner import emit, self_rss_mb, time_calls  # noqa: E402


# ---------------------------------------------------------------- inference
def _refquant_runner(work, model, x, profile):
    from refquant.ptq import load_quantized_model

    qm = load_quantized_model(work.qmodel(model))
    return lambda: qm.run_codes(x, profile=profile)


def _onnxref_runner(work, model, x, profile):
    from onnx.reference import ReferenceEvaluator
    from onnx_ref_msops import NEW_OPS

    ev = ReferenceEvaluator(str(work.onnx_qop(model, "int8")), new_ops=NEW_OPS)
    feed = {ev.input_names[0]: C.nchw(x)}
    return lambda: C.nhwc(ev.run(None, feed)[0])


def _ort_runner(work, model, x, profile, act="uint8"):
    import onnxruntime as ort

    sess = ort.InferenceSession(
        str(work.onnx_qop(model, act)), providers=["CPUExecutionProvider"]
    )
    feed = {sess.get_inputs()[0].name: C.nchw(x)}
    shift = 128 if act == "uint8" else 0  # uint8 code = int8 code + 128
    return lambda: C.nhwc(sess.run(None, feed)[0].astype(np.int16) - shift)


def _litert_runner(work, model, x, profile, resolver="BUILTIN_REF"):
    from ai_edge_litert import interpreter as lrt

    kind = getattr(lrt.OpResolverType, resolver)
    it = lrt.Interpreter(
        str(work.tflite(model)), experimental_op_resolver_type=kind, num_threads=2
    )
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    s, zp = inp["quantization"]

    def run():
        q = np.clip(np.rint(x / np.float32(s)) + zp, -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], q)
        it.invoke()
        return it.get_tensor(out["index"])

    return run


RUNNERS = {
    "refquant": _refquant_runner,
    "onnxref": _onnxref_runner,
    "ort": _ort_runner,
    "ort_int8": lambda w, m, x, p: _ort_runner(w, m, x, p, "int8"),
    "litert_ref": _litert_runner,
    "litert": lambda w, m, x, p: _litert_runner(w, m, x, p, "BUILTIN"),
}


def infer(work, args) -> dict:
    x = np.load(work.array(f"{args.model}_eval"))[: args.batch]
    rss0 = self_rss_mb()
    t0 = time.perf_counter()
    fn = RUNNERS[args.engine](work, args.model, x, args.profile)
    setup = time.perf_counter() - t0
    times = time_calls(fn, warmup=args.warmup, reps=args.reps, budget_s=args.budget)
    if args.save_out:
        C.save_array(work.array(args.save_out), np.asarray(fn()))
    return {"times": times, "setup_s": setup, "rss_setup_mb": rss0}


# ---------------------------------------------------------------- calibration
def _augmented_batches(work, n, batch):
    u8 = np.load(work.array("mobilenet_v2_aug_u8"), mmap_mode="r")[:n]
    for i in range(0, u8.shape[0], batch):
        yield C.imagenet_normalize(u8[i : i + batch])


def _calib_refquant(work, method, n, batch):
    from refquant.ptq import QuantConfig, quantize_model

    graph = C.fp32_graph("mobilenet_v2")
    options = {"percentile": 99.999} if method == "percentile" else {}
    cfg = QuantConfig(activation_observer=method, activation_observer_options=options)
    rss0 = self_rss_mb()
    t0 = time.perf_counter()
    qm = quantize_model(
        graph, _augmented_batches(work, n, batch), config=cfg, batch_size=batch
    )
    return time.perf_counter() - t0, rss0, qm


class _Reader:
    """ONNX Runtime CalibrationDataReader over the same images, one at a time.

    ``set_range`` is what quantize_static calls with CalibStridedMinMax.
    """

    def __init__(self, work, name, n):
        self.u8 = np.load(work.array("mobilenet_v2_aug_u8"), mmap_mode="r")[:n]
        self.name = name
        self.i, self.end = 0, n

    def __len__(self):
        return self.u8.shape[0]

    def set_range(self, start_index, end_index):
        self.i, self.end = start_index, min(end_index, len(self))

    def get_next(self):
        if self.i >= self.end:
            return None
        self.i += 1
        x = C.imagenet_normalize(self.u8[self.i - 1 : self.i])
        return {self.name: C.nchw(x)}


def _calib_ort(work, method, n, stride, fmt="qdq", act="int8"):
    from onnxruntime import quantization as oq

    methods = {
        "minmax": oq.CalibrationMethod.MinMax,
        "entropy": oq.CalibrationMethod.Entropy,
        "percentile": oq.CalibrationMethod.Percentile,
    }
    extra = {"CalibStridedMinMax": stride} if stride else {}
    rss0 = self_rss_mb()
    with tempfile.TemporaryDirectory(dir=work.root) as tmp:
        out = Path(tmp) / "q.onnx"
        t0 = time.perf_counter()
        oq.quantize_static(
            str(work.onnx_fp32("mobilenet_v2")),
            str(out),
            _Reader(work, "input", n),
            quant_format=oq.QuantFormat.QDQ
            if fmt == "qdq"
            else oq.QuantFormat.QOperator,
            per_channel=True,
            activation_type=oq.QuantType.QInt8
            if act == "int8"
            else oq.QuantType.QUInt8,
            weight_type=oq.QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options=extra,
        )
        seconds = time.perf_counter() - t0
    return seconds, rss0


def calib(work, args) -> dict:
    if args.engine == "refquant":
        seconds, rss0, _ = _calib_refquant(work, args.method, args.images, args.batch)
    else:
        seconds, rss0 = _calib_ort(work, args.method, args.images, args.stride)
    return {"seconds": seconds, "rss_setup_mb": rss0, "images": args.images}


# ---------------------------------------------------------------- end to end
def _accuracy(codes, labels):
    pred = np.asarray(codes).argmax(axis=1)
    known = labels >= 0
    return int((pred[known] == labels[known]).sum()), int(known.sum())


def e2e(work, args) -> dict:
    """Quantize (calibration set of the timed model) + evaluate every input."""
    m = args.model
    cal = np.load(work.array(f"{m}_cal"))
    x = np.load(work.array(f"{m}_eval"))
    labels = np.load(work.array(f"{m}_labels"))
    rss0 = self_rss_mb()
    batch = 100 if m == "mnist" else 8
    t0 = time.perf_counter()
    if args.engine == "refquant":
        from refquant.ptq import quantize_model

        qm = quantize_model(C.fp32_graph(m), cal, batch_size=25)
        t1 = time.perf_counter()
        out = np.concatenate(
            [
                qm.run_codes(x[i : i + batch], profile=args.profile)
                for i in range(0, len(x), batch)
            ]
        )
    else:
        import onnxruntime as ort
        from onnxruntime import quantization as oq

        class Reader:
            def __init__(self):
                self.it = iter(range(len(cal)))

            def get_next(self):
                i = next(self.it, None)
                return None if i is None else {"input": C.nchw(cal[i : i + 1])}

        with tempfile.TemporaryDirectory(dir=work.root) as tmp:
            path = str(Path(tmp) / "q.onnx")
            oq.quantize_static(
                str(work.onnx_fp32(m)),
                path,
                Reader(),
                quant_format=oq.QuantFormat.QOperator,
                per_channel=True,
                activation_type=oq.QuantType.QUInt8,
                weight_type=oq.QuantType.QInt8,
            )
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        t1 = time.perf_counter()
        out = np.concatenate(
            [
                sess.run(None, {"input": C.nchw(x[i : i + batch])})[0]
                for i in range(0, len(x), batch)
            ]
        )
    t2 = time.perf_counter()
    correct, total = _accuracy(out, labels)
    return {
        "quantize_s": t1 - t0,
        "eval_s": t2 - t1,
        "seconds": t2 - t0,
        "correct": correct,
        "labeled": total,
        "evaluated": len(x),
        "rss_setup_mb": rss0,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdir")
    sub = p.add_subparsers(dest="kind", required=True)
    q = sub.add_parser("infer")
    q.add_argument("engine", choices=sorted(RUNNERS))
    q.add_argument("model", choices=C.MODELS)
    q.add_argument("batch", type=int)
    q.add_argument("--profile", default="exact")
    q.add_argument("--warmup", type=int, default=1)
    q.add_argument("--reps", type=int, default=5)
    q.add_argument("--budget", type=float, default=10.0)
    q.add_argument("--save-out", default="")
    c = sub.add_parser("calib")
    c.add_argument("engine", choices=("refquant", "ort"))
    c.add_argument("method", choices=("minmax", "entropy", "percentile"))
    c.add_argument("--images", type=int, default=500)
    c.add_argument("--batch", type=int, default=25)
    c.add_argument("--stride", type=int, default=0)
    e = sub.add_parser("e2e")
    e.add_argument("engine", choices=("refquant", "ort"))
    e.add_argument("model", choices=C.MODELS)
    e.add_argument("--profile", default="onnxruntime")
    args = p.parse_args(argv)
    work = C.Work(args.workdir)
    result = {"infer": infer, "calib": calib, "e2e": e2e}[args.kind](work, args)
    emit(result)


if __name__ == "__main__":
    main()
