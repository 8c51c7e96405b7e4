"""The classifier head every zoo model ends with."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .errors import InvalidValueError, UnknownNameError

__all__ = ["POOL_TYPES", "ClassifierHead"]

# timm's ``global_pool`` values this head takes: "avg"/"max" pool to 1x1, "flatten" keeps the
# whole map for a fixed fully connected head (the AlexNet/VGG report's nets), "" passes the
# unpooled feature maps through (timm's convention; only without a classifier).
POOL_TYPES = ("avg", "max", "flatten", "")


class ClassifierHead(nn.Module):
    """Pool or flatten, an optional hidden MLP, dropout, then the final linear layer ``fc``.

    With ``pool_type="avg"`` it is the GAP → Linear head of the coursework VGGs and the
    ResNets. With ``pool_type="flatten"`` and `hidden` sizes it is the fixed fully connected
    head of the AlexNet/VGG report's nets: flatten → (Linear → ReLU → Dropout) per hidden size
    → Linear, which puts dropout before every linear layer but the first.

    ``num_classes=0`` makes ``fc`` an identity, so the model returns pre-logits, and
    ``pool_type=""`` (only with ``num_classes=0``) returns the unpooled maps (timm's
    conventions for feature extraction). `drop_rate` is dropout right before ``fc`` (timm's
    ``drop_rate``); the hidden layers' dropout is `hidden_drop_rate`.

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
        pool_type: str = "avg",
        hidden: Sequence[int] = (),
        hidden_drop_rate: float = 0.0,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.hidden_sizes = tuple(hidden)
        self.drop_rate = drop_rate
        self.pool_type = ""
        self.global_pool: nn.Module = nn.Identity()
        self.flatten: nn.Module = nn.Identity()
        self._set_pool(pool_type, num_classes)
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(hidden_drop_rate)]
            width = size
        self.hidden = nn.Sequential(*layers)
        self.num_features = width
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else None
        self.fc: nn.Module = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def _set_pool(self, pool_type: str, num_classes: int) -> None:
        if pool_type not in POOL_TYPES:
            raise UnknownNameError(f"unknown global_pool {pool_type!r}; use one of {list(POOL_TYPES)}")
        if pool_type == "" and num_classes > 0:
            raise InvalidValueError(
                f"global_pool='' returns unpooled feature maps, which a classifier cannot take (num_classes="
                f"{num_classes}); pass num_classes=0 with it, or choose global_pool='avg'"
            )
        self.pool_type = pool_type
        pools = {"avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1)}
        self.global_pool = pools.get(pool_type, nn.Identity())
        self.flatten = nn.Flatten(1) if pool_type else nn.Identity()

    def reset(self, num_classes: int, pool_type: str | None = None) -> None:
        """Replace ``fc`` by a freshly initialised one with `num_classes` outputs (and the pooling)."""
        if pool_type is not None:
            if self.hidden_sizes and pool_type not in ("flatten", ""):
                raise InvalidValueError(
                    f"this head's hidden layers were built for the flattened feature map; global_pool={pool_type!r} "
                    "would change their input size. Use 'flatten' or '' here, or build the model with global_pool="
                )
            self._set_pool(pool_type, num_classes)
        elif self.pool_type == "" and num_classes > 0:
            self._set_pool("flatten" if self.hidden_sizes else "avg", num_classes)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.global_pool(x))
        if self.pool_type == "":
            return x  # unpooled feature maps: the hidden layers need a flat vector
        x = self.hidden(x)
        if self.drop is not None:
            x = self.drop(x)
        return x if pre_logits else self.fc(x)
