"""The zoo's names in timm: every registered model is ``timm.create_model("cifarnets_<name>")``.

Each zoo entry point gets a timm entry point of the same behaviour under the
``cifarnets_`` prefix (timm's own ``resnet18`` and ``vgg16`` stay untouched), registered
with timm's public ``register_model``, and a complete timm ``pretrained_cfg`` made from its
`ModelCfg`. timm's ``register_model`` reads the cfg from ``default_cfgs`` of the entry
point's module and lists the name in that module's ``__all__``: this module is that module.
Its ``__all__`` names exactly the entry-point functions defined here (each one is added
together with its function, before timm sees it), so ``from cifarnets.models._timm import
*`` gives the timm entry points and nothing else.
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn
from timm.models import generate_default_cfgs
from timm.models import register_model as timm_register_model
from timm.models._pretrained import PretrainedCfg

from ..layers.presets import CLASS_NAMES
from ._builder import BUILDER_KWARGS
from ._registry import TIMM_PREFIX, ModelCfg, add_registration_hook

__all__: list[str] = []  # the cifarnets_* entry points, added as they are defined
default_cfgs: dict[str, Any] = {}  # read by timm's register_model


def timm_pretrained_cfg(name: str, cfg: ModelCfg) -> PretrainedCfg:
    """timm's pretrained cfg for the registered model `name`: every key that applies.

    No weight source (``url``, ``file``, ``hf_hub_id``) is set: no CIFAR weights are
    published yet. Pass one with ``pretrained_cfg_overlay=dict(file=...)``.
    """
    labels = CLASS_NAMES.get(cfg.dataset)
    return PretrainedCfg(
        architecture=TIMM_PREFIX + name,
        input_size=cfg.input_size,
        min_input_size=cfg.fixed_input_size and cfg.input_size or cfg.min_input_size,
        fixed_input_size=cfg.fixed_input_size,
        interpolation="bilinear",
        crop_pct=1.0,
        crop_mode="center",
        mean=cfg.mean,
        std=cfg.std,
        num_classes=cfg.num_classes,
        label_names=labels if labels is not None and len(labels) == cfg.num_classes else None,
        pool_size=cfg.pool_size,
        first_conv=cfg.first_conv,
        classifier=cfg.classifier,
        description=f"{cfg.summary} ({cfg.source}); {cfg.dataset}, normalisation preset {cfg.norm!r}"
        if cfg.summary else cfg.source,
        paper_name=cfg.paper_name,
        paper_ids=cfg.paper_ids,
        notes=(cfg.notes,) if cfg.notes else None,
    )


def _zoo_entrypoint(fn: Callable[..., nn.Module]) -> bool:
    # The built-in families build through cifarnets.models._builder, which takes timm's keywords.
    return fn.__module__.startswith(__package__ + ".") and not fn.__module__.startswith(__name__)


def _register(name: str, fn: Callable[..., nn.Module], cfg: ModelCfg) -> None:
    timm_name = TIMM_PREFIX + name
    if _zoo_entrypoint(fn):
        def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
            return fn(pretrained=pretrained, **kwargs)
    else:
        def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
            from ..registry import create  # a user model: cifarnets.create attaches its cfg

            for key in BUILDER_KWARGS:
                kwargs.pop(key, None)
            return create(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = timm_name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = fn.__doc__
    globals()[timm_name] = entrypoint
    if timm_name not in __all__:
        __all__.append(timm_name)
    default_cfgs.update(generate_default_cfgs({timm_name: timm_pretrained_cfg(name, cfg)}))
    timm_register_model(entrypoint)


add_registration_hook(_register)
