"""Loading the data sets of the five reports into `DataBundle`s (the five reports; ResNet-18, VGG and AlexNet reports).

* CIFAR-10 / CIFAR-100 come through `torchvision.datasets.CIFAR10/CIFAR100`: the same file
  layout, checksums and download code as torchvision. What cifarnets adds is an error that
  names the problem and the fix when files are missing, damaged or unreadable, and a single
  checksum pass (torchvision hashes the whole set again for each of train and test).
* Fashion-MNIST is read from its four IDX files, by default Debian's
  ``dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``; images are
  zero-padded from 28x28 to 32x32 so that every CIFAR network accepts them.
* ``"synthetic"`` is generated in memory (see `cifarnets.data.synthetic`).

Example:
    >>> from cifarnets.data import load_dataset
    >>> bundle = load_dataset("synthetic", split="4500:500")
    >>> len(bundle.train), len(bundle.val), len(bundle.test)
    (4500, 500, 1000)
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import struct
import tarfile
import urllib.error
import zlib
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
import torchvision.datasets
from torchvision.datasets.utils import calculate_md5, download_and_extract_archive

from ..errors import DataError, DataNotFoundError
from .containers import DataBundle, ImageSet
from .errors import DataArgumentError
from .normalization import NormSpec, resolve_normalization
from .splits import DEFAULT_SPLIT, SplitSpec, parse_split, split_indices, stratified_sample
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_splits

__all__ = [
    "DATASETS",
    "FASHION_MNIST_SYSTEM_DIR",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetChecksumError",
    "DatasetCorruptError",
    "DatasetDownloadError",
    "UnknownDatasetError",
    "canonical_dataset_name",
    "default_data_dir",
    "load_dataset",
    "load_cifar",
    "load_fashion_mnist",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "fashion_mnist", "synthetic")
# Names as users type them, compared without case, spaces, '-' and '_': "CIFAR-10", "cifar_100",
# "FashionMNIST", "fashion-mnist" and "fmnist" all resolve; runs record the canonical name.
_ALIASES = {"cifar10": "cifar10", "cifar100": "cifar100", "fashionmnist": "fashion_mnist",
            "fmnist": "fashion_mnist", "synthetic": "synthetic"}
_IN_CHANS = {"cifar10": 3, "cifar100": 3, "fashion_mnist": 1, "synthetic": 3}
_DISPLAY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion_mnist": "Fashion-MNIST", "synthetic": "SYNTHETIC"}

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


DatasetError = DataError  # kept name; the kind is cifarnets.errors.DataError


UnknownDatasetError = DataError  # kept name; the kind is cifarnets.errors.DataError


DatasetNotFoundError = DataNotFoundError  # kept name; the kind is cifarnets.errors.DataNotFoundError


DatasetChecksumError = DataError  # kept name; the kind is cifarnets.errors.DataError


DatasetCorruptError = DataError  # kept name; the kind is cifarnets.errors.DataError


DatasetDownloadError = DataError  # kept name; the kind is cifarnets.errors.DataError


def default_data_dir() -> Path:
    """Where data sets are looked for and downloaded when `data_dir` is not given.

    ``$CIFARNETS_DATA_DIR`` if set, else ``~/.cache/cifarnets/data``: one copy per user,
    whatever the working directory (many CIFAR scripts use ``./data`` and end up with a copy
    per project).

    Example:
        >>> default_data_dir().name
        'data'
    """
    env = os.environ.get("CIFARNETS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cifarnets" / "data"


def canonical_dataset_name(name: str) -> str:
    """The canonical name (one of `DATASETS`) of a data set name as users type it.

    Example:
        >>> [canonical_dataset_name(n) for n in ("CIFAR-10", "CIFAR100", "FashionMNIST", "fashion-mnist")]
        ['cifar10', 'cifar100', 'fashion_mnist', 'fashion_mnist']
    """
    if not isinstance(name, str):
        raise UnknownDatasetError(f"a data set name is a string such as 'cifar10'; got {type(name).__name__}")
    key = "".join(c for c in name.lower() if c.isalnum())
    if key not in _ALIASES:
        raise UnknownDatasetError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return _ALIASES[key]


_canonical_name = canonical_dataset_name


# --------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 through torchvision
# --------------------------------------------------------------------------------------


def _cifar_files(cls: type[torchvision.datasets.CIFAR10]) -> list[tuple[str, Optional[str]]]:
    # Read from the class each time, not at import: the md5 lists are class attributes, and
    # reading them late is what lets tests (and mirrors of re-packed archives) override them.
    files = [(name, md5) for name, md5 in list(cls.train_list) + list(cls.test_list)]
    files.append((cls.meta["filename"], cls.meta["md5"]))
    return files


def _cifar_root(data_dir: Path, cls: type[torchvision.datasets.CIFAR10]) -> Path:
    # A common mistake is to point --data-dir at the extracted folder itself.
    if not (data_dir / cls.base_folder).is_dir() and data_dir.name == cls.base_folder:
        logger.info("data_dir %s is the %s folder itself; using its parent.", data_dir, cls.base_folder)
        return data_dir.parent
    return data_dir


def _verify_cifar(name: str, cls: type[torchvision.datasets.CIFAR10], root: Path) -> None:
    """Raise a precise error unless every file exists with its published md5."""
    folder = root / cls.base_folder
    files = _cifar_files(cls)
    missing = [fname for fname, _ in files if not (folder / fname).is_file()]
    if missing:
        archive = root / cls.filename
        if archive.is_file():
            hint = (
                f"The archive {archive} is there but not extracted: pass download=True (CLI: --download) to "
                "verify and extract it (no network needed)."
            )
        else:
            hint = (
                f"Pass download=True (CLI: --download) to fetch {cls.url} into {root}, or point data_dir "
                f"(CLI: --data-dir) at the folder that contains '{cls.base_folder}/'."
            )
        which = "none of them is there" if len(missing) == len(files) else f"missing: {', '.join(missing)}"
        raise DatasetNotFoundError(
            f"{_DISPLAY[name]} not found: looked in {folder} for {', '.join(f for f, _ in files)}; {which}. {hint}"
        )
    for fname, expected in files:
        if expected is None:
            continue
        found = calculate_md5(folder / fname)
        if found != expected:
            raise DatasetChecksumError(
                f"{_DISPLAY[name]} file {folder / fname} is damaged or not from the official release: its md5 "
                f"is {found}, expected {expected}. Delete {folder} (and {root / cls.filename} if present) and "
                f"download again with download=True (CLI: --download)."
            )


def _download_cifar(name: str, cls: type[torchvision.datasets.CIFAR10], root: Path) -> None:
    archive = root / cls.filename
    logger.info("Downloading %s from %s into %s.", _DISPLAY[name], cls.url, root)
    try:
        # The same call torchvision's CIFAR10.download() makes; if an intact archive is
        # already in `root` it is only extracted again.
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DatasetDownloadError(
            f"The archive {archive} cannot be unpacked ({type(err).__name__}: {err}). Delete it and download "
            "again with download=True."
        ) from err
    except (urllib.error.URLError, OSError) as err:
        raise DatasetDownloadError(
            f"Could not download {_DISPLAY[name]} from {cls.url}: {err}. Check the network (or proxy), or "
            f"download {cls.filename} by hand, put it in {root} and run again with download=True."
        ) from err
    except RuntimeError as err:  # torchvision: "File not found or corrupted." after an md5 mismatch
        found = calculate_md5(archive) if archive.is_file() else "no file"
        raise DatasetDownloadError(
            f"The downloaded archive {archive} does not match its published md5 (found {found}, expected "
            f"{cls.tgz_md5}): the download was cut short or altered. Delete it and download again with "
            "download=True."
        ) from err


def _find_unreadable_pickle(folder: Path, files: list[tuple[str, Optional[str]]]) -> Optional[tuple[str, Exception]]:
    for fname, _ in files:
        try:
            with open(folder / fname, "rb") as handle:
                pickle.load(handle, encoding="latin1")
        except Exception as err:  # any failure to unpickle is what we are looking for
            return fname, err
    return None


class _VerifiedCIFAR10(torchvision.datasets.CIFAR10):
    # torchvision hashes all six files again in every constructor (once for train, once for
    # test); `load_cifar` has just verified them, so that pass is skipped. If torchvision
    # renames this private hook the override is simply unused and loading is only slower.
    # File lists, urls and md5s are inherited, so overrides of the torchvision class apply.
    def _check_integrity(self) -> bool:
        return True


class _VerifiedCIFAR100(torchvision.datasets.CIFAR100):
    def _check_integrity(self) -> bool:  # see _VerifiedCIFAR10
        return True


_CIFAR_CLASSES: dict[str, tuple[type[torchvision.datasets.CIFAR10], type[torchvision.datasets.CIFAR10]]] = {
    "cifar10": (torchvision.datasets.CIFAR10, _VerifiedCIFAR10),
    "cifar100": (torchvision.datasets.CIFAR100, _VerifiedCIFAR100),
}


def load_cifar(
    name: str, data_dir: Optional[PathLike] = None, *, download: bool = False
) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    """The full CIFAR-10/100 train and test sets as uint8 (N, 3, 32, 32) tensors, and class names.

    Files are those of torchvision (``cifar-10-batches-py/`` or ``cifar-100-python/`` under
    `data_dir`, default `default_data_dir()`), verified against torchvision's md5 lists.
    CIFAR-100 labels are the 100 fine labels (the coursework reports).

    Example:
        train, test, classes = load_cifar("cifar10", "~/data")
        len(train), len(test), classes[:2]
        # -> (50000, 10000, ('airplane', 'automobile'))
    """
    key = _canonical_name(name)
    if key not in _CIFAR_CLASSES:
        raise DataArgumentError(f"load_cifar loads cifar10 or cifar100, not {name!r}.")
    cls, verified = _CIFAR_CLASSES[key]
    root = _cifar_root(Path(data_dir).expanduser() if data_dir is not None else default_data_dir(), cls)
    try:
        _verify_cifar(key, cls, root)
    except DatasetError:
        if not download:
            raise
        _download_cifar(key, cls, root)
        _verify_cifar(key, cls, root)

    folder = root / cls.base_folder
    try:
        train_ds = verified(str(root), train=True, download=False)
        test_ds = verified(str(root), train=False, download=False)
    except Exception as err:
        bad = _find_unreadable_pickle(folder, _cifar_files(cls))
        if bad is not None:
            fname, cause = bad
            raise DatasetCorruptError(
                f"{_DISPLAY[key]} file {folder / fname} cannot be read ({type(cause).__name__}: {cause}); it is "
                f"truncated or not a CIFAR pickle. Delete {folder} and download again with download=True "
                "(CLI: --download)."
            ) from err
        raise DatasetCorruptError(
            f"{_DISPLAY[key]} files in {folder} are readable but not in the CIFAR layout "
            f"({type(err).__name__}: {err}). Delete {folder} and download again with download=True."
        ) from err

    num_classes = len(train_ds.classes)
    sets = []
    for split_name, ds in (("train", train_ds), ("test", test_ds)):
        # torchvision keeps HWC numpy for PIL; go back to the CHW layout of the files.
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        if images.shape[1:] != (3, 32, 32) or labels.numel() != images.shape[0]:
            raise DatasetCorruptError(
                f"{_DISPLAY[key]} {split_name} files in {folder} hold {tuple(images.shape)} images and "
                f"{labels.numel()} labels; expected (N, 3, 32, 32) and N labels. Delete {folder} and download again."
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise DatasetCorruptError(
                f"{_DISPLAY[key]} {split_name} labels in {folder} run from {int(labels.min())} to "
                f"{int(labels.max())} but there are {num_classes} class names. Delete {folder} and download again."
            )
        sets.append(ImageSet(images, labels))
    return sets[0], sets[1], tuple(train_ds.classes)


# --------------------------------------------------------------------------------------
# Fashion-MNIST from IDX files
# --------------------------------------------------------------------------------------

_IDX_DTYPE = {0x08: torch.uint8}


def _read_idx(path: Path, expected_ndim: int) -> torch.Tensor:
    """Read an IDX file (gzip-compressed or not) into a uint8 tensor.

    Hand-written rather than `torchvision.datasets.mnist.read_image_file`: that reader takes
    only uncompressed files (Debian ships them gzipped, and /usr/share is read-only, so they
    would need unpacking to a temporary copy) and checks the header with `assert`, which
    gives no useful message and vanishes under ``python -O``.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetCorruptError(
            f"Cannot read {path} ({type(err).__name__}: {err}); it is truncated or not gzip data. "
            "Reinstall it (Debian: apt-get install --reinstall dataset-fashion-mnist) or download again "
            "with download=True."
        ) from err
    if len(data) < 4 + 4 * expected_ndim:
        raise DatasetCorruptError(
            f"{path} is only {len(data)} bytes long; it is truncated. Reinstall or re-download it."
        )
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPE or ndim != expected_ndim:
        raise DatasetCorruptError(
            f"{path} is not a uint8 IDX file with {expected_ndim} dimension(s) (header: type 0x{dtype_code:02x}, "
            f"{ndim} dimension(s)). Check that the right file is in that place."
        )
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = 1
    for dim in shape:
        expected *= dim
    if len(data) - offset != expected:
        raise DatasetCorruptError(
            f"{path} holds {len(data) - offset} bytes of data but its header announces {expected} "
            f"(shape {shape}); it is truncated. Reinstall or re-download it."
        )
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=offset).view(*shape)


def _fashion_mnist_dirs(data_dir: Optional[Path]) -> list[Path]:
    if data_dir is not None:
        return [data_dir, data_dir / "FashionMNIST" / "raw", data_dir / "fashion-mnist"]
    return [FASHION_MNIST_SYSTEM_DIR, default_data_dir() / "FashionMNIST" / "raw"]


def _find_fashion_mnist(dirs: list[Path]) -> Optional[dict[str, Path]]:
    for folder in dirs:
        found = {}
        for stem in (s for pair in _FASHION_MNIST_FILES.values() for s in pair):
            for candidate in (folder / f"{stem}.gz", folder / stem):
                if candidate.is_file():
                    found[stem] = candidate
                    break
        if len(found) == 4:
            return found
    return None


def load_fashion_mnist(
    data_dir: Optional[PathLike] = None, *, download: bool = False
) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    """Fashion-MNIST train (60,000) and test (10,000) as uint8 (N, 1, 32, 32), and class names.

    The 28x28 images are zero-padded by 2 pixels on each side, so that the CIFAR networks
    (which expect 32x32) run on them unchanged and the padding adds no signal.

    Looks in `data_dir` (the four IDX files, gzipped or not, directly inside or under
    ``FashionMNIST/raw/`` as torchvision lays them out), or, when `data_dir` is None, in
    `FASHION_MNIST_SYSTEM_DIR` (Debian: ``apt-get install dataset-fashion-mnist``) and then
    `default_data_dir()`. ``download=True`` uses torchvision's FashionMNIST downloader.

    Example:
        train, test, classes = load_fashion_mnist()
        tuple(train.images.shape), classes[0]
        # -> ((60000, 1, 32, 32), 'T-shirt/top')
    """
    folder = Path(data_dir).expanduser() if data_dir is not None else None
    dirs = _fashion_mnist_dirs(folder)
    files = _find_fashion_mnist(dirs)
    if files is None and download:
        target = folder if folder is not None else default_data_dir()
        logger.info("Downloading Fashion-MNIST into %s with torchvision.", target / "FashionMNIST" / "raw")
        try:
            torchvision.datasets.FashionMNIST(str(target), train=True, download=True)
        except (urllib.error.URLError, OSError, RuntimeError) as err:
            raise DatasetDownloadError(
                f"Could not download Fashion-MNIST into {target}: {err}. On Debian/Ubuntu, "
                "`apt-get install dataset-fashion-mnist` installs it under /usr/share/datasets/fashion-mnist."
            ) from err
        files = _find_fashion_mnist(dirs)
    if files is None:
        names = ", ".join(f"{s}[.gz]" for pair in _FASHION_MNIST_FILES.values() for s in pair)
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found: looked in {', '.join(str(d) for d in dirs)} for {names}. Install it "
            "(Debian/Ubuntu: apt-get install dataset-fashion-mnist), pass download=True (CLI: --download), or "
            "point data_dir (CLI: --data-dir) at the folder that holds the files."
        )

    sets = []
    for split_name, (image_stem, label_stem) in _FASHION_MNIST_FILES.items():
        images = _read_idx(files[image_stem], 3)
        labels = _read_idx(files[label_stem], 1).long()
        if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
            raise DatasetCorruptError(
                f"Fashion-MNIST {split_name}: {files[image_stem]} holds images of shape {tuple(images.shape)} "
                f"and {files[label_stem]} {labels.shape[0]} labels; expected (N, 28, 28) and N labels."
            )
        if labels.numel() and int(labels.max()) >= len(torchvision.datasets.FashionMNIST.classes):
            raise DatasetCorruptError(f"Fashion-MNIST labels in {files[label_stem]} exceed 9; the file is damaged.")
        sets.append(ImageSet(F.pad(images.unsqueeze(1), (2, 2, 2, 2)), labels))
    return sets[0], sets[1], tuple(torchvision.datasets.FashionMNIST.classes)


# --------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    *,
    data_dir: Optional[PathLike] = None,
    split: SplitSpec = "default",
    seed: int = 0,
    norm: NormSpec = None,
    download: bool = False,
    limit: Optional[int] = None,
    synthetic_sizes: tuple[int, int] = (5000, 1000),
) -> DataBundle:
    """Load a data set of the five reports as a `DataBundle`.

    Args:
        name: "cifar10", "cifar100", "fashion_mnist" or "synthetic".
        data_dir: where the files are (and where `download` puts them); default
            `default_data_dir()`, and for Fashion-MNIST first `FASHION_MNIST_SYSTEM_DIR`.
        split: how the official training set is divided into train and validation:
            ``"TRAIN:VAL"`` (``"40000:10000"`` the ResNet-18 report, ``"47500:2500"`` the coursework reports),
            a ``(train, val)`` pair, ``None``/``"none"`` for no validation set (the AlexNet/VGG report),
            or ``"default"``: CIFAR-10 40000:10000, CIFAR-100 47500:2500, Fashion-MNIST
            50000:10000, synthetic none. The val part is class-stratified and drawn from `seed`.
        seed: seed of the val split and of `limit`'s subset (not of training). The synthetic
            images themselves are fixed, like a real data set's (generation seed 0; see
            `make_synthetic_splits` for others).
        norm: a key of `NORMALIZATION` (e.g. "cifar10_seed000" for the ResNet-18 report's constants),
            "none", or an explicit ``(mean, std)``; default the data set's own preset.
        download: fetch missing CIFAR / Fashion-MNIST files with torchvision's downloader.
        limit: keep a class-stratified subset of this many *training* images (val and test
            are untouched), for quick runs.
        synthetic_sizes: (train, test) sizes of the synthetic set; ignored otherwise.

    Example:
        >>> b = load_dataset("synthetic", limit=1000)
        >>> len(b.train), b.val is None, b.classes[0]
        (1000, True, 'synthetic:grating-0deg:warm')
    """
    key = _canonical_name(name)
    # Argument mistakes are reported before any file is read.
    norm_name, mean, std = resolve_normalization(norm, key, _IN_CHANS[key])
    if key == "synthetic":
        train_full, test = make_synthetic_splits(*synthetic_sizes, seed=0)
        classes = SYNTHETIC_CLASSES
    elif key == "fashion_mnist":
        train_full, test, classes = load_fashion_mnist(data_dir, download=download)
    else:
        train_full, test, classes = load_cifar(key, data_dir, download=download)

    if isinstance(split, str) and split.strip().lower() == "default":
        split = DEFAULT_SPLIT[key]
    sizes = parse_split(split, len(train_full), _DISPLAY[key])
    train_idx, val_idx = split_indices(train_full.labels, sizes, seed=seed)
    train = train_full.subset(train_idx) if val_idx is not None else train_full
    val = train_full.subset(val_idx) if val_idx is not None else None

    if limit is not None:
        if not 0 < int(limit) <= len(train):
            raise DataArgumentError(
                f"limit={limit} must be between 1 and the {len(train)} training images of {_DISPLAY[key]} "
                f"(after the {'none' if sizes is None else f'{sizes[0]}:{sizes[1]}'} split)."
            )
        if int(limit) < len(train):
            train = train.subset(stratified_sample(train.labels, int(limit), seed=seed, tag="limit"))

    in_chans = int(train_full.images.shape[1])
    bundle = DataBundle(
        name=key,
        train=train,
        val=val,
        test=test,
        num_classes=len(classes),
        in_chans=in_chans,
        mean=mean,
        std=std,
        classes=tuple(classes),
        is_synthetic=key == "synthetic",
        split=sizes,
        split_seed=seed,
        norm_name=norm_name,
    )
    logger.info("Loaded %r", bundle)
    return bundle
