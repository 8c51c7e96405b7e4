"""Every picture of the reports, drawn with matplotlib: each function returns the `Figure`.

==============================  ================================================================
`gradient_flow`                 mean |grad| per layer, one line per epoch or one batch
                                (the VGG38 reports' Figs. 2, 3, 5; the deeper-VGG report's Fig. 1)
`gradient_flow_heatmap`         the same as a layers x epochs map
`gradient_flow_comparison`      VGG08, VGG38, VGG38 BN / RC / BN+RC on one log axis
`curves`                        train (dotted) and validation (solid) loss and accuracy per
                                epoch (the VGG38 reports' Figs. 1, 4; the deeper-VGG report's
                                Figs. 2-5)
`filters`                       first-layer filters (the AlexNet/VGG report, §7.1)
`feature_maps`                  feature maps of one image at one layer (the AlexNet/VGG report, §7.2)
`erf`                           effective receptive field with the theoretical one as a box
`save`                          write a figure to a file, atomically
==============================  ================================================================

(docs/references.md lists the reports.) One convention throughout: a function draws and
returns the `matplotlib.figure.Figure`, so a test or a notebook can look at what was drawn;
`save(fig, path)` writes it (PNG, or SVG / PDF by the suffix). The functions with one panel
take ``ax=`` to draw into an axes of the caller's figure instead of a new one.

The figures are bare `Figure` objects rendered by the Agg canvas: pyplot is never imported,
so nothing leaks between calls, no window opens, and the module works on a headless machine
whatever backend is configured; a figure is garbage-collected like any object. `save`
renders first and then replaces the file atomically, so a reader never sees half a picture.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cifarnets import plots
    >>> from cifarnets.analysis import GradientFlow
    >>> flows = {"vgg08": GradientFlow(["conv1", "conv2", "fc"], [1e-6, 1e-5, 1e-4]),
    ...          "vgg38": GradientFlow(["conv1", "conv2", "conv3", "fc"], [1e-18, 1e-12, 1e-8, 1e-4])}
    >>> fig = plots.gradient_flow_comparison(flows)
    >>> [line.get_label().split()[0] for line in fig.axes[0].lines]
    ['vgg08', 'vgg38']
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     plots.save(fig, Path(folder) / "gradflow.png").name
    'gradflow.png'
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ._utils import atomic_write, preserved_mode, unwrap_model
from .analysis import GradientFlow
from .train.history import History

__all__ = [
    "curves", "erf", "feature_maps", "filters", "gradient_flow", "gradient_flow_comparison", "gradient_flow_heatmap",
    "save",
]

PathLike = Union[str, "os.PathLike[str]"]
RunLike = Union[History, PathLike]

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
_DPI = 150
_MAX_LAYER_LABELS = 48  # more tick labels than this overlap even at 6 pt
_RUN_COLOURS = [colormaps["tab10"](i) for i in range(10)]


# ---------------------------------------------------------------- figures and files

def _figure(width: float, height: float) -> Figure:
    # A bare Figure, not pyplot.figure(): no global registry, no backend, garbage-collected.
    return Figure(figsize=(width, height), layout="constrained")


def _canvas(ax: Optional[Axes], width: float, height: float) -> tuple[Figure, Axes]:
    """A new figure of the given size with one axes, or the caller's `ax` and its figure."""
    if ax is None:
        fig = _figure(width, height)
        return fig, fig.add_subplot()
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax.get_figure(root=False), ax  # type: ignore[return-value]


def _root(fig: Any) -> Figure:
    """The top-level Figure of a figure or subfigure: what the functions return."""
    return fig.get_figure(root=True) if hasattr(fig, "get_figure") else fig


def save(fig: Figure, path: PathLike, *, dpi: int = _DPI) -> Path:
    """Render `fig` and write it to `path` atomically; returns the path.

    The format follows the suffix: ``.png`` (at `dpi`), ``.svg`` or ``.pdf``. Parent folders
    are created. The picture is rendered in memory first, so a failure (a bad figure, a full
    disk) leaves an existing file as it was and no temporary file behind.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> fig = gradient_flow({"conv": 1e-6, "fc": 1e-4})
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save(fig, Path(folder) / "flow.svg").read_bytes().lstrip().startswith(b"<?xml")
        True
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"save() writes a matplotlib Figure (what the plot functions return), "
                        f"not {type(fig).__name__}")
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write a picture to {str(path)!r}: give a path ending in .png (or .svg, .pdf)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)  # render first: a failure leaves the old file alone
    atomic_write(path, buffer.getbuffer())
    return path


# ---------------------------------------------------------------- shared helpers

def _load_history(run: RunLike) -> History:
    if isinstance(run, History):
        return run
    if isinstance(run, (str, os.PathLike)):
        return History.load(Path(run))
    raise TypeError(f"expected a History or a run folder, got {type(run).__name__}")


def _layer_axis(ax: Axes, names: Sequence[str], axis: str = "x") -> None:
    """Layer names as tick labels, thinned to at most `_MAX_LAYER_LABELS` (first and last kept)."""
    n = len(names)
    step = max(1, math.ceil(n / _MAX_LAYER_LABELS))
    ticks = list(range(0, n, step))
    if ticks[-1] != n - 1:
        if n - 1 - ticks[-1] < step / 2:
            ticks[-1] = n - 1  # keep the classifier labelled without two labels colliding
        else:
            ticks.append(n - 1)
    size = 8 if n <= 24 else 7 if n <= 40 else 6
    labels = [names[i] for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, labels, rotation=90, fontsize=size)
        ax.set_xlim(-0.5, n - 0.5)
    else:
        ax.set_yticks(ticks, labels, fontsize=size)
    if step > 1:
        label = ax.xaxis.label if axis == "x" else ax.yaxis.label
        label.set_text(label.get_text() + f" (one in {step} labelled)" if label.get_text() else "")


def _positive(values: Sequence[float]) -> np.ndarray:
    # Log axes cannot show 0 or NaN; NaN leaves a visible gap in the line instead of a lie.
    arr = np.asarray(values, dtype=float)
    return np.where(arr > 0, arr, np.nan)


def _log_limits(arrays: Iterable[np.ndarray]) -> Optional[tuple[float, float]]:
    finite = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays] or [np.array([])])
    if finite.size == 0:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    return 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi) + 1e-9)


def _gradient_axes(ax: Axes, limits: Optional[tuple[float, float]]) -> None:
    ax.set_yscale("log")
    if limits is not None:
        ax.set_ylim(*limits)
    ax.set_ylabel("mean |∂L/∂W| of the layer (log scale)")
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.grid(True, which="major", axis="x", alpha=0.15)


def _flow_from(source: Union[GradientFlow, Mapping[str, float]], label: str = "") -> GradientFlow:
    if isinstance(source, GradientFlow):
        return source
    return GradientFlow(list(source), [float(v) for v in source.values()], label=label)


def _history_flow_matrix(history: History) -> tuple[list[str], list[int], np.ndarray]:
    """Layers, epochs and the epochs x layers matrix of recorded gradient flow (NaN gaps)."""
    layers = history.grad_flow_layers()
    records = [e for e in history.epochs if e.grad_flow]
    if not layers or not records:
        raise ValueError(
            f"run {history.name!r} recorded no gradient flow; train with grad_flow=True "
            "(the default of TrainConfig) to record it every epoch"
        )
    matrix = np.array([[e.grad_flow.get(layer, math.nan) for layer in layers] for e in records], dtype=float)
    matrix = np.where(np.isfinite(matrix) & (matrix > 0), matrix, np.nan)  # None / 0 / inf -> gap
    return layers, [e.epoch for e in records], matrix


# ---------------------------------------------------------------- gradient flow

def gradient_flow(
    source: Union[RunLike, GradientFlow, Mapping[str, float]],
    *,
    ax: Optional[Axes] = None,
    title: Optional[str] = None,
    cmap: str = "viridis",
) -> Figure:
    """Mean |grad| of every weight layer, layer by layer on a log axis: the reports' figure.

    For a `History` (or a run folder) there is one line per epoch, coloured from the first
    epoch (dark) to the last (yellow) with a colour bar, as the VGG38 reports' Figs. 2, 3, 5 and
    the deeper-VGG report's Fig. 1 plot the gradient flow "for all epochs during training". For a single
    `GradientFlow` (or a ``{layer: value}`` dict) there is one line. The y axis is
    logarithmic: the vanishing gradients of plain VGG38 are 12 and more orders of magnitude
    below VGG08's, which a linear axis shows as a flat zero. Layers with no gradient (NaN or
    0) are gaps. With `ax` the picture is drawn into that axes (the colour bar beside it).

    Example:
        >>> from cifarnets.analysis import GradientFlow
        >>> flow = GradientFlow(["stem.conv", "stages.0.block0.conv1", "head.fc"], [1e-18, 1e-15, 2e-4])
        >>> ax = gradient_flow(flow).axes[0]
        >>> len(ax.lines), ax.get_yscale(), [t.get_text() for t in ax.get_xticklabels()][-1]
        (1, 'log', 'head.fc')
    """
    if isinstance(source, (History, str, os.PathLike)):
        history = _load_history(source)
        layers, epochs, matrix = _history_flow_matrix(history)
        fig, ax = _canvas(ax, max(8.0, 2.5 + 0.2 * min(len(layers), _MAX_LAYER_LABELS)), 5.5)
        norm = Normalize(min(epochs), max(epochs) if max(epochs) > min(epochs) else min(epochs) + 1)
        colours = colormaps[cmap]
        x = np.arange(len(layers))
        # Draw the last epoch on top: it is the one a reader compares against.
        for epoch, row in zip(epochs, matrix):
            ax.plot(x, row, color=colours(norm(epoch)), lw=1.0, alpha=0.8, marker="o", ms=2)
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=colours), ax=ax, pad=0.01)
        bar.set_label("epoch")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
        _gradient_axes(ax, _log_limits([matrix]))
        ax.set_xlabel("layer (input → classifier)")
        _layer_axis(ax, layers)
        ax.set_title(title or f"Gradient flow of {history.name}: mean |∂L/∂W| per layer, "
                     f"averaged over each epoch ({len(epochs)} epochs)", fontsize=10)
        return _root(fig)

    flow = _flow_from(source)  # type: ignore[arg-type]
    if not flow.layers:
        raise ValueError("gradient flow has no layers to plot")
    values = _positive(flow.values)
    fig, ax = _canvas(ax, max(7.0, 2.5 + 0.2 * min(len(flow), _MAX_LAYER_LABELS)), 5.0)
    ax.plot(np.arange(len(flow)), values, color=_RUN_COLOURS[0], lw=1.5, marker="o", ms=3.5)
    _gradient_axes(ax, _log_limits([values]))
    ax.set_xlabel("layer (input → classifier)")
    _layer_axis(ax, flow.layers)
    if title is None:
        title = f"Gradient flow of {flow.label or 'model'}: mean |∂L/∂W| per layer"
        batch = f"one batch of {flow.batch_size}" if flow.batch_size else ""
        setup = _comparison_setup([flow]) if flow.meta else batch
        details = [d for d in (setup, f"loss {flow.loss:.3f}" if math.isfinite(flow.loss) else "") if d]
        title += ("\n" + ", ".join(details)) if details else ""
    ax.set_title(title, fontsize=10)
    return _root(fig)


def gradient_flow_heatmap(
    history: RunLike, *, ax: Optional[Axes] = None, title: Optional[str] = None, cmap: str = "magma"
) -> Figure:
    """The gradient flow of a run as a layers x epochs map, with a logarithmic colour scale.

    The coursework reports' line plots overlap when there are many epochs; the map
    shows every epoch of every layer at once, input layer at the top, and makes it plain
    when and where the gradient dies or recovers. Grey cells have no value.

    Example:
        >>> from cifarnets.train.history import EpochRecord, History
        >>> h = History(model="vgg08", epochs=[EpochRecord(e, 4.0, 5.0, grad_flow={"stem.conv": 1e-6 * e,
        ...             "head.fc": 1e-4}) for e in (1, 2, 3)])
        >>> fig = gradient_flow_heatmap(h)
        >>> [t.get_text() for t in fig.axes[0].get_yticklabels()], fig.axes[1].get_ylabel()
        (['stem.conv', 'head.fc'], 'mean |∂L/∂W| (log scale)')
    """
    history = _load_history(history)
    layers, epochs, matrix = _history_flow_matrix(history)
    finite = matrix[np.isfinite(matrix)]
    # The data's own range (not whole decades) spends the colours on the values there are.
    limits = (float(finite.min()), float(finite.max())) if finite.size and finite.min() < finite.max() \
        else _log_limits([matrix])
    shown = min(len(layers), _MAX_LAYER_LABELS)
    fig, ax = _canvas(ax, max(6.0, 3.5 + 0.08 * len(epochs)), max(4.0, 1.5 + 0.16 * shown))
    colours = colormaps[cmap].with_extremes(bad="0.85")
    image = ax.imshow(
        np.ma.masked_invalid(matrix.T), aspect="auto", interpolation="nearest", cmap=colours,
        norm=LogNorm(*limits) if limits else None,
        extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(layers) - 0.5, -0.5),
    )
    bar = fig.colorbar(image, ax=ax, pad=0.01)
    bar.set_label("mean |∂L/∂W| (log scale)")
    ax.set_ylabel("layer (input at the top)")
    _layer_axis(ax, layers, axis="y")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or f"Gradient flow of {history.name} per layer and epoch", fontsize=10)
    return _root(fig)


def gradient_flow_comparison(
    flows: Mapping[str, GradientFlow],
    *,
    ax: Optional[Axes] = None,
    title: Optional[str] = None,
    align: str = "depth",
) -> Figure:
    """Several networks' gradient flow on one shared log axis: the reports' Figs. 2, 3 vs 5.

    The VGG38 reports compare VGG08 (Fig. 2), VGG38 (Fig. 3) and VGG38 BN+RC (Fig. 5) in
    separate figures with separate scales; here they share one logarithmic axis, so the
    ~1e-18 of plain VGG38's first layer sits 12 decades below VGG08 and BN / RC visibly lift
    it back. Networks of different depth are aligned by relative depth (``align="depth"``:
    0 = first convolution, 1 = classifier), or by layer index (``align="index"``). The
    legend gives each network's first-layer value, the number the reports discuss.

    Args:
        flows: ``{label: GradientFlow}``, e.g. from `compare_gradient_flow`.
        ax: draw into this axes instead of a new figure.
        title: default: what was measured, from the flows' metadata (initialisation, batch
            size, seed).
        align: ``"depth"`` or ``"index"``.

    Example:
        >>> from cifarnets.analysis import compare_gradient_flow, random_batch
        >>> flows = compare_gradient_flow(["vgg08", ("vgg08", {"bn": True})], *random_batch(2))
        >>> ax = gradient_flow_comparison(flows).axes[0]
        >>> [text.get_text().split("  ")[0] for text in ax.get_legend().get_texts()]
        ['vgg08', 'vgg08 bn']
    """
    if align not in ("depth", "index"):
        raise ValueError(f"align must be 'depth' or 'index', got {align!r}")
    flows = {label: _flow_from(flow, label) for label, flow in flows.items()}
    if not flows or any(len(f) == 0 for f in flows.values()):
        raise ValueError("gradient_flow_comparison needs at least one gradient flow with layers")
    fig, ax = _canvas(ax, 10.0, 5.5)
    arrays = []
    markers = "osD^vP*X"
    for i, (label, flow) in enumerate(flows.items()):
        values = _positive(flow.values)
        arrays.append(values)
        n = len(flow)
        x = np.arange(n) / max(n - 1, 1) if align == "depth" else np.arange(n)
        first = flow.values[0]
        legend = f"{label}  ({n} layers, first layer {first:.1e})"
        ax.plot(x, values, color=_RUN_COLOURS[i % len(_RUN_COLOURS)], lw=1.6, marker=markers[i % len(markers)],
                ms=3.5, label=legend)
    _gradient_axes(ax, _log_limits(arrays))
    if align == "depth":
        ax.set_xlim(-0.02, 1.02)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["first conv\n0", "0.25", "0.5", "0.75", "1\nclassifier"])
        ax.set_xlabel("relative depth of the layer (layer index / (layers - 1))")
    else:
        ax.set_xlabel("layer index (0 = first convolution)")
    ax.legend(fontsize=8, loc="lower right", title="network", title_fontsize=8)
    if title is None:
        title = "Gradient flow per layer: mean |∂L/∂W| after one forward/backward pass"
        title += "\n" + _comparison_setup(list(flows.values()))
    ax.set_title(title, fontsize=10)
    return _root(fig)


def _comparison_setup(flows: list[GradientFlow]) -> str:
    """'PyTorch default init, batch of 64, seed 0' from what the flows recorded."""
    parts = []
    inits = {f.meta.get("init") for f in flows} - {None}
    if inits == {"default"}:
        parts.append("PyTorch's default initialisation")
    elif inits:
        parts.append("init " + ", ".join(sorted(str(i) for i in inits)))
    sizes = {f.batch_size for f in flows if f.batch_size}
    data = {f.meta.get("data") for f in flows} - {None, "given batch"}
    if len(sizes) == 1:
        parts.append(f"one batch of {sizes.pop()}" + (f" ({data.pop()})" if len(data) == 1 else ""))
    seeds = {f.meta.get("seed") for f in flows} - {None}
    if len(seeds) == 1:
        parts.append(f"seed {seeds.pop()}")
    modes = {f.meta.get("train_mode") for f in flows} - {None}
    if modes == {True}:
        parts.append("train mode")
    elif modes == {False}:
        parts.append("eval mode")
    return ", ".join(parts)


# ---------------------------------------------------------------- training curves

def _num_classes(history: History) -> Optional[int]:
    value = history.num_classes or history.model_kwargs.get("num_classes") or history.config.get("num_classes")
    if value:
        return int(value)
    try:
        from .registry import model_info
        return model_info(history.model).num_classes
    except (ValueError, TypeError, KeyError):  # a model this installation does not know
        return None


def curves(
    runs: Union[RunLike, Iterable[RunLike]],
    *,
    title: Optional[str] = None,
    chance: bool = True,
) -> Figure:
    """Loss and accuracy per epoch of one or more runs: the reports' training-curve figures.

    Two panels, (a) cross-entropy and (b) accuracy, as the VGG38 reports' Figs. 1 and 4; one
    colour per run, training dotted and validation solid as the deeper-VGG report's Fig. 2
    describes. A
    star marks each run's best validation epoch (whose weights are tested); the legend
    gives the test accuracy when the run has one. With `chance`, grey lines mark chance
    level (loss ln C, accuracy 100/C %): plain VGG38's curves sit on them (the VGG38 report,
    §2: "plateaus at approximately 4.6").

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
    histories = [_load_history(r) for r in runs]
    if not histories:
        raise ValueError("curves needs at least one run")
    empty = [h.name for h in histories if not h.epochs]
    if empty:
        raise ValueError(f"run(s) {', '.join(map(repr, empty))} have no finished epoch to plot")
    fig = _figure(12.0, 5.2)
    loss_ax, acc_ax = fig.subplots(1, 2)
    run_labels = []
    for i, history in enumerate(histories):
        colour = _RUN_COLOURS[i % len(_RUN_COLOURS)]
        epochs = [e.epoch for e in history.epochs]
        best = history.best()
        has_val = any(e.val_loss is not None for e in history.epochs)
        label = history.name + ("" if has_val else " (train only)")
        if history.test and history.test.get("acc") is not None:
            label += f" (test {history.test['acc']:.2f}%)"
        run_labels.append(label)
        for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
            ax.plot(epochs, [_nan(v) for v in history.series(f"train_{key}")], color=colour, ls=":", lw=1.4, alpha=0.9)
            if has_val:
                ax.plot(epochs, [_nan(v) for v in history.series(f"val_{key}")], color=colour, ls="-", lw=1.6)
            if best is not None and getattr(best, f"val_{key}") is not None:
                ax.plot([best.epoch], [getattr(best, f"val_{key}")], marker="*", ms=10, color=colour, mec="k", mew=0.5)
    classes = {_num_classes(h) for h in histories} if chance else set()
    c = classes.pop() if len(classes) == 1 else None
    if c is not None:
        loss_ax.axhline(math.log(c), color="0.5", ls="--", lw=0.8)
        # Right-hand side, on the side of the line that learning curves leave: loss falls below
        # chance, accuracy rises above it.
        loss_ax.annotate(f"chance: ln {c} = {math.log(c):.2f}", (0.99, math.log(c)), xycoords=("axes fraction", "data"),
                         ha="right", va="bottom", fontsize=7, color="0.4")
        acc_ax.axhline(100 / c, color="0.5", ls="--", lw=0.8)
        acc_ax.annotate(f"chance: {100 / c:g}%", (0.99, 100 / c), xycoords=("axes fraction", "data"),
                        ha="right", va="top", fontsize=7, color="0.4")
    loss_ax.set_ylabel("cross-entropy loss")
    loss_ax.set_title("(a) loss", fontsize=10)
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_title("(b) accuracy", fontsize=10)
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # One legend under both panels: it can never hide a curve, whatever the runs look like.
    handles = [Line2D([], [], color=_RUN_COLOURS[i % len(_RUN_COLOURS)], lw=2) for i in range(len(histories))]
    style = [Line2D([], [], color="0.3", ls=":", lw=1.4), Line2D([], [], color="0.3", ls="-", lw=1.6),
             Line2D([], [], color="0.3", ls="none", marker="*", ms=10, mec="k", mew=0.5)]
    fig.legend(handles + style, run_labels + ["train", "validation", "best validation epoch"],
               loc="outside lower center", ncol=min(len(handles), 3) + 3, fontsize=8, frameon=False)
    fig.suptitle(title or "Training curves: " + ", ".join(h.name for h in histories), fontsize=11)
    return fig


def _nan(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


# ---------------------------------------------------------------- filters and feature maps

def _named_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: module for name, module in unwrap_model(model).named_modules()}


def _get_module(model: nn.Module, name: str) -> nn.Module:
    modules = _named_modules(model)
    if name not in modules:
        import difflib
        close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"model has no layer {name!r}{hint} (names as in model.named_modules())")
    return modules[name]


def _first_conv(model: nn.Module) -> tuple[str, nn.Module]:
    cfg = getattr(unwrap_model(model), "pretrained_cfg", None)
    name = cfg.get("first_conv") if isinstance(cfg, dict) else None
    modules = _named_modules(model)
    if name in modules and isinstance(modules[name], nn.Conv2d):
        return name, modules[name]
    for name, module in modules.items():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"{type(unwrap_model(model)).__name__} has no Conv2d layer to draw")


def _model_label(model: nn.Module) -> str:
    """Registry name plus the coursework VGG flags that are on (``"vgg38 bn+rc"``)."""
    inner = unwrap_model(model)
    name = getattr(inner, "model_name", type(inner).__name__)
    flags = [flag for flag in ("bn", "rc") if getattr(inner, flag, False) is True]
    return name + (" " + "+".join(flags) if flags else "")


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _mosaic(tiles: np.ndarray, cols: int, gap: int, background: float = 1.0) -> np.ndarray:
    """``(n, h, w, 3)`` tiles in a grid of `cols` columns with `gap` pixels between them.

    One image in one axes draws 64 filters ten times faster than 64 axes, and the tiles
    line up exactly.
    """
    n, h, w, c = tiles.shape
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, c), background, dtype=float)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = tile
    return out


def filters(
    model: nn.Module,
    *,
    ax: Optional[Axes] = None,
    layer: Optional[str] = None,
    max_filters: int = 64,
    title: Optional[str] = None,
) -> Figure:
    """The filters of the first convolution as a grid of small pictures (the AlexNet/VGG report, §7.1).

    Each filter is min-max normalised on its own, so structure is visible whatever its
    scale: RGB for 3 input channels (edge detectors and colour blobs in a trained network,
    noise in one that never learned, as the AlexNet/VGG report finds for VGG-16), grey for 1 channel,
    and the mean over channels for any other number. Filter 0 is at the top left, then
    row by row.

    Args:
        model: the network.
        ax: draw into this axes instead of a new figure.
        layer: a Conv2d by qualified name; default the model's ``pretrained_cfg["first_conv"]``
            or the first Conv2d.
        max_filters: draw at most this many output channels.

    Example:
        >>> import cifarnets
        >>> fig = filters(cifarnets.create("vgg08"))
        >>> fig.axes[0].get_title().splitlines()[0]
        'vgg08: 32 filters of stem.conv'
        >>> fig.axes[0].images[0].get_array().shape   # 6 x 6 tiles of 3x3 pixels, 1-pixel gaps
        (23, 23, 3)
    """
    if layer is None:
        layer, conv = _first_conv(model)
    else:
        conv = _get_module(model, layer)
    weight = getattr(conv, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ValueError(f"layer {layer!r} has no 4-D convolution weight to draw; choose a Conv2d")
    w = weight.detach().float().cpu()[:max_filters]
    count, in_chs, kh, kw = w.shape
    if in_chs != 3:
        w = w.mean(dim=1, keepdim=True)
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    tiles = w.permute(0, 2, 3, 1).numpy()
    if tiles.shape[-1] == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    rows, cols = _grid(count)
    gap = max(1, round(max(kh, kw) / 4))
    fig, ax = _canvas(ax, min(1.0 + 0.75 * cols, 10.0), min(0.9 + 0.75 * rows, 10.0))
    ax.imshow(_mosaic(tiles, cols, gap), interpolation="nearest")
    ax.set_axis_off()
    name = _model_label(model)
    colour = "RGB" if in_chs == 3 else ("grey" if in_chs == 1 else f"mean of {in_chs} channels")
    shown = f"{count} of {weight.shape[0]}" if weight.shape[0] > count else f"{count}"
    ax.set_title(title or f"{name}: {shown} filters of {layer}\n{kh}x{kw}, {colour}, each min-max normalised",
                 fontsize=10)
    return _root(fig)


_ACTIVATIONS = (
    nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.PReLU, nn.Softplus,
)


def _default_feature_layer(model: nn.Module, image: torch.Tensor) -> str:
    """The first activation that runs after the first convolution: the first conv block's output.

    Found by the order modules run in (a dry forward with hooks), not by their names, so it
    works for any model: ``stem.act`` in the coursework VGGs, ``features.act1_1`` in VGG-16.
    """
    conv_name, _ = _first_conv(model)
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: order.append(n))
             for n, m in _named_modules(model).items() if n and (isinstance(m, _ACTIVATIONS) or n == conv_name)]
    try:
        with torch.no_grad():
            unwrap_model(model)(image)
    finally:
        for h in hooks:
            h.remove()
    after = order[order.index(conv_name) + 1:] if conv_name in order else order
    return after[0] if after else conv_name


def feature_maps(
    model: nn.Module,
    image: torch.Tensor,
    *,
    layer: Optional[str] = None,
    max_maps: int = 32,
    title: Optional[str] = None,
    cmap: str = "viridis",
) -> Figure:
    """The feature maps of one image at one layer, as a grid, next to the input (the AlexNet/VGG report, §7.2).

    The model runs in eval mode under ``no_grad`` with a forward hook on `layer`; the hook
    is removed and the modes restored afterwards. Each map has its own colour scale (the
    pattern matters, not the magnitude); maps that are constant (dead units, e.g. a ReLU
    that never fires) are drawn grey and marked, because that is a finding in itself.

    Args:
        model: the network.
        image: one input ``(C, H, W)`` or ``(1, C, H, W)``, normalised as the model expects
            (``model.pretrained_cfg["mean"]``/``["std"]``).
        layer: qualified module name; default the output of the first conv block (the first
            activation after the first convolution, e.g. ``stem.act``).
        max_maps: draw at most this many channels.

    Example:
        >>> import cifarnets, torch
        >>> fig = feature_maps(cifarnets.create("vgg08"), torch.randn(3, 32, 32), max_maps=4)
        >>> [ax.get_title() for ax in fig.axes], fig.get_suptitle().split(" (")[0]
        (['input', ''], 'vgg08: 4 of 32 feature maps at stem.act')
    """
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"feature_maps draws one image (C, H, W), got shape {tuple(image.shape)}")
    inner = unwrap_model(model)
    param = next(inner.parameters(), None)
    image = image.to(param.device if param is not None else "cpu")
    captured: list[torch.Tensor] = []
    with preserved_mode(inner, train=False):
        if layer is None:
            layer = _default_feature_layer(inner, image)
        module = _get_module(inner, layer)
        # Clone in the hook: an in-place activation later in the network would overwrite it.
        hook = module.register_forward_hook(lambda mod, inp, out: captured.append(
            (out[0] if isinstance(out, (tuple, list)) else out).detach().float().cpu().clone()))
        try:
            with torch.no_grad():
                inner(image)
        finally:
            hook.remove()
    if not captured:
        raise ValueError(f"layer {layer!r} did not run in the forward pass; choose a layer the model uses")
    if captured[0].dim() != 4:
        raise ValueError(f"layer {layer!r} outputs shape {tuple(captured[0].shape)}, not feature maps (N, C, H, W); "
                         "choose a convolutional layer")
    total = captured[0].shape[1]
    maps = captured[0][0, :max_maps].numpy().astype(float)
    count, mh, mw = maps.shape
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    dead = span[:, 0, 0] <= 1e-12 * np.maximum(1.0, np.abs(lo[:, 0, 0]))
    tiles = colormaps[cmap]((maps - lo) / np.where(span > 0, span, 1.0))[..., :3]
    tiles[dead] = 0.6
    rows, cols = _grid(count)
    gap = max(1, round(max(mh, mw) / 12))
    mosaic = _mosaic(tiles, cols, gap)

    fig = _figure(min(max(6.5, 2.2 + 0.9 * cols), 14.0), min(1.2 + 0.9 * rows, 12.0))
    input_ax, maps_ax = fig.subplots(1, 2, width_ratios=[1, cols * 0.9], squeeze=True)
    shown = image[0].detach().float().cpu()
    shown = (shown - shown.min()) / (shown.max() - shown.min()).clamp_min(1e-12)
    if shown.shape[0] == 3:
        input_ax.imshow(shown.permute(1, 2, 0).numpy(), interpolation="nearest")
    else:
        input_ax.imshow(shown.mean(0).numpy(), cmap="gray", interpolation="nearest")
    input_ax.set_title("input", fontsize=9)
    input_ax.set_axis_off()
    maps_ax.imshow(mosaic, interpolation="nearest")
    maps_ax.set_axis_off()
    for i in range(count):
        r, q = divmod(i, cols)
        x, y = q * (mw + gap), r * (mh + gap)
        maps_ax.text(x - 0.3, y - 0.3, str(i), color="white", fontsize=6, va="top", ha="left",
                     bbox={"boxstyle": "square,pad=0.1", "fc": "black", "ec": "none", "alpha": 0.5})
        if dead[i]:
            maps_ax.text(x + mw / 2, y + mh / 2, f"constant\n{lo[i, 0, 0]:.2g}", color="black", fontsize=6,
                         ha="center", va="center")
    name = _model_label(inner)
    count_text = f"{count} of {total}" if total > count else f"{total}"
    dead_text = f", {int(dead.sum())} constant (grey)" if dead.any() else ""
    # The magnitude matters too: plain VGG38's deep activations are tiny yet look as busy as
    # healthy ones on per-map scales, so the title gives the layer's overall range.
    fig.suptitle(title or f"{name}: {count_text} feature maps at {layer} ({mh}x{mw})\neach on its own colour "
                 f"scale, values from {float(maps.min()):.3g} to {float(maps.max()):.3g}{dead_text}", fontsize=10)
    return fig


# ---------------------------------------------------------------- effective receptive field

def _erf_parts(result: Any) -> dict[str, Any]:
    """The map and the geometry of an `ErfResult` (duck-typed) or of a bare 2-D array."""
    if isinstance(result, (np.ndarray, torch.Tensor)):
        grid = result.detach().cpu().numpy() if isinstance(result, torch.Tensor) else result
        return {"map": np.asarray(grid, dtype=float)}
    if not hasattr(result, "map"):
        raise TypeError(f"erf() draws an ErfResult (from effective_receptive_field) or a 2-D array, "
                        f"not {type(result).__name__}")
    parts = {"map": np.asarray(result.map, dtype=float)}
    for key in ("rf", "centre", "rf_start", "rf_end", "layer", "method", "num_images", "unit"):
        if getattr(result, key, None) is not None:
            parts[key] = getattr(result, key)
    if hasattr(result, "side"):
        parts["side95"] = result.side(0.95)
    return parts


def _pair(value: Union[int, float, Sequence[float]]) -> tuple[float, float]:
    return (float(value), float(value)) if isinstance(value, (int, float)) else (float(value[0]), float(value[1]))


def erf(
    result: Any,
    *,
    ax: Optional[Axes] = None,
    rf: Optional[Union[int, tuple[int, int]]] = None,
    centre: Optional[tuple[float, float]] = None,
    title: Optional[str] = None,
    log: bool = False,
) -> Figure:
    """An effective receptive field map with the theoretical receptive field drawn as a box.

    The effective receptive field (Luo et al. 2016) is how much each input pixel moves one
    output unit: roughly Gaussian and much smaller than the theoretical receptive field
    (the AlexNet/VGG report, §4), whose box is drawn on it (dashed) together with the square holding 95 % of
    the gradient mass (dotted), so the two sizes can be compared by eye. When the
    theoretical field is far larger than the input (deep nets), the view stays on the input
    and the legend gives its size.

    Args:
        result: an `~cifarnets.analysis.ErfResult` from
            ``effective_receptive_field(model, images)``, or a 2-D array (then give `rf`).
        ax: draw into this axes instead of a new figure (the legend goes inside it).
        rf: theoretical receptive field in pixels (int, or (height, width)); overrides the
            result's. With an array and no `rf` only the map is drawn.
        centre: ``(row, col)`` of the unit's field centre in input pixels; default the
            result's, else the centre of the map.
        log: logarithmic colour scale (shows the tails of the Gaussian).

    Example:
        >>> import numpy as np
        >>> yy, xx = np.mgrid[:32, :32]
        >>> fig = erf(np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 20), rf=11)
        >>> [patch.get_label() for patch in fig.axes[0].patches]
        ['theoretical receptive field 11 px', 'input']
    """
    parts = _erf_parts(result)
    grid = np.squeeze(parts["map"])
    if grid.ndim == 3:  # per-channel map: the ERF is the magnitude summed over channels
        grid = np.abs(grid).sum(axis=0)
    if grid.ndim != 2:
        raise ValueError(f"an effective receptive field map is 2-D (H, W), got shape {grid.shape}")
    grid = np.abs(grid)
    if grid.max() > 0:
        grid = grid / grid.max()  # the shape matters, not the scale of the gradient
    h, w = grid.shape
    if centre is None:
        centre = tuple(parts.get("centre", ((h - 1) / 2, (w - 1) / 2)))  # type: ignore[assignment]
    cy, cx = centre  # type: ignore[misc]
    box = None  # (row0, col0, row1, col1) in pixel-edge coordinates
    if rf is not None or "rf" in parts:
        if rf is None and "rf_start" in parts and "rf_end" in parts:
            (r0, c0), (r1, c1) = parts["rf_start"], parts["rf_end"]
            box = (r0 - 0.5, c0 - 0.5, r1 + 0.5, c1 + 0.5)  # exact pixels, padding included
        else:
            rh, rw = _pair(rf if rf is not None else parts["rf"])
            box = (cy - rh / 2, cx - rw / 2, cy + rh / 2, cx + rw / 2)

    own = ax is None
    fig, ax = _canvas(ax, 6.6, 5.6)
    positive = grid[grid > 0]
    norm = LogNorm(max(float(positive.min()), 1e-6), 1.0) if log and positive.size else None
    image = ax.imshow(np.where(grid > 0, grid, np.nan) if log else grid, cmap="inferno", norm=norm,
                      interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, pad=0.01)
    bar.set_label("|∂ unit / ∂ input pixel|, max = 1" + (" (log scale)" if log else ""))
    ax.plot([cx], [cy], marker="+", color="cyan", ms=10, mew=1.5, ls="none", label="unit's centre")
    view = [-0.5, -0.5, h - 0.5, w - 0.5]
    if box is not None:
        bh, bw = box[2] - box[0], box[3] - box[1]
        ax.add_patch(Rectangle((box[1], box[0]), bw, bh, fill=False, ec="cyan", lw=1.5, ls="--",
                               label=f"theoretical receptive field {_size_text(bh, bw)}"))
        # Show the padding the field reaches into, unless the field dwarfs the input.
        if bh <= 2 * h and bw <= 2 * w:
            m = max(1.0, 0.03 * max(bh, bw))  # a margin, so a box on the view's edge stays visible
            view = [min(view[0], box[0] - m), min(view[1], box[1] - m), max(view[2], box[2] + m),
                    max(view[3], box[3] + m)]
            ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, ec="0.6", lw=0.8, label="input"))
    side = parts.get("side95")
    if side:
        sh, sw = _pair(side)
        ax.add_patch(Rectangle((cx - sw / 2, cy - sh / 2), sw, sh, fill=False, ec="lime", lw=1.2, ls=":",
                               label=f"95 % of the gradient mass {_size_text(sh, sw)}"))
    ax.set_xlim(view[1], view[3])
    ax.set_ylim(view[2], view[0])
    ax.set_facecolor("0.92")
    if own:  # under the picture, not on it: the map and the boxes fill the axes
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=7, frameon=False)
    else:  # the caller's layout is unknown: keep the legend inside the axes
        ax.legend(loc="lower right", fontsize=6, framealpha=0.7)
    ax.set_xlabel("input column (pixels)")
    ax.set_ylabel("input row (pixels)")
    if title is None:
        where = parts.get("layer") or (f"output of {parts['method']}" if parts.get("method") else "")
        title = "Effective receptive field" + (f" of {where}" if where else "")
        if parts.get("unit") is not None:
            title += f", unit {tuple(parts['unit'])}"
        details = [f"{h}x{w} input"] + ([f"mean over {parts['num_images']} images"] if parts.get("num_images") else [])
        title += "\n" + ", ".join(details)
    ax.set_title(title, fontsize=10)
    return _root(fig)


def _size_text(rh: float, rw: float) -> str:
    return f"{rh:g} px" if rh == rw else f"{rh:g}x{rw:g} px"
