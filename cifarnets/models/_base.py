"""The timm model API that every zoo network shares."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..layers import ClassifierHead

__all__ = ["CifarNet"]


class CifarNet(nn.Module):
    """Base of the zoo networks: a trunk (`forward_features`) and a `ClassifierHead`.

    Subclasses set ``num_classes``, ``in_chans``, ``num_features`` (channels out of the
    trunk), ``head_hidden_size`` (width of the pre-logits) and ``head``, and implement
    `forward_features`. This gives every model timm's API (``forward_head(x,
    pre_logits=)``, ``get_classifier``, ``reset_classifier``), so generic tools (the
    trainer, gradient flow, receptive fields, timm's own helpers) work on all of them.
    """

    num_classes: int
    in_chans: int
    num_features: int
    head_hidden_size: int
    head: ClassifierHead
    model_name: str = "model"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classifier on trunk features; ``pre_logits=True`` stops before the last linear layer."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer for `num_classes` outputs (0: return pre-logits)."""
        self.num_classes = num_classes
        self.head.reset(num_classes)
        cfg = getattr(self, "pretrained_cfg", None)
        if isinstance(cfg, dict):
            cfg["num_classes"] = num_classes
