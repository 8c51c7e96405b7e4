"""A run's experiment trackers (`TrainConfig.log`): `fit`'s epochs sent to TensorBoard, MLflow, W&B or CSV.

The trackers themselves are `cifarnets.tracking`'s (optional extras, imported only when named);
this adapter turns a run's settings into hyper-parameters and each finished epoch into metrics
(losses, accuracies, learning rate, time, throughput and the gradient flow per layer), and ends
them with the run's outcome. A tracker that fails is logged and dropped: it never costs the run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

from .history import EpochRecord, History

__all__ = ["RunTrackers", "epoch_metrics"]

logger = logging.getLogger(__name__)


def epoch_metrics(record: EpochRecord) -> dict[str, float]:
    """The numbers of one epoch, by the names every tracker gets them under."""
    out = {k: getattr(record, k) for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr",
                                           "epoch_seconds", "images_per_second")}
    out.update({f"grad_flow/{layer}": value for layer, value in (record.grad_flow or {}).items()})
    return {k: float(v) for k, v in out.items() if v is not None}


class RunTrackers:
    """The trackers of one run: an epoch callback for `fit`, started with the run's settings."""

    def __init__(self, names: str, run_dir: Optional[Path], name: str, hparams: Mapping[str, Any]) -> None:
        from ..tracking import make_trackers

        self.trackers = make_trackers(names)
        self.run_dir = run_dir
        for tracker in list(self.trackers):
            self._call(tracker, "start", run_dir, name, dict(hparams))

    def _call(self, tracker: Any, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(tracker, method)(*args, **kwargs)
        except Exception as err:  # a tracker's own failure must not lose the run
            logger.warning("tracker %s failed in %s (%s: %s); the run goes on without it", type(tracker).__name__,
                           method, type(err).__name__, err)
            self.trackers.remove(tracker)

    def __call__(self, record: EpochRecord, history: History) -> None:
        metrics = epoch_metrics(record)
        for tracker in list(self.trackers):
            self._call(tracker, "log_metrics", metrics, record.epoch, epoch=record.epoch)

    def finish(self, status: str, history: Optional[History] = None) -> None:
        """End every tracker with the run's outcome (``finished``, ``failed``, ``interrupted``)."""
        if history is not None and history.test:
            step = history.epochs[-1].epoch if history.epochs else 0
            test = {f"test_{k}": float(v) for k, v in history.test.items() if k in ("loss", "acc")}
            for tracker in list(self.trackers):
                self._call(tracker, "log_metrics", test, step)
        for tracker in list(self.trackers):
            self._call(tracker, "finish", status)
