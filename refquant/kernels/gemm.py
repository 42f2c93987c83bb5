"""Exact integer matrix products on floating-point BLAS.

``C[i, j] = sum_k (A[i, k] - a_zp[i]) * (B[k, j] - b_zp[j])``, exact in int64.

A dot product of ``k`` integer terms, each of magnitude at most ``P``, is exact
in a binary floating-point format with a ``p``-bit significand whenever
``k * P <= 2**p``: every partial sum, in any order the BLAS chooses, is then an
integer of magnitude at most ``2**p`` and so representable, so no addition or
fused multiply-add rounds.  float32 has ``p = 24`` and float64 ``p = 53``.

The operands are first centred: ``A' = A - c_a`` with ``c_a`` the zero point or
the midpoint of A's range, whichever gives the cheaper plan, and the zero
points are restored exactly with int64 row and column sums (gemmlowp's offset
trick).  With ``P = max|A'| * max|B'|`` the path is (see specs/integer_gemm.md):

1. ``float32``: ``K * P <= 2**24``, one float32 BLAS call.
2. ``float32_chunked``: chunks of ``k_chunk = 2**24 // P >= 256`` columns of K,
   each an exact float32 product, summed in float64 (exact while
   ``K * P <= 2**53``) or int64.
3. ``float64``: ``K * P <= 2**53``, one float64 BLAS call.
4. ``float64_chunked``: chunks of ``2**53 // P >= 64`` summed in int64.
5. ``int64``: NumPy's integer matmul (no BLAS), exact while the result
   bound fits int64.

For 8-bit operands ``max|A'| <= 128`` and ``max|B'| <= 128`` after centring, so
``P <= 2**14`` and K up to 1024 takes one float32 call.  A result whose bound
``K * max|A - a_zp| * max|B - b_zp|`` exceeds ``2**63 - 1`` raises
:class:`~refquant.errors.AccumulatorOverflowError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from refquant.errors import (
    AccumulatorOverflowError,
    InvalidArgumentError,
    InvalidTypeError,
)

FLOAT32_EXACT = 2**24  # largest power of two below which every integer is a float32
FLOAT64_EXACT = 2**53  # the same for float64
INT64_MAX = 2**63 - 1
MIN_FLOAT32_CHUNK = 256  # below this, one float64 call beats many float32 calls
MIN_FLOAT64_CHUNK = 64  # below this, the int64 matmul is used

_PATH_RANK = {
    "float32": 0,
    "float32_chunked": 1,
    "float64": 2,
    "float64_chunked": 3,
    "int64": 4,
}


@dataclass(frozen=True)
class GemmPlan:
    """How one exact product is computed.

    Attributes
    ----------
    path : str
        One of "float32", "float32_chunked", "float64", "float64_chunked",
        "int64".
    k_chunk : int
        Columns of K per BLAS call (K itself for an unchunked path).
    n_chunks : int
        Number of BLAS calls.
    term_bound : int
        ``P = max|A'| * max|B'|``, the largest magnitude of one product term.
    a_center, b_center : int or None
        The constants subtracted before the BLAS call; None means the zero
        point itself was subtracted (no correction terms).
    a_dev, b_dev : int
        ``max|A'|`` and ``max|B'|`` after that subtraction.
    """

    path: str
    k_chunk: int
    n_chunks: int
    term_bound: int
    a_center: int | None = None
    b_center: int | None = None
    a_dev: int = 0
    b_dev: int = 0


def gemm_path(k: int, term_bound: int) -> GemmPlan:
    """Pick the cheapest exact path for K terms each of magnitude <= term_bound.

    >>> gemm_path(1024, 128 * 128).path
    'float32'
    >>> gemm_path(1025, 128 * 128)
    GemmPlan(path='float32_chunked', k_chunk=513, n_chunks=2, term_bound=16384, \
a_center=None, b_center=None, a_dev=0, b_dev=0)
    """
    k, p = int(k), int(term_bound)
    if k * p <= FLOAT32_EXACT:
        return GemmPlan("float32", max(k, 1), 1, p)
    if FLOAT32_EXACT // p >= MIN_FLOAT32_CHUNK:
        return _chunked("float32_chunked", k, FLOAT32_EXACT // p, p)
    if k * p <= FLOAT64_EXACT:
        return GemmPlan("float64", k, 1, p)
    if FLOAT64_EXACT // p >= MIN_FLOAT64_CHUNK:
        return _chunked("float64_chunked", k, FLOAT64_EXACT // p, p)
    return GemmPlan("int64", k, 1, p)


def _chunked(path: str, k: int, max_chunk: int, p: int) -> GemmPlan:
    n_chunks = -(-k // max_chunk)
    return GemmPlan(path, -(-k // n_chunks), n_chunks, p)  # balanced chunks


def exact_int_gemm(a, b, *, result="int64") -> np.ndarray:
    """Exact integer product ``C = A @ B`` in int64, computed on float BLAS.

    ``C[i, j] = sum_k A[i, k] * B[k, j]``; no rounding anywhere (the path and
    its bound are in the module docstring and specs/integer_gemm.md).

    Parameters
    ----------
    a : array_like of int, shape (..., M, K)
    b : array_like of int, shape (..., K, N), or PreparedGemmOperand
        Leading dimensions broadcast as in :func:`numpy.matmul`.  A prepared
        operand (:func:`prepare_weights`) must have zero point 0 here.
    result : {"int64", "float"}
        "float" returns the same exact integers in the float array the path
        produced, skipping the int64 conversion (see :func:`exact_affine_gemm`).

    Returns
    -------
    numpy.ndarray of int64 (or float32 / float64 for ``result="float"``),
    shape (..., M, N)

    Examples
    --------
    >>> exact_int_gemm(np.array([[127, -128]], np.int8),
    ...                np.array([[-128], [-128]], np.int8)).tolist()
    [[128]]
    """
    return exact_affine_gemm(a, 0, b, 0, result=result)


def exact_affine_gemm(a, a_zero_point, b, b_zero_point, *, result="int64"):
    """Exact ``C[i, j] = sum_k (A[i, k] - a_zp[i]) * (B[k, j] - b_zp[j])``.

    Parameters
    ----------
    a : array_like of int, shape (..., M, K)
    a_zero_point : int or array_like of int broadcastable to (..., M)
        Per tensor or per row of A.
    b : array_like of int, shape (..., K, N), or PreparedGemmOperand
        A prepared operand carries its own zero point and float copies.
    b_zero_point : int or array_like of int broadcastable to (..., N), or None
        Per tensor or per column of B; None (or the same values) when ``b`` is
        a :class:`PreparedGemmOperand`.
    result : {"int64", "float"}
        "int64" (default): an int64 array.  "float": the same exact integers
        left in the dtype the path computed them in, with no int64 pass:
        float32 for one float32 BLAS call without correction terms (every
        value in ``[-2**24, 2**24]``), float64 when every term of the offset
        expansion is within ``2**53``, int64 otherwise.

    Returns
    -------
    numpy.ndarray, shape (..., M, N), exact.

    Examples
    --------
    >>> a = np.array([[127, 127]], np.int8)   # minus -128: 255, 255
    >>> b = np.array([[-128], [127]], np.int8)
    >>> exact_affine_gemm(a, -128, b, 0).tolist()  # 255*-128 + 255*127
    [[-255]]
    >>> exact_affine_gemm(a, 0, b, 0, result="float").dtype.name
    'float32'
    """
    if result not in ("int64", "float"):
        raise InvalidArgumentError(
            f"result must be 'int64' or 'float'; got result={result!r}"
        )
    a = _as_int_matrix("a", a)
    prepared = b if isinstance(b, PreparedGemmOperand) else None
    if prepared is not None:
        b = prepared.values
        zb = prepared._same_zero_point(b_zero_point)
    else:
        b = _as_int_matrix("b", b)
    _check_inner(a, b)
    za = _zero_point("a_zero_point", a_zero_point, a.shape[:-1])
    if prepared is None:
        zb = _zero_point("b_zero_point", b_zero_point, b.shape[:-2] + b.shape[-1:])
    plan = _plan(a, za, b, zb, None if prepared is None else prepared.value_range)

    ca = _offset_of(za, plan.a_center, rows=True)  # scalar or (..., M, 1)
    cb = _offset_of(zb, plan.b_center, rows=False)  # scalar or (..., 1, N)
    a_op = _centered(a, ca, plan.a_dev, plan.path)  # (..., M, K) A' = A - ca
    if prepared is None:
        b_op = _centered(b, cb, plan.b_dev, plan.path)  # (..., K, N) B' = B - cb
    else:
        b_op = prepared._centered(cb, plan)  # cached float copy of B'
    as_float = result == "float"
    offsets = plan.a_center is not None or plan.b_center is not None
    c = _blas_product(a_op, b_op, plan, as_float=as_float and not offsets)
    if not offsets:
        return c  # (..., M, N) exact A' @ B'
    col = None if prepared is None else prepared._colsum(cb, plan)
    if as_float and _offset_bound(a.shape[-1], plan, za, zb) <= FLOAT64_EXACT:
        c = c.astype(np.float64)  # every partial sum below is an integer <= 2**53
    return _add_offsets(c, plan, (a, a_op, za, ca), (b, b_op, zb, cb), col)


def plan_gemm(a, b, a_zero_point=0, b_zero_point=0) -> GemmPlan:
    """The :class:`GemmPlan` :func:`exact_affine_gemm` uses for these operands."""
    a = _as_int_matrix("a", a)
    if isinstance(b, PreparedGemmOperand):
        zb = b._same_zero_point(b_zero_point)
        b, known = b.values, b.value_range
    else:
        b, known = _as_int_matrix("b", b), None
        zb = _zero_point("b_zero_point", b_zero_point, b.shape[:-2] + b.shape[-1:])
    _check_inner(a, b)
    za = _zero_point("a_zero_point", a_zero_point, a.shape[:-1])
    return _plan(a, za, b, zb, known)


class PreparedGemmOperand:
    """Right operand B of :func:`exact_affine_gemm`, prepared once for many calls.

    Holds a read-only copy of the integer values ``B`` (..., K, N), its zero
    point, its data range (so planning never scans B again) and, filled on
    first use and kept, the centred float copies ``B' = B - c_b`` and their
    int64 column sums ``colsum(B')`` that (2.1) needs.  A quantized model
    prepares each weight once; every product with it then skips the weight's
    conversion and sums.  Build it with :func:`prepare_weights`.

    Attributes
    ----------
    values : numpy.ndarray of int, shape (..., K, N), read-only
    zero_point : numpy.ndarray of int64, broadcastable to (..., N)
    value_range : (int, int)
        ``(min(B), max(B))`` (``(0, 0)`` when empty).
    """

    __slots__ = ("values", "zero_point", "value_range", "_cache")

    def __init__(self, values: np.ndarray, zero_point: np.ndarray):
        self.values = values
        self.zero_point = zero_point
        self.value_range = _range(values)
        self._cache: dict = {}

    @property
    def shape(self) -> tuple:
        return self.values.shape

    def __repr__(self) -> str:
        return (
            f"PreparedGemmOperand(shape={self.values.shape}, "
            f"dtype={self.values.dtype}, zero_point={self.zero_point.tolist()!r})"
        )

    def _same_zero_point(self, z) -> np.ndarray:
        """The prepared zero point; ``z`` must be None or the same values."""
        if z is None:
            return self.zero_point
        if self.zero_point.ndim == 0 and _is_int_scalar(z):
            if int(z) == int(self.zero_point):
                return self.zero_point
        shape = self.values.shape[:-2] + self.values.shape[-1:]
        z = _zero_point("b_zero_point", z, shape)
        if not np.array_equal(
            np.broadcast_to(z, shape), np.broadcast_to(self.zero_point, shape)
        ):
            raise InvalidArgumentError(
                "b_zero_point must be None or equal the prepared operand's zero "
                f"point {self.zero_point.tolist()!r}; got b_zero_point={z.tolist()!r}"
            )
        return self.zero_point

    def _centered(self, cb, plan: GemmPlan) -> np.ndarray:
        key = ("op", plan.b_center, _PATH_DTYPE[plan.path])
        if key not in self._cache:
            op = _centered(self.values, cb, plan.b_dev, plan.path)
            op.setflags(write=False)
            self._cache[key] = op
        return self._cache[key]

    def _colsum(self, cb, plan: GemmPlan) -> np.ndarray:
        key = ("colsum", plan.b_center)
        if key not in self._cache:
            op = self._centered(cb, plan)
            col = _exact_sum(self.values, op, cb, plan.b_dev, axis=-2)
            col.setflags(write=False)
            self._cache[key] = col
        return self._cache[key]


def prepare_weights(b, b_zero_point=0) -> PreparedGemmOperand:
    """Prepare the right GEMM operand once: ``B - b_zp`` for many products.

    The result is accepted wherever :func:`exact_affine_gemm` takes ``b`` (and
    by :func:`refquant.kernels.linear.fully_connected_accumulator` as ``w``,
    prepared from ``w.T``); results are identical to passing the raw array.

    Parameters
    ----------
    b : array_like of int, shape (..., K, N)
        Copied, so later changes to the caller's array do not reach it.
    b_zero_point : int or array_like of int broadcastable to (..., N)

    Returns
    -------
    PreparedGemmOperand

    Examples
    --------
    >>> w = prepare_weights(np.array([[1, 2], [3, 4]], np.int8), 1)
    >>> exact_affine_gemm(np.array([[1, 1]], np.int8), 0, w, None).tolist()
    [[2, 4]]
    """
    b = _as_int_matrix("b", b)
    zb = _zero_point("b_zero_point", b_zero_point, b.shape[:-2] + b.shape[-1:])
    values = np.array(b, copy=True)
    values.setflags(write=False)
    zb.setflags(write=False)
    return PreparedGemmOperand(values, zb)


# -- validation ---------------------------------------------------------------


def _as_int_matrix(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        raise InvalidTypeError(
            f"{name} must be an integer array; got {name} of dtype {x.dtype}"
        )
    if x.ndim < 2:
        raise InvalidArgumentError(
            f"{name} must have at least 2 dimensions (..., rows, cols); got "
            f"{name}.shape={x.shape}"
        )
    if x.dtype == np.uint64 and x.size and int(x.max()) > INT64_MAX:
        raise InvalidArgumentError(
            f"{name} values must fit int64; got max {name}={int(x.max())}"
        )
    return x


def _check_inner(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[-1] != b.shape[-2]:
        raise InvalidArgumentError(
            f"a.shape[-1] must equal b.shape[-2]; got a.shape={a.shape}, "
            f"b.shape={b.shape}"
        )
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise InvalidArgumentError(
            f"batch dimensions must broadcast; got a.shape={a.shape}, b.shape={b.shape}"
        ) from None


def _is_int_scalar(z) -> bool:
    return isinstance(z, (int, np.integer)) and not isinstance(z, (bool, np.bool_))


def _zero_point(name: str, z, shape: tuple) -> np.ndarray:
    if _is_int_scalar(z) and -INT64_MAX - 1 <= z <= INT64_MAX:
        return np.array(int(z), np.int64)  # 0-d, the common per-tensor case
    z = np.asarray(z)
    if z.dtype == np.bool_ or not np.issubdtype(z.dtype, np.integer):
        raise InvalidTypeError(f"{name} must be an int or int array; got {name}={z!r}")
    try:
        fits = np.broadcast_shapes(z.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise InvalidArgumentError(
            f"{name} must be a scalar or broadcast to shape {shape}; got "
            f"{name}.shape={z.shape}"
        )
    if z.dtype == np.uint64 and z.size and int(z.max()) > INT64_MAX:
        raise InvalidArgumentError(f"{name} values must fit int64; got {name}={z!r}")
    return z.astype(np.int64)


# -- planning -----------------------------------------------------------------


def _range(x: np.ndarray) -> tuple[int, int]:
    if x.size == 0:
        return 0, 0
    return int(x.min()), int(x.max())


def _max_dev(x: np.ndarray, z: np.ndarray, axis: int) -> int:
    """max |x - z| with z broadcast along ``axis`` of x, in Python ints."""
    if x.size == 0:
        return 0
    if z.ndim == 0:
        lo, hi = _range(x)
        return max(abs(lo - int(z)), abs(hi - int(z)))
    lo = x.min(axis=axis).astype(np.int64)
    hi = x.max(axis=axis).astype(np.int64)
    dev = np.maximum(np.abs(lo - z), np.abs(hi - z))  # |values| < 2**63 by check
    return int(dev.max()) if dev.size else 0


def _plan(a, za, b, zb, b_range=None) -> GemmPlan:
    """The cheapest exact plan; the dtype ranges decide it without a data scan
    when they already allow one float32 call, the data ranges otherwise.
    ``b_range``: B's known data range (a prepared operand), used in place of
    its dtype range and its scan."""
    k = a.shape[-1]
    zr_a, zr_b = (_lo(za), _hi(za)), (_lo(zb), _hi(zb))
    rb = _dtype_range(b) if b_range is None else b_range
    plan = _best_plan(k, _dtype_range(a), zr_a, rb, zr_b)
    if plan is not None and plan.path == "float32":
        return plan
    ra, rb = _range(a), (_range(b) if b_range is None else b_range)
    dev_a = max(abs(ra[0] - zr_a[0]), abs(ra[1] - zr_a[1]))  # >= max|A - a_zp|
    dev_b = max(abs(rb[0] - zr_b[0]), abs(rb[1] - zr_b[1]))
    if k * dev_a * dev_b > INT64_MAX:
        dev_a, dev_b = _max_dev(a, za, axis=-1), _max_dev(b, zb, axis=-2)
    if k * dev_a * dev_b > INT64_MAX:
        raise AccumulatorOverflowError(
            f"the exact product may exceed int64: K * max|a - a_zero_point| * "
            f"max|b - b_zero_point| = {k} * {dev_a} * {dev_b} > 2**63 - 1"
        )
    plan = _best_plan(k, ra, zr_a, rb, zr_b)
    if plan is None:  # the centred expansions do not fit int64: no offsets
        plan = gemm_path(k, dev_a * dev_b)
        plan = GemmPlan(**{**plan.__dict__, "a_dev": dev_a, "b_dev": dev_b})
    return plan


_DTYPE_RANGES: dict = {}


def _dtype_range(x: np.ndarray) -> tuple[int, int]:
    r = _DTYPE_RANGES.get(x.dtype)
    if r is None:
        info = np.iinfo(x.dtype)
        r = _DTYPE_RANGES[x.dtype] = (int(info.min), int(info.max))
    return r


def _lo(z: np.ndarray) -> int:
    if z.ndim == 0:
        return int(z)
    return int(z.min()) if z.size else 0


def _hi(z: np.ndarray) -> int:
    if z.ndim == 0:
        return int(z)
    return int(z.max()) if z.size else 0


@lru_cache(maxsize=4096)
def _best_plan(k: int, ra, za, rb, zb) -> GemmPlan | None:
    """Best plan over centres {zero point, midpoint} for values in the closed
    ranges ra, rb and zero points in the closed ranges za, zb (all ints, so the
    answer is cached: a model's layers repeat the same few arguments)."""
    options = []
    for r, z in ((ra, za), (rb, zb)):
        mid = (r[0] + r[1]) // 2
        dev_z = max(
            abs(r[0] - z[0]),
            abs(r[1] - z[1]),
            abs(r[0] - z[1]),
            abs(r[1] - z[0]),
        )
        options.append([(None, dev_z), (mid, max(r[1] - mid, mid - r[0]))])
    best = None
    for ca, ma in options[0]:
        for cb, mb in options[1]:
            if not _offsets_fit(k, ca, ma, za, cb, mb, zb):
                continue
            plan = gemm_path(k, ma * mb)
            key = (
                _PATH_RANK[plan.path],
                plan.n_chunks,
                (ca is not None) + (cb is not None),
            )
            if best is None or key < best[0]:
                centers = {"a_center": ca, "b_center": cb, "a_dev": ma, "b_dev": mb}
                best = (key, GemmPlan(**{**plan.__dict__, **centers}))
    return None if best is None else best[1]


def _offsets_fit(k, ca, ma, za, cb, mb, zb) -> bool:
    """True when every int64 term of the offset expansion is safe."""
    return _expansion_bound(k, ca, ma, za, cb, mb, zb) <= INT64_MAX


def _expansion_bound(k, ca, ma, za, cb, mb, zb) -> int:
    """K * (ma*mb + ma*|db| + |da|*mb + |da|*|db|): bounds every partial sum of
    (2.1); za, zb are the closed ranges of the zero points."""
    da = 0 if ca is None else max(abs(ca - za[0]), abs(ca - za[1]))
    db = 0 if cb is None else max(abs(cb - zb[0]), abs(cb - zb[1]))
    return k * (ma * mb + ma * db + da * mb + da * db)


def _offset_bound(k: int, plan: GemmPlan, za, zb) -> int:
    zr_a, zr_b = (_lo(za), _hi(za)), (_lo(zb), _hi(zb))
    return _expansion_bound(
        k, plan.a_center, plan.a_dev, zr_a, plan.b_center, plan.b_dev, zr_b
    )


def _max_abs(z) -> int:
    return int(np.abs(z).max()) if np.size(z) else 0


# -- computing ----------------------------------------------------------------

_PATH_DTYPE = {
    "float32": np.float32,
    "float32_chunked": np.float32,
    "float64": np.float64,
    "float64_chunked": np.float64,
    "int64": np.int64,
}
_EXACT_LIMIT = {np.float32: FLOAT32_EXACT, np.float64: FLOAT64_EXACT}


def _centered(x: np.ndarray, c, dev: int, path: str) -> np.ndarray:
    """x - c in the path's dtype; exact whenever dev = max|x - c| fits it."""
    dtype = _PATH_DTYPE[path]
    limit = _EXACT_LIMIT.get(dtype, INT64_MAX)
    lo, hi = _dtype_range(x)
    if max(abs(lo), abs(hi)) >= limit:
        lo, hi = _range(x)
    c_abs = _max_abs(c)
    if max(abs(lo), abs(hi), c_abs, dev) < limit:
        out = x.astype(dtype)  # x, c and x - c are all exact in dtype
        return out - c.astype(dtype) if c_abs else out
    out = x.astype(np.int64)
    return (out - c if c_abs else out).astype(dtype)


def _offset_of(z: np.ndarray, center, *, rows: bool):
    """The constant subtracted from an operand, shaped to broadcast against it."""
    if center is not None:
        return np.int64(center)
    if z.ndim == 0:
        return z
    return z[..., :, None] if rows else z[..., None, :]


def _blas_product(a_op, b_op, plan: GemmPlan, as_float=False) -> np.ndarray:
    """A' @ B' in int64 (``as_float``: in the float dtype it was summed in);
    each BLAS call sums at most k_chunk terms <= P."""
    k = a_op.shape[-1]
    if plan.n_chunks == 1:
        c = np.matmul(a_op, b_op)
        return c if as_float else c.astype(np.int64, copy=False)
    acc_dtype = np.float64 if k * plan.term_bound <= FLOAT64_EXACT else np.int64
    acc = None
    for k0 in range(0, k, plan.k_chunk):
        k1 = k0 + plan.k_chunk
        part = np.matmul(a_op[..., k0:k1], b_op[..., k0:k1, :])  # exact, <= 2**p
        part = part.astype(acc_dtype, copy=False)
        acc = part if acc is None else acc + part  # |acc| <= K * P, exact
    return acc if as_float else acc.astype(np.int64, copy=False)


def _add_offsets(c, plan: GemmPlan, a_parts, b_parts, col=None) -> np.ndarray:
    """C += db * rowsum(A') + da * colsum(B') + K * da * db, exact.

    With A - a_zp = A' + da (da = a_center - a_zp) and B - b_zp = B' + db.  In
    int64, or in float64 when the caller checked that (2.1) stays within
    2**53; ``col`` is colsum(B') when already known (a prepared operand).
    """
    a, a_op, za, ca = a_parts
    b, b_op, zb, cb = b_parts
    k = a.shape[-1]
    da = db = None
    if plan.a_center is not None:
        da = np.int64(plan.a_center) - za  # scalar or (..., M)
        da = da[..., :, None] if da.ndim else da
    if plan.b_center is not None:
        db = np.int64(plan.b_center) - zb  # scalar or (..., N)
        db = db[..., None, :] if db.ndim else db
    if db is not None:
        row = _exact_sum(a, a_op, ca, plan.a_dev, axis=-1)  # (..., M)
        c = c + row[..., :, None] * db
    if da is not None:
        if col is None:
            col = _exact_sum(b, b_op, cb, plan.b_dev, axis=-2)  # (..., N)
        c = c + da * col[..., None, :]
    if da is not None and db is not None:
        c = c + k * da * db
    return c


def _exact_sum(x, x_op, c, dev: int, axis: int) -> np.ndarray:
    """sum(x - c) along axis in int64, from x_op when x_op holds it exactly."""
    k = x.shape[axis]
    limit = _EXACT_LIMIT.get(x_op.dtype.type, INT64_MAX)
    if dev < limit and k * dev <= FLOAT64_EXACT:
        return x_op.sum(axis=axis, dtype=np.float64).astype(np.int64)
    return (x.astype(np.int64) - c).sum(axis=axis)  # |sum| <= K * dev, checked
