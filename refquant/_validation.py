"""Declarative argument checks shared by the public entry points.

Constraints are declared once as data (:class:`OneOf`, :class:`IntRange`,
:class:`FloatRange`) and :func:`check` renders the message, so every error reads
``'<name> must be <allowed>; got <name>=<value>'``.  Tests walk the same tables to
prove that every invalid value raises.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from refquant.errors import InvalidArgumentError, InvalidTypeError


@dataclass(frozen=True)
class OneOf:
    options: tuple

    def allows(self, value) -> bool:
        return any(value == o and type(value) is type(o) for o in self.options)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


@dataclass(frozen=True)
class IntRange:
    low: int | None = None
    high: int | None = None

    def allows(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return False
        return (self.low is None or value >= self.low) and (
            self.high is None or value <= self.high
        )

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"an int in [{self.low}, {self.high}]"
        if self.low is not None:
            return f"an int >= {self.low}"
        if self.high is not None:
            return f"an int <= {self.high}"
        return "an int"


@dataclass(frozen=True)
class FloatRange:
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        v = float(value)
        if v != v:
            return False
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        if self.high is not None and (
            v >= self.high if self.high_open else v > self.high
        ):
            return False
        return True

    def describe(self) -> str:
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        low = "-inf" if self.low is None else repr(self.low)
        high = "inf" if self.high is None else repr(self.high)
        return f"a real number in {lo}{low}, {high}{hi}"


def check(name: str, value, constraint, hint: str = "") -> None:
    """Raise :class:`InvalidArgumentError` unless ``constraint`` allows ``value``."""
    if constraint.allows(value):
        return
    message = f"{name} must be {constraint.describe()}; got {name}={value!r}"
    if hint:
        message += f". {hint}"
    raise InvalidArgumentError(message)


def check_type(name: str, value, types: tuple, what: str) -> None:
    """Raise :class:`InvalidTypeError` unless ``value`` is one of ``types``."""
    if not isinstance(value, types):
        raise InvalidTypeError(
            f"{name} must be {what}; got {name}={value!r} of type "
            f"{type(value).__name__}"
        )
