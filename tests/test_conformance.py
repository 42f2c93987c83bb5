"""Conformance corpus: export, read back with h5py alone, re-check, verify.

The expected values here never come from refquant's kernels: the cases read
straight from the HDF5 file are recomputed with the slow exact oracles of
refquant.testing (Python ints and fractions.Fraction), and the section 6 rows
are compared with the values measured on the real runtimes
(integer_semantics.md).
"""

import hashlib
import math
import os
import shutil
import time
from fractions import Fraction

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from refquant import conformance  # noqa: E402
from refquant.cli import main  # noqa: E402
from refquant.conformance import (  # noqa: E402
    CorpusFormatError,
    CorpusNotFoundError,
    export_corpus,
    verify_corpus,
)
from refquant.errors import InvalidArgumentError, InvalidTypeError  # noqa: E402
from refquant.profiles import PROFILES, get_profile  # noqa: E402
from refquant.testing import fixedpoint_oracles as fpo  # noqa: E402
from refquant.testing import kernel_oracles as ko  # noqa: E402
from refquant.testing import oracles  # noqa: E402


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.h5"
    start = time.perf_counter()
    summary = export_corpus(path, seed=3)
    elapsed = time.perf_counter() - start
    return path, summary, elapsed


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A corpus of three kernels, for the tampering tests."""
    path = tmp_path_factory.mktemp("small") / "small.h5"
    export_corpus(path, kernels=["add", "conv2d", "concatenation"], seed=3)
    return (path,)


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _cases(path, kernel, profile):
    """Every case of /kernel/profile as (name, datasets, attributes), h5py only."""
    out = []
    with h5py.File(path, "r") as f:
        for name, g in f[kernel][profile].items():
            arrays = {k: g[k][()] for k in g}
            out.append((name, arrays, dict(g.attrs)))
    return out


def _activation(attrs):
    a = attrs["activation"]
    return None if a == "none" else a


def _padding(value):
    if isinstance(value, str):
        return value
    return tuple(tuple(int(v) for v in row) for row in value)


def _per_channel(value, n):
    return [float(v) for v in np.broadcast_to(np.asarray(value, np.float64), (n,))]


# ------------------------------------------------------------ export basics
def test_export_is_small_fast_and_complete(corpus):
    path, summary, elapsed = corpus
    assert os.path.getsize(path) < 5 * 2**20
    assert elapsed < 20
    assert summary.n_cases > 400 and summary.n_expected_errors > 0
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "refquant-conformance"
        assert f.attrs["layout_version"] == 1
        assert set(f) == set(conformance.KERNELS)
        for name, entry in conformance.KERNELS.items():
            groups = {"any"} if entry.profile_free else set(PROFILES)
            assert set(f[name]) == groups, name
    for kernel in (
        "quantize_linear dequantize_linear requantize conv2d depthwise_conv2d "
        "fully_connected batch_matmul add mul average_pool2d global_average_pool "
        "max_pool2d mean concatenation pad clamp_activation softmax logistic tanh "
        "quantize_multiplier saturating_doubling_high_mul rounding_right_shift "
        "multiply_by_quantized_multiplier multiply_by_quantized_multiplier_int64"
    ).split():
        assert kernel in conformance.KERNELS


def test_every_case_runs_under_some_profile(corpus):
    path, summary, _ = corpus
    written = set()
    with h5py.File(path, "r") as f:
        for k in f:
            for p in f[k]:
                written |= {(k, c) for c in f[k][p]}
    for kernel, entry in conformance.KERNELS.items():
        names = {c.name for c in entry.cases(np.random.default_rng(0))}
        assert names == {c for k, c in written if k == kernel}, kernel
    # unsupported pairs are only the TFLite restrictions on qparams
    for line in summary.unsupported:
        assert "/tflite_reference/" in line, line


def test_export_is_deterministic_and_atomic(tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    kernels = ["add", "quantize_multiplier", "conv2d"]
    export_corpus(a, kernels=kernels, seed=11)
    export_corpus(b, kernels=kernels, seed=11)
    export_corpus(c, kernels=kernels, seed=12)
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)
    assert sorted(os.listdir(tmp_path)) == ["a.h5", "b.h5", "c.h5"]  # no temp left
    with h5py.File(a, "r") as fa, h5py.File(c, "r") as fc:
        edge_a, edge_c = fa["add/exact/d9_add_tie"], fc["add/exact/d9_add_tie"]
        assert np.array_equal(edge_a["y"][()], edge_c["y"][()])
        assert not np.array_equal(
            fa["add/exact/random_000/a"][()], fc["add/exact/random_000/a"][()]
        )


def test_kernel_subset_keeps_the_same_data(corpus, tmp_path):
    path, _, _ = corpus
    small = tmp_path / "small.h5"
    summary = export_corpus(small, kernels=["mul"], profiles=["onnxruntime"], seed=3)
    assert summary.kernels == ("mul",) and summary.profiles == ("onnxruntime",)
    with h5py.File(small, "r") as fs, h5py.File(path, "r") as ff:
        assert list(fs) == ["mul"] and list(fs["mul"]) == ["onnxruntime"]
        for name, g in fs["mul/onnxruntime"].items():
            for k in g:
                full = ff[f"mul/onnxruntime/{name}/{k}"][()]
                assert np.array_equal(g[k][()], full)


# ------------------------------------------- independent re-checks (h5py only)
def test_fixed_point_primitives_against_oracles(corpus):
    path, _, _ = corpus
    for _, d, _ in _cases(path, "saturating_doubling_high_mul", "any"):
        want = [
            fpo.saturating_doubling_high_mul(int(a), int(b))
            for a, b in zip(d["a"], d["b"])
        ]
        assert d["y"].tolist() == want
    for _, d, _ in _cases(path, "rounding_right_shift", "any"):
        want = [
            fpo.rounding_right_shift(int(x), int(e))
            for x, e in zip(d["x"], d["exponent"])
        ]
        assert d["y"].tolist() == want
    forms = set()
    for _, d, attrs in _cases(path, "multiply_by_quantized_multiplier", "any"):
        forms.add(attrs["rounding"])
        want = [
            fpo.multiply_by_quantized_multiplier(
                int(x), int(m), int(s), attrs["rounding"]
            )
            for x, m, s in zip(d["x"], d["multiplier"], d["shift"])
        ]
        assert d["y"].tolist() == want, attrs["rounding"]
    assert forms == {"double", "single", "double_up"}
    for _, d, _ in _cases(path, "multiply_by_quantized_multiplier_int64", "any"):
        want = [
            fpo.multiply_by_quantized_multiplier_int64(int(x), int(m), int(s))
            for x, m, s in zip(d["x"], d["multiplier"], d["shift"])
        ]
        assert d["y"].tolist() == want
    for _, d, attrs in _cases(path, "quantize_multiplier", "any"):
        single = bool(attrs["single_rounding"])
        want = [fpo.quantize_multiplier(float(r), single) for r in d["real"]]
        assert list(zip(d["multiplier"].tolist(), d["shift"].tolist())) == want


def test_edge_rows_hold_int32_min_and_shift_zero(corpus):
    path, _, _ = corpus
    with h5py.File(path, "r") as f:
        g = f["saturating_doubling_high_mul/any/edges"]
        i = np.flatnonzero((g["a"][()] == -(2**31)) & (g["b"][()] == -(2**31)))
        assert g["y"][()][i].tolist() == [2**31 - 1]
        g = f["rounding_right_shift/any/edges"]
        assert 0 in g["exponent"][()] and -(2**31) in g["x"][()]
        g = f["multiply_by_quantized_multiplier/any/edges_double"]
        assert 0 in g["shift"][()] and -(2**31) in g["x"][()]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_quantize_linear_against_oracle(corpus, profile):
    path, _, _ = corpus
    prof = get_profile(profile)
    checked = 0
    for name, d, attrs in _cases(path, "quantize_linear", profile):
        if "expected_error" in attrs:
            assert name == "d25_nan" and prof.nan_policy == "error"
            continue
        info = np.iinfo(np.dtype(attrs["out_dtype"]))
        x = d["x"]
        axis = int(attrs["axis"]) if "axis" in attrs else -1
        scale = np.broadcast_to(attrs["y_scale"], (x.shape[axis],))
        zp = np.broadcast_to(attrs["y_zero_point"], (x.shape[axis],))
        for idx, v in np.ndenumerate(x):
            if math.isnan(v):
                assert d["y"][idx] == info.min  # D25: NaN -> qmin
                continue
            c = idx[axis]
            want = oracles.quantize_oracle(
                float(v),
                float(scale[c]),
                int(zp[c]),
                int(info.min),
                int(info.max),
                prof.quantize_rounding,
                prof.quantize_arithmetic,
            )
            assert d["y"][idx] == want, (name, idx)
            checked += 1
    assert checked > 50


def _conv_acc(d, attrs, depthwise=False):
    common = dict(
        strides=tuple(attrs["strides"]),
        dilations=tuple(attrs["dilations"]),
        padding=_padding(attrs["padding"]),
    )
    bias = d.get("bias")
    if depthwise:
        return ko.depthwise_conv2d_oracle(
            d["x"],
            int(attrs["x_zero_point"]),
            d["w"],
            attrs["w_zero_point"],
            bias,
            depth_multiplier=int(attrs["depth_multiplier"]),
            **common,
        )
    return ko.conv2d_oracle(
        d["x"],
        int(attrs["x_zero_point"]),
        d["w"],
        attrs["w_zero_point"],
        bias,
        groups=int(attrs["groups"]),
        **common,
    )


@pytest.mark.parametrize("kernel", ["conv2d", "depthwise_conv2d"])
def test_conv_exact_profile_against_oracle(corpus, kernel):
    path, _, _ = corpus
    seen_error = False
    for name, d, attrs in _cases(path, kernel, "exact"):
        acc = _conv_acc(d, attrs, depthwise=kernel == "depthwise_conv2d")
        if "expected_error" in attrs:
            assert attrs["expected_error"] == "AccumulatorOverflowError"
            assert acc.max() > 2**31 - 1 or acc.min() < -(2**31), name
            seen_error = True
            continue
        want = ko.requantize_oracle(
            acc,
            float(attrs["x_scale"]),
            _per_channel(attrs["w_scale"], acc.shape[-1]),
            float(attrs["y_scale"]),
            int(attrs["y_zero_point"]),
            np.dtype(attrs["out_dtype"]),
            rule="half_even",
            activation=_activation(attrs),
        )
        assert d["y"].dtype == want.dtype and np.array_equal(d["y"], want), name
    assert seen_error


def _tflite_double(acc, attrs, channels):
    """TFLite reference conv requantization from the fixed-point oracles."""
    info = np.iinfo(np.dtype(attrs["out_dtype"]))
    s_w = _per_channel(attrs["w_scale"], channels)
    s_x, s_y = float(attrs["x_scale"]), float(attrs["y_scale"])
    z_y = int(attrs["y_zero_point"])
    lo, hi = ko.activation_range_oracle(
        _activation(attrs), s_y, z_y, int(info.min), int(info.max), "half_away"
    )
    out = np.zeros(acc.shape, np.int64)
    for idx, a in np.ndenumerate(acc):
        m, shift = fpo.quantize_multiplier(s_x * s_w[idx[-1]] / s_y)
        v = fpo.multiply_by_quantized_multiplier(int(a), m, shift, "double") + z_y
        out[idx] = min(max(v, lo), hi)
    return out


def test_conv_tflite_reference_against_fixed_point_oracle(corpus):
    path, _, _ = corpus
    checked = 0
    for _name, d, attrs in _cases(path, "conv2d", "tflite_reference"):
        if "expected_error" in attrs or attrs["out_dtype"] == "int16":
            continue
        acc = _conv_acc(d, attrs)
        assert d["y"].tolist() == _tflite_double(acc, attrs, acc.shape[-1]).tolist()
        checked += 1
    assert checked >= 6


def test_fully_connected_and_matmul_exact_against_oracle(corpus):
    path, _, _ = corpus
    for name, d, attrs in _cases(path, "fully_connected", "exact"):
        if "expected_error" in attrs:
            continue
        acc = ko.matmul_oracle(
            d["x"], int(attrs["x_zero_point"]), d["w"].T, attrs["w_zero_point"]
        ).astype(np.int64)
        if "bias" in d:
            acc = acc + d["bias"].astype(np.int64)
        want = ko.requantize_oracle(
            acc,
            float(attrs["x_scale"]),
            _per_channel(attrs["w_scale"], acc.shape[-1]),
            float(attrs["y_scale"]),
            int(attrs["y_zero_point"]),
            np.dtype(attrs["out_dtype"]),
            activation=_activation(attrs),
        )
        assert np.array_equal(d["y"], want), name
    for name, d, attrs in _cases(path, "batch_matmul", "exact"):
        if "expected_error" in attrs or d["a"].ndim != 2:
            continue
        acc = ko.matmul_oracle(
            d["a"], attrs["a_zero_point"], d["b"], attrs["b_zero_point"]
        ).astype(np.int64)
        want = ko.requantize_oracle(
            acc * 1,
            float(attrs["a_scale"]),
            _per_channel(attrs["b_scale"], acc.shape[-1]),
            float(attrs["y_scale"]),
            int(attrs["y_zero_point"]),
            np.dtype(attrs["out_dtype"]),
        )
        assert np.array_equal(d["y"], want), name


def test_matmul_integer_wrap_is_twos_complement(corpus):
    path, _, _ = corpus
    for profile in PROFILES:
        for name, d, attrs in _cases(path, "matmul_integer", profile):
            acc = ko.matmul_oracle(
                d["a"], attrs["a_zero_point"], d["b"], attrs["b_zero_point"]
            )
            fits = all(-(2**31) <= int(v) < 2**31 for v in acc.ravel())
            if get_profile(profile).overflow == "wrap":
                want = [((int(v) + 2**31) % 2**32) - 2**31 for v in acc.ravel()]
                assert d["y"].ravel().tolist() == want, (profile, name)
            elif fits:
                assert d["y"].ravel().tolist() == [int(v) for v in acc.ravel()]
            else:
                assert attrs["expected_error"] == "AccumulatorOverflowError"


def test_conv_integer_against_oracle(corpus):
    path, _, _ = corpus
    for profile in PROFILES:
        for name, d, attrs in _cases(path, "conv_integer", profile):
            acc = ko.conv2d_oracle(
                d["x"],
                int(attrs["x_zero_point"]),
                d["w"],
                attrs["w_zero_point"],
                strides=tuple(attrs["strides"]),
                dilations=tuple(attrs["dilations"]),
                groups=int(attrs["groups"]),
                padding=_padding(attrs["padding"]),
            )
            if "expected_error" in attrs:
                assert get_profile(profile).overflow == "error"
                assert acc.min() < -(2**31) or acc.max() >= 2**31, name
                continue
            want = [((int(v) + 2**31) % 2**32) - 2**31 for v in acc.ravel()]
            assert d["y"].ravel().tolist() == want, (profile, name)


def test_average_pool_exact_against_fractions(corpus):
    path, _, _ = corpus
    for name, d, attrs in _cases(path, "average_pool2d", "exact"):
        x = d["x"].astype(np.int64)
        kh, kw = (int(v) for v in attrs["pool_size"])
        sh, sw = (int(v) for v in attrs["strides"])
        pads = _padding(attrs["padding"])
        if pads == "same":
            pads = (
                ko.same_padding(x.shape[1], kh, sh, 1),
                ko.same_padding(x.shape[2], kw, sw, 1),
            )
        elif pads == "valid":
            pads = ((0, 0), (0, 0))
        (pt, _), (pl, _) = pads
        z_x, z_y = int(attrs["x_zero_point"]), int(attrs["y_zero_point"])
        ratio = Fraction(float(attrs["x_scale"])) / Fraction(float(attrs["y_scale"]))
        y = d["y"]
        for n, oy, ox, c in np.ndindex(*y.shape):
            taps = [
                int(x[n, oy * sh + i - pt, ox * sw + j - pl, c]) - z_x
                for i in range(kh)
                for j in range(kw)
                if 0 <= oy * sh + i - pt < x.shape[1]
                and 0 <= ox * sw + j - pl < x.shape[2]
            ]
            count = kh * kw if attrs["count_include_pad"] else len(taps)
            v = ko.round_fraction(Fraction(sum(taps), count) * ratio) + z_y
            assert y[n, oy, ox, c] == min(max(v, -128), 127), (name, n, oy, ox, c)


@pytest.mark.parametrize("op", ["logistic", "tanh"])
def test_logistic_tanh_exact_against_float64(corpus, op):
    """Exact profile: z_y + round_half_even(f(s_x (x - z_x)) / s_y); elements
    within 1e-9 of a rounding tie are left out (float64 error < 1e-15)."""
    path, _, _ = corpus
    f = (lambda v: 1 / (1 + math.exp(-v))) if op == "logistic" else math.tanh
    checked = 0
    for name, d, attrs in _cases(path, op, "exact"):
        info = np.iinfo(np.dtype(attrs["out_dtype"]))
        for idx, q in np.ndenumerate(d["x"]):
            t = f(float(attrs["x_scale"]) * (int(q) - int(attrs["x_zero_point"])))
            t /= float(attrs["y_scale"])
            if abs(t - math.floor(t) - 0.5) < 1e-9:
                continue
            v = min(max(round(t) + int(attrs["y_zero_point"]), info.min), info.max)
            assert d["y"][idx] == v, (name, idx)
            checked += 1
    assert checked > 500


# --------------------------------------------- section 6 rows, measured values
@pytest.mark.parametrize(
    "where, index, measured",
    [
        # D1 / D2: quantize ties (ORT, onnx.ref, PyTorch RNE; TFLite REF RHAZ)
        ("quantize_linear/onnxruntime/d1_d2_ties", (), [2, -2]),
        ("quantize_linear/tflite_reference/d1_d2_ties", (), [3, -3]),
        # D3: float32 division vs reciprocal
        ("quantize_linear/onnx_reference/d3_division_vs_reciprocal", (), [-116]),
        ("quantize_linear/pytorch_fbgemm/d3_division_vs_reciprocal", (), [-115]),
        ("quantize_linear/exact/d3_division_vs_reciprocal", (), [-115]),
        # D4 / D5 / D6 through per-channel conv: TFLite REF -1, 1, -1
        ("conv2d/tflite_reference/d4_d5_d6_per_channel", (), [-1, 1, -1]),
        ("conv2d/onnxruntime/d4_d5_d6_per_channel", (), [0, 0, -1]),
        # D7: TFLite reference FC, fp64 ties away: -1 / 0 for acc -2 / 1
        ("fully_connected/tflite_reference/d7_fc_rounding", slice(0, 2), [-1, 0]),
        ("fully_connected/onnxruntime/d7_fc_rounding", slice(0, 2), [0, 0]),
        # D8: M = 0.5, acc = -3: TFLite -1 (ties up), RNE -2
        ("requantize_accumulator/tflite_reference/d8_shift0", slice(0, 1), [-1]),
        ("requantize_accumulator/onnxruntime/d8_shift0", slice(0, 1), [-2]),
        # D9: add tie -30.5: TFLite -31, ORT -30
        ("add/tflite_reference/d9_add_tie", slice(0, 1), [-31]),
        ("add/onnxruntime/d9_add_tie", slice(0, 1), [-30]),
        # D10: average pool mean 0.5: TFLite 1, ORT 0
        ("average_pool2d/tflite_reference/d10_tie", slice(0, 1), [1]),
        ("average_pool2d/onnxruntime/d10_tie", slice(0, 1), [0]),
        # D11: zp 10, raw mean 10.5 -> 11 (TFLite)
        ("average_pool2d/tflite_reference/d11_zero_point", slice(0, 1), [11]),
        # D12: acc 2**25 + 1, M = 2**-26: ORT 0, onnx.reference 1, TFLite 1
        ("requantize_accumulator/onnxruntime/d12_large_acc", slice(0, 1), [0]),
        ("requantize_accumulator/onnx_reference/d12_large_acc", slice(0, 1), [1]),
        ("requantize_accumulator/tflite_reference/d12_large_acc", slice(0, 1), [1]),
        # D23: softmax row, last code: TFLite REF 121, exact 120
        ("softmax/tflite_reference/d23_row", slice(-1, None), [121]),
        ("softmax/exact/d23_row", slice(-1, None), [120]),
        # D25: NaN -> qmin in ORT and onnx.reference
        ("quantize_linear/onnxruntime/d25_nan", slice(0, 1), [-128]),
        ("quantize_linear/onnx_reference/d25_nan", slice(0, 1), [-128]),
    ],
)
def test_section6_rows_in_the_file(corpus, where, index, measured):
    path, _, _ = corpus
    with h5py.File(path, "r") as f:
        y = f[where]["y"][()].ravel()
    assert y[index].tolist() == measured


def test_d13_and_d21_rows_in_the_file(corpus):
    path, _, _ = corpus
    with h5py.File(path, "r") as f:
        ort = f["dynamic_quantize_linear/onnxruntime/d13_all_zero"]
        ref = f["dynamic_quantize_linear/onnx_reference/d13_all_zero"]
        assert ort["y_scale"][()] == 1.0
        assert ref["y_scale"][()] == np.float32(1 / 255)
        wrap = f["matmul_integer/onnxruntime/d21_wrap/y"][()]
        assert wrap.ravel().tolist() == [131073 * 16384 - 2**32]
        err = f["matmul_integer/exact/d21_wrap"].attrs["expected_error"]
        assert err == "AccumulatorOverflowError"


# -------------------------------------------------------------------- verify
def test_verify_reports_zero_mismatches(corpus):
    path, summary, _ = corpus
    report = verify_corpus(path)
    assert report.ok, str(report)
    assert report.n_cases == summary.n_cases
    assert report.layout_version == 1


def _copy(source, tmp_path, name="copy.h5"):
    dst = tmp_path / name
    shutil.copy(source[0], dst)
    return dst


def test_tampered_code_is_a_mismatch_naming_the_case(small, tmp_path):
    path = _copy(small, tmp_path)
    with h5py.File(path, "r+") as f:
        y = f["conv2d/exact/random_001/y"]
        v = y[()]
        v.flat[0] = v.flat[0] + 1 if v.flat[0] < 127 else v.flat[0] - 1
        y[...] = v
    report = verify_corpus(path)
    assert not report.ok
    assert [m.case for m in report.mismatches] == ["/conv2d/exact/random_001"]
    assert "1 of" in report.mismatches[0].detail
    assert "/conv2d/exact/random_001" in str(report)
    assert main(["conformance", "verify", str(path)]) == 1


def test_tampered_expected_error_is_a_mismatch(small, tmp_path):
    path = _copy(small, tmp_path)
    with h5py.File(path, "r+") as f:
        g = f["conv2d/exact/bias_overflow"]
        g.attrs["expected_error"] = "NonFiniteInputError"
    report = verify_corpus(path)
    assert [m.case for m in report.mismatches] == ["/conv2d/exact/bias_overflow"]


def _edit(source, tmp_path, edit):
    path = _copy(source, tmp_path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda f: f.attrs.__setitem__("layout_version", np.int64(2)),
            "layout_version",
        ),
        (lambda f: f.attrs.__delitem__("layout_version"), "layout_version"),
        (lambda f: f.attrs.__setitem__("format", "other"), "'format'"),
        (
            lambda f: f["conv2d/exact/uint8"].attrs.__delitem__("x_scale"),
            "/conv2d/exact/uint8: missing attribute 'x_scale'",
        ),
        (lambda f: f["add/exact/d9_add_tie"].__delitem__("b"), "missing dataset 'b'"),
        (lambda f: f["add/exact/d9_add_tie"].__delitem__("y"), "missing dataset 'y'"),
        (
            lambda f: f["conv2d/exact/uint8"].attrs.__setitem__(
                "strides", np.int64([1, 1, 1])
            ),
            "'strides': must have shape \\(2,\\)",
        ),
        (
            lambda f: f["conv2d/exact/uint8"].attrs.__setitem__("x_scale", "0.1"),
            "'x_scale': must be float64",
        ),
        (
            lambda f: f["conv2d/exact/uint8"].attrs.__setitem__("activation", "gelu"),
            "'activation'",
        ),
        (lambda f: _replace(f, "add/exact/d9_add_tie/a", np.float32([1])), "dtype"),
        (lambda f: f.create_group("abs"), "unknown kernel"),
        (
            lambda f: f["conv2d/exact/bias_overflow"].create_dataset(
                "y", data=np.zeros((1, 1, 1, 1), np.int8)
            ),
            "must not hold output 'y'",
        ),
        (
            lambda f: f["concatenation/exact/equal_qparams"].attrs.__setitem__(
                "num_inputs", "2"
            ),
            "'num_inputs': must be int64",
        ),
        (
            lambda f: f["add/exact/d9_add_tie"].attrs.__setitem__("kind", "golden"),
            "'kind' must be one of",
        ),
        (lambda f: f["add"].create_group("tflite_optimized"), "profile must be"),
        (
            lambda f: f["add/exact/d9_add_tie"].attrs.__setitem__("extra", 1),
            "unknown fields",
        ),
        (
            lambda f: f["add/exact"].__setitem__(
                "alias", h5py.SoftLink("/add/exact/d9_add_tie")
            ),
            "hard link",
        ),
        (
            lambda f: _replace(f, "add/exact/d9_add_tie/a", np.int8([1, 2, 3, 4, 5])),
            "rejected",
        ),
    ],
)
def test_invalid_file_gives_a_clear_error(small, tmp_path, edit, match):
    path = _edit(small, tmp_path, edit)
    with pytest.raises(CorpusFormatError, match=match):
        verify_corpus(path)
    assert main(["conformance", "verify", str(path)]) == 2


def _strip(f, names):
    for name in names:
        del f[name]


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda f: _strip(f, list(f)),
            "copy.h5: the corpus holds no cases, so there is nothing to verify",
        ),
        (
            lambda f: _strip(f, ["conv2d"]),
            "kernel/profile pair.*hold no cases: /conv2d/exact",
        ),
        (
            lambda f: _strip(
                f, [f"add/tflite_reference/{k}" for k in f["add/tflite_reference"]]
            ),
            "1 kernel/profile pair.*: /add/tflite_reference$",
        ),
        (
            lambda f: f.attrs.__setitem__("kernels", "add,nosuch"),
            "root attribute 'kernels' names 'nosuch'",
        ),
    ],
)
def test_stripped_corpus_does_not_verify(small, tmp_path, edit, match):
    path = _edit(small, tmp_path, edit)
    with pytest.raises(CorpusFormatError, match=match):
        verify_corpus(path)
    assert main(["conformance", "verify", str(path)]) == 2


def _replace(f, name, data):
    del f[name]
    f[name] = data


def test_non_hdf5_and_missing_files(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(CorpusFormatError, match="not a readable HDF5 file"):
        verify_corpus(bad)
    with pytest.raises(CorpusNotFoundError, match="path=.*missing.h5.*no such file"):
        verify_corpus(tmp_path / "missing.h5")
    with pytest.raises(FileNotFoundError):  # also the builtin family
        verify_corpus(tmp_path / "missing.h5")
    with pytest.raises(CorpusNotFoundError, match="a folder"):
        verify_corpus(tmp_path)


# ------------------------------------------------------------ invalid inputs
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"profiles": ["nope"]}, InvalidArgumentError, "profiles must be.*'nope'"),
        ({"profiles": "exact"}, InvalidTypeError, "profiles must be a list"),
        ({"profiles": []}, InvalidArgumentError, "profiles must be a non-empty"),
        ({"kernels": ["conv3d"]}, InvalidArgumentError, "kernels must be.*conv3d"),
        ({"kernels": 5}, InvalidTypeError, "kernels must be a list"),
        (
            {"seed": -1},
            InvalidArgumentError,
            r"seed must be an int in \[0, \d+\]; got seed=-1",
        ),
        ({"seed": 1.5}, InvalidArgumentError, "seed must be an int"),
        ({"seed": True}, InvalidArgumentError, "seed must be an int"),
    ],
)
def test_export_invalid_arguments(tmp_path, kwargs, error, match):
    target = tmp_path / "x.h5"
    with pytest.raises(error, match=match):
        export_corpus(target, **kwargs)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("bad", [3, None, ["a.h5"]])
def test_path_must_be_a_path(bad):
    with pytest.raises(InvalidTypeError, match="path must be a str or os.PathLike"):
        export_corpus(bad)
    with pytest.raises(InvalidTypeError, match="path must be a str or os.PathLike"):
        verify_corpus(bad)


# ---------------------------------------------------------------------- CLI
def test_cli_export_and_verify(tmp_path, capsys):
    path = tmp_path / "cli.h5"
    argv = ["conformance", "export", str(path), "--kernels", "add", "pad"]
    assert main(argv + ["--profiles", "exact", "--seed", "4"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["conformance", "verify", str(path)]) == 0
    assert "0 mismatches" in capsys.readouterr().out
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["add", "pad"] and list(f["add"]) == ["exact"]
        assert f.attrs["seed"] == 4


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["export", "x.h5", "--profiles", "foo"], "profiles"),
        (["export", "x.h5", "--kernels", "foo"], "kernels"),
        (["export", "x.h5", "--seed", "-3"], "seed"),
        (["verify", "missing.h5"], "missing.h5"),
    ],
)
def test_cli_bad_values_exit_2(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert main(["conformance", *argv]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["export", "x.h5", "--seed", "abc"], "--seed"),
        (["export"], "FILE.h5"),
        (["verify"], "FILE.h5"),
        (["check", "x.h5"], "ACTION"),
        (["verify", "x.h5", "--profiles", "exact"], "--profiles"),
    ],
)
def test_cli_usage_errors_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as info:
        main(["conformance", *argv])
    assert info.value.code == 2
    assert needle in capsys.readouterr().err


def test_spec_documents_every_kernel_and_the_version():
    spec = os.path.join(
        os.path.dirname(__file__), "..", "specs", "conformance_corpus.md"
    )
    text = open(spec).read()
    assert f"layout version {conformance.LAYOUT_VERSION}" in text
    for name in conformance.KERNELS:
        assert f"`{name}`" in text, name
