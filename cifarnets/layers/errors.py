"""The error types of the layers and models for bad arguments: names, values, types, inputs.

Each derives from `cifarnets.CifarnetsError` (the command line prints it as one line) and from
the built-in a caller expects (``ValueError``/``TypeError``), so ``except ValueError`` keeps
working. The models' registry adds its own (unknown model name, unknown keyword, no weights)
in `cifarnets.models`.
"""

from __future__ import annotations

from ..errors import ConfigError, ConfigTypeError, ModelError

__all__ = [
    "AlreadyRegisteredError", "ArgumentTypeError", "InputError", "InputTypeError", "InvalidValueError",
    "UnknownNameError",
]


UnknownNameError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


InvalidValueError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


ArgumentTypeError = ConfigTypeError  # kept name; the kind is cifarnets.errors.ConfigTypeError


AlreadyRegisteredError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


InputError = ModelError  # kept name; the kind is cifarnets.errors.ModelError


InputTypeError = ConfigTypeError  # kept name; the kind is cifarnets.errors.ConfigTypeError

