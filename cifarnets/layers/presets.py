"""The one table of per-channel normalisation presets, shared by the models and the data.

It lives in the lowest layer so that a model card (`cifarnets.models.ModelCfg.norm`) can
name a preset and take its mean and std from here, while `cifarnets.data` (a higher layer)
uses the same table for its loaders: one set of numbers, no copy to drift.

The reports disagree on CIFAR-10's std: the ResNet-18 report ("Hyperparameter Tuning and Custom Batch
Normalization for ResNet-18") uses (0.2023, 0.1994, 0.2010), a value copied across many
CIFAR repositories that is *not* the data's standard deviation (it is close to the mean of
the per-image stds); the AlexNet/VGG report uses the true per-channel std over all training pixels,
(0.2470, 0.2435, 0.2616). Both are kept, under names that say which is which.

All values are on the [0, 1] pixel scale and are the statistics of the *full* training set
(50,000 CIFAR images, 60,000 Fashion-MNIST images), not of a train/val split of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownNameError

__all__ = ["CLASS_NAMES", "NORMALIZATION", "Normalization", "get_normalization"]


@dataclass(frozen=True)
class Normalization:
    """A named per-channel mean and std, and where the numbers come from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str


NORMALIZATION: dict[str, Normalization] = {
    "cifar10": Normalization(
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        "CIFAR-10 training set, true per-channel mean and std (the AlexNet/VGG report).",
    ),
    "cifar10_seed000": Normalization(
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
        "CIFAR-10 mean with the widely copied std (0.2023, 0.1994, 0.2010) that the ResNet-18 report uses; "
        "not the data's std (see 'cifar10').",
    ),
    "cifar100": Normalization(
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        "CIFAR-100 training set, the standard published values (not recomputed here: CIFAR-100 "
        "cannot be downloaded on the build machine).",
    ),
    "fashion_mnist": Normalization(
        (0.2190,),
        (0.3318,),
        "Fashion-MNIST training set as cifarnets serves it: zero-padded to 32x32. Computed from "
        "the real files (tests/test_data_fashion_mnist.py checks it).",
    ),
    "fashion_mnist_28": Normalization(
        (0.2860,),
        (0.3530,),
        "Fashion-MNIST training set at its original 28x28 (the value most code copies); use "
        "'fashion_mnist' for the padded 32x32 images cifarnets serves.",
    ),
    "synthetic": Normalization(
        (0.3778, 0.3681, 0.3761),
        (0.1946, 0.1872, 0.1926),
        "cifarnets' SYNTHETIC data set: the default 5,000 training images of seed 0 (checked by "
        "tests/test_data_synthetic.py).",
    ),
}


def get_normalization(name: str) -> Normalization:
    """The preset `name` of `NORMALIZATION`, or an `UnknownNameError` (a ``ValueError``) that lists the valid names.

    Example:
        >>> get_normalization("cifar10_seed000").std
        (0.2023, 0.1994, 0.201)
    """
    key = name.lower().replace("-", "_")
    if key not in NORMALIZATION:
        raise UnknownNameError(f"unknown normalisation preset {name!r}; choose one of {sorted(NORMALIZATION)}")
    return NORMALIZATION[key]


# Class names by label index, for the models' pretrained_cfg ``label_names``.
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "cifar100": tuple("""
        apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
        castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
        elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
        man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
        pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
        skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
        tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()),
}
