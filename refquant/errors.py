"""The exception and warning family of refquant.

Every error raised on bad input derives from :class:`RefquantError`; errors about
an argument also derive from :class:`ValueError` or :class:`TypeError`, so code
that catches the builtin families keeps working.  Numerical hazards that do not
stop a computation are reported with the named warnings below.
"""

from __future__ import annotations


class RefquantError(Exception):
    """Base class of every error that refquant raises on purpose."""


class InvalidArgumentError(RefquantError, ValueError):
    """An argument has a value outside what the function allows."""


class InvalidTypeError(RefquantError, TypeError):
    """An argument has a type the function does not accept."""


class NonFiniteInputError(InvalidArgumentError):
    """A tensor holds NaN where only finite (or +-inf) values are allowed."""


class AccumulatorOverflowError(RefquantError, OverflowError):
    """An integer accumulator left its contract range (int32 unless stated)."""


class UnsafeFileError(RefquantError):
    """A file asks for something refquant refuses to do while reading it."""


class RefquantWarning(UserWarning):
    """Base class of refquant's warnings."""


class SaturationWarning(RefquantWarning):
    """Values were clamped to the representable range."""


class FallbackScaleWarning(RefquantWarning):
    """A documented fallback scale replaced one that could not be computed."""


class Float16OverflowWarning(RefquantWarning):
    """Finite values became +-inf when cast to a narrower float format."""


class CorruptFileError(InvalidArgumentError):
    """A file is malformed, truncated or not of the format it should be."""
