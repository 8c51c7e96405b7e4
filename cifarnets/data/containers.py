"""The two containers every part of `cifarnets.data` hands around.

A CIFAR split is small (50,000 x 3 x 32 x 32 bytes = 147 MiB), so it is held whole as one
uint8 tensor instead of a `torch.utils.data.Dataset` of PIL images: that is what lets
`DeviceLoader` keep it on the GPU and augment a batch with a handful of tensor ops
(STYLE.md, airbench).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence, Union

import torch

from .errors import DataArgumentError, DataTypeError

__all__ = ["ImageSet", "DataBundle"]

Device = Union[str, torch.device, None]


@dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of a data set (train, val or test), held whole as tensors.

    `images` are the raw bytes, uint8 (N, C, H, W); normalisation and augmentation happen
    later, on the training device, in `DeviceLoader`. `labels` are int64 (N,).

    Example:
        >>> import torch
        >>> s = ImageSet(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.arange(4))
        >>> len(s), s.subset([0, 2]).labels.tolist()
        (4, [0, 2])
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise DataTypeError(
                "ImageSet.images must be a uint8 tensor of shape (N, C, H, W); got "
                f"{_describe(images)}. Convert float images in [0, 1] with "
                "(x * 255).round().to(torch.uint8)."
            )
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
            raise DataTypeError(f"ImageSet.labels must be a 1-D tensor; got {_describe(labels)}.")
        if labels.dtype != torch.int64:
            # Frozen: assign through object.__setattr__ so callers may pass int32/uint8 labels.
            object.__setattr__(self, "labels", labels.long())
        if images.shape[0] != labels.shape[0]:
            raise DataArgumentError(
                f"ImageSet has {images.shape[0]} images but {labels.shape[0]} labels; they must match.")
        if images.device != labels.device:
            raise DataArgumentError(f"images are on {images.device} but labels on {labels.device}; use .to(device).")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return f"ImageSet(n={len(self)}, shape={tuple(self.images.shape[1:])}, device={self.images.device})"

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.images.device

    def to(self, device: Device, non_blocking: bool = False) -> "ImageSet":
        """The same split on `device` (returns `self` when it is already there)."""
        device = torch.device(device) if device is not None else self.device
        if device == self.device:
            return self
        return ImageSet(
            self.images.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
        )

    def subset(self, indices: Union[torch.Tensor, Sequence[int]]) -> "ImageSet":
        """The images at `indices` (a copy, in the order given)."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        return ImageSet(self.images.index_select(0, index), self.labels.index_select(0, index))

    def class_counts(self, num_classes: Optional[int] = None) -> torch.Tensor:
        """Images per class, int64 (num_classes,)."""
        minlength = num_classes if num_classes is not None else 0
        return torch.bincount(self.labels, minlength=minlength)


@dataclass(frozen=True, eq=False)
class DataBundle:
    """A data set ready for training: its splits plus what a model and loader need to know.

    `mean`/`std` are the per-channel normalisation (on the [0, 1] scale) that
    `DeviceLoader` applies; they are chosen when the bundle is made (`load_dataset(norm=)`,
    the reports). `val` is None when the split has no validation part (the AlexNet/VGG report trains on all
    50,000 images). `split` records the (train, val) sizes and `split_seed` the seed that
    drew them, so a run's log can say exactly which images it trained on. `source` is the
    `DataSource` that loaded the bundle (None for one built by hand): what a run records so that
    ``eval`` and ``--resume`` load the same images again.

    Example:
        >>> from cifarnets.data import load_dataset
        >>> b = load_dataset("synthetic")
        >>> b.name, b.num_classes, b.in_chans, b.is_synthetic
        ('synthetic', 10, 3, True)
    """

    name: str
    train: ImageSet
    val: Optional[ImageSet]
    test: ImageSet
    num_classes: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    is_synthetic: bool
    split: Optional[tuple[int, int]] = None
    split_seed: Optional[int] = None
    norm_name: Optional[str] = field(default=None)
    source: Optional[Any] = field(default=None)  # a DataSource (source.py builds bundles, so not imported here)

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise DataArgumentError(
                f"{self.name}: mean/std have {len(self.mean)}/{len(self.std)} entries but the images "
                f"have {self.in_chans} channel(s)."
            )
        if len(self.classes) != self.num_classes:
            raise DataArgumentError(f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes.")

    def __repr__(self) -> str:
        synthetic = ", SYNTHETIC" if self.is_synthetic else ""
        val = len(self.val) if self.val is not None else None
        return (
            f"DataBundle({self.name!r}{synthetic}, train={len(self.train)}, val={val}, test={len(self.test)}, "
            f"num_classes={self.num_classes}, in_chans={self.in_chans}, norm={self.norm_name or (self.mean, self.std)})"
        )

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return (int(self.train.images.shape[-2]), int(self.train.images.shape[-1]))

    def to(self, device: Device) -> "DataBundle":
        """The same bundle with every split on `device`."""
        return replace(
            self,
            train=self.train.to(device),
            val=self.val.to(device) if self.val is not None else None,
            test=self.test.to(device),
        )


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
