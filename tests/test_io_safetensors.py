"""safetensors reader and writer: hand-built bytes, validation, peer parity."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refquant.errors import CorruptFileError, InvalidArgumentError, InvalidTypeError
from refquant.io.safetensors import load_safetensors, save_safetensors


def raw_file(header: dict, buffer: bytes, pad: int = 0) -> bytes:
    blob = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(blob)) + blob + buffer


def write(tmp_path, data: bytes, name="t.safetensors"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------
# reading hand-built files


def test_reads_hand_built_file(tmp_path):
    a = struct.pack("<3f", 1.5, -2.0, 0.25)
    b = struct.pack("<2q", -(2**63), 7)
    header = {
        "__metadata__": {"format": "pt"},
        "b": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
        "a": {"dtype": "F32", "shape": [3, 1], "data_offsets": [16, 28]},
        "c": {"dtype": "BOOL", "shape": [], "data_offsets": [28, 29]},
        "z": {"dtype": "F16", "shape": [0, 5], "data_offsets": [29, 29]},
    }
    got = load_safetensors(write(tmp_path, raw_file(header, b + a + b"\x01", pad=5)))
    assert list(got) == ["b", "a", "c", "z"]
    assert got["a"].tolist() == [[1.5], [-2.0], [0.25]] and got["a"].dtype == np.float32
    assert got["b"].tolist() == [-(2**63), 7] and got["b"].dtype == np.int64
    assert got["c"].shape == () and bool(got["c"]) is True
    assert got["z"].shape == (0, 5) and got["z"].dtype == np.float16


def test_bf16_widens_exactly(tmp_path):
    bits = struct.pack("<4H", 0x3F80, 0xC040, 0xFF80, 0x0001)
    header = {"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}
    w = load_safetensors(write(tmp_path, raw_file(header, bits)))["w"]
    assert w.dtype == np.float32
    assert w[:3].tolist() == [1.0, -3.0, -np.inf]
    assert w.view(np.uint32)[3] == 0x00010000


# ---------------------------------------------------------------------------
# writing: exact bytes of a tiny example


def test_writer_layout_is_exact(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(
        {"b": np.array([1, 2], np.int8), "a": np.array([0.5], np.float64)},
        path,
        metadata={"k": "v"},
    )
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
    header = json.loads(data[8 : 8 + n])
    # float64 (item size 8) first, then int8: offsets [0, 8) and [8, 10)
    assert header == {
        "__metadata__": {"k": "v"},
        "a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
        "b": {"dtype": "I8", "shape": [2], "data_offsets": [8, 10]},
    }
    assert data[8 + n :] == struct.pack("<d", 0.5) + b"\x01\x02"
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp left


DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    np.int64,
    np.int32,
    np.int16,
    np.int8,
    np.uint64,
    np.uint32,
    np.uint16,
    np.uint8,
    np.bool_,
    np.complex64,
]


@given(
    arrays=st.lists(
        hnp.arrays(
            st.sampled_from(DTYPES),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_round_trip_is_bit_exact(tmp_path_factory, arrays):
    tensors = {f"t{i}": a for i, a in enumerate(arrays)}
    path = tmp_path_factory.mktemp("rt") / "r.safetensors"
    save_safetensors(tensors, path)
    got = load_safetensors(path)
    assert set(got) == set(tensors)
    for k, a in tensors.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape
        assert got[k].tobytes() == np.ascontiguousarray(a).tobytes()


def test_big_endian_and_strided_inputs_are_written_little_endian(tmp_path):
    a = np.arange(6, dtype=">i4").reshape(2, 3).T
    save_safetensors({"a": a}, tmp_path / "e.safetensors")
    got = load_safetensors(tmp_path / "e.safetensors")["a"]
    assert got.tolist() == [[0, 3], [1, 4], [2, 5]]
    assert got.dtype == np.dtype("<i4")


# ---------------------------------------------------------------------------
# invalid files

GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


def _duplicated_header() -> bytes:
    one = json.dumps(GOOD)
    blob = (one[:-1] + "," + one[1:]).encode()  # {"a": ..., "a": ...}
    return struct.pack("<Q", len(blob)) + blob + b"1" * 8


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01\x02", "fewer than 8"),
        (struct.pack("<Q", 10**6) + b"{}", "header length 1000000 exceeds"),
        (struct.pack("<Q", 3) + b"{x}", "not UTF-8 JSON"),
        (struct.pack("<Q", 2) + b"\xff\xfe", "not UTF-8 JSON"),
        (raw_file([1, 2], b""), "not a JSON object"),  # type: ignore[arg-type]
        (
            raw_file(
                {"a": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, b"x"
            ),
            "dtype 'F8_E4M3'",
        ),
        (
            raw_file(
                {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"1234"
            ),
            "shape",
        ),
        (
            raw_file(
                {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"1" * 8
            ),
            "span 8 bytes but shape",
        ),
        (
            raw_file(
                {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"1" * 8
            ),
            "starts at byte 4",
        ),
        (raw_file(GOOD, b"1" * 12), "cover 8 bytes; the buffer has 12"),
        (raw_file(GOOD, b"1" * 4), "cover 8 bytes; the buffer has 4"),
        (
            raw_file(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                },
                b"1" * 8,
            ),
            "starts at byte 4",
        ),
        (
            raw_file({"a": {"dtype": "F32", "shape": [1]}}, b"1234"),
            "exactly dtype, shape, data_offsets",
        ),
        (raw_file({"__metadata__": {"k": 1}, **GOOD}, b"1" * 8), "__metadata__"),
        (_duplicated_header(), "repeats a tensor name"),
    ],
)
def test_invalid_files_are_rejected(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(InvalidArgumentError, match=message) as info:
        load_safetensors(path)
    assert "is not a valid safetensors file" in str(info.value)
    assert str(path) in str(info.value)


def _entry_file(shape_json: str, nbytes: int = 0) -> bytes:
    blob = (
        '{"a": {"dtype": "F32", "shape": ' + shape_json + ', "data_offsets": [0, '
        f"{nbytes}]}}}}"
    ).encode()
    return struct.pack("<Q", len(blob)) + blob + b"\0" * nbytes


@pytest.mark.parametrize(
    "data, message",
    [
        (
            struct.pack("<Q", 200_000) + b"[" * 100_000 + b"]" * 100_000,
            "nested too deeply",
        ),
        (_entry_file("[" + "9" * 5001 + "]"), "unreadable value.*5001 digits"),
        (_entry_file(json.dumps([1] * 100), 4), "entry 'a' has 100 dims; at most 64"),
        (_entry_file(json.dumps([0, 10**30])), "entry 'a' has impossible shape"),
        (_entry_file(json.dumps([0, 2**62, 2**62])), "entry 'a' has impossible shape"),
    ],
)
def test_hostile_headers_name_the_file_and_the_fault(tmp_path, data, message):
    path = write(tmp_path, data, "hostile.safetensors")
    with pytest.raises(CorruptFileError, match=message) as info:
        load_safetensors(path)
    assert "hostile.safetensors' is not a valid safetensors file" in str(info.value)


def test_load_invalid_path_arguments(tmp_path):
    with pytest.raises(InvalidArgumentError, match="path must be an existing file"):
        load_safetensors(tmp_path / "missing.safetensors")
    with pytest.raises(InvalidTypeError, match="path must be a str"):
        load_safetensors(None)


@pytest.mark.parametrize(
    "tensors, metadata, error, message",
    [
        ([np.zeros(2)], None, InvalidTypeError, "tensors must be a dict"),
        ({1: np.zeros(2)}, None, InvalidArgumentError, "names must be str"),
        ({"__metadata__": np.zeros(2)}, None, InvalidArgumentError, "__metadata__"),
        ({"a": [1.0, 2.0]}, None, InvalidTypeError, r"tensors\['a'\] must be a numpy"),
        ({"a": np.array(["x"])}, None, InvalidArgumentError, "has dtype <U1"),
        ({"a": np.zeros(2, np.complex128)}, None, InvalidArgumentError, "complex128"),
        ({"a": np.zeros(2)}, {"k": 1}, InvalidTypeError, "metadata must be a dict"),
    ],
)
def test_save_rejects_invalid_input(tmp_path, tensors, metadata, error, message):
    path = tmp_path / "x.safetensors"
    with pytest.raises(error, match=message):
        save_safetensors(tensors, path, metadata=metadata)
    assert not path.exists()


def test_save_rejects_bad_path():
    with pytest.raises(InvalidTypeError, match="path must be a str"):
        save_safetensors({"a": np.zeros(1)}, 3)


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "missing_folder" / "x.safetensors"
    with pytest.raises(InvalidArgumentError, match="existing folder.*missing_folder"):
        save_safetensors({"a": np.zeros(1)}, target)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# peer: the safetensors package


@pytest.mark.peers
def test_interoperates_with_the_safetensors_package(tmp_path):
    stn = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    tensors = {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "ids": rng.integers(-100, 100, 7),
        "h": rng.standard_normal(5).astype(np.float16),
        "m": np.array([True, False]),
        "s": np.array(2, np.uint8),
    }
    save_safetensors(tensors, tmp_path / "ours.safetensors")
    theirs = stn.load_file(str(tmp_path / "ours.safetensors"))
    stn.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    ours = load_safetensors(tmp_path / "theirs.safetensors")
    for k, a in tensors.items():
        for got in (theirs[k], ours[k]):
            assert got.dtype == a.dtype and got.shape == a.shape
            assert got.tobytes() == a.tobytes()
