"""Data sets, splits, normalisation presets and a fast device-side input pipeline.

The five reports train on CIFAR-10 (the ResNet-18 and AlexNet/VGG reports) and CIFAR-100 (the coursework reports) with
random-crop + flip augmentation, per-channel normalisation and, for some, a held-out
validation split. This package loads those data sets (plus Fashion-MNIST, available offline, MNIST, KMNIST,
SVHN, any ImageFolder tree as ``"folder:PATH"``, images already in memory with
`from_arrays`, and an in-memory SYNTHETIC set for runs without any download) as
uint8 tensors, and serves them with `DeviceLoader`, which augments whole batches on the
training device. `DataSource` describes where a data set comes from and how it is loaded; a
run records it so that it can load the same images again.

Example:
    >>> from cifarnets.data import load_dataset, make_loaders
    >>> bundle = load_dataset("synthetic", split="4500:500")
    >>> loaders = make_loaders(bundle, batch_size=100)
    >>> images, labels = next(iter(loaders.train))
    >>> tuple(images.shape), len(loaders.train)
    ((100, 3, 32, 32), 45)

For the real thing: ``load_dataset("cifar10", split="40000:10000", norm="cifar10_seed000",
download=True)`` (the ResNet-18 report) or ``load_dataset("cifar100", split="47500:2500")`` (the coursework reports).
"""

from .arrays import from_arrays
from .augment import crop_flip, normalize, random_crop_flip, sample_crop_flip
from .containers import DataBundle, ImageSet
from .datasets import (
    FASHION_MNIST_SYSTEM_DIR,
    DatasetChecksumError,
    DatasetCorruptError,
    DatasetDownloadError,
    DatasetError,
    DatasetNotFoundError,
    UnknownDatasetError,
    load_cifar,
    load_fashion_mnist,
)
from .fit import FITS, INPUT_SIZE
from .folder import load_folder
from .idx import load_kmnist, load_mnist
from .loader import DeviceLoader, Loaders, make_loaders
from .names import DATASETS, FOLDER_PREFIX, canonical_dataset_name, default_data_dir
from .normalization import DEFAULT_NORMALIZATION, NORMALIZATION, Normalization, image_statistics, resolve_normalization
from .seeding import derive_seed, make_generator
from .source import ARRAYS, DataSource, load_dataset
from .splits import DEFAULT_SPLIT, parse_split, split_indices, stratified_sample
from .svhn import load_svhn
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_images, make_synthetic_splits

__all__ = [
    "ARRAYS",
    "from_arrays",
    "derive_seed",
    "make_generator",
    "DATASETS",
    "DataSource",
    "FITS",
    "FOLDER_PREFIX",
    "INPUT_SIZE",
    "DEFAULT_NORMALIZATION",
    "DEFAULT_SPLIT",
    "FASHION_MNIST_SYSTEM_DIR",
    "NORMALIZATION",
    "SYNTHETIC_CLASSES",
    "DataBundle",
    "DatasetChecksumError",
    "DatasetCorruptError",
    "DatasetDownloadError",
    "DatasetError",
    "DatasetNotFoundError",
    "UnknownDatasetError",
    "canonical_dataset_name",
    "DeviceLoader",
    "ImageSet",
    "Loaders",
    "Normalization",
    "crop_flip",
    "default_data_dir",
    "load_cifar",
    "load_dataset",
    "load_fashion_mnist",
    "load_folder",
    "load_kmnist",
    "load_mnist",
    "load_svhn",
    "image_statistics",
    "make_loaders",
    "make_synthetic_images",
    "make_synthetic_splits",
    "normalize",
    "parse_split",
    "random_crop_flip",
    "resolve_normalization",
    "sample_crop_flip",
    "split_indices",
    "stratified_sample",
]
