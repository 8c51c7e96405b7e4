"""Parameter-free and projection shortcuts for residual blocks that change resolution.

He et al. 2016 (§4.2, CIFAR) name the two choices the reports discuss (the VGG38 report §5.1):
option A, a strided identity with zero-padded extra channels, and option B, a strided 1x1
projection. The deeper-VGG report (Algorithm 1) uses a third: the identity average-pooled like the
main path.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import InvalidValueError, UnknownNameError

__all__ = ["SHORTCUTS", "ZeroPadShortcut", "create_shortcut"]

SHORTCUTS = ("none", "avgpool", "zeropad", "projection")


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. 2016: keep every `stride`-th pixel and append zero channels.

    Parameter-free. The subsampling is written as a 1x1 average pool (the same as
    ``x[:, :, ::s, ::s]``) so that graph tools see an ordinary pooling op.

    Example:
        >>> ZeroPadShortcut(16, 32, stride=2)(torch.ones(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 2) -> None:
        super().__init__()
        if out_chs < in_chs:
            raise InvalidValueError(
                f"a zero-pad shortcut cannot shrink channels ({in_chs} -> {out_chs}); use 'projection'"
            )
        self.in_chs, self.out_chs, self.stride = in_chs, out_chs, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, kernel_size=1, stride=self.stride)
        if self.out_chs > self.in_chs:
            # The new channels follow the old ones, as in the paper's Torch code.
            x = F.pad(x, (0, 0, 0, 0, 0, self.out_chs - self.in_chs))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_chs}, {self.out_chs}, stride={self.stride}"


def create_shortcut(
    kind: str,
    in_chs: int,
    out_chs: int,
    stride: int,
    norm_layer: Optional[Callable[[int], nn.Module]] = None,
) -> Optional[nn.Module]:
    """Build the shortcut of a block that maps `in_chs` at full size to `out_chs` at 1/`stride`.

    Returns ``None`` for ``kind="none"`` (the block has no skip connection) and an
    ``nn.Identity`` when the shapes already match.

    Example:
        >>> conv, norm = create_shortcut("projection", 16, 32, 2, nn.BatchNorm2d)
        >>> conv
        Conv2d(16, 32, kernel_size=(1, 1), stride=(2, 2), bias=False)
        >>> type(norm).__name__, norm.num_features
        ('BatchNorm2d', 32)
    """
    if kind not in SHORTCUTS:
        raise UnknownNameError(f"unknown shortcut {kind!r}; use one of {list(SHORTCUTS)}")
    if kind == "none":
        return None
    if in_chs == out_chs and stride == 1:
        return nn.Identity()
    if kind == "projection":
        layers: list[nn.Module] = [nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False)]
        if norm_layer is not None:
            layers.append(norm_layer(out_chs))
        return nn.Sequential(*layers)
    if kind == "avgpool":
        if in_chs != out_chs:
            raise InvalidValueError(
                f"an average-pool shortcut keeps channels ({in_chs} != {out_chs}); use 'zeropad' or 'projection'"
            )
        return nn.AvgPool2d(stride)
    return ZeroPadShortcut(in_chs, out_chs, stride)
