"""What the report scripts in this folder share: arguments, data, the run grid, the table.

Each ``seed*.py`` script declares its report's grid as a list of `Run`s with the published
settings and numbers, and calls `main`. A run folder per grid cell lives under ``--out``;
running the script again skips finished cells and resumes interrupted ones, so a grid of
many 100-epoch runs can be stopped and restarted at will.

``--budget`` turns a script into a smoke run of a few minutes on a laptop CPU: a couple of
epochs on a small stratified subset, and, when the report's CIFAR set is not on disk, the real
Fashion-MNIST images (or, failing that, the SYNTHETIC set) instead, announced loudly. Budget
numbers show the *pattern* the report found (which configurations learn), not its accuracies.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from cifarnets.data import DataBundle, DatasetNotFoundError, load_dataset, stratified_sample
from cifarnets.train import History, TrainConfig, fit

__all__ = ["Run", "Column", "main"]

_TRAIN_SIZES = {"cifar10": 50000, "cifar100": 50000, "fashion_mnist": 60000}


@dataclass
class Run:
    """One cell of a report's grid: a model, its flags, the settings that differ, the published numbers."""

    label: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)
    group: str = ""

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.label.lower()).strip("_")


@dataclass
class Column:
    """A column of the comparison table: header and how to get the value from (run, history)."""

    header: str
    value: Callable[[Run, History], Any]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 0.01 and value != 0 else f"{value:.2f}"
    return str(value)


def _banner(lines: Sequence[str]) -> None:
    width = max(len(line) for line in lines) + 4
    print("!" * width)
    for line in lines:
        print(f"! {line:<{width - 4}} !")
    print("!" * width, flush=True)


def parse_args(description: str, default_out: str, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", action="store_true",
                   help="a few-minute smoke run: few epochs, a data subset, Fashion-MNIST/synthetic if CIFAR is absent")
    p.add_argument("--data-dir", default=None, help="where CIFAR is (default $CIFARNETS_DATA_DIR or ~/.cache)")
    p.add_argument("--download", action="store_true", help="download CIFAR if missing")
    p.add_argument("--out", default=default_out, help="folder of the run folders and the table")
    p.add_argument("--only", nargs="+", default=None, metavar="LABEL",
                   help="run only the cells whose label contains one of these")
    p.add_argument("--epochs", type=int, default=None, help="override every run's epochs")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every run")
    p.add_argument("--train-size", type=int, default=None, help="budget: training images (default per script)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.budget and args.out == default_out:
        args.out = default_out + "-budget"  # never mix smoke runs into the real grid's folders
    return args


def _subset_test(data: DataBundle, n: int) -> DataBundle:
    if n >= len(data.test):
        return data
    return dataclasses.replace(data, test=data.test.subset(stratified_sample(data.test.labels, n, seed=0, tag="test")))


def load_data(name: str, *, split: Optional[str], norm: Optional[str], args: argparse.Namespace,
              budget_sizes: tuple[int, int, int]) -> DataBundle:
    """The report's data set; with --budget a small subset of it, or of a stand-in if it is absent."""
    if not args.budget:
        return load_dataset(name, data_dir=args.data_dir, split=split, norm=norm, download=args.download)
    train, val, test = budget_sizes
    train = args.train_size or train
    val = val if split not in (None, "none") else 0
    candidates = [(name, norm), ("fashion_mnist", None), ("synthetic", None)]
    for candidate, candidate_norm in candidates:
        try:
            if candidate == "synthetic":
                data = load_dataset("synthetic", synthetic_sizes=(train + val, test),
                                    split=f"{train}:{val}" if val else "none")
            else:
                total = _TRAIN_SIZES[candidate]
                data = load_dataset(candidate, data_dir=args.data_dir, split=f"{total - val}:{val}" if val else "none",
                                    norm=candidate_norm, limit=train,
                                    download=args.download and candidate == name)
        except DatasetNotFoundError:
            continue
        data = _subset_test(data, test)
        if candidate != name:
            substitute = ("the SYNTHETIC set (generated images)" if candidate == "synthetic"
                          else "Fashion-MNIST (real, 1 channel, 10 classes)")
            _banner([
                f"{name.upper()} IS NOT ON THIS MACHINE: the budget run uses {substitute}",
                f"instead. The numbers below are NOT {name} results; they only show which configurations learn.",
                "For the report's numbers: --download (or --data-dir) and no --budget.",
            ])
        return data
    raise RuntimeError("no data set available")  # synthetic always is


def _history_done(path: Path) -> Optional[History]:
    try:
        history = History.load(path)
    except FileNotFoundError:
        return None
    return history if history.test is not None else None


def run_grid(runs: Sequence[Run], data: DataBundle, args: argparse.Namespace, base: dict[str, Any],
             budget_epochs: Union[int, Callable[[int], int]]) -> list[tuple[Run, History]]:
    """Train every run (skipping finished ones, resuming interrupted ones); return their histories."""
    out = Path(args.out)
    done: list[tuple[Run, History]] = []
    selected = [r for r in runs if not args.only or any(o.lower() in r.label.lower() for o in args.only)]
    for i, run in enumerate(selected, 1):
        settings = {**base, **run.config, "seed": args.seed, "quiet": args.quiet, "label": run.label}
        if args.device:
            settings["device"] = args.device
        if args.budget:
            settings["epochs"] = budget_epochs(settings["epochs"]) if callable(budget_epochs) else budget_epochs
        if args.epochs:
            settings["epochs"] = args.epochs
        run_dir = out / run.slug
        config = TrainConfig(**{**settings, "out_dir": str(run_dir)})
        finished = _history_done(run_dir)
        if finished is not None and finished.config.get("epochs") == config.epochs:
            print(f"[{i}/{len(selected)}] {run.label}: already done in {run_dir}", flush=True)
            done.append((run, finished))
            continue
        resume = (run_dir / "last.state.pt").is_file()
        print(f"[{i}/{len(selected)}] {run.label}: {run.model} {run.model_kwargs or ''} {config.describe_optimizer()}, "
              f"batch {config.batch_size}, {config.epochs} epochs{' (resuming)' if resume else ''}", flush=True)
        started = time.perf_counter()

        def line(record, history, epochs=config.epochs):
            val = f" val {record.val_loss:.3f}/{record.val_acc:.1f}%" if record.val_loss is not None else ""
            print(f"    epoch {record.epoch}/{epochs}: train {record.train_loss:.3f}/{record.train_acc:.1f}%"
                  f"{val} ({record.epoch_seconds:.1f}s)", flush=True)

        history = fit(run.model, data, config, model_kwargs=run.model_kwargs, callbacks=[line], resume=resume)
        print(f"    test {history.test['acc']:.2f}% (best epoch {history.best_epoch}), "
              f"{time.perf_counter() - started:.0f}s", flush=True)
        done.append((run, history))
    return done


def write_table(results: Sequence[tuple[Run, History]], columns: Sequence[Column], out: Path, title: str,
                note: str = "") -> str:
    """The comparison table as Markdown (returned, and written to table.md) and CSV (table.csv)."""
    headers = [c.header for c in columns]
    rows = [[_fmt(c.value(run, history)) for c in columns] for run, history in results]
    md = [f"### {title}", ""]
    md.append("| " + " | ".join(headers) + " |")
    md.append("|" + "|".join("---" for _ in headers) + "|")
    md += ["| " + " | ".join(row) + " |" for row in rows]
    if note:
        md += ["", note]
    text = "\n".join(md) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([[c.value(run, history) for c in columns] for run, history in results])
    (out / "table.csv").write_text(buf.getvalue())
    return text


# Columns every report's table has.
def final(key: str) -> Callable[[Run, History], Any]:
    """The value of `key` in the best epoch's record (the report's "final" numbers come from the kept model)."""
    def get(run: Run, history: History) -> Any:
        best = history.best()
        return getattr(best, key) if best is not None else None
    return get


def published(key: str) -> Callable[[Run, History], Any]:
    return lambda run, history: run.published.get(key)


def test_acc(run: Run, history: History) -> Any:
    return history.test["acc"] if history.test else None


def grad_ratio(run: Run, history: History) -> Any:
    """Mean |grad| at the first conv over the last layer, averaged over epochs (tiny = vanished)."""
    layers = history.grad_flow_layers()
    if len(layers) < 2:
        return None
    ratios = [e.grad_flow[layers[0]] / e.grad_flow[layers[-1]] for e in history.epochs
              if e.grad_flow and e.grad_flow[layers[-1]] > 0]
    return sum(ratios) / len(ratios) if ratios else None


def main(description: str, default_out: str, *, dataset: str, split: Optional[str], norm: Optional[str],
         base: dict[str, Any], runs: Sequence[Run], columns: Sequence[Column], title: str,
         budget_sizes: tuple[int, int, int], budget_epochs: Union[int, Callable[[int], int]], note: str = "",
         argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(description, default_out, argv)
    data = load_data(dataset, split=split, norm=norm, args=args, budget_sizes=budget_sizes)
    val = len(data.val) if data.val is not None else 0
    print(f"data: {data.name}{' (SYNTHETIC)' if data.is_synthetic else ''}, {len(data.train):,} train / {val:,} val / "
          f"{len(data.test):,} test{'  [--budget]' if args.budget else ''}", flush=True)
    results = run_grid(runs, data, args, base, budget_epochs)
    if args.budget:
        note = (note + "\n" if note else "") + (
            f"Budget run on {data.name}{' (SYNTHETIC)' if data.is_synthetic else ''} ({len(data.train)} train images, "
            f"{args.epochs or ('a few' if callable(budget_epochs) else budget_epochs)} epochs): compare the pattern, "
            "not the numbers, with the published columns.")
    table = write_table(results, columns, Path(args.out), title, note)
    print()
    print(table)
    print(f"(table.md and table.csv in {args.out})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run one of the seed*.py scripts")
