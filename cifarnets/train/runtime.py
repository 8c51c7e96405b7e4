"""What `fit` sets up around the epoch loop: kernels (deterministic or tuned), the progress bar, the
thread count and the checks of settings against the data set."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import sys
from typing import Any, Iterator

import torch

from ..data import DataBundle
from ..errors import ConfigError
from .config import TrainConfig
from .rundir import RunDir

__all__ = ["algorithms", "check_fits_data", "keep_freed_memory", "progress_bar", "resolve_keep_freed_memory",
           "resolve_threads", "usable_cores"]

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h) and the values `keep_freed_memory` sets: never trim the
# heap below 1 GiB of free space, grow it 64 MiB at a time, and serve blocks up to 32 MiB (glibc's
# largest allowed threshold) from the heap rather than from fresh mappings.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_KEEP_FREED = ((_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20), (_M_MMAP_THRESHOLD, 32 << 20))


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


def resolve_keep_freed_memory(config: TrainConfig, device: torch.device) -> TrainConfig:
    """`config` with `keep_freed_memory` resolved: as given, else on for CPU training and off elsewhere.

    On CUDA and MPS the step's tensors live in the device's own allocator, so glibc's setting
    would change the process and buy nothing. `fit` records the value that applied (config.json).
    """
    if config.keep_freed_memory is not None:
        return config
    return config.replace(keep_freed_memory=device.type == "cpu")


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory a training step frees for the next step, for the whole process.

    By default glibc hands freed memory at the top of its heap back to the OS and maps large
    blocks afresh, so a step's buffers are page-faulted in again, by an amount that depends on
    where earlier allocations left the heap: on a 2-core CPU the same vgg08 step took 49-55 ms in
    one setting and 55-69 ms in another, and 47-55 ms in both with this set (docs/performance.md,
    "One padded copy of the split"). The process's resident memory then stays at its peak.
    There is no undoing it. `fit` calls it for CPU training unless told not to
    (`TrainConfig.keep_freed_memory`). Returns whether it was applied: False (with a log line) where the C
    library is not glibc or refuses a value.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        logger.info("keep_freed_memory: the C library is not glibc (%s); the allocator is left as it is",
                    platform.libc_ver()[0] or sys.platform)
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    refused = [param for param, value in _KEEP_FREED if mallopt(param, value) != 1]
    if refused:
        logger.warning("keep_freed_memory: glibc refused mallopt parameters %s; the allocator is partly as it was",
                       refused)
        return False
    logger.info("glibc malloc now keeps freed memory for reuse (keep_freed_memory)")
    return True
