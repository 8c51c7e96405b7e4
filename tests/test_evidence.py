"""Seeds as a grid axis, the spread of a cell over its seeds, `cifarnets compare`, and the committed
result files that README quotes. Everything here is built from tiny histories in code: no training."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from cifarnets.cli import main
from cifarnets.errors import ConfigError, RunNotFoundError
from cifarnets.sweep import (
    check_rerun,
    compare_groups,
    parse_grid,
    plot_sweep,
    resolve_group,
    sweep_table,
    write_results,
)
from cifarnets.train import results_table
from cifarnets.train.history import EpochRecord, History
from cifarnets.train.results import GROUP_METRICS
from cifarnets.train.stats import student_t_cdf, student_t_quantile, summarize, welch_test

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the statistics, by hand


@pytest.mark.parametrize("df, quantile", [(1, 12.706205), (2, 4.302653), (4, 2.776445), (30, 2.042272)])
def test_t_quantiles_are_the_tables(df, quantile):
    assert student_t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-5)
    assert student_t_cdf(quantile, df) == pytest.approx(0.975, abs=1e-6)  # the quantile is rounded
    assert student_t_quantile(0.025, df) == pytest.approx(-quantile, abs=1e-5)


def test_t_cdf_of_one_degree_is_the_cauchy():
    for t in (-3.0, -0.5, 0.0, 0.7, 5.0):
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)


def test_summary_of_three_values():
    s = summarize([44.0, 40.0, 42.0])
    assert (s.n, s.mean, s.std, s.min, s.max) == (3, 42.0, 2.0, 40.0, 44.0)
    half = 4.302653 * 2.0 / math.sqrt(3)  # t(0.975, 2) * std / sqrt(n)
    assert s.interval == pytest.approx((42.0 - half, 42.0 + half), abs=1e-5)
    assert s.text() == "42.00 ± 2.00"


def test_two_runs_have_a_spread_but_no_interval_and_one_run_neither():
    two = summarize([1.0, 3.0])
    assert two.std == pytest.approx(math.sqrt(2.0)) and two.interval is None
    one = summarize([5.0, None, float("nan")])
    assert (one.n, one.std, one.interval) == (1, None, None)
    assert summarize([None]) is None


def test_the_gradient_ratio_is_summarised_geometrically():
    g = summarize([1e-9, 1e-7, 1e-8], geometric=True)
    assert g.mean == pytest.approx(1e-8) and g.std == pytest.approx(10.0)  # log10 values -9, -7, -8: std 1
    half = 4.302653 / math.sqrt(3)
    assert g.interval == pytest.approx((10 ** (-8 - half), 10 ** (-8 + half)), rel=1e-4)
    assert summarize([1e-9, 1e-7, 1e-8]).mean == pytest.approx(3.7e-8)  # the arithmetic mean: the largest decides
    assert g.text() == "1e-08 ×/÷ 10"


def test_published_inside_or_outside_the_spread():
    s = summarize([40.0, 42.0, 44.0])  # min-max 40-44, interval about 37.0-47.0
    assert s.contains(41.0) == {"inside_min_max": True, "inside_interval": True}
    assert s.contains(46.0) == {"inside_min_max": False, "inside_interval": True}
    assert s.contains(48.0) == {"inside_min_max": False, "inside_interval": False}
    assert summarize([40.0, 44.0]).contains(41.0) == {"inside_min_max": True, "inside_interval": None}


def test_welch_test_by_hand():
    # [1, 2, 3] against [4, 5, 6]: difference -3, standard error sqrt(1/3 + 1/3), df 4.
    w = welch_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert w.t == pytest.approx(-3.674235, abs=1e-6) and w.df == pytest.approx(4.0)
    assert w.p == pytest.approx(0.021312, abs=1e-6)
    # 95 % intervals 2 -+ 2.48 and 5 -+ 2.48 overlap although p < 0.05: overlap is the stricter test.
    assert w.overlap is True
    # Unequal sizes and variances: var 13/3 and 0.5/2, Welch-Satterthwaite df 2.2226.
    w = welch_test([40.0, 42.0, 47.0], [30.0, 31.0])
    assert w.t == pytest.approx(5.838742, abs=1e-6) and w.df == pytest.approx(2.222630, abs=1e-6)
    assert w.p == pytest.approx(0.021875, abs=1e-6)
    assert w.overlap is None  # the second group has no interval (n = 2)


def test_welch_test_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    a, b = [0.31, 0.29, 0.35, 0.30], [0.36, 0.41, 0.33]
    ours, theirs = welch_test(a, b), stats.ttest_ind(a, b, equal_var=False)
    assert ours.t == pytest.approx(theirs.statistic, rel=1e-9) and ours.p == pytest.approx(theirs.pvalue, rel=1e-7)


def test_welch_test_needs_two_runs_and_some_spread():
    one = welch_test([40.0], [41.0, 43.0])
    assert one.p is None and "no spread can be measured" in one.reason
    flat = welch_test([10.0, 10.0, 10.0], [10.0, 10.0])
    assert flat.p is None and "they are equal" in flat.reason
    close = welch_test([40.0, 42.0, 44.0], [41.0, 43.0, 45.0])
    assert close.p > 0.5 and close.overlap is True


# ---------------------------------------------------------------- seeds in a grid

GRID = """
[grid]
title = "seeds"

[base]
model = "vgg08"
dataset = "synthetic"
epochs = 1
seeds = 3

[[cells]]
label = "plain"

[[cells]]
label = "BN"
bn = true
seeds = 2

[[published]]
match = { bn = true }
val_acc = 47.5
"""


def test_seeds_make_groups_with_one_label_and_numbered_folders():
    grid = parse_grid(GRID)
    assert [(c.name, c.label, c.seed_group, c.train["seed"]) for c in grid.cells] == [
        ("vgg08_seed-0", "plain", "vgg08", 0), ("vgg08_seed-1", "plain", "vgg08", 1),
        ("vgg08_seed-2", "plain", "vgg08", 2), ("vgg08_bn_seed-0", "BN", "vgg08_bn", 0),
        ("vgg08_bn_seed-1", "BN", "vgg08_bn", 1)]
    assert all(c.published == {"val_acc": 47.5} for c in grid.cells if c.label == "BN")


def test_a_seed_axis_is_a_group_too_and_the_seed_goes_last_in_the_name():
    grid = parse_grid('[base]\nmodel = "vgg08"\ndataset = "synthetic"\n[axes]\nseed = [0, 1]\nlr = [0.1, 0.01]\n')
    assert [c.name for c in grid.cells] == ["vgg08_lr-0.1_seed-0", "vgg08_lr-0.01_seed-0", "vgg08_lr-0.1_seed-1",
                                            "vgg08_lr-0.01_seed-1"]
    assert {c.seed_group for c in grid.cells} == {"vgg08_lr-0.1", "vgg08_lr-0.01"}
    assert grid.cells[0].label == grid.cells[2].label == "vgg08_lr-0.1"
    plain = parse_grid('[base]\nmodel = "vgg08"\ndataset = "synthetic"\nseed = 4\n')
    assert [(c.name, c.seed_group) for c in plain.cells] == [("vgg08", "vgg08")]  # a base seed sets nothing apart


@pytest.mark.parametrize("text, message", [
    ('seeds = 2\nseed = 1\n', "both seeds = 2 and seed = 1"),
    ('seeds = 0\n', "seeds must be a positive integer"),
    ('seeds = "3"\n', "seeds must be a positive integer"),
    ('seeds = 20\n', "more than the limit of 10"),
])
def test_bad_seeds_are_refused_before_anything_trains(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid('[base]\nmodel = "vgg08"\ndataset = "synthetic"\n' + text, max_cells=10)
    with pytest.raises(ConfigError, match="cannot vary 'seeds'"):
        parse_grid('[base]\nmodel = "vgg08"\ndataset = "synthetic"\n[axes]\nseeds = [1, 2]\n')


# ---------------------------------------------------------------- a sweep folder without training


def history(val_accs, *, seed, test=None, ratio=1e-3, model="vgg08", **kwargs) -> History:
    epochs = [EpochRecord(epoch=e, train_loss=2.0 / e, train_acc=v - 1, val_loss=2.2 / e, val_acc=v, lr=1e-3,
                          epoch_seconds=1.0, grad_flow={"stem.conv": ratio, "head.fc": 1.0})
              for e, v in enumerate(val_accs, 1)]
    best = max(epochs, key=lambda r: r.val_acc).epoch
    return History(model=model, params=100, epochs=epochs, best_epoch=best, config={"seed": seed, "lr": 1e-3},
                   test={"loss": 1.0, "acc": test if test is not None else val_accs[-1]}, **kwargs)


@pytest.fixture
def sweep(tmp_path):
    """GRID's sweep folder with plain: final val acc 40, 42, 44; BN: 47, 49 (best 50 and 49)."""
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "grid.toml").write_text(GRID)
    runs = {"vgg08_seed-0": history([30.0, 40.0], seed=0, ratio=1e-9),
            "vgg08_seed-1": history([31.0, 42.0], seed=1, ratio=1e-7),
            "vgg08_seed-2": history([32.0, 44.0], seed=2, ratio=1e-8),
            "vgg08_bn_seed-0": history([50.0, 47.0], seed=0, model_kwargs={"bn": True}),
            "vgg08_bn_seed-1": history([45.0, 49.0], seed=1, model_kwargs={"bn": True})}
    for name, h in runs.items():
        (out / name).mkdir()
        (out / name / "history.json").write_text(h.to_json())
    return out


def test_sweep_table_groups_the_seeds(sweep):
    table = sweep_table(sweep)
    assert [r["folder"] for r in table.rows] == ["vgg08_seed-0", "vgg08_seed-1", "vgg08_seed-2", "vgg08_bn_seed-0",
                                                 "vgg08_bn_seed-1"]
    plain, bn = table.groups()
    assert (plain.label, plain.n, plain.seeds) == ("plain", 3, (0, 1, 2))
    assert plain.stats["final_val_acc"].mean == 42.0 and plain.stats["final_val_acc"].std == 2.0
    assert plain.stats["grad_ratio"].geometric and plain.stats["grad_ratio"].mean == pytest.approx(1e-8)
    assert bn.stats["best_val_acc"].mean == 49.5 and bn.stats["final_val_acc"].interval is None  # n = 2
    # The report's val_acc is its final epoch's: 47.5 lies inside BN's final 47-49.
    assert bn.published == {"final_val_acc": {"key": "val_acc", "value": 47.5, "inside_min_max": True,
                                              "inside_interval": None}}
    data = table.to_data()
    assert [g["n"] for g in data["groups"]] == [3, 2] and len(data["runs"]) == 5
    assert data["groups"][0]["stats"]["final_val_acc"]["std"] == 2.0
    json.loads(table.to_json())


def test_the_markdown_shows_the_groups_spread_then_the_runs(sweep):
    text = sweep_table(sweep).to_markdown()
    assert "| plain | final val acc | 3 | 42.00 ± 2.00 | 40.00–44.00 | 37.03–46.97 |" in text
    assert "| BN | final val acc | 2 | 48.00 ± 1.41 | 47.00–49.00 | – | 47.50 | yes | – |" in text
    assert "| plain | grad first/last (geometric) | 3 | 1e-08 ×/÷ 10 |" in text
    assert "| plain | 2 | done |" in text  # the per-run table has the seed column


def test_single_runs_that_differ_only_by_seed_are_grouped_too():
    runs = [history([40.0], seed=0), history([44.0], seed=1), history([40.0], seed=0, model_kwargs={"bn": True})]
    groups = results_table(runs).groups()
    assert [(g.label, g.n) for g in groups] == [("vgg08", 2), ("vgg08 bn", 1)]
    twice = results_table([history([40.0], seed=0), history([44.0], seed=0)])  # one seed twice: two runs, not seeds
    assert [g.n for g in twice.groups()] == [1, 1] and not twice.has_seed_groups()


def test_plot_of_a_sweep_with_seeds_draws_each_cell_as_mean_and_band(sweep):
    from matplotlib.image import imread

    written = plot_sweep(sweep)
    png = sweep / "plots" / "curves_seeds.png"
    assert png in written and imread(png).shape[1] > 1000  # a real picture, as wide as the two panels
    single = sweep.parent / "single"  # one run per cell: no band to draw
    (single / "vgg08").mkdir(parents=True)
    (single / "grid.toml").write_text('[base]\nmodel = "vgg08"\ndataset = "synthetic"\nepochs = 2\n')
    (single / "vgg08" / "history.json").write_text(history([30.0, 40.0], seed=0).to_json())
    assert [p.name for p in plot_sweep(single)] == ["curves.png", "gradient_flow.png", "results.md", "results.csv"]


def test_compare_two_cells_of_a_sweep(sweep, capsys):
    label_a, a = resolve_group("vgg08", sweep)
    label_b, b = resolve_group(sweep / "BN")
    assert (label_a, len(a), label_b, len(b)) == ("plain", 3, "BN", 2)
    test = compare_groups(a, b, "final_val_acc")  # 40, 42, 44 against 47, 49
    reference = welch_test([40.0, 42.0, 44.0], [47.0, 49.0])
    assert test.p == pytest.approx(reference.p) and test.p < 0.05
    assert main(["compare", str(sweep), "vgg08", "vgg08_bn", "--metric", "final_val_acc"]) == 0
    printed = capsys.readouterr().out
    assert "plain: n = 3, mean 42, std 2" in printed and f"p = {test.p:.3g}" in printed
    assert "95 % intervals: need 3 runs or more" in printed


def test_compare_says_when_no_spread_can_be_measured(sweep, capsys):
    assert main(["compare", str(sweep / "vgg08_seed-0"), str(sweep / "vgg08_bn")]) == 0
    printed = capsys.readouterr().out
    assert "one run: no spread can be measured" in printed and "no test:" in printed
    with pytest.raises(RunNotFoundError, match="its cell groups: vgg08, vgg08_bn"):
        resolve_group("vgg99", sweep)


def test_result_file_holds_the_groups_and_how_they_were_measured(sweep, tmp_path):
    measurement = {"date": "2026-12-02T15:00:00+00:00", "machine": {"platform": "Linux", "cpu_count": 2,
                                                                    "torch": "2.x"},
                   "command": ["cifarnets", "sweep", "g.toml"], "cpu_seconds": 12.5, "wall_seconds": 8.0,
                   "load_average_start": [1.0, 2.0, 3.0], "load_average_end": [4.0, 5.0, 6.0]}
    (sweep / "measurement.json").write_text(json.dumps(measurement))
    path, md = write_results(sweep, tmp_path / "results" / "r.json")
    data = json.loads(path.read_text())
    assert data["seeds"] == [0, 1, 2] and data["cpu_seconds"] == 12.5 and data["machine"]["cpu_count"] == 2
    assert data["groups"][0]["stats"]["best_val_acc"]["mean"] == 42.0
    assert "12 CPU-seconds" in md.read_text() and "load average 1.00 / 2.00 / 3.00" in md.read_text()
    with pytest.raises(ConfigError, match="must end in .json"):
        write_results(sweep, tmp_path / "r.md")


def _rerun(sweep, tmp_path, plain_val_accs):
    """A copy of `sweep` whose plain cell's seeds end at `plain_val_accs` (BN as committed)."""
    import shutil

    rerun = tmp_path / "rerun"
    shutil.copytree(sweep, rerun)
    for seed, (value, ratio) in enumerate(zip(plain_val_accs, (1e-9, 1e-7, 1e-8))):  # the fixture's ratios
        run = history([30.0, value], seed=seed, ratio=ratio)
        (rerun / f"vgg08_seed-{seed}" / "history.json").write_text(run.to_json())
    return rerun


def test_a_rerun_is_checked_against_the_committed_result_file(sweep, tmp_path, capsys):
    committed, _ = write_results(sweep, tmp_path / "results" / "r.json")
    same = check_rerun(sweep, committed)
    assert [(c.label, c.metric, c.identical, c.inside) for c in same] == [
        ("plain", "best_val_acc", True, True), ("plain", "grad_ratio", True, True),
        ("BN", "best_val_acc", True, None), ("BN", "grad_ratio", True, True)]  # BN: 2 runs, no interval
    # plain's best 40, 42, 44 (interval 37.03-46.97): a rerun at 41, 43, 45 (mean 43) lands inside ...
    near = check_rerun(_rerun(sweep, tmp_path / "near", [41.0, 43.0, 45.0]), committed, ["best_val_acc"])
    assert (near[0].identical, near[0].inside, near[0].same_seed) == (False, True, ((0, 40.0, 41.0), (1, 42.0, 43.0),
                                                                                     (2, 44.0, 45.0)))
    assert main(["compare", str(tmp_path / "near" / "rerun"), "--against", str(committed)]) == 0
    printed = capsys.readouterr().out
    assert "plain, best_val_acc: inside the stated spread" in printed
    assert "per seed (committed -> rerun): 0: 40 -> 41, 1: 42 -> 43, 2: 44 -> 45" in printed
    assert "3 of 4 checks (2 cell groups) land inside the stated spread; 1 have no interval to land in" in printed
    # ... one at 50, 51, 52 does not, and the command says so with exit status 1.
    far = _rerun(sweep, tmp_path / "far", [50.0, 51.0, 52.0])
    assert main(["compare", str(far), "--against", str(committed), "--metric", "best_val_acc"]) == 1
    printed = capsys.readouterr().out
    assert "plain, best_val_acc: OUTSIDE the stated spread" in printed
    assert "1 of 2 checks (2 cell groups) land outside the stated spread: plain best_val_acc" in printed


def test_a_rerun_of_another_grid_or_a_foreign_file_is_refused(sweep, tmp_path, capsys):
    committed, _ = write_results(sweep, tmp_path / "results" / "r.json")
    data = json.loads(committed.read_text())
    data["title"] = "another grid"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="is the result file of 'another grid'"):
        check_rerun(sweep, other)
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="is not a result file"):
        check_rerun(sweep, tmp_path / "junk.json")
    with pytest.raises(ConfigError, match="cannot read the result file"):
        check_rerun(sweep, tmp_path / "missing.json")
    assert main(["compare", str(sweep), "vgg08", "--against", str(committed)]) == 2
    assert "--against checks one sweep folder" in capsys.readouterr().err


def test_a_grid_with_table_groups_keeps_its_seed_groups_apart(sweep, tmp_path, capsys):
    # A grid's own `group` (its section in the table, e.g. "5.1") once overwrote the runs' seed
    # group in the result file, and a sweep checked against its own file landed OUTSIDE.
    grid = (sweep / "grid.toml").read_text()
    grid = grid.replace('label = "plain"', 'label = "plain"\ngroup = "5.1"')
    grid = grid.replace('label = "BN"', 'label = "BN"\ngroup = "5.4"')
    (sweep / "grid.toml").write_text(grid)
    table = sweep_table(sweep)
    assert [r["group"] for r in table.rows] == ["5.1"] * 3 + ["5.4"] * 2
    assert [g.n for g in table.groups()] == [3, 2]
    committed, _ = write_results(sweep, tmp_path / "results" / "r.json")
    data = json.loads(committed.read_text())
    assert {r["seed_group"] for r in data["runs"]} == {g["seed_group"] for g in data["groups"]}
    assert all(c.identical for c in check_rerun(sweep, committed))
    assert main(["compare", str(sweep), "--against", str(committed)]) == 0
    assert "3 of 4 checks (2 cell groups) land inside the stated spread" in capsys.readouterr().out


def test_an_extra_column_cannot_hide_a_field_of_the_row():
    row = results_table([history([30.0], seed=0)])[0]
    with pytest.raises(ValueError, match=r"\['seed_group'\] have the names of ResultRow fields"):
        replace(row, extra={"seed_group": "5.1"})


def test_a_result_file_without_seed_groups_or_with_missing_runs_is_refused(sweep, tmp_path):
    committed, _ = write_results(sweep, tmp_path / "results" / "r.json")
    data = json.loads(committed.read_text())
    old = {**data, "groups": [{("group" if k == "seed_group" else k): v for k, v in g.items()} for g in data["groups"]]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="names no seed group per group"):
        check_rerun(sweep, tmp_path / "old.json")
    cut = {**data, "runs": data["runs"][1:]}  # a run of the plain group taken out by hand
    (tmp_path / "cut.json").write_text(json.dumps(cut))
    with pytest.raises(ConfigError, match="'plain' counts 3 runs but the file holds 2"):
        check_rerun(sweep, tmp_path / "cut.json")


# ---------------------------------------------------------------- README quotes the committed result file


def _readme_row(grid: str) -> str:
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("|") and f"{grid}.toml" in line]
    assert len(rows) == 1, f"README's budget table has no single row for {grid}.toml"
    return rows[0]


# The metric each grid's README row and comment quote: best validation accuracy, or test accuracy
# where the grid (the AlexNet/VGG report's) has no validation split.
QUOTED_METRIC = {
    "seed001_vgg38_bn_rc_budget": "best_val_acc",
    "seed003_deeper_vggs_budget": "best_val_acc",
    "seed004_alexnet_vgg_budget": "test_acc",
    "seed000_resnet18_hparams_budget": "best_val_acc",
}


def _result_file(grid: str) -> dict:
    return json.loads((ROOT / "results" / f"{grid}.json").read_text())


def _quotes_agree(text: str, data: dict, metric: str) -> None:
    """Every cell's "LABEL MEAN ± STD (n = N)" and each "LABEL GEOMEAN ×/÷ FACTOR" in `text` is the
    result file's, no other such figure appears, and the CPU seconds, wall time and load are the file's."""
    for g in data["groups"]:
        s = g["stats"][metric]
        assert f"{g['label']} {s['mean']:.1f} ± {s['std']:.1f} (n = {s['n']})" in text, g["label"]
    assert len(re.findall(r"\d ± \d+\.\d \(n = \d+\)", text)) == len(data["groups"])
    quoted_ratios = [f"{g['label']} {g['stats']['grad_ratio']['mean']:.2g} ×/÷ {g['stats']['grad_ratio']['std']:.2g}"
                     for g in data["groups"]]
    ratios = [q for q in quoted_ratios if q in text]
    assert len(re.findall(r"×/÷ [\d.]+", text)) == len(ratios), "a gradient ratio that is not the file's"
    assert f"{data['cpu_seconds']:,.0f} CPU-seconds" in text and f"{data['wall_seconds']:,.0f} s wall" in text
    start, end = data["load_average_start"][0], data["load_average_end"][0]
    assert re.search(rf"load {start:.2f}[-–]{end:.2f}", text)


@pytest.mark.parametrize("grid", sorted(QUOTED_METRIC))
def test_readme_budget_table_quotes_the_result_file(grid):
    _quotes_agree(_readme_row(grid), _result_file(grid), QUOTED_METRIC[grid])


def test_the_vanished_gradient_is_quoted_where_a_grid_shows_it():
    assert "VGG38 8.3e-12 ×/÷ 91" in _readme_row("seed001_vgg38_bn_rc_budget")
    assert "5.1 VGG38 8.3e-12 ×/÷ 91" in _readme_row("seed003_deeper_vggs_budget")
    assert "vgg16 2.2e-05 ×/÷ 1" in _readme_row("seed004_alexnet_vgg_budget")


@pytest.mark.parametrize("grid", sorted(QUOTED_METRIC))
def test_the_grid_comment_quotes_the_result_file_too(grid):
    text = (ROOT / "examples" / "grids" / f"{grid}.toml").read_text()
    comment = " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))
    _quotes_agree(comment, _result_file(grid), QUOTED_METRIC[grid])
    assert f"results/{grid}.md" in comment


@pytest.mark.parametrize("grid", sorted(QUOTED_METRIC))
def test_the_result_file_and_its_table_agree(grid):
    data = _result_file(grid)
    table = (ROOT / "results" / f"{grid}.md").read_text()
    metric = QUOTED_METRIC[grid]
    assert data["seeds"] == [0, 1, 2] and all(g["n"] == 3 for g in data["groups"])
    for g in data["groups"]:
        s = g["stats"][metric]
        assert f"| {g['label']} | {GROUP_METRICS[metric]} | 3 | {s['mean']:.2f} ± {s['std']:.2f} |" in table


def test_the_training_docs_quote_the_seed001_result_file():
    data = _result_file("seed001_vgg38_bn_rc_budget")
    docs = (ROOT / "docs" / "training.md").read_text()
    for g in data["groups"]:
        b, t = g["stats"]["best_val_acc"], g["stats"]["test_acc"]
        assert (f"| {g['label']} | {b['mean']:.1f} ± {b['std']:.1f} ({b['min']:.1f}–{b['max']:.1f}) | "
                f"{t['mean']:.1f} ± {t['std']:.1f} |") in docs


@pytest.mark.parametrize("grid", sorted(set(QUOTED_METRIC) - {"seed001_vgg38_bn_rc_budget"}))
def test_the_training_docs_give_every_budget_grids_spread(grid):
    docs = (ROOT / "docs" / "training.md").read_text()
    metric = QUOTED_METRIC[grid]
    for g in _result_file(grid)["groups"]:
        s = g["stats"][metric]
        assert (f"| {g['label']} | {s['mean']:.1f} ± {s['std']:.1f} ({s['min']:.1f}–{s['max']:.1f}) | "
                f"{metric.replace('_', ' ')} | `{grid}` |") in docs


def test_a_cell_shared_by_two_grids_gives_the_same_numbers_in_each():
    one, three = _result_file("seed001_vgg38_bn_rc_budget"), _result_file("seed003_deeper_vggs_budget")
    for model in ("vgg08", "vgg38"):
        a = sorted((r["seed"], r["best_val_acc"], r["test_acc"]) for r in one["runs"] if r["seed_group"] == model)
        b = sorted((r["seed"], r["best_val_acc"], r["test_acc"]) for r in three["runs"] if r["seed_group"] == model)
        assert a == b and len(a) == 3
