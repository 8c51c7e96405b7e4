"""Training throughput: how close `cifarnets.train.fit` comes to the bare training step.

For each model, in one run, images per second of

(a) bare:        forward, backward and optimiser step on batches already normalised on the device
                 (the ceiling: no data pipeline, no bookkeeping);
(b) cifarnets:   `fit`'s training phase (second epoch), with everything it does per step: the
                 `DeviceLoader` (shuffle, random crop + flip, normalise on the device),
                 gradient-flow recording, loss/accuracy accounting and the NaN check;
(c) torchvision: the customary loop of CIFAR repositories: a `Dataset` of PIL images with
                 ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()``,
                 ``Normalize()``, a `DataLoader` with worker processes, then the same step.

and the ratios b/a (target >= 0.95: the pipeline and bookkeeping cost < 5 %) and b/c.
All three use the same model, optimiser (`TrainConfig`'s: Adam), batch size, precision and
memory format. Data: the synthetic set (CIFAR-shaped, in memory), so that it runs anywhere.

    python benchmarks/train_throughput.py                        # CPU defaults: a couple of minutes
    python benchmarks/train_throughput.py --device cuda --images 20000 --batch-size 128
    python benchmarks/train_throughput.py --models vgg08 --images 4096 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

import cifarnets
from cifarnets.data import load_dataset
from cifarnets.data.augment import normalize
from cifarnets.train import TrainConfig, build_optimizer, fit
from cifarnets.train.distributed import resolve_device

# name -> (registry name, create() keywords, CPU images per measurement)
MODELS: dict[str, tuple[str, dict[str, Any], int]] = {
    "vgg08": ("vgg08", {}, 2048),
    "vgg38_bn_rc": ("vgg38", {"bn": True, "rc": True}, 512),
    "resnet18": ("resnet18", {}, 192),
}


@dataclass
class Row:
    model: str
    params: int
    bare: float
    cifarnets: float
    torchvision: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _autocast(amp: bool, device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def _build(name: str, kwargs: dict[str, Any], device: torch.device, channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    model = cifarnets.create(name, num_classes=10, **kwargs).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _step_fn(model: nn.Module, config: TrainConfig, device: torch.device, amp: bool) -> Callable:
    optimizer = build_optimizer(model, config, fused=device.type == "cuda" or None)
    criterion = nn.CrossEntropyLoss()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        with _autocast(amp, device):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def bare(name: str, kwargs: dict, data, config: TrainConfig, device: torch.device, amp: bool, cl: bool) -> float:
    """(a): the step alone, on batches prepared in advance."""
    model = _build(name, kwargs, device, cl)
    step = _step_fn(model, config, device, amp)
    images = normalize(data.train.images.to(device), data.mean, data.std)
    if cl:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = data.train.labels.to(device)
    bs = config.batch_size
    batches = [(images[i:i + bs], labels[i:i + bs]) for i in range(0, len(labels), bs)]
    model.train()
    for x, y in batches:  # a warm-up pass, as (b) and (c) have their first epoch
        step(x, y)
    _sync(device)
    start = time.perf_counter()
    for x, y in batches:
        step(x, y)
    _sync(device)
    return len(labels) / (time.perf_counter() - start)


def with_fit(name: str, kwargs: dict, data, config: TrainConfig) -> float:
    """(b): `fit`'s own measurement of its training phase, second epoch (the first warms up)."""
    history = fit(name, data, config.replace(epochs=2), model_kwargs=kwargs)
    return history.epochs[-1].images_per_second


class _PILSet(torch.utils.data.Dataset):
    """CIFAR as torchvision serves it: one PIL image per item, transformed per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC uint8, like CIFAR10.data
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def with_torchvision(name: str, kwargs: dict, data, config: TrainConfig, device: torch.device, amp: bool, cl: bool,
                     workers: int) -> float:
    """(c): DataLoader + PIL transforms, the loop of most CIFAR repositories."""
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(data.mean, data.std)])
    loader = torch.utils.data.DataLoader(
        _PILSet(data.train.images, data.train.labels, transform), batch_size=config.batch_size, shuffle=True,
        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0, drop_last=False)
    model = _build(name, kwargs, device, cl)
    step = _step_fn(model, config, device, amp)
    model.train()

    def epoch() -> float:
        start = time.perf_counter()
        n = 0
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            step(x, y.to(device, non_blocking=True))
            n += y.shape[0]
        _sync(device)
        return n / (time.perf_counter() - start)

    epoch()  # warm-up epoch: worker start-up, allocator, cuDNN autotuning
    return epoch()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--images", type=int, default=None,
                   help="training images per measurement (default: CPU per model, e.g. vgg08 2048; CUDA 20000)")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 on CPU, 128 (seeds 000/004) on CUDA")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of (c) (2: the PyTorch CIFAR tutorial)")
    p.add_argument("--repeats", type=int, default=3,
                   help="measure (a) and (b) this many times, keep the best (one run is within CPU noise)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: CUDA)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC (default: fit's default for the device)")
    p.add_argument("--no-torchvision", action="store_true", help="skip (c)")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    amp = (device.type == "cuda" and torch.cuda.is_bf16_supported()) if args.amp is None else args.amp
    cl = (device.type in ("cuda", "cpu")) if args.channels_last is None else args.channels_last
    bs = args.batch_size or (128 if device.type == "cuda" else 64)
    name_of = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"device {device} ({name_of}), torch {torch.__version__}, {torch.get_num_threads()} threads, batch {bs}, "
          f"bf16 autocast {'on' if amp else 'off'}, channels_last {'on' if cl else 'off'}, "
          f"DataLoader workers {args.workers}", flush=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as fit does outside deterministic mode

    rows: list[Row] = []
    for key in args.models:
        name, kwargs, cpu_images = MODELS[key]
        n = args.images or (20000 if device.type == "cuda" else cpu_images)
        n = max(bs, n // bs * bs)  # whole batches, so that all three loops do the same work
        data = load_dataset("synthetic", synthetic_sizes=(n, 100), split="none")
        config = TrainConfig(batch_size=bs, schedule="none", quiet=True, device=str(device), amp=amp,
                             channels_last=cl, epochs=2)
        a = b = 0.0
        for _ in range(max(1, args.repeats)):  # alternate, so slow phases of a shared machine hit both
            a = max(a, bare(name, kwargs, data, config, device, amp, cl))
            b = max(b, with_fit(name, kwargs, data, config))
        c = math.nan if args.no_torchvision else with_torchvision(name, kwargs, data, config, device, amp, cl,
                                                                   args.workers)
        params = cifarnets.count_params(cifarnets.create(name, num_classes=10, **kwargs))
        rows.append(Row(key, params, a, b, c))
        print(f"  {key}: {n} images, (a) {a:,.0f}  (b) {b:,.0f}  (c) {c:,.0f} img/s", file=sys.stderr, flush=True)

    print()
    print("| model | params | (a) bare step | (b) cifarnets fit | (c) torchvision DataLoader | b/a | b/c |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r.model} | {r.params:,} | {r.bare:,.0f} | {r.cifarnets:,.0f} | {r.torchvision:,.0f} | "
              f"{r.cifarnets / r.bare:.3f} | {r.cifarnets / r.torchvision:.2f} |")
    print("\nimages/s; (b) includes on-device crop+flip, gradient-flow recording and loss/accuracy accounting.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
