"""Real data loaders, torchvision-equivalent preprocessing and array input."""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest

from refquant import assets, datasets
from refquant.datasets import (
    OptionalDependencyError,
    center_crop,
    imagenet_preprocess,
    load_array_data,
    mnist_preprocess,
    resize_shorter_side,
)
from refquant.errors import CorruptFileError, InvalidArgumentError, InvalidTypeError

Image = pytest.importorskip("PIL.Image")


# ---------------------------------------------------------------------------
# resize and crop


def test_resize_two_to_one_hand_computed():
    # Bilinear antialias, scale 2: support 2 input pixels, triangle weights
    # tri(t) = 1 - |t| at t = (x + 0.5 - center) / 2, center = 2 * i + 1.
    # Output 0: x = 0, 1, 2 -> 0.75, 0.75, 0.25 -> (3a + 3b + c) / 7
    # Output 1: x = 1, 2, 3 -> 0.25, 0.75, 0.75 -> (b + 3c + 3d) / 7
    # Row [70, 70, 0, 0] -> [(210 + 210) / 7, 70 / 7] = [60, 10].
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, :2] = 70
    out = resize_shorter_side(image, 2)
    assert out.shape == (2, 2, 3)
    assert out[..., 0].tolist() == [[60, 10], [60, 10]]
    assert np.array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((512, 512), (256, 256)),
        ((683, 1024), (256, 383)),  # floor(256 * 1024 / 683) = floor(383.8)
        ((1024, 683), (383, 256)),
        ((300, 451), (256, 384)),  # floor(256 * 451 / 300) = floor(384.85)
        ((100, 100), (256, 256)),  # upscaling
    ],
)
def test_resize_output_size_follows_torchvision(shape, expected):
    out = resize_shorter_side(np.zeros((*shape, 3), np.uint8))
    assert out.shape == (*expected, 3)


def test_constant_image_stays_constant():
    out = resize_shorter_side(np.full((300, 451, 3), 77, np.uint8))
    assert np.all(out == 77)


def test_center_crop_offsets_round_half_even():
    # (383 - 224) / 2 = 79.5 -> 80 (ties to even); (256 - 224) / 2 = 16
    rows, cols = np.meshgrid(np.arange(256), np.arange(383), indexing="ij")
    image = np.stack([rows, cols, rows * 0], axis=-1)
    out = center_crop(image, 224)
    assert out[0, 0].tolist() == [16, 80, 0]
    assert out[-1, -1].tolist() == [239, 303, 0]
    # (257 - 224) / 2 = 16.5 -> 16 (ties to even)
    assert center_crop(np.zeros((257, 257, 1)), 224).shape == (224, 224, 1)
    odd = np.arange(257 * 257).reshape(257, 257)
    assert center_crop(odd, 224)[0, 0] == 16 * 257 + 16


def test_imagenet_preprocess_constant_image_exact_formula():
    out = imagenet_preprocess([np.full((300, 400, 3), 128, np.uint8)])
    assert out.shape == (1, 224, 224, 3) and out.dtype == np.float32
    for c in range(3):
        mean = Fraction(datasets.IMAGENET_MEAN[c])
        std = Fraction(datasets.IMAGENET_STD[c])
        exact = (Fraction(128, 255) - mean) / std
        # three float32 ops plus float32 mean and std: error well under 1e-6
        assert abs(float(out[0, 0, 0, c]) - float(exact)) <= 1e-6
        assert np.all(out[..., c] == out[0, 0, 0, c])


def test_imagenet_preprocess_accepts_gray_and_arrays():
    gray = np.full((256, 256), 255, np.uint8)
    a = imagenet_preprocess([gray])
    b = imagenet_preprocess(np.full((1, 256, 256, 3), 255, np.uint8))
    assert np.array_equal(a, b)
    want = (1 - np.array(datasets.IMAGENET_MEAN)) / np.array(datasets.IMAGENET_STD)
    assert np.allclose(a[0, 5, 5], want, atol=1e-6)


@pytest.mark.peers
def test_resize_within_one_level_of_torch_antialias():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for shape in [(97, 131, 3), (512, 512, 3), (300, 451, 3), (683, 1024, 3)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        ours = resize_shorter_side(image)
        x = torch.from_numpy(image).permute(2, 0, 1)[None].double()
        ref = (
            torch.nn.functional.interpolate(
                x,
                size=ours.shape[:2],
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )[0]
            .permute(1, 2, 0)
            .numpy()
        )
        # Pillow rounds after each of its two passes (<= 0.5 each, weights >= 0)
        assert np.abs(ours - ref).max() <= 1.0 + 1e-3


def test_mnist_preprocess_exact_values():
    x = np.array([[[0, 255]]], np.uint8)  # (1, 1, 2)
    out = mnist_preprocess(x)
    assert out.shape == (1, 1, 2, 1) and out.dtype == np.float32
    lo = (Fraction(0) - Fraction(0.1307)) / Fraction(0.3081)
    hi = (Fraction(1) - Fraction(0.1307)) / Fraction(0.3081)
    assert abs(float(out[0, 0, 0, 0]) - float(lo)) <= 1e-6  # -0.42421...
    assert abs(float(out[0, 0, 1, 0]) - float(hi)) <= 1e-6  # 2.82148...
    assert np.array_equal(mnist_preprocess(x[..., None]), out)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: imagenet_preprocess([np.zeros((9, 9, 3))]),
            InvalidArgumentError,
            "uint8",
        ),
        (lambda: imagenet_preprocess([]), InvalidTypeError, "non-empty list"),
        (lambda: imagenet_preprocess("x"), InvalidTypeError, "non-empty list"),
        (
            lambda: imagenet_preprocess(np.zeros((9, 9, 3), np.uint8)),
            InvalidArgumentError,
            r"got an array of shape \(9, 9, 3\)",
        ),
        (
            lambda: imagenet_preprocess([np.zeros((9, 9, 4), np.uint8)]),
            InvalidArgumentError,
            r"images\[0\] must have shape \(H, W, 3\)",
        ),
        (
            lambda: imagenet_preprocess([np.zeros((9, 9, 3), np.uint8)], std=(1, 0, 1)),
            InvalidArgumentError,
            "std > 0",
        ),
        (
            lambda: resize_shorter_side(np.zeros((9, 9, 3), np.uint8), 0),
            InvalidArgumentError,
            "size must be an int >= 1; got size=0",
        ),
        (
            lambda: center_crop(np.zeros((9, 9, 3), np.uint8), 10),
            InvalidArgumentError,
            "at most the image's height and width",
        ),
        (
            lambda: mnist_preprocess(np.zeros((2, 28, 28), np.float32)),
            InvalidArgumentError,
            "uint8 of shape",
        ),
        (
            lambda: mnist_preprocess(np.zeros((2, 28, 28), np.uint8), std=0.0),
            InvalidArgumentError,
            "std > 0",
        ),
        (
            lambda: datasets.ccexam_samples("emnist"),
            InvalidArgumentError,
            "kind must be",
        ),
    ],
)
def test_invalid_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_missing_pillow_gives_the_extra_name(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(OptionalDependencyError, match=r"refquant\[examples\]"):
        resize_shorter_side(np.zeros((4, 4, 3), np.uint8), 2)


# ---------------------------------------------------------------------------
# generic array input


def test_load_npy_and_npz(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", x)
    got, y = load_array_data(tmp_path / "a.npy")
    assert np.array_equal(got, x) and y is None
    np.savez(tmp_path / "b.npz", images=x, labels=np.eye(3)[[2, 0, 1]])
    got, y = load_array_data(tmp_path / "b.npz")
    assert np.array_equal(got, x) and y.tolist() == [2, 0, 1] and y.dtype == np.int64
    np.savez(tmp_path / "c.npz", foo=x, bar=np.arange(3))
    got, y = load_array_data(tmp_path / "c.npz", x_key="foo", y_key="bar")
    assert y.tolist() == [0, 1, 2]
    np.savez(tmp_path / "d.npz", only=x)
    assert load_array_data(tmp_path / "d.npz")[1] is None


def test_load_refuses_pickles_and_ambiguity(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidArgumentError, match="allow_pickle=False"):
        load_array_data(tmp_path / "o.npy")
    np.savez(tmp_path / "c.npz", foo=np.zeros(2), bar=np.zeros(2))
    with pytest.raises(
        InvalidArgumentError, match=r"x_key must be given.*\['bar', 'foo'\]"
    ):
        load_array_data(tmp_path / "c.npz")
    with pytest.raises(InvalidArgumentError, match="x_key must name an array"):
        load_array_data(tmp_path / "c.npz", x_key="nope")
    np.savez(tmp_path / "f.npz", x=np.zeros(2), y=np.array([0.5, 1.0]))
    with pytest.raises(InvalidArgumentError, match="labels .* must be integers"):
        load_array_data(tmp_path / "f.npz")


def test_load_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["test/x"] = np.ones((2, 3), np.uint8)
        f["test/y"] = np.array([4, 5])
    x, y = load_array_data(tmp_path / "d.h5", x_key="test/x", y_key="test/y")
    assert x.tolist() == [[1, 1, 1]] * 2 and y.tolist() == [4, 5]
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["x"] = np.zeros((2, 2))
    x, y = load_array_data(tmp_path / "e.h5")
    assert x.shape == (2, 2) and y is None


def test_load_image_folders(tmp_path):
    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / "lab" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((5, 6), value + i, np.uint8)).save(
                tmp_path / "lab" / cls / f"{i}.png"
            )
    x, y = load_array_data(tmp_path / "lab")
    assert x.shape == (4, 5, 6) and x.dtype == np.uint8
    assert x[:, 0, 0].tolist() == [10, 11, 200, 201] and y.tolist() == [0, 0, 1, 1]
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(flat / "a.png")
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(flat / "b.png")
    x, y = load_array_data(flat)
    assert y is None and isinstance(x, list)
    assert [im.shape for im in x] == [(4, 4, 3), (2, 3, 3)]


def test_load_array_data_invalid_paths(tmp_path):
    with pytest.raises(InvalidArgumentError, match="existing file or folder"):
        load_array_data(tmp_path / "missing.npy")
    (tmp_path / "a.csv").write_text("1,2")
    with pytest.raises(InvalidArgumentError, match=r"\.npy, \.npz, \.h5"):
        load_array_data(tmp_path / "a.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="has none"):
        load_array_data(tmp_path / "empty")
    with pytest.raises(InvalidTypeError, match="path must be a str"):
        load_array_data(42)


# ---------------------------------------------------------------------------
# the real data sets


def _need(name):
    if not assets.is_cached(name):
        pytest.skip(
            f"asset {name!r} not cached: python -m refquant.assets fetch {name}"
        )


@pytest.mark.assets
def test_mnist_5k_has_500_per_class():
    _need("mnist_5k")
    x, y = datasets.mnist_5k(download=False)
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [500] * 10
    assert x.max() == 255 and x[:, 0, 0].max() == 0  # corners are background
    # digits are centred by mass in the 20x20 box of MNIST: borders are dark
    assert x[:, :, :2].mean() < 1 and x[:, 10:18, 10:18].mean() > 50


@pytest.mark.assets
def test_foolbox_mnist_are_the_first_test_digits():
    _need("foolbox_mnist")
    x, y = datasets.foolbox_mnist(download=False)
    assert x.shape == (20, 28, 28) and x.dtype == np.uint8
    # the first 20 labels of the MNIST test set
    assert y.tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5, 9, 7, 3, 4]


@pytest.mark.assets
def test_two_packages_ship_the_same_mnist_test_digits():
    _need("foolbox_mnist")
    _need("ccexam_samples")
    a, ya = datasets.foolbox_mnist(download=False)
    b, yb = datasets.ccexam_samples("mnist", download=False)
    assert yb.tolist() == ya[:3].tolist() == [7, 2, 1]
    assert np.array_equal(a[:3], b)  # independent files, same pixels


@pytest.mark.assets
def test_ccexam_samples_shapes():
    _need("ccexam_samples")
    x, y = datasets.ccexam_samples("usps", download=False)
    assert x.shape == (4, 16, 16) and y.tolist() == [1, 4, 5, 6]
    x, y = datasets.ccexam_samples("svhn", download=False)
    assert x.shape == (4, 32, 32, 3) and y.tolist() == [0, 1, 2, 5]


@pytest.mark.assets
def test_foolbox_imagenet_and_preprocessing():
    _need("foolbox_imagenet")
    images, y = datasets.foolbox_imagenet(download=False)
    assert len(images) == 20 and y.dtype == np.int64
    assert y[:3].tolist() == [243, 559, 438] and y.min() >= 0 and y.max() <= 999
    shapes = sorted({im.shape for im in images})
    assert shapes == [(512, 512, 3), (683, 1024, 3)]
    x = imagenet_preprocess(images)
    assert x.shape == (20, 224, 224, 3) and x.dtype == np.float32
    lo = (0 - np.array(datasets.IMAGENET_MEAN)) / datasets.IMAGENET_STD
    hi = (1 - np.array(datasets.IMAGENET_MEAN)) / datasets.IMAGENET_STD
    assert np.all(x >= lo.astype(np.float32) - 1e-6)
    assert np.all(x <= hi.astype(np.float32) + 1e-6)


@pytest.mark.assets
def test_calibration_photos():
    _need("calibration_photos")
    photos = datasets.calibration_photos(download=False)
    assert len(photos) == 23
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos)
    assert min(min(p.shape[:2]) for p in photos) >= 102
    assert imagenet_preprocess(photos).shape == (23, 224, 224, 3)


def _npy_header(shape) -> bytes:
    """A version 1.0 .npy header for a float64 array of ``shape``, no data."""
    import io

    buf = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _npy_bytes(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("one.npy", b"\x93", "one.npy' is not a valid .npy file: it does not start"),
        ("text.npy", b"hello world\n", "text.npy' is not a valid .npy file"),
        ("empty.npy", b"", "empty.npy' is not a valid .npy file"),
        (
            "trunc.npy",
            _npy_bytes(np.arange(100, dtype=np.int32))[:-4],
            r"trunc.npy' is not a valid .npy file: its header promises shape \(100,\)"
            r" of int32 \(400 bytes\) but only 396 bytes follow",
        ),
        (
            "huge.npy",
            _npy_header((10**6, 10**6)) + bytes(8),
            r"huge.npy' is not a valid .npy file: .*\(8000000000000 bytes\) but only 8",
        ),
        ("junk.npz", b"garbage bytes", "junk.npz' is not a valid .npz file"),
        ("junk.h5", b"garbage bytes", "junk.h5' is not a readable HDF5 file"),
    ],
)
def test_corrupt_array_files_name_the_file(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(CorruptFileError, match=message):
        load_array_data(tmp_path / name)


def test_npz_member_larger_than_its_bytes_is_refused(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("x.npy", _npy_header((10**5, 10**5)) + bytes(16))
    with pytest.raises(CorruptFileError, match="bomb.npz' member 'x'.*promises"):
        load_array_data(tmp_path / "bomb.npz")
