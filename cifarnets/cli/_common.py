"""Arguments shared by the subcommands that build a model."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError
from ..layers import SHORTCUTS

__all__ = ["UsageError", "add_model_arguments", "model_kwargs"]


UsageError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


# CLI option -> create() keyword. Only options the user gives are passed on, so every model
# keeps the published defaults of its report for the rest.
_MODEL_OPTIONS = {
    "bn": "bn", "rc": "rc", "shortcut": "shortcut", "act": "act", "norm": "norm_layer", "width": "width",
    "init": "init", "num_classes": "num_classes", "in_chans": "in_chans", "drop_rate": "drop_rate",
}


def add_model_arguments(parser: argparse.ArgumentParser, *, with_name: bool = True) -> None:
    """``MODEL`` and the model flags that map to `cifarnets.create` keywords."""
    if with_name:
        parser.add_argument("model", metavar="MODEL", help="registered model name (see `cifarnets list`)")
    group = parser.add_argument_group("model flags (default: as the model's report published it)")
    group.add_argument("--bn", action=argparse.BooleanOptionalAction, default=None,
                       help="batch norm in the coursework VGG blocks")
    group.add_argument("--rc", action=argparse.BooleanOptionalAction, default=None,
                       help="residual connections in the coursework VGG blocks")
    group.add_argument("--shortcut", choices=SHORTCUTS, default=None, help="shortcut of blocks that change shape")
    group.add_argument("--act", default=None, help="activation: leaky_relu, relu, sigmoid, ...")
    group.add_argument("--norm", default=None,
                       help="norm layer: batchnorm, detached_batchnorm, groupnorm, ... or 'none'")
    group.add_argument("--width", type=int, default=None, help="filters per conv (coursework VGGs)")
    group.add_argument("--init", default=None, help="weight init: default, kaiming, xavier, orthogonal")
    group.add_argument("--num-classes", type=int, default=None, help="classifier outputs")
    group.add_argument("--in-chans", type=int, default=None, help="input channels")
    group.add_argument("--drop-rate", type=float, default=None, help="dropout of fixed FC heads")


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The `cifarnets.create` keywords the user set on the command line."""
    kwargs: dict[str, Any] = {}
    for option, keyword in _MODEL_OPTIONS.items():
        value = getattr(args, option, None)
        if value is None:
            continue
        if option == "norm" and value.lower() == "none":
            value = None
        kwargs[keyword] = value
    return kwargs
