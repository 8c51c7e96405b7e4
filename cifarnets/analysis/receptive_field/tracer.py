"""The torch.fx tracer: runs a model's graph on fake tensors and propagates geometry.

`receptive_field` traces the model with `torch.fx` symbolic tracing (not the order in which
forward hooks fire, which says nothing about how paths branch and merge), then a
`GeometryInterpreter` runs the graph on fake tensors (shapes only) and applies the rule of
every op to the `~.geometry.Geom` of its inputs. Where paths merge (``+``, ``torch.cat``,
``*``) it checks that they are aligned. The interpreter also records how each node acts
(`Action`), which `gradient_check` uses to build its linear copy of the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional, Union

import torch
import torch.fx as fx
import torch.nn as nn

from ..._utils import preserved_mode
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

__all__ = [
    "GUARD_PREFIX", "Action", "GeometryInterpreter", "Passthrough", "analyse", "check_input_size",
    "receptive_field", "trace",
]

Passthrough = Union[str, type, Callable[..., Any]]
"""An extra per-pixel op: a module class, a qualified module name, or a function."""

GUARD_PREFIX = "check_"
"""Calls to functions whose name starts with this are input guards: they return their
input (or ``None``) and are neither executed nor counted by the analysis. The zoo's
`cifarnets.layers.check_input` is one, registered with `torch.fx.wrap` so it stays a
single call in the graph."""



# --------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------

_NORMS: tuple[type, ...] = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d,
)
# Per-pixel (or per-channel) modules: the receptive field passes through them unchanged.
# Normalisation statistics are ignored, as is usual for receptive fields (eval-mode batch
# norm has none; the zoo's DetachedBatchNorm2d subclasses BatchNorm2d).
_PASS_MODULES: tuple[type, ...] = _NORMS + (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Hardshrink, nn.Softshrink,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.ChannelShuffle,
)
_PAD_MODULES: tuple[type, ...] = (
    nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.CircularPad2d,
)
_CHANNEL_DIM_MODULES: tuple[type, ...] = (nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d)

# Function and method names (torch.*, F.*, Tensor.*) that act per pixel but that aten does
# not tag pointwise; everything aten tags `pointwise` is recognised automatically.
_EXTRA_POINTWISE = frozenset({
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "hardswish",
    "log_sigmoid", "logsigmoid", "softsign", "tanhshrink", "hardshrink", "softshrink", "threshold", "rrelu",
    "batch_norm", "instance_norm", "group_norm", "local_response_norm", "identity",
})
# Calls that return their first tensor with the same layout (dtype, device, memory).
_SAME_LAYOUT = frozenset({
    "contiguous", "clone", "detach", "to", "float", "double", "half", "bfloat16", "type", "type_as", "cpu",
    "cuda", "requires_grad_", "detach_",
})
_MERGE_NAMES = frozenset({"add", "iadd", "sub", "isub", "rsub", "mul", "imul", "truediv", "itruediv", "div",
                          "floordiv", "maximum", "minimum", "where", "add_", "sub_", "mul_", "div_"})
_CAT_NAMES = frozenset({"cat", "concat", "concatenate"})
_RESHAPE_NAMES = frozenset({"flatten", "view", "reshape", "squeeze", "unsqueeze", "unflatten", "view_as",
                            "reshape_as", "expand", "expand_as"})
_REDUCE_NAMES = frozenset({"mean", "sum", "amax", "amin", "logsumexp", "std", "var", "nanmean", "nansum"})
_SPLIT_NAMES = frozenset({"split", "chunk", "tensor_split", "unbind", "split_with_sizes"})
_CHANNEL_DIM_NAMES = frozenset({"softmax", "log_softmax", "softmin", "normalize"})

# Positional parameter names of the functional ops whose arguments the tracer reads.
_SIGNATURES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "conv2d": (("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
               dict(bias=None, stride=1, padding=0, dilation=1, groups=1)),
    "max_pool2d": (("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                   dict(stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False)),
    "max_pool2d_with_indices": (("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                 "return_indices"),
                                dict(stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=True)),
    "avg_pool2d": (("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                    "divisor_override"),
                   dict(stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None)),
    "lp_pool2d": (("input", "norm_type", "kernel_size", "stride", "ceil_mode"), dict(stride=None, ceil_mode=False)),
    "adaptive_avg_pool2d": (("input", "output_size"), {}),
    "adaptive_max_pool2d": (("input", "output_size", "return_indices"), dict(return_indices=False)),
    "pad": (("input", "pad", "mode", "value"), dict(mode="constant", value=None)),
    "cat": (("tensors", "dim"), dict(dim=0)),
    "flatten": (("input", "start_dim", "end_dim"), dict(start_dim=0, end_dim=-1)),
    "reduce": (("input", "dim", "keepdim"), dict(dim=None, keepdim=False)),
    "channel_dim": (("input", "dim"), dict(dim=None)),
    "split": (("tensor", "split_size_or_sections", "dim"), dict(dim=0)),
    "unbind": (("input", "dim"), dict(dim=0)),
}


def _bind(sig: str, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    names, defaults = _SIGNATURES[sig]
    out = dict(defaults)
    out.update(zip(names, args))
    out.update(kwargs)
    return out


def _fn_name(n: fx.Node) -> str:
    if n.op == "call_method":
        return str(n.target)
    name = getattr(n.target, "__name__", None) or str(n.target)
    return name


def _is_pointwise_name(name: str) -> bool:
    if name in _EXTRA_POINTWISE:
        return True
    base = name.rstrip("_") if name.endswith("_") and not name.startswith("_") else name
    if base in _EXTRA_POINTWISE:
        return True
    packet = getattr(torch.ops.aten, base, None)
    if packet is None or not hasattr(packet, "overloads"):
        return False
    try:
        return any(torch.Tag.pointwise in getattr(packet, o).tags for o in packet.overloads())
    except (AttributeError, RuntimeError):
        return False


class _Tracer(fx.Tracer):
    """fx tracer that keeps normalisation layers and user pass-throughs as leaves.

    Norm layers defined outside torch.nn (the zoo's DetachedBatchNorm2d, timm's) would
    otherwise be traced into, and their statistics code looks like spatial reductions.
    """

    def __init__(self, leaf_types: tuple[type, ...], leaf_names: frozenset[str]) -> None:
        super().__init__()
        self._leaf_types = leaf_types
        self._leaf_names = leaf_names

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _NORMS + self._leaf_types) or module_qualified_name in self._leaf_names:
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _split_passthrough(passthrough: Iterable[Passthrough]) -> tuple[tuple[type, ...], frozenset[str], tuple[Any, ...]]:
    types, names, fns = [], [], []
    for p in passthrough:
        if isinstance(p, type):
            types.append(p)
        elif isinstance(p, str):
            names.append(p)
        elif callable(p):
            fns.append(p)
        else:
            raise TypeError(f"passthrough entries are module classes, names or functions; got {p!r}")
    return tuple(types), frozenset(names), tuple(fns)


def trace(model: nn.Module, method: str, passthrough: Iterable[Passthrough]) -> fx.GraphModule:
    """`model`'s `method` as an fx graph, norm layers and pass-throughs kept as leaves."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"receptive_field expects an nn.Module, got {type(model).__name__}")
    if not callable(getattr(type(model), method, None)):
        raise ReceptiveFieldError(
            f"{type(model).__name__} has no method {method!r} to trace; use method='forward' or the name of "
            f"the method that computes the feature map (timm-style models: 'forward_features')"
        )
    types, names, _ = _split_passthrough(passthrough)
    tracer = _Tracer(types, names)
    tracer.traced_func_name = method
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, AssertionError, ... from user code
        raise ReceptiveFieldError(
            f"torch.fx could not trace {type(model).__name__}.{method}: {type(e).__name__}: {e}. "
            f"Python control flow on tensor values or shapes cannot be traced; move input checks into a "
            f"function whose name starts with {GUARD_PREFIX!r} and register it with torch.fx.wrap, or pass "
            f"the offending module class in passthrough=[...] if it acts per pixel"
        ) from e
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


# --------------------------------------------------------------------------------------
# The interpreter: runs the graph on fake tensors and propagates geometry
# --------------------------------------------------------------------------------------


@dataclass
class Action:
    """How a node acts on geometry, kept for `gradient_receptive_field`'s rewrite."""

    kind: str  # window, adaptive, global, pad, slice, merge, pass_value, pass_struct
    params: dict[str, Any]


def _flat_geoms(obj: Any) -> list[Geom]:
    out: list[Geom] = []

    def visit(o: Any) -> None:
        if isinstance(o, Geom):
            out.append(o)
        elif isinstance(o, (tuple, list)):
            for x in o:
                visit(x)
        elif isinstance(o, dict):
            for x in o.values():
                visit(x)

    visit(obj)
    return out


def _conv_output_shape(conv: nn.Conv2d, shape: Sequence[int]) -> tuple[int, ...]:
    """``(N, C_out, H_out, W_out)`` of `conv` on an input of `shape` (torch.nn.Conv2d docs)."""
    out = []
    for a in range(2):
        n, k, s, d = shape[-2 + a], conv.kernel_size[a], conv.stride[a], conv.dilation[a]
        if conv.padding == "same":
            out.append(n)
            continue
        p = 0 if isinstance(conv.padding, str) else conv.padding[a]  # 'valid'; 'same' returned above
        size = (n + 2 * p - d * (k - 1) - 1) // s + 1
        if size < 1:
            raise ReceptiveFieldError(
                f"the input is too small for a {k}x{k} convolution with padding {p}: {tuple(shape)} gives no output"
            )
        out.append(size)
    return (*shape[:-3], conv.out_channels, out[0], out[1])


def _is_tensor_like(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    return isinstance(v, (tuple, list)) and len(v) > 0 and all(isinstance(x, torch.Tensor) for x in v)


def _spatial(v: torch.Tensor, what: str) -> tuple[int, int]:
    if v.dim() < 3:
        raise ReceptiveFieldError(f"{what} returned a {v.dim()}-D tensor where a feature map was expected")
    return (int(v.shape[-2]), int(v.shape[-1]))


class GeometryInterpreter(fx.Interpreter):
    """Runs a traced graph on fake tensors, giving every tensor its `Geom` and every spatial op a row."""

    def __init__(self, gm: fx.GraphModule, strict: bool, passthrough: Iterable[Passthrough]) -> None:
        super().__init__(gm)
        # Our errors already name the node; fx's "While executing ..." suffix would bury them.
        self.extra_traceback = False
        self.strict = strict
        self.pass_types, self.pass_names, self.pass_fns = _split_passthrough(passthrough)
        self.geoms: dict[fx.Node, Any] = {}
        self.origin: dict[fx.Node, str] = {}
        self.actions: dict[str, Action] = {}
        self.rows: list[ReceptiveFieldRow] = []
        self.scopes: dict[str, ReceptiveFieldRow] = {}
        self.aligned = True
        self.output_row: Optional[ReceptiveFieldRow] = None
        self._placeholder_seen = False
        self._scope_counts: dict[tuple[str, str], int] = {}
        self._layer_names: dict[fx.Node, str] = {}
        self.tuple_nodes: set[str] = set()

    # ---- naming -----------------------------------------------------------------------
    def _scope(self, n: fx.Node) -> str:
        stack = n.meta.get("nn_module_stack")
        if stack:
            return list(stack.values())[-1][0]
        return ""

    def _layer(self, n: fx.Node) -> str:
        if n in self._layer_names:
            return self._layer_names[n]
        if n.op == "call_module":
            name = str(n.target)
        else:
            scope = self._scope(n)
            fn = _fn_name(n)
            k = self._scope_counts.get((scope, fn), 0) + 1
            self._scope_counts[(scope, fn)] = k
            fn = fn if k == 1 else f"{fn}_{k}"
            name = f"{scope}.{fn}" if scope else fn
        self._layer_names[n] = name
        return name

    def _describe(self, n: fx.Node) -> str:
        if n.op == "call_module":
            mod = self.module.get_submodule(str(n.target))
            return f"module `{n.target}` ({type(mod).__module__}.{type(mod).__name__})"
        where = self._scope(n)
        target = n.target if n.op == "call_method" else getattr(n.target, "__qualname__", n.target)
        kind = "method Tensor." if n.op == "call_method" else "function "
        return f"{kind}{target} (graph node '{n.name}'{', in module `' + where + '`' if where else ''})"

    # ---- execution ----------------------------------------------------------------------
    def _is_guard(self, n: fx.Node) -> bool:
        if n.op not in ("call_function", "call_method"):
            return False
        name = _fn_name(n)
        if name.startswith(GUARD_PREFIX) or name in self.pass_names:
            return True
        return n.op == "call_function" and any(n.target is f for f in self.pass_fns)

    def run_node(self, n: fx.Node) -> Any:
        if self._is_guard(n):
            # Guards validate the input; the analysis needs no validation (and runs at sizes a
            # fixed-head model rejects), so they return their first tensor argument unexecuted.
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            value = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
            src = next((a for a in n.all_input_nodes if isinstance(self.geoms.get(a), Geom)), None)
            if src is not None:
                self.geoms[n] = self.geoms[src]
                self.origin[n] = self.origin[src]
                self.actions[n.name] = Action("pass_value", {"src": src.name})
            return value
        mod = self.module.get_submodule(str(n.target)) if n.op == "call_module" else None
        if isinstance(mod, _PASS_MODULES + self.pass_types) or (mod is not None and n.target in self.pass_names):
            # Per-pixel layers keep the shape; not running them on fake tensors saves most of the time
            # (fake batch norm alone costs more than a real convolution at CIFAR size), and user
            # pass-throughs may branch on values, which fake tensors do not have.
            args, _ = self.fetch_args_kwargs_from_env(n)
            value = args[0]
        elif type(mod) is nn.Conv2d:
            # The same for convolutions (~4 ms each through fake-tensor dispatch): torch's output-size rule.
            args, _ = self.fetch_args_kwargs_from_env(n)
            value = args[0].new_empty(_conv_output_shape(mod, args[0].shape))
        else:
            value = super().run_node(n)
        if _is_tensor_like(value) and not isinstance(value, torch.Tensor):
            self.tuple_nodes.add(n.name)
        self._propagate(n, value)
        geom = self.geoms.get(n)
        if isinstance(geom, Geom) and n.op != "placeholder":
            for path, mod_type in (n.meta.get("nn_module_stack") or {}).values():
                self.scopes[path] = self._scope_row(path, mod_type, geom)
            self.scopes[""] = self._scope_row("", type(self.module), geom)
        return value

    def _scope_row(self, path: str, mod_type: Any, g: Geom) -> ReceptiveFieldRow:
        op = f"output of {getattr(mod_type, '__name__', mod_type)}" if path else "output"
        return make_row(path or "output", op, "output", g)

    # ---- geometry rules -----------------------------------------------------------------
    def _emit(self, n: fx.Node, g: Geom, op: str, kind: str, action: Action, **geometry: Any) -> None:
        note = geometry.pop("note", "")
        layer = self._layer(n)
        self.geoms[n] = g
        self.origin[n] = layer
        self.actions[n.name] = action
        self.rows.append(make_row(layer, op, kind, g, note=note, **geometry))

    def _pass(self, n: fx.Node, src: fx.Node, value_changing: bool = True) -> None:
        self.geoms[n] = self.geoms[src]
        self.origin[n] = self.origin.get(src, "input")
        self.actions[n.name] = Action("pass_value" if value_changing else "pass_struct", {"src": src.name})

    def _first_geom_node(self, n: fx.Node) -> Optional[fx.Node]:
        return next((a for a in n.all_input_nodes if isinstance(self.geoms.get(a), Geom)), None)

    def _unknown(self, n: fx.Node, why: str = "") -> ReceptiveFieldError:
        return ReceptiveFieldError(
            f"receptive_field: don't know how {self._describe(n)} changes the spatial geometry of its "
            f"input{': ' + why if why else ''}. If it acts per pixel or only on channels, pass it in "
            f"passthrough=[...] (a module class, a module name or the function itself); if it is a spatial op "
            f"(upsampling, transposed or 1-D/3-D convolution, attention), this tracer cannot give it a receptive "
            f"field - analyse the part of the model before it (method=...)"
        )

    def _propagate(self, n: fx.Node, value: Any) -> None:
        if n.op == "placeholder":
            if not self._placeholder_seen and isinstance(value, torch.Tensor):
                self._placeholder_seen = True
                size = _spatial(value, "the input")
                self.geoms[n] = Geom((1, 1), (0, 0), (0, 0), size)
                self.origin[n] = "input"
            return
        if n.op == "output":
            first = _flat_geoms(fx.node.map_arg(n.args, lambda a: self.geoms.get(a)))
            if first:
                self.output_row = make_row("output", "output", "output", first[0])
            return
        if n.op == "get_attr":
            return
        in_geoms = _flat_geoms(fx.node.map_arg((n.args, n.kwargs), lambda a: self.geoms.get(a)))
        if not in_geoms or not _is_tensor_like(value):
            return  # constants, sizes, shapes: no geometry
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        if n.op == "call_module":
            self._module_rule(n, self.module.get_submodule(str(n.target)), value)
        else:
            self._function_rule(n, _fn_name(n), args, kwargs, value)

    def _module_rule(self, n: fx.Node, mod: nn.Module, value: Any) -> None:
        src = self._first_geom_node(n)
        assert src is not None
        g: Geom = self.geoms[src]
        if isinstance(mod, _PASS_MODULES + self.pass_types) or str(n.target) in self.pass_names:
            return self._pass(n, src)
        if isinstance(mod, _CHANNEL_DIM_MODULES):
            dim = getattr(mod, "dim", 1)
            if isinstance(mod, nn.Softmax2d) or dim in (1, -3) or (dim is None and value.dim() == 4):
                return self._pass(n, src)
            raise self._unknown(n, f"it normalises over dim {dim}, not the channel dim")
        if isinstance(mod, (nn.Flatten, nn.Unflatten)):
            return self._reshape(n, src, g, value)
        if isinstance(mod, nn.Linear):
            if g.is_global:
                return self._pass(n, src)
            raise self._unknown(n, "a Linear layer on a feature map mixes its last (width) axis; flatten first")
        size = _spatial(value, self._describe(n))
        if isinstance(mod, nn.Conv2d):
            return self._conv(n, g, mod.kernel_size, mod.stride, mod.padding, mod.dilation, size,
                              padding_mode=mod.padding_mode)
        if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d)):
            kind = "maxpool" if isinstance(mod, nn.MaxPool2d) else "avgpool" if isinstance(mod, nn.AvgPool2d) \
                else "lppool"
            stride = mod.stride if mod.stride is not None else mod.kernel_size
            return self._pool(n, g, kind, mod.kernel_size, stride, getattr(mod, "padding", 0),
                              getattr(mod, "dilation", 1), getattr(mod, "ceil_mode", False), size,
                              norm_type=getattr(mod, "norm_type", None))
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            kind = "adaptive_avgpool" if isinstance(mod, nn.AdaptiveAvgPool2d) else "adaptive_maxpool"
            return self._adaptive(n, g, kind, size)
        if isinstance(mod, _PAD_MODULES):
            left, right, top, bottom = tuple(mod.padding)  # type: ignore[arg-type]
            mode = {nn.ZeroPad2d: "constant", nn.ConstantPad2d: "constant", nn.ReflectionPad2d: "reflect",
                    nn.ReplicationPad2d: "replicate", nn.CircularPad2d: "circular"}.get(type(mod), "constant")
            return self._pad(n, src, g, (left, right, top, bottom), mode, getattr(mod, "value", 0.0), size)
        raise self._unknown(n)

    def _function_rule(self, n: fx.Node, name: str, args: tuple, kwargs: dict, value: Any) -> None:
        if name == "getitem":
            return self._getitem(n, args, value)
        src = self._first_geom_node(n)
        assert src is not None
        g: Geom = self.geoms[src]
        if name in _CAT_NAMES:
            dim = _bind("cat", args, kwargs)["dim"]
            nd = value.dim()
            if nd < 3 or dim % nd != 1:
                raise self._unknown(n, f"it concatenates along dim {dim}; only the channel dim (1) keeps geometry")
            return self._merge(n, value, "cat")
        if name in _MERGE_NAMES or _is_pointwise_name(name):
            return self._merge(n, value, name)
        if name in _SAME_LAYOUT:
            return self._pass(n, src, value_changing=False)
        if name in _RESHAPE_NAMES:
            return self._reshape(n, src, g, value)
        if name in _REDUCE_NAMES:
            b = _bind("reduce", args, kwargs)
            nd = args[0].dim()
            dims = b["dim"]
            dims = tuple(range(nd)) if dims is None else (dims if isinstance(dims, (tuple, list)) else (dims,))
            dims = {d % nd for d in dims}
            if dims & {nd - 2, nd - 1}:
                return self._global(n, src, g, value, "reduce", f"{name} over H, W")
            return self._pass(n, src)
        if name in _CHANNEL_DIM_NAMES:
            dim = _bind("channel_dim", args, kwargs)["dim"]
            if dim is None and name == "normalize":
                dim = 1
            if dim is not None and dim % args[0].dim() == 1:
                return self._pass(n, src)
            raise self._unknown(n, f"it normalises over dim {dim}, not the channel dim")
        if name in _SPLIT_NAMES:
            b = _bind("unbind" if name == "unbind" else "split", args, kwargs)
            dim = b["dim"] % args[0].dim()
            if dim in (args[0].dim() - 2, args[0].dim() - 1):
                raise self._unknown(n, "it splits a spatial axis")
            self.geoms[n] = tuple(g for _ in value)
            self.origin[n] = self.origin[src]
            self.actions[n.name] = Action("pass_struct", {"src": src.name})
            return
        if name == "conv2d":
            b = _bind("conv2d", args, kwargs)
            k = tuple(b["weight"].shape[-2:])
            return self._conv(n, g, k, b["stride"], b["padding"], b["dilation"], _spatial(value, name),
                              groups=b["groups"])
        if name in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "lp_pool2d"):
            sig = name
            b = _bind(sig, args, kwargs)
            kind = {"max_pool2d": "maxpool", "max_pool2d_with_indices": "maxpool", "avg_pool2d": "avgpool",
                    "lp_pool2d": "lppool"}[name]
            stride = b["stride"] if b["stride"] not in (None, (), []) else b["kernel_size"]
            out = value[0] if isinstance(value, (tuple, list)) else value
            self._pool(n, g, kind, b["kernel_size"], stride, b.get("padding", 0), b.get("dilation", 1),
                       b["ceil_mode"], _spatial(out, name), norm_type=b.get("norm_type"))
            if isinstance(value, (tuple, list)):
                self.geoms[n] = tuple(self.geoms[n] for _ in value)
            return
        if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
            out = value[0] if isinstance(value, (tuple, list)) else value
            kind = "adaptive_avgpool" if name == "adaptive_avg_pool2d" else "adaptive_maxpool"
            self._adaptive(n, g, kind, _spatial(out, name))
            if isinstance(value, (tuple, list)):
                self.geoms[n] = tuple(self.geoms[n] for _ in value)
            return
        if name == "pad":
            b = _bind("pad", args, kwargs)
            pad = [int(p) for p in b["pad"]]
            pad += [0] * (4 - len(pad)) if len(pad) < 4 else []
            value_ = b["value"] if b["value"] is not None else 0.0
            return self._pad(n, src, g, tuple(pad[:4]), b["mode"], value_, _spatial(value, name),
                             channel_pad=tuple(pad[4:]))
        raise self._unknown(n)

    # ---- individual ops --------------------------------------------------------------------
    def _conv(self, n, g, kernel, stride, padding, dilation, size, padding_mode="zeros", groups=1) -> None:
        kernel, stride, dilation = pair(kernel), pair(stride), pair(dilation)
        if isinstance(padding, str):
            if padding == "valid":
                before = (0, 0)
            elif padding == "same":
                # torch puts the odd pixel of an even total padding after the input (at the end).
                before = tuple((dilation[a] * (kernel[a] - 1)) // 2 for a in range(2))
            else:
                raise self._unknown(n, f"padding={padding!r}")
        else:
            before = pair(padding)
        ge = window(g, kernel, stride, before, dilation, size)
        op = f"{kernel[0]}×{kernel[1]} conv"
        if dilation != (1, 1):
            op += f", dilation {fmt(collapse(dilation))}"
        action = Action("window", dict(op="conv", kernel=kernel, stride=stride, padding=padding, before=before,
                                        dilation=dilation, padding_mode=padding_mode, groups=groups))
        self._emit(n, ge, op, "conv", action, kernel=kernel, stride=stride, padding=before, dilation=dilation)

    def _pool(self, n, g, kind, kernel, stride, padding, dilation, ceil_mode, size, norm_type=None) -> None:
        kernel, stride, padding, dilation = pair(kernel), pair(stride), pair(padding), pair(dilation)
        ge = window(g, kernel, stride, padding, dilation, size)
        op = f"{kernel[0]}×{kernel[1]} {kind}"
        action = Action("window", dict(op=kind, kernel=kernel, stride=stride, padding=padding, before=padding,
                                        dilation=dilation, ceil_mode=bool(ceil_mode), norm_type=norm_type))
        self._emit(n, ge, op, kind, action, kernel=kernel, stride=stride, padding=padding, dilation=dilation)

    def _adaptive(self, n, g, kind, size) -> None:
        kernel = []
        for a in range(2):
            i, o = g.size[a], size[a]
            if o == 1:
                kernel.append(i)
            elif i % o == 0:
                kernel.append(i // o)
            else:
                raise self._unknown(
                    n, f"adaptive pooling from {g.size} to {size} uses windows of unequal size and position "
                       f"({i} is not a multiple of {o}), so its units have no common receptive field; pool to a "
                       f"divisor of the input size or to 1"
                )
        kernel_t = (kernel[0], kernel[1])
        if size == (1, 1) and not g.is_global:
            ge = replace(window(g, kernel_t, kernel_t, (0, 0), (1, 1), size), is_global=True)
            op = f"global {kind.replace('adaptive_', '')}"
        else:
            ge = window(g, kernel_t, kernel_t, (0, 0), (1, 1), size)
            op = f"{kind.replace('_', ' ')} to {size[0]}×{size[1]}"
        action = Action("adaptive", dict(op=kind, output_size=size))
        self._emit(n, ge, op, kind, action, kernel=kernel_t, stride=kernel_t, padding=(0, 0), dilation=(1, 1))

    def _global(self, n, src, g, value, kind, op) -> None:
        if g.is_global:
            return self._pass(n, src)
        ge = replace(window(g, g.size, g.size, (0, 0), (1, 1), (1, 1)), is_global=True)
        action = Action("global", {"src": src.name})
        self._emit(n, ge, op, kind, action, kernel=g.size, stride=g.size, padding=(0, 0), dilation=(1, 1))

    def _pad(self, n, src, g, pad4, mode, value, size, channel_pad=()) -> None:
        left, right, top, bottom = pad4
        if (left, right, top, bottom) == (0, 0, 0, 0):
            return self._pass(n, src, value_changing=False)
        before = (top, left)
        ge = window(g, (1, 1), (1, 1), before, (1, 1), size)
        op = "pad" if min(pad4) >= 0 else "crop" if max(pad4) <= 0 else "pad/crop"
        if mode != "constant":
            op += f" ({mode})"
        action = Action("pad", dict(pad=(left, right, top, bottom), mode=mode, value=value, channel_pad=channel_pad))
        self._emit(n, ge, op, "pad", action, kernel=(1, 1), stride=(1, 1), padding=before, dilation=(1, 1))

    def _reshape(self, n, src, g, value) -> None:
        x = self.env[src] if src in self.env else None
        if g.is_global:
            return self._pass(n, src, value_changing=False)
        if isinstance(value, torch.Tensor) and value.dim() >= 3 and x is not None and \
                tuple(value.shape[-2:]) == tuple(x.shape[-2:]) and value.shape[0] == x.shape[0]:
            return self._pass(n, src, value_changing=False)  # channel-only reshape (e.g. channel shuffle)
        if isinstance(value, torch.Tensor) and value.dim() <= 2:
            # The feature map's positions became features: every later unit may see all of them.
            return self._global(n, src, g, value, "flatten", "flatten")
        raise self._unknown(n, f"it reshapes {tuple(x.shape) if x is not None else '?'} to {tuple(value.shape)}")

    def _getitem(self, n: fx.Node, args: tuple, value: Any) -> None:
        container, index = n.args[0], args[1]
        if not isinstance(container, fx.Node):
            return
        cg = self.geoms.get(container)
        if isinstance(cg, tuple):  # an element of split/chunk/max_pool(return_indices)
            self.geoms[n] = cg[index]
            self.origin[n] = self.origin.get(container, "input")
            self.actions[n.name] = Action("pass_struct", {"src": container.name, "getitem": True})
            return
        if not isinstance(cg, Geom):
            return
        x = args[0]
        idx = index if isinstance(index, tuple) else (index,)
        if any(i is None or isinstance(i, (torch.Tensor, list)) for i in idx) or \
                sum(1 for i in idx if i is Ellipsis) > 1:
            raise self._unknown(n, f"indexing with {index!r} (only slices keep the spatial layout)")
        if Ellipsis in idx:
            k = idx.index(Ellipsis)
            idx = idx[:k] + (slice(None),) * (x.dim() - len(idx) + 1) + idx[k + 1:]
        idx = idx + (slice(None),) * (x.dim() - len(idx))
        if not all(isinstance(i, slice) for i in idx):
            raise self._unknown(n, f"indexing with {index!r} drops an axis; only slices keep the spatial layout")
        starts, steps = [], []
        for a, i in enumerate(idx[-2:]):
            length = x.shape[-2 + a]
            start, _, step = i.indices(length)
            starts.append(start)
            steps.append(step)
        # The spatial slices as written (a crop like :-1 must stay relative to the size it meets).
        action = Action("slice", dict(starts=tuple(starts), steps=tuple(steps), spatial=tuple(idx[-2:])))
        if starts == [0, 0] and steps == [1, 1]:
            # Unit 0 stays where it is; only the far end may be cropped.
            self.geoms[n] = replace(cg, size=_spatial(value, "slicing"))
            self.origin[n] = self.origin.get(container, "input")
            self.actions[n.name] = action
            return
        ge = window(cg, (1, 1), tuple(steps), (-starts[0], -starts[1]), (1, 1), _spatial(value, "slicing"))
        op = f"slice [{starts[0]}::{steps[0]}, {starts[1]}::{steps[1]}]"
        self._emit(n, ge, op, "slice", action, kernel=(1, 1), stride=tuple(steps),
                   padding=(-starts[0], -starts[1]), dilation=(1, 1))

    def _merge(self, n: fx.Node, value: Any, name: str) -> None:
        operands = [a for a in n.all_input_nodes if isinstance(self.geoms.get(a), Geom)]
        if len(operands) == 1:
            # One geometry-carrying tensor with scalars/constants: a per-pixel op.
            return self._pass(n, operands[0])
        geoms = [self.geoms[a] for a in operands]
        size = _spatial(value, name)
        note = ""
        if any(g.is_global for g in geoms):
            # A gate computed from the whole image (squeeze-excitation): every unit sees all of it.
            start = tuple(min(g.start[a] for g in geoms) for a in range(2))
            end = tuple(max(g.end[a] for g in geoms) for a in range(2))
            ref = max(geoms, key=lambda g: g.rf)
            merged = Geom(ref.jump, start, end, size, is_global=True)  # type: ignore[arg-type]
        else:
            ref = geoms[0]
            for a_node, g in zip(operands[1:], geoms[1:]):
                if g.jump != ref.jump:
                    raise self._misaligned(n, operands[0], ref, a_node, g, "jump")
                if tuple(s + e for s, e in zip(g.start, g.end)) != tuple(s + e for s, e in zip(ref.start, ref.end)):
                    if self.strict:
                        raise self._misaligned(n, operands[0], ref, a_node, g, "centre")
                    self.aligned = False
                    shift = ((g.start[0] + g.end[0] - ref.start[0] - ref.end[0]) / 2,
                             (g.start[1] + g.end[1] - ref.start[1] - ref.end[1]) / 2)
                    note = f"misaligned by {fmt(collapse(shift), ', ')} px; hull"
            start = tuple(min(g.start[a] for g in geoms) for a in range(2))
            end = tuple(max(g.end[a] for g in geoms) for a in range(2))
            merged = Geom(ref.jump, start, end, size)  # type: ignore[arg-type]
        op = f"{name} ({len(operands)} paths)"
        action = Action("merge", dict(name=name, operands=[a.name for a in operands]))
        self._emit(n, merged, op, "merge", action, note=note)

    def _misaligned(self, n, a_node, ga: Geom, b_node, gb: Geom, what: str) -> ReceptiveFieldAlignmentError:
        la, lb = self.origin.get(a_node, "input"), self.origin.get(b_node, "input")
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
            f"receptive_field: the paths merged at `{self._layer(n)}` are not aligned. Path 1 (last spatial op "
            f"`{la}`): jump {fmt(collapse(ga.jump))}, centre {fmt(collapse(ga.centre), ', ')}, rf "
            f"{fmt(ga.rf)}; path 2 (last spatial op `{lb}`): jump {fmt(collapse(gb.jump))}, centre "
            f"{fmt(collapse(gb.centre), ', ')}, rf {fmt(gb.rf)} (input pixels of output unit 0). A receptive "
            f"field is one number only when all merged paths look at windows with the same stride and centre; "
            f"{why}. Align the paths in the model (e.g. an AvgPool2d(2) shortcut next to a 2x2 pooling main path), "
            f"or call receptive_field(..., strict=False) to get the hull of all paths."
        )


def analyse(gm: fx.GraphModule, input_size: tuple[int, int, int], method: str, strict: bool,
            passthrough: Iterable[Passthrough]) -> tuple[ReceptiveFieldTable, GeometryInterpreter]:
    """Run traced `gm` on a fake ``(1, *input_size)`` input: the table and the interpreter."""
    param = next(gm.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    interp = GeometryInterpreter(gm, strict, passthrough)
    # Eval mode: running statistics must not move; the geometry is the same in both modes.
    with preserved_mode(gm, train=False):
        from torch._subclasses.fake_tensor import FakeTensorMode

        # Fake tensors carry shapes only, so tracing a 1000x1000 input costs nothing.
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            x = mode.from_tensor(torch.empty((1, *input_size), dtype=dtype, device=device))
            try:
                interp.run(x)
            except ReceptiveFieldError:
                raise
            except Exception as e:  # torch's own shape checks, on the fake input
                raise ReceptiveFieldError(
                    f"receptive_field: {type(gm).__name__}.{method} does not run on an input of shape "
                    f"{(1, *input_size)}: {type(e).__name__}: {e}. Pass the input_size the model is built for"
                ) from e
    table = ReceptiveFieldTable(
        interp.rows, input_size=input_size, method=method, output=interp.output_row, scopes=interp.scopes,
        aligned=interp.aligned,
    )
    return table, interp


def check_input_size(input_size: Sequence[int]) -> tuple[int, int, int]:
    """`input_size` as ``(C, H, W)``, or a ValueError that shows the expected form."""
    if len(input_size) != 3 or not all(isinstance(s, int) and s > 0 for s in input_size):
        raise ValueError(f"input_size is (C, H, W) of one image, e.g. (3, 32, 32); got {tuple(input_size)}")
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
    the corrections); here it is derived from the
    graph, so branches and merges are handled: the receptive field of a multi-path net is
    the largest over its paths, after checking at every merge that the paths are aligned.

    Args:
        model: any module torch.fx can trace. Recognised: ``nn.Conv2d`` (any stride,
            padding incl. ``'same'``, dilation), max/avg/LP pooling (module or functional,
            incl. ``ceil_mode``), adaptive pooling, padding (``F.pad``, ``nn.ZeroPad2d``...;
            channel-only padding is a no-op), strided slicing ``x[:, :, ::2, ::2]``,
            flatten/view/reshape and means over H, W (global), merges (``+``, ``*``,
            ``torch.cat`` on channels), and every per-pixel op (activations, norms,
            dropout, anything aten tags pointwise). Calls of functions named
            ``check_*`` (input guards, see `GUARD_PREFIX`) are skipped.
        input_size: ``(C, H, W)`` of one image; sets the feature-map sizes and the
            extent of global ops. No real forward pass runs: the graph runs on fake
            tensors, so a model built on the meta device (``with torch.device("meta"):``)
            works too, without memory or initialisation cost.
        method: the method to trace, e.g. ``"forward_features"`` for the conv trunk of a
            timm-style model.
        strict: raise `ReceptiveFieldAlignmentError` where misaligned paths merge; with
            ``False`` they merge to the hull of their windows and the row says so.
        passthrough: extra per-pixel ops the tracer does not know: module classes (kept
            as leaves), qualified module names, or functions (``torch.fx.wrap``-ed).

    Returns:
        A `ReceptiveFieldTable`; ``table[-1].rf`` is the final receptive field.

    Raises:
        ReceptiveFieldError: an op of unknown spatial geometry, or untraceable code.
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
    table, _ = analyse(gm, size, method, strict, passthrough)
    return table

