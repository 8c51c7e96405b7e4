"""The results table of a set of runs, one run or a whole sweep: the VGG38 report's Table 1 and
the AlexNet/VGG report's Tables 5-7 in one, with the spread over seeds (docs/references.md lists
the reports).

For each run: its parameters, learning rate, best epoch and the losses and accuracies of
that epoch (the VGG38 report, Table 1: "# Params, Train loss, Train acc, Val loss, Val acc"),
the test loss and accuracy of the best checkpoint (the AlexNet/VGG report, Table 5), the mean
time per epoch (its Table 6) and the parameters per percentage point of test accuracy (its
Table 7: VGG-8, 13.1 M parameters at 88.32 %, needs 148 K per point); besides, the final
epoch's numbers (the reports print those), the best validation accuracy and the gradient
first/last ratio. Runs that differ only by their seed form a *group*; `ResultsTable.groups`
gives each group's n, mean, standard deviation, min-max and 95 % t interval
(`cifarnets.train.stats`). A sweep's table (`cifarnets.sweep.sweep_table`) is this table with
the cells' label, folder, status and published numbers as extra columns.

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
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, Union

from .._utils import atomic_write, markdown_table
from .history import History
from .stats import MIN_INTERVAL_N, Spread, summarize

__all__ = ["GROUP_METRICS", "GroupRow", "ResultRow", "ResultsTable", "grad_ratio", "results_table"]

PathLike = Union[str, "os.PathLike[str]"]

#: The numbers a group of seeds is summarised by, with their names in tables. The gradient
#: ratio spans orders of magnitude (1e-9 for plain VGG38, 0.1 for the others), so its spread
#: is geometric: geometric mean and a geometric standard deviation (a factor).
GROUP_METRICS = {
    "final_val_acc": "final val acc", "best_val_acc": "best val acc", "test_acc": "test acc (best ckpt)",
    "final_train_loss": "final train loss", "final_val_loss": "final val loss", "grad_ratio": "grad first/last",
    "final_train_acc": "final train acc",
}
_GEOMETRIC = {"grad_ratio"}
# Shown in the grouped Markdown table (final train acc only where a report published it).
_GROUP_SHOWN = ("final_val_acc", "best_val_acc", "test_acc", "final_train_loss", "final_val_loss", "grad_ratio")
# Config keys that do not make two runs different settings (seed groups are runs that differ only by these).
_NOT_A_SETTING = {"seed", "out_dir", "label", "quiet", "resume", "threads", "deterministic"}


def grad_ratio(history: History) -> Optional[float]:
    """Mean |grad| of the first weight layer over the last, averaged over epochs (about 1e-12 and
    below: the gradient vanished, as in plain VGG38 of the VGG38 BN/RC report's Figs. 2, 3 and 5)."""
    layers = history.grad_flow_layers()
    if len(layers) < 2:
        return None
    ratios = [e.grad_flow[layers[0]] / e.grad_flow[layers[-1]] for e in history.epochs
              if e.grad_flow and e.grad_flow.get(layers[-1], 0) > 0 and layers[0] in e.grad_flow]
    return sum(ratios) / len(ratios) if ratios else None


@dataclass(frozen=True)
class ResultRow:
    """One run's line of the table. Accuracies in percent; ``None`` where the run has no value.

    A row reads like a dict too (``row["val_acc"]``, ``row.get("folder")``, ``"published_val_acc"
    in row``): its fields and the `extra` columns a caller added.

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
        epochs: epochs trained.
        final_train_loss, final_train_acc, final_val_loss, final_val_acc: the last epoch's metrics.
        best_val_acc: the best epoch's validation accuracy (None without validation).
        grad_ratio: `grad_ratio` of the run.
        seed: the training seed (the config's).
        seed_group: the key of the run's seed group (runs with the same key differ only by their seed).
        extra: columns the caller adds (a sweep: ``cell``, ``folder``, ``status``, its grid's ``group``,
            ``published_*``); none may share a field's name (it would hide the field in `as_dict`).
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
    epochs: int = 0
    final_train_loss: Optional[float] = None
    final_train_acc: Optional[float] = None
    final_val_loss: Optional[float] = None
    final_val_acc: Optional[float] = None
    best_val_acc: Optional[float] = None
    grad_ratio: Optional[float] = None
    seed: Optional[int] = None
    seed_group: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        shadowed = sorted(set(self.extra) & set(_FIELDS))
        if shadowed:
            raise ValueError(f"extra columns {shadowed} have the names of ResultRow fields; give them other names")

    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        if key in _FIELDS:
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.extra or key in _FIELDS

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def to_dict(self) -> dict[str, Any]:
        """The row as one flat dict: its fields, then the extra columns."""
        return {**{k: getattr(self, k) for k in _FIELDS}, **dict(self.extra)}


_FIELDS = tuple(f.name for f in fields(ResultRow) if f.name != "extra")

_HEADERS = {
    "run": "run", "model": "model", "params": "params", "lr": "lr", "best_epoch": "best epoch",
    "train_loss": "train loss", "train_acc": "train acc (%)", "val_loss": "val loss", "val_acc": "val acc (%)",
    "test_loss": "test loss", "test_acc": "test acc (%)", "seconds_per_epoch": "s / epoch",
    "params_per_point": "params per test-acc point", "epochs": "epochs", "seed": "seed",
    "final_train_loss": "final train loss", "final_train_acc": "final train acc", "final_val_loss": "final val loss",
    "final_val_acc": "final val acc", "best_val_acc": "best val acc", "grad_ratio": "grad first/last",
    "cell": "cell", "folder": "folder", "status": "status",
}
# The Markdown table of single runs leaves out `model` (the run name already starts with it).
RUN_COLUMNS = ("run", "params", "lr", "best_epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
               "test_acc", "seconds_per_epoch", "params_per_point")
_TEXT_COLUMNS = {"run", "model", "cell", "folder", "status", "group", "seed_group"}


def _finite(value: Optional[float]) -> Optional[float]:
    return None if value is None or not math.isfinite(value) else float(value)


def _group_key(history: History) -> str:
    # Runs that differ only by their seed (and run-time choices) share a key.
    config = {k: v for k, v in history.config.items() if k not in _NOT_A_SETTING}
    return json.dumps([history.name, history.model, history.model_kwargs, config], sort_keys=True, default=str)


def result_row(history: History, *, seed_group: Optional[str] = None, extra: Optional[Mapping[str, Any]] = None
               ) -> ResultRow:
    """The `ResultRow` of one history; `seed_group` names its seed group (default: from its settings)."""
    best = history.best()
    best_val = best.val_acc if best is not None else None
    if best is None and history.epochs:
        # A run without validation: the last epoch stands for the run, as its checkpoint does.
        best = history.epochs[-1]
    last = history.epochs[-1] if history.epochs else None
    test = history.test or {}
    test_acc = _finite(test.get("acc"))
    times = [e.epoch_seconds for e in history.epochs if e.epoch_seconds is not None and math.isfinite(e.epoch_seconds)]
    lr = history.config.get("lr")
    if lr is None and history.epochs:
        lr = history.epochs[0].lr
    seed = history.config.get("seed")
    return ResultRow(
        run=history.name, model=history.model, params=int(history.params),
        lr=_finite(lr), best_epoch=best.epoch if best else None,
        train_loss=_finite(best.train_loss) if best else None, train_acc=_finite(best.train_acc) if best else None,
        val_loss=_finite(best.val_loss) if best else None, val_acc=_finite(best.val_acc) if best else None,
        test_loss=_finite(test.get("loss")), test_acc=test_acc,
        seconds_per_epoch=sum(times) / len(times) if times else None,
        # 0 % accuracy has no finite cost per point; leave it empty rather than print inf.
        params_per_point=history.params / test_acc if test_acc and history.params else None,
        epochs=len(history.epochs),
        final_train_loss=_finite(last.train_loss) if last else None,
        final_train_acc=_finite(last.train_acc) if last else None,
        final_val_loss=_finite(last.val_loss) if last else None,
        final_val_acc=_finite(last.val_acc) if last else None,
        best_val_acc=_finite(best_val), grad_ratio=grad_ratio(history),
        seed=seed if isinstance(seed, int) else None,
        seed_group=seed_group if seed_group is not None else _group_key(history), extra=dict(extra or {}),
    )


@dataclass(frozen=True)
class GroupRow:
    """A group of runs that differ only by their seed: its label, runs, seeds, and the `Spread` of each number.

    `published` holds, per measured number the grid published one for, the published value and
    whether it lies inside the measured min-max and the 95 % interval (``None``: no interval, n < 3).
    """

    label: str
    key: str
    runs: tuple[str, ...]
    seeds: tuple[Optional[int], ...]
    stats: dict[str, Spread]
    published: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "seed_group": self.key, "n": self.n, "runs": list(self.runs),
                "seeds": list(self.seeds), "stats": {k: s.to_dict() for k, s in self.stats.items()},
                "published": self.published}


def _published_metric(key: str) -> Optional[str]:
    # The reports print their final epoch: a published ``val_acc`` is compared with the final val acc.
    if key in GROUP_METRICS:
        return key
    return f"final_{key}" if f"final_{key}" in GROUP_METRICS else None


def _group(rows: Sequence[ResultRow], key: str) -> GroupRow:
    first = rows[0]
    stats = {}
    for metric in GROUP_METRICS:
        spread = summarize([r[metric] for r in rows], geometric=metric in _GEOMETRIC)
        if spread is not None:
            stats[metric] = spread
    published: dict[str, dict[str, Any]] = {}
    for name, value in first.extra.items():
        if not name.startswith("published_") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        measured = _published_metric(name[len("published_"):])
        if measured is not None and measured in stats:
            metric = measured
            published[metric] = {"key": name[len("published_"):], "value": value, **stats[metric].contains(value)}
    label = str(first.extra.get("cell", first.run))
    return GroupRow(label=label, key=key, runs=tuple(str(r.extra.get("folder", r.run)) for r in rows),
                    seeds=tuple(r.seed for r in rows), stats=stats, published=published)


def _fmt(column: str, value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if column == "params":
        return f"{value:,}"
    if column == "params_per_point":
        return f"{round(value):,}"  # type: ignore[call-overload]
    if column == "lr":
        return f"{value:g}"
    if column == "grad_ratio":
        return f"{value:.2g}"
    if isinstance(value, int):
        return str(value)
    if "loss" in column:
        return f"{value:.4f}"
    return f"{value:.2f}"


def _spread_fmt(metric: str, value: float) -> str:
    return f"{value:.2g}" if metric in _GEOMETRIC else (f"{value:.4f}" if "loss" in metric else f"{value:.2f}")


def _yes(value: Optional[bool]) -> str:
    return "–" if value is None else ("yes" if value else "**no**")


@dataclass(frozen=True)
class ResultsTable(Sequence[ResultRow]):
    """The rows of `results_table` (or of a sweep), in the order of the runs given; a sequence of `ResultRow`.

    `to_markdown` is for reports and the terminal (numbers rounded as the reports print
    them; with seed groups of several runs, the groups' spread first), `to_csv` keeps full
    precision for further analysis, `to_json` has everything (per run and per group), `save`
    writes any of them. `columns` are the per-run Markdown table's columns (row fields or extra
    columns; ``published_KEY`` for a published number), `headers` their names where not the usual ones.
    """

    rows: tuple[ResultRow, ...]
    title: str = ""
    note: str = ""
    columns: tuple[str, ...] = RUN_COLUMNS
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):  # type: ignore[override]
        return self.rows[index]

    def __iter__(self) -> Iterator[ResultRow]:
        return iter(self.rows)

    @property
    def published_keys(self) -> tuple[str, ...]:
        """The published numbers that appear in any row (``val_acc`` for ``published_val_acc``), in order."""
        keys: list[str] = []
        for row in self.rows:
            for name in row.extra:
                if name.startswith("published_") and name[len("published_"):] not in keys:
                    keys.append(name[len("published_"):])
        return tuple(keys)

    def groups(self) -> tuple[GroupRow, ...]:
        """One `GroupRow` per seed group, in the order of their first runs."""
        order: dict[str, list[ResultRow]] = {}
        for row in self.rows:
            order.setdefault(row.seed_group, []).append(row)
        return tuple(_group(rows, key) for key, rows in order.items())

    def records(self) -> list[dict[str, Any]]:
        """The per-run rows as plain dicts."""
        return [r.to_dict() for r in self.rows]

    def has_seed_groups(self) -> bool:
        """Whether any group has more than one run (then the tables show its spread)."""
        return any(g.n > 1 for g in self.groups())

    def to_markdown(self, *, grouped: Optional[bool] = None) -> str:
        """GitHub Markdown: the seed groups' spread (when `grouped`; default: when a group has several runs),
        then one line per run; numbers right-aligned, missing values as ``–``."""
        head = f"### {self.title}\n\n" if self.title else ""
        tail = f"\n\n{self.note}" if self.note else ""
        parts = []
        if grouped or (grouped is None and self.has_seed_groups()):
            parts.append(self.groups_markdown())
        parts.append(self.runs_markdown())
        return head + "\n\n".join(parts) + tail

    def runs_markdown(self) -> str:
        """The per-run Markdown table."""
        cols = list(self.columns)
        names = {**_HEADERS, **self.headers}
        headers = [names.get(c, c.replace("published_", "published ").replace("_", " ")) for c in cols]
        rows = [[_fmt(c, r.get(c)) for c in cols] for r in self.rows]
        return markdown_table(headers, rows, [c not in _TEXT_COLUMNS for c in cols])

    def groups_markdown(self) -> str:
        """The seed groups' Markdown table: per group and number, n, mean ± std, min–max, the 95 % t
        interval (n ≥ 3) and, where published, whether the published number lies inside them."""
        groups = self.groups()
        with_published = any(g.published for g in groups)
        headers = ["cell", "measure", "n", "mean ± std", "min–max", "95 % interval"]
        if with_published:
            headers += ["published", "inside min–max", "inside 95 %"]
        rows = []
        for g in groups:
            shown = [m for m in GROUP_METRICS if m in g.stats and (m in _GROUP_SHOWN or m in g.published)]
            for metric in shown:
                s = g.stats[metric]
                interval = "–" if s.interval is None else \
                    f"{_spread_fmt(metric, s.interval[0])}–{_spread_fmt(metric, s.interval[1])}"
                name = GROUP_METRICS[metric] + (" (geometric)" if s.geometric else "")
                line = [g.label, name, str(s.n), s.text(4 if "loss" in metric else 2),
                        f"{_spread_fmt(metric, s.min)}–{_spread_fmt(metric, s.max)}", interval]
                if with_published:
                    p = g.published.get(metric)
                    line += ["–", "–", "–"] if p is None else \
                        [_spread_fmt(metric, p["value"]), _yes(p["inside_min_max"]), _yes(p["inside_interval"])]
                rows.append(line)
        right = [False, False, True, True, True, True] + ([True, False, False] if with_published else [])
        note = (f"\n\nmean ± sample standard deviation over the seeds; the 95 % interval is the mean's Student-t "
                f"interval (n ≥ {MIN_INTERVAL_N}). grad first/last: geometric mean ×/÷ geometric standard deviation, "
                "its interval from log10 of the ratios.")
        return markdown_table(headers, rows, right) + note

    def to_csv(self) -> str:
        """CSV with one header line of field names (then the extra columns), full precision, empty cells for missing."""
        extra: list[str] = []
        for row in self.rows:
            extra += [k for k in row.extra if k not in extra]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*_FIELDS, *extra])
        for row in self.rows:
            values = [getattr(row, k) for k in _FIELDS] + [row.extra.get(k) for k in extra]
            writer.writerow(["" if v is None else v for v in values])
        return out.getvalue()

    def to_data(self) -> dict[str, Any]:
        """Everything as JSON-ready data: ``title``, ``note``, ``groups`` (`GroupRow.to_dict`) and ``runs``."""
        return {"title": self.title, "note": self.note, "groups": [g.to_dict() for g in self.groups()],
                "runs": self.records()}

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=1, allow_nan=False, default=str) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()

    def save(self, path: PathLike) -> Path:
        """Write the table atomically: CSV for ``.csv``, Markdown for ``.md``, JSON for ``.json``; returns the path."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            text = self.to_csv()
        elif suffix in (".md", ".markdown"):
            text = self.to_markdown() + "\n"
        elif suffix == ".json":
            text = self.to_json()
        else:
            raise ValueError(f"cannot tell the format of {str(path)!r}: give a path ending in .md or .csv (or .json)")
        atomic_write(path, text)
        return path


def results_table(runs: Iterable[Union[History, PathLike]]) -> ResultsTable:
    """One `ResultRow` per run (a `History` or a run folder with ``history.json``); runs that differ
    only by their seed form one group (`ResultsTable.groups`).

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
    rows = [result_row(h) for h in histories]
    seeds: dict[str, list[Optional[int]]] = {}
    for row in rows:
        seeds.setdefault(row.seed_group, []).append(row.seed)
    # Runs of one setting are seed replicates only if their seeds differ (two runs of one seed are
    # two separate runs, e.g. the same model with and without gradient flow); those stay apart.
    rows = [r if len(set(seeds[r.seed_group])) == len(seeds[r.seed_group])
            else replace(r, seed_group=f"{r.seed_group}#{i}")
            for i, r in enumerate(rows)]
    return ResultsTable(tuple(rows))
