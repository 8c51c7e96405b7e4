"""Training throughput: `fit` against the bare step it contains and the customary loop, side by side.

For each model, in one run, images per second of

(a) bare:      forward, backward and optimiser step on the batches of (b)'s epoch, made on the
               device in advance (the ceiling: no data pipeline, no bookkeeping; the same
               training as (b), one epoch behind, so that both step through the same values);
(b) fit:       `cifarnets.train.fit`'s training phase (its own clock, ``EpochRecord.train_seconds``)
               with everything it does per step: the `DeviceLoader` (shuffle, crop + flip,
               normalise on the device), gradient-flow recording, loss/accuracy accounting and
               the non-finite check;
(c) customary: the loop of most CIFAR repositories: a `Dataset` of PIL images with
               ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()``,
               ``Normalize()``, a `DataLoader` with worker processes, then the same step;

and (d) sweep throughput: k = 1, 2, 4 training runs ("cells") at once, images/s summed over
the cells, against one cell alone.

How it measures (a shared machine is noisy; a ratio of two figures taken at different times
measures the load, not the code):

- every variant is warmed up first (``--warmup`` rounds, discarded): allocator, oneDNN/cuDNN
  plans, DataLoader workers, `torch.compile`;
- then the three run round-robin in short slices (``--steps`` steps each), ``--rounds`` times:
  b a c | b c a | b a c ... (the order of a and c alternates, so that the DataLoader workers
  refilling their queue after (c) slow (a) and (b) equally often). One slice of (b) is one
  epoch of a single `fit` call over a data set of one slice; (a) and (c) run from its epoch
  callback, between its epochs;
- figures are medians over the rounds with their interquartile range; b/a and b/c are the
  medians of the per-round ratios (a round's slices are seconds apart, so the load they saw
  is nearly the same);
- the fraction of (b)'s time spent outside forward/backward/step is measured on the same
  steps, from outside `fit`: a forward pre-hook on the model, a hook on the parameter whose
  gradient is accumulated last, and torch's global optimiser-step hooks (CUDA events on a
  GPU, so the host never waits). The same probe on (a) gives (a)'s own outside fraction, which
  must be about 0. (b)'s outside time is split into the gaps between its steps and the slice's
  two ends (the epoch's set-up with its first chunk of batches, and its closing reads): a slice
  is an epoch of a few steps, so the ends weigh far more than in training, and the target line
  says what they would weigh in a CIFAR-10 epoch (``--steps 40`` measures a longer one);
- (c) discards the batches its workers prefetched while the other variants ran, so that a
  slice does not start with a free queue of ready batches;
- (b) contains (a): a b/a above 1.02 is reported as a measurement error (exit status 3),
  never as a result;
- the parts of (b) outside the step (its loader's batches, gradient-flow accumulation, the
  loss/accuracy writes, the loss check) are each timed alone in every round (`Parts`), as a
  share of the same round's bare step (``--no-parts`` skips them);
- the targets (b/a >= 0.97, outside share <= 2 %) are printed as met / not met, and the load
  average before and after (flagged when above the cores + 0.5).

(a), (c) and the parts run from fit's callback, so at fit's thread count: the benchmark gives
fit the count its header names (torch's default, or ``--threads``).

Data: the synthetic set (CIFAR-shaped, in memory), so that it runs anywhere. All variants use
the same model, optimiser (`TrainConfig`'s: Adam), batch size, precision, memory format and
compilation.

    python benchmarks/train_throughput.py --threads 1         # CPU defaults (7.5 min with --rounds 5 on 2 busy cores)
    python benchmarks/train_throughput.py --quick             # every path in seconds (a dry run, not a result)
    python benchmarks/train_throughput.py --device cuda --amp --channels-last [--compile] --json out.json
    python benchmarks/train_throughput.py --sweep-only --sweep-model vgg38 --sweep-k 1 2 4

``--json PATH`` writes every figure: ``results`` holds one object per model with the keys
``model``, ``bare``, ``fit``, ``customary`` (median images/s), ``fit_over_bare``,
``fit_over_customary`` (medians of the per-round ratios), ``outside_fraction`` (median over
(b)'s slices), and ``spread`` with every sample, quartiles, minimum and maximum; ``sweep``
holds (d).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional

import torch
import torch.nn as nn

import cifarnets
from cifarnets._utils import atomic_write, markdown_table
from cifarnets.data import load_dataset, make_loaders
from cifarnets.data.augment import crop_flip
from cifarnets.train import History, TrainConfig, build_optimizer, fit
from cifarnets.train.distributed import resolve_device
from cifarnets.train.runtime import keep_freed_memory, resolve_keep_freed_memory

# key -> (registry name, create() keywords, CPU steps per slice)
MODELS: dict[str, tuple[str, dict[str, Any], int]] = {
    "vgg08": ("vgg08", {}, 8),
    "vgg38": ("vgg38", {}, 2),
    "vgg38_bn_rc": ("vgg38", {"bn": True, "rc": True}, 2),
    "resnet18": ("resnet18", {}, 1),
}
DEFAULT_MODELS = ["vgg08", "vgg38_bn_rc", "resnet18"]
# (b) contains (a): above this, the figures are wrong, not the code fast.
PHYSICS_LIMIT = 1.02
# What fit should cost around the step it contains (the "nothing lost around the step" issue).
TARGET_FIT_OVER_BARE = 0.97
TARGET_OUTSIDE = 0.02
# Training images of CIFAR-10 (50,000 less none: the reports validate on the test set or a split of it).
CIFAR_TRAIN_IMAGES = 50_000


# ====================================================================== timing probes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class _Clock:
    """Time marks: `perf_counter` on the host, CUDA events on a GPU (read after a synchronise)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1e3 if self.cuda else end - start


class StepProbe:
    """Times forward-to-end-of-backward and the optimiser step of one model, from outside its loop.

    A forward pre-hook marks the start of a step's forward (grad mode only, so evaluation is
    ignored), a post-accumulate-grad hook on the parameter whose gradient arrives last marks
    the end of its backward (found on the first step: hooks on every parameter, then only on
    the last one), and torch's global optimiser-step hooks mark the step. The interval from
    forward to end of backward holds the loss and ``zero_grad`` too, as the bare step does.
    Only the armed probe (`arm`) records; `disarm` returns the seconds inside.
    """

    active: ClassVar[Optional["StepProbe"]] = None
    _global_hooks: ClassVar[list] = []

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.clock = _Clock(device)
        self.marks: list[tuple[str, Any]] = []
        self._order: list[int] = []
        params = [p for p in model.parameters() if p.requires_grad]
        self._params = params
        self._grad_handles = [p.register_post_accumulate_grad_hook(self._grad_hook(i)) for i, p in enumerate(params)]
        self._calibrated = False
        self._fwd_handle = model.register_forward_pre_hook(self._on_forward)
        self.span = math.nan

    @classmethod
    def install(cls) -> None:
        """Register the global optimiser-step hooks once (they route to the armed probe)."""
        if cls._global_hooks:
            return
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        cls._global_hooks = [register_optimizer_step_pre_hook(lambda *_: cls._route("S")),
                             register_optimizer_step_post_hook(lambda *_: cls._route("E"))]

    @classmethod
    def uninstall(cls) -> None:
        for handle in cls._global_hooks:
            handle.remove()
        cls._global_hooks = []

    @classmethod
    def _route(cls, kind: str) -> None:
        probe = cls.active
        if probe is not None:
            if kind == "S":
                probe._calibrate()
            probe.marks.append((kind, probe.clock.mark()))

    @torch._dynamo.disable
    def _on_forward(self, module: nn.Module, args: Any) -> None:
        if StepProbe.active is self and torch.is_grad_enabled() and module.training:
            self.marks.append(("F", self.clock.mark()))

    def _grad_hook(self, index: int) -> Callable[[torch.Tensor], None]:
        def hook(param: torch.Tensor) -> None:
            if not self._calibrated:
                self._order.append(index)
            if StepProbe.active is self:
                self.marks.append(("B", self.clock.mark()))
        return hook

    def _calibrate(self) -> None:
        """After the first backward, keep only the hook of the parameter that got its gradient last."""
        if self._calibrated or not self._order:
            return
        last = self._order[-1]
        for i, handle in enumerate(self._grad_handles):
            if i != last:
                handle.remove()
        self._grad_handles = [self._grad_handles[last]]
        self._calibrated = True

    def arm(self) -> None:
        self.marks = []
        StepProbe.active = self

    def disarm(self) -> tuple[float, int]:
        """(seconds inside forward..backward and step, steps seen) since `arm`; call after a device sync.

        `span` is then the seconds from the first forward to the end of the last optimiser step:
        a slice's time outside the steps splits into the gaps between them (span - inside) and
        its two ends (the epoch's set-up, first batch included, and its closing reads).
        """
        StepProbe.active = None
        inside, steps = 0.0, 0
        first_forward = [m for k, m in self.marks if k == "F"][:1]
        last_step = [m for k, m in self.marks if k == "E"][-1:]
        self.span = self.clock.seconds(first_forward[0], last_step[0]) if first_forward and last_step else math.nan
        start = backward_end = step_start = None
        for kind, mark in self.marks:
            if kind == "F":
                if start is not None and backward_end is not None:
                    inside += self.clock.seconds(start, backward_end)
                start, backward_end = mark, None
            elif kind == "B":
                backward_end = mark
            elif kind == "S":
                if start is not None and backward_end is not None:
                    inside += self.clock.seconds(start, backward_end)
                start = backward_end = None
                step_start = mark
            elif kind == "E" and step_start is not None:
                inside += self.clock.seconds(step_start, mark)
                step_start = None
                steps += 1
        self.marks = []
        return inside, steps


# ====================================================================== the variants


@dataclass
class Sample:
    images: int
    seconds: float
    inside: float = math.nan
    cpu: float = math.nan  # this process's CPU seconds (all its threads), for `cpu_rate`
    span: float = math.nan  # first forward to the end of the last step (`StepProbe.span`)

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def outside(self) -> float:
        return 1.0 - self.inside / self.seconds

    @property
    def between_steps(self) -> float:
        """The share of the time spent outside the steps but between the first and the last of them."""
        return (self.span - self.inside) / self.seconds

    @property
    def ends(self) -> float:
        """The share spent before the first forward and after the last step (per-epoch work)."""
        return 1.0 - self.span / self.seconds

    @property
    def cpu_rate(self) -> float:
        """Images per CPU second of this process: less sensitive to other processes' load than wall
        time, not immune to it (shared caches, sibling hyperthreads); with one intra-op thread only,
        as more threads also count the time they spin waiting for each other."""
        return self.images / self.cpu


@dataclass
class Setup:
    """What every variant of one model shares."""

    key: str
    name: str
    kwargs: dict[str, Any]
    device: torch.device
    config: TrainConfig
    steps: int
    amp: bool
    channels_last: bool
    compile: bool
    workers: int

    @property
    def batch(self) -> int:
        return self.config.batch_size

    @property
    def slice_images(self) -> int:
        return self.steps * self.batch

    def build(self) -> nn.Module:
        torch.manual_seed(self.config.seed)
        model = cifarnets.create(self.name, num_classes=10, in_chans=3, **self.kwargs).to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def step_fn(self, model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], None]:
        run = torch.compile(model) if self.compile else model
        optimizer = build_optimizer(model, self.config, fused=self.device.type == "cuda" or None)
        criterion = nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)  # fit's loss
        autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if self.amp else \
            contextlib.nullcontext

        def step(images: torch.Tensor, labels: torch.Tensor) -> None:
            with autocast():
                loss = criterion(run(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step


class Bare:
    """(a): the step alone, on the batches of fit's epoch made in advance on the device.

    Slice ``i`` steps through the batches fit's loader serves in its epoch ``i`` (same seed,
    crops and order), from the same initial weights and optimiser: (a) repeats (b)'s training
    one epoch later, value for value. So both meet the same numbers, subnormal floats
    included, which on a CPU can slow a step by a fifth: with different data (a) and (b)
    drifted apart by that much between runs.
    """

    key = "bare"

    def __init__(self, setup: Setup, data) -> None:
        cfg = setup.config
        self.setup = setup
        self.model = setup.build()
        self.step = setup.step_fn(self.model)
        self.probe = StepProbe(self.model, setup.device)
        self.loader = make_loaders(data, setup.batch, device=setup.device, augment=cfg.augment, padding=cfg.padding,
                                   seed=cfg.seed, drop_last=cfg.drop_last, channels_last=setup.channels_last).train
        self.epoch = 0
        self.model.train()

    def slice(self) -> Sample:
        batches = list(self.loader.batches(self.epoch))  # made before the clock starts
        self.epoch += 1
        _sync(self.setup.device)
        self.probe.arm()
        cpu, start = time.process_time(), time.perf_counter()
        for x, y in batches:
            self.step(x, y)
        _sync(self.setup.device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        inside, _ = self.probe.disarm()
        return Sample(sum(len(y) for _, y in batches), seconds, inside, cpu)

    def close(self) -> None:
        pass


class _PILSet(torch.utils.data.Dataset):
    """CIFAR as torchvision serves it: one PIL image per item, transformed per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC uint8, like CIFAR10.data
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


class Customary:
    """(c): DataLoader + PIL transforms with worker processes, then the same step."""

    key = "customary"

    def __init__(self, setup: Setup, data) -> None:
        import torchvision.transforms as T

        self.setup = setup
        transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                               T.Normalize(data.mean, data.std)])
        self.loader = torch.utils.data.DataLoader(
            _PILSet(data.train.images, data.train.labels, transform), batch_size=setup.batch, shuffle=True,
            num_workers=setup.workers, pin_memory=setup.device.type == "cuda", persistent_workers=setup.workers > 0)
        # Batches the workers have ready when a slice starts, made while other variants ran.
        self.prefetched = setup.workers * 2  # DataLoader's prefetch_factor default
        self.model = setup.build()
        self.step = setup.step_fn(self.model)
        self.probe = StepProbe(self.model, setup.device)
        self.model.train()
        self._batches = self._forever()

    def _forever(self) -> Iterator:
        while True:
            yield from self.loader

    def slice(self) -> Sample:
        device, cl = self.setup.device, self.setup.channels_last
        for _ in range(self.prefetched):  # a slice starts from an empty queue, as in steady state
            next(self._batches)
        _sync(device)
        self.probe.arm()
        start = time.perf_counter()
        n = 0
        for _ in range(self.setup.steps):
            x, y = next(self._batches)
            x = x.to(device, non_blocking=True)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            self.step(x, y.to(device, non_blocking=True))
            n += y.shape[0]
        _sync(device)
        seconds = time.perf_counter() - start
        inside, _ = self.probe.disarm()
        return Sample(n, seconds, inside)

    def close(self) -> None:
        self._batches.close()  # ends the iterator and so the persistent workers
        del self.loader


class Parts:
    """The parts of `fit`'s step outside forward/backward/step, each timed alone on the slice's batches.

    The same calls `fit` makes, on a model of the same build: the training `DeviceLoader` (one
    epoch: the slice), ``GradientFlowRecorder.accumulate()``, the per-step loss/accuracy writes
    and one loss check (``fit`` checks every ``check_every`` steps and at an epoch's end: once
    per slice here). ``crop_flip gather`` is the batch path `DeviceLoader` had before it
    cropped by row runs (index, `crop_flip`, normalise), kept here for the comparison.
    ``optimizer.zero_grad`` is not a part: bare and fit both run it inside forward..backward.
    `slice` returns seconds per step of each part.
    """

    key = "parts"
    names = ("batches (DeviceLoader)", "batches, crop_flip gather (before)", "gradient flow accumulate",
             "loss/accuracy accounting", "loss check")

    def __init__(self, setup: Setup, data) -> None:
        from cifarnets.analysis import GradientFlowRecorder

        self.setup, cfg = setup, setup.config
        self.loader = make_loaders(data, setup.batch, device=setup.device, augment=cfg.augment, padding=cfg.padding,
                                   seed=cfg.seed, channels_last=setup.channels_last).train
        model = setup.build()
        model.train()
        images, labels = next(iter(self.loader))
        self.logits = model(images)
        nn.functional.cross_entropy(self.logits, labels).backward()  # .grad for the recorder
        self.logits, self.labels = self.logits.detach(), labels
        self.loss = nn.functional.cross_entropy(self.logits, labels).detach()
        self.recorder = GradientFlowRecorder(model)
        self.epoch = 0

    def _old_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = self.loader
        indices, params = loader.epoch_plan(epoch)
        indices = indices.to(loader.device)
        params = params.to(loader.device) if params is not None else None
        for b in range(len(loader)):
            lo = b * loader.batch_size
            idx = indices[lo:lo + loader.batch_size]
            images = loader.data.images.index_select(0, idx)
            if params is not None:
                p = params[lo:lo + loader.batch_size]
                images = crop_flip(images, p[:, 0], p[:, 1], p[:, 2].bool(), padding=loader.padding)
            yield loader._normalize(images), loader.data.labels.index_select(0, idx)

    def slice(self) -> dict[str, float]:
        device, steps, n = self.setup.device, self.setup.steps, len(self.loader)
        self.epoch += 1
        losses = [self.loss] * steps

        def accounting() -> None:
            losses, predictions, targets, sizes = [], [], [], []
            for _ in range(steps):
                losses.append(self.loss.detach())
                predictions.append(self.logits.detach().argmax(1))
                targets.append(self.labels)
                sizes.append(self.labels.shape[0])

        def check() -> None:
            window = torch.stack(losses)
            bad = ~torch.isfinite(window) | (window > 23.0)
            bool(bad.any().to(torch.int32).item())

        work: dict[str, tuple[Callable[[], Any], int]] = {
            self.names[0]: (lambda: [None for _ in self.loader.batches(self.epoch)], n),
            self.names[1]: (lambda: [None for _ in self._old_batches(self.epoch)], n),
            self.names[2]: (lambda: [self.recorder.accumulate() for _ in range(steps)], steps),
            self.names[3]: (accounting, steps),
            self.names[4]: (check, steps),
        }
        out = {}
        for name, (fn, per) in (work.items() if self.epoch % 2 else reversed(work.items())):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            out[name] = (time.perf_counter() - start) / per
        return {name: out[name] for name in self.names}

    def close(self) -> None:
        pass


# ====================================================================== statistics


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _spread(values: list[float]) -> dict[str, Any]:
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return {"median": math.nan, "q1": math.nan, "q3": math.nan, "min": math.nan, "max": math.nan, "n": 0,
                "samples": values}
    q1, q2, q3 = _quartiles(clean)
    return {"median": q2, "q1": q1, "q3": q3, "min": min(clean), "max": max(clean), "n": len(clean),
            "samples": values}


@dataclass
class ModelResult:
    key: str
    params: int
    slice_images: int
    batch: int = 1
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    parts: list[dict[str, float]] = field(default_factory=list)  # per round: seconds per step of each part
    same_training: Optional[bool] = None  # (a) ended with (b)'s weights, bit for bit (`Bare`)

    def rates(self, variant: str) -> list[float]:
        return [s.rate for s in self.samples.get(variant, [])]

    def ratios(self, num: str, den: str) -> list[float]:
        a, b = self.rates(num), self.rates(den)
        return [x / y for x, y in zip(a, b)] if a and b else []

    def figures(self) -> dict[str, Any]:
        spread = {
            "bare": _spread(self.rates("bare")), "fit": _spread(self.rates("fit")),
            "customary": _spread(self.rates("customary")),
            "fit_over_bare": _spread(self.ratios("fit", "bare")),
            "fit_over_customary": _spread(self.ratios("fit", "customary")),
            "outside_fraction": _spread([s.outside for s in self.samples.get("fit", [])]),
            "bare_outside_fraction": _spread([s.outside for s in self.samples.get("bare", [])]),
            "outside_between_steps": _spread([s.between_steps for s in self.samples.get("fit", [])]),
            "outside_at_ends": _spread([s.ends for s in self.samples.get("fit", [])]),
            "ends_seconds": _spread([s.ends * s.seconds for s in self.samples.get("fit", [])]),
            "fit_over_bare_cpu_time": _spread([b.cpu_rate / a.cpu_rate for a, b in
                                               zip(self.samples.get("bare", []), self.samples.get("fit", []))]),
        }
        out: dict[str, Any] = {"model": self.key, "params": self.params, "images_per_slice": self.slice_images,
                               "batch": self.batch, "same_training": self.same_training}
        for key, s in spread.items():
            out[key] = s["median"]
        out["measurement_error"] = bool(out["fit_over_bare"] > PHYSICS_LIMIT)
        out["spread"] = spread
        if self.parts:
            # Each part per step over the bare step's time per step, in the same round.
            bare_step = [s.seconds / (s.images / self.batch) for s in self.samples.get("bare", [])]
            out["parts"] = {name: {"seconds_per_step": _spread([r[name] for r in self.parts]),
                                   "of_bare_step": _spread([r[name] / b for r, b in zip(self.parts, bare_step)])}
                            for name in self.parts[0]}
        return out


# ====================================================================== (a), (b), (c) interleaved


def measure_model(setup: Setup, rounds: int, warmup: int, customary: bool, log: Callable[[str], None],
                  parts: bool = True) -> ModelResult:
    """Warm every variant up, then (b) one `fit` epoch, (a), (c) and the parts from its callback, round after round."""
    n = setup.slice_images
    data = load_dataset("synthetic", synthetic_sizes=(n, setup.batch), split="none")
    variants: list[Any] = [Bare(setup, data)]
    if customary:
        variants.append(Customary(setup, data))
    part_probe = Parts(setup, data) if parts else None
    model = setup.build()
    probe = StepProbe(model, setup.device)
    result = ModelResult(setup.key, cifarnets.count_params(model), n, setup.batch)
    result.samples = {"bare": [], "fit": [], **({"customary": []} if customary else {})}

    cpu_start = [0.0]

    def between_epochs(record, history) -> None:
        # CPU time from the end of the last callback: the epoch's training phase plus its (small,
        # here: no validation, no files) end-of-epoch bookkeeping, so it errs against fit.
        cpu = time.process_time() - cpu_start[0]
        inside, _ = probe.disarm()  # fit's epoch ended with a synchronising read of its sums
        measured = record.epoch > warmup
        if measured:
            result.samples["fit"].append(Sample(n, record.train_seconds, inside, cpu, probe.span))
        order = variants if record.epoch % 2 else variants[::-1]
        for variant in order:
            sample = variant.slice()
            if measured:
                result.samples[variant.key].append(sample)
        if part_probe is not None:
            timed = part_probe.slice()
            if measured:
                result.parts.append(timed)
        if measured:
            i = len(result.samples["fit"])
            parts = "  ".join(f"{k} {v[-1].rate:,.0f}" for k, v in result.samples.items())
            log(f"    round {i}/{rounds}: {parts} img/s")
        probe.arm()
        cpu_start[0] = time.process_time()

    config = setup.config.replace(epochs=warmup + rounds, compile=setup.compile)
    probe.arm()
    cpu_start[0] = time.process_time()
    try:
        fit(model, data, config, model_kwargs=setup.kwargs, callbacks=[between_epochs])
    finally:
        StepProbe.active = None
        for variant in variants:
            variant.close()
    result.same_training = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                                    variants[0].model.state_dict().values()))
    return result


# ====================================================================== (d) sweep throughput

def measure_sweep(key: str, ks: list[int], epochs: int, images: int, batch: int,
                  device: torch.device, amp: bool, channels_last: bool, compile: bool,
                  log: Callable[[str], None], progress: Callable[[dict[str, Any]], None] = lambda out: None,
                  ) -> dict[str, Any]:
    """(d): for each k, k cells of `key` trained at once; images/s of each cell after its first epoch, summed."""
    from cifarnets.sweep import run

    name, kwargs, _ = MODELS[key]
    out: dict[str, Any] = {"engine": "cifarnets.sweep local", "model": key, "epochs": epochs,
                           "images_per_epoch": images,
                           "batch_size": batch, "runs": []}
    for k in ks:
        grid = {"base": {"model": name, **kwargs, "dataset": "synthetic", "limit": images, "split": "none",
                         "epochs": epochs, "batch_size": batch, "sched": "none", "amp": amp,
                         "channels_last": channels_last, "compile": compile},
                "axes": {"seed": list(range(k))}}
        with tempfile.TemporaryDirectory(prefix=f"sweep{k}_") as tmp:
            start = time.perf_counter()
            result = run(grid, tmp, engine="local", parallel=k, device=str(device), quiet=True)
            failed = [o for o in result.outcomes if o.status == "failed"]
            if failed:
                raise RuntimeError(f"(d) k={k}: cells failed: " + "; ".join(f"{o.name}: {o.error}" for o in failed))
            wall = time.perf_counter() - start
            folders = sorted(Path(f).parent for f in glob.glob(f"{tmp}/**/history.json", recursive=True))
            if len(folders) != k:
                raise RuntimeError(f"(d) k={k}: expected {k} run folders with history.json, found {len(folders)}")
            histories = [History.load(f / "history.json") for f in folders]
            # When each cell trained: config.json is written just before its first epoch,
            # last.safetensors after its last one (file times work for any sweep engine).
            spans = [(os.stat(f / "config.json").st_mtime, os.stat(f / "last.safetensors").st_mtime) for f in folders]
        per_cell, total = [], 0.0
        for h in histories:
            timed = h.epochs[1:] or h.epochs  # the first epoch warms up (plans, allocator, compile)
            seconds = sum(e.train_seconds for e in timed)
            per_cell.append(sum(e.images_per_second * e.train_seconds for e in timed) / seconds)
            total += sum(e.images_per_second * e.train_seconds for e in h.epochs)
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        together = max(0.0, min(e for _, e in spans) - max(s for s, _ in spans))
        entry = {"k": k, "summed": sum(per_cell), "per_cell": per_cell, "training_span_seconds": last - first,
                 "span_rate": total / (last - first), "overlap": together / (last - first), "wall_seconds": wall}
        # Summed per-cell rates assume the cells ran at the same time; cells that ran one after the
        # other would add up to k times one cell. The whole span's rate is the check.
        entry["overlap_ok"] = k == 1 or entry["overlap"] >= 0.8
        out["runs"].append(entry)
        entry["over_one_cell"] = entry["summed"] / out["runs"][0]["summed"] if out["runs"][0]["k"] == 1 else math.nan
        progress(out)
        log(f"  (d) k={k}: summed {entry['summed']:,.0f} img/s over cells {', '.join(f'{r:,.0f}' for r in per_cell)}"
            f"; all images over the training span {entry['span_rate']:,.0f} img/s; cells overlapped "
            f"{entry['overlap']:.0%} of it; whole call {wall:.0f} s")
    return out


# ====================================================================== report


def _fmt(s: dict[str, Any], digits: int = 0, pct: bool = False, scale: float = 1.0) -> str:
    if s["n"] == 0:
        return "–"
    scale, unit = (100.0, " %") if pct else (scale, "")
    f = (lambda v: f"{v * scale:,.{digits}f}")
    return f"{f(s['median'])}{unit} ({f(s['q1'])}–{f(s['q3'])})"


def results_table(rows: list[dict[str, Any]]) -> str:
    headers = ["model", "params", "(a) bare", "(b) fit", "(c) customary", "b/a", "b/c", "(b) outside f/b/s",
               "(b) between steps", "(b) epoch ends, ms", "(a) outside", "b/a in CPU time"]
    body = []
    for r in rows:
        s = r["spread"]
        ba = _fmt(s["fit_over_bare"], 3) + (" MEASUREMENT ERROR" if r["measurement_error"] else "")
        body.append([r["model"], f"{r['params']:,}", _fmt(s["bare"]), _fmt(s["fit"]), _fmt(s["customary"]), ba,
                     _fmt(s["fit_over_customary"], 2), _fmt(s["outside_fraction"], 1, pct=True),
                     _fmt(s["outside_between_steps"], 1, pct=True), _fmt(s["ends_seconds"], 1, scale=1e3),
                     _fmt(s["bare_outside_fraction"], 1, pct=True), _fmt(s["fit_over_bare_cpu_time"], 3)])
    return markdown_table(headers, body, [False] + [True] * 11)


def parts_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        for name, f in (r.get("parts") or {}).items():
            body.append([r["model"], name, _fmt(f["seconds_per_step"], 3, scale=1e3),
                         _fmt(f["of_bare_step"], 2, pct=True)])
    return markdown_table(["model", "part", "ms per step", "of the bare step"], body, [False, False, True, True])


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    """fit/bare and the outside share against the targets, met or not, one line per model."""
    lines = []
    for r in rows:
        ratio, outside = r["fit_over_bare"], r["outside_fraction"]
        ok_ratio = "met" if ratio >= TARGET_FIT_OVER_BARE else "NOT MET"
        ok_outside = "met" if outside <= TARGET_OUTSIDE else "NOT MET"
        lines.append(f"target {r['model']}: fit/bare {ratio:.3f} >= {TARGET_FIT_OVER_BARE}: {ok_ratio}; "
                     f"outside f/b/s {outside:.1%} <= {TARGET_OUTSIDE:.0%}: {ok_outside}")
        if r.get("same_training") is not None:
            same = "yes" if r["same_training"] else "NO (the ratio compares different work)"
            lines.append(f"  (a) repeated (b)'s training, ending with the same weights: {same}")
        # A slice is one epoch of a few steps, so the epoch's own set-up and closing reads weigh
        # far more here than in training: say what they would weigh in a CIFAR-10 epoch.
        steps = r["images_per_slice"] / r["batch"]
        step_seconds = r["batch"] / r["fit"] if r["fit"] > 0 else math.nan
        cifar_steps = math.ceil(CIFAR_TRAIN_IMAGES / r["batch"])
        ends = r["ends_seconds"]
        in_cifar = ends / (cifar_steps * step_seconds)
        lines.append(f"  of which between steps {r['outside_between_steps']:.1%}; at the epoch's ends "
                     f"{ends * 1e3:.1f} ms per epoch, {r['outside_at_ends']:.1%} of this {steps:.0f}-step slice, "
                     f"{in_cifar:.2%} of a {cifar_steps}-step CIFAR-10 epoch "
                     f"(outside f/b/s there about {r['outside_between_steps'] + in_cifar:.1%})")
    return lines


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (NaN where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return [math.nan] * 3


def load_line(when: str, load: list[float]) -> str:
    line = f"load average {when}: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (1, 5, 15 min; {os.cpu_count()} cores)"
    if load[0] > (os.cpu_count() or 1) + 0.5:
        line += " -- a busy machine: other processes compete for the cores, the figures are noisy"
    return line


def sweep_table(sweep: dict[str, Any]) -> str:
    body = [[str(r["k"]), f"{r['summed']:,.0f}", ", ".join(f"{c:,.0f}" for c in r["per_cell"]),
             f"{r['over_one_cell']:.2f}", f"{r['span_rate']:,.0f}",
             f"{r['overlap']:.0%}" + ("" if r["overlap_ok"] else " (too little: summed overstated)")]
            for r in sweep["runs"]]
    return markdown_table(["cells at once", "summed img/s", "per cell", "vs 1 cell", "all images / span",
                           "overlap"], body, [True] * 6)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--models", nargs="+", default=None, choices=list(MODELS),
                   help=f"default {' '.join(DEFAULT_MODELS)}")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default 64 on CPU, 128 (the ResNet-18 and AlexNet/VGG reports) on CUDA")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per slice (default: CPU per model, vgg08 8 ... resnet18 1; CUDA 50)")
    p.add_argument("--rounds", type=int, default=None, help="measured rounds (default 7 on CPU, 9 on CUDA)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up rounds, discarded (default 2)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of (c) (2: the PyTorch CIFAR tutorial)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default torch's)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: CUDA)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC (default: fit's default for the device)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in every variant")
    p.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=None,
                   help="glibc keeps freed memory for reuse, for the whole run (default: fit's default for the "
                        "device, on for CPU)")
    p.add_argument("--no-customary", action="store_true", help="skip (c)")
    p.add_argument("--no-parts", action="store_true", help="skip timing fit's parts outside the step alone")
    p.add_argument("--sweep-k", type=int, nargs="*", default=[1, 2, 4], help="(d) cells at once; none: skip (d)")
    p.add_argument("--sweep-model", default=None, choices=list(MODELS),
                   help="(d) model (default CPU vgg08, CUDA vgg38)")
    p.add_argument("--sweep-epochs", type=int, default=None,
                   help="(d) epochs per cell, the first not counted (default CPU 3, CUDA 20)")
    p.add_argument("--sweep-images", type=int, default=None, help="(d) images per epoch (default CPU 1024, CUDA 5000)")
    p.add_argument("--sweep-only", action="store_true", help="only (d)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks every path in seconds; not a measurement")
    p.add_argument("--json", type=Path, default=None, help="write every figure to this file")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    # Process-wide and for good, so settled before anything is measured: (a), (b), (c) and the parts all
    # run under fit's setting, which fit would otherwise switch on in its first slice.
    want_kept = resolve_keep_freed_memory(TrainConfig(keep_freed_memory=args.keep_freed_memory),
                                          device).keep_freed_memory
    kept = keep_freed_memory() if want_kept else False
    amp = (cuda and torch.cuda.is_bf16_supported()) if args.amp is None else args.amp
    cl = (device.type in ("cuda", "cpu")) if args.channels_last is None else args.channels_last
    bs = args.batch_size or (128 if cuda else 64)
    rounds = args.rounds or (9 if cuda else 7)
    warmup = max(1, args.warmup)
    models = args.models or DEFAULT_MODELS
    sweep_model = args.sweep_model or ("vgg38" if cuda else "vgg08")
    sweep_images = args.sweep_images or (5000 if cuda else 1024)
    sweep_epochs = args.sweep_epochs or (20 if cuda else 3)
    if args.quick:
        models, rounds, warmup = (args.models or ["vgg08"]), args.rounds or 3, 1
        bs, sweep_images, sweep_epochs = args.batch_size or 16, 64, 2
    if cuda:
        torch.backends.cudnn.benchmark = True  # as fit does outside deterministic mode

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    header = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; device {device} ({device_name(device)}); "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {bs}; "
              f"bf16 autocast {'on' if amp else 'off'}; channels_last {'on' if cl else 'off'}; "
              f"compile {'on' if args.compile else 'off'}; keep freed memory {'on' if kept else 'off'}; "
              f"(c) DataLoader workers {args.workers}; "
              f"{warmup} warm-up + {rounds} measured rounds" + ("; QUICK (a dry run, not a measurement)"
                                                                  if args.quick else ""))
    print(header, flush=True)
    load_before = load_average()
    print(load_line("before", load_before), flush=True)
    report: dict[str, Any] = {
        "schema": 1, "date": time.strftime("%Y-%m-%d", time.gmtime()), "device": str(device),
        "device_name": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "settings": {"batch_size": bs, "amp": amp, "channels_last": cl, "compile": args.compile,
                     "workers": args.workers, "rounds": rounds, "warmup": warmup, "quick": args.quick,
                     "keep_freed_memory": kept},
        "results": [], "sweep": None, "load_average": {"before": load_before},
    }

    def save() -> None:  # after every model, so that a run cut short by a timeout keeps what it measured
        report["valid"] = not any(r["measurement_error"] for r in report["results"])
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(args.json, json.dumps(report, indent=1, allow_nan=True))

    StepProbe.install()
    try:
        if not args.sweep_only:
            for key in models:
                name, kwargs, cpu_steps = MODELS[key]
                steps = args.steps or (1 if args.quick else 50 if cuda else cpu_steps)
                # threads: fit sets its own count (default: the usable cores), and (a), (c) and the
                # parts run from its callback, under that count; all of them run at the header's.
                config = TrainConfig(batch_size=bs, schedule="none", quiet=True, device=str(device), amp=amp,
                                     channels_last=cl, epochs=1, threads=torch.get_num_threads(),
                                     keep_freed_memory=kept)
                setup = Setup(key, name, kwargs, device, config, steps, amp, cl, args.compile, args.workers)
                log(f"  {key}: {steps} steps of {bs} per slice")
                result = measure_model(setup, rounds, warmup, not args.no_customary, log, not args.no_parts)
                report["results"].append(result.figures())
                save()
            print()
            print(results_table(report["results"]))
            print("\nimages/s, median (interquartile range) over the rounds; b/a and b/c: medians of the per-round "
                  "ratios; outside f/b/s: the part of (b)'s time outside forward, backward and optimiser step; "
                  "b/a in CPU time: the same ratio in images per CPU second of this process, less sensitive to "
                  "other processes than wall time but not immune (a busy sibling core or shared cache slows it "
                  "too; meaningful with --threads 1 on a CPU).")
            if any(r.get("parts") for r in report["results"]):
                print("\nfit's parts outside forward/backward/step, each timed alone in every round on the slice's "
                      "batches, per step, median (interquartile range); of the bare step: over (a)'s time per step "
                      "in the same round (medians of the per-round ratios)")
                print(parts_table(report["results"]))
            print()
            for line in target_lines(report["results"]):
                print(line)
            for r in report["results"]:
                if r["measurement_error"]:
                    print(f"MEASUREMENT ERROR ({r['model']}): b/a = {r['fit_over_bare']:.3f} > {PHYSICS_LIMIT}: fit "
                          "cannot be faster than the bare step it contains. The machine's load changed between the "
                          "slices; rerun with more --rounds or --steps, or on a quieter machine.")
        if args.sweep_k:
            log(f"(d) sweep throughput: {sweep_model}, k = {', '.join(map(str, args.sweep_k))}, "
                "through cifarnets.sweep.run")

            def progress(partial: dict[str, Any]) -> None:
                report["sweep"] = partial
                save()

            sweep = measure_sweep(sweep_model, args.sweep_k, sweep_epochs, sweep_images, bs,
                                  device, amp, cl, args.compile, log, progress)
            report["sweep"] = sweep
            if sweep["runs"]:
                print(f"\n(d) sweep throughput, {sweep_model}, {sweep_epochs} epochs of {sweep_images} images per "
                      f"cell (the first not counted), through cifarnets.sweep.run")
                print(sweep_table(sweep))
            else:
                print(f"\n(d) skipped: {sweep.get('skipped')}")
    finally:
        StepProbe.uninstall()
    report["load_average"]["after"] = load_average()
    print(load_line("after", report["load_average"]["after"]))
    report["complete"] = True
    save()
    return 0 if report["valid"] else 3


if __name__ == "__main__":
    sys.exit(main())
