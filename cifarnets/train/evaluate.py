"""`evaluate`: loss and accuracy of a model on one split, batched on the device.

Also the bf16 autocast policy that training and evaluation share (`use_amp`, `autocast`).
"""

from __future__ import annotations

import contextlib
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import DeviceLoader, ImageSet
from .distributed import DeviceError

__all__ = ["autocast", "eval_sums", "evaluate", "use_amp"]


def use_amp(config_amp: Optional[bool], device: torch.device) -> bool:
    if config_amp is None:
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    if config_amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"amp=True asks for bf16 autocast but {torch.cuda.get_device_name(device)} has no bf16; "
                           "set amp=False (--no-amp)")
    return bool(config_amp)


def autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def eval_sums(model: nn.Module, loader: DeviceLoader, amp: bool, device: torch.device) -> torch.Tensor:
    """(loss sum, correct, count) of `loader` on the device, float64 where available."""
    was_training = model.training
    model.eval()
    dtype = torch.float32 if device.type == "mps" else torch.float64
    sums = torch.zeros(3, dtype=dtype, device=device)
    for images, labels in loader:
        with autocast(amp, device):
            logits = model(images)
        sums[0] += F.cross_entropy(logits.float(), labels, reduction="sum")
        sums[1] += (logits.argmax(1) == labels).sum()
        sums[2] += labels.shape[0]
    model.train(was_training)
    return sums


def evaluate(
    model: nn.Module,
    images: ImageSet,
    *,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    batch_size: int = 500,
    device: Optional[Union[str, torch.device]] = None,
    amp: Optional[bool] = None,
    channels_last: Optional[bool] = None,
) -> dict[str, float]:
    """Cross-entropy and accuracy (%) of `model` on a split: ``{"loss", "acc", "n"}``.

    Images are normalised with `mean`/`std`, by default the model's
    ``pretrained_cfg["mean"/"std"]`` (which `load_checkpoint` sets to the normalisation the
    checkpoint was trained with). The model is evaluated in eval mode and left in the mode
    it came in; it is moved to `device` (default: where its parameters are).

    Example:
        >>> import cifarnets
        >>> from cifarnets.data import load_dataset
        >>> data = load_dataset("synthetic", synthetic_sizes=(100, 100))
        >>> m = cifarnets.create("vgg08", num_classes=10)
        >>> r = evaluate(m, data.test, mean=data.mean, std=data.std)
        >>> sorted(r), r["n"]
        (['acc', 'loss', 'n'], 100)
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = tuple(mean if mean is not None else cfg.get("mean", ()))
    std = tuple(std if std is not None else cfg.get("std", ()))
    if not mean or not std:
        raise ValueError("evaluate() needs the normalisation: pass mean= and std= (e.g. data.mean, data.std)")
    param = next(model.parameters(), None)
    dev = torch.device(device) if device is not None else (param.device if param is not None else torch.device("cpu"))
    model.to(dev)
    use_cl = dev.type in ("cuda", "cpu") if channels_last is None else bool(channels_last)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    loader = DeviceLoader(images, batch_size, train=False, mean=mean, std=std, device=dev, channels_last=use_cl)
    sums = eval_sums(model, loader, use_amp(amp, dev), dev).tolist()
    return {"loss": sums[0] / sums[2], "acc": 100.0 * sums[1] / sums[2], "n": int(sums[2])}
