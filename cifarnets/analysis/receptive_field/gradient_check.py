"""The independent cross-check: the receptive field as the support of an input gradient.

`gradient_receptive_field` rewrites a traced model into a linear network with positive
weights (every activation, norm and dropout the identity, max pooling average pooling of
the same geometry, weights 1 / fan-in, biases 0), in float64. In such a network no two
paths cancel, so the input pixels with a non-zero gradient of one output unit are exactly
the pixels connected to it: its receptive field, measured without the formulas of
`tracer.py`. The test suite checks that both agree for every model in the zoo.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .geometry import ReceptiveFieldError, Size2, collapse
from .tracer import GeometryInterpreter, Passthrough, analyse, check_input_size, trace

__all__ = ["GradientReceptiveField", "gradient_receptive_field"]


# --------------------------------------------------------------------------------------
# Independent check: support of the input gradient in a linear, positive copy
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientReceptiveField:
    """Receptive field measured as the support of an input gradient (`gradient_receptive_field`).

    Attributes:
        rf: extent of the support (last - first non-zero pixel + 1) per axis.
        start, end: first and last input pixel (row, col) with a non-zero gradient.
        expected_start, expected_end: the same pixels as predicted by `receptive_field`.
        unit: index (row, col) of the output unit whose gradient was taken, per axis pass.
        input_sizes: the (H, W) of the input used for the row pass and the column pass.
    """

    rf: Size2
    start: tuple[int, int]
    end: tuple[int, int]
    expected_start: tuple[int, int]
    expected_end: tuple[int, int]
    unit: tuple[int, int]
    input_sizes: tuple[tuple[int, int], tuple[int, int]]

    @property
    def expected_rf(self) -> Size2:
        """Receptive field predicted by the traced table."""
        (s0, s1), (e0, e1) = self.expected_start, self.expected_end
        return collapse((e0 - s0 + 1, e1 - s1 + 1))

    @property
    def agrees(self) -> bool:
        """Whether the measured support spans exactly the predicted pixels."""
        return self.start == self.expected_start and self.end == self.expected_end


def _positive(name: str, t: torch.Tensor) -> torch.Tensor:
    """Weights 1 / fan-in (each unit averages its inputs, so magnitudes stay near 1 through
    hundreds of layers), biases 0, other tensors 1; float64 on the CPU."""
    out = torch.empty(t.shape, dtype=torch.float64)
    if t.dim() >= 2:
        return out.fill_(1.0 / t[0].numel())
    return out.fill_(0.0 if name.rsplit(".", 1)[-1] == "bias" else 1.0)


def _fill_positive(m: nn.Module) -> nn.Module:
    """A float64 CPU copy of `m` with `_positive` parameters and buffers and no gradients.

    Works for modules on any device, the meta device included (nothing is copied from it).
    """
    m = copy.deepcopy(m).to_empty(device="cpu").double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(_positive(name, p)).requires_grad_(False)
        for name, b in m.named_buffers():
            if b.is_floating_point():
                b.copy_(_positive(name, b))
    return m


def _linearise(gm: fx.GraphModule, interp: GeometryInterpreter, one_channel: bool) -> fx.GraphModule:
    """A linear copy of the traced graph with positive weights and no cancellations.

    Every per-pixel op becomes the identity, max pooling average pooling of the same geometry,
    subtraction addition, every weight 1 / fan-in and every bias 0. The support of an input
    gradient is then exactly the set of input pixels connected to the output unit.

    With ``one_channel`` every tensor has one channel: convolutions become 1->1 convolutions of
    the same geometry, channel-only ops vanish and merges become sums. With constant weights
    all channels of a tensor have the same support, so this changes nothing but the cost.
    Only the modules the rewritten graph still calls are copied.
    """
    actions, tuples = interp.actions, interp.tuple_nodes
    graph = fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    nodes = {n.name: n for n in graph.nodes}
    new_modules: dict[str, nn.Module] = {}

    def call(mod: nn.Module, x: fx.Node, node: fx.Node) -> fx.Node:
        name = f"_rf_linear_{len(new_modules)}"
        new_modules[name] = mod.double()
        with graph.inserting_before(node):
            return graph.call_module(name, (x,))

    erased: set[str] = set()

    def erase(node: fx.Node) -> None:
        erased.add(node.name)
        graph.erase_node(node)

    def replace_with(node: fx.Node, new: fx.Node) -> None:
        nodes[node.name] = new  # later actions name their inputs by the original node names
        if node.name in tuples:  # a tuple (split pieces, pooling with indices): its getitem users take `new`
            for user in list(node.users):
                nodes[user.name] = new
                user.replace_all_uses_with(new)
                erase(user)
        node.replace_all_uses_with(new)
        erase(node)

    for name, act in actions.items():
        node = nodes.get(name)
        if node is None or name in erased or node.name != name:
            continue
        p = act.params
        src = nodes.get(p.get("src", ""))
        x = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else node.kwargs.get("input")
        if act.kind == "pass_value" or (act.kind == "pass_struct" and one_channel):
            if not p.get("getitem") and src is not None:  # getitem elements went with their container
                replace_with(node, src)
        elif act.kind == "window":
            if p["op"] == "conv":
                if not one_channel:
                    continue  # the model's own convolution, with constant weights
                conv = nn.Conv2d(1, 1, p["kernel"], stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                                 bias=False, padding_mode=p["padding_mode"])
                replace_with(node, call(_fill_positive(conv), x, node))
            else:
                if p["dilation"] != (1, 1):
                    raise ReceptiveFieldError(
                        f"gradient_receptive_field: `{name}` is a dilated pooling, which has no average-pooling "
                        f"twin; check this model with receptive_field alone"
                    )
                pool = nn.AvgPool2d(p["kernel"], p["stride"], p["padding"], ceil_mode=p["ceil_mode"])
                replace_with(node, call(pool, x, node))
        elif act.kind == "adaptive":
            replace_with(node, call(nn.AdaptiveAvgPool2d(p["output_size"]), x, node))
        elif act.kind == "pad" and one_channel and p["channel_pad"]:
            kwargs = {"mode": p["mode"], "value": p["value"]} if p["mode"] == "constant" else {"mode": p["mode"]}
            with graph.inserting_before(node):
                new = graph.call_function(F.pad, (x, p["pad"]), kwargs)
            replace_with(node, new)
        elif act.kind == "slice" and one_channel:
            index = (slice(None), slice(None), *p["spatial"])  # channel slicing means nothing with one channel
            with graph.inserting_before(node):
                new = graph.call_function(operator.getitem, (x, index))
            replace_with(node, new)
        elif act.kind == "merge" and (one_channel or p["name"] not in ("cat", "concat", "concatenate", "mul", "imul")):
            # A sum connects exactly the pixels the original merge connects, with no sign changes.
            operands = [nodes[o] for o in p["operands"]]
            with graph.inserting_before(node):
                acc = operands[0]
                for o in operands[1:]:
                    acc = graph.call_function(operator.add, (acc, o))
            replace_with(node, acc)
        elif act.kind == "global":
            raise ReceptiveFieldError(
                "gradient_receptive_field: the analysed method contains a global op (flatten, global pooling), so "
                "every input pixel is connected and the support says nothing; analyse the conv trunk "
                "(method='forward_features')"
            )
    graph.lint()
    root: dict[str, Any] = dict(new_modules)
    for node in graph.nodes:
        if node.op == "call_module" and node.target not in root:
            root[str(node.target)] = _fill_positive(gm.get_submodule(str(node.target)))
        elif node.op == "get_attr" and node.target not in root:
            attr: Any = gm
            for part in str(node.target).split("."):
                attr = getattr(attr, part)
            is_float = isinstance(attr, torch.Tensor) and attr.is_floating_point()
            root[str(node.target)] = _positive(str(node.target), attr) if is_float else attr
    lin = fx.GraphModule(root, graph)
    lin.graph.eliminate_dead_code()
    lin.recompile()
    return lin


def _support_1d(grad: torch.Tensor, axis: int) -> tuple[int, int]:
    mask = grad.abs().sum(dim=tuple(d for d in range(grad.dim()) if d != axis)) > 0
    idx = torch.nonzero(mask).flatten()
    if idx.numel() == 0:
        raise ReceptiveFieldError("gradient_receptive_field: the input gradient is zero everywhere")
    return int(idx[0]), int(idx[-1])


def gradient_receptive_field(
    model: nn.Module,
    input_size: Sequence[int] = (3, 32, 32),
    *,
    method: str = "forward",
    strict: bool = False,
    passthrough: Iterable[Passthrough] = (),
    collapse_channels: bool = True,
    margin: Optional[int] = None,
) -> GradientReceptiveField:
    """Measure the receptive field as the support of an input gradient, independently of the
    formulas `receptive_field` uses.

    The model is traced and rewritten into a linear network with positive weights (every
    activation, norm and dropout becomes the identity, max pooling becomes average pooling of
    the same geometry, weights become 1 / fan-in, biases 0), in float64. In such a network no
    two paths cancel, so the input pixels with a non-zero gradient of one output unit are
    exactly the pixels connected to it: its receptive field.

    The input is made large enough that the measured unit's field lies inside it with
    `margin` pixels to spare on each side (so clipping would show), and each axis is measured
    on its own strip (rows on an ``S x W`` input, columns on ``H x S``, the unit central along
    the other axis): the connectivity of every supported op is a product over the axes, so
    the other axis may stay at the size of `input_size`. Analyse a trunk without global ops:
    for a fixed-head net or one that pools globally pass ``method="forward_features"``.
    Input guards (``check_*``) are dropped from the copy, so fixed-size checks do not fire.

    Args:
        model: as for `receptive_field`.
        input_size: ``(C, H, W)`` at which the model runs; the measured axis is enlarged.
        method: method to analyse; its output must be a feature map.
        strict: as for `receptive_field` (default ``False``: misaligned merges are
            measured as the hull, which is what the gradient support spans).
        passthrough: as for `receptive_field`.
        collapse_channels: compute with one channel per tensor (much cheaper; with
            constant weights the channels of a tensor carry identical support).
            ``False`` keeps the model's widths.
        margin: pixels of input left outside the field on each side; default the final
            jump.

    Returns:
        A `GradientReceptiveField`; ``.agrees`` compares it with the traced prediction.

    Example:
        >>> import torch.nn as nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...                     nn.Conv2d(4, 4, 3, padding=2, dilation=2))
        >>> g = gradient_receptive_field(net)
        >>> g.rf, g.agrees
        (12, True)
    """
    size = check_input_size(input_size)
    gm = trace(model, method, passthrough)
    base, _ = analyse(gm, size, method, strict, passthrough)
    if base.output is None:
        raise ReceptiveFieldError(f"{type(model).__name__}.{method} returns no feature map")
    if base.output.is_global:
        raise ReceptiveFieldError(
            f"gradient_receptive_field: {type(model).__name__}.{method} ends in a global op "
            f"(`{next((r.layer for r in base if r.is_global), '?')}`), so every input pixel is connected and the "
            f"support measures nothing; pass method='forward_features' to analyse the conv trunk"
        )
    out = base.output
    jump = out.jump if isinstance(out.jump, tuple) else (out.jump, out.jump)
    units, sides = [0, 0], [0, 0]
    for axis in range(2):
        m = margin if margin is not None else jump[axis]
        # The first unit whose field starts at least `m` pixels inside the input ...
        units[axis] = max(0, math.ceil((m - out.start[axis]) / jump[axis]))
        end = out.end[axis] + units[axis] * jump[axis]
        # ... and an input reaching `m` pixels past its end, rounded up to a multiple of the jump so that every
        # feature map is an integer fraction of the input (paths that must meet at equal sizes need it).
        sides[axis] = max(math.ceil((end + 1 + m) / jump[axis]) * jump[axis], size[1 + axis])
    # One trace at the enlarged size gives the rewrite and the prediction for both axes.
    big, interp = analyse(gm, (size[0], sides[0], sides[1]), method, strict, passthrough)
    assert big.output is not None
    bjump = big.output.jump if isinstance(big.output.jump, tuple) else (big.output.jump, big.output.jump)
    exp_s = [big.output.start[a] + units[a] * bjump[a] for a in range(2)]
    exp_e = [big.output.end[a] + units[a] * bjump[a] for a in range(2)]
    if any(exp_s[a] < 0 or exp_e[a] >= sides[a] for a in range(2)):
        raise ReceptiveFieldError(
            f"gradient_receptive_field: the field of unit {tuple(units)} at input {sides[0]}x{sides[1]} spans "
            f"{tuple(exp_s)}..{tuple(exp_e)}, outside the input; this model's geometry depends on the input size, "
            f"pass a larger margin="
        )
    lin = _linearise(gm, interp, collapse_channels)
    starts, ends, sizes = [0, 0], [0, 0], []
    for axis in range(2):
        # Rows are measured on a sides[0] x W strip, columns on an H x sides[1] strip.
        hw = [size[1], size[2]]
        hw[axis] = sides[axis]
        x = torch.ones((1, 1 if collapse_channels else size[0], hw[0], hw[1]), dtype=torch.float64,
                       requires_grad=True)
        y = lin(x)
        y = y if isinstance(y, torch.Tensor) else next(t for t in y if isinstance(t, torch.Tensor))
        if y.shape[-2 + axis] <= units[axis]:
            raise ReceptiveFieldError(
                f"gradient_receptive_field: an input of {hw[0]}x{hw[1]} gives a {tuple(y.shape[-2:])} feature map, "
                f"which has no unit {units[axis]} along axis {axis}"
            )
        other = int(y.shape[-1 - axis]) // 2  # the central unit along the axis not measured
        unit = (units[0], other) if axis == 0 else (other, units[1])
        (grad,) = torch.autograd.grad(y[0, :, unit[0], unit[1]].sum(), x)
        starts[axis], ends[axis] = _support_1d(grad[0], 1 + axis)
        sizes.append((hw[0], hw[1]))
    rf = collapse((ends[0] - starts[0] + 1, ends[1] - starts[1] + 1))
    return GradientReceptiveField(
        rf=rf, start=(starts[0], starts[1]), end=(ends[0], ends[1]), expected_start=(exp_s[0], exp_s[1]),
        expected_end=(exp_e[0], exp_e[1]), unit=(units[0], units[1]), input_sizes=(sizes[0], sizes[1]),
    )

