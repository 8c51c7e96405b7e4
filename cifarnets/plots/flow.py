"""Gradient flow pictures: mean |∂L/∂W| of every weight layer, per epoch of a run or of one batch.

`gradient_flow` (the VGG38 reports' Figs. 2, 3, 5; the deeper-VGG report's Fig. 1),
`gradient_flow_heatmap` (the same as a layers x epochs map) and `gradient_flow_comparison`
(several networks on one log axis).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..analysis import GradientFlow
from ..errors import ConfigError
from ..train.history import History
from ._base import MAX_LAYER_LABELS, RunLike, canvas, epoch_axis, load_history, root, run_colour

__all__ = ["gradient_flow", "gradient_flow_comparison", "gradient_flow_heatmap"]


def _layer_axis(ax: Axes, names: Sequence[str], axis: str = "x") -> None:
    """Layer names as tick labels, thinned to at most `MAX_LAYER_LABELS` (first and last kept)."""
    n = len(names)
    step = max(1, math.ceil(n / MAX_LAYER_LABELS))
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
        raise ConfigError(
            f"run {history.name!r} recorded no gradient flow; train with grad_flow=True "
            "(the default of TrainConfig) to record it every epoch"
        )
    matrix = np.array([[e.grad_flow.get(layer, math.nan) for layer in layers] for e in records], dtype=float)
    matrix = np.where(np.isfinite(matrix) & (matrix > 0), matrix, np.nan)  # None / 0 / inf -> gap
    return layers, [e.epoch for e in records], matrix


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
        history = load_history(source)
        layers, epochs, matrix = _history_flow_matrix(history)
        fig, ax = canvas(ax, max(8.0, 2.5 + 0.2 * min(len(layers), MAX_LAYER_LABELS)), 5.5)
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
        return root(fig)

    flow = _flow_from(source)  # type: ignore[arg-type]
    if not flow.layers:
        raise ConfigError("gradient flow has no layers to plot")
    values = _positive(flow.values)
    fig, ax = canvas(ax, max(7.0, 2.5 + 0.2 * min(len(flow), MAX_LAYER_LABELS)), 5.0)
    ax.plot(np.arange(len(flow)), values, color=run_colour(0), lw=1.5, marker="o", ms=3.5)
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
    return root(fig)


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
    history = load_history(history)
    layers, epochs, matrix = _history_flow_matrix(history)
    finite = matrix[np.isfinite(matrix)]
    # The data's own range (not whole decades) spends the colours on the values there are.
    limits = (float(finite.min()), float(finite.max())) if finite.size and finite.min() < finite.max() \
        else _log_limits([matrix])
    shown = min(len(layers), MAX_LAYER_LABELS)
    fig, ax = canvas(ax, max(6.0, 3.5 + 0.08 * len(epochs)), max(4.0, 1.5 + 0.16 * shown))
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
    epoch_axis(ax, epochs)
    ax.set_title(title or f"Gradient flow of {history.name} per layer and epoch", fontsize=10)
    return root(fig)


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
        raise ConfigError(f"align must be 'depth' or 'index', got {align!r}")
    flows = {label: _flow_from(flow, label) for label, flow in flows.items()}
    if not flows or any(len(f) == 0 for f in flows.values()):
        raise ConfigError("gradient_flow_comparison needs at least one gradient flow with layers")
    fig, ax = canvas(ax, 10.0, 5.5)
    arrays = []
    markers = "osD^vP*X"
    for i, (label, flow) in enumerate(flows.items()):
        values = _positive(flow.values)
        arrays.append(values)
        n = len(flow)
        x = np.arange(n) / max(n - 1, 1) if align == "depth" else np.arange(n)
        first = flow.values[0]
        legend = f"{label}  ({n} layers, first layer {first:.1e})"
        ax.plot(x, values, color=run_colour(i), lw=1.6, marker=markers[i % len(markers)],
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
    return root(fig)


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
