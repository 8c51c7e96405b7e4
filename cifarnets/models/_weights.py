"""Pretrained weights: found, read, verified, then loaded with timm's adaptation.

Every ``pretrained=True`` build loads here, whichever way it was asked for (`cifarnets.create`,
``timm.create_model("cifarnets_...")``, a ``local-dir:`` / ``hf-hub:`` folder, an overlay
``dict(file=...)``). Before a tensor reaches the model:

* a ``.safetensors`` file that carries a checksum (`cifarnets._utils.DIGEST_KEY`, which every
  file cifarnets writes has) must match it, else `CheckpointError` says the file is damaged;
* every tensor must have the name, dtype and shape the architecture expects (an int64 or fp16
  tensor, a reshaped one, a missing or extra one is a `ModelError` naming it), except where
  timm adapts on purpose: the classifier when ``num_classes`` differs from the weights', the
  first conv when ``in_chans`` does;
* a file of a model folder that is a symlink to somewhere outside the folder is refused.

timm is imported only here and only when weights are loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
import torch.nn as nn

from .._utils import DIGEST_KEY, tensor_digest
from ..errors import CheckpointError, ModelError, ModelNotFoundError
from ._registry import NoPretrainedWeightsError

__all__ = ["WEIGHT_FILES", "check_in_folder", "load_weights", "no_weights_error", "read_safetensors"]

# A model folder's weights, in the order timm's local-dir loader prefers them.
WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def no_weights_error(variant: str) -> NoPretrainedWeightsError:
    """``pretrained=True`` for a model with no weight source: how to make and load weights."""
    return NoPretrainedWeightsError(
        f"no pretrained weights are published for {variant!r} yet. Make them with `cifarnets train {variant} ...` "
        f"and `cifarnets export RUN_DIR --out DIR`, then load them with cifarnets.create('local-dir:DIR') or "
        f"cifarnets.create({variant!r}, pretrained=True, pretrained_cfg_overlay=dict(file='DIR/model.safetensors'))"
    )


def check_in_folder(path: Path, folder: Path) -> Path:
    """`path` if it is not a symlink to a place outside `folder`, else a `ModelError` naming it.

    A model folder is one thing: a link from its config.json or weights to another place
    would load (or leak) whatever that place holds.
    """
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        root = Path(os.path.realpath(folder))
        if root not in target.parents:
            raise ModelError(f"{path} is a symlink to {target}, outside the model folder {folder}; refusing to "
                             f"follow it. Copy the file into the folder instead of linking it")
    return path


def read_safetensors(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The tensors of the ``.safetensors`` file `path`, checked against its checksum when it has one.

    Raises:
        ModelNotFoundError: no such file.
        CheckpointError: not a readable safetensors file, or damaged (checksum mismatch).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own SafetensorError, OSError, ...
        raise CheckpointError(f"{path} is not a readable .safetensors file ({err}); it may be truncated or not "
                              "weights at all: re-export it or restore it from a backup") from err
    digest = header.get(DIGEST_KEY)
    if digest is not None and digest != tensor_digest(state):
        raise CheckpointError(f"{path} is damaged (checksum mismatch); re-export it or restore it from a backup")
    return state


def _weights_file(folder: Path) -> Path:
    if not folder.is_dir():
        raise ModelNotFoundError(f"{folder} is not a folder; pass a model folder written by `cifarnets export`")
    for name in WEIGHT_FILES:
        candidate = folder / name
        if candidate.exists() or candidate.is_symlink():
            return check_in_folder(candidate, folder)
    found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
    raise ModelNotFoundError(f"{folder} holds no model.safetensors (it holds: {found}); write the folder with "
                             "`cifarnets export RUN_DIR --out DIR`")


def _hub_safetensors(cfg: dict[str, Any], cache_dir: Any) -> Optional[Path]:
    """The Hub repository's safetensors weights (from the local cache when offline), or None for a .bin repo."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError

    repo, _, revision = str(cfg["hf_hub_id"]).partition("@")
    filename = cfg.get("hf_hub_filename") or "model.safetensors"
    if not filename.endswith(".safetensors"):
        return None
    try:
        return Path(hf_hub_download(repo, filename, revision=revision or None, cache_dir=cache_dir))
    except EntryNotFoundError:
        return None
    except Exception as err:  # offline without a cached copy, no such repository, no access
        raise ModelNotFoundError(f"cannot get {filename} of the Hugging Face Hub repository {repo!r} "
                                 f"({type(err).__name__}); check the name, the network, or HF_TOKEN") from err


def _verifier(cfg: dict[str, Any], num_classes: int, in_chans: int, where: str) -> Callable[..., dict]:
    """timm's ``filter_fn``: refuse tensors the architecture does not expect, before timm adapts and loads them."""
    def as_tuple(names: Any) -> tuple[str, ...]:
        return (names,) if isinstance(names, str) else tuple(names or ())

    def verify(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
        expected = model.state_dict()
        classifier = set()
        if num_classes != cfg.get("num_classes"):  # timm drops the classifier: a new head is trained
            classifier = {f"{c}.{p}" for c in as_tuple(cfg.get("classifier")) for p in ("weight", "bias")}
        pretrained_in_chans = (cfg.get("input_size") or (3,))[0]
        adapted = {f"{c}.weight" for c in as_tuple(cfg.get("first_conv"))} if in_chans != pretrained_in_chans else set()
        problems = []
        for key, tensor in state.items():
            if key in classifier:
                continue
            if key not in expected:
                problems.append(f"{key} is not a tensor of this architecture")
                continue
            want = expected[key]
            if not isinstance(tensor, torch.Tensor):
                problems.append(f"{key} is a {type(tensor).__name__}, not a tensor")
            elif tensor.dtype != want.dtype:
                problems.append(f"{key} is {str(tensor.dtype).removeprefix('torch.')}, the architecture expects "
                                f"{str(want.dtype).removeprefix('torch.')}")
            elif key in adapted and tensor.dim() == want.dim() and tensor.shape[0] == want.shape[0]:
                continue  # timm sums or repeats the input channels of the first conv
            elif tuple(tensor.shape) != tuple(want.shape):
                problems.append(f"{key} has shape {tuple(tensor.shape)}, the architecture expects {tuple(want.shape)}")
        missing = [k for k in expected if k not in state and k not in classifier]
        if missing:
            problems.append(f"missing tensor{'s' if len(missing) > 1 else ''} " + ", ".join(missing[:5])
                            + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more problems" if len(problems) > 5 else "")
            raise ModelError(f"the weights in {where} do not fit {cfg.get('architecture')}: {shown}. Load them "
                             f"into the model they were trained as (the folder's config.json / the run's keywords)")
        return state

    return verify


def load_weights(
    model: nn.Module, cfg: dict[str, Any], *, num_classes: int, in_chans: int, cache_dir: Any = None,
    variant: str = "model",
) -> None:
    """Load the weights `cfg` (a resolved timm ``pretrained_cfg``) names into `model`, verified.

    The source is found as timm finds it (``source`` "local-dir"/"hf-hub", then ``state_dict``,
    ``file``, ``url``, ``hf_hub_id``); safetensors files are read here (checksum checked), any
    other source by timm; then timm's ``load_pretrained`` adapts the classifier and first conv
    to `num_classes` / `in_chans` and loads them.
    """
    from timm.models import load_pretrained

    source = cfg.get("source") or ""
    state: Optional[dict[str, torch.Tensor]] = None
    where = "the given state dict"
    if source == "local-dir" or (not source and not cfg.get("state_dict") and cfg.get("file")
                                 and Path(cfg["file"]).is_dir()):
        path = _weights_file(Path(cfg["file"]))
        where = str(path)
        if path.suffix == ".safetensors":
            state = read_safetensors(path)
        else:
            from timm.models import load_state_dict

            state = load_state_dict(str(path))
    elif source == "hf-hub" or (not cfg.get("state_dict") and not cfg.get("file") and not cfg.get("url")
                                and cfg.get("hf_hub_id")):
        if not cfg.get("hf_hub_id"):
            raise ModelError("pretrained_cfg has source='hf-hub' but no hf_hub_id; pass hf_hub_id='ORG/REPO'")
        hub_path = _hub_safetensors(cfg, cache_dir)
        where = f"hf-hub:{cfg['hf_hub_id']}"
        if hub_path is not None:
            state = read_safetensors(hub_path)
    elif cfg.get("state_dict") is not None:
        state = dict(cfg["state_dict"])
    elif cfg.get("file"):
        path = Path(cfg["file"])
        where = str(path)
        if not path.exists():
            raise ModelNotFoundError(f"no weights file at {path} (pretrained_cfg file=)")
        if path.suffix == ".safetensors":
            state = read_safetensors(path)
    elif cfg.get("url"):
        where = str(cfg["url"])
    else:
        raise no_weights_error(variant)
    if state is not None:
        # Hand timm the verified tensors; it still does the num_classes / in_chans adaptation.
        cfg = {**cfg, "state_dict": state, "source": None, "file": None, "url": None, "hf_hub_id": None}
    try:
        load_pretrained(model, cfg, num_classes=num_classes, in_chans=in_chans,
                        filter_fn=_verifier(cfg, num_classes, in_chans, where), cache_dir=cache_dir)
    except (ModelError, CheckpointError):
        raise
    except (RuntimeError, KeyError, ValueError, OSError) as err:
        raise CheckpointError(f"cannot load the weights in {where} ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from err
