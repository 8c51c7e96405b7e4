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

__all__ = ["CellState", "check_matches", "epochs_done", "load_history", "run_dir", "state_of", "train"]

CellState = Literal["new", "finished", "resumable", "incomplete"]


def run_dir(sweep_dir: Path, name: str) -> RunDir:
    """The run folder of cell `name`."""
    return RunDir(sweep_dir / name)


def state_of(run_dir: Path, epochs: int) -> CellState:
    """`RunDir.state` in the sweep's words: ``finished`` (all `epochs` trained and tested),
    ``resumable`` (a committed checkpoint to continue from), ``incomplete`` (it died before
    its first save; training starts from epoch 0 in the same folder) or ``new``. A folder
    with trained weights but no checkpoint is an error (`RunDir.refuse_orphaned`)."""
    folder = RunDir(run_dir)
    state = folder.state()
    if state == "orphaned":
        folder.refuse_orphaned()
    if state == "new":
        return "new"
    if state == "started":
        return "incomplete"
    history = load_history(run_dir)
    if state == "finished" and history is not None and history.test is not None and len(history.epochs) >= epochs:
        return "finished"
    return "resumable"


def epochs_done(run_dir: Path) -> int:
    """Epochs the run folder's last committed checkpoint holds (0 if none)."""
    return RunDir(run_dir).epochs_done() or 0


def check_matches(run_dir: Path, model: str, flags: dict[str, Any], train: TrainConfig) -> Optional[str]:
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
    want = train.to_dict()
    have = stored.get("train", {})
    diff = [k for k in want if k not in RUNTIME_FIELDS and k != "label" and have.get(k) != want[k]]
    if diff:
        return "it was trained with " + ", ".join(f"{k}={have.get(k)!r} (the grid now says {want[k]!r})"
                                                  for k in diff)
    return None


def train(run_dir: Path, model: str, model_kwargs: dict[str, Any], data: Any,
          config: TrainConfig, *, resume: bool, callbacks: Sequence[EpochCallback]) -> History:
    """Train (or continue) the cell's run in `run_dir`."""
    config = config.replace(out_dir=str(run_dir))
    return fit(model, data, config, model_kwargs=model_kwargs, callbacks=callbacks,
               resume=resume)


def load_history(run_dir: Path) -> Optional[History]:
    """The run's history, or None when it has none yet."""
    try:
        return History.load(run_dir)
    except (FileNotFoundError, CheckpointError):  # no history yet, or a damaged one (the checkpoint repairs it)
        return None
