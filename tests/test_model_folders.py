"""Model folders (``local-dir:`` / ``hf-hub:``), weights verified on load, and load lines that work.

Every crafted folder is one cifarnets error naming the file; weights of the wrong dtype or
shape, or damaged ones, are refused before they reach a model; the load line that
``cifarnets export`` prints and the one its model card writes load the exported weights.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

import cifarnets
from cifarnets._utils import DIGEST_KEY
from cifarnets.cli import main as cli_main
from cifarnets.errors import CheckpointError, CifarnetsError, ConfigTypeError, ModelError
from cifarnets.train import save_weights

KW = dict(width=4, num_classes=10)


def _folder(tmp_path, name="vgg08", **kwargs):
    """A model folder as `cifarnets export` writes it: timm's save_for_hf, then cifarnets' weights file."""
    from timm.models import save_for_hf

    kwargs = {**KW, **kwargs}
    torch.manual_seed(0)
    model = cifarnets.create(name, **kwargs).eval()
    out = tmp_path / "folder"
    out.mkdir()
    save_for_hf(model, str(out), model_args=kwargs, safe_serialization=True)
    save_weights(out / "model.safetensors", model.state_dict(), {"model": name, "model_kwargs": kwargs})
    return out, model.state_dict()


def _same(model, state) -> bool:
    return all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_local_dir_pretrained_follows_timm(tmp_path):
    folder, state = _folder(tmp_path)
    assert _same(cifarnets.create(f"local-dir:{folder}"), state)  # not given: loads, as it always did
    assert _same(cifarnets.create(f"local-dir:{folder}", pretrained=True), state)
    random = cifarnets.create(f"local-dir:{folder}", pretrained=False)
    assert random.num_classes == 10 and random.stem.conv.out_channels == 4  # the folder's architecture ...
    assert not _same(random, state)  # ... randomly initialised
    assert _same(timm.create_model(f"local-dir:{folder}", pretrained=True), state)
    assert DIGEST_KEY in __import__("safetensors").safe_open(str(folder / "model.safetensors"), "pt").metadata()


def _write_config(folder, text):
    (folder / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.mark.parametrize("config, match", [
    ("{not json", r"config.json is not valid JSON"),
    (b"\xff\xfe{}", r"config.json is not UTF-8"),
    ('{"pretrained_cfg": {}}', r"config.json names no architecture"),
    ('{"architecture": "resnet18", "pretrained_cfg": {}}', r"'resnet18', which is not a cifarnets model"),
    ('{"architecture": "cifarnets_vgg08", "num_classes": "10", "pretrained_cfg": {}}',
     r"num_classes must be an integer >= 0, got '10'"),
    ('{"architecture": "cifarnets_vgg08", "pretrained_cfg": {"input_size": [3, 32]}}', r"input_size must be a list"),
    ('{"architecture": "cifarnets_vgg08", "pretrained_cfg": {}, "model_args": {"bn": "yes"}}',
     r"model_args: bn must be true or false, got 'yes' \(str\)"),
    ('[1, 2]', r"holds a JSON list"),
])
def test_crafted_config_is_one_clear_error(tmp_path, config, match):
    folder, _ = _folder(tmp_path)
    _write_config(folder, config)
    with pytest.raises(ModelError, match=match) as err:
        cifarnets.create(f"local-dir:{folder}")
    assert "config.json" in str(err.value)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_symlinks_out_of_the_folder_are_refused(tmp_path, name):
    folder, _ = _folder(tmp_path)
    outside = tmp_path / f"elsewhere-{name}"
    os.replace(folder / name, outside)
    (folder / name).symlink_to(outside)
    with pytest.raises(ModelError, match=rf"{name} is a symlink to .*outside the model folder"):
        cifarnets.create(f"local-dir:{folder}")
    inside = folder / f"real-{name}"
    os.replace(outside, inside)
    (folder / name).unlink()
    (folder / name).symlink_to(inside.name)  # a link inside the folder is fine
    cifarnets.create(f"local-dir:{folder}")


@pytest.mark.parametrize("change, match", [
    (lambda s: {**s, "stem.conv.weight": s["stem.conv.weight"].to(torch.int64)}, r"stem.conv.weight is int64"),
    (lambda s: {k: v.half() if v.is_floating_point() else v for k, v in s.items()}, r"is float16, the architecture"),
    (lambda s: {**s, "head.fc.weight": s["head.fc.weight"][:, :2].contiguous()},
     r"head.fc.weight has shape \(10, 2\), the architecture expects \(10, 4\)"),
    (lambda s: {k: v for k, v in s.items() if k != "head.fc.bias"}, r"missing tensor head.fc.bias"),
    (lambda s: {**s, "extra.weight": torch.zeros(1)}, r"extra.weight is not a tensor of this architecture"),
])
def test_weights_that_do_not_fit_are_refused_naming_the_tensor(tmp_path, change, match):
    folder, state = _folder(tmp_path)
    bad = change(dict(state))
    save_file(bad, str(folder / "model.safetensors"))  # no checksum: a file from elsewhere
    with pytest.raises(ModelError, match=match):
        cifarnets.create(f"local-dir:{folder}")
    with pytest.raises(ModelError, match=match):  # the overlay says the file has 10 classes: the head is kept
        timm.create_model("cifarnets_vgg08", pretrained=True, **KW,
                          pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors"), num_classes=10))


def test_damaged_weights_are_named_damaged(tmp_path):
    folder, state = _folder(tmp_path)
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # one flipped bit in the last tensor's bytes
    path.write_bytes(bytes(data))
    message = rf"{re.escape(str(path))} is damaged \(checksum mismatch\); re-export it or restore it from a backup"
    with pytest.raises(CheckpointError, match=message):
        cifarnets.create(f"local-dir:{folder}")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        cifarnets.create("vgg08", pretrained=True, **KW, pretrained_cfg_overlay=dict(file=str(path)))
    path.write_bytes(bytes(data[:100]))  # truncated
    with pytest.raises(CheckpointError, match="not a readable .safetensors file"):
        cifarnets.create(f"local-dir:{folder}")


def test_overlay_file_loads_verified_weights_and_adapts_the_head(tmp_path):
    folder, state = _folder(tmp_path)
    file = str(folder / "model.safetensors")
    model = cifarnets.create("vgg08", pretrained=True, **KW, pretrained_cfg_overlay=dict(file=file, num_classes=10))
    assert _same(model, state)
    fresh = cifarnets.create("vgg08", pretrained=True, width=4, num_classes=3,
                             pretrained_cfg_overlay=dict(file=file, num_classes=10))  # a new head, as timm does
    assert fresh.num_classes == 3 and torch.equal(fresh.stem.conv.weight, state["stem.conv.weight"])


def test_features_out_of_range_and_float64_input_say_what_exists():
    with pytest.raises(ModelError, match=r"out_indices=\(9,\) names levels that do not exist.*indices 0 to 3"):
        cifarnets.create("vgg08", features_only=True, out_indices=(9,))
    with pytest.raises(ConfigTypeError, match=r"float32 weights but got a torch.float64 batch.*x.float\(\)"):
        cifarnets.create("vgg08")(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    assert cifarnets.create("vgg08").double()(torch.zeros(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


def test_printed_and_written_load_lines_load_the_exported_weights(tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "hub"
    assert cli_main(["train", "vgg08", "--width", "4", "--dataset", "synthetic", "--split", "4000:1000", "--limit",
                     "100", "--epochs", "1", "--batch-size", "50", "--seed", "1", "--quiet", "--device", "cpu",
                     "--out", str(run)]) == 0
    capsys.readouterr()
    assert cli_main(["export", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    exported = load_file(str(out / "model.safetensors"))
    line = re.search(r"load it with: (.*)", printed).group(1)
    namespace: dict = {}
    exec(line, namespace)  # the exact line the command printed
    assert _same(namespace["model"], exported)
    card = (out / "README.md").read_text()
    usage = next(x for x in card.splitlines() if "timm.create_model(" in x)
    assert "pretrained=True" in usage
    namespace = {}
    exec("import cifarnets, timm\n" + usage.replace("hf-hub:ORG/REPO", f"local-dir:{out}"), namespace)
    assert _same(namespace["model"], exported)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "cifarnets_vgg08" and config["model_args"]["width"] == 4
    assert isinstance(printed, str) and issubclass(ModelError, CifarnetsError)
