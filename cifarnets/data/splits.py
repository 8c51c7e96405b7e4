"""Seeded, class-stratified train/val splits and subsets.

The reports hold out part of the 50,000 training images for validation:

=========  ==============  ===============  =====================================
seed       data            ``split``        note
=========  ==============  ===============  =====================================
000        CIFAR-10        ``"40000:10000"``  1,000 val images per class
001-003    CIFAR-100       ``"47500:2500"``   25 val images per class ("balanced")
004        CIFAR-10        ``None``           all 50,000 train, no validation
=========  ==============  ===============  =====================================

The reports do not publish which images they held out, so a split here reproduces their
*sizes and stratification*, drawn from `seed`; the same seed always gives the same images.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence, Union

import torch

from .errors import DataArgumentError, DataTypeError
from .seeding import make_generator

__all__ = ["SplitSpec", "DEFAULT_SPLIT", "SPLIT_RE", "parse_split", "stratified_sample", "split_indices"]

SplitSpec = Union[str, Sequence[int], None]

# What `load_dataset` uses when `split="default"`: the report that trains on the data set. A folder data
# set's default is its own val/ folder, or no validation part when it has none.
DEFAULT_SPLIT: dict[str, Optional[tuple[int, int]]] = {
    "cifar10": (40000, 10000),  # the ResNet-18 report
    "cifar100": (47500, 2500),  # the coursework reports
    "fashion_mnist": (50000, 10000),  # the usual MNIST-style hold-out
    "mnist": (50000, 10000),
    "kmnist": (50000, 10000),
    "svhn": (68257, 5000),  # 5,000 of the 73,257 training digits (the 531,131 "extra" ones are not loaded)
    "synthetic": None,  # its test set is already held out; sizes are user-chosen
}

SPLIT_RE = re.compile(r"^\s*(\d+)\s*[:/,]\s*(\d+)\s*$")  # "TRAIN:VAL" (or / or ,)


def parse_split(split: SplitSpec, total: int, dataset: str = "the data set") -> Optional[tuple[int, int]]:
    """Validate a split spec against a training set of `total` images.

    Accepts ``"40000:10000"``, ``(40000, 10000)``, or ``None``/``"none"`` (no validation
    part). Returns ``(n_train, n_val)`` or None.

    Example:
        >>> parse_split("47500:2500", 50000)
        (47500, 2500)
        >>> parse_split("none", 50000) is None
        True
    """
    if split is None:
        return None
    if isinstance(split, str):
        if split.strip().lower() in ("none", "no", "all", ""):
            return None
        match = SPLIT_RE.match(split)
        if match is None:
            raise DataArgumentError(
                f"Cannot read split {split!r}; write it as 'TRAIN:VAL' (e.g. '40000:10000'), or 'none' for no "
                "validation set."
            )
        n_train, n_val = int(match.group(1)), int(match.group(2))
    else:
        try:
            n_train, n_val = (int(v) for v in split)
        except (TypeError, ValueError) as err:
            raise DataTypeError(f"split must be 'TRAIN:VAL', a (train, val) pair or None; got {split!r}.") from err
    if n_train <= 0 or n_val < 0:
        raise DataArgumentError(f"split {n_train}:{n_val} needs a positive train size and a non-negative val size.")
    if n_train + n_val != total:
        raise DataArgumentError(
            f"split {n_train}:{n_val} adds up to {n_train + n_val}, but {dataset} has {total} training images; "
            f"the two sizes must add up to {total} (e.g. '{total - n_val}:{n_val}' if you meant {n_val} for "
            "validation). To train on fewer images, use limit= instead."
        )
    if n_val == 0:
        return None
    return n_train, n_val


def stratified_sample(labels: torch.Tensor, k: int, *, seed: int, tag: str = "sample") -> torch.Tensor:
    """`k` indices into `labels`, drawn without replacement, keeping the class proportions.

    Each class gets ``k * n_c / N`` rounded by largest remainder (ties broken at random), so
    on a balanced set the per-class counts differ by at most one. The draw depends only on
    (`seed`, `tag`, `labels`). Returns the indices sorted ascending, int64.

    Example:
        >>> import torch
        >>> idx = stratified_sample(torch.arange(100) % 10, 20, seed=0)
        >>> torch.bincount((torch.arange(100) % 10)[idx]).tolist()
        [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    """
    labels = labels.cpu()
    n = labels.numel()
    if not 0 <= k <= n:
        raise DataArgumentError(f"cannot draw {k} of {n} images.")
    gen = make_generator(seed, tag, n, k)
    counts = torch.bincount(labels)
    num_classes = counts.numel()
    exact = counts.double() * k / n
    quota = exact.floor().long()
    leftover = k - int(quota.sum())
    if leftover:
        # Largest remainder first; a random permutation breaks ties so that no class is
        # favoured just for having a low index.
        order = torch.randperm(num_classes, generator=gen)
        frac = (exact - quota)[order]
        winners = order[torch.argsort(frac, descending=True, stable=True)[:leftover]]
        quota[winners] += 1
    perm = torch.randperm(n, generator=gen)
    shuffled = labels[perm]
    by_class = torch.argsort(shuffled, stable=True)
    sorted_labels = shuffled[by_class]
    class_start = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(n) - class_start[sorted_labels]
    chosen = perm[by_class[rank_in_class < quota[sorted_labels]]]
    return chosen.sort().values


def split_indices(
    labels: torch.Tensor, split: Optional[tuple[int, int]], *, seed: int
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(train indices, val indices) for a parsed `split`; val is None when `split` is None.

    The val part is a stratified sample; train is everything else. Both come sorted.

    Example:
        >>> import torch
        >>> tr, va = split_indices(torch.arange(50) % 10, (40, 10), seed=0)
        >>> len(tr), len(va)
        (40, 10)
    """
    n = labels.numel()
    if split is None:
        return torch.arange(n), None
    n_train, n_val = split
    if n_train + n_val != n:
        raise DataArgumentError(f"split {n_train}:{n_val} does not add up to the {n} images given.")
    val = stratified_sample(labels, n_val, seed=seed, tag="val")
    keep = torch.ones(n, dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().squeeze(1), val
