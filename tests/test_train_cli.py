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
    assert config["model_kwargs"] == {"width": 8, "in_chans": 3, "num_classes": 10}
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
    err = capsys.readouterr().err
    assert "drop --lr" in err and "add --change-schedule" in err
    assert cli.main(["train", "--resume", str(run), "--seed", "3", "--change-schedule"]) == 2
    assert "drop --seed" in capsys.readouterr().err
    # Asked for explicitly, the learning rate may change; config.json and the history record it.
    assert cli.main(["train", "--resume", str(run), "--change-schedule", "--lr", "1e-3"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 1e-3
    assert History.load(run).changes == [{"epoch": 2, "changed": {"lr": [5e-3, 1e-3]}}]
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


def test_help_shows_each_real_default_once():
    text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "default: None" not in text
    assert text.count("(default: 0.001)") == 1 and "(default: adam)" in text and "(default: cosine)" in text
    # Every TrainConfig field the CLI sets is an option, with the field's own help text.
    from cifarnets.train import TrainConfig

    for option, field in train_cmd.train_options():
        assert option in text and field.metadata["help"].split()[0] in text
        assert getattr(TrainConfig(), field.name) == field.default


def test_data_set_names_as_users_type_them(tmp_path, capsys):
    from cifarnets.data import canonical_dataset_name

    assert [canonical_dataset_name(n) for n in ("fashion-mnist", "FashionMNIST", "cifar-10", "CIFAR100", "CIFAR_10")] \
        == ["fashion_mnist", "fashion_mnist", "cifar10", "cifar100", "cifar10"]
    run = tmp_path / "run"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(run)][:4] + ["--dataset", "Synthetic"]
                    + [*TRAIN, "--epochs", "1", "--out", str(run)][6:]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["dataset"] == "synthetic" and config["data"]["load_args"]["name"] == "synthetic"
    assert cli.main(["train", "vgg08", "--dataset", "cifar-1000"]) == 2  # refused before anything is read
    assert "unknown data set 'cifar-1000'" in capsys.readouterr().err


def test_bad_paths_and_files_are_one_line_messages(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    for text, words in [("{}", "'model' must be a str, found nothing"), ("{not json", "is not valid JSON"),
                        ('{"model": "vgg08", "model_kwargs": {}, "data": {}, "train": {"milestones": null}}',
                         "milestones must be a list of integers; got None")]:
        (run / "config.json").write_text(text)
        assert cli.main(["train", "--resume", str(run)]) == 2
        err = capsys.readouterr().err
        assert words in err and str(run / "config.json") in err and "Traceback" not in err, err
    assert cli.main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "notes.pt").write_text("just text\n")
    assert cli.main(["eval", str(tmp_path / "notes.pt"), "--device", "cpu"]) == 2
    assert "is not a checkpoint" in capsys.readouterr().err


def test_a_run_folder_in_use_is_refused(tmp_path, capsys):
    from cifarnets.train import RunDir

    run = tmp_path / "run"
    with RunDir(run):
        assert cli.main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 2
    assert "is in use" in capsys.readouterr().err
    assert not (run / "config.json").exists()


def test_resume_never_downloads_and_survives_a_garbage_history(tmp_path, capsys, monkeypatch):
    import cifarnets.data

    run = tmp_path / "run"
    assert cli.main([*TRAIN, "--epochs", "2", "--out", str(run)][:-4] + ["--epochs", "1", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    config["data"]["load_args"]["download"] = True  # planted
    (run / "config.json").write_text(json.dumps(config))
    (run / "history.json").write_text("garbage")
    calls = []
    real = cifarnets.data.DataSource.load
    monkeypatch.setattr(cifarnets.data.DataSource, "load", lambda self: calls.append(self.download) or real(self))
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run)]) == 0
    assert calls == [False]
    assert [e.epoch for e in History.load(run).epochs] == [1]  # history.json rebuilt from the checkpoint


@pytest.mark.parametrize("key, value", [("epochs", 2), ("lr", 0.5)])
def test_a_hand_edited_config_json_is_refused_on_resume(tmp_path, capsys, key, value):
    # Editing epochs used to lengthen the run (although --epochs on resume is refused) and an
    # edited lr was silently ignored: config.json must describe the run its checkpoint holds.
    run = tmp_path / "run"
    assert cli.main([*TRAIN, "--epochs", "2", "--out", str(run)][:-4] + ["--epochs", "1", "--out", str(run)]) == 0
    kept = lambda: {p.name: p.read_bytes() for p in run.iterdir() if p.name.endswith((".pt", ".safetensors", ".json"))  # noqa: E731
                    and p.name not in ("config.json", "status.json")}
    before = kept()
    config = json.loads((run / "config.json").read_text())
    config["train"][key] = value
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"train.{key}" in err and "edited by hand" in err and "Traceback" not in err
    assert kept() == before


def test_only_cifarnets_errors_become_one_line_messages(monkeypatch):
    def buggy(args):
        raise TypeError("a bug")

    monkeypatch.setattr(train_cmd, "_train", buggy)
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["train", "vgg08"])


def test_models_without_a_classifier_are_refused_before_anything_is_written(tmp_path, capsys):
    for n in ("0", "5"):
        run = tmp_path / f"run{n}"
        assert cli.main([*TRAIN, "--num-classes", n, "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert ("no classifier" if n == "0" else "5 outputs but synthetic has 10 classes") in err, err
        assert not run.exists()
    # TrainConfig fields are checked for type and finiteness, before anything is written.
    assert cli.main([*TRAIN, "--wd", "inf", "--out", str(tmp_path / "inf")]) == 2
    assert "weight_decay must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "inf").exists()


def test_run_files_are_readable_by_the_group_and_a_denied_read_says_so(tmp_path, capsys, monkeypatch):
    import os
    import stat

    from cifarnets.train import checkpoint

    run = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert cli.main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 0
    finally:
        os.umask(old)
    for path in run.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    capsys.readouterr()

    def denied(path, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint, "open", denied, raising=False)  # as another user without read access sees it
    assert cli.main(["eval", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and "No such file" not in err


def _readme_training_commands() -> list[list[str]]:
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Training", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "cifarnets":
            commands.append(words[1:])
    return commands


def test_the_readme_training_commands_run(tmp_path, capsys):
    """Each `cifarnets ...` line of the README's Training section parses exactly as written, with valid
    settings; then the same commands run shortened (tiny width, synthetic data, one epoch)."""
    from cifarnets.train import TrainConfig

    commands = _readme_training_commands()
    assert [c[0] for c in commands] == ["train", "train", "train", "eval"]
    parser = cli.build_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        if argv[0] == "train" and not args.resume:
            TrainConfig(**train_cmd._train_config_kwargs(args))  # every value is valid
            if args.data_norm:
                from cifarnets.data import resolve_normalization

                resolve_normalization(args.data_norm, args.dataset, 3)
    assert "--batch-size 128" in " ".join(commands[1]) and "--data-norm cifar10_seed000" in " ".join(commands[1])

    run = str(tmp_path / "run")
    short = {"--dataset": "synthetic", "--epochs": "1", "--batch-size": "50", "--split": "none"}

    def shorten(argv: list[str]) -> list[str]:
        out, i = [], 0
        while i < len(argv):
            word = argv[i]
            if word in ("--download", "--data-norm"):
                i += 1 if word == "--download" else 2
                continue
            if word in short:
                out += [word, short[word]]
                i += 2
                continue
            out.append(run if word.startswith("runs/") else word)
            i += 1
        return out

    first = shorten(commands[0]) + ["--width", "8", "--limit", "100", "--quiet", "--device", "cpu"]
    assert cli.main(first) == 0
    assert cli.main(shorten(commands[2])) == 0 and "nothing to do" not in capsys.readouterr().err
    assert cli.main(shorten(commands[3]) + ["--device", "cpu"]) == 0
    assert "synthetic test" in capsys.readouterr().out


def test_unwritable_run_folders_and_unusable_plot_paths_are_one_line_messages(tmp_path, capsys, monkeypatch):
    from cifarnets.train import rundir

    run = tmp_path / "run"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 0
    (run / "history.json").write_text("{garbage")
    capsys.readouterr()
    # A damaged history.json: plot names the file and the fix.
    assert cli.main(["plot", str(run), "--out", str(tmp_path / "figures")]) == 2
    err = capsys.readouterr().err
    assert str(run / "history.json") in err and "--resume" in err and "Traceback" not in err
    assert cli.main(["train", "--resume", str(run)]) == 0  # rewrites it from the checkpoint
    a_file = tmp_path / "figures.png"
    a_file.write_text("x")
    capsys.readouterr()
    assert cli.main(["plot", str(run), "--out", str(a_file)]) == 2
    assert str(a_file) in capsys.readouterr().err

    # A folder the user may not write to (root ignores permissions, so the refusal is simulated).
    def read_only(folder):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(rundir, "_open_lock_file", read_only)
    for argv in ([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "ro")], ["train", "--resume", str(run)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "cannot write in the run folder" in err and "Permission denied" in err and "Traceback" not in err


def test_keep_freed_memory_is_on_for_cpu_and_a_resume_may_switch_it(tmp_path, capsys, monkeypatch):
    from cifarnets.train import loop

    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1) or True)  # the real one is for good
    run = tmp_path / "run"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 0
    assert calls == [1] and json.loads((run / "config.json").read_text())["train"]["keep_freed_memory"] is True
    off = tmp_path / "off"
    assert cli.main([*TRAIN, "--epochs", "1", "--out", str(off), "--no-keep-freed-memory"]) == 0
    assert calls == [1] and json.loads((off / "config.json").read_text())["train"]["keep_freed_memory"] is False
    # It changes no value, so a resume may switch it on (here of a finished run: nothing left to train).
    assert cli.main(["train", "--resume", str(off), "--keep-freed-memory"]) == 0
    assert calls == [1, 1]
    assert [e.epoch for e in History.load(run).epochs] == [1]
