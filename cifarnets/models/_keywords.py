"""The keywords a registered model takes, their types and defaults, and the check every build runs.

A model's keywords are declared once, by its class: the ``__init__`` parameters and their
annotations (``bn: bool = False``, ``width: int = 32``, ``norm_layer: NormLayer = ...``), with
the published values of its `ModelCfg` over the class defaults. `model_keywords` reads them;
`check_model_kwargs` checks a keyword dict against them without building anything, so the
command line, the sweep grid and `cifarnets.create` refuse ``bn="false"`` the same way::

    >>> check_model_kwargs("vgg38", {"bn": True, "width": 16})
    {'bn': True, 'width': 16}
    >>> check_model_kwargs("vgg38", {"bn": "false"})
    Traceback (most recent call last):
    ...
    cifarnets.errors.ConfigTypeError: bn must be true or false, got 'false' (str)

A user-registered model's keywords are its entry point's parameters (``pretrained`` and
``**kwargs`` aside); with ``**kwargs`` it takes any keyword, so only the annotated ones are checked.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Union

from ..errors import ConfigTypeError, ModelError
from ._registry import UnknownKeywordError, entrypoints, model_builds, model_cfgs

__all__ = ["BUILDER_KWARGS", "ModelKeyword", "check_model_kwargs", "describe_type", "model_keywords", "type_matches"]

# Keywords the factory consumes rather than the model class (timm's create_model passes them all).
BUILDER_KWARGS = (
    "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "pretrained_model_args", "features_only", "out_indices",
    "feature_cls",
)

_NONE = type(None)


@dataclass(frozen=True)
class ModelKeyword:
    """One keyword of a registered model.

    Attributes:
        name: the keyword.
        type: its annotation, e.g. ``bool``, ``Optional[str]``, ``Union[int, tuple[int, int]]``
            (``typing.Any`` when the model does not annotate it).
        default: what the model gets when the keyword is not given: the published value
            (the model's `ModelCfg` defaults, classes and input channels) or the class default.
        scalar: ``bool``, ``int``, ``float`` or ``str`` when the keyword takes one such value
            (optionally ``None``), else ``None``: what a command line or a grid file can
            spell; `describe_type` says the rest in words.
    """

    name: str
    type: Any
    default: Any
    scalar: Any = None

    @property
    def optional(self) -> bool:
        """True if ``None`` is a valid value."""
        return type_matches(None, self.type)


def _scalar(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not _NONE] if _is_union(annotation) else [annotation]
    return args[0] if len(args) == 1 and args[0] in (bool, int, float, str) else None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) is Union or isinstance(annotation, getattr(types, "UnionType", ()))


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: treat every keyword as untyped
        return {}


def _signature_keywords(fn: Callable[..., Any], skip: tuple[str, ...]) -> tuple[dict[str, inspect.Parameter], bool]:
    params = inspect.signature(fn).parameters
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in skip}
    return named, any(p.kind is p.VAR_KEYWORD for p in params.values())


def _keywords(name: str) -> tuple[dict[str, ModelKeyword], bool]:
    """The keywords of `name` and whether it also takes any other keyword (a ``**kwargs`` entry point)."""
    if name not in entrypoints():
        raise ModelError(f"unknown model {name!r} (cifarnets.list_models(), or `cifarnets list`, lists them)")
    build = model_builds().get(name)
    if build is None:  # a user model: its entry point's own parameters
        fn = entrypoints()[name]
        params, open_ended = _signature_keywords(fn, ("pretrained",))
        hints, defaults = _hints(fn), {}
    else:
        params, open_ended = _signature_keywords(build.model_cls, ())
        hints = _hints(build.model_cls.__init__)  # type: ignore[misc]  # the class's own signature
        cfg = model_cfgs()[name]
        defaults = {"num_classes": cfg.num_classes, "in_chans": cfg.input_size[0], **cfg.defaults}
        if cfg.fixed_input_size and "img_size" in params:
            defaults["img_size"] = cfg.input_size[1:]
        open_ended = False
    out = {}
    for key, param in params.items():
        annotation = hints.get(key, Any)
        default = defaults.get(key, None if param.default is param.empty else param.default)
        out[key] = ModelKeyword(key, annotation, default, _scalar(annotation))
    return out, open_ended


def model_keywords(name: str) -> dict[str, ModelKeyword]:
    """Every keyword the registered model `name` takes, with its type and default, by name.

    Example:
        >>> kw = model_keywords("vgg38")
        >>> kw["bn"].type, kw["bn"].default, kw["width"].scalar, kw["num_classes"].default
        (<class 'bool'>, False, <class 'int'>, 100)
        >>> model_keywords("vgg68")["rc"].default   # the published value
        True
    """
    return _keywords(name)[0]


def type_matches(value: Any, annotation: Any) -> bool:
    """True if `value` is of the annotated type (``bool`` is not an ``int``; an ``int`` is a ``float``;
    a list is a ``tuple[...]`` of the right length; anything unknown matches)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is None or annotation is _NONE:
        return value is None
    if _is_union(annotation):
        return any(type_matches(value, a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Literal:
        return isinstance(value, str) and value in typing.get_args(annotation)
    if typing.get_origin(annotation) is dict:
        return isinstance(value, dict)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple or origin is list:
        if not isinstance(value, (tuple, list)):
            return False
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return all(type_matches(v, args[0]) for v in value) if args else True
        return len(value) == len(args) and all(type_matches(v, a) for v, a in zip(value, args))
    if annotation is collections.abc.Callable or origin is collections.abc.Callable or annotation is Callable:
        return callable(value)
    if origin is type:
        return isinstance(value, type)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def describe_type(annotation: Any) -> str:
    """`annotation` in words, for messages: ``Optional[bool]`` -> ``"true or false (or None)"``."""
    if annotation is None or annotation is _NONE:
        return "None"
    if _is_union(annotation):
        args = typing.get_args(annotation)
        words = " or ".join(dict.fromkeys(describe_type(a) for a in args if a is not _NONE))
        return words + (" (or None)" if _NONE in args else "")
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if annotation in names:
        return names[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {describe_type(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a tuple of {len(args)} " + " and ".join(
            dict.fromkeys(describe_type(a).removeprefix("an ").removeprefix("a ") + "s" for a in args))
    if annotation is collections.abc.Callable or origin is collections.abc.Callable:
        return "a class or callable"
    return getattr(annotation, "__name__", str(annotation))


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_model_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` (a copy) if the registered model `name` takes every keyword with a value of its type.

    Builds nothing, so the command line and the sweep grid can check a configuration before
    a run starts. The factory's own keywords (``features_only``, ``pretrained_cfg_overlay``,
    ...; `BUILDER_KWARGS`) pass unchecked. Value ranges (``width >= 1``, a known
    ``shortcut``) are the model's to check when it is built.

    Raises:
        UnknownKeywordError: (a `ConfigTypeError`) for a keyword the model does not take,
            naming the closest valid ones.
        ConfigTypeError: for a value of the wrong type, naming the keyword, the value and
            the expected type: ``bn must be true or false, got 'false' (str)``.
        ModelError: for an unknown model name.

    Example:
        >>> check_model_kwargs("resnet20", {"shortcut": "projection", "drop_path_rate": None})
        {'shortcut': 'projection', 'drop_path_rate': None}
    """
    keywords, open_ended = _keywords(name)
    unknown = [k for k in kwargs if k not in keywords and k not in BUILDER_KWARGS]
    if unknown and not open_ended:
        allowed = sorted(keywords)
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=2)
            hints.append(f"{key!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
        raise UnknownKeywordError(
            f"{name}() got unexpected keyword argument{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
            f"valid keywords are: {', '.join(allowed)}"
        )
    problems = [f"{key} must be {describe_type(keywords[key].type)}, got {_show(value)}"
                for key, value in kwargs.items()
                if key in keywords and not type_matches(value, keywords[key].type)]
    if problems:
        raise ConfigTypeError("; ".join(problems), problems)
    return dict(kwargs)
