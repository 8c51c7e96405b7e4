"""The ``cifarnets`` command: the only part of the package that prints.

Each subcommand lives in a module of this package with a ``register(subparsers)``
function; `main` wires them together.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
from typing import Optional, Sequence

from .._utils import CifarnetsError
from . import analysis as _analysis_cmds
from . import export as _export_cmds
from . import models as _models_cmds
from . import structure as _structure_cmds
from . import sweep as _sweep_cmds
from . import train as _train_cmds

__all__ = ["main", "build_parser"]

_COMMAND_MODULES = [_models_cmds, _train_cmds, _sweep_cmds, _structure_cmds, _analysis_cmds, _export_cmds]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (used by `main` and the docs)."""
    parser = argparse.ArgumentParser(
        prog="cifarnets",
        description="CIFAR-scale networks of the vanishing-gradient, batch-norm and residual reports, and their tools.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
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
