"""Every picture of the reports, drawn with matplotlib: each function returns the `Figure`.

==============================  ================================================================
`gradient_flow`                 mean |grad| per layer, one line per epoch or one batch
                                (the VGG38 reports' Figs. 2, 3, 5; the deeper-VGG report's Fig. 1)
`gradient_flow_heatmap`         the same as a layers x epochs map
`gradient_flow_comparison`      VGG08, VGG38, VGG38 BN / RC / BN+RC on one log axis
`curves`                        train (dotted) and validation (solid) loss and accuracy per
                                epoch (the VGG38 reports' Figs. 1, 4; the deeper-VGG report's
                                Figs. 2-5)
`curves_band`                   several runs of each setting (its seeds) as the mean curve with
                                a shaded band (± 1 standard deviation, or min to max)
`seed_curves`                   `curves` for settings with several seeds: loss and accuracy,
                                each setting's mean with its band
`filters`                       first-layer filters (the AlexNet/VGG report, §7.1)
`feature_maps`                  feature maps of one image at one layer (the AlexNet/VGG report, §7.2)
`erf`                           effective receptive field with the theoretical one as a box
`save`                          write a figure to a file, atomically
==============================  ================================================================

One module a subject: ``flow`` (gradient flow), ``training`` (curves), ``features`` (filters
and feature maps), ``receptive_field`` (erf); ``_base`` holds what they share (the bare
figure, the run colours, the epoch axis, `save`). (docs/references.md lists the reports.)

One convention throughout: a function draws and returns the `matplotlib.figure.Figure`, so a
test or a notebook can look at what was drawn; `save(fig, path)` writes it (PNG, or SVG / PDF
by the suffix). The functions with one panel take ``ax=`` to draw into an axes of the
caller's figure instead of a new one.

The figures are bare `Figure` objects rendered by the Agg canvas: pyplot is never imported,
so nothing leaks between calls, no window opens, and the package works on a headless machine
whatever backend is configured; a figure is garbage-collected like any object. `save`
renders first and then replaces the file atomically, so a reader never sees half a picture.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cifarnets import plots
    >>> from cifarnets.analysis import GradientFlow
    >>> flows = {"vgg08": GradientFlow(["conv1", "conv2", "fc"], [1e-6, 1e-5, 1e-4]),
    ...          "vgg38": GradientFlow(["conv1", "conv2", "conv3", "fc"], [1e-18, 1e-12, 1e-8, 1e-4])}
    >>> fig = plots.gradient_flow_comparison(flows)
    >>> [line.get_label().split()[0] for line in fig.axes[0].lines]
    ['vgg08', 'vgg38']
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     plots.save(fig, Path(folder) / "gradflow.png").name
    'gradflow.png'
"""

from __future__ import annotations

from ._base import FEW_EPOCHS, save
from .features import default_feature_layer, feature_maps, filters
from .flow import gradient_flow, gradient_flow_comparison, gradient_flow_heatmap
from .receptive_field import erf
from .training import BAND_METRICS, BANDS, curves, curves_band, seed_curves

# The name this helper had when plots was one module (tests and notebooks use it).
_default_feature_layer = default_feature_layer

__all__ = [
    "BAND_METRICS", "BANDS", "FEW_EPOCHS", "curves", "curves_band", "default_feature_layer", "erf", "feature_maps",
    "filters", "gradient_flow", "gradient_flow_comparison", "gradient_flow_heatmap", "save", "seed_curves",
]
