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

from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.graph import GraphBuilder, sequential
from refquant.profiles import PROFILES
from refquant.ptq import QuantConfig, quantize_model
from tests.test_ptq import small_convnet


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def head_graph(rng, op):
    b = GraphBuilder("head")
    x = b.input("input")
    h = b.add("Dense", x, name="fc", params={
        "weight": rng.standard_normal((6, 5)).astype(np.float32),
        "bias": rng.standard_normal(6).astype(np.float32)})  # fmt: skip
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
    for op, want in (("Softmax", (1 / 256, -128)), ("Sigmoid", (1 / 256, -128)),
                     ("Tanh", (1 / 128, 0))):  # fmt: skip
        h = head_graph(rng, op)
        qm = quantize_model(h, rng.standard_normal((10, 5)).astype(np.float32))
        qp = qm.tensor_qparams["act"]
        assert (qp.scale, qp.zero_point) == want
        assert qm.tensor_qparams["rs"] == qm.tensor_qparams["fc"]  # shared


def test_dense_engine_equals_fraction_oracle(rng):
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    g = sequential([("Dense", {"weight": w, "bias": b}, {"activation": "relu"},
                     "fc")])  # fmt: skip
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
            acc = sum((int(qx[n, k]) - a.zero_point) * int(node.weight.codes[o, k])
                      for k in range(4)) + int(node.bias[o])  # fmt: skip
            real = acc * Fraction(a.scale) * Fraction(float(node.weight.scale[o]))
            code = round(real / Fraction(y.scale)) + y.zero_point  # half_even
            code = min(max(code, y.zero_point, -128), 127)  # relu clamp
            assert got[n, o] == code


@pytest.mark.parametrize("profile", ["exact", "tflite_reference", "onnxruntime"])
def test_conv_max_pool_fusion_is_bit_identical(rng, profile):
    g = sequential([
        ("Conv2D", {"weight": rng.standard_normal((4, 3, 3, 2)).astype(np.float32),
                    "bias": rng.standard_normal(4).astype(np.float32)},
         {"padding": 1, "activation": "relu"}, "conv"),
        ("MaxPool", {}, {"pool_size": 2}, "pool"),
        ("Flatten", {}, {}, "flat"),
    ])  # fmt: skip
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
    g = sequential([("Dense", {"weight": w, "bias": np.ones(4, np.float32)}, {},
                     "fc")])  # fmt: skip
    x = rng.standard_normal((5, 6)).astype(np.float32)
    qm = quantize_model(g, x)
    # 24 int8 codes + 4 float32 scales + 4 int8 zero points + 4 int32 biases
    # + 2 activations x (float32 scale + int8 zero point)
    assert qm.size_bytes() == 24 + 16 + 4 + 16 + 2 * 5
    assert qm.fp32_size_bytes() == (24 + 4) * 4
    cfg = QuantConfig(weight_bits=4, weight_granularity="per_group",
                      weight_group_size=3)  # fmt: skip
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
