"""Model size accounting: bytes of every stored tensor, by kind and by dtype.

A tensor of ``n`` elements stored with a ``b``-bit container takes
``ceil(n * b / 8)`` bytes (rounding rule: ceil; each tensor is padded to a
whole byte on its own).  Containers: the dtype's width for 1, 2, 4, 8, 16, 32
and 64 bits, so int4 packs two codes per byte; other integer widths use the
next of those (int3 -> 4 bits, int5..int7 -> 8 bits, int9..int15 -> 16 bits).
Scales, zero points and biases are tensors like any other and are counted.
Spec: ``specs/evaluation.md`` section 6.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from refquant._validation import IntRange, OneOf, check
from refquant.errors import InvalidArgumentError

__all__ = [
    "KINDS",
    "ModelSize",
    "StoredTensor",
    "container_bits",
    "model_size",
    "quantized_tensor",
    "size_ratio",
    "stored_tensor",
]

KINDS = ("weight", "bias", "scale", "zero_point", "other")
_FLOAT_BITS = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16}
_INT_PATTERN = re.compile(r"^u?int([0-9]+)$")
_CONTAINERS = (1, 2, 4, 8, 16, 32, 64)


def dtype_bits(dtype: str) -> int:
    """Bit width of a dtype name: ``float32`` -> 32, ``int4`` -> 4, ``uint8`` -> 8."""
    if dtype in _FLOAT_BITS:
        return _FLOAT_BITS[dtype]
    match = _INT_PATTERN.match(str(dtype))
    if match and 1 <= int(match.group(1)) <= 64:
        return int(match.group(1))
    raise InvalidArgumentError(
        f"dtype must be one of {', '.join(_FLOAT_BITS)} or 'int<b>' / 'uint<b>' "
        f"with b in [1, 64]; got dtype={dtype!r}"
    )


def container_bits(bits: int) -> int:
    """Smallest of 1, 2, 4, 8, 16, 32, 64 that is ``>= bits``.

    >>> container_bits(4), container_bits(5), container_bits(12)
    (4, 8, 16)
    """
    check("bits", bits, IntRange(1, 64))
    return next(c for c in _CONTAINERS if c >= bits)


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of a saved model: ``nbytes = ceil(num_elements * bits / 8)``.

    >>> StoredTensor("fc.weight", 1001, "int4").nbytes  # 501 bytes, half-byte codes
    501
    """

    name: str
    num_elements: int
    dtype: str
    kind: str = "weight"

    def __post_init__(self):
        check("num_elements", self.num_elements, IntRange(0, None))
        check("kind", self.kind, OneOf(KINDS))
        dtype_bits(self.dtype)

    @property
    def bits(self) -> int:
        """Container width in bits (see the module docstring)."""
        return container_bits(dtype_bits(self.dtype))

    @property
    def nbytes(self) -> int:
        """``ceil(num_elements * bits / 8)``."""
        return -(-self.num_elements * self.bits // 8)  # ceil division


def stored_tensor(name: str, array, kind: str = "weight", dtype=None) -> StoredTensor:
    """A :class:`StoredTensor` for ``array`` (its size; its dtype unless given).

    >>> stored_tensor("b", np.zeros(10, np.float32), kind="bias").nbytes
    40
    """
    arr = np.asarray(array)
    name_of_dtype = str(dtype) if dtype is not None else arr.dtype.name
    return StoredTensor(str(name), int(arr.size), name_of_dtype, kind)


def quantized_tensor(
    name: str,
    num_elements: int,
    bits: int,
    num_params: int = 1,
    *,
    signed: bool = True,
    scale_dtype: str = "float32",
    zero_point_dtype=None,
) -> list[StoredTensor]:
    """The codes, scales and zero points of one quantized tensor.

    ``num_params`` is 1 per tensor, ``C`` per channel, the group count per
    group.  Zero points default to the codes' dtype (as ONNX stores them).

    >>> [t.nbytes for t in quantized_tensor("w", 64, 4, num_params=2)]
    [32, 8, 1]
    """
    check("bits", bits, IntRange(1, 32))
    check("num_params", num_params, IntRange(1, None))
    code_dtype = f"{'int' if signed else 'uint'}{bits}"
    zp_dtype = code_dtype if zero_point_dtype is None else str(zero_point_dtype)
    return [
        StoredTensor(name, num_elements, code_dtype, "weight"),
        StoredTensor(f"{name}.scale", num_params, scale_dtype, "scale"),
        StoredTensor(f"{name}.zero_point", num_params, zp_dtype, "zero_point"),
    ]


@dataclass(frozen=True)
class ModelSize:
    """The stored tensors of a model and their byte totals."""

    tensors: tuple

    @property
    def total_bytes(self) -> int:
        """Sum of ``nbytes`` over every tensor."""
        return sum(t.nbytes for t in self.tensors)

    def bytes_by(self, field: str) -> dict:
        """Total bytes per ``kind`` or per ``dtype`` (insertion order)."""
        check("field", field, OneOf(("kind", "dtype")))
        out: dict = {}
        for t in self.tensors:
            key = getattr(t, field)
            out[key] = out.get(key, 0) + t.nbytes
        return out

    def to_dict(self) -> dict:
        return {
            "total_bytes": self.total_bytes,
            "num_tensors": len(self.tensors),
            "bytes_by_kind": self.bytes_by("kind"),
            "bytes_by_dtype": self.bytes_by("dtype"),
        }


def model_size(tensors) -> ModelSize:
    """Collect :class:`StoredTensor` entries (nested lists are flattened)."""
    flat = []
    stack = [tensors]
    while stack:
        item = stack.pop()
        if isinstance(item, StoredTensor):
            flat.append(item)
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
        else:
            raise InvalidArgumentError(
                f"tensors must be StoredTensor entries or lists of them; got an "
                f"entry of type {type(item).__name__}"
            )
    return ModelSize(tuple(flat))


def size_ratio(fp32, quantized) -> float:
    """``fp32_bytes / quantized_bytes``; each argument is bytes or a ModelSize.

    >>> size_ratio(4000, 1000)
    4.0
    """
    a, b = as_bytes("fp32", fp32), as_bytes("quantized", quantized)
    if b == 0:
        raise InvalidArgumentError("quantized must be > 0 bytes; got quantized=0")
    return a / b


def as_bytes(name: str, size) -> int:
    """Byte count of an int or a :class:`ModelSize` (or a list of tensors)."""
    if isinstance(size, ModelSize):
        return size.total_bytes
    if isinstance(size, list | tuple):
        return model_size(size).total_bytes
    check(name, size, IntRange(0, None))
    return int(size)
