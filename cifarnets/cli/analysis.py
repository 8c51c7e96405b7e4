"""``cifarnets gradflow`` and ``cifarnets plot``: the reports' gradient-flow and training figures.

    cifarnets gradflow vgg38 --out vgg38.png               # one network at initialisation
    cifarnets gradflow --compare --out comparison.png      # VGG08, VGG38, VGG38 BN / RC / BN+RC
    cifarnets gradflow vgg68 --compare --act sigmoid --out sig.png
    cifarnets plot runs/vgg08 runs/vgg38 --out figures/   # curves, gradient flow, results table
    cifarnets plot runs/seed001 --results results/seed001.json   # a sweep: also a committed result file
    cifarnets compare runs/seed001 vgg38_bn vgg38_bn_rc    # do two cells differ beyond their seeds' spread?
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from ._common import UsageError, add_model_arguments, model_kwargs

# The numbers `cifarnets compare` can compare (train.results.GROUP_METRICS, without importing torch here).
GROUP_METRIC_NAMES = ("final_val_acc", "best_val_acc", "test_acc", "final_train_loss", "final_val_loss",
                      "grad_ratio", "final_train_acc")

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``gradflow``, ``plot`` and ``compare`` subcommands to `sub`."""
    p = sub.add_parser(
        "gradflow", help="gradient flow of a network at initialisation (the VGG38 reports' Figs. 2, 3, 5)",
        description="Mean |dL/dW| of every conv and linear layer after one forward/backward pass on a batch of "
                    "random N(0,1) images with random labels, drawn layer by layer on a log axis. With --compare, "
                    "several configurations built under the same seed share one picture: by default VGG08, VGG38, "
                    "VGG38 BN, VGG38 RC and VGG38 BN+RC, the comparison of the reports; with a MODEL, that model "
                    "plain and with --bn, --rc and both.",
    )
    p.add_argument("model", metavar="MODEL", nargs="?", default=None,
                   help="registered model name (optional with --compare: default the reports' VGG08/VGG38 set)")
    p.add_argument("--compare", action="store_true",
                   help="compare the model plain, with BN, with RC and with both (and VGG08 for vgg38)")
    p.add_argument("--out", "-o", required=True, type=Path, metavar="PNG", help="picture to write")
    p.add_argument("--batch-size", type=int, default=64, help="images in the batch (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch (default 0)")
    p.add_argument("--eval-mode", action="store_true",
                   help="measure in eval mode (BN uses running statistics); default train mode, as in training")
    p.add_argument("--align", choices=("depth", "index"), default="depth",
                   help="--compare: align networks of different depth by relative depth or layer index")
    p.add_argument("--device", default="cpu", help="device to run on (default cpu)")
    add_model_arguments(p, with_name=False)
    p.set_defaults(handler=_gradflow)

    p = sub.add_parser(
        "plot", help="training curves, gradient flow and results table of runs",
        description="For the given run folders (written by `cifarnets train`), into --out: curves.png (loss and "
                    "accuracy, train dotted, validation solid), per run RUN_NAME/gradient_flow.png and "
                    "RUN_NAME/gradient_flow_heatmap.png (RUN_NAME: the run folder's name), and results.md / "
                    "results.csv.",
    )
    p.add_argument("runs", metavar="RUN_DIR", nargs="+", type=Path,
                   help="run folders with history.json, or one sweep folder (cifarnets sweep)")
    p.add_argument("--out", "-o", type=Path, metavar="DIR",
                   help="folder for the pictures and tables (required for run folders; default DIR/plots for a sweep)")
    p.add_argument("--title", default=None, help="title of the curves figure")
    p.add_argument("--results", type=Path, metavar="JSON", default=None,
                   help="a sweep folder only: also write its measured numbers (per cell group: n, mean, standard "
                        "deviation, min-max, 95%% interval; the sweep's measurement.json, if any: date, machine, "
                        "CPU seconds, wall time, load average) to JSON and the same path with .md")
    p.set_defaults(handler=_plot)

    p = sub.add_parser(
        "compare", help="do two cells (or runs) differ beyond their seed-to-seed spread?",
        description="For each pair of the given groups of runs: their n, mean and standard deviation of the metric, "
                    "Welch's t-test p-value (two-sided, unequal variances) and whether their 95%% t intervals "
                    "overlap. A group is a run folder (one run), a sweep's DIR/CELL, or, after a sweep folder, a "
                    "CELL: a folder name, a seed group (the folder name without _seed-N: every seed) or a label. "
                    "With one run in a group no spread can be measured, and the command says so. "
                    "With --against results/NAME.json and one sweep folder (a rerun of that budget grid): whether "
                    "each cell group lands inside the spread the committed result file states (its mean inside "
                    "the committed 95%% interval); the exit status is 1 when one does not.",
    )
    p.add_argument("groups", metavar="RUN_OR_GROUP", nargs="+",
                   help="run folders or DIR/CELL, or a sweep folder followed by two or more cell names")
    p.add_argument("--metric", default=None, choices=sorted(GROUP_METRIC_NAMES),
                   help="the number to compare (default best_val_acc, with --against best_val_acc and grad_ratio; "
                        "grad_ratio is compared on log10)")
    p.add_argument("--against", type=Path, metavar="JSON", default=None,
                   help="a committed result file (results/NAME.json): check a rerun of its grid against it")
    p.set_defaults(handler=_compare)


# ---------------------------------------------------------------- gradflow

def _compare_specs(model: str | None, kwargs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    from ..registry import model_info

    if "bn" in kwargs or "rc" in kwargs:
        raise UsageError("--compare sets --bn and --rc itself (plain, bn, rc, bn+rc); drop them from the command")
    base = model or "vgg38"
    keywords = model_info(base).keywords
    if not {"bn", "rc"} <= set(keywords):
        raise UsageError(f"--compare varies bn and rc, which {base} does not take (its keywords: "
                         f"{', '.join(keywords)}); use a coursework VGG such as vgg38, or drop --compare")
    specs = [("vgg08", dict(kwargs))] if base == "vgg38" else []
    # Explicit False: models such as vgg68 are published with bn and rc on.
    for bn, rc in ((False, False), (True, False), (False, True), (True, True)):
        specs.append((base, {**kwargs, "bn": bn, "rc": rc}))
    return specs


def _gradflow(args: argparse.Namespace) -> int:
    from .. import plots
    from ..analysis import compare_gradient_flow, comparison_table

    kwargs = model_kwargs(args)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.compare:
        specs = _compare_specs(args.model, kwargs)
    elif args.model is None:
        raise UsageError("give a MODEL (e.g. vgg38), or --compare for the reports' VGG08/VGG38 comparison")
    else:
        specs = [(args.model, kwargs)]
    flows = compare_gradient_flow(specs, seed=args.seed, device=args.device, train=not args.eval_mode,
                                  batch_size=args.batch_size)
    if args.compare:
        path = plots.save(plots.gradient_flow_comparison(flows, align=args.align), args.out)
        print(comparison_table(flows))
    else:
        flow = next(iter(flows.values()))
        path = plots.save(plots.gradient_flow(flow), args.out)
        print(flow)
    print(f"\nwrote {path}")
    return 0


# ---------------------------------------------------------------- plot

def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "run"


def _plot(args: argparse.Namespace) -> int:
    if len(args.runs) == 1 and (args.runs[0] / "grid.toml").is_file():
        from ..sweep import plot_sweep, sweep_table, write_results

        written = plot_sweep(args.runs[0], args.out, title=args.title)
        if args.results is not None:
            written += write_results(args.runs[0], args.results)
        print(sweep_table(args.runs[0]).to_markdown())
        print()
        for path in written:
            print(f"wrote {path}")
        return 0
    if args.results is not None:
        raise UsageError("--results writes a sweep's result file: give one sweep folder (with grid.toml)")
    if args.out is None:
        raise UsageError("give --out DIR for the pictures (only a sweep folder has a default, DIR/plots)")
    from .. import plots
    from ..train import History, results_table

    histories = [History.load(run) for run in args.runs]
    out: Path = args.out
    written = [plots.save(plots.curves(histories, title=args.title), out / "curves.png")]
    skipped = []
    used: set[str] = set()
    for run, history in zip(args.runs, histories):
        # The folder name identifies a run even when two runs train the same model.
        slug = _slug(run.resolve().name)
        while slug in used:
            slug += "_"
        used.add(slug)
        if not history.grad_flow_layers():
            skipped.append(f"{run}: no gradient flow recorded (train with grad_flow on)")
            continue
        written.append(plots.save(plots.gradient_flow(history), out / slug / "gradient_flow.png"))
        written.append(plots.save(plots.gradient_flow_heatmap(history), out / slug / "gradient_flow_heatmap.png"))
    table = results_table(histories)
    written += [table.save(out / "results.md"), table.save(out / "results.csv")]
    print(table.to_markdown())
    print()
    for path in written:
        print(f"wrote {path}")
    for note in skipped:
        print(f"skipped {note}")
    return 0


# ---------------------------------------------------------------- compare

def _compare(args: argparse.Namespace) -> int:
    from ..sweep import compare_groups, resolve_group

    if args.against is not None:
        return _check_rerun(args)
    specs = [Path(g) for g in args.groups]
    if (specs[0] / "grid.toml").is_file() and len(specs) > 1 and not (specs[1] / "history.json").is_file() \
            and not (specs[1].parent / "grid.toml").is_file():
        groups = [resolve_group(str(name), specs[0]) for name in args.groups[1:]]
    else:
        groups = [resolve_group(spec) for spec in specs]
    if len(groups) < 2:
        raise UsageError("compare needs two groups at least: two run folders, or a sweep folder and two cell names")
    metric = args.metric or "best_val_acc"
    geometric = metric == "grad_ratio"
    for (label_a, a), (label_b, b) in ((groups[i], groups[j]) for i in range(len(groups))
                                       for j in range(i + 1, len(groups))):
        test = compare_groups(a, b, metric)
        print(f"{metric}: {label_a} against {label_b}")
        for label, spread in ((label_a, test.a), (label_b, test.b)):
            print(f"  {label}: {_spread_line(spread, geometric)}")
        if test.p is not None:
            verdict = "differ beyond their spread" if test.p < 0.05 else "do not differ beyond their spread"
            print(f"  Welch's t-test{' on log10' if geometric else ''}: t = {test.t:.3g}, df = {test.df:.3g}, "
                  f"p = {test.p:.3g}: they {verdict} (at 5 %)")
        else:
            print(f"  no test: {test.reason}")
        if test.overlap is not None:
            print(f"  95 % intervals {'overlap' if test.overlap else 'do not overlap'}")
        else:
            print("  95 % intervals: need 3 runs or more in each group")
    return 0


def _check_rerun(args: argparse.Namespace) -> int:
    from ..sweep import check_rerun
    from ..sweep.report import RERUN_METRICS

    if len(args.groups) != 1 or not (Path(args.groups[0]) / "grid.toml").is_file():
        raise UsageError("--against checks one sweep folder (with grid.toml) against the result file: "
                         "cifarnets compare DIR --against results/NAME.json")
    checks = check_rerun(args.groups[0], args.against, (args.metric,) if args.metric else RERUN_METRICS)
    outside = []
    for check in checks:
        geometric = check.metric == "grad_ratio"
        if check.identical:
            verdict = "identical in every seed"
        elif check.inside is None:
            verdict = "no interval to land in (the result file has fewer than 3 runs)"
        else:
            verdict = "inside the stated spread" if check.inside else "OUTSIDE the stated spread"
        if check.inside is False:
            outside.append(f"{check.label} {check.metric}")
        print(f"{check.label}, {check.metric}: {verdict}")
        print(f"  committed: {_spread_line(check.committed, geometric)}")
        print(f"  rerun:     {_spread_line(check.rerun, geometric)}")
        if check.same_seed and not check.identical:
            fmt = (lambda v: f"{v:.3g}") if geometric else (lambda v: f"{v:.4g}")
            print("  per seed (committed -> rerun): "
                  + ", ".join(f"{seed}: {fmt(a)} -> {fmt(b)}" for seed, a, b in check.same_seed))
        if check.test.p is not None:
            print(f"  Welch's t-test{' on log10' if geometric else ''}: p = {check.test.p:.3g}")
    groups = len({c.seed_group for c in checks})
    if outside:
        print(f"{len(outside)} of {len(checks)} checks ({groups} cell groups) land outside the stated spread: "
              f"{', '.join(outside)}")
        return 1
    unknown = sum(c.inside is None for c in checks)
    print(f"{len(checks) - unknown} of {len(checks)} checks ({groups} cell groups) land inside the stated spread"
          + (f"; {unknown} have no interval to land in" if unknown else ""))
    return 0


def _spread_line(spread: Any, geometric: bool) -> str:
    if spread is None:
        return "no value"
    fmt = (lambda v: f"{v:.3g}") if geometric else (lambda v: f"{v:.4g}")
    line = f"n = {spread.n}, {'geometric mean' if geometric else 'mean'} {fmt(spread.mean)}"
    if spread.std is None:
        return line + " (one run: no spread can be measured)"
    line += f", {'geometric std (factor)' if geometric else 'std'} {fmt(spread.std)}"
    line += f", min–max {fmt(spread.min)}–{fmt(spread.max)}"
    if spread.interval is not None:
        line += f", 95 % interval {fmt(spread.interval[0])}–{fmt(spread.interval[1])}"
    return line
