"""What model a run trains: its registry name, its `cifarnets.create` keywords, and whether it fits the data.

`fit` takes a registry name (built here through `cifarnets.create`, initial weights drawn from
the run's seed) or a module; either way the run records the name and the full keywords, so that
`load_checkpoint` and `resume` can rebuild the model from the run folder alone.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Union

import torch
import torch.nn as nn

from .._utils import CifarnetsError, preserved_mode
from ..data import DataBundle
from ..errors import ModelError
from .checkpoint import strip_prefixes

__all__ = ["ModelDataMismatchError", "ModelSpecError", "check_model_fits_data", "identify_model"]

logger = logging.getLogger(__name__)


ModelSpecError = ModelError  # kept name; the kind is cifarnets.errors.ModelError


ModelDataMismatchError = ModelError  # kept name; the kind is cifarnets.errors.ModelError


def _model_name(model: nn.Module) -> Optional[str]:
    name = getattr(model, "model_name", None)
    if not name:
        cfg = getattr(model, "pretrained_cfg", None)
        name = cfg.get("architecture") if isinstance(cfg, dict) else None
    return name if isinstance(name, str) else None


def _rebuildable(name: Optional[str], create_kwargs: Mapping[str, Any], model: nn.Module) -> bool:
    """Whether ``create(name, **create_kwargs)`` has `model`'s parameter and buffer shapes (checked on meta)."""
    from ..registry import create, is_model

    if not name or not is_model(name):
        return False
    try:
        with torch.device("meta"):
            rebuilt = create(name, **create_kwargs)
    except (TypeError, ValueError):
        return False
    want = {k: tuple(v.shape) for k, v in strip_prefixes(model.state_dict()).items()}
    have = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    return want == have


def identify_model(model: Union[nn.Module, str], model_kwargs: Optional[Mapping[str, Any]], data: DataBundle,
                   seed: int) -> tuple[nn.Module, str, dict[str, Any], dict[str, Any], bool]:
    """(model, name, the user's keywords, the full `cifarnets.create` keywords, rebuildable)."""
    flags = dict(model_kwargs or {})
    if isinstance(model, str):
        from ..registry import create

        create_kwargs = {**flags}
        create_kwargs.setdefault("in_chans", data.in_chans)
        create_kwargs.setdefault("num_classes", data.num_classes)
        # The initial weights are drawn from the run's seed: same seed, same start.
        torch.manual_seed(seed)
        try:
            built = create(model, **create_kwargs)
        except (TypeError, ValueError, KeyError) as err:
            if isinstance(err, CifarnetsError):
                raise
            raise ModelSpecError(f"cannot build {model!r} with {create_kwargs}: {err}") from err
        name = _model_name(built) or model
        return built, name, flags, create_kwargs, True
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit() trains an nn.Module or a registered model name; got {type(model).__name__}")
    name = _model_name(model) or type(model).__name__
    create_kwargs = {**flags}
    for attr in ("in_chans", "num_classes"):
        if attr not in create_kwargs and isinstance(getattr(model, attr, None), int):
            create_kwargs[attr] = getattr(model, attr)
    ok = _rebuildable(name, create_kwargs, model)
    if not ok:
        logger.warning(
            "cannot rebuild %s from cifarnets.create(%r, **%s): checkpoints of this run will load as state dicts. "
            "Pass the create() keywords as fit(..., model_kwargs={...}) (e.g. bn=True, rc=True) to make them "
            "self-contained.", type(model).__name__, name, create_kwargs)
    return model, name, flags, create_kwargs, ok


def check_model_fits_data(model: nn.Module, data: DataBundle) -> None:
    """Refuse a model whose input channels, classifier or output shape does not fit `data`.

    Besides the ``in_chans``/``num_classes`` attributes, one forward pass of two training
    images (eval mode, no gradient, every buffer restored) checks what the model really
    returns: logits of shape (N, K) with K at least the data set's classes. A model built
    without a classifier (``num_classes=0`` returns features) is refused here, before the run
    folder is written, rather than trained into a 10 % run.
    """
    in_chans = getattr(model, "in_chans", None)
    if isinstance(in_chans, int) and in_chans != data.in_chans:
        raise ModelDataMismatchError(
            f"the model takes {in_chans}-channel images but {data.name} has {data.in_chans} channel(s); build it with "
            f"in_chans={data.in_chans} (CLI: filled in unless --in-chans is given)")
    num_classes = getattr(model, "num_classes", None)
    if isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes <= 0:
        raise ModelDataMismatchError(
            f"the model has no classifier (num_classes={num_classes}: it returns features) and cannot be trained on "
            f"{data.name}; build it with num_classes={data.num_classes} (CLI: drop --num-classes)")
    if isinstance(num_classes, int) and num_classes < data.num_classes:
        raise ModelDataMismatchError(
            f"the model has {num_classes} outputs but {data.name} has {data.num_classes} classes; build it with "
            f"num_classes={data.num_classes}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    probe = data.train.images[:2].to(device=device, dtype=dtype) / 255.0
    try:
        with torch.no_grad(), preserved_mode(model, train=False, buffers=True):
            out = model(probe)
    except Exception as err:  # the model's own message, with what was fed to it
        if isinstance(err, CifarnetsError):
            raise
        raise ModelDataMismatchError(
            f"the model fails on {data.name}'s images (shape {tuple(probe.shape)}, {probe.dtype}): "
            f"{type(err).__name__}: {err}") from err
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != probe.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelDataMismatchError(
            f"the model returns {shape} for a batch of {probe.shape[0]} images; training needs logits of shape "
            f"(batch, classes) with at least {data.num_classes} classes (is its classifier missing?)")
    if out.shape[1] < data.num_classes:
        raise ModelDataMismatchError(
            f"the model has {out.shape[1]} outputs but {data.name} has {data.num_classes} classes; build it with "
            f"num_classes={data.num_classes}")
    if isinstance(num_classes, int) and num_classes > data.num_classes:
        logger.warning("the model has %d outputs for %d classes; the extra outputs are never a target",
                       num_classes, data.num_classes)
