"""The MNIST family from its IDX files: MNIST, Kuzushiji-MNIST (KMNIST) and Fashion-MNIST.

All three are four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), gzipped or not, laid out by torchvision
as ``ROOT/MNIST/raw/``, ``ROOT/KMNIST/raw/``, ``ROOT/FashionMNIST/raw/``. Downloads go through
torchvision's own classes (`torchvision.datasets.MNIST`, `KMNIST`, `FashionMNIST`: their
mirrors, md5s and extraction); reading is cifarnets' own `read_idx`, which takes gzipped files
as they are and names the damaged file in its errors.

Images come back as uint8 (N, 1, 28, 28); `cifarnets.data.fit` brings them to the model input.

Example:
    train, test, classes = load_mnist("~/data", download=True)
    tuple(train.images.shape), classes[0]
    # -> ((60000, 1, 28, 28), '0 - zero')
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import urllib.error
import zlib
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torchvision.datasets

from ..errors import DataError, DataNotFoundError
from .containers import ImageSet
from .names import DISPLAY, default_data_dir

__all__ = ["IDX_FILES", "load_idx_set", "load_kmnist", "load_mnist", "read_idx"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPE = {0x08: torch.uint8}
_STEMS = tuple(stem for pair in IDX_FILES.values() for stem in pair)

# The torchvision class of each set: its download code, mirrors and class names.
IDX_CLASSES: dict[str, type[torchvision.datasets.MNIST]] = {
    "mnist": torchvision.datasets.MNIST,
    "kmnist": torchvision.datasets.KMNIST,
    "fashion_mnist": torchvision.datasets.FashionMNIST,
}


def read_idx(path: Path, expected_ndim: int) -> torch.Tensor:
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
        raise DataError(
            f"Cannot read {path} ({type(err).__name__}: {err}); it is truncated or not gzip data. "
            "Delete it and download again with download=True (Debian's Fashion-MNIST: apt-get install "
            "--reinstall dataset-fashion-mnist)."
        ) from err
    if len(data) < 4 + 4 * expected_ndim:
        raise DataError(f"{path} is only {len(data)} bytes long; it is truncated. Reinstall or re-download it.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPE or ndim != expected_ndim:
        raise DataError(
            f"{path} is not a uint8 IDX file with {expected_ndim} dimension(s) (header: type 0x{dtype_code:02x}, "
            f"{ndim} dimension(s)). Check that the right file is in that place."
        )
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = 1
    for dim in shape:
        expected *= dim
    if len(data) - offset != expected:
        raise DataError(
            f"{path} holds {len(data) - offset} bytes of data but its header announces {expected} "
            f"(shape {shape}); it is truncated. Reinstall or re-download it."
        )
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=offset).view(*shape)


def idx_dirs(key: str, data_dir: Optional[Path]) -> list[Path]:
    """Where the four files of `key` are looked for: `data_dir` itself, its ``raw/`` (it may be the
    ``MNIST/`` folder itself) and torchvision's ``MNIST/raw/`` under it; default `default_data_dir()`."""
    sub = IDX_CLASSES[key].__name__
    root = data_dir if data_dir is not None else default_data_dir()
    if data_dir is None:
        return [root / sub / "raw"]
    return [root, root / "raw", root / sub / "raw"]


def _find(dirs: Sequence[Path]) -> Optional[dict[str, Path]]:
    for folder in dirs:
        found = {}
        for stem in _STEMS:
            for candidate in (folder / f"{stem}.gz", folder / stem):
                if candidate.is_file():
                    found[stem] = candidate
                    break
        if len(found) == len(_STEMS):
            return found
    return None


def load_idx_set(
    key: str, dirs: Sequence[Path], download_root: Path, *, download: bool = False, hint: str = ""
) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    """Train and test of an MNIST-style set (`key` in `IDX_CLASSES`) as uint8 (N, 1, H, W), and class names.

    Looks in each of `dirs` for the four files; when none holds them and `download` is true,
    torchvision's class downloads them into ``download_root/<Class>/raw``. `hint` is added to
    the not-found message (Fashion-MNIST names its Debian package there).
    """
    cls, name = IDX_CLASSES[key], DISPLAY[key]
    files = _find(dirs)
    if files is None and download:
        logger.info("Downloading %s into %s with torchvision.", name, download_root / cls.__name__ / "raw")
        try:
            cls(str(download_root), train=True, download=True)
        except (urllib.error.URLError, OSError, RuntimeError) as err:
            extra = f" {hint}" if hint else ""
            raise DataError(
                f"Could not download {name} into {download_root}: {err}. Check the network (or proxy), or put the "
                f"four files from {cls.mirrors[0]} into {download_root / cls.__name__ / 'raw'} by hand.{extra}"
            ) from err
        files = _find(dirs)
    if files is None:
        names = ", ".join(f"{s}[.gz]" for s in _STEMS)
        extra = f"{hint} " if hint else ""
        raise DataNotFoundError(
            f"{name} not found: looked in {', '.join(str(d) for d in dirs)} for {names}. {extra}Pass download=True "
            f"(CLI: --download) to fetch it, or point data_dir (CLI: --data-dir) at the folder that holds the files."
        )

    num_classes = len(cls.classes)
    sets = []
    for split_name, (image_stem, label_stem) in IDX_FILES.items():
        images = read_idx(files[image_stem], 3)
        labels = read_idx(files[label_stem], 1).long()
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{name} {split_name}: {files[image_stem]} holds {images.shape[0]} images of shape "
                f"{tuple(images.shape[1:])} but {files[label_stem]} {labels.shape[0]} labels; they must match."
            )
        if labels.numel() and int(labels.max()) >= num_classes:
            raise DataError(
                f"{name} labels in {files[label_stem]} run up to {int(labels.max())} but there are {num_classes} "
                "classes; the file is damaged.")
        sets.append(ImageSet(images.unsqueeze(1), labels))
    if sets[0].images.shape[2:] != sets[1].images.shape[2:]:
        raise DataError(f"{name}: train images are {tuple(sets[0].images.shape[2:])} but test images "
                        f"{tuple(sets[1].images.shape[2:])}; one of {', '.join(str(files[s]) for s in _STEMS[::2])} "
                        "is from another data set.")
    return sets[0], sets[1], tuple(cls.classes)


def _load(key: str, data_dir: Optional[PathLike], download: bool) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    folder = Path(data_dir).expanduser() if data_dir is not None else None
    return load_idx_set(key, idx_dirs(key, folder), folder if folder is not None else default_data_dir(),
                        download=download)


def load_mnist(
    data_dir: Optional[PathLike] = None, *, download: bool = False
) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    """MNIST train (60,000) and test (10,000) as uint8 (N, 1, 28, 28), and torchvision's class names.

    Files in `data_dir` (directly, or under ``MNIST/raw/`` as torchvision lays them out), default
    ``default_data_dir()/MNIST/raw``; ``download=True`` uses `torchvision.datasets.MNIST`'s downloader.
    """
    return _load("mnist", data_dir, download)


def load_kmnist(
    data_dir: Optional[PathLike] = None, *, download: bool = False
) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    """Kuzushiji-MNIST train (60,000) and test (10,000) as uint8 (N, 1, 28, 28), and class names
    (the romanised hiragana, ``'o'``, ``'ki'``, ...). Files as for `load_mnist`, under ``KMNIST/raw/``."""
    return _load("kmnist", data_dir, download)
