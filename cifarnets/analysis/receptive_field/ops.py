"""What the receptive-field tracer knows: the ops it accepts, by module class or function name.

`walk.GeometryWalk` gives each of these its geometry rule; anything not listed here is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union

import torch
import torch.fx as fx
import torch.nn as nn

from ...errors import ConfigError
from ...layers import DropPath

__all__ = [
    "ELEMENTWISE", "FLATTEN", "GUARD_PREFIX", "KNOWN", "LAYOUT", "MERGES", "NORMS", "Passthrough", "QUERIES", "REDUCE",
    "SIGNATURES", "bind", "drop_path_types", "fn_name", "is_pointwise", "split_passthrough",
]

Passthrough = Union[str, type, Callable[..., Any]]
"""An extra per-pixel op: a module class, a qualified module name, or a function."""

GUARD_PREFIX = "check_"
"""Calls to functions whose name starts with this are input guards: they return their
input (or ``None``) and are neither executed nor counted by the analysis. The zoo's
`cifarnets.layers.check_input` is one, registered with `torch.fx.wrap` so it stays a
single call in the graph."""

# Modules that act per pixel (or per channel): the geometry passes through them. Norm
# statistics are ignored, as is usual for receptive fields; norms are kept as leaves when
# tracing, since the statistics code of one defined outside torch.nn looks spatial.
NORMS: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
ELEMENTWISE: tuple[type, ...] = NORMS + (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Hardshrink, nn.Softshrink, nn.Softmax2d,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout, DropPath,
)


def drop_path_types() -> tuple[type, ...]:
    """cifarnets' DropPath, and timm's when timm is loaded (user models built from timm's layers):
    the analysis does not import timm itself."""
    timm_layers = sys.modules.get("timm.layers")
    theirs = getattr(timm_layers, "DropPath", None) if timm_layers is not None else None
    return (DropPath,) if theirs is None or theirs is DropPath else (DropPath, theirs)


# Functions and methods that act per pixel but that aten does not tag pointwise.
EXTRA_POINTWISE = frozenset({"dropout", "dropout2d", "alpha_dropout", "feature_alpha_dropout", "hardswish",
                              "logsigmoid", "softsign", "tanhshrink", "hardshrink", "softshrink", "threshold",
                              "batch_norm", "instance_norm", "group_norm", "layer_norm", "identity"})
# Calls that return their tensor as it is, up to dtype, device or memory layout.
LAYOUT = frozenset({"contiguous", "clone", "detach", "to", "float", "double", "half", "bfloat16", "type_as",
                     "cpu", "cuda", "requires_grad_"})
MERGES = frozenset({"add", "iadd", "add_", "sub", "isub", "sub_", "mul", "imul", "mul_", "truediv", "itruediv",
                     "div", "div_"})
QUERIES = frozenset({"size", "dim", "numel", "getattr"})  # x.size(0), x.shape: plain values, no geometry
FLATTEN = frozenset({"flatten", "view", "reshape"})
REDUCE = frozenset({"mean", "sum", "amax", "amin"})
# Positional parameters after the input of the functions whose arguments the walk reads, with defaults.
SIGNATURES: dict[str, tuple[tuple[str, Any], ...]] = {
    "conv2d": (("weight", None), ("bias", None), ("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)),
    "max_pool2d": (("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1), ("ceil_mode", False),
                   ("return_indices", False)),
    "avg_pool2d": (("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False)),
    "pad": (("pad", ()),),
    "cat": (("dim", 0),),
    "reduce": (("dim", None),),
}
KNOWN = ("Conv2d, max/avg/adaptive pooling, element-wise layers and functions (norms, activations, dropout), "
          "+ - * / and torch.cat on channels, flatten or a mean over H, W, and a Linear head")


def bind(sig: str, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments after the input of a call to function `sig`, by name."""
    spec = SIGNATURES[sig]
    out = dict(spec)
    out.update(zip((name for name, _ in spec), args[1:]))
    out.update((k, v) for k, v in kwargs.items() if k in out)
    return out


def fn_name(n: fx.Node) -> str:
    return str(n.target) if n.op == "call_method" else getattr(n.target, "__name__", None) or str(n.target)


def is_pointwise(name: str) -> bool:
    """Whether the function or method `name` acts per pixel: listed above, or tagged pointwise by aten."""
    base = name[:-1] if name.endswith("_") and not name.startswith("_") else name
    if base in EXTRA_POINTWISE:
        return True
    packet = getattr(torch.ops.aten, base, None)
    try:
        return any(torch.Tag.pointwise in getattr(packet, o).tags for o in packet.overloads())  # type: ignore[union-attr]
    except (AttributeError, RuntimeError):
        return False


def split_passthrough(passthrough: Iterable[Passthrough]) -> tuple[tuple[type, ...], frozenset[str], tuple[Any, ...]]:
    types, names, fns = [], [], []
    for p in passthrough:
        if isinstance(p, type):
            types.append(p)
        elif isinstance(p, str):
            names.append(p)
        elif callable(p):
            fns.append(p)
        else:
            raise ConfigError(f"passthrough entries are module classes, module names or functions; got {p!r}")
    return tuple(types), frozenset(names), tuple(fns)
