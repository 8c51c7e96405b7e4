"""Normalisation layers and the factory every model uses to pick one.

`DetachedBatchNorm2d` is seed 000's "custom batch normalization" (§ Custom Batch
Normalization, Table 4): batch norm whose batch mean and variance are cut from autograd.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn as nn
from timm.layers import get_norm_layer as _timm_get_norm_layer

__all__ = [
    "DetachedBatchNorm2d", "NormLayer", "create_norm", "get_norm_layer", "list_norm_layers", "register_norm_layer",
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
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):
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
        return grad_x, grad_w, grad_b, None, None, None, None


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class DetachedBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` with no gradient through the batch mean and variance (seed 000).

    Forward, running statistics, eval behaviour and `state_dict` keys are exactly those of
    `nn.BatchNorm2d`, so weights move freely between the two. Only the backward differs:
    the batch statistics are treated as constants, so the input gradient is
    ``grad_out * weight / sqrt(var + eps)`` instead of the full batch-norm gradient, while
    the gradients of weight (gamma) and bias (beta) are unchanged. Seed 000 trains
    ResNet-18 with it and gets about 22 % on CIFAR-10 (Table 4).

    It is a subclass of `nn.BatchNorm2d`, so optimiser parameter groups, weight-decay
    exclusions and BN fusing treat it as batch norm.

    Example:
        >>> import torch, cifarnets
        >>> bn = cifarnets.DetachedBatchNorm2d(8)
        >>> bn(torch.randn(4, 8, 5, 5)).shape
        torch.Size([4, 8, 5, 5])
        >>> m = cifarnets.create("resnet18", norm_layer=cifarnets.DetachedBatchNorm2d)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        use_batch_stats = self.training or self.running_mean is None
        if not use_batch_stats or not torch.is_grad_enabled():
            # Without autograd the two layers are the same computation.
            return super().forward(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d does
                momentum = 1.0 / float(self.num_batches_tracked)
        running_mean = self.running_mean if self.training and self.track_running_stats else None
        running_var = self.running_var if self.training and self.track_running_stats else None
        return _DetachedBatchNormFn.apply(x, self.weight, self.bias, running_mean, running_var, momentum, self.eps)


def create_norm(norm_layer: Optional[Callable[[int], nn.Module]], channels: int) -> nn.Module:
    """`norm_layer(channels)`, or an identity where the network has no normalisation."""
    return norm_layer(channels) if norm_layer is not None else nn.Identity()


_NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    "detached_batchnorm": DetachedBatchNorm2d,
}


def register_norm_layer(name: str, layer: Callable[[int], nn.Module]) -> None:
    """Make ``norm_layer="name"`` resolve to `layer` (a callable taking the channel count).

    Example:
        >>> import torch.nn as nn
        >>> register_norm_layer("instancenorm_affine", lambda c: nn.InstanceNorm2d(c, affine=True))
    """
    if name in _NORM_LAYERS and _NORM_LAYERS[name] is not layer:
        raise ValueError(f"norm layer {name!r} is already registered as {_NORM_LAYERS[name]!r}")
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
        raise TypeError(f"norm_layer must be a name, a class or None, not {type(norm_layer).__name__}")
    key = norm_layer.lower().replace("-", "_")
    if key in _NORM_LAYERS:
        return _NORM_LAYERS[key]
    try:
        return _timm_get_norm_layer(key)
    except (AssertionError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"unknown norm_layer {norm_layer!r}; use one of {list_norm_layers()}, a timm 2-D norm "
            f"name such as 'groupnorm', a class such as torch.nn.BatchNorm2d, or None"
        ) from err
