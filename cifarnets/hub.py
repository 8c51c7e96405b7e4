"""Weights that travel: a training run folder becomes a timm / Hugging Face Hub model folder.

    cifarnets export runs/vgg38-bn-rc --out hub/vgg38-bn-rc     # the command line
    export_run("runs/vgg38-bn-rc", "hub/vgg38-bn-rc")           # the same from Python

The folder is written by timm's own ``save_for_hf``: ``config.json`` (the timm architecture
``cifarnets_<name>``, the `cifarnets.create` keywords such as ``bn``/``rc``/``shortcut`` under
``model_args``, classes, input size, the mean/std the run was trained with) and
``model.safetensors`` (the best checkpoint's tensors, bit for bit; its header also carries
the run's checkpoint description, so ``cifarnets eval DIR/model.safetensors`` works), plus a
``README.md`` model card and the run's ``curves.png``. Anyone with cifarnets installed loads it
through timm's loader::

    import cifarnets, timm
    timm.create_model("local-dir:hub/vgg38-bn-rc", pretrained=True)   # or "hf-hub:ORG/REPO" once pushed
    cifarnets.create("local-dir:hub/vgg38-bn-rc")                      # loads the weights too

The run folder is read in one place, `read_run`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union, cast

import torch
import torch.nn as nn

from ._utils import atomic_write, fsync_dir, temp_name_for
from .errors import ConfigError, RunError
from .layers import act_layer_name, norm_layer_name
from .models._registry import model_cfgs
from .registry import create

__all__ = ["RunRecord", "export_run", "model_card", "push_run", "read_run"]

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


ExportError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


HubUnreachableError = RunError  # kept name; the kind is cifarnets.errors.RunError


@dataclass
class RunRecord:
    """What `export_run` needs from a run folder."""

    run_dir: Path
    model: str
    create_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    config: dict[str, Any]
    epochs: list[dict[str, Any]]
    best_epoch: Optional[int]
    test: Optional[dict[str, Any]]


def read_run(run_dir: PathLike) -> RunRecord:
    """Read a run folder written by ``cifarnets train`` / `cifarnets.train.fit` through its
    `~cifarnets.train.RunDir`: the checked ``config.json``, the best checkpoint
    (``best.safetensors``, else ``last.safetensors``), the history and ``test.json``."""
    from .train import RunDir, load_checkpoint
    from .train.history import History, HistoryError

    folder = RunDir(run_dir)
    config = folder.config()
    state, metadata = load_checkpoint(folder.path, build=False)
    assert isinstance(state, dict)
    name = metadata.get("model") or config.get("model")
    if not name or not config.get("rebuildable", True):
        raise ExportError(f"{folder.path} trained a model that cifarnets.create cannot rebuild (config.json: "
                         f"rebuildable={config.get('rebuildable')}); export needs a registered model")
    try:
        history = History.load(folder.path)
        epochs, best_epoch = [vars(e) for e in history.epochs], history.best_epoch
    except (FileNotFoundError, HistoryError):
        epochs, best_epoch = [], metadata.get("epoch")
    test = folder.test_result()
    kwargs = dict(metadata.get("model_kwargs") or config["model_kwargs"])
    return RunRecord(folder.path, name, kwargs, state, metadata, config, epochs, best_epoch, test)


def _json_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The create() keywords with layer classes replaced by the names `create` resolves back."""
    out = {}
    for key, value in kwargs.items():
        if key == "norm_layer":
            value = norm_layer_name(value)
        elif key == "act":
            value = act_layer_name(value)
        try:
            json.dumps(value)
        except TypeError as err:
            raise ExportError(f"the run's keyword {key}={value!r} cannot be written to config.json; "
                             "train with a name (e.g. norm_layer='detached_batchnorm') instead") from err
        out[key] = value
    return out


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else (f"{value:.2f}{suffix}" if isinstance(value, float) else f"{value}{suffix}")


def model_card(run: RunRecord, model: nn.Module, load_name: str = "hf-hub:ORG/REPO") -> dict[str, Any]:
    """timm's model-card dict (``generate_readme`` / ``push_to_hf_hub``) for a run; its usage loads `load_name`."""
    cfg = model_cfgs()[run.model]
    data, train = run.config.get("data") or {}, run.config.get("train") or {}
    best = next((e for e in run.epochs if e.get("epoch") == run.best_epoch), {})
    flags = ", ".join(f"{k}={v!r}" for k, v in run.create_kwargs.items() if k not in ("num_classes", "in_chans"))
    split = data.get("split")
    recipe = (f"{train.get('optimizer')} lr {train.get('lr')}, momentum {train.get('momentum')}, weight decay "
              f"{train.get('weight_decay')}, schedule {train.get('schedule')} (min lr {train.get('min_lr')}), batch "
              f"{train.get('batch_size')}, {train.get('epochs')} epochs, seed {train.get('seed')}, augmentation "
              f"{'crop + flip' if train.get('augment', True) else 'none'}")
    details = {
        "Model type": f"Image classification, {run.model}({flags}) of cifarnets",
        "Reproduces": f"{cfg.source}: {cfg.paper_name or cfg.summary}",
        "Dataset": data.get("name") or run.metadata.get("dataset") or "-",
        "Split (train/val/test images)": f"{data.get('train', '-')}/{data.get('val', '-')}/{data.get('test', '-')}"
                                         + (f" (val split {split[0]}:{split[1]}, seed {data.get('split_seed')})"
                                            if split else ""),
        "Normalisation": f"preset {data.get('norm')!r}: mean {data.get('mean')}, std {data.get('std')}",
        "Recipe": recipe,
        "Epochs trained": len(run.epochs),
        "Best epoch": _fmt(run.best_epoch),
        "Best validation accuracy": _fmt(best.get("val_acc"), " %"),
        "Test accuracy (best checkpoint)": _fmt((run.test or {}).get("acc"), " %"),
        "Params (M)": f"{sum(p.numel() for p in model.parameters()) / 1e6:.3f}",
    }
    if data.get("is_synthetic"):
        details["Note"] = "trained on cifarnets' SYNTHETIC images: the accuracy says nothing about CIFAR"
    usage = ("```python\nimport cifarnets, timm  # importing cifarnets registers its models with timm\n"
             f"model = timm.create_model({load_name!r}, pretrained=True)  # or 'local-dir:PATH' for this folder\n"
             "model.eval()\n```\n\n![training curves](curves.png)\n")
    return {
        "description": f"{run.model} of cifarnets trained with `cifarnets train`, exported with `cifarnets export`. "
                       f"{cfg.notes}",
        "details": details,
        "usage": usage,
        "license": "mit",
        "tags": ["image-classification", "timm", "cifarnets", str(details["Dataset"])],
    }


def _rebuild(run: RunRecord) -> tuple[nn.Module, dict[str, Any]]:
    kwargs = _json_kwargs(run.create_kwargs)
    model = create(run.model, **kwargs)
    model.load_state_dict(run.state_dict, strict=True)
    from timm.models._pretrained import PretrainedCfg

    fields = set(PretrainedCfg.__dataclass_fields__)
    # nn.Module's __getattr__ is typed Tensor | Module; every zoo model's pretrained_cfg is a dict.
    cfg: dict[str, Any] = {k: v for k, v in cast(dict, model.pretrained_cfg).items() if k in fields}
    # The export describes these weights: the normalisation and classes of the run.
    meta = run.metadata
    if meta.get("mean") and meta.get("std"):
        cfg["mean"], cfg["std"] = tuple(meta["mean"]), tuple(meta["std"])
    cfg["num_classes"] = model.num_classes
    classes = meta.get("classes")
    cfg["label_names"] = tuple(classes) if classes and len(classes) == model.num_classes else None
    dataset = (run.config.get("data") or {}).get("name") or meta.get("dataset")
    cfg["description"] = (f"{run.model}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) trained on {dataset} "
                          f"with cifarnets; the network of {model_cfgs()[run.model].source}")
    cfg["input_size"] = (model.in_chans, *cfg["input_size"][1:])
    if cfg.get("min_input_size"):
        cfg["min_input_size"] = (model.in_chans, *cfg["min_input_size"][1:])
    setattr(model, "pretrained_cfg", cfg)  # setattr: nn.Module's __setattr__ is typed for tensors and modules
    setattr(model, "default_cfg", cfg)
    return model.eval(), kwargs


def export_run(run_dir: PathLike, out_dir: PathLike, *, curves: bool = True) -> Path:
    """Write the best checkpoint of `run_dir` as a timm / Hugging Face Hub model folder `out_dir`.

    Returns `out_dir`, holding ``config.json``, ``model.safetensors``, ``README.md`` (the model
    card: report, data set and split, recipe, epochs, best-val and test accuracy) and
    ``curves.png`` (with `curves`). The folder loads with ``timm.create_model("local-dir:DIR")``
    or ``cifarnets.create("local-dir:DIR")`` into exactly the trained architecture.

    Example:
        export_run("runs/vgg38-bn-rc", "hub/vgg38-bn-rc")   # -> PosixPath('hub/vgg38-bn-rc')

    The folder is written whole or not at all: it is built beside `out_dir` under a temporary
    name and renamed into place, so an interrupted export leaves no half-written model folder.
    """
    from timm.models import save_for_hf
    from timm.models._hub import generate_readme

    from .train import save_weights

    run = read_run(run_dir)
    model, kwargs = _rebuild(run)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder; choose a new --out folder or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_name_for(out)
    try:
        staging.mkdir()  # like any folder mkdir makes: 0777 less the umask, readable by the group
    except OSError as err:
        raise ExportError(f"cannot write the model folder {out}: {out.parent} is not writable "
                          f"({err.strerror or err}); choose an --out in a folder you can write to") from None
    try:
        save_for_hf(model, str(staging), model_args=kwargs, safe_serialization=True)
        # Same tensors, plus the run's checkpoint description in the header (cifarnets eval reads it).
        save_weights(staging / "model.safetensors", model.state_dict(), {**run.metadata, "model_kwargs": kwargs})
        card = model_card(run, model)
        atomic_write(staging / "README.md", generate_readme(card, out.name or run.model))
        if curves and run.epochs:
            from . import plots

            figure = plots.curves(run.run_dir, title=f"{run.model}: {run.run_dir.name}")
            plots.save(figure, staging / "curves.png")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError) and err.errno is not None and str(staging) in str(err.filename or ""):
            # Name the folder the user asked for, not the temporary one it is built in.
            raise OSError(err.errno, err.strerror or str(err), str(out)) from err
        raise
    fsync_dir(out.parent)
    return out


def push_run(run_dir: PathLike, repo_id: str, *, token: Optional[str] = None, private: bool = False) -> str:
    """Push the best checkpoint of `run_dir` to the Hugging Face Hub repository `repo_id` with
    timm's ``push_to_hf_hub`` (config, safetensors weights, the model card). Returns the commit URL.

    Raises:
        RuntimeError: when the Hub cannot be reached (offline, no token), saying what to do.
    """
    from timm.models import push_to_hf_hub

    run = read_run(run_dir)
    model, kwargs = _rebuild(run)
    try:
        return str(push_to_hf_hub(model, repo_id, token=token, private=private, model_config=None,
                                  model_card=model_card(run, model, f"hf-hub:{repo_id}"), model_args=kwargs,
                                  safe_serialization=True, commit_message=f"cifarnets export of {run.run_dir.name}"))
    except Exception as err:  # huggingface_hub raises its own HTTP / offline / auth errors
        raise HubUnreachableError(
            f"could not push {run.run_dir} to the Hugging Face Hub repository {repo_id!r} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). The Hub needs network access "
            f"and a write token (`hf auth login` or HF_TOKEN); offline, write the folder with "
            f"`cifarnets export {run.run_dir} --out DIR` and upload it later with `hf upload {repo_id} DIR`"
        ) from err
