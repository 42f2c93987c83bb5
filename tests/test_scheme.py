"""QuantScheme: integer ranges, code dtypes and construction errors."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refquant import QuantScheme
from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.numerics.scheme import smallest_int_dtype

# (bits, signed, narrow_range) -> (qmin, qmax, dtype), written out by hand
RANGES = [
    (8, True, False, -128, 127, np.int8),
    (8, True, True, -127, 127, np.int8),
    (8, False, False, 0, 255, np.uint8),
    (8, False, True, 1, 255, np.uint8),
    (2, True, False, -2, 1, np.int8),
    (2, True, True, -1, 1, np.int8),
    (4, True, True, -7, 7, np.int8),
    (4, False, False, 0, 15, np.uint8),
    (9, True, False, -256, 255, np.int16),
    (9, False, False, 0, 511, np.uint16),
    (16, True, False, -32768, 32767, np.int16),
    (16, False, False, 0, 65535, np.uint16),
]


@pytest.mark.parametrize("bits, signed, narrow, qmin, qmax, dtype", RANGES)
def test_range_and_dtype(bits, signed, narrow, qmin, qmax, dtype):
    s = QuantScheme(bits=bits, signed=signed, narrow_range=narrow)
    assert (s.qmin, s.qmax) == (qmin, qmax)
    assert s.dtype == np.dtype(dtype)


def test_defaults():
    s = QuantScheme()
    assert (s.bits, s.signed, s.symmetric, s.narrow_range) == (8, True, False, False)
    assert (s.granularity, s.axis, s.group_size) == ("per_tensor", None, None)


@pytest.mark.parametrize(
    "signed, narrow, expected", [(True, False, 0), (True, True, 0), (False, False, 128)]
)
def test_symmetric_zero_point(signed, narrow, expected):
    s = QuantScheme(signed=signed, symmetric=True, narrow_range=narrow)
    assert s.symmetric_zero_point == expected


@given(bits=st.integers(2, 16), signed=st.booleans(), narrow=st.booleans())
def test_range_property(bits, signed, narrow):
    s = QuantScheme(bits=bits, signed=signed, narrow_range=narrow)
    assert s.qmax - s.qmin + 1 == 2**bits - int(narrow)
    info = np.iinfo(s.dtype)
    assert info.min <= s.qmin and s.qmax <= info.max
    assert info.bits == (8 if bits <= 8 else 16)


def test_smallest_int_dtype_wider_ranges():
    assert smallest_int_dtype(-1, 2**16) == np.int32
    assert smallest_int_dtype(0, 2**16) == np.uint32
    assert smallest_int_dtype(0, 2**31) == np.uint32


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        QuantScheme().bits = 4


def test_grouped_and_channel_schemes():
    s = QuantScheme(granularity="per_group", axis=-1, group_size=32)
    assert s.normalized_axis(2) == 1
    assert QuantScheme(granularity="per_channel", axis=0).normalized_axis(4) == 0


INVALID = [
    (
        dict(bits=1),
        InvalidArgumentError,
        r"bits must be an int in \[2, 16\]; got bits=1",
    ),
    (dict(bits=17), InvalidArgumentError, r"got bits=17"),
    (dict(bits=32), InvalidArgumentError, r"got bits=32"),
    (dict(bits=8.0), InvalidArgumentError, r"got bits=8.0"),
    (dict(bits=True), InvalidArgumentError, r"got bits=True"),
    (dict(bits="8"), InvalidArgumentError, r"got bits='8'"),
    (dict(signed="yes"), InvalidTypeError, r"signed must be a bool; got signed='yes'"),
    (dict(symmetric=1), InvalidTypeError, r"symmetric must be a bool; got symmetric=1"),
    (dict(narrow_range=None), InvalidTypeError, r"narrow_range=None"),
    (dict(granularity="per_row"), InvalidArgumentError, r"granularity='per_row'"),
    (dict(axis=0), InvalidArgumentError, r"axis must be None .*per_tensor.*axis=0"),
    (
        dict(granularity="per_channel"),
        InvalidArgumentError,
        r"axis must be an int.*axis=None",
    ),
    (
        dict(granularity="per_channel", axis=1.5),
        InvalidArgumentError,
        r"axis must be an int.*axis=1.5",
    ),
    (
        dict(granularity="per_channel", axis=True),
        InvalidArgumentError,
        r"axis=True",
    ),
    (
        dict(granularity="per_group", axis=0),
        InvalidArgumentError,
        r"group_size must be an int >= 1; got group_size=None",
    ),
    (
        dict(granularity="per_group", axis=0, group_size=0),
        InvalidArgumentError,
        r"group_size=0",
    ),
    (
        dict(granularity="per_channel", axis=0, group_size=4),
        InvalidArgumentError,
        r"group_size must be None .*group_size=4",
    ),
    (dict(group_size=4), InvalidArgumentError, r"group_size=4"),
]


@pytest.mark.parametrize("kwargs, error, pattern", INVALID)
def test_invalid_construction(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        QuantScheme(**kwargs)


def test_axis_out_of_range_for_tensor():
    s = QuantScheme(granularity="per_channel", axis=3)
    with pytest.raises(
        InvalidArgumentError, match=r"axis must be in \[-2, 1\].*axis=3"
    ):
        s.normalized_axis(2)
