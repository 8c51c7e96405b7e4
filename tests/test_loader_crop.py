"""DeviceLoader crops by row runs: the same pixels as `crop_flip`'s gather, batch by batch."""

from __future__ import annotations

import pytest
import torch

from cifarnets.data import DeviceLoader, ImageSet, crop_flip, normalize
from cifarnets.data import loader as loader_module
from cifarnets.errors import DataError


def _reference(loader: DeviceLoader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches as the loader made them before: index, `crop_flip`, cast, normalise, change the layout."""
    indices, params = loader.epoch_plan(epoch)
    out = []
    for b in range(len(loader)):
        lo = b * loader.batch_size
        idx = indices[lo:lo + loader.batch_size]
        images = loader.data.images.index_select(0, idx)
        if params is not None:
            p = params[lo:lo + loader.batch_size]
            images = crop_flip(images, p[:, 0], p[:, 1], p[:, 2].bool(), padding=loader.padding)
        images = normalize(images, loader.mean, loader.std, dtype=loader.dtype)
        if loader.channels_last:
            images = images.to(memory_format=torch.channels_last)
        out.append((images, loader.data.labels.index_select(0, idx)))
    return out


@pytest.mark.parametrize("shape", [(45, 3, 8, 8), (23, 1, 7, 12)])
@pytest.mark.parametrize("padding", [0, 1, 4])
@pytest.mark.parametrize("batch_size, world_size, rank, drop_last", [(8, 1, 0, False), (1, 1, 0, False),
                                                                     (6, 3, 2, False), (5, 2, 1, True)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("per_chunk", [1, 3, None])
@pytest.mark.parametrize("source_kind", ["split", "chunk"])
def test_row_run_crops_equal_the_gather(monkeypatch, shape, padding, batch_size, world_size, rank, drop_last,
                                        channels_last, per_chunk, source_kind):
    """Chunks of 1 and 3 batches (the last one partial) and the default (one chunk for these sizes), crops
    read from the whole split padded once and from each chunk padded as it is made."""
    if padding >= min(shape[2:]):
        pytest.skip("padding must be smaller than the image")
    if source_kind == "chunk":
        monkeypatch.setattr(loader_module, "_SPLIT_SOURCE_BYTES", 0)
    if per_chunk is not None:
        monkeypatch.setattr(loader_module, "_CHUNK_BYTES", per_chunk * batch_size * shape[1] * shape[2] * shape[3] * 4)
    gen = torch.Generator().manual_seed(sum(shape) + padding)
    data = ImageSet(torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen), torch.arange(shape[0]))
    loader = DeviceLoader(data, batch_size, train=True, mean=(0.5,) * shape[1], std=(0.25,) * shape[1],
                          padding=padding, seed=3, rank=rank, world_size=world_size, drop_last=drop_last,
                          channels_last=channels_last)
    assert loader.batches_per_chunk == (per_chunk or loader.batches_per_chunk)
    assert loader.crop_source_kind() == source_kind
    for epoch in (0, 7):
        ours = list(loader.batches(epoch))
        theirs = _reference(loader, epoch)
        assert len(ours) == len(theirs) == len(loader)
        for (x, y), (xr, yr) in zip(ours, theirs):
            assert torch.equal(y, yr)
            assert torch.equal(x, xr)
            assert x.stride() == xr.stride()
        # Mirrored and shifted crops both occur, so both index paths were compared.
        _, params = loader.epoch_plan(epoch)
        if padding and len(params) > 4:
            assert params[:, 2].any() and not params[:, 2].all()
    for start in (1, 2):
        tail = list(loader.batches(7, start=start))
        reference = _reference(loader, 7)[start:]
        assert len(tail) == len(reference) and all(torch.equal(a[0], b[0]) for a, b in zip(tail, reference))


def test_a_chunk_is_a_few_mib_of_whole_batches():
    data = ImageSet(torch.zeros(1000, 3, 32, 32, dtype=torch.uint8), torch.zeros(1000, dtype=torch.int64))
    assert DeviceLoader(data, 64, train=True, mean=(0.5,) * 3, std=(0.25,) * 3).batches_per_chunk == 5
    assert DeviceLoader(data, 500, train=True, mean=(0.5,) * 3, std=(0.25,) * 3).batches_per_chunk == 1


def _small_loader(**kwargs) -> DeviceLoader:
    gen = torch.Generator().manual_seed(5)
    data = ImageSet(torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=gen), torch.arange(40))
    return DeviceLoader(data, 8, train=True, mean=(0.5,) * 3, std=(0.25,) * 3, padding=2, seed=1, **kwargs)


@pytest.mark.parametrize("channels_last", [False, True])
def test_an_edit_of_the_images_reaches_the_next_chunk(monkeypatch, channels_last):
    """The split's padded copy is made once; an in-place edit (even mid-epoch) or a new split is seen,
    never served stale."""
    monkeypatch.setattr(loader_module, "_CHUNK_BYTES", 8 * 3 * 8 * 8 * 4)  # one batch per chunk
    loader = _small_loader(channels_last=channels_last)
    assert loader.crop_source_kind() == "split"
    list(loader.batches(0))
    batches = loader.batches(1)
    next(batches)
    loader.data.images[:20] = 255 - loader.data.images[:20]  # in place, between chunks
    rest = list(batches)
    reference = _reference(loader, 1)[1:]
    assert len(rest) == len(reference)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(rest, reference))
    loader.data = ImageSet(torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8), torch.arange(40))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(loader.batches(2), _reference(loader, 2)))


def test_a_split_that_changes_size_during_an_epoch_is_refused(monkeypatch):
    monkeypatch.setattr(loader_module, "_CHUNK_BYTES", 8 * 3 * 8 * 8 * 4)
    loader = _small_loader()
    batches = loader.batches(0)
    next(batches)
    loader.data = ImageSet(torch.zeros(30, 3, 8, 8, dtype=torch.uint8), torch.arange(30))
    with pytest.raises(DataError, match="went from 40 to 30 during an epoch"):
        list(batches)


def test_the_split_copy_is_bounded_and_larger_splits_pad_per_chunk(monkeypatch):
    loader = _small_loader()
    padded = 2 * 40 * 3 * 12 * 12  # images and mirrors, 2 px of padding each side, uint8
    monkeypatch.setattr(loader_module, "_SPLIT_SOURCE_BYTES", padded)
    assert loader.crop_source_kind() == "split"
    monkeypatch.setattr(loader_module, "_SPLIT_SOURCE_BYTES", padded - 1)
    assert loader.crop_source_kind() == "chunk"
    assert _small_loader(augment=False).crop_source_kind() is None
    cifar = ImageSet(torch.zeros(50_000, 3, 32, 32, dtype=torch.uint8), torch.zeros(50_000, dtype=torch.int64))
    monkeypatch.undo()
    assert DeviceLoader(cifar, 128, train=True, mean=(0.5,) * 3, std=(0.25,) * 3).crop_source_kind() == "split"
