"""CIFAR ResNets: the ResNet-18 report's ResNet-18 and He et al. 2016's ResNet-20/32/44/56/110.

Both are a 3x3 stem at full resolution, stages of BasicBlocks (conv3x3 → BN → ReLU →
conv3x3 → BN → + shortcut → ReLU) whose first block may down-sample with stride 2, and a
global-average-pool linear classifier.

- ResNet-18 (the ResNet-18 report, "ResNet-18 Complete Structure"): stem 64; 4 stages x 2
  blocks of 64/128/256/512 channels, strides 1/2/2/2; 1x1 conv + BN projection where the
  shape changes. 11,173,962 parameters at 10 classes.
- ResNet-(6n+2) (He et al. 2016 §4.2, the source of the VGG38 reports' shortcut discussion): stem 16;
  3 stages x n blocks of 16/32/64 channels. The paper's CIFAR nets use option A, a
  parameter-free zero-padded strided identity (``shortcut="zeropad"``, the default);
  option B, ``"projection"``, adds 2,752 parameters. ResNet-20 has 269,722 parameters,
  ResNet-56 853,018 and ResNet-110 1,727,962. They are initialised as in the paper
  (He et al. 2015, ``init="kaiming"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, cast

import torch
import torch.nn as nn

from ..layers import (
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
from ._base import CifarNet, check_rate, conv_norm_act_stem, with_bn_args
from ._factory import create_model
from ._registry import ModelCfg, register_model

__all__ = ["BasicBlock", "CifarResNet", "ResNetConfig"]

_RESNET_SHORTCUTS = ("zeropad", "projection")


@dataclass(frozen=True)
class ResNetConfig:
    """Stem width, then per stage: output channels, BasicBlocks and the first block's stride."""

    stem_width: int
    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    strides: tuple[int, ...]

    @classmethod
    def feature_levels(cls, arch: ResNetConfig) -> int:
        return len(arch.widths) + 1  # the stem and each stage

    @property
    def depth(self) -> int:
        """Weighted layers: stem, two per block, classifier (projections not counted)."""
        return 2 + 2 * sum(self.blocks)


def _conv3x3(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3(stride) → BN → act → conv3x3 → BN → + shortcut(x) → act (He et al. 2016 Fig. 2).

    With `drop_path` > 0 the residual branch is dropped per sample (stochastic depth).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int,
        norm_layer: Optional[Callable[[int], nn.Module]],
        act_layer: Callable[[], nn.Module],
        shortcut: str,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_chs, out_chs, stride)
        self.norm1 = create_norm(norm_layer, out_chs)
        self.act1 = act_layer()
        self.conv2 = _conv3x3(out_chs, out_chs)
        self.norm2 = create_norm(norm_layer, out_chs)
        # "zeropad" and "projection" always give a module: a ResNet block always has its skip.
        self.shortcut = cast(nn.Module, create_shortcut(shortcut, in_chs, out_chs, stride, norm_layer))
        self.act2 = act_layer()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if self.drop_path is not None:
            out = self.drop_path(out)
        return self.act2(out + self.shortcut(x))


class CifarResNet(CifarNet):
    """A ResNet for 32x32 inputs built from a `ResNetConfig`.

    Args:
        arch: the stage layout (positional).
        num_classes, in_chans: classifier outputs (0: none) and input channels.
        shortcut: where a block changes shape, ``"zeropad"`` (option A) or ``"projection"``
            (option B: 1x1 strided conv + norm).
        norm_layer: normalisation after every conv, e.g. `cifarnets.DetachedBatchNorm2d`
            (the ResNet-18 report's experiment); ``None`` for none.
        bn: ``False`` is ``norm_layer=None`` (a ResNet without normalisation); ``True`` or
            ``None`` keep `norm_layer` (batch norm by default). ``bn=True`` with
            ``norm_layer=None`` is a contradiction and raises.
        act: activation name or class.
        init: ``"default"`` (PyTorch's) or ``"kaiming"``, ``"xavier"``, ``"orthogonal"``.
        global_pool: ``"avg"`` (the papers), ``"max"``, or ``""`` (unpooled, with ``num_classes=0``).
        drop_rate: dropout before the classifier (the papers: none).
        drop_path_rate: stochastic depth of the residual branches, rising linearly to this value.
        drop_block_rate: not supported (0 or None only).
        bn_momentum, bn_eps: momentum and eps of every norm layer.

    Example:
        >>> net = CifarResNet(ResNetConfig(16, (16, 32, 64), (1, 1, 1), (1, 2, 2)), num_classes=10)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        arch: ResNetConfig,
        /,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        shortcut: str = "zeropad",
        norm_layer: NormLayer = "batchnorm",
        bn: Optional[bool] = None,
        act: ActLayer = "relu",
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
        if shortcut not in _RESNET_SHORTCUTS:
            raise UnknownNameError(f"unknown shortcut {shortcut!r} for a ResNet; use one of {list(_RESNET_SHORTCUTS)}")
        if not len(arch.widths) == len(arch.blocks) == len(arch.strides):
            raise InvalidValueError(f"widths, blocks and strides need one entry per stage: {arch}")
        if bn and norm_layer is None:
            raise InvalidValueError("bn=True needs a norm layer, but norm_layer=None; drop one of the two")
        norm = with_bn_args(get_norm_layer(None if bn is False else norm_layer), bn_momentum, bn_eps, name)
        dpr = check_rate("drop_path_rate", drop_path_rate, name)
        check_rate("drop_block_rate", drop_block_rate, name, supported=False, why="DropBlock is not implemented")
        act_layer = get_act_layer(act)
        self.arch = arch
        self.shortcut = shortcut

        self.stem = conv_norm_act_stem(self.in_chans, arch.stem_width, norm, act_layer)
        self.add_level(arch.stem_width, 1, "stem.act")
        total, index = sum(arch.blocks), 0
        stages = []
        in_chs, reduction = arch.stem_width, 1
        for s, (width, depth, stride) in enumerate(zip(arch.widths, arch.blocks, arch.strides)):
            blocks = []
            for i in range(depth):
                rate = dpr * index / max(total - 1, 1)
                blocks.append(BasicBlock(in_chs, width, stride if i == 0 else 1, norm, act_layer, shortcut, rate))
                in_chs, index = width, index + 1
            stages.append(nn.Sequential(*blocks))
            reduction *= stride
            self.add_level(width, reduction, f"stages.{s}")
        self.stages = nn.Sequential(*stages)
        self.init_head(in_chs)
        init_weights(self, init)

    @classmethod
    def feature_levels(cls, arch: ResNetConfig) -> int:
        return len(arch.widths) + 1  # the stem and each stage

    @property
    def depth(self) -> int:
        """Weighted layers as the paper counts them (6n + 2 for the CIFAR ResNets)."""
        return self.arch.depth


def _he2016(n: int) -> ResNetConfig:
    return ResNetConfig(stem_width=16, widths=(16, 32, 64), blocks=(n, n, n), strides=(1, 2, 2))


_ARCHS = {
    "resnet18": ResNetConfig(stem_width=64, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), strides=(1, 2, 2, 2)),
    **{f"resnet{6 * n + 2}": _he2016(n) for n in (3, 5, 7, 9, 18)},
}

_HE2016_PARAMS = {"resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
                  "resnet110": 1_727_962}


def _he2016_cfg(variant: str) -> ModelCfg:
    return ModelCfg(
        family="cifar_resnet",
        source="He et al. 2016 (§4.2, Table 6)",
        summary=f"3 stages x {_ARCHS[variant].blocks[0]} BasicBlocks, 16-64 ch, option A shortcuts",
        paper_name="Deep Residual Learning for Image Recognition", paper_ids="arXiv:1512.03385",
        norm="cifar10", pool_size=(8, 8), min_input_size=(3, 4, 4),
        defaults={"shortcut": "zeropad", "init": "kaiming"},
        published_params=_HE2016_PARAMS[variant],
        notes="Option A (zero-padded identity) shortcuts as in the paper; shortcut='projection' (option B) adds "
              "2,752 parameters. He-normal initialisation as in the paper. The paper subtracts the per-pixel mean "
              "only; the card's "
              "normalisation is the CIFAR-10 preset.",
    )


default_cfgs = {
    "resnet18": ModelCfg(
        family="cifar_resnet",
        source="the ResNet-18 report ('ResNet-18 Complete Structure', Tables 1-5)",
        summary="4 stages x 2 BasicBlocks, 64-512 ch, 1x1 projections",
        paper_name="Hyperparameter Tuning and Custom Batch Normalization for ResNet-18 on CIFAR-10",
        norm="cifar10_seed000", pool_size=(4, 4), min_input_size=(3, 8, 8),
        defaults={"shortcut": "projection"},
        published_params=11_173_962,
        notes="3x3 stem, no max-pool; 1x1 conv + BN projections where the shape changes. The ResNet-18 report: 95.10 % "
              "CIFAR-10 test accuracy; with norm_layer=cifarnets.DetachedBatchNorm2d it trains to only ~22 %.",
    ),
    **{name: _he2016_cfg(name) for name in _HE2016_PARAMS},
}


@register_model(model_cls=CifarResNet, arch=_ARCHS["resnet18"])
def resnet18(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 for CIFAR (the ResNet-18 report): 11,173,962 parameters at 10 classes."""
    return create_model("resnet18", pretrained, **kwargs)


@register_model(model_cls=CifarResNet, arch=_ARCHS["resnet20"])
def resnet20(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-20 (He et al. 2016, n=3, option A): 269,722 parameters."""
    return create_model("resnet20", pretrained, **kwargs)


@register_model(model_cls=CifarResNet, arch=_ARCHS["resnet32"])
def resnet32(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-32 (He et al. 2016, n=5, option A): 464,154 parameters."""
    return create_model("resnet32", pretrained, **kwargs)


@register_model(model_cls=CifarResNet, arch=_ARCHS["resnet44"])
def resnet44(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-44 (He et al. 2016, n=7, option A): 658,586 parameters."""
    return create_model("resnet44", pretrained, **kwargs)


@register_model(model_cls=CifarResNet, arch=_ARCHS["resnet56"])
def resnet56(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-56 (He et al. 2016, n=9, option A): 853,018 parameters."""
    return create_model("resnet56", pretrained, **kwargs)


@register_model(model_cls=CifarResNet, arch=_ARCHS["resnet110"])
def resnet110(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-110 (He et al. 2016, n=18, option A): 1,727,962 parameters."""
    return create_model("resnet110", pretrained, **kwargs)
