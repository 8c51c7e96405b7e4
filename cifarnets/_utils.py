"""Small helpers that every layer of cifarnets uses: atomic files, model unwrapping, mode
save/restore and table rendering.

This module sits below every other part of the package (layers, models, data, analysis,
train, plots, cli) and imports nothing from it, so any part may use it.

File-mode policy: every file cifarnets writes (run folders, checkpoints, tables, pictures)
gets the permissions an ordinary ``open(path, "w")`` would give, ``0o666`` less the umask
(``0o644`` under the usual umask ``022``), so a group member can read a colleague's results.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Mapping, Optional, Sequence, Union

import torch.nn as nn

from .errors import CifarnetsError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DIGEST_KEY", "CifarnetsError", "PathLike", "atomic_write", "fsync_dir", "markdown_table", "preserved_mode",
    "stale_temp_files", "temp_name_for", "tensor_digest", "text_table", "unwrap_model",
]

PathLike = Union[str, "os.PathLike[str]"]

_TEMP_SUFFIX = ".tmp"


# ---------------------------------------------------------------------- atomic files


def temp_name_for(path: Path) -> Path:
    """A fresh temporary name beside `path` (same folder, so a rename onto `path` is atomic).

    The name starts with ``.NAME.`` and ends in ``.tmp``: `stale_temp_files` finds the ones a
    killed process left behind.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TEMP_SUFFIX}")


def stale_temp_files(folder: PathLike) -> list[Path]:
    """The temporary files that interrupted `atomic_write` calls left in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(_TEMP_SUFFIX))


def _write_all(f: IO[bytes], data: bytes) -> None:
    """Write `data` to `f`. A separate function so tests can simulate a crash mid-write."""
    f.write(data)


def fsync_dir(folder: PathLike) -> None:
    """Make renames and creations inside `folder` durable (a no-op where folders cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: PathLike, data: Union[bytes, bytearray, memoryview, str]) -> Path:
    """Write `data` to `path` so that a crash leaves the old file or the new one, nothing in between.

    The bytes go to a temporary file in the same folder (same file system, so the rename is
    atomic), which is flushed and fsync'ed before ``os.replace`` puts it in place; the folder is
    fsync'ed after. On any error the temporary file is removed and the old `path` is untouched.
    The new file gets ``0o666`` less the umask, like any file ``open`` creates.

    Example:
        >>> import tempfile, pathlib
        >>> p = atomic_write(pathlib.Path(tempfile.mkdtemp()) / "a.json", '{"ok": true}')
        >>> p.read_text()
        '{"ok": true}'
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name_for(path)
    try:
        # "x" (O_EXCL) never follows a planted link; unlike mkstemp it honours the umask (0644, not 0600).
        with open(tmp, "xb") as f:
            _write_all(f, bytes(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            # A write error (a full disk) names no file; say which one could not be written.
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        if isinstance(err, OSError) and err.filename is not None and str(err.filename) == str(tmp):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err  # not our temporary name
        raise
    fsync_dir(path.parent)
    return path


# ---------------------------------------------------------------------- models


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel / ``torch.compile`` wrappers (any nesting).

    Layer names are then those of the model itself (``stem.conv``), not ``module.stem.conv``
    or ``_orig_mod.stem.conv``, so runs with and without the wrappers record the same keys.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> unwrap_model(nn.DataParallel(m)) is m
        True
    """
    wrappers: tuple[type, ...] = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    try:
        from torch._dynamo.eval_frame import OptimizedModule
        wrappers += (OptimizedModule,)
    except ImportError:  # pragma: no cover - torch without dynamo
        pass
    while isinstance(model, wrappers):
        model = model._orig_mod if hasattr(model, "_orig_mod") else model.module  # type: ignore[assignment]
    return model


@contextlib.contextmanager
def preserved_mode(model: nn.Module, train: Optional[bool] = None, *, buffers: bool = False) -> Iterator[None]:
    """Set `model`'s train/eval mode for a measurement, then restore every submodule's mode.

    `train` None keeps the current mode. With ``buffers=True`` the buffers (BN running
    statistics, ``num_batches_tracked``) are restored too: a diagnosis that runs a train-mode
    forward must leave the model exactly as it found it.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2)).train()
        >>> with preserved_mode(m, train=False):
        ...     m.training
        False
        >>> m.training
        True
    """
    modes = {m: m.training for m in model.modules()}
    saved = [(b, b.detach().clone()) for b in model.buffers()] if buffers else []
    try:
        if train is not None:
            model.train(train)
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode
        for buffer, value in saved:
            buffer.data.copy_(value)


# ---------------------------------------------------------------------- tables


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A plain-text table with a header rule, columns padded to their widest cell.

    Example:
        >>> print(text_table(["layer", "rf"], [["conv1", "3"]], [False, True]))
        layer  rf
        -----  --
        conv1   3
    """
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A GitHub Markdown table; `right` marks the right-aligned (numeric) columns.

    Example:
        >>> print(markdown_table(["layer", "rf"], [["conv1", "3"]], [False, True]))
        | layer | rf |
        |---|---:|
        | conv1 | 3 |
    """
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(esc(h) for h in headers) + " |",
           "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# ---------------------------------------------------------------------- tensor checksums

#: The key under which a ``.safetensors`` file that cifarnets writes keeps `tensor_digest` of its
#: tensors (in the file's string metadata), so a loader can tell damage from a file it can read.
DIGEST_KEY = "cifarnets.sha256"


def tensor_digest(tensors: "Mapping[str, torch.Tensor]") -> str:
    """The SHA-256 (hex) of a state dict: every tensor's name, dtype, shape and bytes, by name.

    Written beside weights (`DIGEST_KEY`) and checked when they are loaded: one flipped bit in a
    weight changes it, and so does a renamed, reshaped or re-typed tensor.

    Example:
        >>> import torch
        >>> a = tensor_digest({"w": torch.zeros(2)}); a == tensor_digest({"w": torch.zeros(2)})
        True
        >>> a == tensor_digest({"w": torch.ones(2)})
        False
    """
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        h.update(f"{name}\0{str(t.dtype)}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
