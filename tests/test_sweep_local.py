"""The local sweep engine on the synthetic set with a tiny VGG08 (cifarnets.sweep, cifarnets sweep).

A 4-cell grid completes, a rerun skips it, an interrupted cell resumes exactly, a failing
cell is recorded while the others finish, two worker processes give the same weights as one
process, and a worker killed mid-cell is started again and resumes from its checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sweep_helpers
import torch
from safetensors.torch import load_file

from cifarnets.cli import main
from cifarnets.sweep import cell_status, load_grid, run, sweep_table
from cifarnets.train import History

GRID = """
[grid]
title = "tiny test grid"
[base]
model = "vgg08"
width = 4
dataset = "synthetic"
synthetic_sizes = [300, 100]
split = "200:100"
epochs = 2
batch_size = 50
deterministic = true
device = "cpu"
[axes]
bn = [false, true]
lr = [3e-3, 1e-2]
[[published]]
match = { bn = true, lr = 1e-2 }
val_acc = 12.5
"""
CELLS = ["vgg08_no-bn_lr-0.003", "vgg08_no-bn_lr-0.01", "vgg08_bn_lr-0.003", "vgg08_bn_lr-0.01"]


def write_grid(folder: Path, text: str = GRID) -> Path:
    path = folder / "grid.toml"
    path.write_text(text)
    return path


def same_run(a: Path, b: Path) -> None:
    """Same per-epoch metrics, test result and final weights (bit for bit)."""
    ha, hb = History.load(a), History.load(b)
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
    assert [[getattr(e, k) for k in keys] for e in ha.epochs] == [[getattr(e, k) for k in keys] for e in hb.epochs]
    assert ha.test == hb.test
    wa, wb = load_file(str(a / "last.safetensors")), load_file(str(b / "last.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The 4-cell grid, one cell after another in this process."""
    folder = tmp_path_factory.mktemp("sequential")
    events = []
    result = run(write_grid(folder), folder / "out",
                 progress=lambda kind, cell, outcome: events.append((kind, cell.name)))
    return folder / "out", result, events


def test_a_four_cell_grid_completes_into_run_folders(sequential):
    out, result, events = sequential
    assert [o.name for o in result.outcomes] == CELLS
    assert [o.status for o in result.outcomes] == ["done"] * 4 and result.ok
    for name in CELLS:
        history = History.load(out / name)
        assert len(history.epochs) == 2 and history.test["n"] == 100
        assert cell_status(out, name)["status"] == "done"
    expected = {"width": 4, "bn": True, "in_chans": 3, "num_classes": 10}
    assert History.load(out / "vgg08_bn_lr-0.01").model_kwargs == expected
    assert History.load(out / "vgg08_bn_lr-0.01").config["lr"] == 0.01
    assert (out / "grid.toml").read_text() == GRID
    assert [kind for kind, _ in events] == ["start", "done"] * 4
    # The run folders are the sweep's only state: no _status/ folder, no summary file beside them.
    assert sorted(p.name for p in out.iterdir() if p.name != ".sweep.lock") == sorted([*CELLS, "grid.toml"])
    assert all(History.load(out / n).config["threads"] == 1 for n in CELLS)  # engine-independent numbers


def test_a_rerun_skips_finished_cells(sequential, tmp_path):
    out, _, _ = sequential
    before = {n: (out / n / "last.safetensors").stat().st_mtime_ns for n in CELLS}
    result = run(write_grid(tmp_path), out)
    assert [o.status for o in result.outcomes] == ["skipped"] * 4
    assert {n: (out / n / "last.safetensors").stat().st_mtime_ns for n in CELLS} == before


def test_a_changed_grid_is_refused_before_touching_the_folder(sequential, tmp_path):
    out, _, _ = sequential
    changed = write_grid(tmp_path, GRID.replace("epochs = 2", "epochs = 3"))
    before = {n: (out / n / "history.json").read_text() for n in CELLS}
    with pytest.raises(ValueError, match="epochs=2 \\(the grid now says 3\\)"):
        run(changed, out)
    assert {n: (out / n / "history.json").read_text() for n in CELLS} == before


def test_an_interrupted_cell_resumes_from_its_last_epoch(sequential, tmp_path):
    out, _, _ = sequential
    grid = write_grid(tmp_path)
    target = tmp_path / "out"
    stop = sweep_helpers.InterruptOnce("vgg08_bn_lr-0.003", 1, tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        run(grid, target, callbacks=[stop])
    assert len(History.load(target / "vgg08_bn_lr-0.003").epochs) == 1
    assert not (target / "vgg08_bn_lr-0.01").exists()
    result = run(grid, target, callbacks=[stop])
    assert [o.status for o in result.outcomes] == ["skipped", "skipped", "done", "done"]
    assert result.outcomes[2].resumed_from == 1
    for name in CELLS:  # identical to the uninterrupted sweep
        same_run(out / name, target / name)


def test_a_failed_cell_is_recorded_and_the_others_finish(tmp_path):
    grid = write_grid(tmp_path, GRID.replace("epochs = 2", "epochs = 1"))
    result = run(grid, tmp_path / "out", callbacks=[sweep_helpers.Fail("vgg08_no-bn_lr-0.01")])
    assert [o.status for o in result.outcomes] == ["done", "failed", "done", "done"]
    assert not result.ok and "simulated failure" in result.failed[0].error
    status = cell_status(tmp_path / "out", "vgg08_no-bn_lr-0.01")
    assert status["status"] == "failed" and "RuntimeError" in status["traceback"]


def test_two_workers_match_one_process_and_a_killed_worker_resumes(sequential, tmp_path, monkeypatch):
    out, _, _ = sequential
    # Worker processes are spawned: they import the callbacks from this folder by name.
    monkeypatch.syspath_prepend(str(Path(sweep_helpers.__file__).parent))
    kill = sweep_helpers.KillOnce("vgg08_no-bn_lr-0.01", 1, tmp_path / "killed")
    # Pretend there are two GPUs: worker slot k is pinned to GPU k (the cells themselves train on the CPU).
    monkeypatch.setattr("cifarnets.sweep.local._gpu_count", lambda: 2)
    (tmp_path / "workers").mkdir()
    record = sweep_helpers.RecordWorker(tmp_path / "workers")
    events = []
    result = run(write_grid(tmp_path), tmp_path / "out", parallel=2, callbacks=[record, kill], retries=1,
                 only=["lr-0.01"], progress=lambda kind, cell, outcome: events.append((kind, cell.name)))
    assert (tmp_path / "killed").is_file()  # the worker did die
    assert ("retry", "vgg08_no-bn_lr-0.01") in events
    assert [(o.name, o.status) for o in result.outcomes] == [("vgg08_no-bn_lr-0.01", "done"),
                                                             ("vgg08_bn_lr-0.01", "done")]
    killed = result.outcomes[0]
    assert killed.resumed_from == 1  # from its checkpoint, not from epoch 0
    assert cell_status(tmp_path / "out", killed.name)["attempts"] == 2
    for outcome in result.outcomes:
        same_run(out / outcome.name, tmp_path / "out" / outcome.name)
    workers = [json.loads(p.read_text()) for p in (tmp_path / "workers").iterdir()]
    assert len(workers) == 3  # two cells, one of them twice
    assert {w["gpu"] for w in workers} <= {"0", "1"} and len({w["gpu"] for w in workers}) == 2
    assert {w["threads"] for w in workers} == {1}  # the cell's setting, not cpu_count // parallel


def test_plot_shows_published_beside_final_and_best(sequential, tmp_path, capsys):
    out, _, _ = sequential
    table = sweep_table(out)
    assert [r["folder"] for r in table.rows] == CELLS
    row = table.rows[3]
    history = History.load(out / CELLS[3])
    assert row["final_val_acc"] == history.epochs[-1].val_acc
    assert row["best_val_acc"] == history.best().val_acc and row["best_epoch"] == history.best_epoch
    assert row["published_val_acc"] == 12.5 and "published_val_acc" not in table.rows[0]
    assert main(["plot", str(out), "--out", str(tmp_path / "plots")]) == 0
    markdown = (tmp_path / "plots" / "results.md").read_text()
    header = markdown.splitlines()[2]
    for column in ("final val acc", "best val acc", "best epoch", "published val acc", "test acc (best ckpt)"):
        assert column in header
    assert (tmp_path / "plots" / "curves.png").stat().st_size > 0
    assert (tmp_path / "plots" / CELLS[0] / "gradient_flow.png").is_file()
    assert "12.50" in capsys.readouterr().out


def test_cli_sweep_runs_and_reports(tmp_path, capsys):
    text = GRID.replace("epochs = 2", "epochs = 1").replace("lr = [3e-3, 1e-2]", "lr = [3e-3]")
    grid = write_grid(tmp_path, text[:text.index("[[published]]")])
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out"), "--only", "no-bn"]) == 0
    printed = capsys.readouterr().out
    assert "done     vgg08_no-bn_lr-0.003" in printed and "1 done" in printed
    assert [p.name for p in sorted((tmp_path / "out").iterdir()) if p.name.startswith("vgg08")] == \
        ["vgg08_no-bn_lr-0.003"]
    assert load_grid(tmp_path / "out" / "grid.toml").cells[0].name == "vgg08_no-bn_lr-0.003"


def test_ray_is_imported_only_by_the_ray_engine():
    code = ("import sys, cifarnets.sweep, cifarnets.cli; from cifarnets.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert printed.strip() == "[]"
