"""Batched, on-device random crop (zero padding) + horizontal flip, and normalisation.

The reports augment with torchvision's ``RandomCrop(32, padding=4)`` followed by
``RandomHorizontalFlip()``. Per image, that is: pad with zeros, pick a top-left
corner uniformly in ``{0..2p} x {0..2p}`` of the padded image, cut out the original size,
and mirror with probability 1/2. Here the same draw is made for a whole batch at once and
applied with one gather, so a batch on the GPU costs a few kernel launches instead of a
PIL round trip per image (the idea of airbench's ``CifarLoader``).

tests/test_data_augment.py checks pixel-for-pixel equality with torchvision's functional
crop/flip for given parameters, and that the parameter distribution matches torchvision's
transforms.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .errors import DataArgumentError

__all__ = [
    "apply_normalization", "crop_flip", "normalization_affine", "normalize", "pixel_row_affine", "random_crop_flip",
    "sample_crop_flip",
]


def sample_crop_flip(
    n: int, *, padding: int, generator: Optional[torch.Generator] = None, flip: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw `n` crop corners and flips: (top, left) int64 in [0, 2*padding], flip bool.

    `top`/`left` index the zero-padded image, exactly as torchvision's
    ``RandomCrop.get_params`` does. Draws happen on the generator's device (CPU by default).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> top, left, flip = sample_crop_flip(5, padding=4, generator=g)
        >>> bool(((0 <= top) & (top <= 8)).all()), flip.dtype
        (True, torch.bool)
    """
    if padding < 0:
        raise DataArgumentError(f"padding must be non-negative; got {padding}.")
    device = generator.device if generator is not None else torch.device("cpu")
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=device)
    if flip:
        flips = torch.rand(n, generator=generator, device=device) < 0.5
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=device)
    return top, left, flips


def crop_flip(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, *, padding: int
) -> torch.Tensor:
    """Zero-pad each image by `padding`, cut the window at (`top`, `left`), mirror where `flip`.

    `images` is (B, C, H, W) of any dtype (uint8 in the loader, so that padding is the black
    pixel torchvision pads PIL images with, before normalisation). The parameters are (B,)
    tensors on the images' device. One gather does crop and flip together: mirroring the
    crop is reading its columns right to left. Output has the input's shape and dtype.

    Example:
        >>> x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
        >>> crop_flip(x, torch.tensor([1]), torch.tensor([1]), torch.tensor([False]), padding=1)[0, 0]
        tensor([[ 0,  1,  2,  3],
                [ 4,  5,  6,  7],
                [ 8,  9, 10, 11],
                [12, 13, 14, 15]], dtype=torch.uint8)
    """
    b, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    rows = top.view(b, 1) + torch.arange(h, device=device)  # (B, H) rows of the padded image
    cols = left.view(b, 1) + torch.arange(w, device=device)
    cols = torch.where(flip.view(b, 1), cols.flip(1), cols)
    batch_idx = torch.arange(b, device=device).view(b, 1, 1, 1)
    chan_idx = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch_idx, chan_idx, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def random_crop_flip(
    images: torch.Tensor, *, padding: int = 4, generator: Optional[torch.Generator] = None, flip: bool = True
) -> torch.Tensor:
    """``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` for a whole batch at once.

    Example:
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> random_crop_flip(x, padding=4).shape
        torch.Size([8, 3, 32, 32])
    """
    top, left, flips = sample_crop_flip(images.shape[0], padding=padding, generator=generator, flip=flip)
    device = images.device
    return crop_flip(images, top.to(device), left.to(device), flips.to(device), padding=padding)


def normalize(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 images -> ``(x / 255 - mean) / std`` as `dtype`, i.e. ``ToTensor()`` + ``Normalize``.

    Computed in float32 as one fused multiply-add (so it can differ from the two-step
    torchvision result in the last bit, ~1e-7), then cast, so bfloat16/float16 outputs round
    once rather than at every step.

    Example:
        >>> x = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
        >>> round(normalize(x, (0.5,), (0.5,))[0, 0, 0, 0].item(), 6)
        1.0
    """
    scale, shift = normalization_affine(mean, std, images.shape[1], images.device)
    return apply_normalization(images, scale, shift, dtype=dtype)


def apply_normalization(
    images: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    memory_format: torch.memory_format = torch.contiguous_format,
    pixel_rows: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
) -> torch.Tensor:
    """``images * scale + shift`` (`normalization_affine`'s pair) in float32, laid out as `memory_format`, as `dtype`.

    One fused multiply-add in float32 (the cast of uint8 is exact, so the values are those
    of casting first), without a separate layout conversion (`DeviceLoader` makes every
    batch through here). NHWC images into NHWC output run on rows of W*C values, with
    `pixel_rows` (`pixel_row_affine`'s pair) if the caller keeps it.
    """
    if (memory_format == torch.channels_last and images.dim() == 4
            and images.is_contiguous(memory_format=torch.channels_last)):
        # NHWC in and out: broadcasting (C,) over the innermost axis runs the op three values
        # at a time; over rows of W*C values (scale repeated per pixel) it is vectorised, about
        # 10 times as fast on a CPU, with the same per-element arithmetic.
        b, c, h, w = images.shape
        row_scale, row_shift = pixel_rows if pixel_rows is not None else pixel_row_affine(scale, shift, w)
        out = torch.empty((b * h, w * c), dtype=torch.float32, device=images.device)
        out.copy_(images.permute(0, 2, 3, 1).reshape(b * h, w * c))  # exact; addcmul of uint8 casts into a temporary
        torch.addcmul(row_shift, out, row_scale, out=out)
        out = out.view(b, h, w, c).permute(0, 3, 1, 2)
    else:
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device, memory_format=memory_format)
        torch.addcmul(shift, images, scale, out=out)
    return out if dtype == torch.float32 else out.to(dtype)


def pixel_row_affine(scale: torch.Tensor, shift: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`normalization_affine`'s (scale, shift) repeated for each pixel of an NHWC row: two (width * C,) tensors."""
    c = scale.numel()
    return scale.reshape(c).repeat(width), shift.reshape(c).repeat(width)


def normalization_affine(
    mean: Sequence[float], std: Sequence[float], channels: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (1, C, 1, 1) float32, with ``(x / 255 - mean) / std == x * scale + shift``."""
    if len(mean) != channels or len(std) != channels:
        raise DataArgumentError(f"mean/std have {len(mean)}/{len(std)} values for {channels}-channel images.")
    if any(not s > 0 for s in std):
        raise DataArgumentError(f"every std must be positive; got {tuple(std)}.")
    std_t = torch.tensor(std, dtype=torch.float64)
    mean_t = torch.tensor(mean, dtype=torch.float64)
    scale = (1.0 / (255.0 * std_t)).to(torch.float32).view(1, channels, 1, 1)
    shift = (-mean_t / std_t).to(torch.float32).view(1, channels, 1, 1)
    return scale.to(device), shift.to(device)
