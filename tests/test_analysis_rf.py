"""Receptive fields traced with torch.fx (cifarnets.analysis.receptive_field).

Three kinds of evidence:
* published values, corrected where the AlexNet/VGG report errs (its §4; docs/references.md),
  on reference nets written here and on the zoo's own models;
* an independent measurement, the support of an input gradient in a linear, positive copy
  of each net (tests/rf_gradient_check.py), for every registered model and for random
  conv/pool stacks (hypothesis);
* the geometry of every op the tracer claims to handle, each on a tiny net, and a clear
  refusal of the ops it does not handle and of inputs no model can take.
"""

from __future__ import annotations

import pytest
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rf_gradient_check import gradient_receptive_field

import cifarnets
from cifarnets.analysis import (
    ReceptiveFieldAlignmentError,
    ReceptiveFieldError,
    ReceptiveFieldTable,
    receptive_field,
)
from cifarnets.cli import main as cli_main
from cifarnets.errors import ConfigError

# The recurrence r_l = r_{l-1} + (k_l - 1) j_{l-1} by hand, conv and pool rows in order: AlexNet-CIFAR conv1 ...
# pool5 (the report prints 3, 6, 10, 14, 22, 30, 38, 46) and VGG-16 conv1_1 ... pool5 (the report: ... 108 ... 236).
ALEXNET_RF = (3, 4, 8, 10, 18, 26, 34, 38)
VGG16_RF = (3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212)

# --------------------------------------------------------------------------------------
# Reference nets (the AlexNet/VGG report, §2), written here so the tests do not depend on the zoo's code
# --------------------------------------------------------------------------------------


class AlexNetCIFAR(nn.Module):
    """The AlexNet/VGG report's AlexNet-CIFAR, torchvision style (features / classifier)."""

    def __init__(self) -> None:
        super().__init__()
        c = lambda i, o: nn.Conv2d(i, o, 3, padding=1)  # noqa: E731
        self.features = nn.Sequential(
            c(3, 64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            c(64, 192), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            c(192, 384), nn.ReLU(inplace=True), c(384, 256), nn.ReLU(inplace=True), c(256, 256), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * 4 * 4, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(1024, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.classifier(x)


class VGG16(nn.Module):
    """The AlexNet/VGG report's VGG-16 for CIFAR, torchvision's make_layers style."""

    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

    def __init__(self, bn: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in self.cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1)] + ([nn.BatchNorm2d(v)] if bn else []) + [nn.ReLU(True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(512, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class LambdaLayer(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class BasicBlockA(nn.Module):
    """akamaster's CIFAR BasicBlock with the option-A shortcut (strided subsampling + channel pad).

    akamaster subsamples with the slice ``x[:, :, ::2, ::2]``, which the tracer refuses; a 1x1
    stride-2 average pool keeps the same pixels.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or cin != cout:
            pad = (cout - cin) // 2
            self.shortcut = LambdaLayer(lambda x: F.pad(F.avg_pool2d(x, 1, 2), (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class CifarResNetA(nn.Module):
    """ResNet-(6n+2) of He et al. 2016 §4.2 with option-A shortcuts, small widths allowed."""

    def __init__(self, n: int, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for stage, w in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlockA(cin, w, 2 if (stage > 0 and i == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(cin, 10)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(F.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.forward_features(x)
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def _conv_pool(table: ReceptiveFieldTable) -> list[int]:
    return [r.rf for r in table if r.kind in ("conv", "maxpool", "avgpool")]


# --------------------------------------------------------------------------------------
# Published and corrected values (docs/references.md)
# --------------------------------------------------------------------------------------


def _meta(factory, *args, **kwargs):
    # Geometry needs no weights: building on the meta device skips tens of millions of inits.
    with torch.device("meta"):
        return factory(*args, **kwargs)


def test_reference_nets_are_the_spec_nets():
    assert sum(p.numel() for p in _meta(AlexNetCIFAR).parameters()) == 23_238_474
    assert sum(p.numel() for p in _meta(VGG16).parameters()) == 33_638_218


def test_alexnet_corrected_table():
    table = receptive_field(_meta(AlexNetCIFAR))
    assert _conv_pool(table) == list(ALEXNET_RF)
    assert [r.jump for r in table if r.kind in ("conv", "maxpool")] == [1, 2, 2, 4, 4, 4, 4, 8]
    assert [r.output_size for r in table][:3] == [(32, 32), (16, 16), (16, 16)]
    # After flatten every feature depends on the whole pool5 map: 38 + (4 - 1) * 8.
    assert table[-1].kind == "flatten" and table[-1].is_global and table[-1].rf == 62


def test_vgg16_corrected_table():
    table = receptive_field(_meta(VGG16))
    rfs = _conv_pool(table)
    assert rfs == list(VGG16_RF)
    names = ["conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "conv3_2", "conv3_3", "pool3",
             "conv4_1", "conv4_2", "conv4_3", "pool4", "conv5_1", "conv5_2", "conv5_3", "pool5"]
    got = dict(zip(names, rfs))
    assert (got["pool4"], got["conv5_1"], got["conv5_2"], got["conv5_3"], got["pool5"]) == (100, 132, 164, 196, 212)
    assert [got[k] for k in ("conv4_1", "conv4_2", "conv4_3")] == [60, 76, 92]
    assert receptive_field(_meta(VGG16, bn=True))[-1].rf == 212


@pytest.mark.parametrize("n", [1, 2, 3])
def test_cifar_resnet_option_a_is_28n_minus_3(n):
    table = receptive_field(CifarResNetA(n, width=4), method="forward_features")
    assert table.rf == 28 * n - 3
    assert table[-1].kind == "merge" and table[-1].rf == 28 * n - 3  # the last block's add
    full = receptive_field(CifarResNetA(n, width=4))
    # Row before the global pool (the functional avg_pool2d over the 8x8 map) is the last add.
    pool = next(i for i, r in enumerate(full) if r.layer == "avg_pool2d")  # not the shortcuts' 1x1 pools
    assert full[pool - 1].rf == 28 * n - 3
    assert full[pool].rf == 28 * n - 3 + 7 * 4 and full[-1].is_global


# --------------------------------------------------------------------------------------
# The zoo: published values and the independent cross-check on every registered model
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,n", [("resnet20", 3), ("resnet32", 5), ("resnet44", 7), ("resnet56", 9),
                                    ("resnet110", 18)])
def test_zoo_resnets_28n_minus_3(name, n):
    table = receptive_field(cifarnets.create(name))
    assert table.at("stages").rf == 28 * n - 3
    pool = next(i for i, r in enumerate(table) if r.kind == "adaptive_avgpool")
    assert table[pool - 1].kind == "merge" and table[pool - 1].rf == 28 * n - 3
    assert table[pool].is_global


def test_zoo_alexnet_and_vgg16():
    assert _conv_pool(receptive_field(_meta(cifarnets.create, "alexnet_cifar"))) == list(ALEXNET_RF)
    for name in ("vgg16", "vgg16_bn"):
        assert _conv_pool(receptive_field(_meta(cifarnets.create, name))) == list(VGG16_RF)


@pytest.mark.parametrize("name", cifarnets.list_models())
def test_zoo_traced_rf_equals_gradient_support(name):
    """The independent check on every registered model: traced rf == gradient support."""
    model = cifarnets.create(name)
    assert receptive_field(model).aligned  # strict: every default configuration has aligned paths
    trunk = receptive_field(model, method="forward_features")
    g = gradient_receptive_field(model, method="forward_features")
    assert g.agrees, g
    assert g.rf == trunk.rf


@pytest.mark.parametrize("shortcut", ["zeropad", "projection"])
def test_coursework_strided_shortcuts_are_half_a_pixel_off(shortcut):
    # The reduction block pools its main path with a 2x2 window (centre +0.5 px) but subsamples
    # the shortcut with a 1x1 stride-2 op (centre +0): the two paths do not line up.
    model = cifarnets.create("vgg08", rc=True, shortcut=shortcut)
    with pytest.raises(ReceptiveFieldAlignmentError, match=r"stages\.0\.reduction\.add.*differ by -0\.5"):
        receptive_field(model)
    hull = receptive_field(model, strict=False)
    assert not hull.aligned and "misaligned by -0.5 px" in str(hull)
    g = gradient_receptive_field(model, method="forward_features")
    assert g.agrees, g
    assert receptive_field(cifarnets.create("vgg08", rc=True, shortcut="avgpool")).aligned


def test_full_width_linear_copy_agrees_on_zoo_and_option_a():
    for model in (cifarnets.create("resnet20"), cifarnets.create("vgg08", rc=True, shortcut="zeropad"),
                  CifarResNetA(1, width=4)):
        g = gradient_receptive_field(model, method="forward_features", collapse_channels=False)
        assert g.agrees, (type(model).__name__, g)


def test_analysis_leaves_the_model_alone():
    model = cifarnets.create("resnet20").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    receptive_field(model)
    gradient_receptive_field(model, method="forward_features")
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------------
# Random conv/pool stacks (hypothesis): closed form, and gradient support
# --------------------------------------------------------------------------------------

_layer = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 5), st.integers(1, 2), st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.sampled_from(["max", "avg"]), st.integers(1, 3), st.integers(1, 3), st.integers(0, 1),
              st.just(1)),
)


@settings(max_examples=30, deadline=None)
@given(st.lists(_layer, min_size=1, max_size=5))
def test_random_stacks_closed_form_and_gradient(spec):
    layers: list[nn.Module] = []
    r, j, start, n = 1, 1, 0, 96
    for kind, k, s, p, d in spec:
        p = min(p, k // 2)  # pooling requires padding <= kernel / 2
        d = d if kind == "conv" else 1
        n = (n + 2 * p - d * (k - 1) - 1) // s + 1
        assume(n >= 1)
        if kind == "conv":
            layers += [nn.Conv2d(1, 1, k, s, p, d), nn.Tanh()]
        else:
            layers.append(nn.MaxPool2d(k, s, p) if kind == "max" else nn.AvgPool2d(k, s, p))
        start -= p * j
        r += (d * (k - 1)) * j
        j *= s
    net = nn.Sequential(*layers)
    size = (1, 96, 96)
    table = receptive_field(net, size)
    assert (table.rf, table[-1].jump, table[-1].start[0]) == (r, j, start)
    assert table[-1].centre == start + (r - 1) / 2
    g = gradient_receptive_field(net, size)
    assert g.agrees and g.rf == r, g


# --------------------------------------------------------------------------------------
# Every op the tracer handles, one tiny net each
# --------------------------------------------------------------------------------------


class Fn(nn.Module):
    """A net whose forward is a function of (self, x)."""

    def __init__(self, fn, **modules: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        for k, m in modules.items():
            self.add_module(k, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x)


def check_spatial(x: torch.Tensor, size: int) -> torch.Tensor:
    """An input guard like the zoo's check_input: Python control flow on shapes."""
    if x.shape[-1] != size:
        raise ValueError(f"expected width {size}")
    return x


def check_nothing(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError("4-D please")


torch.fx.wrap("check_spatial")
torch.fx.wrap("check_nothing")


class Guarded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_nothing(x)
        x = check_spatial(x, 32)
        return self.conv(x)


def test_guards_are_skipped_and_allow_other_sizes():
    table = receptive_field(Guarded())
    assert [r.layer for r in table] == ["conv"] and table.rf == 3
    assert receptive_field(Guarded(), (3, 64, 64)).rf == 3  # the guard would reject 64; it is not run
    assert gradient_receptive_field(Guarded()).agrees


def _rf(fn, size=(2, 32, 32), **modules):
    net = Fn(fn, **modules)
    return receptive_field(net, size), net


class FunctionalConvs(nn.Module):
    """Convolutions with parameters of their own (F.conv2d), a subtraction of a pooled path."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 2, 3, 3))
        self.b = nn.Parameter(torch.randn(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.w, self.b, padding=1)
        return F.conv2d(y, self.w, None, stride=2) - F.avg_pool2d(y, 3, 2)


def test_functional_convs_and_subtraction():
    table = receptive_field(FunctionalConvs(), (2, 32, 32))
    assert [r.kind for r in table] == ["conv", "conv", "avgpool", "merge"]
    assert [r.rf for r in table] == [3, 5, 5, 5] and table[-1].centre == 1 and table[-1].output_size == (15, 15)
    for collapse in (True, False):  # the full-width copy keeps the functional weights, made positive
        assert gradient_receptive_field(FunctionalConvs(), (2, 32, 32), collapse_channels=collapse).agrees


def test_meta_device_models():
    with torch.device("meta"):
        model = cifarnets.create("resnet20")
    assert receptive_field(model).at("stages").rf == 81
    assert gradient_receptive_field(model, method="forward_features", collapse_channels=False).agrees


def test_dilated_convs_and_gradient_holes():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=2, dilation=2), nn.Conv2d(1, 1, 3, padding=4, dilation=4))
    table = receptive_field(net, (1, 32, 32))
    assert [r.rf for r in table] == [5, 13] and [r.dilation for r in table] == [2, 4]
    assert table[-1].centre == 0 and "dilation 2" in table[0].op
    assert gradient_receptive_field(net, (1, 32, 32)).agrees


def test_functional_pooling():
    def fwd(self, x):
        x = F.max_pool2d(self.c(x), 3, 2, 1)  # k3 s2 p1
        return F.avg_pool2d(x, kernel_size=2, ceil_mode=True)  # stride defaults to the kernel

    table, net = _rf(fwd, c=nn.Conv2d(2, 2, 3, padding=1))
    assert [r.kind for r in table] == ["conv", "maxpool", "avgpool"]
    conv, mp, ap = table
    assert (mp.rf, mp.jump, mp.start) == (5, 2, (-2, -2))
    assert (ap.rf, ap.jump, ap.output_size) == (7, 4, (8, 8))
    g = gradient_receptive_field(net, (2, 32, 32))
    assert g.agrees, g


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_same_padding_even_kernel_and_reflect_mode():
    net = nn.Sequential(nn.Conv2d(1, 1, 4, padding="same"), nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"))
    table = receptive_field(net, (1, 16, 16))
    # torch pads an even kernel's 3 pixels as 1 before, 2 after: the window is [-1, 2].
    assert table[0].start == (-1, -1) and table[0].end == (2, 2) and table[0].centre == 0.5
    assert table[1].rf == 6 and table[1].output_size == (16, 16)
    assert gradient_receptive_field(net, (1, 16, 16)).agrees


def test_adaptive_pooling():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(11), nn.AdaptiveMaxPool2d((1, 1)))
    table = receptive_field(net, (1, 24, 24))
    conv, ada, glob = table
    assert conv.start == (0, 0) and conv.rf == 3
    assert (ada.kernel, ada.stride, ada.rf) == (2, 2, 4)  # 22 -> 11
    assert glob.is_global and glob.kernel == 11 and glob.rf == 4 + 10 * 2
    with pytest.raises(ReceptiveFieldError, match="unequal size"):
        receptive_field(nn.AdaptiveAvgPool2d(5), (1, 12, 12))


def test_cat_and_residual_merges_take_the_largest_field():
    def fwd(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        return y + self.c(y)

    table, net = _rf(fwd, a=nn.Conv2d(2, 2, 3, padding=1), b=nn.Conv2d(2, 2, 5, padding=2),
                     c=nn.Conv2d(4, 4, 1))
    merges = [r for r in table if r.kind == "merge"]
    assert [m.op for m in merges] == ["cat (2 paths)", "add (2 paths)"]
    assert [m.rf for m in merges] == [5, 5] and table.rf == 5
    assert gradient_receptive_field(net, (2, 32, 32)).agrees


def test_misaligned_paths_raise_with_names_and_numbers():
    net = Fn(lambda s, x: s.pool(s.main(x)) + s.short(x),
             main=nn.Conv2d(2, 2, 3, padding=1), pool=nn.MaxPool2d(2), short=nn.Conv2d(2, 2, 1, stride=2))
    with pytest.raises(ReceptiveFieldAlignmentError) as e:
        receptive_field(net, (2, 16, 16))
    msg = str(e.value)
    for part in ("`add`", "`pool`", "`short`", "jump 2", "centre 0.5", "centre 0", "strict=False"):
        assert part in msg, part
    assert isinstance(e.value, ValueError)


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_misaligned_hull_is_what_the_gradient_spans():
    # Path a sees [-1, 1], path b (two 2x2 'same' convs, each padded after the input) sees [0, 2]:
    # the hull [-1, 2] is wider than either path.
    b = nn.Sequential(nn.Conv2d(1, 1, 2, padding="same"), nn.Conv2d(1, 1, 2, padding="same"))
    net = Fn(lambda s, x: s.a(x) + s.b(x), a=nn.Conv2d(1, 1, 3, padding=1), b=b)
    table = receptive_field(net, (1, 16, 16), strict=False)
    assert table.rf == 4 and table[-1].start == (-1, -1) and not table.aligned
    assert "misaligned by 1 px" in table[-1].note
    g = gradient_receptive_field(net, (1, 16, 16))
    assert g.agrees and g.rf == 4


def test_different_jumps_cannot_merge_even_without_strict():
    net = Fn(lambda s, x: s.a(x) + s.b(x), a=nn.Conv2d(1, 1, 1, stride=2), b=nn.Conv2d(1, 1, 5))
    with pytest.raises(ReceptiveFieldAlignmentError, match="jumps differ"):
        receptive_field(net, (1, 8, 8), strict=False)


def test_global_ops_squeeze_excitation_and_mean():
    def fwd(self, x):
        x = self.c(x)
        s = torch.sigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)))
        x = x * s
        return x.mean((2, 3))

    table, _ = _rf(fwd, c=nn.Conv2d(2, 2, 3, padding=1), fc=nn.Conv2d(2, 2, 1))
    kinds = [r.kind for r in table]
    assert kinds == ["conv", "adaptive_avgpool", "conv", "merge"]  # mean of a global map adds no row
    assert table[1].is_global and table[1].rf == 3 + 31
    assert table[-1].is_global and table[-1].rf == 34


def test_channel_only_and_elementwise_ops_pass_through():
    def fwd(self, x):
        x = self.c(x)
        x = F.pad(x, (0, 0, 0, 0, 1, 1))  # channels only
        x = torch.sigmoid(x) + F.dropout(x, 0.1, False) * 2.0
        return F.leaky_relu(x).contiguous().float()

    table, net = _rf(fwd, c=nn.Conv2d(2, 2, 3, padding=1))
    assert [r.kind for r in table] == ["conv", "merge"] and table.rf == 3
    assert gradient_receptive_field(net, (2, 32, 32)).agrees
    assert gradient_receptive_field(net, (2, 32, 32), collapse_channels=False).agrees


def test_unknown_and_unsupported_ops_name_themselves_and_the_fix():
    with pytest.raises(ReceptiveFieldError, match=r"module `1` \(torch.nn.modules.upsampling.Upsample\).*passthrough"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)), (1, 8, 8))
    with pytest.raises(ReceptiveFieldError, match=r"function .*interpolate"):
        receptive_field(Fn(lambda s, x: F.interpolate(x, scale_factor=2)), (1, 8, 8))
    with pytest.raises(ReceptiveFieldError, match="Linear layer on a feature map"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Linear(6, 6)), (1, 8, 8))
    with pytest.raises(ReceptiveFieldError, match="concatenates along dim 3"):
        receptive_field(Fn(lambda s, x: torch.cat([x, x], dim=3)), (1, 8, 8))


@pytest.mark.parametrize("fwd,what", [
    (lambda s, x: x[:, :, ::2, ::2], r"function getitem .*slicing a feature map.*F\.avg_pool2d\(x, 1, stride\)"),
    (lambda s, x: F.pad(x, (1, 1, 1, 1)), r"function pad .*pads H or W"),
    (lambda s, x: s.pad(x), r"module `pad` \(torch.nn.modules.padding.ZeroPad2d\)"),
    (lambda s, x: x.chunk(2, dim=1)[0], r"method Tensor.chunk \(graph node 'chunk'\) is not supported"),
    (lambda s, x: F.max_pool2d(x, 2, return_indices=True)[0], r"return_indices=True"),
    (lambda s, x: x.view(1, 2, 4, 8), r"reshapes a feature map to \(1, 2, 4, 8\)"),
    (lambda s, x: F.conv_transpose2d(x, torch.ones(1, 1, 3, 3)), r"function \S*conv_transpose2d"),
])
def test_ops_outside_the_supported_set_are_refused_by_name(fwd, what):
    with pytest.raises(ReceptiveFieldError, match=what) as err:
        receptive_field(Fn(fwd, pad=nn.ZeroPad2d(1)), (1, 8, 8))
    assert "is not supported" in str(err.value) and "passthrough=[...]" in str(err.value)


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x


def test_untraceable_forward_explains_guards_and_passthrough():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), DataDependent())
    with pytest.raises(ReceptiveFieldError, match=r"could not trace.*check_.*torch\.fx\.wrap"):
        receptive_field(net, (1, 8, 8))
    assert receptive_field(net, (1, 8, 8), passthrough=[DataDependent]).rf == 3
    assert receptive_field(net, (1, 8, 8), passthrough=["1"]).rf == 3


def test_table_lookup_scopes_and_printing():
    table = receptive_field(_meta(AlexNetCIFAR))
    assert table["features.12"].rf == 38 and table.at("features").rf == 38
    assert table.at("features.3").op == "output of Conv2d"
    with pytest.raises(KeyError, match="did you mean 'features'"):
        table.at("featurs")
    text = str(table)
    header = text.splitlines()[0]
    for col in ("Layer", "Operation", "Kernel", "Stride", "Padding", "Dilation", "Cum. stride (jump)",
                "Receptive field", "Centre", "Output"):
        assert col in header
    assert "38×38" in text and "2×2 maxpool" in text and text.splitlines()[2].startswith("input")
    md = table.to_markdown()
    assert md.startswith("| Layer | Operation |") and "| features.12 | 2×2 maxpool | 2 | 2 | 0 | 1 | 8 | 38×38 |" in md
    assert "rf=62" in repr(table) and len(table) == 9 and table[1:3][0].layer == "features.2"


def test_input_size_and_method_errors():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        receptive_field(nn.Conv2d(1, 1, 3), (32, 32))
    with pytest.raises(ReceptiveFieldError, match="no method 'forward_features'"):
        receptive_field(nn.Conv2d(1, 1, 3), method="forward_features")
    with pytest.raises(ReceptiveFieldError, match=r"does not run on an input of shape \(1, 1, 3, 3\)"):
        receptive_field(nn.Conv2d(1, 1, 5), (1, 3, 3))
    with pytest.raises(ReceptiveFieldError, match="too small for a 5x5 convolution"):
        receptive_field(nn.Sequential(nn.Conv2d(1, 1, 5)), (1, 3, 3))



def test_receptive_field_errors_are_cifarnets_errors():
    from cifarnets import CifarnetsError

    with pytest.raises(CifarnetsError) as err:
        receptive_field(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Upsample(scale_factor=2)), (3, 16, 16))
    assert isinstance(err.value, ReceptiveFieldError) and isinstance(err.value, ValueError)


# --------------------------------------------------------------------------------------
# Inputs no model can take: one clear error, nothing printed
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(3, 0, 0), (3, -32, 32), (3, 32.0, 32), (3, True, 32)])
def test_input_sizes_that_are_not_positive_integers_are_config_errors(size):
    with pytest.raises(ConfigError, match=r"input_size is \(C, H, W\) of one image, each a positive integer"):
        receptive_field(nn.Conv2d(3, 1, 3), size)


@pytest.mark.parametrize("hw,message", [
    (("0", "0"), "--input-size takes H W, two positive integers (e.g. --input-size 32 32); got 0 0"),
    (("-32", "32"), "--input-size takes H W, two positive integers (e.g. --input-size 32 32); got -32 32"),
    (("1", "1"), "at module `stages.0.reduction.pool` (torch.nn.modules.pooling.AvgPool2d), its 1x1 input is too "
                 "small for a 2x2 avg pooling with padding 0. Pass a larger input_size"),
])
@pytest.mark.parametrize("command", ["rf", "summary"])
def test_cli_bad_input_sizes_give_one_line(command, hw, message, capfd):
    code = cli_main([command, "vgg08", "--input-size", *hw])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"cifarnets {command}: error: "), err
    if command == "rf" or hw[0] != "1":
        assert message in err
    else:  # the model's own input check answers first
        assert "vgg08 down-samples by 8" in err


def test_the_tracer_prints_and_warns_nothing(capfd):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the call
        with pytest.raises(ReceptiveFieldError, match="too small"):
            receptive_field(cifarnets.create("vgg08"), (3, 1, 1))
        receptive_field(nn.Conv2d(1, 1, 4, padding="same"), (1, 8, 8))  # torch warns about even 'same' kernels
    assert capfd.readouterr() == ("", "")


def test_float64_and_meta_models_give_the_same_table():
    model = cifarnets.create("resnet20")
    expected = [r.rf for r in receptive_field(model)]
    assert [r.rf for r in receptive_field(model.double())] == expected
    assert [r.rf for r in receptive_field(model.half())] == expected
