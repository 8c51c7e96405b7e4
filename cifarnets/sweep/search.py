"""Search spaces for the ``ray`` engine: ``--search 'lr=loguniform(1e-4,1e-1)' --trials 20``.

Each ``KEY=DIST(ARGS)`` samples one grid key (any key a grid cell takes) from
``uniform(LOW,HIGH)``, ``loguniform(LOW,HIGH)``, ``randint(LOW,HIGH)`` (HIGH excluded) or
``choice(A,B,...)``; the rest of the cell is the grid's ``[base]``. Every trial is a cell
named ``trial-NNN_KEY-VALUE...`` in the sweep folder, like a grid cell.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .grid import Cell, Grid, GridError, cell_name, make_cell

__all__ = ["DISTRIBUTIONS", "SearchSpace", "parse_search"]

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
_EXPR = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([a-z]+)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class SearchSpace:
    """The sampled keys: ``{key: (distribution, args)}``."""

    dims: tuple[tuple[str, str, tuple[Any, ...]], ...]

    @property
    def keys(self) -> list[str]:
        return [k for k, _, _ in self.dims]

    def tune_space(self, searcher: str) -> dict[str, Any]:
        """The Tune ``param_space`` (``tune.loguniform(...)`` etc.)."""
        from ray import tune

        return {key: getattr(tune, dist)(list(args)) if dist == "choice" else getattr(tune, dist)(*args)
                for key, dist, args in self.dims}

    def cell(self, grid: Grid, values: dict[str, Any], index: Any) -> Cell:
        """The cell of one trial: the grid's base with the sampled `values`."""
        values = {k: (float(v) if isinstance(v, float) else v) for k, v in values.items()}
        settings = {**grid.base, **values}
        prefix = f"trial-{index:03d}" if isinstance(index, int) else f"trial-{index}"
        name = f"{prefix}_{cell_name(settings, list(values))}"
        return make_cell({**settings, "name": name}, list(values))

    def cell_from_status(self, sweep_dir: Path, grid: Grid, name: str) -> Cell:
        """A trial's cell, as its status file recorded it."""
        from .cell import cell_status

        stored = cell_status(sweep_dir, name).get("cell")
        if stored:
            return Cell.from_dict(stored)
        return dataclasses.replace(grid.cells[0], name=name, label=name)


def _literal(text: str) -> Any:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip("'\"")


def parse_search(expressions: Sequence[str], grid: Grid) -> SearchSpace:
    """Parse ``KEY=DIST(ARGS)`` expressions and check each key and range against the grid's base.

    Example:
        >>> from cifarnets.sweep.grid import parse_grid
        >>> g = parse_grid('[base]\\nmodel = "vgg08"\\ndataset = "synthetic"\\n')
        >>> parse_search(["lr=loguniform(1e-4,1e-1)"], g).dims
        (('lr', 'loguniform', (0.0001, 0.1)),)
    """
    if grid.axes or any(k for c in grid.cells for k in c.settings if k not in grid.base and k != "name"):
        raise GridError("--search samples around the grid's [base]; this grid also has [axes] or [[cells]]. "
                        "Use a grid file with only [base] (and [grid]) for a search.")
    dims: list[Any] = []
    for expr in expressions:
        match = _EXPR.match(expr)
        if not match:
            raise GridError(f"cannot read --search {expr!r}; write KEY=DIST(ARGS), e.g. 'lr=loguniform(1e-4,1e-1)' "
                            f"(DIST: {', '.join(DISTRIBUTIONS)})")
        key, dist, arg_text = match.groups()
        if dist not in DISTRIBUTIONS:
            raise GridError(f"--search {expr!r}: unknown distribution {dist!r}; use one of {', '.join(DISTRIBUTIONS)}")
        args = tuple(_literal(a) for a in arg_text.split(",") if a.strip())
        if dist != "choice":
            if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args) \
                    or not args[0] < args[1]:
                raise GridError(f"--search {expr!r}: {dist} takes two numbers LOW,HIGH with LOW < HIGH")
            if dist == "loguniform" and args[0] <= 0:
                raise GridError(f"--search {expr!r}: loguniform needs LOW > 0")
            if dist == "randint" and not all(isinstance(a, int) for a in args):
                raise GridError(f"--search {expr!r}: randint takes two integers")
        elif not args:
            raise GridError(f"--search {expr!r}: choice needs at least one value")
        if key in dict((k, 1) for k, _, _ in dims):
            raise GridError(f"--search names {key!r} twice")
        # Check the key and both ends of the range (or every choice) as real cells.
        probes = args if dist == "choice" else (args[0], args[1] if dist != "randint" else args[1] - 1)
        for value in probes:
            if isinstance(value, int) and dist in ("uniform", "loguniform"):
                value = float(value)
            try:
                make_cell({**grid.base, key: value}, [key])
            except GridError as err:
                raise GridError(f"--search {expr!r}: {err}") from None
        dims.append((key, dist, args))
    if not dims:
        raise GridError("--search needs at least one KEY=DIST(ARGS)")
    return SearchSpace(tuple(dims))
