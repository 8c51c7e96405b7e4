"""The README's "Command line", "Analysis and pictures" and "Sweeps" blocks run as written.

(The opening block and "Use it elsewhere" run in ``test_readme_elsewhere.py``, which has the
exported run they load; the "Training" commands in ``test_train_cli.py``.) A line with a
placeholder (``MODEL``, ``RUN``, ``GRID``, ``DIR``, ``...``, a glob) cannot run as it stands:
its subcommand and options must still parse, so a renamed command or option fails here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

from matplotlib.figure import Figure

import cifarnets
from cifarnets.cli import build_parser
from cifarnets.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"^(MODEL|RUN|GRID|DIR|\.\.\.)$|/.*\*")  # a shell glob over folders: runs/*


def has_placeholder(line: str) -> bool:
    return any(PLACEHOLDER.search(token) for token in shlex.split(line))


def section_blocks(title: str, kind: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = re.search(rf"^## {re.escape(title)}\n(.*?)^## ", text, re.S | re.M)
    assert section, f"README.md lacks its {title!r} section"
    blocks = re.findall(rf"```{kind}\n(.*?)```", section.group(1), re.S)
    assert blocks, f"README.md's {title!r} section has no {kind} block"
    return blocks


def command_lines(block: str) -> list[str]:
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if line:
            assert line.startswith("cifarnets "), f"README command not runnable here: {line}"
            lines.append(line)
    return lines


def run_cli(argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = cli_main(argv)
    return status, buffer.getvalue()


@contextlib.contextmanager
def working_dir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def check_parses(line: str) -> None:
    """A placeholder line: each command on it (``train MODEL ... / eval RUN`` holds two) names a
    subcommand that exists, and its options parse with the placeholders filled in."""
    fill = {"MODEL": "vgg08", "RUN": "runs/a", "GRID": "grid.toml", "DIR": "out"}
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    for part in line.split(" / "):
        argv = shlex.split(part)
        argv = argv[1:] if argv[0] == "cifarnets" else argv
        argv = ["runs/a" if PLACEHOLDER.search(a) and "*" in a else fill.get(a, a) for a in argv if a != "..."]
        assert argv[0] in subcommands, f"README names `cifarnets {argv[0]}`, which does not exist"
        subcommands[argv[0]].parse_args(argv[1:])


def test_command_line_section_runs(tmp_path):
    lines = command_lines(section_blocks("Command line", "bash")[0])
    ran = 0
    with working_dir(tmp_path):
        for line in lines:
            if has_placeholder(line):
                check_parses(line)
                continue
            status, output = run_cli(shlex.split(line)[1:])
            assert status == 0, f"`{line}` exited with {status}"
            ran += 1
            command = shlex.split(line)[1]
            if command == "list":
                assert "vgg38" in output and "resnet18" not in output
            elif command == "info":
                assert "1,210,948" in output  # vgg106's published parameter count
            elif command == "rf":
                assert "212" in output  # VGG-16's receptive field (the AlexNet/VGG report printed 236)
            elif command == "summary":
                assert "338,500" in output  # VGG38 BN+RC, the VGG38 report's Table 1
        assert (tmp_path / "g.png").stat().st_size > 10_000  # gradflow --compare --out g.png
    assert ran >= 5


def test_sweeps_section_commands_parse():
    for line in command_lines(section_blocks("Sweeps", "bash")[0]):
        check_parses(line)


def test_analysis_section_runs(tmp_path):
    from cifarnets.data import load_dataset
    from cifarnets.train import TrainConfig, fit

    data = load_dataset("synthetic", limit=100, split="none")
    for name in ("vgg08", "vgg38"):  # the run folders the block plots
        fit(name, data, TrainConfig(epochs=1, batch_size=50, quiet=True, device="cpu",
                                    out_dir=str(tmp_path / "runs" / name)), model_kwargs={"width": 4})
    namespace = {"cifarnets": cifarnets, "model": cifarnets.create("vgg08")}
    with working_dir(tmp_path):
        exec(compile(section_blocks("Analysis and pictures", "python")[0], "README.md", "exec"), namespace)
    assert isinstance(namespace["fig"], Figure)
    assert set(namespace["flows"]) >= {"vgg08", "vgg38"}
    assert (tmp_path / "curves.png").stat().st_size > 10_000
