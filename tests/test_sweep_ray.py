"""The ray sweep engine on a local Ray (2 CPUs, no dashboard), one Ray for the whole module.

The same 4-cell grid as tests/test_sweep_local.py: it completes with Ray Tune trials, one of
whose workers is killed after its first epoch and retried, resuming from its checkpoint; and
every cell's metrics and final weights equal those of the local engine (deterministic mode).
"""

from __future__ import annotations

import pytest
import ray  # the sweep extra, which the test extra includes
import ray.cloudpickle
import sweep_helpers
from test_sweep_local import CELLS, same_run, write_grid

from cifarnets.sweep import cell_status, run, sweep_table
from cifarnets.train import History

# Keep these tests in one pytest-xdist worker, so they share one Ray.
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("local")
    run(write_grid(folder), folder / "out")
    return folder / "out"


@pytest.fixture(scope="module")
def local_ray(reference):
    # The local engine's reference runs first, before Ray's processes share the cores.
    # Ray workers cannot import the tests folder; ship the callbacks by value.
    ray.cloudpickle.register_pickle_by_value(sweep_helpers)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_sweep(local_ray, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    kill = sweep_helpers.KillOnce("vgg08_bn_lr-0.003", 1, folder / "killed")
    events = []
    result = run(write_grid(folder), folder / "out", engine="ray", cpus_per_run=1, gpus_per_run=0, retries=2,
                 callbacks=[kill], progress=lambda kind, cell, outcome: events.append((kind, cell.name)))
    return folder, result, events


def test_a_four_cell_grid_completes_with_ray(ray_sweep):
    folder, result, events = ray_sweep
    assert [o.name for o in result.outcomes] == CELLS
    assert [o.status for o in result.outcomes] == ["done"] * 4
    assert sorted(name for kind, name in events if kind == "done") == sorted(CELLS)
    for name in CELLS:
        assert cell_status(folder / "out", name)["status"] == "done"


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(ray_sweep):
    folder, result, _ = ray_sweep
    assert (folder / "killed").is_file()  # the worker did die after epoch 1
    status = cell_status(folder / "out", "vgg08_bn_lr-0.003")
    assert status["attempts"] == 2 and status["resumed_from"] == 1
    assert result.outcomes[2].epochs == 2


def test_ray_and_local_give_the_same_cells(ray_sweep, reference):
    folder, _, _ = ray_sweep
    for name in CELLS:
        same_run(reference / name, folder / "out" / name)


def test_a_rerun_with_ray_skips_every_cell(ray_sweep):
    folder, _, _ = ray_sweep
    result = run(folder / "grid.toml", folder / "out", engine="ray", cpus_per_run=1, gpus_per_run=0)
    assert [o.status for o in result.outcomes] == ["skipped"] * 4


def test_search_with_optuna_and_asha_samples_cells_into_the_folder(local_ray, tmp_path):
    base = write_grid(tmp_path).read_text()
    base = base[:base.index("[axes]")].replace("epochs = 2", "epochs = 1")
    grid = tmp_path / "base.toml"
    grid.write_text(base)
    result = run(grid, tmp_path / "out", engine="ray", cpus_per_run=1, gpus_per_run=0,
                 search=["lr=loguniform(1e-3,1e-2)", "bn=choice(true,false)"], trials=2, searcher="optuna",
                 scheduler="asha")
    assert len(result.outcomes) == 2 and {o.status for o in result.outcomes} == {"done"}
    for outcome in result.outcomes:
        assert outcome.name.startswith("trial-")
        history = History.load(tmp_path / "out" / outcome.name)
        assert 1e-3 <= history.config["lr"] <= 1e-2 and len(history.epochs) == 1
        assert f"lr-{history.config['lr']:g}" in outcome.name
    table = sweep_table(tmp_path / "out")
    assert sorted(r["folder"] for r in table.rows) == sorted(o.name for o in result.outcomes)
