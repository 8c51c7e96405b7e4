"""Normalisation layers and the factory every model uses to pick one.

`DetachedBatchNorm2d` is the ResNet-18 report's "custom batch normalization" (§ Custom Batch
Normalization, Table 4): batch norm whose batch mean and variance are cut from autograd.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .errors import AlreadyRegisteredError, ArgumentTypeError, InvalidValueError, UnknownNameError

__all__ = [
    "DetachedBatchNorm2d", "NormLayer", "create_norm", "detached_batch_norm", "norm_layer_name", "get_norm_layer",
    "list_norm_layers", "register_norm_layer",
]

NormLayer = Union[str, Callable[[int], nn.Module], None]


class _DetachedBatchNormFn(torch.autograd.Function):
    """Training-mode batch norm whose backward treats the batch statistics as constants.

    The forward is PyTorch's own batch-norm kernel, so outputs and running statistics are
    bit-for-bit those of `nn.BatchNorm2d`. The backward reuses the native kernel for the
    weight and bias gradients (the reductions) and needs one element-wise multiply for the
    input gradient, so it costs no more than the full batch-norm backward.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float, biased: bool):
        if biased and running_mean is not None and running_var is not None:
            # The ResNet-18 report's code: the running variance follows the *biased* batch variance.
            out, save_mean, save_invstd = torch.native_batch_norm(x, weight, bias, None, None, True, momentum, eps)
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(save_mean.to(running_mean.dtype), alpha=momentum)
                batch_var = x.var(dim=(0, 2, 3), unbiased=False)
                running_var.mul_(1 - momentum).add_(batch_var.to(running_var.dtype), alpha=momentum)
        else:
            out, save_mean, save_invstd = torch.native_batch_norm(
                x, weight, bias, running_mean, running_var, True, momentum, eps
            )
        ctx.save_for_backward(x, weight, save_mean, save_invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, save_mean, save_invstd = ctx.saved_tensors
        grad_out = grad_out.contiguous(memory_format=_memory_format(x))
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_w or need_b:
            _, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
                grad_out, x, weight, None, None, save_mean, save_invstd, True, ctx.eps,
                [False, need_w and weight is not None, need_b],
            )
        if need_x:
            # d/dx of gamma * (x - mu) * invstd + beta with mu, invstd constant.
            scale = save_invstd if weight is None else weight * save_invstd
            grad_x = grad_out * scale.to(grad_out.dtype).view(1, -1, *([1] * (x.dim() - 2)))
        return grad_x, grad_w, grad_b, None, None, None, None, None


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _detached_batch_norm_ops(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    running_mean: Optional[torch.Tensor],
    running_var: Optional[torch.Tensor],
    momentum: float,
    eps: float,
    biased: bool,
) -> torch.Tensor:
    # The same computation in plain differentiable ops (for TorchScript, which cannot run an
    # autograd.Function): statistics from x.detach() are constants, so autograd gives exactly
    # the detached gradient. Values agree with the native kernel to rounding.
    xd = x.detach()
    var, mean = torch.var_mean(xd, dim=[0, 2, 3], unbiased=False)
    if running_mean is not None and running_var is not None:
        n = float(xd.numel()) / float(xd.size(1))
        batch_var = var if biased else var * (n / max(n - 1.0, 1.0))
        running_mean.mul_(1.0 - momentum).add_(mean * momentum)
        running_var.mul_(1.0 - momentum).add_(batch_var * momentum)
    out = (x - mean.view(1, -1, 1, 1)) * torch.rsqrt(var + eps).view(1, -1, 1, 1)
    if weight is not None:
        out = out * weight.view(1, -1, 1, 1)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def detached_batch_norm(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    running_mean: Optional[torch.Tensor],
    running_var: Optional[torch.Tensor],
    momentum: float,
    eps: float,
    biased_running_var: bool = False,
) -> torch.Tensor:
    """Training-mode batch norm with the batch mean and variance cut from autograd (the ResNet-18 report).

    Updates `running_mean`/`running_var` in place when given (with the unbiased batch variance
    as `nn.BatchNorm2d` does, or the biased one as the ResNet-18 report's code does when
    `biased_running_var`). Registered with `torch.fx.wrap`, so fx-based tools see one call.

    Example:
        >>> x = torch.randn(4, 3, 5, 5, requires_grad=True)
        >>> detached_batch_norm(x, None, None, None, None, 0.1, 1e-5).shape
        torch.Size([4, 3, 5, 5])
    """
    if torch.jit.is_scripting():
        return _detached_batch_norm_ops(x, weight, bias, running_mean, running_var, momentum, eps, biased_running_var)
    if not torch.is_grad_enabled() and not biased_running_var:
        # Without autograd the layer is plain batch norm.
        return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)
    return _DetachedBatchNormFn.apply(x, weight, bias, running_mean, running_var, momentum, eps, biased_running_var)


torch.fx.wrap("detached_batch_norm")


class DetachedBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` with no gradient through the batch mean and variance (the ResNet-18 report).

    Forward, eval behaviour and `state_dict` keys are exactly those of `nn.BatchNorm2d`, so
    weights move freely between the two. Only the backward differs: the batch statistics are
    treated as constants, so the input gradient is ``grad_out * weight / sqrt(var + eps)``
    instead of the full batch-norm gradient, while the gradients of weight (gamma) and bias
    (beta) are unchanged. The ResNet-18 report trains ResNet-18 with it and gets about 22 % on CIFAR-10
    (Table 4).

    Running statistics: by default they are updated exactly as `nn.BatchNorm2d` updates them,
    with the *unbiased* batch variance. The ResNet-18 report's code ("Custom Batch Normalization",
    ``var_batch = inp.var(dim=[0, 2, 3], unbiased=False)``) keeps the *biased* one;
    ``biased_running_var=True`` (or ``norm_layer="detached_batchnorm_biased"``) does that.
    The two running variances differ by a factor of at most n/(n-1), n = N*H*W values per
    channel (for ResNet-18's last stage at batch 128: 2048/2047); training outputs are the same.

    It is a subclass of `nn.BatchNorm2d`, so optimiser parameter groups, weight-decay
    exclusions and BN fusing treat it as batch norm. It works in TorchScript, under
    ``torch.compile(fullgraph=True)``, `torch.export` and fx tracing.

    Example:
        >>> import torch, cifarnets
        >>> bn = cifarnets.DetachedBatchNorm2d(8)
        >>> bn(torch.randn(4, 8, 5, 5)).shape
        torch.Size([4, 8, 5, 5])
        >>> m = cifarnets.create("resnet18", norm_layer=cifarnets.DetachedBatchNorm2d)
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        biased_running_var: bool = False,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.biased_running_var = biased_running_var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if not isinstance(x, torch.fx.Proxy):
                self._check_input_dim(x)  # a Python `if` on the shape: not while fx traces
        if not self.training and self.running_mean is not None and self.running_var is not None:
            # Eval with running statistics: exactly nn.BatchNorm2d's computation.
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        momentum = 0.0 if self.momentum is None else self.momentum
        update = self.training and self.track_running_stats
        if update and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d does
                momentum = 1.0 / float(self.num_batches_tracked)
        running_mean = self.running_mean if update else None
        running_var = self.running_var if update else None
        return detached_batch_norm(
            x, self.weight, self.bias, running_mean, running_var, momentum, self.eps, self.biased_running_var
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + (", biased_running_var=True" if self.biased_running_var else "")


def create_norm(norm_layer: Optional[Callable[[int], nn.Module]], channels: int) -> nn.Module:
    """`norm_layer(channels)`, or an identity where the network has no normalisation."""
    return norm_layer(channels) if norm_layer is not None else nn.Identity()


_NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    "detached_batchnorm": DetachedBatchNorm2d,
    "detached_batchnorm_biased": functools.partial(DetachedBatchNorm2d, biased_running_var=True),
}


def register_norm_layer(name: str, layer: Callable[[int], nn.Module]) -> None:
    """Make ``norm_layer="name"`` resolve to `layer` (a callable taking the channel count).

    Example:
        >>> import torch.nn as nn
        >>> register_norm_layer("instancenorm_affine", lambda c: nn.InstanceNorm2d(c, affine=True))
    """
    if name in _NORM_LAYERS and _NORM_LAYERS[name] is not layer:
        raise AlreadyRegisteredError(f"norm layer {name!r} is already registered as {_NORM_LAYERS[name]!r}")
    _NORM_LAYERS[name] = layer


def list_norm_layers() -> list[str]:
    """Names that `norm_layer=` accepts as strings (besides timm's own norm names)."""
    return sorted(_NORM_LAYERS)


def get_norm_layer(norm_layer: NormLayer) -> Optional[Callable[[int], nn.Module]]:
    """Resolve a model's ``norm_layer=`` argument to a callable ``channels -> module``.

    Accepts a class or callable (returned as is), ``None`` (no normalisation), one of
    `list_norm_layers()` ("batchnorm", "detached_batchnorm"), or any 2-D norm name timm
    knows ("groupnorm", "layernorm2d", ...).

    Example:
        >>> norm = get_norm_layer("detached_batchnorm")(16)
        >>> type(norm).__name__, norm.num_features
        ('DetachedBatchNorm2d', 16)
    """
    if norm_layer is None or callable(norm_layer):
        return norm_layer
    if not isinstance(norm_layer, str):
        raise ArgumentTypeError(f"norm_layer must be a name, a class or None, not {type(norm_layer).__name__}")
    key = norm_layer.lower().replace("-", "_")
    if key in _NORM_LAYERS:
        return _NORM_LAYERS[key]
    from timm.layers import get_norm_layer as timm_get_norm_layer  # timm's other norms, only when named

    try:
        return timm_get_norm_layer(key)
    except (AssertionError, ValueError, KeyError, TypeError) as err:
        raise UnknownNameError(
            f"unknown norm_layer {norm_layer!r}; use one of {list_norm_layers()}, a timm 2-D norm "
            f"name such as 'groupnorm', a class such as torch.nn.BatchNorm2d, or None"
        ) from err


def norm_layer_name(norm_layer: NormLayer) -> Optional[str]:
    """The name `get_norm_layer` resolves to `norm_layer` (for configs written to JSON), or None.

    Names and ``None`` are returned as given; a class or callable is looked up among the
    registered layers (`list_norm_layers`).

    Example:
        >>> norm_layer_name(DetachedBatchNorm2d)
        'detached_batchnorm'
    """
    if norm_layer is None or isinstance(norm_layer, str):
        return norm_layer
    for name, layer in _NORM_LAYERS.items():
        if layer is norm_layer:
            return name
    raise InvalidValueError(
        f"norm_layer {norm_layer!r} has no registered name, so it cannot be written to a config; register it "
        f"with cifarnets.register_norm_layer('my_norm', ...) and pass the name"
    )
