"""Find and build zoo models by name: `create`, `list_models`, `is_model`, `model_info`.

Every model is also ``timm.create_model("cifarnets_<name>")`` (registered with timm's public
``register_model`` once timm is imported, `cifarnets.models._timm`), so timm's training
scripts and tools can use the zoo without ever shadowing timm's own ``resnet18`` or ``vgg16``.
`create` also takes timm's ``local-dir:DIR`` and ``hf-hub:ORG/REPO`` names (a folder
written by ``cifarnets export``). Every one of these paths builds through
`cifarnets.models.create_model`; this module is the public face of it and imports no timm.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Union

import torch
import torch.nn as nn

from .models import ModelKeyword, check_model_kwargs, create_model, model_keywords
from .models._factory import natural_key, resolve_name
from .models._registry import TIMM_PREFIX, ModelCfg, entrypoints, model_builds, model_cfgs, register_model

__all__ = [
    "ModelInfo", "ModelKeyword", "TIMM_PREFIX", "builtin_models", "check_model_kwargs", "count_params", "create",
    "is_model", "list_models", "model_info", "model_keywords", "model_table", "register_model",
]


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
    return sorted(names, key=natural_key)


def is_model(name: str) -> bool:
    """True if `name` is a registered model."""
    return name in entrypoints()


def create(
    name: str,
    pretrained: Optional[bool] = None,
    *,
    num_classes: Optional[int] = None,
    in_chans: Optional[int] = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model `name`, by default exactly as its report published it.

    Keywords not given keep the published values (see `model_info`, `model_keywords`);
    `num_classes` and `in_chans` ``None`` mean the published ones. Every keyword is checked
    against the type the model declares before anything is built: ``bn="false"`` is a
    `ConfigTypeError` (``bn must be true or false, got 'false' (str)``), not a net with batch
    norm. Every model also takes timm's standard keywords (``drop_rate``, ``global_pool``,
    ``features_only``, ``out_indices``, ``pretrained_cfg_overlay``, ...; docs/models.md lists
    which each family honours). A keyword the model does not take is an `UnknownKeywordError`
    (a ``TypeError``) naming the closest valid ones; an unknown name is an `UnknownModelError`
    (a ``ValueError``) naming the closest registered names. All are cifarnets errors
    (`cifarnets.CifarnetsError`), as is every error about a keyword's value.

    ``pretrained=True`` loads weights named by ``pretrained_cfg_overlay=dict(file=...)``;
    they are verified first (dtype, shape and, for files cifarnets wrote, their checksum).

    `name` may also be ``"local-dir:DIR"`` or ``"hf-hub:ORG/REPO"``: a folder written by
    ``cifarnets export`` (or `cifarnets.hub.export_run`), built with the architecture and
    keywords of its ``config.json``. As in timm, ``pretrained=True`` loads the folder's weights
    and an explicit ``pretrained=False`` gives the architecture randomly initialised; with
    `pretrained` not given the weights are loaded too (what ``create("local-dir:DIR")`` has
    always done; ``timm.create_model`` needs ``pretrained=True`` for that).

    Example:
        >>> m = create("vgg38", bn=True, rc=True)          # the VGG38 report's VGG38 BN+RC
        >>> sum(p.numel() for p in m.parameters())
        338500
        >>> m = create("resnet18", norm_layer="detached_batchnorm")   # the ResNet-18 report's experiment
    """
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    return create_model(name, pretrained, **kwargs)


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
    device (no memory) and without its weight-init scheme (which sets values, not counts;
    on the meta device it would cost more than the build), so it is cheap even for VGG-16.

    Example:
        >>> model_info("vgg106").params
        1210948
    """
    name = resolve_name(name)
    cfg: ModelCfg = model_cfgs()[name]
    keywords: dict[str, Any] = {"init": "default"} if "init" in model_keywords(name) else {}
    with torch.device("meta"):
        model = create(name, **keywords)
    return ModelInfo(
        name=name, family=cfg.family, source=cfg.source, summary=cfg.summary, num_classes=cfg.num_classes,
        dataset=cfg.dataset, norm=cfg.norm,
        input_size=cfg.input_size, mean=cfg.mean, std=cfg.std, params=count_params(model),
        published_params=cfg.published_params, defaults=dict(cfg.defaults),
        keywords=sorted(model_keywords(name)) if name in model_builds() else [],
        notes=cfg.notes, timm_name=TIMM_PREFIX + name,
    )


def builtin_models() -> list[str]:
    """The zoo's own models (not those a user registered), in natural order."""
    return [n for n in list_models() if n in model_builds()]


def model_table(names: Optional[Iterable[str]] = None) -> str:
    """A Markdown table of models: name, report, published configuration, parameters, classes, weights.

    `names` defaults to `builtin_models()`; the README's and the docs' catalogue are this
    table, regenerated by ``docs/generate.py`` and checked by a test so they cannot drift.
    The ``weights`` column says whether the model's timm cfg names published CIFAR weights
    (none do yet: ``cifarnets train`` then ``cifarnets export`` makes them).
    """
    rows = ["| model | report | published configuration | parameters | classes | weights |",
            "|---|---|---|--:|---|---|"]
    for name in names if names is not None else builtin_models():
        info = model_info(name)
        cfg = model_cfgs()[name].pretrained_cfg(name)
        weights = "published" if any(cfg.get(k) for k in ("url", "file", "hf_hub_id")) else "none yet"
        rows.append(f"| `{name}` | {info.source} | {info.summary or '-'} | {info.params:,} | "
                    f"{info.num_classes} ({info.dataset}) | {weights} |")
    return "\n".join(rows)
