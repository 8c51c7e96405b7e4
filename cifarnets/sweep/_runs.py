"""The one place where the sweep touches a cell's run folder, through `cifarnets.train.RunDir`.

Everything the sweep needs to know about a cell's run folder (is it finished, can it resume,
was it trained with these settings) and the calls that train it go through here. The run
folder itself (its lock, its one-file checkpoint commit, its repair after a kill) is
`RunDir`'s: a cell that another process is training raises `RunLockedError` and is recorded
as failed for this sweep, never trained twice at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from .._utils import CifarnetsError
from ..errors import CheckpointError
from ..train import RUNTIME_FIELDS, History, RunDir, TrainConfig, fit
from ..train.loop import EpochCallback

__all__ = ["CellState", "check_matches", "epochs_done", "load_history", "state_of", "train"]

CellState = Literal["new", "finished", "resumable", "incomplete"]


def state_of(run_dir: Path, epochs: int) -> CellState:
    """``finished`` (all `epochs` trained and tested), ``resumable`` (a committed checkpoint to
    continue from), ``incomplete`` (a config but no checkpoint: it died before its first save;
    training it starts from epoch 0 in the same folder) or ``new``."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new"
    if not RunDir(run_dir).has_checkpoint():
        return "incomplete"
    history = load_history(run_dir)
    if (run_dir / "test.json").is_file() and history is not None and history.test is not None \
            and len(history.epochs) >= epochs:
        return "finished"
    return "resumable"


def epochs_done(run_dir: Path) -> int:
    """Epochs the run folder's last committed checkpoint holds (0 if none)."""
    return RunDir(run_dir).epochs_done() or 0


def check_matches(run_dir: Path, model: str, flags: dict[str, Any], train: dict[str, Any]) -> Optional[str]:
    """Why the run in `run_dir` is not the cell's (another model, flags or setting), or None if it is."""
    folder = RunDir(run_dir)
    if not folder.has_config():
        return None
    try:
        stored = folder.config()
    except CifarnetsError as err:
        return str(err)
    if stored.get("model") != model:
        return f"it trained {stored.get('model')!r}, the grid says {model!r}"
    if stored.get("flags", {}) != flags:
        return f"it trained with model flags {stored.get('flags')}, the grid says {flags}"
    want = TrainConfig(**train).to_dict()
    have = stored.get("train", {})
    diff = [k for k in want if k not in RUNTIME_FIELDS and k != "label" and have.get(k) != want[k]]
    if diff:
        return "it was trained with " + ", ".join(f"{k}={have.get(k)!r} (the grid now says {want[k]!r})"
                                                  for k in diff)
    return None


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
    except (FileNotFoundError, CheckpointError):  # no history yet, or a damaged one (the checkpoint repairs it)
        return None
