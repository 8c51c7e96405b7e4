"""DeviceLoader: shapes, normalisation, epoch determinism (exact resume), DDP sharding."""

from __future__ import annotations

import pytest
import torch

from cifarnets.data import DeviceLoader, ImageSet, load_dataset, make_loaders


def _indexed_set(n: int, channels: int = 3, size: int = 8) -> ImageSet:
    """Images whose label is their own index, so a batch's labels say which images it holds."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=gen)
    return ImageSet(images, torch.arange(n))


MEAN3, STD3 = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _epoch(loader: DeviceLoader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_train_batches_shapes_dtypes_and_coverage():
    data = _indexed_set(103)
    loader = DeviceLoader(data, 10, train=True, mean=MEAN3, std=STD3)
    batches = list(loader)
    assert len(loader) == len(batches) == 11
    assert [len(y) for _, y in batches] == [10] * 10 + [3]
    x, y = batches[0]
    assert x.shape == (10, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    seen = torch.cat([y for _, y in batches])
    assert torch.equal(seen.sort().values, torch.arange(103))  # a permutation of the set
    assert not torch.equal(seen, torch.arange(103))  # shuffled
    dropped = DeviceLoader(data, 10, train=True, mean=MEAN3, std=STD3, drop_last=True)
    assert len(dropped) == len(list(dropped)) == 10


def test_eval_batches_are_ordered_unaugmented_and_exactly_normalised():
    data = _indexed_set(25)
    loader = DeviceLoader(data, 10, train=False, mean=MEAN3, std=STD3)
    xs, ys = zip(*loader)
    assert torch.equal(torch.cat(ys), torch.arange(25))
    x = torch.cat(xs)
    mean = torch.tensor(MEAN3).view(1, 3, 1, 1)
    std = torch.tensor(STD3).view(1, 3, 1, 1)
    torch.testing.assert_close(x * std + mean, data.images.float() / 255, rtol=0, atol=1e-6)


def test_epochs_differ_and_are_reproducible_after_resume():
    data = _indexed_set(64)
    uninterrupted = DeviceLoader(data, 16, train=True, mean=MEAN3, std=STD3, seed=7)
    run = [_epoch(uninterrupted, e) for e in range(3)]
    assert not _same(run[0], run[1])
    # A fresh process resuming at epoch 2 (different global RNG state) sees the same batches.
    torch.manual_seed(999)
    torch.rand(1000)
    resumed = DeviceLoader(data, 16, train=True, mean=MEAN3, std=STD3, seed=7)
    assert _same(_epoch(resumed, 2), run[2])
    # Another seed gives another order.
    other = DeviceLoader(data, 16, train=True, mean=MEAN3, std=STD3, seed=8)
    assert not _same(_epoch(other, 2), run[2])


def test_iteration_advances_the_epoch_and_set_epoch_is_idempotent():
    data = _indexed_set(32)
    a = DeviceLoader(data, 8, train=True, mean=MEAN3, std=STD3)
    first, second = [y for _, y in a], [y for _, y in a]  # no set_epoch: epochs 0 then 1
    assert a.epoch == 2
    b = DeviceLoader(data, 8, train=True, mean=MEAN3, std=STD3)
    b.set_epoch(1)
    assert all(torch.equal(p, q) for p, q in zip([y for _, y in b], second))
    assert not all(torch.equal(p, q) for p, q in zip(first, second))


def test_global_rng_is_untouched():
    loader = DeviceLoader(_indexed_set(32), 8, train=True, mean=MEAN3, std=STD3)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(loader)
    assert torch.equal(torch.rand(3), expected)


def test_batches_from_a_start_index_are_the_epoch_tail():
    loader = DeviceLoader(_indexed_set(50), 8, train=True, mean=MEAN3, std=STD3)
    full = [(x, y) for x, y in loader.batches(4)]
    tail = [(x, y) for x, y in loader.batches(4, start=3)]
    assert _same(tail, full[3:])


def test_augmentation_changes_train_images_only():
    data = _indexed_set(40, size=32)
    plain = DeviceLoader(data, 40, train=True, augment=False, mean=MEAN3, std=STD3)
    aug = DeviceLoader(data, 40, train=True, mean=MEAN3, std=STD3)
    (xp, yp), (xa, ya) = next(iter(plain)), next(iter(aug))
    assert torch.equal(yp, ya)  # augmentation does not change the order
    assert not torch.equal(xp, xa)
    # Zero padding appears as the normalised black pixel, -mean/std.
    black = (-torch.tensor(MEAN3) / torch.tensor(STD3)).view(3, 1, 1)
    assert bool((xa.isclose(black.expand_as(xa[0]).unsqueeze(0), atol=1e-5)).any())


@pytest.mark.parametrize("world_size, n, drop_last", [(3, 100, False), (3, 100, True), (4, 64, False), (2, 7, False)])
def test_ddp_shards_are_disjoint_equal_sized_and_cover_the_epoch(world_size, n, drop_last):
    data = _indexed_set(n)
    loaders = [
        DeviceLoader(
            data, 5, train=True, mean=MEAN3, std=STD3, rank=r, world_size=world_size, drop_last=drop_last, seed=1
        )
        for r in range(world_size)
    ]
    for loader in loaders:
        loader.set_epoch(3)
    shards = [torch.cat([y for _, y in loader]) for loader in loaders]
    assert len({len(loader) for loader in loaders}) == 1  # same number of steps on every rank
    assert len({len(s) for s in shards}) == 1
    everything = torch.cat(shards)
    if drop_last:
        # the tail that does not divide among ranks goes, then each rank's incomplete batch
        assert len(everything) == (n // world_size) // 5 * 5 * world_size
        assert len(everything.unique()) == len(everything)  # disjoint
    else:
        assert torch.equal(everything.unique(), torch.arange(n))  # complete
        assert len(everything) - n == (-n) % world_size  # only the padding repeats


def test_ddp_ranks_together_see_the_single_process_epoch():
    data = _indexed_set(60, size=32)
    single = DeviceLoader(data, 60, train=True, mean=MEAN3, std=STD3, seed=2)
    x1, y1 = next(iter(single))
    by_index = {int(i): x1[k] for k, i in enumerate(y1)}
    for rank in range(3):
        loader = DeviceLoader(data, 20, train=True, mean=MEAN3, std=STD3, seed=2, rank=rank, world_size=3)
        x, y = next(iter(loader))
        for k, i in enumerate(y):  # same image with the same crop and flip
            assert torch.equal(x[k], by_index[int(i)])


def test_ddp_eval_shards_are_exact():
    data = _indexed_set(10)
    shards = [
        torch.cat([y for _, y in DeviceLoader(data, 3, train=False, mean=MEAN3, std=STD3, rank=r, world_size=3)])
        for r in range(3)
    ]
    assert [len(s) for s in shards] == [4, 3, 3]
    assert torch.equal(torch.cat(shards).sort().values, torch.arange(10))  # nothing counted twice


def test_channels_last_and_low_precision():
    loader = DeviceLoader(
        _indexed_set(8), 4, train=True, mean=MEAN3, std=STD3, channels_last=True, dtype=torch.bfloat16
    )
    x, _ = next(iter(loader))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)


def test_argument_errors_are_clear():
    data = _indexed_set(8)
    with pytest.raises(ValueError, match="rank"):
        DeviceLoader(data, 4, train=True, mean=MEAN3, std=STD3, rank=2, world_size=2)
    with pytest.raises(ValueError, match="no batch"):
        DeviceLoader(data, 16, train=True, mean=MEAN3, std=STD3, drop_last=True)
    with pytest.raises(ValueError, match="3-channel"):
        DeviceLoader(data, 4, train=True, mean=(0.5,), std=(0.5,))
    with pytest.raises(TypeError, match="ImageSet"):
        DeviceLoader(data.images, 4, train=True, mean=MEAN3, std=STD3)


def test_an_empty_split_says_so_and_does_not_blame_drop_last():
    from cifarnets.data.loader import EmptySplitError

    empty = _indexed_set(8).subset([])
    for drop_last in (False, True):
        with pytest.raises(EmptySplitError, match="no images") as err:
            DeviceLoader(empty, 4, train=True, mean=MEAN3, std=STD3, drop_last=drop_last)
        assert "drop_last" not in str(err.value)
    # Too few images for one batch with drop_last=True: the fix named is the one that applies.
    with pytest.raises(EmptySplitError, match="set drop_last=False"):
        DeviceLoader(_indexed_set(8), 16, train=True, mean=MEAN3, std=STD3, drop_last=True)


def test_make_loaders_from_bundle():
    bundle = load_dataset("synthetic", split="4500:500")
    loaders = make_loaders(bundle, 100, eval_batch_size=250)
    assert (len(loaders.train), len(loaders.val), len(loaders.test)) == (45, 2, 4)
    assert loaders.train.augment and not loaders.test.augment and not loaders.val.shuffle
    assert loaders.train.mean == bundle.mean
    no_val = make_loaders(load_dataset("synthetic"), 100)
    assert no_val.val is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_cpu_and_do_not_sync():
    data = _indexed_set(256, size=32)
    cpu = DeviceLoader(data, 64, train=True, mean=MEAN3, std=STD3, seed=5)
    gpu = DeviceLoader(data, 64, train=True, mean=MEAN3, std=STD3, seed=5, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu_batches = [(x, y) for x, y in gpu.batches(0)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for (xc, yc), (xg, yg) in zip(cpu.batches(0), gpu_batches):
        assert xg.device.type == "cuda"
        assert torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xc, xg.cpu(), rtol=0, atol=1e-6)
