"""Images handed over in memory as a `DataBundle` (`from_arrays`).

Numpy arrays or torch tensors, (N, C, H, W) or (N, H, W, C) (or (N, H, W) for grayscale),
uint8 pixels or floats in [0, 1]; labels are N integers. The images are kept as uint8 on the
CPU, like every other data set, and their size is kept as given. Such a bundle cannot be
reloaded from a run's record: its `source` says so, and a resumed run must be handed it again.

Example:
    >>> import numpy as np
    >>> x = np.zeros((20, 32, 32, 3), dtype=np.uint8); y = np.arange(20) % 2
    >>> b = from_arrays(train=(x, y), test=(x[:4], y[:4]), norm="none")
    >>> tuple(b.train.images.shape), b.classes, b.source.name
    ((20, 3, 32, 32), ('0', '1'), 'arrays')
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigTypeError, DataError
from .containers import DataBundle, ImageSet
from .normalization import NormSpec, resolve_normalization
from .source import ARRAYS, DataSource

__all__ = ["from_arrays"]


def _tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise ConfigTypeError(f"{what} is a numpy array of Python objects; give numbers (uint8 or float)")
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ConfigTypeError(f"{what} must be a numpy array or a torch tensor; got {type(x).__name__}")


def _images(x: Any, what: str) -> torch.Tensor:
    t = _tensor(x, what)
    if t.dim() == 3:
        t = t.unsqueeze(1)  # (N, H, W): grayscale
    if t.dim() != 4:
        raise DataError(f"{what} must be (N, C, H, W) or (N, H, W, C) (or (N, H, W) for grayscale); got shape "
                        f"{tuple(t.shape)}")
    if t.shape[1] not in (1, 3) and t.shape[3] in (1, 3):
        t = t.permute(0, 3, 1, 2)  # NHWC -> NCHW
    elif t.shape[1] not in (1, 3):
        raise DataError(f"{what} of shape {tuple(t.shape)} has no channel axis of 1 or 3 (grayscale or RGB) in "
                        "position 1 (N, C, H, W) or 3 (N, H, W, C)")
    if t.shape[0] == 0:
        raise DataError(f"{what} holds no images")
    if t.dtype == torch.uint8:
        return t.contiguous()
    if t.is_floating_point():
        lo, hi = float(t.min()), float(t.max())
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            hint = " (divide 0..255 pixel values by 255, or give them as uint8)" if hi > 1.0 else ""
            raise DataError(f"{what} are floats that must lie in [0, 1]; they run from {lo:g} to {hi:g}{hint}")
        return (t.double() * 255).round().to(torch.uint8).contiguous()
    raise DataError(f"{what} must be uint8 pixels (0..255) or floats in [0, 1]; got dtype {t.dtype} (for 0..255 "
                    "integer pixels convert with x.astype(np.uint8) / x.to(torch.uint8))")


def _labels(y: Any, n: int, what: str) -> torch.Tensor:
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    t = _tensor(y, what)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise DataError(f"{what} must be integer class indices; got dtype {t.dtype}")
    if t.dim() != 1:
        raise DataError(f"{what} must be 1-D (N,); got shape {tuple(t.shape)}")
    if t.shape[0] != n:
        raise DataError(f"{what} has {t.shape[0]} labels for {n} images; they must match")
    t = t.long()
    if int(t.min()) < 0:
        raise DataError(f"{what} holds the negative label {int(t.min())}; labels are class indices 0, 1, ...")
    return t


def _split(pair: Any, what: str) -> ImageSet:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ConfigTypeError(f"{what} must be an (images, labels) pair; got {type(pair).__name__}")
    images = _images(pair[0], f"{what} images")
    return ImageSet(images, _labels(pair[1], images.shape[0], f"{what} labels"))


def from_arrays(
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    val: Optional[tuple[Any, Any]] = None,
    classes: Optional[Sequence[str]] = None,
    name: str = "arrays",
    norm: NormSpec = None,
) -> DataBundle:
    """A `DataBundle` of in-memory images; see `from_arrays`."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigTypeError(f"name must be a non-empty string; got {name!r}")
    source = DataSource(ARRAYS, split="none", norm=norm, fit="none")  # checks `norm` like any source's
    parts = {"train": _split(train, "train"), "test": _split(test, "test")}
    if val is not None:
        parts["val"] = _split(val, "val")
    shape = tuple(parts["train"].images.shape[1:])
    for part, s in parts.items():
        if tuple(s.images.shape[1:]) != shape:
            raise DataError(f"{part} images are (C, H, W) = {tuple(s.images.shape[1:])} but train images {shape}; "
                            "every split must have the same channels and size")
    top = max(int(s.labels.max()) for s in parts.values())
    if classes is None:
        names = tuple(str(i) for i in range(top + 1))
    else:
        if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
            raise ConfigTypeError(f"classes must be a sequence of class names (str); got {classes!r}")
        names = tuple(classes)
        if len(names) <= top:
            raise DataError(f"classes names {len(names)} classes but the labels run up to {top}; give one name per "
                            "class index 0..max label")
        if len(set(names)) != len(names):
            raise DataError(f"classes has repeated names: {sorted({c for c in names if names.count(c) > 1})}")
    train_set = parts["train"]
    norm_name, mean, std = resolve_normalization(source.norm if source.norm is not None else "auto", name, shape[0],
                                                 images=train_set.images)
    val_set = parts.get("val")
    return DataBundle(
        name=name, train=train_set, val=val_set, test=parts["test"], num_classes=len(names), in_chans=shape[0],
        mean=mean, std=std, classes=names, is_synthetic=False,
        split=(len(train_set), len(val_set)) if val_set is not None else None, split_seed=None, norm_name=norm_name,
        source=source,
    )
