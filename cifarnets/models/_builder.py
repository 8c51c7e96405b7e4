"""Shared build step of every family: check keywords, apply published defaults, construct.

The counterpart of timm's ``build_model_with_cfg``, kept small: it validates the keyword
arguments against the model class's signature (so a typo is a `TypeError` that names it
and the valid ones, not a silent no-op) and refuses ``pretrained=True`` until weights exist.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, TypeVar

import torch.nn as nn

from ._registry import ModelCfg

__all__ = ["attach_cfg", "build_model", "valid_kwargs"]

_M = TypeVar("_M", bound=nn.Module)


def valid_kwargs(model_cls: type) -> list[str]:
    """Keyword arguments `model_cls` accepts (its ``__init__`` parameters)."""
    params = inspect.signature(model_cls).parameters
    return [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def build_model(
    model_cls: type[_M], variant: str, cfg: ModelCfg, pretrained: bool = False, *args: Any, **kwargs: Any
) -> _M:
    """Build ``model_cls(*args, **kwargs)`` as the registered `variant`, the user's keywords over
    ``cfg.defaults``. `args` are the positional-only architecture arguments of the family.

    Raises:
        TypeError: for a keyword the class does not take, naming the closest valid ones.
        NotImplementedError: for ``pretrained=True``: no weights are published yet.
    """
    if pretrained:
        raise NotImplementedError(
            f"no pretrained weights are published for {variant!r} yet; train them with "
            f"`cifarnets train {variant} ...` and load the checkpoint with cifarnets.train.load_checkpoint()"
        )
    # timm's create_model passes these to every entry point; they have no meaning here.
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    allowed = valid_kwargs(model_cls)
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=2)
            hints.append(f"{key!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
        raise TypeError(
            f"{variant}() got unexpected keyword argument{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
            f"valid keywords are: {', '.join(sorted(allowed))}"
        )
    merged = {**cfg.defaults, **kwargs}
    if "num_classes" in allowed and merged.get("num_classes") is None:
        merged["num_classes"] = cfg.num_classes
    model = model_cls(*args, **merged)
    attach_cfg(model, variant, cfg)
    return model


def attach_cfg(model: nn.Module, variant: str, cfg: ModelCfg) -> nn.Module:
    """Give `model` its name and timm-style ``pretrained_cfg`` for the input it expects.

    ``pretrained_cfg`` follows timm's keys (``input_size``, ``mean``, ``std``,
    ``num_classes``, ...) so timm's data helpers (``resolve_data_config``) work on it.
    """
    in_chans = getattr(model, "in_chans", cfg.input_size[0])
    mean, std = cfg.mean, cfg.std
    if in_chans != len(mean):
        # Published statistics are per RGB channel; for other inputs use their average.
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    setattr(model, "model_name", variant)  # plain attributes, set on any nn.Module
    setattr(model, "pretrained_cfg", {
        "architecture": variant,
        "source": cfg.source,
        "dataset": cfg.dataset,
        "num_classes": getattr(model, "num_classes", cfg.num_classes),
        "input_size": (in_chans, *cfg.input_size[1:]),
        "fixed_input_size": cfg.fixed_input_size,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": tuple(mean),
        "std": tuple(std),
        "first_conv": cfg.first_conv,
        "classifier": cfg.classifier,
        "notes": cfg.notes,
    })
    setattr(model, "default_cfg", model.pretrained_cfg)  # the older timm name, still read by some tools
    return model
