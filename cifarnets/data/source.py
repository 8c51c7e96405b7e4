"""`DataSource`: the one description of where a run's data comes from and how it is loaded.

A source is a name (one of `DATASETS`, ``"folder:PATH"``, or ``"arrays"`` for images handed
over in memory) plus how to load it: where the files are, the train/val split and its seed, the
normalisation, a training subset, and how images of another size reach the model's 32x32 input
(`fit`). Every field is checked when the source is made, before any file is read. A run stores
`DataSource.to_dict()` in its ``config.json`` (the keys of the older ``load_args``, so older
run folders still load) and `DataSource.from_dict` + `load` give back the same tensors.

Example:
    >>> src = DataSource("synthetic", split="4500:500", synthetic_sizes=(5000, 1000))
    >>> bundle = src.load()
    >>> len(bundle.train), len(bundle.val), bundle.source == DataSource.from_dict(src.to_dict())
    (4500, 500, True)
"""

from __future__ import annotations

import difflib
import logging
import numbers
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Union

from ..errors import ConfigError, ConfigTypeError, DataError
from ..layers.presets import NORMALIZATION
from .containers import DataBundle, ImageSet
from .datasets import load_cifar, read_fashion_mnist
from .fit import FITS, fit_images
from .folder import load_folder
from .idx import load_kmnist, load_mnist
from .names import IN_CHANS, canonical_dataset_name, display_name, folder_path, is_folder
from .normalization import NormSpec, resolve_normalization
from .splits import DEFAULT_SPLIT, SPLIT_RE, SplitSpec, parse_split, split_indices, stratified_sample
from .svhn import load_svhn
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_splits

__all__ = ["ARRAYS", "DataSource", "load_dataset"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

ARRAYS = "arrays"  # the name of a source whose images were handed over in memory (from_arrays)


def _type_error(field: str, expected: str, value: Any) -> ConfigTypeError:
    return ConfigTypeError(f"DataSource {field} must be {expected}; got {value!r} ({type(value).__name__})")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class DataSource:
    """Where a data set comes from and how it is loaded; `load()` gives its `DataBundle`.

    Args:
        name: a data set as users name it: "cifar10", "cifar100", "fashion_mnist", "mnist",
            "kmnist", "svhn", "synthetic" (spelt as you like: "CIFAR-10", "FashionMNIST"), or
            "folder:PATH" for an ImageFolder tree (train/, test/, optional val/). Stored canonical;
            a folder's path is made absolute.
        data_dir: where the files are (and where `download` puts them); default
            `default_data_dir()` (and for Fashion-MNIST first Debian's /usr/share/datasets).
            Stored as an absolute path.
        split: how the training set is divided into train and validation: "TRAIN:VAL"
            ("40000:10000"), a (train, val) pair, "none"/None for no validation part, or
            "default" (CIFAR-10 40000:10000, CIFAR-100 47500:2500, the MNIST family
            50000:10000, SVHN 68257:5000, synthetic none, a folder its own val/ or none).
            Stored as "default", "none" or "TRAIN:VAL".
        seed: seed of the val split and of `limit`'s subset (not of training).
        norm: a key of `NORMALIZATION`, "none", "auto" (the training split's own per-channel
            statistics), an explicit (mean, std); None: the data set's preset, else "auto".
        download: fetch missing files with torchvision's downloader.
        limit: keep a class-stratified subset of this many training images (val and test untouched).
        synthetic_sizes: (train, test) sizes of the synthetic set; ignored otherwise.
        fit: how images of another size reach the model's 32x32 input: "pad" (zero-pad, as
            Fashion-MNIST's 28x28 always was), "resize" (torchvision, bilinear) or "none".
    """

    name: str
    data_dir: Optional[PathLike] = None
    split: SplitSpec = "default"
    seed: int = 0
    norm: NormSpec = None
    download: bool = False
    limit: Optional[int] = None
    synthetic_sizes: tuple[int, int] = (5000, 1000)
    fit: str = "pad"

    # ------------------------------------------------------------------ validation

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: fields are normalised in place, once
        if not isinstance(self.name, str):
            raise _type_error("name", "a data set name such as 'cifar10'", self.name)
        set_(self, "name", ARRAYS if self.name.strip().lower() == ARRAYS else canonical_dataset_name(self.name))
        if self.data_dir is not None:
            if not isinstance(self.data_dir, (str, os.PathLike)) or isinstance(os.fspath(self.data_dir), bytes):
                raise _type_error("data_dir", "a folder path (str) or None", self.data_dir)
            set_(self, "data_dir", os.path.abspath(os.path.expanduser(os.fspath(self.data_dir))))
        set_(self, "split", self._check_split(self.split))
        if not _is_int(self.seed):
            raise _type_error("seed", "an int", self.seed)
        set_(self, "seed", int(self.seed))
        set_(self, "norm", self._check_norm(self.norm))
        if not isinstance(self.download, bool):
            raise _type_error("download", "True or False", self.download)
        if self.limit is not None:
            if not _is_int(self.limit):
                raise _type_error("limit", "a positive int (the number of training images) or None", self.limit)
            if self.limit <= 0:
                raise DataError(f"DataSource limit must be a positive number of training images, or None for all "
                                f"of them; got {self.limit}")
            set_(self, "limit", int(self.limit))
        sizes = self.synthetic_sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) != 2 \
                or not all(_is_int(s) for s in sizes):
            raise _type_error("synthetic_sizes", "(TRAIN, TEST), two positive ints", sizes)
        if not all(s > 0 for s in sizes):
            raise DataError(f"DataSource synthetic_sizes must be two positive sizes (TRAIN, TEST); got {tuple(sizes)}")
        set_(self, "synthetic_sizes", (int(sizes[0]), int(sizes[1])))
        if not isinstance(self.fit, str):
            raise _type_error("fit", f"one of {', '.join(FITS)}", self.fit)
        fit = self.fit.strip().lower()
        if fit not in FITS:
            raise DataError(f"DataSource fit {self.fit!r} is not one of {', '.join(FITS)} ('pad' zero-pads smaller "
                            "images to 32x32, 'resize' resizes every image, 'none' keeps them as they are)")
        set_(self, "fit", fit)

    @staticmethod
    def _check_split(split: Any) -> str:
        if split is None:
            return "none"
        if isinstance(split, str):
            text = split.strip().lower()
            if text == "default":
                return "default"
            if text in ("none", "no", "all", ""):
                return "none"
            match = SPLIT_RE.match(text)
            if match is None:
                raise DataError(f"Cannot read split {split!r}; write it as 'TRAIN:VAL' (e.g. '40000:10000'), "
                                "'none' for no validation set, or 'default'.")
            n_train, n_val = int(match.group(1)), int(match.group(2))
        elif isinstance(split, (tuple, list)) and len(split) == 2 and all(_is_int(v) for v in split):
            n_train, n_val = int(split[0]), int(split[1])
        else:
            raise _type_error("split", "'TRAIN:VAL', a (train, val) pair of ints, 'none' or 'default'", split)
        if n_train <= 0 or n_val < 0:
            raise DataError(f"split {n_train}:{n_val} needs a positive train size and a non-negative val size.")
        return f"{n_train}:{n_val}"

    def _check_norm(self, norm: Any) -> Any:
        in_chans = IN_CHANS.get(self.name)
        if norm is None:
            return None
        if isinstance(norm, str):
            key = norm.strip().lower().replace("-", "_")
            if key not in ("none", "auto") and key not in NORMALIZATION:
                close = difflib.get_close_matches(key, list(NORMALIZATION), n=2)
                hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
                raise DataError(f"Unknown normalisation preset {norm!r}; {hint}choose one of {sorted(NORMALIZATION)}, "
                                "'none', 'auto' (the training images' own statistics), or pass an explicit "
                                "(mean, std) pair.")
            if in_chans is not None and key not in ("none", "auto"):
                resolve_normalization(key, self.name, in_chans)  # the channel count, before any file is read
            return key
        try:
            mean_seq, std_seq = norm
            mean = tuple(float(m) for m in mean_seq)
            std = tuple(float(s) for s in std_seq)
        except (TypeError, ValueError) as err:
            raise _type_error("norm", "a preset name, 'auto', 'none' or a (mean, std) pair of per-channel "
                              "sequences", norm) from err
        if len(mean) != len(std) or not mean:
            raise DataError(f"norm has {len(mean)} mean and {len(std)} std value(s); give one of each per channel.")
        if in_chans is not None:
            resolve_normalization((mean, std), self.name, in_chans)
        elif any(not s > 0 for s in std):
            raise DataError(f"every std must be positive; got {std}.")
        return (mean, std)

    # ------------------------------------------------------------------ records

    def to_dict(self) -> dict[str, Any]:
        """The source as JSON-able values: the keys of a run's ``config.json`` ``load_args``."""
        norm = [list(self.norm[0]), list(self.norm[1])] if isinstance(self.norm, tuple) else self.norm
        return {"name": self.name, "data_dir": self.data_dir, "split": self.split, "seed": self.seed, "norm": norm,
                "download": self.download, "limit": self.limit, "synthetic_sizes": list(self.synthetic_sizes),
                "fit": self.fit}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataSource":
        """The source a `to_dict()` (or an older run's ``load_args``) describes; missing keys take
        their defaults, an unknown key or a value of the wrong type raises `ConfigError`."""
        if not isinstance(d, Mapping):
            raise ConfigTypeError(f"a data source is a mapping such as {{'name': 'cifar10'}}; got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown data source key(s) {', '.join(map(repr, unknown))}{hint}; the keys are "
                              f"{', '.join(known)}")
        if "name" not in d:
            raise ConfigError(f"a data source needs a 'name' (one of the data sets, or folder:PATH); got keys "
                              f"{', '.join(map(repr, d)) or 'none'}")
        return cls(**dict(d))

    def describe(self) -> str:
        """One line for logs and listings: the data set and every setting that is not a default."""
        parts = [f"split {self.split}" + (f" (seed {self.seed})" if self.split != "none" else "")]
        if self.norm is not None:
            parts.append(f"norm {self.norm if isinstance(self.norm, str) else 'mean/std given'}")
        if self.limit is not None:
            parts.append(f"limit {self.limit}")
        if self.fit != "pad":
            parts.append(f"fit {self.fit}")
        if self.name == "synthetic":
            parts.append(f"sizes {self.synthetic_sizes[0]}/{self.synthetic_sizes[1]}")
        if self.data_dir is not None:
            parts.append(f"from {self.data_dir}")
        if self.download:
            parts.append("download")
        name = "in-memory arrays" if self.name == ARRAYS else display_name(self.name)
        return f"{name}: {', '.join(parts)}"

    # ------------------------------------------------------------------ loading

    def load(self) -> DataBundle:
        """Read (or download, or generate) the data set and split, subset and normalise it."""
        key = self.name
        if key == ARRAYS:
            raise DataError(
                "this data set was handed over in memory (from_arrays) and cannot be reloaded from its "
                "record; pass it again: fit(model, data=bundle, resume=True) or "
                "cifarnets.train.resume(folder, data=bundle)")
        what = display_name(key)
        given_val: Optional[ImageSet] = None
        if key == "synthetic":
            train_full, test = make_synthetic_splits(*self.synthetic_sizes, seed=0)
            classes: tuple[str, ...] = SYNTHETIC_CLASSES
        elif is_folder(key):
            train_full, given_val, test, classes = load_folder(folder_path(key), fit=self.fit)
        else:
            reader = {"cifar10": lambda: load_cifar("cifar10", self.data_dir, download=self.download),
                      "cifar100": lambda: load_cifar("cifar100", self.data_dir, download=self.download),
                      "fashion_mnist": lambda: read_fashion_mnist(self.data_dir, download=self.download),
                      "mnist": lambda: load_mnist(self.data_dir, download=self.download),
                      "kmnist": lambda: load_kmnist(self.data_dir, download=self.download),
                      "svhn": lambda: load_svhn(self.data_dir, download=self.download)}[key]
            train_full, test, classes = reader()
            train_full = ImageSet(fit_images(train_full.images, self.fit, what), train_full.labels)
            test = ImageSet(fit_images(test.images, self.fit, what), test.labels)

        train, val, sizes = self._split(train_full, given_val, what)
        norm_name, mean, std = resolve_normalization(self.norm, key, int(train.images.shape[1]), images=train.images)
        if self.limit is not None:
            if self.limit > len(train):
                after = "" if given_val is not None else \
                    f" (after the {'none' if sizes is None else f'{sizes[0]}:{sizes[1]}'} split)"
                raise DataError(f"limit={self.limit} must be between 1 and the {len(train)} training images of "
                                f"{what}{after}.")
            if self.limit < len(train):
                train = train.subset(stratified_sample(train.labels, self.limit, seed=self.seed, tag="limit"))
        bundle = DataBundle(
            name=key, train=train, val=val, test=test, num_classes=len(classes),
            in_chans=int(train_full.images.shape[1]), mean=mean, std=std, classes=tuple(classes),
            is_synthetic=key == "synthetic", split=sizes, split_seed=self.seed, norm_name=norm_name, source=self,
        )
        logger.info("Loaded %r", bundle)
        return bundle

    def _split(
        self, train_full: ImageSet, given_val: Optional[ImageSet], what: str
    ) -> tuple[ImageSet, Optional[ImageSet], Optional[tuple[int, int]]]:
        """(train, val, (n_train, n_val) or None) as `split` says."""
        if given_val is not None:  # a folder with its own val/
            if self.split == "default":
                return train_full, given_val, (len(train_full), len(given_val))
            if parse_split(self.split, len(train_full), what) is not None:
                raise DataError(f"{what} has its own val/ folder, so split={self.split!r} cannot carve another one "
                                "from train/; use split='default' (its val/) or 'none' (no validation part).")
            return train_full, None, None
        split: SplitSpec = self.split
        if split == "default":
            split = None if is_folder(self.name) else DEFAULT_SPLIT[self.name]
        sizes = parse_split(split, len(train_full), what)
        train_idx, val_idx = split_indices(train_full.labels, sizes, seed=self.seed)
        if val_idx is None:
            return train_full, None, sizes
        return train_full.subset(train_idx), train_full.subset(val_idx), sizes


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
    fit: str = "pad",
) -> DataBundle:
    """Load a data set as a `DataBundle`: ``DataSource(name, **keywords).load()`` (see `DataSource`).

    Example:
        >>> b = load_dataset("synthetic", limit=1000)
        >>> len(b.train), b.val is None, b.classes[0]
        (1000, True, 'synthetic:grating-0deg:warm')

    For the reports: ``load_dataset("cifar10", split="40000:10000", norm="cifar10_seed000",
    download=True)`` (the ResNet-18 report) or ``load_dataset("cifar100", split="47500:2500")``.
    """
    return DataSource(name, data_dir=data_dir, split=split, seed=seed, norm=norm, download=download, limit=limit,
                      synthetic_sizes=synthetic_sizes, fit=fit).load()
