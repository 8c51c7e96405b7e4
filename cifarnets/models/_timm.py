"""The zoo's names in timm: every registered model is ``timm.create_model("cifarnets_<name>")``.

``import cifarnets`` does not import timm (it would double the start-up time). Instead
`install` puts a post-import hook on ``sys.meta_path``: the moment ``timm.models`` has been
imported, by anyone, `register_with_timm` gives each zoo entry point a timm entry point of the
same behaviour under the ``cifarnets_`` prefix (timm's own ``resnet18`` and ``vgg16`` stay
untouched) with a complete timm ``pretrained_cfg``, through timm's public ``register_model``.
If timm is already imported, registration happens at once. Models registered later (user
models) reach timm too. Each timm entry point calls `cifarnets.models._factory.create_model`,
the one function that turns a name into a model. (timm has no plugin discovery through
package entry points, so the hook is the only way in.)

timm's ``register_model`` reads the cfg from ``default_cfgs`` of the entry point's module and
lists the name in that module's ``__all__``: this module is that module. Its ``__all__`` names
exactly the entry-point functions defined here, so ``from cifarnets.models._timm import *``
gives the timm entry points and nothing else.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

import torch.nn as nn

from ._factory import create_model
from ._registry import TIMM_PREFIX, ModelCfg, add_registration_hook

__all__: list[str] = []  # the cifarnets_* entry points, added as they are defined
default_cfgs: dict[str, Any] = {}  # read by timm's register_model

_TRIGGER = "timm.models"
_registered = False


def timm_pretrained_cfg(name: str, cfg: ModelCfg) -> Any:
    """timm's ``PretrainedCfg`` of the registered model `name` (`ModelCfg.pretrained_cfg` as timm's class)."""
    from timm.models._pretrained import PretrainedCfg

    return PretrainedCfg(**cfg.pretrained_cfg(name))


def _register(name: str, fn: Callable[..., nn.Module], cfg: ModelCfg) -> None:
    from timm.models import generate_default_cfgs
    from timm.models import register_model as timm_register_model

    timm_name = TIMM_PREFIX + name

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return create_model(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = timm_name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = fn.__doc__
    globals()[timm_name] = entrypoint
    if timm_name not in __all__:
        __all__.append(timm_name)
    default_cfgs.update(generate_default_cfgs({timm_name: timm_pretrained_cfg(name, cfg)}))
    timm_register_model(entrypoint)


def register_with_timm() -> None:
    """Register every zoo model (and, through the registry's hook, every later one) with timm. Idempotent."""
    global _registered
    if _registered:
        return
    _registered = True
    add_registration_hook(_register)


class _RegisterAfterExec(importlib.abc.Loader):
    """Wraps timm.models' loader: runs it, then `register_with_timm`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            register_with_timm()
        except Exception as err:  # never break `import timm` for a user: say what is missing instead
            warnings.warn(f"cifarnets could not register its models with timm ({type(err).__name__}: {err}); "
                          "timm.create_model('cifarnets_...') will not find them", stacklevel=2)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, name)


class _TimmImportHook(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that only watches for ``timm.models`` and wraps its loader."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != _TRIGGER:
            return None
        _uninstall()  # once: timm.models is imported only once
        for finder in list(sys.meta_path):  # the finder that would have found it without us
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisterAfterExec(spec.loader)
        return spec


_HOOK = _TimmImportHook()


def _uninstall() -> None:
    while _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def install() -> None:
    """Register with timm now if ``timm.models`` is loaded, else as soon as it is."""
    module = sys.modules.get(_TRIGGER)
    if module is not None and hasattr(module, "register_model"):
        register_with_timm()
    elif _HOOK not in sys.meta_path and not _registered:
        sys.meta_path.insert(0, _HOOK)
