"""Per-layer output shapes, parameters and multiply-accumulates of a model.

The counts come from torch itself: parameters from ``module.parameters()``, operations from
`torch.utils.flop_counter.FlopCounterMode`, which sees every aten op (so convolutions and
matrix products called functionally count too, not only those of ``nn.Conv2d`` and
``nn.Linear`` modules). FlopCounterMode counts a multiply-accumulate as two FLOPs; the
"FLOPs" of the CIFAR ResNet literature (He et al. 2016 and the pruning papers after it) are
multiply-adds, so this module reports MACs = FLOPs / 2. Element-wise ops (batch norm,
activations, additions, pooling) are not counted, which is the same convention.

Example:
    >>> import torch.nn as nn
    >>> s = summary(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10)))
    >>> s.total_params, s.total_macs          # MACs: 3*8*9 * 32*32 + 8192*10
    (82154, 303104)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union, overload

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .._utils import markdown_table, preserved_mode, text_table
from ..errors import ConfigError, ConfigTypeError
from ..registry import create

__all__ = ["LayerSummary", "ModelSummary", "summary"]

Shape = Union[tuple[int, ...], tuple[tuple[int, ...], ...]]


@dataclass(frozen=True)
class LayerSummary:
    """One row of a `ModelSummary`.

    Attributes:
        name: qualified module name (``""`` for the model itself).
        type: the module's class name.
        output_shape: shape of its output at its first call (a tuple of shapes for
            several outputs), ``None`` if it was not called.
        params: parameters the module owns directly (for a leaf: all of its parameters).
        trainable_params: those of `params` with ``requires_grad``.
        macs: multiply-accumulates of the ops run directly in the module (not in its
            child modules), over all its calls.
        calls: how often the module ran in the forward pass.
    """

    name: str
    type: str
    output_shape: Optional[Shape]
    params: int
    trainable_params: int
    macs: int
    calls: int


def _fmt_shape(shape: Optional[Shape]) -> str:
    if shape is None:
        return "(not called)"
    if shape and isinstance(shape[0], tuple):
        return ", ".join(_fmt_shape(s) for s in shape)  # type: ignore[arg-type]
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


@dataclass(frozen=True)
class ModelSummary(Sequence[LayerSummary]):
    """Layers in execution order with output shape, parameters and MACs, and the totals.

    Rows are the leaf modules, plus any module that owns parameters or runs
    multiply-accumulates itself (e.g. a functional convolution in a block's ``forward``),
    so the rows add up to the totals. ``summary["layer1.0.conv1"]`` looks a row up.

    Attributes:
        rows: the `LayerSummary` rows.
        input_shape: the batch shape the model ran on.
        total_params: ``sum(p.numel() for p in model.parameters())`` (shared parameters
            once).
        trainable_params: those with ``requires_grad``.
        total_macs: multiply-accumulates of one forward pass of the batch.
        flops_by_op: FLOPs (2 per MAC) per aten op, as FlopCounterMode reports them.
    """

    rows: tuple[LayerSummary, ...]
    input_shape: tuple[int, ...]
    total_params: int
    trainable_params: int
    total_macs: int
    flops_by_op: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> LayerSummary: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[LayerSummary, ...]: ...
    @overload
    def __getitem__(self, i: str) -> LayerSummary: ...

    def __getitem__(self, i):
        if isinstance(i, str):
            for row in self.rows:
                if row.name == i:
                    return row
            raise KeyError(f"no row {i!r} in the summary (rows are leaf modules and modules with their own ops)")
        return self.rows[i]

    def __iter__(self) -> Iterator[LayerSummary]:
        return iter(self.rows)

    @property
    def total_flops(self) -> int:
        """FLOPs in FlopCounterMode's convention: two per multiply-accumulate."""
        return 2 * self.total_macs

    def _cells(self) -> tuple[list[str], list[list[str]], list[bool]]:
        headers = ["Layer", "Type", "Output shape", "Params", "MACs"]
        rows = [[r.name or "(model)", r.type + (f" ×{r.calls}" if r.calls > 1 else ""), _fmt_shape(r.output_shape),
                 f"{r.params:,}", f"{r.macs:,}"] for r in self.rows]
        return headers, rows, [False, False, False, True, True]

    def _footer(self) -> list[str]:
        return [
            f"Input: {list(self.input_shape)}",
            f"Total params: {self.total_params:,} ({_human(self.total_params)}); trainable {self.trainable_params:,}",
            f"Total MACs: {self.total_macs:,} ({_human(self.total_macs)}; FLOPs = 2 × MACs)",
        ]

    def __str__(self) -> str:
        return text_table(*self._cells()) + "\n\n" + "\n".join(self._footer())

    def to_markdown(self) -> str:
        """The table and totals as GitHub markdown, for the docs."""
        return markdown_table(*self._cells()) + "\n\n" + "  \n".join(self._footer())


def _shape_of(out: Any) -> Optional[Shape]:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)):
        shapes = tuple(tuple(o.shape) for o in out if isinstance(o, torch.Tensor))
        return shapes if shapes else None
    return None


def summary(
    model: Union[nn.Module, str],
    input_size: Sequence[int] = (3, 32, 32),
    *,
    batch_size: int = 1,
) -> ModelSummary:
    """Run one forward pass and tabulate every layer's output shape, parameters and MACs.

    The pass runs in eval mode under ``torch.no_grad`` (batch-norm running statistics do not
    move; the model's modes are restored) on a zero batch of ``(batch_size, *input_size)``
    on the model's device and dtype. A model on the meta device (``with
    torch.device("meta"):``) is counted without allocating or initialising its weights.

    Args:
        model: any module, or the name of a zoo model (built with its defaults on the meta
            device, so nothing is allocated or initialised).
        input_size: ``(C, H, W)`` of one image.
        batch_size: images in the batch; MACs are for the whole batch (default one image).

    Returns:
        A `ModelSummary`: ``print(s)`` shows the table, ``s.to_markdown()`` the same in
        markdown, ``s.total_macs`` / ``s.total_params`` the totals.

    Example:
        >>> import cifarnets
        >>> s = summary(cifarnets.create("resnet20"))
        >>> s.total_params, round(s.total_macs / 1e6, 2)     # He et al. 2016 Table 6: 0.27 M params
        (269722, 40.55)
    """
    if isinstance(model, str):
        with torch.device("meta"):
            model = create(model)
    if not isinstance(model, nn.Module):
        raise ConfigTypeError(f"summary expects an nn.Module or a zoo model name, got {type(model).__name__}; "
                              f"e.g. summary('resnet20') or summary(cifarnets.create('resnet20'))")
    if len(input_size) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_size):
        raise ConfigError(f"input_size is (C, H, W) of one image, each a positive integer, e.g. (3, 32, 32); "
                          f"got {tuple(input_size)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros((batch_size, *input_size), dtype=dtype, device=device)

    names = {m: name for name, m in model.named_modules()}
    order: list[nn.Module] = []
    shapes: dict[nn.Module, Optional[Shape]] = {}
    calls: dict[nn.Module, int] = {}

    def pre_hook(m: nn.Module, _args: Any) -> None:
        if m not in calls:
            order.append(m)
        calls[m] = calls.get(m, 0) + 1

    def post_hook(m: nn.Module, _args: Any, out: Any) -> None:
        shapes.setdefault(m, _shape_of(out))

    handles = []
    for m in names:
        handles.append(m.register_forward_pre_hook(pre_hook))
        handles.append(m.register_forward_hook(post_hook))
    counter = FlopCounterMode(display=False)
    try:
        with preserved_mode(model, train=False), torch.no_grad(), counter:
            model(x)
    finally:
        for h in handles:
            h.remove()

    # FlopCounterMode names a module by its path with the root's class name in front, and
    # counts every op in the module and all modules it calls.
    counts = counter.get_flop_counts()
    root_prefix = type(model).__name__

    def inclusive(m: nn.Module) -> int:
        path = names[m]
        key = f"{root_prefix}.{path}" if path else root_prefix
        return sum(counts.get(key, {}).values())

    rows: list[LayerSummary] = []
    for m in order + [m for m in names if m not in calls]:
        children = list(m.children())
        own = inclusive(m) - sum(inclusive(c) for c in children)
        params = sum(p.numel() for p in m.parameters(recurse=False))
        if children and params == 0 and own == 0:
            continue  # a container: its children are rows
        rows.append(LayerSummary(
            name=names[m], type=type(m).__name__, output_shape=shapes.get(m), params=params,
            trainable_params=sum(p.numel() for p in m.parameters(recurse=False) if p.requires_grad),
            macs=own // 2, calls=calls.get(m, 0),
        ))
    total_flops = counter.get_total_flops()
    by_op = {str(op): int(n) for op, n in counts.get("Global", {}).items()}
    return ModelSummary(
        rows=tuple(rows), input_shape=tuple(x.shape), total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_macs=total_flops // 2, flops_by_op=by_op,
    )
