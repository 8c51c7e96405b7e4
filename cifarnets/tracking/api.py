"""The tracker interface, the tracker names, and the fan-out that keeps a run alive when a tracker fails.

A tracker receives plain data (a run folder, a name, a flat dict of settings, floats per step) so that
this part sits below ``train``: the trainer builds the trackers its config names and calls them.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping, Optional, Protocol, Sequence, Union, runtime_checkable

from ..errors import ConfigError, ConfigTypeError

logger = logging.getLogger(__name__)

TRACKERS: tuple[str, ...] = ("tensorboard", "mlflow", "wandb", "csv")
"""The tracker names `make_trackers` knows, in the order the docs list them."""

STATUSES: tuple[str, ...] = ("finished", "failed", "interrupted")
"""The ways a run ends, as `Tracker.finish` receives them."""

# What the trackers may write inside a run folder (with the default settings), for the code that
# cleans or copies run folders: TensorBoard, CSV (two files), MLflow (store and artefacts), W&B.
RUN_DIR_PATHS: tuple[str, ...] = ("tb", "metrics.csv", "hparams.csv", "mlflow.db", "mlartifacts", "wandb")

Scalar = Union[bool, int, float, str]


@runtime_checkable
class Tracker(Protocol):
    """One experiment tracker (TensorBoard, MLflow, W&B, CSV) as the trainer calls it.

    `start` once per run (again on a resume with ``resume=True``: the tracker continues the same
    run where it can), `log_metrics` per epoch (``epoch=`` given) and per step, `log_image` for a
    picture saved as PNG, `finish` once with one of `STATUSES`.
    """

    name: str

    def start(self, run_dir: Optional[Path], name: str, hparams: Mapping[str, Any], *,
              resume: bool = False) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, epoch: Optional[int] = None) -> None: ...

    def log_image(self, tag: str, png_path: Path, step: int) -> None: ...

    def finish(self, status: str) -> None: ...


def check_tracker_names(names: Union[str, Sequence[str], None]) -> tuple[str, ...]:
    """The tracker names of a setting (``"tensorboard,csv"`` or a list), checked without importing any
    tracker's package: for configs and the command line. ``None``, ``""`` and ``"none"`` mean no tracker.

    >>> check_tracker_names("TensorBoard, csv,csv")
    ('tensorboard', 'csv')
    >>> check_tracker_names("none")
    ()
    """
    if names is None:
        return ()
    if isinstance(names, str):
        items = names.split(",")
    elif isinstance(names, Sequence) and all(isinstance(n, str) for n in names):
        items = list(names)
    else:
        raise ConfigTypeError(f"trackers must be a comma-separated string or a list of names, not {names!r}; "
                              f"choose from {', '.join(TRACKERS)}")
    wanted = [n.strip().lower() for n in items if n.strip()]
    if wanted == ["none"]:
        return ()
    problems = []
    for item in wanted:
        if item not in TRACKERS:
            close = difflib.get_close_matches(item, TRACKERS, n=2, cutoff=0.5)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            problems.append(f"unknown tracker {item!r}; {hint}choose from {', '.join(TRACKERS)}")
    if problems:
        raise ConfigError("; ".join(problems), problems)
    return tuple(dict.fromkeys(wanted))


def missing_package(tracker: str, error: ImportError, extra: str, package: str) -> ConfigError:
    """The one-line error for a tracker whose package is not installed (or does not import)."""
    broken = f" (importing it failed: {error})" if error.name not in (None, package) and \
        not str(error.name).startswith(package + ".") else ""
    return ConfigError(f"the {tracker} tracker needs the {package!r} package: "
                       f"pip install 'cifarnets[{extra}]'{broken}")


def flatten_hparams(hparams: Mapping[str, Any], *, prefix: str = "") -> dict[str, Scalar]:
    """A run's settings as one flat dict of scalars for the trackers: nested dicts joined with ``.``;
    bools, ints, floats and strings kept; None, lists and other values as text.

    >>> flatten_hparams({"model": "vgg16", "train": {"lr": 0.01, "milestones": [30, 60]}, "seed": None})
    {'model': 'vgg16', 'train.lr': 0.01, 'train.milestones': '[30, 60]', 'seed': 'None'}
    """
    flat: dict[str, Scalar] = {}
    for key, value in hparams.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, prefix=full + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[full] = value
        elif isinstance(value, (list, tuple)):
            flat[full] = json.dumps(value, default=str)
        else:
            flat[full] = str(value)
    return flat


class Trackers:
    """Several trackers called as one, so that one tracker's failure does not lose the run.

    An exception from a tracker is logged as a warning (with its traceback the first time) and the
    run carries on; a tracker whose `start` failed is dropped. Used as a context manager, it
    finishes the trackers with "finished", "interrupted" (KeyboardInterrupt) or "failed".
    """

    def __init__(self, trackers: Sequence[Tracker] = ()) -> None:
        self.trackers: list[Tracker] = list(trackers)
        self.failures: dict[str, int] = {}

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the trackers still in use."""
        return tuple(t.name for t in self.trackers)

    def _call(self, tracker: Tracker, method: str, *args: Any, **kwargs: Any) -> bool:
        try:
            getattr(tracker, method)(*args, **kwargs)
            return True
        except Exception as error:  # a tracker is a side channel: its failure must not end the training run
            count = self.failures.get(tracker.name, 0) + 1
            self.failures[tracker.name] = count
            outcome = "without it" if method == "start" else \
                ("" if count == 1 else f"({count} failures so far)")
            logger.warning("the %s tracker failed in %s (%s: %s); the run carries on %s", tracker.name, method,
                           type(error).__name__, error, outcome, exc_info=count == 1)
            return False

    def start(self, run_dir: Optional[Path], name: str, hparams: Mapping[str, Any], *,
              resume: bool = False) -> None:
        """Start every tracker; drop those that fail."""
        self.trackers = [t for t in self.trackers if self._call(t, "start", run_dir, name, hparams, resume=resume)]

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, epoch: Optional[int] = None) -> None:
        """Send metrics to every tracker."""
        for tracker in self.trackers:
            self._call(tracker, "log_metrics", metrics, step, epoch=epoch)

    def log_image(self, tag: str, png_path: Path, step: int) -> None:
        """Send a PNG picture to every tracker."""
        for tracker in self.trackers:
            self._call(tracker, "log_image", tag, Path(png_path), step)

    def finish(self, status: str) -> None:
        """Finish every tracker with one of `STATUSES`."""
        if status not in STATUSES:
            raise ConfigError(f"unknown run status {status!r}; choose from {', '.join(STATUSES)}")
        for tracker in self.trackers:
            self._call(tracker, "finish", status)
        self.trackers = []

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, kind: Optional[type[BaseException]], error: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        if kind is None:
            self.finish("finished")
        else:
            self.finish("interrupted" if issubclass(kind, KeyboardInterrupt) else "failed")

