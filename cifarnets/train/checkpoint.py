"""Checkpoints that survive crashes and never run code when loaded (issue "nothing lost").

* Weights are ``.safetensors`` files: tensors plus a JSON description (model name, the
  `cifarnets.create` keywords, epoch, metrics, the normalisation the model was trained with),
  so `load_checkpoint` can rebuild the model with nothing else at hand.
* A run's checkpoint proper (`cifarnets.train.rundir`: weights, optimiser, scheduler, RNG,
  history in one file) is written with ``torch.save`` and read back with
  ``torch.load(weights_only=True)``, which refuses every pickled object that is not a tensor
  or a plain container. ``.pt``/``.pth`` files from elsewhere load the same way:
  a file that needs arbitrary unpickling (a "pickle bomb" or simply a pickled module) is
  refused with `CheckpointError`, never executed.
* Every file is written atomically: to a temporary file in the same folder, flushed and
  fsync'ed, then renamed over the target with ``os.replace`` (atomic on POSIX and Windows),
  and the folder is fsync'ed. A crash at any moment leaves either the old file or the new
  one, never half of one.
* State dicts are saved without the ``module.`` (DDP) and ``_orig_mod.`` (``torch.compile``)
  prefixes, and both are stripped when loading a checkpoint written by other tools.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import IO, Any, Mapping, Optional, Union

import torch
import torch.nn as nn

from .._utils import DIGEST_KEY, atomic_write, tensor_digest, unwrap_model
from ..errors import CheckpointError, CheckpointNotFoundError
from .files import BEST, LAST

__all__ = [
    "CHECKPOINT_FORMAT", "CheckpointError", "CheckpointNotFoundError", "atomic_write", "load_checkpoint",
    "load_verified_weights",
    "read_metadata", "save_weights", "state_dict_for_save", "strip_prefixes",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

# Version of the JSON description stored under the "cifarnets" key of a .safetensors header.
CHECKPOINT_FORMAT = 1
_META_KEY = "cifarnets"
_PREFIXES = ("module.", "_orig_mod.")


def _check_readable(path: Path) -> bytes:
    """The first bytes of `path`, or a `CheckpointError` that names the real reason it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(16)
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"no checkpoint at {path}") from None
    except PermissionError:
        raise CheckpointError(
            f"cannot read {path}: permission denied (it belongs to another user or group). Ask its owner to make "
            "it readable (chmod a+r; cifarnets writes run files 0666 less the umask), or copy it") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a checkpoint file") from None
    except OSError as err:
        raise CheckpointError(f"cannot read {path} ({err.strerror or err})") from err


# ---------------------------------------------------------------------- state dicts


def strip_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """`state_dict` with leading ``module.`` / ``_orig_mod.`` (any mix, any depth) removed from every key.

    Example:
        >>> list(strip_prefixes({"module._orig_mod.fc.weight": 1}))
        ['fc.weight']
    """
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        clean = key
        while clean.startswith(_PREFIXES):
            clean = clean.split(".", 1)[1]
        # torch.compile of a submodule leaves "_orig_mod." in the middle of names.
        clean = clean.replace("._orig_mod.", ".")
        out[clean] = value
    return out


def state_dict_for_save(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of `model`'s parameters and buffers, keys without wrapper prefixes.

    Copies (not views) so that safetensors never sees two keys sharing storage (tied weights),
    and so the values do not change under a later optimiser step.
    """
    state = strip_prefixes(unwrap_model(model).state_dict())
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _metadata_header(metadata: Mapping[str, Any]) -> dict[str, str]:
    return {_META_KEY: json.dumps({"format": CHECKPOINT_FORMAT, **metadata}, allow_nan=True)}


def weights_bytes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> bytes:
    """A ``.safetensors`` file's bytes: `state` and `metadata` (JSON under the header's "cifarnets" key),
    and the tensors' checksum (`cifarnets._utils.tensor_digest`, under ``DIGEST_KEY``) that loading verifies."""
    from safetensors.torch import save

    return save(dict(state), metadata={**_metadata_header(metadata), DIGEST_KEY: tensor_digest(state)})


def load_verified_weights(path: PathLike, device: Union[str, torch.device] = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, checked against the checksum cifarnets stored in it (if any):
    a flipped bit, a truncated file or an edited tensor is named as damage (`CheckpointError`)."""
    from ..models._weights import read_safetensors

    _check_readable(Path(path))
    return {k: v.to(device) for k, v in read_safetensors(Path(path)).items()}


def save_weights(path: PathLike, model_or_state: Union[nn.Module, Mapping[str, torch.Tensor]],
                 metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Atomically write a ``.safetensors`` checkpoint of a model (or state dict) with `metadata`.

    `metadata` should hold ``model`` (registry name) and ``model_kwargs`` (the
    `cifarnets.create` keywords) for `load_checkpoint` to rebuild the model; `fit` adds the
    epoch, metrics, data set and normalisation.
    """
    state = state_dict_for_save(model_or_state) if isinstance(model_or_state, nn.Module) else model_or_state
    return atomic_write(path, weights_bytes(state, metadata or {}))


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The JSON description stored in a ``.safetensors`` checkpoint (``{}`` if it has none)."""
    from safetensors import safe_open

    _check_readable(Path(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as err:  # safetensors raises its own SafetensorError / OSError
        raise CheckpointError(
            f"{path} is not a readable .safetensors file ({err}); was it written completely?") from err
    raw = header.get(_META_KEY)
    if raw is None:
        return dict(header)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: the cifarnets description in its header is not valid JSON ({err})") from err


def torch_load_safely(source: Union[PathLike, IO[bytes]], *, map_location: Any = "cpu", what: str = "file") -> Any:
    if isinstance(source, (str, os.PathLike)):
        head = _check_readable(Path(source))
        # torch.save writes a zip archive (PK..); older torch a pickle (protocol byte 0x80). Anything else
        # (a text file, a safetensors file renamed .pt, ...) is not a checkpoint at all.
        if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
            raise CheckpointError(
                f"{what} is not a checkpoint: it is neither a torch.save file nor a .safetensors file "
                f"(it starts with {head[:8]!r}); pass a run folder, a .safetensors file or a .pt state dict")
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {what}: it holds pickled Python objects other than tensors and plain containers, and "
            "unpickling those can run arbitrary code (torch.load(weights_only=True) rejected it: "
            f"{str(err).splitlines()[0]}). Only load files you trust; if you do trust it, convert it once with "
            "torch.load(path, weights_only=False) and save the state dict with cifarnets.train.save_weights()."
        ) from err
    except (RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(f"cannot read {what} ({err}); is it a complete torch.save file?") from err


# ---------------------------------------------------------------------- loading checkpoints


def _resolve_checkpoint_path(path: PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        found = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
        raise CheckpointNotFoundError(
            f"{path} is a folder without best.safetensors or last.safetensors (it holds: {found}); "
            "pass a run folder written by `cifarnets train` or a checkpoint file"
        )
    if not path.is_file():
        raise CheckpointNotFoundError(f"no checkpoint at {path}")
    return path


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    # Common layouts of .pt files: a bare state dict, or one under "state_dict"/"model"/"model_state_dict".
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(f"{path} holds no state dict of tensors (found {type(obj).__name__})")


def load_checkpoint(
    path: PathLike, *, device: Union[str, torch.device] = "cpu", build: bool = True, strict: bool = True
) -> tuple[Union[nn.Module, dict[str, torch.Tensor]], dict[str, Any]]:
    """Load a checkpoint: ``(model, metadata)``, or ``(state_dict, metadata)`` if it cannot be rebuilt.

    Args:
        path: a ``.safetensors`` file, a run folder (its ``best.safetensors``, else
            ``last.safetensors``), or a ``.pt``/``.pth`` state dict (read with
            ``weights_only=True``; files needing arbitrary unpickling are refused).
        device: where the tensors (and the model) go.
        build: rebuild the model with `cifarnets.create` from the stored model name and
            keywords and load the weights into it (in eval mode). With ``build=False``, or
            when the checkpoint names no registered model, the state dict is returned.
        strict: passed to ``load_state_dict``.

    The metadata of a `fit` checkpoint holds ``model``, ``model_kwargs``, ``epoch``,
    ``kind`` ("best"/"last"), ``metrics``, ``dataset``, ``num_classes``, ``in_chans``,
    ``mean``/``std`` (the normalisation it was trained with: also set as the rebuilt model's
    ``pretrained_cfg["mean"/"std"]``, so `evaluate` uses it by default) and versions.

    Example:
        model, meta = load_checkpoint("runs/vgg08")
        meta["model"], meta["epoch"], meta["metrics"]["val_acc"]
        # -> ('vgg08', 100, 46.84)
    """
    path = _resolve_checkpoint_path(path)
    head = _check_readable(path)
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        metadata = read_metadata(path)
        state = load_verified_weights(path, device)
    else:
        obj = torch_load_safely(path, map_location=device, what=str(path))
        has_metadata = isinstance(obj, Mapping) and isinstance(obj.get("metadata"), Mapping)
        metadata = dict(obj.get("metadata", {})) if has_metadata else {}
        state = _extract_state_dict(obj, path)
    state = strip_prefixes(state)
    name = metadata.get("model")
    if not build:
        return state, metadata
    from ..registry import create, is_model

    if not name or not is_model(name) or metadata.get("rebuildable") is False:
        logger.info("%s names no registered model (%r); returning its state dict", path, name)
        return state, metadata
    model = create(name, **dict(metadata.get("model_kwargs") or {}))
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: the weights do not fit {name}({metadata.get('model_kwargs')}): {err}. If the model was built "
            "with other keywords, load the state dict with build=False and load it into that model."
        ) from err
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and metadata.get("mean") and metadata.get("std"):
        cfg["mean"], cfg["std"] = tuple(metadata["mean"]), tuple(metadata["std"])
        if metadata.get("dataset"):
            cfg["dataset"] = metadata["dataset"]
    return model.to(device).eval(), metadata
