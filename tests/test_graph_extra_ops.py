"""The graph ops added for imported models: Mul, ScaleShift, Clip, HardSigmoid,
HardSwish, Transpose.

Expected values are hand computed or come from float64 oracles that round
each float32 step the way the kernel's formula says (one rounding per
multiply and per add), so the comparisons are exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from refquant.errors import InvalidArgumentError
from refquant.graph import OP_SPECS, Graph, Node
from refquant.graph.float_ops import FLOAT_KERNELS

F32 = np.float32
NEW_OPS = ("Mul", "ScaleShift", "Clip", "HardSigmoid", "HardSwish", "Transpose")


def run1(op, x, params=None, **attrs):
    return Graph([Node("y", op, ["x"], params or {}, attrs)], "x", "y").run(x)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


def r32(v):
    """Round float64 values to float32 (nearest even)."""
    return np.asarray(v, np.float64).astype(F32)


def test_new_ops_are_registered():
    for op in NEW_OPS:
        assert op in OP_SPECS and op in FLOAT_KERNELS


# ---------------------------------------------------------------- Mul
def test_mul_hand_values_and_broadcast():
    a = np.array([[1.5, -2.0, 3.0]], F32)
    b = np.array([[2.0, 0.25, -1.0]], F32)
    g = Graph([Node("y", "Mul", ["a", "b"])], ["a", "b"], "y")
    assert g.run({"a": a, "b": b}).tolist() == [[3.0, -0.5, -3.0]]
    x, s = rand((2, 4, 5, 3)), rand((2, 1, 1, 3), 1)
    got = g.run({"a": x, "b": s})
    assert np.array_equal(got, r32(x.astype(np.float64) * s))  # one rounding


def test_mul_three_inputs_round_after_each_product():
    x, y, z = rand((2, 6)), rand((2, 6), 1), rand((2, 6), 2)
    g = Graph([Node("m", "Mul", ["x", "y", "z"])], ["x", "y", "z"], "m")
    want = r32(r32(x.astype(np.float64) * y).astype(np.float64) * z)
    assert np.array_equal(g.run({"x": x, "y": y, "z": z}), want)


@pytest.mark.parametrize(
    "sa, sb",
    [((2, 3), (3, 3)), ((2, 3), (2, 1, 3)), ((2, 3), (2, 4))],
)
def test_mul_rejects_bad_shapes(sa, sb):
    with pytest.raises(InvalidArgumentError, match="Mul"):
        FLOAT_KERNELS["Mul"].forward((np.ones(sa, F32), np.ones(sb, F32)), {}, {})


def test_mul_needs_two_inputs():
    with pytest.raises(InvalidArgumentError, match="takes 2 to any number"):
        Node("y", "Mul", ["a"])


# ---------------------------------------------------------------- ScaleShift
def test_scale_shift_hand_values():
    x = np.array([[1.0, 2.0], [-3.0, 0.5]], F32)
    y = run1("ScaleShift", x, {"scale": [2.0, -1.0], "shift": 0.5})
    assert y.tolist() == [[2.5, -1.5], [-5.5, 0.0]]
    assert run1("ScaleShift", x, {"shift": [1.0, 1.0]}).tolist() == [
        [2.0, 3.0],
        [-2.0, 1.5],
    ]
    assert run1("ScaleShift", x, {}).tolist() == x.tolist()


def test_scale_shift_per_channel_matches_two_rounding_oracle():
    x = rand((3, 4, 5, 6))
    s, b = rand((1, 1, 6), 1), rand((6,), 2)
    want = r32(r32(x.astype(np.float64) * s).astype(np.float64) + b)
    got = run1("ScaleShift", x, {"scale": s, "shift": b})
    assert np.array_equal(got, want)


@pytest.mark.parametrize("shape", [(2, 1, 1, 6), (5,), (1, 7, 6)])
def test_scale_shift_rejects_params_that_do_not_fit(shape):
    with pytest.raises(InvalidArgumentError, match="ScaleShift param 'scale'"):
        run1("ScaleShift", rand((2, 4, 5, 6)), {"scale": np.ones(shape)})


def test_scale_shift_rejects_non_finite_params():
    with pytest.raises(InvalidArgumentError, match="must be finite"):
        Node("y", "ScaleShift", ["x"], {"shift": [np.nan]})


# ---------------------------------------------------------------- Clip
def test_clip_hand_values():
    x = np.array([[-5.0, -0.5, 0.25, 3.0, 9.0]], F32)
    assert run1("Clip", x, min=-1.0, max=2.5).tolist() == [[-1.0, -0.5, 0.25, 2.5, 2.5]]
    assert run1("Clip", x, min=0.0).tolist() == [[0.0, 0.0, 0.25, 3.0, 9.0]]
    assert run1("Clip", x, max=-1.0).tolist() == [[-5.0, -1.0, -1.0, -1.0, -1.0]]
    assert run1("Clip", x).tolist() == x.tolist()


@pytest.mark.parametrize(
    "attrs, match",
    [
        ({"min": 2.0, "max": 1.0}, "min <= max"),
        ({"min": float("nan")}, "Clip attr min"),
        ({"max": "6"}, "Clip attr max"),
        ({"max": True}, "Clip attr max"),
    ],
)
def test_clip_rejects_bad_bounds(attrs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        Node("y", "Clip", ["x"], attrs=attrs)


# ---------------------------------------------------------------- hard gates
def test_hard_sigmoid_hand_values():
    x = np.array([[-3.0, -2.5, 0.0, 1.0, 2.5, 4.0]], F32)
    y = run1("HardSigmoid", x)  # alpha 0.2, beta 0.5
    want = [0.0, 0.0, 0.5, float(F32(F32(0.2) * F32(1.0)) + F32(0.5)), 1.0, 1.0]
    assert y.tolist() == [[float(F32(v)) for v in want]]
    y = run1("HardSigmoid", x, alpha=0.25, beta=0.75)
    assert y.tolist() == [[0.0, 0.125, 0.75, 1.0, 1.0, 1.0]]


def test_hard_sigmoid_matches_oracle():
    x = rand((4, 50)) * 4
    a, b = 1 / 6, 0.5
    want = np.clip(r32(r32(x.astype(np.float64) * F32(a)).astype(np.float64) + b), 0, 1)
    assert np.array_equal(run1("HardSigmoid", x, alpha=a, beta=b), want)


def test_hard_swish_hand_values():
    x = np.array([[-4.0, -3.0, -1.5, 0.0, 1.0, 3.0, 10.0]], F32)
    y = run1("HardSwish", x)
    # x * clip(x + 3, 0, 6) / 6: -1.5 * 1.5 / 6 = -0.375; 1 * 4 / 6 = 2/3
    assert y.tolist() == [[0.0, 0.0, -0.375, 0.0, float(F32(4) / F32(6)), 3.0, 10.0]]


def test_hard_swish_matches_float32_oracle():
    x = rand((3, 40)) * 5
    x64 = x.astype(np.float64)
    gate = np.clip(r32(x64 + 3), 0, 6)
    want = r32(r32(x64 * gate).astype(np.float64) / 6)
    assert np.array_equal(run1("HardSwish", x), want)


@pytest.mark.parametrize("key, value", [("alpha", float("inf")), ("beta", "0.5")])
def test_hard_sigmoid_rejects_bad_attrs(key, value):
    with pytest.raises(InvalidArgumentError, match=f"HardSigmoid attr {key}"):
        Node("y", "HardSigmoid", ["x"], attrs={key: value})


# ---------------------------------------------------------------- Transpose
def test_transpose_nhwc_to_nchw_and_back():
    x = np.arange(2 * 3 * 4 * 5, dtype=F32).reshape(2, 3, 4, 5)
    y = run1("Transpose", x, perm=(0, 3, 1, 2))
    assert y.shape == (2, 5, 3, 4) and y[1, 4, 2, 3] == x[1, 2, 3, 4]
    assert np.array_equal(run1("Transpose", y, perm=(0, 2, 3, 1)), x)
    assert y.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("perm", [(1, 0, 2), (0, 1, 1), (0, 2), (), "012", (0, 1.0)])
def test_transpose_rejects_bad_perm(perm):
    with pytest.raises(InvalidArgumentError, match="Transpose attr perm"):
        Node("y", "Transpose", ["x"], attrs={"perm": perm})


def test_transpose_rank_mismatch_names_the_node():
    with pytest.raises(InvalidArgumentError, match="node 'y' .*rank 3"):
        run1("Transpose", np.zeros((2, 3, 4), F32), perm=(0, 2, 3, 1))


def test_transpose_needs_perm():
    with pytest.raises(InvalidArgumentError, match="needs attr 'perm'"):
        Node("y", "Transpose", ["x"])
