"""A sweep's results: one table of every cell with the report's published numbers beside the
measured ones, and the curves and gradient-flow pictures (``cifarnets plot DIR``).

The reports print the numbers of their *final* epoch (the ResNet-18 report says so: 95.06 %
at the end against 95.29 % at its best epoch 291), while a run keeps its best-validation
checkpoint. The table shows both, labelled: ``final ...`` (the last epoch) and ``best val
acc`` with its epoch, and the test accuracy of the kept (best) checkpoint.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from .._utils import PathLike, atomic_write
from ..errors import CheckpointError, ConfigError, RunNotFoundError
from ..train import History
from ..train.results import GROUP_METRICS, ResultRow, ResultsTable, grad_ratio, result_row
from ..train.stats import Spread, WelchTest, welch_test
from .api import load_sweep
from .cell import cell_status
from .grid import Cell, Grid

__all__ = ["MEASUREMENT_FILE", "RERUN_METRICS", "RerunCheck", "SweepTable", "check_rerun", "compare_groups",
           "grad_ratio", "plot_sweep", "resolve_group", "sweep_table", "write_results"]

#: What ``benchmarks/record_results.py`` writes into a sweep folder: how long the sweep took, on what machine.
MEASUREMENT_FILE = "measurement.json"

SweepTable = ResultsTable  # kept name: a sweep's table is the results table with the cells' columns

_MEASURED = ("final_train_loss", "final_train_acc", "final_val_loss", "final_val_acc", "best_val_acc", "best_epoch",
             "test_acc", "grad_ratio", "seconds_per_epoch")


def _sweep_row(cell: Cell, history: Optional[History], status: str) -> ResultRow:
    extra: dict[str, Any] = {"cell": cell.label + (" (prose only)" if cell.prose_only else ""), "folder": cell.name,
                             "status": status}
    if cell.group:
        extra["group"] = cell.group
    extra.update({f"published_{k}": v for k, v in cell.published.items()})
    if history is None or not history.epochs:
        return ResultRow(run=cell.label, model=cell.model, params=history.params if history else 0, lr=None,
                         best_epoch=None, train_loss=None, train_acc=None, val_loss=None, val_acc=None,
                         test_loss=None, test_acc=None, seconds_per_epoch=None, params_per_point=None,
                         seed=cell.train.get("seed"), seed_group=cell.group_name, extra=extra)
    return result_row(history, seed_group=cell.group_name, extra=extra)


def sweep_table(out: PathLike) -> ResultsTable:
    """The results table of the sweep folder `out`: every cell that has run, measured and published.

    Rows are `ResultRow`s that read like dicts (``row["final_val_acc"]``, ``row["folder"]``,
    ``row["published_val_acc"]``); `ResultsTable.groups` puts the seeds of a cell together
    (n, mean, standard deviation, min-max, 95 % interval, published inside or not), and
    `ResultsTable.to_data` gives both as plain data.

    Example:
        print(sweep_table("runs/seed001").to_markdown())   # after a sweep into runs/seed001
    """
    out = Path(out)
    grid, cells = load_sweep(out)
    rows = []
    for cell in cells:
        try:
            history: Optional[History] = History.load(out / cell.name)
        except (FileNotFoundError, CheckpointError):
            history = None
        status = cell_status(out, cell.name).get("status", "done" if history and history.test else "?")
        rows.append(_sweep_row(cell, history, status))
    columns = ["cell"]
    if any("group" in r.extra for r in rows):
        columns.append("group")
    if any(c.seed_group and c.seed_group != c.name for c in cells):
        columns.append("seed")
    columns += ["status", "params", "epochs", *_MEASURED]
    table = ResultsTable(tuple(rows), title=_title(grid), note=grid.note)
    columns += [f"published_{k}" for k in table.published_keys]
    return ResultsTable(tuple(rows), title=_title(grid), note=grid.note, columns=tuple(columns),
                        headers={"test_acc": "test acc (best ckpt)"})


def _title(grid: Grid) -> str:
    if grid.title and grid.report:
        return f"{grid.title} ({grid.report})"
    return grid.title or grid.report


def write_results(out: PathLike, path: PathLike) -> list[Path]:
    """The sweep's measured numbers as a committed result file: `path` (JSON) and the same with ``.md``.

    The JSON holds the grid, per seed group the statistics of `sweep_table` and every run's
    row, the seeds, the date the file was made, and how the sweep was measured when the sweep
    folder has a ``measurement.json`` (``benchmarks/record_results.py``: date, machine, torch
    version, CPU seconds, wall time, load average); otherwise the machine this runs on.
    """
    import torch

    out, path = Path(out), Path(path)
    if path.suffix.lower() != ".json":
        raise ConfigError(f"the result file {str(path)!r} must end in .json (the .md table is written beside it); "
                          "e.g. --results results/NAME.json")
    grid, _ = load_sweep(out)
    table = sweep_table(out)
    measurement: dict[str, Any] = {}
    if (out / MEASUREMENT_FILE).is_file():
        measurement = json.loads((out / MEASUREMENT_FILE).read_text())
    machine = measurement.get("machine") or {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                             "python": platform.python_version(), "torch": torch.__version__}
    seeds = sorted({r.seed for r in table.rows if r.seed is not None})
    record = {
        "grid": Path(grid.path).name if grid.path else "", "title": grid.title, "report": grid.report,
        "written": datetime.date.today().isoformat(), "date": measurement.get("date"), "machine": machine,
        "seeds": seeds, "command": measurement.get("command"), "cpu_seconds": measurement.get("cpu_seconds"),
        "wall_seconds": measurement.get("wall_seconds"), "load_average_start": measurement.get("load_average_start"),
        "load_average_end": measurement.get("load_average_end"),
        "statistics": "mean and sample standard deviation over seeds; interval: 95 % Student-t interval of the mean "
                      "(n >= 3); grad_ratio: geometric mean, geometric standard deviation (a factor) and the interval "
                      "of log10 taken back",
        **table.to_data(),
    }
    written = [atomic_write(path, json.dumps(record, indent=1, allow_nan=False, default=str) + "\n")]
    cost = ""
    if record["cpu_seconds"] is not None:
        cost = (f"Measured {record['date']} on {machine.get('platform')} ({machine.get('cpu_count')} CPUs), torch "
                f"{machine.get('torch')}: {record['cpu_seconds']:,.0f} CPU-seconds (user + system, the sweep and its "
                f"workers), {record['wall_seconds']:,.0f} s wall, load average {_load(record['load_average_start'])} "
                f"at the start and {_load(record['load_average_end'])} at the end; seeds "
                f"{', '.join(map(str, seeds))}.\n\n`{' '.join(record['command'] or [])}`\n\n")
    text = f"<!-- written by `cifarnets plot {out} --results {path}`; do not edit -->\n\n{cost}{table.to_markdown()}\n"
    written.append(atomic_write(path.with_suffix(".md"), text))
    return written


def _load(values: Optional[Sequence[float]]) -> str:
    return "–" if not values else " / ".join(f"{v:.2f}" for v in values)


# ---------------------------------------------------------------------- comparing groups


def resolve_group(spec: PathLike, sweep: Optional[PathLike] = None) -> tuple[str, list[ResultRow]]:
    """The runs one argument of ``cifarnets compare`` names, with a label for them.

    `spec` is a run folder (one run), a sweep's ``DIR/NAME`` or, with `sweep`, a ``NAME`` in it,
    where NAME is a cell's folder, its seed group (the folder without ``_seed-N``: all its seeds)
    or its label. Raises `RunNotFoundError` naming what there is.
    """
    path = Path(spec)
    if sweep is None and (path / "history.json").is_file() and not (path.parent / "grid.toml").is_file():
        row = result_row(History.load(path), seed_group=str(path))
        return str(path), [row]
    folder, name = (Path(sweep), str(spec)) if sweep is not None else (path.parent, path.name)
    if not (folder / "grid.toml").is_file():
        raise RunNotFoundError(f"{spec} is neither a run folder (with history.json) nor DIR/CELL of a sweep folder; "
                               "give run folders, or a sweep folder and cell names")
    table = sweep_table(folder)
    chosen = [r for r in table.rows if name in (r.extra.get("folder"), r.seed_group, r.extra.get("cell"))]
    chosen = [r for r in chosen if r.epochs]
    if not chosen:
        names = sorted({r.seed_group for r in table.rows})
        raise RunNotFoundError(f"no trained cell {name!r} in the sweep {folder}; its cell groups: {', '.join(names)} "
                               "(or a folder name, or a label)")
    return str(chosen[0].extra.get("cell", name)), chosen


def compare_groups(a: Sequence[ResultRow], b: Sequence[ResultRow], metric: str = "best_val_acc") -> WelchTest:
    """Whether two groups of runs differ in `metric` beyond their seed-to-seed spread (Welch's t-test,
    and whether their 95 % intervals overlap); geometric for the gradient ratio."""
    return welch_test([r[metric] for r in a], [r[metric] for r in b], geometric=metric == "grad_ratio")


#: What `check_rerun` compares by default: the numbers README quotes from a result file.
RERUN_METRICS = ("best_val_acc", "grad_ratio")


@dataclass(frozen=True)
class RerunCheck:
    """One cell group's `metric` in a rerun of a grid against the committed result file.

    `test` is Welch's test between them (`compare_groups`), whose two spreads are `committed`
    and `rerun`; `same_seed` holds the pairs (seed, committed value, rerun value) of the seeds
    both have. The rerun *lands inside the stated spread* when its mean lies inside the committed
    95 % interval of the mean (for a group with no spread, such as plain VGG38 at chance in
    every seed: when it equals it); with fewer than 3 committed runs there is no interval and
    the check says so (`inside` is None).
    """

    label: str
    seed_group: str
    metric: str
    same_seed: tuple[tuple[int, float, float], ...]
    test: WelchTest

    @property
    def committed(self) -> Optional[Spread]:
        return self.test.a

    @property
    def rerun(self) -> Optional[Spread]:
        return self.test.b

    @property
    def identical(self) -> bool:
        """Every seed gave the committed number exactly (same kernels, same thread count)."""
        return bool(self.same_seed) and all(a == b for _, a, b in self.same_seed) and \
            self.rerun is not None and self.committed is not None and self.rerun.n == self.committed.n

    @property
    def inside(self) -> Optional[bool]:
        if self.committed is None or self.rerun is None:
            return False
        if self.committed.min == self.committed.max:  # no spread: a std of 0, or a geometric factor of 1
            return math.isclose(self.rerun.mean, self.committed.mean, rel_tol=1e-9, abs_tol=1e-12)
        if self.committed.interval is None:
            return None
        low, high = self.committed.interval
        return low <= self.rerun.mean <= high


def check_rerun(out: PathLike, result_file: PathLike, metrics: Sequence[str] = RERUN_METRICS) -> list[RerunCheck]:
    """Whether the sweep `out`, a rerun of a budget grid, lands inside the spread its committed
    result file states (``cifarnets compare DIR --against results/NAME.json``).

    Groups are matched by their seed-group name; a group the rerun has not trained yet, or
    one the result file does not hold, is left out. Raises `ConfigError` when the sweep is of
    another grid than the file (their titles differ) or they share no group.
    """
    path = Path(result_file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the result file {str(path)!r}: {exc}; give a results/NAME.json that "
                          "`cifarnets plot DIR --results` wrote") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ConfigError(f"{path} is not a result file (no runs); give one that `cifarnets plot DIR --results` wrote")
    grid, _ = load_sweep(out)
    if data.get("title") not in (grid.title, _title(grid)):  # write_results stores the title with the report
        raise ConfigError(f"{path} is the result file of {data.get('title')!r}, but the sweep {out} ran "
                          f"{grid.title!r}; give the result file of the grid the sweep ran")
    for metric in metrics:
        if metric not in GROUP_METRICS:
            raise ConfigError(f"check_rerun compares one of {', '.join(GROUP_METRICS)}, not {metric!r}")
    rerun = [r for r in sweep_table(out).rows if r.epochs]
    try:
        committed_groups = {g["seed_group"]: g for g in data.get("groups", [])}
    except (KeyError, TypeError):
        raise ConfigError(f"{path} names no seed group per group (a result file of an older cifarnets, or "
                          "edited); write it again with `cifarnets plot DIR --results FILE`") from None
    checks = []
    for group, info in committed_groups.items():
        mine = [r for r in rerun if r.seed_group == group]
        if not mine:
            continue
        # The group's own list of its runs says which per-run rows are its seeds.
        folders = set(info.get("runs", []))
        theirs = [r for r in data["runs"] if r.get("folder") in folders]
        if len(theirs) != info.get("n") or len(folders) != info.get("n"):
            raise ConfigError(f"{path} is inconsistent: the group {info.get('label', group)!r} counts "
                              f"{info.get('n')} runs but the file holds {len(theirs)} of them; write it again "
                              "with `cifarnets plot DIR --results FILE`")
        for metric in metrics:
            by_seed = {r.get("seed"): r.get(metric) for r in theirs}
            pairs = tuple((int(r.seed), float(by_seed[r.seed]), float(r[metric])) for r in mine
                          if r.seed is not None and by_seed.get(r.seed) is not None and r[metric] is not None)
            checks.append(RerunCheck(info.get("label", group), group, metric, pairs,
                                     compare_groups(theirs, mine, metric)))
    if not checks:
        raise ConfigError(f"the sweep {out} has trained none of the groups of {path} "
                          f"({', '.join(committed_groups)}); run the grid first")
    return checks


def plot_sweep(out: PathLike, plot_dir: Optional[PathLike] = None, *, title: Optional[str] = None) -> list[Path]:
    """The sweep's pictures and table into `plot_dir` (default ``out/plots``); returns the files.

    Writes ``curves.png`` (every cell's loss and accuracy), ``curves_seeds.png`` where cells
    have several seeds (each cell's mean over its seeds with a ± 1 standard deviation band),
    ``CELL/gradient_flow.png`` per cell that recorded it, and ``results.md`` / ``results.csv``
    (`sweep_table`).
    """
    from .. import plots

    out = Path(out)
    plot_dir = Path(plot_dir) if plot_dir is not None else out / "plots"
    grid, cells = load_sweep(out)
    if not cells:
        raise FileNotFoundError(f"{out} has no trained cells yet (no CELL/history.json); run the sweep first")
    histories = []
    for cell in cells:
        history = History.load(out / cell.name)
        history.label = cell.label
        histories.append((cell, history))
    figure = plots.curves([h for _, h in histories], title=title or _title(grid))
    written = [plots.save(figure, plot_dir / "curves.png")]
    for cell, history in histories:
        if history.grad_flow_layers():
            written.append(plots.save(plots.gradient_flow(history), plot_dir / cell.name / "gradient_flow.png"))
    table = sweep_table(out)
    if table.has_seed_groups():
        by_group: dict[str, list[History]] = {}
        labels: dict[str, set[str]] = {}
        for cell, history in histories:
            by_group.setdefault(cell.group_name, []).append(history)
            labels.setdefault(cell.label, set()).add(cell.group_name)
        # A cell's label names its seed group in the legend unless two groups share it.
        named = {cell.group_name: cell.label if len(labels[cell.label]) == 1 else cell.group_name
                 for cell, _ in histories}
        seeds = {named[group]: runs for group, runs in by_group.items()}
        figure = plots.seed_curves(seeds, title=(title or _title(grid)) + ": mean over seeds")
        written.append(plots.save(figure, plot_dir / "curves_seeds.png"))
    written += [table.save(plot_dir / "results.md"), table.save(plot_dir / "results.csv")]
    return written
