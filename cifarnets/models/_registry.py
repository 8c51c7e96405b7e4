"""Where model entry points and their metadata are recorded.

A registry is a few dicts and a decorator (as in timm's ``_registry.py``). Model files
decorate their entry points with `register_model`; the metadata for an entry point comes
from the ``default_cfgs`` dict of its module, keyed by the entry point's name. The public
API on top of this (`create`, `list_models`, `model_info`) lives in `cifarnets.registry`,
one layer up; the timm names are registered by `cifarnets.models._timm`.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar

import torch.nn as nn

from ..errors import ConfigTypeError, ModelError, ModelNotFoundError, NoWeightsError
from ..layers.errors import AlreadyRegisteredError
from ..layers.presets import get_normalization

__all__ = [
    "ModelCfg", "ModelSourceNotFoundError", "NoPretrainedWeightsError", "TIMM_PREFIX", "UnknownKeywordError",
    "UnknownModelError", "add_registration_hook", "entrypoints", "model_cfgs", "register_model",
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


_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, ModelCfg] = {}
_REGISTRATION_HOOKS: list[Callable[[str, Callable[..., nn.Module], ModelCfg], None]] = []

_Fn = TypeVar("_Fn", bound=Callable[..., nn.Module])


def register_model(fn: _Fn) -> _Fn:
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
    """
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
    for hook in _REGISTRATION_HOOKS:
        hook(name, fn, cfg)
    return fn


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
