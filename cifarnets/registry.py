"""Find and build zoo models by name: `create`, `list_models`, `is_model`, `model_info`.

Every model is also ``timm.create_model("cifarnets_<name>")`` (registered by
`cifarnets.models._timm` with timm's public ``register_model``), so timm's training scripts and
tools can use the zoo without ever shadowing timm's own ``resnet18`` or ``vgg16``.
`create` also takes timm's ``local-dir:DIR`` and ``hf-hub:ORG/REPO`` names (a folder
written by ``cifarnets export``).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import torch
import torch.nn as nn

from . import models as _models  # noqa: F401  (importing registers every family)
from .layers.errors import ArgumentTypeError
from .models._builder import BUILDER_KWARGS, valid_kwargs
from .models._registry import (
    TIMM_PREFIX,
    ModelCfg,
    ModelSourceNotFoundError,
    UnknownModelError,
    entrypoints,
    model_cfgs,
    register_model,
)
from .models._timm import timm_pretrained_cfg

__all__ = [
    "ModelInfo", "TIMM_PREFIX", "builtin_models", "count_params", "create", "is_model", "list_models", "model_info",
    "model_table", "register_model",
]


def _natural_key(name: str) -> list[Union[int, str]]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _as_patterns(patterns: Union[str, Iterable[str]]) -> list[str]:
    if isinstance(patterns, str):
        return [patterns] if patterns else []
    return list(patterns)


def list_models(filter: Union[str, Iterable[str]] = "", exclude_filters: Union[str, Iterable[str]] = "") -> list[str]:
    """Registered model names matching fnmatch `filter` (one or several), in natural order.

    Example:
        >>> list_models("vgg*")[:3]
        ['vgg08', 'vgg8_classic', 'vgg16']
        >>> list_models("resnet*", exclude_filters="resnet1*")
        ['resnet20', 'resnet32', 'resnet44', 'resnet56']
    """
    names = list(entrypoints())
    include = _as_patterns(filter)
    if include:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in include)]
    for pattern in _as_patterns(exclude_filters):
        names = [n for n in names if not fnmatch.fnmatch(n, pattern)]
    return sorted(names, key=_natural_key)


def is_model(name: str) -> bool:
    """True if `name` is a registered model."""
    return name in entrypoints()


def _closest(name: str, n: int = 4) -> list[str]:
    name = name.lower()
    names = sorted(entrypoints(), key=_natural_key)
    letters, digits = re.sub(r"[\d_]", "", name.split("_")[0]), re.sub(r"\D", "", name).lstrip("0")

    def related(other: str) -> bool:
        # "vgg8" -> "vgg08" (same letters and number) and "vgg8_classic" (an extension of it).
        same_number = re.sub(r"[\d_]", "", other.split("_")[0]) == letters and \
            re.sub(r"\D", "", other.split("_")[0]).lstrip("0") == digits
        return other.startswith(name) or (bool(digits) and same_number)

    close = [other for other in names if related(other)]
    close += [c for c in difflib.get_close_matches(name, names, n=n, cutoff=0.5) if c not in close]
    return close[:n]


def _require(name: str) -> Callable[..., nn.Module]:
    if not isinstance(name, str):
        raise ArgumentTypeError(f"model name must be a string, not {type(name).__name__}")
    fn = entrypoints().get(name)
    if fn is None:
        if name.startswith(TIMM_PREFIX) and name[len(TIMM_PREFIX):] in entrypoints():
            return entrypoints()[name[len(TIMM_PREFIX):]]
        close = _closest(name)
        message = f"unknown model {name!r}" + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
        message += f" (cifarnets.list_models(), or `cifarnets list`, lists all {len(entrypoints())})"
        flags = re.fullmatch(r"(.+?)[_+-]?(bn|rc|bn[_+-]?rc)", name.lower())
        if flags and flags.group(1) in entrypoints() and model_cfgs()[flags.group(1)].family == "coursework_vgg":
            wanted = ", ".join(f"{f}=True" for f in ("bn", "rc") if f in flags.group(2))
            message += f". BN and RC are keywords: cifarnets.create({flags.group(1)!r}, {wanted})"
        raise UnknownModelError(message)
    return fn


def create(
    name: str,
    pretrained: bool = False,
    *,
    num_classes: Optional[int] = None,
    in_chans: Optional[int] = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model `name`, by default exactly as its report published it.

    Keywords not given keep the published values (see `model_info`); `num_classes` and
    `in_chans` ``None`` mean the published ones. Every model also takes timm's standard
    keywords (``drop_rate``, ``global_pool``, ``features_only``, ``pretrained_cfg_overlay``,
    ...; docs/models.md lists which each family honours). A keyword the model does not take is
    an `UnknownKeywordError` (a ``TypeError``) naming the closest valid ones; an unknown name is an
    `UnknownModelError` (a ``ValueError``) naming the closest registered names. Both are
    cifarnets errors (`cifarnets.CifarnetsError`), as is every error about a keyword's value.

    `name` may also be ``"local-dir:DIR"`` or ``"hf-hub:ORG/REPO"``: a folder written by
    ``cifarnets export`` (or `cifarnets.hub.export_run`), loaded through timm's loader with
    the architecture and keywords stored in its ``config.json``.

    Example:
        >>> m = create("vgg38", bn=True, rc=True)          # the VGG38 report's VGG38 BN+RC
        >>> sum(p.numel() for p in m.parameters())
        338500
        >>> m = create("resnet18", norm_layer="detached_batchnorm")   # the ResNet-18 report's experiment
    """
    if isinstance(name, str) and name.split(":", 1)[0] in ("local-dir", "hf-hub"):
        return _create_from_source(name, pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    fn = _require(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    model = fn(pretrained=pretrained, **kwargs)
    if not hasattr(model, "pretrained_cfg"):  # user-registered models not built through timm
        _attach_cfg(model, fn.__name__, model_cfgs()[fn.__name__])
    if not hasattr(model, "_model_args"):
        # The keywords that rebuild this model (timm's create_model records the same).
        setattr(model, "_model_args", {k: v for k, v in kwargs.items() if k not in BUILDER_KWARGS})
    return model


def _create_from_source(name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``local-dir:`` / ``hf-hub:`` through timm's factory (which reads the folder's config.json)."""
    import timm

    source, _, location = name.partition(":")
    if source == "local-dir" and not (Path(location) / "config.json").is_file():
        raise ModelSourceNotFoundError(
            f"{location} holds no config.json; make the folder with `cifarnets export RUN_DIR --out {location}`"
        )
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    # A folder is a set of weights: load them unless pretrained=False is asked for explicitly.
    model = timm.create_model(name, pretrained=True if pretrained is False else pretrained, **kwargs)
    return model


def _attach_cfg(model: nn.Module, name: str, cfg: ModelCfg) -> None:
    pretrained_cfg = timm_pretrained_cfg(name, cfg).to_dict()
    pretrained_cfg["architecture"] = name
    in_chans = getattr(model, "in_chans", None)
    if isinstance(in_chans, int) and in_chans != len(pretrained_cfg["mean"]):
        pretrained_cfg["input_size"] = (in_chans, *pretrained_cfg["input_size"][1:])
        for key in ("mean", "std"):
            values = pretrained_cfg[key]
            pretrained_cfg[key] = (sum(values) / len(values),) * in_chans
    setattr(model, "model_name", name)
    setattr(model, "pretrained_cfg", pretrained_cfg)
    setattr(model, "default_cfg", pretrained_cfg)


@dataclass(frozen=True)
class ModelInfo:
    """What `model_info` reports about a registered model."""

    name: str
    family: str
    source: str
    summary: str
    num_classes: int
    dataset: str
    norm: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    params: int
    published_params: Optional[int]
    defaults: dict[str, Any]
    keywords: list[str]
    notes: str
    timm_name: str

    def __str__(self) -> str:
        rows = [
            ("model", self.name), ("family", self.family), ("source", self.source), ("configuration", self.summary),
            ("classes", f"{self.num_classes} ({self.dataset})"), ("input", "x".join(map(str, self.input_size))),
            ("parameters", f"{self.params:,}" + (f" (published {self.published_params:,})"
                                                  if self.published_params is not None else "")),
            ("normalisation", f"preset {self.norm!r}: mean " + ", ".join(f"{v:.4f}" for v in self.mean)
             + "; std " + ", ".join(f"{v:.4f}" for v in self.std)),
            ("published flags", ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "-"),
            ("keywords", ", ".join(self.keywords)), ("timm name", self.timm_name), ("notes", self.notes or "-"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def count_params(model: nn.Module) -> int:
    """Parameters as the reports count them: ``sum(p.numel() for p in model.parameters())``."""
    return sum(p.numel() for p in model.parameters())


def model_info(name: str) -> ModelInfo:
    """Family, source report, published defaults, parameter count and notes of `name`.

    The parameter count is of the network `create(name)` builds, counted on the meta
    device (no memory, no initialisation), so it is cheap even for VGG-16.

    Example:
        >>> model_info("vgg106").params
        1210948
    """
    fn = _require(name)
    name = fn.__name__
    cfg: ModelCfg = model_cfgs()[name]
    with torch.device("meta"):
        model = create(name)
    model_cls = type(model)
    return ModelInfo(
        name=name, family=cfg.family, source=cfg.source, summary=cfg.summary, num_classes=cfg.num_classes,
        dataset=cfg.dataset, norm=cfg.norm,
        input_size=cfg.input_size, mean=cfg.mean, std=cfg.std, params=count_params(model),
        published_params=cfg.published_params, defaults=dict(cfg.defaults),
        keywords=sorted(valid_kwargs(model_cls)) if cfg.family != "user" else [],
        notes=cfg.notes, timm_name=TIMM_PREFIX + name,
    )


def builtin_models() -> list[str]:
    """The zoo's own models (not those a user registered), in natural order."""
    return [n for n in list_models() if entrypoints()[n].__module__.startswith(f"{__package__}.models.")]


def model_table(names: Optional[Iterable[str]] = None) -> str:
    """A Markdown table of models: name, report, published configuration, parameters, classes, weights.

    `names` defaults to `builtin_models()`; the README's and the docs' catalogue are this
    table, regenerated by ``docs/generate.py`` and checked by a test so they cannot drift.
    The ``weights`` column says whether the model's timm cfg names published CIFAR weights
    (none do yet: ``cifarnets train`` then ``cifarnets export`` makes them).
    """
    from timm.models import get_pretrained_cfg

    rows = ["| model | report | published configuration | parameters | classes | weights |",
            "|---|---|---|--:|---|---|"]
    for name in names if names is not None else builtin_models():
        info = model_info(name)
        cfg = get_pretrained_cfg(info.timm_name)
        weights = "published" if cfg is not None and cfg.has_weights else "none yet"
        rows.append(f"| `{name}` | {info.source} | {info.summary or '-'} | {info.params:,} | "
                    f"{info.num_classes} ({info.dataset}) | {weights} |")
    return "\n".join(rows)
