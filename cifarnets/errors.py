"""The errors cifarnets raises about its input, one class per kind of input.

Every error a user can cause (a bad setting, model name, data set, run folder or file) is one of
these; the message names the problem and the fix, and the command line prints it as one line
(``cifarnets CMD: error: ...``). Any other exception is a bug and keeps its traceback. Each class
also derives from the built-in a caller would expect, so ``except ValueError`` or
``except FileNotFoundError`` keeps working::

    CifarnetsError
    ├── ConfigError (ValueError)          a setting: CLI option, grid key, keyword, name in a table
    │   └── ConfigTypeError (TypeError)   ... of the wrong type
    ├── ModelError (ValueError)           a model: unknown name, input it cannot take, weights
    │   ├── ModelNotFoundError (FileNotFoundError)
    │   └── NoWeightsError (NotImplementedError)
    ├── DataError (ValueError)            a data set: unknown, damaged, empty split
    │   └── DataNotFoundError (FileNotFoundError)
    ├── RunError (RuntimeError)           a run folder or a run: locked, diverged, not resumable
    │   ├── TrainingDivergedError         the loss grew by orders of magnitude
    │   │   └── NonFiniteLossError        ... or became NaN/inf
    │   ├── RunNotFoundError (FileNotFoundError)
    │   └── RunExistsError (FileExistsError)
    └── CheckpointError (RuntimeError)    a saved file: damaged, foreign, unreadable
        └── CheckpointNotFoundError (FileNotFoundError)

This module sits at the bottom of the package and imports nothing from it.
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
    "CheckpointError", "CheckpointNotFoundError", "CifarnetsError", "ConfigError", "ConfigTypeError", "DataError",
    "DataNotFoundError", "ModelError", "ModelNotFoundError", "NoWeightsError", "NonFiniteLossError", "RunError",
    "RunExistsError", "RunNotFoundError", "TrainingDivergedError",
]


class CifarnetsError(Exception):
    """Base of every error cifarnets raises about its input: a bad setting, file or run folder."""


class ConfigError(CifarnetsError, ValueError):
    """A setting that cannot be used: an unknown option, name or keyword, a value out of range,
    a grid file that does not parse, a resume that would change what a run means.

    `problems` lists each problem when one check found several (the message joins them).
    """

    def __init__(self, message: str = "", problems: "Sequence[str]" = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


class ConfigTypeError(ConfigError, TypeError):
    """A setting or argument of the wrong type (a string where a bool is expected, ...)."""


class ModelError(CifarnetsError, ValueError):
    """A model that cannot be built or run as asked: an unknown name, a batch of the wrong shape,
    weights that do not fit the architecture, a model the analysis cannot read."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """A model folder or hub repository that is not there."""


class NoWeightsError(ModelError, NotImplementedError):
    """``pretrained=True`` for a model that has no published weights."""


class DataError(CifarnetsError, ValueError):
    """A data set that cannot be used: unknown, damaged, failed to download, or a split left empty."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data set whose files are not on disk (the message says how to download them)."""


class RunError(CifarnetsError, RuntimeError):
    """A run that cannot go on: its folder is locked or unusable, training diverged, the
    device or process group is not there, an export cannot be written."""


class TrainingDivergedError(RunError):
    """The training loss grew by orders of magnitude (``config.diverge_factor`` x chance); the run
    stopped. Its last good epoch is saved; `epoch`, `step` and `value` say where and what."""

    def __init__(self, message: str, *, epoch: int, step: int, value: float) -> None:
        super().__init__(message)
        self.epoch, self.step, self.value = epoch, step, value


class NonFiniteLossError(TrainingDivergedError):
    """The training loss became NaN or infinite; the run stopped (its last good epoch is saved)."""


class RunNotFoundError(RunError, FileNotFoundError):
    """A folder that holds no run (or not the file asked for)."""


class RunExistsError(RunError, FileExistsError):
    """A new run asked for in a folder that already holds one."""


class CheckpointError(CifarnetsError, RuntimeError):
    """A saved file that cannot be trusted: damaged (its checksum does not match), written by
    another run, unreadable, or not what its name says."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file that is not there."""
