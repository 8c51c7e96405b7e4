"""Theoretical receptive field of a CNN, traced from its `torch.fx` graph.

The AlexNet/VGG report (§4) tabulates, layer by layer, the kernel, stride, cumulative stride
("jump") and receptive field of AlexNet-CIFAR and VGG-16, with the recurrence

    r_l = r_{l-1} + (k_l - 1) * j_{l-1},    j_l = j_{l-1} * s_l

and breaks it in places (docs/references.md): the jump *before* a layer multiplies, not the
one after. This package computes the table from the model itself, so it cannot drift from
the code. One file per concern:

* `geometry.py`: the geometry of one tensor (`Geom`, `window`) and the table
  (`ReceptiveFieldRow`, `ReceptiveFieldTable`) with its errors;
* `tracer.py`: `receptive_field`, the torch.fx tracer and the interpreter that applies each
  op's rule;
* `gradient_check.py`: `gradient_receptive_field`, the independent cross-check.

How it works:

* the graph comes from `torch.fx` symbolic tracing (not from the order in which forward hooks
  fire, which says nothing about how paths branch and merge);
* every tensor carries the geometry of its output unit 0 relative to the input: the jump,
  and the first and last input pixel the unit sees (Araujo, Norris and Sim, "Computing
  Receptive Fields of Convolutional Neural Networks", Distill 2019, doi:10.23915/distill.00021,
  which also treats the alignment of paths in multi-path graphs)::

      k_eff   = d * (k - 1) + 1
      start_l = start_{l-1} - p * j_{l-1}
      end_l   = end_{l-1} + (k_eff - 1 - p) * j_{l-1}
      r_l     = end_l - start_l + 1 = r_{l-1} + (k_eff - 1) * j_{l-1}
      centre  = (start_l + end_l) / 2 = centre_{l-1} + ((k_eff - 1) / 2 - p) * j_{l-1}

  Start and end are integers (negative ones lie in the padding), so alignment checks are
  exact;
* where paths merge (``+``, ``torch.cat``, ``*``), they must have the same jump and centre,
  else the merged unit mixes windows shifted against each other and "the" receptive field
  is not defined: `ReceptiveFieldAlignmentError` says where and by how much. Aligned
  paths merge to the largest receptive field among them. With ``strict=False``
  misaligned paths merge to the hull of all their windows, which is exactly the extent of
  the merged unit's input dependence.

Global operations (global pooling, flatten, mean over H and W) are a window the size of
their input: afterwards every unit depends on the whole hull, and later layers keep it.

`gradient_receptive_field` measures the same quantity by an independent method, the support
of an input gradient in a linear, positive copy of the network, and the test suite checks
that both agree for every model in the zoo.

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
from .gradient_check import GradientReceptiveField, gradient_receptive_field
from .tracer import GUARD_PREFIX, receptive_field

__all__ = [
    "GUARD_PREFIX", "GradientReceptiveField", "ReceptiveFieldAlignmentError", "ReceptiveFieldError",
    "ReceptiveFieldRow", "ReceptiveFieldTable", "gradient_receptive_field", "receptive_field",
]
