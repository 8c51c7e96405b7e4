"""Training: the reports' experiments, fast, resumable, and with nothing lost.

    >>> from cifarnets.data import load_dataset
    >>> from cifarnets.train import TrainConfig, fit, load_checkpoint
    >>> data = load_dataset("synthetic", synthetic_sizes=(500, 200))
    >>> config = TrainConfig(epochs=1, batch_size=100, lr=3e-3, quiet=True)   # Adam, cosine (the coursework reports)
    >>> history = fit("vgg08", data, config)
    >>> history.epochs[0].epoch, history.test["n"]
    (1, 200)

With ``out_dir=`` the run folder (`RunDir`) keeps config, history, best/last weights
(safetensors), the checkpoint and the test result, every file written atomically and the
folder locked while a process trains in it; ``resume(out_dir)`` continues an interrupted run
exactly. Under ``torchrun`` the same `fit` trains with DDP.
"""

from ._model import ModelDataMismatchError, ModelSpecError
from .checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    atomic_write,
    load_checkpoint,
    read_metadata,
    save_weights,
    strip_prefixes,
)
from .config import OPTIMIZERS, RUNTIME_FIELDS, SCHEDULE_FIELDS, SCHEDULES, ConfigError, TrainConfig
from .distributed import DeviceError, DistributedError
from .evaluate import evaluate
from .history import HISTORY_SCHEMA, EpochRecord, History
from .loop import EpochCallback, NonFiniteLossError, ResumeMismatchError, TrainingDivergedError, fit
from .optim import build_optimizer, build_scheduler
from .results import ResultRow, ResultsTable, results_table
from .resume import read_run_config, resume
from .rundir import RUN_FILES, NotARunError, RunConfigError, RunDir, RunDirError, RunExistsError, RunLockedError

__all__ = [
    "HISTORY_SCHEMA", "OPTIMIZERS", "RUNTIME_FIELDS", "RUN_FILES", "SCHEDULES", "SCHEDULE_FIELDS", "CheckpointError",
    "CheckpointNotFoundError", "ConfigError", "DeviceError", "DistributedError", "EpochCallback", "EpochRecord",
    "History", "ModelDataMismatchError", "ModelSpecError", "NonFiniteLossError", "NotARunError", "ResultRow",
    "ResultsTable", "ResumeMismatchError", "RunConfigError", "RunDir", "RunDirError", "RunExistsError",
    "RunLockedError", "TrainConfig",
    "TrainingDivergedError", "atomic_write", "build_optimizer", "build_scheduler", "evaluate", "fit",
    "load_checkpoint", "read_metadata", "read_run_config", "results_table", "resume", "save_weights", "strip_prefixes",
]
