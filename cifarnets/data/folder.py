"""Any ImageFolder tree as a data set: ``folder:PATH`` (CINIC-10's layout).

PATH holds ``train/`` and ``test/`` (and optionally ``val/``, also spelt ``valid/`` as CINIC-10
does, or ``validation/``), each with one sub-folder per class::

    cinic10/train/airplane/0001.png     cinic10/test/airplane/...     cinic10/valid/airplane/...

Files are found with `torchvision.datasets.ImageFolder` (its image extensions; folders whose
name starts with '.' are skipped) and decoded with PIL. The class names are the folder names
under ``train/``, sorted; ``test/`` and ``val/`` may lack a class but not add one. Images are
grayscale (1 channel) when every file is, else RGB (3), and reach the model's 32x32 input as
`cifarnets.data.fit` says (``"pad"``, ``"resize"`` or ``"none"``). Everything is held in memory
as uint8, like the other data sets.

Example:
    train, val, test, classes = load_folder(Path("~/data/cinic10").expanduser(), fit="pad")
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torchvision.datasets
from PIL import Image

from ..errors import DataError, DataNotFoundError
from .containers import ImageSet
from .fit import INPUT_SIZE, fit_images

__all__ = ["VAL_FOLDERS", "load_folder"]

VAL_FOLDERS: tuple[str, ...] = ("val", "valid", "validation")
# PIL modes that hold one channel: read as 8-bit grayscale ("L").
_GRAY_MODES = frozenset({"L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "LA", "La"})


class _ClassFolders(torchvision.datasets.ImageFolder):
    """ImageFolder with a given class -> index table (so that test/ and val/ number their classes
    as train/ does, even when they lack one) and without hidden folders."""

    def __init__(self, root: Path, class_to_idx: Optional[dict[str, int]]) -> None:
        self._given = class_to_idx
        super().__init__(str(root), allow_empty=class_to_idx is not None)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        on_disk = sorted(e.name for e in Path(directory).iterdir() if e.is_dir() and not e.name.startswith("."))
        if self._given is None:
            if not on_disk:
                raise DataError(f"{directory} holds no class folders; put each class's images in a sub-folder "
                                f"named after the class ({directory}/cat/0001.png, ...)")
            return on_disk, {name: i for i, name in enumerate(on_disk)}
        extra = [name for name in on_disk if name not in self._given]
        if extra:
            raise DataError(f"{directory} has class folder(s) {', '.join(extra)} that train/ does not have; every "
                            "class must have training images (add them to train/ or remove the folder)")
        return sorted(self._given, key=self._given.__getitem__), dict(self._given)


def _read(path: str) -> np.ndarray:
    """One image file as uint8 HxW (grayscale) or HxWx3 (colour)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in _GRAY_MODES:
                return np.asarray(img if img.mode == "L" else img.convert("L"), dtype=np.uint8)
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path} cannot be read as an image ({type(err).__name__}: {err}); replace or delete it") \
            from err


def _scan(root: Path, class_to_idx: Optional[dict[str, int]]) -> _ClassFolders:
    try:
        return _ClassFolders(root, class_to_idx)
    except FileNotFoundError as err:  # torchvision: a class folder without a single image file
        raise DataError(f"{root}: {err}. Every class folder of train/ needs at least one image.") from err


def _stack(arrays: Sequence[np.ndarray], paths: Sequence[str], channels: int, fit: str, what: str) -> torch.Tensor:
    """uint8 (N, channels, H, W) from images of possibly different sizes, brought together by `fit`."""
    sizes = [a.shape[:2] for a in arrays]
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, size in enumerate(sizes):
        by_size.setdefault((int(size[0]), int(size[1])), []).append(i)
    if fit == "none" and len(by_size) > 1:
        (a, ia), (b, ib) = list(by_size.items())[:2]
        raise DataError(f"{what}: images differ in size ({paths[ia[0]]} is {a[0]}x{a[1]}, {paths[ib[0]]} is "
                        f"{b[0]}x{b[1]}) and fit='none' keeps sizes; pass fit='resize' (CLI: --fit resize) to "
                        f"resize them all to {INPUT_SIZE}x{INPUT_SIZE}, or 'pad' if none is larger")
    out: Optional[torch.Tensor] = None
    for size, index in by_size.items():
        group = np.stack([arrays[i] for i in index])
        tensor = torch.from_numpy(group)
        tensor = tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2)
        if tensor.shape[1] != channels:  # a grayscale file among colour ones: repeat its plane
            tensor = tensor.expand(-1, channels, -1, -1)
        fitted = fit_images(tensor.contiguous(), fit, f"{what} ({paths[index[0]]} and others of {size[0]}x{size[1]})")
        if out is None:
            out = torch.empty((len(arrays), channels, *fitted.shape[2:]), dtype=torch.uint8)
        out[torch.as_tensor(index)] = fitted
    if out is None:  # callers pass at least one image; kept for a clear message all the same
        raise DataError(f"{what} holds no images")
    return out


def load_folder(
    root: Path, *, fit: str = "pad"
) -> tuple[ImageSet, Optional[ImageSet], ImageSet, tuple[str, ...]]:
    """(train, val or None, test, class names) of the ImageFolder tree at `root`, as uint8 tensors."""
    if not root.is_dir():
        raise DataNotFoundError(f"folder data set {root} is not there (or not a folder); give folder:PATH with PATH "
                                "the folder that holds train/ and test/")
    vals = [root / v for v in VAL_FOLDERS if (root / v).is_dir()]
    missing = [s for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        raise DataNotFoundError(
            f"folder data set {root} has no {' or '.join(f'{m}/' for m in missing)}; it needs train/ and test/ "
            "(and optionally val/), each with one sub-folder of images per class (CINIC-10's layout)")
    if len(vals) > 1:
        raise DataError(f"folder data set {root} has {' and '.join(v.name + '/' for v in vals)}; keep one "
                        "validation folder")
    train_ds = _scan(root / "train", None)
    parts = {"train": train_ds, "test": _scan(root / "test", train_ds.class_to_idx)}
    if vals:
        parts["val"] = _scan(vals[0], train_ds.class_to_idx)
    read = {}
    for part, ds in parts.items():
        if not ds.samples:
            raise DataError(f"{root / part if part != 'val' else vals[0]} holds no image files (extensions: "
                            f"{', '.join(torchvision.datasets.folder.IMG_EXTENSIONS)})")
        read[part] = [_read(path) for path, _ in ds.samples]
    # One channel count for the whole data set: colour as soon as one file is.
    channels = 3 if any(a.ndim == 3 for arrays in read.values() for a in arrays) else 1
    sets = {}
    for part, ds in parts.items():
        paths = [path for path, _ in ds.samples]
        images = _stack(read[part], paths, channels, fit, f"folder {root} {part}/")
        sets[part] = ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.int64))
    shapes = {tuple(s.images.shape[2:]) for s in sets.values()}
    if len(shapes) > 1:
        raise DataError(f"folder {root}: with fit='none' the splits' images differ in size ({sorted(shapes)}); pass "
                        "fit='resize' (CLI: --fit resize)")
    return sets["train"], sets.get("val"), sets["test"], tuple(train_ds.classes)
