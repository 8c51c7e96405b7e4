"""Fashion-MNIST: the real files (Debian's dataset-fashion-mnist) and the IDX reader's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_helpers import needs_fashion_mnist, pixel_moments, write_idx

from cifarnets.data import (
    NORMALIZATION,
    DatasetCorruptError,
    DatasetNotFoundError,
    load_dataset,
    load_fashion_mnist,
)

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

real_files = needs_fashion_mnist()


@pytest.fixture(scope="module")
def fmnist():
    return load_fashion_mnist()


@real_files
def test_real_fashion_mnist_shapes_padding_labels(fmnist):
    train, test, classes = fmnist
    assert train.images.shape == (60000, 1, 32, 32) and test.images.shape == (10000, 1, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    for part in (train, test):
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert int(part.images[:, :, border].max()) == 0  # the 2-px frame is zero padding
        assert int(part.images[:, :, 2:30, 2:30].max()) == 255  # the images themselves are inside
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert classes == CLASSES


@real_files
def test_fashion_mnist_presets_are_the_data_statistics(fmnist):
    images = fmnist[0].images
    for preset, pixels in (("fashion_mnist", images), ("fashion_mnist_28", images[:, :, 2:30, 2:30])):
        mean, std = pixel_moments(pixels)
        assert mean == pytest.approx(NORMALIZATION[preset].mean[0], abs=5e-5)
        assert std == pytest.approx(NORMALIZATION[preset].std[0], abs=5e-5)


@real_files
def test_load_dataset_fashion_mnist_default_split():
    bundle = load_dataset("fashion-mnist", limit=1000)
    assert bundle.name == "fashion_mnist" and bundle.in_chans == 1 and bundle.num_classes == 10
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (1000, 10000, 10000)
    assert torch.bincount(bundle.val.labels).tolist() == [1000] * 10
    assert torch.bincount(bundle.train.labels).tolist() == [100] * 10
    assert bundle.mean == NORMALIZATION["fashion_mnist"].mean
    with pytest.raises(ValueError, match="3 channel"):
        load_dataset("fashion_mnist", norm="cifar10", limit=10)


def _write_tiny(folder, compress=True, n=20):
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return images


@pytest.mark.parametrize("compress", [True, False])
def test_reads_torchvision_layout_gz_or_raw(tmp_path, compress):
    images = _write_tiny(tmp_path / "FashionMNIST" / "raw", compress)
    train, test, _ = load_fashion_mnist(tmp_path)
    assert len(train) == 20 and test.images.shape == (20, 1, 32, 32)
    assert torch.equal(test.images[:, 0, 2:30, 2:30], torch.from_numpy(images))


def test_missing_fashion_mnist_is_clear(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "dataset-fashion-mnist" in message and "download=True" in message


def test_truncated_gzip_names_the_file(tmp_path):
    _write_tiny(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetCorruptError, match=str(path).replace(".", r"\.")) as info:
        load_fashion_mnist(tmp_path)
    assert info.value.__cause__ is not None


def test_short_idx_payload_names_the_file(tmp_path):
    _write_tiny(tmp_path, compress=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DatasetCorruptError, match="header announces 20"):
        load_fashion_mnist(tmp_path)
