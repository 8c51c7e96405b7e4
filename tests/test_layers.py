"""Layers: DetachedBatchNorm2d (the ResNet-18 report), the norm/act factories, shortcuts, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import cifarnets
from cifarnets.layers import (
    DetachedBatchNorm2d,
    ZeroPadShortcut,
    check_input,
    create_shortcut,
    get_act_layer,
    get_norm_layer,
    init_weights,
)


def twin_norms(channels=4, momentum=0.1, affine=True, dtype=torch.float64):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(channels, momentum=momentum, affine=affine).to(dtype)
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
    detached = DetachedBatchNorm2d(channels, momentum=momentum, affine=affine).to(dtype)
    detached.load_state_dict(bn.state_dict())
    return bn, detached


def test_state_dict_keys_are_batchnorm2d_keys():
    bn, detached = twin_norms()
    assert list(bn.state_dict()) == list(detached.state_dict())
    assert isinstance(detached, nn.BatchNorm2d)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_forward_and_running_stats_identical_in_train_and_eval(momentum):
    bn, detached = twin_norms(momentum=momentum)
    for step in range(3):
        x = torch.randn(8, 4, 5, 5, dtype=torch.float64) * (step + 1) + step
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        assert torch.equal(bn(xa), detached(xb))
    assert torch.equal(bn.running_mean, detached.running_mean)
    assert torch.equal(bn.running_var, detached.running_var)
    assert bn.num_batches_tracked == detached.num_batches_tracked == 3
    bn.eval(), detached.eval()
    x = torch.randn(8, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.equal(bn(x), detached(x))
    with torch.no_grad():
        bn.train(), detached.train()
        assert torch.equal(bn(x), detached(x))


def test_input_gradient_is_the_detached_statistics_gradient():
    """The ResNet-18 report §Custom Batch Normalization: no gradient through mean and variance."""
    bn, detached = twin_norms()
    x = torch.randn(8, 4, 5, 5, dtype=torch.float64)
    upstream = torch.randn_like(x)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    bn(xa).backward(upstream)
    detached(xb).backward(upstream)

    # Analytic: y = gamma * (x - mu) / sqrt(var + eps) + beta with mu, var constants.
    var = x.var(dim=(0, 2, 3), unbiased=False)
    analytic = upstream * (detached.weight / torch.sqrt(var + detached.eps)).view(1, -1, 1, 1)
    torch.testing.assert_close(xb.grad, analytic)
    # ... and the same from autograd with the statistics detached by hand.
    xc = x.clone().requires_grad_()
    mean = xc.mean(dim=(0, 2, 3), keepdim=True).detach()
    var_c = xc.var(dim=(0, 2, 3), unbiased=False, keepdim=True).detach()
    gamma, beta = detached.weight.detach().view(1, -1, 1, 1), detached.bias.detach().view(1, -1, 1, 1)
    y = (xc - mean) / torch.sqrt(var_c + detached.eps) * gamma + beta
    y.backward(upstream)
    torch.testing.assert_close(xb.grad, xc.grad)

    assert (xa.grad - xb.grad).abs().max() > 1e-2  # differs from BatchNorm2d's full gradient
    torch.testing.assert_close(bn.weight.grad, detached.weight.grad)
    torch.testing.assert_close(bn.bias.grad, detached.bias.grad)


def test_without_affine_and_with_channels_last():
    bn, detached = twin_norms(affine=False, dtype=torch.float32)
    x = torch.randn(4, 4, 6, 6).to(memory_format=torch.channels_last).requires_grad_()
    out = detached(x)
    torch.testing.assert_close(out, bn(x.detach()))
    out.backward(torch.ones_like(out))
    var = x.detach().var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(x.grad, (1 / torch.sqrt(var + 1e-5)).view(1, -1, 1, 1).expand_as(x))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 6), c=st.integers(1, 5), h=st.integers(1, 4), scale=st.floats(0.1, 10))
def test_forward_matches_batchnorm_for_any_shape(n, c, h, scale):
    bn, detached = twin_norms(channels=c)
    x = torch.randn(n, c, h, h + 1, dtype=torch.float64) * scale
    torch.testing.assert_close(detached(x.requires_grad_()), bn(x))


def test_weights_move_between_batchnorm_and_detached_models():
    a = cifarnets.create("resnet20")
    b = cifarnets.create("resnet20", norm_layer=DetachedBatchNorm2d)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x))


def test_norm_factory():
    assert get_norm_layer("batchnorm") is nn.BatchNorm2d
    assert get_norm_layer("detached_batchnorm") is DetachedBatchNorm2d
    assert get_norm_layer(None) is None
    assert get_norm_layer(nn.InstanceNorm2d) is nn.InstanceNorm2d
    assert isinstance(get_norm_layer("groupnorm")(32), nn.GroupNorm)
    with pytest.raises(ValueError, match="unknown norm_layer 'bachnorm'.*batchnorm"):
        get_norm_layer("bachnorm")
    with pytest.raises(ValueError, match="already registered"):
        cifarnets.register_norm_layer("batchnorm", nn.InstanceNorm2d)


def test_act_factory():
    assert get_act_layer("leaky_relu")().negative_slope == 0.01
    assert get_act_layer("sigmoid") is nn.Sigmoid
    with pytest.raises(ValueError, match="unknown act 'relu6'"):
        get_act_layer("relu6")
    model = cifarnets.create("vgg38", act="sigmoid", bn=True, rc=True)
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 1 + 3 * (2 * 5 + 2)
    assert not any(isinstance(m, nn.LeakyReLU) for m in model.modules())


def test_shortcuts():
    assert create_shortcut("none", 8, 8, 2) is None
    assert isinstance(create_shortcut("zeropad", 8, 8, 1), nn.Identity)
    assert isinstance(create_shortcut("avgpool", 8, 8, 2), nn.AvgPool2d)
    with pytest.raises(ValueError, match="keeps channels"):
        create_shortcut("avgpool", 8, 16, 2)
    with pytest.raises(ValueError, match="cannot shrink"):
        ZeroPadShortcut(16, 8)
    with pytest.raises(ValueError, match="unknown shortcut"):
        create_shortcut("pad", 8, 8, 2)


def test_check_input_messages():
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, 32, 32\).*in_chans=1"):
        check_input(torch.zeros(2, 1, 32, 32), 3, "vgg16", 32, (1, 1))
    with pytest.raises(ValueError, match=r"fixed classifier head.*\(N, 3, 32, 32\); got \(2, 3, 24, 24\)"):
        check_input(torch.zeros(2, 3, 24, 24), 3, "vgg16", 32, (1, 1))
    with pytest.raises(ValueError, match="unsqueeze"):
        check_input(torch.zeros(3, 32, 32), 3, "vgg08", 8)
    with pytest.raises(ValueError, match="down-samples by 32"):
        check_input(torch.zeros(1, 3, 16, 16), 3, "vgg106", 32)


def test_init_weights_rejects_unknown_scheme():
    with pytest.raises(ValueError, match="unknown init 'he'"):
        init_weights(nn.Conv2d(1, 1, 1), "he")


def test_biased_running_variance_is_seed000s_and_differs_by_at_most_n_over_n_minus_1():
    """The ResNet-18 report's CustomBatchNorm2d keeps inp.var(unbiased=False) in its running variance."""
    torch.manual_seed(0)
    default = DetachedBatchNorm2d(3).double()
    report = DetachedBatchNorm2d(3, biased_running_var=True).double()
    assert cifarnets.layers.get_norm_layer("detached_batchnorm_biased")(3).biased_running_var
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(report(x), default(x))
    biased = x.detach().var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(report.running_var, 0.9 + 0.1 * biased)
    torch.testing.assert_close(report.running_mean, default.running_mean)
    n = 4 * 2 * 2
    torch.testing.assert_close(default.running_var, 0.9 + 0.1 * biased * n / (n - 1))
    assert "biased_running_var=True" in repr(report)


@pytest.mark.parametrize("call, error, builtin", [
    (lambda: get_norm_layer("bachnorm"), "UnknownNameError", ValueError),
    (lambda: get_norm_layer(3), "ArgumentTypeError", TypeError),
    (lambda: get_act_layer("relu6"), "UnknownNameError", ValueError),
    (lambda: get_act_layer(3), "ArgumentTypeError", TypeError),
    (lambda: create_shortcut("pad", 8, 8, 2), "UnknownNameError", ValueError),
    (lambda: create_shortcut("avgpool", 8, 16, 2), "InvalidValueError", ValueError),
    (lambda: init_weights(nn.Conv2d(1, 1, 1), "he"), "UnknownNameError", ValueError),
    (lambda: cifarnets.layers.get_normalization("cifar1O"), "UnknownNameError", ValueError),
    (lambda: cifarnets.layers.ClassifierHead(8, 10, pool_type="mean"), "UnknownNameError", ValueError),
    (lambda: cifarnets.register_norm_layer("batchnorm", nn.InstanceNorm2d), "AlreadyRegisteredError", ValueError),
    (lambda: check_input(torch.zeros(2, 1, 32, 32), 3, "vgg16"), "InputError", ValueError),
    (lambda: check_input(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), 3, "vgg16"), "InputTypeError", TypeError),
])
def test_layer_errors_are_cifarnets_errors_and_the_builtin(call, error, builtin):
    with pytest.raises(cifarnets.CifarnetsError) as err:
        call()
    assert type(err.value) is getattr(cifarnets.layers, error)
    assert isinstance(err.value, builtin)
