"""Gradient flow: the mean absolute gradient of every weight layer, in network order.

This is the quantity behind the coursework reports' gradient-flow figures (the VGG38
reports' Figs. 2, 3 and 5, the deeper-VGG report's Fig. 1; docs/references.md lists the
reports): for each convolution and linear
layer, ``mean(|dL/dW|)`` over the entries of its weight, plotted from the first layer to
the classifier. In plain VGG38 at PyTorch's default initialisation it collapses towards
the input (about 1e-18 at the first convolution, against 1e-6 in VGG08); batch norm and
residual connections restore it. Three tools measure it:

- `GradientFlowRecorder`: what the trainer uses. ``accumulate()`` after every backward adds
  each layer's mean |grad| to running sums kept on the device, with no host
  synchronisation; ``result()`` at the end of an epoch gives the per-layer averages that a
  `~cifarnets.train.history.EpochRecord` stores as ``grad_flow``.
- `gradient_flow`: one forward/backward on one batch, for a diagnosis at initialisation
  (or of any checkpoint) without touching the model's ``.grad``, mode or BN statistics.
- `compare_gradient_flow`: `gradient_flow` for several registry models built under the same
  seed, e.g. VGG08, VGG38 and VGG38 with BN, RC and BN+RC, the comparison of the reports.

`cifarnets.plots.gradient_flow` and `cifarnets.plots.gradient_flow_comparison` draw them.

Example:
    >>> import cifarnets
    >>> from cifarnets.analysis import compare_gradient_flow, random_batch
    >>> images, labels = random_batch(16, num_classes=100)
    >>> flows = compare_gradient_flow(["vgg08", ("vgg38", {})], images, labels)
    >>> flows["vgg38"].values[0] < 1e-6 * flows["vgg08"].values[0]   # vanished at the input
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._utils import preserved_mode, unwrap_model

__all__ = [
    "GradientFlow", "GradientFlowRecorder", "ModelSpec", "VANISHING_GRADIENT_SPECS", "compare_gradient_flow",
    "comparison_table",
    "gradient_flow", "random_batch", "spec_label", "unwrap_model", "weight_layers",
]

# (registry name, create() keywords), or a bare registry name.
ModelSpec = Union[str, tuple[str, Mapping[str, Any]]]

#: The five networks of the VGG38 reports' Table 1, whose gradient flow the reports compare.
VANISHING_GRADIENT_SPECS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("vgg08", {}),
    ("vgg38", {}),
    ("vgg38", {"bn": True}),
    ("vgg38", {"rc": True}),
    ("vgg38", {"bn": True, "rc": True}),
)

_WRAPPER_SEGMENT = "_orig_mod"  # torch.compile's OptimizedModule keeps the model under this name
# Steps recorded per block before `GradientFlowRecorder` folds them into its sums: a few
# hundred, so that a CIFAR epoch (782 steps of 64) folds about three times.
_BLOCK_ROWS = 256
_LOW_PRECISION = (torch.float16, torch.bfloat16, torch.float32)


def _clean_name(name: str) -> str:
    # A submodule compiled on its own (``model.stages = torch.compile(model.stages)``) puts
    # ``_orig_mod`` in the middle of the names; it is never part of a real layer's name.
    return ".".join(part for part in name.split(".") if part != _WRAPPER_SEGMENT)


def weight_layers(model: nn.Module, *, include_norm: bool = False) -> list[tuple[str, nn.Parameter]]:
    """The weight of every convolution and linear layer, in module order, named by the module.

    These are the layers of the coursework reports' gradient-flow figures: the
    parameters with ``dim >= 2`` owned directly by a convolution (any ``_ConvNd``) or
    ``nn.Linear`` (subclasses included, e.g. timm's ``StdConv2d``). Biases are left out:
    the reports plot weights. Names are the qualified module names with DDP /
    ``torch.compile`` wrappers stripped (``stem.conv``, ``stages.0.block0.conv1``, ...,
    ``head.fc``). Module registration order is forward order for every zoo model.

    Args:
        model: any module, possibly wrapped.
        include_norm: also the affine scale (``weight``, 1-D) of normalisation layers
            (BatchNorm, GroupNorm, LayerNorm, ...), named by their module.

    Example:
        >>> import cifarnets
        >>> names = [n for n, _ in weight_layers(cifarnets.create("vgg08"))]
        >>> names[0], names[-1], len(names)
        ('stem.conv', 'head.fc', 8)
    """
    layers: list[tuple[str, nn.Parameter]] = []
    for name, module in unwrap_model(model).named_modules():
        weight = module._parameters.get("weight")  # owned by this module, not a child
        if not isinstance(weight, nn.Parameter) or isinstance(weight, nn.parameter.UninitializedParameter):
            continue
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and weight.dim() >= 2:
            layers.append((_clean_name(name), weight))
        elif include_norm and weight.dim() == 1:
            layers.append((_clean_name(name), weight))
    return layers


class GradientFlowRecorder:
    """Per-layer mean |grad| averaged over training steps, accumulated on the device.

    The trainer calls `accumulate` after every backward (after ``scaler.unscale_`` when it
    uses a ``GradScaler``) and `result` once an epoch, then `reset`. Each `accumulate` is
    one device op whatever the depth, a fused multi-tensor L1 norm over all weight gradients
    (``torch._foreach_norm``, as ``clip_grad_norm_`` uses), whose results are kept until a
    block of steps is full; a full block (and `result`) is stacked and added to float64 sums
    in step order. It never reads a value back to the host, so it does not stall a GPU
    pipeline; only `result` synchronises. (Inside a training step on a CPU each op costs
    several times what it costs alone, the first of its kind most: docs/performance.md,
    "Overhead around the step".)

    Decisions:
        - A layer's value is the mean over the steps where it *had* a finite gradient. A
          layer whose ``.grad`` is ``None`` (frozen, or unused in that forward) does not
          count on that step, and a step whose gradient overflowed (``inf``/``nan``, an AMP
          step the scaler skips) does not count for that layer either.
        - `result` reports NaN for a layer with no counted step since `reset`, so every
          epoch records the same layers in the same order; the plots show NaN as a gap.
        - Under DDP the gradients are already averaged over ranks after backward, so the
          values are the same on every rank and need no reduction.

    Example:
        >>> import cifarnets, torch.nn.functional as F
        >>> model = cifarnets.create("vgg08")
        >>> recorder = GradientFlowRecorder(model)
        >>> for _ in range(2):
        ...     F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
        ...     recorder.accumulate()
        ...     model.zero_grad()
        >>> flow = recorder.result()        # {"stem.conv": ..., ..., "head.fc": ...}
        >>> list(flow)[:2], recorder.steps
        (['stem.conv', 'stages.0.reduction.conv1'], 2)
    """

    def __init__(self, model: nn.Module, *, include_norm: bool = False) -> None:
        layers = weight_layers(model, include_norm=include_norm)
        if not layers:
            raise ValueError(
                f"{type(unwrap_model(model)).__name__} has no convolution or linear weights to record; "
                "gradient flow is measured on conv/linear layers (pass include_norm=True to add norm scales)"
            )
        self.layers: list[str] = [name for name, _ in layers]
        self._params: list[nn.Parameter] = [p for _, p in layers]
        self._device = self._params[0].device
        self._same_device = all(p.device == self._device for p in self._params)
        # float64 sums keep 1e-18-sized values exact over thousands of steps; MPS has no float64.
        self._dtype = torch.float32 if self._device.type == "mps" else torch.float64
        self._numel = torch.tensor([p.numel() for p in self._params], dtype=self._dtype, device=self._device)
        self._missing = torch.tensor(math.nan, dtype=torch.float32, device=self._device)  # a layer without .grad
        self.reset()

    def reset(self) -> None:
        """Start a new average (call at the start of every epoch)."""
        self._sums = torch.zeros(len(self._params), dtype=self._dtype, device=self._device)
        self._counts = torch.zeros_like(self._sums)
        self._pending: list[torch.Tensor] = []  # the norms of `_filled` steps, layer after layer
        self._filled = 0
        self.steps = 0

    @torch.no_grad()
    def accumulate(self) -> None:
        """Record the current ``.grad`` of every layer (no host sync).

        One fused norm per step, whose results are kept as they are (storing them would be a
        second op) until `_BLOCK_ROWS` steps have gathered; those are then stacked and folded
        into the float64 sums in step order, as `result` does with the rest.
        """
        grads = [p.grad for p in self._params]
        present = [g for g in grads if g is not None]
        if not present:
            return
        # L1 norm / numel = mean |g|. Low-precision grads are normed in float32 so that a
        # large fp16 layer cannot overflow; float64 grads keep their precision.
        low_precision = all(g.dtype in _LOW_PRECISION for g in present)
        norms: Sequence[torch.Tensor] = torch._foreach_norm(
            present, 1, dtype=torch.float32 if low_precision else None)  # type: ignore[arg-type]
        if not self._same_device:
            norms = [n.to(self._device, non_blocking=True) for n in norms]
        if len(present) == len(grads):
            self._pending.extend(norms)
        else:
            # A layer without a gradient on this step is not counted, as a non-finite one is not.
            found = iter(norms)
            self._pending.extend(self._missing if g is None else next(found) for g in grads)
        self._filled += 1
        self.steps += 1
        if self._filled == _BLOCK_ROWS:
            self._fold()

    def _fold(self) -> None:
        """Add the recorded steps to the sums, step after step in the order recorded.

        A cumulative sum down the rows adds them one by one, as ``sums += row`` per step would
        (the same float64 result; on CUDA the scan of a leading dimension is sequential too).
        float32 norms become float64 exactly here.
        """
        if self._filled == 0:
            return
        rows = torch.stack(self._pending).view(self._filled, len(self._params)).to(self._dtype)
        self._pending = []
        finite = torch.isfinite(rows)
        values = torch.where(finite, rows, torch.zeros((), dtype=rows.dtype, device=rows.device))
        values[0] += self._sums
        self._sums = values.cumsum(0)[-1]
        self._counts += finite.sum(0, dtype=self._dtype)
        self._filled = 0

    def result(self) -> dict[str, float]:
        """``{layer: mean |grad| averaged over the counted steps}`` since `reset`, network order.

        NaN for a layer with no counted step. This is the one call that synchronises.
        """
        self._fold()
        means = self._sums / (self._counts * self._numel)  # 0/0 -> NaN for layers never counted
        return dict(zip(self.layers, means.tolist()))


@dataclass
class GradientFlow:
    """Mean |grad| of every weight layer of one network on one batch, in network order.

    Attributes:
        layers: layer names (``stem.conv`` ... ``head.fc``), as `weight_layers` gives them.
        values: mean absolute gradient of each layer's weight; NaN where the layer got no
            gradient (frozen or unused).
        label: what to call the network in tables and legends (``"vgg38 bn+rc"``).
        loss: the loss of the batch.
        batch_size: images in the batch.
        meta: how it was measured (model name, keywords, seed, mode), for titles.

    Example:
        >>> flow = GradientFlow(["stem.conv", "head.fc"], [1e-18, 2e-4], label="vgg38")
        >>> flow["head.fc"]
        0.0002
    """

    layers: list[str]
    values: list[float]
    label: str = ""
    loss: float = math.nan
    batch_size: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.values):
            raise ValueError(f"GradientFlow needs one value per layer, got {len(self.layers)} layers "
                             f"and {len(self.values)} values")

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, layer: str) -> float:
        try:
            return self.values[self.layers.index(layer)]
        except ValueError:
            raise KeyError(f"no layer {layer!r} in this gradient flow; layers are {self.layers}") from None

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return iter(zip(self.layers, self.values))

    def to_dict(self) -> dict[str, float]:
        """``{layer: mean |grad|}`` in network order (the format `EpochRecord.grad_flow` uses)."""
        return dict(zip(self.layers, self.values))

    def __str__(self) -> str:
        # A log10 bar per layer makes the collapse visible in a terminal.
        finite = [v for v in self.values if v > 0 and math.isfinite(v)]
        top = math.log10(max(finite)) if finite else 0.0
        name_width = max([len("layer")] + [len(n) for n in self.layers])
        header = f"gradient flow of {self.label or 'model'}"
        if self.batch_size:
            header += f" on a batch of {self.batch_size}"
        if math.isfinite(self.loss):
            header += f" (loss {self.loss:.4f})"
        lines = [header, f"{'#':>3}  {'layer':<{name_width}}  {'mean |grad|':>11}  log scale, one # per decade"]
        for i, (name, value) in enumerate(zip(self.layers, self.values)):
            if value > 0 and math.isfinite(value):
                bar = "#" * max(1, 1 + int(round(math.log10(value) - top + 20)))
                bar = bar if len(bar) <= 21 else bar[:21]
            else:
                bar = "(no gradient)" if math.isnan(value) else "(zero)"
            lines.append(f"{i:>3}  {name:<{name_width}}  {value:>11.3e}  {bar}")
        return "\n".join(lines)


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def gradient_flow(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    train: bool = True,
    include_norm: bool = False,
    label: str = "",
) -> GradientFlow:
    """Mean |grad| of every weight layer after one forward/backward on one batch.

    The diagnosis of the VGG38 reports' Figs. 2, 3 and 5 without a training run: on a freshly
    created model it shows at once whether the gradient reaches the first layers. The
    gradients come from ``torch.autograd.grad``, so the model's ``.grad`` fields are never
    touched; its train/eval mode and buffers (BN running statistics) are restored.

    Args:
        model: the network (a DDP / compile wrapper is unwrapped: this is a local pass).
        images: a batch ``(N, C, H, W)``; moved to the model's device.
        labels: class indices ``(N,)``, or whatever `loss_fn` takes as target.
        loss_fn: ``loss_fn(logits, labels) -> scalar``; cross-entropy by default.
        train: measure in train mode (as during training: BN uses batch statistics) or eval.
        include_norm: also norm-layer scales (see `weight_layers`).
        label: the name used in tables and plots; the model's registry name by default.

    Example:
        >>> import cifarnets
        >>> images, labels = random_batch(8, num_classes=100)
        >>> flow = gradient_flow(cifarnets.create("vgg08"), images, labels)
        >>> flow.layers[0], flow.values[0] > 0
        ('stem.conv', True)
    """
    model = unwrap_model(model)
    layers = weight_layers(model, include_norm=include_norm)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no convolution or linear weights to measure")
    if images.dim() != 4:
        raise ValueError(f"images must be a batch (N, C, H, W), got shape {tuple(images.shape)}; "
                         "use images.unsqueeze(0) for a single image")
    device = _model_device(model)
    images, labels = images.to(device), labels.to(device)
    loss_fn = loss_fn or F.cross_entropy
    trainable = [(name, p) for name, p in layers if p.requires_grad]
    with preserved_mode(model, train, buffers=True), torch.enable_grad():
        loss = loss_fn(model(images), labels)
        grads = torch.autograd.grad(loss, [p for _, p in trainable], allow_unused=True) if trainable else ()
    by_name = {name: g for (name, _), g in zip(trainable, grads) if g is not None}
    present = [name for name, _ in layers if name in by_name]
    # One stacked transfer rather than one .item() (one device sync) per layer.
    means = torch.stack([by_name[n].detach().abs().double().mean() for n in present]).tolist() if present else []
    found = dict(zip(present, means))
    values = [found.get(name, math.nan) for name, _ in layers]
    name = getattr(model, "model_name", type(model).__name__)
    return GradientFlow(
        layers=[n for n, _ in layers], values=values, label=label or name, loss=float(loss.item()),
        batch_size=int(images.shape[0]), meta={"model": name, "train_mode": train},
    )


def spec_label(name: str, kwargs: Mapping[str, Any]) -> str:
    """A short label for a model and its flags: ``"vgg38 bn+rc"``, ``"vgg38 act=sigmoid"``.

    Example:
        >>> spec_label("vgg38", {"bn": True, "rc": True}), spec_label("vgg08", {})
        ('vgg38 bn+rc', 'vgg08')
    """
    flags = [k for k, v in kwargs.items() if v is True]
    others = [f"{k}={getattr(v, '__name__', v)}" for k, v in kwargs.items() if v is not True and v not in (False, None)]
    return " ".join([name] + (["+".join(flags)] if flags else []) + others)


def _as_spec(spec: ModelSpec) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
        return spec[0], dict(spec[1])
    raise TypeError(f"a model spec is a registry name or (name, keywords), e.g. ('vgg38', {{'bn': True}}); "
                    f"got {spec!r}")


def compare_gradient_flow(
    specs: Iterable[ModelSpec] = VANISHING_GRADIENT_SPECS,
    images: Optional[torch.Tensor] = None,
    labels: Optional[torch.Tensor] = None,
    *,
    seed: int = 0,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    device: Union[str, torch.device, None] = None,
    train: bool = True,
    batch_size: int = 64,
) -> dict[str, GradientFlow]:
    """`gradient_flow` of several registry models, each built with `cifarnets.create` under `seed`.

    With the default specs (VGG08, VGG38, VGG38 BN, VGG38 RC, VGG38 BN+RC) and PyTorch's
    default initialisation this reproduces the contrast of the VGG38 reports' Figs. 2, 3 and
    5 at step 0: on a batch of 64 N(0, 1) images with random CIFAR-100 labels the first
    convolution gets a mean |grad| of about 1.5e-6 in VGG08, 1e-18 in plain VGG38, ~1 with
    BN, 1.7e-6 with RC and 7e-2 with BN+RC. Every model starts from the same RNG state, and
    the caller's global RNG state is left as it was.

    Args:
        specs: registry names or ``(name, create keywords)`` pairs.
        images, labels: the batch; by default `random_batch` of `batch_size` with the first
            model's number of classes and `seed`.
        seed: ``torch.manual_seed`` before building each model.
        loss_fn, train: as in `gradient_flow`.
        device: where to build and run the models (default CPU).

    Returns:
        ``{label: GradientFlow}`` in the order of `specs`, labels from `spec_label`.

    Example:
        >>> flows = compare_gradient_flow([("vgg38", {}), ("vgg38", {"bn": True})],
        ...                               *random_batch(8, num_classes=100))
        >>> list(flows)
        ['vgg38', 'vgg38 bn']
    """
    from ..registry import create  # the registry imports the model families; only needed here

    parsed = [_as_spec(s) for s in specs]
    if not parsed:
        raise ValueError("compare_gradient_flow needs at least one model spec")
    device = torch.device(device) if device is not None else torch.device("cpu")
    flows: dict[str, GradientFlow] = {}
    data = "given batch" if images is not None else "random N(0,1) images, random labels"
    for name, kwargs in parsed:
        label = spec_label(name, kwargs)
        if label in flows:
            raise ValueError(f"model spec {label!r} is given twice")
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            model = create(name, **kwargs).to(device)
            if images is None or labels is None:
                images, labels = random_batch(batch_size, num_classes=int(getattr(model, "num_classes", 100)),
                                              in_chans=int(getattr(model, "in_chans", 3)), seed=seed)
            flow = gradient_flow(model, images, labels, loss_fn=loss_fn, train=train, label=label)
        flow.meta.update(kwargs=kwargs, seed=seed, init=str(kwargs.get("init", "default")), data=data)
        flows[label] = flow
    return flows


def _merged_layers(flows: list[GradientFlow]) -> list[str]:
    """All layer names in network order: the deepest network's, others' extras slotted in."""
    ordered = sorted(flows, key=len, reverse=True)
    names = list(ordered[0].layers)
    for flow in ordered[1:]:
        previous = -1
        for name in flow.layers:
            if name in names:
                previous = names.index(name)
            else:
                previous += 1
                names.insert(previous, name)
    return names


def _format_value(value: float) -> str:
    return "no grad" if math.isnan(value) else f"{value:.2e}"


def comparison_table(flows: Mapping[str, GradientFlow]) -> str:
    """A text table of several networks' gradient flow: one row per layer, one column per network.

    Layers a network lacks show as ``–``; the last row is each network's loss. This is the
    terminal form of `cifarnets.plots.gradient_flow_comparison` (the VGG38 reports' Figs. 2, 3, 5).
    """
    labels = list(flows)
    names = _merged_layers(list(flows.values()))
    values = {label: flow.to_dict() for label, flow in flows.items()}
    name_width = max(len("layer"), *(len(n) for n in names))
    widths = [max(9, len(label)) for label in labels]
    lines = ["mean |grad| per layer (– : the network has no such layer)",
             f"{'layer':<{name_width}}  " + "  ".join(f"{lab:>{w}}" for lab, w in zip(labels, widths))]
    for name in names:
        cells = [(_format_value(values[lab][name]) if name in values[lab] else "–") for lab in labels]
        lines.append(f"{name:<{name_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    losses = [f"{flows[lab].loss:>{w}.4f}" for lab, w in zip(labels, widths)]
    lines.append(f"{'loss':<{name_width}}  " + "  ".join(losses))
    return "\n".join(lines)


def random_batch(
    batch_size: int = 64,
    *,
    num_classes: int = 100,
    in_chans: int = 3,
    size: int = 32,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """N(0, 1) images and uniform random labels: a stand-in for a normalised CIFAR batch.

    Normalised CIFAR images have zero mean and unit variance per channel, so this batch
    drives an untrained network much like real data does, and needs no download. It comes
    from its own generator (`seed`), not the global RNG.

    Example:
        >>> images, labels = random_batch(4, num_classes=10)
        >>> tuple(images.shape), int(labels.max()) < 10
        ((4, 3, 32, 32), True)
    """
    if batch_size < 1 or num_classes < 1:
        raise ValueError(f"random_batch needs batch_size >= 1 and num_classes >= 1, got {batch_size}, {num_classes}")
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, in_chans, size, size, generator=gen)
    labels = torch.randint(0, num_classes, (batch_size,), generator=gen)
    return images, labels

