"""Name -> model: `create_model`, the one function every way of building a zoo model goes through.

`cifarnets.create`, ``timm.create_model("cifarnets_<name>")`` (the entry points of
`cifarnets.models._timm`), ``hubconf.py`` (torch.hub), the family entry points
(``cifarnets.models.coursework_vgg.vgg38()``) and user models registered with
`cifarnets.register_model` all call it. It

1. resolves the name (``cifarnets_`` prefix allowed; an unknown name names the closest),
2. checks the keywords against the model's declared ones (`check_model_kwargs`),
3. resolves the timm ``pretrained_cfg`` (the registered one, or ``pretrained_cfg`` /
   ``pretrained_cfg_overlay``) and fills ``num_classes`` / ``in_chans`` / ``img_size`` from it
   as timm's ``build_model_with_cfg`` does,
4. builds ``model_cls(arch, **keywords)``, loads verified weights for ``pretrained=True``
   (`cifarnets.models._weights`) and wraps it for ``features_only=True``.

A plain build imports no timm: timm is needed only for weights, ``features_only`` and
``pretrained_cfg`` objects. ``local-dir:DIR`` / ``hf-hub:ORG/REPO`` names (folders written by
``cifarnets export``) are read by `cifarnets.models._sources` and come back here.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any, Optional, cast

import torch.nn as nn

from ..errors import ConfigError, ConfigTypeError, ModelError
from ._keywords import BUILDER_KWARGS, check_model_kwargs
from ._registry import (
    TIMM_PREFIX,
    UnknownModelError,
    adapt_cfg_channels,
    entrypoints,
    model_builds,
    model_cfgs,
)
from ._sources import SOURCES, read_model_source
from ._weights import load_weights, no_weights_error

__all__ = ["create_model", "natural_key", "resolve_name"]

_WEIGHT_KEYS = ("state_dict", "file", "url", "hf_hub_id")


def natural_key(name: str) -> list[Any]:
    """Sort key that puts ``vgg8`` before ``vgg16``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _closest(name: str, n: int = 4) -> list[str]:
    name = name.lower()
    names = sorted(entrypoints(), key=natural_key)
    letters, digits = re.sub(r"[\d_]", "", name.split("_")[0]), re.sub(r"\D", "", name).lstrip("0")

    def related(other: str) -> bool:
        # "vgg8" -> "vgg08" (same letters and number) and "vgg8_classic" (an extension of it).
        same_number = re.sub(r"[\d_]", "", other.split("_")[0]) == letters and \
            re.sub(r"\D", "", other.split("_")[0]).lstrip("0") == digits
        return other.startswith(name) or (bool(digits) and same_number)

    close = [other for other in names if related(other)]
    close += [c for c in difflib.get_close_matches(name, names, n=n, cutoff=0.5) if c not in close]
    return close[:n]


def resolve_name(name: Any) -> str:
    """The registered name `name` stands for (``cifarnets_vgg38`` -> ``vgg38``), or an error naming the closest."""
    if not isinstance(name, str):
        raise ConfigTypeError(f"model name must be a string, not {type(name).__name__}")
    if name in entrypoints():
        return name
    if name.startswith(TIMM_PREFIX) and name[len(TIMM_PREFIX):] in entrypoints():
        return name[len(TIMM_PREFIX):]
    close = _closest(name)
    message = f"unknown model {name!r}" + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
    message += f" (cifarnets.list_models(), or `cifarnets list`, lists all {len(entrypoints())})"
    flags = re.fullmatch(r"(.+?)[_+-]?(bn|rc|bn[_+-]?rc)", name.lower())
    if flags and flags.group(1) in entrypoints() and model_cfgs()[flags.group(1)].family == "coursework_vgg":
        wanted = ", ".join(f"{f}=True" for f in ("bn", "rc") if f in flags.group(2))
        message += f". BN and RC are keywords: cifarnets.create({flags.group(1)!r}, {wanted})"
    raise UnknownModelError(message)


def create_model(name: str, pretrained: Optional[bool] = None, **kwargs: Any) -> nn.Module:
    """Build the registered model `name` (see `cifarnets.create`, which documents every keyword).

    `pretrained` ``None`` means ``False`` for a registered name and ``True`` for a
    ``local-dir:`` / ``hf-hub:`` folder (a folder is a set of weights).
    """
    if isinstance(name, str) and name.partition(":")[0] in SOURCES:
        variant, pretrained_cfg, model_args = read_model_source(name, kwargs.get("cache_dir"))
        if kwargs.get("pretrained_cfg"):
            raise ConfigError(f"{name}: the folder's config.json is the pretrained_cfg; pass changes with "
                              "pretrained_cfg_overlay= instead of pretrained_cfg=")
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        for key, value in model_args.items():
            kwargs.setdefault(key, value)
        return create_model(variant, True if pretrained is None else pretrained, pretrained_cfg=pretrained_cfg,
                            pretrained_model_args=model_args, **kwargs)
    name = resolve_name(name)
    pretrained = False if pretrained is None else pretrained
    if not isinstance(pretrained, bool):
        raise ConfigTypeError(f"pretrained must be true or false, got {pretrained!r} ({type(pretrained).__name__})")
    for key in ("num_classes", "in_chans"):
        if key in kwargs and kwargs[key] is None:
            del kwargs[key]  # None: the pretrained cfg's value, as timm's create_model prunes it
    if name not in model_builds():
        return _create_user_model(name, pretrained, kwargs)
    builder = {k: kwargs.pop(k) for k in BUILDER_KWARGS if k in kwargs}
    check_model_kwargs(name, kwargs)
    build = model_builds()[name]
    cfg = _resolve_cfg(name, builder.get("pretrained_cfg"), builder.get("pretrained_cfg_overlay"))
    if pretrained and not any(cfg.get(k) for k in _WEIGHT_KEYS):
        raise no_weights_error(name)
    model_kwargs = {**model_cfgs()[name].defaults, **kwargs}
    _default_kwargs(cfg, model_kwargs)
    features_only = bool(builder.get("features_only"))
    model = build.model_cls(build.arch, **model_kwargs)
    # What timm's build_model_with_cfg gives a model (a test compares the two).
    model.pretrained_cfg = model.default_cfg = cfg
    model.pretrained_model_args = builder.get("pretrained_model_args") or {}
    model._traits = dict(
        img_size=_spatial(model_kwargs["img_size"]) if model_kwargs.get("img_size") is not None else None,
        fixed_input_size=bool(cfg.get("fixed_input_size", False)),
        first_conv=tuple(cfg["first_conv"]) if isinstance(cfg.get("first_conv"), list) else cfg.get("first_conv"),
    )
    model.model_name = name
    if pretrained:
        load_weights(model, cfg, num_classes=0 if features_only else model.num_classes,
                     in_chans=model_kwargs.get("in_chans", 3), cache_dir=builder.get("cache_dir"), variant=name)
    if features_only:
        return _features(model, build, builder)
    adapt_cfg_channels(model.pretrained_cfg, model.in_chans)
    model._model_args = dict(kwargs)  # the keywords that rebuild it (timm's create_model records the same)
    return model


def _spatial(size: Any) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _default_kwargs(cfg: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """timm's ``_update_default_model_kwargs``: classes, pooling, channels (and a fixed input size) from the cfg."""
    num_classes = cfg.get("num_classes")
    if isinstance(num_classes, bool) or (num_classes is not None and not isinstance(num_classes, int)):
        raise ModelError(f"pretrained_cfg num_classes must be an integer, got {num_classes!r}")
    if num_classes is not None and num_classes >= 0:
        kwargs.setdefault("num_classes", num_classes)
    if cfg.get("global_pool") is not None:
        kwargs.setdefault("global_pool", cfg["global_pool"])
    input_size = cfg.get("input_size")
    if input_size is not None:
        if not isinstance(input_size, (tuple, list)) or len(input_size) != 3:
            raise ModelError(f"pretrained_cfg input_size must be (C, H, W), got {input_size!r}")
        kwargs.setdefault("in_chans", input_size[0])
        if cfg.get("fixed_input_size", False):
            kwargs.setdefault("img_size", input_size[-2:])


def _resolve_cfg(name: str, pretrained_cfg: Any, overlay: Optional[dict[str, Any]]) -> dict[str, Any]:
    """timm's ``resolve_pretrained_cfg(...).to_dict()`` for `name`; without timm when neither is given."""
    if not pretrained_cfg and not overlay:
        return model_cfgs()[name].pretrained_cfg(name)
    from timm.models._pretrained import PretrainedCfg

    try:
        from timm.models._builder import _PRETRAINED_SOURCE_KEYS as source_keys
    except ImportError:  # older timm
        source_keys = ("file", "url", "hf_hub_id", "hf_hub_filename")
    if isinstance(pretrained_cfg, str):
        raise ModelError(f"{name} has no pretrained tag {pretrained_cfg!r}: no weights are published; pass "
                         "pretrained_cfg_overlay=dict(file='DIR/model.safetensors')")
    if overlay is not None and not isinstance(overlay, dict):
        raise ConfigTypeError(f"pretrained_cfg_overlay must be a dict, got {overlay!r} ({type(overlay).__name__})")
    try:
        if isinstance(pretrained_cfg, dict):
            base = PretrainedCfg(**pretrained_cfg)
        elif pretrained_cfg:
            base = pretrained_cfg
        else:
            base = PretrainedCfg(**model_cfgs()[name].pretrained_cfg(name))
        overlay = dict(overlay or {})
        if not base.architecture:
            overlay.setdefault("architecture", TIMM_PREFIX + name)
        if any(overlay.get(k) for k in source_keys):
            overlay.setdefault("custom_load", False)
        return dataclasses.replace(base, **overlay).to_dict()
    except TypeError as err:
        raise ConfigError(f"pretrained_cfg / pretrained_cfg_overlay: {err}; use timm's PretrainedCfg keys "
                          "(file, num_classes, mean, std, ...)") from err


def _features(model: nn.Module, build: Any, builder: dict[str, Any]) -> nn.Module:
    """`model` as a timm feature extractor (``features_only=True``), every level unless ``out_indices`` says."""
    from timm.models._builder import pretrained_cfg_for_features
    from timm.models._features import FeatureDictNet, FeatureGetterNet, FeatureHookNet, FeatureListNet

    levels = len(cast(list, model.feature_info))
    out_indices = builder.get("out_indices")
    if out_indices is None:
        out_indices = tuple(range(build.model_cls.feature_levels(build.arch)))
    _check_out_indices(out_indices, levels, str(model.model_name))
    feature_cfg: dict[str, Any] = dict(flatten_sequential=True, out_indices=out_indices)
    feature_cls = builder.get("feature_cls") or FeatureListNet
    if isinstance(feature_cls, str):
        classes = {"hook": FeatureHookNet, "list": FeatureListNet, "dict": FeatureDictNet, "getter": FeatureGetterNet}
        key = "hook" if "hook" in feature_cls.lower() else feature_cls.lower()
        if key not in classes:
            raise ConfigError(f"unknown feature_cls {feature_cls!r}; use one of {sorted(classes)}")
        feature_cls = classes[key]
    if not (isinstance(feature_cls, type) and issubclass(feature_cls, (FeatureDictNet, FeatureHookNet))):
        feature_cfg.pop("flatten_sequential", None)
    traits = dict(cast(dict, model._traits))
    in_chans = model.in_chans
    pretrained_cfg = model.pretrained_cfg
    features = feature_cls(model, **feature_cfg)
    features._traits, features.in_chans = traits, in_chans
    features.pretrained_cfg = features.default_cfg = pretrained_cfg_for_features(cast(dict, pretrained_cfg))
    return features


def _check_out_indices(out_indices: Any, levels: int, name: str) -> None:
    valid = f"{name} has {levels} feature levels: indices 0 to {levels - 1} (or -{levels} to -1)"
    if isinstance(out_indices, bool) or not isinstance(out_indices, (int, tuple, list)):
        raise ConfigTypeError(f"out_indices must be a tuple of level indices or a count, got {out_indices!r}; "
                              f"{valid}")
    if isinstance(out_indices, int):
        if not 1 <= out_indices <= levels:
            raise ModelError(f"out_indices={out_indices} (the last n levels) is out of range: {valid}")
        return
    bad = [i for i in out_indices if isinstance(i, bool) or not isinstance(i, int) or not -levels <= i < levels]
    if bad or not out_indices:
        raise ModelError(f"out_indices={tuple(out_indices)!r} " + (f"names levels that do not exist ({bad})" if bad
                         else "is empty") + f": {valid}")


def _create_user_model(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    """A model registered with `cifarnets.register_model`: its own function builds it; the card is attached."""
    given = [k for k in BUILDER_KWARGS if kwargs.get(k) is not None]
    if given:
        raise ConfigError(f"{name} is a user-registered model: cifarnets cannot apply {', '.join(given)} to it "
                          "(only the zoo's families build through timm's feature and pretrained machinery)")
    kwargs = {k: v for k, v in kwargs.items() if k not in BUILDER_KWARGS}
    check_model_kwargs(name, kwargs)
    model = entrypoints()[name](pretrained=pretrained, **kwargs)
    if not hasattr(model, "pretrained_cfg"):
        cfg = model_cfgs()[name].pretrained_cfg(name)
        cfg["architecture"] = name
        in_chans = getattr(model, "in_chans", None)
        if isinstance(in_chans, int):
            adapt_cfg_channels(cfg, in_chans)
        setattr(model, "pretrained_cfg", cfg)
        setattr(model, "default_cfg", cfg)
        setattr(model, "model_name", name)
    if not hasattr(model, "_model_args"):
        setattr(model, "_model_args", dict(kwargs))
    return model
