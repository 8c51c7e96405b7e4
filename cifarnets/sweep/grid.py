"""Grid files: a report's grid of runs as data (TOML), checked before anything trains.

Every report is a grid of runs (the ResNet-18 report's hyper-parameter study, the deeper-VGG
report's §5.1-5.4). A grid file says which::

    [grid]                      # optional: what the grid reproduces
    title = "VGG38 with BN and RC"
    report = "the VGG38 BN/RC report, Table 1"

    [base]                      # `cifarnets train` options (underscored) every cell shares
    model = "vgg38"
    dataset = "cifar100"
    epochs = 100

    [axes]                      # every combination is a cell
    bn = [false, true]
    rc = [false, true]

    [[cells]]                   # explicit extra cells (base + these keys)
    model = "vgg08"
    label = "VGG08"
    published = { val_acc = 46.84 }

    [[published]]               # published numbers of axis cells, matched by their settings
    match = { bn = true, rc = true }
    val_acc = 53.76

A cell's keys are the `cifarnets train` options with underscores: the model and its flags
(``model``, ``bn``, ``rc``, ``shortcut``, ``act``, ``norm``, ``width``, ``init``,
``num_classes``, ``in_chans``, ``drop_rate``), the data (``dataset``, ``data_dir``,
``download``, ``split``, ``split_seed``, ``limit``, ``data_norm``, and for small grids
``test_limit`` and ``synthetic_sizes``), and every `TrainConfig` field (``lr``, ``epochs``,
``batch_size``, ... with the command line's short names ``opt``, ``wd``, ``sched`` and
``sched_unit`` accepted too). Besides those, a cell may carry ``label`` (its name in tables),
``name`` (its folder, instead of the one made from its settings), ``group``, ``note``,
``prose_only`` (a setting the report mentions only in its prose) and ``published`` (the
report's numbers for it, shown beside the measured ones by ``cifarnets plot``).

Seeds: ``seeds = 3`` (in ``[base]`` or a cell) trains the cell with ``seed`` = 0, 1, 2 into
``NAME_seed-0`` .. ``NAME_seed-2``, as a ``seed`` axis does with the seeds it lists; cells that
differ only by seed form one seed group (`Cell.seed_group`, one label), reported as one row.

`load_grid` reports every unknown key and bad value, naming the cell, before any training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .._utils import PathLike
from ..errors import ConfigError

__all__ = [
    "Cell", "GRID_FILE", "Grid", "GridError", "MAX_CELLS", "META_KEYS", "load_grid", "parse_grid",
]

GRID_FILE = "grid.toml"
"""The copy of the grid a sweep keeps in its folder (what ``cifarnets plot DIR`` reads)."""

META_KEYS = ("label", "name", "group", "note", "prose_only", "published", "seeds")
# TrainConfig fields a grid may not set: the sweep owns the run folder; quiet is a runtime choice.
_NOT_IN_GRID = {"out_dir": "the sweep puts every cell in DIR/CELL (choose DIR with --out)",
                "extra": "not a training option", "quiet": "a runtime choice (the sweep sets it)",
                "label": None}
#: The most cells a grid may have unless the caller raises it (a typo of a few axes is a million runs).
MAX_CELLS = 10_000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


GridError = ConfigError  # kept name; the kind is cifarnets.errors.ConfigError


@dataclass(frozen=True)
class Cell:
    """One run of a grid: its folder name, model, flags, data, training settings and published numbers.

    Attributes:
        name: the run folder's name under the sweep folder, made from the settings that set this
            cell apart (axes and its own keys), e.g. ``vgg38_bn_no-rc_lr-0.01``.
        label: its name in tables and legends (the grid's ``label``, else `name`).
        model: registry name; `model_kwargs`: its `cifarnets.create` keywords.
        data: `cifarnets.data.load_dataset` keywords (plus ``test_limit``).
        train: `TrainConfig` keywords (without ``out_dir``).
        settings: every key of the cell as the grid gave it (for tables and matching).
        published: the report's numbers for this cell (``{}`` if none).
        seed_group: the name of the cell's seed group: its folder name without ``_seed-N``
            (cells that differ only by their seed share it; the folder name itself otherwise).
    """

    name: str
    label: str
    model: str
    model_kwargs: dict[str, Any]
    data: dict[str, Any]
    train: dict[str, Any]
    settings: dict[str, Any]
    published: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    note: str = ""
    prose_only: bool = False
    seed_group: str = ""

    @property
    def group_name(self) -> str:
        """The seed group this cell belongs to (its own name for a cell stored before seed groups)."""
        return self.seed_group or self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Cell":
        return cls(**dict(data))

    def spec(self, **train_defaults: Any) -> Any:
        """The cell's `cifarnets.train.RunSpec` (`train_defaults` under the grid's own settings)."""
        from ..train.spec import RunSpec

        options = {k: v for k, v in self.settings.items() if k not in META_KEYS}
        return RunSpec.from_options(options, defaults=train_defaults)


@dataclass(frozen=True)
class Grid:
    """A parsed, checked grid: its cells in file order (axes product first, then ``[[cells]]``)."""

    cells: tuple[Cell, ...]
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    title: str = ""
    report: str = ""
    note: str = ""
    text: str = ""
    path: Optional[str] = None

    def cell(self, name: str) -> Cell:
        for c in self.cells:
            if c.name == name:
                return c
        raise KeyError(f"no cell {name!r} in the grid; its cells: {', '.join(c.name for c in self.cells)}")

    def select(self, only: Optional[Sequence[str]]) -> tuple[Cell, ...]:
        """The cells whose name or label contains one of `only` (all cells for None)."""
        if not only:
            return self.cells
        chosen = tuple(c for c in self.cells if any(o.lower() in c.name.lower() or o.lower() in c.label.lower()
                                                    for o in only))
        if not chosen:
            raise GridError(f"--only {' '.join(only)} matches no cell; the cells: "
                            f"{', '.join(c.name for c in self.cells)}")
        return chosen


# ---------------------------------------------------------------------- reading


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)


def load_grid(path: PathLike, *, max_cells: int = MAX_CELLS) -> Grid:
    """Read and check a grid file (TOML); raise `GridError` naming every problem.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "g.toml"
        >>> _ = p.write_text('[base]\\nmodel = "vgg08"\\ndataset = "synthetic"\\n[axes]\\nlr = [1e-3, 1e-2]\\n')
        >>> [c.name for c in load_grid(p).cells]
        ['vgg08_lr-0.001', 'vgg08_lr-0.01']
    """
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist{' (it is a folder)' if path.is_dir() else ''}; "
                        "examples/grids/ has the reports' grids")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise GridError(f"{path} is not a UTF-8 text file (byte {err.start}: {err.reason}); a grid file is TOML "
                        "text: save it as UTF-8") from None
    except OSError as err:
        raise GridError(f"cannot read {path} ({err.strerror or err})") from None
    return parse_grid(text, path=str(path), max_cells=max_cells)


def grid_to_toml(data: Mapping[str, Any]) -> str:
    """The TOML text of a grid given as a dict (``{"base": {...}, "axes": {...}, "cells": [...]}``),
    so that a grid built in code is checked, named and kept (``out/grid.toml``) like a grid file.

    Example:
        >>> print(grid_to_toml({"base": {"model": "vgg08", "dataset": "synthetic"}, "axes": {"seed": [0, 1]}}))
        [base]
        model = 'vgg08'
        dataset = 'synthetic'
        <BLANKLINE>
        [axes]
        seed = [0, 1]
        <BLANKLINE>
    """
    def table(header: str, values: Mapping[str, Any]) -> str:
        lines = [header]
        for key, value in values.items():
            lines.append(f"{key} = [{_toml(value)}]" if isinstance(value, list) else f"{key} = {_toml(value)}")
        return "\n".join(lines) + "\n"

    parts = []
    for name in ("grid", "base", "axes"):
        if data.get(name):
            parts.append(table(f"[{name}]", data[name]))
    for name in ("cells", "published"):
        for entry in data.get(name, []):
            parts.append(table(f"[[{name}]]", entry))
    return "\n".join(parts)


def parse_grid(text: str, *, path: Optional[str] = None, max_cells: int = MAX_CELLS) -> Grid:
    """`load_grid` on the text of a grid file. A grid of more than `max_cells` cells is refused
    before any cell is built (the count is the product of the axes' lengths plus the cells)."""
    where = path or "the grid"
    try:
        raw = _toml_loads(text)
    except Exception as err:  # tomllib.TOMLDecodeError, without importing it at module level
        raise GridError(f"{where} is not valid TOML: {err}") from None
    problems: list[str] = []
    unknown_tables = sorted(set(raw) - {"grid", "base", "axes", "cells", "published"})
    if unknown_tables:
        problems.append(f"unknown top-level key(s) {', '.join(unknown_tables)}; a grid has [grid], [base], "
                        "[axes], [[cells]] and [[published]]")
    meta = raw.get("grid", {})
    base = raw.get("base", {})
    axes = raw.get("axes", {})
    extra = raw.get("cells", [])
    published = raw.get("published", [])
    if not isinstance(meta, dict):
        problems.append("[grid] must be a table (title, report, note)")
        meta = {}
    for key in sorted(set(meta) - {"title", "report", "note"}):
        problems.append(f"[grid] has unknown key {key!r} (it takes title, report, note)")
    if not isinstance(base, dict):
        problems.append("[base] must be a table of options")
        base = {}
    if not isinstance(axes, dict):
        problems.append("[axes] must be a table of lists")
        axes = {}
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            problems.append(f"[axes] {key} must be a non-empty list of values, e.g. {key} = [{_toml(values)}]")
        elif key in META_KEYS:
            problems.append(f"[axes] cannot vary {key!r}; it describes a cell (use [[cells]])")
    if not isinstance(extra, list) or not all(isinstance(c, dict) for c in extra):
        problems.append("cells must be an array of tables: [[cells]]")
        extra = []
    if problems:
        raise GridError(f"{where}: " + "; ".join(problems))

    axis_items = [(k, v) for k, v in axes.items()]
    count = (math.prod(len(v) for _, v in axis_items) if axis_items else (0 if extra else 1)) + len(extra)
    if count > max_cells:
        shape = " x ".join(f"{k} {len(v)}" for k, v in axis_items)
        raise GridError(f"{where} has {count:,} cells ({shape}{' + ' if shape and extra else ''}"
                        f"{f'{len(extra)} [[cells]]' if extra else ''}), more than the limit of {max_cells:,}; "
                        "shorten the axes, or raise the limit if you mean it (cifarnets sweep --max-cells N, "
                        "Python: max_cells=N)")
    raw_cells: list[tuple[dict[str, Any], list[str], str]] = []
    if axis_items:
        for combo in itertools.product(*(v for _, v in axis_items)):
            own = {k: v for (k, _), v in zip(axis_items, combo)}
            origin = "axes " + ", ".join(f"{k}={_toml(v)}" for k, v in own.items())
            raw_cells.append(({**base, **own}, list(own), origin))
    elif not extra:
        raw_cells.append((dict(base), [], "[base]"))
    for i, entry in enumerate(extra, 1):
        own_keys = [k for k in entry if k not in META_KEYS]
        raw_cells.append(({**base, **entry}, own_keys, f"[[cells]] #{i}"))

    raw_cells = _expand_seeds(raw_cells, problems, max_cells)
    if problems:
        raise GridError(f"{where}: " + "; ".join(problems))
    cells: list[Cell] = []
    by_problem: dict[str, list[str]] = {}  # the same mistake in every cell is reported once
    for settings, own_keys, origin in raw_cells:
        try:
            cells.append(make_cell(settings, own_keys))
        except GridError as err:
            for message in err.problems:
                by_problem.setdefault(message, []).append(origin)
    for message, origins in by_problem.items():
        where_in = origins[0] if len(origins) == 1 else f"{len(origins)} cells ({origins[0]}, ...)"
        problems.append(f"{where_in}: {message}")
    if problems:
        raise GridError(f"{where}: " + "; ".join(problems))

    cells = _attach_published(cells, published, problems)
    names: dict[str, int] = {}
    for c in cells:
        names[c.name] = names.get(c.name, 0) + 1
    clashes = sorted(n for n, k in names.items() if k > 1)
    if clashes:
        problems.append(f"several cells would share the folder(s) {', '.join(clashes)}; give them distinct "
                        "settings or a `name`")
    if problems:
        raise GridError(f"{where}: " + "; ".join(problems))
    return Grid(cells=tuple(cells), base=dict(base), axes={k: list(v) for k, v in axes.items()},
                title=str(meta.get("title", "")), report=str(meta.get("report", "")), note=str(meta.get("note", "")),
                text=text, path=path)


def _expand_seeds(raw_cells: list[tuple[dict[str, Any], list[str], str]], problems: list[str],
                  max_cells: int) -> list[tuple[dict[str, Any], list[str], str]]:
    """Each cell with ``seeds = N`` becomes N cells with ``seed`` = 0 .. N-1 (a seed group)."""
    out: list[tuple[dict[str, Any], list[str], str]] = []
    for settings, own_keys, origin in raw_cells:
        if "seeds" not in settings:
            out.append((settings, own_keys, origin))
            continue
        n = settings["seeds"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            problems.append(f"{origin}: seeds must be a positive integer (seeds = 3 trains seed 0, 1, 2); got {n!r}")
            continue
        if "seed" in settings:
            problems.append(f"{origin}: both seeds = {n} and seed = {_toml(settings['seed'])}; seeds = N trains "
                            "seed 0 .. N-1, so keep one (or list the seeds as an axis: seed = [0, 1, 2])")
            continue
        if len(out) + n > max_cells:
            problems.append(f"{origin}: seeds = {n} makes more than the limit of {max_cells:,} cells; fewer seeds, "
                            "or raise the limit (cifarnets sweep --max-cells N)")
            return out
        for seed in range(n):
            out.append(({**settings, "seed": seed}, [*own_keys, "seed"], f"{origin}, seed {seed}"))
    return out


def _attach_published(cells: list[Cell], entries: Any, problems: list[str]) -> list[Cell]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.append("published must be an array of tables: [[published]] with a `match` table")
        return cells
    out = list(cells)
    for i, entry in enumerate(entries, 1):
        match = entry.get("match")
        if not isinstance(match, dict) or not match:
            problems.append(f"[[published]] #{i} needs a `match` table naming the cell's settings, "
                            "e.g. match = {{ bn = true }}")
            continue
        numbers = {k: v for k, v in entry.items() if k != "match"}
        hits = [j for j, c in enumerate(out) if all(_same(c.settings.get(k), v) for k, v in match.items())]
        if not hits:
            problems.append(f"[[published]] #{i} (match {match}) matches no cell")
        for j in hits:
            out[j] = dataclasses.replace(out[j], published={**out[j].published, **numbers})
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


# ---------------------------------------------------------------------- one cell


def make_cell(settings: dict[str, Any], own_keys: list[str]) -> Cell:
    """Check a cell's settings (through `RunSpec.from_options`, as the command line's) and build it."""
    from ..train.spec import OPTIONS, RunSpec

    problems: list[str] = []
    options = {k: v for k, v in settings.items() if k not in META_KEYS}
    for key in list(options):
        if key in _NOT_IN_GRID:
            if _NOT_IN_GRID[key]:
                problems.append(f"{key!r} cannot be set in a grid: {_NOT_IN_GRID[key]}")
            del options[key]
    spec = None
    try:
        spec = RunSpec.from_options(options)
    except ConfigError as err:
        problems += err.problems
    published = settings.get("published", {})
    if not isinstance(published, dict) or not all(isinstance(v, (int, float, str)) for v in published.values()):
        problems.append("published must be a table of numbers, e.g. published = { val_acc = 46.84 }")
        published = {}
    for key in ("label", "name", "group", "note"):
        if key in settings and not isinstance(settings[key], str):
            problems.append(f"{key} must be a string")
    if "prose_only" in settings and not isinstance(settings["prose_only"], bool):
        problems.append("prose_only must be true or false")
    if spec is not None and not problems and spec.flags:
        problems += _check_model_values(spec.model, spec.flags)
    if problems or spec is None:
        raise GridError("; ".join(problems), problems)
    # A seed goes last in the folder name, so the seeds of one setting sort together and their
    # group's name is the folder name without "_seed-N".
    varied = [k for k in own_keys if k != "seed"]
    group_name = settings.get("name") or cell_name(settings, varied)
    name = f"{group_name}_seed-{_value_text(settings['seed'])}" if "seed" in own_keys else group_name
    if not _NAME_RE.match(name) or name.startswith("_"):
        raise GridError(f"cell name {name!r} is not a usable folder name (letters, digits, . _ + = -; not starting "
                        "with _ or .)")
    data = {k: v for k, v in options.items() if k in OPTIONS and OPTIONS[k].part == "data"}
    train = {OPTIONS[k].target: (list(v) if isinstance(v, list) else v) for k, v in options.items()
             if k in OPTIONS and OPTIONS[k].part == "train"}
    return Cell(name=name, label=settings.get("label") or group_name, model=spec.model, model_kwargs=dict(spec.flags),
                data=data, train=train, settings={k: v for k, v in settings.items() if k != "published"},
                published=dict(published), group=str(settings.get("group", "")), note=str(settings.get("note", "")),
                prose_only=bool(settings.get("prose_only", False)), seed_group=group_name)


def _check_model_values(model: str, model_kwargs: Mapping[str, Any]) -> list[str]:
    """Build the model on the meta device (no memory, no initialisation): bad flag values fail here."""
    import warnings

    import torch

    from ..registry import create

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            create(model, **model_kwargs)
    except (TypeError, ValueError, KeyError) as err:
        return [f"{model} with {', '.join(f'{k}={v!r}' for k, v in model_kwargs.items())}: {err}"]
    return []


# ---------------------------------------------------------------------- names


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "-".join(_value_text(v) for v in value)
    return re.sub(r"[^A-Za-z0-9._+]+", "-", str(value)).strip("-") or "x"


def cell_name(settings: Mapping[str, Any], keys: Sequence[str]) -> str:
    """The folder name of a cell from the settings that set it apart (`keys`, in grid order).

    The model comes first, then a true flag as its key, a false one as ``no-KEY``, others as
    ``KEY-VALUE``; the base settings every cell shares are left out.

    Example:
        >>> cell_name({"model": "vgg38", "bn": True, "rc": False, "lr": 0.01}, ["bn", "rc", "lr"])
        'vgg38_bn_no-rc_lr-0.01'
    """
    parts = [_value_text(settings.get("model", "run"))]
    for key in keys:
        value = settings[key]
        if key == "model":
            continue
        if isinstance(value, bool):
            parts.append(key if value else f"no-{key}")
        else:
            parts.append(f"{key}-{_value_text(value)}")
    name = "_".join(parts)
    if len(name) > 100:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:90]}_{digest}"
    return name


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return ", ".join(_toml(v) for v in value)
    return str(value)
