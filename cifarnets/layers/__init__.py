"""Building blocks shared by the model families: norms, activations, shortcuts, checks."""

from .activations import ActLayer, get_act_layer, list_act_layers
from .checks import check_input
from .heads import ClassifierHead
from .init import INIT_SCHEMES, init_weights
from .norm import DetachedBatchNorm2d, NormLayer, create_norm, get_norm_layer, list_norm_layers, register_norm_layer
from .shortcuts import SHORTCUTS, ZeroPadShortcut, create_shortcut

__all__ = [
    "ActLayer", "ClassifierHead", "DetachedBatchNorm2d", "INIT_SCHEMES", "NormLayer", "SHORTCUTS", "ZeroPadShortcut",
    "check_input", "create_norm", "create_shortcut", "get_act_layer", "get_norm_layer", "init_weights",
    "list_act_layers", "list_norm_layers", "register_norm_layer",
]
