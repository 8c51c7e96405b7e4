"""Arguments shared by the subcommands that build a model."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError

__all__ = ["UsageError", "add_model_arguments", "add_option", "model_kwargs"]


UsageError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


def add_option(group: "argparse._ArgumentGroup", option: Any) -> None:
    """The command-line flag of a `cifarnets.train.spec.Option` (model and data options)."""
    import typing

    hint = option.type
    if typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    kwargs: dict[str, Any] = {"dest": option.name, "default": None, "help": option.help}
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif option.choices:
        kwargs["choices"] = option.choices
    elif hint in (int, float):
        kwargs["type"] = hint
    group.add_argument(option.flag, **kwargs)


def add_model_arguments(parser: argparse.ArgumentParser, *, with_name: bool = True) -> None:
    """``MODEL`` and the model flags (`cifarnets.train.spec.MODEL_OPTIONS`: one table for CLI and grids)."""
    from ..train.spec import MODEL_OPTIONS

    if with_name:
        parser.add_argument("model", metavar="MODEL", help="registered model name (see `cifarnets list`)")
    group = parser.add_argument_group("model flags (default: as the model's report published it)")
    for option in MODEL_OPTIONS:
        add_option(group, option)


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The `cifarnets.create` keywords the user set on the command line."""
    from ..train.spec import MODEL_OPTIONS

    kwargs: dict[str, Any] = {}
    for option in MODEL_OPTIONS:
        value = getattr(args, option.name, None)
        if value is None:
            continue
        if option.target == "norm_layer" and value.lower() == "none":
            value = None
        kwargs[option.target] = value
    return kwargs
