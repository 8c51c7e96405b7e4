"""The AlexNet/VGG report's classic VGG nets for CIFAR-10: VGG-16, VGG-16-BN and VGG-8.

A plain stack of 3x3 convolutions (stride 1, padding 1, bias, ReLU; BN before the ReLU in
the BN variant) and 2x2/2 max-pools, then a fixed fully connected head (the AlexNet/VGG
report, §2.2-2.4 and Table 1)::

    VGG-16     [64,64,M,128,128,M,256x3,M,512x3,M,512x3,M]  FC 512 → 4096 → 4096 → 10   33,638,218
    VGG-16-BN  the same, BN after every conv                                          33,646,666
    VGG-8      [64,64,M,128,128,M,256,256,M,512,512,M]      FC 2048 → 4096 → 10        13,119,050

The head is ReLU + dropout 0.5 after every hidden FC layer. That dropout is an inference
for VGG-16: the AlexNet/VGG report says only "similar regularization techniques as AlexNet" (whose FC
layers have dropout 0.5). Its VGG-8 prose does not mention dropout; it gets the same head as
VGG-16 here (``drop_rate=`` changes it).

The AlexNet/VGG report's "VGG-8" (13.1 M parameters) is a different network from the coursework
"VGG08" (60 k), hence the registry name ``vgg8_classic``.

The head is fixed: it takes the feature map of a ``img_size`` input (32 by default) and
the model says so clearly if given another size.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn as nn

from ..layers import ActLayer, InvalidValueError, NormLayer, get_act_layer, get_norm_layer, init_weights
from ._base import CifarNet, check_rate, with_bn_args
from ._factory import create_model
from ._registry import ModelCfg, register_model

__all__ = ["VGG", "VGGConfig"]

LayerSpec = Union[int, str]  # output channels of a 3x3 conv, or "M" for a 2x2/2 max-pool


@dataclass(frozen=True)
class VGGConfig:
    """Conv stack (channels, with ``"M"`` for max-pools), hidden FC sizes and layer naming.

    ``naming="block"`` names layers ``conv{block}_{i}`` / ``pool{block}`` as the AlexNet/VGG report's VGG
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
) -> tuple[nn.Sequential, int, list[tuple[str, int, int]]]:
    """The conv stack, its output channels, and (pool name, channels, reduction) per pool."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    chs, block, index, conv_count, reduction = in_chans, 1, 1, 0, 1
    pools = []
    for spec in cfg.layers:
        if spec == "M":
            tag = str(block) if cfg.naming == "block" else str(conv_count)
            layers[f"pool{tag}"] = nn.MaxPool2d(kernel_size=2, stride=2)
            reduction *= 2
            pools.append((f"pool{tag}", chs, reduction))
            block, index = block + 1, 1
            continue
        conv_count += 1
        tag = f"{block}_{index}" if cfg.naming == "block" else str(conv_count)
        layers[f"conv{tag}"] = nn.Conv2d(chs, int(spec), kernel_size=3, padding=1, bias=True)
        if norm_layer is not None:
            layers[f"norm{tag}"] = norm_layer(int(spec))
        layers[f"act{tag}"] = act_layer()
        chs, index = int(spec), index + 1
    return nn.Sequential(layers), chs, pools


class VGG(CifarNet):
    """A plain 3x3-conv/max-pool stack with a fixed fully connected head (the AlexNet/VGG report).

    Its feature levels are the outputs of the max-pools (one per resolution).

    Args:
        arch: the layer layout (positional).
        num_classes, in_chans: classifier outputs (0: none) and input channels.
        img_size: input side (an int or ``(H, W)``) the fixed head is built for (32: CIFAR).
        norm_layer: normalisation after every conv (``None``: VGG-16, AlexNet; batch norm:
            VGG-16-BN).
        bn: ``True`` adds batch norm after every conv (``norm_layer`` or batch norm),
            ``False`` removes it (``norm_layer=None``); ``None`` follows `norm_layer`.
        act: activation of the conv stack.
        drop_rate: dropout after every hidden FC layer, i.e. before each FC layer but the first
            (the AlexNet/VGG report: 0.5; timm's ``drop_rate``).
        global_pool: ``"flatten"`` (the published fixed head), ``"avg"``/``"max"`` (pool to
            1x1 first: the hidden FC layers then take `num_features` inputs and any input
            size works), or ``""`` (unpooled maps, with ``num_classes=0``).
        drop_path_rate, drop_block_rate: not supported (0 or None only): no residual path.
        bn_momentum, bn_eps: momentum and eps of the norm layers.
        init: ``"default"`` keeps PyTorch's init, under which plain VGG-16 does not learn
            (the AlexNet/VGG report Table 5); ``"kaiming"`` etc.

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
        img_size: Union[int, tuple[int, int]] = 32,
        norm_layer: NormLayer = None,
        bn: Optional[bool] = None,
        act: ActLayer = "relu",
        drop_rate: float = 0.5,
        global_pool: str = "flatten",
        drop_path_rate: Optional[float] = None,
        drop_block_rate: Optional[float] = None,
        bn_momentum: Optional[float] = None,
        bn_eps: Optional[float] = None,
        init: str = "default",
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, global_pool=global_pool)
        name = type(self).__name__
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        reduction = 2 ** arch.pools
        if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < reduction for v in size):
            raise InvalidValueError(f"img_size={img_size!r}: the fixed head needs an int (or (H, W)) of at least the "
                             f"network's down-sampling ({reduction}), e.g. img_size=32")
        check_rate("drop_path_rate", drop_path_rate, name, supported=False, why="a plain VGG has no residual path")
        check_rate("drop_block_rate", drop_block_rate, name, supported=False, why="DropBlock is not implemented")
        if bn and norm_layer is None:
            norm_layer = "batchnorm"
        elif bn is False:
            norm_layer = None
        norm = with_bn_args(get_norm_layer(norm_layer), bn_momentum, bn_eps, name)
        self.arch = arch
        self.img_size = size
        self.features, chs, pools = _make_features(arch, self.in_chans, norm, get_act_layer(act))
        if not pools:
            self.add_level(chs, 1, f"features.{list(self.features._modules)[-1]}")
        for pool, pool_chs, pool_reduction in pools:
            self.add_level(pool_chs, pool_reduction, f"features.{pool}")
        self.num_features, self.reduction = chs, reduction
        self.feature_size = (size[0] // reduction, size[1] // reduction)
        flat = chs * self.feature_size[0] * self.feature_size[1]
        self.init_head(chs if global_pool in ("avg", "max") else flat, hidden=arch.hidden,
                       hidden_drop_rate=self.drop_rate, drop_rate=0.0 if arch.hidden else self.drop_rate)
        init_weights(self, init)

    @classmethod
    def feature_levels(cls, arch: VGGConfig) -> int:
        return max(arch.pools, 1)  # one per max-pool

    checkpointed_trunk = "features"

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return self.forward_checkpointed(x)
        return self.features(x)

    def _level_ends(self) -> list[int]:
        names = list(self.features._modules)
        ends = [names.index(info["module"].split(".", 1)[1]) + 1 for info in self.feature_info]
        ends[-1] = len(names)  # layers after the last pool belong to the last level
        return ends

    def level_modules(self) -> list[nn.Module]:
        ends = self._level_ends()
        return [self.features[start:end] for start, end in zip([0, *ends[:-1]], ends)]

    def prune_levels(self, keep: int) -> None:
        self.features = self.features[: self._level_ends()[keep - 1]]

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay: conv blocks, then the head."""
        block = r"^features\.(?:conv|norm)(\d+)"
        fine = [(block + r"_(\d+)\.", None), (block + r"\.", None)]
        return dict(stem=r"^features\.(?:conv|norm)1(?:_1)?\.", blocks=block if coarse else fine)


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_ARCHS = {
    "vgg16": VGGConfig(_VGG16, hidden=(4096, 4096)),
    "vgg16_bn": VGGConfig(_VGG16, hidden=(4096, 4096)),
    "vgg8_classic": VGGConfig((64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M"), hidden=(4096,)),
}


SEED004_TITLE = "Comparative Study and Implementation of AlexNet and VGG Architectures on CIFAR-10 Dataset"


def _cfg(source: str, summary: str, published_params: int, notes: str, pool_size: tuple[int, int],
         **defaults: Any) -> ModelCfg:
    return ModelCfg(
        family="vgg", source=source, summary=summary, paper_name=SEED004_TITLE, norm="cifar10",
        fixed_input_size=True, pool_size=pool_size, first_conv="features.conv1_1", classifier="head.fc",
        defaults=defaults, published_params=published_params, notes=notes,
    )


default_cfgs = {
    "vgg16": _cfg(
        "the AlexNet/VGG report (§2.2, Tables 1, 5)", "13 conv + 3 FC, no BN", 33_638_218,
        "Without BN and at PyTorch's default init it does not learn: 10.00 % CIFAR-10 test accuracy in the "
        "AlexNet/VGG report. Its head's dropout 0.5 is an inference: the report says only 'similar "
        "regularization techniques as AlexNet' (whose FC layers have dropout 0.5).", (1, 1),
    ),
    "vgg16_bn": _cfg(
        "the AlexNet/VGG report (§2.3, Tables 1, 5)", "13 conv + 3 FC, BN", 33_646_666,
        "BN after every conv, before the ReLU. The AlexNet/VGG report: 91.94 % CIFAR-10 test accuracy after 40 epochs. "
        "Its head's dropout 0.5 is an inference, as for vgg16.", (1, 1),
        norm_layer="batchnorm",
    ),
    "vgg8_classic": _cfg(
        "the AlexNet/VGG report (§2.4, Tables 1, 5)", "8 conv + 2 FC, no BN", 13_119_050,
        "The AlexNet/VGG report's 'VGG-8' (8 convs + 2 FC), not the coursework VGG08. The report: 88.32 % "
        "after 40 epochs. "
        "The report does not say whether its head has dropout; here it has VGG-16's (0.5).", (2, 2),
    ),
}


@register_model(model_cls=VGG, arch=_ARCHS["vgg16"])
def vgg16(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """VGG-16 for CIFAR-10 (the AlexNet/VGG report §2.2): 33,638,218 parameters."""
    return create_model("vgg16", pretrained, **kwargs)


@register_model(model_cls=VGG, arch=_ARCHS["vgg16_bn"])
def vgg16_bn(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """VGG-16 with batch norm (the AlexNet/VGG report §2.3): 33,646,666 parameters."""
    return create_model("vgg16_bn", pretrained, **kwargs)


@register_model(model_cls=VGG, arch=_ARCHS["vgg8_classic"])
def vgg8_classic(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """The AlexNet/VGG report's VGG-8 (§2.4): 13,119,050 parameters; not the coursework ``vgg08``."""
    return create_model("vgg8_classic", pretrained, **kwargs)
