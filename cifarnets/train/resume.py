"""`resume`: continue a run from its folder alone (model, data, settings from ``config.json``)."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

from ..data import DataBundle
from .config import RUNTIME_FIELDS, SCHEDULE_FIELDS, TrainConfig, resumable_fields
from .history import History
from .loop import EpochCallback, ResumeMismatchError, describe_data, fit
from .rundir import RunDir

__all__ = ["read_run_config", "resume"]


def read_run_config(run_dir: Union[str, os.PathLike]) -> dict[str, Any]:
    """The ``config.json`` of a run folder (model, keywords, data set, TrainConfig, world size, versions), checked."""
    return RunDir(run_dir).config()


def resume(
    run_dir: Union[str, os.PathLike],
    *,
    data: Optional[DataBundle] = None,
    callbacks: Sequence[EpochCallback] = (),
    change_schedule: bool = False,
    allow_world_size_change: bool = False,
    **changes: Any,
) -> History:
    """Continue the run in `run_dir` from its last checkpoint, with everything from its folder.

    The model is rebuilt from ``config.json`` (name and `cifarnets.create` keywords), the data
    reloaded with the stored `load_dataset` arguments (never downloading: pass `data` if they
    were not stored), and `fit` carries on with model, optimiser, scheduler, RNG and history
    restored. `changes` may set `RUNTIME_FIELDS` (``device=``, ``quiet=``, ...), and with
    ``change_schedule=True`` also `SCHEDULE_FIELDS` (``lr=``, ``warmup_epochs=``, ...: the
    way on after a `NonFiniteLossError`).

    Example:
        history = resume("runs/vgg38_bn_rc", quiet=True)
        history = resume("runs/vgg38", change_schedule=True, lr=1e-4)
    """
    folder = RunDir(run_dir)
    stored = folder.config()
    if folder.has_checkpoint():
        folder.check_binding()  # an edited config.json is named as an edit, before anything is compared with it
    bad = sorted(set(changes) - resumable_fields(change_schedule))
    if bad:
        hint = " (and, with change_schedule=True, " + ", ".join(sorted(SCHEDULE_FIELDS)) + ")" \
            if not change_schedule else ""
        raise ResumeMismatchError(f"resume() cannot change {', '.join(bad)}; only "
                                  f"{', '.join(sorted(RUNTIME_FIELDS - {'out_dir'}))}{hint}")
    config = TrainConfig.from_dict({**stored["train"], **changes, "out_dir": str(run_dir)})
    info = stored["data"]
    if data is None:
        load_args = info.get("load_args")
        if not isinstance(load_args, dict):
            raise ResumeMismatchError(f"{folder.path / 'config.json'} does not record how its data set was loaded "
                                      f"({info.get('dataset')}: images handed over in memory); pass them again: "
                                      "resume(folder, data=bundle)")
        from ..data import DataSource

        # A resumed run never downloads, whatever config.json says: it reads what the first run fetched.
        data = DataSource.from_dict({**load_args, "download": False}).load()
    now = describe_data(data)
    for key in ("dataset", "train", "val", "test", "num_classes", "in_chans", "mean", "std"):
        if now[key] != info.get(key):
            raise ResumeMismatchError(f"the data set differs from the run's: {key} is {now[key]!r} now, the run "
                                      f"trained with {info.get(key)!r}")
    if not stored.get("rebuildable", True):
        raise ResumeMismatchError(f"{run_dir} trained a model cifarnets cannot rebuild from its name; call "
                                  "fit(model, data, config, resume=True) with that model instead")
    return fit(stored["model"], data, config, model_kwargs=stored.get("flags", stored["model_kwargs"]),
               callbacks=callbacks, resume=True, change_schedule=change_schedule,
               allow_world_size_change=allow_world_size_change)
