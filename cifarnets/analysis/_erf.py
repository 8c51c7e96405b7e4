"""Effective receptive field (Luo, Li, Urtasun and Zemel, "Understanding the Effective
Receptive Field in Deep Convolutional Neural Networks", NeurIPS 2016).

The theoretical receptive field (`receptive_field`, the AlexNet/VGG report's §4) says which input pixels
*can* influence a unit. Luo et al. measure how much each pixel *does*: set the gradient of
the central output unit to one and every other to zero, back-propagate to the input, and
average the magnitude over images. The map is close to Gaussian and usually covers only a
fraction of the theoretical field; training and skip connections widen it.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 1, 3, bias=False), nn.Conv2d(1, 1, 3, bias=False))
    >>> _ = [nn.init.ones_(c.weight) for c in net]
    >>> erf = effective_receptive_field(net, torch.randn(2, 1, 9, 9))
    >>> erf.map[4, 2:7].tolist()      # a 3x3 box convolved with itself: 1 2 3 2 1 per axis
    [3.0, 6.0, 9.0, 6.0, 3.0]
    >>> erf.rf, erf.side(1.0)
    (5, 5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from .._utils import preserved_mode
from ..errors import ConfigError, ConfigTypeError
from .receptive_field import ReceptiveFieldError, receptive_field
from .receptive_field.geometry import Size2, collapse

__all__ = ["ErfResult", "effective_receptive_field"]


@dataclass(frozen=True)
class ErfResult:
    """An effective receptive field: a gradient-magnitude map and numbers that summarise it.

    Attributes:
        map: ``(H, W)`` float64 array, the mean over images of the absolute input gradient
            of the analysed unit, summed over input channels.
        unit: ``(row, col)`` of the analysed unit in the feature map (its centre,
            ``(h // 2, w // 2)``).
        feature_size: ``(h, w)`` of the feature map.
        centre: centre of the unit's theoretical receptive field in input pixel
            coordinates (the image centre if the model could not be traced).
        rf: theoretical receptive-field size from `receptive_field`, or ``None`` if the
            model could not be traced.
        rf_start, rf_end: first and last input pixel ``(row, col)`` of the unit's
            theoretical field (may lie outside the image), or ``None``.
        layer: the analysed module (``""``: the output of `method`).
        method: the model method that was run.
        num_images: images averaged over.
    """

    map: np.ndarray
    unit: tuple[int, int]
    feature_size: tuple[int, int]
    centre: tuple[float, float]
    rf: Optional[Size2]
    rf_start: Optional[tuple[int, int]]
    rf_end: Optional[tuple[int, int]]
    layer: str
    method: str
    num_images: int

    def side(self, share: float = 0.95) -> Size2:
        """Side of the smallest square centred on `centre` that holds `share` of the map's mass.

        Squares grow one pixel per side at a time (sides 1, 3, 5... around a pixel centre,
        2, 4, 6... around a centre between pixels); parts outside the image hold no mass.
        Returns an int, or ``(h, w)`` when the two axes need different parities.

        Example:
            >>> import numpy as np
            >>> m = np.zeros((5, 5)); m[2, 2] = 3.0; m[2, 3] = 1.0
            >>> r = ErfResult(m, (0, 0), (1, 1), (2.0, 2.0), None, None, None, "", "forward", 1)
            >>> r.side(0.75), r.side(0.9)
            (1, 3)
        """
        if not 0.0 < share <= 1.0:
            raise ConfigError(f"share is a fraction of the gradient mass in (0, 1], got {share}")
        m = self.map
        total = float(m.sum())
        if total == 0.0:
            return 0
        h, w = m.shape
        # Summed-area table: the mass of any box in O(1).
        sat = np.zeros((h + 1, w + 1))
        sat[1:, 1:] = m.cumsum(0).cumsum(1)
        base = [c - np.floor(c) for c in self.centre]  # 0 for a pixel centre, 0.5 between pixels
        need = share * total * (1.0 - 1e-12)
        for k in range(max(h, w) + 1):
            r = [b + k for b in base]
            lo = [int(np.ceil(c - ra)) for c, ra in zip(self.centre, r)]
            hi = [int(np.floor(c + ra)) for c, ra in zip(self.centre, r)]
            r0, c0 = max(lo[0], 0), max(lo[1], 0)
            r1, c1 = min(hi[0], h - 1) + 1, min(hi[1], w - 1) + 1
            mass = sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0] if r1 > r0 and c1 > c0 else 0.0
            if mass >= need:
                return collapse((int(2 * r[0] + 1), int(2 * r[1] + 1)))
        raise AssertionError("unreachable: the whole image holds all the mass")

    def ratio(self, share: float = 0.95) -> Optional[float]:
        """`side` divided by the theoretical receptive field (rows), or ``None`` without one."""
        if self.rf is None:
            return None
        side = self.side(share)
        s = side if isinstance(side, int) else side[0]
        r = self.rf if isinstance(self.rf, int) else self.rf[0]
        return s / r

    @property
    def sigma(self) -> tuple[float, float]:
        """Standard deviation (pixels) of the normalised map along rows and columns.

        Luo et al. show the map tends to a Gaussian whose width grows like the square root
        of the depth, so this is its natural size measure.
        """
        m = self.map
        total = m.sum()
        if total == 0:
            return (0.0, 0.0)
        out = []
        for axis in (0, 1):
            p = m.sum(axis=1 - axis) / total
            i = np.arange(p.size)
            mu = (p * i).sum()
            out.append(float(np.sqrt((p * (i - mu) ** 2).sum())))
        return (out[0], out[1])

    @property
    def mass_inside_rf(self) -> Optional[float]:
        """Share of the mass inside the theoretical field: 1.0 for any correct model and trace."""
        if self.rf_start is None or self.rf_end is None:
            return None
        total = self.map.sum()
        if total == 0:
            return 1.0
        (r0, c0), (r1, c1) = self.rf_start, self.rf_end
        inside = self.map[max(r0, 0):max(r1 + 1, 0), max(c0, 0):max(c1 + 1, 0)].sum()
        return float(inside / total)

    def __str__(self) -> str:
        where = f"`{self.layer}`" if self.layer else f"the output of {self.method}"
        parts = [
            f"Effective receptive field of unit {self.unit} of {where} ({self.feature_size[0]}×{self.feature_size[1]}),"
            f" mean over {self.num_images} image{'s' if self.num_images != 1 else ''}",
            f"  centre (input px): ({self.centre[0]:g}, {self.centre[1]:g})",
            f"  sigma (px): {self.sigma[0]:.2f} × {self.sigma[1]:.2f}",
        ]
        for share in (0.5, 0.9, 0.95):
            side = self.side(share)
            side_s = f"{side}×{side}" if isinstance(side, int) else f"{side[0]}×{side[1]}"
            parts.append(f"  {share:.0%} of the gradient mass within {side_s} px")
        if self.rf is not None:
            rf_s = f"{self.rf}×{self.rf}" if isinstance(self.rf, int) else f"{self.rf[0]}×{self.rf[1]}"
            parts.append(f"  theoretical receptive field {rf_s} (95 % side / rf = {self.ratio(0.95):.2f})")
        return "\n".join(parts)


class _Captured(Exception):
    """Raised by the capture hook to skip the rest of the forward pass."""


def effective_receptive_field(
    model: nn.Module,
    images: torch.Tensor,
    *,
    layer: Optional[str] = None,
    method: Optional[str] = None,
    eval_mode: bool = True,
) -> ErfResult:
    """Luo et al.'s effective receptive field of the central unit of a feature map.

    For every image the gradient of the central unit (summed over channels) with respect to
    the input is taken; the map is its absolute value, summed over input channels and
    averaged over images. Parameter gradients (``.grad``) are not touched.

    Args:
        model: the network. Run in eval mode by default: in train mode batch norm couples
            the images of a batch, so each image's map would carry gradient from the
            others' pixels. The model's modes are restored afterwards.
        images: ``(N, C, H, W)`` floating-point batch; it is converted to the model's dtype
            and device. Luo et al. use random inputs for an untrained net and data for a
            trained one.
        layer: qualified name of the module whose output to analyse (it must be a 4-D
            feature map reached by `method`); default the output of `method`.
        method: the model method to run; default ``forward_features`` (the last feature
            map of a timm-style model) if the model has it, else ``forward``.
        eval_mode: run in eval mode (default); ``False`` keeps the model's current modes.

    Returns:
        An `ErfResult` with the map, the side of the square holding a given share of the
        mass, its ratio to the theoretical receptive field (from `receptive_field`), and
        the map's spread.

    Example:
        >>> import torch, cifarnets
        >>> erf = effective_receptive_field(cifarnets.create("resnet20"), torch.randn(4, 3, 32, 32))
        >>> erf.map.shape, erf.rf
        ((32, 32), 81)
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"images must be a (N, C, H, W) batch, got {shape}")
    if not images.is_floating_point():
        raise ConfigTypeError(f"images must be a floating-point batch, got dtype {images.dtype}; convert them with "
                              f"images.float() (uint8 images: images.float() / 255, then normalise)")
    if method is None:
        method = "forward_features" if callable(getattr(model, "forward_features", None)) else "forward"
    run = getattr(model, method, None)
    if not callable(run):
        raise ConfigError(
            f"{type(model).__name__} has no method {method!r}; pass method='forward' or the method that returns the "
            f"feature map"
        )

    # The model's dtype and device (a float64 batch for a float32 model, say): the map is a gradient magnitude,
    # which the conversion does not change beyond rounding.
    param = next(model.parameters(), None)
    like = param if param is not None and param.is_floating_point() else images
    x = images.detach().to(dtype=like.dtype, device=like.device).clone().requires_grad_(True)
    with preserved_mode(model, False if eval_mode else None), torch.enable_grad():
        if layer is None:
            out = run(x)
        else:
            try:
                module = model.get_submodule(layer)
            except AttributeError as e:
                raise ConfigError(f"{type(model).__name__} has no module {layer!r}; pass a name from "
                                  f"model.named_modules()") from e
            captured: list[torch.Tensor] = []

            def hook(_m: nn.Module, _inp: object, output: object) -> None:
                captured.append(output[0] if isinstance(output, (tuple, list)) else output)  # type: ignore[arg-type]
                raise _Captured

            handle = module.register_forward_hook(hook)
            try:
                run(x)
            except _Captured:
                pass
            finally:
                handle.remove()
            if not captured:
                raise ConfigError(f"module {layer!r} was not called by {type(model).__name__}.{method}; "
                                 f"pass method='forward' if it lies in the head")
            out = captured[0]
        out = out if isinstance(out, torch.Tensor) else next(t for t in out if isinstance(t, torch.Tensor))
        if out.dim() != 4:
            raise ConfigError(
                f"the analysed output has shape {tuple(out.shape)}, not a (N, C, h, w) feature map; analyse the "
                f"trunk (method='forward_features') or a convolutional layer (layer=...)"
            )
        fh, fw = int(out.shape[-2]), int(out.shape[-1])
        unit = (fh // 2, fw // 2)
        (grad,) = torch.autograd.grad(out[:, :, unit[0], unit[1]].sum(), x)
    erf_map = grad.detach().abs().sum(dim=1).mean(dim=0).double().cpu().numpy()

    rf: Optional[Size2] = None
    start = end = None
    h, w = int(images.shape[-2]), int(images.shape[-1])
    centre = ((h - 1) / 2, (w - 1) / 2)
    try:
        table = receptive_field(model, tuple(images.shape[1:]), method=method, strict=False)
        geom = table.at(layer) if layer else table.output
    except (ReceptiveFieldError, KeyError):
        geom = None  # untraceable model: the map is still right, only the comparison is missing
    if geom is not None and not geom.is_global:
        jump = geom.jump if isinstance(geom.jump, tuple) else (geom.jump, geom.jump)
        start = (geom.start[0] + unit[0] * jump[0], geom.start[1] + unit[1] * jump[1])
        end = (geom.end[0] + unit[0] * jump[0], geom.end[1] + unit[1] * jump[1])
        centre = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        rf = geom.rf
    return ErfResult(
        map=erf_map, unit=unit, feature_size=(fh, fw), centre=centre, rf=rf, rf_start=start, rf_end=end,
        layer=layer or "", method=method, num_images=int(images.shape[0]),
    )
