"""`TrainConfig`: every setting of a training run, as data (SPEC §2).

The reports train with a handful of recipes (SPEC §2):

========  ===================================================================================
seed      recipe (``TrainConfig(...)``)
========  ===================================================================================
000       ``optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="cosine",
          batch_size=128, epochs=300`` (lr and wd varied; ``schedule="none"`` for Table 2)
001/002   ``optimizer="adam", lr=1e-3, schedule="cosine", min_lr=2e-5, batch_size=100,
          epochs=100`` (lr 1e-2 for the BN runs of Table 1)
003       as 001, plus L2 ``weight_decay`` in {1e-2, 1e-3, 1e-4} *coupled* (torch's
          ``Adam(weight_decay=)``: the penalty is added to the gradient), lr and min_lr ×5,
          ×30, batch 256, 512
004       ``optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="cosine",
          batch_size=128, epochs=40``
========  ===================================================================================

A config is plain data: `to_dict` / `from_dict` round-trip through JSON, which is how a run
folder's ``config.json`` remembers it and how ``cifarnets train --resume RUN_DIR`` gets it back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Mapping, Optional

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "RUNTIME_FIELDS"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "step")

# Fields that change how a run executes but not what it computes: a resumed run may change
# them (another device, a progress bar or not). Every other field is fixed by config.json.
RUNTIME_FIELDS = frozenset({"device", "quiet", "compile", "eval_batch_size", "check_every", "out_dir"})


@dataclass
class TrainConfig:
    """How to train: optimiser, schedule, batches, seeds, precision and where to write.

    Defaults are the coursework recipe of seeds 001-003 (Adam 1e-3, cosine, batch 100,
    100 epochs), the one most of the reports share; see the module docstring for each report.

    Optimiser and weight decay:
        optimizer: ``"sgd"`` (with `momentum`, `nesterov`), ``"adam"`` or ``"adamw"``.
        weight_decay: the decay coefficient. How it acts is `decoupled_wd`:
        decoupled_wd: ``False``: *coupled* L2, ``wd * w`` is added to the gradient before the
            optimiser's update (torch's ``SGD``/``Adam(weight_decay=)``; what seeds 000, 003
            and 004 used). ``True``: *decoupled* decay, ``w -= lr * wd * w`` apart from the
            gradient (``AdamW``; timm's ``SGDW`` for SGD). ``None`` (default) means
            decoupled for ``"adamw"`` and coupled for ``"sgd"``/``"adam"``. ``"adamw"`` with
            ``False`` is a contradiction and raises.
        no_wd_norm_bias: exempt norm weights and biases (every 1-D parameter) from decay, the
            usual modern practice; off by default because the reports decay everything.

    Schedule:
        schedule: ``"none"``, ``"cosine"`` (``CosineAnnealingLR`` to `min_lr` over the
            epochs after warm-up) or ``"step"`` (``MultiStepLR`` at `milestones`, ×`gamma`).
        min_lr: the cosine floor (``eta_min``). torch's default is 0; the coursework
            framework of seeds 001-003 used 2e-5.
        warmup_epochs: linear warm-up (``LinearLR`` from ``warmup_start_factor * lr``),
            chained before the main schedule with ``SequentialLR``. May be fractional when
            ``schedule_unit="step"``.
        schedule_unit: ``"epoch"`` (the reports: the schedule steps once per epoch, the lr is
            constant within an epoch) or ``"step"`` (per iteration, smooth; `milestones` and
            `warmup_epochs` stay in epochs and are converted).

    Reproducibility and speed:
        seed: seed of shuffling, augmentation and dropout (the model's initial weights are
            drawn from it too when `fit` builds the model from a name). Epoch ``e`` depends
            only on (seed, e) and the weights it starts from, which is what makes resume exact.
        deterministic: ``torch.use_deterministic_algorithms(True)`` and deterministic cuDNN for
            the duration of the run: bit-identical reruns (and resumes) at some speed cost.
        amp: bf16 autocast. ``None``: on for CUDA devices that support bf16, off elsewhere
            (CPU bf16 is slower than fp32 on most CPUs).
        channels_last: NHWC memory format for model and batches; ``None``: on for CUDA and CPU
            (cuDNN's and oneDNN's convolutions are both faster in NHWC), off for MPS.
        compile: ``torch.compile`` the model (checkpoints are still saved without the
            ``_orig_mod.`` prefix).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; ``None`` picks CUDA, then MPS,
            then CPU. Under ``torchrun`` each process uses ``cuda:$LOCAL_RANK``.

    Output:
        out_dir: run folder (history, config, checkpoints, test metrics); ``None`` keeps
            everything in memory (the best weights are kept on the CPU).
        quiet: no progress bar (it also hides itself when stderr is not a terminal).

    Example:
        >>> c = TrainConfig(optimizer="sgd", lr=0.01, weight_decay=5e-4, batch_size=128, epochs=40)  # seed 004
        >>> c.decoupled_wd_resolved
        False
        >>> TrainConfig.from_dict(c.to_dict()) == c
        True
    """

    # what and how long
    epochs: int = 100
    batch_size: int = 100
    eval_batch_size: Optional[int] = None
    # optimiser
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    decoupled_wd: Optional[bool] = None
    no_wd_norm_bias: bool = False
    # schedule
    schedule: Literal["none", "cosine", "step"] = "cosine"
    min_lr: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.01
    schedule_unit: Literal["epoch", "step"] = "epoch"
    # loss and data
    label_smoothing: float = 0.0
    augment: bool = True
    padding: int = 4
    drop_last: bool = False
    # reproducibility and speed
    seed: int = 0
    deterministic: bool = False
    amp: Optional[bool] = None
    channels_last: Optional[bool] = None
    compile: bool = False
    sync_bn: bool = False
    device: Optional[str] = None
    # bookkeeping
    out_dir: Optional[str] = None
    grad_flow: bool = True
    check_every: int = 50
    quiet: bool = False
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # JSON gives lists back; keep the dataclass comparable and hashable-looking.
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.milestones = tuple(int(m) for m in self.milestones)
        self.validate()

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        """Raise `ValueError` naming the first inconsistent setting and how to fix it."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

        need(isinstance(self.epochs, int) and self.epochs >= 1,
             f"epochs must be a positive integer; got {self.epochs!r}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"batch_size must be a positive integer; got {self.batch_size!r}")
        need(self.eval_batch_size is None or self.eval_batch_size >= 1,
             f"eval_batch_size must be positive or None; got {self.eval_batch_size!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be a positive number; got {self.lr!r}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1); got {self.momentum!r}")
        need(not (self.nesterov and self.optimizer != "sgd"),
             f"nesterov applies to optimizer='sgd' only; got optimizer={self.optimizer!r}")
        need(not (self.nesterov and self.momentum == 0), "nesterov needs momentum > 0")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1); got {self.betas!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0; got {self.weight_decay!r}")
        need(not (self.optimizer == "adamw" and self.decoupled_wd is False),
             "optimizer='adamw' *is* Adam with decoupled weight decay; for coupled L2 (the reports' Adam runs) use "
             "optimizer='adam' with decoupled_wd=False (CLI: --opt adam, without --decoupled-wd)")
        need(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        need(0 <= self.min_lr <= self.lr, f"min_lr must be in [0, lr={self.lr}]; got {self.min_lr!r}")
        need(self.schedule == "step" or not self.milestones,
             f"milestones are for schedule='step'; got schedule={self.schedule!r} "
             f"with milestones={list(self.milestones)}")
        need(self.schedule != "step" or bool(self.milestones),
             "schedule='step' needs milestones (epochs at which the lr is multiplied by gamma), "
             "e.g. milestones=(30, 60)")
        need(list(self.milestones) == sorted(set(self.milestones)) and all(0 < m for m in self.milestones),
             f"milestones must be increasing positive epochs; got {list(self.milestones)}")
        need(0 < self.gamma <= 1, f"gamma must be in (0, 1]; got {self.gamma!r}")
        need(self.schedule_unit in ("epoch", "step"),
             f"schedule_unit must be 'epoch' or 'step'; got {self.schedule_unit!r}")
        need(0 <= self.warmup_epochs < self.epochs,
             f"warmup_epochs must be in [0, epochs={self.epochs}); got {self.warmup_epochs!r}")
        need(self.schedule_unit == "step" or float(self.warmup_epochs).is_integer(),
             f"fractional warmup_epochs={self.warmup_epochs} needs schedule_unit='step' (a per-epoch schedule "
             "changes the lr only between epochs)")
        need(all(m > self.warmup_epochs for m in self.milestones),
             f"milestones {list(self.milestones)} must come after the warm-up ({self.warmup_epochs} epochs)")
        need(0 < self.warmup_start_factor <= 1,
             f"warmup_start_factor must be in (0, 1]; got {self.warmup_start_factor!r}")
        need(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1); got {self.label_smoothing!r}")
        need(self.padding >= 0, f"padding must be >= 0; got {self.padding!r}")
        need(isinstance(self.seed, int) and self.seed >= 0, f"seed must be a non-negative integer; got {self.seed!r}")
        need(self.check_every >= 1, f"check_every must be >= 1; got {self.check_every!r}")

    # ------------------------------------------------------------------ derived

    @property
    def decoupled_wd_resolved(self) -> bool:
        """Whether weight decay is decoupled, after resolving ``decoupled_wd=None``."""
        if self.decoupled_wd is None:
            return self.optimizer == "adamw"
        return bool(self.decoupled_wd)

    def describe_optimizer(self) -> str:
        """One line such as ``"Adam lr 1e-3, L2 1e-3 (coupled), cosine to 2e-05"`` for logs and tables."""
        name = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[self.optimizer]
        parts = [f"{name} lr {self.lr:g}"]
        if self.optimizer == "sgd":
            parts[0] += f" m{self.momentum:g}" + (" nesterov" if self.nesterov else "")
        if self.weight_decay:
            kind = "decoupled wd" if self.decoupled_wd_resolved else "L2"
            parts.append(f"{kind} {self.weight_decay:g}" + (" (not norm/bias)" if self.no_wd_norm_bias else ""))
        sched = {"none": "constant lr", "cosine": f"cosine to {self.min_lr:g}",
                 "step": f"step x{self.gamma:g} at {list(self.milestones)}"}[self.schedule]
        if self.warmup_epochs:
            sched = f"{self.warmup_epochs:g} warm-up epochs, then {sched}"
        parts.append(sched)
        return ", ".join(parts)

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        data["milestones"] = list(self.milestones)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`; unknown keys (from a newer cifarnets) raise, naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"TrainConfig does not know {', '.join(map(repr, unknown))}; was the run written by a newer cifarnets? "
                "Upgrade, or remove those keys from config.json."
            )
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with `changes` applied (validated)."""
        return dataclasses.replace(self, **changes)
