"""Test helpers for cifarnets.data: small files in the real CIFAR and IDX formats, a loopback
HTTP server, and a chi-square test without scipy.

The CIFAR files are written the way the originals were: Python 2 pickles (protocol 2) whose
dict keys and strings are Python 2 ``str`` objects, so that ``pickle.load(f, encoding="bytes")``
shows the real keys (b'data', b'labels', b'fine_labels', ...) and torchvision's
``encoding="latin1"`` load sees them as ``str``, exactly as with the downloaded files.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


class Py2Str(bytes):
    """A Python 2 ``str``: pickled with the SHORT_BINSTRING/BINSTRING opcodes."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table we can extend
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2str(self, obj: Py2Str) -> None:
        data = bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[Py2Str] = save_py2str


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _batch(images: np.ndarray, labels: list[int], label_key: str, extra: dict) -> dict:
    # images: (N, 3, 32, 32) uint8 -> rows of 3072 = R plane, G plane, B plane, row-major.
    entry = {
        Py2Str(b"batch_label"): Py2Str(b"testing batch 1 of 1"),
        Py2Str(label_key.encode()): labels,
        Py2Str(b"data"): np.ascontiguousarray(images.reshape(len(images), 3072)),
        Py2Str(b"filenames"): [Py2Str(f"img_{i:05d}.png".encode()) for i in range(len(images))],
    }
    entry.update(extra)
    return entry


def _images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    # Stamp the label into a pixel so a test can check images and labels stay paired.
    images[:, 0, 0, 0] = labels
    return images


def write_cifar10(root: Path, per_class_per_batch: int = 2, test_per_class: int = 3, seed: int = 0) -> dict:
    """A miniature CIFAR-10 (``cifar-10-batches-py/`` under `root`) in the real layout.

    Returns the expected train/test images (N, 3, 32, 32) and labels, and the files' md5s
    in the shape of torchvision's ``train_list``/``test_list``/``meta``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = [], []
    for b in range(1, 6):
        labels = rng.permutation(np.repeat(np.arange(10), per_class_per_batch))
        images = _images(rng, labels)
        (folder / f"data_batch_{b}").write_bytes(py2_pickle(_batch(images, [int(v) for v in labels], "labels", {})))
        train_images.append(images)
        train_labels.extend(int(v) for v in labels)
    labels = rng.permutation(np.repeat(np.arange(10), test_per_class))
    test_images = _images(rng, labels)
    (folder / "test_batch").write_bytes(py2_pickle(_batch(test_images, [int(v) for v in labels], "labels", {})))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {
        Py2Str(b"num_cases_per_batch"): 10 * per_class_per_batch,
        Py2Str(b"label_names"): [Py2Str(n.encode()) for n in names],
        Py2Str(b"num_vis"): 3072,
    }
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return {
        "folder": folder,
        "train_images": torch.from_numpy(np.concatenate(train_images)),
        "train_labels": torch.tensor(train_labels),
        "test_images": torch.from_numpy(test_images),
        "test_labels": torch.from_numpy(labels).long(),
        "classes": tuple(names),
        "train_list": [[f"data_batch_{b}", md5(folder / f"data_batch_{b}")] for b in range(1, 6)],
        "test_list": [["test_batch", md5(folder / "test_batch")]],
        "meta": {"filename": "batches.meta", "key": "label_names", "md5": md5(folder / "batches.meta")},
    }


def write_cifar100(root: Path, train_per_class: int = 2, test_per_class: int = 1, seed: int = 0) -> dict:
    """A miniature CIFAR-100 (``cifar-100-python/train, test, meta``) in the real layout."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"folder": folder}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        fine = rng.permutation(np.repeat(np.arange(100), per_class))
        images = _images(rng, fine)
        extra = {Py2Str(b"coarse_labels"): [int(v) // 5 for v in fine]}
        (folder / split).write_bytes(py2_pickle(_batch(images, [int(v) for v in fine], "fine_labels", extra)))
        out[f"{split}_images"] = torch.from_numpy(images)
        out[f"{split}_labels"] = torch.from_numpy(fine).long()
    fine_names = [f"fine_{i:03d}" for i in range(100)]
    meta = {
        Py2Str(b"fine_label_names"): [Py2Str(n.encode()) for n in fine_names],
        Py2Str(b"coarse_label_names"): [Py2Str(f"coarse_{i:02d}".encode()) for i in range(20)],
    }
    (folder / "meta").write_bytes(py2_pickle(meta))
    out.update(
        classes=tuple(fine_names),
        train_list=[["train", md5(folder / "train")]],
        test_list=[["test", md5(folder / "test")]],
        meta={"filename": "meta", "key": "fine_label_names", "md5": md5(folder / "meta")},
    )
    return out


def patch_checksums(monkeypatch, cls: type, written: dict) -> None:
    """Point torchvision's md5 lists for `cls` at the files a test wrote."""
    monkeypatch.setattr(cls, "train_list", written["train_list"])
    monkeypatch.setattr(cls, "test_list", written["test_list"])
    monkeypatch.setattr(cls, "meta", written["meta"])


def make_tar_gz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format, *args):  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    # A short poll interval keeps shutdown() from waiting the default half second.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def no_proxy(monkeypatch) -> None:
    """Make urllib talk to the loopback server directly, whatever proxy the machine sets."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    """An IDX file (uint8) as in the MNIST/Fashion-MNIST distribution."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def chi2_sf(stat: float, dof: int) -> float:
    """P(X >= stat) for X ~ chi-square(dof): the regularised upper incomplete gamma function."""
    return float(
        torch.special.gammaincc(
            torch.tensor(dof / 2.0, dtype=torch.float64), torch.tensor(stat / 2.0, dtype=torch.float64)
        )
    )


def pixel_moments(images: torch.Tensor) -> tuple[float, float]:
    """Exact mean and (unbiased) std of uint8 pixels on the [0, 1] scale, via a 256-bin histogram."""
    counts = torch.bincount(images.reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum()
    mean = (counts * values).sum() / n
    var = (counts * (values - mean) ** 2).sum() / (n - 1)
    return mean.item(), var.sqrt().item()


def needs_fashion_mnist():
    """Mark for tests that read Debian's real Fashion-MNIST files.

    They skip where the package is absent, except under ``make test`` (and so CI), which
    installs it and sets ``CIFARNETS_REQUIRE_FASHION_MNIST=1``: there a missing data set fails.
    """
    import os

    import pytest

    from cifarnets.data import FASHION_MNIST_SYSTEM_DIR

    missing = not FASHION_MNIST_SYSTEM_DIR.is_dir()
    if missing and os.environ.get("CIFARNETS_REQUIRE_FASHION_MNIST") == "1":
        raise RuntimeError(f"{FASHION_MNIST_SYSTEM_DIR} is missing: apt-get install dataset-fashion-mnist")
    return pytest.mark.skipif(
        missing, reason=f"{FASHION_MNIST_SYSTEM_DIR} absent (apt-get install dataset-fashion-mnist)")


def write_mnist_like(raw: Path, n_train: int = 20, n_test: int = 10, compress: bool = False, seed: int = 0,
                     size: int = 28) -> dict:
    """The four IDX files of an MNIST-style set (MNIST, KMNIST, Fashion-MNIST) in `raw`.

    Returns the images (N, size, size) and labels of each split, and the md5 of each file as
    torchvision's ``resources`` list needs them (for the gzipped form)."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compress else ""
    out: dict = {"resources": []}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        images[:, 0, 0] = labels  # stamp the label, to check images and labels stay paired
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = write_idx(raw / f"{prefix}-{kind}-ubyte{suffix}", array, compress)
            out["resources"].append((path.name, md5(path)))
        key = "train" if prefix == "train" else "test"
        out[f"{key}_images"], out[f"{key}_labels"] = torch.from_numpy(images), torch.from_numpy(labels).long()
    return out


def write_svhn(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    """``train_32x32.mat`` and ``test_32x32.mat`` as SVHN publishes them: X is (32, 32, 3, N) uint8,
    y is (N, 1) with the digit 0 stored as 10. Returns the expected (N, 3, 32, 32) images, labels
    0..9 and torchvision's ``split_list`` with these files' md5s."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out: dict = {"split_list": {}}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        digits = np.arange(n) % 10
        path = root / f"{split}_32x32.mat"
        stored = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": stored})
        out["split_list"][split] = [f"http://127.0.0.1:9/{path.name}", path.name, md5(path)]
        out[f"{split}_images"], out[f"{split}_labels"] = torch.from_numpy(images), torch.from_numpy(digits).long()
    return out


def write_image_folder(root: Path, parts: dict, classes=("cat", "dog", "frog"), size=(32, 32), mode: str = "RGB",
                       seed: int = 0) -> dict:
    """An ImageFolder tree (CINIC-10's layout): ``root/<part>/<class>/<i>.png`` with `parts` mapping
    each part (``"train"``, ``"test"``, ``"val"``) to images per class. PNG is lossless, so the
    returned (N, C, H, W) uint8 images (in ImageFolder's order: classes sorted, files sorted) are
    exactly what a reader must get back. `size` may be a list of sizes, used in turn."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sizes = size if isinstance(size, list) else [size]
    out: dict = {}
    k = 0
    for part, per_class in parts.items():
        images, labels = [], []
        for label, name in enumerate(sorted(classes)):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = sizes[k % len(sizes)]
                k += 1
                shape = (h, w) if mode == "L" else (h, w, 3)
                pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
                images.append(pixels)
                labels.append(label)
        out[f"{part}_images"] = images
        out[f"{part}_labels"] = torch.tensor(labels)
    return out
