"""The results table of a set of runs: the VGG38 report's Table 1 and the AlexNet/VGG
report's Tables 5-7 in one (docs/references.md lists the reports).

For each run: its parameters, learning rate, best epoch and the losses and accuracies of
that epoch (the VGG38 report, Table 1: "# Params, Train loss, Train acc, Val loss, Val acc"),
the test loss and accuracy of the best checkpoint (the AlexNet/VGG report, Table 5), the mean
time per epoch (its Table 6) and the parameters per percentage point of test accuracy (its
Table 7: VGG-8, 13.1 M parameters at 88.32 %, needs 148 K per point).

Runs are read through `History.load`, so this module depends on nothing but the history.

Example:
    >>> from cifarnets.train.history import EpochRecord, History
    >>> h = History(model="vgg8_classic", params=13_119_050, best_epoch=1, test={"loss": 0.4, "acc": 88.32},
    ...             epochs=[EpochRecord(1, 0.3, 90.0, 0.4, 88.0, lr=0.01, epoch_seconds=37.97)])
    >>> table = results_table([h])
    >>> round(table.rows[0].params_per_point)
    148540
    >>> print(table.to_markdown().splitlines()[2])  # doctest: +NORMALIZE_WHITESPACE
    | vgg8_classic | 13,119,050 | 0.01 | 1 | 0.3000 | 90.00 | 0.4000 | 88.00 | 0.4000 | 88.32 | 37.97
      | 148,540 |
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Optional, Union

from .._utils import atomic_write
from .history import History

__all__ = ["ResultRow", "ResultsTable", "results_table"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ResultRow:
    """One run's line of the table. Accuracies in percent; ``None`` where the run has no value.

    Attributes:
        run: the run's name (`History.name`).
        model: registry name.
        params: parameter count.
        lr: initial learning rate (the config's ``lr``, else the first epoch's).
        best_epoch: the epoch whose weights are the best checkpoint.
        train_loss, train_acc, val_loss, val_acc: that epoch's metrics.
        test_loss, test_acc: the best checkpoint on the test set.
        seconds_per_epoch: mean wall time of an epoch.
        params_per_point: ``params / test_acc``, the AlexNet/VGG report's Table 7.
    """

    run: str
    model: str
    params: int
    lr: Optional[float]
    best_epoch: Optional[int]
    train_loss: Optional[float]
    train_acc: Optional[float]
    val_loss: Optional[float]
    val_acc: Optional[float]
    test_loss: Optional[float]
    test_acc: Optional[float]
    seconds_per_epoch: Optional[float]
    params_per_point: Optional[float]


_HEADERS = {
    "run": "run", "model": "model", "params": "params", "lr": "lr", "best_epoch": "best epoch",
    "train_loss": "train loss", "train_acc": "train acc (%)", "val_loss": "val loss", "val_acc": "val acc (%)",
    "test_loss": "test loss", "test_acc": "test acc (%)", "seconds_per_epoch": "s / epoch",
    "params_per_point": "params per test-acc point",
}
# The Markdown table leaves out `model` (the run name already starts with it).
_MARKDOWN_COLUMNS = [f.name for f in fields(ResultRow) if f.name != "model"]


def _finite(value: Optional[float]) -> Optional[float]:
    return None if value is None or not math.isfinite(value) else float(value)


def _row(history: History) -> ResultRow:
    best = history.best()
    if best is None and history.epochs:
        # A run without validation: the last epoch stands for the run, as its checkpoint does.
        best = history.epochs[-1]
    test = history.test or {}
    test_acc = _finite(test.get("acc"))
    times = [e.epoch_seconds for e in history.epochs if e.epoch_seconds is not None and math.isfinite(e.epoch_seconds)]
    lr = history.config.get("lr")
    if lr is None and history.epochs:
        lr = history.epochs[0].lr
    return ResultRow(
        run=history.name, model=history.model, params=int(history.params),
        lr=_finite(lr), best_epoch=best.epoch if best else None,
        train_loss=_finite(best.train_loss) if best else None, train_acc=_finite(best.train_acc) if best else None,
        val_loss=_finite(best.val_loss) if best else None, val_acc=_finite(best.val_acc) if best else None,
        test_loss=_finite(test.get("loss")), test_acc=test_acc,
        seconds_per_epoch=sum(times) / len(times) if times else None,
        # 0 % accuracy has no finite cost per point; leave it empty rather than print inf.
        params_per_point=history.params / test_acc if test_acc and history.params else None,
    )


def _fmt(column: str, value: object) -> str:
    if value is None:
        return "–"
    if column == "params":
        return f"{value:,}"
    if column == "params_per_point":
        return f"{round(value):,}"  # type: ignore[call-overload]
    if column == "lr":
        return f"{value:g}"
    if column in ("train_acc", "val_acc", "test_acc"):
        return f"{value:.2f}"
    if column in ("train_loss", "val_loss", "test_loss"):
        return f"{value:.4f}"
    if column == "seconds_per_epoch":
        return f"{value:.2f}"
    return str(value)


@dataclass(frozen=True)
class ResultsTable(Sequence[ResultRow]):
    """The rows of `results_table`, in the order of the runs given; a sequence of `ResultRow`.

    `to_markdown` is for reports and the terminal (numbers rounded as the reports print
    them), `to_csv` keeps full precision for further analysis, `save` writes either.
    """

    rows: tuple[ResultRow, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):  # type: ignore[override]
        return self.rows[index]

    def __iter__(self) -> Iterator[ResultRow]:
        return iter(self.rows)

    def to_markdown(self) -> str:
        """A GitHub Markdown table; numbers right-aligned, missing values as ``–``."""
        header = "| " + " | ".join(_HEADERS[c] for c in _MARKDOWN_COLUMNS) + " |"
        align = "|" + "|".join("---" if c == "run" else "--:" for c in _MARKDOWN_COLUMNS) + "|"
        lines = [header, align]
        for row in self.rows:
            lines.append("| " + " | ".join(_fmt(c, getattr(row, c)) for c in _MARKDOWN_COLUMNS) + " |")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """CSV with one header line of field names, full precision, empty cells for missing values."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([f.name for f in fields(ResultRow)])
        for row in self.rows:
            writer.writerow(["" if v is None else v for v in astuple(row)])
        return out.getvalue()

    def __str__(self) -> str:
        return self.to_markdown()

    def save(self, path: PathLike) -> Path:
        """Write the table atomically: CSV for ``.csv``, Markdown for ``.md``; returns the path."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            text = self.to_csv()
        elif suffix in (".md", ".markdown"):
            text = self.to_markdown() + "\n"
        else:
            raise ValueError(f"cannot tell the format of {str(path)!r}: give a path ending in .md or .csv")
        atomic_write(path, text)
        return path


def results_table(runs: Iterable[Union[History, PathLike]]) -> ResultsTable:
    """One `ResultRow` per run (a `History` or a run folder with ``history.json``).

    Example:
        >>> from cifarnets.train.history import EpochRecord, History
        >>> h = History(model="vgg38", params=336_196, best_epoch=1,
        ...             epochs=[EpochRecord(1, 4.61, 1.0, 4.61, 1.0, epoch_seconds=30.0)])
        >>> row = results_table([h])[0]
        >>> row.val_loss, row.test_acc, row.params_per_point
        (4.61, None, None)
    """
    if isinstance(runs, (History, str, os.PathLike)):
        runs = [runs]
    histories = [r if isinstance(r, History) else History.load(Path(r)) for r in runs]
    return ResultsTable(tuple(_row(h) for h in histories))
