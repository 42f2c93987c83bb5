"""Mixed precision: layers, the mixed model, sensitivity, allocation, files.

Small synthetic graphs only (fast); the real models are in
benchmarks/mixed_precision_real.py and the ``assets`` tests at the end.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.graph import GraphBuilder
from refquant.mixed import PRECISIONS, MixedQuantizer
from refquant.mixed.layers import round_to_bfloat16
from refquant.numerics.floatfmt import to_bfloat16, to_float16


def residual_graph(seed=0):
    """conv(relu) -> depthwise(relu6) -> add(conv output) -> GAP -> dense."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("tiny")
    x = b.input("input")
    c1 = b.add(
        "Conv2D",
        x,
        name="conv1",
        params={
            "weight": rng.normal(0, 0.5, (4, 3, 3, 2)).astype(np.float32),
            "bias": rng.normal(0, 0.1, 4).astype(np.float32),
        },
        padding="same",
        activation="relu",
    )
    d = b.add(
        "DepthwiseConv2D",
        c1,
        name="dw",
        params={
            "weight": rng.normal(0, 0.5, (1, 3, 3, 4)).astype(np.float32),
            "bias": rng.normal(0, 0.1, 4).astype(np.float32),
        },
        padding="same",
        activation="relu6",
    )
    a = b.add("Add", [c1, d], name="add")
    p = b.add("GlobalAvgPool", a, name="gap")
    y = b.add(
        "Dense",
        p,
        name="fc",
        params={
            "weight": rng.normal(0, 0.7, (5, 4)).astype(np.float32),
            "bias": rng.normal(0, 0.1, 5).astype(np.float32),
        },
    )
    return b.build(outputs=y)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(1)
    x_cal = rng.uniform(-1, 1, (16, 6, 6, 2)).astype(np.float32)
    x = rng.uniform(-1, 1, (12, 6, 6, 2)).astype(np.float32)
    mq = MixedQuantizer(residual_graph(), x_cal)
    return mq, x


# ------------------------------------------------------------------ layers
def test_layers_are_the_weighted_nodes(setup):
    mq, _ = setup
    assert mq.layers == ("conv1", "dw", "fc")


def test_uniform_int8_is_the_static_model_bit_for_bit(setup):
    mq, x = setup
    m = mq.model("int8")
    for profile in ("exact", "tflite_reference"):
        np.testing.assert_array_equal(
            m.run(x, profile=profile), mq.qmodel.run(x, profile=profile)
        )
    # the static model stores each tensor's qparams once; the mixed model
    # counts them per integer layer, so "conv1" (read by dw) and "gap" (read
    # by fc) are counted twice: 2 * (4 + 1) bytes more; and the mixed file
    # stores weight scales as float64 (the static size counts float32): 4 B
    # more per scale
    n_scales = sum(np.size(n.weight.scale) for n in mq.qmodel.nodes if n.weight)
    assert n_scales == 4 + 4 + 5  # per channel: conv1 4, dw 4, fc 5 outputs
    assert m.size_bytes() == mq.qmodel.size_bytes() + 10 + 4 * n_scales
    assert m.boundaries() == [
        ("input", "conv1", "float->int8"),
        ("fc", "<output>", "int8->float"),
    ]


def test_uniform_fp32_is_the_float_graph(setup):
    mq, x = setup
    np.testing.assert_array_equal(mq.model("fp32").run(x), mq.graph.run(x))


def test_fp16_layer_rounds_inputs_weights_bias_and_output(setup):
    mq, x = setup
    m = mq.model({"fc": "fp16"})
    h = mq.graph.run(x, capture=["gap"])[1]["gap"]
    node = mq.graph.node("fc")
    f16 = lambda v: to_float16(v).astype(np.float64)  # noqa: E731
    acc = f16(h) @ f16(node.params["weight"]).T + f16(node.params["bias"])
    expected = f16(acc)  # float64 sums of 4 fp16 products: error < 2**-40 here
    got = m.run(x).astype(np.float64)
    # float32 accumulation may differ from float64 by < 4 ulp(f32) before the
    # final fp16 rounding; so the results agree to one fp16 ulp at most.
    ulp16 = np.spacing(np.abs(expected).astype(np.float16)).astype(np.float64)
    assert np.all(np.abs(got - expected) <= ulp16)
    assert np.array_equal(to_float16(got).astype(np.float64), got)  # on fp16 grid


def test_bf16_outputs_lie_on_the_bf16_grid(setup):
    mq, x = setup
    got = mq.model({"fc": "bf16"}).run(x)
    np.testing.assert_array_equal(to_bfloat16(got), got)


def test_fast_bfloat16_rounding_matches_to_bfloat16():
    rng = np.random.default_rng(7)
    v = np.concatenate(
        [
            rng.normal(0, 1e3, 5000),
            [0.0, -0.0, np.inf, -np.inf, 1.00390625, 1.01171875, 3.4e38],
        ]
    ).astype(np.float32)
    np.testing.assert_array_equal(round_to_bfloat16(v), to_bfloat16(v))


def test_binary_and_ternary_weights_by_hand():
    from refquant.graph import sequential
    from refquant.mixed.layers import weight_layer

    w = np.float32([[0.5, -0.1, 0.0, 0.9]])
    g = sequential([("Dense", {"weight": w}, {}, "fc")])
    node = g.node("fc")
    b = weight_layer(node, "binary")
    # codes sign (sign(0)=+1), alpha = mean|w| = 1.5 / 4
    np.testing.assert_array_equal(b.tensors["weight"], [[1, -1, 1, 1]])
    np.testing.assert_allclose(
        b.float_params()["weight"], [[0.375, -0.375, 0.375, 0.375]]
    )
    t = weight_layer(node, "ternary")
    # delta = 0.7 * 0.375 = 0.2625: codes [1, 0, 0, 1], alpha = (0.5 + 0.9) / 2
    np.testing.assert_array_equal(t.tensors["weight"], [[1, 0, 0, 1]])
    np.testing.assert_allclose(t.float_params()["weight"], [[0.7, 0, 0, 0.7]])
    # stored: 4 codes * 2 bits = 1 byte + float32 scale
    assert sum(s.nbytes for s in t.stored_tensors()) == 1 + 4
    assert sum(s.nbytes for s in b.stored_tensors()) == 1 + 4


def test_sizes_by_hand(setup):
    mq, _ = setup
    # conv1: 72 weights, 4 bias
    assert mq.layer_bytes("conv1", "fp32") == 4 * 76
    assert mq.layer_bytes("conv1", "fp16") == 2 * 76
    # int8: 72 codes + 4 scales (f64, as stored) + 4 zp (int8) + 4 bias int32
    # + 2 act qparams
    assert mq.layer_bytes("conv1", "int8") == 72 + 32 + 4 + 16 + 10
    # int16: int8 weights as above, int64 bias, (f32 scale, int16 zp) in and out
    assert mq.layer_bytes("conv1", "int16") == 72 + 32 + 4 + 32 + 12
    # int4 g32 along K=18: one group per row -> 4 groups; 36 bytes of codes
    assert mq.layer_bytes("conv1", "int4") == 36 + 32 + 4 + 16
    assert mq.layer_bytes("conv1", "binary") == 9 + 16 + 16


def test_boundaries_inserted_between_domains(setup):
    mq, x = setup
    m = mq.model({"conv1": "int8", "dw": "fp16", "fc": "int8"})
    assert m.domain["add"] == "float" and m.domain["gap"] == "float"
    assert ("conv1", "dw", "int8->float") in m.boundaries()
    assert ("conv1", "add", "int8->float") in m.boundaries()
    assert ("gap", "fc", "float->int8") in m.boundaries()
    y = m.run(x)
    assert y.dtype == np.float32 and y.shape == (12, 5)


def test_int8_to_float_boundary_is_the_dequantized_code(setup):
    mq, x = setup
    m = mq.model({"conv1": "int8"})  # conv1 int8, the rest fp32
    codes = mq.qmodel.run_codes(x, capture=True)[1]["conv1"]
    qp = mq.qmodel.tensor_qparams["conv1"]
    h = ((codes.astype(np.int64) - qp.zero_point) * qp.scale).astype(np.float32)
    rest = mq.graph.replace(
        nodes=[n for n in mq.graph.nodes if n.name != "conv1"], inputs=["conv1"]
    )
    np.testing.assert_array_equal(m.run(x), rest.run(h))


def test_int16_close_to_fp32(setup):
    mq, x = setup
    ref = mq.model("fp32").run(x)
    from refquant.evaluation import sqnr_db
    from refquant.ptq import quantize_model

    y16 = mq.model("int16").run(x)
    s8 = sqnr_db(ref, mq.model("int8").run(x))
    assert sqnr_db(ref, y16) > s8
    # int16 keeps int8 weights: against float activations with the same int8
    # weights, only the 256x finer activation grid differs -> far less noise
    wo = quantize_model(residual_graph(), mode="weight_only").run(x)
    assert sqnr_db(wo, y16) > s8 + 20


def test_trace_reuse_equals_full_run(setup):
    mq, x = setup
    base = mq.model("fp32").trace(x)
    for prec in ({"dw": "int8"}, {"fc": "ternary"}, {"conv1": "int4"}):
        m = mq.model(prec)
        got = m.trace(x, base=base, keep=False).outputs[0]
        np.testing.assert_array_equal(got, m.run(x))


# ------------------------------------------------------------------ invalid input
def test_invalid_inputs(setup):
    mq, x = setup
    with pytest.raises(InvalidArgumentError, match="precisions names 'nope'"):
        mq.model({"nope": "int8"})
    with pytest.raises(InvalidArgumentError, match="precisions\\['fc'\\]"):
        mq.model({"fc": "int3"})
    with pytest.raises(InvalidArgumentError, match="default"):
        mq.model({}, default="fp8")
    with pytest.raises(InvalidTypeError, match="x must be a numpy"):
        mq.model("fp32").run([[1.0]])
    with pytest.raises(InvalidArgumentError, match="finite"):
        mq.model("fp32").run(np.full_like(x, np.nan))
    with pytest.raises(InvalidTypeError, match="graph"):
        MixedQuantizer("graph", x)
    with pytest.raises(InvalidArgumentError, match="group_size"):
        MixedQuantizer(residual_graph(), x, group_size=0)


# ------------------------------------------------------------------ sensitivity
@pytest.fixture(scope="module")
def sens(setup):
    from refquant.mixed.sensitivity import measure_sensitivity

    mq, x = setup
    labels = mq.graph.run(x).argmax(1)
    labels[:2] = -1
    calls = []
    s = measure_sensitivity(
        mq, x, labels, batch_size=5, progress=lambda d, t: calls.append((d, t))
    )
    return s, labels, calls


def test_sensitivity_rows_and_progress(sens):
    s, _, calls = sens
    assert len([r for r in s.rows if r["view"] == "alone"]) == 3 * len(PRECISIONS)
    assert len([r for r in s.rows if r["view"] == "all_but"]) == 3
    assert calls[-1][0] == calls[-1][1] == 3 * (1 + 3 * len(PRECISIONS) + 1 + 3)
    assert s.fp32["accuracy"] == 1.0  # labels are the FP32 predictions


def test_sensitivity_matches_a_direct_run(setup, sens):
    from refquant.evaluation import sqnr_db

    mq, x = setup
    s, labels, _ = sens
    ref = mq.graph.run(x)
    for name, p in (("dw", "int8"), ("fc", "binary"), ("conv1", "fp16")):
        out = mq.model({name: p}).run(x)
        r = s.get(name, p)
        assert math.isclose(r["sqnr_db"], sqnr_db(ref, out), rel_tol=1e-9)
        assert r["agree_count"] == int(np.sum(out.argmax(1) == ref.argmax(1)))
        known = labels >= 0
        assert r["labeled"] == 10
        assert r["correct"] == int(np.sum(out.argmax(1)[known] == labels[known]))
    rev = mq.model({"dw": "fp32"}, default="int8").run(x)
    assert math.isclose(
        s.get("dw", "fp32", "all_but")["sqnr_db"], sqnr_db(ref, rev), rel_tol=1e-9
    )
    assert s.get("fc", "fp32")["sqnr_db"] == math.inf


def test_kl_by_hand():
    from refquant.mixed.sensitivity import OutputStats

    st = OutputStats()
    st.update(np.array([[0.0, 0.0]]), np.array([[math.log(3.0), 0.0]]))
    # p = (1/2, 1/2), q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2
    assert math.isclose(st.result()["kl"], 0.5 * math.log(2 / 3) + 0.5 * math.log(2))


def test_ranking_orders_by_sqnr(sens):
    s, _, _ = sens
    order = s.ranking("binary")
    values = [s.get(n, "binary")["sqnr_db"] for n in order]
    assert values == sorted(values)


def test_sensitivity_invalid(setup):
    from refquant.mixed.sensitivity import measure_sensitivity

    mq, x = setup
    with pytest.raises(InvalidArgumentError, match="precisions entry"):
        measure_sensitivity(mq, x, precisions=("int5",))
    with pytest.raises(InvalidArgumentError, match="labels"):
        measure_sensitivity(mq, x, np.zeros(3, np.int64))
    with pytest.raises(InvalidTypeError, match="data"):
        measure_sensitivity(mq, [1.0])
    with pytest.raises(InvalidArgumentError, match="precisions names"):
        measure_sensitivity(mq, x, layers=["add"])


# ------------------------------------------------------------------ allocation
def test_solver_small_program_by_hand():
    pytest.importorskip("scipy")
    from refquant.mixed.allocate import InfeasibleBudgetError, solve_allocation

    # two layers, choices (big, exact) or (small, noisy)
    cost = np.array([[0.0, 0.5], [0.0, 0.1]])
    sizes = np.array([[100, 10], [100, 10]])
    # 110 bytes: one layer may stay big; the cheaper noise is to shrink layer 1
    assert solve_allocation(cost, sizes, size_budget=110).tolist() == [0, 1]
    assert solve_allocation(cost, sizes, size_budget=20).tolist() == [1, 1]
    drop = np.array([[0.0, 0.4], [0.0, 0.3]])
    assert solve_allocation(cost, sizes, drop=drop, drop_budget=0.35).tolist() == [0, 1]
    with pytest.raises(InfeasibleBudgetError, match="smallest possible") as e:
        solve_allocation(cost, sizes, size_budget=5)
    assert e.value.smallest == 20 and "HiGHS" not in str(e.value)


def test_parse_size_budget():
    from refquant.mixed.allocate import parse_size_budget

    assert parse_size_budget("3.5x", 700) == 200
    assert parse_size_budget(" 2X ", 7) == 3
    assert parse_size_budget("1234", 7) == 1234
    for bad in ("0x", "x", "-2x", "12MB", 0, -5, 2.5):
        with pytest.raises(InvalidArgumentError):
            parse_size_budget(bad, 1000)


def test_allocation_meets_a_size_budget_for_real(setup, sens):
    from refquant.mixed.allocate import allocate

    mq, x = setup
    s, labels, _ = sens
    budget = mq.model("int8").size_bytes()
    a = allocate(mq, s, x, labels, size_budget=budget)
    assert a.measured["bytes"] == a.model.size_bytes() <= budget
    assert a.met and a.budget["kind"] == "size"
    # the chosen model's measured SQNR is what the model gives
    from refquant.evaluation import sqnr_db

    ref = mq.graph.run(x)
    assert math.isclose(
        a.measured["sqnr_db"], sqnr_db(ref, a.model.run(x)), rel_tol=1e-9
    )


def test_overrides_are_kept(setup, sens):
    from refquant.mixed.allocate import allocate

    mq, x = setup
    s, labels, _ = sens
    a = allocate(
        mq, s, x, labels, size_budget="2x", overrides={"conv1": "fp16", "fc": "int4"}
    )
    assert a.precisions["conv1"] == "fp16" and a.precisions["fc"] == "int4"


def test_drop_budget_is_measured_and_repaired(setup, sens):
    from refquant.mixed.allocate import allocate

    mq, x = setup
    s, labels, _ = sens
    a = allocate(mq, s, x, max_drop=0.0, metric="agreement")
    ref = mq.graph.run(x)
    agree = int(np.sum(a.model.run(x).argmax(1) == ref.argmax(1)))
    assert a.measured["agree_count"] == agree
    assert a.met == (agree == len(x))
    if a.repairs:  # a miss is said, never hidden
        assert "misses the budget" in a.notes[0]


def test_allocate_invalid(setup, sens):
    from refquant.mixed.allocate import allocate

    mq, x = setup
    s, labels, _ = sens
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        allocate(mq, s, x)
    with pytest.raises(InvalidArgumentError, match="max_drop"):
        allocate(mq, s, x, max_drop=-1.0)
    with pytest.raises(InvalidArgumentError, match="labels"):
        allocate(mq, s, x, max_drop=1.0, metric="accuracy")
    with pytest.raises(InvalidArgumentError, match="overrides|precisions"):
        allocate(mq, s, x, size_budget="2x", overrides={"zz": "fp16"})


# ------------------------------------------------------------------ Pareto, report
def test_pareto_front_and_markdown(setup, sens):
    from refquant.mixed.pareto import pareto_sweep
    from refquant.mixed.report import pareto_markdown, sensitivity_markdown, to_json

    mq, x = setup
    s, labels, _ = sens
    pts = pareto_sweep(mq, s, x, labels, ratios=[1.5, 2.5, 4.0])
    assert [p["label"] for p in pts[:4]] == [
        "uniform fp32",
        "uniform fp16",
        "uniform int8",
        "uniform int4",
    ]
    assert pts[0]["on_front"]  # nothing beats FP32 quality
    for p in pts:
        assert p["on_front"] == (
            not any(
                q["bytes"] <= p["bytes"]
                and (q["agreement"], q["sqnr_db"]) >= (p["agreement"], p["sqnr_db"])
                and (
                    q["bytes"] < p["bytes"]
                    or (q["agreement"], q["sqnr_db"]) > (p["agreement"], p["sqnr_db"])
                )
                for q in pts
                if q is not p
            )
        )
    md = pareto_markdown(pts)
    assert md.count("\n") == len(pts) + 1
    table = sensitivity_markdown(s)
    assert table.splitlines()[2].split("|")[2].strip() == s.ranking("int8")[0]
    assert '"inf"' in to_json(s)


def test_plot_needs_matplotlib(tmp_path, setup, sens):
    from refquant.mixed.report import plot_pareto

    pytest.importorskip("matplotlib")
    mq, x = setup
    s, labels, _ = sens
    from refquant.mixed.pareto import pareto_sweep

    pts = pareto_sweep(mq, s, x, ratios=[2.0], markers=("fp32",))
    plot_pareto(pts, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


# ------------------------------------------------------------------ files
def test_save_load_keeps_every_precision(tmp_path, setup):
    pytest.importorskip("h5py")
    from refquant.mixed.h5 import load_mixed_model, save_mixed_model

    mq, x = setup
    for prec in (
        {"conv1": "int8", "dw": "bf16", "fc": "int16"},
        {"conv1": "ternary", "dw": "int4", "fc": "binary"},
        {"conv1": "fp16", "dw": "int8", "fc": "fp32"},
    ):
        m = mq.model(prec)
        path = save_mixed_model(m, tmp_path / "m.h5")
        back = load_mixed_model(path)
        assert back.precisions == prec
        assert back.size_bytes() == m.size_bytes()
        np.testing.assert_array_equal(back.run(x), m.run(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]  # no temp file left


def test_load_rejects_bad_files(tmp_path, setup):
    h5py = pytest.importorskip("h5py")
    from refquant.mixed.h5 import load_mixed_model, save_mixed_model

    mq, _ = setup
    path = save_mixed_model(mq.model({"fc": "int8"}), tmp_path / "m.h5")
    with h5py.File(path, "a") as f:
        f["layers/000000"].attrs["precision"] = "fp8"
    with pytest.raises(InvalidArgumentError, match="precision"):
        load_mixed_model(path)
    with h5py.File(path, "a") as f:
        f["layers/000000"].attrs["precision"] = "fp32"
        f["layers/000004"].attrs["precision"] = "fp16"  # fc holds int8 tensors
    with pytest.raises(InvalidArgumentError, match="not part of a fp16 layer"):
        load_mixed_model(path)
    with h5py.File(path, "a") as f:
        f["layers/000004"].attrs["precision"] = "int8"
        del f["layers/000004/weight"]
        f["layers/000004"].create_dataset("weight", data=np.zeros((5, 4), np.int16))
    with pytest.raises(InvalidArgumentError, match="dtype"):
        load_mixed_model(path)
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(InvalidArgumentError, match="not HDF5"):
        load_mixed_model(tmp_path / "x.h5")
    with pytest.raises(InvalidTypeError):
        load_mixed_model(3)


def _payload_bytes(path) -> int:
    import h5py

    total = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                total.append(obj.nbytes) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return sum(total)


def test_file_payload_is_the_reported_size(tmp_path, setup):
    pytest.importorskip("h5py")
    import h5py

    from refquant.mixed.h5 import (
        PAYLOAD_OVERHEAD_PER_LAYER,
        PAYLOAD_OVERHEAD_PER_TENSOR,
        save_mixed_model,
    )

    mq, _ = setup
    w_sizes = {n: mq.graph.node(n).params["weight"].size for n in mq.layers}
    for prec in (
        {"conv1": "ternary", "dw": "int4", "fc": "binary"},
        {"conv1": "int8", "dw": "bf16", "fc": "int16"},
        "ternary",
        "binary",
        "int4",
    ):
        m = mq.model(prec)
        path = save_mixed_model(m, tmp_path / "m.h5")
        payload = _payload_bytes(path)
        bound = PAYLOAD_OVERHEAD_PER_TENSOR * len(m.tensor_qparams)
        bound += PAYLOAD_OVERHEAD_PER_LAYER * len(m.layers)
        assert abs(payload - m.size_bytes()) <= bound, (prec, payload, m.size_bytes())
        bits = {"int4": 4, "ternary": 2, "binary": 1}
        with h5py.File(path, "r") as f:
            for i, layer in enumerate(m.layers):
                if layer.precision in bits:  # packed: ceil(size * bits / 8) bytes
                    ds = f[f"layers/{i:06d}/weight"]
                    want = -(-w_sizes[layer.name] * bits[layer.precision] // 8)
                    assert ds.dtype == np.uint8 and ds.shape == (want,)


def test_packed_codes_round_trip_and_reject_bad_files(tmp_path, setup):
    pytest.importorskip("h5py")
    import h5py

    from refquant.errors import InvalidArgumentError
    from refquant.mixed.h5 import load_mixed_model, pack_codes, save_mixed_model

    # hand-packed: u = code + 1 = [0, 1, 2, 2 | 1] at 2 bits, LSB first
    assert pack_codes(np.array([-1, 0, 1, 1, 0], np.int8), 2, -1).tolist() == [
        0b10100100,
        0b01,
    ]
    assert pack_codes(np.array([1, -1, 1], np.int8), 1, -1).tolist() == [0b101]
    assert pack_codes(np.array([-8, 7], np.int8), 4, -8).tolist() == [0xF0]
    with pytest.raises(InvalidArgumentError, match="fit 2 bits"):
        pack_codes(np.array([3], np.int8), 2, -1)
    mq, _ = setup
    path = save_mixed_model(mq.model("ternary"), tmp_path / "t.h5")
    with h5py.File(path, "r+") as f:
        ds = f["layers/000000/weight"]
        ds[0] = 0xFF  # u = 3: no ternary code
    with pytest.raises(InvalidArgumentError, match="ternary codes"):
        load_mixed_model(path)
    with h5py.File(path, "r+") as f:
        f["layers/000000/weight"].attrs["shape"] = np.array([1000, 1000], np.int64)
    with pytest.raises(InvalidArgumentError, match="bytes"):
        load_mixed_model(path)
