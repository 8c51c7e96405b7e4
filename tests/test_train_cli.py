"""``cifarnets train`` / ``cifarnets eval`` end to end through `cifarnets.cli.main`."""

from __future__ import annotations

import json

import pytest

import cifarnets.cli as cli
from cifarnets.cli import train as train_cmd
from cifarnets.train import History, read_metadata


def test_train_and_eval_are_commands():
    assert train_cmd in cli._COMMAND_MODULES


TRAIN = ["train", "vgg08", "--width", "8", "--dataset", "synthetic", "--split", "4000:1000", "--limit", "300",
         "--epochs", "2", "--batch-size", "100", "--lr", "5e-3", "--seed", "1", "--deterministic", "--quiet",
         "--device", "cpu"]


def test_train_crash_resume_and_eval(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"

    real_print = train_cmd._print_epoch

    def interrupted_after_first(record, history):
        real_print(record, history)
        if record.epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_cmd, "_print_epoch", interrupted_after_first)
    assert cli.main([*TRAIN, "--out", str(run)]) == 130
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "epoch   1/2" in out and "epoch   2/2" not in out
    monkeypatch.setattr(train_cmd, "_print_epoch", real_print)

    # --resume alone: model, data and settings come from config.json.
    assert cli.main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "1/2 epochs done" in out and "epoch   2/2" in out and "test (best epoch" in out
    history = History.load(run)
    assert [e.epoch for e in history.epochs] == [1, 2] and history.test is not None
    config = json.loads((run / "config.json").read_text())
    assert config["create_kwargs"] == {"width": 8, "in_chans": 3, "num_classes": 10}
    assert config["train"]["seed"] == 1 and config["data"]["load_args"]["limit"] == 300

    # eval: the run folder's best checkpoint on the test and val splits of the stored data set.
    assert cli.main(["eval", str(run), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["acc"] == pytest.approx(history.test["acc"]) and result["n"] == 1000
    assert cli.main(["eval", str(run / "last.safetensors"), "--split", "val", "--device", "cpu"]) == 0
    assert "val (1,000 images)" in capsys.readouterr().out


def test_resume_refuses_new_settings_and_train_refuses_to_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    assert cli.main([*TRAIN, "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_data_set_shapes_reach_the_model(tmp_path, capsys):
    """vgg08 on Fashion-MNIST is built with in_chans=1, num_classes=10 without flags."""
    pytest.importorskip("cifarnets.data")
    from cifarnets.data import FASHION_MNIST_SYSTEM_DIR

    if not FASHION_MNIST_SYSTEM_DIR.is_dir():
        pytest.skip("Fashion-MNIST is not installed")
    run = tmp_path / "fm"
    argv = ["train", "vgg08", "--width", "8", "--dataset", "fashion_mnist", "--split", "59800:200", "--limit", "200",
            "--epochs", "1", "--batch-size", "100", "--quiet", "--device", "cpu", "--out", str(run)]
    assert cli.main(argv) == 0
    meta = read_metadata(run / "best.safetensors")
    assert meta["model_kwargs"] == {"width": 8, "in_chans": 1, "num_classes": 10}
    assert meta["dataset"] == "fashion_mnist" and len(meta["mean"]) == 1


def test_usage_errors_are_messages_not_tracebacks(capsys):
    assert cli.main(["train", "vgg08"]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", "synthetic"]) == 2
    assert "MODEL" in capsys.readouterr().err
