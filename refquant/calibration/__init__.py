"""Calibration observers: streaming, mergeable range statistics (NumPy only).

=================  ==================================  ===========================
name               class                               granularity
=================  ==================================  ===========================
``minmax``         :class:`MinMaxObserver`             per tensor, per channel
``moving_average`` :class:`MovingAverageMinMaxObserver` per tensor, per channel
``percentile``     :class:`PercentileObserver`         per tensor
``entropy``        :class:`EntropyObserver`            per tensor
``mse``            :class:`MSEObserver`                per tensor
=================  ==================================  ===========================

Spec: ``specs/calibration.md``.
"""

from __future__ import annotations

import inspect

from refquant._validation import OneOf, check
from refquant.calibration.base import Observer
from refquant.calibration.entropy import EntropyObserver
from refquant.calibration.histogram import StreamingHistogram
from refquant.calibration.minmax import MinMaxObserver, MovingAverageMinMaxObserver
from refquant.calibration.mse import MSEObserver
from refquant.calibration.percentile import HistogramObserver, PercentileObserver
from refquant.errors import InvalidArgumentError

__all__ = [
    "OBSERVERS",
    "EntropyObserver",
    "HistogramObserver",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "PercentileObserver",
    "StreamingHistogram",
    "make_observer",
]

OBSERVERS = {
    cls.name: cls
    for cls in (
        MinMaxObserver,
        MovingAverageMinMaxObserver,
        PercentileObserver,
        EntropyObserver,
        MSEObserver,
    )
}


def make_observer(name: str, **kwargs) -> Observer:
    """Build the observer registered as ``name`` with keyword settings ``kwargs``.

    >>> make_observer("minmax", symmetric=True)
    MinMaxObserver(symmetric=True, bits=8, axis=None)
    """
    check("name", name, OneOf(tuple(OBSERVERS)))
    cls = OBSERVERS[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise InvalidArgumentError(
            f"observer {name!r} accepts the settings {', '.join(allowed)}; got "
            f"unknown setting(s) {', '.join(unknown)}"
        )
    return cls(**kwargs)
