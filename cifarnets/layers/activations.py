"""Activation factory for the models' ``act=`` argument."""

from __future__ import annotations

from typing import Callable, Union

import torch.nn as nn

from .errors import ArgumentTypeError, InvalidValueError, UnknownNameError

__all__ = ["ActLayer", "act_layer_name", "get_act_layer", "list_act_layers"]

ActLayer = Union[str, Callable[[], nn.Module]]

# torch's own classes (not timm's wrappers) so that models pickle and print plainly.
# Leaky ReLU keeps PyTorch's default slope 0.01, the coursework networks' activation (the VGG38 report §5,
# the deeper-VGG report's Algorithm 1; the slope is inferred: docs/references.md).
_ACT_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def list_act_layers() -> list[str]:
    """Names that ``act=`` accepts."""
    return sorted(_ACT_LAYERS)


def get_act_layer(act: ActLayer) -> Callable[[], nn.Module]:
    """Resolve ``act=`` (a name from `list_act_layers()` or a module class) to a constructor.

    Example:
        >>> get_act_layer("leaky_relu")()
        LeakyReLU(negative_slope=0.01)
        >>> get_act_layer(nn.ReLU)()
        ReLU()
    """
    if callable(act):
        return act
    if isinstance(act, str):
        key = act.lower().replace("-", "_")
        if key in _ACT_LAYERS:
            return _ACT_LAYERS[key]
        raise UnknownNameError(
            f"unknown act {act!r}; use one of {list_act_layers()} or a module class such as torch.nn.ReLU"
        )
    raise ArgumentTypeError(f"act must be a name or a module class, not {type(act).__name__}")



def act_layer_name(act: ActLayer) -> str:
    """The name `get_act_layer` resolves to `act` (for configs written to JSON).

    Example:
        >>> act_layer_name(nn.LeakyReLU)
        'leaky_relu'
    """
    if isinstance(act, str):
        return act
    for name, layer in _ACT_LAYERS.items():
        if layer is act:
            return name
    raise InvalidValueError(
        f"act {act!r} has no name in {list_act_layers()}, so it cannot be written to a config; pass a name"
    )
