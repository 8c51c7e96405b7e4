"""The one place where the sweep touches a run folder's internals.

Everything the sweep needs to know about a cell's run folder (is it finished, can it resume,
was it trained with these settings) and the calls that train it go through here, so that a
change of the run-folder layout (`cifarnets.train`) is a change of this file only.
Today: ``test.json`` marks a finished run, ``last.state.pt`` a resumable one, ``config.json``
holds the settings, and `fit(..., resume=True)` continues.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from ..train import RUNTIME_FIELDS, History, TrainConfig, fit
from ..train.loop import EpochCallback

__all__ = ["CellState", "check_matches", "load_history", "state_of", "train"]

CellState = Literal["new", "finished", "resumable", "incomplete"]


def state_of(run_dir: Path, epochs: int) -> CellState:
    """``finished`` (all `epochs` trained and tested), ``resumable`` (a checkpoint to continue from),
    ``incomplete`` (files but no checkpoint: it died before its first save) or ``new``."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new"
    if (run_dir / "test.json").is_file():
        try:
            history = History.load(run_dir)
        except (FileNotFoundError, ValueError):
            history = None
        if history is not None and history.test is not None and len(history.epochs) >= epochs:
            return "finished"
    if (run_dir / "last.state.pt").is_file():
        return "resumable"
    return "incomplete"


def epochs_done(run_dir: Path) -> int:
    """Epochs the run folder holds (0 if none)."""
    try:
        return len(History.load(run_dir).epochs)
    except (FileNotFoundError, ValueError):
        return 0


def check_matches(run_dir: Path, model: str, model_kwargs: dict[str, Any], train: dict[str, Any]) -> Optional[str]:
    """Why the run in `run_dir` is not the cell's (another model, flags or setting), or None if it is."""
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    if stored.get("model") != model:
        return f"it trained {stored.get('model')!r}, the grid says {model!r}"
    if stored.get("model_kwargs", {}) != model_kwargs:
        return f"it trained with model flags {stored.get('model_kwargs')}, the grid says {model_kwargs}"
    want = TrainConfig(**train).to_dict()
    have = stored.get("train", {})
    diff = [k for k in want if k not in RUNTIME_FIELDS and k != "label" and have.get(k) != want[k]]
    if diff:
        return "it was trained with " + ", ".join(f"{k}={have.get(k)!r} (the grid now says {want[k]!r})"
                                                  for k in diff)
    return None


def set_aside(run_dir: Path) -> Path:
    """Move an incomplete run folder out of the way (nothing is deleted); returns its new path."""
    target = run_dir.with_name(f"_{run_dir.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.rename(target)
    return target


def train(run_dir: Path, model: str, model_kwargs: dict[str, Any], data: Any, data_args: dict[str, Any],
          config: TrainConfig, *, resume: bool, callbacks: Sequence[EpochCallback]) -> History:
    """Train (or continue) the cell's run in `run_dir`."""
    config = config.replace(out_dir=str(run_dir))
    return fit(model, data, config, model_kwargs=model_kwargs, data_args=data_args, callbacks=callbacks,
               resume=resume)


def load_history(run_dir: Path) -> Optional[History]:
    """The run's history, or None when it has none yet."""
    try:
        return History.load(run_dir)
    except (FileNotFoundError, ValueError):
        return None
