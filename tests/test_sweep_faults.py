"""Bad grids and sweep command lines: one line each, and a dry run checks what a real run checks."""

from __future__ import annotations

import os
import time

import pytest

from cifarnets.cli import main
from cifarnets.errors import RunError
from cifarnets.sweep import load_grid, run
from cifarnets.sweep.api import _sweep_lock

GRID = """
[base]
model = "vgg08"
width = 4
dataset = "synthetic"
synthetic_sizes = [200, 100]
split = "150:50"
epochs = 1
batch_size = 50
"""


def _one_line(capsys, argv, code=2):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_missing_or_non_utf8_grid_is_one_line(tmp_path, capsys):
    assert "does not exist" in _one_line(capsys, ["sweep", str(tmp_path / "nope.toml"), "--out", str(tmp_path)])
    bad = tmp_path / "latin1.toml"
    bad.write_bytes("[grid]\ntitle = 'caf\xe9'\n".encode("latin-1"))
    assert "not a UTF-8 text file" in _one_line(capsys, ["sweep", str(bad), "--out", str(tmp_path / "o")])


def test_a_huge_grid_is_refused_before_it_is_expanded(tmp_path, capsys):
    axes = "\n".join(f"{k} = [{', '.join(str(i) for i in range(10))}]"
                     for k in ("seed", "epochs", "batch_size", "padding", "check_every", "warmup_epochs"))
    grid = tmp_path / "huge.toml"
    grid.write_text(GRID + "\n[axes]\n" + axes + "\n")
    started = time.perf_counter()
    err = _one_line(capsys, ["sweep", str(grid), "--out", str(tmp_path / "o"), "--dry-run"])
    assert "1,000,000 cells" in err and "--max-cells" in err
    assert time.perf_counter() - started < 30  # not minutes of expanding a million cells
    small = tmp_path / "small.toml"
    small.write_text(GRID + "\n[axes]\nseed = [0, 1, 2]\n")
    with pytest.raises(ValueError, match="3 cells .* limit of 2"):
        load_grid(small, max_cells=2)


@pytest.mark.parametrize("extra, message", [
    (["--parallel", "0"], "parallel"),
    (["--parallel", "-2"], "parallel"),
    (["--retries", "-1"], "retries"),
    (["--search", "lr=loguniform(1e-4,1e-1)"], "needs the ray engine"),
])
def test_a_dry_run_makes_the_checks_of_a_real_run(tmp_path, capsys, extra, message):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    err = _one_line(capsys, ["sweep", str(grid), "--out", str(tmp_path / "o"), "--dry-run", *extra])
    assert message in err
    assert not (tmp_path / "o").exists()


def test_a_dry_run_checks_the_data_sets(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID.replace('dataset = "synthetic"', 'dataset = "cifar10"\ndata_dir = "' +
                                 str(tmp_path / "no-data") + '"'))
    err = _one_line(capsys, ["sweep", str(grid), "--out", str(tmp_path / "o"), "--dry-run"])
    assert "cifar" in err.lower() and "--download" in err


def test_a_dry_run_writes_nothing(tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID + "\n[axes]\nseed = [0, 1]\n")
    assert main(["sweep", str(grid), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "2 cell(s)" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()


def test_a_second_sweep_on_the_same_folder_is_told_who_holds_it(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    with _sweep_lock(tmp_path / "o"):
        with pytest.raises(RunError, match=f"another sweep is running in .*pid {os.getpid()}"):
            run(grid, tmp_path / "o")
    assert run(grid, tmp_path / "o").ok  # free again once the first one ends
