"""The AlexNet/VGG report's receptive-field tables next to the traced values (docs only).

The AlexNet/VGG report (§4.4, Tables 2-4; see docs/references.md) computes the receptive
field of AlexNet-CIFAR and VGG-16 by hand and, at some pooling layers, multiplies by the
jump *after* the layer instead of the one before it. `correction_tables` prints its numbers
beside the ones `cifarnets.analysis.receptive_field` traces from the zoo's models, for
docs/analysis.md. Only `docs/generate.py` and the tests use this module; it is not part of
the installed package.
"""

from __future__ import annotations

from typing import Optional

import torch

import cifarnets
from cifarnets._utils import markdown_table
from cifarnets.analysis import ReceptiveFieldRow, ReceptiveFieldTable, receptive_field
from cifarnets.analysis.receptive_field.geometry import fmt

ALEXNET_REPORTED = (3, 6, 10, 14, 22, 30, 38, 46)
"""The AlexNet/VGG report's Table 2, AlexNet-CIFAR conv1, pool1, conv2, pool2, conv3, conv4, conv5, pool5."""
ALEXNET_CORRECT = (3, 4, 8, 10, 18, 26, 34, 38)
"""The same rows by r_l = r_{l-1} + (k_l - 1) j_{l-1}."""
VGG16_REPORTED = (3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 108, 140, 172, 204, 236)
"""The AlexNet/VGG report's Tables 3 and 4, VGG-16 conv1_1 ... pool5 (Table 3 is right; Table 4 goes wrong at pool4)."""
VGG16_CORRECT = (3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212)
"""The same rows by the recurrence; 212 is also the published VGG-16 value."""

_ALEXNET_LAYERS = ("Conv1", "Pool1", "Conv2", "Pool2", "Conv3", "Conv4", "Conv5", "Pool5")
_VGG16_LAYERS = ("Conv1_1", "Conv1_2", "Pool1", "Conv2_1", "Conv2_2", "Pool2", "Conv3_1", "Conv3_2", "Conv3_3",
                 "Pool3", "Conv4_1", "Conv4_2", "Conv4_3", "Pool4", "Conv5_1", "Conv5_2", "Conv5_3", "Pool5")


def _conv_pool_rows(table: ReceptiveFieldTable, expected: int, name: str) -> list[ReceptiveFieldRow]:
    rows = [r for r in table if r.kind in ("conv", "maxpool", "avgpool")]
    if len(rows) != expected:
        raise ValueError(f"expected {expected} conv/pool rows in the {name} table, found {len(rows)}")
    return rows


# Where the report's printed calculation goes wrong (Tables 2 and 4); later rows inherit the error.
_SLIPS = {
    "Pool1": "writes 3 + (2 - 1)·1 = 4·1.5 ≈ 6",
    "Pool2": "multiplies by the jump after the pool: 10 + (2 - 1)·2·2",
    "Pool5": "multiplies by the jump after the pool",
}
_VGG_SLIPS = {
    "Pool4": "multiplies by the jump after the pool: 92 + (2 - 1)·16",
    "Pool5": "multiplies by the jump after the pool: 204 + (2 - 1)·32",
}


def _correction_table(names, rows, reported, correct, slips) -> str:
    headers = ["Layer", "Operation", "Kernel", "Stride", "Jump before", "Jump after", "RF (report)",
               "RF (traced)", "Calculation", "The report"]
    cells = []
    prev_rf, prev_jump = 1, 1
    for name, r, rep, cor in zip(names, rows, reported, correct):
        traced = r.rf
        if traced != cor:
            raise ValueError(f"{name}: the traced receptive field {traced} differs from the recurrence's {cor}; "
                             f"the model or the tracer changed, so the docs table would be wrong")
        k = r.kernel
        calc = f"{prev_rf} + ({k} - 1)·{prev_jump} = {traced}"
        mark = "" if rep == traced else " ✗"
        slip = slips.get(name, "" if rep == traced else "inherits the error above")
        cells.append([name, r.op, fmt(k), fmt(r.stride), str(prev_jump), fmt(r.jump), f"{rep}{mark}", str(traced),
                      calc, slip])
        prev_rf, prev_jump = traced, r.jump
    return markdown_table(headers, cells, [False, False] + [True] * 6 + [False, False])


def correction_tables(
    alexnet: Optional[ReceptiveFieldTable] = None,
    vgg16: Optional[ReceptiveFieldTable] = None,
) -> str:
    """Markdown for docs/analysis.md: the report's receptive-field tables beside the traced values.

    The report prints AlexNet-CIFAR 3, 6, 10, 14, 22, 30, 38, 46 and, for VGG-16 blocks 4-5,
    60, 76, 92, 108, 140, 172, 204, 236. The traced tables give the recurrence's values, which
    this function checks against `ALEXNET_CORRECT` and `VGG16_CORRECT` before formatting; a
    row the report got wrong is marked ✗.

    Args:
        alexnet, vgg16: traced tables of AlexNet-CIFAR and VGG-16; by default traced from
            ``cifarnets.create("alexnet_cifar")`` and ``cifarnets.create("vgg16")``. Only
            their conv and pool rows are used, in graph order.
    """
    if alexnet is None or vgg16 is None:
        with torch.device("meta"):  # geometry needs no weights: skip 57 M parameters' memory and init
            alexnet = alexnet or receptive_field(cifarnets.create("alexnet_cifar"))
            vgg16 = vgg16 or receptive_field(cifarnets.create("vgg16"))
    a_rows = _conv_pool_rows(alexnet, 8, "AlexNet-CIFAR")
    v_rows = _conv_pool_rows(vgg16, 18, "VGG-16")
    parts = [
        "### AlexNet-CIFAR (the AlexNet/VGG report, Table 2)",
        "",
        "The recurrence r_l = r_{l-1} + (k_l - 1)·j_{l-1} multiplies by the jump *before* each layer. The "
        "report gets Pool1 wrong and multiplies Pool2 and Pool5 by the jump *after* the pooling; every row from "
        "Pool1 on is too large.",
        "",
        _correction_table(_ALEXNET_LAYERS, a_rows, ALEXNET_REPORTED, ALEXNET_CORRECT,
                          _SLIPS),
        "",
        "### VGG-16 (the AlexNet/VGG report, Tables 3 and 4)",
        "",
        "Table 3 (blocks 1-3) is right. Table 4 multiplies Pool4 and Pool5 by the jump after the pooling, giving "
        "108 instead of 100 and 236 instead of 212 (the value published receptive-field tables give for VGG-16). "
        "The prose list of §4.3, which ends at 76, is wrong from block 2 on.",
        "",
        _correction_table(_VGG16_LAYERS, v_rows, VGG16_REPORTED, VGG16_CORRECT,
                          _VGG_SLIPS),
        "",
    ]
    return "\n".join(parts)

