"""How images of another size reach the 32x32 input of the CIFAR networks (`DataSource.fit`).

* ``"pad"`` (the default) zero-pads smaller images to 32x32, centred: Fashion-MNIST's and
  MNIST's 28x28 get a 2-pixel black frame, which adds no signal. Larger images cannot be padded.
* ``"resize"`` resizes every image to 32x32 with torchvision (bilinear, antialiased), keeping
  uint8 pixels.
* ``"none"`` keeps the images as they are (every image must then have the same size).

Images already 32x32 are untouched by every choice. The choice is part of the data source,
so a run records it and reloads the same pixels.

Example:
    >>> import torch
    >>> fit_images(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "pad", "MNIST").shape
    torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ..errors import DataError

__all__ = ["FITS", "INPUT_SIZE", "fit_images"]

FITS: tuple[str, ...] = ("pad", "resize", "none")
INPUT_SIZE = 32  # the input side every CIFAR network of the zoo is built for


def fit_images(images: torch.Tensor, fit: str, what: str) -> torch.Tensor:
    """uint8 (N, C, H, W) images brought to `INPUT_SIZE` as `fit` says; `what` names them in errors."""
    height, width = int(images.shape[-2]), int(images.shape[-1])
    if fit == "none" or (height, width) == (INPUT_SIZE, INPUT_SIZE):
        return images
    if fit == "resize":
        return TF.resize(images, [INPUT_SIZE, INPUT_SIZE], interpolation=InterpolationMode.BILINEAR, antialias=True)
    if fit == "pad":
        if height > INPUT_SIZE or width > INPUT_SIZE:
            raise DataError(
                f"{what}: images of {height}x{width} are larger than the {INPUT_SIZE}x{INPUT_SIZE} model input and "
                "cannot be padded; pass fit='resize' (CLI: --fit resize) to resize them, or fit='none' to keep them.")
        top, left = (INPUT_SIZE - height) // 2, (INPUT_SIZE - width) // 2
        return F.pad(images, (left, INPUT_SIZE - width - left, top, INPUT_SIZE - height - top))
    raise DataError(f"fit={fit!r} is not one of {', '.join(FITS)}")
