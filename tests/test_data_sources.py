"""DataSource: every data set by name through its real file format, the record a run keeps
(to_dict / from_dict reload the same tensors), field validation, fit, and in-memory arrays."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from data_helpers import md5, no_proxy, serve_directory, write_image_folder, write_mnist_like, write_svhn

from cifarnets.data import (
    DATASETS,
    DataBundle,
    DataSource,
    canonical_dataset_name,
    from_arrays,
    image_statistics,
    load_dataset,
    make_loaders,
)
from cifarnets.errors import ConfigError, ConfigTypeError, DataError, DataNotFoundError

# SVHN's .mat files are written and read with scipy (the test extra has it); only those tests need it.
needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="scipy not installed")


def _same(a: DataBundle, b: DataBundle) -> None:
    for part in ("train", "val", "test"):
        x, y = getattr(a, part), getattr(b, part)
        assert (x is None) == (y is None)
        if x is not None:
            assert torch.equal(x.images, y.images) and torch.equal(x.labels, y.labels)
    assert (a.mean, a.std, a.classes, a.name) == (b.mean, b.std, b.classes, b.name)


def _reloaded(bundle: DataBundle) -> DataBundle:
    record = json.loads(json.dumps(bundle.source.to_dict()))  # what config.json keeps
    source = DataSource.from_dict(record)
    assert source == bundle.source
    return source.load()


# ---------------------------------------------------------------------- the MNIST family


@pytest.mark.parametrize("name, cls, compress", [("mnist", torchvision.datasets.MNIST, False),
                                                 ("KMNIST", torchvision.datasets.KMNIST, True)])
def test_mnist_family_from_idx_files(tmp_path, name, cls, compress):
    written = write_mnist_like(tmp_path / cls.__name__ / "raw", compress=compress)
    bundle = load_dataset(name, data_dir=tmp_path, split="none")
    assert bundle.name == name.lower() and bundle.classes == tuple(cls.classes) and bundle.in_chans == 1
    assert bundle.train.images.shape == (20, 1, 32, 32) and bundle.test.images.shape == (10, 1, 32, 32)
    assert torch.equal(bundle.train.images[:, 0, 2:30, 2:30], written["train_images"])  # zero-padded 28 -> 32
    assert int(bundle.train.images[:, :, :2].max()) == 0 and int(bundle.train.images[:, :, :, 30:].max()) == 0
    assert torch.equal(bundle.test.labels, written["test_labels"])
    # No preset: the training split's own statistics.
    assert bundle.norm_name == "auto" and (bundle.mean, bundle.std) == image_statistics(bundle.train.images)
    _same(bundle, _reloaded(bundle))


def test_mnist_data_dir_may_be_the_raw_folder_and_default_split_needs_60000(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_mnist_like(raw)
    assert len(load_dataset("mnist", data_dir=raw, split="16:4").val) == 4
    with pytest.raises(DataError, match="50000:10000 adds up to 60000, but MNIST has 20"):
        load_dataset("mnist", data_dir=raw)


def test_fit_pad_resize_none_are_recorded(tmp_path):
    written = write_mnist_like(tmp_path / "KMNIST" / "raw")
    pad = load_dataset("kmnist", data_dir=tmp_path, split="none")
    resized = load_dataset("kmnist", data_dir=tmp_path, split="none", fit="resize")
    kept = load_dataset("kmnist", data_dir=tmp_path, split="none", fit="none")
    assert (pad.source.fit, resized.source.fit, kept.source.fit) == ("pad", "resize", "none")
    assert resized.source.to_dict()["fit"] == "resize" and resized.image_size == (32, 32)
    assert int(resized.train.images[:, :, 0].max()) > 0  # no black frame
    assert not torch.equal(resized.train.images, pad.train.images)
    assert kept.image_size == (28, 28) and torch.equal(kept.train.images[:, 0], written["train_images"])
    _same(resized, _reloaded(resized))


def test_mnist_download_goes_through_torchvision(tmp_path, monkeypatch):
    served = tmp_path / "mirror"
    written = write_mnist_like(served, compress=True)
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", written["resources"])
    no_proxy(monkeypatch)
    target = tmp_path / "data"
    with pytest.raises(DataNotFoundError, match="download=True"):
        load_dataset("mnist", data_dir=target, split="none")
    with serve_directory(served) as url:
        monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [url + "/"])
        bundle = load_dataset("mnist", data_dir=target, split="none", download=True)
    assert (target / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()  # torchvision's layout, extracted
    assert torch.equal(bundle.train.images[:, 0, 2:30, 2:30], written["train_images"])


# ---------------------------------------------------------------------- SVHN


@needs_scipy
def test_svhn_from_mat_files(tmp_path, monkeypatch):
    written = write_svhn(tmp_path)
    monkeypatch.setattr(torchvision.datasets.SVHN, "split_list", written["split_list"])
    bundle = load_dataset("svhn", data_dir=tmp_path, split="15:5", seed=3)
    assert bundle.classes == tuple("0123456789") and bundle.in_chans == 3 and bundle.norm_name == "auto"
    assert torch.equal(bundle.test.images, written["test_images"])  # (32, 32, 3, N) -> (N, 3, 32, 32)
    assert torch.equal(bundle.test.labels, written["test_labels"])  # the file's 10 is the digit 0
    assert int((bundle.test.labels == 0).sum()) == 1
    _same(bundle, _reloaded(bundle))


@needs_scipy
def test_svhn_missing_and_damaged_files(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError, match="train_32x32.mat is not there.*download=True"):
        load_dataset("svhn", data_dir=tmp_path)
    written = write_svhn(tmp_path)
    monkeypatch.setattr(torchvision.datasets.SVHN, "split_list", written["split_list"])
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"its md5 is {md5(path)}"):
        load_dataset("svhn", data_dir=tmp_path, split="none")


# ---------------------------------------------------------------------- folder:PATH


def test_folder_with_val(tmp_path):
    written = write_image_folder(tmp_path / "cinic", {"train": 4, "valid": 2, "test": 3})
    bundle = load_dataset(f"folder:{tmp_path / 'cinic'}", limit=9)
    assert bundle.name == f"folder:{tmp_path / 'cinic'}" and bundle.classes == ("cat", "dog", "frog")
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (9, 6, 9) and bundle.split == (12, 6)
    expected_val = torch.from_numpy(np.stack(written["valid_images"])).permute(0, 3, 1, 2)
    assert torch.equal(bundle.val.images, expected_val) and torch.equal(bundle.val.labels, written["valid_labels"])
    _same(bundle, _reloaded(bundle))
    assert load_dataset(f"folder:{tmp_path / 'cinic'}", split="none").val is None
    with pytest.raises(DataError, match="own val/ folder"):
        load_dataset(f"folder:{tmp_path / 'cinic'}", split="10:2")


def test_folder_without_val_grayscale_and_missing_test_class(tmp_path):
    write_image_folder(tmp_path, {"train": 5}, mode="L", size=(28, 28))
    write_image_folder(tmp_path, {"test": 2}, classes=("cat", "frog"), mode="L", size=(28, 28))
    name = f"folder:{tmp_path}"
    bundle = load_dataset(name)
    assert bundle.val is None and bundle.in_chans == 1 and bundle.image_size == (32, 32)
    assert bundle.test.labels.tolist() == [0, 0, 2, 2]  # train/'s numbering, though dog/ is absent
    assert len(load_dataset(name, split="12:3").val) == 3
    _same(bundle, _reloaded(bundle))


def test_folder_sizes_and_fit(tmp_path):
    write_image_folder(tmp_path, {"train": 2, "test": 1}, size=[(28, 28), (40, 36)])
    name = f"folder:{tmp_path}"
    with pytest.raises(DataError, match="40x36 are larger.*fit='resize'"):
        load_dataset(name)
    with pytest.raises(DataError, match="differ in size.*fit='resize'"):
        load_dataset(name, fit="none")
    bundle = load_dataset(name, fit="resize")
    assert bundle.image_size == (32, 32) and bundle.source.fit == "resize"


def test_folder_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="is not there"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    write_image_folder(tmp_path, {"train": 1})
    with pytest.raises(DataNotFoundError, match="has no test/"):
        load_dataset(f"folder:{tmp_path}")
    write_image_folder(tmp_path, {"test": 1}, classes=("cat", "horse"))
    with pytest.raises(DataError, match="horse.*train/ does not have"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "test" / "horse" / "000.png").unlink()
    (tmp_path / "test" / "horse").rmdir()
    (tmp_path / "test" / "cat" / "000.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="000.png cannot be read as an image"):
        load_dataset(f"folder:{tmp_path}")


def test_folder_name_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert canonical_dataset_name("folder:cinic") == f"folder:{tmp_path.resolve() / 'cinic'}"
    assert canonical_dataset_name("Folder:~/x") == f"folder:{Path('~/x').expanduser().resolve()}"
    with pytest.raises(DataError, match="names no folder"):
        canonical_dataset_name("folder:")
    assert {"mnist", "kmnist", "svhn"} <= set(DATASETS)


# ---------------------------------------------------------------------- the record


def test_old_load_args_still_load_and_record_is_json():
    old = {"name": "Synthetic", "data_dir": None, "split": "default", "seed": 0, "norm": None, "download": False,
           "limit": 100}  # a config.json of before DataSource (the CLI's data_args)
    source = DataSource.from_dict(old)
    assert source.name == "synthetic" and source.fit == "pad"
    a = source.load()
    assert a.source == source and a.norm_name == "synthetic"  # presets stay the default where there is one
    _same(a, _reloaded(a))
    pair = DataSource("synthetic", split=(4000, 1000), norm=([0.5] * 3, [0.25] * 3), synthetic_sizes=[5000, 10])
    assert pair.split == "4000:1000" and pair.norm == ((0.5,) * 3, (0.25,) * 3)
    assert DataSource.from_dict(json.loads(json.dumps(pair.to_dict()))) == pair
    assert dataclasses.replace(pair, download=True) == DataSource(**{**pair.to_dict(), "download": True})
    assert set(pair.to_dict()) == {"name", "data_dir", "split", "seed", "norm", "download", "limit",
                                   "synthetic_sizes", "fit"}


@pytest.mark.parametrize("record, message", [
    ({"name": "cifar10", "limt": 5}, "'limt' .*did you mean 'limit'"),
    ({"split": "none"}, "needs a 'name'"),
    ({"name": "cifar10", "limit": "5"}, "limit must be a positive int"),
    ({"name": "cifar10", "seed": 1.5}, "seed must be an int"),
    ({"name": "cifar10", "download": "yes"}, "download must be True or False"),
    ({"name": "cifar10", "split": 5}, "split must be 'TRAIN:VAL'"),
    ({"name": "cifar10", "synthetic_sizes": [1]}, "synthetic_sizes must be"),
    ({"name": "cifar10", "fit": 3}, "fit must be one of pad, resize, none"),
    ({"name": "cifar10", "norm": 0.5}, "norm must be a preset name"),
    ({"name": 10}, "name must be a data set name"),
])
def test_from_dict_is_strict(record, message):
    with pytest.raises(ConfigError, match=message):
        DataSource.from_dict(record)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "cifar1"}, "unknown data set 'cifar1'; did you mean 'cifar10' or 'cifar100'"),
    ({"name": "kuzushiji-mnst"}, "did you mean 'kmnist'"),
    ({"name": "cifar10", "limit": 0}, "limit must be a positive number"),
    ({"name": "cifar10", "split": "40000-10000"}, "write it as 'TRAIN:VAL'"),
    ({"name": "cifar10", "fit": "crop"}, "'crop' is not one of pad, resize, none"),
    ({"name": "cifar10", "norm": "cifar10_seed00"}, "did you mean 'cifar10_seed000'"),
    ({"name": "mnist", "norm": "cifar10"}, "3 channel.*mnist images have 1.*'auto'"),
    ({"name": "cifar10", "synthetic_sizes": (0, 10)}, "two positive sizes"),
])
def test_bad_fields_fail_before_any_file_is_read(kwargs, message):
    with pytest.raises(DataError, match=message):
        DataSource(**kwargs, data_dir="/nonexistent")


def test_describe_and_data_dir_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = DataSource("CIFAR-10", data_dir="data", split="40000:10000", norm="cifar10_seed000", limit=1000)
    assert source.data_dir == str(tmp_path / "data")
    assert source.describe() == (f"CIFAR-10: split 40000:10000 (seed 0), norm cifar10_seed000, limit 1000, "
                                 f"from {tmp_path / 'data'}")
    assert DataSource("mnist", fit="resize").describe() == "MNIST: split default (seed 0), fit resize"


# ---------------------------------------------------------------------- in-memory arrays


def test_from_arrays_layouts_and_dtypes():
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(12) % 3
    a = from_arrays(train=(nhwc, labels), test=(nhwc[:6], labels[:6]), classes=["a", "b", "c"])
    assert a.train.images.shape == (12, 3, 8, 8) and torch.equal(a.train.images[3].permute(1, 2, 0),
                                                                 torch.from_numpy(nhwc[3]))
    assert a.classes == ("a", "b", "c") and a.val is None and a.norm_name == "auto"
    assert (a.mean, a.std) == image_statistics(a.train.images)
    floats = torch.from_numpy(nhwc).permute(0, 3, 1, 2).double() / 255  # NCHW floats in [0, 1]
    b = from_arrays(train=(floats, torch.from_numpy(labels)), test=(floats[:6], labels[:6]),
                               val=(floats[6:], labels[6:]), norm="none", name="mine")
    assert torch.equal(b.train.images, a.train.images) and b.name == "mine" and b.split == (12, 6)
    assert (b.mean, b.std) == ((0.0,) * 3, (1.0,) * 3) and b.classes == ("0", "1", "2")
    gray = from_arrays(train=(nhwc[..., 0], labels), test=(nhwc[:2, ..., 0], labels[:2]))
    assert gray.in_chans == 1 and gray.image_size == (8, 8)
    images, batch_labels = next(iter(make_loaders(gray, batch_size=4).train))
    assert images.shape == (4, 1, 8, 8) and images.dtype == torch.float32 and batch_labels.shape == (4,)


@pytest.mark.parametrize("train, test, kwargs, kind, message", [
    ("x", None, {}, ConfigTypeError, "train must be an \\(images, labels\\) pair"),
    ((np.zeros((4, 3, 8, 8)) + 2.0, [0, 1, 0, 1]), None, {}, DataError, "run from 2 to 2.*divide"),
    ((np.zeros((4, 3, 8, 8), dtype=np.int64), [0, 1, 0, 1]), None, {}, DataError, "got dtype torch.int64"),
    ((np.zeros((4, 5, 8, 8), dtype=np.uint8), [0, 1, 0, 1]), None, {}, DataError, "no channel axis of 1 or 3"),
    ((np.zeros((4, 8), dtype=np.uint8), [0, 1, 0, 1]), None, {}, DataError, "must be \\(N, C, H, W\\).*got shape"),
    ((np.zeros((4, 3, 8, 8), dtype=np.uint8), [0, 1, 0]), None, {}, DataError, "3 labels for 4 images"),
    ((np.zeros((4, 3, 8, 8), dtype=np.uint8), [0.0, 1, 0, 1]), None, {}, DataError, "integer class indices"),
    ((np.zeros((4, 3, 8, 8), dtype=np.uint8), [0, 1, 0, 1]), (np.zeros((2, 3, 9, 9), dtype=np.uint8), [0, 1]), {},
     DataError, "test images are .*\\(3, 9, 9\\) but train images \\(3, 8, 8\\)"),
    ((np.zeros((4, 3, 8, 8), dtype=np.uint8), [0, 1, 0, 5]), None, {"classes": ["a", "b"]}, DataError,
     "up to 5"),
])
def test_from_arrays_errors_name_the_argument(train, test, kwargs, kind, message):
    default = (np.zeros((2, 3, 8, 8), dtype=np.uint8), [0, 1])
    with pytest.raises(kind, match=message):
        from_arrays(train=train, test=test if test is not None else default, **kwargs)


def test_arrays_source_cannot_reload():
    x = np.zeros((4, 1, 8, 8), dtype=np.uint8)
    x[0] = 9
    bundle = from_arrays(train=(x, [0, 1, 0, 1]), test=(x, [0, 1, 0, 1]))
    assert bundle.source.name == "arrays" and bundle.source.to_dict()["name"] == "arrays"
    with pytest.raises(DataError, match="cannot be reloaded.*pass it again.*resume\\(folder, data=bundle\\)"):
        DataSource.from_dict(bundle.source.to_dict()).load()
