"""The model contract: what timm's own model tests check, and every way out of Python.

For every registered model: a complete timm ``pretrained_cfg`` (keys, ``pool_size``, the
normalisation preset), timm's default-cfg checks (``forward_features`` at ``pool_size``,
``reset_classifier(0)`` / ``(0, "")``, ``num_classes=0, global_pool=""``), forward and
backward, ``features_only``, ``forward_intermediates`` / ``prune_intermediate_layers``,
timm's standard keywords, fx (and torchvision's feature extractor), TorchScript (and
fx-then-script). ``torch.export`` with a dynamic batch runs for every model in
test_models.py. ONNX (dynamo exporter + onnxruntime) and ``torch.compile(fullgraph=True)``
run on every family and on a covering set of flag combinations (bn, rc, every shortcut,
`DetachedBatchNorm2d` and its biased variant, every activation); the VGG-16/AlexNet ones are
marked ``heavy_export`` and run in one xdist worker.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from functools import cache

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models._pretrained import PretrainedCfg

import cifarnets
from cifarnets.layers import NORMALIZATION, list_act_layers
from cifarnets.models._registry import model_cfgs

ALL_MODELS = cifarnets.list_models()
HEAVY = ("vgg16", "alexnet_cifar")
# pretrained_cfg keys that apply to every zoo model (no weight source: none are published).
CFG_KEYS = ("architecture", "input_size", "min_input_size", "fixed_input_size", "interpolation", "crop_pct",
            "crop_mode", "mean", "std", "num_classes", "label_names", "pool_size", "first_conv", "classifier",
            "description", "paper_name", "notes", "custom_load")


@cache
def _eval_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return cifarnets.create(name).eval()


def _x(n: int = 2, c: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(n))


# ---------------------------------------------------------------- cfgs (timm's test_model_default_cfgs)

@pytest.mark.parametrize("name", ALL_MODELS)
def test_pretrained_cfg_is_complete_and_names_a_preset(name):
    model = _eval_model(name)
    cfg = model.pretrained_cfg
    missing = [k for k in CFG_KEYS if cfg.get(k) is None]
    assert not missing, f"{name}: pretrained_cfg lacks {missing}"
    PretrainedCfg(**cfg)  # only timm's keys: a config.json of it loads back
    card = model_cfgs()[name]
    assert (tuple(cfg["mean"]), tuple(cfg["std"])) == (NORMALIZATION[card.norm].mean, NORMALIZATION[card.norm].std)
    assert cifarnets.model_info(name).norm == card.norm
    assert len(cfg["label_names"]) == cfg["num_classes"] == card.num_classes
    assert cfg["architecture"] == f"cifarnets_{name}" and model.model_name == name
    assert timm.models.get_pretrained_cfg(f"cifarnets_{name}").to_dict() == cfg


@pytest.mark.parametrize("name", ALL_MODELS)
def test_default_cfg_contract_as_timm_tests_it(name):
    model = cifarnets.create(name).eval()
    cfg, state = model.pretrained_cfg, model.state_dict()
    x = _x(1, *cfg["input_size"][:1], cfg["input_size"][-1])
    h, w = cfg["pool_size"]
    assert model.forward_features(x).shape[-2:] == (h, w)
    for c in (cfg["classifier"],):
        assert c + ".weight" in state
    assert cfg["first_conv"] + ".weight" in state
    min_size = cfg["min_input_size"]
    if not cfg["fixed_input_size"]:
        assert model(torch.randn(1, *min_size)).shape == (1, model.num_classes)
    model.reset_classifier(0)
    out = model(x)
    assert out.ndim == 2 and out.shape[1] == model.head_hidden_size and model.num_classes == 0
    model.reset_classifier(0, "")
    out = model(x)
    assert out.ndim == 4 and out.shape[-2:] == (h, w) and out.shape[1] == model.num_features
    bare = cifarnets.create(name, num_classes=0, global_pool="").eval()
    assert bare(x).shape == out.shape


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = timm.create_model(f"cifarnets_{name}", num_classes=42).train()
    out = model(_x(2))
    assert out.shape == (2, 42) and torch.isfinite(out).all()
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", ALL_MODELS)
def test_features_only_and_forward_intermediates(name):
    model = _eval_model(name)
    info = model.feature_info
    assert len(info) >= 3, "one level per stage, at least 3"
    x = _x(1)
    final, levels = model.forward_intermediates(x)
    torch.testing.assert_close(final, model.forward_features(x))
    assert [f.shape[1] for f in levels] == [i["num_chs"] for i in info]
    assert [f.shape[-1] for f in levels] == [math.ceil(32 / i["reduction"]) for i in info]
    assert len(model.forward_intermediates(x, indices=2, intermediates_only=True)) == 2
    early = model.forward_intermediates(x, indices=[1], stop_early=True)
    torch.testing.assert_close(early[1][0], levels[1])
    torch.testing.assert_close(early[0], levels[1])

    torch.manual_seed(0)  # the weights of _eval_model
    features = timm.create_model(f"cifarnets_{name}", features_only=True).eval()
    outs = features(x)
    assert features.feature_info.channels() == [i["num_chs"] for i in info]
    assert features.feature_info.reduction() == [i["reduction"] for i in info]
    for got, want in zip(outs, levels):
        torch.testing.assert_close(got, want)
    picked = cifarnets.create(name, features_only=True, out_indices=(1, -1)).eval()
    assert [o.shape[1] for o in picked(x)] == [info[1]["num_chs"], info[-1]["num_chs"]]

    pruned = cifarnets.create(name).eval()
    pruned.load_state_dict(model.state_dict())
    assert pruned.prune_intermediate_layers(indices=[1]) == [1]
    assert len(pruned.feature_info) == 2
    torch.testing.assert_close(pruned(x), levels[1])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_fx_torchvision_extractor_and_torchscript_equal_eager(name):
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    model = _eval_model(name)
    x = _x(2)
    ref = model(x)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), ref)
    torch.testing.assert_close(torch.jit.script(model)(x), ref)
    torch.testing.assert_close(torch.jit.script(traced)(x), ref)
    nodes = get_graph_node_names(model)[1]
    extractor = create_feature_extractor(model, return_nodes={nodes[-1]: "out"})
    torch.testing.assert_close(extractor(x)["out"], ref)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_timm_train_script_keywords(name):
    """What timm's train.py passes to create_model: the standard keywords every timm model takes."""
    model = timm.create_model(
        f"cifarnets_{name}", pretrained=False, in_chans=3, num_classes=7, drop_rate=0.0, drop_path_rate=None,
        drop_block_rate=None, global_pool=None, bn_momentum=None, bn_eps=None, scriptable=False,
    )
    assert model(_x(2)).shape == (2, 7)
    model.set_grad_checkpointing(True)
    model.train()
    model(_x(2)).sum().backward()
    groups = timm.models.group_parameters(model, model.group_matcher())
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))
    assert isinstance(model.no_weight_decay(), set)
    data_cfg = timm.data.resolve_data_config(model=model)
    assert data_cfg["input_size"] == (3, 32, 32) and data_cfg["crop_pct"] == 1.0


# ---------------------------------------------------------------- keywords: honoured or refused

def test_drop_rate_global_pool_and_drop_path():
    head = cifarnets.create("resnet20", drop_rate=0.3).head
    assert isinstance(head.drop, nn.Dropout) and head.drop.p == 0.3
    assert cifarnets.create("vgg16").head.hidden[2].p == 0.5  # published dropout kept
    assert cifarnets.create("vgg16", drop_rate=0.2).head.hidden[2].p == 0.2
    assert isinstance(cifarnets.create("vgg38", global_pool="max").head.global_pool, nn.AdaptiveMaxPool2d)
    assert cifarnets.create("alexnet_cifar", global_pool="avg", num_classes=3)(_x(1, size=48)).shape == (1, 3)
    net = cifarnets.create("resnet20", drop_path_rate=0.2)
    rates = [b.drop_path.drop_prob for s in net.stages for b in s if b.drop_path is not None]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.2)
    assert cifarnets.create("vgg38", rc=True, drop_path_rate=0.1).stages[2].block4.drop_path is not None
    for name, kwargs, match in [
        ("vgg38", {"drop_path_rate": 0.1}, "no residual path"),
        ("vgg16", {"drop_path_rate": 0.1}, "no residual path"),
        ("resnet20", {"drop_block_rate": 0.1}, "DropBlock"),
        ("vgg16", {"bn_momentum": 0.01}, "no normalisation layer"),
        ("vgg38", {"global_pool": "avgmax"}, "unknown global_pool"),
        ("vgg38", {"global_pool": ""}, "num_classes=0"),
    ]:
        with pytest.raises(ValueError, match=match):
            cifarnets.create(name, **kwargs)
    for zero in (0, 0.0, None):
        cifarnets.create("vgg16", drop_path_rate=zero, drop_block_rate=zero)
    bn = cifarnets.create("vgg38", bn=True, bn_momentum=0.01, bn_eps=1e-3).stages[0].block0.norm1
    assert (bn.momentum, bn.eps) == (0.01, 1e-3)


def test_bn_keyword_in_every_family():
    assert cifarnets.count_params(cifarnets.create("vgg16", bn=True)) == 33_646_666  # = vgg16_bn
    assert not any(isinstance(m, nn.BatchNorm2d) for m in cifarnets.create("resnet20", bn=False).modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in cifarnets.create("vgg16_bn", bn=False).modules())
    with pytest.raises(ValueError, match="bn=True needs a norm layer"):
        cifarnets.create("resnet20", bn=True, norm_layer=None)
    with pytest.raises(TypeError, match="'rc'"):
        cifarnets.create("alexnet_cifar", rc=True)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": -1}, r"num_classes must be an integer >= 0, got -1; .*num_classes=0"),
    # A float where an integer is declared is a type error (ConfigTypeError, also a ValueError), found before
    # anything is built: the message names the expected type and the value's.
    ({"num_classes": 2.5}, r"num_classes must be an integer, got 2.5 \(float\)"),
    ({"in_chans": 0}, r"in_chans must be an integer >= 1, got 0; .*in_chans=3"),
    ({"width": 0}, r"width must be an integer >= 1, got 0; .*width=32"),
    ({"width": 1.5}, r"width must be an integer, got 1.5 \(float\)"),
    ({"drop_rate": 1.0}, r"drop_rate must be a number in \[0, 1\)"),
])
def test_bad_arguments_name_the_argument_value_and_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cifarnets.create("vgg08", **kwargs)


def test_num_classes_zero_is_no_classifier_and_wrong_dtype_is_explained():
    assert cifarnets.create("vgg08", num_classes=0)(_x(2)).shape == (2, 32)
    with pytest.raises(TypeError, match=r"uint8.*x.float\(\) / 255.*normalise"):
        cifarnets.create("vgg08")(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="floating-point"):
        cifarnets.create("vgg08")(torch.zeros(1, 3, 32, 32, dtype=torch.int64))


def test_timm_registration_is_public_and_import_star_works():
    import cifarnets.models._timm as bridge
    import cifarnets.registry as registry

    namespace: dict = {}
    exec("from cifarnets.registry import *", namespace)
    assert not any(n.startswith("cifarnets_") for n in registry.__all__)
    exec("from cifarnets.models._timm import *", namespace)
    assert sorted(bridge.__all__) == sorted(f"cifarnets_{n}" for n in ALL_MODELS if f"cifarnets_{n}" in namespace)
    assert timm.models.is_model("cifarnets_vgg38") and "cifarnets_vgg38" in timm.list_models("cifarnets_*")


# ---------------------------------------------------------------- flag combinations and the export paths

# A covering set: each of bn, rc, the four shortcuts, both DetachedBatchNorm2d variants and
# several activations at least once; small widths keep the exports fast. All go through
# TorchScript, fx and torch.export; ONNX and torch.compile (the slow ones) run on the
# DetachedBatchNorm2d combinations, whose custom backward is what could break there.
COMBOS = [
    ("vgg38", dict(width=4, bn=True, rc=True, shortcut="projection", norm_layer=cifarnets.DetachedBatchNorm2d,
                   act="sigmoid")),
    ("vgg38", dict(width=4, bn=True, rc=True, shortcut="zeropad", norm_layer="detached_batchnorm_biased",
                   act="tanh")),
    ("vgg38", dict(width=4, rc=True, shortcut="avgpool", act="gelu")),
    ("vgg08", dict(width=4, bn=True, shortcut="none", act="silu")),
    ("resnet20", dict(norm_layer="detached_batchnorm", shortcut="projection", act="leaky_relu")),
]
SLOW_PATHS = {0: ("onnx", "compile"), 1: ("compile",), 4: ("compile",)}


@pytest.mark.parametrize("act", list_act_layers())
def test_every_activation_scripts_traces_and_exports(act):
    _script_trace_and_export_match(cifarnets.create("vgg38", width=4, bn=True, rc=True, act=act).eval())


def _script_trace_and_export_match(model: nn.Module) -> None:
    """TorchScript, fx-then-script and torch.export (dynamic batch, run at another size) equal eager."""
    x = _x(2)
    ref = model(x)
    torch.testing.assert_close(torch.jit.script(model)(x), ref)
    torch.testing.assert_close(torch.jit.script(torch.fx.symbolic_trace(model))(x), ref)
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    x5 = _x(5)
    torch.testing.assert_close(exported.module()(x5), model(x5))


def _onnx_matches(model: nn.Module) -> None:
    import onnxruntime as ort

    x = _x(2)
    batch = torch.export.Dim("batch", min=1, max=64)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: batch},), optimize=False,
                                    verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x3 = _x(3)  # another batch size than the one exported with
    out = session.run(None, {session.get_inputs()[0].name: x3.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), model(x3), atol=1e-4, rtol=1e-4)


def _compile_matches(model: nn.Module) -> None:
    """fullgraph=True (no graph break) in eval and train mode; the train step's gradients equal eager's."""
    torch._dynamo.reset()
    x = _x(4)
    model.eval()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), model(x))
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    y = torch.arange(4) % 3
    torch.manual_seed(0)  # the same dropout masks in both passes (the published heads keep their dropout)
    F.cross_entropy(model(x)[:, :3], y).backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.load_state_dict(state)
    torch.manual_seed(0)
    F.cross_entropy(compiled(x)[:, :3], y).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, eager_grads[n], atol=1e-5, rtol=1e-4, msg=f"gradient of {n}")


@pytest.mark.parametrize("index", range(len(COMBOS)), ids=lambda i: COMBOS[i][0] + "-" + "-".join(
    f"{k}={getattr(v, '__name__', v)}" for k, v in COMBOS[i][1].items()))
def test_flag_combinations_leave_python_every_way(index):
    name, kwargs = COMBOS[index]
    torch.manual_seed(0)
    model = cifarnets.create(name, **kwargs).eval()
    _script_trace_and_export_match(model)
    if "onnx" in SLOW_PATHS.get(index, ()):
        _onnx_matches(model)
    if "compile" in SLOW_PATHS.get(index, ()):
        _compile_matches(model)


@pytest.mark.parametrize("name", ["vgg08", "resnet20"])
def test_onnx_small_families(name):
    _onnx_matches(cifarnets.create(name).eval())


def test_compile_plain_coursework_vgg():
    _compile_matches(cifarnets.create("vgg08"))


@pytest.mark.slow
@pytest.mark.heavy_export
@pytest.mark.xdist_group("heavy_export")
@pytest.mark.parametrize("name", HEAVY)
def test_onnx_and_compile_vgg16_alexnet(name):
    model = cifarnets.create(name)
    _onnx_matches(model.eval())
    torch._dynamo.reset()
    compiled = torch.compile(model.train(), fullgraph=True, backend="aot_eager")
    compiled(_x(2)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_detached_batchnorm_under_torchscript_keeps_its_backward():
    """The TorchScript path of DetachedBatchNorm2d computes the same outputs, statistics and gradients."""
    for biased in (False, True):
        torch.manual_seed(0)
        eager = cifarnets.DetachedBatchNorm2d(4, biased_running_var=biased).double()
        scripted = torch.jit.script(cifarnets.DetachedBatchNorm2d(4, biased_running_var=biased).double())
        scripted.load_state_dict(eager.state_dict())
        x = torch.randn(8, 4, 3, 3, dtype=torch.float64)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        upstream = torch.randn_like(x)
        torch.testing.assert_close(scripted(xb), eager(xa))
        eager(xa).backward(upstream)
        scripted(xb).backward(upstream)
        torch.testing.assert_close(xb.grad, xa.grad)
        torch.testing.assert_close(scripted.running_var, eager.running_var)
