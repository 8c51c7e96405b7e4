"""cifarnets: the CIFAR-scale networks of the five reports, exact to their published figures.

    >>> import cifarnets
    >>> cifarnets.list_models("vgg*")
    ['vgg08', 'vgg8_classic', 'vgg16', 'vgg16_bn', 'vgg38', 'vgg68', 'vgg72', 'vgg106']
    >>> model = cifarnets.create("vgg38", bn=True, rc=True)

Every model is also reachable as ``timm.create_model("cifarnets_<name>")`` (registered the
moment timm is imported: ``import cifarnets`` itself imports neither timm nor torchvision).
"""

from . import errors
from ._version import __version__
from .errors import CifarnetsError
from .layers import DetachedBatchNorm2d, get_act_layer, get_norm_layer, register_norm_layer
from .models import ModelCfg, NoPretrainedWeightsError, UnknownKeywordError, UnknownModelError
from .registry import (
    ModelInfo,
    ModelKeyword,
    check_model_kwargs,
    count_params,
    create,
    is_model,
    list_models,
    model_info,
    model_keywords,
    register_model,
)

# The tools import matplotlib, tqdm and the data sets; load them on first use so that
# `import cifarnets` stays as light as the models need.
_LAZY_SUBMODULES = ("analysis", "data", "plots", "train")


def __getattr__(name: str) -> object:
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CifarnetsError", "DetachedBatchNorm2d", "ModelCfg", "ModelInfo", "ModelKeyword", "NoPretrainedWeightsError",
    "UnknownKeywordError", "UnknownModelError", "errors", "__version__", "check_model_kwargs", "count_params", "create",
    "get_act_layer", "get_norm_layer", "is_model", "list_models", "model_info", "model_keywords", "register_model",
    "register_norm_layer",
]
