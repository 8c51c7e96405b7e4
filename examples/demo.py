"""The cifarnets demo (``make demo``): the zoo, the vanishing gradient, a short training run, the pictures.

What it shows, in a few minutes on a laptop CPU and without internet:

1. the zoo: every network of the seed reports with its published parameter count;
2. seeds 001-003's central result at initialisation: with PyTorch's default init the first
   convolution of plain VGG38 gets a gradient about twelve orders of magnitude below VGG08's,
   and batch norm (BN), residual connections (RC) or both restore it (Figs. 2, 3 and 5);
3. what that means for learning: VGG08, VGG38 and VGG38 BN+RC trained side by side for a
   short run on real Fashion-MNIST images (Debian's ``dataset-fashion-mnist``; the generated
   SYNTHETIC set where it is not installed, and the demo says so);
4. the receptive field of seed 004's VGG16 (212 px, SPEC §3) and a per-layer summary.

Every picture lands in ``--out`` (default ``demo_out/``).

    python examples/demo.py                 # about 3 minutes on 2 CPU cores
    python examples/demo.py --quick         # seconds: no training
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import cifarnets
from cifarnets import analysis, plots
from cifarnets.data import DatasetNotFoundError, load_dataset
from cifarnets.registry import model_table
from cifarnets.train import TrainConfig, fit, results_table

# Seeds 001/002, Table 1: the plain baseline, the net that does not learn, and the fix.
TRAINED = [("vgg08", {}), ("vgg38", {}), ("vgg38", {"bn": True, "rc": True})]


def section(title: str) -> None:
    print(f"\n{'=' * len(title)}\n{title}\n{'=' * len(title)}", flush=True)


def show_zoo() -> None:
    section(f"1. The zoo: {len(cifarnets.list_models())} networks, exactly as the reports published them")
    print(model_table())


def show_gradient_at_init(out: Path) -> None:
    section("2. Gradient at initialisation (seeds 001-003, Figs. 2, 3, 5): PyTorch default init, one batch")
    flows = analysis.compare_gradient_flow(batch_size=64, seed=0)
    vgg08_first = flows["vgg08"].values[0]
    print(f"{'network':<14} {'weight layers':>13} {'first conv':>11} {'classifier':>11} {'first vs vgg08':>15}")
    for label, flow in flows.items():
        first, last = flow.values[0], flow.values[-1]
        print(f"{label:<14} {len(flow):>13} {first:>11.2e} {last:>11.2e} {first / vgg08_first:>15.1e}")
    print("\nPlain VGG38's first layer gets ~1e-12 of VGG08's gradient: it cannot learn. BN, RC and BN+RC restore it.")
    path = plots.save(plots.gradient_flow_comparison(flows), out / "gradient_flow_at_init.png")
    print(f"picture: {path}")


def load_demo_data(limit: int):
    try:
        data = load_dataset("fashion_mnist", split="59000:1000", limit=limit)
        print(f"data: Fashion-MNIST (real images, 1 channel padded to 32x32), a stratified {len(data.train):,}-image "
              f"subset, {len(data.val):,} validation, {len(data.test):,} test")
    except DatasetNotFoundError as err:
        data = load_dataset("synthetic", synthetic_sizes=(limit + 1000, 1000), split=f"{limit}:1000")
        print(f"data: the SYNTHETIC set (generated images; {err.__class__.__name__}: install dataset-fashion-mnist "
              "for real images). Its numbers say nothing about CIFAR.")
    return data


def show_training(out: Path, epochs: int, limit: int) -> list:
    section(f"3. Training side by side: {epochs} epochs, Adam 1e-3, cosine (the reports' recipe, shortened)")
    data = load_demo_data(limit)
    histories = []
    for name, kwargs in TRAINED:
        label = analysis.spec_label(name, kwargs)
        run_dir = out / "runs" / label.replace(" ", "_").replace("+", "_")
        config = TrainConfig(epochs=epochs, batch_size=100, lr=1e-3, seed=0, quiet=True, label=label,
                             out_dir=str(run_dir), device="cpu")
        history = fit(name, data, config, model_kwargs=kwargs, resume=(run_dir / "history.json").exists())
        last = history.epochs[-1]
        print(f"{label:<14} train loss {last.train_loss:.3f}  val acc {last.val_acc:5.1f} %  "
              f"test acc {history.test['acc']:5.1f} %  ({last.epoch_seconds:.0f} s/epoch)", flush=True)
        histories.append(history)
    table = results_table(histories)
    print()
    print(table.to_markdown())
    print("\nPlain VGG38 stays at chance (10 %); VGG38 BN+RC learns. The curves and the per-epoch gradient flow:")
    print(f"pictures: {plots.save(plots.curves(histories, title='Fashion-MNIST, short run'), out / 'curves.png')}")
    for history in histories:
        slug = history.label.replace(" ", "_").replace("+", "_")
        print(f"          {plots.save(plots.gradient_flow(history), out / f'gradient_flow_{slug}.png')}")
    print(f"          {table.save(out / 'results.md')}")
    return histories


def show_structure(out: Path) -> None:
    section("4. Structure: seed 004's VGG16 receptive field, VGG38 BN+RC per-layer summary")
    rf = analysis.receptive_field(cifarnets.create("vgg16"), input_size=(3, 32, 32))
    print(f"VGG16: the last unit sees {rf[-1].rf} px of a 32 px image (SPEC §3; seed 004 reported otherwise).")
    model = cifarnets.create("vgg38", bn=True, rc=True)
    s = analysis.summary(model, input_size=(3, 32, 32))
    print(f"VGG38 BN+RC: {s.total_params:,} parameters, {s.total_macs / 1e6:.1f} M multiply-adds per 32x32 image")
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    print(f"pictures: {plots.save(plots.filters(model), out / 'filters_vgg38_bn_rc.png')}")
    print(f"          {plots.save(plots.feature_maps(model, image), out / 'feature_maps_vgg38_bn_rc.png')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for pictures and runs")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--limit", type=int, default=4000, help="training images (default 4000)")
    parser.add_argument("--quick", action="store_true", help="skip the training run")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    show_zoo()
    show_gradient_at_init(args.out)
    if not args.quick:
        show_training(args.out, args.epochs, args.limit)
    show_structure(args.out)
    print(f"\nAll pictures are in {args.out}/. Next: `cifarnets --help`, docs/, examples/seed*.py --budget.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
