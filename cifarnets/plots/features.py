"""What a network has learned, as pictures: the filters of a convolution and the feature maps
of one image (the AlexNet/VGG report, §§7.1 and 7.2).

Both draw their tiles as one mosaic image in one axes: 64 filters draw ten times faster
than 64 axes, and the tiles line up exactly.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._utils import preserved_mode, unwrap_model
from ..errors import ModelError
from ._base import canvas, figure, root

__all__ = ["default_feature_layer", "feature_maps", "filters"]


def _named_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: module for name, module in unwrap_model(model).named_modules()}


def _get_module(model: nn.Module, name: str) -> nn.Module:
    modules = _named_modules(model)
    if name not in modules:
        import difflib
        close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ModelError(f"model has no layer {name!r}{hint} (names as in model.named_modules())")
    return modules[name]


def _first_conv(model: nn.Module) -> tuple[str, nn.Module]:
    cfg = getattr(unwrap_model(model), "pretrained_cfg", None)
    name = cfg.get("first_conv") if isinstance(cfg, dict) else None
    modules = _named_modules(model)
    if name in modules and isinstance(modules[name], nn.Conv2d):
        return name, modules[name]
    for name, module in modules.items():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ModelError(f"{type(unwrap_model(model)).__name__} has no Conv2d layer to draw")


def _model_label(model: nn.Module) -> str:
    """Registry name plus the coursework VGG flags that are on (``"vgg38 bn+rc"``)."""
    inner = unwrap_model(model)
    name = getattr(inner, "model_name", type(inner).__name__)
    flags = [flag for flag in ("bn", "rc") if getattr(inner, flag, False) is True]
    return name + (" " + "+".join(flags) if flags else "")


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _mosaic(tiles: np.ndarray, cols: int, gap: int, background: float = 1.0) -> np.ndarray:
    """``(n, h, w, 3)`` tiles in a grid of `cols` columns with `gap` pixels between them.

    One image in one axes draws 64 filters ten times faster than 64 axes, and the tiles
    line up exactly.
    """
    n, h, w, c = tiles.shape
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, c), background, dtype=float)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = tile
    return out


def filters(
    model: nn.Module,
    *,
    ax: Optional[Axes] = None,
    layer: Optional[str] = None,
    max_filters: int = 64,
    title: Optional[str] = None,
) -> Figure:
    """The filters of the first convolution as a grid of small pictures (the AlexNet/VGG report, §7.1).

    Each filter is min-max normalised on its own, so structure is visible whatever its
    scale: RGB for 3 input channels (edge detectors and colour blobs in a trained network,
    noise in one that never learned, as the AlexNet/VGG report finds for VGG-16), grey for 1 channel,
    and the mean over channels for any other number. Filter 0 is at the top left, then
    row by row.

    Args:
        model: the network.
        ax: draw into this axes instead of a new figure.
        layer: a Conv2d by qualified name; default the model's ``pretrained_cfg["first_conv"]``
            or the first Conv2d.
        max_filters: draw at most this many output channels.

    Example:
        >>> import cifarnets
        >>> fig = filters(cifarnets.create("vgg08"))
        >>> fig.axes[0].get_title().splitlines()[0]
        'vgg08: 32 filters of stem.conv'
        >>> fig.axes[0].images[0].get_array().shape   # 6 x 6 tiles of 3x3 pixels, 1-pixel gaps
        (23, 23, 3)
    """
    if layer is None:
        layer, conv = _first_conv(model)
    else:
        conv = _get_module(model, layer)
    weight = getattr(conv, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ModelError(f"layer {layer!r} has no 4-D convolution weight to draw; choose a Conv2d")
    w = weight.detach().float().cpu()[:max_filters]
    count, in_chs, kh, kw = w.shape
    if in_chs != 3:
        w = w.mean(dim=1, keepdim=True)
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    tiles = w.permute(0, 2, 3, 1).numpy()
    if tiles.shape[-1] == 1:
        tiles = np.repeat(tiles, 3, axis=-1)
    rows, cols = _grid(count)
    gap = max(1, round(max(kh, kw) / 4))
    fig, ax = canvas(ax, min(1.0 + 0.75 * cols, 10.0), min(0.9 + 0.75 * rows, 10.0))
    ax.imshow(_mosaic(tiles, cols, gap), interpolation="nearest")
    ax.set_axis_off()
    name = _model_label(model)
    colour = "RGB" if in_chs == 3 else ("grey" if in_chs == 1 else f"mean of {in_chs} channels")
    shown = f"{count} of {weight.shape[0]}" if weight.shape[0] > count else f"{count}"
    ax.set_title(title or f"{name}: {shown} filters of {layer}\n{kh}x{kw}, {colour}, each min-max normalised",
                 fontsize=10)
    return root(fig)


_ACTIVATIONS = (
    nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.PReLU, nn.Softplus,
)


def default_feature_layer(model: nn.Module, image: torch.Tensor) -> str:
    """The first activation that runs after the first convolution: the first conv block's output.

    Found by the order modules run in (a dry forward with hooks), not by their names, so it
    works for any model: ``stem.act`` in the coursework VGGs, ``features.act1_1`` in VGG-16.
    """
    conv_name, _ = _first_conv(model)
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: order.append(n))
             for n, m in _named_modules(model).items() if n and (isinstance(m, _ACTIVATIONS) or n == conv_name)]
    try:
        with torch.no_grad():
            unwrap_model(model)(image)
    finally:
        for h in hooks:
            h.remove()
    after = order[order.index(conv_name) + 1:] if conv_name in order else order
    return after[0] if after else conv_name


def feature_maps(
    model: nn.Module,
    image: torch.Tensor,
    *,
    layer: Optional[str] = None,
    max_maps: int = 32,
    title: Optional[str] = None,
    input_title: str = "input",
    cmap: str = "viridis",
) -> Figure:
    """The feature maps of one image at one layer, as a grid, next to the input (the AlexNet/VGG report, §7.2).

    The model runs in eval mode under ``no_grad`` with a forward hook on `layer`; the hook
    is removed and the modes restored afterwards. Each map has its own colour scale (the
    pattern matters, not the magnitude); maps that are constant (dead units, e.g. a ReLU
    that never fires) are drawn grey and marked, because that is a finding in itself.

    Args:
        model: the network.
        image: one input ``(C, H, W)`` or ``(1, C, H, W)``, normalised as the model expects
            (``model.pretrained_cfg["mean"]``/``["std"]``).
        layer: qualified module name; default the output of the first conv block (the first
            activation after the first convolution, e.g. ``stem.act``).
        max_maps: draw at most this many channels.
        input_title: the title over the input image, e.g. its class (``"input: ankle boot"``).

    Example:
        >>> import cifarnets, torch
        >>> fig = feature_maps(cifarnets.create("vgg08"), torch.randn(3, 32, 32), max_maps=4)
        >>> [ax.get_title() for ax in fig.axes], fig.get_suptitle().split(" (")[0]
        (['input', ''], 'vgg08: 4 of 32 feature maps at stem.act')
    """
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1:
        raise ModelError(f"feature_maps draws one image (C, H, W), got shape {tuple(image.shape)}")
    inner = unwrap_model(model)
    param = next(inner.parameters(), None)
    image = image.to(param.device if param is not None else "cpu")
    captured: list[torch.Tensor] = []
    with preserved_mode(inner, train=False):
        if layer is None:
            layer = default_feature_layer(inner, image)
        module = _get_module(inner, layer)
        # Clone in the hook: an in-place activation later in the network would overwrite it.
        hook = module.register_forward_hook(lambda mod, inp, out: captured.append(
            (out[0] if isinstance(out, (tuple, list)) else out).detach().float().cpu().clone()))
        try:
            with torch.no_grad():
                inner(image)
        finally:
            hook.remove()
    if not captured:
        raise ModelError(f"layer {layer!r} did not run in the forward pass; choose a layer the model uses")
    if captured[0].dim() != 4:
        raise ModelError(f"layer {layer!r} outputs shape {tuple(captured[0].shape)}, not feature maps (N, C, H, W); "
                         "choose a convolutional layer")
    total = captured[0].shape[1]
    maps = captured[0][0, :max_maps].numpy().astype(float)
    count, mh, mw = maps.shape
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    dead = span[:, 0, 0] <= 1e-12 * np.maximum(1.0, np.abs(lo[:, 0, 0]))
    tiles = colormaps[cmap]((maps - lo) / np.where(span > 0, span, 1.0))[..., :3]
    tiles[dead] = 0.6
    rows, cols = _grid(count)
    gap = max(1, round(max(mh, mw) / 12))
    mosaic = _mosaic(tiles, cols, gap)

    fig = figure(min(max(6.5, 2.2 + 0.9 * cols), 14.0), min(1.2 + 0.9 * rows, 12.0))
    input_ax, maps_ax = fig.subplots(1, 2, width_ratios=[1, cols * 0.9], squeeze=True)
    shown = image[0].detach().float().cpu()
    shown = (shown - shown.min()) / (shown.max() - shown.min()).clamp_min(1e-12)
    if shown.shape[0] == 3:
        input_ax.imshow(shown.permute(1, 2, 0).numpy(), interpolation="nearest")
    else:
        input_ax.imshow(shown.mean(0).numpy(), cmap="gray", interpolation="nearest")
    input_ax.set_title(input_title, fontsize=9)
    input_ax.set_axis_off()
    maps_ax.imshow(mosaic, interpolation="nearest")
    maps_ax.set_axis_off()
    for i in range(count):
        r, q = divmod(i, cols)
        x, y = q * (mw + gap), r * (mh + gap)
        maps_ax.text(x - 0.3, y - 0.3, str(i), color="white", fontsize=6, va="top", ha="left",
                     bbox={"boxstyle": "square,pad=0.1", "fc": "black", "ec": "none", "alpha": 0.5})
        if dead[i]:
            maps_ax.text(x + mw / 2, y + mh / 2, f"constant\n{lo[i, 0, 0]:.2g}", color="black", fontsize=6,
                         ha="center", va="center")
    name = _model_label(inner)
    count_text = f"{count} of {total}" if total > count else f"{total}"
    dead_text = f", {int(dead.sum())} constant (grey)" if dead.any() else ""
    # The magnitude matters too: plain VGG38's deep activations are tiny yet look as busy as
    # healthy ones on per-map scales, so the title gives the layer's overall range.
    fig.suptitle(title or f"{name}: {count_text} feature maps at {layer} ({mh}x{mw})\neach on its own colour "
                 f"scale, values from {float(maps.min()):.3g} to {float(maps.max()):.3g}{dead_text}", fontsize=10)
    return fig
