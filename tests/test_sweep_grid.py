"""Grid files (cifarnets.sweep.grid): cells, names, published numbers, and every mistake caught
before anything trains. No training here."""

from __future__ import annotations

from pathlib import Path

import pytest

from cifarnets.cli import main
from cifarnets.sweep import GridError, cell_name, load_grid, parse_grid, parse_search

GRIDS = Path(__file__).resolve().parent.parent / "examples" / "grids"

BASE = '[base]\nmodel = "vgg38"\ndataset = "cifar100"\nepochs = 100\n'


def test_axes_make_every_combination_named_from_its_settings():
    grid = parse_grid(BASE + "[axes]\nbn = [false, true]\nrc = [false, true]\nlr = [1e-3, 1e-2]\n")
    assert len(grid.cells) == 8
    names = [c.name for c in grid.cells]
    assert names[0] == "vgg38_no-bn_no-rc_lr-0.001" and names[-1] == "vgg38_bn_rc_lr-0.01"
    assert len(set(names)) == 8
    last = grid.cells[-1]
    assert last.model_kwargs == {"bn": True, "rc": True}
    assert last.train == {"epochs": 100, "lr": 0.01}
    assert last.data == {"dataset": "cifar100"}


def test_cells_add_to_the_axes_and_published_numbers_attach():
    text = BASE + """
[axes]
bn = [false, true]
[[cells]]
model = "vgg08"
label = "VGG08"
published = { val_acc = 46.84 }
[[published]]
match = { bn = true }
val_acc = 45.08
"""
    grid = parse_grid(text)
    assert [c.name for c in grid.cells] == ["vgg38_no-bn", "vgg38_bn", "vgg08"]
    assert grid.cell("vgg08").label == "VGG08" and grid.cell("vgg08").published == {"val_acc": 46.84}
    assert grid.cell("vgg38_bn").published == {"val_acc": 45.08}
    assert grid.cell("vgg38_no-bn").published == {}


def test_command_line_short_names_map_to_train_config_fields():
    grid = parse_grid(BASE + 'opt = "sgd"\nwd = 5e-4\nsched = "none"\nsched_unit = "step"\n')
    assert grid.cells[0].train == {"epochs": 100, "optimizer": "sgd", "weight_decay": 5e-4, "schedule": "none",
                                   "schedule_unit": "step"}


@pytest.mark.parametrize("extra, expected", [
    ("bacth_size = 3\n", "unknown key 'bacth_size' (did you mean 'batch_size'?)"),
    ('lr = "fast"\n', "lr must be a number"),
    ("batch_size = 0\n", "batch_size must be a positive integer"),
    ('opt = "rmsprop"\n', "opt must be one of 'sgd', 'adam', 'adamw'"),
    ("bn = 1\n", "bn must be true or false"),
    ('act = "nope"\n', "unknown act 'nope'"),
    ('out_dir = "x"\n', "'out_dir' cannot be set in a grid"),
    ('split = "half"\n', "write it as 'TRAIN:VAL'"),
    ("wd = 1e-3\nweight_decay = 1e-3\n", "set the same option"),
])
def test_bad_keys_and_values_are_named(extra, expected):
    with pytest.raises(GridError, match=None) as err:
        parse_grid(BASE + extra)
    assert expected in str(err.value)


def test_model_and_dataset_mistakes():
    with pytest.raises(GridError, match="unknown model 'vgg39'"):
        parse_grid('[base]\nmodel = "vgg39"\ndataset = "cifar100"\n')
    with pytest.raises(GridError, match="resnet18 takes no 'rc'"):
        parse_grid('[base]\nmodel = "resnet18"\ndataset = "cifar10"\nrc = true\n')
    with pytest.raises(GridError, match="no dataset"):
        parse_grid('[base]\nmodel = "vgg08"\n')
    with pytest.raises(GridError, match="unknown data set 'imagenet'"):
        parse_grid('[base]\nmodel = "vgg08"\ndataset = "imagenet"\n')


def test_structure_mistakes():
    with pytest.raises(GridError, match="not valid TOML"):
        parse_grid("[base\n")
    with pytest.raises(GridError, match="unknown top-level key"):
        parse_grid(BASE + "[axis]\nbn = [true]\n")
    with pytest.raises(GridError, match="non-empty list"):
        parse_grid(BASE + "[axes]\nbn = true\n")
    with pytest.raises(GridError, match="share the folder"):
        parse_grid(BASE + "[[cells]]\nbn = true\n[[cells]]\nbn = true\n")
    with pytest.raises(GridError, match="matches no cell"):
        parse_grid(BASE + "[[published]]\nmatch = { bn = true }\nval_acc = 1.0\n")


def test_the_same_mistake_in_every_cell_is_reported_once():
    with pytest.raises(GridError) as err:
        parse_grid(BASE + "bacth_size = 3\n[axes]\nlr = [1e-3, 1e-2, 1e-1]\n")
    assert str(err.value).count("bacth_size") == 1
    assert "3 cells" in str(err.value)


def test_cell_name_reads_the_settings():
    assert cell_name({"model": "vgg38", "bn": True, "rc": False}, ["bn", "rc"]) == "vgg38_bn_no-rc"
    name = cell_name({"model": "resnet18", "norm": "detached_batchnorm"}, ["norm"])
    assert name == "resnet18_norm-detached_batchnorm"
    long = cell_name({"model": "vgg38", **{f"k{i}": 1.5 for i in range(40)}}, [f"k{i}" for i in range(40)])
    assert len(long) <= 100


EXAMPLES = {
    "seed000_resnet18_hparams": 8, "seed001_vgg38_bn_rc": 7, "seed003_deeper_vggs": 17, "seed004_alexnet_vgg": 8,
}


@pytest.mark.parametrize("name, cells", sorted(EXAMPLES.items()))
def test_example_grids_parse_and_train_in_fp32(name, cells):
    grid = load_grid(GRIDS / f"{name}.toml")
    assert len(grid.cells) == cells
    assert all(c.train.get("amp") is False for c in grid.cells)  # fp32, as the reports trained
    assert grid.report and any(c.published for c in grid.cells)
    budget = load_grid(GRIDS / f"{name}_budget.toml")
    assert all(c.data["dataset"] == "fashion_mnist" for c in budget.cells)
    assert all(c.train["epochs"] <= 5 for c in budget.cells)


def test_deeper_vgg_grid_has_the_prose_only_learning_rates():
    grid = load_grid(GRIDS / "seed003_deeper_vggs.toml")
    lr_cells = {c.label: c for c in grid.cells if c.label.startswith("5.3 lr")}
    assert sorted(lr_cells) == ["5.3 lr x10", "5.3 lr x100", "5.3 lr x30", "5.3 lr x5"]
    assert {label for label, c in lr_cells.items() if c.prose_only} == {"5.3 lr x10", "5.3 lr x100"}
    for label, factor in (("5.3 lr x5", 5), ("5.3 lr x10", 10), ("5.3 lr x30", 30), ("5.3 lr x100", 100)):
        train = lr_cells[label].train
        assert train["lr"] == pytest.approx(1e-3 * factor) and train["min_lr"] == pytest.approx(2e-5 * factor)


def test_search_expressions():
    grid = parse_grid('[base]\nmodel = "vgg08"\ndataset = "synthetic"\n')
    space = parse_search(["lr=loguniform(1e-4,1e-1)", "bn=choice(true,false)", "batch_size=randint(50,200)"], grid)
    assert space.keys == ["lr", "bn", "batch_size"]
    cell = space.cell(grid, {"lr": 0.003, "bn": True, "batch_size": 64}, 7)
    assert cell.name == "trial-007_vgg08_lr-0.003_bn_batch_size-64"
    assert cell.model_kwargs == {"bn": True} and cell.train["lr"] == 0.003
    with pytest.raises(GridError, match="LOW < HIGH"):
        parse_search(["lr=uniform(1,0.1)"], grid)
    with pytest.raises(GridError, match="unknown distribution"):
        parse_search(["lr=normal(0,1)"], grid)
    with pytest.raises(GridError, match="unknown key 'lrr'"):
        parse_search(["lrr=uniform(0.1,1)"], grid)
    with pytest.raises(GridError, match="only \\[base\\]"):
        parse_search(["lr=uniform(0.1,1)"], parse_grid(BASE + "[axes]\nbn = [false, true]\n"))


def test_cli_refuses_a_bad_grid_before_writing_anything(tmp_path, capsys):
    grid = tmp_path / "bad.toml"
    grid.write_text(BASE + "bacth_size = 3\n")
    out = tmp_path / "sweep"
    assert main(["sweep", str(grid), "--out", str(out)]) == 2
    assert "did you mean 'batch_size'" in capsys.readouterr().err
    assert not out.exists()


def test_cli_dry_run_lists_the_cells(capsys):
    # (A dry run also loads the data sets, as a real run does: tests/test_sweep_faults.py.)
    assert main(["sweep", str(GRIDS / "seed001_vgg38_bn_rc_budget.toml"), "--out", "unused", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "vgg38_bn_rc" in printed and "5 cell(s)" in printed
    assert not Path("unused").exists()


def test_a_grid_given_as_a_dict_is_the_product_of_its_axes_plus_its_cells():
    from cifarnets.sweep import grid_to_toml

    grid = parse_grid(grid_to_toml({"base": {"model": "vgg08", "dataset": "synthetic", "epochs": 1},
                                    "axes": {"seed": [0, 1], "lr": [1e-3, 1e-2]}, "cells": [{"seed": 9}]}))
    assert len(grid.cells) == 5 and all(c.model == "vgg08" for c in grid.cells)
    assert {(c.train["seed"], c.train["lr"]) for c in grid.cells[:4]} == {(0, 1e-3), (0, 1e-2), (1, 1e-3), (1, 1e-2)}
    assert grid.cells[4].train["seed"] == 9
    with pytest.raises(GridError, match="unknown key 'bacth_size'"):
        parse_grid(grid_to_toml({"base": {"model": "vgg08", "dataset": "synthetic", "bacth_size": 8}}))
