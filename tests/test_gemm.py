"""Exactness of the integer GEMM on float BLAS, against Python-int oracles."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import (
    AccumulatorOverflowError,
    InvalidArgumentError,
    InvalidTypeError,
)
from refquant.kernels.gemm import (
    PreparedGemmOperand,
    exact_affine_gemm,
    exact_int_gemm,
    gemm_path,
    plan_gemm,
    prepare_weights,
)


def oracle(a, za, b, zb):
    """sum_k (a - za[i]) (b - zb[j]) in Python ints (object arrays)."""
    za = np.asarray(za, dtype=object)
    zb = np.asarray(zb, dtype=object)
    a_s = a.astype(object) - (za[..., None] if za.ndim else za)
    b_s = b.astype(object) - (zb[..., None, :] if zb.ndim else zb)
    return np.matmul(a_s, b_s)


def assert_exact(got, expected):
    assert got.dtype == np.int64
    assert got.shape == expected.shape
    assert (got.astype(object) == expected).all()


# -- the path and its bound -----------------------------------------------------


@pytest.mark.parametrize(
    "k, p, path, k_chunk, n_chunks",
    [
        (1024, 2**14, "float32", 1024, 1),  # 1024 * 128 * 128 = 2**24: the limit
        (1025, 2**14, "float32_chunked", 513, 2),  # one past it
        (258, 255 * 255, "float32", 258, 1),  # 2**24 // 65025 = 258
        (259, 255 * 255, "float32_chunked", 130, 2),
        (2**31, 2**22, "float64", 2**31, 1),  # 16x8: 2**31 * 2**22 = 2**53
        (2**31 + 1, 2**22, "float64_chunked", 2**30 + 1, 2),
        (8, 2**50, "float64", 8, 1),
        (9, 2**50, "int64", 9, 1),  # 2**53 // 2**50 = 8 < 64 terms per call
        (0, 5, "float32", 1, 1),
    ],
)
def test_gemm_path_boundaries(k, p, path, k_chunk, n_chunks):
    plan = gemm_path(k, p)
    assert (plan.path, plan.k_chunk, plan.n_chunks) == (path, k_chunk, n_chunks)


def test_plain_float32_is_inexact_past_the_bound():
    # Why the chunking exists: 1024 * 128 * 128 + 1 = 2**24 + 1 is not a float32.
    a = np.array([[128] * 1024 + [1]], np.int16)
    b = a.T.copy()
    plain = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)
    assert plain[0, 0] == 2**24  # the 1 is lost
    assert exact_int_gemm(a, b)[0, 0] == 2**24 + 1


# -- extreme operands at the largest K of one float32 call and one past it ------


def extreme_rows(draw, shape, low, high):
    """Arrays of the two extremes and random values, holding both extremes."""
    values = draw(
        hnp.arrays(
            np.int64,
            shape,
            elements=st.one_of(st.sampled_from([low, high]), st.integers(low, high)),
        )
    )
    flat = values.reshape(-1)
    flat[0], flat[-1] = low, high  # centring cannot shrink the range
    return values


@settings(max_examples=20)
@given(data=st.data(), k=st.sampled_from([1024, 1025]))
def test_int8_at_and_past_float32_limit(data, k):
    a = extreme_rows(data.draw, (3, k), -128, 127).astype(np.int8)
    b = extreme_rows(data.draw, (k, 2), -128, 127).astype(np.int8)
    plan = plan_gemm(a, b)
    assert plan.term_bound * min(plan.k_chunk, k) <= 2**24
    assert plan.path == ("float32" if k == 1024 else "float32_chunked")
    assert_exact(exact_int_gemm(a, b), oracle(a, 0, b, 0))


@pytest.mark.parametrize("k", [1024, 1025, 4097])
@pytest.mark.parametrize("value_a, value_b", [(-128, -128), (127, 127), (-128, 127)])
def test_constant_extremes(k, value_a, value_b):
    a = np.full((2, k), value_a, np.int8)
    b = np.full((k, 3), value_b, np.int8)
    got = exact_int_gemm(a, b)
    assert (got == k * value_a * value_b).all()


@pytest.mark.parametrize("k", [258, 259, 1024, 1025])
def test_shifted_255_values(k):
    # int8 127 - (-128) = 255 on both sides: the shifted operands span 255.
    a = np.full((2, k), 127, np.int8)
    b = np.full((k, 2), 127, np.int8)
    got = exact_affine_gemm(a, -128, b, -128)
    assert (got == k * 255 * 255).all()
    a[0, ::2] = -128  # shifted values 0 and 255 interleaved
    b[1::3, 1] = -128
    assert_exact(exact_affine_gemm(a, -128, b, -128), oracle(a, -128, b, -128))


@settings(max_examples=25)
@given(data=st.data(), k=st.sampled_from([255, 256, 257, 258, 259, 513, 1024, 1025]))
def test_uint8_minus_zero_point_at_bound(data, k):
    a = extreme_rows(data.draw, (2, k), 0, 255).astype(np.uint8)
    b = extreme_rows(data.draw, (k, 2), 0, 255).astype(np.uint8)
    za = data.draw(st.integers(0, 255))
    zb = data.draw(st.integers(0, 255))
    assert_exact(exact_affine_gemm(a, za, b, zb), oracle(a, za, b, zb))


# -- general properties ----------------------------------------------------------

DTYPES = [np.int8, np.uint8, np.int16]


@st.composite
def operands(draw, max_k=40):
    da, db = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(DTYPES))
    m, k, n = (
        draw(st.integers(1, 4)),
        draw(st.integers(0, max_k)),
        draw(st.integers(1, 4)),
    )
    a = draw(hnp.arrays(da, (m, k)))
    b = draw(hnp.arrays(db, (k, n)))
    ia, ib = np.iinfo(da), np.iinfo(db)
    za = draw(
        st.one_of(
            st.integers(int(ia.min), int(ia.max)),
            hnp.arrays(np.int64, (m,), elements=st.integers(int(ia.min), int(ia.max))),
        )
    )
    zb = draw(
        st.one_of(
            st.integers(int(ib.min), int(ib.max)),
            hnp.arrays(np.int64, (n,), elements=st.integers(int(ib.min), int(ib.max))),
        )
    )
    return a, za, b, zb


@given(operands())
def test_affine_gemm_matches_oracle(ops):
    a, za, b, zb = ops
    assert_exact(exact_affine_gemm(a, za, b, zb), oracle(a, za, b, zb))


@settings(max_examples=30)
@given(data=st.data(), k=st.sampled_from([1, 7, 3000]))
def test_wide_operands_take_float64_and_int64_paths(data, k):
    # int32 x int32 terms reach 2**62: float64 (chunked) or the int64 fallback.
    hi = data.draw(st.sampled_from([2**20, 2**30, 2**31 - 1]))
    a = data.draw(hnp.arrays(np.int64, (2, k), elements=st.integers(-hi, hi)))
    b = data.draw(hnp.arrays(np.int64, (k, 2), elements=st.integers(-hi, hi)))
    expected = oracle(a, 0, b, 0)
    if k * int(np.abs(a).max()) * int(np.abs(b).max()) > 2**63 - 1:
        with pytest.raises(AccumulatorOverflowError):
            exact_int_gemm(a, b)
        return
    assert_exact(exact_int_gemm(a, b), expected)


def test_each_path_is_exercised_exactly():
    rng = np.random.default_rng(7)
    cases = {
        "float32": (
            rng.integers(-128, 128, (3, 100)),
            rng.integers(-128, 128, (100, 2)),
        ),
        "float32_chunked": (
            rng.integers(-128, 128, (3, 3000)),
            rng.integers(-128, 128, (3000, 2)),
        ),
        "float64": (
            rng.integers(-(2**15), 2**15, (3, 3000)),
            rng.integers(-128, 128, (3000, 2)),
        ),
        "float64_chunked": (
            rng.integers(-(2**30), 2**30, (2, 300)),
            rng.integers(-(2**15), 2**15, (300, 2)),
        ),
        "int64": (
            rng.integers(-(2**30), 2**30, (2, 5)),
            rng.integers(-(2**30), 2**30, (5, 2)),
        ),
    }
    for path, (a, b) in cases.items():
        a[0, 0], a[0, 1] = a.min() - 1, a.max() + 1  # no centring shortcut
        assert plan_gemm(a, b).path == path
        assert_exact(exact_int_gemm(a, b), oracle(a, 0, b, 0))


def test_batched_broadcasting_and_per_row_column_zero_points():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (2, 1, 4, 5)).astype(np.uint8)
    b = rng.integers(-128, 128, (3, 5, 6)).astype(np.int8)
    za = rng.integers(0, 256, (2, 1, 4))
    zb = rng.integers(-128, 128, (3, 6))
    got = exact_affine_gemm(a, za, b, zb)
    assert got.shape == (2, 3, 4, 6)
    for i in range(2):
        for j in range(3):
            assert_exact(got[i, j], oracle(a[i, 0], za[i, 0], b[j], zb[j]))


def test_hand_example():
    a = np.array([[1, -2, 3], [4, 0, -1]], np.int8)
    b = np.array([[2, 0], [1, -1], [0, 5]], np.int8)
    assert exact_int_gemm(a, b).tolist() == [[0, 17], [8, -5]]
    # zero points: a - 1 = [[0,-3,2],[3,-1,-2]], b - (-1) = [[3,1],[2,0],[1,6]]
    assert exact_affine_gemm(a, 1, b, -1).tolist() == [[-4, 12], [5, -9]]


# -- invalid input ---------------------------------------------------------------

A = np.zeros((2, 3), np.int8)
B = np.zeros((3, 4), np.int8)


@pytest.mark.parametrize(
    "args, error, text",
    [
        ((A.astype(np.float32), B), InvalidTypeError, "a must be an integer array"),
        ((A, B.astype(bool)), InvalidTypeError, "b must be an integer array"),
        ((np.zeros(3, np.int8), B), InvalidArgumentError, "a must have at least 2"),
        (
            (A, np.zeros((4, 4), np.int8)),
            InvalidArgumentError,
            "a.shape[-1] must equal",
        ),
        (
            (np.zeros((2, 2, 3), np.int8), np.zeros((3, 3, 4), np.int8)),
            InvalidArgumentError,
            "batch dimensions must broadcast",
        ),
        (
            (np.array([[2**63]], np.uint64), np.ones((1, 1), np.int8)),
            InvalidArgumentError,
            "a values must fit int64",
        ),
    ],
)
def test_exact_int_gemm_rejects(args, error, text):
    with pytest.raises(error, match=None) as info:
        exact_int_gemm(*args)
    assert text in str(info.value)


@pytest.mark.parametrize(
    "za, zb, error, text",
    [
        (0.5, 0, InvalidTypeError, "a_zero_point must be an int"),
        (
            0,
            np.zeros(3, np.int64),
            InvalidArgumentError,
            "b_zero_point must be a scalar",
        ),
        (
            np.zeros(3, np.int64),
            0,
            InvalidArgumentError,
            "a_zero_point must be a scalar",
        ),
    ],
)
def test_exact_affine_gemm_rejects(za, zb, error, text):
    with pytest.raises(error) as info:
        exact_affine_gemm(A, za, B, zb)
    assert text in str(info.value)


# -- prepared right operands and float results ----------------------------------


def assert_same_integers(got, expected):
    """Exact integer values in any dtype (float results hold integers)."""
    assert got.shape == expected.shape
    assert got.dtype in (np.float32, np.float64, np.int64)
    flat = got.reshape(-1)
    ints = [int(v) for v in flat.tolist()]
    assert all(float(v) == float(i) for v, i in zip(flat.tolist(), ints))
    assert (np.array(ints, dtype=object).reshape(got.shape) == expected).all()


@settings(max_examples=20)
@given(data=st.data(), k=st.sampled_from([1024, 1025]))
def test_prepared_and_float_result_at_and_past_float32_limit(data, k):
    a = extreme_rows(data.draw, (3, k), -128, 127).astype(np.int8)
    b = extreme_rows(data.draw, (k, 2), -128, 127).astype(np.int8)
    expected = oracle(a, 0, b, 0)
    prepared = prepare_weights(b)
    assert_exact(exact_int_gemm(a, prepared), expected)
    got = exact_int_gemm(a, prepared, result="float")
    # K = 1024: one float32 call, |C| <= 2**24; K = 1025: two float32 chunks
    # summed in float64.
    assert got.dtype == (np.float32 if k == 1024 else np.float64)
    assert_same_integers(got, expected)
    assert_same_integers(exact_int_gemm(a, b, result="float"), expected)


def test_float_result_past_the_bound_keeps_the_one():
    a = np.array([[128] * 1024 + [1]], np.int16)
    got = exact_int_gemm(a, a.T.copy(), result="float")
    assert got.dtype == np.float64
    assert int(got[0, 0]) == 2**24 + 1


@given(operands())
def test_prepared_operand_matches_oracle(ops):
    a, za, b, zb = ops
    expected = oracle(a, za, b, zb)
    prepared = prepare_weights(b, zb)
    assert_exact(exact_affine_gemm(a, za, prepared, None), expected)
    assert_exact(exact_affine_gemm(a, za, prepared, zb), expected)  # same zp
    assert_same_integers(
        exact_affine_gemm(a, za, prepared, None, result="float"), expected
    )
    assert plan_gemm(a, prepared, za, None).path in (
        "float32",
        "float32_chunked",
        "float64",
    )


@given(operands())
def test_float_result_matches_oracle(ops):
    a, za, b, zb = ops
    got = exact_affine_gemm(a, za, b, zb, result="float")
    assert_same_integers(got, oracle(a, za, b, zb))


def test_float_result_dtypes_follow_the_bound():
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (4, 64)).astype(np.int8)
    b = rng.integers(-128, 128, (64, 3)).astype(np.int8)
    # no zero point: one float32 call, every value within 64 * 2**14 = 2**20
    assert exact_int_gemm(a, b, result="float").dtype == np.float32
    # zero point -128 at K = 600: 600 * 255 * 128 > 2**24, so A is centred at
    # the midpoint -1 and the correction da * colsum(B') is added in float64.
    a = rng.integers(-128, 128, (4, 600)).astype(np.int8)
    b = rng.integers(-128, 128, (600, 3)).astype(np.int8)
    plan = plan_gemm(a, b, -128, 0)
    assert (plan.a_center, plan.b_center) == (-1, None)
    got = exact_affine_gemm(a, -128, b, 0, result="float")
    assert got.dtype == np.float64
    assert_same_integers(got, oracle(a, -128, b, 0))
    # int32 x int32 terms beyond float64: the int64 matmul, returned as int64
    big = np.array([[2**31 - 1, -(2**30)]], np.int64)
    got = exact_int_gemm(big, big.T.copy(), result="float")
    assert got.dtype == np.int64
    assert int(got[0, 0]) == (2**31 - 1) ** 2 + 2**60


def test_prepared_operand_is_reused_across_plans_and_copied():
    rng = np.random.default_rng(9)
    b = rng.integers(-127, 128, (300, 5)).astype(np.int8)
    prepared = prepare_weights(b, 3)
    b_copy = b.copy()
    b[:] = 0  # the prepared copy must not see this
    assert isinstance(prepared, PreparedGemmOperand)
    assert prepared.shape == (300, 5)
    assert not prepared.values.flags.writeable
    for dtype, lo, hi, za in [
        (np.int8, -128, 128, 0),
        (np.uint8, 0, 256, 200),
        (np.int16, -(2**15), 2**15, 0),  # float64 path on the same operand
        (np.int8, -128, 128, -128),
    ]:
        a = rng.integers(lo, hi, (7, 300)).astype(dtype)
        for _ in range(2):  # second call uses the cached float copy and sums
            got = exact_affine_gemm(a, za, prepared, None)
            assert_exact(got, oracle(a, za, b_copy, 3))


def test_prepared_batched_per_column_zero_points():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (2, 1, 4, 5)).astype(np.uint8)
    b = rng.integers(-128, 128, (3, 5, 6)).astype(np.int8)
    za = rng.integers(0, 256, (2, 1, 4))
    zb = rng.integers(-128, 128, (3, 6))
    prepared = prepare_weights(b, zb)
    assert_exact(
        exact_affine_gemm(a, za, prepared, None), exact_affine_gemm(a, za, b, zb)
    )
    for i in range(2):
        for j in range(3):
            got = exact_affine_gemm(a, za, prepared, None)[i, j]
            assert_exact(got, oracle(a[i, 0], za[i, 0], b[j], zb[j]))


@pytest.mark.parametrize(
    "args, error, text",
    [
        ((A.astype(np.float32), 0), InvalidTypeError, "b must be an integer array"),
        ((np.zeros(3, np.int8), 0), InvalidArgumentError, "b must have at least 2"),
        ((A, 0.5), InvalidTypeError, "b_zero_point must be an int"),
        (
            (A, np.zeros(2, np.int64)),
            InvalidArgumentError,
            "b_zero_point must be a scalar",
        ),
    ],
)
def test_prepare_weights_rejects(args, error, text):
    with pytest.raises(error) as info:
        prepare_weights(*args)
    assert text in str(info.value)


def test_prepared_zero_point_mismatch_and_bad_result_are_errors():
    prepared = prepare_weights(B, 2)
    with pytest.raises(InvalidArgumentError) as info:
        exact_affine_gemm(A, 0, prepared, 0)
    assert "b_zero_point must be None or equal" in str(info.value)
    with pytest.raises(InvalidArgumentError) as info:
        exact_int_gemm(A, prepared)  # exact_int_gemm means zero point 0
    assert "got b_zero_point=0" in str(info.value)
    with pytest.raises(InvalidArgumentError) as info:
        exact_int_gemm(A, B, result="int32")
    assert "result must be 'int64' or 'float'; got result='int32'" in str(info.value)
    with pytest.raises(InvalidArgumentError) as info:
        exact_int_gemm(np.zeros((2, 4), np.int8), prepare_weights(B))
    assert "a.shape[-1] must equal" in str(info.value)


def test_int64_overflow_is_an_error():
    a = np.full((1, 4), 2**31, np.int64)
    with pytest.raises(AccumulatorOverflowError, match="exceed int64"):
        exact_int_gemm(a, a.T.copy())
