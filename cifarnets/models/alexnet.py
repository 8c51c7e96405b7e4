"""The AlexNet/VGG report's AlexNet adapted to CIFAR-10 (§2.1, Table 1).

Five 3x3 convolutions (64, 192, 384, 256, 256; stride 1, padding 1, bias, ReLU) with 2x2/2
max-pools after conv 1, 2 and 5, then FC 256·4·4 = 4096 → 4096 → 1024 → 10 with ReLU and
dropout 0.5 before FC2 and FC3: 23,238,474 parameters. The original's 11x11/4 first layer
does not suit 32x32 images, so the report replaces it.

Structurally it is a plain conv/max-pool stack with a fixed head, the same shape of network
as the AlexNet/VGG report's VGGs, so it is built by the same `VGG` machinery; its layers are named as the
report's receptive-field table names them (conv1, pool1, conv2, pool2, conv3-5, pool5).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ._factory import create_model
from ._registry import ModelCfg, register_model
from .vgg import SEED004_TITLE, VGG, VGGConfig

__all__ = ["AlexNetCifar"]


class AlexNetCifar(VGG):
    """The AlexNet/VGG report's CIFAR AlexNet: a `VGG` with AlexNet's layer layout and head.

    Example:
        >>> import torch
        >>> AlexNetCifar(ALEXNET_CIFAR)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """


ALEXNET_CIFAR = VGGConfig((64, "M", 192, "M", 384, 256, 256, "M"), hidden=(4096, 1024), naming="flat")

default_cfgs = {
    "alexnet_cifar": ModelCfg(
        family="alexnet", source="the AlexNet/VGG report (§2.1, Tables 1, 2, 5)", summary="5 conv (3x3) + 3 FC",
        paper_name=SEED004_TITLE, norm="cifar10", pool_size=(4, 4),
        fixed_input_size=True, first_conv="features.conv1", classifier="head.fc", published_params=23_238_474,
        notes="The AlexNet/VGG report: 87.81 % CIFAR-10 test accuracy after 40 epochs. Its printed receptive-field "
              "table uses the jump after each pool; the corrected sizes are 3, 4, 8, 10, 18, 26, 34, 38 (its §4.4, "
              "Table 2; docs/references.md).",
    ),
}


@register_model(model_cls=AlexNetCifar, arch=ALEXNET_CIFAR)
def alexnet_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """AlexNet for CIFAR-10 (the AlexNet/VGG report §2.1): 23,238,474 parameters."""
    return create_model("alexnet_cifar", pretrained, **kwargs)
