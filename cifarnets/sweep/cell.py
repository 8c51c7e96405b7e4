"""Running one cell, in whatever process an engine gives it, and recording how it went.

`run_cell` is what every engine calls for a cell: it skips a finished run, resumes an
interrupted one, trains a new one, and never lets the cell's failure escape (the error is
recorded, the other cells go on). A cell's status lives in its run folder
(``DIR/CELL/status.json``, owned by `cifarnets.train.RunDir`): ``running``, ``done``,
``failed`` (with the error and its traceback) or ``stopped`` (ended early by a Tune
scheduler), the number of attempts, and the epoch the last attempt resumed from. The run
folders are the sweep's only state.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from .._utils import PathLike
from . import _runs
from .grid import Cell

__all__ = ["CellOutcome", "cell_status", "finished_outcome", "load_cell_data", "run_cell"]

logger = logging.getLogger(__name__)

#: The CPU threads of a cell whose grid does not set ``threads``.
CELL_THREADS = 1

EpochReport = Callable[[Cell, Any, Any], None]
"""``report(cell, record, history)`` after each epoch (the Ray engine forwards it to Tune)."""


@dataclass(frozen=True)
class CellOutcome:
    """How a cell ended in this call.

    ``status``: ``done`` (trained to the end now), ``skipped`` (already finished),
    ``failed`` (`error` says why; the run folder keeps its last good epoch) or ``stopped``.
    """

    name: str
    status: str
    epochs: int = 0
    test_acc: Optional[float] = None
    best_val_acc: Optional[float] = None
    resumed_from: Optional[int] = None
    seconds: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cell_status(sweep_dir: PathLike, name: str) -> dict[str, Any]:
    """The recorded status of a cell (``{}`` if it never ran): its run folder's ``status.json``."""
    return _runs.run_dir(Path(sweep_dir), name).status()


def write_status(sweep_dir: Path, name: str, **fields: Any) -> dict[str, Any]:
    return _runs.run_dir(Path(sweep_dir), name).update_status(**fields)


# ---------------------------------------------------------------------- data

_DATA_CACHE: dict[str, Any] = {}


def data_source(cell: Cell) -> Any:
    """The cell's `cifarnets.data.DataSource` (from its `RunSpec`)."""
    return cell.spec().data


def load_cell_data(cell: Cell, download: bool = False) -> Any:
    """The cell's `DataBundle`, loaded once per process for every cell that shares it;
    `download` fetches a missing data set even where the grid does not say ``download = true``."""
    import dataclasses

    from ..data import stratified_sample

    spec = cell.spec()
    source = spec.data
    key = json.dumps({**source.to_dict(), "test_limit": spec.test_limit}, sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        data = dataclasses.replace(source, download=source.download or download).load()
        n = spec.test_limit
        if n and n < len(data.test):
            picked = stratified_sample(data.test.labels, n, seed=0, tag="test")
            data = dataclasses.replace(data, test=data.test.subset(picked))
        _DATA_CACHE.clear()  # one data set in memory at a time: grids rarely mix them
        _DATA_CACHE[key] = data
    return _DATA_CACHE[key]


# ---------------------------------------------------------------------- one cell


def train_config(cell: Cell, runtime: Mapping[str, Any]) -> Any:
    """The cell's `TrainConfig`, with the engine's runtime settings (device, quiet).

    A cell trains with one CPU thread unless the grid says ``threads = N``: its numbers then do
    not depend on the engine, on ``--parallel`` or on the machine's core count.
    """
    return cell.spec(threads=CELL_THREADS).train.replace(label=cell.label, **runtime)


def run_cell(cell: Cell, sweep_dir: PathLike, *, runtime: Optional[Mapping[str, Any]] = None,
             callbacks: Sequence[Callable[..., None]] = (), report: Optional[EpochReport] = None,
             catch: bool = True) -> CellOutcome:
    """Train `cell` in ``sweep_dir/CELL``: skip it if finished, resume it if interrupted.

    A failure is recorded in the cell's status and returned (not raised) when `catch` is
    True; `KeyboardInterrupt` and a killed process leave the status ``running`` and the run
    folder resumable.
    """
    sweep_dir = Path(sweep_dir)
    run_dir = sweep_dir / cell.name
    config = train_config(cell, runtime or {})
    skipped = finished_outcome(cell, sweep_dir, config.epochs)
    if skipped is not None:
        return skipped
    state = _runs.state_of(run_dir, config.epochs)
    previous = cell_status(sweep_dir, cell.name)
    resumed_from = _runs.epochs_done(run_dir) if state == "resumable" else None
    write_status(sweep_dir, cell.name, status="running", attempts=int(previous.get("attempts", 0)) + 1,
                  resumed_from=resumed_from, host=socket.gethostname(), pid=os.getpid(), error="", traceback="",
                  model=cell.model, label=cell.label, cell=cell.to_dict())
    started = time.perf_counter()
    hooks = list(callbacks)
    if report is not None:
        hooks.append(lambda record, history: report(cell, record, history))
    try:
        data = load_cell_data(cell)
        history = _runs.train(run_dir, cell.model, dict(cell.model_kwargs), data, config,
                              resume=state != "new", callbacks=hooks)
    except Exception as err:
        if not catch:
            raise
        write_status(sweep_dir, cell.name, status="failed", error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc())
        logger.error("cell %s failed: %s: %s", cell.name, type(err).__name__, err)
        return CellOutcome(cell.name, "failed", epochs=_runs.epochs_done(run_dir), resumed_from=resumed_from,
                           seconds=time.perf_counter() - started, error=f"{type(err).__name__}: {err}")
    write_status(sweep_dir, cell.name, status="done", error="")
    return _outcome(cell.name, "done", history, resumed_from, time.perf_counter() - started)


def finished_outcome(cell: Cell, sweep_dir: Path, epochs: int) -> Optional[CellOutcome]:
    """The ``skipped`` outcome of a cell whose run is finished, or None: the one rule every engine skips by."""
    if _runs.state_of(sweep_dir / cell.name, epochs) != "finished":
        return None
    if cell_status(sweep_dir, cell.name).get("status") not in (None, "done"):
        write_status(sweep_dir, cell.name, status="done", error="")
    return _outcome(cell.name, "skipped", _runs.load_history(sweep_dir / cell.name))


def _outcome(name: str, status: str, history: Any, resumed_from: Optional[int] = None,
             seconds: float = 0.0) -> CellOutcome:
    if history is None:
        return CellOutcome(name, status, resumed_from=resumed_from, seconds=seconds)
    vals = [e.val_acc for e in history.epochs if e.val_acc is not None]
    return CellOutcome(name, status, epochs=len(history.epochs),
                       test_acc=history.test.get("acc") if history.test else None,
                       best_val_acc=max(vals) if vals else None, resumed_from=resumed_from, seconds=seconds)


def mark_stopped(sweep_dir: PathLike, name: str, reason: str) -> None:
    """Record that a scheduler ended the cell early (its run folder stays resumable)."""
    write_status(Path(sweep_dir), name, status="stopped", error=reason)
