"""The error types of the layers and models for bad arguments: names, values, types, inputs.

Each derives from `cifarnets.CifarnetsError` (the command line prints it as one line) and from
the built-in a caller expects (``ValueError``/``TypeError``), so ``except ValueError`` keeps
working. The models' registry adds its own (unknown model name, unknown keyword, no weights)
in `cifarnets.models`.
"""

from __future__ import annotations

from .._utils import CifarnetsError

__all__ = [
    "AlreadyRegisteredError", "ArgumentTypeError", "InputError", "InputTypeError", "InvalidValueError",
    "UnknownNameError",
]


class UnknownNameError(CifarnetsError, ValueError):
    """A name that is not in its table: an activation, norm layer, shortcut, init scheme,
    normalisation preset or pooling. The message lists the valid names."""


class InvalidValueError(CifarnetsError, ValueError):
    """A keyword with a value the layer or model cannot use; the message names the argument,
    the value and the fix."""


class ArgumentTypeError(CifarnetsError, TypeError):
    """An argument of the wrong type (a number where a name or class is expected, ...)."""


class AlreadyRegisteredError(CifarnetsError, ValueError):
    """A name registered twice (a model or a norm layer): the first one is never replaced."""


class InputError(CifarnetsError, ValueError):
    """A batch a model cannot take: wrong number of dimensions, channels or spatial size."""


class InputTypeError(CifarnetsError, TypeError):
    """A batch of a dtype a model cannot take (integers instead of floats)."""
