"""Weight initialisation schemes for the ``init=`` argument of the models.

The default, ``"default"``, leaves PyTorch's own initialisation in place (Kaiming-uniform
with a = sqrt(5) for conv and linear weights). The coursework reports' headline result, that plain
VGG38 does not train while BN or RC fix it (the VGG38 report, §6 and Table 1; the deeper-VGG
report, §2), depends on that default, so it must stay (docs/references.md: an inference).
"""

from __future__ import annotations

import torch.nn as nn

from .errors import UnknownNameError

__all__ = ["INIT_SCHEMES", "init_weights"]

INIT_SCHEMES = ("default", "kaiming", "xavier", "orthogonal")


def init_weights(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise conv and linear weights in place by `scheme`; biases become 0.

    ``"kaiming"``: He-normal, fan-out, for ReLU-family nets (He et al. 2015).
    ``"xavier"``: Glorot-uniform (Glorot & Bengio 2010). ``"orthogonal"``: Saxe et al. 2014.
    Norm layers get weight 1 and bias 0. ``"default"`` changes nothing.

    Example:
        >>> net = init_weights(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), "kaiming")
    """
    if scheme not in INIT_SCHEMES:
        raise UnknownNameError(f"unknown init {scheme!r}; use one of {list(INIT_SCHEMES)}")
    if scheme == "default":
        return model
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
