"""``cifarnets sweep``: a report's grid of runs from a grid file, locally or on Ray.

    cifarnets sweep examples/grids/seed001_vgg38_bn_rc.toml --out runs/seed001               # one by one
    cifarnets sweep GRID --out DIR --parallel 4                   # 4 at once, one GPU each (round-robin)
    cifarnets sweep GRID --out DIR --engine ray --gpus-per-run 0.25  # 4 per GPU, on a local Ray
    cifarnets sweep GRID --out DIR --engine ray --address auto       # on a running Ray cluster
    cifarnets sweep GRID --out DIR --engine ray --search 'lr=loguniform(1e-4,1e-1)' --trials 20 --scheduler asha
    cifarnets plot DIR                                            # curves and table, published beside measured
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``sweep`` subcommand."""
    p = sub.add_parser(
        "sweep", help="train a grid of runs (a grid file) into one sweep folder",
        description="Train every cell of a grid file into DIR/CELL run folders. A rerun skips finished cells and "
                    "resumes interrupted ones; a failed cell is recorded and the others go on. The grid is checked "
                    "before anything starts. See docs/sweeps.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("grid", metavar="GRID", type=Path, help="grid file (TOML), e.g. examples/grids/*.toml")
    p.add_argument("--out", "-o", required=True, type=Path, metavar="DIR", help="sweep folder")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine's processes; ray: Ray Tune (pip install 'cifarnets[sweep]')")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="cells at once (local: worker processes pinned to GPUs round-robin or sharing the CPU "
                        "threads; ray: the most trials at once)")
    p.add_argument("--only", nargs="+", metavar="TEXT", default=None,
                   help="run only the cells whose name or label contains one of these")
    p.add_argument("--device", default=None, help="training device of every cell (default: the best available)")
    p.add_argument("--retries", type=int, default=2,
                   help="restarts of a cell whose worker died; each resumes from its last saved epoch")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="per-epoch progress bars (default: on in a terminal when cells run one by one)")
    p.add_argument("--download", action="store_true",
                   help="download the data sets the grid needs (once, before the first cell) if they are missing")
    p.add_argument("--dry-run", action="store_true",
                   help="make every check of a real run and list the cells; write and train nothing")
    p.add_argument("--max-cells", type=int, default=None, metavar="N",
                   help="refuse a grid of more than N cells (default: 10,000)")
    r = p.add_argument_group("ray engine")
    r.add_argument("--address", default=None,
                   help="join a Ray cluster: 'auto' or ray://HOST:PORT (default: start a local Ray)")
    r.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs of each trial")
    r.add_argument("--gpus-per-run", type=float, default=None,
                   help="GPUs of each trial; 0.25 puts four on one GPU (default: 1 where the cluster has GPUs)")
    r.add_argument("--search", nargs="+", metavar="KEY=DIST(ARGS)", default=None,
                   help="sample cells around the grid's [base]: uniform, loguniform, randint, choice; "
                        "e.g. 'lr=loguniform(1e-4,1e-1)'")
    r.add_argument("--trials", type=int, default=10, help="--search: trials to sample")
    r.add_argument("--searcher", choices=("random", "optuna"), default="random", help="--search: Tune's searcher")
    r.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo",
                   help="asha stops poor trials early (Tune's ASHAScheduler on the per-epoch metric)")
    r.add_argument("--metric", default="val_acc", help="metric the searcher and scheduler optimise")
    r.add_argument("--mode", choices=("max", "min"), default="max", help="maximise or minimise --metric")
    r.add_argument("--search-seed", type=int, default=0,
                   help="seed of the searcher (the same seed samples the same trials, so a rerun resumes them)")
    p.set_defaults(handler=_sweep)


def _printer(total: int, bar: Any) -> Any:
    def progress(event: str, cell: Any, outcome: Any) -> None:
        if event == "start":
            line = f"start    {cell.name}"
        elif event == "retry":
            line = f"retry    {cell.name} (its worker died; resuming from its last saved epoch)"
        else:
            detail = ""
            if outcome is not None:
                if outcome.status == "failed":
                    detail = f": {outcome.error}"
                else:
                    test = f", test {outcome.test_acc:.2f}%" if outcome.test_acc is not None else ""
                    best = f", best val {outcome.best_val_acc:.2f}%" if outcome.best_val_acc is not None else ""
                    resumed = f" (resumed from epoch {outcome.resumed_from})" if outcome.resumed_from else ""
                    detail = f": {outcome.epochs} epochs{best}{test}{resumed}"
            line = f"{event:<8} {cell.name}{detail}"
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)
    return progress


class EpochLine:
    """Prints one line per finished epoch of a cell, from whichever process trains it (a module-level
    class, so spawned workers can unpickle it): a parallel sweep is never silent for minutes."""

    def __call__(self, record: Any, history: Any) -> None:
        val = f", val {record.val_acc:.2f}%" if record.val_acc is not None else ""
        print(f"  epoch    {history.name} {record.epoch}/{history.config.get('epochs', '?')}: train loss "
              f"{record.train_loss:.4f}{val} ({record.epoch_seconds:.0f} s)", flush=True)


def _sweep(args: argparse.Namespace) -> int:
    from ..sweep import load_grid, run
    from ..sweep.grid import MAX_CELLS

    if args.max_cells is None:
        args.max_cells = MAX_CELLS

    grid = load_grid(args.grid, max_cells=args.max_cells)
    cells = grid.select(args.only)
    if args.dry_run:
        # The checks of a real run (settings, folder, data sets, Ray), with nothing written or trained.
        plan = run(grid, args.out, engine=args.engine, parallel=args.parallel, only=args.only, device=args.device,
                   retries=args.retries, address=args.address, cpus_per_run=args.cpus_per_run,
                   gpus_per_run=args.gpus_per_run, search=args.search, trials=args.trials, searcher=args.searcher,
                   scheduler=args.scheduler, metric=args.metric, mode=args.mode, search_seed=args.search_seed,
                   dry_run=True, max_cells=args.max_cells)
        status = {o.name: o.status for o in plan.outcomes}
        for cell in cells:
            flags = " ".join(f"{k}={v}" for k, v in cell.settings.items() if k not in ("label", "name", "note"))
            done = "  (finished: skipped)" if status.get(cell.name) == "skipped" else ""
            print(f"{cell.name:<40} {flags}{done}")
        print(f"{len(cells)} cell(s); nothing trained (--dry-run)")
        return 0
    interactive = sys.stderr.isatty()
    show_epochs = args.progress if args.progress is not None else (interactive and args.parallel == 1
                                                                   and args.engine == "local")
    total = args.trials if args.search else len(cells)
    bar = None
    if interactive and args.progress is not False:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="cells", unit="cell", file=sys.stderr, dynamic_ncols=True, position=0)
    print(f"{args.grid}: {total} cell(s) -> {args.out} ({args.engine} engine"
          f"{f', {args.parallel} at once' if args.parallel > 1 else ''})", flush=True)
    try:
        result = run(grid, args.out, engine=args.engine, parallel=args.parallel, only=args.only, device=args.device,
                     quiet=not show_epochs, retries=args.retries, progress=_printer(total, bar),
                     callbacks=[] if show_epochs else [EpochLine()],
                     address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                     search=args.search, trials=args.trials, searcher=args.searcher, scheduler=args.scheduler,
                     metric=args.metric, mode=args.mode, search_seed=args.search_seed, download=args.download,
                     max_cells=args.max_cells)
    finally:
        if bar is not None:
            bar.close()
    counts = ", ".join(f"{n} {k}" for k, n in result.counts().items())
    print(f"\n{counts}. Results: cifarnets plot {args.out}")
    for outcome in result.failed:
        print(f"FAILED {outcome.name}: {outcome.error} (details: {args.out}/{outcome.name}/status.json)")
    return 0 if result.ok else 1
