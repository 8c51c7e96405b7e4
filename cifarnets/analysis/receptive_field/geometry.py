"""Receptive-field geometry of one tensor, and the table the analysis returns.

Every tensor carries the geometry of its output unit 0 relative to the input (`Geom`: the
jump and the first and last input pixel the unit sees); `window` applies one conv or pooling
window to it, and `ReceptiveFieldTable` holds one `ReceptiveFieldRow` per spatial op. The
walk (`walk.py`) fills the table; nothing here knows about torch.fx.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional, Union, overload

from ..._utils import markdown_table, text_table
from ...errors import ModelError

__all__ = [
    "Float2", "Geom", "ReceptiveFieldAlignmentError", "ReceptiveFieldError", "ReceptiveFieldRow",
    "ReceptiveFieldTable", "Size2", "collapse", "fmt", "make_row", "pair", "window",
]

Size2 = Union[int, tuple[int, int]]
"""A per-axis value in torch's ``_size_2_t`` convention: an int when H and W agree, else ``(h, w)``."""
Float2 = Union[float, tuple[float, float]]


ReceptiveFieldError = ModelError  # kept names; the kind is cifarnets.errors.ModelError
ReceptiveFieldAlignmentError = ModelError


@dataclass(frozen=True)
class Geom:
    """Where output unit 0 of a tensor looks in the input, per axis (H, W): the jump, the first
    and last input pixel it sees (negative ones lie in the padding), the map's size."""

    jump: tuple[int, int]
    start: tuple[int, int]
    end: tuple[int, int]
    size: tuple[int, int]
    is_global: bool = False

    @property
    def rf(self) -> tuple[int, int]:
        return (self.end[0] - self.start[0] + 1, self.end[1] - self.start[1] + 1)

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.start[0] + self.end[0]) / 2, (self.start[1] + self.end[1]) / 2)


def pair(v: Any) -> tuple[int, int]:
    """``(h, w)`` from an int or a one- or two-element sequence (torch's ``_size_2_t``)."""
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return (int(v[0]), int(v[0]))
        if len(v) != 2:
            raise ReceptiveFieldError(f"expected one or two values for a 2-D op, got {v!r}")
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def collapse(v: tuple[Any, Any]) -> Any:
    """The inverse of `pair`: one value when both axes agree, else the tuple."""
    return v[0] if v[0] == v[1] else (v[0], v[1])


def window(g: Geom, kernel, stride, before, dilation, size) -> Geom:
    """The geometry after a window op (conv, pooling): `before` is the padding before the
    first pixel, `size` the output's (H, W)."""
    if g.is_global:
        # Every unit already depends on the whole hull; a window over such units adds nothing.
        return replace(g, size=size)
    start, end, jump = [], [], []
    for a in range(2):
        k_eff = dilation[a] * (kernel[a] - 1) + 1
        start.append(g.start[a] - before[a] * g.jump[a])
        end.append(g.end[a] + (k_eff - 1 - before[a]) * g.jump[a])
        jump.append(g.jump[a] * stride[a])
    return Geom(tuple(jump), tuple(start), tuple(end), size)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ReceptiveFieldRow:
    """One spatial op of a `ReceptiveFieldTable` and the geometry of its output unit 0.

    Per-axis values follow torch's ``_size_2_t`` convention: an ``int`` when height and
    width agree (every CIFAR net), else an ``(h, w)`` tuple. `start` and `end` are always
    ``(row, col)`` tuples.

    Attributes:
        layer: qualified module name (``features.3``), or for a function call the module
            it is called in and the function (``layer1.0.add``).
        op: what the op is, in the AlexNet/VGG report's words (``3×3 conv``, ``2×2 maxpool``).
        kind: machine-readable op kind: ``conv``, ``maxpool``, ``avgpool``, ``adaptive_avgpool``,
            ``adaptive_maxpool``, ``merge``, ``flatten``, ``reduce``, or ``output`` (rows
            made by `ReceptiveFieldTable.at`).
        kernel, stride, padding, dilation: the op's geometry; ``padding`` is the padding
            before the first pixel (top/left). ``None`` for merges.
        jump: cumulative stride after the op (the AlexNet/VGG report's "Cum. Stride").
        rf: receptive field size after the op.
        centre: centre of output unit 0's receptive field, in input pixel coordinates
            (pixel 0 is the first input pixel; half-integers are between pixels).
        start, end: first and last input pixel seen by output unit 0 (negative: padding).
        output_size: spatial size (H, W) of the op's output.
        is_global: every output unit depends on every input pixel it can reach (after
            global pooling or flatten).
        note: anything unusual (paths merged without alignment under ``strict=False``).
    """

    layer: str
    op: str
    kind: str
    kernel: Optional[Size2]
    stride: Optional[Size2]
    padding: Optional[Size2]
    dilation: Optional[Size2]
    jump: Size2
    rf: Size2
    centre: Float2
    start: tuple[int, int]
    end: tuple[int, int]
    output_size: tuple[int, int]
    is_global: bool = False
    note: str = ""


def make_row(layer: str, op: str, kind: str, g: Geom, kernel=None, stride=None, padding=None, dilation=None,
             note: str = "") -> ReceptiveFieldRow:
    """A table row for op `layer` whose output has geometry `g`."""
    c = lambda v: None if v is None else collapse(v)  # noqa: E731
    return ReceptiveFieldRow(
        layer=layer, op=op, kind=kind, kernel=c(kernel), stride=c(stride), padding=c(padding),
        dilation=c(dilation), jump=collapse(g.jump), rf=collapse(g.rf), centre=collapse(g.centre),
        start=g.start, end=g.end, output_size=g.size, is_global=g.is_global, note=note,
    )


def fmt(v: Any, sep: str = "×") -> str:
    """A table cell: ``-`` for None, ``3×3`` for a pair, ``0.5`` for a float."""
    if v is None:
        return "-"
    if isinstance(v, tuple):
        return sep.join(fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


class ReceptiveFieldTable(Sequence[ReceptiveFieldRow]):
    """The receptive field after every spatial op of a model, in graph order.

    A sequence of `ReceptiveFieldRow`: ``table[-1].rf`` is the receptive field of the
    model's output, ``table["features.10"]`` looks a row up by layer name, and
    ``table.at("layer3")`` gives the geometry at the output of any module, leaf or not.
    ``print(table)`` shows the AlexNet/VGG report's columns (plus padding, dilation, centre and output
    size); `to_markdown` gives the same for docs.

    Merge rows (``kind == "merge"``) mark where paths join, so that in a residual net the
    last row of a block is its ``add``. For the CIFAR ResNets of depth 6n + 2 the row of
    the last block's add (equally ``table.at("layer3")``, the output of `forward_features`)
    has 28n - 3 (ResNet-20: 81); the global-pool row after it covers the whole input.
    """

    def __init__(
        self,
        rows: Sequence[ReceptiveFieldRow],
        *,
        input_size: tuple[int, int, int],
        method: str,
        output: Optional[ReceptiveFieldRow],
        scopes: dict[str, ReceptiveFieldRow],
        aligned: bool,
    ) -> None:
        self._rows = tuple(rows)
        self.input_size = input_size
        """``(C, H, W)`` the model was traced at."""
        self.method = method
        """The method traced (``forward`` or ``forward_features``)."""
        self.output = output
        """Geometry of the traced method's (first) output tensor; ``None`` if it has none."""
        self.aligned = aligned
        """False if paths merged without alignment (only possible with ``strict=False``)."""
        self._scopes = scopes

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> ReceptiveFieldRow: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[ReceptiveFieldRow, ...]: ...
    @overload
    def __getitem__(self, i: str) -> ReceptiveFieldRow: ...

    def __getitem__(self, i):
        if isinstance(i, str):
            for row in self._rows:
                if row.layer == i:
                    return row
            return self.at(i)
        return self._rows[i]

    def __iter__(self) -> Iterator[ReceptiveFieldRow]:
        return iter(self._rows)

    @property
    def rf(self) -> Size2:
        """Receptive field of the traced method's output (``rf.output.rf``)."""
        if self.output is None:
            raise ReceptiveFieldError("the traced method returns no tensor that depends on the input")
        return self.output.rf

    def at(self, layer: str) -> ReceptiveFieldRow:
        """Geometry at the output of module `layer` (a qualified name, ``""`` for the root).

        Works for containers too (``"layer3"``, ``"features"``): their output is the last
        node computed inside them.

        Example:
            >>> import torch.nn as nn
            >>> from cifarnets.analysis import receptive_field
            >>> net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)), nn.ReLU())
            >>> receptive_field(net).at("0").rf
            5
        """
        if layer in self._scopes:
            return self._scopes[layer]
        close = difflib.get_close_matches(layer, list(self._scopes), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"no module {layer!r} with a spatial output in the traced graph{hint}")

    def _cells(self) -> tuple[list[str], list[list[str]], list[bool]]:
        headers = ["Layer", "Operation", "Kernel", "Stride", "Padding", "Dilation", "Cum. stride (jump)",
                   "Receptive field", "Centre", "Output"]
        c, h, w = self.input_size
        rows = [["input", "-", "-", "-", "-", "-", "1", "1×1", "0", f"{h}×{w}"]]
        for r in self._rows:
            rf = r.rf if isinstance(r.rf, tuple) else (r.rf, r.rf)
            rows.append([
                r.layer, r.op + (f" ({r.note})" if r.note else ""), fmt(r.kernel), fmt(r.stride),
                fmt(r.padding), fmt(r.dilation), fmt(r.jump), fmt(rf), fmt(r.centre, ", "),
                fmt(r.output_size),
            ])
        return headers, rows, [False, False] + [True] * 8

    def __str__(self) -> str:
        return text_table(*self._cells())

    def to_markdown(self) -> str:
        """The table as GitHub markdown, for the docs."""
        return markdown_table(*self._cells())

    def __repr__(self) -> str:
        rf = self.output.rf if self.output is not None else None
        return f"ReceptiveFieldTable({len(self)} rows, input_size={self.input_size}, method={self.method!r}, rf={rf})"

