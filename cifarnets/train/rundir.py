"""`RunDir`: the one owner of a run folder's files, names, lock and resume parsing.

A run folder holds::

    config.json        model, its cifarnets.create keywords, data set, TrainConfig, world size, versions
    last.state.pt      THE checkpoint: epoch, weights, optimiser, scheduler, RNG and history (weights_only)
    last.safetensors   the weights of that epoch, for other tools (derived from last.state.pt)
    best.safetensors   the weights of the best epoch
    history.json/.csv  every finished epoch (derived from last.state.pt)
    test.json          the best weights on the test set, once training ends
    .lock              held (flock) by the process training in the folder; names its pid and host
    status.json        how the last attempt went: failed or interrupted (the error, the epoch), running or
                       done under a sweep (attempts, host); absent for a run that simply finished

``last.state.pt`` starts with a header line (``CIFARNETS-STATE 1 <sha256 of the rest>``) and
holds the run's id and settings: a flipped byte is named as damage, a checkpoint copied from
another run (or a config.json edited by hand) is refused, never trained on. The safetensors
files carry the SHA-256 of their tensors (``cifarnets.sha256`` in their metadata), checked when
they are loaded. No file of a run folder is read or locked through a symbolic link.

Every file is written atomically (`cifarnets._utils.atomic_write`). One checkpoint step is
one file, ``last.state.pt``, written first: it is the commit point, and everything written
after it (``last.safetensors``, ``best.safetensors``, the history) can be rebuilt from it,
which `restore` does. A kill at any moment therefore leaves the previous step or the
new one, never a mix, and resuming gives bit for bit what an uninterrupted run gives
(tests/test_train_kill.py kills a run at every write).

The folder is locked with ``fcntl.flock`` while a process trains in it: a second run on the
same folder stops with `RunLockedError` naming the holder. The operating system releases
the lock when the process dies, however it dies, so the lock of a killed run is free and
the next run simply takes it (and removes the temporary files the kill left behind).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from .._utils import atomic_write, stale_temp_files
from ..errors import CheckpointNotFoundError, ConfigError, RunError, RunExistsError, RunNotFoundError
from .checkpoint import CheckpointError, load_verified_weights, read_metadata, torch_load_safely, weights_bytes
from .files import BEST, CONFIG, HISTORY_CSV, HISTORY_JSON, LAST, LOCK, RUN_FILES, STATE, STATUS, TEST
from .history import History

try:  # POSIX; elsewhere runs are not locked (a warning says so)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CONFIG_SCHEMA", "IDENTITY_KEYS", "RUN_FILES", "Checkpoint", "NotARunError", "RunConfigError", "RunDir",
    "RunDirError", "RunExistsError", "RunLockedError", "identity", "identity_changes", "load_verified_weights",
]

logger = logging.getLogger(__name__)

CONFIG_SCHEMA = 2
# Files that hold the result of training: never overwritten by a run that starts over.
_TRAINED_FILES = (BEST, LAST, HISTORY_JSON, TEST)

# last.state.pt: one header line, then torch.save's bytes. The header's digest covers the rest.
_STATE_MAGIC = b"CIFARNETS-STATE 1 "
_STATE_HEADER_LEN = len(_STATE_MAGIC) + 64 + 1

# The config.json keys that say what a run computes; a checkpoint records them, and a resume
# whose folder says otherwise (an edited config.json, a copied checkpoint) is refused.
# (The number of processes has its own rule: see `fit`'s allow_world_size_change.)
IDENTITY_KEYS = ("model", "model_kwargs", "flags", "data", "train")

# config.json keys and their types: what `RunDir.config` checks before anything uses them.
_CONFIG_KEYS: dict[str, Any] = {"model": str, "model_kwargs": dict, "data": dict, "train": dict}


RunDirError = RunError  # kept name; the kind is cifarnets.errors.RunError


RunLockedError = RunError  # kept name; the kind is cifarnets.errors.RunError


NotARunError = RunNotFoundError  # kept name; the kind is cifarnets.errors.RunNotFoundError


RunConfigError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


@dataclass
class Checkpoint:
    """One training state: what `RunDir.save` commits and `RunDir.restore` gives back."""

    epoch: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    history: History
    metadata: dict[str, Any]


def _json(data: Any) -> str:
    return json.dumps(data, indent=1, allow_nan=True, default=str)


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a run computes, from its config.json: the keys of `IDENTITY_KEYS`, without the
    settings that may change freely (`RUNTIME_FIELDS`) or that only name the run."""
    from .config import RUNTIME_FIELDS

    out = {k: config.get(k) for k in IDENTITY_KEYS}
    train = dict(out.get("train") or {})
    for key in list(train):
        if key in RUNTIME_FIELDS or key in ("label", "extra"):
            del train[key]
    out["train"] = train
    data = dict(out.get("data") or {})
    load_args = dict(data.get("load_args") or {})
    load_args.pop("download", None)
    data["load_args"] = load_args or None
    out["data"] = data
    return json.loads(_json(out))  # plain JSON types, as they compare after a round trip


def identity_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{"train.lr": [old, new], ...}``: where two identities differ, one entry per leaf setting."""
    out: dict[str, list[Any]] = {}

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{where}.{key}" if where else key)
        elif a != b:
            out[where] = [a, b]

    walk(dict(old), dict(new), "")
    return out


class RunDir:
    """A run folder: lock, config, checkpoints, history and test metrics, each written in one place.

    Example:
        >>> import tempfile
        >>> with RunDir(tempfile.mkdtemp()) as run:         # locked until the block ends
        ...     run.has_checkpoint()
        False
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        if not str(path).strip():
            raise ConfigError("the run folder is an empty path; name a folder (--out DIR / out_dir='DIR')")
        self.path = Path(path)
        self._lock_fd: Optional[int] = None
        self._config: Optional[dict[str, Any]] = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}{', locked' if self.locked else ''})"

    def file(self, name: str) -> Path:
        """The path of run file `name`, refused if it is a symbolic link (it could point out of the folder)."""
        path = self.path / name
        if path.is_symlink():
            raise RunError(
                f"{path} is a symbolic link (to {os.readlink(path)}); cifarnets never reads or writes a run file "
                "through a link, which could point outside the run folder. Replace it with the file itself, or "
                "remove it")
        return path

    # ------------------------------------------------------------------ lock

    @property
    def locked(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._lock_fd is not None

    def lock(self) -> "RunDir":
        """Create the folder if needed, take its lock and remove the temporary files a killed run left.

        Raises:
            RunDirError: the path is a file, the lock file is a link, or the folder cannot be created or written.
            RunLockedError: another live process holds the lock (its pid and host are named).
        """
        if self.locked:
            return self
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} is a file, not a folder; choose another run folder (--out)")
        self.file(LOCK)
        try:
            fd = _open_lock_file(self.path)
        except OSError as err:
            if err.errno == errno.ELOOP:  # a link created between the check and the open
                raise RunDirError(f"{self.path / LOCK} is a symbolic link; remove it") from None
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
        return self.file(STATE).is_file()

    def has_config(self) -> bool:
        return self.file(CONFIG).is_file()

    def present(self) -> list[str]:
        """The run files in the folder."""
        return [f for f in RUN_FILES if (self.path / f).exists()]

    def state(self) -> str:
        """What the folder holds, the one rule every caller (fit, resume, sweep) goes by:

        ``new`` (nothing of a run), ``started`` (config.json only: it stopped before its first
        checkpoint, so it may start over), ``orphaned`` (trained weights or a history but no
        checkpoint to continue from: never overwritten), ``resumable`` (a committed checkpoint,
        not tested yet) or ``finished`` (tested).
        """
        if not self.path.is_dir():
            return "new"
        if self.has_checkpoint():
            return "finished" if self.file(TEST).is_file() else "resumable"
        if any(self.file(name).exists() for name in _TRAINED_FILES):
            return "orphaned"
        return "started" if self.has_config() else "new"

    def refuse_orphaned(self) -> None:
        """Raise `RunError` if the folder holds trained files without the checkpoint that would continue them."""
        if self.state() != "orphaned":
            return
        there = [name for name in _TRAINED_FILES if (self.path / name).exists()]
        epochs = ""
        try:
            epochs = f" ({len(History.load(self.path).epochs)} epochs in history.json)"
        except (CheckpointError, OSError, ValueError):
            pass
        raise RunError(
            f"{self.path} holds trained results ({', '.join(there)}{epochs}) but no checkpoint (last.state.pt) to "
            "continue from; training there would start over at epoch 0 and overwrite them. Keep them: train in "
            "another folder (--out), or evaluate/export what is there (cifarnets eval/export), and move those files "
            "away yourself if you do want to start over in this folder")

    def _read_json(self, name: str, fix: str) -> Any:
        path = self.file(name)
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
        from .config import TrainConfig

        try:
            TrainConfig.from_dict(raw["train"])
        except (ConfigError, TypeError) as err:
            raise RunConfigError(f"{path}: the training settings ('train') are invalid: {err}; {fix}") from err
        self._config = raw
        return raw

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write ``config.json``; a new run gets its id here (kept by every later rewrite)."""
        old_id = None
        if self._config is not None:
            old_id = self._config.get("run_id")
        run_id = config.get("run_id") or old_id or secrets.token_hex(8)
        body = {"schema": CONFIG_SCHEMA, **config, "run_id": run_id}
        self._write(CONFIG, _json(body))
        self._config = json.loads(_json(body))

    def epochs_done(self) -> Optional[int]:
        """The last committed epoch, read cheaply from ``last.safetensors``'s header (None if unknown)."""
        try:
            epoch = read_metadata(self.file(LAST)).get("epoch")
        except (CheckpointError, OSError):
            return None
        return epoch if isinstance(epoch, int) else None

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """``status.json``: how the last attempt went (``{}`` when there is none)."""
        try:
            data = json.loads(self.file(STATUS).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into ``status.json`` (atomically). A sweep writes it before the run takes the lock."""
        status = {**self.status(), **fields, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write(self.file(STATUS), _json(status))
        return status

    def record_failure(self, error: BaseException, epoch: Optional[int]) -> None:
        """Say in the folder why the run stopped (the error, the last finished epoch)."""
        kind = "interrupted" if isinstance(error, (KeyboardInterrupt, SystemExit)) or \
            type(error).__name__ == "_Terminated" else "failed"
        self.update_status(status=kind, error=f"{type(error).__name__}: {error}".rstrip(": "), epoch=epoch)

    def failure(self) -> Optional[dict[str, Any]]:
        """The recorded failure or interruption of the last attempt, or None."""
        status = self.status()
        return status if status.get("status") in ("failed", "interrupted") else None

    # ------------------------------------------------------------------ checkpoints

    def save(self, state: Checkpoint, *, best: bool) -> None:
        """Commit one training state: ``last.state.pt`` first (the commit), then the files derived from it.

        The checkpoint is bound to this run (config.json's ``run_id`` and settings); `best`
        marks this epoch as the best so far.
        """
        config = self.config()
        self._commit_state({"epoch": state.epoch, "model": dict(state.weights), "optimizer": dict(state.optimizer),
                            "scheduler": dict(state.scheduler), "rng": dict(state.rng),
                            "history": state.history.to_json(), "metadata": _json(state.metadata),
                            "run": _json({"id": config.get("run_id"), "identity": identity(config)})})
        self._write_derived(state.epoch, state.weights, state.metadata, state.history, best)

    def _commit_state(self, state: Mapping[str, Any]) -> None:
        """Write ``last.state.pt``: the header line with the SHA-256 of torch.save's bytes, then those bytes."""
        buffer = io.BytesIO()
        torch.save(dict(state), buffer)
        payload = buffer.getvalue()
        self._write(STATE, _STATE_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)

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
        self._commit_state(state)
        self._write(TEST, _json({**(history.test or {}), **extra}))
        self.write_history(history)
        if self.file(STATUS).exists():
            self.update_status(status="done", error="")

    def _load_state(self) -> dict[str, Any]:
        path = self.file(STATE)
        damaged = (f"{path} is damaged: its checksum does not match its contents (a disk or copy error, or an edit). "
                   "It cannot be trusted: restore the run folder from a backup, or start a new run (another --out); "
                   "best.safetensors / last.safetensors still hold weights you can evaluate")
        try:
            with open(path, "rb") as f:
                head = f.read(_STATE_HEADER_LEN)
                if head.startswith(_STATE_MAGIC):
                    payload = f.read()
                    if len(head) < _STATE_HEADER_LEN or hashlib.sha256(payload).hexdigest().encode() != \
                            head[len(_STATE_MAGIC):-1]:
                        raise CheckpointError(damaged)
                    source: Any = io.BytesIO(payload)
                else:  # written before checkpoints carried a checksum: readable, not verifiable
                    logger.warning("%s was written by an older cifarnets without a checksum; it cannot be checked "
                                   "for damage", path)
                    source = path
        except FileNotFoundError:
            raise CheckpointNotFoundError(f"{path} does not exist: {self.path} holds no checkpoint") from None
        except OSError as err:
            raise CheckpointError(f"cannot read {path} ({err.strerror or err})") from err
        try:
            state = torch_load_safely(source, what=str(path))
        except CheckpointError as err:
            if isinstance(source, io.BytesIO):  # the checksum held, so the file is what we wrote: not damage
                raise CheckpointError(f"{path} cannot be read by this torch ({err})") from err
            raise
        keys = {"epoch", "model", "optimizer", "scheduler", "rng", "history", "metadata"}
        if not isinstance(state, dict) or not keys <= set(state):
            missing = sorted(keys - set(state)) if isinstance(state, dict) else ["everything"]
            raise CheckpointError(
                f"{path} is not a cifarnets checkpoint of this version (missing {', '.join(missing)}); resume it "
                "with the cifarnets version that wrote it, or start a new run")
        return state

    def read_state(self, device: Union[str, torch.device] = "cpu") -> Checkpoint:
        """Read and verify the committed step (checksum; nothing is repaired or compared with config.json)."""
        return self._checkpoint_from(self._load_state(), device)

    def _checkpoint_from(self, state: Mapping[str, Any], device: Union[str, torch.device]) -> Checkpoint:
        try:
            history = History.from_json(state["history"])
            metadata = json.loads(state["metadata"])
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{self.path / STATE}: its history or description is damaged ({err}); start a "
                                  "new run") from err
        weights = {k: v.to(device) for k, v in state["model"].items()}
        return Checkpoint(epoch=int(state["epoch"]), weights=weights, optimizer=state["optimizer"],
                          scheduler=state["scheduler"], rng=state["rng"], history=history, metadata=metadata)

    def check_binding(self) -> None:
        """Refuse a checkpoint that is not this run's: copied from another folder, or config.json edited since.

        A change made through resume (``--change-schedule``) is written to config.json before the
        next checkpoint; such a pending change is recognised by its entry in ``changes``.
        """
        self._check_binding(self._load_state())

    def _check_binding(self, state: Mapping[str, Any]) -> None:
        config = self.config()
        if "run" not in state:
            logger.warning("%s was written by an older cifarnets and does not say which run it belongs to",
                           self.path / STATE)
            return
        try:
            bound = json.loads(state["run"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{self.path / STATE}: its run record is damaged ({err})") from err
        if bound.get("id") != config.get("run_id"):
            raise CheckpointError(
                f"{self.path / STATE} belongs to another run (run id {bound.get('id')}; this folder's config.json "
                f"is run {config.get('run_id')}): it was copied from another folder. Put back this run's own "
                "checkpoint, or start a new run (another --out)")
        diff = identity_changes(bound.get("identity") or {}, identity(config))
        pending: dict[str, Any] = {}
        changes = config.get("changes") or []
        if changes and changes[-1].get("epoch") == int(state["epoch"]) + 1:
            pending = {f"train.{k}": v for k, v in (changes[-1].get("changed") or {}).items()}
        edited = {k: v for k, v in diff.items() if not (k in pending and list(pending[k])[1:] == v[1:])}
        if edited:
            what = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} in config.json" for k, (a, b) in edited.items())
            raise RunConfigError(
                f"{self.path / CONFIG} does not describe the run its checkpoint holds ({what}): it was edited by "
                "hand, or the checkpoint was copied from another run. config.json records how the run was trained; "
                "undo the edit (or restore the folder), and change settings only through resume "
                "(--resume RUN --change-schedule --lr ..., which records the change)")

    def restore(self, device: Union[str, torch.device] = "cpu", *, repair: bool = True) -> Checkpoint:
        """The training state to continue from: verified (checksum, bound to this run), and the files derived
        from it (last/best weights, history, test) rewritten as it says when `repair` (the main process)."""
        state = self._load_state()  # read and verified once, for the binding and the state alike
        self._check_binding(state)
        ckpt = self._checkpoint_from(state, device)
        if repair:
            self.repair(ckpt)
        return ckpt

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

    def has_history(self) -> bool:
        return self.file(HISTORY_JSON).is_file()

    def test_result(self) -> Optional[dict[str, Any]]:
        """``test.json`` (the best weights on the test set), or None before the run is tested."""
        try:
            data = json.loads(self.file(TEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{self.path / TEST} is unreadable ({err}); `cifarnets train --resume "
                                  f"{self.path}` rewrites it from the checkpoint") from err
        return data if isinstance(data, dict) else None

    def best_epoch_on_disk(self) -> Optional[int]:
        try:
            path = self.file(BEST)
            epoch = read_metadata(path).get("epoch") if path.is_file() else None
        except CheckpointError:
            return None
        return epoch if isinstance(epoch, int) else None

    def load_best_weights(self) -> dict[str, torch.Tensor]:
        """The best epoch's weights, their checksum verified."""
        return load_verified_weights(self.file(BEST))


def _open_lock_file(folder: Path) -> int:
    """Create `folder` if needed and open its lock file (0666 less the umask), read-write, never through a link."""
    folder.mkdir(parents=True, exist_ok=True)
    return os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)


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
