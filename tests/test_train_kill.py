"""Runs killed at every file write resume to exactly the uninterrupted result; run folders are locked.

A kill is simulated at each write of a run through `cifarnets._utils._write_all`: half the
bytes reach the temporary file, a copy of it stays behind as a killed process would leave
it, and the run stops. Resuming must then give, bit for bit, the weights, history and test
result of a run that was never interrupted, and leave no temporary file. One real SIGKILL
(a subprocess that kills itself in the middle of writing its checkpoint) checks the same
with a real dead process, its temporary file and its lock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from cifarnets import _utils
from cifarnets.data import load_dataset
from cifarnets.train import (
    History,
    ResumeMismatchError,
    RunDir,
    RunExistsError,
    RunLockedError,
    TrainConfig,
    fit,
    resume,
)

TINY = {"width": 8}
DATA_ARGS = {"name": "synthetic", "synthetic_sizes": (60, 40), "split": "none"}

# Every write of a 2-epoch run without a validation split (so every epoch is the best so far):
# config, then per checkpoint step (epoch 0 = the initial weights) the commit (last.state.pt)
# and the files derived from it, then the test result.
STEP = ["last.state.pt", "last.safetensors", "best.safetensors", "history.json", "history.csv"]
WRITES = (["config.json"] + [w for w in STEP if w != "best.safetensors"] + STEP + STEP
          + ["last.state.pt", "test.json", "history.json", "history.csv"])


def _config(out) -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=20, lr=5e-3, warmup_epochs=1, schedule_unit="step", deterministic=True,
                       quiet=True, device="cpu", out_dir=str(out))


def _fit(out, **kwargs):
    return fit("vgg08", load_dataset(**DATA_ARGS), _config(out), model_kwargs=TINY, **kwargs)


def _outcome(run_dir):
    """Everything a run leaves that must not depend on interruptions (times excluded)."""
    history = History.load(run_dir)
    epochs = [(e.epoch, e.train_loss, e.train_acc, e.lr, tuple(e.grad_flow.items())) for e in history.epochs]
    weights = {name: load_file(str(run_dir / name)) for name in ("last.safetensors", "best.safetensors")}
    return epochs, history.best_epoch, history.test, json.loads((run_dir / "test.json").read_text()), weights


def _assert_same(a, b):
    *rest_a, weights_a = a
    *rest_b, weights_b = b
    assert rest_a == rest_b
    for name in weights_a:
        assert weights_a[name].keys() == weights_b[name].keys()
        for key in weights_a[name]:
            assert torch.equal(weights_a[name][key], weights_b[name][key]), (name, key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("kill") / "reference"
    names = []
    real = _utils._write_all

    def counting(f, data):
        names.append(os.path.basename(f.name)[1:].rsplit(".", 3)[0])  # .NAME.PID.HEX.tmp
        real(f, data)

    mp = pytest.MonkeyPatch()
    mp.setattr(_utils, "_write_all", counting)
    try:
        _fit(out)
    finally:
        mp.undo()
    return out, names


def test_the_kill_cases_below_cover_every_write_of_a_run(reference):
    assert reference[1] == WRITES


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way up handles it."""


@pytest.mark.parametrize("k", range(len(WRITES)), ids=[f"{i}-{w}" for i, w in enumerate(WRITES)])
def test_a_kill_at_any_write_resumes_to_the_uninterrupted_result(reference, tmp_path, monkeypatch, k):
    ref_dir, _ = reference
    out = tmp_path / "run"
    real = _utils._write_all
    count = {"n": 0}

    def killed_at_k(f, data):
        if count["n"] == k:
            real(f, data[: len(data) // 2])
            f.flush()
            shutil.copy(f.name, f.name + ".left.tmp")  # what the killed process leaves behind
            raise _Killed
        count["n"] += 1
        real(f, data)

    monkeypatch.setattr(_utils, "_write_all", killed_at_k)
    with pytest.raises(_Killed):
        _fit(out)
    monkeypatch.setattr(_utils, "_write_all", real)
    assert _utils.stale_temp_files(out), "the simulated kill left a temporary file"
    # Whatever was being written, the folder resumes: from a checkpoint, or from the start if none was committed.
    _fit(out, resume=True)
    assert not _utils.stale_temp_files(out)
    _assert_same(_outcome(out), _outcome(ref_dir))


def test_a_real_sigkill_while_writing_the_checkpoint(reference, tmp_path):
    """A process killed by SIGKILL in the middle of its epoch-1 checkpoint: resume, lock taken over, same result."""
    ref_dir, _ = reference
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal
        from cifarnets import _utils
        from cifarnets.data import load_dataset
        from cifarnets.train import TrainConfig, fit
        real, seen = _utils._write_all, []
        def write(f, data):
            if os.path.basename(f.name).startswith(".last.state.pt."):
                seen.append(1)
                if len(seen) == 2:  # epoch 1's checkpoint (epoch 0 holds the initial weights)
                    real(f, data[: len(data) // 2]); f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            real(f, data)
        _utils._write_all = write
        config = TrainConfig(epochs=2, batch_size=20, lr=5e-3, warmup_epochs=1, schedule_unit="step",
                             deterministic=True, quiet=True, device="cpu", out_dir={str(out)!r})
        fit("vgg08", load_dataset(**{DATA_ARGS!r}), config, model_kwargs={TINY!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == -9, stderr
    assert json.loads((out / ".lock").read_text())["pid"] == proc.pid  # the dead process's lock file
    assert any(p.name.startswith(".last.state.pt.") for p in _utils.stale_temp_files(out))
    history = resume(out)  # model, data and settings from the folder; the dead process's lock is free
    assert json.loads((out / ".lock").read_text())["pid"] == os.getpid()
    assert [e.epoch for e in history.epochs] == [1, 2]
    assert not _utils.stale_temp_files(out)
    _assert_same(_outcome(out), _outcome(ref_dir))


def test_a_folder_in_use_is_refused_and_nothing_in_it_changes(reference, tmp_path):
    ref_dir, _ = reference
    out = tmp_path / "run"
    shutil.copytree(ref_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"}
    with RunDir(out):  # another process training in it (flock locks are per open file, so this stands for one)
        with pytest.raises(RunLockedError, match=rf"process {os.getpid()} on .* is training in it"):
            _fit(out, resume=True)
        with pytest.raises(RunLockedError):
            _fit(tmp_path / "run")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == before
    with pytest.raises(RunExistsError, match="--resume"):
        _fit(out)


def test_a_folder_killed_before_its_first_checkpoint_is_not_stuck(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"model": "vgg08", "model_kwargs": {"width": 8}, "data": {},
                                                 "train": {"epochs": 5}}))
    # Training again in it is allowed (nothing was trained), and replaces the config.
    history = _fit(out)
    assert len(history.epochs) == 2 and json.loads((out / "config.json").read_text())["train"]["epochs"] == 2


def test_a_resume_with_another_number_of_processes_is_refused_unless_asked(reference, tmp_path):
    ref_dir, _ = reference
    out = tmp_path / "run"
    shutil.copytree(ref_dir, out)
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 1
    config["world_size"] = 2  # as if trained by two torchrun processes
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ResumeMismatchError, match="trained by 2 process.* resumed by 1"):
        resume(out)
    history = resume(out, allow_world_size_change=True)
    assert history.changes == [{"epoch": 3, "changed": {"world_size": [2, 1]}}]
    assert json.loads((out / "config.json").read_text())["world_size"] == 1
