"""The build step of every family: this project's checks, then timm's ``build_model_with_cfg``.

timm's builder resolves the pretrained cfg (the registered one, a ``pretrained_cfg`` or
``pretrained_cfg_overlay`` such as ``dict(file=PATH)``, or the cfg of a ``local-dir:`` /
``hf-hub:`` folder), loads pretrained weights with its ``num_classes`` / ``in_chans``
adaptation and wraps the model for ``features_only=True``. On top of it this module keeps
the project's better errors: a keyword the family does not take is a `TypeError` naming the
closest valid ones, and ``pretrained=True`` without weights says how to make them.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any, TypeVar

import torch.nn as nn
from timm.models import build_model_with_cfg, resolve_pretrained_cfg

from ._registry import TIMM_PREFIX, ModelCfg, NoPretrainedWeightsError, UnknownKeywordError

__all__ = ["BUILDER_KWARGS", "build_model", "valid_kwargs"]

_M = TypeVar("_M", bound=nn.Module)

# Keywords timm's create_model and build_model_with_cfg consume rather than the model class.
BUILDER_KWARGS = (
    "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "pretrained_model_args", "features_only", "out_indices",
    "feature_cls",
)


def valid_kwargs(model_cls: type) -> list[str]:
    """Keyword arguments `model_cls` accepts (its ``__init__`` parameters)."""
    params = inspect.signature(model_cls).parameters
    return [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _reject_unknown(variant: str, allowed: list[str], kwargs: dict[str, Any]) -> None:
    unknown = [k for k in kwargs if k not in allowed and k not in BUILDER_KWARGS]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, allowed, n=2)
        hints.append(f"{key!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
    raise UnknownKeywordError(
        f"{variant}() got unexpected keyword argument{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
        f"valid keywords are: {', '.join(sorted(allowed))}"
    )


def _no_weights_error(variant: str) -> NoPretrainedWeightsError:
    return NoPretrainedWeightsError(
        f"no pretrained weights are published for {variant!r} yet. Make them with `cifarnets train {variant} ...` "
        f"and `cifarnets export RUN_DIR --out DIR`, then load them with cifarnets.create('local-dir:DIR') or "
        f"cifarnets.create({variant!r}, pretrained=True, pretrained_cfg_overlay=dict(file='DIR/model.safetensors'))"
    )


def build_model(
    model_cls: type[_M], arch: Any, variant: str, cfg: ModelCfg, pretrained: bool = False, **kwargs: Any
) -> _M:
    """Build ``model_cls(arch, **kwargs)`` as the registered `variant` through timm's builder.

    The user's keywords go over ``cfg.defaults`` (the published network); ``num_classes``
    and ``in_chans`` default to the pretrained cfg's, as timm does.

    Raises:
        UnknownKeywordError: (a ``TypeError``) for a keyword the class does not take, naming the closest
            valid ones.
        NoPretrainedWeightsError: (a ``NotImplementedError``) for ``pretrained=True`` when no weights
            are given or published.
    """
    allowed = valid_kwargs(model_cls)
    _reject_unknown(variant, allowed, kwargs)
    for key in ("num_classes", "in_chans"):
        if key in kwargs and kwargs[key] is None:
            del kwargs[key]  # None: the pretrained cfg's value, as timm's create_model prunes it
    timm_name = TIMM_PREFIX + variant
    if pretrained:
        resolved = resolve_pretrained_cfg(timm_name, kwargs.get("pretrained_cfg"), kwargs.get("pretrained_cfg_overlay"))
        if not resolved.has_weights and not resolved.state_dict:
            raise _no_weights_error(variant)
    features_only = bool(kwargs.get("features_only"))
    feature_cfg: dict[str, Any] = dict(flatten_sequential=True)
    levels = getattr(model_cls, "feature_levels", None)
    if features_only and levels is not None:
        feature_cfg["out_indices"] = tuple(range(levels(arch)))  # every level unless out_indices= says
    model = build_model_with_cfg(
        functools.partial(model_cls, arch), timm_name, pretrained, feature_cfg=feature_cfg,
        **{**cfg.defaults, **kwargs},
    )
    setattr(model, "model_name", variant)
    if not features_only:
        _adapt_cfg_channels(model)
    return model


def _adapt_cfg_channels(model: nn.Module) -> None:
    """Give ``pretrained_cfg`` the model's input channels (after any pretrained loading).

    The published statistics are per RGB channel; for other inputs the cfg gets their
    average, as timm's data config does, so ``resolve_data_config`` and `evaluate` work.
    """
    cfg = model.pretrained_cfg
    in_chans = getattr(model, "in_chans", cfg["input_size"][0])
    if in_chans == cfg["input_size"][0]:
        return
    cfg["input_size"] = (in_chans, *cfg["input_size"][1:])
    if cfg.get("min_input_size"):
        cfg["min_input_size"] = (in_chans, *cfg["min_input_size"][1:])
    for key in ("mean", "std"):
        values = tuple(cfg[key])
        if len(values) != in_chans:
            cfg[key] = (sum(values) / len(values),) * in_chans
