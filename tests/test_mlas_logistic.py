"""The "onnxruntime" logistic (MLAS rational approximation) against a slow oracle.

The oracle evaluates every float32 operation of MLAS's FMA3 logistic kernel on
exact rationals (``fractions.Fraction``) and rounds each result to float32 by
hand (ties to even), a fused multiply-add being one rounding of ``a b + c``.
It shares no code with the vectorized kernel, whose fused multiply-add is
emulated by round-to-odd float64 sums.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from refquant.kernels import activations as act

f32 = np.float32

P = (
    4.37031012579801e-11,
    1.15627324459942e-07,
    6.08574864600143e-05,
    8.51377133304701e-03,
    2.48287947061529e-01,
)
Q = (
    6.10247389755681e-13,
    5.76102136993427e-09,
    6.29106785017040e-06,
    1.70198817374094e-03,
    1.16817656904453e-01,
    9.93151921023180e-01,
)


def round_f32(value: Fraction) -> Fraction:
    """The float32 nearest ``value`` (ties to even), subnormals included."""
    if value == 0:
        return Fraction(0)
    size = abs(value)
    e = size.numerator.bit_length() - size.denominator.bit_length()
    if Fraction(2) ** e > size:
        e -= 1  # now 2**e <= size < 2**(e + 1)
    quantum = Fraction(2) ** (max(e, -126) - 23)
    k = round(size / quantum)  # Fraction.__round__: ties to even
    return (-1 if value < 0 else 1) * k * quantum


def fr(x) -> Fraction:
    return Fraction(float(f32(x)))


def fma(a, b, c):
    return round_f32(a * b + c)


def oracle_sigmoid(d: Fraction) -> Fraction:
    u = min(max(d, Fraction(-18)), Fraction(18))
    w = round_f32(u * u)
    p = fma(w, fr(P[0]), fr(P[1]))
    for coef in P[2:]:
        p = fma(p, w, fr(coef))
    q = fma(w, fr(Q[0]), fr(Q[1]))
    for coef in Q[2:]:
        q = fma(q, w, fr(coef))
    ratio = round_f32(round_f32(u * p) / q)
    return max(Fraction(0), round_f32(ratio + Fraction(1, 2)))


def oracle_code(x, s_x, z_x, s_y, z_y, dtype):
    d = round_f32(fr(s_x) * (x - z_x))
    quotient = round_f32(oracle_sigmoid(d) / fr(s_y))
    i = np.iinfo(dtype)
    return min(max(round(quotient) + z_y, int(i.min)), int(i.max))


def test_fma_emulation_matches_the_rational_oracle():
    rng = np.random.default_rng(7)
    a = (rng.standard_normal(3000) * 2.0 ** rng.integers(-30, 30, 3000)).astype(f32)
    b = (rng.standard_normal(3000) * 2.0 ** rng.integers(-30, 30, 3000)).astype(f32)
    c = (rng.standard_normal(3000) * 2.0 ** rng.integers(-60, 60, 3000)).astype(f32)
    c[:1000] = -(a[:1000].astype(np.float64) * b[:1000]).astype(f32)  # cancellation
    got = act._fma_f32(a, b, c)
    for i in range(a.size):
        want = round_f32(fr(a[i]) * fr(b[i]) + fr(c[i]))
        assert Fraction(float(got[i])) == want, (a[i], b[i], c[i])


def test_fma_emulation_rounds_once():
    """(1 + 2**-12)**2 - 2**-11 + 2**-34 = 1 + 2**-24 + 2**-34.

    Unfused: f32(a b) = 1 + 2**-11 (a tie, to even), plus c gives 1.  The real
    sum lies above the tie 1 + 2**-24, so one rounding gives 1 + 2**-23.
    """
    a = b = np.array([f32(1 + 2**-12)])
    c = np.array([f32(-(2.0**-11) + 2.0**-34)])
    assert float(act._fma_f32(a, b, c)[0]) == 1 + 2.0**-23
    assert float((a * b + c)[0]) == 1.0


def test_onnxruntime_logistic_near_tie_regression():
    """int8 x = -49 at (0.0625, 0) -> (f32(1/235), -128), worked by hand.

    d = -3.0625; MLAS gives s = 0.044680804 (sigmoid is 0.044680870); s / s_y
    = 10.4999895 rounds to 10, so y = -118 (ONNX Runtime 1.32 measured -118).
    The real value 10.500005 rounds to 11: the "exact" profile gives -117.
    """
    s_y = 0.0042553190141916275  # f32(1/235)
    s = oracle_sigmoid(Fraction(-49, 16))
    assert abs(float(s) - 0.044680804) < 1e-9
    assert float(round_f32(s / fr(s_y))) == pytest.approx(10.4999895, abs=1e-6)
    real = 1 / (1 + math.exp(3.0625)) / s_y
    assert 10.5 < real < 10.50001

    x = np.int8([-49])
    kwargs = dict(y_scale=s_y, y_zero_point=-128, out_dtype=np.int8)
    assert act.logistic(x, 0.0625, 0, profile="onnxruntime", **kwargs).tolist() == [
        -118
    ]
    assert act.logistic(x, 0.0625, 0, profile="exact", **kwargs).tolist() == [-117]
    # the same input value as uint8 code 0 with x_zero_point 49, y_zp 0
    u = act.logistic(
        np.uint8([0]),
        0.0625,
        49,
        y_scale=s_y,
        y_zero_point=0,
        out_dtype=np.uint8,
        profile="onnxruntime",
    )
    assert u.tolist() == [10]


ORACLE_CASES = [
    (np.int8, 0.0625, 0, 0.0042553190141916275, -128),
    (np.uint8, 0.0625, 49, 0.0042553190141916275, 0),
    (np.int8, float(f32(0.173)), -17, float(f32(0.0031)), -100),
    (np.uint8, 0.5, 128, 1 / 256, 0),  # reaches the [-18, 18] clamp
    (np.int8, float(f32(3e-4)), 5, float(f32(2e-5)), 3),  # saturates around 1/2
    # fused and unfused multiply-adds give different codes (ORT: fused)
    (np.int8, float(f32(0.1358)), 121, float(f32(0.000505)), -128),  # at x = 60
    (np.uint8, float(f32(0.2297)), 41, float(f32(0.004008)), 0),  # at x = 95
]


@pytest.mark.parametrize("dtype, s_x, z_x, s_y, z_y", ORACLE_CASES)
def test_onnxruntime_logistic_every_code_matches_oracle(dtype, s_x, z_x, s_y, z_y):
    i = np.iinfo(dtype)
    x = np.arange(int(i.min), int(i.max) + 1).astype(dtype)
    got = act.logistic(
        x,
        s_x,
        z_x,
        y_scale=s_y,
        y_zero_point=z_y,
        out_dtype=dtype,
        profile="onnxruntime",
    )
    want = [oracle_code(int(v), s_x, z_x, s_y, z_y, dtype) for v in x]
    assert got.tolist() == want
