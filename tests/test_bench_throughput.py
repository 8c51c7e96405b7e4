"""The throughput benchmark's bookkeeping (no timing: the clock is a counter here)."""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_throughput"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("train_throughput", None)


class _CountingClock:
    """Every mark is the next integer: an interval's seconds is the number of marks between its ends."""

    def __init__(self) -> None:
        self.ticks = itertools.count()

    def mark(self) -> int:
        return next(self.ticks)

    def seconds(self, start: int, end: int) -> float:
        return float(end - start)


def test_probe_times_forward_to_backward_end_and_the_step_only(bench):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = bench.StepProbe(model, torch.device("cpu"))
    probe.clock = _CountingClock()
    bench.StepProbe.install()
    try:
        x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
        probe.arm()
        for _ in range(3):
            with torch.no_grad():
                model(x)  # evaluation: not a training step, not counted
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        kinds = [k for k, _ in probe.marks]
        inside, steps = probe.disarm()
    finally:
        bench.StepProbe.uninstall()
    # The first backward calibrates on every parameter (4 marks), then only the last one marks.
    assert kinds == ["F", "B", "B", "B", "B", "S", "E"] + ["F", "B", "S", "E"] * 2
    assert steps == 3
    assert inside == (4 + 1) + (1 + 1) * 2  # F..last B, plus S..E, per step
    assert probe.span == len(kinds) - 1  # the first mark is the first F, the last the last E
    assert len(probe._grad_handles) == 1


def test_figures_flag_fit_faster_than_bare_as_a_measurement_error(bench):
    r = bench.ModelResult("m", 1, 64)
    r.samples = {"bare": [bench.Sample(64, 1.0, 0.99)] * 3, "fit": [bench.Sample(64, 0.9, 0.8)] * 3}
    figures = r.figures()
    assert figures["fit_over_bare"] == pytest.approx(1 / 0.9)
    assert figures["measurement_error"]
    assert figures["outside_fraction"] == pytest.approx(1 - 0.8 / 0.9)
    assert set(figures) >= {"model", "bare", "fit", "customary", "fit_over_bare", "fit_over_customary",
                            "outside_fraction"}
    r.samples["fit"] = [bench.Sample(64, 1.1, 1.0)] * 3
    assert not r.figures()["measurement_error"]


def test_targets_are_reported_met_or_not(bench):
    common = {"images_per_slice": 512, "batch": 64, "fit": 640.0, "outside_between_steps": 0.01,
              "outside_at_ends": 0.005, "ends_seconds": 0.0782}
    rows = [{"model": "a", "fit_over_bare": 0.975, "outside_fraction": 0.015, **common},
            {"model": "b", "fit_over_bare": 0.95, "outside_fraction": 0.03, **common}]
    a, a_split, b, _ = bench.target_lines(rows)
    assert a.count(": met") == 2 and "NOT MET" not in a
    assert b.count("NOT MET") == 2
    # 78.2 ms of epoch ends over a 782-step CIFAR-10 epoch of 0.1 s steps: 0.1 %.
    assert "8-step slice" in a_split and "0.10% of a 782-step CIFAR-10 epoch" in a_split
    assert "outside f/b/s there about 1.1%" in a_split


def test_a_slice_splits_its_outside_time_between_steps_and_ends(bench):
    sample = bench.Sample(64, 10.0, 8.0, span=9.5)  # 8 s in steps, first forward to last step 9.5 s
    assert sample.outside == pytest.approx(0.2)
    assert sample.between_steps == pytest.approx(0.15) and sample.ends == pytest.approx(0.05)
    r = bench.ModelResult("m", 1, 64, batch=32)
    r.samples = {"bare": [bench.Sample(64, 9.0, 9.0)], "fit": [sample]}
    figures = r.figures()
    assert figures["outside_between_steps"] == pytest.approx(0.15)
    assert figures["ends_seconds"] == pytest.approx(0.5)


def test_parts_are_shares_of_the_same_rounds_bare_step(bench):
    r = bench.ModelResult("m", 1, 64, batch=32)  # a slice of 64 images is 2 steps
    r.samples = {"bare": [bench.Sample(64, 2.0, 2.0), bench.Sample(64, 4.0, 4.0)],
                 "fit": [bench.Sample(64, 2.0, 2.0)] * 2}
    r.parts = [{"x": 0.01}, {"x": 0.04}]  # seconds per step; the bare steps took 1 s and 2 s
    shares = r.figures()["parts"]["x"]["of_bare_step"]["samples"]
    assert shares == pytest.approx([0.01, 0.02])


def test_a_quick_run_prints_its_tables_targets_and_load(bench, capsys, tmp_path):
    # Tiny sizes: this checks that every path runs and reports, not any speed.
    threads = torch.get_num_threads()
    try:
        code = bench.main(["--quick", "--models", "vgg08", "--batch-size", "4", "--rounds", "1", "--no-customary",
                           "--sweep-k", "--threads", "1", "--json", str(tmp_path / "out.json")])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code in (0, 3)  # 3: a dry run on a busy machine may trip the physics check
    assert "| vgg08 |" in out and "(b) outside f/b/s" in out
    for part in bench.Parts.names:
        assert f"| vgg08 | {part} |" in out
    assert re.search(r"target vgg08: fit/bare [\d.]+ >= 0.97: (met|NOT MET); outside f/b/s [\d.]+% <= 2%: "
                     r"(met|NOT MET)", out), out
    assert re.search(r"of which between steps [\d.]+%; at the epoch's ends [\d.]+ ms per epoch", out), out
    assert "(b) between steps" in out and "(b) epoch ends, ms" in out
    assert "load average before:" in out and "load average after:" in out
    report = bench.json.loads((tmp_path / "out.json").read_text())
    assert report["threads"] == 1 and set(report["load_average"]) == {"before", "after"}
    assert set(report["results"][0]["parts"]) == set(bench.Parts.names)
    # (a) repeats (b)'s training on (b)'s batches, so the ratio compares the same work.
    assert report["results"][0]["same_training"] is True
    assert "(a) repeated (b)'s training, ending with the same weights: yes" in out
