"""The error types of `cifarnets.data` for bad arguments (names, splits, presets, shapes).

Both derive from `cifarnets.CifarnetsError` (the command line prints them as one line) and from
the built-in a caller expects (``ValueError``/``TypeError``).
"""

from __future__ import annotations

from ..errors import ConfigTypeError, DataError

__all__ = ["DataArgumentError", "DataTypeError"]


DataArgumentError = DataError  # kept name; the kind is cifarnets.errors.DataError


DataTypeError = ConfigTypeError  # kept name; the kind is cifarnets.errors.ConfigTypeError

