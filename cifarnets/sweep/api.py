"""`run`: a grid of runs into one sweep folder, with the ``local`` or the ``ray`` engine."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .._utils import PathLike, atomic_write
from . import _runs
from .cell import CellOutcome, cell_status, data_load_args, train_config, write_status
from .grid import GRID_FILE, Cell, Grid, GridError, grid_to_toml, load_grid, parse_grid

__all__ = ["ENGINES", "SweepResult", "load_sweep", "run"]

ENGINES = ("local", "ray")
SUMMARY_FILE = "sweep.json"


@dataclass(frozen=True)
class SweepResult:
    """What a `run` call did: the sweep folder and every selected cell's outcome, in grid order."""

    out: Path
    outcomes: tuple[CellOutcome, ...]

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out


def _check_folder(grid: Grid, cells: Sequence[Cell], out: Path) -> None:
    """Refuse to start when the folder holds runs that are not this grid's cells (nothing is touched)."""
    if (out / "config.json").is_file():
        raise GridError(f"{out} is a run folder, not a sweep folder; choose another --out")
    problems = []
    for cell in cells:
        run_dir = out / cell.name
        why = _runs.check_matches(run_dir, cell.model, dict(cell.model_kwargs), cell.train)
        if why:
            problems.append(f"{run_dir}: {why}")
    if problems:
        raise GridError("the sweep folder already holds runs with other settings, which the grid would mix with its "
                        "own: " + "; ".join(problems) + ". Use another --out, or move those folders away.")


def _prepare_data(cells: Sequence[Cell], download: bool = False) -> None:
    """Load (and download) each data set once before any cell starts: a missing data set or a split
    that does not fit it is an error now, not in every cell, and workers do not race for downloads.
    `download` fetches what is missing even where the grid does not say ``download = true``."""
    from .cell import load_cell_data

    seen = set()
    for cell in cells:
        key = json.dumps(data_load_args(cell), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            load_cell_data(cell, download)


def run(
    grid: Union[Grid, PathLike, Mapping[str, Any]],
    out: PathLike,
    *,
    engine: str = "local",
    parallel: int = 1,
    only: Optional[Sequence[str]] = None,
    device: Optional[str] = None,
    quiet: bool = True,
    retries: int = 2,
    callbacks: Sequence[Callable[..., None]] = (),
    progress: Optional[Callable[[str, Cell, Optional[CellOutcome]], None]] = None,
    address: Optional[str] = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: Optional[float] = None,
    search: Optional[Sequence[str]] = None,
    trials: int = 10,
    searcher: str = "random",
    scheduler: str = "fifo",
    metric: str = "val_acc",
    mode: str = "max",
    search_seed: int = 0,
    download: bool = False,
) -> SweepResult:
    """Train every cell of `grid` into ``out/CELL`` run folders; return each cell's outcome.

    A rerun skips finished cells and resumes interrupted ones from their last saved epoch; a
    cell's failure is recorded (``out/_status/CELL.json``) and the other cells go on. The grid
    is checked completely before anything starts, and a copy is kept as ``out/grid.toml``
    (``cifarnets plot out`` reads it for the labels and published numbers).

    Args:
        grid: a `Grid`, the path of a grid file (`cifarnets.sweep.load_grid`), or a grid as a
            dict of tables (`cifarnets.sweep.grid_to_toml`), checked like a file.
        out: the sweep folder.
        engine: ``"local"`` (this process; ``parallel=N`` worker processes, each pinned to
            one GPU round-robin or ``cpu_count // N`` CPU threads) or ``"ray"`` (Ray Tune).
        parallel: cells at once (local), or the most trials at once (ray; default: as many
            as the resources allow).
        only: run only the cells whose name or label contains one of these.
        device: the training device of every cell (default: each cell's own, else the best).
        quiet: no per-epoch progress bars.
        retries: times a cell whose worker process died is started again (parallel local,
            ray); each new attempt resumes from the last saved epoch.
        callbacks: ``cb(record, history)`` after each epoch, in the process that trains the
            cell (picklable for worker processes).
        progress: ``progress(event, cell, outcome)`` in this process: ``start``, ``retry``,
            ``done``, ``skipped``, ``failed``, ``stopped`` (the command line prints these).
        address: ray: ``"auto"`` or ``"ray://HOST:PORT"`` to join a cluster (default: start a local Ray).
        cpus_per_run, gpus_per_run: ray: resources of each trial (``gpus_per_run=0.25``: four
            trials share a GPU; default one GPU per trial where the cluster has GPUs).
        download: download the data sets the cells need (torchvision's CIFAR download) before
            the first cell starts, once, whatever the grid's ``download`` says.
        search, trials, searcher, scheduler, metric, mode, search_seed: ray: sample `trials`
            cells around the grid's ``[base]`` (``["lr=loguniform(1e-4,1e-1)"]``) with Tune's
            ``"random"`` or ``"optuna"`` searcher and the ``"fifo"`` or ``"asha"`` scheduler,
            optimising `metric` (reported per epoch) in `mode`.

    Example:
        result = run("examples/grids/seed001_vgg38_bn_rc_budget.toml", "runs/sweep")
        result.counts()   # -> {'done': 5}
    """
    if engine not in ENGINES:
        raise GridError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"parallel must be a positive integer; got {parallel!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0; got {retries!r}")
    if search and engine != "ray":
        raise ValueError("--search needs the ray engine (Tune's searchers): add --engine ray")
    if isinstance(grid, Mapping):
        grid = parse_grid(grid_to_toml(grid))
    elif not isinstance(grid, Grid):
        grid = load_grid(grid)
    out = Path(out)
    cells = grid.select(only)
    runtime: dict[str, Any] = {"quiet": quiet}
    if device is not None:
        runtime["device"] = device
    space = None
    if search:
        from .search import parse_search

        space = parse_search(search, grid)
        cells = ()
    else:
        _check_folder(grid, cells, out)
    if engine == "ray":
        from .ray_engine import import_ray

        import_ray()  # a missing Ray is an error before anything is written
    _prepare_data(cells if space is None else grid.cells, download)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / GRID_FILE, grid.text)

    # Finished cells are skipped here, for every engine.
    todo, outcomes = [], {}
    for cell in cells:
        config = train_config(cell, runtime)
        if _runs.state_of(out / cell.name, config.epochs) == "finished":
            history = _runs.load_history(out / cell.name)
            vals = [e.val_acc for e in history.epochs if e.val_acc is not None] if history else []
            outcomes[cell.name] = CellOutcome(
                cell.name, "skipped", epochs=len(history.epochs) if history else 0,
                test_acc=history.test.get("acc") if history and history.test else None,
                best_val_acc=max(vals) if vals else None)
            if cell_status(out, cell.name).get("status") != "done":
                write_status(out, cell.name, status="done", error="")
            if progress is not None:
                progress("skipped", cell, outcomes[cell.name])
        else:
            todo.append(cell)

    started = time.time()
    if not todo and space is None:
        done: list[CellOutcome] = []  # every selected cell is finished: no engine to start
    elif engine == "local":
        from .local import run_local

        done = run_local(todo, out, parallel=parallel, runtime=runtime, callbacks=callbacks, retries=retries,
                         progress=progress)
    else:
        from .ray_engine import run_ray

        done = run_ray(todo, out, grid=grid, runtime=runtime, callbacks=callbacks, retries=retries,
                       address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                       parallel=parallel if parallel > 1 else None, space=space, trials=trials, searcher=searcher,
                       scheduler=scheduler, metric=metric, mode=mode, search_seed=search_seed, progress=progress)
    for outcome in done:
        outcomes[outcome.name] = outcome
    order = [c.name for c in cells] + [o.name for o in done if o.name not in {c.name for c in cells}]
    result = SweepResult(out, tuple(outcomes[n] for n in order))
    summary = {"engine": engine, "parallel": parallel, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                                                                 time.localtime(started)),
               "seconds": time.time() - started, "host": os.uname().nodename if hasattr(os, "uname") else "",
               "cells": [o.to_dict() for o in result.outcomes]}
    atomic_write(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    return result


def load_sweep(out: PathLike) -> tuple[Grid, list[Cell]]:
    """The grid a sweep folder ran (its ``grid.toml``) and the cells that have a run folder, grid cells
    first, then searched trials."""
    out = Path(out)
    path = out / GRID_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not a sweep folder (no {GRID_FILE}); run `cifarnets sweep GRID "
                                f"--out {out}`, or give run folders to `cifarnets plot`")
    grid = parse_grid(path.read_text(), path=str(path))
    cells = [c for c in grid.cells if (out / c.name / "history.json").is_file()]
    known = {c.name for c in cells}
    status_dir = out / "_status"
    if status_dir.is_dir():
        for f in sorted(status_dir.glob("*.json")):
            name = f.stem
            stored = cell_status(out, name).get("cell")
            if name not in known and stored and (out / name / "history.json").is_file() and \
                    name not in {c.name for c in grid.cells}:
                cells.append(Cell.from_dict(stored))
    return grid, cells
