"""CIFAR-10/100 loading through torchvision's real code, on small files in the real format.

No CIFAR download is possible on the build machine, so each test writes a miniature
data set in the original pickle layout (data_helpers.write_cifar10/100) and points
torchvision's md5 lists at it. Download is tested against a loopback HTTP server.
"""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch
import torchvision
from data_helpers import make_tar_gz, md5, no_proxy, patch_checksums, serve_directory, write_cifar10, write_cifar100

from cifarnets.data import (
    DatasetChecksumError,
    DatasetCorruptError,
    DatasetDownloadError,
    DatasetError,
    DatasetNotFoundError,
    load_cifar,
    load_dataset,
)

CIFAR10 = torchvision.datasets.CIFAR10
CIFAR100 = torchvision.datasets.CIFAR100


@pytest.fixture
def cifar10(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path / "data")
    patch_checksums(monkeypatch, CIFAR10, written)
    return written


@pytest.fixture
def cifar100(tmp_path, monkeypatch):
    written = write_cifar100(tmp_path / "data")
    patch_checksums(monkeypatch, CIFAR100, written)
    return written


def test_cifar10_loads_pixels_labels_and_names_exactly(cifar10):
    train, test, classes = load_cifar("cifar10", cifar10["folder"].parent)
    assert train.images.dtype == torch.uint8 and train.images.shape == (100, 3, 32, 32)
    assert train.images.is_contiguous()
    # Row-major R, G, B planes in the file must come back as (C, H, W) unchanged.
    assert torch.equal(train.images, cifar10["train_images"])
    assert torch.equal(train.labels, cifar10["train_labels"])
    assert torch.equal(test.images, cifar10["test_images"])
    assert torch.equal(test.labels, cifar10["test_labels"])
    assert classes == cifar10["classes"]


def test_cifar100_uses_fine_labels(cifar100):
    train, test, classes = load_cifar("cifar100", cifar100["folder"].parent)
    assert train.images.shape == (200, 3, 32, 32) and len(test) == 100
    assert torch.equal(train.images, cifar100["train_images"])
    assert torch.equal(train.labels, cifar100["train_labels"])
    assert torch.equal(test.labels, cifar100["test_labels"])
    assert classes == cifar100["classes"] and len(classes) == 100


def test_load_dataset_cifar10_bundle(cifar10):
    bundle = load_dataset("cifar10", data_dir=cifar10["folder"].parent, split="80:20", seed=3)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (80, 20, 30)
    assert bundle.num_classes == 10 and bundle.in_chans == 3 and not bundle.is_synthetic
    assert bundle.mean == (0.4914, 0.4822, 0.4465) and bundle.std == (0.2470, 0.2435, 0.2616)
    assert torch.bincount(bundle.val.labels, minlength=10).tolist() == [2] * 10
    # Every image keeps its own label (the label is stamped into pixel (0, 0, 0)).
    for part in (bundle.train, bundle.val, bundle.test):
        assert torch.equal(part.images[:, 0, 0, 0].long(), part.labels)
    seed000 = load_dataset("cifar10", data_dir=cifar10["folder"].parent, split="none", norm="cifar10_seed000")
    assert seed000.val is None and len(seed000.train) == 100
    assert seed000.std == (0.2023, 0.1994, 0.2010)


def test_load_dataset_cifar100_bundle(cifar100):
    bundle = load_dataset("cifar-100", data_dir=cifar100["folder"].parent, split=(100, 100))
    assert bundle.name == "cifar100" and bundle.num_classes == 100
    assert torch.bincount(bundle.val.labels, minlength=100).tolist() == [1] * 100
    assert bundle.mean == (0.5071, 0.4865, 0.4409)


def test_data_dir_may_point_at_the_extracted_folder(cifar10):
    train, _, _ = load_cifar("cifar10", cifar10["folder"])
    assert len(train) == 100


def test_wrong_split_sizes_say_what_they_add_to(cifar10):
    with pytest.raises(ValueError, match=r"adds up to 90.*has 100 training images"):
        load_dataset("cifar10", data_dir=cifar10["folder"].parent, split="80:10")


def test_missing_files_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "download=True" in message and "--download" in message and "--data-dir" in message
    assert isinstance(info.value, FileNotFoundError)  # callers may catch the builtin


def test_missing_single_file_is_named(cifar10):
    (cifar10["folder"] / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing: data_batch_4"):
        load_cifar("cifar10", cifar10["folder"].parent)


def test_checksum_mismatch_names_file_expected_and_found(cifar10):
    path = cifar10["folder"] / "data_batch_2"
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DatasetChecksumError) as info:
        load_cifar("cifar10", cifar10["folder"].parent)
    message = str(info.value)
    assert str(path) in message
    assert cifar10["train_list"][1][1] in message  # expected
    assert md5(path) in message  # found
    assert "Delete" in message and "download=True" in message


def test_real_torchvision_checksums_reject_test_files(tmp_path):
    # Without patching, torchvision's published md5s must reject home-made files.
    write_cifar10(tmp_path)
    with pytest.raises(DatasetChecksumError, match="c99cafc152244af753f735de768cd75f"):
        load_cifar("cifar10", tmp_path)


def test_truncated_pickle_names_the_file(cifar10, monkeypatch):
    path = cifar10["folder"] / "data_batch_3"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    # Give the truncated file a matching md5, so that the failure is the unpickling itself.
    train_list = [list(e) for e in cifar10["train_list"]]
    train_list[2][1] = md5(path)
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    with pytest.raises(DatasetCorruptError) as info:
        load_cifar("cifar10", cifar10["folder"].parent)
    assert str(path) in str(info.value) and "download" in str(info.value)
    assert info.value.__cause__ is not None  # chained, not swallowed


def test_wrong_pickle_content_is_reported(cifar10, monkeypatch):
    path = cifar10["folder"] / "test_batch"
    path.write_bytes(pickle.dumps({"not": "cifar"}, protocol=2))
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(path)]])
    with pytest.raises(DatasetCorruptError, match="not in the CIFAR layout"):
        load_cifar("cifar10", cifar10["folder"].parent)


def test_download_fetches_verifies_extracts_and_loads(tmp_path, monkeypatch):
    no_proxy(monkeypatch)
    source = tmp_path / "server"
    written = write_cifar10(source)
    archive = make_tar_gz(written["folder"], source / "cifar-10-python.tar.gz")
    shutil.rmtree(written["folder"])
    patch_checksums(monkeypatch, CIFAR10, written)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))
    target = tmp_path / "downloaded"
    with serve_directory(source) as base_url:
        monkeypatch.setattr(CIFAR10, "url", f"{base_url}/cifar-10-python.tar.gz")
        bundle = load_dataset("cifar10", data_dir=target, download=True, split="none")
    assert (target / "cifar-10-python.tar.gz").is_file()
    assert (target / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert torch.equal(bundle.train.images, written["train_images"])
    assert torch.equal(bundle.test.labels, written["test_labels"])
    # A second call finds the verified files and does not need the server.
    again = load_dataset("cifar10", data_dir=target, download=True, split="none")
    assert torch.equal(again.train.images, bundle.train.images)


def test_download_repairs_a_damaged_file_from_the_archive(tmp_path, monkeypatch):
    source = tmp_path / "data"
    written = write_cifar10(source)
    archive = make_tar_gz(written["folder"], source / "cifar-10-python.tar.gz")
    patch_checksums(monkeypatch, CIFAR10, written)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/unreachable.tar.gz")  # must not be needed
    (written["folder"] / "data_batch_1").write_bytes(b"garbage")
    train, _, _ = load_cifar("cifar10", source, download=True)
    assert torch.equal(train.images, written["train_images"])


def test_unextracted_archive_hint(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path / "src")
    make_tar_gz(written["folder"], tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DatasetNotFoundError, match="not extracted"):
        load_cifar("cifar10", tmp_path)


def test_download_http_error_is_clear(tmp_path, monkeypatch):
    no_proxy(monkeypatch)
    (tmp_path / "empty").mkdir()
    with serve_directory(tmp_path / "empty") as base_url:
        monkeypatch.setattr(CIFAR10, "url", f"{base_url}/cifar-10-python.tar.gz")
        with pytest.raises(DatasetDownloadError) as info:
            load_cifar("cifar10", tmp_path / "target", download=True)
    assert "Could not download CIFAR-10" in str(info.value) and base_url in str(info.value)
    assert isinstance(info.value, DatasetError) and info.value.__cause__ is not None


def test_download_with_wrong_archive_md5_is_clear(tmp_path, monkeypatch):
    no_proxy(monkeypatch)
    source = tmp_path / "server"
    written = write_cifar10(source)
    make_tar_gz(written["folder"], source / "cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "tgz_md5", "0" * 32)
    with serve_directory(source) as base_url:
        monkeypatch.setattr(CIFAR10, "url", f"{base_url}/cifar-10-python.tar.gz")
        with pytest.raises(DatasetDownloadError, match=r"does not match its published md5.*expected 0{32}"):
            load_cifar("cifar10", tmp_path / "target", download=True)


def test_unknown_dataset_name_lists_choices():
    with pytest.raises(ValueError, match="cifar10.*cifar100.*fashion_mnist.*synthetic"):
        load_dataset("imagenet")


def test_download_of_an_archive_that_is_not_gzip_is_clear(tmp_path, monkeypatch):
    no_proxy(monkeypatch)
    source = tmp_path / "server"
    source.mkdir()
    archive = source / "cifar-10-python.tar.gz"
    archive.write_bytes(b"<html>a captive portal, not an archive</html>")
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))
    with serve_directory(source) as base_url:
        monkeypatch.setattr(CIFAR10, "url", f"{base_url}/cifar-10-python.tar.gz")
        with pytest.raises(DatasetDownloadError, match="cannot be unpacked"):
            load_cifar("cifar10", tmp_path / "target", download=True)
