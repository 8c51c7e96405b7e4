"""Per-channel normalisation presets of the data sets (the table itself is `cifarnets.layers.presets`).

The reports disagree on CIFAR-10's std: the ResNet-18 report uses (0.2023, 0.1994, 0.2010), a value
copied across many CIFAR repositories that is *not* the data's standard deviation (it is
close to the mean of the per-image stds); the AlexNet/VGG report uses the true per-channel std over all
training pixels, (0.2470, 0.2435, 0.2616). Both are kept, under names that say which is
which, so either report can be re-run as published.

All values are on the [0, 1] pixel scale and are the statistics of the *full* training set
(50,000 CIFAR images, 60,000 Fashion-MNIST images), not of a train/val split of it.

Data sets without a preset (MNIST, KMNIST, SVHN, folders, in-memory arrays) take ``"auto"``:
the exact per-channel statistics of the images they train on (`image_statistics`).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ..layers.presets import NORMALIZATION, Normalization
from .errors import DataArgumentError, DataTypeError

__all__ = [
    "Normalization", "NORMALIZATION", "DEFAULT_NORMALIZATION", "NormSpec", "image_statistics", "resolve_normalization",
]


# The preset `load_dataset` applies when `norm=None`.
DEFAULT_NORMALIZATION: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "fashion_mnist": "fashion_mnist",
    "synthetic": "synthetic",
}

NormSpec = Union[str, tuple[Sequence[float], Sequence[float]], None]


def image_statistics(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of uint8 (N, C, H, W) images on the [0, 1] scale, exactly.

    Counted through a 256-bin histogram per channel in float64, so the result does not depend
    on the device, the batch order or the summation order: a reloaded run gets the same values.

    Example:
        >>> import torch
        >>> image_statistics(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1))
        ((0.5,), (0.7071067811865476,))
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1).cpu(), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / max(float(n) - 1, 1.0)
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


def resolve_normalization(
    norm: NormSpec, dataset: str, in_chans: int, images: Optional[torch.Tensor] = None
) -> tuple[str | None, tuple[float, ...], tuple[float, ...]]:
    """Turn `load_dataset`'s `norm` argument into (preset name or None, mean, std).

    `norm` is a key of `NORMALIZATION`, "none" (mean 0, std 1: the loader then yields
    pixels in [0, 1]), "auto" (the statistics of `images`, the training images), an explicit
    `(mean, std)` pair, or None for the data set's preset (``"auto"`` where it has none).

    Example:
        >>> resolve_normalization("cifar10_seed000", "cifar10", 3)[2]
        (0.2023, 0.1994, 0.201)
    """
    if norm is None:
        norm = DEFAULT_NORMALIZATION.get(dataset, "auto")
    if isinstance(norm, str):
        key = norm.lower().replace("-", "_")
        if key == "none":
            return "none", (0.0,) * in_chans, (1.0,) * in_chans
        if key == "auto":
            if images is None:
                raise DataArgumentError("norm='auto' needs the training images to measure; pass images=")
            mean, std = image_statistics(images)
            constant = [c for c, s in enumerate(std) if not s > 0]
            if constant:
                raise DataArgumentError(
                    f"norm='auto': channel {constant[0]} of the {dataset} training images is constant (every pixel "
                    f"{mean[constant[0]] * 255:.0f}), so it has no std to divide by; pass norm='none' or an explicit "
                    "(mean, std) pair.")
            return "auto", mean, std
        if key not in NORMALIZATION:
            raise DataArgumentError(
                f"Unknown normalisation preset {norm!r}; choose one of {sorted(NORMALIZATION)}, 'none', 'auto' "
                "(the training images' own statistics), or pass an explicit (mean, std) pair."
            )
        preset = NORMALIZATION[key]
        if len(preset.mean) != in_chans:
            fix = DEFAULT_NORMALIZATION.get(dataset, "auto")
            raise DataArgumentError(
                f"Normalisation preset {key!r} has {len(preset.mean)} channel(s) but {dataset} images have "
                f"{in_chans}; use {fix!r} (the {dataset} default)."
            )
        return key, preset.mean, preset.std
    try:
        mean_seq, std_seq = norm
        mean = tuple(float(m) for m in mean_seq)
        std = tuple(float(s) for s in std_seq)
    except (TypeError, ValueError) as err:
        raise DataTypeError(
            f"norm must be a preset name or a (mean, std) pair of per-channel sequences; got {norm!r}."
        ) from err
    if len(mean) != in_chans or len(std) != in_chans:
        raise DataArgumentError(
            f"norm has {len(mean)} mean and {len(std)} std value(s) but {dataset} images have {in_chans} channel(s)."
        )
    if any(not s > 0 for s in std):
        raise DataArgumentError(f"every std must be positive; got {std}.")
    return None, mean, std
