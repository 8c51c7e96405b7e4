"""The independent cross-check of `cifarnets.analysis.receptive_field`: the support of an input gradient.

`gradient_receptive_field` rewrites a model into a linear network with positive weights
(every activation, norm and dropout the identity, max pooling average pooling of the same
geometry, subtraction and multiplication addition, weights 1 / fan-in, biases 0), in float64.
In such a network no two paths cancel, so the input pixels with a non-zero gradient of one
output unit are exactly the pixels connected to it: its receptive field, measured without the
tracer's formulas. The rewrite is its own fx pass with its own op list; from the library it
takes only the public `receptive_field`, for the prediction it checks.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath
from torch.fx.passes.shape_prop import ShapeProp

from cifarnets.analysis import receptive_field

__all__ = ["GradientReceptiveField", "gradient_receptive_field"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
# Modules and functions that act per pixel: in the linear copy they are the identity.
_IDENTITY_MODULES = _NORMS + (nn.Identity, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Sigmoid, nn.Tanh,
                              nn.Dropout, DropPath)
_IDENTITY_FNS = {"relu", "relu_", "leaky_relu", "sigmoid", "tanh", "gelu", "silu", "dropout", "softmax",
                 "contiguous", "float", "clone", "detach", "to"}
_ARITH = {"add", "iadd", "sub", "isub", "mul", "imul", "truediv", "div"}


@dataclass(frozen=True)
class GradientReceptiveField:
    """Receptive field measured as the support of an input gradient.

    Attributes:
        rf: extent of the support (last - first non-zero pixel + 1): an int when both axes agree, else (h, w).
        start, end: first and last input pixel (row, col) with a non-zero gradient.
        expected_start, expected_end: the same pixels as predicted by `receptive_field`.
        unit: index (row, col) of the output unit whose gradient was taken.
    """

    rf: Union[int, tuple[int, int]]
    start: tuple[int, int]
    end: tuple[int, int]
    expected_start: tuple[int, int]
    expected_end: tuple[int, int]
    unit: tuple[int, int]

    @property
    def agrees(self) -> bool:
        """Whether the measured support spans exactly the predicted pixels."""
        return self.start == self.expected_start and self.end == self.expected_end


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, _NORMS + (DropPath,)) or super().is_leaf_module(m, name)


def _positive_copy(model: nn.Module) -> nn.Module:
    """A float64 CPU copy with weights 1 / fan-in, biases 0, other floating tensors 1 (from any device, meta too)."""
    m = copy.deepcopy(model).to_empty(device="cpu").double().eval()
    with torch.no_grad():
        for name, t in [*m.named_parameters(), *m.named_buffers()]:
            if t.is_floating_point():
                t.fill_(1.0 / t[0].numel() if t.dim() >= 2 else 0.0 if name.endswith("bias") else 1.0)
                t.requires_grad_(False)
    return m


def _is_tensor(a: Any) -> bool:
    return isinstance(a, fx.Node) and "tensor_meta" in a.meta


def _one_channel_conv(kernel: Any, stride: Any, padding: Any, dilation: Any, mode: str = "zeros") -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, kernel, stride, padding, dilation, bias=False, padding_mode=mode).double()
    nn.init.constant_(conv.weight, 1.0 / conv.weight.numel())
    return conv.requires_grad_(False)


def linear_copy(model: nn.Module, input_size: Sequence[int], method: str, one_channel: bool) -> fx.GraphModule:
    """The linear, positive copy of `model.<method>` as an fx graph (one channel per tensor if `one_channel`)."""
    m = _positive_copy(model)
    tracer = _LeafTracer()
    tracer.traced_func_name = method
    gm = fx.GraphModule(m, tracer.trace(m))
    g = gm.graph
    for node in list(g.nodes):  # input guards (check_*) return their tensor: drop them first
        if node.op == "call_function" and getattr(node.target, "__name__", "").startswith("check_"):
            node.replace_all_uses_with(node.args[0])
            g.erase_node(node)
    gm.recompile()
    ShapeProp(gm).propagate(torch.ones((1, *input_size), dtype=torch.float64))  # which nodes are tensors
    new_modules = 0

    def swap(node: fx.Node, new: Any) -> None:
        if "tensor_meta" not in new.meta:  # a node made here: it stands for `node`'s tensor
            new.meta["tensor_meta"] = node.meta["tensor_meta"]
        node.replace_all_uses_with(new)
        g.erase_node(node)

    def module(node: fx.Node, mod: nn.Module) -> None:
        nonlocal new_modules
        name, new_modules = f"_linear_{new_modules}", new_modules + 1
        gm.add_submodule(name, mod)
        with g.inserting_before(node):
            swap(node, g.call_module(name, (node.args[0],)))

    for node in list(g.nodes):
        if node.op == "call_module":
            mod = gm.get_submodule(str(node.target))
            if isinstance(mod, _IDENTITY_MODULES):
                swap(node, node.args[0])
            elif isinstance(mod, nn.Conv2d):
                if one_channel:
                    module(node, _one_channel_conv(mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                                   mod.padding_mode))
            elif isinstance(mod, nn.MaxPool2d):
                assert mod.dilation in (1, (1, 1)), "a dilated max pooling has no average-pooling twin"
                module(node, nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode))
            elif isinstance(mod, nn.AdaptiveMaxPool2d):
                module(node, nn.AdaptiveAvgPool2d(mod.output_size))
            elif not isinstance(mod, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                raise NotImplementedError(f"linear copy: no rule for module {node.target} ({type(mod).__name__})")
        elif node.op in ("call_function", "call_method") and _is_tensor(node):
            name = str(node.target) if node.op == "call_method" else node.target.__name__
            tensors = [a for a in node.args if _is_tensor(a)]
            if name in _IDENTITY_FNS or (name in _ARITH and len(tensors) == 1):
                swap(node, tensors[0])
            elif name in _ARITH or (name == "cat" and one_channel):
                operands = tensors if name in _ARITH else list(node.args[0])
                with g.inserting_before(node):
                    acc = operands[0]
                    for o in operands[1:]:
                        acc = g.call_function(operator.add, (acc, o))
                swap(node, acc)
            elif name == "pad":
                if one_channel:  # the zoo pads channels only
                    swap(node, node.args[0])
            elif name in ("max_pool2d", "avg_pool2d"):
                args = dict(zip(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"), node.args))
                args.update(node.kwargs)
                if name == "max_pool2d":
                    assert args.pop("dilation", 1) in (1, (1, 1)), "a dilated max pooling has no average twin"
                    args.pop("return_indices", None)
                    with g.inserting_before(node):
                        swap(node, g.call_function(F.avg_pool2d, (), args))
            elif name == "adaptive_max_pool2d":
                with g.inserting_before(node):
                    swap(node, g.call_function(F.adaptive_avg_pool2d, node.args, node.kwargs))
            elif name == "conv2d":
                names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
                args = {"stride": 1, "padding": 0, "dilation": 1, **dict(zip(names, node.args)), **node.kwargs}
                if one_channel:
                    k = tuple(args["weight"].meta["tensor_meta"].shape[-2:])
                    conv = _one_channel_conv(k, args["stride"], args["padding"], args["dilation"])
                    node.args, node.kwargs = (args["input"],), {}
                    module(node, conv)
            elif name != "cat":
                raise NotImplementedError(f"linear copy: no rule for {node.op} {name} ({node.name})")
    g.eliminate_dead_code()
    g.lint()
    gm.recompile()
    return gm


def _support(grad: torch.Tensor, axis: int) -> tuple[int, int]:
    mask = grad.abs().sum(dim=tuple(d for d in range(grad.dim()) if d != axis)) > 0
    idx = torch.nonzero(mask).flatten()
    assert idx.numel() > 0, "the input gradient is zero everywhere"
    return int(idx[0]), int(idx[-1])


def gradient_receptive_field(
    model: nn.Module,
    input_size: Sequence[int] = (3, 32, 32),
    *,
    method: str = "forward",
    collapse_channels: bool = True,
    margin: Optional[int] = None,
) -> GradientReceptiveField:
    """Measure the receptive field of `model.<method>`'s output as the support of an input gradient.

    The input is made large enough that the measured unit's field lies inside it with `margin`
    pixels to spare on each side (default: the final jump), so clipping would show; each axis
    is measured on its own strip (rows on an ``S x W`` input, columns on ``H x S``), since the
    connectivity of every op here is a product over the axes. `method`'s output must be a
    feature map (no flatten or global pooling). With `collapse_channels` every tensor has one
    channel (much cheaper; with constant weights all channels of a tensor have the same support).
    """
    c = input_size[0]
    base = receptive_field(model, input_size, method=method, strict=False).output
    assert base is not None and not base.is_global, f"{method} must return a feature map, not a global op's output"
    jump = base.jump if isinstance(base.jump, tuple) else (base.jump, base.jump)
    units, sides = [0, 0], [0, 0]
    for a in range(2):
        m = margin if margin is not None else jump[a]
        # The first unit whose field starts at least `m` pixels inside the input, and an input reaching `m`
        # pixels past its end, rounded up to a multiple of the jump (paths that meet need equal sizes).
        units[a] = max(0, math.ceil((m - base.start[a]) / jump[a]))
        end = base.end[a] + units[a] * jump[a]
        sides[a] = max(math.ceil((end + 1 + m) / jump[a]) * jump[a], input_size[1 + a])
    big = receptive_field(model, (c, sides[0], sides[1]), method=method, strict=False).output
    assert big is not None
    bjump = big.jump if isinstance(big.jump, tuple) else (big.jump, big.jump)
    exp_s = tuple(big.start[a] + units[a] * bjump[a] for a in range(2))
    exp_e = tuple(big.end[a] + units[a] * bjump[a] for a in range(2))
    assert all(exp_s[a] >= 0 and exp_e[a] < sides[a] for a in range(2)), "the field does not fit the input"
    lin = linear_copy(model, input_size, method, collapse_channels)
    starts, ends = [0, 0], [0, 0]
    for axis in range(2):
        hw = [input_size[1], input_size[2]]
        hw[axis] = sides[axis]
        x = torch.ones((1, 1 if collapse_channels else c, *hw), dtype=torch.float64, requires_grad=True)
        y = lin(x)
        other = int(y.shape[-1 - axis]) // 2  # the central unit along the axis not measured
        unit = (units[0], other) if axis == 0 else (other, units[1])
        (grad,) = torch.autograd.grad(y[0, :, unit[0], unit[1]].sum(), x)
        starts[axis], ends[axis] = _support(grad[0], 1 + axis)
    rf = (ends[0] - starts[0] + 1, ends[1] - starts[1] + 1)
    return GradientReceptiveField(
        rf=rf[0] if rf[0] == rf[1] else rf, start=(starts[0], starts[1]), end=(ends[0], ends[1]),
        expected_start=exp_s, expected_end=exp_e, unit=(units[0], units[1]),  # type: ignore[arg-type]
    )
