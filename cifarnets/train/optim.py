"""Optimiser and learning-rate schedule of a `TrainConfig`, from torch's and timm's own classes.

Nothing here is hand-written arithmetic: the optimisers are ``torch.optim.SGD/Adam/AdamW``
and timm's ``SGDW`` (SGD with decoupled weight decay, which torch lacks); parameter groups
without decay come from timm's ``param_groups_weight_decay``; schedules are
``torch.optim.lr_scheduler`` classes, chained with ``SequentialLR`` after a ``LinearLR``
warm-up. Their ``state_dict`` s hold only tensors and plain Python values, so a checkpoint
of them loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, LRScheduler, MultiStepLR, SequentialLR

from .config import TrainConfig

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(model: nn.Module, config: TrainConfig, *, fused: bool | None = None) -> Optimizer:
    """The optimiser `config` asks for over `model`'s trainable parameters.

    Coupled vs decoupled weight decay (`TrainConfig.decoupled_wd`):

    ============  =========================================  ==========================
    optimizer     coupled (L2 added to the gradient)          decoupled
    ============  =========================================  ==========================
    sgd           ``torch.optim.SGD(weight_decay=)``          ``timm.optim.SGDW``
    adam          ``torch.optim.Adam(weight_decay=)``         ``torch.optim.AdamW``
    adamw         (rejected by `TrainConfig`)                 ``torch.optim.AdamW``
    ============  =========================================  ==========================

    `fused` is passed to torch's optimisers (CUDA only; None lets torch choose foreach).

    Example:
        >>> import cifarnets
        >>> opt = build_optimizer(cifarnets.create("vgg08"), TrainConfig(optimizer="adam", weight_decay=1e-3))
        >>> type(opt).__name__, opt.defaults["weight_decay"]
        ('Adam', 0.001)
    """
    wd = float(config.weight_decay)
    if config.no_wd_norm_bias and wd:
        from timm.optim import param_groups_weight_decay

        # Every 1-D parameter (norm weights and biases) and every ``*.bias`` goes to a group
        # with weight_decay 0; the rest get `wd`.
        params: list = param_groups_weight_decay(model, wd)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False); nothing to train")
    kwargs: dict = {"lr": config.lr, "weight_decay": wd}
    if fused:
        kwargs["fused"] = True
    decoupled = config.decoupled_wd_resolved
    if config.optimizer == "sgd":
        sgd_kwargs = dict(momentum=config.momentum, nesterov=config.nesterov, **kwargs)
        if decoupled and wd:
            from timm.optim import SGDW

            sgd_kwargs.pop("fused", None)
            return SGDW(params, **sgd_kwargs)
        return torch.optim.SGD(params, **sgd_kwargs)
    if decoupled:
        return torch.optim.AdamW(params, betas=config.betas, **kwargs)
    return torch.optim.Adam(params, betas=config.betas, **kwargs)


def build_scheduler(optimizer: Optimizer, config: TrainConfig, steps_per_epoch: int) -> LRScheduler:
    """The lr schedule of `config`; call its ``step()`` once per epoch or once per iteration.

    Which one is `scheduler_steps_per_epoch` (``config.schedule_unit``): with ``"epoch"``
    (the reports) the lr changes between epochs, with ``"step"`` after every iteration. The
    first epoch (or iteration) runs at the warm-up's start, or at `config.lr` without one.

    With ``schedule="cosine"`` and T the number of scheduler steps after warm-up, the lr
    before step t is ``min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2``: the coursework
    framework's ``CosineAnnealingLR(T_max=epochs, eta_min=2e-5)`` stepped per epoch when
    ``min_lr=2e-5`` and there is no warm-up (the coursework reports).

    Example:
        >>> import cifarnets
        >>> cfg = TrainConfig(epochs=4, lr=0.1, schedule="cosine")
        >>> opt = build_optimizer(cifarnets.create("vgg08"), cfg)
        >>> sched = build_scheduler(opt, cfg, steps_per_epoch=10)
        >>> lrs = []
        >>> for _ in range(cfg.epochs):
        ...     lrs.append(round(opt.param_groups[0]["lr"], 4)); opt.step(); sched.step()
        >>> lrs
        [0.1, 0.0854, 0.05, 0.0146]
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1; got {steps_per_epoch}")
    unit = steps_per_epoch if config.schedule_unit == "step" else 1
    total = config.epochs * unit
    warmup = int(round(config.warmup_epochs * unit))
    main_steps = total - warmup
    if config.schedule == "cosine":
        main: LRScheduler = CosineAnnealingLR(optimizer, T_max=main_steps, eta_min=config.min_lr)
    elif config.schedule == "step":
        # Milestones are epochs of the whole run; SequentialLR restarts the main schedule's
        # count at the end of warm-up, so shift them by it.
        main = MultiStepLR(optimizer, milestones=[m * unit - warmup for m in config.milestones], gamma=config.gamma)
    else:
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup <= 0:
        return main
    warm = LinearLR(optimizer, start_factor=config.warmup_start_factor, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [warm, main], milestones=[warmup])


def scheduler_steps_per_epoch(config: TrainConfig, steps_per_epoch: int) -> int:
    """How many times the scheduler steps in one epoch: 1, or `steps_per_epoch` for ``schedule_unit="step"``."""
    return steps_per_epoch if config.schedule_unit == "step" else 1
