"""The SYNTHETIC data set: deterministic, clearly labelled, and learnable in one short epoch."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from data_helpers import pixel_moments

from cifarnets.data import NORMALIZATION, SYNTHETIC_CLASSES, load_dataset, make_loaders, make_synthetic_images


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = make_synthetic_images(500, seed=0)
    b = make_synthetic_images(500, seed=0)
    c = make_synthetic_images(500, seed=1)
    assert _digest(a.images) == _digest(b.images) and torch.equal(a.labels, b.labels)
    assert _digest(a.images) != _digest(c.images)
    a.images.zero_()  # callers get their own copy; the memo is not corrupted
    assert _digest(make_synthetic_images(500, seed=0).images) == _digest(b.images)


def test_test_set_does_not_depend_on_train_size():
    small = load_dataset("synthetic", synthetic_sizes=(1000, 300))
    large = load_dataset("synthetic", synthetic_sizes=(3000, 300))
    assert torch.equal(small.test.images, large.test.images)
    assert not torch.equal(small.train.images[:10], small.test.images[:10])


def test_bundle_is_marked_synthetic_everywhere():
    bundle = load_dataset("synthetic")
    assert bundle.is_synthetic and bundle.name == "synthetic"
    assert (len(bundle.train), len(bundle.test), bundle.val) == (5000, 1000, None)
    assert bundle.train.images.shape[1:] == (3, 32, 32) and bundle.train.images.dtype == torch.uint8
    assert bundle.classes == SYNTHETIC_CLASSES and len(set(bundle.classes)) == 10
    assert all(name.startswith("synthetic:") for name in bundle.classes)
    assert "SYNTHETIC" in repr(bundle)
    assert torch.bincount(bundle.train.labels).tolist() == [500] * 10


def test_synthetic_preset_is_the_default_sets_statistics():
    images = load_dataset("synthetic").train.images
    preset = NORMALIZATION["synthetic"]
    for c in range(3):
        mean, std = pixel_moments(images[:, c])
        assert mean == pytest.approx(preset.mean[c], abs=5e-5)
        assert std == pytest.approx(preset.std[c], abs=5e-5)


def test_a_tiny_cnn_learns_it_in_one_short_epoch():
    torch.manual_seed(0)
    bundle = load_dataset("synthetic")
    loaders = make_loaders(bundle, 64, eval_batch_size=500, augment=False)
    net = nn.Sequential(
        nn.Conv2d(3, 12, 3, stride=2, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Conv2d(12, 24, 3, padding=1),
        nn.BatchNorm2d(24),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(24, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for x, y in loaders.train:  # one epoch of 5,000 images: 79 steps
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in loaders.test)
    assert correct / len(bundle.test) >= 0.60  # chance is 0.10; this net reaches about 0.88
