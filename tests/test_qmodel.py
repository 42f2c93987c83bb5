"""QuantizedModel: integer engine vs an exact oracle and vs the simulation,
the exact conv + max-pool fusion, size accounting, dynamic mode, errors.

Parity bound (specs/ptq.md section 5): with the simulation reading the
engine's input codes, every layer differs by at most 1 code under every
profile.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from refquant.errors import (
    AccumulatorOverflowError,
    InvalidArgumentError,
    InvalidTypeError,
)
from refquant.graph import GraphBuilder, sequential
from refquant.kernels.requantize import requantize_accumulator
from refquant.numerics.scheme import QuantScheme
from refquant.profiles import PROFILES, get_profile
from refquant.ptq import (
    QuantConfig,
    QuantizedModel,
    QuantizedNode,
    QuantizedWeight,
    TensorQParams,
    quantize_model,
)
from refquant.ptq.engine import run_node
from refquant.ptq.program import Requantizer
from tests.test_ptq import small_convnet


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def head_graph(rng, op):
    b = GraphBuilder("head")
    x = b.input("input")
    h = b.add(
        "Dense",
        x,
        name="fc",
        params={
            "weight": rng.standard_normal((6, 5)).astype(np.float32),
            "bias": rng.standard_normal(6).astype(np.float32),
        },
    )
    h = b.add("ReLU", h, name="relu") if op == "Sigmoid" else h
    h = b.add("Reshape", h, name="rs", shape=(2, 3))
    h = b.add("Flatten", h, name="fl")
    return b.build(outputs=b.add(op, h, name="act"))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_local_parity_at_most_one_code(rng, profile):
    g = small_convnet(rng)
    x = rng.standard_normal((6, 8, 8, 3)).astype(np.float32)
    qm = quantize_model(g, x)
    par = qm.parity(x, profile)
    assert set(par) == {n.name for n in qm.nodes}
    assert max(par.values()) <= 1
    assert par["mp"] == 0 and par["pad"] == 0  # selections are exact
    for op in ("Softmax", "Sigmoid", "Tanh"):
        h = head_graph(rng, op)
        xh = rng.standard_normal((40, 5)).astype(np.float32)
        assert max(quantize_model(h, xh).parity(xh, profile).values()) <= 1


def test_fixed_output_grids(rng):
    for op, want in (
        ("Softmax", (1 / 256, -128)),
        ("Sigmoid", (1 / 256, -128)),
        ("Tanh", (1 / 128, 0)),
    ):
        h = head_graph(rng, op)
        qm = quantize_model(h, rng.standard_normal((10, 5)).astype(np.float32))
        qp = qm.tensor_qparams["act"]
        assert (qp.scale, qp.zero_point) == want
        assert qm.tensor_qparams["rs"] == qm.tensor_qparams["fc"]  # shared


def test_dense_engine_equals_fraction_oracle(rng):
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    g = sequential([("Dense", {"weight": w, "bias": b}, {"activation": "relu"}, "fc")])
    x = rng.standard_normal((25, 4)).astype(np.float32)
    qm = quantize_model(g, x)
    node, a, y = qm.node("fc"), qm.tensor_qparams["input"], qm.tensor_qparams["fc"]
    got = qm.run_codes(x)
    qx = qm.quantize_input(x)
    for n in range(x.shape[0]):
        for o in range(3):
            # input code: half_even(x / s) + zp; then exact accumulator
            assert (
                qx[n, 0]
                == int(round(Fraction(float(x[n, 0])) / Fraction(a.scale)))
                + a.zero_point
            )
            acc = sum(
                (int(qx[n, k]) - a.zero_point) * int(node.weight.codes[o, k])
                for k in range(4)
            ) + int(node.bias[o])
            real = acc * Fraction(a.scale) * Fraction(float(node.weight.scale[o]))
            code = round(real / Fraction(y.scale)) + y.zero_point  # half_even
            code = min(max(code, y.zero_point, -128), 127)  # relu clamp
            assert got[n, o] == code


@pytest.mark.parametrize("profile", ["exact", "tflite_reference", "onnxruntime"])
def test_conv_max_pool_fusion_is_bit_identical(rng, profile):
    g = sequential(
        [
            (
                "Conv2D",
                {
                    "weight": rng.standard_normal((4, 3, 3, 2)).astype(np.float32),
                    "bias": rng.standard_normal(4).astype(np.float32),
                },
                {"padding": 1, "activation": "relu"},
                "conv",
            ),
            ("MaxPool", {}, {"pool_size": 2}, "pool"),
            ("Flatten", {}, {}, "flat"),
        ]
    )
    x = rng.standard_normal((5, 6, 6, 2)).astype(np.float32)
    qm = quantize_model(g, x)
    fused = qm.run_codes(x, profile=profile)
    unfused, _ = qm.run_codes(x, profile=profile, capture=True)
    np.testing.assert_array_equal(fused, unfused)


def test_simulation_tracks_engine(rng):
    g = small_convnet(rng)
    x = rng.standard_normal((6, 8, 8, 3)).astype(np.float32)
    qm = quantize_model(g, x)
    sim, codes = qm.simulate(x, capture=True)
    assert codes["fc"].dtype == np.int8
    s_y = qm.tensor_qparams["fc"].scale
    assert np.abs(sim - qm.run(x)).max() <= 4 * s_y
    assert max(qm.parity(x, propagate=True).values()) <= 4


def test_size_accounting_by_hand(rng):
    w = rng.standard_normal((4, 6)).astype(np.float32)
    g = sequential([("Dense", {"weight": w, "bias": np.ones(4, np.float32)}, {}, "fc")])
    x = rng.standard_normal((5, 6)).astype(np.float32)
    qm = quantize_model(g, x)
    # 24 int8 codes + 4 float32 scales + 4 int8 zero points + 4 int32 biases
    # + 2 activations x (float32 scale + int8 zero point)
    assert qm.size_bytes() == 24 + 16 + 4 + 16 + 2 * 5
    assert qm.fp32_size_bytes() == (24 + 4) * 4
    cfg = QuantConfig(
        weight_bits=4, weight_granularity="per_group", weight_group_size=3
    )
    wo = quantize_model(g, mode="weight_only", config=cfg)
    # 24 int4 codes (12 bytes) + 8 groups x (4 + 0.5 -> int4 zp: 4 bytes) + bias
    assert wo.node("fc").weight.scale.shape == (4, 2)
    assert wo.size_bytes() == 12 + 8 * 4 + 8 + 16


def test_dynamic_dense_by_hand(rng):
    w = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    g = sequential([("Dense", {"weight": w, "bias": b}, {}, "fc")])
    qm = quantize_model(g, mode="dynamic")
    x = rng.standard_normal((4, 5)).astype(np.float32)
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    s_x = (hi - lo) / 255
    zp = int(np.clip(np.rint(-lo / s_x), 0, 255))
    qx = np.clip(np.rint(x / s_x) + zp, 0, 255).astype(np.int64)
    wn = qm.node("fc").weight
    acc = (qx - zp) @ wn.codes.astype(np.int64).T
    want = acc * s_x * wn.scale + b
    np.testing.assert_allclose(qm.run(x), want, rtol=1e-5, atol=1e-5)


def test_run_invalid_input(rng):
    g = small_convnet(rng)
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    qm = quantize_model(g, x)
    with pytest.raises(InvalidTypeError, match="x must be a numpy float array"):
        qm.run([[1.0]])
    with pytest.raises(InvalidArgumentError, match="x must be a float array"):
        qm.run(x.astype(np.int32))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidArgumentError, match="finite"):
        qm.run(bad)
    with pytest.raises(InvalidArgumentError, match="batch_size must be an int >= 1"):
        qm.run(x, batch_size=0)
    with pytest.raises(InvalidArgumentError, match="profile|name"):
        qm.run(x, profile="tpu")
    with pytest.raises(InvalidArgumentError, match="name must be a node"):
        qm.node("nope")
    dyn = quantize_model(g, mode="dynamic")
    for method in (dyn.parity, dyn.simulate, dyn.run_codes):
        with pytest.raises(InvalidArgumentError, match="needs a static model"):
            method(x)


def test_batched_run_equals_whole_run(rng):
    g = small_convnet(rng)
    x = rng.standard_normal((7, 8, 8, 3)).astype(np.float32)
    qm = quantize_model(g, x)
    np.testing.assert_array_equal(qm.run(x, batch_size=3), qm.run(x))


# ------------------------------------------------- compiled program == kernels
def kernel_by_kernel(qm, x, profile):
    """Slow oracle: one public kernel call per node (engine.run_node), no fusion,
    no prepared weights, no compiled constants."""
    prof = get_profile(profile)
    env = {qm.inputs[0]: qm.quantize_input(x, profile=prof)}
    for n in qm.nodes:
        env[n.name] = run_node(n, [env[k] for k in n.inputs], qm.tensor_qparams, prof)
    return env


def every_op_graph(rng):
    """Conv (same, relu6) -> depthwise -> residual Add -> conv + fused MaxPool,
    AvgPool, Concat, Pad, 1x1 conv, GlobalAvgPool, Dense with K > 1032 (chunked
    exact GEMM), Dense, Softmax; per-channel scales spread over 2**6."""
    spread = np.exp2(rng.uniform(-3, 3, 8)).astype(np.float32)
    b = GraphBuilder("every_op")
    x = b.input("input")
    h = b.add(
        "Conv2D",
        x,
        name="c1",
        padding="same",
        activation="relu6",
        params={
            "weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
            * 0.3
            * spread[:, None, None, None],
            "bias": rng.standard_normal(8).astype(np.float32),
        },
    )
    d = b.add(
        "DepthwiseConv2D",
        h,
        name="dw",
        padding=1,
        params={
            "weight": rng.standard_normal((1, 3, 3, 8)).astype(np.float32) * spread,
            "bias": rng.standard_normal(8).astype(np.float32) * 0.1,
        },
    )
    s = b.add("Add", [h, d], name="add", activation="relu")
    w2 = rng.standard_normal((8, 2, 2, 8)).astype(np.float32) * 0.2
    c2 = b.add("Conv2D", s, name="c2", padding="valid", params={"weight": w2})
    m = b.add("MaxPool", c2, name="mp", pool_size=2, strides=(1, 1))
    a = b.add("AvgPool", m, name="ap", pool_size=2, strides=(1, 1), padding="same")
    c = b.add("Concat", [m, a], name="cat")
    c = b.add("Pad", c, name="pad", paddings=((0, 0), (1, 1), (1, 1), (0, 0)))
    c = b.add(
        "Conv2D",
        c,
        name="pw",
        params={
            "weight": rng.standard_normal((24, 1, 1, 16)).astype(np.float32) * 0.2,
            "bias": rng.standard_normal(24).astype(np.float32) * 0.1,
        },
    )
    f = b.add("Flatten", c, name="flat")
    f = b.add(
        "Dense",
        f,
        name="fc1",
        activation="relu",
        params={
            "weight": rng.standard_normal((16, 24 * 64)).astype(np.float32) * 0.05,
            "bias": rng.standard_normal(16).astype(np.float32) * 0.1,
        },
    )
    p = b.add("GlobalAvgPool", s, name="gap")
    o = b.add("Concat", [f, p], name="cat2")
    o = b.add(
        "Dense",
        o,
        name="fc2",
        params={
            "weight": rng.standard_normal((5, 24)).astype(np.float32) * 0.3,
            "bias": rng.standard_normal(5).astype(np.float32) * 0.1,
        },
    )
    return b.build(outputs=b.add("Softmax", o, name="prob"))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_compiled_program_equals_kernel_calls(rng, profile):
    g = every_op_graph(rng)
    x = rng.standard_normal((12, 8, 8, 3)).astype(np.float32)
    qm = quantize_model(g, x[:6])
    if profile == "tflite_reference":  # TFLite concatenates equal qparams only
        with pytest.raises(InvalidArgumentError, match="CONCATENATION requires"):
            qm.run_codes(x, profile=profile)
        return
    want = kernel_by_kernel(qm, x, profile)
    np.testing.assert_array_equal(qm.run_codes(x, profile=profile), want["prob"])
    _, got = qm.run_codes(x, profile=profile, capture=True)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_compiled_program_equals_kernel_calls_small_convnet(rng, profile):
    g = small_convnet(rng)
    x = rng.standard_normal((9, 8, 8, 3)).astype(np.float32)
    qm = quantize_model(g, x)
    want = kernel_by_kernel(qm, x, profile)
    np.testing.assert_array_equal(qm.run_codes(x, profile=profile), want["fc"])
    np.testing.assert_array_equal(qm.run_codes(x[:1], profile=profile), want["fc"][:1])


_S_W = (  # M = 0.5 * s_w: exact ties; then a real layer's M, all below 2**-7
    np.array([2.0**-1, 2.0**-2, 2.0**-7, 0.0123, 3.1e-4, 1.7e-5, 0.3, 2.0**-9]),
    np.array([2.0**-8, 2.0**-9, 2.0**-12, 0.0123, 3.1e-4, 1.7e-5, 0.003, 2.0**-10]),
)


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("activation", [None, "relu6"])
@pytest.mark.parametrize("set_id", [0, 1])
def test_requantizer_equals_kernel_on_ties_and_extremes(
    rng, profile, activation, set_id
):
    # s_w = 2**-k makes acc * M land exactly on halves (ties), and scales of a
    # real layer; accumulators cover the int32 range and its ends.
    prof = get_profile(profile)
    s_in, s_out = 0.5, 1.0
    s_w = _S_W[set_id]
    acc = np.concatenate(
        [
            np.arange(-600, 601),
            rng.integers(-(2**31), 2**31, 3000),
            rng.integers(-(2**20), 2**20, 3000),
            [-(2**31), 2**31 - 1, 2**24 + 1],
        ]
    )
    acc = np.resize(acc, (acc.size // 8 + 1) * 8).reshape(-1, 8)
    for qmin, qmax, zp in ((-128, 127, -5), (-8, 7, 2)):
        rq = Requantizer(s_in, s_w, s_out, zp, activation, prof, qmin, qmax)
        if set_id == 1:  # the fast methods, not the kernel fallback
            assert rq.method == prof.requantize_method
        want = requantize_accumulator(
            acc, s_in, s_w, s_out, zp, np.int8, prof, activation=activation
        )
        want = np.clip(want, qmin, qmax)
        np.testing.assert_array_equal(rq(acc.astype(np.float64)), want)
        small = acc[np.all(np.abs(acc) < 2**24, axis=1)]
        np.testing.assert_array_equal(
            rq(small.astype(np.float32)),
            np.clip(
                requantize_accumulator(
                    small, s_in, s_w, s_out, zp, np.int8, prof, activation=activation
                ),
                qmin,
                qmax,
            ),
        )


def test_profile_support_checked_when_compiling(rng):
    g = small_convnet(rng)
    x = rng.standard_normal((4, 8, 8, 3)).astype(np.float32)
    qm = quantize_model(g, x, config=QuantConfig(weight_symmetric=False))
    qm.run_codes(x, profile="exact")  # asymmetric weights are fine here
    for profile in ("onnxruntime", "tflite_reference"):
        with pytest.raises(InvalidArgumentError, match="node 'c1'.*weight zero"):
            qm.run_codes(x, profile=profile)


def test_overflow_policy_in_compiled_program():
    w = QuantizedWeight(
        np.full((1, 4), 127, np.int8),
        np.float64(0.01),
        np.int64(0),
        QuantScheme(bits=8, narrow_range=True),
        "Dense",
    )
    node = QuantizedNode(
        "fc",
        "Dense",
        ("input",),
        {"activation": None},
        w,
        np.array([2**31 - 200], np.int32),
    )
    qp = {"input": TensorQParams(1.0, -128), "fc": TensorQParams(2.0**23, 0)}
    qm = QuantizedModel([node], ("input",), ("fc",), qp)
    x = np.full((3, 4), 127.0, np.float32)  # acc = 4 * 255 * 127 + bias > 2**31
    with pytest.raises(AccumulatorOverflowError, match="overflows int32"):
        qm.run_codes(x, profile="exact")
    got = qm.run_codes(x, profile="onnxruntime")  # wraps to a large negative
    want = kernel_by_kernel(qm, x, "onnxruntime")["fc"]
    np.testing.assert_array_equal(got, want)
    assert got[0, 0] < 0


def test_program_cache_follows_qparams(rng):
    g = small_convnet(rng)
    x = rng.standard_normal((4, 8, 8, 3)).astype(np.float32)
    qm = quantize_model(g, x)
    before = qm.run_codes(x)
    old = qm.tensor_qparams["fc"]
    qm.tensor_qparams["fc"] = TensorQParams(old.scale * 2, old.zero_point)
    after = qm.run_codes(x)
    np.testing.assert_array_equal(after, kernel_by_kernel(qm, x, "exact")["fc"])
    assert not np.array_equal(before, after)
