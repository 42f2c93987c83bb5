"""A quantized model compiled once per profile: the integer engine, fast.

Each node of a static :class:`~refquant.ptq.qmodel.QuantizedModel` becomes a
step whose constants are computed once per (model, profile): weights prepared
for the exact GEMM (:func:`refquant.kernels.gemm.prepare_weights`), centred
depthwise taps, the int32 bias as float64, the real multipliers
``M[c] = s_in * s_w[c] / s_out`` in the profile's formation, fixed-point
``(multiplier, shift)`` pairs, and the fused clamp bounds.  Argument checks
run at compile time, not per call.  Every step computes exactly the codes of
:func:`refquant.ptq.engine.run_node` (one kernel call per node), which
``tests/test_qmodel.py`` checks bit for bit under every profile:

* accumulators are exact integers held in float32 / float64 (every partial
  sum stays below ``2**24`` / ``2**53``, bounded at compile time);
* the int32 overflow policy runs only when that bound exceeds int32;
* requantization per method (specs/kernels_pointwise.md section 1):
  ``exact`` rounds ``r = f64(acc) * M64`` and sends the elements within
  ``2**-40`` of a decision point (a tie, or an integer for floor / ceil) to
  the kernels' exact rational rounding; ``float32`` / ``float64`` evaluate
  the profile's float formula; ``tflite_double`` is gemmlowp's
  ``RDBPOT(SRDHM(acc, m), r)`` with the ties-up SRDHM written as
  ``(acc * m + 2**30) >> 31``; any other method calls
  :func:`refquant.kernels.requantize.requantize_accumulator`;
* ops without weights call their kernel directly.
"""

from __future__ import annotations

import numpy as np

from refquant.kernels import _arith
from refquant.kernels.activations import activation_range
from refquant.kernels.conv import (
    _centred_padded,
    _exact_tap_dtype,
    _geometry,
    _im2col,
)
from refquant.kernels.gemm import exact_affine_gemm, prepare_weights
from refquant.kernels.requantize import (
    _multiplier64,
    check_accumulator,
    requantize_accumulator,
)
from refquant.numerics import fixedpoint
from refquant.ptq.engine import (
    _ENGINE,
    check_profile_support,
    clamp_bits,
    fusable_max_pools,
    max_window,
)
from refquant.ptq.qtensors import to_matrix

__all__ = ["compile_model", "Requantizer"]

INT32_MAX = 2**31 - 1
#: Output values per epilogue block (float32: 256 KiB, within a 1 MiB L2).
CHUNK = 65536
_TIE_MARGIN = 2.0**-40  # > |f64(acc) * M64 - acc * M| for every |acc * M| < 2**10
_HALF_RULES = ("half_even", "half_away", "half_up")


# ---------------------------------------------------------------- requantize
class Requantizer:
    """``acc -> clamp(round_profile(acc * M[c]) + zp)`` with constants prepared.

    Equal, code for code, to ``clamp_bits(requantize_accumulator(acc, s_in,
    s_w, s_out, zp, np.int8, prof, activation=activation), y)`` for
    accumulators in the int32 range, given as float32 / float64 arrays that
    hold those integers exactly (channels last).

    ``float32`` methods evaluate the profile's formula directly.  ``exact``,
    ``float64`` and ``tflite_double`` first round the float32 estimate
    ``v = f32(acc) * f32(M_eff)`` (relative error below ``3 * 2**-24``, so
    ``|v - acc * M_eff| < 2**-11`` wherever ``|v| < 2**10``; beyond that every
    rule saturates the int8 output); an element whose ``v`` lies within
    ``band`` of a decision point (``k + 1/2`` for the half rules, ``k`` for
    floor and ceil) is recomputed with the method's own arithmetic.  For
    ``tflite_double`` the band adds ``2**-(r + 1)``, the most the first
    (SRDHM) rounding moves the value before the final right shift by ``r``.
    """

    def __init__(self, s_in, s_w, s_out, zp, activation, prof, qmin, qmax):
        self.prof = prof
        self.args = (s_in, s_w, s_out, zp, activation)
        self.method = prof.requantize_method
        self.rule = prof.requantize_rounding
        self.s_in = np.float64(s_in)
        self.s_out = np.float64(s_out)
        self.s_w = np.asarray(s_w, np.float64)
        lo, hi = activation_range(activation, s_out, zp, np.int8, prof)
        self.lo = np.clip(lo, qmin, qmax).astype(np.float32)
        self.hi = np.clip(hi, qmin, qmax).astype(np.float32)
        self.zp = np.float32(zp)
        m64 = _multiplier64(
            np.asarray(self.s_in),
            self.s_w,
            np.asarray(self.s_out),
            prof.multiplier_formation,
        )
        self.band = 2.0**-11
        if self.method == "exact":
            self.m_eff = self.s_in * self.s_w / self.s_out
        elif self.method in ("float32", "float64"):
            self.m64 = m64
            self.m_eff = m64
        elif self.method == "tflite_double":
            self._init_fixed_point(m64)
        else:
            self.method = "kernel"
        if self.method == "float64" and self.rule not in _HALF_RULES:
            self.method = "kernel"
        if self.method != "kernel":
            self.m32 = np.asarray(self.m_eff, np.float64).astype(np.float32)

    def _init_fixed_point(self, m64):
        mult, shift = fixedpoint.quantize_multiplier(np.asarray(m64))
        mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
        if not (np.all(shift <= -1) and np.all(shift > -31) and np.all(mult > 0)):
            self.method = "kernel"  # left shifts, flushed multipliers: rare
            return
        self.mult, self.right = mult, -shift
        self.half = (np.int64(1) << self.right) >> 1
        self.m_eff = mult * np.ldexp(1.0, shift - 31)  # exact: the quantized M
        self.band = 2.0**-11 + 2.0 ** -(int(np.min(self.right)) + 1)
        if self.band > 2.0**-4:
            self.method = "kernel"  # most elements would be near a decision
        self.rule = "half_away"

    def __call__(self, acc) -> np.ndarray:
        if self.method == "float32":
            y = self._float32(acc)
        elif self.method == "kernel":
            y = self._kernel(acc)
        else:
            y = self._estimate(acc)
        np.clip(y, self.lo, self.hi, out=y)
        return y.astype(np.int8)

    # -- each returns round_profile(acc * M) + zp in a float array
    def _estimate(self, acc):
        acc32 = acc if acc.dtype == np.float32 else acc.astype(np.float32)
        v = np.multiply(acc32, self.m32)  # within 2**-11 of acc * M_eff
        if self.rule in _HALF_RULES:
            q = np.rint(v)
            np.subtract(v, q, out=v)
            np.abs(v, out=v)
            near = v >= 0.5 - self.band
        else:
            q = np.floor(v) if self.rule == "floor" else np.ceil(v)
            near = np.abs(v - np.rint(v)) <= self.band
        if near.any():
            idx = np.flatnonzero(near)
            channels = acc.shape[-1] if acc.ndim else 1
            a = acc.reshape(-1)[idx].astype(np.int64)
            q.reshape(-1)[idx] = getattr(self, f"_fix_{self.method}")(a, idx % channels)
        q += self.zp
        return q

    def _per_channel(self, values, ch):
        return values if values.ndim == 0 else values.reshape(-1)[ch]

    def _fix_exact(self, a, ch):
        """The kernel's correctly rounded ``a * s_in * s_w / s_out``."""
        s_w = self._per_channel(self.s_w, ch)
        r = _arith.exact_round_ratio([[a, self.s_in, s_w]], [self.s_out], self.rule)
        return np.clip(r, -(2.0**40), 2.0**40)

    def _fix_float64(self, a, ch):
        """``round(f64(a) * M64)`` (zero point before rounding if the profile
        says so, then taken off again)."""
        v = a.astype(np.float64) * self._per_channel(self.m64, ch)
        if self.prof.requantize_zero_point == "before_rounding":
            return _arith.round_float(v + np.float64(self.zp), self.rule) - self.zp
        return _arith.round_float(v, self.rule)

    def _fix_tflite_double(self, a, ch):
        """gemmlowp ``RDBPOT(SRDHM(a, m), r)`` in int64."""
        x = a * self._per_channel(self.mult, ch)  # |a * m| < 2**62
        x = (x + (1 << 30)) >> 31  # SRDHM, ties toward +inf (floor form)
        right = self._per_channel(self.right, ch)
        x = (x + self._per_channel(self.half, ch) - (x < 0)) >> right  # ties away
        return x.astype(np.float64)

    def _float32(self, acc):
        v = acc if acc.dtype == np.float32 else acc.astype(np.float32)  # f32(acc)
        np.multiply(v, self.m32, out=v)  # one float32 rounding
        if self.prof.requantize_zero_point == "before_rounding":
            v = v.astype(np.float64) + np.float64(self.zp)
            return _arith.round_float(v, self.rule)
        if self.rule == "half_even":
            np.rint(v, out=v)
        else:
            v = _arith.round_float(v, self.rule)
        v += self.zp  # beyond 2**24 the clamp saturates either way
        return v

    def _kernel(self, acc):
        s_in, s_w, s_out, zp, activation = self.args
        q = requantize_accumulator(
            acc.astype(np.int64),
            s_in,
            s_w,
            s_out,
            zp,
            np.int8,
            self.prof,
            channel_axis=-1,
            activation=activation,
        )
        return q.astype(np.float32)


# ---------------------------------------------------------------- weighted
class _Weighted:
    """Conv2D, DepthwiseConv2D or Dense (optionally followed by a fused max
    pool): exact accumulators in float, bias, overflow policy, requantize."""

    def __init__(self, node, qp, prof, pool=None):
        a, y, w = qp[node.inputs[0]], qp[node.name], node.weight
        self.node, self.pool, self.prof = node, pool, prof
        self.zx = a.zero_point
        op_prof = prof.for_op("fully_connected") if node.op == "Dense" else prof
        self.requant = Requantizer(
            a.scale,
            w.scale,
            y.scale,
            y.zero_point,
            node.attrs["activation"],
            op_prof,
            y.qmin,
            y.qmax,
        )
        codes = w.codes.astype(np.int64)
        zw = np.asarray(w.zero_point, np.int64)
        self.bias = None if node.bias is None else node.bias.astype(np.float64)
        if node.op == "DepthwiseConv2D":
            self._init_depthwise(codes, zw)
        elif node.op == "Conv2D":
            self._init_conv(w, zw)
        else:
            self.w = prepare_weights(w.codes.T, zw)  # (K, C_out)
        mat = to_matrix(node.op, codes)  # (C_out, K): K terms per accumulator
        dev_w = int(np.max(np.abs(mat - (zw[:, None] if zw.ndim else zw))))
        dev_x = max(127 - self.zx, self.zx + 128)
        k = mat.shape[1]
        bmax = 0 if node.bias is None else int(np.max(np.abs(node.bias), initial=0))
        self.bias_max = float(bmax)
        b32 = None if node.bias is None else node.bias.astype(np.float32)
        exact32 = b32 is not None and np.array_equal(b32.astype(np.int64), node.bias)
        self.bias32 = b32 if exact32 else None
        bound = k * dev_x * dev_w + bmax  # >= |acc| for every input
        self.needs_check = bound > INT32_MAX
        self.what = f"{node.op} accumulator"

    def _init_conv(self, w, zw):
        at = self.node.attrs
        c_out, kh, kw, cg = w.codes.shape
        g = at["groups"]
        w_mat = w.codes.reshape(g, c_out // g, kh * kw * cg).transpose(0, 2, 1)
        zw_g = zw.reshape(g, c_out // g) if zw.ndim else zw
        self.w = prepare_weights(w_mat, zw_g)  # (G, K, C_out/G)
        self.kernel = (kh, kw)
        self.pointwise = (
            (kh, kw) == (1, 1) and g == 1 and tuple(at["strides"]) == (1, 1)
        )

    def _init_depthwise(self, codes, zw):
        _, kh, kw, c = codes.shape
        dm = self.node.attrs["depth_multiplier"]
        self.kernel = (kh, kw)
        self.tap_dtype = _exact_tap_dtype(kh * kw, np.int8, self.zx, np.int8, zw)
        ws = (codes[0] - zw).astype(self.tap_dtype).reshape(kh, kw, c // dm, dm)
        self.taps = ws[..., 0] if dm == 1 else ws

    # -- accumulators (exact integers in a float or int64 array)
    def _geom(self, x):
        at = self.node.attrs
        return _geometry(
            x.shape, self.kernel, at["strides"], at["dilations"], at["padding"]
        )

    def _conv_acc(self, x):
        geom = self._geom(x)
        n, g = x.shape[0], self.node.attrs["groups"]
        if self.pointwise and geom.pads == ((0, 0), (0, 0)):
            patches = x.reshape(1, -1, x.shape[3])
        else:
            patches = _im2col(x, self.zx, geom, g)  # (G, M, K)
        acc = exact_affine_gemm(patches, self.zx, self.w, None, result="float")
        if g > 1:
            acc = acc.transpose(1, 0, 2)
        return acc.reshape(n, geom.out_h, geom.out_w, -1)

    def _depthwise_rows(self, xs, geom, n, r0, r1):
        """Accumulators of image ``n``, output rows ``[r0, r1)``: one
        multiply-add per kernel tap on strided views (never per pixel)."""
        ws = self.taps
        kh, kw = self.kernel
        dm = 1 if ws.ndim == 3 else ws.shape[-1]
        (sh, sw), (dh, dw) = geom.strides, geom.dilations
        acc = tmp = None
        for i in range(kh):  # loop over the kernel taps only
            y0 = r0 * sh + i * dh
            for j in range(kw):
                x0 = j * dw
                tap = xs[
                    n : n + 1,
                    y0 : y0 + (r1 - r0 - 1) * sh + 1 : sh,
                    x0 : x0 + (geom.out_w - 1) * sw + 1 : sw,
                ]
                tap = tap if dm == 1 else tap[..., None]
                if acc is None:
                    acc = np.multiply(tap, ws[i, j])
                    tmp = np.empty_like(acc)
                else:
                    np.multiply(tap, ws[i, j], out=tmp)
                    acc += tmp  # every partial sum exact in the tap dtype
        return acc.reshape(1, r1 - r0, geom.out_w, -1)

    def _chunks(self, n, out_h, row_size):
        """``(image, r0, r1)`` blocks of about :data:`CHUNK` output values, so
        the epilogue's passes run in cache."""
        rows = max(1, CHUNK // max(row_size, 1))
        for b in range(n):
            for r0 in range(0, out_h, rows):
                yield b, r0, min(r0 + rows, out_h)

    def _add_bias(self, acc):
        """``acc + bias``, exact, in float32 when that is exact, else float64.

        float32 is exact when ``max|acc| + max|bias| <= 2**24``; for the
        ``float32`` requantization it is enough that acc and bias are float32
        values: the float32 sum is then ``f32(acc + bias)``, which is what that
        method rounds anyway.
        """
        if self.bias is None and acc.dtype == np.float32:
            return acc
        if acc.dtype == np.float32 and self.bias32 is not None:
            if self.requant.method == "float32" and not self.needs_check:
                acc += self.bias32
                return acc
            big = max(float(acc.max(initial=0)), -float(acc.min(initial=0)))
            if big + self.bias_max <= 2.0**24:
                acc += self.bias32
                return acc
        if acc.dtype != np.float64:
            acc = acc.astype(np.float64)  # exact: |acc| <= bound < 2**53
        if self.bias is not None:
            acc += self.bias
        return acc

    def _epilogue(self, acc):
        """Bias, overflow policy, fused max pool, requantization."""
        acc = self._add_bias(acc)
        if self.needs_check:
            acc = check_accumulator(
                acc.astype(np.int64), self.prof, bits=32, what=self.what
            ).astype(np.float64)
        if self.pool is not None:
            acc = max_window(acc, self.pool.attrs)
        return self.requant(acc)

    def __call__(self, codes):
        x = codes[0]
        op = self.node.op
        if op == "Dense":
            x2 = x.reshape(-1, x.shape[-1])
            acc = exact_affine_gemm(x2, self.zx, self.w, None, result="float")
            return self._epilogue(acc.reshape(x.shape[:-1] + (-1,)))
        if op == "Conv2D":
            acc = self._conv_acc(x)
            if self.pool is not None:
                return self._epilogue(acc)
            out = np.empty(acc.shape, np.int8)
            n, oh, ow, c = acc.shape
            for b, r0, r1 in self._chunks(n, oh, ow * c):
                out[b, r0:r1] = self._epilogue(acc[b : b + 1, r0:r1])[0]
            return out
        geom = self._geom(x)
        xs = _centred_padded(x, self.zx, geom, self.tap_dtype)
        n, oh, ow = x.shape[0], geom.out_h, geom.out_w
        c = self.taps.shape[2] * (1 if self.taps.ndim == 3 else self.taps.shape[3])
        if self.pool is not None:
            acc = np.concatenate(
                [self._depthwise_rows(xs, geom, b, 0, oh) for b in range(n)]
            )
            return self._epilogue(acc)
        out = np.empty((n, oh, ow, c), np.int8)
        for b, r0, r1 in self._chunks(n, oh, ow * c):
            acc = self._depthwise_rows(xs, geom, b, r0, r1)
            out[b, r0:r1] = self._epilogue(acc)[0]
        return out


# ---------------------------------------------------------------- others
class _Kernel:
    """An op without weights: its kernel through the engine's node function."""

    def __init__(self, node, qp, prof):
        self.node, self.prof = node, prof
        self.a = [qp[i] for i in node.inputs]
        self.y = qp[node.name]
        self.fn = _ENGINE.get(node.op)
        if self.fn is None:
            raise NotImplementedError(
                f"node {node.name!r}: op {node.op} has no integer implementation"
            )

    def __call__(self, codes):
        return clamp_bits(self.fn(self.node, codes, self.a, self.y, self.prof), self.y)


def compile_model(nodes, qp, outputs, prof, *, fuse=True):
    """Steps ``[(node, step, pooled)]`` for :meth:`QuantizedModel.run_codes`.

    ``step(list of input codes) -> int8 codes``; ``pooled`` names the MaxPool
    node whose output the step produces when a max pool is fused into its
    convolution (that pool node has no step of its own), else None.
    """
    fused = fusable_max_pools(nodes, set(outputs)) if fuse else {}
    skip = {p.name for p in fused.values()}
    steps = []
    for n in nodes:
        if n.name in skip:
            continue
        check_profile_support(n, qp, prof)
        pool = fused.get(n.name)
        if n.op in ("Conv2D", "DepthwiseConv2D", "Dense"):
            steps.append((n, _Weighted(n, qp, prof, pool), pool))
        else:
            steps.append((n, _Kernel(n, qp, prof), None))
    return steps
