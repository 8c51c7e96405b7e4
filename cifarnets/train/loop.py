"""`fit`, `evaluate` and `resume`: the reports' training runs, fast and with nothing lost.

One loop serves every report (SPEC §2): batches come from `DeviceLoader` (the data set lives
on the training device, crop + flip are a few tensor ops), the optimiser and schedule are
torch's, and per epoch the run records what the reports plot (losses, accuracies, lr, time,
gradient flow) into a `History`.

The hot loop never waits for the device: loss and correct counts of every step go into
device tensors, gradient flow is accumulated on the device (`GradientFlowRecorder`), and
the host reads them once per epoch, plus a non-finite-loss check every
``config.check_every`` steps. A run folder (``config.out_dir``) gets::

    config.json        model, create() keywords, data set, TrainConfig, versions
    history.json/.csv  every finished epoch (History)
    last.safetensors   weights after the last finished epoch
    last.state.pt      optimiser, scheduler, RNG and history of that epoch (weights_only)
    best.safetensors   weights of the best epoch (highest val accuracy; last without val)
    test.json          the best weights on the test set, once training ends

all written atomically (`checkpoint.atomic_write`), so ``resume`` (CLI ``--resume RUN_DIR``)
can continue any interrupted run from its last finished epoch, bit-identically on CPU in
deterministic mode: epoch ``e`` depends only on (seed, e) and the state saved after ``e - 1``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import DataBundle, DeviceLoader, ImageSet, derive_seed
from .checkpoint import (
    CheckpointError,
    atomic_write,
    load_state,
    read_metadata,
    save_state,
    state_dict_for_save,
    strip_prefixes,
    weights_bytes,
)
from .config import RUNTIME_FIELDS, TrainConfig
from .distributed import DistContext, setup_distributed, teardown
from .history import EpochRecord, History
from .optim import build_optimizer, build_scheduler

__all__ = [
    "EpochCallback", "NonFiniteLossError", "RUN_FILES", "RunExistsError", "evaluate", "fit", "read_run_config",
    "resume",
]

logger = logging.getLogger(__name__)

EpochCallback = Callable[[EpochRecord, History], None]
"""Called on rank 0 after every finished (and saved) epoch with its record and the history so far."""

RUN_FILES = ("config.json", "history.json", "history.csv", "last.safetensors", "last.state.pt", "best.safetensors",
             "test.json")
CONFIG_SCHEMA = 1


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped (its last good epoch is saved)."""

    def __init__(self, message: str, *, epoch: int, step: int, value: float) -> None:
        super().__init__(message)
        self.epoch, self.step, self.value = epoch, step, value


class RunExistsError(RuntimeError, FileExistsError):
    """`out_dir` already holds a run and resuming was not asked for."""


# ====================================================================== helpers


@contextlib.contextmanager
def _algorithms(deterministic: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the run (or fast cuDNN autotuning), restoring the caller's settings after.

    On CUDA, deterministic mode also needs a fixed cuBLAS workspace (CUBLAS_WORKSPACE_CONFIG),
    set here if the caller has not; some CUDA kernels (e.g. adaptive average pooling's
    backward) have no deterministic version, so on CUDA torch only warns about them.
    """
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        if deterministic:
            if device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            # Fixed 32x32 inputs: cuDNN's autotuner pays for itself after the first batches.
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def _use_amp(config_amp: Optional[bool], device: torch.device) -> bool:
    if config_amp is None:
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    if config_amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RuntimeError(f"amp=True asks for bf16 autocast but {torch.cuda.get_device_name(device)} has no bf16; "
                           "set amp=False (--no-amp)")
    return bool(config_amp)


def _autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _progress(total: int, desc: str, disable: bool) -> Any:
    if disable or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


def _version() -> str:
    from .. import __version__

    return __version__


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


def _identify_model(model: Union[nn.Module, str], model_kwargs: Optional[Mapping[str, Any]], data: DataBundle,
                    seed: int) -> tuple[nn.Module, str, dict[str, Any], dict[str, Any], bool]:
    """(model, registry name, user flags, full create() keywords, rebuildable)."""
    flags = dict(model_kwargs or {})
    if isinstance(model, str):
        from ..registry import create

        create_kwargs = {**flags}
        create_kwargs.setdefault("in_chans", data.in_chans)
        create_kwargs.setdefault("num_classes", data.num_classes)
        # The initial weights are drawn from the run's seed: same seed, same start.
        torch.manual_seed(seed)
        built = create(model, **create_kwargs)
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
    return model, name, {k: v for k, v in flags.items()}, create_kwargs, ok


def _check_model_fits_data(model: nn.Module, data: DataBundle) -> None:
    in_chans = getattr(model, "in_chans", None)
    if isinstance(in_chans, int) and in_chans != data.in_chans:
        raise ValueError(
            f"the model takes {in_chans}-channel images but {data.name} has {data.in_chans} channel(s); build it with "
            f"in_chans={data.in_chans} (CLI: fills this in unless --in-chans is given)")
    num_classes = getattr(model, "num_classes", None)
    if isinstance(num_classes, int) and num_classes > 0:
        if num_classes < data.num_classes:
            raise ValueError(
                f"the model has {num_classes} outputs but {data.name} has {data.num_classes} classes; build it with "
                f"num_classes={data.num_classes}")
        if num_classes > data.num_classes:
            logger.warning("the model has %d outputs for %d classes; the extra outputs are never a target",
                           num_classes, data.num_classes)


def _describe_data(data: DataBundle, data_args: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "name": data.name, "train": len(data.train), "val": len(data.val) if data.val is not None else 0,
        "test": len(data.test), "num_classes": data.num_classes, "in_chans": data.in_chans,
        "mean": list(data.mean), "std": list(data.std), "norm": data.norm_name,
        "split": list(data.split) if data.split else None, "split_seed": data.split_seed,
        "is_synthetic": data.is_synthetic, "load_args": dict(data_args) if data_args is not None else None,
    }


def _json(data: Any) -> str:
    return json.dumps(data, indent=1, allow_nan=True, default=str)


# ====================================================================== evaluation


@torch.no_grad()
def _eval_sums(model: nn.Module, loader: DeviceLoader, amp: bool, device: torch.device) -> torch.Tensor:
    """(loss sum, correct, count) of `loader` on the device, float64 where available."""
    was_training = model.training
    model.eval()
    dtype = torch.float32 if device.type == "mps" else torch.float64
    sums = torch.zeros(3, dtype=dtype, device=device)
    for images, labels in loader:
        with _autocast(amp, device):
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
    sums = _eval_sums(model, loader, _use_amp(amp, dev), dev).tolist()
    return {"loss": sums[0] / sums[2], "acc": 100.0 * sums[1] / sums[2], "n": int(sums[2])}


# ====================================================================== training


class _Run:
    """The state of one `fit` call: model, optimiser, loaders, files. Split out of `fit` for readability."""

    def __init__(self, model: Union[nn.Module, str], data: DataBundle, config: TrainConfig, ctx: DistContext,
                 device: torch.device, model_kwargs: Optional[Mapping[str, Any]],
                 data_args: Optional[Mapping[str, Any]], callbacks: Sequence[EpochCallback], resume: bool) -> None:
        self.data, self.config, self.ctx, self.device = data, config, ctx, device
        self.callbacks = list(callbacks)
        self.out = Path(config.out_dir) if config.out_dir else None
        self.amp = _use_amp(config.amp, device)
        # NHWC is faster for cuDNN and for oneDNN (CPU) convolutions alike; MPS gains nothing.
        self.channels_last = (device.type in ("cuda", "cpu") if config.channels_last is None
                              else bool(config.channels_last))
        if config.batch_size % ctx.world_size:
            raise ValueError(f"batch_size={config.batch_size} is the global batch and must divide among "
                             f"{ctx.world_size} processes; use a multiple of {ctx.world_size}")
        if resume and self.out is None:
            raise ValueError("resuming needs the run folder: set out_dir (CLI: --resume RUN_DIR)")
        if not resume and self.out is not None and self.out.is_dir():
            present = [f for f in RUN_FILES if (self.out / f).exists()]
            if present:
                raise RunExistsError(
                    f"{self.out} already holds a run ({', '.join(present)}); continue it with resume "
                    f"(CLI: --resume {self.out}) or choose another out_dir (--out)")

        raw, self.name, self.flags, self.create_kwargs, self.rebuildable = _identify_model(
            model, model_kwargs, data, config.seed)
        _check_model_fits_data(raw, data)
        self.raw = raw.to(device)
        if self.channels_last:
            self.raw.to(memory_format=torch.channels_last)
        if config.sync_bn and ctx.distributed:
            self.raw = nn.SyncBatchNorm.convert_sync_batchnorm(self.raw)
        self.eval_model: nn.Module = cast(nn.Module, torch.compile(self.raw)) if config.compile else self.raw
        self.train_model: nn.Module = self.eval_model
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.train_model = DDP(self.eval_model, device_ids=ids, output_device=device.index if ids else None)
        self.data_info = _describe_data(data, data_args)

        per_rank = config.batch_size // ctx.world_size
        common: dict[str, Any] = dict(mean=data.mean, std=data.std, device=device, rank=ctx.rank,
                                      world_size=ctx.world_size, channels_last=self.channels_last,
                                      padding=config.padding)
        self.train_loader = DeviceLoader(data.train, per_rank, train=True, augment=config.augment,
                                         drop_last=config.drop_last, seed=config.seed, **common)
        eval_bs = config.eval_batch_size or 2 * per_rank
        self.val_loader = DeviceLoader(data.val, eval_bs, train=False, **common) if data.val is not None else None
        self.test_loader = DeviceLoader(data.test, eval_bs, train=False, **common)

        self.optimizer = build_optimizer(self.raw, config, fused=device.type == "cuda" or None)
        self.scheduler = build_scheduler(self.optimizer, config, len(self.train_loader))
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.recorder = None
        if config.grad_flow:
            from ..analysis import GradientFlowRecorder

            self.recorder = GradientFlowRecorder(self.raw)
        from ..registry import count_params

        self.history = History(model=self.name, model_kwargs=self.flags, params=count_params(self.raw),
                               config=config.to_dict(), label=config.label, dataset=data.name,
                               num_classes=data.num_classes)
        self.best_state: Optional[dict[str, torch.Tensor]] = None
        self.best_acc = -math.inf
        self.start_epoch = 1
        if resume:
            self._restore()
        elif ctx.is_main and self.out is not None:
            self._write_config()

    # ------------------------------------------------------------------ files

    def _metadata(self, epoch: int, kind: str, record: Optional[EpochRecord]) -> dict[str, Any]:
        metrics = {}
        if record is not None:
            metrics = {k: getattr(record, k) for k in ("train_loss", "train_acc", "val_loss", "val_acc")}
        return {
            "model": self.name if self.rebuildable else None, "architecture": self.name,
            "model_kwargs": self.create_kwargs, "epoch": epoch, "kind": kind, "metrics": metrics,
            "dataset": self.data.name, "num_classes": self.data.num_classes, "in_chans": self.data.in_chans,
            "mean": list(self.data.mean), "std": list(self.data.std), "classes": list(self.data.classes),
            "data": self.data_info, "train_config": self.config.to_dict(), "cifarnets_version": _version(),
            "torch_version": torch.__version__,
        }

    def _write_config(self) -> None:
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        config = {
            "schema": CONFIG_SCHEMA, "model": self.name, "model_kwargs": self.flags,
            "create_kwargs": self.create_kwargs,
            "rebuildable": self.rebuildable, "data": self.data_info, "train": self.config.to_dict(),
            "world_size": self.ctx.world_size, "device": str(self.device),
            "versions": {"cifarnets": _version(), "torch": torch.__version__},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write(self.out / "config.json", _json(config))

    def _write_history(self) -> None:
        assert self.out is not None
        atomic_write(self.out / "history.json", self.history.to_json())
        atomic_write(self.out / "history.csv", self.history.to_csv())

    def _save_epoch(self, epoch: int, record: Optional[EpochRecord], improved: bool) -> None:
        """Write last (+ state) and, when `improved`, best; in the order that keeps every crash recoverable.

        last.safetensors, then last.state.pt (the commit point: it holds the history), then
        best.safetensors, then history.json/csv. `_restore` repairs the one gap this leaves
        (best written after the state that says it is best).
        """
        state = state_dict_for_save(self.raw)
        if improved or self.best_state is None:
            self.best_state = state
        if not (self.ctx.is_main and self.out is not None):
            return
        last = weights_bytes(state, self._metadata(epoch, "last", record))
        atomic_write(self.out / "last.safetensors", last)
        save_state(self.out / "last.state.pt", {
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "history": self.history.to_json(),
            "cifarnets_version": _version(),
        })
        if improved:
            atomic_write(self.out / "best.safetensors", weights_bytes(state, self._metadata(epoch, "best", record)))
        self._write_history()

    def _restore(self) -> None:
        """Load model, optimiser, scheduler, RNG and history from the run folder (resume)."""
        assert self.out is not None
        state_path, last_path = self.out / "last.state.pt", self.out / "last.safetensors"
        if not state_path.is_file() or not last_path.is_file():
            raise FileNotFoundError(
                f"{self.out} has no {'last.state.pt' if not state_path.is_file() else 'last.safetensors'}: nothing to "
                "resume (the run stopped before its first checkpoint; start it again without --resume)")
        state = load_state(state_path)
        epoch = int(state["epoch"])
        weights_epoch = read_metadata(last_path).get("epoch")
        if weights_epoch != epoch:
            raise CheckpointError(
                f"{last_path} is from epoch {weights_epoch} but {state_path} from epoch {epoch}: the run was killed "
                "between writing the two. Delete both to restart from scratch, or restore them from a backup.")
        from safetensors.torch import load_file

        self.raw.load_state_dict(strip_prefixes(load_file(str(last_path), device=str(self.device))))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng = state.get("rng") or {}
        if isinstance(rng.get("torch"), torch.Tensor):
            torch.set_rng_state(rng["torch"])
        if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.history = History.from_json(state["history"])
        self.start_epoch = epoch + 1
        best_epoch = self.history.best_epoch
        best_path = self.out / "best.safetensors"
        if best_epoch is not None:
            record = self.history.best()
            self.best_acc = record.val_acc if record is not None and record.val_acc is not None else -math.inf
            best_meta_epoch = read_metadata(best_path).get("epoch") if best_path.is_file() else None
            if best_meta_epoch != best_epoch:
                if best_epoch != epoch:
                    raise CheckpointError(f"{best_path} is not from the best epoch {best_epoch} and cannot be rebuilt")
                # Killed after the state that names this epoch best but before best.safetensors.
                logger.warning("best.safetensors was not written for epoch %d before the run stopped; restoring it "
                               "from last.safetensors", epoch)
                if self.ctx.is_main:
                    meta = {**read_metadata(last_path), "kind": "best"}
                    meta.pop("format", None)
                    atomic_write(best_path, weights_bytes(load_file(str(last_path)), meta))
            best_file = best_path if best_path.is_file() else last_path
            self.best_state = {k: v.cpu() for k, v in load_file(str(best_file)).items()}
        if self.ctx.is_main:
            self._write_history()  # history.json may lag the state by one epoch after a crash
        logger.info("resuming %s at epoch %d of %d", self.out, self.start_epoch, self.config.epochs)

    # ------------------------------------------------------------------ epochs

    def _train_epoch(self, epoch: int) -> tuple[float, float, int, float]:
        """One pass over the training shard: (mean loss, accuracy %, images, lr of the first step)."""
        config, device, loader = self.config, self.device, self.train_loader
        model, optimizer, scheduler, criterion, recorder = (
            self.train_model, self.optimizer, self.scheduler, self.criterion, self.recorder)
        per_step_schedule = config.schedule_unit == "step"
        n_steps = len(loader)
        # Per-step values stay on the device; the host reads them every `check_every` steps
        # (non-finite check) and once at the end of the epoch.
        step_loss = torch.zeros(n_steps, dtype=torch.float32, device=device)
        step_correct = torch.zeros(n_steps, dtype=torch.int64, device=device)
        sizes: list[int] = []
        lr0 = float(optimizer.param_groups[0]["lr"])
        checked = 0
        bar = _progress(n_steps, f"epoch {epoch}/{config.epochs}", config.quiet or not self.ctx.is_main)
        if recorder is not None:
            recorder.reset()
        model.train()
        loader.set_epoch(epoch - 1)
        try:
            for step, (images, labels) in enumerate(loader):
                with _autocast(self.amp, device):
                    logits = model(images)
                    loss = criterion(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recorder is not None:
                    recorder.accumulate()
                optimizer.step()
                if per_step_schedule:
                    scheduler.step()
                step_loss[step] = loss.detach()
                step_correct[step] = (logits.detach().argmax(1) == labels).sum()
                sizes.append(labels.shape[0])
                if (step + 1) % config.check_every == 0 or step + 1 == n_steps:
                    self._check_finite(step_loss, checked, step + 1, epoch, n_steps, bar)
                    checked = step + 1
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        if not per_step_schedule:
            scheduler.step()
        weights = torch.tensor(sizes, dtype=torch.float32, device=device)
        sums = torch.stack([(step_loss * weights).sum().double(), step_correct.sum().double(),
                            weights.sum().double()]) if device.type != "mps" else \
            torch.stack([(step_loss * weights).sum(), step_correct.sum().float(), weights.sum()])
        total = self.ctx.all_reduce_sum(sums).tolist()
        return total[0] / total[2], 100.0 * total[1] / total[2], int(total[2]), lr0

    def _check_finite(self, step_loss: torch.Tensor, lo: int, hi: int, epoch: int, n_steps: int, bar: Any) -> None:
        window = step_loss[lo:hi]
        bad = (~torch.isfinite(window)).any().to(torch.int32)
        if self.ctx.distributed:
            self.ctx.all_reduce_sum(bad)
        if bar is not None and self.ctx.is_main:
            bar.set_postfix(loss=f"{window[-1].item():.4f}", refresh=False)
        if not bad.item():
            return
        local_bad = (~torch.isfinite(window)).nonzero()
        step = lo + (int(local_bad[0]) if local_bad.numel() else 0)
        value = float(step_loss[step])
        lr = self.optimizer.param_groups[0]["lr"]
        if self.out is not None:
            where = (f"the weights of epoch {epoch - 1} are in {self.out / 'last.safetensors'} and the run can "
                     f"continue from there with resume (CLI: --resume {self.out}) once the cause is fixed")
        else:
            where = "no checkpoint was kept (set out_dir / --out to keep the last good epoch)"
        raise NonFiniteLossError(
            f"training loss became {value} at epoch {epoch}, step {step + 1} of {n_steps} (lr {lr:g}); the run stopped "
            f"and {where}. The usual cause is a learning rate too high for this model (lower --lr, e.g. to "
            f"{lr / 10:g}, or add --warmup-epochs); deep nets without batch norm also diverge at rates their BN "
            "versions take (SPEC §1a).", epoch=epoch, step=step + 1, value=value)

    def _eval(self, loader: DeviceLoader) -> tuple[float, float]:
        self.ctx.broadcast_buffers(self.raw)
        sums = self.ctx.all_reduce_sum(_eval_sums(self.eval_model, loader, self.amp, self.device)).tolist()
        return sums[0] / sums[2], 100.0 * sums[1] / sums[2]

    def run(self) -> History:
        config, ctx = self.config, self.ctx
        if self.start_epoch == 1 and not self.history.epochs:
            # Epoch 0: the initial weights, so that a crash or a NaN in epoch 1 still leaves a
            # resumable run (same start, same result).
            self._save_epoch(0, None, improved=False)
            self.best_state = None
        for epoch in range(self.start_epoch, config.epochs + 1):
            started = time.perf_counter()
            # Dropout and anything else drawing from the global RNG: a pure function of
            # (seed, epoch, rank), so that a resumed run draws the same numbers.
            torch.manual_seed(derive_seed(config.seed, "train-rng", epoch, ctx.rank))
            train_loss, train_acc, images, lr = self._train_epoch(epoch)
            train_seconds = time.perf_counter() - started
            eval_started = time.perf_counter()
            val_loss = val_acc = None
            if self.val_loader is not None:
                val_loss, val_acc = self._eval(self.val_loader)
            else:
                self.ctx.broadcast_buffers(self.raw)
            eval_seconds = time.perf_counter() - eval_started
            record = EpochRecord(
                epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc, lr=lr,
                epoch_seconds=math.nan, images_per_second=images / train_seconds if train_seconds > 0 else math.nan,
                grad_flow=self.recorder.result() if self.recorder is not None else {},
                train_seconds=train_seconds, eval_seconds=eval_seconds,
            )
            improved = val_acc is None or val_acc > self.best_acc
            if improved:
                self.best_acc = val_acc if val_acc is not None else -math.inf
                self.history.best_epoch = epoch
            self.history.epochs.append(record)
            # Training + validation; checkpoint writing is left out (it depends on the disk,
            # not on the model, and would blur the reports' time-per-epoch comparison).
            record.epoch_seconds = time.perf_counter() - started
            self._save_epoch(epoch, record, improved)
            logger.debug(
                "epoch %d/%d  train loss %.4f acc %.2f%%%s  lr %.3g  %.1fs  %.0f img/s", epoch, config.epochs,
                train_loss, train_acc,
                f"  val loss {val_loss:.4f} acc {val_acc:.2f}%" if val_loss is not None else "", lr,
                record.epoch_seconds, record.images_per_second)
            if ctx.is_main:
                for callback in self.callbacks:
                    callback(record, self.history)
        return self._finish()

    def load_best(self) -> None:
        """Put the best epoch's weights into the model (what `fit` returns it with)."""
        if self.best_state is not None:
            self.raw.load_state_dict({k: v.to(self.device) for k, v in self.best_state.items()})

    def _finish(self) -> History:
        self.load_best()
        test_loss, test_acc = self._eval(self.test_loader)
        self.history.test = {"loss": test_loss, "acc": test_acc, "epoch": self.history.best_epoch,
                             "n": len(self.data.test)}
        if self.ctx.is_main and self.out is not None:
            atomic_write(self.out / "test.json", _json({**self.history.test, "model": self.name,
                                                        "dataset": self.data.name, "label": self.history.name}))
            self._write_history()
            # The state's history is the one resume reads: give it the test result too.
            state = load_state(self.out / "last.state.pt")
            state["history"] = self.history.to_json()
            save_state(self.out / "last.state.pt", state)
        self.ctx.barrier()
        logger.info("test (best epoch %s): loss %.4f acc %.2f%%", self.history.best_epoch, test_loss, test_acc)
        return self.history


def fit(
    model: Union[nn.Module, str],
    data: DataBundle,
    config: Optional[TrainConfig] = None,
    *,
    model_kwargs: Optional[Mapping[str, Any]] = None,
    data_args: Optional[Mapping[str, Any]] = None,
    callbacks: Sequence[EpochCallback] = (),
    resume: bool = False,
) -> History:
    """Train `model` on `data` as `config` says; return the `History` (also in ``config.out_dir``).

    Args:
        model: a module, or a registry name that `fit` builds with `cifarnets.create`
            (``in_chans``/``num_classes`` from `data`, initial weights drawn from
            ``config.seed``), the fully reproducible way.
        data: a `DataBundle` (`cifarnets.data.load_dataset`).
        config: `TrainConfig`; defaults to the coursework recipe of seeds 001-003.
        model_kwargs: the `cifarnets.create` keywords of `model` (``bn=True, rc=True``), kept in
            the history (legends) and checkpoints (so `load_checkpoint` can rebuild the model).
        data_args: the `load_dataset` keywords of `data`, stored in ``config.json`` so that
            `resume` can reload it.
        callbacks: called on rank 0 as ``cb(record, history)`` after each epoch is saved.
        resume: continue the run in ``config.out_dir`` from its last finished epoch. `config`
            must match the stored one except in `RUNTIME_FIELDS` (device, progress, compile).

    Per epoch the history gets train/val loss and accuracy, lr, times, images/s and the
    gradient flow (mean |grad| of every conv/linear weight averaged over the epoch's steps,
    seeds 001-003). The best epoch is the highest validation accuracy (the last epoch
    without a validation split); on return the model holds its weights, and
    ``history.test`` its test loss and accuracy.

    Under ``torchrun`` the same call trains with DistributedDataParallel: `config.batch_size`
    stays the *global* batch (split evenly over ranks, as the reports' lr assumes), metrics are
    summed over ranks and only rank 0 writes files and calls `callbacks`.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the message names epoch, step and fix).
        RunExistsError: ``out_dir`` holds a run and ``resume`` is False.

    Example:
        >>> from cifarnets.data import load_dataset
        >>> data = load_dataset("synthetic", synthetic_sizes=(500, 200))
        >>> h = fit("vgg08", data, TrainConfig(epochs=1, batch_size=100, lr=3e-3, quiet=True))
        >>> len(h.epochs), h.best_epoch, sorted(h.test)
        (1, 1, ['acc', 'epoch', 'loss', 'n'])
    """
    config = config if config is not None else TrainConfig()
    if not isinstance(data, DataBundle):
        raise TypeError(f"fit() takes a DataBundle (cifarnets.data.load_dataset(...)); got {type(data).__name__}")
    if data.is_synthetic:
        logger.info("training on the SYNTHETIC data set: its numbers say nothing about CIFAR")
    ctx, device = setup_distributed(config.device)
    try:
        with _algorithms(config.deterministic, device):
            if resume:
                _check_resume_config(config)
            run = _Run(model, data, config, ctx, device, model_kwargs, data_args, callbacks, resume)
            if resume and run.start_epoch > config.epochs and run.history.test is not None:
                logger.info("%s is already finished (%d epochs); nothing to do", run.out, config.epochs)
                run.load_best()
                return run.history
            return run.run()
    finally:
        teardown(ctx)


def _check_resume_config(config: TrainConfig) -> None:
    assert config.out_dir is not None
    path = Path(config.out_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} does not exist; is {config.out_dir} a run folder?")
    stored = TrainConfig.from_dict(json.loads(path.read_text())["train"])
    diff = [k for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS and stored.to_dict().get(k) != v]
    if diff:
        changes = ", ".join(f"{k}: {stored.to_dict().get(k)!r} -> {config.to_dict()[k]!r}" for k in diff)
        raise ValueError(f"cannot resume {config.out_dir} with different settings ({changes}); only "
                         f"{', '.join(sorted(RUNTIME_FIELDS))} may change. Start a new run for other settings.")


def read_run_config(run_dir: Union[str, os.PathLike]) -> dict[str, Any]:
    """The ``config.json`` of a run folder (model, keywords, data set, TrainConfig, versions)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {run_dir} a run folder written by cifarnets?")
    return json.loads(path.read_text())


def resume(
    run_dir: Union[str, os.PathLike],
    *,
    data: Optional[DataBundle] = None,
    callbacks: Sequence[EpochCallback] = (),
    **runtime: Any,
) -> History:
    """Continue the run in `run_dir` from its last finished epoch, with everything from its folder.

    The model is rebuilt from ``config.json`` (name and `cifarnets.create` keywords), the data
    reloaded with the stored `load_dataset` arguments (pass `data` if they were not stored),
    and `fit` carries on with model, optimiser, scheduler, RNG and history restored.
    `runtime` may change only `RUNTIME_FIELDS` (``device=``, ``quiet=``, ``compile=``, ...).

    Example:
        >>> history = resume("runs/vgg38_bn_rc", quiet=True)     # doctest: +SKIP
    """
    stored = read_run_config(run_dir)
    bad = sorted(set(runtime) - RUNTIME_FIELDS)
    if bad:
        raise ValueError(f"resume() cannot change {', '.join(bad)}; only {', '.join(sorted(RUNTIME_FIELDS))}")
    config = TrainConfig.from_dict({**stored["train"], **runtime, "out_dir": str(run_dir)})
    if data is None:
        load_args = stored.get("data", {}).get("load_args")
        if load_args is None:
            raise ValueError(f"{run_dir}/config.json does not record how its data set was loaded; pass data= "
                             f"(the same DataBundle: {stored.get('data', {}).get('name')})")
        from ..data import load_dataset

        data = load_dataset(**load_args)
    info = _describe_data(data, None)
    for key in ("name", "train", "val", "test", "num_classes", "in_chans", "mean", "std"):
        if info[key] != stored["data"].get(key):
            raise ValueError(f"the data set differs from the run's: {key} is {info[key]!r}, the run trained with "
                             f"{stored['data'].get(key)!r}")
    if not stored.get("rebuildable", True):
        raise ValueError(f"{run_dir} trained a model cifarnets cannot rebuild from its name; call "
                         "fit(model, data, config, resume=True) with that model instead")
    return fit(stored["model"], data, config, model_kwargs=stored["create_kwargs"],
               data_args=stored["data"].get("load_args"), callbacks=callbacks, resume=True)
