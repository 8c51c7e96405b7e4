"""The coursework VGG family of the VGG38 reports and the deeper-VGG report: VGG08, VGG38, VGG68, VGG72, VGG106.

Every convolution is 3x3, padding 1, 32 filters (the VGG38 report §5 and Table 1; the width is
inferred from its parameter counts, docs/references.md). A network is an entry
convolution, S stages of B processing blocks and one reduction block each, and a global
average pool with a linear classifier::

    entry       conv 3->32 (no bias) -> BN -> act        (the entry BN is in every variant)
    processing  conv (no bias) -> [BN] -> act -> conv (no bias) -> [BN] -> (+ x if rc) -> act
    reduction   conv (bias) -> [BN] -> act -> avgpool 2x2 -> conv (bias) -> [BN]
                -> (+ shortcut(x) if rc and a shortcut is chosen) -> act
    head        global average pool -> Linear(32, num_classes)

BN sits after each convolution and before the activation (the VGG38 reports' §5, the deeper-VGG report's
Algorithm 1); the skip joins before the block's last activation (the VGG38 report §5, He et al.
2016 Fig. 2). A network has 2 + S(2B + 2) weighted layers.

Shortcuts of the reduction blocks when ``rc=True`` (the VGG38 report §5.1, the deeper-VGG report's Alg. 1):
``"none"`` (the coursework baseline, no skip across a reduction), ``"avgpool"`` (the
identity average-pooled like the main path; the deeper-VGG report), ``"zeropad"`` (strided identity,
He et al. option A) and ``"projection"`` (strided 1x1 conv, + BN when ``bn``; option B).

Initialisation is PyTorch's own by default. The reports' headline finding, that plain
VGG38 does not learn (loss stuck at ln 100) while BN and/or RC fix it, depends on it.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from ..layers import (
    SHORTCUTS,
    ActLayer,
    DropPath,
    InvalidValueError,
    NormLayer,
    UnknownNameError,
    create_norm,
    create_shortcut,
    get_act_layer,
    get_norm_layer,
    init_weights,
)
from ._base import CifarNet, check_count, check_rate, conv_norm_act_stem, with_bn_args
from ._factory import create_model
from ._registry import ModelCfg, register_model

__all__ = ["CourseworkVGG", "CourseworkVGGConfig", "ProcessingBlock", "ReductionBlock"]


@dataclass(frozen=True)
class CourseworkVGGConfig:
    """The shape of a coursework VGG: S stages of B processing blocks, and which
    reduction-block shortcut its report used when residual connections are on."""

    stages: int
    blocks: int
    default_shortcut: str = "none"

    @property
    def depth(self) -> int:
        """Weighted layers, 2 + S(2B + 2): entry conv, 2 per block, classifier."""
        return 2 + self.stages * (2 * self.blocks + 2)


def _conv3x3(in_chs: int, out_chs: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1, bias=bias)


class ProcessingBlock(nn.Module):
    """conv → [BN] → act → conv → [BN] → (+ x) → act, at constant width and size.

    With `drop_path` > 0 (and `residual`) the residual branch is dropped per sample
    (stochastic depth, timm's ``drop_path_rate``).
    """

    def __init__(
        self,
        width: int,
        norm_layer: Optional[Callable[[int], nn.Module]],
        act_layer: Callable[[], nn.Module],
        residual: bool,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(width, width, bias=False)
        self.norm1 = create_norm(norm_layer, width)
        self.act1 = act_layer()
        self.conv2 = _conv3x3(width, width, bias=False)
        self.norm2 = create_norm(norm_layer, width)
        self.act2 = act_layer()
        self.residual = residual
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if self.residual:
            if self.drop_path is not None:
                out = self.drop_path(out)
            out = out + x
        return self.act2(out)


class ReductionBlock(nn.Module):
    """conv → [BN] → act → avgpool 2x2 → conv → [BN] → (+ shortcut(x)) → act; halves H, W.

    Its convolutions have biases, as in the coursework framework (inferred from the VGG38
    report's Table 1 counts; docs/references.md).
    """

    def __init__(
        self,
        width: int,
        norm_layer: Optional[Callable[[int], nn.Module]],
        act_layer: Callable[[], nn.Module],
        shortcut: str,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(width, width, bias=True)
        self.norm1 = create_norm(norm_layer, width)
        self.act1 = act_layer()
        self.pool = nn.AvgPool2d(2)
        self.conv2 = _conv3x3(width, width, bias=True)
        self.norm2 = create_norm(norm_layer, width)
        self.shortcut = create_shortcut(shortcut, width, width, stride=2, norm_layer=norm_layer)
        self.act2 = act_layer()
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.shortcut is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.act1(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        if self.shortcut is not None:
            if self.drop_path is not None:
                out = self.drop_path(out)
            out = out + self.shortcut(x)
        return self.act2(out)


class CourseworkVGG(CifarNet):
    """A coursework VGG of any S x B shape (the VGG38 reports, the deeper-VGG report's Algorithm 1).

    Args:
        arch: stages, blocks per stage and the report's reduction shortcut (positional).
        num_classes: classifier outputs (the reports: 100, CIFAR-100); 0 for no classifier.
        in_chans: input channels.
        width: filters of every convolution (the reports: 32).
        bn: batch norm after every block convolution (the entry BN is always there).
        rc: residual connections in the processing blocks.
        shortcut: skip across the reduction blocks when ``rc``: one of ``"none"``,
            ``"avgpool"``, ``"zeropad"``, ``"projection"``; ``None`` means the one the
            network's report used (`CourseworkVGGConfig.default_shortcut`).
        act: activation, a name (``"leaky_relu"``, ``"relu"``, ``"sigmoid"``, ...) or class.
        norm_layer: the normalisation used wherever the network normalises (a class such as
            `cifarnets.DetachedBatchNorm2d` or a name). ``None`` removes the entry BN too,
            which no report did.
        init: ``"default"`` keeps PyTorch's initialisation (needed to reproduce the
            vanishing gradients); ``"kaiming"``, ``"xavier"``, ``"orthogonal"``.
        global_pool: ``"avg"`` (the reports), ``"max"``, or ``""`` for unpooled maps
            (with ``num_classes=0``).
        drop_rate: dropout before the classifier (the reports: none).
        drop_path_rate: stochastic depth of the residual branches, rising linearly over the
            blocks to this value; needs ``rc=True`` (a plain net has no residual path).
        drop_block_rate: not supported (0 or None only).
        bn_momentum, bn_eps: momentum and eps of every norm layer (PyTorch's by default).

    Example:
        >>> net = CourseworkVGG(CourseworkVGGConfig(stages=4, blocks=2), bn=True, rc=True)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 100])
    """

    def __init__(
        self,
        arch: CourseworkVGGConfig,
        /,
        *,
        num_classes: int = 100,
        in_chans: int = 3,
        width: int = 32,
        bn: bool = False,
        rc: bool = False,
        shortcut: Optional[str] = None,
        act: ActLayer = "leaky_relu",
        norm_layer: NormLayer = "batchnorm",
        init: str = "default",
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: Optional[float] = None,
        drop_block_rate: Optional[float] = None,
        bn_momentum: Optional[float] = None,
        bn_eps: Optional[float] = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, global_pool=global_pool)
        name = type(self).__name__
        if arch.stages < 1 or arch.blocks < 0:
            raise InvalidValueError(f"a coursework VGG needs stages >= 1 and blocks >= 0, got {arch}")
        check_count("width", width, 1, "pass the filters per convolution as a whole number, e.g. width=32 "
                    "(the reports')")
        if shortcut is not None and shortcut not in SHORTCUTS:
            raise UnknownNameError(f"unknown shortcut {shortcut!r}; use one of {list(SHORTCUTS)}")
        if shortcut not in (None, "none") and not rc:
            raise InvalidValueError(
                f"shortcut={shortcut!r} is a residual connection across the reduction blocks, but rc=False; "
                f"pass rc=True to use it, or drop shortcut="
            )
        norm = with_bn_args(get_norm_layer(norm_layer), bn_momentum, bn_eps, name)
        if bn and norm is None:
            raise InvalidValueError("bn=True needs a norm layer, but norm_layer=None; drop one of the two")
        if shortcut is None:
            shortcut = arch.default_shortcut if rc else "none"
        if rc and arch.blocks == 0 and shortcut == "none":
            warnings.warn(
                "rc=True changes nothing in a network without processing blocks unless a reduction shortcut is "
                "chosen (shortcut='avgpool', 'zeropad' or 'projection')",
                stacklevel=3,
            )
        residual_blocks = arch.stages * (arch.blocks if rc else 0) + (arch.stages if shortcut != "none" else 0)
        dpr = check_rate("drop_path_rate", drop_path_rate, name, supported=residual_blocks > 0,
                         why="without rc=True (or a reduction shortcut) it has no residual path to drop")
        check_rate("drop_block_rate", drop_block_rate, name, supported=False, why="DropBlock is not implemented")
        act_layer = get_act_layer(act)
        block_norm = norm if bn else None

        self.arch = arch
        self.bn, self.rc, self.shortcut = bn, rc, shortcut

        self.stem = conv_norm_act_stem(self.in_chans, width, norm, act_layer)
        self.add_level(width, 1, "stem.act")
        per_stage = arch.blocks + 1
        total = arch.stages * per_stage
        stages = []
        for s in range(arch.stages):
            rates = [dpr * (s * per_stage + b) / max(total - 1, 1) for b in range(per_stage)]
            blocks: OrderedDict[str, nn.Module] = OrderedDict(
                (f"block{b}", ProcessingBlock(width, block_norm, act_layer, residual=rc, drop_path=rates[b]))
                for b in range(arch.blocks)
            )
            blocks["reduction"] = ReductionBlock(width, block_norm, act_layer, shortcut=shortcut, drop_path=rates[-1])
            stages.append(nn.Sequential(blocks))
            self.add_level(width, 2 ** (s + 1), f"stages.{s}")
        self.stages = nn.Sequential(*stages)
        self.init_head(width)
        init_weights(self, init)

    @classmethod
    def feature_levels(cls, arch: CourseworkVGGConfig) -> int:
        return arch.stages + 1  # the stem and each stage

    @property
    def depth(self) -> int:
        """Weighted layers as the reports count them, 2 + S(2B + 2)."""
        return self.arch.depth


_ARCHS = {
    "vgg08": CourseworkVGGConfig(stages=3, blocks=0),
    "vgg38": CourseworkVGGConfig(stages=3, blocks=5),
    "vgg68": CourseworkVGGConfig(stages=3, blocks=10, default_shortcut="avgpool"),
    "vgg72": CourseworkVGGConfig(stages=5, blocks=6, default_shortcut="avgpool"),
    "vgg106": CourseworkVGGConfig(stages=5, blocks=12, default_shortcut="avgpool"),
}


_TITLES = {
    "001": "Combating the Vanishing Gradient Problem in Deep CNNs: A Study of VGG38 with Batch Normalization "
           "and Residual Connections",
    "003": "MLP Coursework 2: Investigating the Optimization of Convolutional Networks",
}


def _cfg(source: str, summary: str, published_params: int, notes: str = "", **defaults: Any) -> ModelCfg:
    # The reports train on CIFAR-100 and do not print their normalisation; the card names
    # the CIFAR-100 preset, the one the data loaders apply to CIFAR-100 by default.
    return ModelCfg(
        family="coursework_vgg", source=source, summary=summary, num_classes=100, dataset="cifar100",
        paper_name=_TITLES["003" if "the deeper-VGG report" in source else "001"],
        norm="cifar100",
        first_conv="stem.conv", classifier="head.fc",
        defaults=defaults, published_params=published_params, notes=notes,
    )


default_cfgs = {
    "vgg08": _cfg(
        "the coursework reports (§2, Table 1)", "3 stages x 0 blocks, plain", 59_716,
        "3 stages x 0 blocks, no BN in the blocks, no RC: the healthy shallow baseline.",
    ),
    "vgg38": _cfg(
        "the coursework reports (§2, §5, Table 1)", "3 x 5, plain; flags bn, rc", 336_196,
        "3 stages x 5 blocks, published plain: at PyTorch's default init its gradients vanish. "
        "bn=True: 338,500 params; rc=True keeps 336,196 (parameter-free); rc=True uses no skip across the "
        "reduction blocks (the coursework baseline) unless shortcut= is given.",
    ),
    "vgg68": _cfg(
        "the deeper-VGG report (§5.4)", "3 x 10, BN+RC, avg-pool shortcut", 616_900,
        "3 stages x 10 blocks with BN+RC and the average-pooled reduction shortcut (the deeper-VGG report's "
        "Algorithm 1). The deeper-VGG report's best model: 65.83 % CIFAR-100 test accuracy.",
        bn=True, rc=True,
    ),
    "vgg72": _cfg(
        "the deeper-VGG report (§5.4)", "5 x 6, BN+RC, avg-pool shortcut", 654_148,
        "5 stages x 6 blocks with BN+RC and the average-pooled reduction shortcut.",
        bn=True, rc=True,
    ),
    "vgg106": _cfg(
        "the deeper-VGG report (§5.4)", "5 x 12 (132 layers), BN+RC, avg-pool shortcut", 1_210_948,
        "The deeper-VGG report's 'VGG106' is 5 stages x 12 blocks with BN+RC and the average-pooled shortcut; its "
        "1,210,948 parameters match that configuration, which by the family's formula 2 + S(2B + 2) has 132 "
        "weighted layers, not 106 (4 x 12 would give 106). This is the published configuration.",
        bn=True, rc=True,
    ),
}


# timm's pool_size (the last feature map of a 32x32 input) and the smallest input, per network.
default_cfgs = {
    name: cfg.replace(pool_size=(32 >> _ARCHS[name].stages,) * 2, min_input_size=(3, *(2 ** _ARCHS[name].stages,) * 2))
    for name, cfg in default_cfgs.items()
}


@register_model(model_cls=CourseworkVGG, arch=_ARCHS["vgg08"])
def vgg08(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """VGG08 (the coursework reports): 3 x 0, plain; 59,716 parameters at 100 classes."""
    return create_model("vgg08", pretrained, **kwargs)


@register_model(model_cls=CourseworkVGG, arch=_ARCHS["vgg38"])
def vgg38(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """VGG38 (the coursework reports): 3 x 5, plain; 336,196 parameters (338,500 with ``bn=True``)."""
    return create_model("vgg38", pretrained, **kwargs)


@register_model(model_cls=CourseworkVGG, arch=_ARCHS["vgg68"])
def vgg68(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """VGG68 (the deeper-VGG report §5.4): 3 x 10, BN+RC, pooled shortcut; 616,900 parameters."""
    return create_model("vgg68", pretrained, **kwargs)


@register_model(model_cls=CourseworkVGG, arch=_ARCHS["vgg72"])
def vgg72(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """VGG72 (the deeper-VGG report §5.4): 5 x 6, BN+RC, pooled shortcut; 654,148 parameters."""
    return create_model("vgg72", pretrained, **kwargs)


@register_model(model_cls=CourseworkVGG, arch=_ARCHS["vgg106"])
def vgg106(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """"VGG106" (the deeper-VGG report §5.4): 5 x 12, BN+RC, pooled shortcut; 1,210,948 parameters (132 layers)."""
    return create_model("vgg106", pretrained, **kwargs)
