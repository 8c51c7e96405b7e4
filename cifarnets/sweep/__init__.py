"""Sweeps: a report's grid of runs from one grid file, one cell after another or many at once.

Every report is a grid of runs (the ResNet-18 report's hyper-parameter study: 10 runs of up
to 300 epochs; the deeper-VGG report: about 20). A grid file (TOML, `load_grid`) names the
cells; `run` trains each into an ordinary run folder under one sweep folder, skipping
finished cells and resuming interrupted ones, with the ``local`` engine (this process, or
``parallel=N`` worker processes pinned to GPUs) or the ``ray`` engine (Ray Tune: a cluster,
fractional GPUs, retries, ASHA and Optuna). `sweep_table` and `plot_sweep` put the measured
numbers beside the report's published ones; a grid's ``seeds = N`` trains every cell N times,
and the table reports each cell's spread over its seeds.

    >>> from cifarnets.sweep import parse_grid
    >>> grid = parse_grid('''
    ... [base]
    ... model = "vgg38"
    ... dataset = "synthetic"
    ... epochs = 2
    ... [axes]
    ... bn = [false, true]
    ... rc = [false, true]
    ... ''')
    >>> [c.name for c in grid.cells]
    ['vgg38_no-bn_no-rc', 'vgg38_no-bn_rc', 'vgg38_bn_no-rc', 'vgg38_bn_rc']

``cifarnets sweep GRID --out DIR`` is the command line; docs/sweeps.md has the details.
"""

from .api import ENGINES, SweepResult, load_sweep, run
from .cell import CellOutcome, cell_status, run_cell
from .grid import GRID_FILE, Cell, Grid, GridError, cell_name, grid_to_toml, load_grid, parse_grid
from .report import (
    RerunCheck,
    SweepTable,
    check_rerun,
    compare_groups,
    grad_ratio,
    plot_sweep,
    resolve_group,
    sweep_table,
    write_results,
)
from .search import SearchSpace, parse_search

__all__ = [
    "ENGINES", "GRID_FILE", "Cell", "CellOutcome", "Grid", "GridError", "RerunCheck", "SearchSpace", "SweepResult",
    "SweepTable", "cell_name", "cell_status", "check_rerun", "compare_groups", "grad_ratio", "grid_to_toml",
    "load_grid", "load_sweep", "parse_grid", "parse_search", "plot_sweep", "resolve_group", "run", "run_cell",
    "sweep_table", "write_results",
]
