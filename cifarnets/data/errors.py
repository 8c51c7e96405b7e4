"""The error types of `cifarnets.data` for bad arguments (names, splits, presets, shapes).

Both derive from `cifarnets.CifarnetsError` (the command line prints them as one line) and from
the built-in a caller expects (``ValueError``/``TypeError``).
"""

from __future__ import annotations

from .._utils import CifarnetsError

__all__ = ["DataArgumentError", "DataTypeError"]


class DataArgumentError(CifarnetsError, ValueError):
    """An argument of a data function has a bad value (unknown preset, impossible split, ...)."""


class DataTypeError(CifarnetsError, TypeError):
    """An argument of a data function has the wrong type (float images, a list instead of an ImageSet, ...)."""
