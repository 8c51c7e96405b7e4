"""`TrainConfig`: every setting of a training run, as data.

The reports train with a handful of recipes:

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
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Mapping, Optional

from ..errors import ConfigError
from ..models._keywords import type_matches

__all__ = [
    "ConfigError", "OPTIMIZERS", "RUNTIME_FIELDS", "SCHEDULES", "SCHEDULE_FIELDS", "TrainConfig", "resumable_fields",
    "resume_changes",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "step")

# Fields that change how a run executes but not what it computes: a resumed run may change
# them (another device, a progress bar or not). Every other field is fixed by config.json.
RUNTIME_FIELDS = frozenset({"device", "quiet", "compile", "eval_batch_size", "check_every", "out_dir",
                            "dist_timeout", "diverge_factor", "log", "keep_freed_memory"})

# Fields a resumed run may change when the caller asks for it explicitly (``resume(...,
# change_schedule=True)``, CLI ``--resume RUN --change-schedule --lr ...``): the learning rate
# and its schedule, e.g. after a `NonFiniteLossError`. The change is recorded in the history.
SCHEDULE_FIELDS = frozenset({"lr", "min_lr", "schedule", "milestones", "gamma", "warmup_epochs",
                             "warmup_start_factor"})


def _f(default: Any, help: str, group: Optional[str], *, cli: Optional[str] = None,
       shown: Optional[str] = None) -> Any:
    """A field with its help text, command-line group and option name (``--field-name`` unless `cli`).

    `shown` is how the help text states a default of None (e.g. "on for CUDA").
    """
    return field(default=default, metadata={"help": help, "group": group, "cli": cli, "shown": shown})


@dataclass
class TrainConfig:
    """How to train: optimiser, schedule, batches, seeds, precision and where to write.

    Defaults are the coursework reports' recipe (Adam 1e-3, cosine, batch 100,
    100 epochs), the one most of the reports share; see the module docstring for each report.

    Optimiser and weight decay:
        optimizer: ``"sgd"`` (with `momentum`, `nesterov`), ``"adam"`` or ``"adamw"``.
        weight_decay: the decay coefficient. How it acts is `decoupled_wd`:
        decoupled_wd: ``False``: *coupled* L2, ``wd * w`` is added to the gradient before the
            optimiser's update (torch's ``SGD``/``Adam(weight_decay=)``; what the ResNet-18 and deeper-VGG reports
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
            framework of the coursework reports used 2e-5.
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
        keep_freed_memory: tell glibc's malloc to keep freed memory for reuse
            (`cifarnets.train.runtime.keep_freed_memory`): CPU steps stop page-faulting their
            buffers in again, which makes them faster and steadier (docs/performance.md).
            ``None``: on for CPU training, off for CUDA and MPS (whose steps' memory is the
            device's). It acts on the whole process, for good: its resident memory no longer
            shrinks after a peak, so pass ``False`` to leave a long-lived process's allocator
            alone. Values are unchanged; config.json records the setting that applied.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; ``None`` picks CUDA, then MPS,
            then CPU. Under ``torchrun`` each process uses ``cuda:$LOCAL_RANK``.

    Output:
        out_dir: run folder (history, config, checkpoints, test metrics); ``None`` keeps
            everything in memory (the best weights are kept on the CPU).
        quiet: no progress bar (it also hides itself when stderr is not a terminal).

    Example:
        >>> c = TrainConfig(optimizer="sgd", lr=0.01, weight_decay=5e-4, batch_size=128, epochs=40)  # AlexNet/VGG
        >>> c.decoupled_wd_resolved
        False
        >>> TrainConfig.from_dict(c.to_dict()) == c
        True
    """

    # what and how long
    epochs: int = _f(100, "epochs to train", "run")
    batch_size: int = _f(100, "global batch size (split evenly over torchrun processes)", "run")
    eval_batch_size: Optional[int] = _f(None, "evaluation batch size", "run", shown="2 x the per-process batch")
    # optimiser
    optimizer: Literal["sgd", "adam", "adamw"] = _f("adam", "optimiser", "optimiser and schedule", cli="--opt")
    lr: float = _f(1e-3, "learning rate (peak, after warm-up)", "optimiser and schedule")
    momentum: float = _f(0.9, "SGD momentum", "optimiser and schedule")
    nesterov: bool = _f(False, "Nesterov momentum (SGD)", "optimiser and schedule")
    betas: tuple[float, float] = _f((0.9, 0.999), "Adam/AdamW betas", "optimiser and schedule")
    weight_decay: float = _f(0.0, "weight decay; coupled L2 unless --decoupled-wd", "optimiser and schedule",
                             cli="--wd")
    decoupled_wd: Optional[bool] = _f(None, "decoupled weight decay (AdamW / SGDW)", "optimiser and schedule",
                                      shown="only with --opt adamw")
    no_wd_norm_bias: bool = _f(False, "no weight decay on norm weights and biases", "optimiser and schedule")
    # schedule
    schedule: Literal["none", "cosine", "step"] = _f("cosine", "learning-rate schedule", "optimiser and schedule",
                                                     cli="--sched")
    min_lr: float = _f(0.0, "cosine floor (the coursework reports used 2e-5)", "optimiser and schedule")
    milestones: tuple[int, ...] = _f((), "epochs at which the step schedule multiplies the lr by gamma",
                                     "optimiser and schedule", shown="none")
    gamma: float = _f(0.1, "step schedule factor", "optimiser and schedule")
    warmup_epochs: float = _f(0.0, "linear warm-up epochs", "optimiser and schedule")
    warmup_start_factor: float = _f(0.01, "warm-up starts at this fraction of lr", "optimiser and schedule")
    schedule_unit: Literal["epoch", "step"] = _f("epoch", "step the schedule per epoch (the reports) or per "
                                                 "iteration", "optimiser and schedule", cli="--sched-unit")
    # loss and data
    label_smoothing: float = _f(0.0, "label smoothing of the training loss", "optimiser and schedule")
    augment: bool = _f(True, "random crop + horizontal flip of training images", "run")
    padding: int = _f(4, "zero padding (pixels) of the random crop", "run")
    drop_last: bool = _f(False, "drop the last incomplete training batch", "run")
    # reproducibility and speed
    seed: int = _f(0, "training seed: initial weights, order, augmentation, dropout", "run")
    deterministic: bool = _f(False, "deterministic algorithms (bit-identical reruns and resumes)", "run")
    amp: Optional[bool] = _f(None, "bf16 autocast", "run", shown="on for CUDA with bf16")
    channels_last: Optional[bool] = _f(None, "NHWC memory format", "run", shown="on for CUDA and CPU")
    compile: bool = _f(False, "torch.compile the model", "run")
    threads: Optional[int] = _f(None, "intra-op CPU threads of training (results are bit-identical only for one "
                                "thread count)", "run", shown="the usable cores; 1 per sweep cell")
    keep_freed_memory: Optional[bool] = _f(None, "keep the memory a step frees for the next one instead of "
                                           "returning it to the OS (glibc's malloc, for the whole process and for "
                                           "good): CPU steps stop page-faulting their buffers in again", "run",
                                           shown="on for CPU training")
    sync_bn: bool = _f(False, "SyncBatchNorm under torchrun", "run")
    device: Optional[str] = _f(None, "cpu, cuda, cuda:1, mps", "run", shown="best available")
    dist_timeout: float = _f(600.0, "seconds a torchrun process waits for the others before it stops with an "
                             "error (a stopped or dead peer)", "run")
    diverge_factor: float = _f(1000.0, "stop when the training loss exceeds this many times the chance-level "
                               "loss ln(classes); 0 turns the check off", "run")
    # bookkeeping
    out_dir: Optional[str] = _f(None, "run folder", None)
    grad_flow: bool = _f(True, "record the gradient flow of every weight layer", "run")
    check_every: int = _f(50, "steps between two checks of the loss (NaN, divergence)", "run")
    quiet: bool = _f(False, "no progress bar", "run")
    log: str = _f("", "experiment trackers, comma-separated: tensorboard, mlflow, wandb, csv (optional extras: "
                  "pip install 'cifarnets[tensorboard]' ...)", "run", shown="none")
    label: str = _f("", "name of the run in tables and legends", "run", shown="the model and its flags")
    extra: dict[str, Any] = field(default_factory=dict, metadata={"help": "free-form notes kept with the run"})

    def __post_init__(self) -> None:
        self.validate()
        # JSON gives lists back; keep the dataclass comparable.
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.milestones = tuple(int(m) for m in self.milestones)
        for name in _FLOAT_FIELDS:
            setattr(self, name, float(getattr(self, name)))

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        """Raise `ConfigError` (a `ValueError`) naming the first bad setting and how to fix it.

        Every field is checked for its type (``epochs=True`` or ``lr="1e-3"`` are refused, not
        coerced), finiteness and range, before anything is trained or written.
        """
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(f"TrainConfig: {message}")

        for f in fields(self):
            value = getattr(self, f.name)
            if not type_ok(value, FIELD_TYPES[f.name]):
                raise ConfigError(f"TrainConfig: {f.name} must be {type_name(FIELD_TYPES[f.name])}; got {value!r} "
                                  f"({type(value).__name__})")
            if f.name in _FLOAT_FIELDS and not math.isfinite(value):
                raise ConfigError(f"TrainConfig: {f.name} must be a finite number; got {value!r}")

        need(self.epochs >= 1, f"epochs must be a positive integer; got {self.epochs!r}")
        need(self.batch_size >= 1, f"batch_size must be a positive integer; got {self.batch_size!r}")
        need(self.eval_batch_size is None or self.eval_batch_size >= 1,
             f"eval_batch_size must be positive or None; got {self.eval_batch_size!r}")
        need(self.lr > 0, f"lr must be a positive number; got {self.lr!r}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1); got {self.momentum!r}")
        need(not (self.nesterov and self.optimizer != "sgd"),
             f"nesterov applies to optimizer='sgd' only; got optimizer={self.optimizer!r}")
        need(not (self.nesterov and self.momentum == 0), "nesterov needs momentum > 0")
        need(all(0 <= b < 1 for b in self.betas), f"betas must be two numbers in [0, 1); got {list(self.betas)!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0; got {self.weight_decay!r}")
        need(not (self.optimizer == "adamw" and self.decoupled_wd is False),
             "optimizer='adamw' *is* Adam with decoupled weight decay; for coupled L2 (the reports' Adam runs) use "
             "optimizer='adam' with decoupled_wd=False (CLI: --opt adam, without --decoupled-wd)")
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
        need(0 <= self.seed < 2**63, f"seed must be an integer in [0, 2**63); got {self.seed!r}")
        need(self.threads is None or 1 <= self.threads <= 4096,
             f"threads must be a positive number of CPU threads (or None for the usable cores); got {self.threads!r}")
        need(all(m <= self.epochs for m in self.milestones),
             f"milestones {[m for m in self.milestones if m > self.epochs]} lie after the last epoch "
             f"(epochs={self.epochs}): they would never apply; use milestones within 1..{self.epochs}")
        need(self.padding <= 256, f"padding must be at most the image size; got {self.padding!r} pixels")
        need(self.batch_size <= 2**24, f"batch_size {self.batch_size} is larger than any data set this trains on")
        need(self.out_dir is None or bool(str(self.out_dir).strip()),
             "out_dir is an empty path: name a run folder (--out DIR) or leave it unset (None) to keep no files")
        need(self.check_every >= 1, f"check_every must be >= 1; got {self.check_every!r}")
        need(self.dist_timeout > 0, f"dist_timeout must be a positive number of seconds; got {self.dist_timeout!r}")
        need(self.diverge_factor == 0 or self.diverge_factor > 1,
             f"diverge_factor must be 0 (off) or > 1; got {self.diverge_factor!r}")
        need(self.device is None or bool(self.device.strip()), "device must be a device name such as 'cpu' or None")
        from ..tracking import check_tracker_names

        check_tracker_names(self.log)  # ConfigError naming an unknown tracker (no tracker package is imported)

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
        """Inverse of `to_dict`; unknown keys (from a newer cifarnets) and bad values raise `ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a TrainConfig is stored as a JSON object; got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"TrainConfig does not know {', '.join(map(repr, unknown))}; was the run written by a newer cifarnets? "
                "Upgrade, or remove those keys from config.json."
            )
        values = dict(data)
        for name in ("betas", "milestones"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with `changes` applied (validated)."""
        return dataclasses.replace(self, **changes)


FIELD_TYPES = typing.get_type_hints(TrainConfig)
_FLOAT_FIELDS = tuple(f.name for f in fields(TrainConfig) if FIELD_TYPES[f.name] is float)


def resumable_fields(change_schedule: bool = False) -> frozenset:
    """The settings a resumed run may change: `RUNTIME_FIELDS`, and `SCHEDULE_FIELDS` when asked for."""
    return RUNTIME_FIELDS | (SCHEDULE_FIELDS if change_schedule else frozenset())


def resume_changes(stored: TrainConfig, config: TrainConfig, *, change_schedule: bool = False) -> dict[str, list[Any]]:
    """The one rule of what a resume may change: ``{field: [old, new]}`` outside `RUNTIME_FIELDS`.

    Raises `ConfigError` naming each refused change (and how to ask for a schedule change);
    `fit`, `resume` and the command line all go by this function.
    """
    old, new = stored.to_dict(), config.to_dict()
    # threads=None means "as the run was started with" (the resolved count is what config.json records).
    if new.get("threads") is None:
        new["threads"] = old.get("threads")
    diff = {k: [old.get(k), v] for k, v in new.items() if k not in RUNTIME_FIELDS and old.get(k) != v}
    refused = {k: v for k, v in diff.items() if k not in resumable_fields(change_schedule)}
    if refused:
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        hint = ""
        if set(refused) <= SCHEDULE_FIELDS:
            hint = (" To change the learning rate or its schedule from the next epoch on, ask for it: "
                    "resume(..., change_schedule=True) (CLI: --resume RUN --change-schedule --lr ...).")
        raise ConfigError(
            f"cannot resume {config.out_dir} with different settings ({changes}); only "
            f"{', '.join(sorted(RUNTIME_FIELDS - {'out_dir'}))} may change freely.{hint} Start a new run "
            "(another out_dir) for other settings.")
    return diff


def type_ok(value: Any, hint: Any) -> bool:
    """Whether `value` has the annotated type: the models' one rule (`cifarnets.models` `type_matches`)."""
    return type_matches(value, hint)


def type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return " or ".join(type_name(a) for a in args)
    if hint is type(None):
        return "None"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_PLURAL[args[0]]}"
        return f"a list of {len(args)} {_PLURAL[args[0]]}"
    return {bool: "True or False", int: "an integer", float: "a number", str: "a string",
            dict: "a dict"}.get(hint, str(hint))


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
