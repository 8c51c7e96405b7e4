"""Effective receptive field (Luo et al. 2016), cifarnets.analysis.effective_receptive_field."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

import cifarnets
from cifarnets.analysis._erf import ErfResult, effective_receptive_field


def _ones_stack(depth: int, k: int = 3) -> nn.Sequential:
    net = nn.Sequential(*[nn.Conv2d(1, 1, k, bias=False) for _ in range(depth)])
    for c in net:
        nn.init.ones_(c.weight)
    return net


def test_linear_stack_gives_the_binomial_like_map_of_luo_et_al():
    # Luo et al. §2.2: with all weights one, the ERF of n stacked k x k convs is the n-fold
    # convolution of a box with itself; for three 3x3 convs, per axis 1 3 6 7 6 3 1.
    erf = effective_receptive_field(_ones_stack(3), torch.randn(3, 1, 13, 13))
    profile = np.array([1, 3, 6, 7, 6, 3, 1], dtype=float)
    np.testing.assert_array_equal(erf.map[3:10, 3:10], np.outer(profile, profile))
    assert erf.map[:3].sum() == 0 and erf.map[10:].sum() == 0
    assert erf.rf == 7 and erf.unit == (3, 3) and erf.centre == (6.0, 6.0)
    assert erf.side(1.0) == 7 and erf.mass_inside_rf == 1.0
    # The Gaussian-like spread: variance of a sum of three uniform {-1, 0, 1} steps, 3 * 2/3.
    assert erf.sigma == pytest.approx((np.sqrt(2.0), np.sqrt(2.0)))


@pytest.mark.parametrize("name", ["resnet20", "vgg08", "alexnet_cifar"])
def test_gradient_mass_lies_inside_the_theoretical_field(name):
    torch.manual_seed(0)
    model = cifarnets.create(name)
    erf = effective_receptive_field(model, torch.randn(4, 3, 32, 32))
    assert erf.map.shape == (32, 32) and erf.map.dtype == np.float64
    assert erf.mass_inside_rf == pytest.approx(1.0)
    assert erf.rf == cifarnets.analysis.receptive_field(model, method="forward_features").rf
    sides = [erf.side(s) for s in (0.25, 0.5, 0.9, 0.95, 1.0)]
    assert sides == sorted(sides) and sides[-1] <= max(erf.rf, 2 * 32)
    assert 0.0 < erf.ratio(0.5) <= 1.0


def test_resnet20_numbers():
    torch.manual_seed(0)
    erf = effective_receptive_field(cifarnets.create("resnet20"), torch.randn(8, 3, 32, 32))
    assert (erf.rf, erf.unit, erf.feature_size, erf.centre) == (81, (4, 4), (8, 8), (16.0, 16.0))
    assert (erf.rf_start, erf.rf_end) == ((-24, -24), (56, 56))
    # Luo et al.: the effective field is a fraction of the theoretical one.
    assert erf.side(0.95) < 81 and erf.ratio(0.95) < 1.0
    text = str(erf)
    assert "unit (4, 4)" in text and "81×81" in text and "95% of the gradient mass" in text


def test_eval_mode_makes_images_independent_and_modes_are_restored():
    torch.manual_seed(0)
    model = cifarnets.create("vgg08", bn=True).train()
    images = torch.randn(4, 3, 32, 32)
    together = effective_receptive_field(model, images).map
    alone = np.mean([effective_receptive_field(model, images[i:i + 1]).map for i in range(4)], axis=0)
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-12)
    assert model.training and all(m.training for m in model.modules())
    # In train mode batch norm couples the images: the batch map is not the mean of single maps.
    coupled = effective_receptive_field(model, images, eval_mode=False).map
    assert not np.allclose(coupled, alone, rtol=1e-3)
    assert model.training


def test_parameters_and_running_stats_untouched():
    model = cifarnets.create("resnet20")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    effective_receptive_field(model, torch.randn(2, 3, 32, 32), eval_mode=False)
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("running" in k or "num_batches" in k for k in changed)  # train mode: BN stats move
    model = cifarnets.create("resnet20")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    effective_receptive_field(model, torch.randn(2, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_named_layer_stops_the_forward_early():
    model = cifarnets.create("resnet20")
    ran_on_tensors = []
    # (The receptive-field trace calls the stage too, on fx proxies; that does not count.)
    model.stages[2].register_forward_hook(lambda m, i, o: ran_on_tensors.append(not isinstance(o, torch.fx.Proxy)))
    erf = effective_receptive_field(model, torch.randn(2, 3, 32, 32), layer="stages.1")
    assert not any(ran_on_tensors)  # stage 3 never ran on the images
    assert erf.layer == "stages.1" and erf.feature_size == (16, 16) and erf.rf == 37
    assert erf.mass_inside_rf == pytest.approx(1.0)
    conv = effective_receptive_field(model, torch.randn(2, 3, 32, 32), layer="stem.conv")
    assert conv.rf == 3 and np.count_nonzero(conv.map) <= 9


def test_untraceable_models_still_get_a_map():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return self.conv(x) if x.sum() > -1e9 else x  # data-dependent: fx cannot trace it

    erf = effective_receptive_field(Odd(), torch.randn(2, 1, 9, 9))
    assert erf.rf is None and erf.rf_start is None and erf.ratio() is None and erf.mass_inside_rf is None
    assert erf.centre == (4.0, 4.0) and np.count_nonzero(erf.map) == 9
    assert "theoretical" not in str(erf)


def test_side_parities_and_clipping():
    m = np.zeros((6, 6))
    m[2:4, 2:4] = 1.0  # centred between pixels 2 and 3
    r = ErfResult(m, (0, 0), (1, 1), (2.5, 2.5), None, None, None, "", "forward", 1)
    assert r.side(0.25) == 2 and r.side(1.0) == 2
    m = np.zeros((5, 5))
    m[0, 0] = 1.0  # mass in a corner, centre in the middle: the square grows past the image
    r = ErfResult(m, (0, 0), (1, 1), (2.0, 2.0), None, None, None, "", "forward", 1)
    assert r.side(1.0) == 5
    r = ErfResult(np.ones((4, 5)), (0, 0), (1, 1), (1.5, 2.0), None, None, None, "", "forward", 1)
    # A pixel centre on one axis, between pixels on the other: sides differ by one, and the
    # square grows until the 5 columns are covered.
    assert r.side(1.0) == (6, 5)
    assert ErfResult(np.zeros((3, 3)), (0, 0), (1, 1), (1.0, 1.0), None, None, None, "", "f", 1).side() == 0
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        r.side(0.0)


def test_errors_name_the_problem():
    model = cifarnets.create("resnet20")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        effective_receptive_field(model, torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="no module 'stages.9'"):
        effective_receptive_field(model, torch.randn(1, 3, 32, 32), layer="stages.9")
    with pytest.raises(ValueError, match="not called.*method='forward'"):
        effective_receptive_field(model, torch.randn(1, 3, 32, 32), layer="head.fc")
    with pytest.raises(ValueError, match="not a \\(N, C, h, w\\) feature map"):
        effective_receptive_field(model, torch.randn(1, 3, 32, 32), method="forward")
    with pytest.raises(ValueError, match="no method 'trunk'"):
        effective_receptive_field(model, torch.randn(1, 3, 32, 32), method="trunk")



def test_float64_images_and_a_float64_model_give_the_float32_map():
    torch.manual_seed(0)
    model = cifarnets.create("vgg08")
    images = torch.randn(2, 3, 32, 32)
    base = effective_receptive_field(model, images)
    for m, x in ((model, images.double()), (copy.deepcopy(model).double(), images)):
        erf = effective_receptive_field(m, x)
        assert erf.rf == base.rf == 52
        assert np.allclose(erf.map, base.map, rtol=1e-4, atol=1e-9)


def test_integer_images_are_refused_with_the_conversion():
    from cifarnets.errors import ConfigTypeError

    with pytest.raises(ConfigTypeError, match=r"floating-point batch, got dtype torch.uint8.*images.float\(\) / 255"):
        effective_receptive_field(cifarnets.create("vgg08"), torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
