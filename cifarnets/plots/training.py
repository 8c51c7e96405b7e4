"""Training curves: loss and accuracy per epoch of runs (`curves`), and the mean with a band of
several runs of one setting, e.g. its seeds (`curves_band`).

Both mark every epoch when a run has few of them (a one-epoch run is a point, which a line
alone does not draw) and put whole epochs on the x axis.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..errors import ConfigError, ConfigTypeError
from ..train.history import History
from ._base import RunLike, canvas, epoch_axis, epoch_markers, figure, load_history, nan_for_none, root, run_colour

__all__ = ["BANDS", "BAND_METRICS", "curves", "curves_band", "seed_curves"]

# What `curves_band` can draw, with the axis label of each.
BAND_METRICS = {
    "val_acc": "validation accuracy (%)",
    "val_loss": "validation loss (cross-entropy)",
    "train_acc": "training accuracy (%)",
    "train_loss": "training loss (the loss minimised)",
    "lr": "learning rate",
}
# The bands `curves_band` draws around the mean, as its legend names them.
BANDS = {"std": "± 1 standard deviation", "minmax": "min to max"}


def _num_classes(history: History) -> Optional[int]:
    value = history.num_classes or history.model_kwargs.get("num_classes") or history.config.get("num_classes")
    if value:
        return int(value)
    try:
        from ..registry import model_info
        return model_info(history.model).num_classes
    except (ValueError, TypeError, KeyError):  # a model this installation does not know
        return None


def _shared_classes(histories: Iterable[History]) -> Optional[int]:
    """The number of classes of every run, when they agree and it is known: the chance level."""
    classes = {_num_classes(h) for h in histories}
    return classes.pop() if len(classes) == 1 else None


def _chance_line(ax: Axes, classes: int, kind: str) -> None:
    """A grey dashed line at chance level: loss ln C or accuracy 100/C %, annotated on the right."""
    if kind == "loss":
        level, text, va = math.log(classes), f"chance: ln {classes} = {math.log(classes):.2f}", "bottom"
    else:
        level, text, va = 100 / classes, f"chance: {100 / classes:g}%", "top"
    ax.axhline(level, color="0.5", ls="--", lw=0.8)
    # Right-hand side, on the side of the line that learning curves leave: loss falls below
    # chance, accuracy rises above it.
    ax.annotate(text, (0.99, level), xycoords=("axes fraction", "data"), ha="right", va=va, fontsize=7,
                color="0.4")


def _histories(runs: Iterable[RunLike], what: str) -> list[History]:
    """The runs read, each with at least one finished epoch."""
    histories = [load_history(r) for r in runs]
    if not histories:
        raise ConfigError(f"{what} needs at least one run")
    empty = [h.name for h in histories if not h.epochs]
    if empty:
        raise ConfigError(f"run(s) {', '.join(map(repr, empty))} have no finished epoch to plot; "
                          "plot them once training has finished an epoch")
    return histories


def curves(
    runs: Union[RunLike, Iterable[RunLike]],
    *,
    title: Optional[str] = None,
    chance: bool = True,
) -> Figure:
    """Loss and accuracy per epoch of one or more runs: the reports' training-curve figures.

    Two panels, (a) cross-entropy and (b) accuracy, as the VGG38 reports' Figs. 1 and 4; one
    colour per run, training dotted and validation solid as the deeper-VGG report's Fig. 2
    describes. A star marks each run's best validation epoch (whose weights are tested); the
    legend gives the test accuracy when the run has one. With `chance`, grey lines mark chance
    level (loss ln C, accuracy 100/C %): plain VGG38's curves sit on them (the VGG38 report,
    §2: "plateaus at approximately 4.6"). Runs of up to `FEW_EPOCHS` epochs have a marker on
    every epoch.

    Example:
        >>> from cifarnets.train.history import EpochRecord, History
        >>> h = History(model="vgg08", epochs=[EpochRecord(e, 4 - e / 2, 10.0 * e, 4.1 - e / 3, 8.0 * e)
        ...                                    for e in (1, 2, 3)], best_epoch=3)
        >>> fig = curves([h])
        >>> [ax.get_title() for ax in fig.axes]
        ['(a) loss', '(b) accuracy']
        >>> len(fig.axes[0].lines)   # train, validation, the best epoch's star, chance (ln 100)
        4
    """
    if isinstance(runs, (History, str, os.PathLike)):
        runs = [runs]
    histories = _histories(runs, "curves")
    fig = figure(12.0, 5.2)
    loss_ax, acc_ax = fig.subplots(1, 2)
    run_labels = []
    for i, history in enumerate(histories):
        colour = run_colour(i)
        epochs = [e.epoch for e in history.epochs]
        marks = epoch_markers(len(epochs), size=3.0)
        best = history.best()
        has_val = any(e.val_loss is not None for e in history.epochs)
        label = history.name + ("" if has_val else " (train only)")
        if history.test and history.test.get("acc") is not None:
            label += f" (test {history.test['acc']:.2f}%)"
        run_labels.append(label)
        for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
            ax.plot(epochs, [nan_for_none(v) for v in history.series(f"train_{key}")], color=colour, ls=":", lw=1.4,
                    alpha=0.9, **marks, mfc="white")
            if has_val:
                ax.plot(epochs, [nan_for_none(v) for v in history.series(f"val_{key}")], color=colour, ls="-", lw=1.6,
                        **marks)
            if best is not None and getattr(best, f"val_{key}") is not None:
                ax.plot([best.epoch], [getattr(best, f"val_{key}")], marker="*", ms=10, color=colour, mec="k", mew=0.5)
    classes = _shared_classes(histories) if chance else None
    if classes is not None:
        _chance_line(loss_ax, classes, "loss")
        _chance_line(acc_ax, classes, "acc")
    loss_ax.set_ylabel("cross-entropy loss")
    loss_ax.set_title("(a) loss", fontsize=10)
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_title("(b) accuracy", fontsize=10)
    every_epoch = [e.epoch for h in histories for e in h.epochs]
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        epoch_axis(ax, every_epoch)
    # One legend under both panels: it can never hide a curve, whatever the runs look like.
    handles = [Line2D([], [], color=run_colour(i), lw=2) for i in range(len(histories))]
    marks = epoch_markers(max(len(h.epochs) for h in histories), size=3.0)  # as on the curves
    style = [Line2D([], [], color="0.3", ls=":", lw=1.4, **marks, mfc="white"),
             Line2D([], [], color="0.3", ls="-", lw=1.6, **marks),
             Line2D([], [], color="0.3", ls="none", marker="*", ms=10, mec="k", mew=0.5)]
    fig.legend(handles + style, run_labels + ["train", "validation", "best validation epoch"],
               loc="outside lower center", ncol=min(len(handles), 3) + 3, fontsize=8, frameon=False)
    fig.suptitle(title or "Training curves: " + ", ".join(h.name for h in histories), fontsize=11)
    return fig


def _runs_by_epoch(histories: Sequence[History], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The epochs any run reached, and the runs x epochs matrix of `metric` (NaN: not reached or not measured)."""
    epochs = np.array(sorted({e.epoch for h in histories for e in h.epochs}), dtype=int)
    column = {int(epoch): j for j, epoch in enumerate(epochs)}
    values = np.full((len(histories), len(epochs)), np.nan)
    for i, history in enumerate(histories):
        for record in history.epochs:
            values[i, column[record.epoch]] = nan_for_none(getattr(record, metric))
    return epochs, values


def _mean_and_band(values: np.ndarray, band: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per epoch: the mean over the runs measured there, the band's low and high edge, and the count.

    The band needs two runs: where fewer were measured its edges are NaN. The standard
    deviation is the sample one (ddof 1), the usual estimate of the spread between seeds.
    """
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
    low = np.full(count.shape, np.nan)
    high = np.full(count.shape, np.nan)
    for j in np.flatnonzero(count >= 2):
        column = values[finite[:, j], j]
        if band == "std":
            spread = float(np.std(column, ddof=1))
            low[j], high[j] = mean[j] - spread, mean[j] + spread
        else:
            low[j], high[j] = float(column.min()), float(column.max())
    return mean, low, high, count


def curves_band(
    groups: Mapping[str, Sequence[RunLike]],
    *,
    metric: str = "val_acc",
    band: str = "std",
    ax: Optional[Axes] = None,
    title: Optional[str] = None,
    chance: bool = True,
) -> Figure:
    """Several runs of each setting (its seeds) as one mean curve with a shaded band.

    One colour per group: the line is the mean of `metric` over the group's runs at each
    epoch, the band around it ``band="std"`` (mean ± 1 sample standard deviation) or
    ``band="minmax"`` (from the lowest run to the highest); the legend's title says which, and
    each entry how many runs its group has. A group of one run is a plain line without a band.
    At each epoch the mean is over the runs that reached it and measured the metric there (a
    run stopped early leaves the later epochs to the others), and the band needs two of them.
    With `chance`, a grey line marks chance level for an accuracy or a loss when every run
    has the same number of classes.

    Args:
        groups: ``{label: [History or run folder, ...]}``, e.g. the seeds of each sweep cell.
        metric: one of `BAND_METRICS`: ``val_acc``, ``val_loss``, ``train_acc``,
            ``train_loss``, ``lr``.
        band: ``"std"`` or ``"minmax"``.
        ax: draw into this axes instead of a new figure.
        title: default: the metric.

    Example:
        >>> from cifarnets.train.history import EpochRecord, History
        >>> def run(seed):
        ...     return History(model="vgg08", epochs=[EpochRecord(e, 2.0, 10.0, 2.0, 10.0 * e + seed)
        ...                                           for e in (1, 2, 3)])
        >>> ax = curves_band({"vgg08": [run(0), run(2)], "vgg08 bn": [run(1)]}).axes[0]
        >>> [line.get_ydata().tolist() for line in ax.lines[:2]], len(ax.collections)  # means; one band
        ([[11.0, 21.0, 31.0], [11.0, 21.0, 31.0]], 1)
        >>> ax.get_legend().get_title().get_text()
        'mean of the runs, band ± 1 standard deviation'
    """
    read = _read_groups(groups, (metric,), band, "curves_band")
    fig, ax = canvas(ax, 8.0, 5.0)
    handles, labels = _band_panel(ax, read, metric, band, chance)
    ax.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=1)}, fontsize=8,
              title=f"mean of the runs, band {BANDS[band]}", title_fontsize=8)
    what = BAND_METRICS[metric].split(" (")[0]
    ax.set_title(title or f"{what[0].upper()}{what[1:]} per epoch: the mean of each setting's runs", fontsize=10)
    return root(fig)


def seed_curves(
    groups: Mapping[str, Sequence[RunLike]],
    *,
    band: str = "std",
    title: Optional[str] = None,
    chance: bool = True,
) -> Figure:
    """`curves` for settings trained with several seeds: (a) loss and (b) accuracy per epoch, each
    setting's mean with a shaded band (`curves_band` on both panels, one legend under them).

    Validation loss and accuracy where every run has a validation split, training ones
    otherwise (the panel titles say which). ``cifarnets plot DIR`` draws this as
    ``curves_seeds.png`` for a sweep whose cells have several seeds.

    Example:
        >>> from cifarnets.train.history import EpochRecord, History
        >>> def run(seed):
        ...     return History(model="vgg08", epochs=[EpochRecord(e, 2.0 - e / 10, 10.0, 2.1, 10.0 * e + seed)
        ...                                           for e in (1, 2)])
        >>> fig = seed_curves({"vgg08": [run(0), run(2)]})
        >>> [ax.get_title() for ax in fig.axes]
        ['(a) validation loss', '(b) validation accuracy']
        >>> fig.axes[1].lines[0].get_ydata().tolist()   # the mean of the two seeds
        [11.0, 21.0]
    """
    read = _read_groups(groups, (), band, "seed_curves")
    every = [h for histories in read.values() for h in histories]
    has_val = all(any(e.val_acc is not None for e in h.epochs) for h in every)
    split = "val" if has_val else "train"
    fig = figure(13.0, 5.4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, kind, letter in ((loss_ax, "loss", "a"), (acc_ax, "acc", "b")):
        metric = f"{split}_{kind}"
        handles, labels = _band_panel(ax, _read_groups(read, (metric,), band, "seed_curves"), metric, band, chance)
        ax.set_title(f"({letter}) {BAND_METRICS[metric].split(' (')[0]}", fontsize=10)
    # One legend under both panels, as `curves` has: it never hides a band.
    fig.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=1)}, loc="outside lower center",
               ncol=min(len(handles), 4), fontsize=8, frameon=False,
               title=f"mean of the runs, band {BANDS[band]}", title_fontsize=8)
    fig.suptitle(title or "Training curves, mean over seeds: " + ", ".join(read), fontsize=11)
    return fig


def _read_groups(groups: Mapping[str, Sequence[RunLike]], metrics: Sequence[str], band: str,
                 caller: str) -> dict[str, list[History]]:
    """`groups` read into histories, checked: known `metrics` and `band`, every run measured each metric."""
    for metric in metrics:
        if metric not in BAND_METRICS:
            raise ConfigError(f"{caller} draws one of {', '.join(BAND_METRICS)}, not metric={metric!r}")
    if band not in BANDS:
        raise ConfigError(f"band must be 'std' (mean ± 1 standard deviation) or 'minmax', got {band!r}")
    if not isinstance(groups, Mapping):
        raise ConfigTypeError(f"{caller} takes {{label: [runs]}}, a mapping, not {type(groups).__name__}")
    if not groups:
        raise ConfigError(f"{caller} needs at least one group of runs")
    read = {}
    for label, runs in groups.items():
        if isinstance(runs, (History, str, os.PathLike)):
            raise ConfigTypeError(f"group {label!r} is one run, not a list of runs; give {{{label!r}: [run]}}")
        histories = _histories(runs, f"group {label!r}")
        for metric in metrics:
            silent = [h.name for h in histories if all(getattr(e, metric) is None for e in h.epochs)]
            if silent:
                hint = "; it has no validation split: choose a train_ metric" if metric.startswith("val_") else ""
                raise ConfigError(f"run(s) {', '.join(map(repr, silent))} of group {label!r} recorded no "
                                  f"{metric}{hint}")
        read[str(label)] = histories
    return read


def _band_panel(ax: Axes, read: Mapping[str, Sequence[History]], metric: str, band: str,
                chance: bool) -> tuple[list[Any], list[str]]:
    """Draw each group's mean and band of `metric` into `ax`; returns the legend's handles and labels."""
    handles: list[Any] = []
    labels: list[str] = []
    for i, (label, histories) in enumerate(read.items()):
        colour = run_colour(i)
        epochs, values = _runs_by_epoch(histories, metric)
        mean, low, high, count = _mean_and_band(values, band)
        line = ax.plot(epochs, mean, color=colour, lw=1.8, **epoch_markers(len(epochs)))[0]
        if len(histories) == 1:
            handles.append(line)
            labels.append(f"{label} (1 run)")
            continue
        shown = count >= 2
        # A band over one epoch has no width: give it half an epoch so that it shows.
        x = np.array([epochs[0] - 0.25, epochs[0] + 0.25]) if len(epochs) == 1 else epochs
        if len(epochs) == 1:
            low, high, shown = np.repeat(low, 2), np.repeat(high, 2), np.repeat(shown, 2)
        ax.fill_between(x, low, high, where=shown, color=colour, alpha=0.22, lw=0)
        handles.append((Patch(color=colour, alpha=0.22, lw=0), Line2D([], [], color=colour, lw=1.8)))
        lo, hi = int(count.min()), int(count.max())
        labels.append(f"{label} ({hi} runs)" if lo == hi else f"{label} ({lo} to {hi} runs)")
    kind = metric.rsplit("_", 1)[-1]
    every = [h for histories in read.values() for h in histories]
    classes = _shared_classes(every) if chance and kind in ("acc", "loss") else None
    if classes is not None:
        _chance_line(ax, classes, kind)
    if metric == "lr":
        ax.set_yscale("log")
    ax.set_ylabel(BAND_METRICS[metric])
    ax.grid(True, alpha=0.3)
    epoch_axis(ax, [e.epoch for h in every for e in h.epochs])
    return handles, labels
