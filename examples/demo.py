"""The cifarnets demo (``make demo``): the zoo, the vanishing gradient, a short training run, the pictures.

What it shows, in 3-6 minutes on 2 busy CPU cores (README: measured) and without internet:

1. the zoo: every network of the five reports with its published parameter count;
2. the coursework reports' central result at initialisation: with PyTorch's default init the first
   convolution of plain VGG38 gets a gradient about twelve orders of magnitude below VGG08's,
   and batch norm (BN), residual connections (RC) or both restore it (Figs. 2, 3 and 5);
3. what that means for learning: VGG08, VGG38 and VGG38 BN+RC trained side by side for a
   short run on real Fashion-MNIST images (Debian's ``dataset-fashion-mnist``, which ``make demo``
   installs; run directly without it, the demo falls back to the generated SYNTHETIC set and
   says so): plain VGG38 stays at chance, VGG08 and VGG38 BN+RC learn. The budget (``--limit``
   images x ``--epochs``, a 1,000-image test subset) is sized for 2 CPU cores: VGG38 costs
   about 0.84 GFLOP per training image, so the earlier 3 x 4,000 images and the full
   10,000-image test set took over ten minutes there. Then what the trained VGG38 BN+RC
   learned: its first-layer filters, and its feature maps of a real test image;
4. the receptive field of the AlexNet/VGG report's VGG16 (212 px; the report printed 236) and a per-layer summary.

Every picture lands in ``--out`` (default ``demo_out/``).

    python examples/demo.py                 # 3-6 minutes on 2 busy CPU cores (README: measured)
    python examples/demo.py --quick         # seconds: no training (so no filters or feature maps)
    python examples/demo.py --limit 4000 --epochs 3 --threads 2   # a longer run

Threads: torch uses one intra-op thread per core by default. On a shared machine that is
the slow choice: on 2 cores busy with other work (load average 7), a plain VGG38 step took
4.5 s with 2 threads and 1.6 s with 1, as the threads wait for each other at every layer
(docs/performance.md). The thread count is a training setting (`TrainConfig.threads`, the
one place it is chosen: by default the usable cores, recorded in each run folder); on a busy
machine pass ``--threads 1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

import cifarnets
from cifarnets import analysis, plots
from cifarnets.data import DatasetNotFoundError, load_dataset, stratified_sample
from cifarnets.registry import model_table
from cifarnets.train import TrainConfig, fit, load_checkpoint, results_table

# The VGG38 reports, Table 1: the plain baseline, the net that does not learn, and the fix.
TRAINED = [("vgg08", {}), ("vgg38", {}), ("vgg38", {"bn": True, "rc": True})]


def section(title: str) -> None:
    print(f"\n{'=' * len(title)}\n{title}\n{'=' * len(title)}", flush=True)


def draw_pictures(out: Path, *, flows=None, histories=(), model=None, image=None, image_title="input") -> list[Path]:
    """Every picture of the demo, in one place (the plotting API is the only thing it depends on)."""
    paths = []
    if flows is not None:
        paths.append(plots.save(plots.gradient_flow_comparison(flows), out / "gradient_flow_at_init.png"))
    if histories:
        paths.append(plots.save(plots.curves(list(histories), title="Fashion-MNIST, short run"), out / "curves.png"))
        for history in histories:
            slug = history.label.replace(" ", "_").replace("+", "_")
            paths.append(plots.save(plots.gradient_flow(history), out / f"gradient_flow_{slug}.png"))
    if model is not None:
        paths.append(plots.save(plots.filters(model), out / "filters_vgg38_bn_rc_trained.png"))
        paths.append(plots.save(plots.feature_maps(model, image, input_title=image_title),
                                out / "feature_maps_vgg38_bn_rc_trained.png"))
    return paths


def show_pictures(paths: list[Path]) -> None:
    for i, path in enumerate(paths):
        print(f"{'pictures:' if i == 0 else '':<10}{path}")


def show_zoo() -> None:
    section(f"1. The zoo: {len(cifarnets.list_models())} networks, exactly as the reports published them")
    print(model_table())


def show_gradient_at_init(out: Path) -> None:
    section("2. Gradient at initialisation (the coursework reports, Figs. 2, 3, 5): PyTorch default init, one batch")
    flows = analysis.compare_gradient_flow(batch_size=64, seed=0)
    vgg08_first = flows["vgg08"].values[0]
    print(f"{'network':<14} {'weight layers':>13} {'first conv':>11} {'classifier':>11} {'first vs vgg08':>15}")
    for label, flow in flows.items():
        first, last = flow.values[0], flow.values[-1]
        print(f"{label:<14} {len(flow):>13} {first:>11.2e} {last:>11.2e} {first / vgg08_first:>15.1e}")
    print("\nPlain VGG38's first layer gets ~1e-12 of VGG08's gradient: it cannot learn. BN, RC and BN+RC restore it.")
    show_pictures(draw_pictures(out, flows=flows))


def load_demo_data(limit: int, test: int):
    try:
        data = load_dataset("fashion_mnist", split="59500:500", limit=limit)
        source = "Fashion-MNIST (real images, 1 channel padded to 32x32)"
    except DatasetNotFoundError as err:
        data = load_dataset("synthetic", synthetic_sizes=(limit + 500, test), split=f"{limit}:500")
        source = (f"the SYNTHETIC set (generated images; {err.__class__.__name__}: install dataset-fashion-mnist "
                  "for real images). Its numbers say nothing about CIFAR")
    if test < len(data.test):  # a stratified test subset: the full 10,000 would cost more than the training
        data = dataclasses.replace(data, test=data.test.subset(
            stratified_sample(data.test.labels, test, seed=0, tag="demo-test")))
    print(f"data: {source}; a stratified {len(data.train):,}-image training subset, {len(data.val):,} validation, "
          f"{len(data.test):,} test images")
    return data


def show_training(out: Path, epochs: int, limit: int, batch_size: int, test: int, threads: int | None = None) -> None:
    section(f"3. Training side by side: {epochs} epochs, Adam 1e-3, cosine (the reports' recipe, shortened)")
    data = load_demo_data(limit, test)
    histories, run_dirs = [], []
    steps = math.ceil(len(data.train) / batch_size)
    bar = tqdm(total=len(TRAINED) * epochs * steps, desc="training", unit="step", file=sys.stderr,
               dynamic_ncols=True, disable=None)
    for name, kwargs in TRAINED:
        label = analysis.spec_label(name, kwargs)
        bar.set_description(f"training {label}")
        # The budget is in the name: a rerun with other settings starts fresh instead of failing to resume.
        run_dir = out / "runs" / f"{label.replace(' ', '_').replace('+', '_')}_{len(data.train)}x{epochs}_b{batch_size}"
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, seed=0, quiet=False, label=label,
                             out_dir=str(run_dir), device="cpu", threads=threads)
        history = fit(name, data, config, model_kwargs=kwargs, resume=(run_dir / "history.json").exists(),
                      callbacks=[lambda record, history: bar.update(steps)])
        last = history.epochs[-1]
        tqdm.write(f"{label:<14} train loss {last.train_loss:.3f}  val acc {last.val_acc:5.1f} %  "
                   f"test acc {history.test['acc']:5.1f} %  ({last.epoch_seconds:.0f} s/epoch)", file=sys.stdout)
        histories.append(history)
        run_dirs.append(run_dir)
    bar.close()
    table = results_table(histories)
    print()
    print(table.to_markdown())
    chance = 100 / data.num_classes
    learned = ", ".join(h.name for h in histories if h.test["acc"] > chance + 5)
    print(f"\nThe reports' pattern: plain VGG38 stays at chance ({chance:g} %), VGG08 and VGG38 BN+RC learn. Here "
          f"more than 5 points above chance: {learned or 'none (too short a run: raise --limit or --epochs)'}. "
          "The curves and the per-epoch gradient flow:")
    show_pictures([*draw_pictures(out, histories=histories), table.save(out / "results.md")])
    show_what_it_learned(out, run_dirs[-1], data)


def show_what_it_learned(out: Path, run_dir: Path, data) -> None:
    """The filters and feature maps of the VGG38 BN+RC just trained, fed a real test image."""
    # The best checkpoint: the weights whose test accuracy the table gives.
    model, meta = load_checkpoint(run_dir)
    index = 0
    label = data.classes[int(data.test.labels[index])]
    # Normalised as in training: the loader scales to [0, 1] and applies the data set's mean/std.
    mean = torch.tensor(data.mean).view(-1, 1, 1)
    std = torch.tensor(data.std).view(-1, 1, 1)
    image = (data.test.images[index].float() / 255 - mean) / std
    print(f"\nWhat the trained VGG38 BN+RC learned (best epoch {meta['epoch']}): its first-layer filters, and "
          f"its feature maps of test image {index} ({label}).")
    show_pictures(draw_pictures(out, model=model, image=image, image_title=f"{label}\n(test image {index})"))


def show_structure() -> None:
    section("4. Structure: the AlexNet/VGG report's VGG16 receptive field, VGG38 BN+RC per-layer summary")
    rf = analysis.receptive_field(cifarnets.create("vgg16"), input_size=(3, 32, 32))
    print(f"VGG16: the last unit sees {rf[-1].rf} px of a 32 px image (the AlexNet/VGG report printed 236).")
    model = cifarnets.create("vgg38", bn=True, rc=True)
    s = analysis.summary(model, input_size=(3, 32, 32))
    print(f"VGG38 BN+RC: {s.total_params:,} parameters, {s.total_macs / 1e6:.1f} M multiply-adds per 32x32 image")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for pictures and runs")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    parser.add_argument("--limit", type=int, default=1500, help="training images (default 1500)")
    parser.add_argument("--batch-size", type=int, default=50, help="batch size (default 50)")
    parser.add_argument("--test", type=int, default=1000, help="test images, a stratified subset (default 1000)")
    parser.add_argument("--threads", type=int, default=None,
                        help="training threads (TrainConfig.threads; default: the usable cores)")
    parser.add_argument("--quick", action="store_true", help="skip the training run")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"torch {torch.__version__}, training threads: {args.threads or 'the usable cores (TrainConfig default)'}")
    torch.manual_seed(0)
    show_zoo()
    show_gradient_at_init(args.out)
    if args.quick:
        print("\n(--quick: no training, so no curves and no pictures of what a network learned)")
    else:
        show_training(args.out, args.epochs, args.limit, args.batch_size, args.test, args.threads)
    show_structure()
    minutes, seconds = divmod(round(time.perf_counter() - started), 60)
    print(f"\nAll pictures are in {args.out}/. The demo ran {minutes} min {seconds:02d} s (imports not counted).")
    print("Next: `cifarnets --help`, docs/, or a report's pattern in a few minutes on the CPU:\n"
          "  cifarnets sweep examples/grids/seed001_vgg38_bn_rc_budget.toml --out runs/seed001-budget\n"
          "  cifarnets plot runs/seed001-budget\n"
          "(examples/grids/ has the full grids of the reports and their *_budget versions.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
