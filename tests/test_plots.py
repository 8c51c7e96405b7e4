"""Every picture of `cifarnets.plots` is a valid file, written atomically, with no pyplot state."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import torch
import torch.nn as nn

import cifarnets
from cifarnets import analysis, plots
from cifarnets.analysis import GradientFlow, weight_layers
from cifarnets.train.history import EpochRecord, History

matplotlib.use("Agg")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

with torch.device("meta"):
    VGG38_LAYERS = [name for name, _ in weight_layers(cifarnets.create("vgg38"))]


def assert_png(path, min_bytes: int = 5_000) -> np.ndarray:
    """A real PNG that matplotlib reads back, of a plausible size; returns the pixels."""
    assert path.exists(), path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert float(pixels[..., :3].std()) > 0.01, "the picture is blank"
    return pixels


def assert_no_leftovers(folder) -> None:
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")], "temporary files left behind"


def make_history(name: str = "vgg38", epochs: int = 5, layers=None, *, vanishing: bool = True, val: bool = True,
                 test: bool = True, kwargs=None) -> History:
    layers = layers or VGG38_LAYERS
    records = []
    for e in range(1, epochs + 1):
        depth = np.linspace(0, 1, len(layers))
        flow = 10.0 ** (-18 + 14 * depth ** 4) if vanishing else 1e-3 * (1 + depth) / e
        records.append(EpochRecord(
            epoch=e, train_loss=4.6 - 0.3 * e, train_acc=2.0 + 8 * e, val_loss=(4.6 - 0.25 * e) if val else None,
            val_acc=(2.0 + 7 * e) if val else None, lr=1e-3, epoch_seconds=30.0 + e, images_per_second=1500.0,
            grad_flow=dict(zip(layers, (flow * (1 + 0.1 * e)).tolist())),
        ))
    return History(model=name, model_kwargs=kwargs or {}, params=336_196, epochs=records,
                   best_epoch=epochs - 1 if val else None, test={"loss": 2.0, "acc": 45.0} if test else None,
                   config={"lr": 1e-3})


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """No plot function may register a figure with pyplot (that state would leak between calls)."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        from matplotlib import _pylab_helpers

        assert _pylab_helpers.Gcf.get_num_fig_managers() == 0


# ---------------------------------------------------------------- gradient flow

def test_gradient_flow_of_a_history_one_line_per_epoch(tmp_path):
    path = plots.gradient_flow(make_history(epochs=8), tmp_path / "flow.png")
    assert path == tmp_path / "flow.png"
    assert_png(path)
    assert_no_leftovers(tmp_path)


def test_gradient_flow_of_a_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(make_history().to_json())
    assert_png(plots.gradient_flow(run, tmp_path / "out" / "flow.png"))  # parent folders are created


def test_gradient_flow_of_one_batch_and_of_a_plain_dict(tmp_path):
    flow = GradientFlow(VGG38_LAYERS, list(10.0 ** -np.linspace(4, 18, 38)[::-1]), label="vgg38", loss=4.6,
                        batch_size=8, meta={"init": "default", "seed": 0, "train_mode": True})
    assert_png(plots.gradient_flow(flow, tmp_path / "one.png"))
    assert_png(plots.gradient_flow({"conv": 1e-6, "fc": 1e-4}, tmp_path / "dict.png"))


def test_gradient_flow_shows_gaps_for_missing_values(tmp_path):
    history = make_history(epochs=3)
    history.epochs[1].grad_flow[VGG38_LAYERS[0]] = math.nan
    history.epochs[2].grad_flow[VGG38_LAYERS[1]] = 0.0
    history.epochs.append(EpochRecord(epoch=4, train_loss=1.0, train_acc=50.0))  # no gradient flow this epoch
    assert_png(plots.gradient_flow(history, tmp_path / "gaps.png"))
    assert_png(plots.gradient_flow_heatmap(history, tmp_path / "gaps_heatmap.png"))


def test_gradient_flow_of_a_run_without_it_says_how_to_record_it(tmp_path):
    history = make_history()
    for e in history.epochs:
        e.grad_flow = {}
    with pytest.raises(ValueError, match="grad_flow=True"):
        plots.gradient_flow(history, tmp_path / "x.png")
    with pytest.raises(ValueError, match="grad_flow=True"):
        plots.gradient_flow_heatmap(history, tmp_path / "x.png")


def test_gradient_flow_heatmap(tmp_path):
    assert_png(plots.gradient_flow_heatmap(make_history(epochs=12), tmp_path / "heatmap.png"))


def test_many_layers_are_thinned(tmp_path):
    layers = [f"stages.{i // 26}.block{i % 26}.conv1" for i in range(132)]  # vgg106 has 132 weight layers
    history = make_history(epochs=3, layers=layers)
    assert_png(plots.gradient_flow(history, tmp_path / "deep.png"))
    assert_png(plots.gradient_flow_heatmap(history, tmp_path / "deep_heatmap.png"))


def test_gradient_flow_comparison(tmp_path):
    flows = {}
    for label, layers, first in [("vgg08", VGG38_LAYERS[:8], 1.5e-6), ("vgg38", VGG38_LAYERS, 1e-18),
                                 ("vgg38 bn+rc", VGG38_LAYERS, 7e-2)]:
        values = list(np.geomspace(first, 2e-4, len(layers)))
        flows[label] = GradientFlow(layers, values, label=label, batch_size=64,
                                    meta={"init": "default", "seed": 0, "train_mode": True})
    assert_png(plots.gradient_flow_comparison(flows, tmp_path / "depth.png"))
    assert_png(plots.gradient_flow_comparison(flows, tmp_path / "index.png", align="index"))
    with pytest.raises(ValueError, match="align"):
        plots.gradient_flow_comparison(flows, tmp_path / "bad.png", align="layer")
    with pytest.raises(ValueError, match="at least one"):
        plots.gradient_flow_comparison({}, tmp_path / "empty.png")


# ---------------------------------------------------------------- curves

def test_curves_of_several_runs(tmp_path):
    runs = [make_history("vgg08", epochs=10, kwargs={"num_classes": 100}),
            make_history("vgg38", epochs=10, kwargs={"bn": True, "rc": True})]
    assert_png(plots.curves(runs, tmp_path / "curves.png"))
    assert_no_leftovers(tmp_path)


def test_curves_of_one_run_without_validation_or_test(tmp_path):
    assert_png(plots.curves(make_history(val=False, test=False), tmp_path / "train_only.png"))


def test_curves_of_a_user_model_without_known_classes(tmp_path):
    assert_png(plots.curves([make_history("my_unregistered_net")], tmp_path / "unknown.png"))


def test_curves_need_epochs(tmp_path):
    with pytest.raises(ValueError, match="no finished epoch"):
        plots.curves([History(model="vgg08")], tmp_path / "x.png")


# ---------------------------------------------------------------- filters and feature maps

def test_filters_rgb_and_grey(tmp_path):
    torch.manual_seed(0)
    assert_png(plots.filters(cifarnets.create("vgg08"), tmp_path / "rgb.png"))
    assert_png(plots.filters(cifarnets.create("vgg08", in_chans=1), tmp_path / "grey.png"))
    assert_png(plots.filters(cifarnets.create("vgg08"), tmp_path / "named.png", layer="stages.0.reduction.conv1"))
    with pytest.raises(ValueError, match="no 4-D convolution weight"):
        plots.filters(cifarnets.create("vgg08"), tmp_path / "x.png", layer="head.fc")


def test_feature_maps_default_to_the_first_conv_block_and_restore_the_model(tmp_path):
    torch.manual_seed(0)
    model = cifarnets.create("vgg08").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = plots.feature_maps(model, torch.randn(3, 32, 32), tmp_path / "maps.png", max_maps=8)
    assert_png(path)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not model.stem.act._forward_hooks and not model.stem.conv._forward_hooks


def test_feature_maps_default_layer_is_the_first_activation_after_the_first_conv():
    model = cifarnets.create("vgg08")
    assert plots._default_feature_layer(model, torch.randn(1, 3, 32, 32)) == "stem.act"
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))  # no activation: the first conv itself
    assert plots._default_feature_layer(plain, torch.randn(1, 3, 8, 8)) == "0"


def test_feature_maps_at_a_chosen_layer_and_errors(tmp_path):
    model = cifarnets.create("vgg08")
    image = torch.randn(1, 3, 32, 32)
    assert_png(plots.feature_maps(model, image, tmp_path / "deep.png", layer="stages.1.reduction"))
    with pytest.raises(ValueError, match="not feature maps"):
        plots.feature_maps(model, image, tmp_path / "x.png", layer="head.fc")
    with pytest.raises(ValueError, match="did you mean 'stem.conv'"):
        plots.feature_maps(model, image, tmp_path / "x.png", layer="stem.cnv")
    with pytest.raises(ValueError, match="one image"):
        plots.feature_maps(model, torch.randn(2, 3, 32, 32), tmp_path / "x.png")


# ---------------------------------------------------------------- effective receptive field

def test_erf_of_an_array_with_a_theoretical_box(tmp_path):
    yy, xx = np.mgrid[:32, :32]
    grid = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 20)
    assert_png(plots.erf(grid, tmp_path / "erf.png", rf=11))
    assert_png(plots.erf(torch.tensor(grid), tmp_path / "erf_log.png", rf=(11, 9), log=True))
    with pytest.raises(ValueError, match="2-D"):
        plots.erf(np.zeros(5), tmp_path / "x.png")
    with pytest.raises(TypeError, match="ErfResult"):
        plots.erf(object(), tmp_path / "x.png")


def test_erf_of_an_effective_receptive_field_result(tmp_path):
    torch.manual_seed(0)
    model = cifarnets.create("vgg08")
    result = analysis.effective_receptive_field(model, torch.randn(2, 3, 32, 32), layer="stages.0.reduction")
    assert_png(plots.erf(result, tmp_path / "erf.png"))
    deep = analysis.effective_receptive_field(model, torch.randn(2, 3, 32, 32))  # field larger than the input
    assert_png(plots.erf(deep, tmp_path / "erf_deep.png", log=True))


# ---------------------------------------------------------------- files

def test_other_formats_and_bad_suffixes(tmp_path):
    flow = {"conv": 1e-6, "fc": 1e-4}
    assert plots.gradient_flow(flow, tmp_path / "flow.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert plots.gradient_flow(flow, tmp_path / "flow.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match=r"ending in \.png"):
        plots.gradient_flow(flow, tmp_path / "flow.jpeg")
    assert_no_leftovers(tmp_path)


def test_pictures_get_the_permissions_of_an_ordinary_file(tmp_path):
    import stat

    ordinary = tmp_path / "ordinary"
    ordinary.write_bytes(b"")
    path = plots.gradient_flow({"conv": 1e-6, "fc": 1e-4}, tmp_path / "flow.png")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(ordinary.stat().st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = plots.gradient_flow({"conv": 1e-6, "fc": 1e-4}, tmp_path / "flow.png")
    old = path.read_bytes()

    def broken_savefig(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.gradient_flow({"conv": 1e-3, "fc": 1e-2}, path)
    assert path.read_bytes() == old
    assert_no_leftovers(tmp_path)


def test_feature_maps_mark_constant_maps(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    nn.init.zeros_(model[0].weight)
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([-1.0, 1.0, 0.5, -0.2]))  # every map constant; two dead ReLUs
    assert_png(plots.feature_maps(model, torch.randn(3, 16, 16), tmp_path / "dead.png"), min_bytes=2_000)
