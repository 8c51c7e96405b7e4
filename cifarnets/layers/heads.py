"""The classifier head every zoo model ends with."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

__all__ = ["ClassifierHead"]


class ClassifierHead(nn.Module):
    """Pool or flatten, an optional hidden MLP, then the final linear layer ``fc``.

    With ``global_pool=True`` it is the GAP → Linear head of the coursework VGGs and the
    ResNets. With ``global_pool=False`` and `hidden` sizes it is the fixed fully connected
    head of seed 004's AlexNet/VGG nets: flatten → (Linear → ReLU → Dropout) per hidden
    size → Linear, which puts dropout before every linear layer but the first.

    ``num_classes=0`` makes ``fc`` an identity, so the model returns pre-logits (timm's
    convention for feature extraction).

    Example:
        >>> head = ClassifierHead(32, 100)
        >>> head(torch.randn(2, 32, 4, 4)).shape
        torch.Size([2, 100])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        global_pool: bool = True,
        hidden: Sequence[int] = (),
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.global_pool = nn.AdaptiveAvgPool2d(1) if global_pool else nn.Identity()
        self.flatten = nn.Flatten(1)
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(drop_rate)]
            width = size
        self.hidden = nn.Sequential(*layers)
        self.num_features = width
        self.fc: nn.Module = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        """Replace ``fc`` by a freshly initialised one with `num_classes` outputs."""
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(self.flatten(self.global_pool(x)))
        return x if pre_logits else self.fc(x)
