"""``cifarnets gradflow`` and ``cifarnets plot`` end to end, registered into a local parser."""

from __future__ import annotations

import argparse

import matplotlib.image
import pytest

from cifarnets.cli import analysis
from cifarnets.train.history import EpochRecord, History


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cifarnets")
    sub = parser.add_subparsers(dest="command", required=True)
    analysis.register(sub)
    args = parser.parse_args(list(argv))
    return args.handler(args)


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(path).shape[0] > 100


def test_gradflow_one_model_prints_the_table_and_writes_the_picture(tmp_path, capsys):
    out = tmp_path / "vgg08.png"
    assert run_cli("gradflow", "vgg08", "--batch-size", "4", "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "gradient flow of vgg08 on a batch of 4" in text
    assert "stem.conv" in text and "head.fc" in text and f"wrote {out}" in text
    assert_png(out)


def test_gradflow_passes_model_flags(tmp_path, capsys):
    out = tmp_path / "bn.png"
    assert run_cli("gradflow", "vgg08", "--bn", "--num-classes", "10", "--batch-size", "2", "--out", str(out)) == 0
    assert "gradient flow of vgg08 bn" in capsys.readouterr().out
    assert_png(out)


def test_gradflow_compare_puts_the_reports_five_networks_in_one_picture(tmp_path, capsys):
    out = tmp_path / "compare.png"
    assert run_cli("gradflow", "--compare", "--batch-size", "2", "--out", str(out)) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("layer"))
    assert header.split()[1:] == ["vgg08", "vgg38", "vgg38", "bn", "vgg38", "rc", "vgg38", "bn+rc"]
    stem = next(line for line in text.splitlines() if line.startswith("stem.conv")).split()
    vgg08, vgg38 = float(stem[1]), float(stem[2])
    assert vgg38 < 1e-9 * vgg08  # the vanishing gradient, in the printed table
    assert next(line for line in text.splitlines() if line.startswith("stages.0.block0.conv1")).split()[1] == "–"
    assert_png(out)


def test_gradflow_compare_of_a_given_model_varies_its_flags(tmp_path, capsys):
    out = tmp_path / "compare08.png"
    with pytest.warns(UserWarning, match="rc=True changes nothing"):
        assert run_cli("gradflow", "vgg08", "--compare", "--batch-size", "2", "--out", str(out)) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("layer"))
    assert header.split()[1:] == ["vgg08", "vgg08", "bn", "vgg08", "rc", "vgg08", "bn+rc"]


@pytest.mark.parametrize("argv, message", [
    (["gradflow", "--out", "x.png"], "give a MODEL"),
    (["gradflow", "--compare", "--bn", "--out", "x.png"], "drop them"),
    (["gradflow", "resnet20", "--compare", "--out", "x.png"], "does not take"),
    (["gradflow", "vgg08", "--batch-size", "0", "--out", "x.png"], "at least 1"),
])
def test_gradflow_errors_say_what_to_do(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        run_cli(*argv)


def _write_run(folder, model, *, grad_flow=True, **kwargs):
    folder.mkdir(parents=True)
    epochs = [EpochRecord(epoch=e, train_loss=4.0 / e, train_acc=10.0 * e, val_loss=4.2 / e, val_acc=9.0 * e,
                          lr=1e-3, epoch_seconds=12.0,
                          grad_flow={"stem.conv": 1e-6 * e, "head.fc": 1e-4} if grad_flow else {})
              for e in (1, 2, 3)]
    history = History(model=model, params=59_716, epochs=epochs, best_epoch=3, test={"loss": 1.9, "acc": 46.84},
                      config={"lr": 1e-3}, **kwargs)
    (folder / "history.json").write_text(history.to_json())


def test_plot_writes_curves_gradient_flow_and_the_results_table(tmp_path, capsys):
    _write_run(tmp_path / "runs" / "a", "vgg08")
    _write_run(tmp_path / "runs" / "b", "vgg38", model_kwargs={"bn": True})
    _write_run(tmp_path / "runs" / "c", "vgg08", grad_flow=False)
    out = tmp_path / "figures"
    assert run_cli("plot", *(str(tmp_path / "runs" / r) for r in "abc"), "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert text.startswith("| run | params |") and "| vgg38 bn |" in text
    assert "skipped" in text and "no gradient flow recorded" in text
    for name in ("curves.png", "a/gradient_flow.png", "a/gradient_flow_heatmap.png", "b/gradient_flow.png"):
        assert_png(out / name)
    assert not (out / "c").exists()
    assert (out / "results.md").read_text().startswith("| run |")
    assert (out / "results.csv").read_text().startswith("run,model,params")


def test_plot_of_a_folder_without_history(tmp_path):
    with pytest.raises(FileNotFoundError, match="run folder"):
        run_cli("plot", str(tmp_path), "--out", str(tmp_path / "out"))
