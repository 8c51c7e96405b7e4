"""`fit`: the training loop of the reports' runs.

One loop serves every report: batches come from `cifarnets.data.make_loaders` (the data set
lives on the training device, crop + flip are a few tensor ops), the optimiser and schedule
are torch's, and per epoch the run records what the reports plot (losses, accuracies, lr,
time, gradient flow) into a `History`. The run folder and its files belong to `RunDir`
(`cifarnets.train.rundir`); which model is trained, to `cifarnets.train._model`.

The hot loop never waits for the device: loss and correct counts of every step go into
device tensors, gradient flow is accumulated on the device (`GradientFlowRecorder`), and
the host reads them once per epoch, plus a loss check (NaN, divergence) every
``config.check_every`` steps. Epoch ``e`` depends only on (seed, e) and the checkpoint of
``e - 1``, which is what makes `resume` exact.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Union, cast

import torch
import torch.nn as nn

from .._utils import CifarnetsError
from ..data import ARRAYS, DataBundle, DeviceLoader, derive_seed, make_loaders
from ..errors import CheckpointError, ConfigError, ConfigTypeError, NonFiniteLossError, TrainingDivergedError
from ._model import check_model_fits_data, identify_model
from .checkpoint import state_dict_for_save
from .config import SCHEDULE_FIELDS, TrainConfig, resume_changes
from .distributed import DistContext, DistributedError, setup_distributed, teardown
from .evaluate import autocast, eval_sums, use_amp
from .history import EpochRecord, History
from .optim import build_optimizer, build_scheduler
from .rundir import Checkpoint, RunDir, RunExistsError
from .runtime import (
    algorithms,
    check_fits_data,
    keep_freed_memory,
    progress_bar,
    resolve_keep_freed_memory,
    resolve_threads,
)
from .track import RunTrackers

__all__ = [
    "EpochCallback", "NonFiniteLossError", "ResumeMismatchError", "TrainingDivergedError", "describe_data", "fit",
]

logger = logging.getLogger(__name__)

# How NCCL and gloo report a peer that stopped answering or died.
_PEER_LOST = re.compile(r"timed out|timeout|connection (closed|reset)|broken pipe", re.IGNORECASE)

EpochCallback = Callable[[EpochRecord, History], None]
"""Called on rank 0 after every finished (and saved) epoch with its record and the history so far."""






ResumeMismatchError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


# ====================================================================== helpers


def describe_data(data: DataBundle) -> dict[str, Any]:
    """What config.json records of a run's data: its sizes and normalisation, and its `DataSource`
    (``load_args``; None for arrays handed over in memory, which must be passed again to resume)."""
    source = data.source.to_dict() if data.source is not None and data.source.name != ARRAYS else None
    return {
        "dataset": data.name, "train": len(data.train), "val": len(data.val) if data.val is not None else 0,
        "test": len(data.test), "num_classes": data.num_classes, "in_chans": data.in_chans,
        "mean": list(data.mean), "std": list(data.std), "norm": data.norm_name,
        "split": list(data.split) if data.split else None, "split_seed": data.split_seed,
        "is_synthetic": data.is_synthetic, "load_args": source,
    }


class _Run:
    """The state of one `fit` call: model, optimiser, loaders, run folder. Split out of `fit` for readability."""

    def __init__(self, model: Union[nn.Module, str], data: DataBundle, config: TrainConfig, ctx: DistContext,
                 device: torch.device, model_kwargs: Optional[Mapping[str, Any]],
                 callbacks: Sequence[EpochCallback]) -> None:
        self.data, self.config, self.ctx, self.device = data, config, ctx, device
        self.callbacks = list(callbacks)
        self.folder = RunDir(config.out_dir) if config.out_dir else None
        self.amp = use_amp(config.amp, device)
        # NHWC is faster for cuDNN and for oneDNN (CPU) convolutions alike; MPS gains nothing.
        self.channels_last = (device.type in ("cuda", "cpu") if config.channels_last is None
                              else bool(config.channels_last))
        if config.batch_size % ctx.world_size:
            raise ConfigError(f"batch_size={config.batch_size} is the global batch and must divide among "
                              f"{ctx.world_size} processes; use a multiple of {ctx.world_size}")
        raw, self.name, self.flags, self.model_kwargs, self.rebuildable = identify_model(
            model, model_kwargs, data, config.seed)
        check_model_fits_data(raw, data)
        check_fits_data(config, data)
        self.loaders = make_loaders(
            data, config.batch_size // ctx.world_size, eval_batch_size=config.eval_batch_size, device=device,
            augment=config.augment, padding=config.padding, seed=config.seed, drop_last=config.drop_last,
            rank=ctx.rank, world_size=ctx.world_size, channels_last=self.channels_last)
        self.train_loader, self.val_loader, self.test_loader = self.loaders.train, self.loaders.val, self.loaders.test
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
        self.data_info = describe_data(data)
        self.optimizer = build_optimizer(self.raw, config, fused=device.type == "cuda" or None)
        self.scheduler = build_scheduler(self.optimizer, config, len(self.train_loader))
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        # Chance-level cross-entropy, ln(classes): the yardstick of `diverge_factor`.
        self.diverge_above = (config.diverge_factor * max(math.log(data.num_classes), math.log(2))
                              if config.diverge_factor else math.inf)
        self.recorder = None
        if config.grad_flow:
            from ..analysis import GradientFlowRecorder

            self.recorder = GradientFlowRecorder(self.raw)
        from ..registry import count_params

        self.history = History(model=self.name, model_kwargs=self.model_kwargs, params=count_params(self.raw),
                               config=config.to_dict(), label=config.label, dataset=data.name,
                               num_classes=data.num_classes)
        self.best_state: Optional[dict[str, torch.Tensor]] = None
        self.best_acc = -math.inf
        self.start_epoch = 1

    # ------------------------------------------------------------------ the run folder

    def open_folder(self, resume: bool, change_schedule: bool, allow_world_size_change: bool) -> None:
        """Lock the folder (rank 0), then start a new run in it or restore the one it holds."""
        folder, ctx = self.folder, self.ctx
        if folder is None:
            if resume:
                raise ValueError("resuming needs the run folder: set out_dir (CLI: --resume RUN_DIR)")
            return
        if ctx.is_main:
            folder.lock()
        folder.refuse_orphaned()
        if folder.has_checkpoint():
            if not resume:
                raise RunExistsError(
                    f"{folder.path} already holds a run ({', '.join(folder.present())}); continue it with resume "
                    f"(CLI: --resume {folder.path}) or choose another out_dir (--out)")
            self._restore(change_schedule, allow_world_size_change)
        else:
            if resume and folder.has_config():
                # Killed before its first checkpoint: the run starts again, with the settings it was started with.
                resume_changes(TrainConfig.from_dict(folder.config()["train"]), self.config,
                               change_schedule=change_schedule)
                logger.info("%s has no checkpoint yet: starting its run from the beginning", folder.path)
            elif folder.has_config():
                logger.warning("%s holds config.json but no checkpoint (a run that stopped before its first "
                               "epoch): starting over in it", folder.path)
            if ctx.is_main:
                folder.write_config(self._config_json([]))
        # No rank may write (epoch 0) before every rank has looked at the folder.
        ctx.barrier()

    def _config_json(self, changes: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "model": self.name, "rebuildable": self.rebuildable, "model_kwargs": self.model_kwargs,
            "flags": self.flags, "data": self.data_info, "train": self.config.to_dict(),
            "world_size": self.ctx.world_size, "device": str(self.device), "versions": _versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changes": changes,
        }

    def hparams(self) -> dict[str, Any]:
        """The run's settings as flat hyper-parameters for trackers (``train.lr``, ``data.name``, ``model.bn``)."""
        out: dict[str, Any] = {"model": self.name}
        out.update({f"model.{k}": v for k, v in self.flags.items()})
        out.update({f"data.{k}": v for k, v in (self.data_info.get("load_args") or {"name": self.data.name}).items()})
        out.update({f"train.{k}": v for k, v in self.config.to_dict().items() if k not in ("extra", "out_dir")})
        return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in out.items()}

    def _metadata(self, record: Optional[EpochRecord]) -> dict[str, Any]:
        """The description stored with the weights; the same names as config.json."""
        metrics = {}
        if record is not None:
            metrics = {k: getattr(record, k) for k in ("train_loss", "train_acc", "val_loss", "val_acc")}
        return {
            "model": self.name, "rebuildable": self.rebuildable, "model_kwargs": self.model_kwargs,
            "metrics": metrics, "dataset": self.data.name, "num_classes": self.data.num_classes,
            "in_chans": self.data.in_chans, "mean": list(self.data.mean), "std": list(self.data.std),
            "classes": list(self.data.classes), "data": self.data_info, "train": self.config.to_dict(),
            "versions": _versions(),
        }

    def _save_epoch(self, epoch: int, record: Optional[EpochRecord], improved: bool) -> None:
        state = state_dict_for_save(self.raw)
        if improved or self.best_state is None:
            self.best_state = state
        if not (self.ctx.is_main and self.folder is not None):
            return
        self.folder.save(Checkpoint(
            epoch=epoch, weights=state, optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            rng={"torch": torch.get_rng_state(),
                 "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            history=self.history, metadata=self._metadata(record)), best=improved)

    def _restore(self, change_schedule: bool, allow_world_size_change: bool) -> None:
        """Load model, optimiser, scheduler, RNG and history from the folder's checkpoint (resume)."""
        folder, ctx, config = self.folder, self.ctx, self.config
        assert folder is not None
        stored = folder.config()
        changes = resume_changes(TrainConfig.from_dict(stored["train"]), config, change_schedule=change_schedule)
        stored_world = stored.get("world_size", 1)
        if stored_world != ctx.world_size:
            if not allow_world_size_change:
                raise ResumeMismatchError(
                    f"{folder.path} was trained by {stored_world} process(es) and is being resumed by "
                    f"{ctx.world_size}: that changes every process's batch and data shard, so the result would "
                    f"differ from an uninterrupted run. Resume with {stored_world} (torchrun --nproc-per-node "
                    f"{stored_world}, or no torchrun for 1), or accept the change with allow_world_size_change=True "
                    "(CLI: --allow-world-size-change; it is recorded in the history)")
            changes["world_size"] = [stored_world, ctx.world_size]
        ckpt = folder.restore(self.device, repair=False)
        try:
            self.raw.load_state_dict(ckpt.weights)
        except RuntimeError as err:
            detail = " ".join(str(err).split())[:300]
            raise CheckpointError(
                f"{folder.path / 'last.state.pt'}: its weights do not fit {self.name}({self.flags}) as config.json "
                f"describes it ({detail}). The model code or its keywords changed since the run was trained; resume "
                "with the cifarnets version that trained it, or start a new run") from None
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        rng = ckpt.rng or {}
        if isinstance(rng.get("torch"), torch.Tensor):
            torch.set_rng_state(rng["torch"])
        if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.history = ckpt.history
        self.start_epoch = ckpt.epoch + 1
        if set(changes) & SCHEDULE_FIELDS:
            self._restart_schedule()
        best_epoch = self.history.best_epoch
        if best_epoch is not None:
            record = self.history.best()
            self.best_acc = record.val_acc if record is not None and record.val_acc is not None else -math.inf
        # config.json is where changes are committed (with the settings they changed, in one write);
        # the history takes them from there, also after a kill before the next checkpoint.
        self.history.changes = [dict(c) for c in stored.get("changes") or []]
        if changes:
            entry = {"epoch": self.start_epoch, "changed": changes}
            self.history.changes.append(entry)
            self.history.config = config.to_dict()
            logger.warning("resuming %s at epoch %d with changes: %s", folder.path, self.start_epoch,
                           ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
            if ctx.is_main:
                folder.write_config({**self._config_json(self.history.changes), "started": stored.get("started")})
        if ctx.is_main:
            folder.repair(ckpt)  # last/best weights, history and test files as the checkpoint says
        if best_epoch is not None:
            weights = ckpt.weights if best_epoch == ckpt.epoch else folder.load_best_weights()
            self.best_state = {k: v.detach().cpu() for k, v in weights.items()}
        logger.info("resuming %s at epoch %d of %d", folder.path, self.start_epoch, config.epochs)

    def _restart_schedule(self) -> None:
        """Follow the new settings' schedule from the resumed epoch on (as if the run had always had them)."""
        for group in self.optimizer.param_groups:
            group.pop("initial_lr", None)
            group["lr"] = self.config.lr
        self.scheduler = build_scheduler(self.optimizer, self.config, len(self.train_loader))
        steps = (self.start_epoch - 1) * (len(self.train_loader) if self.config.schedule_unit == "step" else 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": fast-forwarding on purpose
            for _ in range(steps):
                self.scheduler.step()

    # ------------------------------------------------------------------ epochs

    def _train_epoch(self, epoch: int) -> tuple[float, float, int, float]:
        """One pass over the training shard: (mean loss, accuracy %, images, lr of the first step)."""
        config, device, loader = self.config, self.device, self.train_loader
        model, optimizer, scheduler, criterion, recorder = (
            self.train_model, self.optimizer, self.scheduler, self.criterion, self.recorder)
        per_step_schedule = config.schedule_unit == "step"
        n_steps = len(loader)
        # Per-step values stay on the device, as the step's own tensors (no op to store them):
        # the host reads the losses every `check_every` steps (non-finite check) and everything
        # once at the end of the epoch, where the predictions are compared with the labels.
        losses: list[torch.Tensor] = []
        predictions: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        sizes: list[int] = []
        lr0 = float(optimizer.param_groups[0]["lr"])
        checked = 0
        bar = progress_bar(n_steps, f"epoch {epoch}/{config.epochs}", config.quiet or not self.ctx.is_main)
        if recorder is not None:
            recorder.reset()
        model.train()
        loader.set_epoch(epoch - 1)
        try:
            for step, (images, labels) in enumerate(loader):
                with autocast(self.amp, device):
                    logits = model(images)
                    loss = criterion(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recorder is not None:
                    recorder.accumulate()
                optimizer.step()
                if per_step_schedule:
                    scheduler.step()
                losses.append(loss.detach())
                predictions.append(logits.detach().argmax(1))
                targets.append(labels)
                sizes.append(labels.shape[0])
                if (step + 1) % config.check_every == 0 or step + 1 == n_steps:
                    self._check_finite(torch.stack(losses[checked:]), checked, epoch, n_steps, bar)
                    checked = step + 1
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        if not per_step_schedule:
            scheduler.step()
        step_loss = torch.stack(losses).float()
        correct = (torch.cat(predictions) == torch.cat(targets)).sum()
        weights = torch.tensor(sizes, dtype=torch.float32, device=device)
        sums = torch.stack([(step_loss * weights).sum().double(), correct.double(),
                            weights.sum().double()]) if device.type != "mps" else \
            torch.stack([(step_loss * weights).sum(), correct.float(), weights.sum()])
        total = self.ctx.all_reduce_sum(sums).tolist()
        return total[0] / total[2], 100.0 * total[1] / total[2], int(total[2]), lr0

    def _check_finite(self, window: torch.Tensor, lo: int, epoch: int, n_steps: int, bar: Any) -> None:
        """Stop on a non-finite or diverged loss among `window`, the losses of steps ``lo + 1 ..``."""
        bad_steps = ~torch.isfinite(window) | (window > self.diverge_above)
        bad = bad_steps.any().to(torch.int32)
        if self.ctx.distributed:
            self.ctx.all_reduce_sum(bad)
        if bar is not None and self.ctx.is_main:
            bar.set_postfix(loss=f"{window[-1].item():.4f}", refresh=False)
        if not bad.item():
            return
        local_bad = bad_steps.nonzero()
        first_bad = int(local_bad[0]) if local_bad.numel() else 0
        step, value = lo + first_bad, float(window[first_bad])
        lr = self.optimizer.param_groups[0]["lr"]
        lower = self.config.lr / 10
        if self.folder is not None:
            where = (f"the run stopped and {self.folder.path} keeps epoch {epoch - 1}. Continue from there with a "
                     f"lower learning rate: cifarnets train --resume {self.folder.path} --change-schedule "
                     f"--lr {lower:g} "
                     f"(Python: resume({str(self.folder.path)!r}, change_schedule=True, lr={lower:g}); "
                     "--warmup-epochs may be changed the same way)")
        else:
            where = ("the run stopped; no checkpoint was kept (set out_dir / --out to keep the last good epoch). "
                     f"Run again with a lower learning rate (--lr {lower:g}) or a warm-up (--warmup-epochs)")
        cause = ("deep nets without batch norm also diverge at rates their BN versions take (the coursework reports). "
                 "The usual cause is a learning rate too high for this model")
        if math.isfinite(value):
            raise TrainingDivergedError(
                f"training diverged: the loss reached {value:.3g} at epoch {epoch}, step {step + 1} of {n_steps} "
                f"(lr {lr:g}), over {self.config.diverge_factor:g} x the chance-level loss "
                f"{self.diverge_above / self.config.diverge_factor:.3g}; {where}. {cause}.",
                epoch=epoch, step=step + 1, value=value)
        raise NonFiniteLossError(
            f"training loss became {value} at epoch {epoch}, step {step + 1} of {n_steps} (lr {lr:g}); {where}. "
            f"{cause}.", epoch=epoch, step=step + 1, value=value)

    def _eval(self, loader: DeviceLoader) -> tuple[float, float]:
        self.ctx.broadcast_buffers(self.raw)
        sums = self.ctx.all_reduce_sum(eval_sums(self.eval_model, loader, self.amp, self.device)).tolist()
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
        if self.ctx.is_main and self.folder is not None:
            self.folder.write_test(self.history, {"model": self.name, "dataset": self.data.name,
                                                  "label": self.history.name})
        self.ctx.barrier()
        logger.info("test (best epoch %s): loss %.4f acc %.2f%%", self.history.best_epoch, test_loss, test_acc)
        return self.history


def _versions() -> dict[str, str]:
    from .. import __version__

    return {"cifarnets": __version__, "torch": torch.__version__}


def fit(
    model: Union[nn.Module, str],
    data: DataBundle,
    config: Optional[TrainConfig] = None,
    *,
    model_kwargs: Optional[Mapping[str, Any]] = None,
    callbacks: Sequence[EpochCallback] = (),
    resume: bool = False,
    change_schedule: bool = False,
    allow_world_size_change: bool = False,
) -> History:
    """Train `model` on `data` as `config` says; return the `History` (also in ``config.out_dir``).

    Args:
        model: a module, or a registry name that `fit` builds with `cifarnets.create`
            (``in_chans``/``num_classes`` from `data`, initial weights drawn from
            ``config.seed``), the fully reproducible way.
        data: a `DataBundle` (`cifarnets.data.load_dataset`; its normalisation is the data
            set's preset unless `load_dataset(norm=...)` chose another).
        config: `TrainConfig`; defaults to the coursework reports' recipe.
        model_kwargs: the `cifarnets.create` keywords of `model` (``bn=True, rc=True``), kept in
            the history (legends) and checkpoints (so `load_checkpoint` can rebuild the model).
        callbacks: called on rank 0 as ``cb(record, history)`` after each epoch is saved.
        resume: continue the run in ``config.out_dir`` from its last checkpoint (or start it,
            if it has none yet). `config` must match the stored one except in `RUNTIME_FIELDS`.
        change_schedule: with `resume`, let `config` change the learning rate and its
            schedule (`SCHEDULE_FIELDS`); the remaining epochs follow the new settings'
            schedule from the resumed epoch on, and the change is recorded in the history.
        allow_world_size_change: with `resume`, accept another number of processes than the
            run was trained with (its result then differs from an uninterrupted run).

    Per epoch the history gets train/val loss and accuracy, lr, times, images/s and the
    gradient flow (mean |grad| of every conv/linear weight averaged over the epoch's steps,
    the coursework reports). The best epoch is the highest validation accuracy (the last epoch
    without a validation split); on return the model holds its weights, and
    ``history.test`` its test loss and accuracy. The run folder is locked while `fit` runs.

    Under ``torchrun`` the same call trains with DistributedDataParallel: `config.batch_size`
    stays the *global* batch (split evenly over ranks, as the reports' lr assumes), metrics are
    summed over ranks and only rank 0 writes files and calls `callbacks`.

    Raises:
        NonFiniteLossError, TrainingDivergedError: the loss became NaN/inf or grew over
            ``diverge_factor`` x chance (the message names epoch, step and the resume command).
        RunExistsError: ``out_dir`` holds a run and ``resume`` is False.
        RunLockedError: another process trains in ``out_dir``.
        ResumeMismatchError: ``resume`` with settings or a world size the run did not have.

    Example:
        >>> from cifarnets.data import load_dataset
        >>> data = load_dataset("synthetic", synthetic_sizes=(500, 200))
        >>> h = fit("vgg08", data, TrainConfig(epochs=1, batch_size=100, lr=3e-3, quiet=True))
        >>> len(h.epochs), h.best_epoch, sorted(h.test)
        (1, 1, ['acc', 'epoch', 'loss', 'n'])
    """
    config = config if config is not None else TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"fit() takes a TrainConfig as config; got {type(config).__name__}")
    config.validate()  # a config edited after construction
    if not isinstance(data, DataBundle):
        raise ConfigTypeError(
            f"fit() takes a DataBundle; got {type(data).__name__}. Load one by name with cifarnets.data.load_dataset("
            "'cifar10' / 'mnist' / 'folder:PATH' for an ImageFolder tree, ...), or wrap images in memory with "
            "cifarnets.data.from_arrays(train=(x, y), test=(x, y))")
    if data.is_synthetic:
        logger.info("training on the SYNTHETIC data set: its numbers say nothing about CIFAR")
    config = resolve_threads(config, resume)
    ctx, device = setup_distributed(config.device, timeout_s=config.dist_timeout)
    config = resolve_keep_freed_memory(config, device)
    if config.keep_freed_memory:
        # config.json records what applied: False where the C library is not glibc.
        config = config.replace(keep_freed_memory=keep_freed_memory())
    run: Optional[_Run] = None
    trackers: Optional[RunTrackers] = None
    saved_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(config.threads or saved_threads)
        with algorithms(config.deterministic, device):
            run = _Run(model, data, config, ctx, device, model_kwargs, callbacks)
            run.open_folder(resume, change_schedule, allow_world_size_change)
            if config.log and ctx.is_main:
                trackers = RunTrackers(config.log, run.folder.path if run.folder is not None else None,
                                       run.history.name, run.hparams(), resume=run.start_epoch > 1)
                run.callbacks.append(trackers)
            if run.start_epoch > config.epochs and run.history.test is not None:
                logger.info("%s is already finished (%d epochs); nothing to do", config.out_dir, config.epochs)
                run.load_best()
                history = run.history
            else:
                history = run.run()
        if trackers is not None:
            trackers.finish("finished", history)
        return history
    except BaseException as err:
        if trackers is not None:
            trackers.finish("failed" if isinstance(err, Exception) else "interrupted")
        if run is not None and run.folder is not None and run.folder.locked:
            with contextlib.suppress(Exception):  # the folder may be what failed (a full disk)
                run.folder.record_failure(err, run.history.epochs[-1].epoch if run.history.epochs else None)
        # torch.distributed.DistError, or gloo's plain RuntimeError "Timed out waiting ...": a peer is gone.
        if isinstance(err, RuntimeError) and not isinstance(err, CifarnetsError) and ctx.distributed \
                and _PEER_LOST.search(str(err)):
            raise DistributedError(
                f"rank {ctx.rank}: another process of this {ctx.world_size}-process job stopped answering within "
                f"dist_timeout={config.dist_timeout:g} s, or died ({type(err).__name__}: {str(err).splitlines()[0]}). "
                "Restart the job; it resumes from the last checkpoint (--resume RUN_DIR). Raise --dist-timeout if "
                "the processes are merely slow to meet (e.g. a slow file system)") from err
        raise
    finally:
        torch.set_num_threads(saved_threads)
        if run is not None and run.folder is not None:
            run.folder.unlock()
        teardown(ctx)
