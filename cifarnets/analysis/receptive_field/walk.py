"""The geometry walk: a traced graph visited node by node, each tensor carrying the geometry of its unit 0.

Every node gets a value, computed by torch itself on *meta* tensors (shapes only: no data, no
weights read, nothing logged), and, if it depends on the input, the `~.geometry.Geom` of its
output unit 0 (the jump, and the first and last input pixel the unit sees). Window ops apply
`~.geometry.window`; element-wise ops pass the geometry on; merges check that their paths are
aligned; global ops (flatten, means over H, W, pooling to 1x1) cover the whole hull. What it
accepts is listed in `ops`; every other op is refused with a `ModelError` naming it and the node.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn as nn

from .geometry import (
    Geom,
    ReceptiveFieldAlignmentError,
    ReceptiveFieldError,
    ReceptiveFieldRow,
    ReceptiveFieldTable,
    collapse,
    fmt,
    make_row,
    pair,
    window,
)
from .ops import (
    ELEMENTWISE,
    FLATTEN,
    GUARD_PREFIX,
    KNOWN,
    LAYOUT,
    MERGES,
    QUERIES,
    REDUCE,
    Passthrough,
    bind,
    drop_path_types,
    fn_name,
    is_pointwise,
    split_passthrough,
)

__all__ = ["GeometryWalk"]


def _meta(v: Any) -> Any:
    """A tensor's shape-only twin on the meta device (weights are never read); anything else as it is."""
    return torch.empty(v.shape, dtype=v.dtype, device="meta") if isinstance(v, torch.Tensor) else v


class GeometryWalk:
    """Visits a traced graph in order: a meta value for every node, a `Geom` and a table row for every spatial op."""

    def __init__(self, gm: fx.GraphModule, input_size: tuple[int, int, int], method: str, strict: bool,
                 passthrough: Iterable[Passthrough]) -> None:
        self.gm, self.input_size, self.method, self.strict = gm, input_size, method, strict
        self.pass_types, self.pass_names, self.pass_fns = split_passthrough(passthrough)
        self.values: dict[fx.Node, Any] = {}
        self.geoms: dict[fx.Node, Geom] = {}
        self.origin: dict[fx.Node, str] = {}  # the last spatial op on each tensor's path, for messages
        self.rows: list[ReceptiveFieldRow] = []
        self.scopes: dict[str, ReceptiveFieldRow] = {}
        self.output: Optional[ReceptiveFieldRow] = None
        self.aligned = True
        self._names: dict[fx.Node, str] = {}
        self._name_counts: dict[tuple[str, str], int] = {}

    def run(self) -> ReceptiveFieldTable:
        for n in self.gm.graph.nodes:
            self.values[n] = self._visit(n)
            if n in self.geoms and n.op != "placeholder" and not self._is_guard(n):
                for path, mod_type in (n.meta.get("nn_module_stack") or {}).values():
                    self.scopes[path] = make_row(path, f"output of {getattr(mod_type, '__name__', mod_type)}",
                                                 "output", self.geoms[n])
                self.scopes[""] = make_row("output", "output", "output", self.geoms[n])
        return ReceptiveFieldTable(self.rows, input_size=self.input_size, method=self.method, output=self.output,
                                   scopes=self.scopes, aligned=self.aligned)

    # ---- naming ---------------------------------------------------------------------------
    def _layer(self, n: fx.Node) -> str:
        """The row name: the module's qualified name, or the enclosing module and the function (``a.b.add_2``)."""
        if n not in self._names:
            if n.op == "call_module":
                self._names[n] = str(n.target)
            else:
                stack = n.meta.get("nn_module_stack")
                scope, fn = (list(stack.values())[-1][0] if stack else ""), fn_name(n)
                k = self._name_counts[(scope, fn)] = self._name_counts.get((scope, fn), 0) + 1
                fn = fn if k == 1 else f"{fn}_{k}"
                self._names[n] = f"{scope}.{fn}" if scope else fn
        return self._names[n]

    def _describe(self, n: fx.Node) -> str:
        if n.op == "call_module":
            mod = self.gm.get_submodule(str(n.target))
            return f"module `{n.target}` ({type(mod).__module__}.{type(mod).__name__})"
        stack = n.meta.get("nn_module_stack")
        where = f", in module `{list(stack.values())[-1][0]}`" if stack else ""
        target = n.target if n.op == "call_method" else getattr(n.target, "__qualname__", n.target)
        return f"{'method Tensor.' if n.op == 'call_method' else 'function '}{target} (graph node '{n.name}'{where})"

    def _refuse(self, n: fx.Node, why: str = "") -> ReceptiveFieldError:
        return ReceptiveFieldError(
            f"receptive_field: {self._describe(n)} is not supported{': ' + why if why else ''}. The tracer knows "
            f"{KNOWN}. If the op acts per pixel or only on channels, pass it in passthrough=[...] (a module "
            f"class, a module name or the function itself); otherwise analyse the part of the model before it "
            f"(method=...)"
        )

    def _does_not_run(self, n: fx.Node, why: str,
                      fix: str = "the input_size the model is built for") -> ReceptiveFieldError:
        return ReceptiveFieldError(
            f"receptive_field: {type(self.gm).__name__}.{self.method} does not run on an input of shape "
            f"{(1, *self.input_size)}: at {self._describe(n)}, {why}. Pass {fix}"
        )

    # ---- visiting -------------------------------------------------------------------------
    def _is_guard(self, n: fx.Node) -> bool:
        if n.op not in ("call_function", "call_method"):
            return False
        name = fn_name(n)
        return name.startswith(GUARD_PREFIX) or name in self.pass_names or any(n.target is f for f in self.pass_fns)

    def _visit(self, n: fx.Node) -> Any:
        if n.op == "placeholder":
            if self.geoms:  # further inputs keep their defaults
                return n.args[0] if n.args else None
            param = next(self.gm.parameters(), None)
            dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
            self.geoms[n], self.origin[n] = Geom((1, 1), (0, 0), (0, 0), self.input_size[1:]), "input"
            return torch.empty((1, *self.input_size), dtype=dtype, device="meta")
        if n.op == "get_attr":
            attr: Any = self.gm
            for part in str(n.target).split("."):
                attr = getattr(attr, part)
            return _meta(attr)
        args, kwargs = fx.node.map_arg((n.args, n.kwargs), self.values.__getitem__)
        if n.op == "output":
            first = next((a for a in n.all_input_nodes if a in self.geoms), None)
            self.output = make_row("output", "output", "output", self.geoms[first]) if first else None
            return args[0]
        src = next((a for a in n.all_input_nodes if a in self.geoms), None)
        if self._is_guard(n):
            # Guards validate the input; the analysis runs at sizes a fixed-size guard rejects, so they are skipped.
            if src is not None:
                self._pass(n, src)
            return next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if src is None or (n.op != "call_module" and fn_name(n) in QUERIES):  # sizes, shapes, constants
            if n.op == "call_module":
                raise self._refuse(n, "it does not act on the input")
            return self._call(n, args, kwargs)
        x = self.values[src]
        if n.op == "call_module":
            return self._module(n, self.gm.get_submodule(str(n.target)), src, x)
        return self._function(n, fn_name(n), src, x, args, kwargs)

    def _call(self, n: fx.Node, args: tuple, kwargs: dict) -> Any:
        """Run a function or method node on meta values (shapes only)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if n.op == "call_method":
                    return getattr(args[0], str(n.target))(*args[1:], **kwargs)
                return n.target(*args, **kwargs)  # type: ignore[operator]
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise self._does_not_run(n, f"{type(e).__name__}: {e}") from e

    def _pass(self, n: fx.Node, src: fx.Node) -> None:
        self.geoms[n], self.origin[n] = self.geoms[src], self.origin[src]

    def _emit(self, n: fx.Node, g: Geom, op: str, kind: str, note: str = "", **geometry: Any) -> None:
        self.geoms[n], self.origin[n] = g, self._layer(n)
        self.rows.append(make_row(self._layer(n), op, kind, g, note=note, **geometry))

    def _module(self, n: fx.Node, mod: nn.Module, src: fx.Node, x: torch.Tensor) -> Any:
        g = self.geoms[src]
        if isinstance(mod, ELEMENTWISE + drop_path_types() + self.pass_types) or str(n.target) in self.pass_names:
            self._pass(n, src)
            return x
        if type(mod) is nn.Conv2d:  # subclasses may pad in forward (timm's Conv2dSame): those are traced into
            return self._window(n, g, x, "conv", mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                weight=mod.weight, groups=mod.groups)
        if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            if getattr(mod, "return_indices", False):
                raise self._refuse(n, "return_indices=True")
            kind = "maxpool" if isinstance(mod, nn.MaxPool2d) else "avgpool"
            return self._window(n, g, x, kind, mod.kernel_size, mod.stride or mod.kernel_size, mod.padding,
                                getattr(mod, "dilation", 1), ceil_mode=mod.ceil_mode, module=mod)
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            if getattr(mod, "return_indices", False):
                raise self._refuse(n, "return_indices=True")
            value = self._call_module(n, mod, x)
            self._adaptive(n, g, "adaptive_avgpool" if isinstance(mod, nn.AdaptiveAvgPool2d) else "adaptive_maxpool",
                           value)
            return value
        if isinstance(mod, nn.Flatten):
            return self._flatten(n, src, g, self._call_module(n, mod, x))
        if isinstance(mod, nn.Linear):
            if not g.is_global:
                raise self._refuse(n, "a Linear layer on a feature map mixes its last (width) axis; flatten first")
            if x.shape[-1] != mod.in_features:
                raise self._does_not_run(n, f"a Linear layer for {mod.in_features} features gets {x.shape[-1]}")
            self._pass(n, src)
            return x.new_empty((*x.shape[:-1], mod.out_features))
        raise self._refuse(n)

    def _call_module(self, n: fx.Node, mod: nn.Module, x: torch.Tensor) -> Any:
        """Run a parameter-free module (pooling, flatten) on a meta tensor."""
        try:
            return mod(x)
        except RuntimeError as e:
            raise self._does_not_run(n, f"{type(e).__name__}: {e}") from e

    def _function(self, n: fx.Node, name: str, src: fx.Node, x: torch.Tensor, args: tuple, kwargs: dict) -> Any:
        g = self.geoms[src]
        if name in ("cat", "concat", "concatenate"):
            dim = bind("cat", args, kwargs)["dim"]
            if dim % x.dim() != 1:
                raise self._refuse(n, f"it concatenates along dim {dim}; only the channel dim (1) keeps geometry")
            return self._merge(n, self._call(n, args, kwargs), "cat")
        if name in MERGES or is_pointwise(name):
            return self._merge(n, self._call(n, args, kwargs), name)
        if name in LAYOUT:
            self._pass(n, src)
            return x
        if name in FLATTEN:
            return self._flatten(n, src, g, self._call(n, args, kwargs))
        if name in REDUCE:
            dims = bind("reduce", args, kwargs)["dim"]
            dims = range(x.dim()) if dims is None else dims if isinstance(dims, (tuple, list)) else (dims,)
            value = self._call(n, args, kwargs)
            if {d % x.dim() for d in dims} & {x.dim() - 2, x.dim() - 1}:
                self._global(n, src, g, f"{name} over H, W", "reduce")
            else:
                self._pass(n, src)  # over channels: per pixel
            return value
        if name == "conv2d":
            b = bind("conv2d", args, kwargs)
            return self._window(n, g, x, "conv", tuple(b["weight"].shape[-2:]), b["stride"], b["padding"],
                                b["dilation"], weight=b["weight"], groups=b["groups"])
        if name in ("max_pool2d", "avg_pool2d"):
            b = bind(name, args, kwargs)
            if b.get("return_indices"):
                raise self._refuse(n, "return_indices=True")
            stride = b["stride"] if b["stride"] not in (None, (), []) else b["kernel_size"]
            return self._window(n, g, x, name.replace("_pool2d", "pool"), b["kernel_size"], stride, b["padding"],
                                b.get("dilation", 1), ceil_mode=b["ceil_mode"], call=(args, kwargs))
        if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
            value = self._call(n, args, kwargs)
            if not isinstance(value, torch.Tensor):
                raise self._refuse(n, "return_indices=True")
            self._adaptive(n, g, name.replace("_pool2d", "pool"), value)
            return value
        if name == "pad":
            if any(int(p) != 0 for p in tuple(bind("pad", args, kwargs)["pad"])[:4]):
                raise self._refuse(n, "it pads H or W; pad in the Conv2d or pooling layer (padding=...) instead")
            self._pass(n, src)  # channels only
            return self._call(n, args, kwargs)
        if name == "max_pool2d_with_indices":
            raise self._refuse(n, "return_indices=True")
        if name == "getitem":
            raise self._refuse(n, "indexing or slicing a feature map; subsample with F.avg_pool2d(x, 1, stride)")
        raise self._refuse(n)

    # ---- the rules ------------------------------------------------------------------------
    def _window(self, n: fx.Node, g: Geom, x: torch.Tensor, kind: str, kernel: Any, stride: Any, padding: Any,
                dilation: Any, *, ceil_mode: bool = False, weight: Optional[torch.Tensor] = None, groups: int = 1,
                module: Optional[nn.Module] = None, call: Optional[tuple] = None) -> torch.Tensor:
        """A convolution or pooling: its output by torch on meta tensors, its geometry by `window`."""
        kernel, stride, dilation = pair(kernel), pair(stride), pair(dilation)
        if padding == "same":  # torch puts the odd pixel of an even total padding after the input
            before = tuple((dilation[a] * (kernel[a] - 1)) // 2 for a in range(2))
        else:
            before = (0, 0) if padding == "valid" else pair(padding)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if any(size[a] + 2 * before[a] < dilation[a] * (kernel[a] - 1) + 1 for a in range(2)):
            what = "convolution" if kind == "conv" else kind.replace("pool", " pooling")
            raise self._does_not_run(n, f"its {size[0]}x{size[1]} input is too small for a {kernel[0]}x{kernel[1]} "
                                        f"{what} with padding {fmt(collapse(before), 'x')}", "a larger input_size")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # padding='same' with an even kernel warns
                if kind == "conv":
                    w = torch.empty(tuple(weight.shape), dtype=x.dtype, device="meta")  # type: ignore[union-attr]
                    value = torch.nn.functional.conv2d(x, w, None, stride, padding, dilation, groups)
                elif module is not None:
                    value = module(x)
                else:
                    value = n.target(*call[0], **call[1])  # type: ignore[index,operator]
        except RuntimeError as e:
            raise self._does_not_run(n, f"{type(e).__name__}: {e}") from e
        op = f"{kernel[0]}×{kernel[1]} {kind}" + (f", dilation {fmt(collapse(dilation))}" if dilation != (1, 1) else "")
        self._emit(n, window(g, kernel, stride, before, dilation, (int(value.shape[-2]), int(value.shape[-1]))),
                   op, kind, kernel=kernel, stride=stride, padding=before, dilation=dilation)
        return value

    def _adaptive(self, n: fx.Node, g: Geom, kind: str, value: torch.Tensor) -> None:
        size = (int(value.shape[-2]), int(value.shape[-1]))
        if any(g.size[a] % size[a] for a in range(2)):
            raise self._refuse(
                n, f"adaptive pooling from {g.size} to {size} uses windows of unequal size and position, so its "
                   f"units have no common receptive field; pool to a divisor of the input size or to 1")
        kernel = (g.size[0] // size[0], g.size[1] // size[1])
        ge = window(g, kernel, kernel, (0, 0), (1, 1), size)
        if size == (1, 1) and not g.is_global:
            ge, op = replace(ge, is_global=True), f"global {kind.replace('adaptive_', '')}"
        else:
            op = f"{kind.replace('_', ' ')} to {size[0]}×{size[1]}"
        self._emit(n, ge, op, kind, kernel=kernel, stride=kernel, padding=(0, 0), dilation=(1, 1))

    def _global(self, n: fx.Node, src: fx.Node, g: Geom, op: str, kind: str) -> None:
        """An op over the whole feature map: every output unit sees the hull of all input units' windows."""
        if g.is_global:
            return self._pass(n, src)
        ge = replace(window(g, g.size, g.size, (0, 0), (1, 1), (1, 1)), is_global=True)
        self._emit(n, ge, op, kind, kernel=g.size, stride=g.size, padding=(0, 0), dilation=(1, 1))

    def _flatten(self, n: fx.Node, src: fx.Node, g: Geom, value: Any) -> Any:
        if g.is_global:
            self._pass(n, src)
        elif isinstance(value, torch.Tensor) and value.dim() <= 2:
            # The feature map's positions became features: every later unit may see all of them.
            self._global(n, src, g, "flatten", "flatten")
        else:
            raise self._refuse(n, f"it reshapes a feature map to {tuple(value.shape)}; only (N, features) is known")
        return value

    def _merge(self, n: fx.Node, value: Any, name: str) -> Any:
        operands = [a for a in n.all_input_nodes if a in self.geoms]
        if len(operands) == 1:  # one tensor that depends on the input, with scalars or constants: per pixel
            self._pass(n, operands[0])
            return value
        geoms = [self.geoms[a] for a in operands]
        size = (int(value.shape[-2]), int(value.shape[-1]))
        start = tuple(min(g.start[a] for g in geoms) for a in range(2))
        end = tuple(max(g.end[a] for g in geoms) for a in range(2))
        note = ""
        if any(g.is_global for g in geoms):
            # A gate computed from the whole image (squeeze-excitation): every unit sees all of it.
            merged = Geom(max(geoms, key=lambda g: g.rf).jump, start, end, size, is_global=True)  # type: ignore[arg-type]
        else:
            ref = geoms[0]
            for a_node, g in zip(operands[1:], geoms[1:]):
                if g.jump != ref.jump:
                    raise self._misaligned(n, operands[0], ref, a_node, g, "jump")
                shift = ((g.start[0] + g.end[0] - ref.start[0] - ref.end[0]) / 2,
                         (g.start[1] + g.end[1] - ref.start[1] - ref.end[1]) / 2)
                if shift != (0, 0):
                    if self.strict:
                        raise self._misaligned(n, operands[0], ref, a_node, g, "centre")
                    self.aligned = False
                    note = f"misaligned by {fmt(collapse(shift), ', ')} px; hull"
            merged = Geom(ref.jump, start, end, size)  # type: ignore[arg-type]
        self._emit(n, merged, f"{name} ({len(operands)} paths)", "merge", note=note)
        return value

    def _misaligned(self, n: fx.Node, a_node: fx.Node, ga: Geom, b_node: fx.Node, gb: Geom,
                    what: str) -> ReceptiveFieldAlignmentError:
        def path(i: int, node: fx.Node, g: Geom) -> str:
            return (f"path {i} (last spatial op `{self.origin[node]}`): jump {fmt(collapse(g.jump))}, centre "
                    f"{fmt(collapse(g.centre), ', ')}, rf {fmt(g.rf)}")

        if what == "jump":
            why = (f"their jumps differ ({fmt(collapse(ga.jump))} vs {fmt(collapse(gb.jump))}), so neighbouring "
                   f"output units step through the input at different rates")
        else:
            d = (gb.centre[0] - ga.centre[0], gb.centre[1] - ga.centre[1])
            why = (f"their centres differ by {fmt(collapse(d), ', ')} input pixels, so every merged unit adds "
                   f"features of windows shifted against each other (typical cause: a shortcut that subsamples "
                   f"with a 1x1 stride-2 op while the main path pools with an even 2x2 window, which moves the "
                   f"centre by half a step)")
        return ReceptiveFieldAlignmentError(
            f"receptive_field: the paths merged at `{self._layer(n)}` are not aligned. P{path(1, a_node, ga)[1:]}; "
            f"{path(2, b_node, gb)} (input pixels of output unit 0). A receptive field is one number only when all "
            f"merged paths look at windows with the same stride and centre; {why}. Align the paths in the model "
            f"(e.g. an AvgPool2d(2) shortcut next to a 2x2 pooling main path), or call receptive_field(..., "
            f"strict=False) to get the hull of all paths."
        )
