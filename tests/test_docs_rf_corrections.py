"""docs/rf_corrections.py: the AlexNet/VGG report's receptive-field tables beside the traced values.

The module lives under docs/ (only the docs use it), so it is loaded from its file here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cifarnets.analysis import ReceptiveFieldRow, receptive_field

_PATH = Path(__file__).resolve().parents[1] / "docs" / "rf_corrections.py"
_spec = importlib.util.spec_from_file_location("rf_corrections", _PATH)
rf_corrections = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rf_corrections)


def test_the_report_errs_from_pool1_on_in_alexnet_and_from_pool4_on_in_vgg16():
    wrong = [i for i, (a, b) in enumerate(zip(rf_corrections.ALEXNET_REPORTED, rf_corrections.ALEXNET_CORRECT))
             if a != b]
    assert wrong == [1, 2, 3, 4, 5, 6, 7]  # right at conv1 only
    wrong = [i for i, (a, b) in enumerate(zip(rf_corrections.VGG16_REPORTED, rf_corrections.VGG16_CORRECT)) if a != b]
    assert wrong == [13, 14, 15, 16, 17]  # pool4 ... pool5
    assert (rf_corrections.VGG16_REPORTED[-1], rf_corrections.VGG16_CORRECT[-1]) == (236, 212)


def test_correction_tables_from_the_zoo():
    md = rf_corrections.correction_tables()
    assert "| Pool5 | 2×2 maxpool | 2 | 2 | 4 | 8 | 46 ✗ | 38 | 34 + (2 - 1)·4 = 38 | multiplies by the jump" in md
    assert "| Conv1 | 3×3 conv | 3 | 1 | 1 | 1 | 3 | 3 | 1 + (3 - 1)·1 = 3 |  |" in md
    assert "| Conv3 | 3×3 conv | 3 | 1 | 4 | 4 | 22 ✗ | 18 | 10 + (3 - 1)·4 = 18 | inherits the error above |" in md
    assert "| Pool4 | 2×2 maxpool | 2 | 2 | 8 | 16 | 108 ✗ | 100 |" in md
    assert "| Conv4_3 | 3×3 conv | 3 | 1 | 8 | 8 | 92 | 92 |" in md  # Tables 3 and 4 are right up to here
    assert "| Pool5 | 2×2 maxpool | 2 | 2 | 16 | 32 | 236 ✗ | 212 |" in md
    assert md.count("✗") == 7 + 5


def test_a_traced_table_that_disagrees_with_the_recurrence_is_refused():
    import cifarnets

    with torch.device("meta"):
        alexnet = receptive_field(cifarnets.create("alexnet_cifar"))
        vgg16 = receptive_field(cifarnets.create("vgg16"))
    rows = list(vgg16)
    rows[0] = ReceptiveFieldRow(**{**rows[0].__dict__, "rf": 5})  # conv1_1 as if it were 5x5
    broken = type(vgg16)(rows, input_size=vgg16.input_size, method=vgg16.method, output=vgg16.output, scopes={},
                         aligned=True)
    with pytest.raises(ValueError, match="Conv1_1: the traced receptive field 5 differs from the recurrence's 3"):
        rf_corrections.correction_tables(alexnet, broken)
