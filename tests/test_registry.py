"""Registry: names, filters, errors that help, model cards, user models and the timm bridge."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn

import cifarnets
from cifarnets.data.normalization import NORMALIZATION
from cifarnets.models import _registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_registry(monkeypatch):
    """Let a test register models without leaking them into other tests."""
    monkeypatch.setattr(_registry, "_ENTRYPOINTS", dict(_registry._ENTRYPOINTS))
    monkeypatch.setattr(_registry, "_CFGS", dict(_registry._CFGS))
    from timm.models import _registry as timm_registry
    monkeypatch.setattr(timm_registry, "_model_entrypoints", dict(timm_registry._model_entrypoints))


def test_list_models_filters_and_natural_sort():
    assert cifarnets.list_models("vgg*") == [
        "vgg08", "vgg8_classic", "vgg16", "vgg16_bn", "vgg38", "vgg68", "vgg72", "vgg106"]
    assert cifarnets.list_models("resnet*", exclude_filters="resnet1*") == [
        "resnet20", "resnet32", "resnet44", "resnet56"]
    assert cifarnets.list_models(["alex*", "resnet1?"]) == ["alexnet_cifar", "resnet18"]
    assert cifarnets.list_models("nothing*") == []
    assert len(cifarnets.list_models()) == 15


def test_is_model():
    assert cifarnets.is_model("vgg38") and not cifarnets.is_model("vgg8")


def test_unknown_name_lists_closest_names():
    with pytest.raises(ValueError) as err:
        cifarnets.create("vgg8")
    message = str(err.value)
    assert "'vgg08'" in message and "'vgg8_classic'" in message
    assert message.index("'vgg08'") < message.index("'vgg68'")  # the likely ones first
    with pytest.raises(ValueError, match="'resnet18'"):
        cifarnets.create("resnet19")
    with pytest.raises(ValueError, match=r"create\('vgg38', bn=True, rc=True\)"):
        cifarnets.create("vgg38_bn_rc")
    with pytest.raises(ValueError, match="'vgg38'"):
        cifarnets.model_info("VGG38")


@pytest.mark.parametrize("call, error, builtin", [
    (lambda: cifarnets.create("vgg99"), cifarnets.UnknownModelError, ValueError),
    (lambda: cifarnets.model_info("nosuchnet"), cifarnets.UnknownModelError, ValueError),
    (lambda: cifarnets.create(38), cifarnets.layers.ArgumentTypeError, TypeError),
    (lambda: cifarnets.create("vgg38", bnn=True), cifarnets.UnknownKeywordError, TypeError),
    (lambda: cifarnets.create("vgg38", width=0), cifarnets.layers.InvalidValueError, ValueError),
    (lambda: cifarnets.create("vgg38", drop_rate=1.5), cifarnets.layers.InvalidValueError, ValueError),
    (lambda: cifarnets.create("resnet20", shortcut="pad"), cifarnets.layers.UnknownNameError, ValueError),
    (lambda: cifarnets.create("vgg38", act="relu6"), cifarnets.layers.UnknownNameError, ValueError),
    (lambda: cifarnets.create("vgg16", img_size=8), cifarnets.layers.InvalidValueError, ValueError),
    (lambda: cifarnets.create("vgg38", pretrained=True), cifarnets.NoPretrainedWeightsError, NotImplementedError),
    (lambda: cifarnets.create("local-dir:/nonexistent/folder"), cifarnets.models.ModelSourceNotFoundError,
     FileNotFoundError),
])
def test_registry_and_model_errors_are_cifarnets_errors_and_the_builtin(call, error, builtin):
    with pytest.raises(cifarnets.CifarnetsError) as err:
        call()
    assert type(err.value) is error
    assert isinstance(err.value, builtin)


def test_unknown_keyword_names_it_and_the_valid_ones():
    with pytest.raises(TypeError) as err:
        cifarnets.create("vgg38", bnn=True)
    message = str(err.value)
    assert "'bnn'" in message and "did you mean 'bn'" in message
    for keyword in ["act", "bn", "rc", "shortcut", "width", "norm_layer", "init"]:
        assert keyword in message
    with pytest.raises(TypeError, match="'rc'.*valid keywords are: act, bn, bn_eps, .*norm_layer"):
        cifarnets.create("resnet18", rc=True)  # every ResNet block is residual: rc is a coursework VGG flag


def test_contradictory_flags_fail_at_create():
    with pytest.raises(ValueError, match="rc=False"):
        cifarnets.create("vgg38", shortcut="avgpool")
    with pytest.raises(ValueError, match="norm_layer=None"):
        cifarnets.create("vgg38", bn=True, norm_layer=None)
    with pytest.raises(ValueError, match="unknown shortcut"):
        cifarnets.create("vgg38", rc=True, shortcut="identity")
    with pytest.raises(ValueError, match="for a ResNet"):
        cifarnets.create("resnet20", shortcut="avgpool")
    # vgg68 is published with rc and the pooled shortcut; turning rc off drops the shortcut too.
    plain68 = cifarnets.create("vgg68", rc=False)
    assert plain68.shortcut == "none" and not plain68.rc


def test_pretrained_raises_a_clear_error():
    with pytest.raises(NotImplementedError, match="no pretrained weights.*cifarnets train vgg38"):
        cifarnets.create("vgg38", pretrained=True)


def test_bad_input_is_a_value_error_naming_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*in_chans=1"):
        cifarnets.create("vgg38")(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        cifarnets.create("alexnet_cifar")(torch.randn(2, 3, 64, 64))
    assert cifarnets.create("vgg16", img_size=64)(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    assert cifarnets.create("vgg38")(torch.randn(1, 3, 48, 48)).shape == (1, 100)  # global pooling


def test_model_info_card():
    info = cifarnets.model_info("vgg106")
    assert info.family == "coursework_vgg" and "the deeper-VGG report" in info.source
    assert info.num_classes == 100 and info.dataset == "cifar100"
    assert info.params == 1_210_948 and info.defaults == {"bn": True, "rc": True}
    # The card names a preset of the one normalisation table the data loaders use too.
    assert info.norm == "cifar100" and (info.mean, info.std) == (NORMALIZATION["cifar100"].mean,
                                                                  NORMALIZATION["cifar100"].std)
    assert cifarnets.model_info("resnet18").std == (0.2023, 0.1994, 0.2010)  # the ResNet-18 report's copied std
    assert "bn" in info.keywords and info.timm_name == "cifarnets_vgg106"
    text = str(info)
    assert "1,210,948" in text and "the deeper-VGG report" in text
    assert cifarnets.model_info("vgg16").std == (0.2470, 0.2435, 0.2616)  # the AlexNet/VGG report's true std


def test_user_registered_model(clean_registry):
    @cifarnets.register_model
    def tiny_user_net(pretrained=False, num_classes=10, in_chans=3, **kwargs):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 32 * 32, num_classes))

    assert cifarnets.is_model("tiny_user_net")
    model = cifarnets.create("tiny_user_net", num_classes=4)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert model.pretrained_cfg["architecture"] == "tiny_user_net"
    assert cifarnets.model_info("tiny_user_net").family == "user"
    assert timm.create_model("cifarnets_tiny_user_net", num_classes=3)(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(cifarnets.layers.AlreadyRegisteredError, match="already registered"):
        cifarnets.register_model(tiny_user_net)


def test_timm_bridge_creates_every_model_without_shadowing_timm():
    bridged = timm.list_models("cifarnets_*")
    assert sorted(bridged) == sorted("cifarnets_" + n for n in cifarnets.list_models())
    model = timm.create_model("cifarnets_vgg38", num_classes=10, bn=True, rc=True)
    assert type(model).__name__ == "CourseworkVGG" and model.num_classes == 10 and model.bn and model.rc
    cfg = timm.models.get_pretrained_cfg("cifarnets_vgg38")
    assert cfg.input_size == (3, 32, 32) and cfg.mean == NORMALIZATION["cifar100"].mean and cfg.num_classes == 100
    assert timm.data.resolve_data_config(model=model)["input_size"] == (3, 32, 32)
    with torch.device("meta"):
        assert type(timm.create_model("resnet18")).__module__ == "timm.models.resnet"
        assert type(timm.create_model("vgg16")).__module__ == "timm.models.vgg"
    with pytest.raises(NotImplementedError):
        timm.create_model("cifarnets_resnet20", pretrained=True)


def test_readme_and_docs_model_tables_are_generated_from_the_registry():
    """The catalogue cannot drift: regenerate with `python docs/generate.py`."""
    table = cifarnets.registry.model_table()
    for path in [ROOT / "README.md", ROOT / "docs" / "models.md"]:
        text = path.read_text()
        block = re.search(r"<!-- model-table:start -->\n(.*?)\n<!-- model-table:end -->", text, re.S)
        assert block, f"{path} lacks the generated model table markers"
        assert block.group(1) == table, f"{path} is stale: run `python docs/generate.py`"


# ---------------------------------------------------------------- strict keywords, one factory, fast start


def test_wrong_keyword_types_are_refused_before_building():
    with pytest.raises(cifarnets.errors.ConfigTypeError, match=r"^bn must be true or false, got 'false' \(str\)$"):
        cifarnets.create("vgg38", bn="false")  # used to build a net WITH batch norm
    with pytest.raises(TypeError, match=r"width must be an integer, got '8' \(str\)"):
        timm.create_model("cifarnets_vgg38", width="8")
    with pytest.raises(TypeError, match=r"bn must be true or false \(or None\), got 1 \(int\)"):
        cifarnets.create("resnet20", bn=1)
    with pytest.raises(TypeError, match=r"drop_rate must be a number, got '0.1'"):
        cifarnets.models.coursework_vgg.vgg38(drop_rate="0.1")  # the family's own entry point checks too
    assert cifarnets.create("vgg38", drop_rate=0).drop_rate == 0.0  # an int is a number


def test_model_keywords_and_check_model_kwargs_describe_and_check_without_building():
    kw = cifarnets.model_keywords("vgg38")
    assert (kw["bn"].type, kw["bn"].default, kw["bn"].scalar) == (bool, False, bool)
    assert (kw["width"].scalar, kw["width"].default, kw["num_classes"].default) == (int, 32, 100)
    assert kw["shortcut"].optional and kw["shortcut"].scalar is str and not kw["bn"].optional
    assert cifarnets.model_keywords("vgg68")["rc"].default is True  # the published value
    assert cifarnets.model_keywords("vgg16")["img_size"].default == (32, 32)
    assert cifarnets.model_keywords("resnet18")["shortcut"].default == "projection"
    assert cifarnets.check_model_kwargs("vgg38", {"bn": True}) == {"bn": True}
    with pytest.raises(cifarnets.errors.ConfigTypeError) as err:
        cifarnets.check_model_kwargs("vgg38", {"bn": "no", "width": 2.0})
    assert err.value.problems == ["bn must be true or false, got 'no' (str)",
                                  "width must be an integer, got 2.0 (float)"]
    with pytest.raises(cifarnets.UnknownKeywordError, match="did you mean 'bn'"):
        cifarnets.check_model_kwargs("vgg38", {"bnn": True})


def test_every_path_builds_through_create_model(monkeypatch, clean_registry):
    from cifarnets.models import _factory

    calls = []
    real = _factory.create_model

    def spy(name, *args, **kwargs):
        calls.append(name)
        return real(name, *args, **kwargs)

    for module in (_factory, cifarnets.registry, cifarnets.models._timm, cifarnets.models.coursework_vgg):
        monkeypatch.setattr(module, "create_model", spy)

    @cifarnets.register_model
    def tiny_spy_net(pretrained=False, num_classes: int = 10, **kwargs):
        return nn.Linear(3, num_classes)

    cifarnets.create("vgg08")
    timm.create_model("cifarnets_vgg08")
    cifarnets.models.coursework_vgg.vgg08()
    import hubconf

    hubconf.vgg08()
    timm.create_model("cifarnets_tiny_spy_net")
    with pytest.raises(TypeError, match="num_classes must be an integer"):
        cifarnets.create("tiny_spy_net", num_classes="3")  # a user model's annotations are checked too
    assert calls == ["vgg08"] * 4 + ["tiny_spy_net"] * 2


def test_the_factory_builds_what_timms_builder_builds():
    """The timm-free build gives every model the cfg, traits and tensors timm's build_model_with_cfg gives it."""
    import functools

    from timm.models import build_model_with_cfg

    from cifarnets.models._registry import model_builds, model_cfgs

    for name in cifarnets.list_models():
        build, cfg = model_builds()[name], model_cfgs()[name]
        for kwargs in ({}, {"in_chans": 1, "num_classes": 7}):
            with torch.device("meta"):
                ours = cifarnets.create(name, **kwargs)
                theirs = build_model_with_cfg(functools.partial(build.model_cls, build.arch), f"cifarnets_{name}",
                                              False, **{**cfg.defaults, **kwargs})
            from cifarnets.models._registry import adapt_cfg_channels

            adapt_cfg_channels(theirs.pretrained_cfg, theirs.in_chans)
            assert ours.pretrained_cfg == theirs.pretrained_cfg, name
            assert ours._traits == theirs._traits and ours.pretrained_model_args == theirs.pretrained_model_args
            assert {k: v.shape for k, v in ours.state_dict().items()} == \
                {k: v.shape for k, v in theirs.state_dict().items()}, name
            assert str(ours) == str(theirs), name


_PROBE = """
import sys, io, contextlib
heavy = ("timm", "torchvision", "matplotlib", "safetensors")
def loaded():
    return [m for m in heavy if m in sys.modules]
import cifarnets
from cifarnets.cli import main
report = {"import cifarnets": loaded()}
for argv in (["--help"], ["--version"], ["list"], ["info", "vgg38"]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit:
            pass
    report[" ".join(argv)] = loaded()
    report[" ".join(argv) + " printed"] = out.getvalue().splitlines()[0]
import timm  # after cifarnets, which did not import it: the hook registers the zoo now
report["timm"] = [type(timm.create_model("cifarnets_vgg38", bn=True)).__name__, len(timm.list_models("cifarnets_*"))]
print(repr(report))
"""


def test_import_and_light_commands_load_no_timm_and_timm_still_finds_the_zoo():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True).stdout
    report = eval(out.strip().splitlines()[-1])
    for key in ("import cifarnets", "--help", "--version", "list", "info vgg38"):
        assert report[key] == [], (key, report[key])
    assert report["--version printed"] == f"cifarnets {cifarnets.__version__} (torch {torch.__version__.split('+')[0]})"
    assert report["list printed"].startswith("| model |") and report["info vgg38 printed"].startswith("model")
    assert report["timm"] == ["CourseworkVGG", len(cifarnets.list_models())]


def test_the_cli_command_table_is_what_the_modules_register():
    from cifarnets import cli

    def commands(parser):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return [(c.dest, c.help) for c in sub._choices_actions]

    assert commands(cli.build_parser()) == [(name, text) for name, (_, text) in cli._COMMANDS.items()]
    assert commands(cli.build_parser("--help")) == commands(cli.build_parser())
    for name, (module, _) in cli._COMMANDS.items():
        assert name in cli.build_parser(name)._subparsers._group_actions[0].choices, (name, module)
