"""Fast checks of the peer benchmark's building blocks (benchmarks/peers).

The runner's peak RSS must be the child's (a child that touches 200 MiB
shows at least that much, an idle child far less); failures and timeouts
raise; the onnx.reference contrib ops match hand-computed codes; the FP32
ONNX writer matches refquant's float executor on ONNX Runtime; the augmented
calibration set is reproducible and starts with the centre crops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))

import _runner  # noqa: E402


def _python(code):
    return [sys.executable, "-c", code]


EMIT = f"import sys; sys.path.insert(0, {str(PEERS)!r}); import _runner; "


def test_peak_rss_is_the_childs_own():
    # ru_maxrss of a child also counts the parent's pages at the fork (Linux
    # keeps the larger hiwater mark across exec), and pytest's own process may
    # be hundreds of MiB by now; so both children are started from a small
    # fresh parent, as run_all.py starts them.
    probe = EMIT + (
        "import json, sys\n"
        f"py = {sys.executable!r}\n"
        "emit = " + repr(EMIT) + "\n"
        "idle = _runner.run_child([py, '-c', emit + '_runner.emit({})'], timeout=60)\n"
        "big = _runner.run_child([py, '-c', emit + 'import numpy as np; "
        "a = np.ones(200 * 2**20, np.uint8); "
        '_runner.emit({"sum": int(a[::4096].sum())})\'], timeout=60)\n'
        "print(json.dumps([idle, big]))\n"
    )
    import json
    import subprocess

    out = subprocess.run(
        _python(probe), capture_output=True, text=True, timeout=120, check=True
    )
    idle, big = json.loads(out.stdout.strip().splitlines()[-1])
    assert big["sum"] == 200 * 2**20 // 4096
    assert big["peak_rss_mb"] >= 200
    assert idle["peak_rss_mb"] < big["peak_rss_mb"] - 150


@pytest.mark.parametrize(
    "code, why",
    [("raise SystemExit(3)", "exit code 3"), ("print('no result')", "exit code 0")],
)
def test_failed_child_raises(code, why):
    with pytest.raises(_runner.ChildFailed, match=why):
        _runner.run_child(_python(code), timeout=60)


def test_timeout_kills_the_child():
    with pytest.raises(_runner.ChildFailed, match="timed out after 1 s"):
        _runner.run_child(_python("import time; time.sleep(60)"), timeout=1.0)


def test_median_and_ratio_text():
    assert _runner.median([3.0, 1.0, 2.0]) == 2.0
    assert _runner.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert _runner.ratio_text(30.0, 1.5) == "20x faster"
    assert _runner.ratio_text(1.0, 4.0) == "0.25x (4x slower)"
    with pytest.raises(ValueError, match="median of no values"):
        _runner.median([])


def test_time_calls_counts_and_budget():
    calls = []
    times = _runner.time_calls(lambda: calls.append(1), warmup=2, reps=5, budget_s=1e9)
    assert len(times) == 5 and len(calls) == 7
    times = _runner.time_calls(lambda: None, warmup=0, reps=50, budget_s=0.0)
    assert len(times) == 3  # the budget is spent at once: min_reps calls


def _run_op(op, inputs, outputs, feeds, **attrs):
    onnx = pytest.importorskip("onnx")
    from onnx import helper as h
    from onnx.reference import ReferenceEvaluator
    from onnx_ref_msops import MS, NEW_OPS

    names = list(feeds)
    node = h.make_node(op, inputs, outputs, domain=MS, **attrs)
    vis = [
        h.make_tensor_value_info(
            k, h.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.shape(v)
        )
        for k, v in feeds.items()
    ]
    out = [
        h.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs
    ]
    graph = h.make_graph([node], "t", vis, out)
    model = h.make_model(
        graph, opset_imports=[h.make_opsetid("", 21), h.make_opsetid(MS, 1)]
    )
    ev = ReferenceEvaluator(model, new_ops=NEW_OPS)
    return ev.run(None, {k: np.asarray(feeds[k]) for k in names})[0]


def test_qlinear_add_hand_values():
    # 2 * 0.5 + (-63) * 0.5 = -30.5 -> rint -30 (ties to even) -> + zp 1 = -29
    # 10 * 0.5 + 4 * 0.5 = 7 -> 7 -> + zp 1 = 8
    feeds = {
        "a": np.int8([[2, 10]]),
        "sa": np.float32(0.5),
        "za": np.int8(0),
        "b": np.int8([[-63, 4]]),
        "sb": np.float32(0.5),
        "zb": np.int8(0),
        "sy": np.float32(1.0),
        "zy": np.int8(1),
    }
    got = _run_op("QLinearAdd", list(feeds), ["y"], feeds)
    assert got.dtype == np.int8 and got.tolist() == [[-29, 8]]


def test_qgemm_hand_values():
    # acc = [1, 2] . [3, -4] + 5 = 0 ; [1, 2] . [100, 100] + 0 = 300
    # y = acc * (0.5 * 0.25 / 0.125) + zp 3 = [3, 303 -> saturates at 127]
    feeds = {
        "a": np.int8([[1, 2]]),
        "sa": np.float32(0.5),
        "za": np.int8(0),
        "b": np.int8([[3, -4], [100, 100]]),
        "sb": np.float32([0.25, 0.25]),
        "zb": np.int8([0, 0]),
        "c": np.int32([5, 0]),
        "sy": np.float32(0.125),
        "zy": np.int8(3),
    }
    got = _run_op("QGemm", list(feeds), ["y"], feeds, transB=1)
    assert got.tolist() == [[3, 127]]


def test_qlinear_global_average_pool_hand_values():
    # mean of (q - 1) * 0.5 over 2x2 = mean(0, 1, 2, 3) * 0.5 = 0.75 -> /0.5 = 1.5
    # -> rint 2 (ties to even), + zp -1 -> 1
    x = np.int8([1, 2, 3, 4]).reshape(1, 1, 2, 2)
    feeds = {
        "x": x,
        "sx": np.float32(0.5),
        "zx": np.int8(1),
        "sy": np.float32(0.5),
        "zy": np.int8(-1),
    }
    got = _run_op(
        "QLinearGlobalAveragePool", list(feeds), ["y"], feeds, channels_last=0
    )
    assert got.reshape(-1).tolist() == [1]


def test_fp32_onnx_writer_matches_float_executor():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import _common as C

    from refquant.graph import sequential
    from refquant.ptq import prepare_graph

    rng = np.random.default_rng(0)
    g = sequential(
        [
            (
                "Conv2D",
                {
                    "weight": rng.normal(size=(4, 3, 3, 2)).astype(np.float32),
                    "bias": rng.normal(size=4).astype(np.float32),
                },
                {"padding": ((1, 1), (1, 1)), "activation": "relu6"},
            ),
            ("MaxPool", {}, {"pool_size": 2}),
            ("Flatten", {}, {}),
            (
                "Dense",
                {
                    "weight": rng.normal(size=(5, 16)).astype(np.float32),
                    "bias": rng.normal(size=5).astype(np.float32),
                },
                {},
            ),
        ]
    )
    g = prepare_graph(g)
    x = rng.normal(size=(3, 4, 4, 2)).astype(np.float32)
    sess = ort.InferenceSession(
        C.fp32_onnx(g).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    got = sess.run(None, {g.inputs[0]: C.nchw(x)})[0]
    want = g.run(x)
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_augmented_set_is_seeded_and_starts_with_centre_crops():
    pytest.importorskip("PIL")
    import _common as C

    rng = np.random.default_rng(1)
    photos = [
        rng.integers(0, 256, size=s, dtype=np.uint8)
        for s in [(300, 400, 3), (260, 240, 3)]
    ]
    a = C.augmented_u8(photos, 6, seed=5)
    assert a.shape == (6, 224, 224, 3) and a.dtype == np.uint8
    assert np.array_equal(a[:2], C.imagenet_center_u8(photos))
    assert np.array_equal(a, C.augmented_u8(photos, 6, seed=5))
    assert not np.array_equal(a[2:], C.augmented_u8(photos, 6, seed=6)[2:])
