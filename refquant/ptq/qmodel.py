"""The quantized model: integer nodes, qparams of every tensor, three runners.

``mode="static"``: ``run`` quantizes the input, runs the integer kernels layer
by layer under a profile and dequantizes the outputs; ``simulate`` is the
fake-quant float64 twin; ``parity`` compares their codes layer by layer.
``mode="dynamic"``: int8 weights; each weighted layer quantizes its input per
batch at run time (uint8, min-max of the batch), accumulates exactly in
integers and returns float.  ``mode="weight_only"``: the float executor on the
dequantized weights.  Spec: specs/ptq.md, sections 3-6.
"""

from __future__ import annotations

import numpy as np

from refquant._validation import OneOf, check, check_type
from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.evaluation.size import (
    ModelSize,
    StoredTensor,
    model_size,
    quantized_tensor,
    stored_tensor,
)
from refquant.graph.float_ops import FLOAT_KERNELS
from refquant.graph.nodes import OPS
from refquant.kernels.conv import conv2d_accumulator, depthwise_conv2d_accumulator
from refquant.kernels.linear import fully_connected_accumulator
from refquant.kernels.quantize_ops import dequantize_linear, quantize_linear
from refquant.profiles import get_profile
from refquant.ptq.engine import simulate_node
from refquant.ptq.qtensors import QuantizedNode, TensorQParams

__all__ = ["MODES", "QuantizedModel"]

MODES = ("static", "dynamic", "weight_only")


class QuantizedModel:
    """A network whose weights are integer codes, ready for the integer engine.

    Parameters
    ----------
    nodes : sequence of QuantizedNode
        In topological order.
    inputs, outputs : sequence of str
        Graph input names (one for now) and output tensor names.
    tensor_qparams : mapping of str to TensorQParams
        Every tensor's activation qparams (static mode; empty otherwise).
    mode : {"static", "dynamic", "weight_only"}
    name : str
    """

    def __init__(
        self,
        nodes,
        inputs,
        outputs,
        tensor_qparams=None,
        *,
        mode="static",
        name="quantized",
    ):
        check("mode", mode, OneOf(MODES))
        check_type("name", name, (str,), "a str")
        self.nodes = tuple(nodes)
        for n in self.nodes:
            check_type("nodes", n, (QuantizedNode,), "a sequence of QuantizedNode")
            check("node op", n.op, OneOf(OPS))
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        if len(self.inputs) != 1:
            raise NotImplementedError(
                f"quantized models take one input; got inputs={list(self.inputs)}"
            )
        self.mode = mode
        self.name = name
        self.tensor_qparams = dict(tensor_qparams or {})
        self._check_wiring()

    def _check_wiring(self) -> None:
        known = set(self.inputs)
        for n in self.nodes:
            for i in n.inputs:
                if i not in known:
                    raise InvalidArgumentError(
                        f"node {n.name!r} reads {i!r}, which no earlier node or "
                        f"input produces"
                    )
            if n.name in known:
                raise InvalidArgumentError(f"duplicate tensor name {n.name!r}")
            known.add(n.name)
        for o in self.outputs:
            if o not in known:
                raise InvalidArgumentError(f"output {o!r} names no tensor")
        if self.mode == "static":
            missing = sorted(known - set(self.tensor_qparams))
            if missing:
                raise InvalidArgumentError(
                    f"a static model needs qparams for every tensor; missing "
                    f"{missing[:5]}"
                )
            for k, v in self.tensor_qparams.items():
                check_type(
                    f"tensor_qparams[{k!r}]", v, (TensorQParams,), "a TensorQParams"
                )

    # ------------------------------------------------------------ helpers
    def __repr__(self) -> str:
        return (
            f"QuantizedModel({self.name!r}, mode={self.mode!r}, "
            f"{len(self.nodes)} nodes, {self.size_bytes()} bytes)"
        )

    def node(self, name: str) -> QuantizedNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise InvalidArgumentError(
            f"name must be a node of this model; got name={name!r}"
        )

    def _input(self, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise InvalidTypeError(
                f"x must be a numpy float array with a batch axis; got x of type "
                f"{type(x).__name__}"
            )
        if x.ndim < 1 or x.dtype.kind != "f":
            raise InvalidArgumentError(
                f"x must be a float array with a batch axis; got dtype {x.dtype} "
                f"shape {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise InvalidArgumentError("x must hold finite values; got NaN or inf")
        return x

    def _require_static(self, what: str) -> None:
        if self.mode != "static":
            raise InvalidArgumentError(
                f"{what} needs a static model (integer activations); this model "
                f"has mode={self.mode!r}"
            )

    def _outputs(self, env):
        outs = tuple(env[o] for o in self.outputs)
        return outs[0] if len(outs) == 1 else outs

    @staticmethod
    def _last_use(nodes):
        last = {}
        for i, n in enumerate(nodes):
            for name in n.inputs:
                last[name] = i
        return last

    # ------------------------------------------------------------ static
    def quantize_input(self, x, *, profile="exact") -> np.ndarray:
        """Input codes: ``quantize_linear(x, s_in, zp_in)`` under ``profile``."""
        self._require_static("quantize_input")
        x = self._input(x)
        qp = self.tensor_qparams[self.inputs[0]]
        q = quantize_linear(
            x.astype(np.float32), qp.scale, qp.zero_point, profile=profile
        )
        return np.clip(q, qp.qmin, qp.qmax).astype(np.int8)

    def run_codes(self, x, *, profile="exact", capture=False):
        """Output codes of the integer engine (and every tensor's with capture).

        Parameters
        ----------
        x : float ndarray, batch first (NHWC for images)
        profile : str or Profile
            Rounding and overflow behaviour of every kernel.
        capture : bool
            Also return ``{tensor name: int8 codes}`` for every tensor.

        The model is compiled once per profile (prepared weights, multipliers,
        clamp bounds; :mod:`refquant.ptq.program`); the codes equal those of
        :func:`refquant.ptq.engine.run_node` applied node by node.
        """
        self._require_static("run_codes")
        prof = get_profile(profile)
        steps = self._program(prof, fuse=not capture)
        env = {self.inputs[0]: self.quantize_input(x, profile=prof)}
        keep = set(self.outputs)
        last = self._last_use(self.nodes)
        index = {n.name: i for i, n in enumerate(self.nodes)}
        for n, step, pooled in steps:
            out_name = n.name if pooled is None else pooled.name
            env[out_name] = step([env[k] for k in n.inputs])
            if not capture:
                i = index[out_name]
                for k in set(n.inputs):
                    if last[k] <= i and k not in keep:
                        env.pop(k, None)
        outs = self._outputs(env)
        return (outs, env) if capture else outs

    def _program(self, prof, *, fuse: bool):
        """Compiled steps for ``prof``, cached while the qparams are unchanged."""
        from refquant.ptq.program import compile_model

        cache = self.__dict__.setdefault("_programs", {})
        stamp = tuple(self.tensor_qparams.get(k) for k in self._tensor_names())
        key = (prof, fuse)
        hit = cache.get(key)
        if hit is None or hit[0] != stamp:
            steps = compile_model(
                self.nodes, self.tensor_qparams, self.outputs, prof, fuse=fuse
            )
            hit = cache[key] = (stamp, steps)
        return hit[1]

    def _tensor_names(self):
        return self.inputs + tuple(n.name for n in self.nodes)

    def run(self, x, *, profile="exact", batch_size=None):
        """Float outputs: static -> integer engine then dequantize; dynamic ->
        per-batch quantized activations; weight_only -> float executor.

        ``y = (q_out - zp_out) * s_out`` (float64 product, returned float32).
        """
        x = self._input(x)
        if batch_size is not None:
            check_type("batch_size", batch_size, (int,), "an int >= 1 or None")
            if batch_size < 1:
                raise InvalidArgumentError(
                    f"batch_size must be an int >= 1 or None; got "
                    f"batch_size={batch_size}"
                )
            parts = [
                self.run(x[i : i + batch_size], profile=profile)
                for i in range(0, x.shape[0], batch_size)
            ]
            if isinstance(parts[0], tuple):
                return tuple(np.concatenate(p) for p in zip(*parts))
            return np.concatenate(parts)
        if self.mode == "static":
            codes = self.run_codes(x, profile=profile)
            codes = codes if isinstance(codes, tuple) else (codes,)
            outs = tuple(self._dequantize(o, c) for o, c in zip(self.outputs, codes))
            return outs[0] if len(outs) == 1 else outs
        if self.mode == "dynamic":
            return self._run_float(x, get_profile(profile), dynamic=True)
        return self._run_float(x, None, dynamic=False)

    def _dequantize(self, name, codes):
        qp = self.tensor_qparams[name]
        return qp.dequantize(codes).astype(np.float32)

    def simulate(self, x, *, capture=False):
        """Fake-quant float64 simulation: dequantized output (float32).

        Each node runs the float kernel on dequantized inputs, weights and bias
        and quantizes its result (``half_even``); with ``capture`` the codes of
        every tensor are returned too.
        """
        self._require_static("simulate")
        x = self._input(x)
        in_qp = self.tensor_qparams[self.inputs[0]]
        from refquant.numerics.quantize import quantize

        codes = {self.inputs[0]: quantize(x.astype(np.float64), in_qp.qparams())}
        for n in self.nodes:
            vals = [self.tensor_qparams[k].dequantize(codes[k]) for k in n.inputs]
            codes[n.name] = simulate_node(n, vals, self.tensor_qparams)
        outs = tuple(self._dequantize(o, codes[o]) for o in self.outputs)
        outs = outs[0] if len(outs) == 1 else outs
        return (outs, codes) if capture else outs

    def parity(self, x, profile="exact", *, propagate=False) -> dict:
        """Largest ``|engine code - simulation code|`` per layer.

        ``propagate=False`` (default): each layer's simulation reads the
        engine's own input codes, so the number is that layer's local
        disagreement.  ``propagate=True``: the two run independently and the
        differences accumulate through the network.
        """
        self._require_static("parity")
        _, eng = self.run_codes(x, profile=profile, capture=True)
        if propagate:
            _, sim = self.simulate(x, capture=True)
        else:
            sim = {}
            for n in self.nodes:
                vals = [self.tensor_qparams[k].dequantize(eng[k]) for k in n.inputs]
                sim[n.name] = simulate_node(n, vals, self.tensor_qparams)
        return {
            n.name: int(
                np.max(
                    np.abs(eng[n.name].astype(np.int64) - sim[n.name].astype(np.int64)),
                    initial=0,
                )
            )
            for n in self.nodes
        }

    # ------------------------------------------------------------ float modes
    def _run_float(self, x, prof, dynamic: bool):
        env = {self.inputs[0]: x.astype(np.float32)}
        keep = set(self.outputs)
        last = self._last_use(self.nodes)
        for i, n in enumerate(self.nodes):
            args = tuple(env[k] for k in n.inputs)
            if dynamic and n.weight is not None:
                env[n.name] = _dynamic_node(n, args[0], prof)
            else:
                params = n.float_params()
                if "weight" in params:
                    params["weight"] = params["weight"].astype(np.float32)
                env[n.name] = FLOAT_KERNELS[n.op].forward(args, params, n.attrs)
            for k in set(n.inputs):
                if last[k] == i and k not in keep:
                    del env[k]
        return self._outputs(env)

    # ------------------------------------------------------------ size
    def size(self) -> ModelSize:
        """Every stored tensor: weight codes at their bit width, scales
        (float32), zero points (int8), biases (int32 or float32), activation
        qparams (float32 scale + int8 zero point per tensor), float params."""
        tensors: list[StoredTensor] = []
        for n in self.nodes:
            if n.weight is not None:
                w = n.weight
                tensors += quantized_tensor(
                    f"{n.name}.weight",
                    int(w.codes.size),
                    w.scheme.bits,
                    w.num_params,
                    zero_point_dtype="int8",
                )
            if n.bias is not None:
                tensors.append(stored_tensor(f"{n.name}.bias", n.bias, "bias"))
            for k, v in n.params.items():
                tensors.append(stored_tensor(f"{n.name}.{k}", v, "other"))
        for k in self.tensor_qparams:
            tensors.append(StoredTensor(f"{k}.act_scale", 1, "float32", "scale"))
            tensors.append(StoredTensor(f"{k}.act_zero_point", 1, "int8", "zero_point"))
        return model_size(tensors)

    def size_bytes(self) -> int:
        """Total bytes of :meth:`size`."""
        return self.size().total_bytes

    def fp32_size_bytes(self) -> int:
        """Bytes of the same (folded) network with every param in float32."""
        total = 0
        for n in self.nodes:
            if n.weight is not None:
                total += 4 * int(n.weight.codes.size)
            if n.bias is not None:
                total += 4 * int(n.bias.size)
            total += sum(4 * int(v.size) for v in n.params.values())
        return total

    def summary(self) -> str:
        """One line per node: name, op, weight scheme, output qparams."""
        lines = [f"QuantizedModel {self.name!r} ({self.mode})"]
        for n in self.nodes:
            w = ""
            if n.weight is not None:
                s = n.weight.scheme
                w = f" w:int{s.bits} {s.granularity}"
            qp = self.tensor_qparams.get(n.name)
            a = f" out: s={qp.scale:.6g} zp={qp.zero_point}" if qp else ""
            lines.append(f"  {n.name:<28} {n.op:<16}{w}{a}")
        lines.append(f"{self.size_bytes()} bytes")
        return "\n".join(lines)


def _dynamic_node(node, x, prof):
    """``y = s_x * s_w[c] * acc + bias`` with ``q_x`` from per-batch min-max.

    ``q_x, s_x, zp_x = dynamic_quantize_linear(x)`` (uint8), ``acc`` the exact
    integer accumulator, then the fused activation in float32.
    """
    from refquant.kernels.quantize_ops import dynamic_quantize_linear

    q, s_x, zp = dynamic_quantize_linear(np.asarray(x, np.float32), profile=prof)
    w, at = node.weight, node.attrs
    if node.op == "Conv2D":
        acc = conv2d_accumulator(
            q,
            zp,
            w.codes,
            w.zero_point,
            strides=at["strides"],
            dilations=at["dilations"],
            groups=at["groups"],
            padding=at["padding"],
        )
    elif node.op == "DepthwiseConv2D":
        acc = depthwise_conv2d_accumulator(
            q,
            zp,
            w.codes,
            w.zero_point,
            depth_multiplier=at["depth_multiplier"],
            strides=at["strides"],
            dilations=at["dilations"],
            padding=at["padding"],
        )
    else:
        acc = fully_connected_accumulator(q, zp, w.codes, w.zero_point)
    y = dequantize_linear(
        acc, _dynamic_scale(s_x, w.scale, prof), 0, axis=acc.ndim - 1, profile=prof
    )
    y = np.asarray(y, dtype=np.float32)
    if node.bias is not None:
        y = y + node.bias
    act = at.get("activation")
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "relu6":
        y = np.clip(y, 0, 6)
    return y.astype(np.float32)


def _dynamic_scale(s_x, s_w, prof):
    """``s_x * s_w``, formed as the profile forms multipliers.

    ``float64``: the product of the two scales in float64 (exact for float32
    scales); ``float32``: one float32 multiplication, ``f32(s_x * s_w)`` with
    ties to even, as ONNX Runtime's ``Mul`` node after ``ConvInteger`` does.
    """
    if prof.multiplier_formation == "float32":
        return np.float32(s_x) * np.asarray(s_w, np.float32)
    return float(s_x) * np.asarray(s_w, np.float64)


def as_model(name: str, value) -> QuantizedModel:
    check_type(name, value, (QuantizedModel,), "a QuantizedModel")
    return value
