"""A run's experiment trackers (`TrainConfig.log`): `fit`'s epochs sent to TensorBoard, MLflow, W&B or CSV.

The trackers themselves are `cifarnets.tracking`'s (optional extras, imported only when named);
this adapter turns a run's settings into hyper-parameters and each finished epoch into metrics
(losses, accuracies, learning rate, time, throughput and the gradient flow per layer), and ends
them with the run's outcome. A tracker that fails is logged and dropped: it never costs the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from .history import EpochRecord, History

__all__ = ["RunTrackers", "epoch_metrics"]


def epoch_metrics(record: EpochRecord) -> dict[str, float]:
    """The numbers of one epoch, by the names every tracker gets them under."""
    out = {k: getattr(record, k) for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr",
                                           "epoch_seconds", "images_per_second")}
    out.update({f"grad_flow/{layer}": value for layer, value in (record.grad_flow or {}).items()})
    return {k: float(v) for k, v in out.items() if v is not None}


class RunTrackers:
    """The trackers of one run (`cifarnets.tracking.Trackers`): an epoch callback for `fit`, started with
    the run's settings; one tracker's failure is logged and that tracker dropped, never the run."""

    def __init__(self, names: str, run_dir: Optional[Path], name: str, hparams: Mapping[str, Any], *,
                 resume: bool) -> None:
        from ..tracking import Trackers, make_trackers

        self.trackers = Trackers(make_trackers(names))
        self.trackers.start(run_dir, name, dict(hparams), resume=resume)

    def __call__(self, record: EpochRecord, history: History) -> None:
        self.trackers.log_metrics(epoch_metrics(record), record.epoch, epoch=record.epoch)

    def finish(self, status: str, history: Optional[History] = None) -> None:
        """End every tracker with the run's outcome (``finished``, ``failed``, ``interrupted``)."""
        if history is not None and history.test:
            step = history.epochs[-1].epoch if history.epochs else 0
            self.trackers.log_metrics({f"test_{k}": float(v) for k, v in history.test.items() if k in ("loss", "acc")},
                                      step)
        self.trackers.finish(status)
