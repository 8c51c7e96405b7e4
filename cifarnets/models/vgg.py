"""Seed 004's classic VGG nets for CIFAR-10: VGG-16, VGG-16-BN and VGG-8.

A plain stack of 3x3 convolutions (stride 1, padding 1, bias, ReLU; BN before the ReLU in
the BN variant) and 2x2/2 max-pools, then a fixed fully connected head (seed 004 §2.2-2.4,
SPEC §1b)::

    VGG-16     [64,64,M,128,128,M,256x3,M,512x3,M,512x3,M]  FC 512 → 4096 → 4096 → 10   33,638,218
    VGG-16-BN  the same, BN after every conv                                          33,646,666
    VGG-8      [64,64,M,128,128,M,256,256,M,512,512,M]      FC 2048 → 4096 → 10        13,119,050

The head is ReLU + dropout 0.5 after every hidden FC layer. Seed 004's VGG-8 prose does
not mention dropout; it gets the same head as VGG-16 here (``drop_rate=`` changes it).

Seed 004's "VGG-8" (13.1 M parameters) is a different network from the coursework
"VGG08" (60 k), hence the registry name ``vgg8_classic``.

The head is fixed: it takes the feature map of a ``img_size`` input (32 by default) and
the model says so clearly if given another size.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.fx
import torch.nn as nn

from ..layers import ActLayer, ClassifierHead, NormLayer, check_input, get_act_layer, get_norm_layer, init_weights
from ._base import CifarNet
from ._builder import build_model
from ._registry import CIFAR10_MEAN, CIFAR10_STD, ModelCfg, register_model

__all__ = ["VGG", "VGGConfig"]

torch.fx.wrap("check_input")

LayerSpec = Union[int, str]  # output channels of a 3x3 conv, or "M" for a 2x2/2 max-pool


@dataclass(frozen=True)
class VGGConfig:
    """Conv stack (channels, with ``"M"`` for max-pools), hidden FC sizes and layer naming.

    ``naming="block"`` names layers ``conv{block}_{i}`` / ``pool{block}`` as seed 004's VGG
    tables do; ``"flat"`` numbers convs ``conv1``, ``conv2``, ... and names each pool after
    the conv before it, as its AlexNet table does (Pool1, Pool2, Pool5).
    """

    layers: tuple[LayerSpec, ...]
    hidden: tuple[int, ...]
    naming: str = "block"

    @property
    def pools(self) -> int:
        return sum(1 for spec in self.layers if spec == "M")


def _make_features(
    cfg: VGGConfig, in_chans: int, norm_layer: Any, act_layer: Any
) -> tuple[nn.Sequential, int]:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    chs, block, index, conv_count = in_chans, 1, 1, 0
    for spec in cfg.layers:
        if spec == "M":
            tag = str(block) if cfg.naming == "block" else str(conv_count)
            layers[f"pool{tag}"] = nn.MaxPool2d(kernel_size=2, stride=2)
            block, index = block + 1, 1
            continue
        conv_count += 1
        tag = f"{block}_{index}" if cfg.naming == "block" else str(conv_count)
        layers[f"conv{tag}"] = nn.Conv2d(chs, int(spec), kernel_size=3, padding=1, bias=True)
        if norm_layer is not None:
            layers[f"norm{tag}"] = norm_layer(int(spec))
        layers[f"act{tag}"] = act_layer()
        chs, index = int(spec), index + 1
    return nn.Sequential(layers), chs


class VGG(CifarNet):
    """A plain 3x3-conv/max-pool stack with a fixed fully connected head (seed 004).

    Args:
        arch: the layer layout (positional).
        num_classes, in_chans: classifier outputs and input channels.
        img_size: input side the fixed head is built for (32: CIFAR).
        norm_layer: normalisation after every conv (``None``: VGG-16, AlexNet; batch norm:
            VGG-16-BN).
        act: activation of the conv stack.
        drop_rate: dropout after every hidden FC layer (seed 004: 0.5).
        init: ``"default"`` keeps PyTorch's init, under which plain VGG-16 does not learn
            (seed 004 Table 5); ``"kaiming"`` etc.

    Example:
        >>> net = VGG(VGGConfig((16, "M", 32, "M"), hidden=(64,)), num_classes=10)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        arch: VGGConfig,
        /,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        img_size: int = 32,
        norm_layer: NormLayer = None,
        act: ActLayer = "relu",
        drop_rate: float = 0.5,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.reduction = 2 ** arch.pools
        if img_size < self.reduction:
            raise ValueError(f"img_size={img_size} is smaller than the network's down-sampling ({self.reduction})")
        self.arch = arch
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = img_size
        self.feature_size = (img_size // self.reduction, img_size // self.reduction)
        self.features, chs = _make_features(arch, in_chans, get_norm_layer(norm_layer), get_act_layer(act))
        self.num_features = chs
        flat = chs * self.feature_size[0] * self.feature_size[1]
        self.head = ClassifierHead(flat, num_classes, global_pool=False, hidden=arch.hidden, drop_rate=drop_rate)
        self.head_hidden_size = self.head.num_features
        init_weights(self, init)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input(x, self.in_chans, self.model_name, self.reduction, self.feature_size)
        return self.features(x)


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> VGG:
    return build_model(VGG, variant, default_cfgs[variant], pretrained, _ARCHS[variant], **kwargs)


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_ARCHS = {
    "vgg16": VGGConfig(_VGG16, hidden=(4096, 4096)),
    "vgg16_bn": VGGConfig(_VGG16, hidden=(4096, 4096)),
    "vgg8_classic": VGGConfig((64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M"), hidden=(4096,)),
}


def _cfg(source: str, summary: str, published_params: int, notes: str, **defaults: Any) -> ModelCfg:
    return ModelCfg(
        family="vgg", source=source, summary=summary, mean=CIFAR10_MEAN, std=CIFAR10_STD, fixed_input_size=True,
        first_conv="features.conv1_1", classifier="head.fc", defaults=defaults,
        published_params=published_params, notes=notes,
    )


default_cfgs = {
    "vgg16": _cfg(
        "seed 004 (§2.2, Tables 1, 5)", "13 conv + 3 FC, no BN", 33_638_218,
        "Without BN and at PyTorch's default init it does not learn: 10.00 % CIFAR-10 test accuracy in seed 004.",
    ),
    "vgg16_bn": _cfg(
        "seed 004 (§2.3, Tables 1, 5)", "13 conv + 3 FC, BN", 33_646_666,
        "BN after every conv, before the ReLU. Seed 004: 91.94 % CIFAR-10 test accuracy after 40 epochs.",
        norm_layer="batchnorm",
    ),
    "vgg8_classic": _cfg(
        "seed 004 (§2.4, Tables 1, 5)", "8 conv + 2 FC, no BN", 13_119_050,
        "Seed 004's 'VGG-8' (8 convs + 2 FC), not the coursework VGG08. Seed 004: 88.32 % after 40 epochs. "
        "The report does not say whether its head has dropout; here it has VGG-16's (0.5).",
    ),
}


@register_model
def vgg16(pretrained: bool = False, **kwargs: Any) -> VGG:
    """VGG-16 for CIFAR-10 (seed 004 §2.2): 33,638,218 parameters."""
    return _create("vgg16", pretrained, **kwargs)


@register_model
def vgg16_bn(pretrained: bool = False, **kwargs: Any) -> VGG:
    """VGG-16 with batch norm (seed 004 §2.3): 33,646,666 parameters."""
    return _create("vgg16_bn", pretrained, **kwargs)


@register_model
def vgg8_classic(pretrained: bool = False, **kwargs: Any) -> VGG:
    """Seed 004's VGG-8 (§2.4): 13,119,050 parameters; not the coursework ``vgg08``."""
    return _create("vgg8_classic", pretrained, **kwargs)
