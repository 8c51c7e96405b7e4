"""Gradient flow (the VGG38 reports' Figs. 2, 3, 5): layer discovery, the numbers, the recorder,
wrappers, and the vanishing-gradient contrast of VGG38 at PyTorch's default init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cifarnets
from cifarnets.analysis import (
    VANISHING_GRADIENT_SPECS,
    GradientFlow,
    GradientFlowRecorder,
    compare_gradient_flow,
    gradient_flow,
    random_batch,
    spec_label,
    unwrap_model,
    weight_layers,
)


class TwoLinear(nn.Module):
    """y = W2 (W1 x): gradients small enough to write down by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 4, bias=False)
        self.fc2 = nn.Linear(4, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.norm(self.conv(x)))).flatten(1))


def _sum_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return out.sum()


# ---------------------------------------------------------------- weight_layers

def test_weight_layers_of_vgg08_are_its_eight_weighted_layers_in_order():
    model = cifarnets.create("vgg08")
    layers = weight_layers(model)
    assert [n for n, _ in layers] == [
        "stem.conv", "stages.0.reduction.conv1", "stages.0.reduction.conv2", "stages.1.reduction.conv1",
        "stages.1.reduction.conv2", "stages.2.reduction.conv1", "stages.2.reduction.conv2", "head.fc",
    ]
    assert layers[0][1] is model.stem.conv.weight and layers[-1][1] is model.head.fc.weight


@pytest.mark.parametrize("name, kwargs, depth", [("vgg38", {}, 38), ("vgg38", {"bn": True, "rc": True}, 38),
                                                 ("vgg68", {}, 68)])
def test_weight_layers_count_is_the_reports_depth(name, kwargs, depth):
    with torch.device("meta"):
        model = cifarnets.create(name, **kwargs)
    assert len(weight_layers(model)) == depth == model.depth


def test_weight_layers_include_norm_adds_norm_scales_after_their_conv():
    names = [n for n, _ in weight_layers(TinyConvNet(), include_norm=True)]
    assert names == ["conv", "norm", "fc"]
    assert [n for n, _ in weight_layers(TinyConvNet())] == ["conv", "fc"]


# ---------------------------------------------------------------- the numbers

def test_gradient_flow_matches_a_hand_computation_on_two_linear_layers():
    torch.manual_seed(0)
    model = TwoLinear()
    x = torch.randn(5, 3)
    # L = sum_b 1^T W2 W1 x_b  =>  dL/dW2 = 1 (sum_b W1 x_b)^T,  dL/dW1 = (W2^T 1)(sum_b x_b)^T
    w1, w2 = model.fc1.weight.detach().numpy().astype(np.float64), model.fc2.weight.detach().numpy().astype(np.float64)
    xs = x.numpy().astype(np.float64).sum(0)
    g2 = np.outer(np.ones(2), w1 @ xs)
    g1 = np.outer(w2.T @ np.ones(2), xs)

    class Flat(nn.Module):  # gradient_flow takes image batches (N, C, H, W)
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.inner(images.flatten(1))

    flow = gradient_flow(Flat(model), x.view(5, 3, 1, 1), torch.zeros(5), loss_fn=_sum_loss)
    assert flow.layers == ["inner.fc1", "inner.fc2"]
    np.testing.assert_allclose(flow.values, [np.abs(g1).mean(), np.abs(g2).mean()], rtol=1e-5)
    assert flow.batch_size == 5


def test_gradient_flow_of_a_conv_net_equals_autograd_backward():
    torch.manual_seed(0)
    model = TinyConvNet()
    images, labels = random_batch(6, num_classes=5, size=8)
    flow = gradient_flow(model, images, labels)
    reference = TinyConvNet()
    reference.load_state_dict(model.state_dict())
    F.cross_entropy(reference(images), labels).backward()
    np.testing.assert_allclose(flow.values, [reference.conv.weight.grad.abs().mean().item(),
                                             reference.fc.weight.grad.abs().mean().item()], rtol=1e-5)
    assert flow.loss == pytest.approx(F.cross_entropy(reference(images), labels).item(), rel=1e-5)


def test_gradient_flow_leaves_grads_mode_and_bn_statistics_untouched():
    model = TinyConvNet().eval()
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    gradient_flow(model, *random_batch(4, num_classes=5, size=8), train=True)
    assert not model.training and not model.norm.training
    assert torch.equal(model.fc.weight.grad, torch.full_like(model.fc.weight, 7.0))
    assert model.conv.weight.grad is None
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_gradient_flow_reports_nan_for_frozen_layers():
    model = TinyConvNet()
    model.conv.weight.requires_grad_(False)
    flow = gradient_flow(model, *random_batch(4, num_classes=5, size=8))
    assert math.isnan(flow["conv"]) and flow["fc"] > 0
    assert "(no gradient)" in str(flow)


def test_gradient_flow_object_api():
    flow = GradientFlow(["a", "b"], [1e-18, 2e-4], label="vgg38", loss=4.6, batch_size=8)
    assert flow.to_dict() == {"a": 1e-18, "b": 2e-4}
    assert len(flow) == 2 and list(flow) == [("a", 1e-18), ("b", 2e-4)]
    with pytest.raises(KeyError, match="no layer 'c'"):
        flow["c"]
    text = str(flow)
    assert "vgg38" in text and "1.000e-18" in text and "batch of 8" in text
    with pytest.raises(ValueError, match="one value per layer"):
        GradientFlow(["a"], [1.0, 2.0])


def test_gradient_flow_rejects_a_single_image():
    with pytest.raises(ValueError, match="unsqueeze"):
        gradient_flow(TinyConvNet(), torch.randn(3, 8, 8), torch.tensor([0]))


# ---------------------------------------------------------------- the recorder

def _step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """One backward; returns the per-layer mean |grad| computed independently."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    return [p.grad.abs().double().mean().item() for _, p in weight_layers(model)]


def test_recorder_average_equals_the_mean_of_per_step_values():
    torch.manual_seed(0)
    model = TinyConvNet()
    recorder = GradientFlowRecorder(model)
    per_step = []
    for seed in range(3):
        per_step.append(_step(model, *random_batch(4, num_classes=5, size=8, seed=seed)))
        recorder.accumulate()
    result = recorder.result()
    assert list(result) == ["conv", "fc"] and recorder.steps == 3
    np.testing.assert_allclose(list(result.values()), np.mean(per_step, axis=0), rtol=1e-6)
    recorder.reset()
    assert recorder.steps == 0 and all(math.isnan(v) for v in recorder.result().values())


def test_recorder_skips_missing_and_non_finite_gradients_per_layer():
    model = TinyConvNet()
    recorder = GradientFlowRecorder(model)
    first = _step(model, *random_batch(4, num_classes=5, size=8, seed=0))
    recorder.accumulate()
    second = _step(model, *random_batch(4, num_classes=5, size=8, seed=1))
    model.conv.weight.grad = None  # e.g. a frozen or unused layer on this step
    recorder.accumulate()
    model.fc.weight.grad.fill_(float("inf"))  # an overflowed AMP step: not counted
    recorder.accumulate()
    result = recorder.result()
    assert result["conv"] == pytest.approx(first[0], rel=1e-6)
    assert result["fc"] == pytest.approx((first[1] + second[1]) / 2, rel=1e-6)


def test_recorder_reports_nan_for_layers_that_never_had_a_gradient():
    model = TinyConvNet()
    model.conv.weight.requires_grad_(False)
    recorder = GradientFlowRecorder(model)
    F.cross_entropy(model(random_batch(2, num_classes=5, size=8)[0]), torch.tensor([0, 1])).backward()
    recorder.accumulate()
    result = recorder.result()
    assert math.isnan(result["conv"]) and result["fc"] > 0


def test_recorder_keeps_float64_precision_for_tiny_gradients():
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False))
    recorder = GradientFlowRecorder(model)
    for _ in range(1000):
        model[0].weight.grad = torch.full_like(model[0].weight, 1e-30)
        recorder.accumulate()
    assert recorder.result()["0"] == pytest.approx(1e-30, rel=1e-9)


@pytest.mark.parametrize("block_rows", [1, 3, 256])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recorder_blocks_give_the_bits_of_adding_every_step_in_order(monkeypatch, block_rows, dtype):
    """Rows folded block by block (and by a `result` in the middle) equal ``sums += value`` per step,
    for float32 gradients (rows kept in float32) and float64 ones."""
    from cifarnets.analysis import _gradient_flow

    monkeypatch.setattr(_gradient_flow, "_BLOCK_ROWS", block_rows)
    model = TinyConvNet().to(dtype)
    recorder = GradientFlowRecorder(model)
    sums = torch.zeros(2, dtype=torch.float64)
    counts = torch.zeros(2, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    for step in range(10):
        grads = [p.new_empty(p.shape).normal_(generator=generator) * 10.0 ** -(step % 7)
                 for _, p in weight_layers(model)]
        if step == 4:
            grads[1].fill_(float("inf"))
        for (_, p), g in zip(weight_layers(model), grads):
            p.grad = g
        if step == 6:
            model.conv.weight.grad = None
        recorder.accumulate()
        values = torch.tensor([math.nan if p.grad is None else torch._foreach_norm([p.grad], 1)[0].item()
                               for _, p in weight_layers(model)], dtype=torch.float64)
        finite = torch.isfinite(values)
        sums += torch.where(finite, values, torch.zeros_like(values))
        counts += finite
        if step == 5:
            recorder.result()  # reading mid-epoch folds early and keeps counting
    numel = torch.tensor([p.numel() for _, p in weight_layers(model)], dtype=torch.float64)
    assert list(recorder.result().values()) == (sums / (counts * numel)).tolist()
    assert recorder.steps == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_recorder_accumulate_never_waits_for_the_device():
    model = TinyConvNet().cuda()
    recorder = GradientFlowRecorder(model)
    images, labels = random_batch(4, num_classes=5, size=8)
    F.cross_entropy(model(images.cuda()), labels.cuda()).backward()
    recorder.accumulate()
    saved = model.conv.weight.grad
    model.conv.weight.grad = None
    recorder.accumulate()  # builds (once) the index of this missing-gradient pattern
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        recorder.accumulate()
        model.conv.weight.grad = saved
        recorder.accumulate()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert recorder.steps == 4 and recorder.result()["fc"] > 0


def test_recorder_needs_weight_layers():
    with pytest.raises(ValueError, match="no convolution or linear weights"):
        GradientFlowRecorder(nn.Sequential(nn.ReLU()))


# ---------------------------------------------------------------- wrappers

def test_ddp_wrapped_model_records_the_unprefixed_names(tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        model = TinyConvNet()
        ddp = nn.parallel.DistributedDataParallel(model)
        assert [n for n, _ in ddp.named_parameters()][0].startswith("module.")
        recorder = GradientFlowRecorder(ddp)
        assert recorder.layers == ["conv", "fc"]
        images, labels = random_batch(4, num_classes=5, size=8)
        F.cross_entropy(ddp(images), labels).backward()
        recorder.accumulate()
        assert recorder.result()["conv"] == pytest.approx(model.conv.weight.grad.abs().mean().item(), rel=1e-6)
        assert gradient_flow(ddp, images, labels).layers == ["conv", "fc"]
    finally:
        dist.destroy_process_group()


def test_compiled_models_and_submodules_record_the_unprefixed_names():
    model = TinyConvNet()
    compiled = torch.compile(model, backend="eager")  # wraps lazily; nothing compiles here
    assert unwrap_model(compiled) is model
    assert [n for n, _ in weight_layers(compiled)] == ["conv", "fc"]
    model.conv = torch.compile(model.conv, backend="eager")  # ``conv._orig_mod.weight``
    assert [n for n, _ in weight_layers(model)] == ["conv", "fc"]


def test_dataparallel_is_unwrapped():
    model = TinyConvNet()
    assert unwrap_model(nn.DataParallel(model)) is model


# ---------------------------------------------------------------- the reports' comparison

@pytest.fixture(scope="module")
def vanishing_flows() -> dict[str, GradientFlow]:
    # 8 CIFAR-shaped images: the first-layer numbers are those of the reports' setting
    # (vgg08 ~5e-6, vgg38 ~3e-18, bn ~3, rc ~4e-6, bn+rc ~0.2), at a fraction of a second each.
    images, labels = random_batch(8, num_classes=100)
    return compare_gradient_flow(VANISHING_GRADIENT_SPECS, images, labels, seed=0)


def test_comparison_labels_and_metadata(vanishing_flows):
    assert list(vanishing_flows) == ["vgg08", "vgg38", "vgg38 bn", "vgg38 rc", "vgg38 bn+rc"]
    assert [len(f) for f in vanishing_flows.values()] == [8, 38, 38, 38, 38]
    flow = vanishing_flows["vgg38 bn+rc"]
    assert flow.meta["seed"] == 0 and flow.meta["init"] == "default" and flow.meta["kwargs"] == {"bn": True, "rc": True}


def test_plain_vgg38_gradient_vanishes_at_the_input_and_bn_rc_restore_it(vanishing_flows):
    """The VGG38 reports: VGG38's first layers get ~nothing (1e-18 vs 1e-6); BN, RC and BN+RC fix it."""
    first = {label: flow.values[0] for label, flow in vanishing_flows.items()}
    assert first["vgg38"] < 1e-9 * first["vgg08"]
    for fixed in ("vgg38 bn", "vgg38 rc", "vgg38 bn+rc"):
        assert first[fixed] > 0.1 * first["vgg08"], fixed
    # The classifier itself still learns in all of them: the problem is the path to the input.
    last = [flow.values[-1] for flow in vanishing_flows.values()]
    assert min(last) > 1e-5


def test_comparison_is_reproducible_and_leaves_the_global_rng_alone():
    images, labels = random_batch(2, num_classes=100)
    before = torch.random.get_rng_state()
    a = compare_gradient_flow(["vgg08"], images, labels, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = compare_gradient_flow([("vgg08", {})], images, labels, seed=3)
    assert a["vgg08"].values == b["vgg08"].values


def test_comparison_rejects_bad_specs():
    with pytest.raises(TypeError, match="registry name or"):
        compare_gradient_flow([42], *random_batch(2))
    with pytest.raises(ValueError, match="twice"):
        compare_gradient_flow(["vgg08", ("vgg08", {})], *random_batch(2))


def test_spec_label():
    assert spec_label("vgg38", {"bn": True, "rc": True}) == "vgg38 bn+rc"
    assert spec_label("vgg38", {"bn": False, "rc": True, "act": "sigmoid"}) == "vgg38 rc act=sigmoid"
    assert spec_label("vgg08", {}) == "vgg08"


def test_random_batch_is_seeded_and_in_range():
    a, la = random_batch(4, num_classes=10, seed=1)
    b, lb = random_batch(4, num_classes=10, seed=1)
    assert torch.equal(a, b) and torch.equal(la, lb) and a.shape == (4, 3, 32, 32) and int(la.max()) < 10
