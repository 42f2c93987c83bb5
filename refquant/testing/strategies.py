"""Public Hypothesis strategies for quantization tests.

Importing this module imports Hypothesis (a test-only dependency); nothing else
in refquant does.  Strategies:

* :func:`schemes` -- a :class:`~refquant.QuantScheme` valid for a tensor shape.
* :func:`qparams_for` -- QParams for a scheme and tensor shape.
* :func:`quant_cases` -- ``QuantCase(x, qparams)`` over every granularity, with
  values inside, on ties of and outside the representable range.
* :func:`float_tensors` -- float64 arrays of a shape.
* :func:`codes_for` -- integer code arrays within ``[qmin, qmax]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.numerics.qparams import QParams
from refquant.numerics.scheme import GRANULARITIES, QuantScheme

__all__ = [
    "QuantCase",
    "codes_for",
    "float_tensors",
    "qparams_for",
    "quant_cases",
    "schemes",
    "shapes",
]


class QuantCase(NamedTuple):
    x: np.ndarray
    qparams: QParams


def shapes(max_dims: int = 3, max_side: int = 6):
    """Array shapes with 1..max_dims axes of length 1..max_side."""
    return hnp.array_shapes(
        min_dims=1, max_dims=max_dims, min_side=1, max_side=max_side
    )


@st.composite
def schemes(draw, shape=None, granularities=GRANULARITIES, bits=None):
    """A QuantScheme; per_channel / per_group need ``shape`` to pick axis, group."""
    if shape is None:
        granularities = ("per_tensor",)
    g = draw(st.sampled_from(tuple(granularities)))
    axis = group_size = None
    if g != "per_tensor":
        axis = draw(st.integers(-len(shape), len(shape) - 1))
    if g == "per_group":
        group_size = draw(st.integers(1, shape[axis]))
    return QuantScheme(
        bits=draw(st.integers(2, 16) if bits is None else st.just(bits)),
        signed=draw(st.booleans()),
        symmetric=draw(st.booleans()),
        narrow_range=draw(st.booleans()),
        granularity=g,
        axis=axis,
        group_size=group_size,
    )


def compact_shape(scheme: QuantScheme, shape: tuple) -> tuple:
    """Shape of the scale array of ``scheme`` for a tensor of ``shape``."""
    if scheme.granularity == "per_tensor":
        return ()
    axis = scheme.normalized_axis(len(shape))
    if scheme.granularity == "per_channel":
        return (shape[axis],)
    out = list(shape)
    out[axis] = -(-shape[axis] // scheme.group_size)
    return tuple(out)


@st.composite
def qparams_for(draw, scheme: QuantScheme, shape: tuple, min_exp=-30, max_exp=20):
    """QParams with scales ``m * 2**e`` (m in [1, 2), e in [min_exp, max_exp])."""
    cshape = compact_shape(scheme, shape)
    n = int(np.prod(cshape, dtype=np.int64))
    mant = draw(
        hnp.arrays(np.float64, n, elements=st.floats(1.0, 2.0, exclude_max=True))
    )
    exps = draw(hnp.arrays(np.int64, n, elements=st.integers(min_exp, max_exp)))
    scale = np.ldexp(mant, exps).reshape(cshape)
    if scheme.symmetric:
        zp = scheme.symmetric_zero_point
    else:
        ints = st.integers(scheme.qmin, scheme.qmax)
        zp = draw(hnp.arrays(np.int64, n, elements=ints)).reshape(cshape)
    return QParams(scale, zp, scheme)


def float_tensors(shape, min_value=-1e6, max_value=1e6, allow_infinity=False):
    """float64 arrays of ``shape`` with finite (or +-inf) elements, no NaN."""
    elements = st.floats(
        min_value=None if allow_infinity else min_value,
        max_value=None if allow_infinity else max_value,
        allow_nan=False,
        allow_infinity=allow_infinity,
    )
    return hnp.arrays(np.float64, shape, elements=elements)


@st.composite
def quant_cases(draw, max_dims=3, max_side=6, granularities=GRANULARITIES, bits=None):
    """``QuantCase(x, qparams)``; x in code units spans [qmin - 3, qmax + 3].

    Each element is drawn in code units ``v`` (arbitrary floats, exact
    half-integers and integers) and mapped to ``x = (v - zero_point) * scale``
    with its own channel or group scale.
    """
    shape = draw(shapes(max_dims, max_side))
    scheme = draw(schemes(shape, granularities, bits))
    qp = draw(qparams_for(scheme, shape))
    lo, hi = scheme.qmin - 3, scheme.qmax + 3
    unit = st.one_of(
        st.floats(lo, hi),
        st.integers(lo, hi).map(float),
        st.integers(lo, hi - 1).map(lambda k: k + 0.5),
    )
    v = draw(hnp.arrays(np.float64, shape, elements=unit))
    scale, zp = qp.expand(shape)
    return QuantCase((v - zp) * scale, qp)


@st.composite
def codes_for(draw, qparams: QParams, shape: tuple):
    """Integer codes of ``qparams.scheme.dtype`` in ``[qmin, qmax]``."""
    s = qparams.scheme
    ints = st.integers(s.qmin, s.qmax)
    return draw(hnp.arrays(s.dtype, shape, elements=ints))
