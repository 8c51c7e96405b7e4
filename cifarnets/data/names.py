"""The names of the data sets, as users type them and as runs record them.

A data set is named by one of `DATASETS` (spelt as users like: ``"CIFAR-10"``, ``"FashionMNIST"``,
``"kuzushiji-mnist"``), or by ``"folder:PATH"`` for an ImageFolder tree on disk (CINIC-10's
layout: ``train/``, ``test/`` and optionally ``val/``, one folder per class). Runs record the
canonical name: one of `DATASETS`, or ``"folder:"`` followed by the absolute path.

Example:
    >>> canonical_dataset_name("Kuzushiji-MNIST"), canonical_dataset_name("SVHN")
    ('kmnist', 'svhn')
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from ..errors import DataError

__all__ = [
    "DATASETS", "FOLDER_PREFIX", "canonical_dataset_name", "default_data_dir", "display_name", "folder_path",
    "is_folder",
]

DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "fashion_mnist", "synthetic", "mnist", "kmnist", "svhn")
FOLDER_PREFIX = "folder:"

# Names as users type them, compared without case, spaces, '-' and '_': "CIFAR-10", "cifar_100",
# "FashionMNIST", "fashion-mnist" and "fmnist" all resolve; runs record the canonical name.
_ALIASES = {
    "cifar10": "cifar10", "cifar100": "cifar100", "fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist",
    "synthetic": "synthetic", "mnist": "mnist", "kmnist": "kmnist", "kuzushijimnist": "kmnist", "svhn": "svhn",
}
DISPLAY = {
    "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion_mnist": "Fashion-MNIST", "synthetic": "SYNTHETIC",
    "mnist": "MNIST", "kmnist": "Kuzushiji-MNIST", "svhn": "SVHN",
}
# Channels of the images of each named set (a folder's are known only once its files are read).
IN_CHANS = {"cifar10": 3, "cifar100": 3, "fashion_mnist": 1, "synthetic": 3, "mnist": 1, "kmnist": 1, "svhn": 3}


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


def is_folder(name: str) -> bool:
    """Whether a canonical name is a ``folder:PATH`` data set."""
    return name.startswith(FOLDER_PREFIX)


def folder_path(name: str) -> Path:
    """The path of a canonical ``folder:PATH`` name."""
    return Path(name[len(FOLDER_PREFIX):])


def display_name(name: str) -> str:
    """How messages name a data set: ``'CIFAR-10'``, ``"folder /data/cinic10"``."""
    if is_folder(name):
        return f"folder {folder_path(name)}"
    return DISPLAY.get(name, name)


def canonical_dataset_name(name: str) -> str:
    """The canonical name of a data set name as users type it: one of `DATASETS`, or
    ``"folder:"`` + the absolute path for ``"folder:PATH"`` (``~`` expanded, relative paths
    made absolute, so a recorded run reloads its data from any working directory).

    Example:
        >>> [canonical_dataset_name(n) for n in ("CIFAR-10", "CIFAR100", "FashionMNIST", "fashion-mnist")]
        ['cifar10', 'cifar100', 'fashion_mnist', 'fashion_mnist']
    """
    if not isinstance(name, str):
        raise DataError(f"a data set name is a string such as 'cifar10'; got {type(name).__name__}")
    if name[: len(FOLDER_PREFIX)].lower() == FOLDER_PREFIX:
        path = name[len(FOLDER_PREFIX):].strip()
        if not path:
            raise DataError(f"{name!r} names no folder; write folder:PATH, e.g. folder:~/data/cinic10 "
                            "(a folder holding train/ and test/, one sub-folder per class)")
        return FOLDER_PREFIX + str(Path(path).expanduser().resolve())
    key = "".join(c for c in name.lower() if c.isalnum())
    if key not in _ALIASES:
        close = sorted({_ALIASES[k] for k in difflib.get_close_matches(key, list(_ALIASES), n=3, cutoff=0.6)})
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise DataError(f"unknown data set {name!r}; {hint}choose one of {', '.join(DATASETS)}, or folder:PATH for "
                        "an ImageFolder tree (train/ and test/ class folders)")
    return _ALIASES[key]
