"""README "Use it elsewhere": its commands and code run as written, and the exported run round-trips.

The ``bash`` blocks run through the ``cifarnets`` command line, the ``python`` blocks with
``exec``, in a fresh folder (``path/to/cifarnets`` is this checkout). Then the results are
checked: the exported folder rebuilds exactly the trained architecture (VGG38 BN+RC comes back
as BN+RC) with bit-identical weights; ``cifarnets eval`` of the exported weights and timm's
reloaded model reproduce the run's ``test.json``; timm's ``num_classes`` / ``in_chans``
adaptation, ``pretrained_cfg_overlay=dict(file=...)``, an ``hf-hub:`` repository (served from a
local Hub cache, offline), the model card, the offline ``--push-to-hub`` error.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import cifarnets
from cifarnets.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Use it elsewhere\n(.*?)^## ", text, re.S | re.M)
    assert section, "README.md lacks its 'Use it elsewhere' section"
    return re.findall(r"```(bash|python)\n(.*?)```", section.group(1), re.S)


def bash_commands(block: str) -> list[list[str]]:
    joined = block.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.split("  #")[0].strip()
        if line:
            argv = shlex.split(line)
            assert argv[0] == "cifarnets", f"README command not runnable here: {line}"
            commands.append(argv[1:])
    return commands


@pytest.fixture
def readme_run(tmp_path_factory):
    """Run the section in a fresh folder; returns (folder, {command: stdout})."""
    import contextlib
    import io
    import os

    folder = tmp_path_factory.mktemp("elsewhere")
    outputs: dict[str, str] = {}
    namespaces = []
    old = os.getcwd()
    os.chdir(folder)
    try:
        for kind, block in readme_blocks():
            if kind == "bash":
                for argv in bash_commands(block):
                    buffer = io.StringIO()
                    with contextlib.redirect_stdout(buffer):
                        status = cli_main(argv)
                    assert status == 0, f"cifarnets {' '.join(argv)} exited with {status}"
                    outputs[argv[0]] = buffer.getvalue()
            else:
                namespace: dict = {}
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(block.replace("path/to/cifarnets", str(ROOT)), "README.md", "exec"), namespace)
                namespaces.append(namespace)
        # The README's opening block loads the run this section exported (hub/vgg38-demo).
        opening = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
        intro: dict = {}
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(re.search(r"```python\n(.*?)```", opening, re.S).group(1), "README.md", "exec"), intro)
        namespaces.append(intro)
    finally:
        os.chdir(old)
    return folder, outputs, namespaces


def test_readme_blocks_ran_and_export_is_exact(readme_run, tmp_path, monkeypatch):
    """One test (one run of the README, in one worker): the blocks, then every way back in."""
    folder, outputs, namespaces = readme_run
    run, hub = folder / "runs" / "vgg38-demo", folder / "hub" / "vgg38-demo"
    assert sorted(p.name for p in hub.iterdir()) == ["README.md", "config.json", "curves.png", "model.safetensors"]
    config = json.loads((hub / "config.json").read_text())
    assert config["architecture"] == "cifarnets_vgg38"
    assert config["model_args"]["bn"] is True and config["model_args"]["rc"] is True
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32] and config["num_classes"] == 10
    trained = namespaces[0]["trained"]
    assert type(trained).__name__ == "CourseworkVGG" and trained.bn and trained.rc
    best = load_file(str(run / "best.safetensors"))
    state = trained.state_dict()
    assert set(state) == set(best) and all(torch.equal(state[k], best[k]) for k in best)
    same = namespaces[0]["same"].state_dict()
    assert all(torch.equal(same[k], best[k]) for k in best)

    # cifarnets eval of the exported weights reproduces the run's test.json
    test = json.loads((run / "test.json").read_text())
    result = json.loads(outputs["eval"])
    assert result["acc"] == pytest.approx(test["acc"]) and result["loss"] == pytest.approx(test["loss"], rel=1e-5)
    from cifarnets.data import load_dataset
    from cifarnets.train import evaluate

    data = load_dataset("synthetic", limit=200)
    again = evaluate(trained, data.test, device="cpu")
    assert again["acc"] == pytest.approx(test["acc"]) and again["loss"] == pytest.approx(test["loss"], rel=1e-5)

    tuned = namespaces[0]["tuned"]  # timm's adaptation: a new 5-class head, a 1-channel first conv
    assert tuned.num_classes == 5 and tuned.stem.conv.in_channels == 1
    assert torch.equal(tuned.stages[0].block0.conv1.weight, best["stages.0.block0.conv1.weight"])
    assert torch.allclose(tuned.stem.conv.weight[:, 0], best["stem.conv.weight"].sum(1))

    card = (hub / "README.md").read_text()
    for text in ("the coursework reports", "synthetic", "Recipe", "Test accuracy", f"{test['acc']:.2f} %", "curves.png",
                 "vgg38(bn=True, rc=True"):
        assert text in card, text

    exported = namespaces[1]
    x = exported["x"]
    torch.testing.assert_close(torch.from_numpy(exported["logits"]), exported["model"](x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(exported["scripted"](x), exported["model"](x))
    intro = namespaces[-1]  # the README's opening block: its last line loads the exported run
    assert intro["m"].bn and intro["m"].rc and all(torch.equal(intro["m"].state_dict()[k], best[k]) for k in best)
    check_overlay_hf_hub_and_push(folder, tmp_path, monkeypatch)


def check_overlay_hf_hub_and_push(folder, tmp_path, monkeypatch):
    hub, run = folder / "hub" / "vgg38-demo", folder / "runs" / "vgg38-demo"
    best = load_file(str(run / "best.safetensors"))
    model = cifarnets.create("vgg38", bn=True, rc=True, num_classes=10, pretrained=True,
                             pretrained_cfg_overlay=dict(file=str(hub / "model.safetensors"), num_classes=10))
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)
    with pytest.raises(NotImplementedError, match="cifarnets export RUN_DIR"):
        cifarnets.create("vgg38", pretrained=True)

    # hf-hub:ORG/REPO through timm's loader, served from a Hugging Face cache (no network).
    import huggingface_hub.constants

    snapshot = tmp_path / "models--cifarnets--vgg38-demo" / "snapshots" / ("0" * 40)
    shutil.copytree(hub, snapshot)
    (tmp_path / "models--cifarnets--vgg38-demo" / "refs").mkdir()
    (tmp_path / "models--cifarnets--vgg38-demo" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    remote = timm.create_model("hf-hub:cifarnets/vgg38-demo", pretrained=True, cache_dir=tmp_path)
    assert remote.bn and remote.rc and all(torch.equal(remote.state_dict()[k], best[k]) for k in best)

    with pytest.raises(RuntimeError, match="could not push .* Hugging Face Hub .*hf upload"):
        from cifarnets.hub import export_run, push_run

        push_run(run, "cifarnets/vgg38-demo")
    assert cli_main(["export", str(run), "--out", str(hub)]) == 2  # not over an existing folder

    # An export that dies half-way leaves neither a half model folder nor its staging folder.
    from cifarnets import train as train_module

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_module, "save_weights", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_run(run, folder / "hub" / "broken")
    assert sorted(p.name for p in (folder / "hub").iterdir()) == ["vgg38-demo"]


def test_torch_hub_exposes_every_registered_model():
    import hubconf  # the repository root is on sys.path in the test run (rootdir)

    for name in cifarnets.list_models():
        assert callable(getattr(hubconf, name))
    model = torch.hub.load(str(ROOT), "vgg38", source="local", bn=True, rc=True)
    assert model.bn and model.rc and cifarnets.count_params(model) == 338_500
