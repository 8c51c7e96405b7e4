"""A SYNTHETIC 10-class image set, generated from a seed with torch only (no files).

It exists so that the trainer, the CLI and the tests can run end to end on any machine,
including ones without CIFAR (no CIFAR download is possible on the build machine).
It is not a benchmark: numbers measured on it say nothing about CIFAR.

Each image is a noisy background with one soft-edged patch at a random place, size, phase and
contrast. The class is the patch's *pattern* (a grating at 0, 45, 90 or 135 degrees, or
concentric rings) crossed with its *colour family* (warm or cool hues). Both cues need a
convolution to see (orientation is local structure; the colour family must be told apart from
a randomly tinted background), yet a small CNN gets far above chance after one short epoch.
"""

from __future__ import annotations

import functools
import logging
import math
import time

import torch

from .containers import ImageSet
from .errors import DataArgumentError
from .seeding import make_generator

__all__ = ["SYNTHETIC_CLASSES", "make_synthetic_images", "make_synthetic_splits"]

logger = logging.getLogger(__name__)

_PATTERNS = ("grating-0deg", "grating-45deg", "grating-90deg", "grating-135deg", "rings")
_FAMILIES = ("warm", "cool")
SYNTHETIC_CLASSES: tuple[str, ...] = tuple(
    f"synthetic:{pattern}:{family}" for family in _FAMILIES for pattern in _PATTERNS
)
# Hue ranges (fractions of the colour wheel) of the two families: reds-oranges-yellows and
# cyans-blues. Wide enough that colour alone is not a single-pixel lookup.
_HUE_RANGE = {0: (-0.08, 0.14), 1: (0.45, 0.70)}


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N,) hue/sat/value in [0, 1] -> (N, 3) RGB, the standard piecewise-linear formula."""
    n = torch.tensor([5.0, 3.0, 1.0])
    k = (n[None, :] + h[:, None] * 6.0) % 6.0
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v[:, None] - v[:, None] * s[:, None] * ramp


def make_synthetic_images(num: int, *, seed: int, split: str = "train", size: int = 32) -> ImageSet:
    """`num` class-balanced synthetic images, uint8 (num, 3, size, size), deterministic in (seed, split).

    Different `split` names draw from independent streams, so the test set does not change
    when the training set is made larger. Results are memoised per process (the default set
    is 18 MB) and every call returns its own copy, so callers may modify it.

    Example:
        >>> s = make_synthetic_images(100, seed=0)
        >>> s.images.shape, s.images.dtype, s.class_counts().tolist()[:3]
        (torch.Size([100, 3, 32, 32]), torch.uint8, [10, 10, 10])
    """
    if num < 0:
        raise DataArgumentError(f"num must be non-negative; got {num}.")
    cached = _generate(int(num), int(seed), str(split), int(size))
    return ImageSet(cached.images.clone(), cached.labels.clone())


@functools.lru_cache(maxsize=4)
def _generate(num: int, seed: int, split: str, size: int) -> ImageSet:
    gen = make_generator(seed, "synthetic", split)
    num_classes = len(SYNTHETIC_CLASSES)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen) * (hi - lo) + lo

    labels = (torch.arange(num) % num_classes)[torch.randperm(num, generator=gen)]
    pattern = labels % len(_PATTERNS)
    family = labels // len(_PATTERNS)

    # Per-image parameters, all drawn up front so the stream layout is easy to keep stable.
    cy = uniform(0.25 * size, 0.75 * size, num)
    cx = uniform(0.25 * size, 0.75 * size, num)
    radius = uniform(0.18 * size, 0.32 * size, num)
    frequency = 2 * math.pi / uniform(3.2, 5.0, num)  # radians per pixel
    phase = uniform(0.0, 2 * math.pi, num)
    angle = pattern.float() * (math.pi / 4) + uniform(-0.12, 0.12, num)
    contrast = uniform(0.45, 1.0, num)
    hue_lo = torch.tensor([lo for lo, _ in _HUE_RANGE.values()])[family]
    hue_hi = torch.tensor([hi for _, hi in _HUE_RANGE.values()])[family]
    hue = (hue_lo + (hue_hi - hue_lo) * torch.rand(num, generator=gen)) % 1.0
    fg = _hsv_to_rgb(hue, uniform(0.55, 1.0, num), uniform(0.7, 1.0, num))
    # The background's tint is independent of the class: a nuisance the model must ignore.
    bg = _hsv_to_rgb(torch.rand(num, generator=gen), uniform(0.0, 0.6, num), uniform(0.15, 0.75, num))

    # Generation must stay well under a second on two CPU cores, where fresh (N, H, W)
    # buffers cost as much as the arithmetic: offsets from the patch centre stay (N, H, 1) and
    # (N, 1, W), and the full-size maps below are reused in place.
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dy = coords[None, :, None] - cy[:, None, None]
    dx = coords[None, None, :] - cx[:, None, None]
    dist = (dy * dy + dx * dx).sqrt_()
    wave = dx * torch.cos(angle)[:, None, None] + dy * torch.sin(angle)[:, None, None]
    rings = pattern == _PATTERNS.index("rings")
    wave[rings] = dist[rings]
    shade = wave.mul_(frequency[:, None, None]).add_(phase[:, None, None]).cos_().mul_(0.375).add_(0.625)
    alpha = dist.neg_().add_(radius[:, None, None]).mul_(1.5).sigmoid_().mul_(contrast[:, None, None])
    paint = shade.mul_(alpha).view(num, size * size)  # stripes at 0.25..1.0 of the patch colour
    keep = alpha.neg_().add_(1.0).view(num, size * size)

    # image_c = bg_c * (1 - alpha) + fg_c * alpha * shade + noise, on the 0..255 scale; the
    # noise is sensor-like and shared by the three channels (a third of the random numbers).
    noise = torch.randn(num, size * size, generator=gen).mul_(0.09 * 255.0).add_(0.5)
    out = torch.empty(num, 3, size * size)
    for c in range(3):
        torch.addcmul(noise, keep, bg[:, c : c + 1] * 255.0, out=out[:, c])
        out[:, c].addcmul_(paint, fg[:, c : c + 1] * 255.0)
    images = out.clamp_(0.0, 255.0).to(torch.uint8).view(num, 3, size, size)
    return ImageSet(images, labels)


def make_synthetic_splits(num_train: int = 5000, num_test: int = 1000, *, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test) synthetic sets; `load_dataset("synthetic")` wraps this in a DataBundle.

    Example:
        >>> train, test = make_synthetic_splits(200, 50)
        >>> len(train), len(test)
        (200, 50)
    """
    start = time.perf_counter()
    train = make_synthetic_images(num_train, seed=seed, split="train")
    test = make_synthetic_images(num_test, seed=seed, split="test")
    logger.info(
        "Using the SYNTHETIC data set (generated, not real images): %d train / %d test, seed %d (%.2f s).",
        num_train,
        num_test,
        seed,
        time.perf_counter() - start,
    )
    return train, test
