"""Committed single-op int8 .tflite fixtures: profile ``tflite_reference`` == LiteRT.

LiteRT runs live with the reference kernels (``OpResolverType.BUILTIN_REF``);
every scale, zero point, weight, bias, padding and axis refquant uses is read
back from the interpreter (``get_tensor_details`` / ``get_tensor`` with
``experimental_preserve_all_tensors=True``). The fixtures and their inputs are
written by ``scripts/make_tflite_fixtures.py``; see specs/conformance_peers.md.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
from peer_litert import load_inputs, manifest, run_litert  # noqa: E402

from refquant.errors import InvalidArgumentError  # noqa: E402

pytestmark = pytest.mark.peers

PROFILE = "tflite_reference"
FIXTURES = manifest()["fixtures"]


def kernel_module(name):
    return pytest.importorskip(f"refquant.kernels.{name}")


def kernel(module, function):
    """refquant.kernels.<module>.<function>; skips while it does not exist yet."""
    fn = getattr(kernel_module(module), function, None)
    if fn is None:
        pytest.skip(f"refquant.kernels.{module}.{function} not implemented")
    return fn


def per_channel(info):
    """Weight scales as float64 (exact float32 values); a scalar if per-tensor."""
    s = info.scales.astype(np.float64)
    return float(s[0]) if s.size == 1 else s


def weight_zero_point(info):
    zp = info.zero_points.astype(np.int64)
    return int(zp[0]) if zp.size == 1 else zp


# ----------------------------------------------------------------------------------
# one refquant call per TFLite op; t = tensors by name, o = manifest options


def conv_2d(t, o):
    conv = kernel_module("conv")
    x, w, b, y = t["x"], t["w"], t["bias"], t["y"]
    return conv.conv2d(
        x.data,
        x.scale,
        x.zero_point,
        w.data,
        per_channel(w),
        weight_zero_point(w),
        b.data,
        y.scale,
        y.zero_point,
        strides=tuple(o["strides"]),
        dilations=tuple(o["dilations"]),
        groups=x.shape[3] // w.shape[3],
        padding=o["padding"],
        activation=o["activation"],
        out_dtype=y.dtype,
        profile=PROFILE,
    )


def depthwise_conv_2d(t, o):
    conv = kernel_module("conv")
    x, w, b, y = t["x"], t["w"], t["bias"], t["y"]
    assert w.quantized_dimension == 3
    return conv.depthwise_conv2d(
        x.data,
        x.scale,
        x.zero_point,
        w.data,
        per_channel(w),
        weight_zero_point(w),
        b.data,
        y.scale,
        y.zero_point,
        depth_multiplier=o["depth_multiplier"],
        strides=tuple(o["strides"]),
        dilations=tuple(o["dilations"]),
        padding=o["padding"],
        activation=o["activation"],
        out_dtype=y.dtype,
        profile=PROFILE,
    )


def fully_connected(t, o):
    lin = kernel_module("linear")
    x, w, b, y = t["x"], t["w"], t["bias"], t["y"]
    return lin.fully_connected(
        x.data,
        x.scale,
        x.zero_point,
        w.data,
        per_channel(w),
        weight_zero_point(w),
        b.data,
        y.scale,
        y.zero_point,
        activation=o["activation"],
        out_dtype=y.dtype,
        profile=PROFILE,
    )


def _binary(fn_name):
    def call(t, o):
        ew = kernel_module("elementwise")
        a, b, y = t["a"], t["b"], t["y"]
        extra = {}
        if fn_name == "add":  # AddOptions.pot_scale_int16, schema default true
            extra["pot_scale_int16"] = bool(o.get("pot_scale_int16", True))
        return getattr(ew, fn_name)(
            a.data,
            a.scale,
            a.zero_point,
            b.data,
            b.scale,
            b.zero_point,
            y.scale,
            y.zero_point,
            activation=o["activation"],
            out_dtype=y.dtype,
            profile=PROFILE,
            **extra,
        )

    return call


def average_pool_2d(t, o):
    pool = kernel_module("pooling")
    x, y = t["x"], t["y"]
    return pool.average_pool2d(
        x.data,
        x.scale,
        x.zero_point,
        y.scale,
        y.zero_point,
        pool_size=tuple(o["pool_size"]),
        strides=tuple(o["strides"]),
        padding=o["padding"],
        count_include_pad=False,
        activation=o["activation"],
        out_dtype=y.dtype,
        profile=PROFILE,
    )


def max_pool_2d(t, o):
    pool = kernel_module("pooling")
    act = kernel_module("activations")
    x, y = t["x"], t["y"]
    q = pool.max_pool2d(
        x.data,
        pool_size=tuple(o["pool_size"]),
        strides=tuple(o["strides"]),
        padding=o["padding"],
    )
    return act.clamp_activation(
        q, o["activation"], y.scale, y.zero_point, y.dtype, profile=PROFILE
    )


def mean(t, o):
    red = kernel_module("reduce")
    x, y = t["x"], t["y"]
    assert sorted(t["axes"].data.tolist()) == sorted(o["axes"])
    return red.mean(
        x.data,
        x.scale,
        x.zero_point,
        y.scale,
        y.zero_point,
        axes=tuple(int(a) for a in t["axes"].data),
        keepdims=o["keepdims"],
        out_dtype=y.dtype,
        profile=PROFILE,
    )


def softmax(t, o):
    x, y = t["x"], t["y"]
    return kernel("activations", "softmax")(
        x.data,
        x.scale,
        x.zero_point,
        beta=o["beta"],
        y_scale=y.scale,
        y_zero_point=y.zero_point,
        out_dtype=y.dtype,
        profile=PROFILE,
    )


def _lut(fn_name, fixed):
    """fixed: the fixed output qparams per output dtype name."""

    def call(t, o):
        fn = kernel("activations", fn_name)
        x, y = t["x"], t["y"]
        assert (y.scale, y.zero_point) == fixed[y.dtype.name], "fixed output qparams"
        return fn(x.data, x.scale, x.zero_point, out_dtype=y.dtype, profile=PROFILE)

    return call


def concatenation(t, o):
    lay = kernel_module("layout")
    xs = [t[f"x{i}"] for i in range(sum(1 for k in t if k.startswith("x")))]
    y = t["y"]
    return lay.concatenation(
        [x.data for x in xs],
        [x.scale for x in xs],
        [x.zero_point for x in xs],
        y.scale,
        y.zero_point,
        axis=o["axis"],
        out_dtype=y.dtype,
        profile=PROFILE,
    )


def pad(t, o):
    lay = kernel_module("layout")
    x, y = t["x"], t["y"]
    paddings = t["paddings"].data.astype(np.int64)
    assert paddings.tolist() == o["paddings"]
    # TFLite PAD fills with the output zero point (equal to the input's here).
    return lay.pad(x.data, [tuple(p) for p in paddings.tolist()], y.zero_point)


def quantize(t, o):
    qo = kernel_module("quantize_ops")
    x, y = t["x"], t["y"]
    if x.dtype.kind == "f":
        return qo.quantize_linear(
            x.data, y.scale, y.zero_point, out_dtype=y.dtype, profile=PROFILE
        )
    return qo.requantize(
        x.data,
        x.scale,
        x.zero_point,
        y.scale,
        y.zero_point,
        out_dtype=y.dtype,
        profile=PROFILE,
    )


def dequantize(t, o):
    qo = kernel_module("quantize_ops")
    x = t["x"]
    return qo.dequantize_linear(x.data, x.scale, x.zero_point, profile=PROFILE)


CALLS = {
    "CONV_2D": conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d,
    "FULLY_CONNECTED": fully_connected,
    "ADD": _binary("add"),
    "MUL": _binary("mul"),
    "AVERAGE_POOL_2D": average_pool_2d,
    "MAX_POOL_2D": max_pool_2d,
    "MEAN": mean,
    "SOFTMAX": softmax,
    "LOGISTIC": _lut("logistic", {"int8": (1 / 256, -128), "int16": (2.0**-15, 0)}),
    "TANH": _lut("tanh", {"int8": (1 / 128, 0), "int16": (2.0**-15, 0)}),
    "CONCATENATION": concatenation,
    "PAD": pad,
    "QUANTIZE": quantize,
    "DEQUANTIZE": dequantize,
}

REQUIRED_OPS = set(CALLS)


def test_every_required_op_has_a_fixture():
    assert {f["op"] for f in FIXTURES.values()} == REQUIRED_OPS


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_litert_matches_the_committed_output(name):
    """Guards the fixture set: live LiteRT == TensorFlow's REF output at generation."""
    inputs, frozen = load_inputs(name)
    live = run_litert(name, inputs).output
    assert live.dtype == frozen.dtype and np.array_equal(live, frozen), name


# Fixtures that refquant cannot run yet, each an explicit strict xfail: the
# fixture stays live, and the mark fails the run as soon as refquant changes.
KNOWN_GAPS = {}
for _name in ("d_quantize_scale0", "d_quantize_subnormal_scale"):
    KNOWN_GAPS[_name] = pytest.mark.xfail(
        strict=True,
        raises=InvalidArgumentError,
        reason="refquant refuses output scales that are not normal positive "
        "float32 values, by design (rows D15 / D16)",
    )


def _with_gaps(names):
    return [
        pytest.param(n, marks=KNOWN_GAPS[n]) if n in KNOWN_GAPS else n for n in names
    ]


@pytest.mark.parametrize("name", _with_gaps(sorted(FIXTURES)))
def test_tflite_reference_profile_matches_litert(name):
    spec = FIXTURES[name]
    inputs, _ = load_inputs(name)
    run = run_litert(name, inputs)
    expected = run.output
    got = np.asarray(CALLS[spec["op"]](run.tensors, spec["options"]))
    assert got.shape == expected.shape, (name, got.shape, expected.shape)
    if expected.dtype.kind == "f":
        got = got.astype(expected.dtype)
        bad = np.flatnonzero(got.view(np.uint32) != expected.view(np.uint32))
    else:
        assert got.dtype == expected.dtype, (name, got.dtype, expected.dtype)
        bad = np.flatnonzero(got != expected)
    if bad.size:
        idx = np.unravel_index(bad[0], expected.shape)
        raise AssertionError(
            f"{name}: {bad.size}/{expected.size} outputs differ; first at {idx}: "
            f"refquant {got[idx]!r}, LiteRT {expected[idx]!r}"
        )


def test_litert_reproduces_the_measured_discrepancy_rows():
    """The harness itself: LiteRT BUILTIN_REF gives the values of
    integer_semantics.md section 6 on the committed fixtures."""
    # D1 / D2: quantize ties round half away from zero (x / s = +-2.5, zp -3).
    inputs, _ = load_inputs("quantize_ties")
    x, y = inputs[0].ravel(), run_litert("quantize_ties", inputs).output.ravel()
    for value, code in ((0.625, 3), (-0.625, -3), (0.125, 1), (-0.125, -1)):
        assert int(y[np.flatnonzero(x == np.float32(value))[0]]) + 3 == code
    # D3: -0.1155f / 0.001f is -115.5 in float32 -> -116.
    inputs, _ = load_inputs("quantize_s0p001")
    assert run_litert("quantize_s0p001", inputs).output.ravel()[0] == -116
    # D9: ADD 2 + (-63) at scale 0.5 -> 1.0 is -30.5 -> -31.
    inputs, _ = load_inputs("add_ties")
    assert run_litert("add_ties", inputs).output.ravel()[0] == -31
    # D4: CONV_2D M = 0.25 (channel 1), acc = -2 (x = 1, zp 3) -> -1 (+ zp -5).
    inputs, _ = load_inputs("conv2d_1x1_ties")
    out = run_litert("conv2d_1x1_ties", inputs).output
    assert out.reshape(256, 8)[np.flatnonzero(inputs[0].ravel() == 1)[0], 1] == -6
    # D23: SOFTMAX row [56, 9, ..., 92] at s = 0.1: last element 121.
    inputs, _ = load_inputs("softmax_s0p1")
    assert run_litert("softmax_s0p1", inputs).output[0, -1] == 121
    # D10: AVERAGE_POOL_2D 2x2 window sum 2 (mean 0.5) -> 1, sum -2 -> -1.
    inputs, _ = load_inputs("avgpool_2x2_ties")
    sums = inputs[0].astype(int).reshape(1, 4, 2, 4, 2, 4).sum(axis=(2, 4))
    out = run_litert("avgpool_2x2_ties", inputs).output
    assert set(out[sums == 2].tolist()) == {1} and set(out[sums == -2].tolist()) == {-1}


@pytest.mark.parametrize(
    "name, expected",
    [
        # D1 / D2: QUANTIZE 2.5 and -2.5 at (1, 0) -> 3, -3 (ties away).
        ("d_quantize_ties", [3, -3]),
        # acc = bias, M = s_w[c]: D4 (0.25, -2) -> -1; D5 (0.0625, 7) -> 1;
        # D6 (0.125, -5) -> -1; D8 (0.5, -3) -> -1; D12 (2^-26, 2^25 + 1) -> 1.
        ("d_conv2d_rows", [-1, 1, -1, -1, 1]),
        # D7: FULLY_CONNECTED M = 0.25, acc = -2 -> -1 and acc = 1 -> 0.
        ("d_fc_rows", [-1, 0]),
        # D11: AVERAGE_POOL_2D zp 10, window (10, 11, 10, 11) -> 11.
        ("d_avgpool_zp10", [11]),
    ],
)
def test_discrepancy_row_fixtures(name, expected):
    """Section 6 rows on their own tiny inputs: LiteRT gives the measured
    value, and so does refquant under ``tflite_reference``."""
    spec = FIXTURES[name]
    inputs, _ = load_inputs(name)
    run = run_litert(name, inputs)
    assert run.output.ravel().tolist() == expected
    got = np.asarray(CALLS[spec["op"]](run.tensors, spec["options"]))
    assert got.ravel().tolist() == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        # D15: scale 0: x / 0 is +-inf or NaN, and the float -> int conversion
        # of the C++ kernel gives INT32_MIN, clamped to -128, for all of them.
        ("d_quantize_scale0", [-128, -128, -128, -128]),
        # D16: scale 1e-45 on [0, 1, -1, 1e-45]: 1 / 1e-45 overflows -> -128.
        ("d_quantize_subnormal_scale", [0, -128, -128, 1]),
    ],
)
def test_degenerate_scale_rows(name, expected):
    """D15 / D16 on LiteRT; refquant refuses the scale (InvalidArgumentError)."""
    spec = FIXTURES[name]
    inputs, _ = load_inputs(name)
    run = run_litert(name, inputs)
    assert run.output.ravel().tolist() == expected
    with pytest.raises(InvalidArgumentError, match="y_scale"):
        CALLS[spec["op"]](run.tensors, spec["options"])


def _quantize_multiplier(m):
    """TFLite QuantizeMultiplier in Python ints: (q, shift), q*2^(shift-31) ~ m."""
    import math

    frac, shift = math.frexp(m)
    q = int(math.floor(abs(frac) * 2**31 + 0.5))  # std::round, frac > 0
    if q == 2**31:
        q, shift = q // 2, shift + 1
    if shift < -31:
        return 0, 0
    return q, shift


def _mbqm_int64(acc, q, shift):
    """integer_semantics.md 2.5: 16-bit multiplier (half up), then ties up."""
    reduced = (q + 2**15) >> 16 if q < 0x7FFF0000 else 0x7FFF
    total = 15 - shift
    return (acc * reduced + (1 << (total - 1))) >> total


def test_litert_16x8_conv_is_the_int64_form_on_ties():
    """The 16x8 tie fixture: LiteRT == the section 2.5 formula (Python ints, an
    oracle independent of refquant) on every output; the fixture holds exact
    ties and outputs where the 16-bit multiplier changes the result."""
    from fractions import Fraction

    inputs, _ = load_inputs("conv2d_16x8_1x1_ties")
    run = run_litert("conv2d_16x8_1x1_ties", inputs)
    t = run.tensors
    x = t["x"].data.astype(object).reshape(-1, 1)
    acc = x * t["w"].data.astype(object).reshape(1, -1) + t["bias"].data.astype(object)
    got = run.output.reshape(acc.shape).astype(np.int64)
    s_in, s_out = Fraction(t["x"].scale), Fraction(t["y"].scale)
    ties = changed = 0
    for c, s_w in enumerate(t["w"].scales.tolist()):
        m = s_in * Fraction(s_w) / s_out
        q, shift = _quantize_multiplier(float(m))
        for i, a in enumerate(acc[:, c]):
            want = max(-32768, min(32767, _mbqm_int64(int(a), q, shift)))
            assert got[i, c] == want, (c, int(a), int(got[i, c]), want)
            exact = a * m
            ties += (exact - exact.__floor__()) == Fraction(1, 2)
            nearest = max(-32768, min(32767, int((exact + Fraction(1, 2)).__floor__())))
            changed += nearest != want
    assert ties >= 200 and changed >= 1, (ties, changed)
    # section 2.5: M = 0.25 (channel 1), acc = -8..8, ties toward +infinity.
    sweep = [int(got[np.flatnonzero(x.ravel() == v)[0], 1]) for v in range(-8, 9)]
    assert sweep == [-2, -2, -1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


# ----------------------------------------------------------------------------------
# int16 fixed-point kernels on more inputs than the committed ones: the same
# model runs live on every int16 code (LOGISTIC, TANH) or on seeded rows


def _assert_same(name, got, expected):
    got = np.asarray(got)
    bad = np.flatnonzero(got != expected)
    assert got.dtype == expected.dtype and bad.size == 0, (
        f"{name}: {bad.size} differ; first flat {bad[:1]}: refquant "
        f"{got.ravel()[bad[:1]]}, LiteRT {expected.ravel()[bad[:1]]}"
    )


@pytest.mark.parametrize(
    "name",
    [
        "logistic_16x8_pot",
        "logistic_16x8_s0p0003",
        "tanh_16x8_pot",
        "tanh_16x8_s0p0003",
    ],
)
def test_int16_logistic_tanh_every_code(name):
    spec = FIXTURES[name]
    codes = np.arange(-32768, 32768, dtype=np.int16).reshape(16, 1, 4096)
    for chunk in codes:
        run = run_litert(name, [chunk])
        got = CALLS[spec["op"]](run.tensors, spec["options"])
        _assert_same(name, got, run.output)


def test_int16_softmax_on_seeded_rows():
    spec = FIXTURES["softmax_16x8"]
    rng = np.random.default_rng(20261204)
    for spread in (0, 3, 300, 3000, 30000, 32768):
        x = rng.integers(-spread - 1, spread + 1, size=(16, 10))
        x = np.clip(x, -32768, 32767).astype(np.int16)
        x[0] = x[0, 0]  # a row of equal values
        x[1, :2] = (-32768, 32767)  # the widest difference
        run = run_litert("softmax_16x8", [x])
        got = CALLS[spec["op"]](run.tensors, spec["options"])
        _assert_same(f"softmax_16x8 spread {spread}", got, run.output)
