"""A sweep's results: one table of every cell with the report's published numbers beside the
measured ones, and the curves and gradient-flow pictures (``cifarnets plot DIR``).

The reports print the numbers of their *final* epoch (the ResNet-18 report says so: 95.06 %
at the end against 95.29 % at its best epoch 291), while a run keeps its best-validation
checkpoint. The table shows both, labelled: ``final ...`` (the last epoch) and ``best val
acc`` with its epoch, and the test accuracy of the kept (best) checkpoint.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .._utils import PathLike, atomic_write, markdown_table
from ..errors import CheckpointError
from ..train import History
from .api import load_sweep
from .cell import cell_status
from .grid import Cell, Grid

__all__ = ["SweepTable", "plot_sweep", "sweep_table"]

_MEASURED = [
    ("final train loss", "final_train_loss"), ("final train acc", "final_train_acc"),
    ("final val loss", "final_val_loss"), ("final val acc", "final_val_acc"),
    ("best val acc", "best_val_acc"), ("best epoch", "best_epoch"), ("test acc (best ckpt)", "test_acc"),
    ("grad first/last", "grad_ratio"), ("s/epoch", "seconds_per_epoch"),
]


def grad_ratio(history: History) -> Optional[float]:
    """Mean |grad| of the first weight layer over the last, averaged over epochs (about 1e-12 and
    below: the gradient vanished, as in plain VGG38 of the VGG38 BN/RC report's Figs. 2, 3 and 5)."""
    layers = history.grad_flow_layers()
    if len(layers) < 2:
        return None
    ratios = [e.grad_flow[layers[0]] / e.grad_flow[layers[-1]] for e in history.epochs
              if e.grad_flow and e.grad_flow.get(layers[-1], 0) > 0 and layers[0] in e.grad_flow]
    return sum(ratios) / len(ratios) if ratios else None


def _row(cell: Cell, history: Optional[History], status: str) -> dict[str, Any]:
    row: dict[str, Any] = {"cell": cell.label + (" (prose only)" if cell.prose_only else ""), "folder": cell.name,
                           "group": cell.group, "status": status}
    if history is None or not history.epochs:
        return row
    last = history.epochs[-1]
    best = history.best()
    times = [e.epoch_seconds for e in history.epochs if e.epoch_seconds is not None and math.isfinite(e.epoch_seconds)]
    row.update(
        params=history.params, epochs=len(history.epochs),
        final_train_loss=last.train_loss, final_train_acc=last.train_acc, final_val_loss=last.val_loss,
        final_val_acc=last.val_acc, best_val_acc=best.val_acc if best is not None else None,
        best_epoch=history.best_epoch, test_acc=history.test.get("acc") if history.test else None,
        grad_ratio=grad_ratio(history), seconds_per_epoch=sum(times) / len(times) if times else None,
    )
    return row


@dataclass(frozen=True)
class SweepTable:
    """Rows (one dict per cell) and the published keys that appear in the grid."""

    title: str
    rows: tuple[dict[str, Any], ...]
    published_keys: tuple[str, ...]
    note: str = ""

    def columns(self) -> list[tuple[str, str]]:
        cols = [("cell", "cell")]
        if any(r.get("group") for r in self.rows):
            cols.append(("group", "group"))
        cols += [("status", "status"), ("params", "params"), ("epochs", "epochs"), *_MEASURED]
        cols += [(f"published {k.replace('_', ' ')}", f"published_{k}") for k in self.published_keys]
        return cols

    def to_markdown(self) -> str:
        cols = self.columns()
        rows = [[_fmt(key, r.get(key)) for _, key in cols] for r in self.rows]
        right = [key not in ("cell", "group", "status") for _, key in cols]
        text = markdown_table([h for h, _ in cols], rows, right)
        head = f"### {self.title}\n\n" if self.title else ""
        tail = f"\n\n{self.note}" if self.note else ""
        return head + text + tail

    def to_csv(self) -> str:
        cols = [("folder", "folder"), *self.columns()]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([key for _, key in cols])
        for r in self.rows:
            writer.writerow(["" if r.get(key) is None else r.get(key) for _, key in cols])
        return buf.getvalue()

    def save(self, path: PathLike) -> Path:
        path = Path(path)
        text = self.to_csv() if path.suffix == ".csv" else self.to_markdown() + "\n"
        return atomic_write(path, text)


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if key == "params":
        return f"{value:,}"
    if isinstance(value, bool) or isinstance(value, int) or isinstance(value, str):
        return str(value)
    if key == "grad_ratio":
        return f"{value:.2g}"
    if "loss" in key:
        return f"{value:.4f}"
    return f"{value:.2f}"


def sweep_table(out: PathLike) -> SweepTable:
    """The results table of the sweep folder `out`: every cell that has run, measured and published.

    Example:
        print(sweep_table("runs/seed001").to_markdown())   # after a sweep into runs/seed001
    """
    out = Path(out)
    grid, cells = load_sweep(out)
    keys: list[str] = []
    for c in grid.cells:
        for k in c.published:
            if k not in keys:
                keys.append(k)
    rows = []
    for cell in cells:
        try:
            history: Optional[History] = History.load(out / cell.name)
        except (FileNotFoundError, CheckpointError):
            history = None
        status = cell_status(out, cell.name).get("status", "done" if history and history.test else "?")
        row = _row(cell, history, status)
        row.update({f"published_{k}": v for k, v in cell.published.items()})
        rows.append(row)
    return SweepTable(title=_title(grid), rows=tuple(rows), published_keys=tuple(keys), note=grid.note)


def _title(grid: Grid) -> str:
    if grid.title and grid.report:
        return f"{grid.title} ({grid.report})"
    return grid.title or grid.report


def plot_sweep(out: PathLike, plot_dir: Optional[PathLike] = None, *, title: Optional[str] = None) -> list[Path]:
    """The sweep's pictures and table into `plot_dir` (default ``out/plots``); returns the files.

    Writes ``curves.png`` (every cell's loss and accuracy), ``CELL/gradient_flow.png`` per cell
    that recorded it, and ``results.md`` / ``results.csv`` (`sweep_table`).
    """
    from .. import plots

    out = Path(out)
    plot_dir = Path(plot_dir) if plot_dir is not None else out / "plots"
    grid, cells = load_sweep(out)
    if not cells:
        raise FileNotFoundError(f"{out} has no trained cells yet (no CELL/history.json); run the sweep first")
    histories = []
    for cell in cells:
        history = History.load(out / cell.name)
        history.label = cell.label
        histories.append((cell, history))
    figure = plots.curves([h for _, h in histories], title=title or _title(grid))
    written = [plots.save(figure, plot_dir / "curves.png")]
    for cell, history in histories:
        if history.grad_flow_layers():
            written.append(plots.save(plots.gradient_flow(history), plot_dir / cell.name / "gradient_flow.png"))
    table = sweep_table(out)
    written += [table.save(plot_dir / "results.md"), table.save(plot_dir / "results.csv")]
    return written
