"""The effective receptive field (Luo et al. 2016) as a map, with the theoretical receptive
field and the square of 95 % of the gradient mass drawn on it as boxes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import ConfigError, ConfigTypeError
from ._base import canvas, root

__all__ = ["erf"]


def _erf_parts(result: Any) -> dict[str, Any]:
    """The map and the geometry of an `ErfResult` (duck-typed) or of a bare 2-D array."""
    if isinstance(result, (np.ndarray, torch.Tensor)):
        grid = result.detach().cpu().numpy() if isinstance(result, torch.Tensor) else result
        return {"map": np.asarray(grid, dtype=float)}
    if not hasattr(result, "map"):
        raise ConfigTypeError(f"erf() draws an ErfResult (from effective_receptive_field) or a 2-D array, "
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
        raise ConfigError(f"an effective receptive field map is 2-D (H, W), got shape {grid.shape}")
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
    fig, ax = canvas(ax, 6.6, 5.6)
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
    return root(fig)


def _size_text(rh: float, rw: float) -> str:
    return f"{rh:g} px" if rh == rw else f"{rh:g}x{rw:g} px"
