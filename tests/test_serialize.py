"""HDF5 save/load of quantized models: exact round trip, hostile files rejected."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refquant.errors import (
    CorruptFileError,
    InvalidArgumentError,
    InvalidTypeError,
    UnsafeFileError,
)
from refquant.ptq import (
    QuantConfig,
    load_quantized_model,
    quantize_model,
    save_quantized_model,
)
from tests.test_ptq import small_convnet

h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(3)
    g = small_convnet(rng)
    x = rng.standard_normal((4, 8, 8, 3)).astype(np.float32)
    cfg = QuantConfig(
        weight_bits=4, weight_granularity="per_group", weight_group_size=32
    )
    return x, {
        "static": quantize_model(g, x),
        "dynamic": quantize_model(g, mode="dynamic"),
        "weight_only": quantize_model(g, mode="weight_only", config=cfg),
    }


def same_model(a, b):
    assert (a.mode, a.name, a.inputs, a.outputs) == (
        b.mode,
        b.name,
        b.inputs,
        b.outputs,
    )
    assert a.tensor_qparams == b.tensor_qparams
    for m, n in zip(a.nodes, b.nodes, strict=True):
        assert (m.name, m.op, m.inputs, dict(m.attrs)) == (
            n.name,
            n.op,
            n.inputs,
            dict(n.attrs),
        )
        if m.weight is not None:
            assert m.weight.scheme == n.weight.scheme
            for k in ("codes", "scale", "zero_point"):
                got, want = getattr(n.weight, k), getattr(m.weight, k)
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
        if m.bias is not None:
            assert n.bias.dtype == m.bias.dtype
            np.testing.assert_array_equal(n.bias, m.bias)


@pytest.mark.parametrize("mode", ["static", "dynamic", "weight_only"])
def test_round_trip_is_exact(tmp_path, models, mode):
    x, ms = models
    path = tmp_path / f"{mode}.h5"
    save_quantized_model(ms[mode], path)
    back = load_quantized_model(path)
    same_model(ms[mode], back)
    np.testing.assert_array_equal(back.run(x), ms[mode].run(x))
    assert [p.name for p in tmp_path.iterdir()] == [f"{mode}.h5"]  # no temp left


def saved(tmp_path, models, mode="static"):
    path = tmp_path / "m.h5"
    save_quantized_model(models[1][mode], path)
    return path


def edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


def first_weighted(f):
    for k in f["nodes"]:
        if "weight_codes" in f["nodes"][k]:
            return f["nodes"][k]
    raise AssertionError


def replace_ds(group, key, data):
    attrs = dict(group[key].attrs)
    del group[key]
    group.create_dataset(key, data=data)
    for a, v in attrs.items():
        group[key].attrs[a] = v


HOSTILE = {
    "format": (lambda f: f.attrs.__setitem__("format", "other"), "format"),
    "version": (lambda f: f.attrs.__setitem__("format_version", 2), "format_version"),
    "mode": (lambda f: f.attrs.__setitem__("mode", "qat"), "mode"),
    "inputs_json": (lambda f: f.attrs.__setitem__("inputs", "[input"), "JSON"),
    "op": (lambda f: f["nodes/000000"].attrs.__setitem__("op", "Exec"), "op must be"),
    "attrs": (
        lambda f: f["nodes/000000"].attrs.__setitem__(
            "attrs", json.dumps({"strides": [0, 1]})
        ),
        "valid Conv2D",
    ),
    "codes_range": (
        lambda f: replace_ds(
            first_weighted(f),
            "weight_codes",
            np.full(f["nodes/000000/weight_codes"].shape, -128, np.int8),
        ),
        "weight codes must lie",
    ),
    "codes_dtype": (
        lambda f: replace_ds(
            first_weighted(f),
            "weight_codes",
            f["nodes/000000/weight_codes"][()].astype(np.float64),
        ),
        "dtype",
    ),
    "scale": (
        lambda f: replace_ds(
            first_weighted(f), "weight_scale", -f["nodes/000000/weight_scale"][()]
        ),
        r"weight_scale must hold scales in \[1.17.*38\] \(normal float32, > 0\)",
    ),
    "bias_dtype": (
        lambda f: replace_ds(
            f["nodes/000000"], "bias", f["nodes/000000/bias"][()].astype(np.float32)
        ),
        "does not fit",
    ),
    "extra": (
        lambda f: f.create_dataset("payload", data=np.zeros(3)),
        "not part of the layout",
    ),
    "node_count": (lambda f: f.attrs.__setitem__("num_nodes", 99), "exactly"),
    "act_zp": (
        lambda f: replace_ds(
            f["tensors"],
            "zero_point",
            np.full(f["tensors/zero_point"].shape, 300, np.int32),
        ),
        "zero_point",
    ),
    "wiring": (
        lambda f: f["nodes/000000"].attrs.__setitem__("inputs", json.dumps(["ghost"])),
        "ghost",
    ),
    "scheme": (
        lambda f: first_weighted(f)["weight_codes"].attrs.__setitem__(
            "scheme", json.dumps({"bits": 8})
        ),
        "scheme",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_corrupt_files_are_rejected(tmp_path, models, case):
    fn, match = HOSTILE[case]
    path = edit(saved(tmp_path, models), fn)
    with pytest.raises(InvalidArgumentError, match=match):
        load_quantized_model(path)


LOAD_TIME = {
    "weight_scale_deleted": (
        lambda f: first_weighted(f).__delitem__("weight_scale"),
        r"/nodes/\d{6}/weight_scale is missing",
    ),
    "tensor_scale_huge": (
        lambda f: f["tensors/scale"].__setitem__(0, 1e300),
        r"/tensors/scale entry 0 \(tensor '[^']+'\) must hold scales in .*got 1e\+300",
    ),
    "tensor_scale_subnormal": (
        lambda f: f["tensors/scale"].__setitem__(0, 1e-40),
        r"/tensors/scale entry 0 .*got 1e-40",
    ),
    "names_deep": (
        lambda f: f["tensors"].attrs.__setitem__("names", "[" * 50_000 + "]" * 50_000),
        "/tensors attribute 'names' is JSON nested too deeply",
    ),
}


@pytest.mark.parametrize("case", sorted(LOAD_TIME))
def test_tampered_files_fail_at_load_naming_file_and_field(tmp_path, models, case):
    fn, match = LOAD_TIME[case]
    path = edit(saved(tmp_path, models), fn)
    with pytest.raises(CorruptFileError, match=match) as info:
        load_quantized_model(path)
    assert str(path) in str(info.value)


def test_links_outside_the_file_are_refused(tmp_path, models):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("secret", data=np.arange(3))
    path = edit(
        saved(tmp_path, models),
        lambda f: f.__setitem__("link", h5py.ExternalLink(str(other), "/secret")),
    )
    with pytest.raises(UnsafeFileError, match="ExternalLink"):
        load_quantized_model(path)
    path = edit(
        saved(tmp_path, models),
        lambda f: (
            f["nodes"].__setitem__("000000", h5py.SoftLink("/tensors"))
            if not f["nodes"].__delitem__("000000")
            else None
        ),
    )
    with pytest.raises(UnsafeFileError, match="SoftLink"):
        load_quantized_model(path)


def test_not_hdf5_and_bad_arguments(tmp_path, models):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n" + bytes(range(256)) * 4)
    with pytest.raises(InvalidArgumentError, match="not readable as HDF5"):
        load_quantized_model(junk)
    with pytest.raises(InvalidArgumentError, match="existing file"):
        load_quantized_model(tmp_path / "missing.h5")
    with pytest.raises(InvalidTypeError, match="path must be"):
        load_quantized_model(3)
    with pytest.raises(InvalidTypeError, match="model must be a QuantizedModel"):
        save_quantized_model("model", tmp_path / "x.h5")
    with pytest.raises(InvalidArgumentError, match="existing folder"):
        save_quantized_model(models[1]["static"], tmp_path / "no" / "x.h5")
    with pytest.raises(InvalidTypeError, match="path must be"):
        save_quantized_model(models[1]["static"], None)
