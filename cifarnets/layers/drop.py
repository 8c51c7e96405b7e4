"""Stochastic depth (drop path): the residual branch of a block dropped per sample.

The same computation as timm's ``timm.layers.DropPath`` (drop_prob, scale_by_keep), written here
so that the models need no timm at import time.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["DropPath", "drop_path"]


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True
              ) -> torch.Tensor:
    """Zero whole samples of `x` with probability `drop_prob` in training (rescaling the kept ones).

    Example:
        >>> drop_path(torch.ones(2, 3), 0.5, training=False).sum().item()
        6.0
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


class DropPath(nn.Module):
    """`drop_path` as a layer: ``DropPath(0.1)`` in a residual branch."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"
