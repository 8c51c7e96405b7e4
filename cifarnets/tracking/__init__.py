"""Experiment trackers (TensorBoard, MLflow, W&B, CSV files) behind one small interface.

The trainer builds the trackers its config names and calls them with plain data; each tracker's
package is imported only when that tracker is built, so ``import cifarnets`` does not pay for them.

    >>> import tempfile
    >>> from pathlib import Path
    >>> run_dir = Path(tempfile.mkdtemp())
    >>> with Trackers(make_trackers("csv")) as trackers:
    ...     trackers.start(run_dir, "demo", {"model": "vgg16", "train": {"lr": 0.01}})
    ...     trackers.log_metrics({"train_loss": 2.3, "val_acc": 10.0}, step=100, epoch=1)
    >>> [(row["name"], row["value"]) for row in read_metrics_csv(run_dir / "metrics.csv")]
    [('train_loss', 2.3), ('val_acc', 10.0)]

docs/training.md ("Experiment tracking") says where each tracker writes and how to look at it.
"""

from .api import RUN_DIR_PATHS, STATUSES, TRACKERS, Tracker, Trackers, check_tracker_names, flatten_hparams
from .backends import (
    CsvTracker,
    MlflowTracker,
    TensorBoardTracker,
    WandbTracker,
    make_trackers,
    read_metrics_csv,
)
from .ray_tune import ray_callbacks

__all__ = [
    "RUN_DIR_PATHS", "STATUSES", "TRACKERS", "CsvTracker", "MlflowTracker", "TensorBoardTracker", "Tracker",
    "Trackers", "WandbTracker", "check_tracker_names", "flatten_hparams", "make_trackers", "ray_callbacks",
    "read_metrics_csv",
]
