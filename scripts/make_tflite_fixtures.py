"""Write the single-op int8 .tflite fixtures for tests/peers/test_tflite_fixtures.py.

Each model holds exactly one builtin operator. The flatbuffers are written with
the object API of TensorFlow's ``tensorflow/lite/python/schema_py_generated.py``
(loaded by file path, so TensorFlow itself is never initialised), which keeps
every scale, zero point, weight and bias exactly as chosen here. Inputs are
chosen to land on rounding ties: power-of-two requantization multipliers,
sweeps over every int8 code, sums that end in .5, and the discrepancy rows of
integer_semantics.md section 6.

Outputs (under tests/fixtures/tflite/):

* ``<name>.tflite``: the model.
* ``<name>.npz``: ``input_<i>`` for every graph input and ``expected_0``, the
  output of TensorFlow's own interpreter with ``OpResolverType.BUILTIN_REF``
  at generation time (a frozen copy; the test re-runs LiteRT live).
* ``manifest.json``: per fixture the op, the options refquant needs that are
  not tensor data (strides, padding, activation, axes, ...) and the versions
  used to generate it.

Run (tensorflow-cpu lives in its own venv, never in the main environment)::

    python -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow-cpu numpy
    /work/tfvenv/bin/python scripts/make_tflite_fixtures.py

Generated with tensorflow-cpu 2.21.0, flatbuffers 25.x, numpy 2.x. The script is
deterministic (fixed seeds), so re-running it rewrites identical files.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "tests" / "fixtures" / "tflite"


def _load_schema():
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("tensorflow is not installed in this interpreter; see the docstring")
    base = Path(next(iter(spec.submodule_search_locations)))
    path = base / "lite" / "python" / "schema_py_generated.py"
    module_spec = importlib.util.spec_from_file_location("tflite_schema", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


S = _load_schema()
import flatbuffers  # noqa: E402  (installed with tensorflow)

f32 = np.float32
TENSOR_TYPE = {
    np.dtype(np.int8): S.TensorType.INT8,
    np.dtype(np.uint8): S.TensorType.UINT8,
    np.dtype(np.int16): S.TensorType.INT16,
    np.dtype(np.int32): S.TensorType.INT32,
    np.dtype(np.int64): S.TensorType.INT64,
    np.dtype(np.float32): S.TensorType.FLOAT32,
}
ACT = {
    None: S.ActivationFunctionType.NONE,
    "relu": S.ActivationFunctionType.RELU,
    "relu6": S.ActivationFunctionType.RELU6,
    "relu_n1_to_1": S.ActivationFunctionType.RELU_N1_TO_1,
}
PAD = {"same": S.Padding.SAME, "valid": S.Padding.VALID}


class ModelBuilder:
    """Collect tensors, buffers and one operator; pack them into a flatbuffer."""

    def __init__(self):
        self.buffers = [S.BufferT()]  # buffer 0: the empty sentinel
        self.tensors = []
        self.inputs = []
        self.outputs = []
        self.operator = None
        self.opcode = None

    def tensor(
        self, name, shape, dtype, scale=None, zero_point=None, *, axis=0, data=None
    ):
        t = S.TensorT()
        t.name = name
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = TENSOR_TYPE[np.dtype(dtype)]
        if scale is not None:
            q = S.QuantizationParametersT()
            q.scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
            q.zeroPoint = np.atleast_1d(np.asarray(zero_point, dtype=np.int64))
            q.quantizedDimension = axis
            t.quantization = q
        if data is not None:
            data = np.ascontiguousarray(np.asarray(data, dtype=dtype))
            if data.shape != tuple(shape):
                raise ValueError(f"{name}: data shape {data.shape} != {shape}")
            buf = S.BufferT()
            buf.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        return len(self.tensors) - 1

    def input(self, *args, **kwargs):
        index = self.tensor(*args, **kwargs)
        self.inputs.append(index)
        return index

    def output(self, *args, **kwargs):
        index = self.tensor(*args, **kwargs)
        self.outputs.append(index)
        return index

    def op(self, code, inputs, outputs, options_type=0, options=None, version=1):
        self.opcode = S.OperatorCodeT()
        self.opcode.builtinCode = code
        self.opcode.deprecatedBuiltinCode = min(code, 127)
        self.opcode.version = version
        op = S.OperatorT()
        op.opcodeIndex = 0
        op.inputs = np.asarray(inputs, dtype=np.int32)
        op.outputs = np.asarray(outputs, dtype=np.int32)
        op.builtinOptionsType = options_type
        op.builtinOptions = options
        self.operator = op

    def to_bytes(self):
        sub = S.SubGraphT()
        sub.tensors = self.tensors
        sub.inputs = np.asarray(self.inputs, dtype=np.int32)
        sub.outputs = np.asarray(self.outputs, dtype=np.int32)
        sub.operators = [self.operator]
        sub.name = "main"
        model = S.ModelT()
        model.version = 3
        model.operatorCodes = [self.opcode]
        model.subgraphs = [sub]
        model.buffers = self.buffers
        model.description = "refquant single-op fixture"
        builder = flatbuffers.Builder(4096)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


# ----------------------------------------------------------------------------------
# helpers for qparams and data


def bias_scales(s_in, s_w):
    """Bias scale per channel as TFLite stores it: f32(s_in * s_w[c])."""
    s_w64 = np.asarray(s_w, dtype=f32).astype(np.float64)
    return (np.float64(f32(s_in)) * s_w64).astype(f32)


def int8_sweep(shape, rng, *, low=-128, high=127):
    """Every code in [low, high] once (cycled), then shuffled, reshaped to shape."""
    n = int(np.prod(shape))
    codes = np.resize(np.arange(low, high + 1), n)
    rng.shuffle(codes)
    return codes.reshape(shape).astype(np.int8)


def rand_int8(shape, rng, low=-128, high=127):
    return rng.integers(low, high + 1, size=shape).astype(np.int8)


# ----------------------------------------------------------------------------------
# fixture definitions: each returns (builder, inputs list, options dict)


def conv2d_fixture(
    name,
    x,
    s_in,
    zp_in,
    w,
    s_w,
    bias,
    s_out,
    zp_out,
    *,
    strides,
    padding,
    dilations=(1, 1),
    activation=None,
    w_zp=None,
    version=3,
):
    mb = ModelBuilder()
    n, h, wd, _ = x.shape
    c_out, kh, kw, _ = w.shape
    oh, ow = out_hw(h, wd, kh, kw, strides, dilations, padding)
    s_w = np.atleast_1d(np.asarray(s_w, dtype=f32))
    w_zp = np.zeros(s_w.size) if w_zp is None else np.atleast_1d(w_zp)
    xi = mb.input("x", x.shape, x.dtype, s_in, zp_in)
    wi = mb.tensor("w", w.shape, w.dtype, s_w, w_zp, axis=0, data=w)
    bi = mb.tensor(
        "bias",
        (c_out,),
        bias.dtype,
        bias_scales(s_in, s_w),
        np.zeros(s_w.size),
        axis=0,
        data=bias,
    )
    yi = mb.output("y", (n, oh, ow, c_out), x.dtype, s_out, zp_out)
    opts = S.Conv2DOptionsT()
    opts.padding = PAD[padding]
    opts.strideH, opts.strideW = strides
    opts.dilationHFactor, opts.dilationWFactor = dilations
    opts.fusedActivationFunction = ACT[activation]
    mb.op(
        S.BuiltinOperator.CONV_2D,
        [xi, wi, bi],
        [yi],
        S.BuiltinOptions.Conv2DOptions,
        opts,
        version=version,
    )
    options = dict(
        strides=list(strides),
        dilations=list(dilations),
        padding=padding,
        activation=activation,
    )
    return name, "CONV_2D", mb, [x], options


def depthwise_fixture(
    name,
    x,
    s_in,
    zp_in,
    w,
    s_w,
    bias,
    s_out,
    zp_out,
    *,
    depth_multiplier,
    strides,
    padding,
    dilations=(1, 1),
    activation=None,
    version=3,
):
    mb = ModelBuilder()
    n, h, wd, _ = x.shape
    _, kh, kw, c_out = w.shape
    oh, ow = out_hw(h, wd, kh, kw, strides, dilations, padding)
    xi = mb.input("x", x.shape, x.dtype, s_in, zp_in)
    wi = mb.tensor("w", w.shape, np.int8, s_w, np.zeros(c_out), axis=3, data=w)
    bi = mb.tensor(
        "bias",
        (c_out,),
        bias.dtype,
        bias_scales(s_in, s_w),
        np.zeros(c_out),
        axis=0,
        data=bias,
    )
    yi = mb.output("y", (n, oh, ow, c_out), x.dtype, s_out, zp_out)
    opts = S.DepthwiseConv2DOptionsT()
    opts.padding = PAD[padding]
    opts.strideH, opts.strideW = strides
    opts.dilationHFactor, opts.dilationWFactor = dilations
    opts.depthMultiplier = depth_multiplier
    opts.fusedActivationFunction = ACT[activation]
    mb.op(
        S.BuiltinOperator.DEPTHWISE_CONV_2D,
        [xi, wi, bi],
        [yi],
        S.BuiltinOptions.DepthwiseConv2DOptions,
        opts,
        version=version,
    )
    options = dict(
        strides=list(strides),
        dilations=list(dilations),
        padding=padding,
        activation=activation,
        depth_multiplier=depth_multiplier,
    )
    return name, "DEPTHWISE_CONV_2D", mb, [x], options


def fully_connected_fixture(
    name,
    x,
    s_in,
    zp_in,
    w,
    s_w,
    bias,
    s_out,
    zp_out,
    *,
    activation=None,
    w_zp=None,
    version=4,
):
    mb = ModelBuilder()
    c_out = w.shape[0]
    s_w = np.atleast_1d(np.asarray(s_w, dtype=f32))
    w_zp = np.zeros(s_w.size) if w_zp is None else np.atleast_1d(w_zp)
    xi = mb.input("x", x.shape, x.dtype, s_in, zp_in)
    wi = mb.tensor("w", w.shape, w.dtype, s_w, w_zp, axis=0, data=w)
    bi = mb.tensor(
        "bias",
        (c_out,),
        bias.dtype,
        bias_scales(s_in, s_w),
        np.zeros(s_w.size),
        axis=0,
        data=bias,
    )
    yi = mb.output("y", (x.shape[0], c_out), x.dtype, s_out, zp_out)
    opts = S.FullyConnectedOptionsT()
    opts.fusedActivationFunction = ACT[activation]
    mb.op(
        S.BuiltinOperator.FULLY_CONNECTED,
        [xi, wi, bi],
        [yi],
        S.BuiltinOptions.FullyConnectedOptions,
        opts,
        version=version,
    )
    return name, "FULLY_CONNECTED", mb, [x], dict(activation=activation)


def binary_fixture(
    name, op, a, qa, b, qb, qy, *, activation=None, pot_scale_int16=None, version=2
):
    mb = ModelBuilder()
    ai = mb.input("a", a.shape, a.dtype, *qa)
    bi = mb.input("b", b.shape, b.dtype, *qb)
    y_shape = np.broadcast_shapes(a.shape, b.shape)
    yi = mb.output("y", y_shape, a.dtype, *qy)
    if op == "ADD":
        opts, kind = S.AddOptionsT(), S.BuiltinOptions.AddOptions
        if pot_scale_int16 is not None:
            opts.potScaleInt16 = pot_scale_int16
    else:
        opts, kind = S.MulOptionsT(), S.BuiltinOptions.MulOptions
    code = getattr(S.BuiltinOperator, op)
    opts.fusedActivationFunction = ACT[activation]
    mb.op(code, [ai, bi], [yi], kind, opts, version=version)
    options = dict(activation=activation)
    if pot_scale_int16 is not None:
        options["pot_scale_int16"] = pot_scale_int16
    return name, op, mb, [a, b], options


def pool_fixture(
    name, op, x, q, *, pool_size, strides, padding, activation=None, version=2
):
    mb = ModelBuilder()
    n, h, w, c = x.shape
    oh, ow = out_hw(h, w, pool_size[0], pool_size[1], strides, (1, 1), padding)
    xi = mb.input("x", x.shape, x.dtype, *q)
    yi = mb.output("y", (n, oh, ow, c), x.dtype, *q)
    opts = S.Pool2DOptionsT()
    opts.padding = PAD[padding]
    opts.strideH, opts.strideW = strides
    opts.filterHeight, opts.filterWidth = pool_size
    opts.fusedActivationFunction = ACT[activation]
    code = getattr(S.BuiltinOperator, op)
    mb.op(code, [xi], [yi], S.BuiltinOptions.Pool2DOptions, opts, version=version)
    options = dict(
        pool_size=list(pool_size),
        strides=list(strides),
        padding=padding,
        activation=activation,
    )
    return name, op, mb, [x], options


def mean_fixture(name, x, q_in, q_out, *, axes, keepdims):
    mb = ModelBuilder()
    xi = mb.input("x", x.shape, np.int8, *q_in)
    axes_arr = np.asarray(axes, dtype=np.int32)
    ai = mb.tensor("axes", axes_arr.shape, np.int32, data=axes_arr)
    y_shape = [1 if i in axes else d for i, d in enumerate(x.shape)]
    if not keepdims:
        y_shape = [d for i, d in enumerate(x.shape) if i not in axes]
    yi = mb.output("y", y_shape, np.int8, *q_out)
    opts = S.ReducerOptionsT()
    opts.keepDims = keepdims
    mb.op(
        S.BuiltinOperator.MEAN,
        [xi, ai],
        [yi],
        S.BuiltinOptions.ReducerOptions,
        opts,
        version=2,
    )
    return name, "MEAN", mb, [x], dict(axes=list(axes), keepdims=keepdims)


def unary_fixture(
    name,
    op,
    x,
    q_in,
    q_out,
    *,
    options_type=0,
    opts=None,
    options=None,
    version=2,
    out_dtype=np.int8,
    in_dtype=np.int8,
):
    mb = ModelBuilder()
    xi = mb.input("x", x.shape, in_dtype, *(q_in or (None, None)))
    yi = mb.output("y", x.shape, out_dtype, *(q_out or (None, None)))
    code = getattr(S.BuiltinOperator, op)
    mb.op(code, [xi], [yi], options_type, opts, version=version)
    return name, op, mb, [x], options or {}


def concat_fixture(name, xs, q, *, axis, q_inputs=None):
    """q: output qparams; q_inputs: one (scale, zp) per input (default: q)."""
    mb = ModelBuilder()
    q_inputs = [q] * len(xs) if q_inputs is None else q_inputs
    ins = [
        mb.input(f"x{i}", x.shape, x.dtype, *qi)
        for i, (x, qi) in enumerate(zip(xs, q_inputs))
    ]
    y_shape = list(xs[0].shape)
    y_shape[axis] = sum(x.shape[axis] for x in xs)
    yi = mb.output("y", y_shape, xs[0].dtype, *q)
    opts = S.ConcatenationOptionsT()
    opts.axis = axis
    mb.op(
        S.BuiltinOperator.CONCATENATION,
        ins,
        [yi],
        S.BuiltinOptions.ConcatenationOptions,
        opts,
        version=2,
    )
    return name, "CONCATENATION", mb, list(xs), dict(axis=axis)


def pad_fixture(name, x, q, paddings):
    mb = ModelBuilder()
    xi = mb.input("x", x.shape, np.int8, *q)
    p = np.asarray(paddings, dtype=np.int32)
    pi = mb.tensor("paddings", p.shape, np.int32, data=p)
    y_shape = [d + int(lo) + int(hi) for d, (lo, hi) in zip(x.shape, p)]
    yi = mb.output("y", y_shape, np.int8, *q)
    mb.op(
        S.BuiltinOperator.PAD,
        [xi, pi],
        [yi],
        S.BuiltinOptions.PadOptions,
        S.PadOptionsT(),
        version=2,
    )
    return name, "PAD", mb, [x], dict(paddings=p.tolist())


def out_hw(h, w, kh, kw, strides, dilations, padding):
    ekh = dilations[0] * (kh - 1) + 1
    ekw = dilations[1] * (kw - 1) + 1
    if padding == "same":
        return -(-h // strides[0]), -(-w // strides[1])
    return (h - ekh) // strides[0] + 1, (w - ekw) // strides[1] + 1


# ----------------------------------------------------------------------------------
# the fixture set


def fixtures():
    rng = np.random.default_rng(20240607)
    out = []

    # CONV_2D 1x1, one input channel, weight +-1 etc.: acc = w * (x - zp) + bias
    # sweeps a range per channel; per-channel multipliers 2^-1 .. 2^-4, 0.3,
    # 1/256 (weight 127), 1.5 (multiplier > 1) and 2^-21 with a bias of 5.5 * 2^21.
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)
    s_w = f32([1.0, 0.5, 0.25, 0.125, 0.6, 0.0078125, 3.0, 2.0**-20])
    w = np.array([1, 1, 1, 1, -1, 127, 1, 1], np.int8).reshape(8, 1, 1, 1)
    bias = np.array([0, 0, 3, -5, 0, 64, 0, 5 * 2**21 + 2**20], np.int32)
    out.append(
        conv2d_fixture(
            "conv2d_1x1_ties",
            x,
            0.5,
            3,
            w,
            s_w,
            bias,
            1.0,
            -5,
            strides=(1, 1),
            padding="valid",
        )
    )

    # CONV_2D 3x3, stride 2, SAME, ReLU6, per-channel, power-of-two and random M.
    x = rand_int8((2, 7, 9, 3), rng)
    w = rand_int8((4, 3, 3, 3), rng, -127, 127)
    s_w = f32([2.0**-9, 0.0021, 2.0**-11, 0.00137])
    bias = rng.integers(-3000, 3000, size=4).astype(np.int32)
    out.append(
        conv2d_fixture(
            "conv2d_3x3_s2_same_relu6",
            x,
            0.0625,
            -10,
            w,
            s_w,
            bias,
            0.0625,
            7,
            strides=(2, 2),
            padding="same",
            activation="relu6",
        )
    )

    # CONV_2D 3x3, dilation 2, VALID, ReLU, grouped (2 groups).
    x = rand_int8((1, 9, 10, 4), rng)
    w = rand_int8((6, 3, 3, 2), rng, -127, 127)
    s_w = f32([2.0**-8, 2.0**-10, 0.0031, 2.0**-9, 0.0052, 2.0**-12])
    bias = rng.integers(-2000, 2000, size=6).astype(np.int32)
    out.append(
        conv2d_fixture(
            "conv2d_3x3_dil2_groups2_relu",
            x,
            0.125,
            5,
            w,
            s_w,
            bias,
            0.5,
            -3,
            strides=(1, 1),
            dilations=(2, 2),
            padding="valid",
            activation="relu",
        )
    )

    # DEPTHWISE_CONV_2D, depth multiplier 2, SAME, stride 1.
    x = rand_int8((1, 8, 8, 4), rng)
    w = rand_int8((1, 3, 3, 8), rng, -127, 127)
    s_w = f32([2.0**-7, 2.0**-8, 0.0071, 2.0**-9, 0.0043, 2.0**-6, 2.0**-10, 0.011])
    bias = rng.integers(-1000, 1000, size=8).astype(np.int32)
    out.append(
        depthwise_fixture(
            "depthwise_dm2_same",
            x,
            0.25,
            -4,
            w,
            s_w,
            bias,
            0.5,
            2,
            depth_multiplier=2,
            strides=(1, 1),
            padding="same",
        )
    )

    # DEPTHWISE_CONV_2D, stride 2, dilation 2, VALID, ReLU6.
    x = rand_int8((2, 11, 9, 3), rng)
    w = rand_int8((1, 3, 3, 3), rng, -127, 127)
    s_w = f32([2.0**-8, 0.0037, 2.0**-9])
    bias = rng.integers(-500, 500, size=3).astype(np.int32)
    out.append(
        depthwise_fixture(
            "depthwise_s2_dil2_relu6",
            x,
            0.0625,
            9,
            w,
            s_w,
            bias,
            0.03125,
            -20,
            depth_multiplier=1,
            strides=(2, 2),
            dilations=(2, 2),
            padding="valid",
            activation="relu6",
        )
    )

    # FULLY_CONNECTED per-tensor, M = 0.25 and row 0 a unit vector so that
    # acc = x[:, 0] - zp + bias[0] sweeps every tie class.
    x = rand_int8((64, 8), rng)
    x[:, 0] = np.arange(-32, 32)
    w = rand_int8((5, 8), rng, -127, 127)
    w[0] = [1, 0, 0, 0, 0, 0, 0, 0]
    bias = np.array([0, 17, -300, 1000, 2], np.int32)
    out.append(
        fully_connected_fixture("fc_per_tensor_ties", x, 0.5, 1, w, 0.5, bias, 1.0, -2)
    )

    # FULLY_CONNECTED per-channel, ReLU.
    x = rand_int8((16, 12), rng)
    w = rand_int8((6, 12), rng, -127, 127)
    s_w = f32([2.0**-7, 0.0029, 2.0**-9, 0.0061, 2.0**-8, 0.0013])
    bias = rng.integers(-4000, 4000, size=6).astype(np.int32)
    out.append(
        fully_connected_fixture(
            "fc_per_channel_relu",
            x,
            0.125,
            -6,
            w,
            s_w,
            bias,
            0.25,
            -9,
            activation="relu",
        )
    )

    # ADD: (0.5, 0) + (0.5, 0) -> (1, 0): every odd sum is a tie; includes
    # the row x1 = 2, x2 = -63 (exact -30.5).
    a = int8_sweep((1, 16, 16, 2), rng)
    b = rand_int8((1, 16, 16, 2), rng)
    a[0, 0, 0, 0], b[0, 0, 0, 0] = 2, -63
    out.append(binary_fixture("add_ties", "ADD", a, (0.5, 0), b, (0.5, 0), (1.0, 0)))
    a = rand_int8((1, 8, 8, 3), rng)
    b = rand_int8((1, 8, 8, 3), rng)
    out.append(
        binary_fixture("add_mixed_scales", "ADD", a, (0.1, 3), b, (0.07, -5), (0.13, 2))
    )
    a = rand_int8((1, 4, 4, 8), rng)
    b = rand_int8((1, 1, 1, 8), rng)
    out.append(
        binary_fixture(
            "add_broadcast_relu",
            "ADD",
            a,
            (0.25, -3),
            b,
            (0.125, 10),
            (0.5, 1),
            activation="relu",
        )
    )

    # MUL: (0.5, 0) x (1, 0) -> (1, 0): odd products are ties at shift 0.
    a = rand_int8((1, 16, 16, 1), rng, -16, 16)
    b = rand_int8((1, 16, 16, 1), rng, -16, 16)
    out.append(binary_fixture("mul_ties", "MUL", a, (0.5, 0), b, (1.0, 0), (1.0, 0)))
    a = rand_int8((1, 8, 8, 3), rng)
    b = rand_int8((1, 8, 8, 3), rng)
    out.append(
        binary_fixture("mul_mixed_scales", "MUL", a, (0.05, -4), b, (0.2, 7), (0.3, -2))
    )

    # AVERAGE_POOL_2D: small values so 2x2 sums often end in .5 / .25.
    x = rand_int8((1, 8, 8, 4), rng, -3, 3)
    out.append(
        pool_fixture(
            "avgpool_2x2_ties",
            "AVERAGE_POOL_2D",
            x,
            (0.5, 0),
            pool_size=(2, 2),
            strides=(2, 2),
            padding="valid",
        )
    )
    x = rand_int8((2, 9, 7, 3), rng, -2, 22)
    out.append(
        pool_fixture(
            "avgpool_3x3_s2_same_zp10",
            "AVERAGE_POOL_2D",
            x,
            (0.1, 10),
            pool_size=(3, 3),
            strides=(2, 2),
            padding="same",
        )
    )
    x = rand_int8((1, 6, 6, 2), rng)
    out.append(
        pool_fixture(
            "avgpool_2x3_s1_relu6",
            "AVERAGE_POOL_2D",
            x,
            (0.05, -7),
            pool_size=(2, 3),
            strides=(1, 1),
            padding="valid",
            activation="relu6",
        )
    )

    # MAX_POOL_2D
    x = rand_int8((1, 9, 9, 3), rng)
    out.append(
        pool_fixture(
            "maxpool_3x3_s2_same_relu",
            "MAX_POOL_2D",
            x,
            (0.2, -20),
            pool_size=(3, 3),
            strides=(2, 2),
            padding="same",
            activation="relu",
        )
    )

    # MEAN
    x = rand_int8((1, 5, 5, 16), rng)
    out.append(
        mean_fixture(
            "mean_hw_keepdims", x, (0.05, -7), (0.02, 5), axes=(1, 2), keepdims=True
        )
    )
    x = rand_int8((2, 4, 4, 6), rng, -8, 8)
    out.append(
        mean_fixture("mean_hw_ties", x, (0.5, 0), (0.5, 0), axes=(1, 2), keepdims=False)
    )
    x = rand_int8((1, 3, 4, 10), rng)
    out.append(
        mean_fixture("mean_channels", x, (0.1, 3), (0.07, -1), axes=(3,), keepdims=True)
    )

    # SOFTMAX, output (1/256, -128); first row is the REF / OPT discrepancy row.
    x = rand_int8((32, 10), rng)
    x[0] = [56, 9, 31, -65, 7, -21, -87, 4, -125, 92]
    out.append(softmax_fixture("softmax_s0p1", x, (0.1, 0), beta=1.0))
    x = rand_int8((16, 7), rng)
    out.append(softmax_fixture("softmax_s0p04_zp", x, (0.0390625, -20), beta=1.0))

    # LOGISTIC / TANH over every int8 code.
    every = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    out.append(
        unary_fixture(
            "logistic_s0p0625", "LOGISTIC", every, (0.0625, -3), (1 / 256, -128)
        )
    )
    out.append(
        unary_fixture("logistic_s0p1", "LOGISTIC", every, (0.1, 10), (1 / 256, -128))
    )
    out.append(
        unary_fixture("tanh_s0p03125", "TANH", every, (0.03125, 5), (1 / 128, 0))
    )
    out.append(unary_fixture("tanh_s0p023", "TANH", every, (0.023, -17), (1 / 128, 0)))

    # CONCATENATION (int8 requires equal qparams on every input and the output).
    xs = [rand_int8((1, 4, 4, c), rng) for c in (2, 3, 1)]
    out.append(concat_fixture("concat_channels", xs, (0.1, -3), axis=3))
    xs = [rand_int8((2, h, 3, 2), rng) for h in (1, 4)]
    out.append(concat_fixture("concat_height", xs, (0.3, 11), axis=1))

    # PAD: the pad value is the output zero point.
    x = rand_int8((1, 4, 5, 3), rng)
    out.append(pad_fixture("pad_hw", x, (0.1, -7), [[0, 0], [1, 2], [2, 1], [0, 0]]))

    # QUANTIZE float32 -> int8: exact ties (k + 0.5) * s and the float32
    # division-versus-reciprocal value -0.1155 / 0.001.
    ties = ((np.arange(-40, 41) + 0.5) * 0.25).astype(f32)
    rand = rng.uniform(-20, 20, size=38).astype(f32)
    sat = f32([1000.0, -1000.0, 31.875, 31.9, -32.0, -32.1])
    x = np.concatenate([ties, rand, sat]).reshape(1, -1)
    out.append(
        unary_fixture(
            "quantize_ties",
            "QUANTIZE",
            x,
            None,
            (0.25, -3),
            in_dtype=np.float32,
            version=2,
        )
    )
    x = f32(
        [
            -0.1155,
            0.1155,
            -0.0005,
            0.0005,
            0.0015,
            -0.0025,
            0.1275,
            -0.1285,
            0.127,
            -0.128,
            0.0,
            -0.0,
        ]
    ).reshape(1, -1)
    out.append(
        unary_fixture(
            "quantize_s0p001",
            "QUANTIZE",
            x,
            None,
            (0.001, 0),
            in_dtype=np.float32,
            version=2,
        )
    )
    # QUANTIZE int8 -> int8 (requantize) over every code.
    out.append(
        unary_fixture(
            "requantize_half", "QUANTIZE", every, (0.5, 1), (1.0, -2), version=2
        )
    )
    out.append(
        unary_fixture(
            "requantize_mixed", "QUANTIZE", every, (0.05, -4), (0.07, 3), version=2
        )
    )

    # DEQUANTIZE int8 -> float32 over every code.
    out.append(
        unary_fixture(
            "dequantize",
            "DEQUANTIZE",
            every,
            (0.0373, -11),
            None,
            out_dtype=np.float32,
            version=2,
        )
    )
    out += fixtures_16x8(np.random.default_rng(20261204))
    out += fixtures_uint8(np.random.default_rng(20261205))
    out += fixtures_discrepancy_rows()
    return out


def fixtures_discrepancy_rows():
    """The tiny inputs of integer_semantics.md section 6, one model per op."""
    out = []
    # D1 / D2: QUANTIZE x = +-2.5, s = 1, zp = 0 -> +-3 (ties away).
    x = f32([2.5, -2.5]).reshape(1, 2)
    out.append(
        unary_fixture(
            "d_quantize_ties", "QUANTIZE", x, None, (1.0, 0), in_dtype=np.float32
        )
    )
    # D15 / D16: QUANTIZE with scale 0 and with the subnormal scale 1e-45.
    x = f32([0.0, 1.0, -1.0, 0.5]).reshape(1, 4)
    out.append(
        unary_fixture(
            "d_quantize_scale0", "QUANTIZE", x, None, (0.0, 0), in_dtype=np.float32
        )
    )
    x = f32([0.0, 1.0, -1.0, 1e-45]).reshape(1, 4)
    out.append(
        unary_fixture(
            "d_quantize_subnormal_scale",
            "QUANTIZE",
            x,
            None,
            (1e-45, 0),
            in_dtype=np.float32,
        )
    )
    # D4, D5, D6, D8, D12: CONV_2D 1x1 with x = zp so that acc = bias; one
    # output channel per row, s_in = s_out = 1 so M = s_w[c].
    s_w = f32([0.25, 0.0625, 0.125, 0.5, 2.0**-26])
    bias = np.array([-2, 7, -5, -3, 2**25 + 1], np.int32)
    w = np.ones((5, 1, 1, 1), np.int8)
    x = np.full((1, 1, 1, 1), 4, np.int8)
    out.append(
        conv2d_fixture(
            "d_conv2d_rows",
            x,
            1.0,
            4,
            w,
            s_w,
            bias,
            1.0,
            0,
            strides=(1, 1),
            padding="valid",
        )
    )
    # D7: FULLY_CONNECTED M = 0.25, acc = -2 and 1 -> REF -1 and 0.
    x = np.array([[-2], [1]], np.int8)
    w = np.ones((1, 1), np.int8)
    out.append(
        fully_connected_fixture(
            "d_fc_rows", x, 0.5, 0, w, 0.5, np.zeros(1, np.int32), 1.0, 0
        )
    )
    # D11: AVERAGE_POOL_2D zp 10, window (10, 11, 10, 11): mean 10.5 -> 11.
    x = np.array([10, 11, 10, 11], np.int8).reshape(1, 2, 2, 1)
    out.append(
        pool_fixture(
            "d_avgpool_zp10",
            "AVERAGE_POOL_2D",
            x,
            (0.1, 10),
            pool_size=(2, 2),
            strides=(2, 2),
            padding="valid",
        )
    )
    return out


def rand_int16(shape, rng, low=-32768, high=32767):
    return rng.integers(low, high + 1, size=shape).astype(np.int16)


def int16_spread(n):
    """n int16 codes spread over the whole range, every residue mod 16 present."""
    base = np.linspace(-32768, 32767 - 15, n).astype(np.int64) // 16 * 16
    return (base + np.arange(n) % 16).astype(np.int16)


def fixtures_16x8(rng):
    """int16 activations (zero point 0), int8 per-channel weights, int64 bias.

    The 16x8 kernels requantize with the int64 multiply of integer_semantics.md
    section 2.5: the int32 multiplier is first rounded to 16 bits (half up),
    then ``(acc * m16 + 2^(t-1)) >> t`` (ties up). Power-of-two multipliers put
    odd multiples of 2^(k-1) on ties; a weight scale of (1 + 2^-15) * 2^-j
    makes the low 16 bits of the multiplier exactly 0x8000 (a tie of the
    multiplier rounding itself).
    """
    i16, i64 = np.int16, np.int64
    out = []

    # CONV_2D 1x1, acc = w * x + bias: x sweeps -128..127 (every tie class of
    # M = 2^-1 .. 2^-4) and a few extreme codes (saturation, large products).
    x = np.arange(-128, 128).astype(i16)
    x[[0, 1, 2, 3, 255]] = [-32768, -32767, 32767, 16387, 16383]
    x = x.reshape(1, 16, 16, 1)
    s_w = f32(
        [1.0, 0.5, 0.25, 0.125, (1 + 2.0**-15) * 0.25, 0.6, 6.0, 2.0**-29, 2.0**-6]
    )
    w = np.array([1, 1, -1, 1, 1, 1, 1, 1, 127], np.int8).reshape(9, 1, 1, 1)
    bias = np.array([0, 0, 3, -5, 0, 0, 0, 2**40 + 2**29, -(2**20) - 1], i64)
    out.append(
        conv2d_fixture(
            "conv2d_16x8_1x1_ties",
            x,
            0.5,
            0,
            w,
            s_w,
            bias,
            1.0,
            0,
            strides=(1, 1),
            padding="valid",
            version=4,
        )
    )

    # CONV_2D 3x3 stride 2 SAME ReLU6, random codes over the int16 range.
    x = rand_int16((2, 7, 9, 3), rng)
    w = rand_int8((4, 3, 3, 3), rng, -127, 127)
    s_w = f32([2.0**-9, 0.0021, 2.0**-11, 0.00137])
    bias = rng.integers(-(2**33), 2**33, size=4).astype(i64)
    out.append(
        conv2d_fixture(
            "conv2d_16x8_3x3_s2_same_relu6",
            x,
            2.0**-10,
            0,
            w,
            s_w,
            bias,
            2.0**-12,
            0,
            strides=(2, 2),
            padding="same",
            activation="relu6",
            version=4,
        )
    )

    # CONV_2D 3x3 dilation 2 VALID ReLU, small codes (ties of M = 2^-2, 2^-3).
    x = rand_int16((1, 9, 10, 2), rng, -40, 40)
    w = rand_int8((3, 3, 3, 2), rng, -3, 3)
    s_w = f32([2.0**-2, 2.0**-3, 0.37])
    bias = np.array([1, -2, 7], i64)
    out.append(
        conv2d_fixture(
            "conv2d_16x8_3x3_dil2_ties_relu",
            x,
            1.0,
            0,
            w,
            s_w,
            bias,
            1.0,
            0,
            strides=(1, 1),
            dilations=(2, 2),
            padding="valid",
            activation="relu",
            version=4,
        )
    )

    # DEPTHWISE_CONV_2D, depth multiplier 2, SAME: small codes, M = 2^-k ties.
    x = rand_int16((1, 8, 8, 3), rng, -60, 60)
    w = rand_int8((1, 3, 3, 6), rng, -4, 4)
    s_w = f32([2.0**-1, 2.0**-2, 2.0**-3, (1 + 2.0**-15) * 2.0**-2, 0.3, 2.0**-4])
    bias = np.array([0, 1, -1, 2, 0, -3], i64)
    out.append(
        depthwise_fixture(
            "depthwise_16x8_dm2_ties",
            x,
            1.0,
            0,
            w,
            s_w,
            bias,
            1.0,
            0,
            depth_multiplier=2,
            strides=(1, 1),
            padding="same",
            version=5,
        )
    )
    # DEPTHWISE_CONV_2D stride 2 dilation 2 VALID ReLU6, full-range codes.
    x = rand_int16((2, 11, 9, 3), rng)
    w = rand_int8((1, 3, 3, 3), rng, -127, 127)
    s_w = f32([2.0**-8, 0.0037, 2.0**-9])
    bias = rng.integers(-(2**30), 2**30, size=3).astype(i64)
    out.append(
        depthwise_fixture(
            "depthwise_16x8_s2_dil2_relu6",
            x,
            2.0**-11,
            0,
            w,
            s_w,
            bias,
            2.0**-11,
            0,
            depth_multiplier=1,
            strides=(2, 2),
            dilations=(2, 2),
            padding="valid",
            activation="relu6",
            version=5,
        )
    )

    # FULLY_CONNECTED per-channel: row 0 of w is a unit vector, so channel 0's
    # acc = x[:, 0] + bias sweeps every tie class of M = 2^-2.
    x = rand_int16((64, 8), rng)
    x[:, 0] = np.arange(-32, 32)
    w = rand_int8((5, 8), rng, -127, 127)
    w[0] = [1, 0, 0, 0, 0, 0, 0, 0]
    s_w = f32([0.5, 2.0**-20, (1 + 2.0**-15) * 2.0**-18, 0.00071, 2.0**-17])
    bias = np.array([0, 2**35 + 2**19, -17, 2**31, -(2**36)], i64)
    out.append(
        fully_connected_fixture(
            "fc_16x8_per_channel_ties",
            x,
            0.5,
            0,
            w,
            s_w,
            bias,
            1.0,
            0,
            version=7,
        )
    )
    # FULLY_CONNECTED per-tensor, ReLU.
    x = rand_int16((16, 12), rng)
    w = rand_int8((6, 12), rng, -127, 127)
    bias = rng.integers(-(2**32), 2**32, size=6).astype(i64)
    out.append(
        fully_connected_fixture(
            "fc_16x8_per_tensor_relu",
            x,
            2.0**-9,
            0,
            w,
            0.0029,
            bias,
            2.0**-7,
            0,
            activation="relu",
            version=7,
        )
    )

    # ADD int16, general-scale path (pot_scale_int16 = false): (0.5) + (0.5)
    # -> (1.0) makes every odd sum a tie; then random scales; then the
    # power-of-two shift-only path (pot_scale_int16 = true).
    a = int16_spread(512).reshape(1, 16, 16, 2)
    b = rand_int16((1, 16, 16, 2), rng, -200, 200)
    a[0, 0, 0, 0], b[0, 0, 0, 0] = 2, -63
    b[0, 0, 0, 1] = 32767
    a[0, 0, 0, 1] = 32767
    out.append(
        binary_fixture(
            "add_16x8_ties",
            "ADD",
            a,
            (0.5, 0),
            b,
            (0.5, 0),
            (1.0, 0),
            pot_scale_int16=False,
            version=3,
        )
    )
    a = rand_int16((1, 8, 8, 3), rng)
    b = rand_int16((1, 8, 8, 3), rng)
    out.append(
        binary_fixture(
            "add_16x8_mixed_scales",
            "ADD",
            a,
            (0.0001, 0),
            b,
            (0.00007, 0),
            (0.00013, 0),
            pot_scale_int16=False,
            activation="relu",
            version=3,
        )
    )
    a = rand_int16((1, 8, 8, 4), rng)
    b = rand_int16((1, 8, 8, 4), rng)
    a[0, 0, 0, :] = [1, 2, 3, -1]
    b[0, 0, 0, :] = [-3, -2, -6, -2]
    out.append(
        binary_fixture(
            "add_16x8_pot",
            "ADD",
            a,
            (2.0**-10, 0),
            b,
            (2.0**-12, 0),
            (2.0**-10, 0),
            pot_scale_int16=True,
            version=3,
        )
    )

    # MUL int16: (0.5) x (1.0) -> (1.0), odd products are ties; random scales.
    a = rand_int16((1, 16, 16, 1), rng, -200, 200)
    b = rand_int16((1, 16, 16, 1), rng, -200, 200)
    out.append(
        binary_fixture(
            "mul_16x8_ties", "MUL", a, (0.5, 0), b, (1.0, 0), (1.0, 0), version=4
        )
    )
    a = rand_int16((1, 8, 8, 3), rng)
    b = rand_int16((1, 8, 8, 3), rng)
    out.append(
        binary_fixture(
            "mul_16x8_mixed_scales",
            "MUL",
            a,
            (0.0005, 0),
            b,
            (0.0002, 0),
            (0.003, 0),
            version=4,
        )
    )

    # AVERAGE_POOL_2D int16: small codes so window sums end in .5 / .25.
    x = rand_int16((1, 8, 8, 4), rng, -3, 3)
    out.append(
        pool_fixture(
            "avgpool_16x8_2x2_ties",
            "AVERAGE_POOL_2D",
            x,
            (0.5, 0),
            pool_size=(2, 2),
            strides=(2, 2),
            padding="valid",
            version=3,
        )
    )
    x = rand_int16((2, 9, 7, 3), rng)
    out.append(
        pool_fixture(
            "avgpool_16x8_3x3_s2_same_relu6",
            "AVERAGE_POOL_2D",
            x,
            (0.001, 0),
            pool_size=(3, 3),
            strides=(2, 2),
            padding="same",
            activation="relu6",
            version=3,
        )
    )

    # SOFTMAX int16 -> int16, output (1/32768, 0).
    x = rand_int16((16, 10), rng, -3000, 3000)
    out.append(
        softmax_fixture(
            "softmax_16x8", x, (0.001, 0), beta=1.0, q_out=(1 / 32768, 0), version=3
        )
    )

    # LOGISTIC / TANH int16: input zp 0, output scale 2^-15; a power-of-two
    # input scale (shift-only path) and a general one (multiplier path).
    spread = int16_spread(4096).reshape(1, 4096)
    for op, stem in (("LOGISTIC", "logistic"), ("TANH", "tanh")):
        out.append(
            unary_fixture(
                f"{stem}_16x8_pot",
                op,
                spread,
                (2.0**-12, 0),
                (2.0**-15, 0),
                version=3,
                in_dtype=i16,
                out_dtype=i16,
            )
        )
        out.append(
            unary_fixture(
                f"{stem}_16x8_s0p0003",
                op,
                spread,
                (0.0003, 0),
                (2.0**-15, 0),
                version=3,
                in_dtype=i16,
                out_dtype=i16,
            )
        )

    # QUANTIZE float32 -> int16: exact ties (k + 0.5) * s and saturation.
    ties = ((np.arange(-40, 41) + 0.5) * 2.0**-8).astype(f32)
    rand = rng.uniform(-100, 100, size=40).astype(f32)
    sat = f32([1000.0, -1000.0, 127.998, 128.0, -128.0, -128.01, -0.1155])
    x = np.concatenate([ties, rand, sat]).reshape(1, -1)
    out.append(
        unary_fixture(
            "quantize_16x8_ties",
            "QUANTIZE",
            x,
            None,
            (2.0**-8, 0),
            in_dtype=np.float32,
            out_dtype=i16,
            version=3,
        )
    )
    # QUANTIZE int16 -> int16 and int16 -> int8 (requantize), ties at M = 1/2.
    out.append(
        unary_fixture(
            "requantize_16x8_half",
            "QUANTIZE",
            spread,
            (0.5, 0),
            (1.0, 0),
            in_dtype=i16,
            out_dtype=i16,
            version=3,
        )
    )
    x16 = np.arange(-600, 600, 3).astype(i16).reshape(1, -1)
    out.append(
        unary_fixture(
            "requantize_16_to_8",
            "QUANTIZE",
            x16,
            (0.25, 0),
            (1.0, -3),
            in_dtype=i16,
            out_dtype=np.int8,
            version=3,
        )
    )
    # DEQUANTIZE int16 -> float32.
    out.append(
        unary_fixture(
            "dequantize_16x8",
            "DEQUANTIZE",
            spread,
            (0.000371, 0),
            None,
            in_dtype=i16,
            out_dtype=np.float32,
            version=4,
        )
    )
    return out


def fixtures_uint8(rng):
    """uint8 activations: asymmetric uint8 weights, per-tensor, and the rescaling
    ADD / CONCATENATION paths (differing input scales)."""
    u8 = np.uint8
    out = []

    def rand_u8(shape, low=0, high=255):
        return rng.integers(low, high + 1, size=shape).astype(u8)

    # CONV_2D 1x1, w = zp + 1 on a unit input channel: acc = x - zp_x + bias
    # sweeps every tie class of M = 2^-2; the other channel is random.
    x = np.zeros((1, 16, 16, 2), u8)
    x[..., 0] = np.arange(256).reshape(16, 16)
    x[..., 1] = rand_u8((16, 16))
    w = np.array([[131, 130], [200, 17]], u8).reshape(2, 1, 1, 2)
    w[0, 0, 0, 1] = 130  # channel 0: weight zp 130 on input 1 -> contributes 0
    bias = np.array([1, -700], np.int32)
    out.append(
        conv2d_fixture(
            "conv2d_uint8_1x1_ties",
            x,
            0.5,
            128,
            w,
            f32(0.5),
            bias,
            1.0,
            120,
            strides=(1, 1),
            padding="valid",
            w_zp=130,
            version=1,
        )
    )
    # CONV_2D 3x3 stride 2 SAME ReLU6, random.
    x = rand_u8((1, 7, 9, 3))
    w = rand_u8((4, 3, 3, 3))
    bias = rng.integers(-3000, 3000, size=4).astype(np.int32)
    out.append(
        conv2d_fixture(
            "conv2d_uint8_3x3_s2_same_relu6",
            x,
            0.0625,
            100,
            w,
            f32(0.0021),
            bias,
            0.0625,
            7,
            strides=(2, 2),
            padding="same",
            activation="relu6",
            w_zp=119,
            version=1,
        )
    )

    # FULLY_CONNECTED: row 0 = zp + unit vector, acc = x[:, 0] - zp_x + bias.
    x = rand_u8((64, 8))
    x[:, 0] = np.arange(100, 164)
    w = rand_u8((5, 8))
    w[0] = [141] + [140] * 7
    bias = np.array([0, 17, -300, 1000, 2], np.int32)
    out.append(
        fully_connected_fixture(
            "fc_uint8_ties",
            x,
            0.5,
            131,
            w,
            f32(0.5),
            bias,
            1.0,
            127,
            w_zp=140,
            version=1,
        )
    )

    # ADD uint8: ties, and differing scales with ReLU.
    a = np.resize(np.arange(256), 512).astype(u8).reshape(1, 16, 16, 2)
    b = rand_u8((1, 16, 16, 2))
    out.append(
        binary_fixture(
            "add_uint8_ties", "ADD", a, (0.5, 128), b, (0.5, 128), (1.0, 128)
        )
    )
    a = rand_u8((1, 8, 8, 3))
    b = rand_u8((1, 8, 8, 3))
    out.append(
        binary_fixture(
            "add_uint8_mixed_scales",
            "ADD",
            a,
            (0.1, 131),
            b,
            (0.07, 120),
            (0.13, 125),
            activation="relu",
        )
    )

    # CONCATENATION uint8 with differing input qparams (rescaled inputs):
    # scale 1/2 -> 1 puts every odd code on a tie.
    xs = [
        np.arange(256).astype(u8).reshape(1, 4, 4, 16),
        rand_u8((1, 4, 4, 3)),
        rand_u8((1, 4, 4, 2)),
    ]
    q_inputs = [(0.5, 0), (0.37, 140), (1.0, 128)]
    out.append(
        concat_fixture(
            "concat_uint8_rescale", xs, (1.0, 128), axis=3, q_inputs=q_inputs
        )
    )
    return out


def softmax_fixture(name, x, q_in, *, beta, q_out=(1 / 256, -128), version=2):
    opts = S.SoftmaxOptionsT()
    opts.beta = beta
    return unary_fixture(
        name,
        "SOFTMAX",
        x,
        q_in,
        q_out,
        options_type=S.BuiltinOptions.SoftmaxOptions,
        opts=opts,
        options=dict(beta=beta),
        version=version,
        in_dtype=x.dtype,
        out_dtype=x.dtype,
    )


# ----------------------------------------------------------------------------------


def run_reference(model_bytes, inputs):
    """Run TensorFlow's interpreter with the reference kernels; the single output."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
    )
    interp.allocate_tensors()
    for detail, value in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], value)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def _write_atomic(path, data: bytes):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main():
    import tensorflow as tf

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": "scripts/make_tflite_fixtures.py",
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "fixtures": {},
    }
    for name, op, mb, inputs, options in fixtures():
        model_bytes = mb.to_bytes()
        expected = run_reference(model_bytes, inputs)
        _write_atomic(OUT_DIR / f"{name}.tflite", model_bytes)
        arrays = {f"input_{i}": v for i, v in enumerate(inputs)}
        arrays["expected_0"] = expected

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        _write_atomic(OUT_DIR / f"{name}.npz", buf.getvalue())
        manifest["fixtures"][name] = {"op": op, "options": options}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    _write_atomic(OUT_DIR / "manifest.json", text.encode())


if __name__ == "__main__":
    main()
