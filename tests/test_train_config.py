"""TrainConfig validation, optimiser and schedule construction (cifarnets.train.config/optim)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cifarnets.train import TrainConfig, build_optimizer, build_scheduler


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 30 * 30, 2))


def _lrs(config: TrainConfig, steps_per_epoch: int = 1) -> list[float]:
    """The lr of every scheduler step of a run (per epoch, or per iteration for schedule_unit='step')."""
    opt = build_optimizer(_tiny(), config)
    sched = build_scheduler(opt, config, steps_per_epoch)
    n = config.epochs * (steps_per_epoch if config.schedule_unit == "step" else 1)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("kwargs, words", [
    ({"epochs": 0}, "epochs"),
    ({"lr": -1.0}, "lr"),
    ({"lr": math.nan}, "lr"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"optimizer": "adamw", "decoupled_wd": False}, "coupled L2"),
    ({"optimizer": "adam", "nesterov": True}, "nesterov"),
    ({"schedule": "step"}, "milestones"),
    ({"schedule": "cosine", "milestones": (3,)}, "milestones"),
    ({"schedule": "step", "milestones": (5, 3)}, "increasing"),
    ({"min_lr": 1.0, "lr": 0.1}, "min_lr"),
    ({"warmup_epochs": 100, "epochs": 100}, "warmup_epochs"),
    ({"warmup_epochs": 0.5}, "schedule_unit='step'"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"weight_decay": -1e-4}, "weight_decay"),
    ({"batch_size": 0}, "batch_size"),
    # types and finiteness: refused, not coerced
    ({"epochs": True}, "epochs must be an integer; got True"),
    ({"epochs": 2.0}, "epochs must be an integer"),
    ({"weight_decay": math.inf}, "weight_decay must be a finite number"),
    ({"lr": "1e-3"}, "lr must be a number; got '1e-3'"),
    ({"milestones": None}, "milestones must be a list of integers; got None"),
    ({"betas": (0.9,)}, "betas must be a list of 2 numbers"),
    ({"deterministic": 1}, "deterministic must be True or False"),
    ({"amp": "yes"}, "amp must be True or False or None"),
    ({"schedule": None}, "schedule must be one of"),
    ({"gamma": math.nan}, "gamma must be a finite number"),
    ({"dist_timeout": 0.0}, "dist_timeout must be a positive number"),
    ({"diverge_factor": 0.5}, "diverge_factor must be 0 (off) or > 1"),
    ({"padding": -1}, "padding"),
    ({"seed": -1}, "seed"),
])
def test_invalid_configs_name_the_problem(kwargs, words):
    with pytest.raises(ValueError, match="TrainConfig") as err:
        TrainConfig(**kwargs)
    assert words in str(err.value)


def test_every_field_is_type_checked_and_documented():
    from dataclasses import fields

    from cifarnets.train.config import FIELD_TYPES, type_ok

    for f in fields(TrainConfig):
        assert f.metadata.get("help"), f"{f.name} has no help text"
        wrong = "x" if FIELD_TYPES[f.name] is not str else 1
        if not type_ok(wrong, FIELD_TYPES[f.name]):
            with pytest.raises(ValueError, match=f.name):
                TrainConfig(**{f.name: wrong})


def test_config_round_trips_through_json():
    config = TrainConfig(optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4,
                         schedule="step", milestones=(3, 6), warmup_epochs=1, epochs=8, betas=(0.8, 0.99))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ValueError, match="does not know 'frobnicate'"):
        TrainConfig.from_dict({**config.to_dict(), "frobnicate": 1})


@pytest.mark.parametrize("optimizer, decoupled, wd, expected", [
    ("sgd", None, 5e-4, "SGD"),            # the ResNet-18 and AlexNet/VGG reports: coupled L2
    ("sgd", True, 5e-4, "SGDW"),           # timm's decoupled SGD
    ("adam", None, 1e-3, "Adam"),          # the deeper-VGG report: Adam's own (coupled) weight_decay
    ("adam", True, 1e-3, "AdamW"),
    ("adamw", None, 1e-2, "AdamW"),
])
def test_optimizer_table(optimizer, decoupled, wd, expected):
    config = TrainConfig(optimizer=optimizer, decoupled_wd=decoupled, weight_decay=wd, lr=0.01)
    opt = build_optimizer(_tiny(), config)
    assert type(opt).__name__ == expected
    assert opt.param_groups[0]["weight_decay"] == wd
    assert config.decoupled_wd_resolved == (expected in ("SGDW", "AdamW"))


def test_coupled_l2_adds_the_penalty_to_the_gradient():
    # Coupled: Adam sees g + wd * w. With a zero gradient the first Adam step is then
    # -lr * sign(wd * w) (m/sqrt(v) = 1), while decoupled decay shrinks w by lr * wd * w.
    w0 = torch.tensor([2.0, -3.0])
    results = {}
    for decoupled in (False, True):
        p = nn.Parameter(w0.clone())
        model = nn.Module()
        model.p = p
        opt = build_optimizer(model, TrainConfig(optimizer="adam", lr=0.1, weight_decay=0.5, decoupled_wd=decoupled))
        p.grad = torch.zeros_like(p)
        opt.step()
        results[decoupled] = p.detach().clone()
    torch.testing.assert_close(results[False], w0 - 0.1 * torch.sign(w0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[True], w0 * (1 - 0.1 * 0.5))


def test_no_wd_on_norm_and_bias():
    model = _tiny()
    opt = build_optimizer(model, TrainConfig(optimizer="sgd", weight_decay=5e-4, no_wd_norm_bias=True))
    by_id = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert by_id[id(p)] == (0.0 if p.ndim <= 1 else 5e-4), name


def test_cosine_per_epoch_is_the_coursework_schedule():
    # CosineAnnealingLR(T_max=epochs, eta_min=2e-5) stepped once per epoch (the coursework reports).
    config = TrainConfig(epochs=10, lr=1e-3, min_lr=2e-5)
    expected = [2e-5 + (1e-3 - 2e-5) * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(10)]
    assert _lrs(config) == pytest.approx(expected, rel=1e-9)


def test_warmup_then_cosine_per_step():
    config = TrainConfig(epochs=4, lr=0.1, min_lr=0.0, warmup_epochs=1, warmup_start_factor=0.01,
                         schedule_unit="step")
    lrs = _lrs(config, steps_per_epoch=5)
    assert len(lrs) == 20
    assert lrs[0] == pytest.approx(0.001)
    assert lrs[:5] == sorted(lrs[:5])                 # linear ramp
    assert lrs[5] == pytest.approx(0.1)               # cosine starts at the peak
    assert lrs[5:] == sorted(lrs[5:], reverse=True)   # then decays
    assert lrs[-1] == pytest.approx(0.1 * (1 + math.cos(math.pi * 14 / 15)) / 2)


def test_step_schedule_milestones_are_epochs_of_the_whole_run():
    config = TrainConfig(epochs=6, lr=1.0, schedule="step", milestones=(2, 4), gamma=0.1, warmup_epochs=1,
                         warmup_start_factor=0.5)
    assert _lrs(config) == pytest.approx([0.5, 1.0, 0.1, 0.1, 0.01, 0.01])
    config = config.replace(schedule_unit="step")
    lrs = _lrs(config, steps_per_epoch=3)
    assert lrs[6] == pytest.approx(0.1) and lrs[5] == pytest.approx(1.0) and lrs[12] == pytest.approx(0.01)


def test_scheduler_state_loads_with_weights_only(tmp_path):
    config = TrainConfig(epochs=5, warmup_epochs=2, lr=0.1)
    opt = build_optimizer(_tiny(), config)
    sched = build_scheduler(opt, config, 1)
    opt.step()
    sched.step()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert loaded["sched"]["last_epoch"] == sched.state_dict()["last_epoch"]


_config_fields = st.fixed_dictionaries({}, optional={
    "optimizer": st.sampled_from(["sgd", "adam", "adamw"]),
    "decoupled_wd": st.sampled_from([None, True, False]),
    "weight_decay": st.sampled_from([0.0, 1e-4, 5e-4]),
    "no_wd_norm_bias": st.booleans(),
    "nesterov": st.booleans(),
    "schedule": st.sampled_from(["none", "cosine", "step"]),
    "milestones": st.sampled_from([(), (2,), (1, 3)]),
    "warmup_epochs": st.sampled_from([0, 1, 0.5]),
    "schedule_unit": st.sampled_from(["epoch", "step"]),
    "epochs": st.integers(1, 5),
    "min_lr": st.sampled_from([0.0, 1e-4]),
    "lr": st.sampled_from([1e-3, 0.1]),
})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_config_fields, st.integers(1, 4))
def test_any_valid_config_builds_a_schedule_within_bounds(fields, steps_per_epoch):
    try:
        config = TrainConfig(**fields)
    except ValueError as err:
        assert str(err).startswith("TrainConfig: ")  # rejected with a message, never a crash
        return
    lrs = _lrs(config, steps_per_epoch)
    low = min(config.min_lr, config.lr * config.warmup_start_factor, config.lr * config.gamma ** 2)
    assert all(low * (1 - 1e-9) <= lr <= config.lr * (1 + 1e-9) for lr in lrs)
    if config.schedule == "cosine" and not config.warmup_epochs:
        assert lrs[0] == config.lr
