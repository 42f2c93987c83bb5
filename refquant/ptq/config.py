"""Quantization settings: defaults, then per-op-type and per-layer overrides.

The settings of a layer are resolved in three steps, later steps winning::

    settings(node) = defaults  <-  by_op[node.op]  <-  by_name[node.name]

Defaults (TFLite / ONNX Runtime practice): weights int8 per-channel symmetric
narrow range ``[-127, 127]``; activations int8 per-tensor asymmetric
``[-128, 127]`` from a min-max observer; bias int32 at ``s_in * s_w[c]``.
The activation settings of a layer govern its *output* tensor; the graph input
takes the defaults, or ``by_name[input_name]``.  Spec: specs/ptq.md, section 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from refquant._validation import IntRange, OneOf, check, check_type
from refquant.calibration import OBSERVERS
from refquant.errors import InvalidArgumentError
from refquant.graph.nodes import OPS
from refquant.numerics.scheme import QuantScheme

__all__ = ["LayerSettings", "QuantConfig", "WEIGHTED_OPS", "weight_axis"]

#: Ops whose ``weight`` param is quantized.
WEIGHTED_OPS = ("Conv2D", "DepthwiseConv2D", "Dense")
WEIGHT_GRANULARITIES = ("per_tensor", "per_channel", "per_group")


def weight_axis(op: str) -> int:
    """Output-channel axis of the weight: 3 for DepthwiseConv2D, else 0."""
    return 3 if op == "DepthwiseConv2D" else 0


def weight_group_axis(op: str) -> int:
    """Axis split into groups (the reduction axis): last for every layout."""
    return 1 if op == "Dense" else 3 if op == "Conv2D" else 0


@dataclass(frozen=True)
class LayerSettings:
    """Every quantization choice of one layer (weights and output activation).

    Parameters
    ----------
    weight_bits : int in [2, 8]
        Weight code width (int8 containers; int4 packs two codes per byte in
        the size accounting).
    weight_granularity : {"per_channel", "per_tensor", "per_group"}
        per_group is for ``mode="weight_only"`` only.
    weight_group_size : int or None
        Group length along the reduction axis (32 or 64 usual); required for
        per_group.
    weight_symmetric, weight_narrow_range : bool
    activation_bits : int in [2, 8]
        Output code width; codes live in int8 and are clamped to the range.
    activation_symmetric : bool
    activation_observer : str
        One of ``minmax``, ``moving_average``, ``percentile``, ``entropy``,
        ``mse``.
    activation_observer_options : mapping
        Extra keyword settings of the observer, e.g. ``{"percentile": 99.99}``.
    """

    weight_bits: int = 8
    weight_granularity: str = "per_channel"
    weight_group_size: int | None = None
    weight_symmetric: bool = True
    weight_narrow_range: bool = True
    activation_bits: int = 8
    activation_symmetric: bool = False
    activation_observer: str = "minmax"
    activation_observer_options: Mapping = field(default_factory=dict)

    def __post_init__(self):
        check("weight_bits", self.weight_bits, IntRange(2, 8))
        check(
            "weight_granularity", self.weight_granularity, OneOf(WEIGHT_GRANULARITIES)
        )
        for name in ("weight_symmetric", "weight_narrow_range", "activation_symmetric"):
            check(name, getattr(self, name), OneOf((False, True)))
        if self.weight_granularity == "per_group":
            check(
                "weight_group_size",
                self.weight_group_size,
                IntRange(1, 2**20),
                "per_group weights need a group size such as 32 or 64",
            )
        elif self.weight_group_size is not None:
            raise InvalidArgumentError(
                f"weight_group_size must be None unless weight_granularity="
                f"'per_group'; got weight_group_size={self.weight_group_size!r}"
            )
        check("activation_bits", self.activation_bits, IntRange(2, 8))
        check("activation_observer", self.activation_observer, OneOf(tuple(OBSERVERS)))
        check_type(
            "activation_observer_options",
            self.activation_observer_options,
            (Mapping,),
            "a mapping of observer settings",
        )
        options = dict(self.activation_observer_options)
        for key in ("symmetric", "bits", "axis"):
            if key in options:
                raise InvalidArgumentError(
                    f"activation_observer_options must not set {key!r}; use "
                    f"activation_symmetric / activation_bits instead; got "
                    f"activation_observer_options={options!r}"
                )
        object.__setattr__(
            self, "activation_observer_options", MappingProxyType(options)
        )

    # -------------------------------------------------------------- schemes
    def weight_scheme(self, op: str) -> QuantScheme:
        """Signed weight scheme of ``op`` (axis from :func:`weight_axis`)."""
        g = self.weight_granularity
        axis = None if g == "per_tensor" else weight_axis(op)
        if g == "per_group":
            axis = weight_group_axis(op)
        return QuantScheme(
            bits=self.weight_bits,
            signed=True,
            symmetric=self.weight_symmetric,
            narrow_range=self.weight_narrow_range,
            granularity=g,
            axis=axis,
            group_size=self.weight_group_size if g == "per_group" else None,
        )

    def activation_scheme(self) -> QuantScheme:
        """Signed per-tensor activation scheme (full range)."""
        return QuantScheme(
            bits=self.activation_bits, signed=True, symmetric=self.activation_symmetric
        )

    def make_observer(self):
        """A fresh observer for this layer's output tensor."""
        from refquant.calibration import make_observer

        return make_observer(
            self.activation_observer,
            symmetric=self.activation_symmetric,
            bits=self.activation_bits,
            **dict(self.activation_observer_options),
        )

    def replace(self, **changes) -> LayerSettings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


_FIELDS = tuple(f.name for f in dataclasses.fields(LayerSettings))


def _check_override(where: str, override) -> dict:
    check_type(where, override, (Mapping,), "a mapping of LayerSettings fields")
    unknown = sorted(set(override) - set(_FIELDS))
    if unknown:
        raise InvalidArgumentError(
            f"{where} has unknown setting {unknown[0]!r}; allowed settings are "
            f"{', '.join(_FIELDS)}"
        )
    return dict(override)


class QuantConfig:
    """Default :class:`LayerSettings` plus overrides by op type and layer name.

    Parameters
    ----------
    by_op : mapping of op name to mapping of settings, optional
        E.g. ``{"Dense": {"weight_granularity": "per_tensor"}}``.
    by_name : mapping of layer name to mapping of settings, optional
        Wins over ``by_op``.  A graph input name sets that input's activation.
    **defaults
        Fields of :class:`LayerSettings` for every layer.

    Examples
    --------
    >>> cfg = QuantConfig(activation_observer="percentile",
    ...                   by_name={"fc": {"weight_bits": 4}})
    >>> cfg.settings_for("fc", "Dense").weight_bits
    4
    >>> cfg.settings_for("conv", "Conv2D").activation_observer
    'percentile'
    """

    def __init__(self, *, by_op=None, by_name=None, **defaults):
        self.defaults = LayerSettings(**_check_override("defaults", defaults))
        self.by_op = {}
        for op, override in dict(by_op or {}).items():
            check("by_op key", op, OneOf(OPS))
            self.by_op[op] = _check_override(f"by_op[{op!r}]", override)
            self.defaults.replace(**self.by_op[op])  # validate values early
        self.by_name = {}
        for name, override in dict(by_name or {}).items():
            check_type("by_name key", name, (str,), "a layer name (str)")
            self.by_name[name] = _check_override(f"by_name[{name!r}]", override)
            self.defaults.replace(**self.by_name[name])

    def settings_for(self, name: str, op: str | None) -> LayerSettings:
        """Resolved settings of layer ``name`` with op ``op`` (None: graph input)."""
        check_type("name", name, (str,), "a str")
        changes = {}
        if op is not None:
            check("op", op, OneOf(OPS))
            changes.update(self.by_op.get(op, {}))
        changes.update(self.by_name.get(name, {}))
        return self.defaults.replace(**changes) if changes else self.defaults

    def unknown_names(self, names) -> list:
        """Override names that match no layer (reported as an error upstream)."""
        return sorted(set(self.by_name) - set(names))

    def to_dict(self) -> dict:
        return {
            "defaults": {
                k: _plain(v) for k, v in dataclasses.asdict(self.defaults).items()
            },
            "by_op": self.by_op,
            "by_name": self.by_name,
        }

    def __repr__(self) -> str:
        return f"QuantConfig({self.to_dict()!r})"


def _plain(value):
    return dict(value) if isinstance(value, Mapping) else value


def as_config(config) -> QuantConfig:
    """``None`` -> defaults; a QuantConfig as is; a mapping -> QuantConfig(**it)."""
    if config is None:
        return QuantConfig()
    if isinstance(config, QuantConfig):
        return config
    if isinstance(config, Mapping):
        return QuantConfig(**dict(config))
    raise InvalidArgumentError(
        f"config must be None, a QuantConfig or a mapping of settings; got "
        f"config of type {type(config).__name__}"
    )
