"""``cifarnets rf`` and ``cifarnets summary``: a network's structure, without training it."""

from __future__ import annotations

import argparse
from typing import Any, Callable

import torch

from ..analysis import receptive_field, summary
from ..errors import ConfigError
from ..registry import create
from ._common import add_model_arguments, model_kwargs

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``rf`` and ``summary`` subcommands to `sub`."""
    p = _structure_parser(
        sub, "rf", _rf, help="receptive field of every layer",
        description="Receptive field, jump and centre after every spatial layer, traced from the module graph "
                    "(the AlexNet/VGG report's §4, with its corrections: docs/references.md).",
    )
    p.add_argument("--features", action="store_true", help="trace forward_features only (the conv trunk)")
    p.add_argument("--hull", action="store_true",
                   help="where misaligned paths merge, take the hull of their windows instead of failing")
    _structure_parser(
        sub, "summary", _summary, help="per-layer output shape, parameters and MACs",
        description="Per-layer output shape, parameters and multiply-accumulates for one image, counted with "
                    "torch.utils.flop_counter.",
    )


def _structure_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str,
                      handler: Callable[[argparse.Namespace], int],
                      **texts: Any) -> argparse.ArgumentParser:
    """A subcommand that builds a model and prints one of its tables: the model, its input size, --markdown."""
    p = sub.add_parser(name, **texts)
    add_model_arguments(p)
    p.add_argument("--input-size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"))
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(handler=handler)
    return p


def _meta_model(args: argparse.Namespace) -> torch.nn.Module:
    if min(args.input_size) < 1:
        raise ConfigError(f"--input-size takes H W, two positive integers (e.g. --input-size 32 32); got "
                          f"{args.input_size[0]} {args.input_size[1]}")
    # Structure only: the meta device allocates and initialises nothing, even for VGG-16.
    with torch.device("meta"):
        return create(args.model, **model_kwargs(args))


def _rf(args: argparse.Namespace) -> int:
    model = _meta_model(args)
    table = receptive_field(model, (int(getattr(model, "in_chans", 3)), *args.input_size),
                            method="forward_features" if args.features else "forward", strict=not args.hull)
    print(table.to_markdown() if args.markdown else table)
    return 0


def _summary(args: argparse.Namespace) -> int:
    model = _meta_model(args)
    result = summary(model, (int(getattr(model, "in_chans", 3)), *args.input_size))
    print(result.to_markdown() if args.markdown else result)
    return 0
