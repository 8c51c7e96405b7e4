"""The experiment trackers, read back with each tracker's own reader.

One scripted run (`tracked_run`, built once for the module because MLflow and W&B take seconds to
start) goes through all four trackers: epoch 1, an interruption, a torn CSV line as a crash leaves
it, a resume with a changed setting, epoch 2 and the curves picture. Each test then reads the real
files: TensorBoard's EventAccumulator, MlflowClient on the local store, the W&B offline ``.wandb``
log decoded with wandb's own protobuf records, and the csv module.
"""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cifarnets.errors import ConfigError, ConfigTypeError
from cifarnets.tracking import (
    TRACKERS,
    Trackers,
    check_tracker_names,
    flatten_hparams,
    make_trackers,
    ray_callbacks,
    read_metrics_csv,
)

ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR")
HPARAMS = {"model": "vgg16", "train": {"lr": 0.01, "epochs": 1, "milestones": [30, 60]}, "seed": None}
RESUMED = {**HPARAMS, "train": {**HPARAMS["train"], "epochs": 2}, "note": "resumed"}
LAYER = "grad_flow/features.0.weight"


def _epoch(trackers: Trackers, epoch: int) -> None:
    """What the trainer sends for one epoch of 3 steps."""
    for i in range(3):
        step = (epoch - 1) * 3 + i
        trackers.log_metrics({"step/train_loss": 2.0 - step / 10}, step)
    trackers.log_metrics({"train_loss": 2.0 / epoch, "train_acc": 10.0 * epoch, "val_loss": 2.1 / epoch,
                          "val_acc": 11.0 * epoch, "lr": 0.01 / epoch, "epoch_seconds": 1.5,
                          "images_per_second": 1000.0, LAYER: 1e-3 * epoch}, step, epoch=epoch)


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    png = run_dir / "curves.png"
    from PIL import Image

    Image.new("RGB", (8, 6), (200, 30, 30)).save(png)
    with pytest.MonkeyPatch.context() as mp:
        for name in ENV:
            mp.delenv(name, raising=False)
        first = Trackers(make_trackers(",".join(TRACKERS)))
        first.start(run_dir, "demo", HPARAMS)
        _epoch(first, 1)
        first.finish("interrupted")
        with open(run_dir / "metrics.csv", "a") as f:
            f.write("5,,val_a")  # the half line a crash mid-write leaves
        with Trackers(make_trackers(TRACKERS)) as second:
            second.start(run_dir, "demo", RESUMED, resume=True)
            _epoch(second, 2)
            second.log_image("curves", png, step=5)
    assert first.failures == {} and second.failures == {}
    return run_dir


def test_tensorboard_scalars_image_and_hparams(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(tracked_run / "tb"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val_acc")] == [(2, 11.0), (5, 22.0)]
    assert [e.step for e in events.Scalars("step/train_loss")] == [0, 1, 2, 3, 4, 5]
    assert [e.value for e in events.Scalars("epoch")] == [1, 2]
    assert events.Scalars(LAYER)[-1].value == pytest.approx(2e-3)
    [image] = events.Images("curves")
    assert (image.step, image.width, image.height) == (5, 8, 6)
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert start["train.lr"].number_value == 0.01 and start["model"].string_value == "vgg16"
    assert start["train.milestones"].string_value == "[30, 60]" and start["seed"].string_value == "None"


def test_mlflow_one_run_across_the_resume(tracked_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracked_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cifarnets")
    assert experiment.artifact_location == (tracked_run / "mlartifacts").resolve().as_uri()
    [run] = client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status) == ("demo", "FINISHED")
    # Params are logged once: the resume adds the new one and keeps the first value of a changed one.
    assert run.data.params["train.lr"] == "0.01" and run.data.params["train.epochs"] == "1"
    assert run.data.params["note"] == "resumed" and run.data.params["seed"] == "None"
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert sorted((m.step, m.value) for m in history) == [(2, 11.0), (5, 22.0)]
    assert len(client.get_metric_history(run.info.run_id, "step/train_loss")) == 6
    assert client.get_metric_history(run.info.run_id, LAYER)[-1].value == pytest.approx(2e-3)
    images = [f.path for f in client.list_artifacts(run.info.run_id, "images")]
    assert images and all("curves" in p for p in images)
    assert any((tracked_run / "mlartifacts").rglob("*.png"))


def _wandb_records(path: Path):
    """The records of a W&B offline ``.wandb`` file: a LevelDB-style log (7-byte file header, 32 KiB
    blocks of chunks with a 7-byte header: crc32c, length, type) of wandb's protobuf `Record`s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            yield wandb_internal_pb2.Record.FromString(pending)
            pending = b""


def test_wandb_offline_files_hold_metrics_config_and_status(tracked_run):
    import json

    logs = sorted((tracked_run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 2  # the first part and the resumed part: one W&B run id, synced as one run
    assert len({p.stem for p in logs}) == 1
    history, config, exits = [], {}, []
    for log in logs:
        for record in _wandb_records(log):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in record.config.update})
            elif kind == "exit":
                exits.append(record.exit.exit_code)
    epochs = [(row["global_step"], row["val_acc"], row["epoch"]) for row in history if "val_acc" in row]
    assert epochs == [(2, 11.0, 1), (5, 22.0, 2)]
    assert [row["global_step"] for row in history if "step/train_loss" in row] == [0, 1, 2, 3, 4, 5]
    assert any(row.get("curves/_type") == "image-file" and row["global_step"] == 5 for row in history)
    assert config["train.lr"] == 0.01 and config["train.epochs"] == 2 and config["note"] == "resumed"
    assert exits == [255, 0]  # interrupted, then finished


def test_csv_rows_survive_the_torn_line_and_the_resume(tracked_run):
    import csv

    with open(tracked_run / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "epoch", "name", "value", "time"]
    assert rows.count(rows[0]) == 1 and all(len(row) == 5 for row in rows)  # the half line is gone
    values = {(int(r[0]), r[2]): float(r[3]) for r in rows[1:]}
    assert values[(2, "val_acc")] == 11.0 and values[(5, "val_acc")] == 22.0 and values[(5, LAYER)] == 2e-3
    assert [s for (s, name) in values if name == "step/train_loss"] == [0, 1, 2, 3, 4, 5]
    assert {r["epoch"] for r in read_metrics_csv(tracked_run / "metrics.csv") if r["name"] == "lr"} == {1, 2}
    with open(tracked_run / "hparams.csv", newline="") as f:
        hparams = dict(list(csv.reader(f))[1:])
    assert hparams["train.epochs"] == "2" and hparams["train.milestones"] == "[30, 60]"


def test_read_metrics_csv_ignores_a_torn_last_line(tmp_path):
    [tracker] = make_trackers("csv")
    tracker.start(tmp_path, "x", {})
    tracker.log_metrics({"a": 0.5}, 1)
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("2,,a,0.")
    assert [(r["step"], r["value"], r["epoch"]) for r in read_metrics_csv(tmp_path / "metrics.csv")] == [(1, 0.5, None)]


def test_names_are_checked_with_the_closest_name():
    assert check_tracker_names(" TensorBoard,csv ,, csv") == ("tensorboard", "csv")
    assert check_tracker_names(["wandb"]) == ("wandb",)
    assert check_tracker_names(None) == check_tracker_names("") == check_tracker_names("none") == ()
    with pytest.raises(ConfigError, match=r"unknown tracker 'tensorbord'; did you mean 'tensorboard'\? choose"):
        check_tracker_names("tensorbord,csv")
    with pytest.raises(ConfigError) as caught:
        make_trackers(["mlfow", "xyz"])
    assert len(caught.value.problems) == 2 and "did you mean 'mlflow'" in caught.value.problems[0]
    with pytest.raises(ConfigTypeError):
        check_tracker_names(["csv", 3])


@pytest.mark.parametrize("name, package", [("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_package_names_its_extra(monkeypatch, name, package):
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")] or [package]:
        monkeypatch.setitem(sys.modules, module, None)  # what `import` sees for a package that is not installed
    with pytest.raises(ConfigError) as caught:
        make_trackers(f"csv,{name}")
    assert str(caught.value) == f"the {name} tracker needs the {package!r} package: pip install 'cifarnets[{name}]'"


def test_mlflow_without_its_local_store_packages(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(ConfigError, match=r"pip install 'cifarnets\[mlflow\]' \(importing it failed: .*sqlalchemy"):
        make_trackers("mlflow")


class Recorder:
    """A tracker that records its calls; ``fail`` names the methods that raise."""

    def __init__(self, name: str, fail: tuple[str, ...] = ()) -> None:
        self.name, self.fail, self.calls = name, fail, []

    def _record(self, method: str, *args) -> None:
        self.calls.append((method, *args))
        if method in self.fail:
            raise OSError(f"{self.name} cannot {method}")

    def start(self, run_dir, name, hparams, *, resume=False):
        self._record("start", name)

    def log_metrics(self, metrics, step, *, epoch=None):
        self._record("log_metrics", step)

    def log_image(self, tag, png_path, step):
        self._record("log_image", tag)

    def finish(self, status):
        self._record("finish", status)


def test_a_failing_tracker_does_not_stop_the_others(tmp_path, caplog):
    broken, dead, good = Recorder("broken", ("log_metrics",)), Recorder("dead", ("start",)), Recorder("good")
    [csv_tracker] = make_trackers("csv")
    trackers = Trackers([broken, dead, csv_tracker, good])
    with caplog.at_level(logging.WARNING, logger="cifarnets.tracking"):
        trackers.start(tmp_path, "x", {})
        for step in range(3):
            trackers.log_metrics({"a": float(step)}, step)
        trackers.finish("finished")
    assert trackers.failures == {"dead": 1, "broken": 3}
    assert dead.calls == [("start", "x")]  # dropped after its start failed
    assert good.calls == [("start", "x"), ("log_metrics", 0), ("log_metrics", 1), ("log_metrics", 2),
                          ("finish", "finished")]
    assert broken.calls[-1] == ("finish", "finished")
    assert [r["value"] for r in read_metrics_csv(tmp_path / "metrics.csv")] == [0.0, 1.0, 2.0]
    messages = [r.getMessage() for r in caplog.records]
    assert "the dead tracker failed in start (OSError: dead cannot start); the run carries on without it" in messages
    assert "the broken tracker failed in log_metrics (OSError: broken cannot log_metrics); the run carries on " \
        "(3 failures so far)" in messages
    assert sum(bool(r.exc_info) for r in caplog.records) == 2  # the traceback once per tracker


@pytest.mark.parametrize("error, status", [(None, "finished"), (KeyboardInterrupt, "interrupted"),
                                           (RuntimeError, "failed")])
def test_the_context_manager_finishes_with_the_runs_status(error, status):
    tracker = Recorder("r")
    with pytest.raises(error or ZeroDivisionError):
        with Trackers([tracker]) as trackers:
            trackers.start(None, "x", {})
            if error is not None:
                raise error()
        raise ZeroDivisionError  # reached only without an error
    assert tracker.calls[-1] == ("finish", status)


def test_file_trackers_need_a_run_folder(caplog):
    trackers = Trackers(make_trackers("csv,tensorboard"))
    with caplog.at_level(logging.WARNING, logger="cifarnets.tracking"):
        trackers.start(None, "x", {})
    assert trackers.names == () and "writes into the run folder and this run has none" in caplog.text


def test_flatten_hparams_gives_scalars():
    flat = flatten_hparams({"a": {"b": {"c": 1}}, "t": (1, "x"), "p": Path("/tmp"), "ok": True})
    assert flat == {"a.b.c": 1, "t": '[1, "x"]', "p": "/tmp", "ok": True}


@pytest.mark.slow  # a fresh interpreter imports torch and timm
def test_importing_the_package_imports_no_tracker_package():
    # `import timm` (under `import cifarnets`) imports wandb itself where it is installed
    # (timm.utils.summary); cifarnets.tracking adds none of the four until a tracker is built.
    code = ("import sys; heavy = {'mlflow', 'wandb', 'tensorboard', 'ray'}; tops = lambda: {m.split('.')[0] "
            "for m in sys.modules} & heavy; import cifarnets; before = tops(); import cifarnets.tracking as t; "
            "t.make_trackers('csv'); print(sorted(before - {'wandb'}), sorted(tops() - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_ray_callbacks(tracked_run, monkeypatch):
    pytest.importorskip("ray.tune")
    from mlflow.tracking import MlflowClient
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.air.integrations.wandb import WandbLoggerCallback
    from ray.tune.logger import CSVLoggerCallback, TBXLoggerCallback

    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "sweep")  # a new experiment in the run's existing store
    callbacks = ray_callbacks("tensorboard,csv,mlflow,wandb", root=tracked_run)
    assert [type(c) for c in callbacks] == [TBXLoggerCallback, CSVLoggerCallback, MLflowLoggerCallback,
                                            WandbLoggerCallback]
    mlflow_cb, wandb_cb = callbacks[2], callbacks[3]
    assert mlflow_cb.tracking_uri == f"sqlite:///{tracked_run.resolve() / 'mlflow.db'}"
    experiment = MlflowClient(tracking_uri=mlflow_cb.tracking_uri).get_experiment_by_name("sweep")
    assert experiment.artifact_location == (tracked_run.resolve() / "mlartifacts").as_uri()
    assert wandb_cb.project == "cifarnets" and wandb_cb.kwargs["mode"] == "offline"
    assert wandb_cb.kwargs["dir"] == str(tracked_run.resolve())
    assert ray_callbacks(None) == []
    with pytest.raises(ConfigError, match="sweep folder"):
        ray_callbacks("mlflow")
