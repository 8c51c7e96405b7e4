"""Every data source through a run: trained, evaluated and resumed from the run folder alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cifarnets.cli as cli
from cifarnets.data import from_arrays
from cifarnets.errors import ConfigError
from cifarnets.train import TrainConfig, fit, resume

FAST = ["--width", "4", "--batch-size", "10", "--lr", "5e-3", "--quiet", "--device", "cpu", "--deterministic"]


def _image_folder(root, sizes=(("train", 20), ("val", 6), ("test", 10)), side=28):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in sizes:
        for i in range(n):
            cls = ("cat", "dog")[i % 2]
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
            pixels[..., i % 2] = 255 if cls == "dog" else 0
            Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


def test_an_image_folder_trains_evaluates_and_resumes_by_name(tmp_path, capsys):
    folder = _image_folder(tmp_path / "cinic")
    run = tmp_path / "run"
    argv = ["train", "vgg08", "--dataset", f"folder:{folder}", "--fit", "resize", "--epochs", "1", *FAST]
    assert cli.main([*argv, "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    source = config["data"]["load_args"]
    assert source["name"] == f"folder:{folder}" and source["fit"] == "resize"
    assert config["data"]["train"] == 20 and config["data"]["val"] == 6 and config["data"]["num_classes"] == 2
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--json"]) == 0  # the data set reloaded from the run folder
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 10 and result["dataset"] == f"folder:{folder}"
    history = resume(run)  # nothing to do, but the data reloads and is checked against the run's
    assert history.test is not None and history.test["n"] == 10


def test_images_in_memory_train_and_must_be_passed_again_to_resume(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8), np.arange(40) % 4
    bundle = from_arrays(train=(x[:30], y[:30]), test=(x[30:], y[30:]))
    config = TrainConfig(epochs=2, batch_size=10, quiet=True, device="cpu", out_dir=str(tmp_path / "run"))

    def stop(record, history):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit("vgg08", bundle, config, model_kwargs={"width": 4}, callbacks=[stop])
    with pytest.raises(ConfigError, match="pass them again: resume"):
        resume(tmp_path / "run")
    history = resume(tmp_path / "run", data=bundle)
    assert [e.epoch for e in history.epochs] == [1, 2]


def test_fit_of_a_torchvision_dataset_says_how_to_make_a_bundle():
    from torchvision.datasets import FakeData

    with pytest.raises(TypeError, match="from_arrays"):
        fit("vgg08", FakeData(size=4), TrainConfig(epochs=1, quiet=True))
    assert torch.get_num_threads() >= 1


def test_a_folder_run_logs_to_tensorboard_and_csv_and_resumes_there(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cifarnets.tracking import read_metrics_csv

    folder = _image_folder(tmp_path / "cinic")
    run = tmp_path / "run"
    argv = ["train", "vgg08", "--dataset", f"folder:{folder}", "--epochs", "2", *FAST, "--log", "tensorboard,csv"]
    assert cli.main([*argv, "--out", str(run)]) == 0
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train_loss", "val_acc", "lr"} <= set(tags) and any(t.startswith("grad_flow/") for t in tags)
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]
    history = json.loads((run / "history.json").read_text())
    rows = [r for r in read_metrics_csv(run / "metrics.csv") if r["name"] == "train_loss"]
    assert [float(r["value"]) for r in rows] == [e["train_loss"] for e in history["epochs"]]
    assert cli.main(["eval", str(run)]) == 0
    assert cli.main(["train", "--resume", str(run)]) == 0  # finished: the data reloads from the folder alone
    assert cli.main(["train", "vgg08", "--dataset", "synthetic", "--log", "tensorbord", "--out",
                     str(tmp_path / "x")]) == 2
    assert "tensorboard" in capsys.readouterr().err  # the closest name
