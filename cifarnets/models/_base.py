"""`CifarNet`: the constructor, trunk plumbing and timm model API every zoo network shares.

A zoo network is a trunk cut into *levels* (the stem, then one level per stage: the
resolutions the reports' networks step through) and a `ClassifierHead`. The families only
build their layers; everything a generic tool needs (timm's ``forward_features``,
``forward_head``, ``forward_intermediates``, ``prune_intermediate_layers``,
``reset_classifier``, ``feature_info``, gradient checkpointing, parameter groups) is here,
once.
"""

# No `from __future__ import annotations` here: torch.fx writes forward()'s annotations into
# the generated code, and TorchScript must read them as types, not strings.
import functools
from collections import OrderedDict
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.fx
import torch.nn as nn

from ..layers import ClassifierHead, InvalidValueError, check_input

__all__ = ["CifarNet", "check_count", "check_rate", "conv_norm_act_stem", "with_bn_args"]

# The one place the input check is registered with fx: every family calls it through
# `CifarNet.check`, whose globals are this module's.
torch.fx.wrap("check_input")


def check_count(name: str, value: Any, minimum: int, fix: str) -> int:
    """`value` if it is an integer >= `minimum`, else an `InvalidValueError` (a ``ValueError``) naming
    `name`, the value and `fix`.

    Example:
        >>> check_count("in_chans", 3, 1, "pass the input's channels")
        3
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidValueError(f"{name} must be an integer >= {minimum}, got {value!r}; {fix}")
    return value


def check_rate(name: str, value: Optional[float], model: str, supported: bool = True, why: str = "") -> float:
    """A dropout-style rate in [0, 1) (``None`` means 0); a positive rate a model cannot honour is an error.

    Example:
        >>> check_rate("drop_rate", None, "vgg38")
        0.0
    """
    rate = 0.0 if value is None else value
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise InvalidValueError(f"{name} must be a number in [0, 1), got {value!r}; e.g. {name}=0.1, or 0 for none")
    if rate > 0 and not supported:
        raise InvalidValueError(f"{model} cannot honour {name}={value}: {why}; pass {name}=0 (or leave it out)")
    return float(rate)


def with_bn_args(
    norm: Optional[Callable[[int], nn.Module]], bn_momentum: Optional[float], bn_eps: Optional[float], model: str
) -> Optional[Callable[[int], nn.Module]]:
    """`norm` with timm's ``bn_momentum`` / ``bn_eps`` bound, or `norm` itself when both are None."""
    args = {k: v for k, v in (("momentum", bn_momentum), ("eps", bn_eps)) if v is not None}
    if not args:
        return norm
    if norm is None:
        raise InvalidValueError(f"{model} has no normalisation layer for bn_momentum/bn_eps to configure; "
                         f"pass a norm_layer (e.g. norm_layer='batchnorm') or drop bn_momentum/bn_eps")
    return functools.partial(norm, **args)


def conv_norm_act_stem(
    in_chans: int, width: int, norm: Optional[Callable[[int], nn.Module]], act_layer: Callable[[], nn.Module]
) -> nn.Sequential:
    """The 3x3 stem of the coursework VGGs and the CIFAR ResNets: ``stem.conv`` → ``stem.norm`` → ``stem.act``."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_chans, width, kernel_size=3, padding=1, bias=False),
        norm=norm(width) if norm is not None else nn.Identity(),
        act=act_layer(),
    ))


class CifarNet(nn.Module):
    """Base of the zoo networks: a trunk of levels and a `ClassifierHead`, with timm's model API.

    Subclasses call ``super().__init__(num_classes=..., in_chans=..., ...)`` first, build
    their trunk, record one `feature_info` entry per level (``num_chs``, ``reduction``,
    ``module``), then call `init_head`. By default the trunk is ``self.stem`` followed by
    ``self.stages`` (an ``nn.Sequential`` of stages) and the levels are the stem and each
    stage; a family with another layout overrides `forward_trunk`, `level_modules` and
    `prune_levels`.

    Args:
        num_classes: classifier outputs; 0 builds no classifier (the model returns pre-logits).
        in_chans: input channels.
        drop_rate: dropout before the final linear layer (timm's ``drop_rate``).
        global_pool: ``"avg"``, ``"max"``, ``"flatten"`` or ``""`` (unpooled maps, with
            ``num_classes=0``).
    """

    def __init__(self, *, num_classes: int, in_chans: int, drop_rate: float = 0.0, global_pool: str = "avg") -> None:
        super().__init__()
        self.model_name = "model"  # set to the registry name by the builder
        self.num_classes = check_count(
            "num_classes", num_classes, 0, "pass the number of classes, or num_classes=0 for no classifier "
            "(the model then returns pre-logit features)")
        self.in_chans = check_count("in_chans", in_chans, 1, "pass the input's channels, e.g. in_chans=3 (RGB) "
                                    "or in_chans=1 (greyscale)")
        self.drop_rate = check_rate("drop_rate", drop_rate, type(self).__name__)
        self.global_pool = global_pool
        self.grad_checkpointing = False
        self.feature_info: list[dict[str, Any]] = []
        self.num_features = 0
        self.head_hidden_size = 0
        self.reduction = 1
        self.feature_size: Optional[tuple[int, int]] = None

    # ------------------------------------------------------------ construction helpers

    __jit_unused_properties__ = ["depth"]
    # The sequence of modules that gradient checkpointing runs segment by segment.
    checkpointed_trunk = "stages"

    @classmethod
    def feature_levels(cls, arch: Any) -> int:
        """How many feature levels a network of layout `arch` has (for ``features_only``)."""
        raise NotImplementedError

    def add_level(self, num_chs: int, reduction: int, module: str) -> None:
        """Record one feature level (timm's ``feature_info`` entry)."""
        self.feature_info.append(dict(num_chs=num_chs, reduction=reduction, module=module))
        self.num_features, self.reduction = num_chs, reduction

    def init_head(
        self, in_features: int, *, hidden: Sequence[int] = (), hidden_drop_rate: float = 0.0,
        drop_rate: Optional[float] = None,
    ) -> None:
        """Build ``self.head`` on `in_features` (channels, or flattened values for ``"flatten"``);
        `drop_rate` before the final linear layer defaults to the model's ``drop_rate``."""
        self.head = ClassifierHead(
            in_features, self.num_classes, pool_type=self.global_pool, hidden=hidden,
            hidden_drop_rate=hidden_drop_rate, drop_rate=self.drop_rate if drop_rate is None else drop_rate,
        )
        self.head_hidden_size = self.head.num_features

    # ------------------------------------------------------------ forward

    def check(self, x: torch.Tensor) -> torch.Tensor:
        """`x`, or a clear error if the model cannot take it (shape, channels, dtype)."""
        fixed = self.feature_size if self.head.pool_type == "flatten" else None
        dtype: Optional[torch.dtype] = None
        if not torch.jit.is_scripting():
            dtype = self.weight_dtype(x)
        return check_input(x, self.in_chans, self.model_name, self.reduction, fixed, dtype)

    @torch.jit.unused
    def weight_dtype(self, x: torch.Tensor) -> Optional[torch.dtype]:
        """The dtype a batch must have (the weights'), or None where any floating dtype is fine (autocast)."""
        if isinstance(x, torch.fx.Proxy) or x.device.type == "meta":
            return None
        try:
            if torch.is_autocast_enabled(x.device.type):
                return None
        except RuntimeError:  # a device type autocast does not know
            return None
        for param in self.parameters():
            return param.dtype
        return None

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk without the input check: stem, then stages."""
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return self.forward_checkpointed(x)
        return self.stages(x)

    @torch.jit.unused
    def forward_checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        """`checkpointed_trunk` through timm's ``checkpoint_seq`` (activations recomputed in backward)."""
        from timm.models import checkpoint_seq  # timm only once checkpointing is switched on

        return checkpoint_seq(getattr(self, self.checkpointed_trunk), x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled feature maps of the last level, ``(N, num_features, H/r, W/r)``."""
        return self.forward_trunk(self.check(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classifier on trunk features; ``pre_logits=True`` stops before the last linear layer."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # ------------------------------------------------------------ levels (timm's feature API)

    def level_modules(self) -> list[nn.Module]:
        """One module per level; running them in order is the trunk."""
        return [self.stem, *self.stages]

    def prune_levels(self, keep: int) -> None:
        """Drop every level after the first `keep`."""
        self.stages = self.stages[: keep - 1]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, list[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[list[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]:
        """The feature maps of the levels `indices` (timm's signature), and the final features.

        Args:
            indices: ``None`` all levels, an int n the last n, a list the levels by index.
            norm: timm applies a final norm to intermediates; the zoo nets have none.
            stop_early: stop after the last requested level (the returned final features are
                then that level's output).
            output_fmt: only ``"NCHW"``.
            intermediates_only: return only the list.

        Example:
            >>> import cifarnets
            >>> final, levels = cifarnets.create("resnet20").forward_intermediates(torch.randn(1, 3, 32, 32))
            >>> [tuple(f.shape[1:]) for f in levels]
            [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]
        """
        if output_fmt != "NCHW":
            raise InvalidValueError(f"output_fmt={output_fmt!r}: the zoo nets give NCHW feature maps only")
        from timm.models._features import feature_take_indices  # timm's own models import it from here

        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        x = self.check(x)
        modules = self.level_modules()
        if stop_early:
            modules = modules[: max_index + 1]
        intermediates = []
        for i, module in enumerate(modules):
            x = module(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: Union[int, list[int]] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Remove the levels after the last of `indices` (and the head); returns the kept indices."""
        from timm.models._features import feature_take_indices

        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        self.prune_levels(max_index + 1)
        self.feature_info = self.feature_info[: max_index + 1]
        self.num_features = self.feature_info[-1]["num_chs"]
        self.reduction = self.feature_info[-1]["reduction"]
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    # ------------------------------------------------------------ the rest of timm's API

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the final linear layer for `num_classes` outputs (0: return pre-logits);
        `global_pool` (``"avg"``, ``"max"``, ``"flatten"``, ``""``) changes the pooling too."""
        check_count("num_classes", num_classes, 0, "pass the number of classes, or 0 for no classifier")
        self.head.reset(num_classes, global_pool)
        self.num_classes = num_classes
        self.global_pool = self.head.pool_type

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in the backward pass (less memory, more compute)."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay (timm's ``group_matcher``)."""
        return dict(stem=r"^stem\.", blocks=r"^stages\.(\d+)" if coarse else [
            (r"^stages\.(\d+)\.(?:block)?(\d+)\.", None), (r"^stages\.(\d+)\.reduction\.", (99999,))])

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay beyond timm's 1-D rule: none in the zoo nets."""
        return set()
