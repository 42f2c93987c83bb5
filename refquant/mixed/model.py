"""The mixed-precision model: each weighted layer at its own precision.

Every tensor lives in one of two domains.  ``int8``: codes with the tensor's
calibrated qparams ``x ~= (q - zero_point) * scale``; ``float``: float32
values.  A weighted layer's domain is ``int8`` for precision ``int8`` and
``float`` otherwise; an unweighted op (Add, pools, ReLU, Flatten...) runs in
``int8`` when every input is ``int8`` and in ``float`` otherwise.  Where a
layer reads a tensor of the other domain a conversion is inserted::

    float -> int8:  q = clamp(round(x / s) + zp, qmin, qmax)   (profile rounding)
    int8 -> float:  x = f32((q - zp) * s)

Integer layers run :func:`refquant.ptq.engine.run_node` on the nodes of the
calibrated static int8 model; the graph input is float, outputs are returned
as float32.  Spec: specs/mixed_precision.md, section 3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from refquant._validation import IntRange, OneOf, check, check_type
from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.evaluation.size import ModelSize, StoredTensor, model_size
from refquant.mixed.layers import PRECISIONS, MixedLayer, layer_forward
from refquant.ptq.config import WEIGHTED_OPS
from refquant.ptq.qtensors import TensorQParams

__all__ = ["MixedModel", "MixedQuantizer", "Trace"]

INT8, FLOAT = "int8", "float"


@dataclass
class Trace:
    """Every tensor of one forward pass of one batch, for reuse.

    ``env`` maps tensor names to arrays in their domain (int8 codes or
    float32), ``precisions`` the layer precisions that produced them.
    """

    precisions: dict
    env: dict
    outputs: tuple


class MixedModel:
    """A network whose layers run at mixed precisions, end to end.

    Parameters
    ----------
    layers : sequence of MixedLayer
        In topological order.
    inputs, outputs : sequence of str
    tensor_qparams : mapping of str to TensorQParams
        Calibrated int8 qparams of every tensor (used by int8 layers and the
        conversions at precision boundaries).
    name : str
    """

    def __init__(self, layers, inputs, outputs, tensor_qparams, *, name="mixed"):
        check_type("name", name, (str,), "a str")
        self.layers = tuple(layers)
        for layer in self.layers:
            check_type("layers", layer, (MixedLayer,), "a sequence of MixedLayer")
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        if len(self.inputs) != 1:
            raise NotImplementedError(
                f"mixed models take one input; got inputs={list(self.inputs)}"
            )
        self.name = name
        self.tensor_qparams = dict(tensor_qparams)
        for k, v in self.tensor_qparams.items():
            check_type(f"tensor_qparams[{k!r}]", v, (TensorQParams,), "a TensorQParams")
        self._wire()

    def _wire(self) -> None:
        self.domain = {self.inputs[0]: FLOAT}
        self._consumers = {}
        for layer in self.layers:
            for i in layer.inputs:
                if i not in self.domain:
                    raise InvalidArgumentError(
                        f"layer {layer.name!r} reads {i!r}, which no earlier layer "
                        f"or input produces"
                    )
                self._consumers.setdefault(i, []).append(layer.name)
            if layer.name in self.domain:
                raise InvalidArgumentError(f"duplicate tensor name {layer.name!r}")
            self.domain[layer.name] = self._domain_of(layer)
            if self.domain[layer.name] == INT8 and (
                set(layer.inputs) | {layer.name}
            ) - set(self.tensor_qparams):
                raise InvalidArgumentError(
                    f"layer {layer.name!r} runs on the integer engine but its "
                    f"tensors lack int8 qparams"
                )
        for o in self.outputs:
            if o not in self.domain:
                raise InvalidArgumentError(f"output {o!r} names no tensor")
        self._qnodes = {
            layer.name: layer.quantized_node()
            for layer in self.layers
            if self.domain[layer.name] == INT8
        }

    def _domain_of(self, layer: MixedLayer) -> str:
        if layer.precision is not None:
            return INT8 if layer.is_integer else FLOAT
        if all(self.domain[i] == INT8 for i in layer.inputs):
            return INT8
        return FLOAT

    # ------------------------------------------------------------ queries
    @property
    def precisions(self) -> dict:
        """``{layer name: precision}`` of the weighted layers."""
        return {a.name: a.precision for a in self.layers if a.precision is not None}

    def layer(self, name: str) -> MixedLayer:
        for a in self.layers:
            if a.name == name:
                return a
        raise InvalidArgumentError(f"name must be a layer of this model; got {name!r}")

    def boundaries(self) -> list[tuple]:
        """``(tensor, reader, "float->int8" | "int8->float")`` conversions."""
        out = []
        for layer in self.layers:
            for i in dict.fromkeys(layer.inputs):
                a, b = self.domain[i], self.domain[layer.name]
                if a != b:
                    out.append((i, layer.name, f"{a}->{b}"))
        for o in self.outputs:
            if self.domain[o] == INT8:
                out.append((o, "<output>", "int8->float"))
        return out

    def __repr__(self) -> str:
        counts: dict = {}
        for p in self.precisions.values():
            counts[p] = counts.get(p, 0) + 1
        mix = ", ".join(f"{k}: {v}" for k, v in counts.items())
        return f"MixedModel({self.name!r}, {mix}, {self.size_bytes()} bytes)"

    # ------------------------------------------------------------ size
    def size(self) -> ModelSize:
        """Every stored tensor: each layer's (see ``MixedLayer.stored_tensors``),
        plus the activation qparams the integer engine reads (float32 scale and
        int8 zero point of each input and output of an int8 layer, counted per
        layer, and of each other observed int8-domain tensor)."""
        from refquant.ptq.engine import FIXED_OUTPUT_QPARAMS, SHARED_QPARAMS_OPS

        tensors: list[StoredTensor] = []
        for layer in self.layers:
            tensors += layer.stored_tensors()
            if layer.is_integer:
                names = [layer.inputs[0], layer.name]
            elif (
                layer.precision is None
                and self.domain[layer.name] == INT8
                and layer.op not in SHARED_QPARAMS_OPS
                and layer.op not in FIXED_OUTPUT_QPARAMS
            ):
                names = [layer.name]
            else:
                names = []
            for k in names:
                tensors.append(
                    StoredTensor(f"{layer.name}:{k}.act_scale", 1, "float32", "scale")
                )
                tensors.append(
                    StoredTensor(
                        f"{layer.name}:{k}.act_zero_point", 1, "int8", "zero_point"
                    )
                )
        return model_size(tensors)

    def size_bytes(self) -> int:
        """Total bytes of :meth:`size`."""
        return self.size().total_bytes

    def fp32_size_bytes(self) -> int:
        """Bytes of the same network with every weight and bias in float32."""
        total = 0
        for a in self.layers:
            for k, v in a.tensors.items():
                if k in ("weight", "bias") or k.startswith("param."):
                    total += 4 * int(v.size)
        return total

    # ------------------------------------------------------------ running
    def run(self, x, *, profile="exact", batch_size=None) -> np.ndarray:
        """float32 outputs for float input ``x`` (batch first, NHWC images)."""
        x = _check_input(x)
        if batch_size is not None:
            check("batch_size", batch_size, IntRange(1, None))
            parts = [
                self.run(x[i : i + batch_size], profile=profile)
                for i in range(0, x.shape[0], batch_size)
            ]
            if isinstance(parts[0], tuple):
                return tuple(np.concatenate(p) for p in zip(*parts))
            return np.concatenate(parts)
        outs = self.trace(x, profile=profile, keep=False).outputs
        return outs[0] if len(outs) == 1 else outs

    def trace(self, x, *, profile="exact", base=None, keep=True) -> Trace:
        """One forward pass; with ``base`` (a Trace of the same batch) every
        tensor whose producing layers all have the same precision as in
        ``base`` is taken from it instead of being recomputed.

        ``keep=False`` frees each tensor after its last reader.
        """
        from refquant.profiles import get_profile

        prof = get_profile(profile)
        x = _check_input(x)
        if base is not None:
            check_type("base", base, (Trace,), "a Trace of the same batch")
        dirty = self._dirty(base)
        env = {} if base is None else {}
        env[self.inputs[0]] = x.astype(np.float32)
        src = base.env if base is not None else {}
        last = self._last_use()
        for i, layer in enumerate(self.layers):
            if layer.name not in dirty:
                if keep:
                    env[layer.name] = src[layer.name]
                continue
            args = [self._fetch(k, env, src, layer.name, prof) for k in layer.inputs]
            env[layer.name] = self._forward(layer, args, prof)
            if not keep:
                for k in set(layer.inputs):
                    if last[k] == i and k not in self.outputs:
                        env.pop(k, None)
        outs = tuple(
            self._as_float(o, env[o] if o in env else src[o]) for o in self.outputs
        )
        return Trace(self.precisions, env if keep else {}, outs)

    def _dirty(self, base) -> set:
        if base is None:
            return {a.name for a in self.layers}
        changed = {k for k, p in self.precisions.items() if base.precisions.get(k) != p}
        dirty: set = set()
        for a in self.layers:
            if a.name in changed or any(i in dirty for i in a.inputs):
                dirty.add(a.name)
            elif a.name not in base.env:
                dirty.add(a.name)
        return dirty

    def _last_use(self) -> dict:
        last = {}
        for i, a in enumerate(self.layers):
            for k in a.inputs:
                last[k] = i
        return last

    def _fetch(self, name, env, src, reader, prof):
        v = env[name] if name in env else src[name]
        want = self.domain[reader]
        if self.domain[name] == want:
            return v
        if want == FLOAT:
            return self._as_float(name, v)
        from refquant.kernels.quantize_ops import quantize_linear

        qp = self.tensor_qparams[name]
        q = quantize_linear(
            np.asarray(v, np.float32), qp.scale, qp.zero_point, profile=prof
        )
        return np.clip(q, qp.qmin, qp.qmax).astype(np.int8)

    def _as_float(self, name, v):
        if self.domain[name] == FLOAT:
            return v
        return self.tensor_qparams[name].dequantize(v).astype(np.float32)

    def _forward(self, layer, args, prof):
        if self.domain[layer.name] == INT8:
            from refquant.ptq.engine import run_node

            return run_node(self._qnodes[layer.name], args, self.tensor_qparams, prof)
        return layer_forward(layer, tuple(args), prof)

    def summary(self) -> str:
        """One line per layer: name, op, precision (domain), stored bytes."""
        lines = [f"MixedModel {self.name!r}"]
        for a in self.layers:
            p = a.precision or f"({self.domain[a.name]})"
            nbytes = sum(t.nbytes for t in a.stored_tensors())
            lines.append(f"  {a.name:<28} {a.op:<16} {p:<8} {nbytes:>10} B")
        b = self.boundaries()
        lines.append(f"{len(b)} conversions; {self.size_bytes()} bytes")
        return "\n".join(lines)


def _check_input(x) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise InvalidTypeError(
            f"x must be a numpy float array with a batch axis; got x of type "
            f"{type(x).__name__}"
        )
    if x.ndim < 1 or x.dtype.kind != "f":
        raise InvalidArgumentError(
            f"x must be a float array with a batch axis; got dtype {x.dtype} shape "
            f"{x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError("x must hold finite values; got NaN or inf")
    return x


class MixedQuantizer:
    """Builds mixed models of one FP32 graph: calibrate once, then any mix.

    Parameters
    ----------
    graph : Graph
        One-input FP32 network (NHWC); batch norms are folded, activations
        fused and leftover BatchNorms rewritten as 1x1 depthwise convs.
    calibration_data : float ndarray (N, ...) or iterable of batches
        Representative inputs for the int8 activation qparams.
    config : QuantConfig, mapping or None
        Settings of the static int8 model (defaults: int8 per-channel weights,
        min-max activations).
    group_size : int
        Group length of int4 weights along the reduction axis.
    ternary_threshold : float
        TWN threshold factor of ternary weights.
    batch_size : int
    progress : callable(done, total) or None
        Called after each calibration batch.
    qmodel : QuantizedModel or None
        An already calibrated static model of the same graph (skips calibration).

    Examples
    --------
    >>> from refquant.graph import sequential
    >>> g = sequential([("Dense", {"weight": np.eye(2, dtype=np.float32)}, {})])
    >>> mq = MixedQuantizer(g, np.float32([[1.0, -1.0], [0.5, 0.25]]))
    >>> m = mq.model({mq.layers[0]: "fp16"})
    >>> m.run(np.float32([[0.1, 2.0]])).tolist()
    [[0.0999755859375, 2.0]]
    """

    def __init__(
        self,
        graph,
        calibration_data=None,
        *,
        config=None,
        group_size=32,
        ternary_threshold=0.7,
        batch_size=32,
        progress=None,
        qmodel=None,
    ):
        from refquant.graph.graph import Graph
        from refquant.ptq import prepare_graph, quantize_model
        from refquant.ptq.qmodel import QuantizedModel
        from refquant.ptq.static import batch_norm_as_depthwise

        check_type("graph", graph, (Graph,), "a refquant.graph.Graph")
        check("group_size", group_size, IntRange(1, 2**20))
        self.group_size = group_size
        self.ternary_threshold = ternary_threshold
        if qmodel is None:
            qmodel = quantize_model(
                graph,
                calibration_data,
                config=config,
                batch_size=batch_size,
                progress=progress,
            )
        check_type("qmodel", qmodel, (QuantizedModel,), "a static QuantizedModel")
        if qmodel.mode != "static":
            raise InvalidArgumentError(
                f"qmodel must be a static QuantizedModel; got mode={qmodel.mode!r}"
            )
        self.qmodel = qmodel
        self.graph = batch_norm_as_depthwise(prepare_graph(graph))
        self.layers = tuple(n.name for n in self.graph.nodes if n.op in WEIGHTED_OPS)
        self._cache: dict = {}

    def layer(self, name: str, precision: str) -> MixedLayer:
        """Layer ``name`` quantized to ``precision`` (built once, then cached)."""
        from refquant.mixed.layers import int16_scale, plain_layer, weight_layer

        key = (name, precision)
        if key in self._cache:
            return self._cache[key]
        node = self.graph.node(name)
        if node.op not in WEIGHTED_OPS:
            layer = plain_layer(node)
        else:
            check(f"precision of {name!r}", precision, OneOf(PRECISIONS))
            qp = self.qmodel.tensor_qparams
            scales = (int16_scale(qp[node.inputs[0]]), int16_scale(qp[node.name]))
            layer = weight_layer(
                node,
                precision,
                int8_node=self.qmodel.node(name),
                int16_scales=scales,
                group_size=self.group_size,
                ternary_threshold=self.ternary_threshold,
            )
        self._cache[key] = layer
        return layer

    def layer_bytes(self, name: str, precision: str) -> int:
        """Bytes layer ``name`` adds at ``precision`` (its act qparams included)."""
        layer = self.layer(name, precision)
        extra = 10 if layer.is_integer else 0  # two (float32 scale, int8 zp)
        return sum(t.nbytes for t in layer.stored_tensors()) + extra

    def check_precisions(self, precisions, default: str = "fp32") -> dict:
        """``{layer: precision}`` for every weighted layer (validated)."""
        check("default", default, OneOf(PRECISIONS))
        if isinstance(precisions, str):
            check("precisions", precisions, OneOf(PRECISIONS))
            return dict.fromkeys(self.layers, precisions)
        check_type(
            "precisions",
            precisions,
            (Mapping,),
            "a precision name or a mapping layer -> precision",
        )
        for k, v in precisions.items():
            if k not in self.layers:
                raise InvalidArgumentError(
                    f"precisions names {k!r}, which is no weighted layer; layers: "
                    f"{', '.join(self.layers[:8])}"
                    f"{'...' if len(self.layers) > 8 else ''}"
                )
            check(f"precisions[{k!r}]", v, OneOf(PRECISIONS))
        return {k: precisions.get(k, default) for k in self.layers}

    def model(self, precisions, *, default: str = "fp32", name=None) -> MixedModel:
        """The mixed model with ``precisions`` (a name for every layer, or a
        mapping; unnamed layers take ``default``)."""
        prec = self.check_precisions(precisions, default)
        layers = [self.layer(n.name, prec.get(n.name)) for n in self.graph.nodes]
        return MixedModel(
            layers,
            self.graph.inputs,
            self.graph.outputs,
            self.qmodel.tensor_qparams,
            name=name or self.graph.name,
        )

    def size_floor(self) -> int:
        """Bytes that no layer choice changes (upper bound: unweighted layers'
        params and the qparams of their int8-domain outputs)."""
        total = 0
        for n in self.graph.nodes:
            if n.op not in WEIGHTED_OPS:
                total += sum(4 * int(v.size) for v in n.params.values()) + 5
        return total
