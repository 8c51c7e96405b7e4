"""``cifarnets list`` and ``cifarnets info``."""

from __future__ import annotations

import argparse

from ..registry import list_models, model_info, model_table

__all__ = ["register"]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("list", help="list the registered models", description="List the registered models.")
    p.add_argument("filter", nargs="*", default=[], help="fnmatch patterns, e.g. 'vgg*'")
    p.add_argument("--names", action="store_true", help="names only, one per line")
    p.set_defaults(handler=_list)

    p = sub.add_parser("info", help="what a model is and where it comes from",
                       description="Family, source report, published flags, parameters and notes of a model.")
    p.add_argument("model", metavar="MODEL")
    p.set_defaults(handler=_info)


def _list(args: argparse.Namespace) -> int:
    names = list_models(args.filter)
    if not names:
        print(f"no model matches {' '.join(args.filter)}")
        return 1
    print("\n".join(names) if args.names else model_table(names))
    return 0


def _info(args: argparse.Namespace) -> int:
    print(model_info(args.model))
    return 0
