"""Loading CIFAR-10/100 and Fashion-MNIST (the five reports; ResNet-18, VGG and AlexNet reports).

* CIFAR-10 / CIFAR-100 come through `torchvision.datasets.CIFAR10/CIFAR100`: the same file
  layout, checksums and download code as torchvision. What cifarnets adds is an error that
  names the problem and the fix when files are missing, damaged or unreadable, and a single
  checksum pass (torchvision hashes the whole set again for each of train and test).
* Fashion-MNIST is read from its four IDX files (`cifarnets.data.idx`), by default Debian's
  ``dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``; `load_fashion_mnist`
  zero-pads the images from 28x28 to 32x32 so that every CIFAR network accepts them.

The other data sets have their own modules (`idx`: MNIST, KMNIST; `svhn`; `folder`;
`synthetic`); `cifarnets.data.source.DataSource` is the one entry point that loads any of them.
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import tarfile
import urllib.error
import zlib
from pathlib import Path
from typing import Optional, Union

import torch
import torchvision.datasets
from torchvision.datasets.utils import calculate_md5, download_and_extract_archive

from ..errors import DataError, DataNotFoundError
from .containers import ImageSet
from .errors import DataArgumentError
from .fit import fit_images
from .idx import idx_dirs, load_idx_set
from .names import DATASETS, DISPLAY, canonical_dataset_name, default_data_dir

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
    "load_cifar",
    "load_fashion_mnist",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


DatasetError = DataError  # kept name; the kind is cifarnets.errors.DataError


UnknownDatasetError = DataError  # kept name; the kind is cifarnets.errors.DataError


DatasetNotFoundError = DataNotFoundError  # kept name; the kind is cifarnets.errors.DataNotFoundError


DatasetChecksumError = DataError  # kept name; the kind is cifarnets.errors.DataError


DatasetCorruptError = DataError  # kept name; the kind is cifarnets.errors.DataError


DatasetDownloadError = DataError  # kept name; the kind is cifarnets.errors.DataError


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
            f"{DISPLAY[name]} not found: looked in {folder} for {', '.join(f for f, _ in files)}; {which}. {hint}"
        )
    for fname, expected in files:
        if expected is None:
            continue
        found = calculate_md5(folder / fname)
        if found != expected:
            raise DatasetChecksumError(
                f"{DISPLAY[name]} file {folder / fname} is damaged or not from the official release: its md5 "
                f"is {found}, expected {expected}. Delete {folder} (and {root / cls.filename} if present) and "
                f"download again with download=True (CLI: --download)."
            )


def _download_cifar(name: str, cls: type[torchvision.datasets.CIFAR10], root: Path) -> None:
    archive = root / cls.filename
    logger.info("Downloading %s from %s into %s.", DISPLAY[name], cls.url, root)
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
            f"Could not download {DISPLAY[name]} from {cls.url}: {err}. Check the network (or proxy), or "
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
    key = canonical_dataset_name(name)
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
                f"{DISPLAY[key]} file {folder / fname} cannot be read ({type(cause).__name__}: {cause}); it is "
                f"truncated or not a CIFAR pickle. Delete {folder} and download again with download=True "
                "(CLI: --download)."
            ) from err
        raise DatasetCorruptError(
            f"{DISPLAY[key]} files in {folder} are readable but not in the CIFAR layout "
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
                f"{DISPLAY[key]} {split_name} files in {folder} hold {tuple(images.shape)} images and "
                f"{labels.numel()} labels; expected (N, 3, 32, 32) and N labels. Delete {folder} and download again."
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise DatasetCorruptError(
                f"{DISPLAY[key]} {split_name} labels in {folder} run from {int(labels.min())} to "
                f"{int(labels.max())} but there are {num_classes} class names. Delete {folder} and download again."
            )
        sets.append(ImageSet(images, labels))
    return sets[0], sets[1], tuple(train_ds.classes)


# --------------------------------------------------------------------------------------
# Fashion-MNIST from IDX files
# --------------------------------------------------------------------------------------


def read_fashion_mnist(
    data_dir: Optional[PathLike] = None, *, download: bool = False
) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    """Fashion-MNIST as its files hold it: uint8 (N, 1, 28, 28) train and test, and class names."""
    folder = Path(data_dir).expanduser() if data_dir is not None else None
    if folder is not None:
        dirs = [*idx_dirs("fashion_mnist", folder), folder / "fashion-mnist"]
    else:
        dirs = [FASHION_MNIST_SYSTEM_DIR, *idx_dirs("fashion_mnist", None)]
    return load_idx_set(
        "fashion_mnist", dirs, folder if folder is not None else default_data_dir(), download=download,
        hint="On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` installs it under "
             f"{FASHION_MNIST_SYSTEM_DIR}.")


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
    train, test, classes = read_fashion_mnist(data_dir, download=download)
    for part, images in (("train", train.images), ("test", test.images)):
        if images.shape[2:] != (28, 28):
            raise DatasetCorruptError(f"Fashion-MNIST {part} images are {tuple(images.shape[2:])}, not 28x28; "
                                      "the files are from another data set.")
    return (ImageSet(fit_images(train.images, "pad", "Fashion-MNIST"), train.labels),
            ImageSet(fit_images(test.images, "pad", "Fashion-MNIST"), test.labels), classes)
