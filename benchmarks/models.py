"""Speed of the zoo, measured side by side in one run and printed as ratios.

    python benchmarks/models.py                 # CPU, small batches (a few minutes on 2 cores)
    python benchmarks/models.py --device cuda --batch-size 256

1. DetachedBatchNorm2d vs nn.BatchNorm2d, forward + backward, at CIFAR-sized activations.
   Target: ratio <= ~1.0 (it must cost no more than batch norm, within noise).
2. Forward + backward time of every zoo model on one batch.
3. Construction time of vgg106 against one forward pass of it: building must not run the
   network (no shape inference by dummy forwards); a build that did would cost at least one
   forward on top of initialising the weights.

Timings use torch.utils.benchmark (warm-up, repeated blocks, median); the two norms are
timed alternately so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils import benchmark

import cifarnets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fwd_bwd(module: nn.Module, x: torch.Tensor, min_run_time: float) -> float:
    """Median seconds of one forward + backward of `module` on `x`."""
    def step() -> None:
        out = module(x)
        out.float().sum().backward()

    step()  # warm-up (and cuDNN autotune)
    timer = benchmark.Timer(stmt="step()", globals={"step": step})
    return timer.blocked_autorange(min_run_time=min_run_time).median


def bench_norms(device: torch.device, batch: int, min_run_time: float, rounds: int = 3) -> None:
    print("\n1. DetachedBatchNorm2d vs nn.BatchNorm2d, forward + backward (train mode)")
    print(f"{'shape':>22} {'BatchNorm2d ms':>15} {'Detached ms':>12} {'ratio':>7}")
    for chans, size in [(32, 32), (64, 32), (128, 16), (512, 4)]:
        x = torch.randn(batch, chans, size, size, device=device, requires_grad=True)
        norms = {"bn": nn.BatchNorm2d(chans).to(device), "detached": cifarnets.DetachedBatchNorm2d(chans).to(device)}
        times: dict[str, list[float]] = {"bn": [], "detached": []}
        for _ in range(rounds):  # alternate, so drift in machine load hits both
            for key, norm in norms.items():
                times[key].append(time_fwd_bwd(norm, x, min_run_time))
        bn_t, det_t = statistics.median(times["bn"]), statistics.median(times["detached"])
        print(f"{str(tuple(x.shape)):>22} {bn_t * 1e3:15.3f} {det_t * 1e3:12.3f} {det_t / bn_t:7.2f}")


def bench_models(device: torch.device, batch: int, min_run_time: float, names: list[str]) -> None:
    print(f"\n2. Zoo models, forward + backward, batch {batch}, {device.type}")
    print(f"{'model':>14} {'params':>12} {'ms/batch':>10} {'images/s':>10}")
    for name in names:
        torch.manual_seed(0)
        model = cifarnets.create(name).to(device)
        x = torch.randn(batch, 3, 32, 32, device=device)
        y = torch.randint(0, model.num_classes, (batch,), device=device)

        def loss_module(inputs: torch.Tensor, model: nn.Module = model, y: torch.Tensor = y) -> torch.Tensor:
            return F.cross_entropy(model(inputs), y)

        seconds = time_fwd_bwd(loss_module, x, min_run_time)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:>14} {params:12,} {seconds * 1e3:10.1f} {batch / seconds:10.0f}")


def bench_construction(device: torch.device, repeats: int = 5) -> None:
    print("\n3. Building vgg106 vs one forward pass of it (building must not run the network)")
    build, forward = [], []
    x = torch.randn(1, 3, 32, 32, device=device)
    for _ in range(repeats):  # alternate the two so machine noise hits both
        start = time.perf_counter()
        model = cifarnets.create("vgg106").to(device).eval()
        _sync(device)
        build.append(time.perf_counter() - start)
        with torch.no_grad():
            model(x)  # warm-up of this instance
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
        forward.append(time.perf_counter() - start)
    b, f = statistics.median(build), statistics.median(forward)
    print(f"build {b * 1e3:.1f} ms (allocating and initialising 1.2 M weights), one forward of one image "
          f"{f * 1e3:.1f} ms; ratio build / forward = {b / f:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement")
    parser.add_argument("--models", nargs="*", default=None, help="zoo models (default: all)")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads")
    bench_norms(device, args.batch_size, args.min_run_time)
    bench_models(device, args.batch_size, args.min_run_time, args.models or cifarnets.list_models())
    bench_construction(device)


if __name__ == "__main__":
    main()
