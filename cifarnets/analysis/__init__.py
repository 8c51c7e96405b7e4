"""Analyses the reports' arguments rest on: receptive fields (the AlexNet/VGG report, §4),
effective receptive fields, per-layer summaries and gradient flow (the coursework reports'
figures); docs/references.md lists the reports. The results table of a set of runs is
`cifarnets.train.results_table`.

    >>> import cifarnets
    >>> from cifarnets import analysis
    >>> analysis.receptive_field(cifarnets.create("vgg16"), input_size=(3, 32, 32))[-1].rf
    212

Each function takes any zoo model (residual ones included) and returns a value that prints
as a table; `cifarnets.plots` draws the pictures.
"""

from .._utils import unwrap_model
from ._erf import ErfResult, effective_receptive_field
from ._gradient_flow import (
    VANISHING_GRADIENT_SPECS,
    GradientFlow,
    GradientFlowRecorder,
    ModelSpec,
    compare_gradient_flow,
    comparison_table,
    gradient_flow,
    random_batch,
    spec_label,
    weight_layers,
)
from ._summary import LayerSummary, ModelSummary, summary
from .receptive_field import (
    ReceptiveFieldAlignmentError,
    ReceptiveFieldError,
    ReceptiveFieldRow,
    ReceptiveFieldTable,
    receptive_field,
)

__all__ = [
    "VANISHING_GRADIENT_SPECS", "ErfResult", "GradientFlow", "GradientFlowRecorder",
    "LayerSummary", "ModelSpec", "ModelSummary", "ReceptiveFieldAlignmentError", "ReceptiveFieldError",
    "ReceptiveFieldRow", "ReceptiveFieldTable", "compare_gradient_flow", "comparison_table",
    "effective_receptive_field", "gradient_flow", "random_batch", "receptive_field",
    "spec_label", "summary", "unwrap_model", "weight_layers",
]
