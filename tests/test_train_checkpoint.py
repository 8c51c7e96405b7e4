"""Checkpoint files: atomic writes under a simulated crash, safe loading, prefix-free state dicts."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import cifarnets
from cifarnets import _utils as atomic_io
from cifarnets.train import (
    CheckpointError,
    History,
    RunDir,
    atomic_write,
    load_checkpoint,
    read_metadata,
    save_weights,
    strip_prefixes,
)
from cifarnets.train.checkpoint import state_dict_for_save
from cifarnets.train.rundir import Checkpoint


def _model() -> nn.Module:
    return cifarnets.create("vgg08", width=8, num_classes=10)


def test_a_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    first = _model()
    save_weights(path, first, {"model": "vgg08", "model_kwargs": {"width": 8, "num_classes": 10}, "epoch": 1})
    before = path.read_bytes()

    def half_then_die(f, data):
        f.write(data[: len(data) // 2])
        f.flush()
        raise OSError("simulated crash after writing half the file")

    monkeypatch.setattr(atomic_io, "_write_all", half_then_die)
    with pytest.raises(OSError, match="simulated crash"):
        save_weights(path, _model(), {"model": "vgg08", "epoch": 2})
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]  # no temporary file left
    model, meta = load_checkpoint(path)
    assert meta["epoch"] == 1
    for key, value in first.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "sub" / "history.json"
    atomic_write(target, "old")
    atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"


class _Bomb:
    """Unpickling this runs code: what a malicious .pt file does."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_bomb_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    bomb = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Bomb(str(marker))}, bomb)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(bomb)
    assert not marker.exists()
    # The same for a run's checkpoint (last.state.pt), which resume reads.
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.state.pt").write_bytes(bomb.read_bytes())
    with pytest.raises(CheckpointError, match="arbitrary code"):
        RunDir(run).read_state()
    assert not marker.exists()
    assert not marker.exists()
    # Plain pickles (not torch.save zip files) are refused as well.
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(_Bomb(str(marker)), protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_plain_pt_state_dicts_load_with_weights_only_and_prefixes_stripped(tmp_path):
    model = _model()
    wrapped = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": wrapped, "epoch": 3}, tmp_path / "other_tool.pt")
    state, meta = load_checkpoint(tmp_path / "other_tool.pt")
    assert isinstance(state, dict) and meta == {}
    assert set(state) == set(model.state_dict())


def test_state_dicts_are_saved_without_wrapper_prefixes(tmp_path):
    model = _model()
    wrapped = nn.DataParallel(model)  # keys "module.*", like DDP's
    assert all(k.startswith("module.") for k in wrapped.state_dict())
    keys = set(state_dict_for_save(wrapped))
    assert keys == set(model.state_dict())
    save_weights(tmp_path / "w.safetensors", wrapped,
                 {"model": "vgg08", "model_kwargs": {"width": 8, "num_classes": 10}})
    assert set(load_file(str(tmp_path / "w.safetensors"))) == set(model.state_dict())
    assert strip_prefixes({"module.a._orig_mod.b": 1}) == {"a.b": 1}


def test_load_checkpoint_rebuilds_through_create(tmp_path):
    model = cifarnets.create("vgg38", bn=True, rc=True, width=8, in_chans=1, num_classes=10)
    save_weights(tmp_path / "best.safetensors", model, {
        "model": "vgg38", "model_kwargs": {"bn": True, "rc": True, "width": 8, "in_chans": 1, "num_classes": 10},
        "epoch": 7, "mean": [0.28], "std": [0.35], "dataset": "fashion_mnist"})
    rebuilt, meta = load_checkpoint(tmp_path)
    assert type(rebuilt) is type(model) and not rebuilt.training
    assert rebuilt.pretrained_cfg["mean"] == (0.28,) and rebuilt.pretrained_cfg["dataset"] == "fashion_mnist"
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key
    state, _ = load_checkpoint(tmp_path, build=False)
    assert set(state) == set(model.state_dict())
    assert read_metadata(tmp_path / "best.safetensors")["epoch"] == 7


def test_weights_that_do_not_fit_name_the_fix(tmp_path):
    save_weights(tmp_path / "w.safetensors", _model(), {"model": "vgg08", "model_kwargs": {"num_classes": 10}})
    with pytest.raises(CheckpointError, match="build=False"):
        load_checkpoint(tmp_path / "w.safetensors")


def test_missing_and_damaged_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="best.safetensors"):
        load_checkpoint(tmp_path)
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="written completely"):
        load_checkpoint(tmp_path / "x.safetensors")


def test_a_checkpoint_step_round_trips_with_weights_only(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    weights = state_dict_for_save(model)
    history = History(model="vgg08", best_epoch=3)
    with RunDir(tmp_path) as run:
        run.write_config({"model": "vgg08", "model_kwargs": {}, "data": {}, "train": {}})
        run.save(Checkpoint(epoch=3, weights=weights, optimizer=opt.state_dict(), scheduler={"last_epoch": 3},
                            rng={"torch": torch.get_rng_state()}, history=history, metadata={"model": "vgg08"}),
                 best=True)
        back = run.restore()
    assert back.epoch == 3 and back.history.best_epoch == 3 and back.metadata == {"model": "vgg08"}
    assert torch.equal(back.rng["torch"], torch.get_rng_state())
    assert all(torch.equal(back.weights[k], v) for k, v in weights.items())
    # The safetensors files derived from it load on their own, as any tool reads them.
    assert read_metadata(tmp_path / "best.safetensors")["epoch"] == 3
    assert load_file(str(tmp_path / "last.safetensors")).keys() == weights.keys()
