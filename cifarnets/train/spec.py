"""`RunSpec`: the one description of a run, and `OPTIONS`, the one table of its settings.

A run is a model (a registry name and the `cifarnets.create` keywords the user set), a data
source (`cifarnets.data.DataSource`) and a `TrainConfig`. Every way of describing one goes
through here: the command line's options (``cifarnets train``) and a grid's keys (``[base]``,
``[axes]``, ``[[cells]]``) are both generated from `OPTIONS` and parsed by `RunSpec.from_options`
with one set of messages, and a run folder's ``config.json`` records the parts.

Where is it decided?
    model keywords      `MODEL_OPTIONS` (this module): option name, create() keyword, type, help
    data-set arguments  `DATA_OPTIONS` (this module) onto `cifarnets.data.DataSource`'s fields
    training settings   `cifarnets.train.config.TrainConfig`'s fields (their metadata: help, CLI name)

Example:
    >>> spec = RunSpec.from_options({"model": "vgg08", "bn": True, "dataset": "synthetic", "lr": 0.01})
    >>> spec.model, dict(spec.flags), spec.data.name, spec.train.lr
    ('vgg08', {'bn': True}, 'synthetic', 0.01)
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..data import FITS, DataSource
from ..errors import ConfigError, ConfigTypeError
from ..layers import SHORTCUTS
from .config import TrainConfig, type_name, type_ok

__all__ = ["DATA_OPTIONS", "MODEL_OPTIONS", "OPTIONS", "Option", "RunSpec", "TRAIN_ALIASES", "train_options"]


@dataclass(frozen=True)
class Option:
    """One setting of a run as users write it: ``--name`` on the command line, ``name`` in a grid.

    `target` is the `cifarnets.create` keyword, `DataSource` field or `TrainConfig` field it sets.
    `grid_only` options have no command-line flag (a budget grid's ``test_limit``).
    """

    name: str
    part: str  # "model" | "data" | "train"
    target: str
    type: Any
    help: str
    choices: Optional[tuple[str, ...]] = None
    grid_only: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """`value` as the target takes it; `ConfigTypeError` naming the option, value and type otherwise."""
        hint = self.type
        if typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        if not type_ok(value, hint):
            kind = "true or false" if hint is bool else type_name(hint)
            raise ConfigTypeError(f"{self.name} must be {kind}; got {value!r} ({type(value).__name__})")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}")
        return value


# Only the keywords the user gives are passed on, so every model keeps its report's defaults.
MODEL_OPTIONS: tuple[Option, ...] = (
    Option("bn", "model", "bn", bool, "batch norm in the coursework VGG blocks"),
    Option("rc", "model", "rc", bool, "residual connections in the coursework VGG blocks"),
    Option("shortcut", "model", "shortcut", str, "shortcut of blocks that change shape", choices=tuple(SHORTCUTS)),
    Option("act", "model", "act", str, "activation: leaky_relu, relu, sigmoid, ..."),
    Option("norm", "model", "norm_layer", Optional[str],
           "norm layer: batchnorm, detached_batchnorm, groupnorm, ... or 'none'"),
    Option("width", "model", "width", int, "filters per conv (coursework VGGs)"),
    Option("init", "model", "init", str, "weight init: default, kaiming, xavier, orthogonal"),
    Option("num_classes", "model", "num_classes", int, "classifier outputs"),
    Option("in_chans", "model", "in_chans", int, "input channels"),
    Option("drop_rate", "model", "drop_rate", float, "dropout of fixed FC heads"),
)

DATA_OPTIONS: tuple[Option, ...] = (
    Option("dataset", "data", "name", str, "data set: cifar10, cifar100, fashion_mnist, mnist, kmnist, svhn, "
           "synthetic, or folder:PATH (an ImageFolder tree with train/ and test/, optionally val/)"),
    Option("data_dir", "data", "data_dir", str, "where the data set is (default: $CIFARNETS_DATA_DIR or "
           "~/.cache/cifarnets/data)"),
    Option("download", "data", "download", bool, "download the data set if missing"),
    Option("split", "data", "split", typing.Union[str, tuple[int, int]],
           "train:val sizes, e.g. 40000:10000, or 'none' (default: the report's)"),
    Option("split_seed", "data", "seed", int, "seed of the val split and of --limit (default: 0)"),
    Option("limit", "data", "limit", int, "train on a stratified subset of N images"),
    Option("data_norm", "data", "norm", str, "input normalisation preset, e.g. cifar10_seed000, 'auto' (from the "
           "training images) or 'none' (default: the data set's own)"),
    Option("fit", "data", "fit", str, "how images of another size reach the 32x32 input: pad (zeros), resize, "
           "or none (default: pad)", choices=tuple(FITS)),
    Option("synthetic_sizes", "data", "synthetic_sizes", tuple[int, int], "the synthetic set's [TRAIN, TEST] sizes",
           grid_only=True),
    Option("test_limit", "data", "test_limit", int, "evaluate on a stratified subset of N test images",
           grid_only=True),
)


def _train_options() -> tuple[Option, ...]:
    hints = typing.get_type_hints(TrainConfig)
    out = []
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("group") is None:
            continue  # out_dir is the run folder (--out, a sweep's DIR/CELL); extra is for Python callers
        name = (f.metadata.get("cli") or f.name).lstrip("-").replace("-", "_")
        out.append(Option(name, "train", f.name, hints[f.name], f.metadata["help"]))
    return tuple(out)


TRAIN_OPTIONS: tuple[Option, ...] = _train_options()
#: Every option of a run, by name: the command line's flags and the grid's keys.
OPTIONS: dict[str, Option] = {o.name: o for o in (*MODEL_OPTIONS, *DATA_OPTIONS, *TRAIN_OPTIONS)}
#: Short option names of TrainConfig fields (``opt`` for ``optimizer``); a grid accepts both.
TRAIN_ALIASES: dict[str, str] = {o.name: o.target for o in TRAIN_OPTIONS if o.name != o.target}


def train_options() -> list[tuple[str, dataclasses.Field]]:
    """(flag, field) of every `TrainConfig` field the command line sets, in declaration order."""
    by_target = {o.target: o for o in TRAIN_OPTIONS}
    return [(by_target[f.name].flag, f) for f in dataclasses.fields(TrainConfig) if f.name in by_target]


def closest_option(name: str) -> str:
    """`` (did you mean 'x'?)`` for a mistyped option name, or ``""``."""
    names = [*OPTIONS, *TRAIN_ALIASES.values()]
    match = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


@dataclass(frozen=True)
class RunSpec:
    """What a run computes: the model and the keywords the user set, the data source, the training settings.

    `flags` are the user's `cifarnets.create` keywords only (the model's report fills in the rest);
    `test_limit` evaluates on a stratified subset of the test set (budget grids).
    """

    model: str
    data: DataSource
    train: TrainConfig
    flags: Mapping[str, Any] = field(default_factory=dict)
    test_limit: Optional[int] = None

    @classmethod
    def from_options(cls, values: Mapping[str, Any], *, defaults: Optional[Mapping[str, Any]] = None,
                     ignore: tuple[str, ...] = ()) -> "RunSpec":
        """Parse settings keyed by option name (`OPTIONS`, `TRAIN_ALIASES`, plus ``model``); None means unset.

        `defaults` are `TrainConfig` keywords applied under the given ones (a sweep cell's threads,
        the runtime's device); `ignore` names keys the caller handles itself (a grid's labels).
        Raises `ConfigError` naming every bad key or value.
        """
        model_kw: dict[str, Any] = {}
        data_kw: dict[str, Any] = {}
        train_kw: dict[str, Any] = dict(defaults or {})
        problems: list[str] = []
        model = values.get("model")
        for key, value in values.items():
            if key == "model" or key in ignore or value is None:
                continue
            option = OPTIONS.get(key) or OPTIONS.get(next((o for o, t in TRAIN_ALIASES.items() if t == key), ""))
            if option is None:
                problems.append(f"unknown key {key!r}{closest_option(key)}")
                continue
            if option.part != "model":  # model keywords are checked by the model's own table (_check_model)
                try:
                    value = option.check(value)
                except ConfigError as err:
                    problems.append(str(err))
                    continue
            if option.part == "model":
                none = option.target == "norm_layer" and isinstance(value, str) and value.lower() == "none"
                model_kw[option.target] = None if none else value
            elif option.part == "data":
                data_kw[option.target] = value
            else:
                if option.target in train_kw and option.target not in (defaults or {}):
                    problems.append(f"{key!r} and {option.target!r} set the same option; keep one")
                train_kw[option.target] = value
        problems += _check_model(model, model_kw)
        if "name" not in data_kw:
            problems.append("no dataset: set dataset (cifar10, cifar100, fashion_mnist, mnist, kmnist, svhn, "
                            "synthetic or folder:PATH)")
        test_limit = data_kw.pop("test_limit", None)
        if test_limit is not None and test_limit < 1:
            problems.append(f"test_limit must be a positive integer; got {test_limit!r}")
        data = train = None
        if "name" in data_kw:
            try:
                data = DataSource(**data_kw)
            except (ConfigError, ValueError, TypeError) as err:
                problems.append(str(err))
        try:
            train = TrainConfig(**train_kw)
        except (ConfigError, ValueError, TypeError) as err:
            problems.append(str(err))
        if problems:
            raise ConfigError("; ".join(problems), problems)
        assert data is not None and train is not None
        return cls(model=str(model), data=data, train=train, flags=model_kw, test_limit=test_limit)

    def replace(self, **changes: Any) -> "RunSpec":
        return dataclasses.replace(self, **changes)


def _check_model(model: Any, flags: Mapping[str, Any]) -> list[str]:
    """The problems of a model name and its keywords: an unknown name (the closest ones), a keyword the
    model does not take or of the wrong type (`cifarnets.check_model_kwargs`, the models' own table)."""
    from ..registry import check_model_kwargs, is_model, list_models

    if not isinstance(model, str) or not model:
        return ['no model: set model = "NAME" (see `cifarnets list`)']
    if not is_model(model):
        close = difflib.get_close_matches(model, list_models(), n=3)
        return [f"unknown model {model!r}" + (f" (did you mean {', '.join(close)}?)" if close else "") +
                " (see `cifarnets list`)"]
    by_target = {o.target: o.name for o in MODEL_OPTIONS}
    try:
        check_model_kwargs(model, dict(flags))
    except ConfigError as err:
        if "unexpected keyword" in str(err):
            from ..registry import model_keywords

            allowed = sorted(model_keywords(model))
            return [f"{model} takes no {by_target.get(k, k)!r} (its keywords: {', '.join(allowed)})"
                    for k in flags if k not in allowed]
        return list(err.problems)
    return []
