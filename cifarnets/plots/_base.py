"""What every picture of `cifarnets.plots` shares: the bare figure, the run colours, the epoch
axis, reading a run, and `save`.

Each module of the package draws one subject; the helpers here are the only ones they share,
so a picture of curves and one of gradient flow look alike (the same colours for the same
runs, whole-number epoch ticks) and are written the same way.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, Union

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._utils import atomic_write
from ..errors import ConfigError, ConfigTypeError
from ..train.history import History

__all__ = [
    "DPI", "FEW_EPOCHS", "MAX_LAYER_LABELS", "PathLike", "RUN_COLOURS", "RunLike", "canvas", "epoch_axis",
    "epoch_markers", "figure", "load_history", "nan_for_none", "root", "run_colour", "save",
]

PathLike = Union[str, "os.PathLike[str]"]
RunLike = Union[History, PathLike]

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DPI = 150
MAX_LAYER_LABELS = 48  # more tick labels than this overlap even at 6 pt
RUN_COLOURS = [colormaps["tab10"](i) for i in range(10)]
# Up to this many epochs every epoch gets a marker: a line through one point draws nothing,
# and with a handful of points the reader should see where the measurements are.
FEW_EPOCHS = 20


def run_colour(i: int) -> tuple[float, float, float, float]:
    """The colour of the `i`-th run (or group of runs) of a picture: tab10, cycled."""
    return RUN_COLOURS[i % len(RUN_COLOURS)]


# ---------------------------------------------------------------- figures and files

def figure(width: float, height: float) -> Figure:
    """A new bare figure (inches), laid out with constrained layout."""
    # A bare Figure, not pyplot.figure(): no global registry, no backend, garbage-collected.
    return Figure(figsize=(width, height), layout="constrained")


def canvas(ax: Optional[Axes], width: float, height: float) -> tuple[Figure, Axes]:
    """A new figure of the given size with one axes, or the caller's `ax` and its figure."""
    if ax is None:
        fig = figure(width, height)
        return fig, fig.add_subplot()
    if not isinstance(ax, Axes):
        raise ConfigTypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}; "
                              "pass fig.add_subplot() or leave ax out for a new figure")
    return ax.get_figure(root=False), ax  # type: ignore[return-value]


def root(fig: Any) -> Figure:
    """The top-level Figure of a figure or subfigure: what the plot functions return."""
    return fig.get_figure(root=True) if hasattr(fig, "get_figure") else fig


def save(fig: Figure, path: PathLike, *, dpi: int = DPI) -> Path:
    """Render `fig` and write it to `path` atomically; returns the path.

    The format follows the suffix: ``.png`` (at `dpi`), ``.svg`` or ``.pdf``. Parent folders
    are created. The picture is rendered in memory first, so a failure (a bad figure, a full
    disk) leaves an existing file as it was and no temporary file behind.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from cifarnets.plots import gradient_flow
        >>> fig = gradient_flow({"conv": 1e-6, "fc": 1e-4})
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save(fig, Path(folder) / "flow.svg").read_bytes().lstrip().startswith(b"<?xml")
        True
    """
    if not isinstance(fig, Figure):
        raise ConfigTypeError(f"save() writes a matplotlib Figure (what the plot functions return), "
                              f"not {type(fig).__name__}")
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot write a picture to {str(path)!r}: give a path ending in .png (or .svg, .pdf)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)  # render first: a failure leaves the old file alone
    atomic_write(path, buffer.getbuffer())
    return path


# ---------------------------------------------------------------- runs and epochs

def load_history(run: RunLike) -> History:
    """`run` itself if it is a `History`, else the history of the run folder it names."""
    if isinstance(run, History):
        return run
    if isinstance(run, (str, os.PathLike)):
        return History.load(Path(run))
    raise ConfigTypeError(f"expected a History or a run folder, got {type(run).__name__}")


def nan_for_none(value: Optional[float]) -> float:
    """A metric as a float for matplotlib: ``None`` (not measured) becomes NaN, a gap in the line."""
    return math.nan if value is None else float(value)


def epoch_markers(count: int, size: float = 3.5) -> dict[str, Any]:
    """Line keywords that mark every point when a curve has at most `FEW_EPOCHS` points."""
    return {"marker": "o", "ms": size} if count <= FEW_EPOCHS else {}


def epoch_axis(ax: Axes, epochs: Iterable[int]) -> None:
    """An x axis of whole epochs: integer ticks, and half an epoch of room around a short run.

    Call it after drawing. matplotlib's automatic limits put a one-epoch run on an axis from
    0.945 to 1.055 with fractional ticks; here epoch 1 sits in the middle of 0.5 to 1.5, and
    the first and last markers of a few epochs are not cut in half by the frame.
    """
    values = [int(e) for e in epochs]
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if values and max(values) - min(values) < 5:
        ax.set_xlim(min(values) - 0.5, max(values) + 0.5)
