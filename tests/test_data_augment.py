"""The batched crop/flip is torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip().

Two halves: (1) for the same parameters, the pixels equal torchvision's functional pad/crop/
flip exactly; (2) the parameters are distributed as torchvision's transforms draw them,
checked with chi-square tests on images whose pixels reveal where they were cut from. Every
random draw is seeded, so the tests are deterministic and cannot flake.
"""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from data_helpers import chi2_sf

from cifarnets.data import DeviceLoader, ImageSet, crop_flip, normalize, random_crop_flip, sample_crop_flip


@pytest.mark.parametrize("padding, height, width", [(4, 32, 32), (2, 32, 32), (0, 32, 32), (4, 24, 40)])
def test_crop_flip_equals_torchvision_functional(padding, height, width):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, height, width), dtype=torch.uint8, generator=gen)
    top, left, flip = sample_crop_flip(64, padding=padding, generator=gen)
    ours = crop_flip(images, top, left, flip, padding=padding)
    assert ours.shape == images.shape and ours.dtype == torch.uint8
    for i in range(64):
        ref = TF.crop(TF.pad(images[i], [padding], fill=0), int(top[i]), int(left[i]), height, width)
        if flip[i]:
            ref = TF.hflip(ref)
        assert torch.equal(ours[i], ref), i


def test_crop_flip_float_and_extremes():
    images = torch.rand(2, 1, 8, 8)
    corner = crop_flip(images, torch.tensor([0, 8]), torch.tensor([0, 8]), torch.tensor([False, False]), padding=4)
    assert torch.equal(corner[0, 0, 4:, 4:], images[0, 0, :4, :4]) and corner[0, 0, :4].abs().sum() == 0
    assert torch.equal(corner[1, 0, :4, :4], images[1, 0, 4:, 4:]) and corner[1, 0, 4:].abs().sum() == 0


def _coordinate_image() -> torch.Tensor:
    """A 3x32x32 uint8 image whose channels hold (row + 1, column + 1, 200); 0 marks padding."""
    idx = torch.arange(1, 33, dtype=torch.uint8)
    return torch.stack(
        [idx.view(32, 1).expand(32, 32), idx.view(1, 32).expand(32, 32), torch.full((32, 32), 200, dtype=torch.uint8)]
    )


def _decode(out: torch.Tensor) -> torch.Tensor:
    """(B, 3, 32, 32) augmented coordinate images -> (B,) cell index of (top, left, flip) in 9x9x2."""
    rows, cols = out[:, 0].long(), out[:, 1].long()
    # The centre pixel is never padding for padding <= 4, so it reveals the cut position.
    top = rows[:, 16, 16] - 13
    flip = cols[:, 16, 17] < cols[:, 16, 16]
    left = torch.where(flip, cols[:, 16, 16] - 12, cols[:, 16, 16] - 13)
    assert bool(((0 <= top) & (top <= 8) & (0 <= left) & (left <= 8)).all())
    return (top * 9 + left) * 2 + flip.long()


N = 8100  # 50 per (top, left, flip) cell


@pytest.fixture(scope="module")
def histograms():
    image = _coordinate_image()
    data = ImageSet(image.expand(N, 3, 32, 32).contiguous(), torch.zeros(N, dtype=torch.long))
    # mean 0, std 1/255 turns the normalised output back into the raw byte values.
    loader = DeviceLoader(data, 1000, train=True, mean=(0.0,) * 3, std=(1 / 255,) * 3, seed=0)
    ours = torch.cat([_decode(x.round().to(torch.uint8)) for x, _ in loader])

    torch.manual_seed(1234)
    reference = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    theirs = _decode(torch.stack([reference(image) for _ in range(N)]))
    return torch.bincount(ours, minlength=162).double(), torch.bincount(theirs, minlength=162).double()


def _goodness_of_fit(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    stat = float(((counts - expected) ** 2 / expected).sum())
    return chi2_sf(stat, counts.numel() - 1)


def test_crop_and_flip_parameters_are_uniform(histograms):
    ours, theirs = histograms
    assert ours.sum() == N and bool((ours > 0).all())
    assert _goodness_of_fit(ours) > 1e-3
    assert _goodness_of_fit(theirs) > 1e-3  # the test itself is sound on torchvision's draws


def test_distribution_matches_torchvision(histograms):
    ours, theirs = histograms
    # Chi-square test of homogeneity on the 2 x 162 contingency table.
    total = ours + theirs
    stat = float((((ours - total / 2) ** 2 + (theirs - total / 2) ** 2) / (total / 2)).sum())
    assert chi2_sf(stat, 161) > 1e-3
    for name, axis in (("top", 0), ("left", 1), ("flip", 2)):
        marg_ours = ours.view(9, 9, 2).sum(dim=[d for d in range(3) if d != axis])
        marg_theirs = theirs.view(9, 9, 2).sum(dim=[d for d in range(3) if d != axis])
        assert _goodness_of_fit(marg_ours) > 1e-3, name
        assert _goodness_of_fit(marg_theirs) > 1e-3, name


def test_random_crop_flip_keeps_pixels_and_is_seeded():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = random_crop_flip(images, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    no_pad = random_crop_flip(images, padding=0, flip=False)
    assert torch.equal(no_pad, images)


def test_normalize_matches_to_tensor_then_normalize():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ref = T.Normalize(mean, std)(images.float() / 255)
    torch.testing.assert_close(normalize(images, mean, std), ref, rtol=0, atol=1e-5)
    assert normalize(images, mean, std, dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="3-channel"):
        normalize(images, (0.5,), (0.5,))
