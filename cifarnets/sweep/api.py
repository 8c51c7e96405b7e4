"""`run`: a grid of runs into one sweep folder, with the ``local`` or the ``ray`` engine."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from .._utils import PathLike, atomic_write
from ..errors import RunError
from ..train import RunDir
from . import _runs
from .cell import CellOutcome, cell_status, data_source, finished_outcome, train_config
from .grid import GRID_FILE, MAX_CELLS, Cell, Grid, GridError, grid_to_toml, load_grid, parse_grid

__all__ = ["ENGINES", "SweepResult", "load_sweep", "run"]

ENGINES = ("local", "ray")
SWEEP_LOCK = ".sweep.lock"


@dataclass(frozen=True)
class SweepResult:
    """What a `run` call did: the sweep folder and every selected cell's outcome, in grid order."""

    out: Path
    outcomes: tuple[CellOutcome, ...]
    seconds: float = 0.0

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
    if RunDir(out).has_config():
        raise GridError(f"{out} is a run folder, not a sweep folder; choose another --out")
    problems = []
    for cell in cells:
        run_dir = out / cell.name
        why = _runs.check_matches(run_dir, cell.model, dict(cell.model_kwargs), train_config(cell, {}))
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
        key = json.dumps(data_source(cell).to_dict(), sort_keys=True, default=str)
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
    dry_run: bool = False,
    max_cells: int = MAX_CELLS,
) -> SweepResult:
    """Train every cell of `grid` into ``out/CELL`` run folders; return each cell's outcome.

    A rerun skips finished cells and resumes interrupted ones from their last saved epoch; a
    cell's failure is recorded (``out/CELL/status.json``) and the other cells go on. The grid
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
        dry_run: make every check a real run makes (settings, folder, data sets, Ray), write
            nothing, train nothing; the outcomes are ``planned`` (or ``skipped`` when finished).
        max_cells: refuse a grid of more cells (`MAX_CELLS` unless raised).
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
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise GridError(f"parallel (--parallel) must be a positive integer; got {parallel!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise GridError(f"retries (--retries) must be a non-negative integer; got {retries!r}")
    if search and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise GridError(f"trials (--trials) must be a positive integer; got {trials!r}")
    if search and engine != "ray":
        raise GridError("--search needs the ray engine (Tune's searchers): add --engine ray")
    if not str(out).strip():
        raise GridError("the sweep folder (--out) is an empty path; name a folder")
    if isinstance(grid, Mapping):
        grid = parse_grid(grid_to_toml(grid), max_cells=max_cells)
    elif not isinstance(grid, Grid):
        grid = load_grid(grid, max_cells=max_cells)
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
    _prepare_data(cells if space is None else grid.cells, download and not dry_run)
    if dry_run:
        planned = [finished_outcome(c, out, train_config(c, runtime).epochs) if (out / c.name).is_dir() else None
                   for c in cells]
        return SweepResult(out, tuple(o or CellOutcome(c.name, "planned") for c, o in zip(cells, planned)))
    with _sweep_lock(out):
        atomic_write(out / GRID_FILE, grid.text)
        return _run_cells(grid, cells, out, engine, parallel, runtime, callbacks, retries, progress, space,
                          dict(address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run, trials=trials,
                               searcher=searcher, scheduler=scheduler, metric=metric, mode=mode,
                               search_seed=search_seed))


def _run_cells(grid: Grid, cells: Sequence[Cell], out: Path, engine: str, parallel: int, runtime: dict[str, Any],
               callbacks: Sequence[Callable[..., None]], retries: int, progress: Any, space: Any,
               ray_options: dict[str, Any]) -> SweepResult:

    # Finished cells are skipped here, for every engine (by the rule run_cell also follows).
    todo, outcomes = [], {}
    for cell in cells:
        skipped = finished_outcome(cell, out, train_config(cell, runtime).epochs)
        if skipped is not None:
            outcomes[cell.name] = skipped
            if progress is not None:
                progress("skipped", cell, skipped)
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
                       parallel=parallel if parallel > 1 else None, space=space, progress=progress, **ray_options)
    for outcome in done:
        outcomes[outcome.name] = outcome
    order = [c.name for c in cells] + [o.name for o in done if o.name not in {c.name for c in cells}]
    return SweepResult(out, tuple(outcomes[n] for n in order), seconds=time.time() - started)


@contextlib.contextmanager
def _sweep_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.sweep.lock`` while a sweep runs: a second sweep on the same folder stops at once, saying so."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / SWEEP_LOCK
    if path.is_symlink():
        raise GridError(f"{path} is a symbolic link; remove it (cifarnets never writes through a link)")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: the run folders' own locks still hold
            pass
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise RunError(f"another sweep is running in {out} ({holder}); its cells are locked by it. Wait for it "
                           "to finish (then run this command again to continue), or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)


def load_sweep(out: PathLike) -> tuple[Grid, list[Cell]]:
    """The grid a sweep folder ran (its ``grid.toml``) and the cells that have a run folder, grid cells
    first, then searched trials."""
    out = Path(out)
    path = out / GRID_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not a sweep folder (no {GRID_FILE}); run `cifarnets sweep GRID "
                                f"--out {out}`, or give run folders to `cifarnets plot`")
    grid = parse_grid(path.read_text(), path=str(path))
    cells = [c for c in grid.cells if RunDir(out / c.name).has_history()]
    known = {c.name for c in cells}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        name = folder.name
        if name in known or name in {c.name for c in grid.cells} or not RunDir(folder).has_history():
            continue
        stored = cell_status(out, name).get("cell")  # a searched trial records its cell in its status
        if stored:
            cells.append(Cell.from_dict(stored))
    return grid, cells
