"""What a training run records, epoch by epoch, and how it is stored (``history.json``).

The reports compare runs by their curves (the coursework reports' Figs. 1 and 4, the AlexNet/VGG report §5-6),
best validation accuracy, test accuracy, time per epoch and gradient flow (mean |grad| of
every weight layer, the coursework reports' Figs. 2, 3, 5). A `History` holds exactly those, and
`cifarnets.plots` draws them. Accuracies are percentages, losses mean cross-entropy.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import CheckpointError, CheckpointNotFoundError
from .files import HISTORY_JSON

__all__ = ["EpochRecord", "History", "HistoryError", "HistoryNotFoundError", "HISTORY_SCHEMA"]

HISTORY_SCHEMA = 1

# create() keywords that follow the data set rather than name a variant of the model.
_DATA_KEYWORDS = ("in_chans", "num_classes")


HistoryError = CheckpointError  # kept name; the kind is cifarnets.errors.CheckpointError


HistoryNotFoundError = CheckpointNotFoundError  # kept name; the kind is cifarnets.errors.CheckpointNotFoundError


@dataclass
class EpochRecord:
    """One epoch of a run. ``val_*`` are ``None`` when the run has no validation split.

    ``train_loss`` is the loss the optimiser minimised (with label smoothing, if any),
    averaged over the epoch's training batches as the weights changed; ``val_loss`` is plain
    cross-entropy. ``lr`` is the learning rate of the epoch's first step. ``epoch_seconds``
    is the wall time of the epoch's training and validation (checkpoint writing excluded),
    ``train_seconds``/``eval_seconds`` its two parts, and ``images_per_second`` the
    training throughput (training images of all ranks / ``train_seconds``).
    """

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: Optional[float] = None
    val_acc: Optional[float] = None
    lr: float = math.nan
    epoch_seconds: float = math.nan
    images_per_second: float = math.nan
    grad_flow: dict[str, float] = field(default_factory=dict)
    train_seconds: float = math.nan
    eval_seconds: float = math.nan

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EpochRecord":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class History:
    """The record of one run: what was trained, how, every epoch, the best epoch, the test.

    Attributes:
        model: registry name of the model.
        model_kwargs: the `cifarnets.create` keywords of the model (``bn``, ``rc``, ...,
            ``in_chans``, ``num_classes``): the same keywords as in ``config.json`` and the
            checkpoints.
        params: parameter count.
        config: the `TrainConfig` as a dict.
        epochs: one `EpochRecord` per finished epoch.
        best_epoch: epoch with the highest validation accuracy (the last epoch when there is
            no validation split), whose weights are the run's ``best`` checkpoint.
        test: metrics of the best checkpoint on the test set, once evaluated
            (``{"loss": ..., "acc": ...}``).
        label: short name for legends; defaults to the model and its flags.
        dataset: the data set trained on (``"cifar100"``, ``"synthetic"``, ...).
        num_classes: classes of that data set (the chance level of the curves); 0 if unknown.
        changes: what resumed runs changed, one entry per resume that changed something:
            ``{"epoch": first epoch under the change, "changed": {field: [old, new]}}``
            (learning rate and schedule with ``change_schedule=True``, ``world_size``).

    Example:
        >>> h = History(model="vgg08", params=59716)
        >>> h.epochs.append(EpochRecord(epoch=1, train_loss=4.2, train_acc=5.0, val_loss=4.0, val_acc=7.5))
        >>> History.from_json(h.to_json()).epochs[0].val_acc
        7.5
    """

    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    params: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: Optional[int] = None
    test: Optional[dict[str, Any]] = None
    label: str = ""
    dataset: str = ""
    num_classes: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """`label`, or the model and its flags (``"vgg38 bn rc"``; the data set's in_chans/num_classes left out)."""
        if self.label:
            return self.label
        flags = [k if v is True else f"{k}={v}" for k, v in self.model_kwargs.items()
                 if v not in (False, None) and k not in _DATA_KEYWORDS]
        return " ".join([self.model, *flags])

    def best(self) -> Optional[EpochRecord]:
        """The record of `best_epoch`."""
        return next((e for e in self.epochs if e.epoch == self.best_epoch), None)

    def series(self, key: str) -> list[Optional[float]]:
        """One column over epochs, e.g. ``series("val_acc")``."""
        return [getattr(e, key) for e in self.epochs]

    def grad_flow_layers(self) -> list[str]:
        """Weight layers in network order, as recorded in the gradient flow."""
        for epoch in self.epochs:
            if epoch.grad_flow:
                return list(epoch.grad_flow)
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"schema": HISTORY_SCHEMA, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "History":
        if not isinstance(data, dict):
            raise HistoryError(f"a history is a JSON object; got {type(data).__name__}")
        schema = data.get("schema", HISTORY_SCHEMA)
        if not isinstance(schema, int) or schema > HISTORY_SCHEMA:
            raise HistoryError(
                f"history schema {schema!r} is not one this cifarnets reads (up to {HISTORY_SCHEMA}); upgrade")
        known = {f.name for f in fields(cls)} - {"epochs"}
        history = cls(**{k: v for k, v in data.items() if k in known})
        history.epochs = [EpochRecord.from_dict(e) for e in data.get("epochs", [])]
        return history

    @classmethod
    def from_json(cls, text: str) -> "History":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: Union[str, Path]) -> "History":
        """Read ``history.json``, or the one inside a run folder."""
        path = Path(path)
        if path.is_dir():
            path = path / HISTORY_JSON
        if not path.exists():
            raise HistoryNotFoundError(
                f"no training history at {path}; is it a run folder written by `cifarnets train`?")
        fix = (f"it is rewritten from the run's checkpoint by `cifarnets train --resume {path.parent}` "
               "(also when the run is finished)")
        try:
            return cls.from_json(path.read_text())
        except PermissionError as err:
            raise HistoryError(f"cannot read {path}: permission denied; ask its owner to make it readable") from err
        except (ValueError, TypeError, AttributeError) as err:
            raise HistoryError(f"{path} is not a readable training history ({type(err).__name__}: {err}); {fix}") \
                from err

    def to_csv(self) -> str:
        """The per-epoch table (without gradient flow) as CSV text."""
        columns = [f.name for f in fields(EpochRecord) if f.name != "grad_flow"]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for e in self.epochs:
            writer.writerow(["" if getattr(e, c) is None else getattr(e, c) for c in columns])
        return out.getvalue()
