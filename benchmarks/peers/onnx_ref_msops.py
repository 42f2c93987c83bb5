"""com.microsoft QOperator ops for ``onnx.reference.ReferenceEvaluator``.

onnx.reference implements the standard QLinearConv but none of the ONNX
Runtime contrib ops that a QOperator model also uses.  These three follow the
standard ops' NumPy style: dequantize ``(q - zero_point) * scale`` in float32,
float32 arithmetic, quantize ``rint(v / scale) + zero_point`` (ties to even)
and saturate to the code type; QGemm requantizes its int32 accumulator as
onnx.reference's QLinearConv does (float32 multiplier, zero point added
before ``round``).
"""

from __future__ import annotations

import numpy as np
from onnx.reference.op_run import OpRun

MS = "com.microsoft"


def _dequantize(q, scale, zero_point):
    return (q.astype(np.int32) - zero_point.astype(np.int32)).astype(
        np.float32
    ) * np.float32(scale)


def _quantize(v, scale, zero_point):
    info = np.iinfo(zero_point.dtype)
    q = np.rint(v.astype(np.float32) / np.float32(scale)) + int(zero_point)
    return np.clip(q, info.min, info.max).astype(zero_point.dtype)


class QLinearAdd(OpRun):
    op_domain = MS

    def _run(self, a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp):
        v = _dequantize(a, a_scale, a_zp) + _dequantize(b, b_scale, b_zp)
        return (_quantize(v, y_scale, y_zp),)


class QLinearGlobalAveragePool(OpRun):
    op_domain = MS

    def _run(self, x, x_scale, x_zp, y_scale, y_zp, channels_last=None):
        last = (
            getattr(self, "channels_last", 0)
            if channels_last is None
            else channels_last
        )
        axes = (1, 2) if last else (2, 3)
        v = _dequantize(x, x_scale, x_zp).mean(axis=axes, keepdims=True)
        return (_quantize(v, y_scale, y_zp),)


class QGemm(OpRun):
    op_domain = MS

    def _run(
        self,
        a,
        a_scale,
        a_zp,
        b,
        b_scale,
        b_zp,
        c=None,
        y_scale=None,
        y_zp=None,
        alpha=None,
        transA=None,
        transB=None,
    ):
        ta = getattr(self, "transA", 0) if transA is None else transA
        tb = getattr(self, "transB", 0) if transB is None else transB
        A = a.astype(np.int32) - a_zp.astype(np.int32)
        zp_b = np.asarray(b_zp, np.int32)
        if tb:  # b is (N, K)
            B = b.astype(np.int32) - zp_b.reshape(-1, 1)
        else:  # b is (K, N)
            B = (b.astype(np.int32) - zp_b.reshape(1, -1)).T
        A = A.T if ta else A
        acc = A @ B.T  # (M, N) int32, exact for these K
        if c is not None:
            acc = acc + c.astype(np.int32)
        r = acc * (
            np.float32(a_scale) * np.asarray(b_scale, np.float32) / np.float32(y_scale)
        )
        r = r + y_zp
        info = np.iinfo(y_zp.dtype)
        return (np.round(np.clip(r, info.min, info.max)).astype(y_zp.dtype),)


NEW_OPS = [QLinearAdd, QLinearGlobalAveragePool, QGemm]
