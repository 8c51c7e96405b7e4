"""Per-layer summary (cifarnets.analysis._summary): shapes, parameters, MACs.

Anchors:
* chenyaofo/pytorch-cifar-models, README "Model Zoo / CIFAR-10" table, column "#MAdds(M)":
  resnet20 40.81, resnet32 69.12, resnet44 97.44, resnet56 125.75, vgg16_bn 313.73. Their
  ResNets use 1x1 projection shortcuts (option B) and their VGG a 512-512-512-10 classifier,
  so the tests build the same (``shortcut="projection"``; VGG conv rows + that classifier)
  and compare at the table's precision (0.01 M).
* He et al. 2016, Table 6: 0.27 M, 0.46 M, 0.66 M, 0.85 M, 1.7 M parameters for ResNet-20 ... 110.
* For the option-A ResNets (the zoo's default) the exact count by hand: 40,551,040 MACs for
  ResNet-20; He et al. give no FLOP counts for the CIFAR nets.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import cifarnets
from cifarnets.analysis._summary import ModelSummary, summary


def _resnet_option_a_macs(n: int) -> int:
    """He et al.'s ResNet-(6n+2) with parameter-free shortcuts, counted by hand."""
    conv = lambda hw, cin, cout: hw * hw * cout * cin * 9  # noqa: E731
    stem = conv(32, 3, 16)
    stage1 = 2 * n * conv(32, 16, 16)
    stage2 = conv(16, 16, 32) + (2 * n - 1) * conv(16, 32, 32)
    stage3 = conv(8, 32, 64) + (2 * n - 1) * conv(8, 64, 64)
    return stem + stage1 + stage2 + stage3 + 64 * 10


@pytest.mark.parametrize("name", cifarnets.list_models())
def test_totals_match_torch_and_rows_add_up(name):
    model = cifarnets.create(name)
    s = summary(model)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in s) == s.total_params
    assert sum(r.macs for r in s) == s.total_macs
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 3, 32, 32))
    assert 2 * s.total_macs == s.total_flops == counter.get_total_flops()


@pytest.mark.parametrize("name,n,params", [("resnet20", 3, 0.27), ("resnet32", 5, 0.46), ("resnet44", 7, 0.66),
                                           ("resnet56", 9, 0.85), ("resnet110", 18, 1.7)])
def test_option_a_resnets_exact_macs_and_he_et_al_params(name, n, params):
    s = summary(cifarnets.create(name))
    assert s.total_macs == _resnet_option_a_macs(n)
    assert round(s.total_params / 1e6, 2 if params < 1 else 1) == params
    assert s["stem.conv"].macs == 32 * 32 * 16 * 27 and s["stem.conv"].output_shape == (1, 16, 32, 32)


def test_resnet20_option_a_is_40_55_m():
    assert _resnet_option_a_macs(3) == 40_551_040 == summary(cifarnets.create("resnet20")).total_macs


@pytest.mark.parametrize("name,madds", [("resnet20", 40.81), ("resnet32", 69.12), ("resnet44", 97.44),
                                        ("resnet56", 125.75)])
def test_projection_resnets_match_chenyaofo_madds(name, madds):
    s = summary(cifarnets.create(name, shortcut="projection"))
    assert round(s.total_macs / 1e6, 2) == madds
    # The two 1x1 stride-2 projections: 16 -> 32 at 16x16 and 32 -> 64 at 8x8.
    assert s.total_macs - _resnet_option_a_macs({20: 3, 32: 5, 44: 7, 56: 9}[int(name[6:])]) == 2 * 131_072


def test_vgg16_conv_macs_match_chenyaofo_vgg16_bn():
    s = summary(cifarnets.create("vgg16_bn"))
    conv = sum(r.macs for r in s if r.type == "Conv2d")
    assert conv == 313_196_544
    chenyaofo_classifier = 512 * 512 + 512 * 512 + 512 * 10  # their 512-512-512-10 head
    assert round((conv + chenyaofo_classifier) / 1e6, 2) == 313.73
    # The AlexNet/VGG report's head, 512 -> 4096 -> 4096 -> 10, adds 18.9 M.
    assert s.total_macs == conv + 512 * 4096 + 4096 * 4096 + 4096 * 10


def test_alexnet_vgg_report_nets_by_hand():
    s = summary(cifarnets.create("alexnet_cifar"))
    conv = 1024 * 64 * 27 + 256 * 192 * 576 + 64 * 384 * 1728 + 64 * 256 * 3456 + 64 * 256 * 2304
    fc = 4096 * 4096 + 4096 * 1024 + 1024 * 10
    assert s.total_macs == conv + fc and s.total_params == 23_238_474


class FunctionalBlock(nn.Module):
    """Ops outside leaf modules: a functional conv with its own weight, and a shared layer."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.shared = nn.Conv2d(4, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, padding=1)
        x = self.shared(self.shared(x))
        return self.bn(x).flatten(1) @ torch.ones(4 * 8 * 8, 2)


def test_functional_ops_shared_modules_and_matmul_count():
    s = summary(FunctionalBlock(), (3, 8, 8))
    root = s[""]
    assert root.type == "FunctionalBlock" and root.params == 108
    assert root.macs == 64 * 4 * 27 + 256 * 2  # functional conv + the matmul
    shared = s["shared"]
    assert shared.calls == 2 and shared.macs == 2 * 64 * 4 * 4 and shared.params == 16
    assert s.total_macs == sum(r.macs for r in s) and s.total_params == 108 + 16 + 8
    assert s.flops_by_op["aten.convolution"] == 2 * (64 * 4 * 27 + 2 * 64 * 16)
    assert "shared  Conv2d ×2" in str(s) or "Conv2d ×2" in str(s)


def test_eval_mode_no_side_effects_and_unused_modules():
    class WithSpare(nn.Sequential):
        def __init__(self) -> None:
            super().__init__(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
            self.spare = nn.Linear(3, 3)  # registered, never called

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self[1](self[0](x))

    model = WithSpare().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = summary(model, (3, 8, 8), batch_size=2)
    assert model.training and model[1].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert s.input_shape == (2, 3, 8, 8) and s["0"].macs == 2 * 36 * 4 * 27
    unused = s["spare"]
    assert unused.output_shape is None and unused.calls == 0 and unused.params == 12
    assert s.total_params == sum(r.params for r in s)


def test_trainable_counts_and_formatting():
    model = cifarnets.create("resnet20")
    model.stem.conv.weight.requires_grad_(False)
    s = summary(model)
    assert s.trainable_params == s.total_params - 432 and s["stem.conv"].trainable_params == 0
    text = str(s)
    assert text.splitlines()[0].split() == ["Layer", "Type", "Output", "shape", "Params", "MACs"]
    assert "stages.1.0.conv1" in text and "[1, 32, 16, 16]" in text
    assert "Total MACs: 40,551,040 (40.55 M; FLOPs = 2 × MACs)" in text
    md = s.to_markdown()
    assert md.startswith("| Layer | Type | Output shape | Params | MACs |")
    assert "| stem.conv | Conv2d | [1, 16, 32, 32] | 432 | 442,368 |" in md
    assert isinstance(s, ModelSummary) and len(s) == len(s.rows) and s[0].name == "stem.conv"
    with pytest.raises(KeyError, match="no row 'stem.cnv'"):
        s["stem.cnv"]


def test_input_errors():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        summary(nn.Conv2d(3, 3, 1), (32, 32))
    with pytest.raises(ValueError, match="batch_size"):
        summary(nn.Conv2d(3, 3, 1), batch_size=0)



def test_a_model_name_is_built_on_the_meta_device():
    by_name = summary("resnet20")
    built = summary(cifarnets.create("resnet20"))
    assert (by_name.total_params, by_name.total_macs) == (built.total_params, built.total_macs) == (269722, 40_551_040)
    assert [r.name for r in by_name] == [r.name for r in built]
    with pytest.raises(cifarnets.errors.ModelError, match="unknown model 'resnet2'; did you mean"):
        summary("resnet2")
    with pytest.raises(TypeError, match="an nn.Module or a zoo model name, got int"):
        summary(3)


@pytest.mark.parametrize("size", [(3, 0, 0), (3, -32, 32), (3, 32.0, 32)])
def test_input_sizes_that_are_not_positive_integers_are_config_errors(size):
    from cifarnets.errors import ConfigError

    with pytest.raises(ConfigError, match="each a positive integer"):
        summary(nn.Conv2d(3, 3, 1), size)
