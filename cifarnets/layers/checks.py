"""Input validation that turns torch's deep shape errors into one clear message.

The zoo's base class (`cifarnets.models.CifarNet`) is the one caller; it registers the check
with `torch.fx.wrap`, so graph tools (the receptive-field tracer, torchvision's feature
extractor) see it as a single pass-through call instead of tracing into the Python `if`s,
and `torch.export` evaluates it on static shapes. It is TorchScript-compatible, so scripted
models (and scripted fx graphs) check their input too.
"""

from __future__ import annotations

from typing import Optional

import torch

from .errors import InputError, InputTypeError

__all__ = ["check_input"]


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join([str(d) for d in shape]) + ")"


def check_input(
    x: torch.Tensor,
    in_chans: int,
    model_name: str,
    reduction: int = 1,
    feature_size: Optional[tuple[int, int]] = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Return `x` unchanged if a model can take it, else raise an error that says why: an
    `InputTypeError` (a ``TypeError``) for a non-floating dtype, an `InputError` (a ``ValueError``)
    for a wrong shape. Scripted, TorchScript raises its own ``torch.jit.Error`` with the message.

    Args:
        x: the batch, expected ``(N, in_chans, H, W)``.
        in_chans: channels the first layer was built for.
        model_name: used in the message.
        reduction: total down-sampling factor of the trunk; H and W must be at least this.
        feature_size: for a fixed classifier head, the (h, w) feature map the head was built
            for: ``H // reduction`` must equal it, so the message names the input size
            ``feature_size * reduction``.
        dtype: the model's weight dtype: a floating batch of another dtype (float64 into a
            float32 model) is an `InputTypeError` saying how to convert, instead of torch's
            "expected scalar type Double" deep in the first layer. ``None`` skips the check
            (under autocast, where mixed dtypes are the point).

    Example:
        >>> check_input(torch.zeros(2, 3, 32, 32), 3, "vgg16", 32, (1, 1)).shape
        torch.Size([2, 3, 32, 32])
    """
    if feature_size is not None:
        want = f"(N, {in_chans}, {feature_size[0] * reduction}, {feature_size[1] * reduction})"
    else:
        want = f"(N, {in_chans}, H, W) with H, W >= {reduction}"
    if not torch.is_floating_point(x):
        hint = (" (uint8 images: convert with x.float() / 255 and normalise with the model's "
                "pretrained_cfg['mean'] and ['std'])") if x.dtype == torch.uint8 else ": convert it with x.float()"
        raise InputTypeError(f"{model_name} expects a floating-point batch, got dtype {x.dtype}{hint}")
    if dtype is not None and x.dtype != dtype:
        raise InputTypeError(
            f"{model_name} has {dtype} weights but got a {x.dtype} batch: convert the batch with x.to({dtype}) "
            f"(e.g. x.float()), or the model with model.to({x.dtype})"
        )
    if x.dim() != 4:
        raise InputError(
            f"{model_name} expects a 4-D batch of shape {want}, got a {x.dim()}-D tensor of shape "
            f"{_shape(list(x.shape))}" + ("; add a batch dimension with x.unsqueeze(0)" if x.dim() == 3 else "")
        )
    shape = _shape(list(x.shape))
    c, h, w = x.size(1), x.size(2), x.size(3)
    if c != in_chans:
        raise InputError(
            f"{model_name} expects input of shape {want}, got {shape}: "
            f"{c} channel{'s' if c != 1 else ''} instead of {in_chans}. "
            f"Create the model with in_chans={c}, or convert the images."
        )
    if feature_size is not None:
        if h // reduction != feature_size[0] or w // reduction != feature_size[1]:
            raise InputError(
                f"{model_name} has a fixed classifier head built for {feature_size[0]}x{feature_size[1]} feature "
                f"maps, so it expects input of shape {want}; got {shape}. Resize or pad the images to "
                f"{feature_size[0] * reduction}x{feature_size[1] * reduction}, or use a model with global pooling."
            )
    elif h < reduction or w < reduction:
        raise InputError(
            f"{model_name} down-samples by {reduction}, so it expects input of shape {want}; got {shape}"
        )
    return x
