"""Intra-op threads on a shared CPU: one training step with 1, 2, ... threads, interleaved step by step.

torch runs one intra-op thread per core by default. On a machine where other processes hold
some of the cores, the threads of one step wait for each other at every layer, and fewer
threads can be much faster (docs/performance.md, "The demo"). This measures it where you are:
the same model, optimiser and batches, the thread count switched before every step
(1, 2, 1, 2, ...), medians and interquartile ranges of the step times, and the ratio.

    python benchmarks/threads.py                               # plain VGG38, batch 100, 1x32x32 (the demo's)
    python benchmarks/threads.py --model vgg08 --threads 1 2 --steps 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import cifarnets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", default="vgg38")
    p.add_argument("--bn", action="store_true")
    p.add_argument("--rc", action="store_true")
    p.add_argument("--in-chans", type=int, default=1, help="1: Fashion-MNIST as the demo trains it")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=6, help="measured steps per thread count (after one warm-up each)")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    flags = {k: True for k in ("bn", "rc") if getattr(args, k)}
    model = cifarnets.create(args.model, in_chans=args.in_chans, num_classes=10, **flags)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(args.batch_size, args.in_chans, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,))
    times: dict[int, list[float]] = {n: [] for n in args.threads}
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{args.model} {'+'.join(flags) or 'plain'}, batch {args.batch_size}x{args.in_chans}x32x32, Adam; "
          f"torch {torch.__version__}, default threads {torch.get_num_threads()}; load average {load}")
    for rnd in range(args.steps + 1):
        for n in args.threads:
            torch.set_num_threads(n)
            start = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if rnd:  # the first round warms up
                times[n].append(time.perf_counter() - start)
    base = statistics.median(times[args.threads[0]])
    for n in args.threads:
        q1, med, q3 = statistics.quantiles(times[n], n=4, method="inclusive")
        print(f"{n} thread(s): {med:.3f} s/step (IQR {q1:.3f}-{q3:.3f}), {med / base:.2f}x "
              f"{args.threads[0]} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
