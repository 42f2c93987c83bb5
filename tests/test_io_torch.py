"""PyTorch .pth reader: hand-written files in both formats, attacks, peers.

The fixtures are written here opcode by opcode (protocol 2), without torch,
so the reader is checked against the format itself; expected tensor values
come from the index formula ``storage[offset + sum(i_j * stride_j)]``
evaluated with Python ints.
"""

from __future__ import annotations

import io
import itertools
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from refquant import assets
from refquant.errors import (
    CorruptFileError,
    InvalidArgumentError,
    InvalidTypeError,
    UnsafeFileError,
)
from refquant.io.torch_pth import load_torch_pickle, load_torch_state_dict

# ---------------------------------------------------------------------------
# a minimal protocol-2 pickle writer


class Emit:
    """Append pickle opcodes to a buffer; each method pushes one value."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def glob(self, module, name):
        self.out += b"c" + f"{module}\n{name}\n".encode()

    def int(self, v):
        self.out += b"J" + struct.pack("<i", v)  # BININT

    def str(self, s):
        b = s.encode()
        self.out += b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE

    def bool(self, v):
        self.out += b"\x88" if v else b"\x89"

    def none(self):
        self.out += b"N"

    def mark(self):
        self.out += b"("

    def tuple(self):
        self.out += b"t"

    def persid(self):
        self.out += b"Q"

    def reduce(self):
        self.out += b"R"

    def value(self, v):
        if isinstance(v, bool):
            self.bool(v)
        elif isinstance(v, int):
            self.int(v)
        elif isinstance(v, str):
            self.str(v)
        elif v is None:
            self.none()
        elif isinstance(v, tuple):
            self.mark()
            for item in v:
                self.value(item)
            self.tuple()
        else:
            raise TypeError(v)

    def stop(self) -> bytes:
        return bytes(self.out + b".")


def emit_state_dict(tensors, legacy: bool) -> bytes:
    """OrderedDict of tensors: name -> (storage_cls, key, location, numel,
    offset, size, stride)."""
    e = Emit()
    e.glob("collections", "OrderedDict")
    e.mark()
    e.tuple()
    e.reduce()
    e.mark()
    for name, (cls, key, loc, numel, offset, size, stride) in tensors.items():
        e.str(name)
        e.glob("torch._utils", "_rebuild_tensor_v2")
        e.mark()
        e.mark()  # persistent id tuple
        e.str("storage")
        e.glob("torch", cls)
        e.str(key)
        e.str(loc)
        e.int(numel)
        if legacy:
            e.none()  # view metadata
        e.tuple()
        e.persid()
        e.value(offset)
        e.value(tuple(size))
        e.value(tuple(stride))
        e.bool(False)
        e.glob("collections", "OrderedDict")
        e.mark()
        e.tuple()
        e.reduce()
        e.tuple()
        e.reduce()
    e.out += b"u"  # SETITEMS
    return e.stop()


def write_zip(path, pkl: bytes, records: dict, byteorder="little", top="archive"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{top}/data.pkl", pkl)
        if byteorder is not None:
            z.writestr(f"{top}/byteorder", byteorder)
        for key, raw in records.items():
            z.writestr(f"{top}/data/{key}", raw)
        z.writestr(f"{top}/version", "3\n")


def write_legacy(path, pkl: bytes, records: dict, counts: dict):
    with open(path, "wb") as f:
        for header in (
            0x1950A86A20F9469CFC6C,
            1001,
            {"protocol_version": 1001, "little_endian": True, "type_sizes": {}},
        ):
            f.write(pickle.dumps(header, protocol=2))
        f.write(pkl)
        keys = sorted(records)
        f.write(pickle.dumps(keys, protocol=2))
        for key in keys:
            f.write(struct.pack("<q", counts[key]) + records[key])


def strided_oracle(flat, offset, size, stride):
    """Nested Python lists from the index formula, with Python ints."""
    out = np.empty(size, dtype=flat.dtype)
    for idx in itertools.product(*(range(n) for n in size)):
        out[idx] = flat[offset + sum(i * s for i, s in zip(idx, stride))]
    return out


# storage key -> (class, little-endian dtype, values)
STORAGES = {
    "0": ("FloatStorage", "<f4", np.array([0.5, -1.25, 3.0, 1e-30, -0.0, 7.0, 2.5])),
    "1": ("LongStorage", "<i8", np.array([-(2**62), 2**62 + 5, -1, 0])),
    "2": ("HalfStorage", "<f2", np.array([1.0, -2.0, 65504.0, 6e-8])),
    "3": ("BoolStorage", "?", np.array([True, False, True])),
    "4": ("DoubleStorage", "<f8", np.array([np.pi, -np.e])),
    "5": ("ByteStorage", "u1", np.array([0, 255, 128])),
    "6": ("IntStorage", "<i4", np.array([2**31 - 1, -(2**31)])),
    "7": ("CharStorage", "i1", np.array([-128, 127])),
}
# name -> (key, offset, size, stride)
TENSORS = {
    "w_t": ("0", 1, (2, 3), (1, 2)),  # transposed view with an offset
    "w": ("0", 0, (7,), (1,)),  # shares storage 0
    "bcast": ("0", 2, (2, 2), (0, 1)),  # zero stride (expand)
    "big": ("1", 0, (4,), (1,)),
    "half": ("2", 0, (2, 2), (2, 1)),
    "mask": ("3", 0, (3,), (1,)),
    "scalar": ("4", 1, (), ()),
    "u8": ("5", 0, (3,), (1,)),
    "i32": ("6", 0, (2,), (1,)),
    "i8": ("7", 0, (1, 2), (2, 1)),
    "empty": ("4", 0, (0, 3), (3, 1)),
}


def build(legacy: bool, byteorder="little", location="cpu"):
    flats = {k: np.asarray(v, dtype=dt) for k, (_, dt, v) in STORAGES.items()}
    spec = {
        name: (STORAGES[key][0], key, location, flats[key].size, off, size, stride)
        for name, (key, off, size, stride) in TENSORS.items()
    }
    pkl = emit_state_dict(spec, legacy)
    order = ">" if byteorder == "big" else "<"
    records = {
        k: f.astype(f.dtype.newbyteorder(order)).tobytes() for k, f in flats.items()
    }
    expected = {
        name: strided_oracle(flats[key], off, size, stride)
        for name, (key, off, size, stride) in TENSORS.items()
    }
    return pkl, records, {k: f.size for k, f in flats.items()}, expected


def check_exact(got, expected):
    assert list(got) == list(expected)
    for name, want in expected.items():
        assert got[name].dtype == want.dtype.newbyteorder("="), name
        assert got[name].shape == want.shape, name
        assert got[name].tobytes() == want.tobytes(), name
        assert got[name].flags.c_contiguous and got[name].flags.writeable


# ---------------------------------------------------------------------------
# exact round trips of hand-written files


@pytest.mark.parametrize("byteorder", ["little", "big", None])
@pytest.mark.parametrize("location", ["cpu", "cuda:0"])
def test_zip_format_round_trip_is_exact(tmp_path, byteorder, location):
    pkl, records, _, expected = build(False, byteorder or "little", location)
    path = tmp_path / "m.pth"
    write_zip(path, pkl, records, byteorder=byteorder, top="mnist")
    check_exact(load_torch_state_dict(path), expected)


def test_zip_transposed_view_matches_hand_values(tmp_path):
    pkl, records, _, _ = build(False)
    write_zip(tmp_path / "m.pth", pkl, records)
    got = load_torch_state_dict(tmp_path / "m.pth")
    tiny = float(np.float32(1e-30))
    # storage 0 = [0.5, -1.25, 3.0, tiny, -0.0, 7.0, 2.5]; w_t[i, j] = s[1 + i + 2j]
    assert got["w_t"].tolist() == [[-1.25, tiny, 7.0], [3.0, -0.0, 2.5]]
    assert np.signbit(got["w_t"][1, 1])
    # bcast[i, j] = s[2 + 0 * i + j]
    assert got["bcast"].tolist() == [[3.0, tiny], [3.0, tiny]]
    assert got["i8"].tolist() == [[-128, 127]]
    assert got["scalar"].shape == () and got["scalar"] == -np.e


@pytest.mark.parametrize("location", ["cpu", "cuda:0"])
def test_legacy_format_round_trip_is_exact(tmp_path, location):
    pkl, records, counts, expected = build(True, location=location)
    path = tmp_path / "m.pth"
    write_legacy(path, pkl, records, counts)
    check_exact(load_torch_state_dict(path), expected)


def test_legacy_storage_view_metadata(tmp_path):
    # one tensor on a view of root storage "9" starting at element 2, 3 long
    e = Emit()
    e.mark()
    e.str("v")
    e.glob("torch._utils", "_rebuild_tensor_v2")
    e.mark()
    e.mark()  # persistent id
    e.str("storage")
    e.glob("torch", "FloatStorage")
    e.value("9")
    e.value("cpu")
    e.value(6)
    e.value(("9v", 2, 3))
    e.tuple()
    e.persid()
    e.int(1)
    e.value((2,))
    e.value((1,))
    e.bool(False)
    e.glob("collections", "OrderedDict")
    e.mark()
    e.tuple()
    e.reduce()
    e.tuple()
    e.reduce()
    e.out += b"d"  # DICT from the outer mark
    flat = np.arange(6, dtype="<f4") * 1.5
    path = tmp_path / "v.pth"
    write_legacy(path, e.stop(), {"9": flat.tobytes()}, {"9": 6})
    got = load_torch_state_dict(path)
    assert got["v"].tolist() == [4.5, 6.0]  # view [3.0, 4.5, 6.0], offset 1


def test_bfloat16_widens_exactly(tmp_path):
    bits = np.array([0x3F80, 0xC000, 0x7F80, 0x0001], dtype="<u2")
    pkl = emit_state_dict(
        {"b": ("BFloat16Storage", "0", "cpu", 4, 0, (4,), (1,))}, False
    )
    write_zip(tmp_path / "b.pth", pkl, {"0": bits.tobytes()})
    got = load_torch_state_dict(tmp_path / "b.pth")["b"]
    assert got.dtype == np.float32
    assert got[:3].tolist() == [1.0, -2.0, np.inf]
    assert got.view(np.uint32)[3] == 0x00010000  # subnormal kept bit for bit


def test_nested_checkpoint_and_key(tmp_path):
    e = Emit()
    e.mark()
    e.str("model")
    body = emit_state_dict({"w": ("FloatStorage", "0", "cpu", 1, 0, (1,), (1,))}, False)
    e.out += body[2:-1]
    e.str("epoch")
    e.int(3)
    e.out += b"d"
    write_zip(tmp_path / "c.pth", e.stop(), {"0": np.float32(2.0).tobytes()})
    assert load_torch_state_dict(tmp_path / "c.pth", key="model")["w"].tolist() == [2.0]
    raw = load_torch_pickle(tmp_path / "c.pth")
    assert raw["epoch"] == 3
    with pytest.raises(InvalidArgumentError, match="'epoch' is a int.*key="):
        load_torch_state_dict(tmp_path / "c.pth")
    with pytest.raises(InvalidArgumentError, match="key=.*'nope'.*entries"):
        load_torch_state_dict(tmp_path / "c.pth", key="nope")
    with pytest.raises(InvalidTypeError, match="key must be a str"):
        load_torch_state_dict(tmp_path / "c.pth", key=3)


# ---------------------------------------------------------------------------
# malicious files are refused before anything runs


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def _attack_payloads(marker):
    command = f"touch {marker}"
    yield "posix.system", pickle.dumps({"w": _Evil(os.system, command)}, protocol=2)
    yield (
        "builtins.eval",
        pickle.dumps(
            {"w": _Evil(eval, f"__import__('os').system({command!r})")}, protocol=4
        ),
    )
    # hand-written GLOBAL 'os system' + REDUCE, as a crafted file would have it
    e = Emit()
    e.glob("os", "system")
    e.mark()
    e.str(command)
    e.tuple()
    e.reduce()
    yield "os.system", e.stop()
    # a storage type slot that tries to smuggle a callable
    e = Emit()
    e.glob("subprocess", "Popen")
    yield "subprocess.Popen", e.stop()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_malicious_pickle_is_rejected_and_nothing_runs(tmp_path, fmt):
    marker = tmp_path / "pwned"
    for qualname, payload in _attack_payloads(marker):
        path = tmp_path / f"evil-{fmt}.pth"
        if fmt == "zip":
            write_zip(path, payload, {})
        else:
            write_legacy(path, payload, {}, {})
        with pytest.raises(UnsafeFileError) as info:
            load_torch_state_dict(path)
        message = str(info.value)
        assert qualname in message and str(path) in message
        assert "rejected before anything ran" in message
        assert not marker.exists()


def test_plain_pickle_of_a_payload_would_have_run(tmp_path):
    """Control: the same bytes do execute under an unrestricted loader."""
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2)
    pickle.loads(payload)  # trusted test payload: proves the attack is live
    assert marker.exists()


def test_whole_module_pickle_is_refused(tmp_path):
    e = Emit()
    e.value(("module", "Net", "net.py", "class Net: ..."))
    e.persid()
    write_zip(tmp_path / "m.pth", e.stop(), {})
    with pytest.raises(UnsafeFileError, match="nn.Module"):
        load_torch_state_dict(tmp_path / "m.pth")


# ---------------------------------------------------------------------------
# malformed files


def _one_tensor(offset, size, stride, numel=4, record_bytes=16):
    pkl = emit_state_dict(
        {"t": ("FloatStorage", "0", "cpu", numel, offset, size, stride)}, False
    )
    return pkl, {"0": b"\x00" * record_bytes}


@pytest.mark.parametrize(
    "offset, size, stride, message",
    [
        (0, (5,), (1,), "reads past its storage"),
        (3, (2,), (1,), "reads past its storage"),
        (0, (2, 2), (1, 3), "reads past its storage"),
        (-1, (1,), (1,), "invalid storage, offset"),
        (0, (2,), (-1,), "invalid size"),
        (0, (2, 2), (1,), "invalid storage, offset or rank"),
    ],
)
def test_out_of_bounds_tensors_are_rejected(tmp_path, offset, size, stride, message):
    pkl, records = _one_tensor(offset, size, stride)
    write_zip(tmp_path / "m.pth", pkl, records)
    with pytest.raises(InvalidArgumentError, match=message):
        load_torch_state_dict(tmp_path / "m.pth")


def test_record_size_must_match_the_pickle(tmp_path):
    pkl, records = _one_tensor(0, (4,), (1,), numel=4, record_bytes=12)
    write_zip(tmp_path / "m.pth", pkl, records)
    with pytest.raises(InvalidArgumentError, match="has 12 bytes; the pickle says 16"):
        load_torch_state_dict(tmp_path / "m.pth")
    write_zip(tmp_path / "n.pth", pkl, {})
    with pytest.raises(InvalidArgumentError, match="missing storage record"):
        load_torch_state_dict(tmp_path / "n.pth")


def test_bad_byteorder_record(tmp_path):
    pkl, records = _one_tensor(0, (4,), (1,))
    write_zip(tmp_path / "m.pth", pkl, records, byteorder="middle")
    with pytest.raises(InvalidArgumentError, match="byteorder"):
        load_torch_state_dict(tmp_path / "m.pth")


def test_truncated_legacy_file(tmp_path):
    pkl, records, counts, _ = build(True)
    path = tmp_path / "m.pth"
    write_legacy(path, pkl, records, counts)
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    with pytest.raises(InvalidArgumentError, match="file ends inside storage"):
        load_torch_state_dict(path)
    path.write_bytes(data[:40])
    with pytest.raises(InvalidArgumentError, match="not a readable PyTorch"):
        load_torch_state_dict(path)


def test_legacy_count_must_match(tmp_path):
    pkl, records, counts, _ = build(True)
    counts["1"] += 1
    write_legacy(tmp_path / "m.pth", pkl, records, counts)
    with pytest.raises(InvalidArgumentError, match="file says 5 elements"):
        load_torch_state_dict(tmp_path / "m.pth")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a torch file at all", pickle.dumps([1, 2, 3], protocol=2)],
)
def test_non_torch_files_are_rejected(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(InvalidArgumentError, match="not a readable PyTorch"):
        load_torch_state_dict(path)


def test_zip_without_data_pkl(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.pth", "w") as z:
        z.writestr("archive/other", b"")
    with pytest.raises(InvalidArgumentError, match="data.pkl"):
        load_torch_state_dict(tmp_path / "z.pth")


def test_non_dict_object(tmp_path):
    e = Emit()
    e.int(7)
    write_zip(tmp_path / "i.pth", e.stop(), {})
    with pytest.raises(InvalidArgumentError, match="holds a int, not a state dict"):
        load_torch_state_dict(tmp_path / "i.pth")


def test_invalid_path_arguments(tmp_path):
    with pytest.raises(InvalidArgumentError, match="path must be an existing file"):
        load_torch_state_dict(tmp_path / "missing.pth")
    with pytest.raises(InvalidTypeError, match="path must be a str or os.PathLike"):
        load_torch_state_dict(123)
    with pytest.raises(InvalidArgumentError, match="existing file"):
        load_torch_state_dict(tmp_path)


# ---------------------------------------------------------------------------
# peer: torch.save / torch.load, bit for bit


@pytest.mark.peers
@pytest.mark.parametrize("zip_format", [True, False])
def test_matches_torch_bit_for_bit(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(5, 6, generator=g)
    sd = {
        "f32": torch.randn(3, 4, generator=g),
        "t_view": base.t(),
        "slice": base[1:4, ::2],
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "f64": torch.randn(2, generator=g).double(),
        "i64": torch.tensor([-(2**63), 2**63 - 1, 0]),
        "i32": torch.tensor([-(2**31), 5], dtype=torch.int32),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "expand": torch.arange(4.0).expand(1, 4),  # stride 0, no repeats
        "param": torch.nn.Parameter(torch.ones(2)),
    }
    path = tmp_path / "t.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    ours = load_torch_state_dict(path)
    ref = torch.load(path, weights_only=True)
    assert list(ours) == list(ref)
    for k, t in ref.items():
        t = t.detach()
        want = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
        assert ours[k].dtype == want.dtype and ours[k].shape == want.shape, k
        assert ours[k].tobytes() == np.ascontiguousarray(want).tobytes(), k
    # an expand that repeats elements beyond its storage is refused
    torch.save({"e": torch.tensor([1.0, 2.0]).expand(3, 2)}, path)
    with pytest.raises(CorruptFileError, match="holds 6 elements.*only 2"):
        load_torch_state_dict(path)


# ---------------------------------------------------------------------------
# the real third-party files


def _cached_or_skip(name):
    if not assets.is_cached(name):
        pytest.skip(
            f"asset {name!r} not cached: python -m refquant.assets fetch {name}"
        )
    (path,) = assets.asset_paths(name)
    return path


def _n_params(sd):
    stats = ("running_mean", "running_var", "num_batches_tracked")
    return sum(v.size for k, v in sd.items() if not k.endswith(stats))


@pytest.mark.assets
def test_ccexam_mnist_cnn_has_421642_parameters():
    sd = load_torch_state_dict(_cached_or_skip("mnist_cnn"))
    assert _n_params(sd) == 421_642
    shapes = {k: v.shape for k, v in sd.items()}
    # Conv3x3(1->32) - Conv3x3(32->64) - FC(3136->128) - FC(128->10):
    # 320 + 18,496 + 401,536 + 1,290 = 421,642
    assert shapes["features.0.weight"] == (32, 1, 3, 3)
    assert shapes["features.3.weight"] == (64, 32, 3, 3)
    assert shapes["classifier.0.weight"] == (128, 3136)
    assert shapes["classifier.2.weight"] == (10, 128)
    assert all(v.dtype == np.float32 for v in sd.values())


@pytest.mark.assets
def test_mobilenet_v2_has_3504872_parameters():
    sd = load_torch_state_dict(_cached_or_skip("mobilenet_v2"))
    assert _n_params(sd) == 3_504_872
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    assert np.all(sd["features.0.1.running_var"] > 0)


def test_restricted_unpickler_rejects_extension_codes():
    # EXT1 looks names up through copyreg; it must still pass find_class
    import copyreg

    from refquant.io.torch_pth import RestrictedUnpickler

    copyreg.add_extension("os", "system", 0xF0)
    try:
        payload = b"\x80\x02\x82\xf0."
        with pytest.raises(UnsafeFileError, match="os.system"):
            RestrictedUnpickler(io.BytesIO(payload)).load()
    finally:
        copyreg.remove_extension("os", "system", 0xF0)


# ---------------------------------------------------------------------------
# hostile files: memory amplification, deep nesting, garbage


def test_stride0_tensor_larger_than_its_storage_is_refused(tmp_path):
    # 1 float of storage viewed as 16384 x 16384 by stride 0: 268435456 elements
    pkl, records = _one_tensor(0, (16384, 16384), (0, 0), numel=1, record_bytes=4)
    path = tmp_path / "bomb.pth"
    write_zip(path, pkl, records)
    assert path.stat().st_size < 1000
    with pytest.raises(CorruptFileError) as info:
        load_torch_state_dict(path)
    msg = str(info.value)
    assert "bomb.pth" in msg and "268435456 elements" in msg and "only 1" in msg


def test_many_views_of_one_storage_exceed_the_budget(tmp_path):
    # 5 distinct full views of a 4-float storage: 5 * 16 B > 4 * 16 B present
    spec = {f"t{i}": ("FloatStorage", "0", "cpu", 4, 0, (4,), (1,)) for i in range(5)}
    write_zip(tmp_path / "views.pth", emit_state_dict(spec, False), {"0": bytes(16)})
    with pytest.raises(CorruptFileError, match=r"views\.pth.*4 times the 16 storage"):
        load_torch_state_dict(tmp_path / "views.pth")
    # 4 views (tied weights and the like) are within the budget
    del spec["t4"]
    write_zip(tmp_path / "ok.pth", emit_state_dict(spec, False), {"0": bytes(16)})
    got = load_torch_state_dict(tmp_path / "ok.pth")
    assert list(got) == ["t0", "t1", "t2", "t3"]


@pytest.mark.parametrize("size", [(0, 2**62, 2**62), (0, 2**70), (0,) * 65])
def test_empty_tensor_with_impossible_size_is_refused(tmp_path, size):
    e = Emit()
    e.glob("torch._utils", "_rebuild_tensor_v2")
    e.mark()
    e.mark()
    for v in ("storage",):
        e.str(v)
    e.glob("torch", "FloatStorage")
    e.str("0")
    e.str("cpu")
    e.int(0)
    e.tuple()
    e.persid()
    e.int(0)
    e.mark()
    for n in size:  # LONG1 for ints beyond BININT
        raw = n.to_bytes((n.bit_length() + 8) // 8 or 1, "little", signed=True)
        e.out += b"\x8a" + bytes([len(raw)]) + raw
    e.tuple()
    e.value((1,) * len(size))
    e.tuple()
    e.reduce()
    write_zip(tmp_path / "empty.pth", e.stop(), {"0": b""})
    with pytest.raises(CorruptFileError, match=r"empty\.pth.*(impossible size|rank)"):
        load_torch_pickle(tmp_path / "empty.pth")


@pytest.mark.parametrize("container", ["list", "dict"])
def test_deeply_nested_pickle_is_refused(tmp_path, container):
    depth = 100_000
    if container == "list":
        body = b"]" * depth + b"a" * (depth - 1)  # EMPTY_LIST, APPEND
    else:
        # EMPTY_DICT, then per level: key 'k', EMPTY_DICT; SETITEM closes each
        body = b"}" + b"X\x01\x00\x00\x00k}" * depth + b"s" * depth
    write_zip(tmp_path / "deep.pth", b"\x80\x02" + body + b".", {})
    with pytest.raises(CorruptFileError, match=r"deep\.pth.*nested too deeply"):
        load_torch_state_dict(tmp_path / "deep.pth")


def test_garbage_file_says_it_is_not_a_pytorch_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"garbage\n")  # 'g' is the pickle GET opcode
    with pytest.raises(CorruptFileError) as info:
        load_torch_state_dict(path)
    msg = str(info.value)
    assert "garbage.pth" in msg and "not a PyTorch file" in msg
    assert "invalid literal" not in msg
