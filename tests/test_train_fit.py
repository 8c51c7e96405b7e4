"""fit / resume / evaluate on the synthetic set with tiny models (cifarnets.train.loop).

Every run here is a few hundred 32x32 images through VGG08 at width 8, so the whole file
stays within seconds of CPU time per test even on two shared cores.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import cifarnets
from cifarnets import _utils as atomic_io
from cifarnets.analysis import weight_layers
from cifarnets.data import load_dataset
from cifarnets.train import (
    History,
    NonFiniteLossError,
    RunExistsError,
    TrainConfig,
    TrainingDivergedError,
    evaluate,
    fit,
    load_checkpoint,
    read_metadata,
    resume,
)

TINY = {"width": 8}


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", synthetic_sizes=(600, 200), split="500:100")


def _config(tmp_path=None, **changes) -> TrainConfig:
    base = dict(epochs=3, batch_size=100, lr=5e-3, optimizer="adam", weight_decay=1e-4, warmup_epochs=1,
                schedule_unit="step", deterministic=True, quiet=True, device="cpu",
                out_dir=str(tmp_path) if tmp_path is not None else None)
    return TrainConfig(**{**base, **changes})


def _assert_same_weights(a, b):
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _metrics(history: History) -> list[tuple]:
    return [(e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc, e.lr, tuple(e.grad_flow.items()))
            for e in history.epochs]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data):
    """An uninterrupted 3-epoch run that the resume tests must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("reference")
    history = fit("vgg08", data, _config(out), model_kwargs=TINY)
    return out, history


def test_run_folder_holds_everything(reference_run, data):
    out, history = reference_run
    for name in ("config.json", "history.json", "history.csv", "last.safetensors", "last.state.pt",
                 "best.safetensors", "test.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "vgg08" and config["model_kwargs"] == {"width": 8, "in_chans": 3, "num_classes": 10}
    assert config["data"]["is_synthetic"] and config["train"]["epochs"] == 3
    stored = History.load(out)
    assert _metrics(stored) == _metrics(history)
    assert stored.test == history.test and stored.best_epoch == history.best_epoch
    assert history.best().val_acc == max(e.val_acc for e in history.epochs)
    # Gradient flow of every conv/linear weight, in network order, every epoch.
    layers = [n for n, _ in weight_layers(cifarnets.create("vgg08", **TINY))]
    for e in history.epochs:
        assert list(e.grad_flow) == layers and all(v > 0 and math.isfinite(v) for v in e.grad_flow.values())
        assert e.images_per_second > 0 and e.train_seconds > 0 and e.epoch_seconds >= e.train_seconds
    assert (out / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss,train_acc,val_loss,val_acc")
    assert json.loads((out / "test.json").read_text())["acc"] == history.test["acc"]
    assert read_metadata(out / "best.safetensors")["epoch"] == history.best_epoch
    assert read_metadata(out / "last.safetensors")["epoch"] == 3


def test_learns_on_the_synthetic_set():
    # Two short epochs of 1,000 images: far from converged (about 25 %), but clearly learning.
    data = load_dataset("synthetic", synthetic_sizes=(1000, 300), split="none")
    history = fit("vgg08", data, TrainConfig(epochs=2, batch_size=50, lr=1e-2, schedule_unit="step", quiet=True,
                                             device="cpu", grad_flow=False), model_kwargs={"width": 8, "bn": True})
    losses = history.series("train_loss")
    assert losses[-1] < losses[0] < math.log(10) * 1.05
    assert history.test["loss"] < math.log(10) - 0.15
    # Chance is 10 % (binomial sd 1.7 % on 300 images): 16 % is 3.5 sd above it.
    assert history.test["acc"] > 16.0, history.test


def test_resume_after_a_crash_between_epochs_is_bit_identical(reference_run, data, tmp_path):
    ref_dir, ref = reference_run

    class Crash(Exception):
        pass

    def crash_after_first(record, history):
        if record.epoch == 1:
            raise Crash

    with pytest.raises(Crash):
        fit("vgg08", data, _config(tmp_path), model_kwargs=TINY, callbacks=[crash_after_first])
    assert len(History.load(tmp_path).epochs) == 1
    resumed = resume(tmp_path)  # everything from the folder: model, data, config
    assert _metrics(resumed) == _metrics(ref)
    assert resumed.test == ref.test
    _assert_same_weights(tmp_path / "last.safetensors", ref_dir / "last.safetensors")
    _assert_same_weights(tmp_path / "best.safetensors", ref_dir / "best.safetensors")
    # Resuming a finished run changes nothing.
    again = resume(tmp_path)
    assert _metrics(again) == _metrics(ref)


def test_resume_after_a_crash_inside_a_checkpoint_write(reference_run, data, tmp_path, monkeypatch):
    ref_dir, ref = reference_run
    real_write = atomic_io._write_all
    writes = {"last": 0}

    def dying_write(f, payload):
        # The 3rd last.safetensors write is epoch 2's (epoch 0 = initial weights, then 1, 2).
        if f.name.startswith(str(tmp_path / ".last.safetensors.")):
            writes["last"] += 1
            if writes["last"] == 3:
                real_write(f, payload[: len(payload) // 2])
                raise OSError("simulated power cut")
        real_write(f, payload)

    monkeypatch.setattr(atomic_io, "_write_all", dying_write)
    with pytest.raises(OSError, match="power cut"):
        fit("vgg08", data, _config(tmp_path), model_kwargs=TINY)
    monkeypatch.setattr(atomic_io, "_write_all", real_write)
    assert read_metadata(tmp_path / "last.safetensors")["epoch"] == 1  # the previous checkpoint, intact
    assert not list(tmp_path.glob(".*.tmp"))
    model, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert isinstance(model, nn.Module) and meta["epoch"] == 1
    resumed = fit("vgg08", data, _config(tmp_path), model_kwargs=TINY, resume=True)
    assert _metrics(resumed) == _metrics(ref)
    _assert_same_weights(tmp_path / "last.safetensors", ref_dir / "last.safetensors")


def test_refuses_to_overwrite_a_run_and_to_resume_with_other_settings(reference_run, data):
    ref_dir, _ = reference_run
    with pytest.raises(RunExistsError, match="--resume"):
        fit("vgg08", data, _config(ref_dir), model_kwargs=TINY)
    with pytest.raises(ValueError, match=r"lr: 0\.005 -> 0\.1"):
        fit("vgg08", data, _config(ref_dir, lr=0.1), model_kwargs=TINY, resume=True)


class _NaNAt(nn.Module):
    """VGG08 whose `at`-th training forward returns NaN logits."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.inner = cifarnets.create("vgg08", num_classes=10, **TINY)
        self.at, self.calls = at, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                out = out * float("nan")
        return out


def test_nan_loss_stops_with_the_epoch_step_and_a_fix_that_works(data, tmp_path):
    # 5 steps per epoch: the 8th training forward is epoch 2, step 3.
    with pytest.raises(NonFiniteLossError) as err:
        fit(_NaNAt(8), data, _config(tmp_path, warmup_epochs=0))
    message = str(err.value)
    assert "epoch 2, step 3 of 5" in message and f"--resume {tmp_path} --change-schedule --lr" in message
    assert (err.value.epoch, err.value.step) == (2, 3) and math.isnan(err.value.value)
    # The last good checkpoint (epoch 1) is on disk and finite; the history stops at epoch 1.
    assert read_metadata(tmp_path / "last.safetensors")["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in load_file(str(tmp_path / "last.safetensors")).values())
    assert [e.epoch for e in History.load(tmp_path).epochs] == [1]
    # The advice can be followed: resume with a lower learning rate, asked for explicitly.
    with pytest.raises(ValueError, match="change_schedule=True"):
        fit(_NaNAt(10**9), data, _config(tmp_path, warmup_epochs=0, lr=5e-4), resume=True)
    history = fit(_NaNAt(10**9), data, _config(tmp_path, warmup_epochs=0, lr=5e-4), resume=True,
                  change_schedule=True)
    assert [e.epoch for e in history.epochs] == [1, 2, 3] and history.test is not None
    assert history.changes == [{"epoch": 2, "changed": {"lr": [5e-3, 5e-4]}}]
    # Epoch 2 runs where the new settings' cosine is after one epoch (3 epochs of 5 steps, per step).
    assert history.epochs[1].lr == pytest.approx(5e-4 * (1 + math.cos(math.pi * 5 / 15)) / 2)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["lr"] == 5e-4
    assert History.load(tmp_path).changes == history.changes


def test_a_loss_that_grows_by_orders_of_magnitude_is_divergence(data, tmp_path):
    # Adam at lr 1000 drives the loss to ~1e30 without ever reaching inf: stopped as divergence.
    with pytest.raises(TrainingDivergedError, match="diverged") as err:
        fit("vgg08", data, _config(tmp_path, lr=1000.0, warmup_epochs=0, check_every=1), model_kwargs=TINY)
    assert not isinstance(err.value, NonFiniteLossError) and err.value.value > 1000 * math.log(10)
    assert "--change-schedule --lr 100" in str(err.value)


def test_without_val_split_the_last_epoch_is_best_and_nothing_is_written(data):
    data = load_dataset("synthetic", synthetic_sizes=(300, 100), split="none")
    model = cifarnets.create("vgg08", num_classes=10, **TINY)
    history = fit(model, data, _config(None, epochs=2, warmup_epochs=0), model_kwargs=TINY)
    assert history.best_epoch == 2 and history.epochs[-1].val_acc is None
    # The model comes back with the best (here: last) weights, the ones evaluated on test.
    again = evaluate(model, data.test, mean=data.mean, std=data.std)
    assert again["acc"] == pytest.approx(history.test["acc"]) and again["n"] == 100


def test_model_and_data_must_match(data):
    with pytest.raises(ValueError, match="in_chans=3"):
        fit(cifarnets.create("vgg08", in_chans=1, num_classes=10, **TINY), data, _config(None))
    with pytest.raises(ValueError, match="num_classes=10"):
        fit(cifarnets.create("vgg08", num_classes=5, **TINY), data, _config(None))


def test_checkpoint_rebuilds_the_model_with_its_normalisation(reference_run, data):
    ref_dir, ref = reference_run
    model, meta = load_checkpoint(ref_dir)  # the folder -> best.safetensors
    assert meta["model"] == "vgg08" and meta["kind"] == "best" and meta["epoch"] == ref.best_epoch
    assert model.pretrained_cfg["mean"] == tuple(data.mean)
    assert cifarnets.count_params(model) == ref.params
    result = evaluate(model, data.test)  # normalisation from the checkpoint
    assert result["acc"] == pytest.approx(ref.test["acc"]) and result["loss"] == pytest.approx(ref.test["loss"])


def test_keep_freed_memory_is_applied_recorded_and_changes_no_value(reference_run, data, tmp_path, monkeypatch):
    from cifarnets.train import loop

    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1) or True)  # the real one is for good
    for setting, applied in ((True, [1]), (False, [1])):
        out = tmp_path / str(setting)
        history = fit("vgg08", data, _config(out, keep_freed_memory=setting), model_kwargs=TINY)
        assert calls == applied
        assert json.loads((out / "config.json").read_text())["train"]["keep_freed_memory"] is setting
        assert _metrics(history) == _metrics(reference_run[1])
        _assert_same_weights(out / "last.safetensors", reference_run[0] / "last.safetensors")
    # Asked for where it cannot apply (not glibc): the run folder says it was not applied.
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1) or False)
    out = tmp_path / "refused"
    fit("vgg08", data, _config(out, keep_freed_memory=True, epochs=1, warmup_epochs=0), model_kwargs=TINY)
    assert calls == [1, 1] and json.loads((out / "config.json").read_text())["train"]["keep_freed_memory"] is False


def test_keep_freed_memory_is_resolved_from_the_device():
    from cifarnets.train.runtime import resolve_keep_freed_memory

    assert resolve_keep_freed_memory(TrainConfig(), torch.device("cpu")).keep_freed_memory is True
    for device in ("cuda", "mps"):
        assert resolve_keep_freed_memory(TrainConfig(), torch.device(device)).keep_freed_memory is False
    assert resolve_keep_freed_memory(TrainConfig(keep_freed_memory=False), torch.device("cpu")).keep_freed_memory \
        is False


def test_keep_freed_memory_sets_glibc_and_says_when_it_cannot(monkeypatch, caplog):
    import platform
    import subprocess
    import sys

    from cifarnets.train import runtime

    if sys.platform == "linux" and platform.libc_ver()[0] == "glibc":
        # In a child process: the setting lasts for the whole process.
        code = "from cifarnets.train.runtime import keep_freed_memory; print(keep_freed_memory())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "True"
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("musl", ""))
    with caplog.at_level("INFO", logger="cifarnets.train.runtime"):
        assert runtime.keep_freed_memory() is False
    assert "not glibc (musl)" in caplog.text
