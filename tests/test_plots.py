"""`cifarnets.plots`: what each function draws (lines, labels, legends, colour bars, titles), read
back from the returned Figure; and `plots.save`, which writes valid files atomically."""

from __future__ import annotations

import math
import re

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

import cifarnets
from cifarnets import analysis, plots
from cifarnets.analysis import GradientFlow, weight_layers
from cifarnets.errors import ConfigError, ConfigTypeError
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


def texts(items) -> list[str]:
    return [t.get_text() for t in items]


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, "the axes has no legend"
    return texts(legend.get_texts())


def colorbar_of(fig: Figure, image_ax):
    """The axes of the colour bar matplotlib attached to `image_ax`'s mappable."""
    bars = [ax for ax in fig.axes if ax is not image_ax]
    assert len(bars) == 1, f"expected one colour bar, found {len(bars)} other axes"
    return bars[0]


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

def test_gradient_flow_of_a_history_one_line_per_epoch():
    history = make_history(epochs=8)
    fig = plots.gradient_flow(history)
    assert isinstance(fig, Figure)
    ax, bar = fig.axes[0], colorbar_of(fig, fig.axes[0])
    assert len(ax.lines) == 8
    assert [len(line.get_xdata()) for line in ax.lines] == [38] * 8
    # The last epoch's line holds that epoch's numbers, in layer order.
    assert np.allclose(ax.lines[-1].get_ydata(), [history.epochs[-1].grad_flow[k] for k in VGG38_LAYERS])
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "mean |∂L/∂W| of the layer (log scale)"
    assert ax.get_xlabel() == "layer (input → classifier)"
    assert texts(ax.get_xticklabels())[0] == VGG38_LAYERS[0] and texts(ax.get_xticklabels())[-1] == VGG38_LAYERS[-1]
    assert bar.get_ylabel() == "epoch"
    assert texts(bar.get_yticklabels()) == ["1", "2", "3", "4", "5", "6", "7", "8"]  # whole epochs only
    assert ax.get_title().startswith("Gradient flow of vgg38") and "(8 epochs)" in ax.get_title()
    # Colours run from the first epoch to the last.
    assert ax.lines[0].get_color() != ax.lines[-1].get_color()


def test_gradient_flow_of_a_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(make_history(epochs=3).to_json())
    fig = plots.gradient_flow(run)
    assert len(fig.axes[0].lines) == 3
    path = plots.save(fig, tmp_path / "out" / "flow.png")  # parent folders are created
    assert path == tmp_path / "out" / "flow.png"
    assert_png(path)
    assert_no_leftovers(tmp_path / "out")


def test_gradient_flow_of_one_batch_and_of_a_plain_dict():
    values = list(10.0 ** -np.linspace(4, 18, 38)[::-1])
    flow = GradientFlow(VGG38_LAYERS, values, label="vgg38", loss=4.6, batch_size=8,
                        meta={"init": "default", "seed": 0, "train_mode": True})
    ax = plots.gradient_flow(flow).axes[0]
    assert len(ax.lines) == 1 and np.allclose(ax.lines[0].get_ydata(), values)
    title = ax.get_title()
    assert title.startswith("Gradient flow of vgg38") and "one batch of 8" in title and "loss 4.600" in title
    assert "seed 0" in title and "train mode" in title
    ax = plots.gradient_flow({"conv": 1e-6, "fc": 1e-4}).axes[0]
    assert texts(ax.get_xticklabels()) == ["conv", "fc"] and list(ax.lines[0].get_ydata()) == [1e-6, 1e-4]
    assert ax.get_ylim() == pytest.approx((1e-6, 1e-3))  # whole decades around the data, one above


def test_gradient_flow_draws_into_a_given_axes():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plots.gradient_flow({"conv": 1e-6, "fc": 1e-4}, ax=right, title="mine") is fig
    assert len(right.lines) == 1 and right.get_title() == "mine" and not left.lines
    assert plots.gradient_flow(make_history(epochs=2), ax=left) is fig
    assert len(left.lines) == 2 and len(fig.axes) == 3  # the colour bar is the third
    with pytest.raises(TypeError, match="Axes"):
        plots.gradient_flow({"conv": 1e-6}, ax=fig)


def test_gradient_flow_shows_gaps_for_missing_values():
    history = make_history(epochs=3)
    history.epochs[1].grad_flow[VGG38_LAYERS[0]] = math.nan
    history.epochs[2].grad_flow[VGG38_LAYERS[1]] = 0.0
    history.epochs.append(EpochRecord(epoch=4, train_loss=1.0, train_acc=50.0))  # no gradient flow this epoch
    ax = plots.gradient_flow(history).axes[0]
    assert len(ax.lines) == 3  # the epoch without a record draws nothing
    assert np.isnan(ax.lines[1].get_ydata()[0]) and np.isnan(ax.lines[2].get_ydata()[1])
    image = plots.gradient_flow_heatmap(history).axes[0].images[0]
    cells = image.get_array()
    assert cells.shape == (38, 3) and cells.mask[0, 1] and cells.mask[1, 2] and not cells.mask[2, 0]


def test_gradient_flow_of_a_run_without_it_says_how_to_record_it():
    history = make_history()
    for e in history.epochs:
        e.grad_flow = {}
    with pytest.raises(ValueError, match="grad_flow=True"):
        plots.gradient_flow(history)
    with pytest.raises(ValueError, match="grad_flow=True"):
        plots.gradient_flow_heatmap(history)


def test_gradient_flow_heatmap():
    history = make_history(epochs=12)
    fig = plots.gradient_flow_heatmap(history)
    ax = fig.axes[0]
    bar = colorbar_of(fig, ax)
    image = ax.images[0]
    assert image.get_array().shape == (38, 12)  # layers down, epochs across
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "layer (input at the top)"
    assert texts(ax.get_yticklabels())[0] == VGG38_LAYERS[0]
    assert bar.get_ylabel() == "mean |∂L/∂W| (log scale)" and bar.get_yscale() == "log"
    decades = [re.search(r"10\^\{(-?\d+)\}", t).group(1) for t in texts(bar.get_yticklabels())]
    assert decades == [str(d) for d in range(-18, -1, 2)]  # every other decade from 1e-18 to 1e-2
    values = [v for e in history.epochs for v in e.grad_flow.values()]
    assert image.norm.vmin == pytest.approx(min(values)) and image.norm.vmax == pytest.approx(max(values))
    assert ax.get_title() == "Gradient flow of vgg38 per layer and epoch"


def test_many_layers_are_thinned():
    layers = [f"stages.{i // 26}.block{i % 26}.conv1" for i in range(132)]  # vgg106 has 132 weight layers
    history = make_history(epochs=3, layers=layers)
    ax = plots.gradient_flow(history).axes[0]
    labels = texts(ax.get_xticklabels())
    assert len(labels) <= 48 and labels[0] == layers[0] and labels[-1] == layers[-1]
    assert ax.get_xlabel().endswith("(one in 3 labelled)")
    labels = texts(plots.gradient_flow_heatmap(history).axes[0].get_yticklabels())
    assert len(labels) <= 48 and labels[-1] == layers[-1]


def comparison_flows():
    flows = {}
    for label, layers, first in [("vgg08", VGG38_LAYERS[:8], 1.5e-6), ("vgg38", VGG38_LAYERS, 1e-18),
                                 ("vgg38 bn+rc", VGG38_LAYERS, 7e-2)]:
        values = list(np.geomspace(first, 2e-4, len(layers)))
        flows[label] = GradientFlow(layers, values, label=label, batch_size=64,
                                    meta={"init": "default", "seed": 0, "train_mode": True})
    return flows


def test_gradient_flow_comparison():
    flows = comparison_flows()
    ax = plots.gradient_flow_comparison(flows).axes[0]
    assert [len(line.get_xdata()) for line in ax.lines] == [8, 38, 38]
    assert all(line.get_xdata()[0] == 0 and line.get_xdata()[-1] == 1 for line in ax.lines)  # relative depth
    assert legend_texts(ax) == ["vgg08  (8 layers, first layer 1.5e-06)", "vgg38  (38 layers, first layer 1.0e-18)",
                                "vgg38 bn+rc  (38 layers, first layer 7.0e-02)"]
    assert ax.get_legend().get_title().get_text() == "network"
    assert ax.get_ylim() == pytest.approx((1e-18, 0.1))
    assert ax.get_title().splitlines()[1] == ("PyTorch's default initialisation, one batch of 64, seed 0, "
                                              "train mode")
    index = plots.gradient_flow_comparison(flows, align="index").axes[0]
    assert [line.get_xdata()[-1] for line in index.lines] == [7, 37, 37]
    assert index.get_xlabel() == "layer index (0 = first convolution)"
    with pytest.raises(ValueError, match="align"):
        plots.gradient_flow_comparison(flows, align="layer")
    with pytest.raises(ValueError, match="at least one"):
        plots.gradient_flow_comparison({})


# ---------------------------------------------------------------- curves

def test_curves_of_several_runs():
    runs = [make_history("vgg08", epochs=10, kwargs={"num_classes": 100}),
            make_history("vgg38", epochs=10, kwargs={"bn": True, "rc": True})]
    fig = plots.curves(runs)
    loss_ax, acc_ax = fig.axes
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("(a) loss", "(b) accuracy")
    assert (loss_ax.get_ylabel(), acc_ax.get_ylabel()) == ("cross-entropy loss", "accuracy (%)")
    # Per run: train (dotted), validation (solid), the best epoch's star; then the chance line.
    for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
        assert len(ax.lines) == 2 * 3 + 1
        train, val, star = ax.lines[0:3]
        assert train.get_linestyle() == ":" and val.get_linestyle() == "-" and star.get_marker() == "*"
        assert list(val.get_ydata()) == runs[0].series(f"val_{key}")
        assert list(star.get_xdata()) == [9]
    assert loss_ax.lines[-1].get_ydata()[0] == pytest.approx(math.log(100))  # chance for 100 classes
    assert acc_ax.lines[-1].get_ydata()[0] == pytest.approx(1.0)
    names = [h.name for h in runs]
    assert texts(fig.legends[0].get_texts()) == [f"{names[0]} (test 45.00%)", f"{names[1]} (test 45.00%)", "train",
                                                 "validation", "best validation epoch"]
    assert fig.get_suptitle() == f"Training curves: {names[0]}, {names[1]}"


def test_curves_of_one_run_without_validation_or_test():
    fig = plots.curves(make_history(val=False, test=False), title="mine")
    assert len(fig.axes[0].lines) == 1 + 1  # train and chance: no validation, no star
    assert texts(fig.legends[0].get_texts())[0] == "vgg38 (train only)"
    assert fig.get_suptitle() == "mine"


def test_curves_of_a_user_model_without_known_classes():
    fig = plots.curves([make_history("my_unregistered_net")])
    assert len(fig.axes[0].lines) == 3  # no chance line: the number of classes is unknown


def test_curves_need_epochs():
    with pytest.raises(ValueError, match="no finished epoch"):
        plots.curves([History(model="vgg08")])


def visible_ticks(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_curves_of_a_one_epoch_run_mark_the_point_on_a_whole_epoch_axis():
    fig = plots.curves(make_history(epochs=1))
    for ax in fig.axes:
        train, val = ax.lines[0:2]
        assert train.get_marker() == "o" and val.get_marker() == "o"  # a line through one point draws nothing
        assert ax.get_xlim() == (0.5, 1.5) and visible_ticks(ax) == [1.0]
    few = plots.curves(make_history(epochs=3)).axes[0]
    assert visible_ticks(few) == [1.0, 2.0, 3.0]
    many = plots.curves(make_history(epochs=plots.FEW_EPOCHS + 1)).axes[0]
    assert many.lines[0].get_marker() == "None" and many.lines[1].get_marker() == "None"
    assert all(float(t).is_integer() for t in visible_ticks(many))


def seeds(count: int, epochs: int = 4, name: str = "vgg38") -> list[History]:
    """`count` runs of one setting whose validation accuracy differs by seed (1, 2, 4, ... points)."""
    runs = []
    for seed in range(count):
        history = make_history(name, epochs=epochs)
        for record in history.epochs:
            record.val_acc += 2.0 ** seed
            record.val_loss -= 0.1 * seed
        runs.append(history)
    return runs


def bands(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def band_edges(band, x: float) -> tuple[float, float]:
    """The low and high edge of a fill_between band at epoch `x`."""
    vertices = band.get_paths()[0].vertices
    at = vertices[np.isclose(vertices[:, 0], x), 1]
    return float(at.min()), float(at.max())


def test_curves_band_draws_the_mean_and_one_standard_deviation():
    groups = {"vgg38 bn+rc": seeds(3), "vgg08": seeds(1, name="vgg08")}
    fig = plots.curves_band(groups)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 + 1  # one mean line per group, the chance line (100 classes)
    assert ax.lines[-1].get_ydata()[0] == pytest.approx(1.0)
    assert len(bands(ax)) == 1  # the group of one run is a plain line
    values = np.array([h.series("val_acc") for h in groups["vgg38 bn+rc"]])
    mean, std = values.mean(axis=0), values.std(axis=0, ddof=1)
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3, 4]
    assert np.allclose(ax.lines[0].get_ydata(), mean)
    assert np.allclose(ax.lines[1].get_ydata(), groups["vgg08"][0].series("val_acc"))
    for j, epoch in enumerate([1, 2, 3, 4]):
        assert band_edges(bands(ax)[0], epoch) == pytest.approx((mean[j] - std[j], mean[j] + std[j]))
    assert legend_texts(ax) == ["vgg38 bn+rc (3 runs)", "vgg08 (1 run)"]
    assert ax.get_legend().get_title().get_text() == "mean of the runs, band ± 1 standard deviation"
    assert ax.get_ylabel() == "validation accuracy (%)" and ax.get_xlabel() == "epoch"
    assert visible_ticks(ax) == [1.0, 2.0, 3.0, 4.0]
    assert ax.get_title() == "Validation accuracy per epoch: the mean of each setting's runs"


def test_curves_band_min_to_max_of_another_metric():
    runs = seeds(3)
    ax = plots.curves_band({"vgg38": runs}, metric="val_loss", band="minmax", chance=False).axes[0]
    assert len(ax.lines) == 1 and len(bands(ax)) == 1
    values = np.array([h.series("val_loss") for h in runs])
    assert band_edges(bands(ax)[0], 2) == pytest.approx((values[:, 1].min(), values[:, 1].max()))
    assert ax.get_legend().get_title().get_text() == "mean of the runs, band min to max"
    assert ax.get_ylabel() == "validation loss (cross-entropy)"


def test_curves_band_of_runs_that_stopped_at_different_epochs():
    short, long = seeds(2, epochs=5)
    del short.epochs[3:]  # stopped after epoch 3
    ax = plots.curves_band({"vgg38": [short, long]}).axes[0]
    mean = ax.lines[0].get_ydata()
    assert np.allclose(mean[3:], long.series("val_acc")[3:])  # the later epochs: the run that reached them
    xs = bands(ax)[0].get_paths()[0].vertices[:, 0]
    assert xs.min() == 1 and xs.max() == 3  # a band needs two runs
    assert legend_texts(ax) == ["vgg38 (1 to 2 runs)"]


def test_curves_band_of_one_epoch_is_visible():
    ax = plots.curves_band({"vgg38": seeds(2, epochs=1)}).axes[0]
    xs = bands(ax)[0].get_paths()[0].vertices[:, 0]
    assert xs.max() - xs.min() == pytest.approx(0.5)
    assert ax.lines[0].get_marker() == "o" and visible_ticks(ax) == [1.0]


def test_curves_band_errors_say_what_to_give():
    with pytest.raises(ConfigError, match="metric='val_ac'"):
        plots.curves_band({"a": seeds(2)}, metric="val_ac")
    with pytest.raises(ConfigError, match="band must be"):
        plots.curves_band({"a": seeds(2)}, band="iqr")
    with pytest.raises(ConfigError, match="at least one group"):
        plots.curves_band({})
    with pytest.raises(ConfigTypeError, match="list of runs"):
        plots.curves_band({"a": seeds(1)[0]})
    with pytest.raises(ConfigError, match="at least one run"):
        plots.curves_band({"a": []})
    with pytest.raises(ConfigError, match="choose a train_ metric"):
        plots.curves_band({"a": [make_history(val=False)]})


def test_seed_curves_draws_loss_and_accuracy_bands_with_one_legend_below():
    groups = {"vgg38 bn+rc": seeds(3), "vgg08": seeds(2, name="vgg08")}
    fig = plots.seed_curves(groups, title="t")
    loss_ax, acc_ax = fig.axes
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("(a) validation loss", "(b) validation accuracy")
    for ax, metric in ((loss_ax, "val_loss"), (acc_ax, "val_acc")):
        values = np.array([h.series(metric) for h in groups["vgg38 bn+rc"]])
        assert np.allclose(ax.lines[0].get_ydata(), values.mean(axis=0))
        assert len(bands(ax)) == 2 and ax.get_legend() is None  # the legend is the figure's
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["vgg38 bn+rc (3 runs)", "vgg08 (2 runs)"]
    assert fig.get_suptitle() == "t"


def test_seed_curves_of_runs_without_validation_draw_the_training_metrics():
    fig = plots.seed_curves({"a": [make_history(val=False), make_history(val=False)]})
    assert [ax.get_title() for ax in fig.axes] == ["(a) training loss", "(b) training accuracy"]
    with pytest.raises(ConfigError, match="band must be"):
        plots.seed_curves({"a": seeds(2)}, band="iqr")


# ---------------------------------------------------------------- filters and feature maps

def test_filters_rgb_and_grey():
    torch.manual_seed(0)
    ax = plots.filters(cifarnets.create("vgg08")).axes[0]
    assert ax.images[0].get_array().shape == (23, 23, 3)  # 32 filters: 6 x 6 tiles of 3 px, 1 px gaps
    assert ax.get_title() == "vgg08: 32 filters of stem.conv\n3x3, RGB, each min-max normalised"
    grey = plots.filters(cifarnets.create("vgg08", in_chans=1)).axes[0]
    tiles = grey.images[0].get_array()
    assert "grey" in grey.get_title() and np.allclose(tiles[..., 0], tiles[..., 2])
    named = plots.filters(cifarnets.create("vgg08"), layer="stages.0.reduction.conv1", max_filters=8).axes[0]
    assert named.get_title().startswith("vgg08: 8 of 32 filters of stages.0.reduction.conv1")
    assert "mean of 32 channels" in named.get_title()
    with pytest.raises(ValueError, match="no 4-D convolution weight"):
        plots.filters(cifarnets.create("vgg08"), layer="head.fc")


def test_feature_maps_default_to_the_first_conv_block_and_restore_the_model():
    torch.manual_seed(0)
    model = cifarnets.create("vgg08").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fig = plots.feature_maps(model, torch.randn(3, 32, 32), max_maps=8)
    input_ax, maps_ax = fig.axes
    assert input_ax.get_title() == "input"
    assert fig.get_suptitle().startswith("vgg08: 8 of 32 feature maps at stem.act (32x32)")
    assert texts(maps_ax.texts)[:8] == [str(i) for i in range(8)]  # the maps are numbered
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not model.stem.act._forward_hooks and not model.stem.conv._forward_hooks


def test_feature_maps_default_layer_is_the_first_activation_after_the_first_conv():
    model = cifarnets.create("vgg08")
    assert plots._default_feature_layer(model, torch.randn(1, 3, 32, 32)) == "stem.act"
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))  # no activation: the first conv itself
    assert plots._default_feature_layer(plain, torch.randn(1, 3, 8, 8)) == "0"


def test_feature_maps_at_a_chosen_layer_and_errors():
    model = cifarnets.create("vgg08")
    image = torch.randn(1, 3, 32, 32)
    fig = plots.feature_maps(model, image, layer="stages.1.reduction", input_title="input: noise")
    assert "feature maps at stages.1.reduction (8x8)" in fig.get_suptitle()
    assert fig.axes[0].get_title() == "input: noise"
    with pytest.raises(ValueError, match="not feature maps"):
        plots.feature_maps(model, image, layer="head.fc")
    with pytest.raises(ValueError, match="did you mean 'stem.conv'"):
        plots.feature_maps(model, image, layer="stem.cnv")
    with pytest.raises(ValueError, match="one image"):
        plots.feature_maps(model, torch.randn(2, 3, 32, 32))


def test_feature_maps_mark_constant_maps():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    nn.init.zeros_(model[0].weight)
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([-1.0, 1.0, 0.5, -0.2]))  # every map constant; two dead ReLUs
    fig = plots.feature_maps(model, torch.randn(3, 16, 16))
    marks = [t for t in texts(fig.axes[1].texts) if t.startswith("constant")]
    assert marks == ["constant\n0", "constant\n1", "constant\n0.5", "constant\n0"]
    assert fig.get_suptitle().endswith("4 constant (grey)")


# ---------------------------------------------------------------- effective receptive field

def test_erf_of_an_array_with_a_theoretical_box():
    yy, xx = np.mgrid[:32, :32]
    grid = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 20)
    fig = plots.erf(grid, rf=11)
    ax = fig.axes[0]
    box, frame = ax.patches
    assert box.get_label() == "theoretical receptive field 11 px" and (box.get_width(), box.get_height()) == (11, 11)
    assert box.get_xy() == (15.5 - 5.5, 15.5 - 5.5) and frame.get_label() == "input"  # around the map's centre
    assert ax.images[0].get_array().max() == 1.0  # normalised
    assert colorbar_of(fig, ax).get_ylabel() == "|∂ unit / ∂ input pixel|, max = 1"
    assert texts(fig.legends[0].get_texts()) == ["unit's centre", "theoretical receptive field 11 px", "input"]
    assert ax.get_title() == "Effective receptive field\n32x32 input"
    log = plots.erf(torch.tensor(grid), rf=(11, 9), log=True)
    assert log.axes[0].patches[0].get_label() == "theoretical receptive field 11x9 px"
    assert colorbar_of(log, log.axes[0]).get_ylabel().endswith("(log scale)")
    with pytest.raises(ValueError, match="2-D"):
        plots.erf(np.zeros(5))
    with pytest.raises(TypeError, match="ErfResult"):
        plots.erf(object())


def test_erf_of_an_effective_receptive_field_result():
    torch.manual_seed(0)
    model = cifarnets.create("vgg08")
    result = analysis.effective_receptive_field(model, torch.randn(2, 3, 32, 32), layer="stages.0.reduction")
    fig = plots.erf(result)
    labels = texts(fig.legends[0].get_texts())
    assert labels[1] == f"theoretical receptive field {result.rf} px"
    assert labels[-1] == f"95 % of the gradient mass {result.side(0.95)} px"
    assert fig.axes[0].get_title().startswith("Effective receptive field of stages.0.reduction, unit (8, 8)")
    deep = analysis.effective_receptive_field(model, torch.randn(2, 3, 32, 32))  # field larger than the input
    ax = plots.erf(deep, log=True).axes[0]
    (r0, c0), (r1, c1) = deep.rf_start, deep.rf_end
    assert ax.get_xlim()[0] < c0 - 0.5 and ax.get_xlim()[1] > c1 + 0.5  # the view shows the padding it reaches
    assert ax.get_ylim()[0] > r1 + 0.5 and ax.get_ylim()[1] < r0 - 0.5  # (rows run downwards)
    inside = Figure().add_subplot()
    plots.erf(deep, ax=inside)
    assert inside.get_legend() is not None  # in the caller's axes the legend goes inside


# ---------------------------------------------------------------- files

def test_save_writes_png_svg_pdf_and_refuses_other_suffixes(tmp_path):
    fig = plots.gradient_flow({"conv": 1e-6, "fc": 1e-4})
    assert_png(plots.save(fig, tmp_path / "flow.png"))
    assert plots.save(fig, tmp_path / "flow.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert plots.save(fig, tmp_path / "flow.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match=r"ending in \.png"):
        plots.save(fig, tmp_path / "flow.jpeg")
    with pytest.raises(TypeError, match="Figure"):
        plots.save(fig.axes[0], tmp_path / "axes.png")
    assert not (tmp_path / "flow.jpeg").exists() and not (tmp_path / "axes.png").exists()
    assert_no_leftovers(tmp_path)


def test_every_picture_saves_as_a_png(tmp_path):
    torch.manual_seed(0)
    model = cifarnets.create("vgg08")
    yy, xx = np.mgrid[:32, :32]
    figures = {
        "flow": plots.gradient_flow(make_history(epochs=4)),
        "heatmap": plots.gradient_flow_heatmap(make_history(epochs=4)),
        "comparison": plots.gradient_flow_comparison(comparison_flows()),
        "curves": plots.curves([make_history("vgg08"), make_history("vgg38")]),
        "band": plots.curves_band({"vgg38": seeds(3), "vgg08": seeds(1, name="vgg08")}),
        "filters": plots.filters(model),
        "maps": plots.feature_maps(model, torch.randn(3, 32, 32), max_maps=8),
        "erf": plots.erf(np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 20), rf=11),
    }
    for name, fig in figures.items():
        assert_png(plots.save(fig, tmp_path / f"{name}.png"))
    assert_no_leftovers(tmp_path)


def test_pictures_get_the_permissions_of_an_ordinary_file(tmp_path):
    import stat

    ordinary = tmp_path / "ordinary"
    ordinary.write_bytes(b"")
    path = plots.save(plots.gradient_flow({"conv": 1e-6, "fc": 1e-4}), tmp_path / "flow.png")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(ordinary.stat().st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = plots.save(plots.gradient_flow({"conv": 1e-6, "fc": 1e-4}), tmp_path / "flow.png")
    old = path.read_bytes()
    fig = plots.gradient_flow({"conv": 1e-3, "fc": 1e-2})

    def broken_savefig(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.save(fig, path)
    assert path.read_bytes() == old
    assert_no_leftovers(tmp_path)
