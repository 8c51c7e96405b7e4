"""`receptive_field`: trace a model with torch.fx, then walk its graph (`walk.GeometryWalk`).

The graph comes from `torch.fx` symbolic tracing, not from the order in which forward hooks
fire, which says nothing about how paths branch and merge. Norm layers, stochastic depth and
the user's pass-throughs stay leaves of the graph; input guards (``check_*``) stay single calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch.fx as fx
import torch.nn as nn

from ..._utils import preserved_mode
from ...errors import ConfigError
from .geometry import ReceptiveFieldError, ReceptiveFieldTable
from .ops import GUARD_PREFIX, NORMS, Passthrough, drop_path_types, split_passthrough
from .walk import GeometryWalk

__all__ = ["GUARD_PREFIX", "check_input_size", "receptive_field", "trace"]


class _Tracer(fx.Tracer):
    """fx tracer that keeps norm layers and user pass-throughs as leaves."""

    def __init__(self, leaf_types: tuple[type, ...], leaf_names: frozenset[str]) -> None:
        super().__init__()
        self.leaf_types, self.leaf_names = NORMS + drop_path_types() + leaf_types, leaf_names

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaf_types) or module_qualified_name in self.leaf_names or \
            super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module, method: str, passthrough: Iterable[Passthrough]) -> fx.GraphModule:
    """`model`'s `method` as an fx graph (traced in eval mode), norm layers and pass-throughs kept as leaves."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"receptive_field expects an nn.Module, got {type(model).__name__}; build the model first, "
                          f"e.g. cifarnets.create('vgg16')")
    if not callable(getattr(type(model), method, None)):
        raise ReceptiveFieldError(
            f"{type(model).__name__} has no method {method!r} to trace; use method='forward' or the name of "
            f"the method that computes the feature map (timm-style models: 'forward_features')"
        )
    types, names, _ = split_passthrough(passthrough)
    tracer = _Tracer(types, names)
    tracer.traced_func_name = method
    try:
        with preserved_mode(model, train=False):  # stochastic depth and the like are plain in eval mode
            graph = tracer.trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, AssertionError, ... from user code
        raise ReceptiveFieldError(
            f"torch.fx could not trace {type(model).__name__}.{method}: {type(e).__name__}: {e}. "
            f"Python control flow on tensor values or shapes cannot be traced; move input checks into a "
            f"function whose name starts with {GUARD_PREFIX!r} and register it with torch.fx.wrap, or pass "
            f"the offending module class in passthrough=[...] if it acts per pixel"
        ) from e
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def check_input_size(input_size: Sequence[int]) -> tuple[int, int, int]:
    """`input_size` as ``(C, H, W)`` of positive integers, or a `ConfigError` that shows the expected form."""
    ok = len(input_size) == 3 and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_size)
    if not ok:
        raise ConfigError(f"input_size is (C, H, W) of one image, each a positive integer, e.g. (3, 32, 32); "
                          f"got {tuple(input_size)}")
    return (input_size[0], input_size[1], input_size[2])


def receptive_field(
    model: nn.Module,
    input_size: Sequence[int] = (3, 32, 32),
    *,
    method: str = "forward",
    strict: bool = True,
    passthrough: Iterable[Passthrough] = (),
) -> ReceptiveFieldTable:
    """Trace `model` with torch.fx and tabulate the receptive field after every spatial op.

    The AlexNet/VGG report (§4) computes this by hand, and errs (docs/references.md lists
    the corrections); here it is derived from the graph, so branches and merges are handled:
    the receptive field of a multi-path net is the largest over its paths, after checking at
    every merge that the paths are aligned.

    Args:
        model: a module torch.fx can trace, built of the ops this module's docstring lists
            (every zoo model; any other op is refused with a `ModelError` naming it).
            Calls of functions named ``check_*`` (input guards, see `GUARD_PREFIX`) are skipped.
        input_size: ``(C, H, W)`` of one image; sets the feature-map sizes and the extent of
            global ops. No forward pass runs: the graph runs on meta tensors, so the weights
            are never read and a model built on the meta device (``with torch.device("meta"):``)
            works too.
        method: the method to trace, e.g. ``"forward_features"`` for the conv trunk of a
            timm-style model.
        strict: raise `ReceptiveFieldAlignmentError` where misaligned paths merge; with
            ``False`` they merge to the hull of their windows and the row says so.
        passthrough: extra per-pixel ops the tracer does not know: module classes (kept
            as leaves), qualified module names, or functions (``torch.fx.wrap``-ed).

    Returns:
        A `ReceptiveFieldTable`; ``table[-1].rf`` is the final receptive field.

    Raises:
        ConfigError: `input_size` is not three positive integers.
        ReceptiveFieldError: an unsupported op, untraceable code, or an input the model cannot take.
        ReceptiveFieldAlignmentError: misaligned paths merge and ``strict`` is set.

    Example:
        >>> import torch.nn as nn
        >>> alexnet_trunk = nn.Sequential(
        ...     nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...     nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...     nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        ...     nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        >>> [r.rf for r in receptive_field(alexnet_trunk)]   # the AlexNet/VGG report's Table 2, corrected
        [3, 4, 8, 10, 18, 26, 34, 38]
    """
    size = check_input_size(input_size)
    gm = trace(model, method, passthrough)
    return GeometryWalk(gm, size, method, strict, passthrough).run()
