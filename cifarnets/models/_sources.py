"""``local-dir:DIR`` and ``hf-hub:ORG/REPO``: the config.json of a model folder, read and checked.

A folder written by ``cifarnets export`` (timm's ``save_for_hf`` layout) holds ``config.json``
(the timm architecture ``cifarnets_<name>``, its ``pretrained_cfg`` and the ``model_args``
that rebuild it) and ``model.safetensors``. `read_model_source` reads the config the way
timm's ``load_model_config_from_path`` / ``_parse_model_cfg`` do, but checks every field it
uses first, so a crafted or damaged folder is one `ModelError` line naming the file and the
field, never a ``KeyError``, ``JSONDecodeError`` or a model of the wrong class. The weights
are read by `cifarnets.models._weights` when the model is built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError, ModelError, ModelNotFoundError
from ._keywords import check_model_kwargs
from ._registry import TIMM_PREFIX, entrypoints, model_builds
from ._weights import check_in_folder

__all__ = ["SOURCES", "parse_model_config", "read_model_source"]

SOURCES = ("local-dir", "hf-hub")


def read_model_source(name: str, cache_dir: Any = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(registered name, pretrained_cfg, model_args)`` of a ``local-dir:DIR`` / ``hf-hub:ORG/REPO`` name."""
    source, _, location = name.partition(":")
    if not location:
        raise ConfigError(f"{name!r} names no folder: write {source}:DIR (a folder written by `cifarnets export`)")
    if source == "local-dir":
        folder = Path(location)
        config = folder / "config.json"
        if not folder.is_dir() or not (config.is_file() or config.is_symlink()):
            raise ModelNotFoundError(
                f"{location} holds no config.json; make the folder with `cifarnets export RUN_DIR --out {location}`"
            )
        check_in_folder(config, folder)
        where, extra = str(config), {"file": str(folder), "source": "local-dir"}
    else:
        config = _download_config(location, cache_dir)
        where, extra = f"hf-hub:{location}/config.json", {"hf_hub_id": location, "source": "hf-hub"}
    try:
        raw = config.read_bytes()
    except OSError as err:
        raise ModelError(f"cannot read {where} ({err.strerror or err})") from err
    return parse_model_config(raw, where, extra)


def _download_config(repo_id: str, cache_dir: Any) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise ModelError("hf-hub: names need the huggingface_hub package (pip install huggingface_hub)") from err
    repo, _, revision = repo_id.partition("@")
    try:
        return Path(hf_hub_download(repo, "config.json", revision=revision or None, cache_dir=cache_dir))
    except Exception as err:  # offline without a cached copy, no such repository, no access
        raise ModelNotFoundError(f"cannot get config.json of the Hugging Face Hub repository {repo!r} "
                                 f"({type(err).__name__}); check the name, the network, or HF_TOKEN") from err


def _sizes(value: Any, length: Optional[int], kind: Any, where: str, key: str) -> tuple:
    ok = isinstance(value, (list, tuple)) and (length is None or len(value) == length) and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value)
    if not ok:
        shape = f"{length} " if length else ""
        words = "number" if isinstance(kind, tuple) else {"int": "integer", "str": "string"}[kind.__name__]
        raise ModelError(f"{where}: {key} must be a list of {shape}{words}s, got {value!r}; re-export the "
                         "folder with `cifarnets export`")
    return tuple(value)


def parse_model_config(raw: bytes, where: str, extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Check and split a config.json as timm's ``_parse_model_cfg`` does: ``(name, pretrained_cfg, model_args)``.

    Example:
        >>> raw = (b'{"architecture": "cifarnets_vgg38", "num_classes": 10, "pretrained_cfg": {}, '
        ...        b'"model_args": {"bn": true}}')
        >>> name, cfg, args = parse_model_config(raw, "config.json", {})
        >>> name, cfg["num_classes"], args
        ('vgg38', 10, {'bn': True})
    """
    from timm.models._pretrained import PretrainedCfg

    fix = "write the folder with `cifarnets export RUN_DIR --out DIR`"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ModelError(f"{where} is not UTF-8 text (byte {err.start}): it is not a config.json; {fix}") from None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelError(f"{where} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                         f"{fix}") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{where} holds a JSON {type(cfg).__name__}, not an object; {fix}")
    architecture = cfg.get("architecture")
    if architecture is None:
        raise ModelError(f"{where} names no architecture (its 'architecture' key is missing); {fix}")
    if not isinstance(architecture, str):
        raise ModelError(f"{where}: architecture must be a string such as 'cifarnets_vgg38', got {architecture!r}")
    name = architecture[len(TIMM_PREFIX):] if architecture.startswith(TIMM_PREFIX) else None
    if name not in entrypoints():
        raise ModelError(f"{where} names the architecture {architecture!r}, which is not a cifarnets model "
                         f"(cifarnets_<name>, one of `cifarnets list`); load other timm models with timm.create_model")
    if name not in model_builds():
        raise ModelError(f"{where} names {architecture!r}, a user-registered model: only the zoo's families load "
                         "from a model folder; build it and load model.safetensors yourself")
    if "pretrained_cfg" in cfg:
        pretrained_cfg = cfg["pretrained_cfg"]
        if not isinstance(pretrained_cfg, dict):
            raise ModelError(f"{where}: pretrained_cfg must be an object, got {pretrained_cfg!r}; {fix}")
        pretrained_cfg = dict(pretrained_cfg)
    else:  # timm's legacy single-dict layout
        pretrained_cfg = {k: v for k, v in cfg.items() if k not in ("architecture", "num_features")}
        if "labels" in pretrained_cfg:
            pretrained_cfg["label_names"] = pretrained_cfg.pop("labels")
    pretrained_cfg.update(extra)
    for key in ("num_classes", "label_names", "label_descriptions"):
        if key in cfg and "pretrained_cfg" in cfg:
            pretrained_cfg[key] = cfg[key]
    unknown = sorted(set(pretrained_cfg) - set(PretrainedCfg.__dataclass_fields__))
    if unknown:
        raise ModelError(f"{where}: pretrained_cfg has keys timm does not know: {', '.join(unknown)}; {fix}")
    num_classes = pretrained_cfg.get("num_classes")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 0):
        raise ModelError(f"{where}: num_classes must be an integer >= 0, got {num_classes!r}; {fix}")
    for key in ("input_size", "min_input_size", "test_input_size"):
        if pretrained_cfg.get(key) is not None:
            pretrained_cfg[key] = _sizes(pretrained_cfg[key], 3, int, where, key)
            if any(v < 1 for v in pretrained_cfg[key]):
                raise ModelError(f"{where}: {key} must be positive, got {pretrained_cfg[key]!r}; {fix}")
    for key in ("mean", "std"):
        if pretrained_cfg.get(key) is not None:
            pretrained_cfg[key] = _sizes(pretrained_cfg[key], None, (int, float), where, key)
    if pretrained_cfg.get("label_names") is not None:
        pretrained_cfg["label_names"] = _sizes(pretrained_cfg["label_names"], None, str, where, "label_names")
    model_args = cfg.get("model_args") or {}
    if not isinstance(model_args, dict):
        raise ModelError(f"{where}: model_args must be an object of create() keywords, got {model_args!r}; {fix}")
    try:
        check_model_kwargs(name, model_args)
    except ConfigError as err:
        raise ModelError(f"{where}: model_args: {err}") from None
    # timm's repairs: the stored in_chans / img_size describe the saved weights.
    if isinstance(model_args.get("in_chans"), int):
        input_size = pretrained_cfg.get("input_size", (3, 224, 224))
        pretrained_cfg["input_size"] = (model_args["in_chans"], *input_size[1:])
        for key in ("test_input_size", "min_input_size"):
            if pretrained_cfg.get(key):
                pretrained_cfg[key] = (model_args["in_chans"], *pretrained_cfg[key][1:])
    if model_args.get("img_size") is not None and pretrained_cfg.get("fixed_input_size", False):
        size = model_args["img_size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        pretrained_cfg["input_size"] = (pretrained_cfg.get("input_size", (3,))[0], *size)
    return name, pretrained_cfg, dict(model_args)
