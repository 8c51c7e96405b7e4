"""The ``cifarnets`` command: the only part of the package that prints.

Each subcommand lives in a module of this package with a ``register(subparsers)``
function; `main` wires them together.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import signal
import sys
from typing import Optional, Sequence

from .._utils import CifarnetsError
from .._version import __version__

__all__ = ["main", "build_parser"]

# Each subcommand's module and one-line help, in the order `cifarnets --help` lists them. The
# modules are imported only for the command that runs (`cifarnets list` never imports the
# training code, nor `--help` anything); tests/test_registry.py checks this table against what
# each module registers.
_COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("models", "list the registered models"),
    "info": ("models", "what a model is and where it comes from"),
    "train": ("train", "train a model (resumable run folder)"),
    "eval": ("train", "evaluate a checkpoint"),
    "sweep": ("sweep", "train a grid of runs (a grid file) into one sweep folder"),
    "rf": ("structure", "receptive field of every layer"),
    "summary": ("structure", "per-layer output shape, parameters and MACs"),
    "gradflow": ("analysis", "gradient flow of a network at initialisation (the VGG38 reports' Figs. 2, 3, 5)"),
    "plot": ("analysis", "training curves, gradient flow and results table of runs"),
    "compare": ("analysis", "do two cells (or runs) differ beyond their seed-to-seed spread?"),
    "export": ("export", "write a run's best checkpoint as a timm / Hugging Face Hub model folder"),
}
_MODULE_NAMES = list(dict.fromkeys(module for module, _ in _COMMANDS.values()))


def __getattr__(name: str) -> object:
    if name == "_COMMAND_MODULES":  # the subcommand modules, imported on first use
        return [importlib.import_module(f"{__name__}.{m}") for m in _MODULE_NAMES]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _version() -> str:
    import torch

    return f"cifarnets {__version__} (torch {torch.__version__.split('+')[0]})"


class _VersionAction(argparse.Action):
    """``--version``: the versions, computed only when asked for (torch's needs importing torch)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the cifarnets and torch versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(_version())
        parser.exit()


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser (used by `main` and the docs): every subcommand, or only the module of `command`.

    With a `command` other than a known one, the subcommands are listed (for ``--help``) without
    importing their modules.
    """
    parser = argparse.ArgumentParser(
        prog="cifarnets",
        description="CIFAR-scale networks of the vanishing-gradient, batch-norm and residual reports, and their tools.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if command is None:
        modules = _MODULE_NAMES
    elif command in _COMMANDS:
        modules = [_COMMANDS[command][0]]
    else:  # --help, --version, a typo: the list of commands is enough
        for name, (_, text) in _COMMANDS.items():
            sub.add_parser(name, help=text, add_help=False)
        return parser
    for module in modules:
        importlib.import_module(f"{__name__}.{module}").register(sub)
    return parser


def _command(argv: Sequence[str]) -> str:
    """The subcommand `argv` names ("" for none): the first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), "")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2), format="%(message)s", stream=sys.stderr
    )
    previous = signal.signal(signal.SIGTERM, _terminate) if _on_main_thread() else None
    try:
        return int(args.handler(args) or 0)
    except CifarnetsError as err:
        # cifarnets' own errors are written for people: the message, not the traceback. Anything
        # else is a bug and keeps its traceback.
        if args.verbose >= 2:
            raise
        print(f"cifarnets {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None or args.verbose >= 2:
            raise
        # A path the user named cannot be used (a file where a folder is needed, no permission, a full disk).
        where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        hint = ""
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = ("; nothing was written half: free some space and run the command again" +
                    (" (a run continues from its last saved epoch: cifarnets train --resume RUN_DIR)"
                     if args.command in ("train", "sweep") else ""))
        print(f"cifarnets {args.command}: error: {where}: {err.strerror or err}{hint}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated) as err:
        how = "terminated (SIGTERM)" if isinstance(err, _Terminated) else "interrupted"
        hint = ""
        if args.command == "train":
            hint = ": the run folder keeps its last finished epoch; `cifarnets train --resume RUN_DIR` continues it"
        elif args.command == "sweep":
            hint = ": finished cells are kept; run the same `cifarnets sweep` command again to continue"
        print(f"{how}{hint}", file=sys.stderr)
        return 143 if isinstance(err, _Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM, raised where the program is so that every ``finally`` (locks, temporary files) runs."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated()


def _on_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
