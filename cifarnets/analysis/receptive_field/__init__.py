"""Theoretical receptive field of a CNN, traced from its `torch.fx` graph.

The AlexNet/VGG report (§4) tabulates, layer by layer, the kernel, stride, cumulative stride
("jump") and receptive field of AlexNet-CIFAR and VGG-16, with the recurrence

    r_l = r_{l-1} + (k_l - 1) * j_{l-1},    j_l = j_{l-1} * s_l

and breaks it in places (docs/references.md): the jump *before* a layer multiplies, not the
one after. This package computes the table from the model itself, so it cannot drift from
the code. Four files, read in this order:

* `geometry.py`: the geometry of one tensor (`Geom`: the jump and the first and last input
  pixel its unit 0 sees; `window` applies a conv or pooling window to it) and the table;
* `ops.py`: the ops the tracer knows; every other op is refused with a `ModelError`;
* `walk.py`: `GeometryWalk`, the rule of each op, applied node by node;
* `tracer.py`: `receptive_field`, which traces the model and walks its graph.

Per axis, with kernel k, dilation d, padding p before the first pixel and the jump j of the
op's input (Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019, doi:10.23915/distill.00021)::

    k_eff = d * (k - 1) + 1,   start_l = start_{l-1} - p * j,   end_l = end_{l-1} + (k_eff - 1 - p) * j

Where paths merge (``+``, ``*``, ``torch.cat``) they must have the same jump and centre, else
`ReceptiveFieldAlignmentError` says where and by how much; aligned paths merge to the largest
field, and with ``strict=False`` misaligned ones to the hull of their windows. Global ops
(global pooling, flatten, a mean over H, W) see their whole input. The test suite checks the
traced field of every zoo model against the support of an input gradient
(tests/rf_gradient_check.py).

Example:
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ...                     nn.Conv2d(8, 8, 3, padding=1))
    >>> rf = receptive_field(net)
    >>> [row.rf for row in rf]
    [3, 4, 8]
    >>> rf[-1].jump, rf[-1].centre
    (2, 0.5)
"""

from __future__ import annotations

from .geometry import ReceptiveFieldAlignmentError, ReceptiveFieldError, ReceptiveFieldRow, ReceptiveFieldTable
from .tracer import GUARD_PREFIX, receptive_field

__all__ = [
    "GUARD_PREFIX", "ReceptiveFieldAlignmentError", "ReceptiveFieldError", "ReceptiveFieldRow", "ReceptiveFieldTable",
    "receptive_field",
]
