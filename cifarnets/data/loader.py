"""`DeviceLoader`: batches straight from a uint8 data set that lives on the training device.

No worker processes, no PIL, no per-image Python: an epoch is one permutation and one draw of
crop/flip parameters, made on the CPU from a generator seeded by (seed, epoch) and copied to
the device once; each chunk of a few batches is then a gather of crop rows from the split
padded and mirrored once (`_CropSource`; a split too large for that copy pads each chunk
instead) and one normalising multiply-add on the device, with no host synchronisation (the
airbench recipe, STYLE.md).

Determinism is the contract the trainer relies on for exact resume: epoch ``e``'s
batches depend only on (data, `seed`, ``e``, `rank`, `world_size`, `batch_size`), never on the
global RNG or on what ran before, so a run resumed at an epoch boundary sees the same batches
as one that never stopped. Because the draws are made on the CPU, they are also the same on
CPU and GPU.

Distributed training: every rank draws the same permutation and takes every
``world_size``-th position of it (as ``DistributedSampler`` does). For training
(`even_shards`) each rank gets the same number of samples: with ``drop_last=False`` the
permutation is padded by repeating its first entries; with ``drop_last=True`` its tail is
dropped. Evaluation loaders shard without padding by default so that no test image is
counted twice: shards then differ by at most one image (and ranks by at most one batch), so
sum correct counts after the loop rather than all-reducing per batch.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

import torch

from ..errors import DataError
from .augment import apply_normalization, crop_flip, normalization_affine, pixel_row_affine
from .containers import DataBundle, ImageSet
from .errors import DataArgumentError, DataTypeError
from .seeding import make_generator

__all__ = ["DeviceLoader", "EmptySplitError", "Loaders", "make_loaders"]

# Normalised images made per set of ops (`DeviceLoader.batches_per_chunk`): 4 MiB is 341
# CIFAR images in float32, 5 batches of 64.
_CHUNK_BYTES = 4 << 20
# Largest padded + mirrored copy of a training split kept for cropping (`DeviceLoader.crop_source_kind`);
# a larger split pads each chunk as it is made. CIFAR-10's 50,000 images take 480 MB.
_SPLIT_SOURCE_BYTES = 1 << 30


EmptySplitError = DataError  # kept name; the kind is cifarnets.errors.DataError


Device = Union[str, torch.device, None]


class DeviceLoader:
    """Shuffled, augmented, normalised batches of an `ImageSet`, produced on its device.

    Args:
        data: the split to serve; moved to `device` once, at construction.
        batch_size: images per batch (per rank).
        train: training mode: shuffle, augment and `even_shards` default to this.
        mean, std: per-channel normalisation on the [0, 1] scale (`DataBundle.mean/std`).
        augment: random crop with `padding` px of zeros + horizontal flip, distributed as
            torchvision's ``RandomCrop(H, padding)`` + ``RandomHorizontalFlip()``.
        padding: crop padding in pixels (4 in every seed report).
        drop_last: drop the last incomplete batch (and, with `even_shards`, the tail of the
            permutation that does not divide among ranks) instead of keeping it (padding).
        seed: seed of shuffling and augmentation; combined with the epoch number.
        device: where batches are made; default the data's device.
        rank, world_size: this process's shard for DistributedDataParallel.
        channels_last: yield images in ``torch.channels_last`` memory format.
        dtype: floating dtype of the yielded images.
        shuffle: default `train`.
        even_shards: give every rank the same number of batches (needed when each step
            all-reduces gradients); default `train`.

    Iterating yields ``(images, labels)``: `dtype` (B, C, H, W) normalised, and int64 (B,),
    both on `device`. ``set_epoch(e)`` chooses the epoch the next iteration serves; each
    iteration then advances it by one, so forgetting `set_epoch` does not repeat an epoch.

    Example:
        >>> from cifarnets.data import load_dataset
        >>> b = load_dataset("synthetic")
        >>> loader = DeviceLoader(b.train, 500, train=True, mean=b.mean, std=b.std, seed=0)
        >>> loader.set_epoch(3)
        >>> x, y = next(iter(loader))
        >>> tuple(x.shape), x.dtype, y.dtype, len(loader)
        ((500, 3, 32, 32), torch.float32, torch.int64, 10)
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        *,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Optional[bool] = None,
        padding: int = 4,
        drop_last: bool = False,
        seed: int = 0,
        device: Device = None,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        shuffle: Optional[bool] = None,
        even_shards: Optional[bool] = None,
    ) -> None:
        if not isinstance(data, ImageSet):
            raise DataTypeError(f"DeviceLoader serves an ImageSet (e.g. bundle.train); got {type(data).__name__}.")
        if batch_size <= 0:
            raise DataArgumentError(f"batch_size must be positive; got {batch_size}.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataArgumentError(f"need 0 <= rank < world_size; got rank={rank}, world_size={world_size}.")
        if padding < 0:
            raise DataArgumentError(f"padding must be non-negative; got {padding}.")
        if not dtype.is_floating_point:
            raise DataArgumentError(f"dtype must be a floating dtype; got {dtype}.")
        self.data = data.to(device) if device is not None else data
        self.device = self.data.device
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.augment = self.train if augment is None else bool(augment)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.even_shards = self.train if even_shards is None else bool(even_shards)
        self.padding = int(padding)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.channels_last = bool(channels_last)
        self.dtype = dtype
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._scale, self._shift = normalization_affine(self.mean, self.std, self.data.images.shape[1], self.device)
        self._pixel_rows = pixel_row_affine(self._scale, self._shift, self.data.images.shape[3])
        self.epoch = 0
        self._split_cache: Optional[tuple[tuple[int, int, int, tuple[int, ...]], _CropSource]] = None
        if len(self.data) == 0:
            raise EmptySplitError(
                "the split has no images (0 of them); check the data set and its split/limit (e.g. --limit larger "
                "than 0, a val part that is not empty)")
        if self.num_samples == 0 or len(self) == 0:
            fix = "lower batch_size or set drop_last=False" if self.drop_last else "lower batch_size"
            raise EmptySplitError(
                f"{len(self.data)} images with batch_size={batch_size}, world_size={world_size} and "
                f"drop_last={drop_last} leave rank {rank} no batch; {fix}."
            )

    def __repr__(self) -> str:
        return (
            f"DeviceLoader(n={len(self.data)}, batch_size={self.batch_size}, batches={len(self)}, train={self.train}, "
            f"augment={self.augment}, device={self.device}, rank={self.rank}/{self.world_size}, epoch={self.epoch})"
        )

    # ---- sizes -------------------------------------------------------------------------

    @property
    def num_samples(self) -> int:
        """Samples this rank serves per epoch (padding repeats included)."""
        n, ws = len(self.data), self.world_size
        if not self.even_shards:
            return len(range(self.rank, n, ws))
        return n // ws if self.drop_last else math.ceil(n / ws)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    # ---- epochs ------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Serve epoch `epoch` on the next iteration (call before each epoch, as with DistributedSampler)."""
        if epoch < 0:
            raise DataArgumentError(f"epoch must be non-negative; got {epoch}.")
        self.epoch = int(epoch)

    def epoch_plan(self, epoch: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """This rank's sample order for `epoch` and its crop/flip parameters, on the CPU.

        Returns ``(indices int64 (num_samples,), params int64 (num_samples, 3) or None)``,
        the columns of `params` being (top, left, flip). For inspection and tests; iteration
        uses the same plan.
        """
        n, ws = len(self.data), self.world_size
        gen = make_generator(self.seed, "epoch", epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        if self.even_shards and ws > 1:
            if self.drop_last:
                order = order[: (n // ws) * ws]
            elif n % ws:
                repeats = math.ceil((ws - n % ws) / n)
                order = torch.cat([order] + [order] * repeats)[: math.ceil(n / ws) * ws]
        params = None
        if self.augment:
            # Drawn for every position of the global order, then sharded like the order, so
            # that the ranks together see exactly the single-process epoch.
            size = (order.numel(),)
            top = torch.randint(0, 2 * self.padding + 1, size, generator=gen)
            left = torch.randint(0, 2 * self.padding + 1, size, generator=gen)
            flip = torch.randint(0, 2, size, generator=gen)
            params = torch.stack([top, left, flip], dim=1)[self.rank :: ws]
        return order[self.rank :: ws], params

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch = epoch + 1
        return self.batches(epoch)

    def batches(self, epoch: Optional[int] = None, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch` (default: the current one, without advancing it), from batch `start`.

        Example:
            >>> import torch
            >>> s = ImageSet(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.arange(10))
            >>> loader = DeviceLoader(s, 4, train=True, mean=(0.0,), std=(1.0,))
            >>> [len(y) for _, y in loader.batches(epoch=5, start=1)]  # batches 1 and 2 of epoch 5
            [4, 2]
        """
        epoch = self.epoch if epoch is None else int(epoch)
        indices, params = self.epoch_plan(epoch)
        images_at_start = len(self.data)  # the plan's (and the split copy's) number of images
        per_chunk = self.batches_per_chunk
        chunk = per_chunk * self.batch_size
        kind = self.crop_source_kind()
        source, starts = None, None
        if params is not None and kind is not None:
            if kind == "split":
                source = self._split_source()
                slots = indices
            else:
                source = _CropSource(chunk, self.data.images.shape[1:], self.padding, False, self.data.images.dtype,
                                     self.device)
                slots = (torch.arange(indices.numel()) - start * self.batch_size) % chunk
            starts, params = source.starts(slots, params), None
            buffers = source.buffers(chunk)
        # One host-to-device copy per epoch, from pinned memory so it does not block the host;
        # every per-chunk slice below is a view on the device.
        if self.device.type == "cuda":
            indices = indices.pin_memory()
            params = params.pin_memory() if params is not None else None
            starts = starts.pin_memory() if starts is not None else None
        indices = indices.to(self.device, non_blocking=True)
        if params is not None:
            params = params.to(self.device, non_blocking=True)
        if starts is not None:
            starts = starts.to(self.device, non_blocking=True)
        end = min(len(self) * self.batch_size, indices.numel())
        for first in range(start, len(self), per_chunk):
            lo, hi = first * self.batch_size, min((first + per_chunk) * self.batch_size, end)
            with _one_cpu_thread(self.device):
                if len(self.data) != images_at_start:
                    raise DataError(
                        f"the split's images went from {images_at_start} to {len(self.data)} during an epoch; "
                        "replace loader.data between epochs, not while iterating")
                idx = indices[lo:hi]
                labels = self.data.labels.index_select(0, idx)
                if source is not None and starts is not None:
                    if kind == "split":
                        source = self._split_source()  # the same one unless the images were edited
                    else:
                        source.fill(0, self.data.images.index_select(0, idx))
                    images = source.crops(starts[lo:hi], buffers)
                else:
                    images = self.data.images.index_select(0, idx)
                    if params is not None:
                        p = params[lo:hi]
                        images = crop_flip(images, p[:, 0], p[:, 1], p[:, 2].bool(), padding=self.padding)
                images = self._normalize(images)
            for b in range(0, hi - lo, self.batch_size):
                yield images[b : b + self.batch_size], labels[b : b + self.batch_size]

    @property
    def batches_per_chunk(self) -> int:
        """Batches made together, as one set of ops whose result the batches are views of.

        A few MiB of images at a time (`_CHUNK_BYTES`): inside a training step on a CPU, each
        op of a batch cost two to three times what it costs back to back (caches and freshly
        mapped memory after the step's own buffers), so making several batches per set of ops
        halves the loader's time per step there (docs/performance.md, "Overhead around the
        step"). Values do not depend on it.
        """
        _, c, h, w = self.data.images.shape
        per_image = c * h * w * self.dtype.itemsize
        return max(1, _CHUNK_BYTES // (per_image * self.batch_size))

    # ---- crop + flip as row copies ---------------------------------------------------------

    def crop_source_kind(self) -> Optional[str]:
        """How this loader crops: ``"split"``, ``"chunk"``, or None (no augmentation, or MPS: `crop_flip`).

        ``"split"``: the whole split, padded and mirrored once in the served layout, when that
        copy is at most `_SPLIT_SOURCE_BYTES` (CIFAR-10's 50,000 training images: 480 MB).
        ``"chunk"``: larger splits pad and mirror each chunk's images as it is made. Both give
        the same values (tests/test_loader_crop.py).
        """
        if not self.augment or self.device.type == "mps":  # MPS: overlapping views untested there
            return None
        images = self.data.images
        shape = _CropSource.padded_shape(images.shape[0], images.shape[1:], self.padding, self.channels_last)
        return "split" if math.prod(shape) * images.element_size() <= _SPLIT_SOURCE_BYTES else "chunk"

    def _split_source(self) -> _CropSource:
        """The whole split's crop source, made at the first augmented epoch and kept while the images are unchanged.

        Rebuilt when `data.images` is replaced or edited in place by a torch op (its version
        counter moves), so an edit reaches the next chunk as it did when every batch was
        gathered from the images themselves.
        """
        images = self.data.images
        key = (id(images), images.data_ptr(), images._version, tuple(images.shape))
        cached = self._split_cache
        if cached is None or cached[0] != key:
            source = _CropSource(images.shape[0], images.shape[1:], self.padding, self.channels_last, images.dtype,
                                 self.device)
            block = max(1, _CHUNK_BYTES // max(1, images[0].numel()))
            with _one_cpu_thread(self.device):
                for lo in range(0, images.shape[0], block):
                    source.fill(lo, images[lo : lo + block])
            self._split_cache = cached = (key, source)
        return cached[1]

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return apply_normalization(images, self._scale, self._shift, dtype=self.dtype, memory_format=layout,
                                   pixel_rows=self._pixel_rows)


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run a batch's ops on one intra-op thread on a CPU (the caller's count is restored after).

    A batch is a handful of ops on a few hundred kB, which a second thread barely speeds up
    (0.38 against 0.41 ms for 64 CIFAR images), while every parallel op waits for all its
    threads: on a machine whose cores other processes hold, each of them then waits for a
    descheduled thread, and the batch took 35-70 ms instead of 0.5 (benchmarks/train_throughput.py,
    "batches (DeviceLoader)" at --threads 2, docs/performance.md). The values do not depend on
    the thread count. GPUs and MPS are untouched.
    """
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _CropSource:
    """Zero-padded images followed by their mirrors, in one uint8 tensor that crops are read from by row runs.

    `crop_flip`'s gather computes four indices for every output pixel; on a CPU that was most
    of the cost of a batch (2-5 ms for 64 CIFAR images, 1-3 % of a VGG08 step). A crop's row is
    a contiguous run of the padded image, and a mirrored crop's row is a run of the mirrored
    padded image, so one `index_select` of whole runs makes a chunk's crops, their starts
    (one per image, plus a constant per row) computed for the whole epoch at once on the CPU.
    Same pixels as `crop_flip` (tests/test_loader_crop.py compares them).

    `slots` images, then their mirrors at ``slots + i``; only interiors are written, so the
    borders stay zero. With `channels_last` the tensor is (2 slots, H+2p, W+2p, C): a crop row
    is then W*C contiguous bytes and the crops come out in the NHWC layout the model reads, so
    normalising them needs no transposition (a third of the loader's time before).
    """

    def __init__(self, slots: int, image_shape: Sequence[int], padding: int, channels_last: bool,
                 dtype: torch.dtype, device: torch.device) -> None:
        c, h, w = (int(v) for v in image_shape)
        p = int(padding)
        self.slots, self.shape, self.padding, self.channels_last = int(slots), (c, h, w), p, bool(channels_last)
        hp, wp = h + 2 * p, w + 2 * p
        self.padded = torch.zeros(self.padded_shape(slots, image_shape, padding, channels_last), dtype=dtype,
                                  device=device)
        # Strides, in elements, of an image, a padded row and a pixel; runs are crop rows.
        self.image_stride = c * hp * wp
        self.row_stride, self.pixel_stride, run = (wp * c, c, w * c) if channels_last else (wp, 1, w)
        rows = torch.arange(h) * self.row_stride
        if not channels_last:
            rows = (torch.arange(c).view(c, 1) * (hp * wp) + rows.view(1, h)).view(-1)
        self.row_offsets = rows.view(1, -1).to(device)
        flat = self.padded.view(-1)
        self.runs = flat.as_strided((flat.numel() - run + 1, run), (1, 1))  # runs[i] = flat[i : i + run]

    @staticmethod
    def padded_shape(slots: int, image_shape: Sequence[int], padding: int, channels_last: bool) -> tuple[int, ...]:
        """The shape of `padded`: `slots` padded images and their mirrors, NHWC with `channels_last`."""
        c, h, w = (int(v) for v in image_shape)
        hp, wp = h + 2 * int(padding), w + 2 * int(padding)
        return (2 * int(slots), hp, wp, c) if channels_last else (2 * int(slots), c, hp, wp)

    def fill(self, first: int, images: torch.Tensor) -> None:
        """Write `images` (B, C, H, W) into slots ``first .. first + B - 1`` and their mirrors."""
        b, (_, h, w), p = images.shape[0], self.shape, self.padding
        lo, hi = first, first + b
        if self.channels_last:
            self.padded[lo:hi, p : p + h, p : p + w].copy_(images.permute(0, 2, 3, 1))
            self.padded[self.slots + lo : self.slots + hi].copy_(self.padded[lo:hi].flip(2))
        else:
            self.padded[lo:hi, :, p : p + h, p : p + w].copy_(images)
            self.padded[self.slots + lo : self.slots + hi].copy_(self.padded[lo:hi].flip(3))

    def starts(self, slots: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Where each crop's first row starts in `padded` (int64, CPU).

        Crop ``i`` is of image ``slots[i]`` with (top, left, flip) ``params[i]``.
        """
        top, left, flip = params[:, 0], params[:, 1], params[:, 2]
        # Mirroring the padded image maps column x to (wp - 1 - x): a crop at `left` read
        # right to left is the crop at 2p - left of the mirror, read left to right.
        left = torch.where(flip.bool(), 2 * self.padding - left, left)
        return (slots + flip * self.slots) * self.image_stride + top * self.row_stride + left * self.pixel_stride

    def buffers(self, images: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row offsets and rows for the crops of up to `images` images, reused chunk after chunk by one iterator.

        Only the normalised images leave the loader, so these can be overwritten; reusing them
        spares a fresh, page-faulting allocation per chunk.
        """
        n = images * self.row_offsets.shape[1]
        device = self.padded.device
        return (torch.empty(n, dtype=torch.int64, device=device),
                torch.empty((n, self.runs.shape[1]), dtype=self.padded.dtype, device=device))

    def crops(self, starts: torch.Tensor, buffers: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The crops whose first rows start at `starts` (on the device), written into `buffers`.

        uint8 (B, C, H, W), NHWC-strided with `channels_last`; a view of `buffers`, valid until
        the next call with them.
        """
        b, (c, h, w) = starts.shape[0], self.shape
        n = b * self.row_offsets.shape[1]
        offsets, rows = buffers[0][:n], buffers[1][:n]
        torch.add(starts.view(b, 1), self.row_offsets, out=offsets.view(b, -1))
        torch.index_select(self.runs, 0, offsets, out=rows)
        if self.channels_last:
            return rows.view(b, h, w, c).permute(0, 3, 1, 2)
        return rows.view(b, c, h, w)


@dataclass(frozen=True)
class Loaders:
    """The train, val (None without a val split) and test loaders of a `DataBundle`."""

    train: DeviceLoader
    val: Optional[DeviceLoader]
    test: DeviceLoader


def make_loaders(
    bundle: DataBundle,
    batch_size: int,
    *,
    eval_batch_size: Optional[int] = None,
    device: Device = None,
    augment: bool = True,
    padding: int = 4,
    seed: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Loaders:
    """Train/val/test `DeviceLoader`s for a bundle, normalised with the bundle's mean/std.

    The train loader shuffles and (with `augment`) crops and flips; val and test are served
    in order, unaugmented, in batches of `eval_batch_size` (default ``2 * batch_size``: no
    gradients, so twice the batch fits).

    Example:
        >>> from cifarnets.data import load_dataset
        >>> loaders = make_loaders(load_dataset("synthetic", split="4000:1000"), 128)
        >>> len(loaders.train), len(loaders.val), len(loaders.test)
        (32, 4, 4)
    """
    eval_bs = eval_batch_size if eval_batch_size is not None else 2 * batch_size
    common: dict[str, Any] = dict(
        mean=bundle.mean,
        std=bundle.std,
        device=device,
        rank=rank,
        world_size=world_size,
        channels_last=channels_last,
        dtype=dtype,
        padding=padding,
    )
    train = DeviceLoader(
        bundle.train, batch_size, train=True, augment=augment, seed=seed, drop_last=drop_last, **common
    )
    val = DeviceLoader(bundle.val, eval_bs, train=False, **common) if bundle.val is not None else None
    test = DeviceLoader(bundle.test, eval_bs, train=False, **common)
    return Loaders(train, val, test)
