"""Per-layer sensitivity: one layer changed, the rest held, on held-out data.

Two views.  ``alone``: layer ``l`` at precision ``p``, every other layer FP32.
``all_but``: every layer at the base precision (int8) except ``l`` in FP32.
Each model is compared with the FP32 model on the same inputs::

    sqnr_db   = 10 log10(sum(y**2) / sum((y - y_q)**2))        over all outputs
    kl        = mean_n sum_c p[n, c] (log p[n, c] - log q[n, c]),  p = softmax(y)
    agreement = mean_n [argmax y[n] == argmax y_q[n]]
    accuracy  = mean_n [argmax y_q[n] == label[n]]             (labels >= 0)

(float64; argmax ties go to the lower index).  Batches are streamed: the
FP32 (or base) pass of a batch is traced once and every variant recomputes
only the layers downstream of the changed one.  Spec:
specs/mixed_precision.md, section 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from refquant._validation import IntRange, OneOf, check, check_type
from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.mixed.layers import PRECISIONS
from refquant.mixed.model import MixedQuantizer

__all__ = ["OutputStats", "SensitivityResult", "measure_sensitivity"]

VIEWS = ("alone", "all_but")
METRICS = ("sqnr_db", "kl", "agreement", "accuracy")


def log_softmax(y: np.ndarray) -> np.ndarray:
    """``y - max - log(sum(exp(y - max)))`` per row, float64."""
    y = np.asarray(y, np.float64)
    z = y - y.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass
class OutputStats:
    """Streaming comparison of test outputs with reference outputs."""

    probabilities: bool = False
    signal: float = 0.0
    noise: float = 0.0
    kl_sum: float = 0.0
    agree: int = 0
    correct: int = 0
    labeled: int = 0
    count: int = 0

    def update(self, ref, out, labels=None) -> None:
        ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
        out = np.asarray(out, np.float64).reshape(len(out), -1)
        self.count += len(ref)
        self.signal += float(np.sum(ref**2))
        if not np.all(np.isfinite(out)):
            self.noise = math.inf
            self.kl_sum = math.inf
        else:
            self.noise += float(np.sum((ref - out) ** 2))
            self.kl_sum += float(np.sum(self._kl(ref, out)))
        pr, po = ref.argmax(axis=1), out.argmax(axis=1)
        self.agree += int(np.sum(pr == po))
        if labels is not None:
            lab = np.asarray(labels)
            known = lab >= 0
            self.labeled += int(known.sum())
            self.correct += int(np.sum(po[known] == lab[known]))

    def _kl(self, ref, out):
        if self.probabilities:
            eps = 1e-12
            lp, lq = np.log(np.maximum(ref, eps)), np.log(np.maximum(out, eps))
            p = ref
        else:
            lp, lq = log_softmax(ref), log_softmax(out)
            p = np.exp(lp)
        return np.sum(p * (lp - lq), axis=1)

    def result(self) -> dict:
        if self.noise == 0.0:
            sqnr = math.inf
        elif self.signal == 0.0 or math.isinf(self.noise):
            sqnr = -math.inf
        else:
            sqnr = 10.0 * math.log10(self.signal / self.noise)
        out = {
            "sqnr_db": sqnr,
            "kl": self.kl_sum / max(self.count, 1),
            "agreement": self.agree / max(self.count, 1),
            "agree_count": self.agree,
            "count": self.count,
            "accuracy": None,
        }
        if self.labeled:
            out["accuracy"] = self.correct / self.labeled
            out["correct"] = self.correct
            out["labeled"] = self.labeled
        return out


@dataclass
class SensitivityResult:
    """Measured metrics of every (view, layer, precision).

    ``rows`` holds one dict per measurement with keys ``view``, ``layer``,
    ``op``, ``precision``, ``bytes`` and the :data:`METRICS`; ``fp32`` holds the
    FP32 model's accuracy (None without labels) and sample count.
    """

    layers: tuple
    precisions: tuple
    rows: list
    fp32: dict
    base_precision: str = "int8"
    meta: dict = field(default_factory=dict)

    def get(self, layer: str, precision: str, view: str = "alone") -> dict:
        """The row of ``(layer, precision, view)``."""
        for r in self.rows:
            if (r["layer"], r["precision"], r["view"]) == (layer, precision, view):
                return r
        raise InvalidArgumentError(
            f"no measurement for layer={layer!r}, precision={precision!r}, "
            f"view={view!r}"
        )

    def ranking(self, precision: str = "int8", key: str = "sqnr_db") -> list:
        """Layers from most to least sensitive at ``precision`` (view ``alone``).

        Most sensitive: lowest SQNR / agreement / accuracy, highest KL.
        """
        check("key", key, OneOf(METRICS))
        rows = [
            r for r in self.rows if r["view"] == "alone" and r["precision"] == precision
        ]
        if not rows:
            raise InvalidArgumentError(
                f"precision must be one of the measured {self.precisions}; got "
                f"precision={precision!r}"
            )

        def badness(r):
            v = r[key]
            v = -math.inf if v is None else v
            return v if key == "kl" else -v

        return [r["layer"] for r in sorted(rows, key=badness, reverse=True)]

    def to_dict(self) -> dict:
        return {
            "layers": list(self.layers),
            "precisions": list(self.precisions),
            "base_precision": self.base_precision,
            "fp32": self.fp32,
            "meta": self.meta,
            "rows": self.rows,
        }


def _batches(data, labels, batch_size):
    if not isinstance(data, np.ndarray):
        raise InvalidTypeError(
            f"data must be a float numpy array (N, ...); got {type(data).__name__}"
        )
    if data.ndim < 2 or data.shape[0] == 0 or data.dtype.kind != "f":
        raise InvalidArgumentError(
            f"data must be a non-empty float array (N, ...); got dtype {data.dtype} "
            f"shape {data.shape}"
        )
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
            raise InvalidArgumentError(
                f"labels must be an int array of shape ({data.shape[0]},) (-1 for "
                f"unlabeled); got dtype {labels.dtype} shape {labels.shape}"
            )
    for i in range(0, data.shape[0], batch_size):
        yield (
            data[i : i + batch_size],
            (None if labels is None else labels[i : i + batch_size]),
        )


def measure_sensitivity(
    quantizer,
    data,
    labels=None,
    *,
    precisions=PRECISIONS,
    layers=None,
    reverse=True,
    reverse_layers=None,
    base_precision="int8",
    batch_size=16,
    profile="exact",
    progress=None,
) -> SensitivityResult:
    """Quantize each layer alone (and, with ``reverse``, keep it alone in FP32).

    Parameters
    ----------
    quantizer : MixedQuantizer
    data : float ndarray (N, ...)
        Held-out inputs (not the calibration set).
    labels : int ndarray (N,) or None
        Class labels; -1 marks an unlabeled sample.
    precisions : sequence of str
        Candidates (default: all of :data:`PRECISIONS`).
    layers : sequence of str or None
        Weighted layers to measure (default: all).
    reverse : bool
        Also measure the ``all_but`` view (everything ``base_precision``
        except the layer, which is FP32).
    reverse_layers : sequence of str or None
        Layers of the ``all_but`` view (default: ``layers``).
    base_precision : str
    batch_size : int
    profile : str or Profile
        Integer-engine profile of int8 / int16 layers.
    progress : callable(done, total) or None
        Called after each (batch, model) run.
    """
    check_type("quantizer", quantizer, (MixedQuantizer,), "a MixedQuantizer")
    check("batch_size", batch_size, IntRange(1, None))
    check_type("reverse", reverse, (bool,), "a bool")
    precisions = tuple(precisions)
    for p in precisions:
        check("precisions entry", p, OneOf(PRECISIONS))
    check("base_precision", base_precision, OneOf(PRECISIONS))
    layers = quantizer.layers if layers is None else tuple(layers)
    rev_layers = layers if reverse_layers is None else tuple(reverse_layers)
    for name in (*layers, *rev_layers):
        quantizer.check_precisions({name: "fp32"})
    if progress is not None and not callable(progress):
        raise InvalidTypeError(
            f"progress must be a callable(done, total) or None; got {progress!r}"
        )
    probs = quantizer.graph.producer(quantizer.graph.outputs[0]).op == "Softmax"
    alone = {(n, p): quantizer.model({n: p}) for n in layers for p in precisions}
    rest = {}
    if reverse:
        rest = {
            (n, "fp32"): quantizer.model({n: "fp32"}, default=base_precision)
            for n in rev_layers
        }
    stats = {k: OutputStats(probs) for k in [*alone, *[("R",) + k for k in rest]]}
    fp32_stats, base_stats = OutputStats(probs), OutputStats(probs)
    fp32_model = quantizer.model("fp32")
    base_model = quantizer.model(base_precision)
    n_batches = -(-data.shape[0] // batch_size) if isinstance(data, np.ndarray) else 0
    total = n_batches * (len(alone) + len(rest) + (2 if rest else 1))
    done = 0
    for xb, yb in _batches(data, labels, batch_size):
        ref_trace = fp32_model.trace(xb, profile=profile)
        ref = ref_trace.outputs[0]
        fp32_stats.update(ref, ref, yb)
        done = _tick(progress, done, total)
        for key, model in alone.items():
            out = model.trace(xb, profile=profile, base=ref_trace, keep=False)
            stats[key].update(ref, out.outputs[0], yb)
            done = _tick(progress, done, total)
        if rest:
            base_trace = base_model.trace(xb, profile=profile)
            base_stats.update(ref, base_trace.outputs[0], yb)
            done = _tick(progress, done, total)
            for key, model in rest.items():
                out = model.trace(xb, profile=profile, base=base_trace, keep=False)
                stats[("R",) + key].update(ref, out.outputs[0], yb)
                done = _tick(progress, done, total)
            del base_trace
        del ref_trace
    rows = []
    for key, st in stats.items():
        view, (name, p) = ("all_but", key[1:]) if key[0] == "R" else ("alone", key)
        node = quantizer.graph.node(name)
        rows.append(
            {
                "view": view,
                "layer": name,
                "op": node.op,
                "precision": p,
                "bytes": quantizer.layer_bytes(name, p),
                "params": int(node.params["weight"].size),
                **st.result(),
            }
        )
    fp32 = fp32_stats.result()
    meta = {
        "profile": getattr(profile, "name", profile),
        "batch_size": batch_size,
        "samples": fp32["count"],
    }
    if rest:
        meta["base"] = base_stats.result()
    return SensitivityResult(
        layers,
        precisions,
        rows,
        {"accuracy": fp32["accuracy"], "count": fp32["count"]},
        base_precision,
        meta,
    )


def _tick(progress, done, total):
    done += 1
    if progress is not None:
        progress(done, total)
    return done
