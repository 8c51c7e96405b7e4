"""`RunDir`: the one owner of a run folder's files, names, lock and resume parsing.

A run folder holds::

    config.json        model, its cifarnets.create keywords, data set, TrainConfig, world size, versions
    last.state.pt      THE checkpoint: epoch, weights, optimiser, scheduler, RNG and history (weights_only)
    last.safetensors   the weights of that epoch, for other tools (derived from last.state.pt)
    best.safetensors   the weights of the best epoch
    history.json/.csv  every finished epoch (derived from last.state.pt)
    test.json          the best weights on the test set, once training ends
    .lock              held (flock) by the process training in the folder; names its pid and host

Every file is written atomically (`cifarnets._utils.atomic_write`). One checkpoint step is
one file, ``last.state.pt``, written first: it is the commit point, and everything written
after it (``last.safetensors``, ``best.safetensors``, the history) can be rebuilt from it,
which `load_checkpoint` does. A kill at any moment therefore leaves the previous step or the
new one, never a mix, and resuming gives bit for bit what an uninterrupted run gives
(tests/test_train_kill.py kills a run at every write).

The folder is locked with ``fcntl.flock`` while a process trains in it: a second run on the
same folder stops with `RunLockedError` naming the holder. The operating system releases
the lock when the process dies, however it dies, so the lock of a killed run is free and
the next run simply takes it (and removes the temporary files the kill left behind).
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from .._utils import atomic_write, stale_temp_files
from ..errors import ConfigError, RunError, RunExistsError, RunNotFoundError
from .checkpoint import CheckpointError, read_metadata, torch_load_safely, weights_bytes
from .history import History

try:  # POSIX; elsewhere runs are not locked (a warning says so)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CONFIG_SCHEMA", "RUN_FILES", "Checkpoint", "NotARunError", "RunConfigError", "RunDir", "RunDirError",
    "RunExistsError", "RunLockedError",
]

logger = logging.getLogger(__name__)

CONFIG_SCHEMA = 2
CONFIG, STATE, LAST, BEST = "config.json", "last.state.pt", "last.safetensors", "best.safetensors"
HISTORY_JSON, HISTORY_CSV, TEST, LOCK = "history.json", "history.csv", "test.json", ".lock"
RUN_FILES = (CONFIG, HISTORY_JSON, HISTORY_CSV, LAST, STATE, BEST, TEST)

# config.json keys and their types: what `RunDir.config` checks before anything uses them.
_CONFIG_KEYS: dict[str, Any] = {"model": str, "model_kwargs": dict, "data": dict, "train": dict}


RunDirError = RunError  # kept name; the kind is cifarnets.errors.RunError


RunLockedError = RunError  # kept name; the kind is cifarnets.errors.RunError


NotARunError = RunNotFoundError  # kept name; the kind is cifarnets.errors.RunNotFoundError


RunConfigError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


@dataclass
class Checkpoint:
    """A consistent checkpoint step, as `RunDir.load_checkpoint` reads it from ``last.state.pt``."""

    epoch: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    history: History
    metadata: dict[str, Any]


def _json(data: Any) -> str:
    return json.dumps(data, indent=1, allow_nan=True, default=str)


class RunDir:
    """A run folder: lock, config, checkpoints, history and test metrics, each written in one place.

    Example:
        >>> import tempfile
        >>> with RunDir(tempfile.mkdtemp()) as run:         # locked until the block ends
        ...     run.has_checkpoint()
        False
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self.path = Path(path)
        self._lock_fd: Optional[int] = None
        self._config: Optional[dict[str, Any]] = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}{', locked' if self.locked else ''})"

    # ------------------------------------------------------------------ lock

    @property
    def locked(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._lock_fd is not None

    def lock(self) -> "RunDir":
        """Create the folder if needed, take its lock and remove the temporary files a killed run left.

        Raises:
            RunDirError: the path is a file, or the folder cannot be created or written.
            RunLockedError: another live process holds the lock (its pid and host are named).
        """
        if self.locked:
            return self
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} is a file, not a folder; choose another run folder (--out)")
        try:
            fd = _open_lock_file(self.path)
        except (PermissionError, FileExistsError, NotADirectoryError, OSError) as err:
            raise RunDirError(
                f"cannot write in the run folder {self.path} ({err.strerror or err}); training and resuming need a "
                "folder you can write to: choose another --out, or copy the run somewhere writable and resume the "
                "copy") from err
        if fcntl is None:  # pragma: no cover - Windows
            logger.warning("run folders cannot be locked on this system; do not train twice in %s", self.path)
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                os.close(fd)
                try:
                    info = json.loads(holder)
                    who = f"process {info.get('pid')} on {info.get('host')} (since {info.get('since')})"
                except (json.JSONDecodeError, AttributeError):
                    who = "another process"
                raise RunLockedError(
                    f"{self.path} is in use: {who} is training in it. Wait for it to finish, stop it, or choose "
                    "another run folder (--out); two runs in one folder would mix their files") from None
        holder_info = _json({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_info, 0)
        self._lock_fd = fd
        for stale in stale_temp_files(self.path):
            logger.info("removing %s, left by an interrupted write", stale)
            stale.unlink(missing_ok=True)
        return self

    def unlock(self) -> None:
        """Release the lock (the operating system also does when the process ends)."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> "RunDir":
        return self.lock()

    def __exit__(self, *exc: Any) -> None:
        self.unlock()

    def _write(self, name: str, data: Union[bytes, str]) -> Path:
        if not self.locked:
            raise RuntimeError(f"RunDir.{name}: writing into {self.path} without holding its lock (a bug)")
        return atomic_write(self.path / name, data)

    # ------------------------------------------------------------------ what is there

    def has_checkpoint(self) -> bool:
        """Whether a checkpoint step was committed (the folder holds a run that can be resumed)."""
        return (self.path / STATE).is_file()

    def has_config(self) -> bool:
        return (self.path / CONFIG).is_file()

    def present(self) -> list[str]:
        """The run files in the folder."""
        return [f for f in RUN_FILES if (self.path / f).exists()]

    def _read_json(self, name: str, fix: str) -> Any:
        path = self.path / name
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise
        except OSError as err:
            raise RunDirError(f"cannot read {path} ({err.strerror or err}); {fix}") from err
        try:
            return json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunConfigError(f"{path} is not valid JSON ({err}); {fix}") from err

    def config(self) -> dict[str, Any]:
        """``config.json``, parsed and checked once (later calls return the same dict).

        Raises:
            NotARunError: there is no ``config.json``.
            RunConfigError: it is not JSON, or lacks (or mistypes) model, model_kwargs, data or train.
        """
        if self._config is not None:
            return self._config
        path = self.path / CONFIG
        if not self.path.is_dir():
            raise NotARunError(f"{self.path} does not exist or is not a folder; name a run folder written by "
                               "`cifarnets train --out`")
        fix = ("it was damaged or edited by hand: restore it from a backup, or start a new run in another folder "
               "(the weights in last.safetensors/best.safetensors still load with cifarnets.train.load_checkpoint)")
        try:
            raw = self._read_json(CONFIG, fix)
        except FileNotFoundError:
            raise NotARunError(f"{path} does not exist; is {self.path} a run folder written by `cifarnets train`?") \
                from None
        if not isinstance(raw, dict):
            raise RunConfigError(f"{path} holds {type(raw).__name__}, not a run description; {fix}")
        raw = _upgrade_config(raw)
        for key, kind in _CONFIG_KEYS.items():
            if not isinstance(raw.get(key), kind):
                found = "nothing" if key not in raw else f"{type(raw[key]).__name__} {raw[key]!r}"[:80]
                raise RunConfigError(f"{path}: {key!r} must be a {kind.__name__}, found {found}; {fix}")
        from .config import ConfigError, TrainConfig

        try:
            TrainConfig.from_dict(raw["train"])
        except (ConfigError, TypeError) as err:
            raise RunConfigError(f"{path}: the training settings ('train') are invalid: {err}; {fix}") from err
        self._config = raw
        return raw

    def write_config(self, config: Mapping[str, Any]) -> None:
        self._config = None
        self._write(CONFIG, _json({"schema": CONFIG_SCHEMA, **config}))

    def epochs_done(self) -> Optional[int]:
        """The last committed epoch, read cheaply from ``last.safetensors``'s header (None if unknown)."""
        try:
            epoch = read_metadata(self.path / LAST).get("epoch")
        except (CheckpointError, OSError):
            return None
        return epoch if isinstance(epoch, int) else None

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, *, epoch: int, weights: Mapping[str, torch.Tensor], optimizer: Mapping[str, Any],
                        scheduler: Mapping[str, Any], rng: Mapping[str, Any], history: History,
                        metadata: Mapping[str, Any], best: bool) -> None:
        """Commit one checkpoint step: ``last.state.pt`` first (the commit), then the files derived from it.

        `metadata` is the description stored with the weights (model, keywords, data set,
        normalisation, metrics); `best` marks this epoch as the best so far.
        """
        buffer = io.BytesIO()
        torch.save({"epoch": epoch, "model": dict(weights), "optimizer": dict(optimizer),
                    "scheduler": dict(scheduler), "rng": dict(rng), "history": history.to_json(),
                    "metadata": _json(metadata)}, buffer)
        self._write(STATE, buffer.getvalue())
        self._write_derived(epoch, weights, metadata, history, best)

    def _write_derived(self, epoch: int, weights: Mapping[str, torch.Tensor], metadata: Mapping[str, Any],
                       history: History, best: bool) -> None:
        self._write(LAST, weights_bytes(weights, {**metadata, "epoch": epoch, "kind": "last"}))
        if best:
            self._write(BEST, weights_bytes(weights, {**metadata, "epoch": epoch, "kind": "best"}))
        self.write_history(history)

    def write_history(self, history: History) -> None:
        self._write(HISTORY_JSON, history.to_json())
        self._write(HISTORY_CSV, history.to_csv())

    def write_test(self, history: History, extra: Mapping[str, Any]) -> None:
        """Record the test result: in the checkpoint's history (the commit), then ``test.json`` and the history."""
        state = self._load_state()
        state["history"] = history.to_json()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self._write(STATE, buffer.getvalue())
        self._write(TEST, _json({**(history.test or {}), **extra}))
        self.write_history(history)

    def _load_state(self) -> dict[str, Any]:
        path = self.path / STATE
        state = torch_load_safely(path, what=str(path))
        keys = {"epoch", "model", "optimizer", "scheduler", "rng", "history", "metadata"}
        if not isinstance(state, dict) or not keys <= set(state):
            missing = sorted(keys - set(state)) if isinstance(state, dict) else ["everything"]
            raise CheckpointError(
                f"{path} is not a cifarnets checkpoint of this version (missing {', '.join(missing)}); resume it "
                "with the cifarnets version that wrote it, or start a new run")
        return state

    def load_checkpoint(self, device: Union[str, torch.device] = "cpu") -> Checkpoint:
        """Read the committed step and repair the files derived from it (``last``/``best`` weights, history).

        Only the main process should repair (`repair=True` is the caller's choice: see `repair`).
        """
        state = self._load_state()
        try:
            history = History.from_json(state["history"])
            metadata = json.loads(state["metadata"])
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{self.path / STATE}: its history or description is damaged ({err}); start a "
                                  "new run") from err
        weights = {k: v.to(device) for k, v in state["model"].items()}
        return Checkpoint(epoch=int(state["epoch"]), weights=weights, optimizer=state["optimizer"],
                          scheduler=state["scheduler"], rng=state["rng"], history=history, metadata=metadata)

    def repair(self, ckpt: Checkpoint) -> None:
        """Rewrite what a kill may have left behind the committed step: last/best weights, history, test."""
        last_epoch = self.epochs_done()
        weights = {k: v.detach().cpu() for k, v in ckpt.weights.items()}
        if last_epoch != ckpt.epoch:
            logger.info("%s: rewriting last.safetensors for epoch %d from the checkpoint", self.path, ckpt.epoch)
            self._write(LAST, weights_bytes(weights, {**ckpt.metadata, "epoch": ckpt.epoch, "kind": "last"}))
        best_epoch = ckpt.history.best_epoch
        if best_epoch is not None and self.best_epoch_on_disk() != best_epoch:
            if best_epoch != ckpt.epoch:
                raise CheckpointError(
                    f"{self.path / BEST} is not from the best epoch {best_epoch} and cannot be rebuilt from the "
                    "checkpoint (was it replaced by hand?); restore it, or start a new run")
            logger.info("%s: rewriting best.safetensors for epoch %d from the checkpoint", self.path, ckpt.epoch)
            self._write(BEST, weights_bytes(weights, {**ckpt.metadata, "epoch": ckpt.epoch, "kind": "best"}))
        self.write_history(ckpt.history)
        if ckpt.history.test is not None:
            self._write(TEST, _json({**ckpt.history.test, "model": ckpt.history.model,
                                     "dataset": ckpt.history.dataset, "label": ckpt.history.name}))

    def best_epoch_on_disk(self) -> Optional[int]:
        try:
            epoch = read_metadata(self.path / BEST).get("epoch") if (self.path / BEST).is_file() else None
        except CheckpointError:
            return None
        return epoch if isinstance(epoch, int) else None

    def load_best_weights(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.path / BEST))


def _open_lock_file(folder: Path) -> int:
    """Create `folder` if needed and open its lock file (0666 less the umask), read-write."""
    folder.mkdir(parents=True, exist_ok=True)
    return os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)


def _upgrade_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 config.json (cifarnets before run folders had one name per meaning) in today's names."""
    if raw.get("schema", CONFIG_SCHEMA) >= 2 or "create_kwargs" not in raw:
        return raw
    out = dict(raw)
    out["flags"] = out.get("model_kwargs", {})
    out["model_kwargs"] = out.pop("create_kwargs")
    if isinstance(out.get("data"), dict) and "name" in out["data"]:
        out["data"] = {("dataset" if k == "name" else k): v for k, v in out["data"].items()}
    return out
