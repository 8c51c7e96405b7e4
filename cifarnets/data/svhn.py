"""SVHN (Street View House Numbers, cropped 32x32 digits) through `torchvision.datasets.SVHN`.

The files are torchvision's: ``train_32x32.mat`` (73,257 digits) and ``test_32x32.mat``
(26,032) directly in `data_dir`, MATLAB files read with scipy (``pip install scipy``), checked
against torchvision's md5s. The digit 0 is stored as label 10 in the files; torchvision (and so
cifarnets) maps it to 0, so class ``i`` is the digit ``i``. The 531,131 "extra" digits are not loaded.

Example:
    train, test, classes = load_svhn("~/data", download=True)
    tuple(train.images.shape), classes[:3]
    # -> ((73257, 3, 32, 32), ('0', '1', '2'))
"""

from __future__ import annotations

import logging
import os
import urllib.error
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torchvision.datasets
from torchvision.datasets.utils import calculate_md5, download_url

from ..errors import DataError, DataNotFoundError
from .containers import ImageSet
from .names import default_data_dir

__all__ = ["SVHN_CLASSES", "load_svhn"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

SVHN_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


class _VerifiedSVHN(torchvision.datasets.SVHN):
    # torchvision hashes the file again in its constructor; `load_svhn` has just verified it.
    # Urls and md5s are read from `split_list`, so overrides of the torchvision class apply.
    def _check_integrity(self) -> bool:
        return True


def _root(data_dir: Optional[PathLike]) -> Path:
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    # Also accept the folder torchvision users often give SVHN of its own.
    if not (root / "train_32x32.mat").is_file() and (root / "svhn" / "train_32x32.mat").is_file():
        return root / "svhn"
    return root


def _fetch(split: str, root: Path) -> None:
    url, filename, md5 = torchvision.datasets.SVHN.split_list[split]
    logger.info("Downloading SVHN %s from %s into %s.", split, url, root)
    try:
        # What torchvision's SVHN.download() does, without its constructor (which would read the file too).
        download_url(url, str(root), filename, md5)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise DataError(
            f"Could not download SVHN {split} from {url}: {err}. Check the network (or proxy), or download "
            f"{filename} by hand, put it in {root} and run again."
        ) from err


def load_svhn(
    data_dir: Optional[PathLike] = None, *, download: bool = False
) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
    """SVHN train and test as uint8 (N, 3, 32, 32), and the class names ``'0'`` ... ``'9'``.

    Files are ``train_32x32.mat`` and ``test_32x32.mat`` in `data_dir` (default
    `default_data_dir()`), verified against torchvision's md5s; ``download=True`` fetches missing
    ones with torchvision's downloader.
    """
    try:
        import scipy.io  # noqa: F401  (torchvision's SVHN reads the .mat files with it)
    except ImportError as err:
        raise DataError("SVHN's .mat files are read with scipy, which is not installed: pip install scipy") from err
    root = _root(data_dir)
    sets = []
    for split in ("train", "test"):
        url, filename, expected = torchvision.datasets.SVHN.split_list[split]
        path = root / filename
        if not path.is_file() and download:
            _fetch(split, root)
        if not path.is_file():
            raise DataNotFoundError(
                f"SVHN not found: {path} is not there. Pass download=True (CLI: --download) to fetch {url} into "
                f"{root}, or point data_dir (CLI: --data-dir) at the folder that holds train_32x32.mat and "
                "test_32x32.mat.")
        found = calculate_md5(path)
        if found != expected:
            raise DataError(
                f"SVHN file {path} is damaged or not from the official release: its md5 is {found}, expected "
                f"{expected}. Delete it and download again with download=True (CLI: --download).")
        try:
            ds = _VerifiedSVHN(str(root), split=split, download=False)
        except Exception as err:  # scipy's errors for a file that is not MATLAB data, or lacks X / y
            raise DataError(f"SVHN file {path} cannot be read ({type(err).__name__}: {err}). Delete it and "
                            "download again with download=True.") from err
        images = torch.from_numpy(np.ascontiguousarray(ds.data))
        labels = torch.from_numpy(np.asarray(ds.labels, dtype=np.int64).reshape(-1))
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3 \
                or images.shape[0] != labels.shape[0]:
            raise DataError(f"SVHN file {path} holds {images.dtype} images of shape {tuple(images.shape)} and "
                            f"{labels.shape[0]} labels; expected uint8 (N, 3, 32, 32) and N labels.")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 9):
            raise DataError(f"SVHN labels in {path} run from {int(labels.min())} to {int(labels.max())}; "
                            "expected the digits 1 to 10. The file is damaged.")
        sets.append(ImageSet(images, labels))
    return sets[0], sets[1], SVHN_CLASSES
