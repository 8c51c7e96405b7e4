"""Where model entry points and their metadata are recorded.

A registry is a few dicts and a decorator (as in timm's ``_registry.py``). Model files
decorate their entry points with `register_model`; the metadata for an entry point comes
from the ``default_cfgs`` dict of its module, keyed by the entry point's name, and a zoo
family names the class and layout that build it (``register_model(model_cls=..., arch=...)``).
Turning a name into a model is `cifarnets.models._factory.create_model`, the one function
every path goes through; the public API (`create`, `list_models`, `model_info`) is in
`cifarnets.registry`; the timm names are registered by `cifarnets.models._timm` once timm
is imported. This module imports neither timm nor any of them.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional, TypeVar, Union, overload

import torch.nn as nn

from ..errors import ConfigTypeError, ModelError, ModelNotFoundError, NoWeightsError
from ..layers.errors import AlreadyRegisteredError
from ..layers.presets import CLASS_NAMES, get_normalization

__all__ = [
    "ModelBuild", "ModelCfg", "ModelSourceNotFoundError", "NoPretrainedWeightsError", "TIMM_PREFIX",
    "UnknownKeywordError", "UnknownModelError", "adapt_cfg_channels", "add_registration_hook", "entrypoints",
    "model_builds", "model_cfgs", "register_model",
]

# The zoo's names in timm's registry: ``timm.create_model("cifarnets_vgg38")``. The prefix
# keeps timm's own ``resnet18`` and ``vgg16`` untouched.
TIMM_PREFIX = "cifarnets_"


UnknownModelError = ModelError  # kept name; the kind is cifarnets.errors.ModelError


UnknownKeywordError = ConfigTypeError  # kept name; the kind is cifarnets.errors.ConfigTypeError


ModelSourceNotFoundError = ModelNotFoundError  # kept name; the kind is cifarnets.errors.ModelNotFoundError


NoPretrainedWeightsError = NoWeightsError  # kept name; the kind is cifarnets.errors.NoWeightsError


@dataclass(frozen=True)
class ModelCfg:
    """What a registered model is, where it comes from and what input it expects.

    Attributes:
        family: model family, e.g. ``"coursework_vgg"``.
        summary: the published configuration in a few words, for tables.
        source: the report (and section/table) the network reproduces.
        paper_name: the report's title (timm's ``paper_name``).
        num_classes: classes of the published network.
        dataset: the data set it was published on.
        input_size: ``(C, H, W)`` the network was published for.
        fixed_input_size: True when a fixed classifier head only accepts `input_size`.
        norm: the normalisation preset (a key of `cifarnets.layers.NORMALIZATION`, the one
            table the data loaders use too); `mean` and `std` are read from it.
        pool_size: ``(h, w)`` of the last feature map at `input_size` (timm's ``pool_size``).
        min_input_size: the smallest ``(C, H, W)`` the network takes.
        first_conv, classifier: parameter-name prefixes of the first conv and the
            classifier (timm's convention, used to adapt in_chans / num_classes).
        defaults: the keyword values that make the published network, e.g.
            ``{"bn": True, "rc": True}``; `create` applies them under the user's keywords.
        published_params: the parameter count the report prints, when it prints one.
        notes: anything a user must know, e.g. a discrepancy in the report.
        paper_ids: arXiv ids of the papers behind the network, when they have one.
    """

    family: str
    source: str
    summary: str = ""
    paper_name: Optional[str] = None
    num_classes: int = 10
    dataset: str = "cifar10"
    input_size: tuple[int, int, int] = (3, 32, 32)
    fixed_input_size: bool = False
    norm: str = "cifar10"
    pool_size: Optional[tuple[int, int]] = None
    min_input_size: Optional[tuple[int, int, int]] = None
    first_conv: Optional[str] = "stem.conv"
    classifier: Optional[str] = "head.fc"
    defaults: dict[str, Any] = field(default_factory=dict)
    published_params: Optional[int] = None
    notes: str = ""
    paper_ids: Optional[str] = None

    def __post_init__(self) -> None:
        get_normalization(self.norm)  # an unknown preset fails at registration, not at first use

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the `norm` preset."""
        return get_normalization(self.norm).mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel std of the `norm` preset."""
        return get_normalization(self.norm).std

    def replace(self, **changes: Any) -> "ModelCfg":
        """A copy with `changes` applied."""
        return dataclasses.replace(self, **changes)

    def pretrained_cfg(self, name: str, in_chans: Optional[int] = None) -> dict[str, Any]:
        """timm's ``pretrained_cfg`` dict of the registered model `name`, made without timm.

        The keys and values are those of timm's ``PretrainedCfg(...).to_dict()`` (unset keys
        left out), so a model built without importing timm carries the same cfg as one timm
        builds; a test checks the two agree. No weight source (``url``, ``file``,
        ``hf_hub_id``) is set: pass one with ``pretrained_cfg_overlay=dict(file=...)``.
        `in_chans` other than the published channels adapts it (`adapt_cfg_channels`).
        """
        labels = CLASS_NAMES.get(self.dataset)
        cfg: dict[str, Any] = {
            "architecture": TIMM_PREFIX + name,
            "custom_load": False,
            "input_size": self.input_size,
            "min_input_size": self.fixed_input_size and self.input_size or self.min_input_size,
            "fixed_input_size": self.fixed_input_size,
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "crop_mode": "center",
            "mean": self.mean,
            "std": self.std,
            "num_classes": self.num_classes,
            "label_names": labels if labels is not None and len(labels) == self.num_classes else None,
            "pool_size": self.pool_size,
            "first_conv": self.first_conv,
            "classifier": self.classifier,
            "description": f"{self.summary} ({self.source}); {self.dataset}, normalisation preset {self.norm!r}"
            if self.summary else self.source,
            "paper_name": self.paper_name,
            "paper_ids": self.paper_ids,
            "notes": (self.notes,) if self.notes else None,
        }
        cfg = {k: v for k, v in cfg.items() if v is not None}
        return adapt_cfg_channels(cfg, in_chans) if in_chans is not None else cfg


def adapt_cfg_channels(cfg: dict[str, Any], in_chans: int) -> dict[str, Any]:
    """`cfg` (a timm ``pretrained_cfg`` dict, changed in place and returned) for `in_chans` input channels.

    The published statistics are per RGB channel; for another channel count the cfg gets
    their average for every channel, as timm's data config does, so ``resolve_data_config``
    and `evaluate` work on greyscale or 4-channel models. This is the one place that does it.

    Example:
        >>> adapt_cfg_channels({"input_size": (3, 32, 32), "mean": (0.2, 0.4, 0.6), "std": (1, 1, 1)}, 1)["mean"]
        (0.4000000000000001,)
    """
    if not cfg.get("input_size") or cfg["input_size"][0] == in_chans:
        return cfg
    cfg["input_size"] = (in_chans, *cfg["input_size"][1:])
    if cfg.get("min_input_size"):
        cfg["min_input_size"] = (in_chans, *cfg["min_input_size"][1:])
    for key in ("mean", "std"):
        values = tuple(cfg.get(key) or ())
        if values and len(values) != in_chans:
            cfg[key] = (sum(values) / len(values),) * in_chans
    return cfg


class ModelBuild(NamedTuple):
    """How a zoo family builds a registered name: its class and the layout passed first."""

    model_cls: type
    arch: Any


_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, ModelCfg] = {}
_BUILDS: dict[str, ModelBuild] = {}
_REGISTRATION_HOOKS: list[Callable[[str, Callable[..., nn.Module], ModelCfg], None]] = []

_Fn = TypeVar("_Fn", bound=Callable[..., nn.Module])


@overload
def register_model(fn: _Fn) -> _Fn: ...


@overload
def register_model(*, model_cls: type, arch: Any = None) -> Callable[[_Fn], _Fn]: ...


def register_model(
    fn: Optional[_Fn] = None, *, model_cls: Optional[type] = None, arch: Any = None
) -> Union[_Fn, Callable[[_Fn], _Fn]]:
    """Register a model entry point under its function name.

    The entry point takes ``pretrained`` and keyword arguments and returns the model. Its
    `ModelCfg` is ``default_cfgs[fn.__name__]`` of the function's module when that exists
    (the convention of the built-in families), otherwise a generic CIFAR-10 one.
    Registering a name twice is an error, so a user model can never silently replace a
    published one. The model also becomes ``timm.create_model("cifarnets_<name>")``.

    Example:
        >>> import torch.nn as nn, cifarnets
        >>> @cifarnets.register_model
        ... def tiny_mlp(pretrained=False, num_classes=10, in_chans=3, **kwargs):
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 32 * 32, num_classes))
        >>> cifarnets.is_model("tiny_mlp")
        True

    The zoo's families register with ``@register_model(model_cls=CourseworkVGG, arch=...)``:
    `cifarnets.create` then builds ``model_cls(arch, **keywords)`` itself, checking every
    keyword against the class's annotations.
    """
    if fn is None:
        if model_cls is None:
            raise ConfigTypeError("register_model() takes the entry-point function, or model_cls= for a zoo family")

        def decorate(entry: _Fn) -> _Fn:
            _register(entry, ModelBuild(model_cls, arch))
            return entry

        return decorate
    _register(fn, None)
    return fn


def _register(fn: Callable[..., nn.Module], build: Optional[ModelBuild]) -> None:
    name = fn.__name__
    if name in _ENTRYPOINTS:
        raise AlreadyRegisteredError(
            f"a model named {name!r} is already registered (from {_ENTRYPOINTS[name].__module__}); "
            f"choose another function name"
        )
    module_cfgs = getattr(sys.modules.get(fn.__module__), "default_cfgs", {})
    cfg = module_cfgs.get(name) or ModelCfg(family="user", source=f"{fn.__module__}.{name}", first_conv=None,
                                            classifier=None)
    _ENTRYPOINTS[name] = fn
    _CFGS[name] = cfg
    if build is not None:
        _BUILDS[name] = build
    for hook in _REGISTRATION_HOOKS:
        hook(name, fn, cfg)


def add_registration_hook(hook: Callable[[str, Callable[..., nn.Module], ModelCfg], None]) -> None:
    """Call ``hook(name, entrypoint, cfg)`` for every model registered now and later.

    The timm bridge uses this so that user models reach timm too.
    """
    _REGISTRATION_HOOKS.append(hook)
    for name, fn in list(_ENTRYPOINTS.items()):
        hook(name, fn, _CFGS[name])


def entrypoints() -> dict[str, Callable[..., nn.Module]]:
    """The registered entry points by name (a read-only view's worth: do not mutate)."""
    return _ENTRYPOINTS


def model_cfgs() -> dict[str, ModelCfg]:
    """The registered `ModelCfg` by name."""
    return _CFGS


def model_builds() -> dict[str, ModelBuild]:
    """The class and layout of each zoo model, by name (user models have none)."""
    return _BUILDS
