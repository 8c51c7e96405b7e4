"""What `fit` sets up around the epoch loop: kernels (deterministic or tuned), the progress bar, the
thread count and the checks of settings against the data set."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

import torch

from ..data import DataBundle
from ..errors import ConfigError
from .config import TrainConfig
from .rundir import RunDir

__all__ = ["algorithms", "check_fits_data", "progress_bar", "resolve_threads", "usable_cores"]


@contextlib.contextmanager
def algorithms(deterministic: bool, device: torch.device) -> Iterator[None]:
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


def progress_bar(total: int, desc: str, disable: bool) -> Any:
    if disable or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


# ====================================================================== training


def check_fits_data(config: TrainConfig, data: DataBundle) -> None:
    """Refuse settings that cannot mean what they say for this data set."""
    side = min(data.image_size)
    if config.augment and config.padding >= side:
        raise ConfigError(f"padding={config.padding} is not smaller than the images ({side} px): the random crop "
                          f"would mostly see zeros; the reports pad 4 px (use --padding 0..{side - 1})")
    if config.batch_size > len(data.train):
        raise ConfigError(f"batch_size={config.batch_size} is larger than the training set ({len(data.train):,} "
                          f"images): an epoch would be one step of every image; use at most {len(data.train)}")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; all cores where the OS has none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def resolve_threads(config: TrainConfig, resume: bool) -> TrainConfig:
    """`config` with `threads` resolved: as given, else as the resumed run recorded, else the usable cores.

    The count is recorded (config.json) because it changes a deterministic run's bits.
    """
    if config.threads is not None:
        return config
    threads = None
    if resume and config.out_dir:
        folder = RunDir(config.out_dir)
        if folder.has_config():
            threads = folder.config()["train"].get("threads")
    return config.replace(threads=threads if isinstance(threads, int) else usable_cores())
