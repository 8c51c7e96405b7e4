"""Damaged, foreign and hostile run folders: each refused by name, nothing outside the folder touched.

Each test reproduces a case the fault probe of the "nothing silent" issue found on main (a
followed .lock link, an empty --out, trained weights overwritten, a flipped byte resumed, a
checkpoint copied from another run, a changed model, settings that cannot mean what they say).
"""

from __future__ import annotations

import json
import shutil

import pytest

import cifarnets.cli as cli
from cifarnets.errors import CheckpointError, ConfigError, RunError
from cifarnets.train import TrainConfig, load_checkpoint, resume
from cifarnets.train.rundir import RunDir

TRAIN = ["train", "vgg08", "--width", "8", "--dataset", "synthetic", "--split", "4000:1000", "--limit", "300",
         "--batch-size", "100", "--lr", "5e-3", "--seed", "1", "--deterministic", "--quiet", "--device", "cpu"]


def _train(tmp_path, name="run", *extra, epochs=2):
    run = tmp_path / name
    assert cli.main([*TRAIN, "--epochs", str(epochs), "--out", str(run), *extra]) == 0
    return run


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A two-epoch run stopped after epoch 1 (its test not run): what a kill leaves, resumable."""
    tmp = tmp_path_factory.mktemp("stopped")
    run = tmp / "run"
    cfg = dict(epochs=2, batch_size=100, lr=5e-3, seed=1, deterministic=True, quiet=True, device="cpu",
               out_dir=str(run))
    from cifarnets.data import load_dataset
    from cifarnets.train import fit

    data = load_dataset("synthetic", split=(4000, 1000), limit=300)
    calls = []

    def stop_after_first(record, history):
        calls.append(record.epoch)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit("vgg08", data, TrainConfig(**cfg), model_kwargs={"width": 8},
            callbacks=[stop_after_first])
    assert calls == [1]
    return run


def _copy(run, tmp_path, name="copy"):
    out = tmp_path / name
    shutil.copytree(run, out)
    return out


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(stopped, tmp_path, capsys):
    run = _copy(stopped, tmp_path)
    precious = tmp_path / "precious.txt"
    precious.write_text("my thesis")
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(precious)
    assert cli.main(["train", "--resume", str(run)]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert precious.read_text() == "my thesis"


def test_a_run_file_that_is_a_link_is_not_read(stopped, tmp_path):
    run = _copy(stopped, tmp_path)
    outside = tmp_path / "outside.pt"
    shutil.move(run / "last.state.pt", outside)
    (run / "last.state.pt").symlink_to(outside)
    with pytest.raises(RunError, match="symbolic link"):
        resume(run)


@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_an_error_not_a_run_without_files(out, capsys):
    assert cli.main([*TRAIN, "--epochs", "1", "--out", out]) == 2
    assert "empty path" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="empty path"):
        TrainConfig(out_dir=out)


def test_trained_weights_without_a_checkpoint_are_never_overwritten(stopped, tmp_path, capsys):
    run = _copy(stopped, tmp_path)
    (run / "last.state.pt").unlink()
    best = (run / "best.safetensors").read_bytes()
    assert cli.main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint (last.state.pt)" in err and "best.safetensors" in err and "overwrite" in err
    # A new run in the same folder is refused the same way.
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 2
    assert (run / "best.safetensors").read_bytes() == best


@pytest.mark.parametrize("where, n", [(0.3, 1), (0.8, 8)])
def test_a_damaged_checkpoint_is_named_as_damage(stopped, tmp_path, capsys, where, n):
    run = _copy(stopped, tmp_path)
    path = run / "last.state.pt"
    data = bytearray(path.read_bytes())
    at = int(len(data) * where)
    for i in range(at, at + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cli.main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "last.state.pt is damaged" in err and "checksum" in err and "learning rate" not in err


def test_damaged_weights_are_named_as_damage(stopped, tmp_path):
    run = _copy(stopped, tmp_path)
    path = run / "best.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # a bit of the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="best.safetensors is damaged .checksum mismatch"):
        load_checkpoint(run)


def test_a_checkpoint_copied_from_another_run_is_refused(stopped, tmp_path, capsys):
    run = _copy(stopped, tmp_path)
    other = tmp_path / "other"
    assert cli.main([*TRAIN, "--epochs", "1", "--lr", "1e-3", "--out", str(other)]) == 0
    shutil.copy(other / "last.state.pt", run / "last.state.pt")
    assert cli.main(["train", "--resume", str(run)]) == 2
    assert "belongs to another run" in capsys.readouterr().err


def test_a_changed_model_gives_one_line(stopped, tmp_path, capsys):
    run = _copy(stopped, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["flags"]["width"] = config["model_kwargs"]["width"] = 16
    (run / "config.json").write_text(json.dumps(config))
    assert cli.main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "width" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_stopped_run_itself_resumes(stopped, tmp_path):
    run = _copy(stopped, tmp_path)
    history = resume(run)
    assert [e.epoch for e in history.epochs] == [1, 2] and history.test is not None
    assert RunDir(run).failure() is None  # the record of the interruption ends once the run finishes
    assert RunDir(run).status()["status"] == "done"


def test_an_interrupted_run_records_why(stopped):
    failure = RunDir(stopped).failure()
    assert failure is not None and failure["status"] == "interrupted" and failure["epoch"] == 1
    assert failure["error"].startswith("KeyboardInterrupt")


@pytest.mark.parametrize("args, message", [
    (["--padding", "1000"], "padding"),
    (["--epochs", "1", "--sched", "step", "--milestones", "99"], "milestones [99] lie after the last epoch"),
    (["--batch-size", "1000000000000"], "batch_size"),
    (["--batch-size", "500"], "larger than the training set"),
    (["--seed", "1180591620717411303424"], "seed must be an integer in [0, 2**63)"),
])
def test_settings_that_cannot_mean_what_they_say_are_refused(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    argv = [*TRAIN, "--epochs", "2", "--out", str(run), *args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (run / "last.state.pt").exists()


def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(tmp_path, capsys, monkeypatch):
    import errno

    from cifarnets import _utils

    run = tmp_path / "run"
    real = _utils._write_all
    writes = []

    def full_disk(f, data):
        writes.append(f.name)
        if len(writes) > 12:  # config, epoch 0 and part of epoch 1 fit; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)

    monkeypatch.setattr(_utils, "_write_all", full_disk)
    assert cli.main([*TRAIN, "--epochs", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and str(run) in err
    assert "--resume" in err and not _utils.stale_temp_files(run)
    monkeypatch.setattr(_utils, "_write_all", real)
    assert cli.main(["train", "--resume", str(run)]) == 0


def test_sigterm_says_what_happened_and_how_to_continue(tmp_path, capsys, monkeypatch):
    import os
    import signal

    from cifarnets.cli import train as train_cmd

    run = tmp_path / "run"
    monkeypatch.setattr(train_cmd, "_print_epoch", lambda record, history: os.kill(os.getpid(), signal.SIGTERM))
    assert cli.main([*TRAIN, "--epochs", "2", "--out", str(run)]) == 143
    err = capsys.readouterr().err
    assert "terminated (SIGTERM)" in err and "--resume" in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    assert RunDir(run).state() == "resumable"


def test_an_edited_data_set_is_named_the_right_way_round(stopped, tmp_path):
    run = _copy(stopped, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["data"]["dataset"] = "cifar10"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="data.dataset: 'synthetic' in the checkpoint, 'cifar10' in config.json"):
        resume(run)


def test_an_export_into_a_folder_it_cannot_write_names_that_folder(tmp_path, capsys, monkeypatch):
    import errno
    from pathlib import Path

    run = _train(tmp_path, epochs=1)
    target = tmp_path / "locked" / "model"
    target.parent.mkdir()
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):  # as a read-only folder would answer (the tests may run as root)
        if self.parent == target.parent:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    err = _one_line_err(capsys, ["export", str(run), "--out", str(target)])
    assert f"{target.parent} is not writable" in err and ".tmp" not in err


def _one_line_err(capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_diverged_run_says_so_in_its_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(run), "--opt", "sgd", "--lr", "1e6"]) == 2
    status = RunDir(run).status()
    assert status["status"] == "failed" and ("diverged" in status["error"] or "became" in status["error"])
