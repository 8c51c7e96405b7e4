"""Building blocks shared by the model families: norms, activations, shortcuts, checks, presets."""

from .activations import ActLayer, act_layer_name, get_act_layer, list_act_layers
from .checks import check_input
from .drop import DropPath, drop_path
from .errors import (
    AlreadyRegisteredError,
    ArgumentTypeError,
    InputError,
    InputTypeError,
    InvalidValueError,
    UnknownNameError,
)
from .heads import POOL_TYPES, ClassifierHead
from .init import INIT_SCHEMES, init_weights
from .norm import (
    DetachedBatchNorm2d,
    NormLayer,
    create_norm,
    detached_batch_norm,
    get_norm_layer,
    list_norm_layers,
    norm_layer_name,
    register_norm_layer,
)
from .presets import NORMALIZATION, Normalization, get_normalization
from .shortcuts import SHORTCUTS, ZeroPadShortcut, create_shortcut

__all__ = [
    "AlreadyRegisteredError", "ArgumentTypeError", "InputError", "InputTypeError", "InvalidValueError",
    "UnknownNameError",
    "NORMALIZATION", "POOL_TYPES", "Normalization", "act_layer_name", "detached_batch_norm", "get_normalization",
    "norm_layer_name", "ActLayer", "ClassifierHead", "DetachedBatchNorm2d", "INIT_SCHEMES", "NormLayer", "SHORTCUTS",
    "ZeroPadShortcut", "DropPath", "drop_path",
    "check_input", "create_norm", "create_shortcut", "get_act_layer", "get_norm_layer", "init_weights",
    "list_act_layers", "list_norm_layers", "register_norm_layer",
]
