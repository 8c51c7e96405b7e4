"""Regenerate the parts of README.md and docs/ that are computed from the code.

    python docs/generate.py               # rewrite the generated blocks (seconds)
    python docs/generate.py --check       # exit 1 if any is stale (what the tests check)
    python docs/generate.py --pictures    # also redraw docs/img/*.png (trains 3 small nets: minutes)

Generated blocks sit between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers;
everything outside them is written by hand. The pictures are made with the command line,
exactly as the commands in `PICTURE_COMMANDS` say (the docs quote them), so a reader can
make each one again.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


IMG = ROOT / "docs" / "img"
RUNS = ROOT / "docs" / "_runs"  # training runs behind the pictures; not committed

# The VGG38 reports' Table 1 in miniature: the baseline, the net that does not learn, the fix.
_TRAIN = ["--dataset", "fashion_mnist", "--split", "59000:1000", "--limit", "4000", "--epochs", "3",
          "--seed", "0", "--quiet", "--device", "cpu"]
PICTURE_COMMANDS: list[list[str]] = [
    ["gradflow", "--compare", "--out", f"{IMG}/gradient_flow_at_init.png"],
    ["gradflow", "vgg38", "--out", f"{IMG}/gradient_flow_vgg38_at_init.png"],
    ["train", "vgg08", *_TRAIN, "--out", f"{RUNS}/vgg08"],
    ["train", "vgg38", *_TRAIN, "--out", f"{RUNS}/vgg38"],
    ["train", "vgg38", "--bn", "--rc", *_TRAIN, "--out", f"{RUNS}/vgg38_bn_rc"],
    ["plot", f"{RUNS}/vgg08", f"{RUNS}/vgg38", f"{RUNS}/vgg38_bn_rc", "--out", f"{IMG}/runs",
     "--title", "Fashion-MNIST, 4,000 images, 3 epochs"],
]


def _zoo_rf_table() -> str:
    """Receptive field and jump at the last feature map of every zoo model (docs/analysis.md)."""
    import torch

    import cifarnets
    from cifarnets.analysis import receptive_field

    rows = ["| model | receptive field of the last feature map | jump | feature map | logits see |",
            "|---|--:|--:|---|---|"]
    for name in cifarnets.registry.builtin_models():
        with torch.device("meta"):  # geometry needs no weights
            model = cifarnets.create(name)
            features = receptive_field(model, method="forward_features")
            whole = receptive_field(model)
        last = features.output
        size = "×".join(str(v) for v in last.output_size) if last.output_size else "-"
        whole_rf = "the whole input" if whole.output.is_global else f"{whole.output.rf} px"
        rows.append(f"| `{name}` | {last.rf} | {last.jump} | {size} | {whole_rf} |")
    return "\n".join(rows)


def _zoo_summary_table() -> str:
    """Parameters and multiply-adds of every zoo model on one 32×32 image."""
    import torch

    import cifarnets
    from cifarnets.analysis import summary

    rows = ["| model | parameters | MACs (one 32×32 image) | layers with weights |", "|---|--:|--:|--:|"]
    for name in cifarnets.registry.builtin_models():
        with torch.device("meta"):
            s = summary(cifarnets.create(name))
        weighted = sum(1 for r in s if r.type in ("Conv2d", "Linear"))
        rows.append(f"| `{name}` | {s.total_params:,} | {s.total_macs / 1e6:,.2f} M | {weighted} |")
    return "\n".join(rows)


def generated_blocks() -> dict[str, str]:
    """Block name -> its Markdown, computed from the code (deterministic, a few seconds)."""
    import torch
    from rf_corrections import correction_tables  # docs/, on the path when this file runs as a script

    import cifarnets
    from cifarnets.analysis import receptive_field
    from cifarnets.registry import model_table

    with torch.device("meta"):
        vgg16 = receptive_field(cifarnets.create("vgg16"))
        resnet20 = receptive_field(cifarnets.create("resnet20"))
    return {
        "model-table": model_table(),
        "rf-vgg16": vgg16.to_markdown(),
        "rf-resnet20": resnet20.to_markdown(),
        "rf-corrections": correction_tables().rstrip("\n"),
        "rf-zoo": _zoo_rf_table(),
        "summary-zoo": _zoo_summary_table(),
    }


def draw_pictures() -> list[Path]:
    """Redraw docs/img: the command-line pictures, then the Python-API ones (ERF, filters)."""
    import shutil

    import torch

    import cifarnets
    from cifarnets import analysis, plots
    from cifarnets.cli import main as cli_main
    from cifarnets.data import load_dataset
    from cifarnets.data.augment import normalize
    from cifarnets.train import load_checkpoint

    IMG.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(RUNS, ignore_errors=True)
    for argv in PICTURE_COMMANDS:
        if cli_main(argv) != 0:
            raise SystemExit(f"cifarnets {' '.join(argv)} failed")
    written = sorted(IMG.rglob("*.png"))

    # Luo et al.'s effective receptive field at initialisation, on inputs larger than the
    # theoretical field so that its box is visible.
    torch.manual_seed(0)
    images = torch.randn(16, 3, 96, 96)
    for name in ("resnet20", "vgg38"):
        kwargs = {"bn": True, "rc": True} if name == "vgg38" else {}
        result = analysis.effective_receptive_field(cifarnets.create(name, **kwargs), images)
        title = f"{analysis.spec_label(name, kwargs)} at initialisation: effective vs theoretical receptive field"
        written.append(plots.save(plots.erf(result, title=title, log=True), IMG / f"erf_{name}.png"))

    # Filters and feature maps of the trained VGG38 BN+RC (Fashion-MNIST: one input channel).
    model, _ = load_checkpoint(RUNS / "vgg38_bn_rc")
    data = load_dataset("fashion_mnist", split="none")
    image = normalize(data.test.images[:1], data.mean, data.std)[0]
    written.append(plots.save(plots.filters(model), IMG / "filters_vgg38_bn_rc.png"))
    written.append(plots.save(plots.feature_maps(model, image), IMG / "feature_maps_vgg38_bn_rc.png"))
    return written


def fill(text: str, blocks: dict[str, str]) -> str:
    for name, content in blocks.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m, content=content: m.group(1) + content + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--pictures", action="store_true", help="also redraw docs/img (minutes: trains 3 nets)")
    args = parser.parse_args()
    if args.pictures:
        for path in draw_pictures():
            print(f"drew {path.relative_to(ROOT)}")
    blocks = generated_blocks()
    stale = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        new = fill(text, blocks)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
