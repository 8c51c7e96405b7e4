"""The ``ray`` engine: every cell a Ray Tune trial, on this machine or on a cluster.

``ray`` is imported here only, and only when this engine runs (``pip install
'cifarnets[sweep]'``). A local Ray is started on demand (and stopped after); ``address="auto"``
or ``"ray://HOST:PORT"`` joins a running cluster. Each trial asks for `cpus_per_run` CPUs and
`gpus_per_run` GPUs (fractions share a GPU), reports its metrics to Tune after every epoch
(``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr``), so Tune's
schedulers (ASHA) and searchers (Optuna) work, and writes its run folder under the sweep
folder exactly as the ``local`` engine does.

Retries: a trial whose worker dies is started again by Tune (``FailureConfig(max_failures=
retries)``); it finds the cell's run folder and resumes from its last saved epoch. Tune's own
checkpoints are not used, so on a cluster of several machines the sweep folder must be on
storage every node sees (NFS, a shared mount) at the same path.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from .cell import CellOutcome, cell_status, mark_stopped, run_cell
from .grid import Cell, Grid
from .search import SearchSpace

__all__ = ["run_ray"]

logger = logging.getLogger(__name__)

_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


def import_ray() -> Any:
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"the ray engine needs Ray Tune ({err}); install it with: pip install 'cifarnets[sweep]' "
                           "(or use --engine local)") from None
    return ray


def _metrics(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"epoch": record.epoch}
    for key in _METRICS:
        value = getattr(record, key)
        out[key] = float(value) if value is not None else math.nan
    return out


def _trainable(config: dict[str, Any], *, cells: dict[str, dict[str, Any]], sweep_dir: str,
               runtime: dict[str, Any], callbacks: Sequence[Callable[..., None]],
               space: Optional[SearchSpace], grid: Optional[Grid]) -> None:
    """One Tune trial: the cell named by ``config["cell"]``, or a cell from sampled settings (the CPU threads
    are the cell's own setting, as on the local engine)."""
    from ray import tune

    if space is not None:
        assert grid is not None
        trial_id = tune.get_context().get_trial_id()
        suffix = trial_id.rsplit("_", 1)[-1]
        index = int(suffix) if suffix.isdigit() else trial_id
        cell = space.cell(grid, {k: config[k] for k in space.keys}, index)
    else:
        cell = Cell.from_dict(cells[config["cell"]])

    def report(cell: Cell, record: Any, history: Any) -> None:
        tune.report({**_metrics(record), "cell": cell.name})

    outcome = run_cell(cell, sweep_dir, runtime=runtime, callbacks=callbacks, report=report)
    if outcome.status == "skipped":
        # Finished before: tell Tune its final numbers, so searchers and tables see them.
        from . import _runs

        history = _runs.load_history(Path(sweep_dir) / cell.name)
        if history is not None and history.epochs:
            tune.report({**_metrics(history.epochs[-1]), "cell": cell.name})


def run_ray(cells: Sequence[Cell], sweep_dir: Path, *, grid: Grid, runtime: Mapping[str, Any],
            callbacks: Sequence[Callable[..., None]], retries: int, address: Optional[str],
            cpus_per_run: float, gpus_per_run: Optional[float], parallel: Optional[int],
            space: Optional[SearchSpace] = None, trials: int = 1, searcher: str = "random",
            scheduler: str = "fifo", metric: str = "val_acc", mode: str = "max", search_seed: int = 0,
            progress: Optional[Callable[[str, Cell, Optional[CellOutcome]], None]] = None) -> list[CellOutcome]:
    """Run the cells (or `trials` sampled cells) as Tune trials; return their outcomes."""
    ray = import_ray()
    from ray import tune

    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
        started_here = True
    try:
        cluster = ray.cluster_resources()
        gpus = gpus_per_run if gpus_per_run is not None else (1.0 if cluster.get("GPU", 0) >= 1 else 0.0)
        resources = {"cpu": cpus_per_run, "gpu": gpus}
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, cells={c.name: c.to_dict() for c in cells}, sweep_dir=str(sweep_dir),
                                 runtime=dict(runtime), callbacks=list(callbacks),
                                 space=space, grid=grid if space else None),
            resources)
        tune_kwargs: dict[str, Any] = {"max_concurrent_trials": parallel if parallel and parallel > 1 else None}
        if space is None:
            param_space: dict[str, Any] = {"cell": tune.grid_search([c.name for c in cells])}
            tune_kwargs["num_samples"] = 1
        else:
            param_space = space.tune_space(searcher)
            tune_kwargs.update(num_samples=trials, metric=metric, mode=mode)
            if searcher == "optuna":
                from ray.tune.search.optuna import OptunaSearch

                tune_kwargs["search_alg"] = OptunaSearch(seed=search_seed)
            if scheduler == "asha":
                from ray.tune.schedulers import ASHAScheduler

                epochs = int(grid.cells[0].train.get("epochs", 100))
                tune_kwargs["scheduler"] = _asha(ASHAScheduler, epochs)
        if space is None and scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            epochs = max(int(c.train.get("epochs", 100)) for c in cells)
            tune_kwargs.update(metric=metric, mode=mode, scheduler=_asha(ASHAScheduler, epochs))
        tuner = tune.Tuner(
            trainable, param_space=param_space, tune_config=tune.TuneConfig(**tune_kwargs),
            run_config=tune.RunConfig(
                name="tune", storage_path=str((sweep_dir / "_tune").resolve()), verbose=0,
                failure_config=tune.FailureConfig(max_failures=retries)))
        results = _fit_quietly(tuner)
        names = []
        for result in results:
            metrics = result.metrics or {}
            name = metrics.get("cell") or (result.config or {}).get("cell")
            if name:
                names.append(name)
    finally:
        if started_here:
            ray.shutdown()
    if space is not None:
        cells = [space.cell_from_status(sweep_dir, grid, n) for n in sorted(set(names))]
    outcomes = []
    for cell in cells:
        outcome = _outcome_from_disk(sweep_dir, cell, stopped_possible=scheduler == "asha")
        if progress is not None:
            progress(outcome.status, cell, outcome)
        outcomes.append(outcome)
    return outcomes


def _asha(scheduler_class: Any, epochs: int) -> Any:
    """ASHA on the per-epoch reports. ``max_t`` is one past the last epoch: ASHA stops a trial that
    reaches ``max_t`` at once, which would cut the cell off before its test evaluation."""
    return scheduler_class(time_attr="epoch", max_t=epochs + 1, grace_period=1)


def _fit_quietly(tuner: Any) -> Any:
    """``tuner.fit()`` without Tune's console tables (the library does not print; the CLI reports per cell)."""
    import os

    saved = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the legacy reporter honours verbose=0
    try:
        return tuner.fit()
    finally:
        if saved is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved


def _outcome_from_disk(sweep_dir: Path, cell: Cell, *, stopped_possible: bool) -> CellOutcome:
    from . import _runs

    status = cell_status(sweep_dir, cell.name)
    history = _runs.load_history(sweep_dir / cell.name)
    epochs = len(history.epochs) if history else 0
    kind = status.get("status", "failed")
    if kind == "running":
        # The trial ended while the cell was training: a scheduler stopped it, or all retries died.
        kind = "stopped" if stopped_possible else "failed"
        reason = ("stopped early by the scheduler" if stopped_possible else
                  "its trial ended before the cell finished (the worker died more often than --retries allows); "
                  "a rerun resumes it")
        if stopped_possible:
            mark_stopped(sweep_dir, cell.name, reason)
        else:
            from .cell import write_status

            write_status(sweep_dir, cell.name, status="failed", error=reason)
        return CellOutcome(cell.name, kind, epochs=epochs, error=reason)
    vals = [e.val_acc for e in history.epochs if e.val_acc is not None] if history else []
    test = history.test if history else None
    return CellOutcome(cell.name, "done" if kind == "done" else kind, epochs=epochs,
                       test_acc=test.get("acc") if test else None, best_val_acc=max(vals) if vals else None,
                       resumed_from=status.get("resumed_from"), error=status.get("error", ""))
