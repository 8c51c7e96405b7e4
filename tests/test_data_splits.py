"""Seeded, class-stratified splits at the reports' real sizes, and `limit`."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cifarnets.data import DEFAULT_SPLIT, load_dataset, parse_split, split_indices, stratified_sample


def _balanced_labels(n: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    # CIFAR's training labels: n / num_classes of each class, in no particular order.
    gen = torch.Generator().manual_seed(seed)
    return (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]


@pytest.mark.parametrize(
    "report, num_classes, split, train_per_class, val_per_class",
    [
        ("the ResNet-18 report, CIFAR-10", 10, "40000:10000", 4000, 1000),
        ("the coursework reports, CIFAR-100", 100, "47500:2500", 475, 25),
        ("the AlexNet/VGG report, CIFAR-10", 10, None, 5000, 0),
    ],
)
def test_report_splits_have_their_sizes_and_are_stratified(report, num_classes, split, train_per_class, val_per_class):
    labels = _balanced_labels(50000, num_classes)
    sizes = parse_split(split, 50000)
    train, val = split_indices(labels, sizes, seed=0)
    assert torch.bincount(labels[train], minlength=num_classes).tolist() == [train_per_class] * num_classes
    if val_per_class:
        assert torch.bincount(labels[val], minlength=num_classes).tolist() == [val_per_class] * num_classes
        combined = torch.cat([train, val])
        assert torch.equal(combined.sort().values, torch.arange(50000))  # disjoint and complete
    else:
        assert val is None and len(train) == 50000


def test_default_splits_are_the_reports():
    assert DEFAULT_SPLIT["cifar10"] == (40000, 10000)
    assert DEFAULT_SPLIT["cifar100"] == (47500, 2500)


def test_split_is_seeded_and_deterministic():
    labels = _balanced_labels(50000, 10)
    a = split_indices(labels, (40000, 10000), seed=0)[1]
    b = split_indices(labels, (40000, 10000), seed=0)[1]
    c = split_indices(labels, (40000, 10000), seed=1)[1]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_split_is_pinned_across_versions():
    # A report's split must stay the same images in every future cifarnets version: a
    # change to the seeding or sampling code that moves them is a breaking change.
    val = split_indices(torch.arange(50000) % 100, (47500, 2500), seed=0)[1]
    assert val[:8].tolist() == [5, 11, 23, 25, 26, 50, 56, 92]


def test_split_does_not_depend_on_global_rng():
    labels = _balanced_labels(1000, 10)
    torch.manual_seed(1)
    a = split_indices(labels, (900, 100), seed=5)[1]
    torch.manual_seed(2)
    torch.rand(100)
    b = split_indices(labels, (900, 100), seed=5)[1]
    assert torch.equal(a, b)


@pytest.mark.parametrize("spec", ["40000:10000", " 40000 : 10000 ", (40000, 10000), [40000, 10000], "40000/10000"])
def test_parse_split_accepts_forms(spec):
    assert parse_split(spec, 50000) == (40000, 10000)


@pytest.mark.parametrize("spec", [None, "none", "None", "all", "50000:0"])
def test_parse_split_no_validation(spec):
    assert parse_split(spec, 50000) is None


def test_parse_split_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match=r"adds up to 49000.*50000 training images"):
        parse_split("40000:9000", 50000, "CIFAR-10")
    with pytest.raises(ValueError, match="TRAIN:VAL"):
        parse_split("80%", 50000)
    with pytest.raises(TypeError):
        parse_split(40000, 50000)
    with pytest.raises(ValueError, match="positive"):
        parse_split("0:50000", 50000)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=1, max_value=60), min_size=2, max_size=12),
    frac=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_stratified_sample_is_proportional_on_any_label_set(counts, frac, seed):
    labels = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    k = round(frac * len(labels))
    idx = stratified_sample(labels, k, seed=seed)
    assert len(idx) == k and len(idx.unique()) == k
    got = torch.bincount(labels[idx], minlength=len(counts)).double()
    exact = torch.tensor(counts, dtype=torch.float64) * k / len(labels)
    assert bool(((got - exact).abs() < 1).all())  # largest-remainder rounding


def test_limit_is_a_stratified_subset_of_train_only():
    full = load_dataset("synthetic", split="4000:1000")
    small = load_dataset("synthetic", split="4000:1000", limit=1005)
    assert len(small.train) == 1005 and len(small.val) == 1000 and len(small.test) == 1000
    counts = small.train.class_counts(10)
    assert int(counts.max() - counts.min()) <= 1
    assert torch.equal(small.val.images, full.val.images)
    # The subset is drawn from the split's train part: every image is one of full.train's.
    full_keys = {bytes(img.flatten().numpy()) for img in full.train.images}
    assert all(bytes(img.flatten().numpy()) in full_keys for img in small.train.images)


def test_limit_errors():
    with pytest.raises(ValueError, match="between 1 and the 5000 training images"):
        load_dataset("synthetic", limit=6000)
