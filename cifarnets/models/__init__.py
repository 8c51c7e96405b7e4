"""The model families. Importing this package registers every entry point (in cifarnets and,
as ``cifarnets_<name>``, in timm)."""

from . import _timm  # noqa: F401  (first: its hook registers each family's models with timm)
from ._base import CifarNet
from ._registry import (
    ModelCfg,
    ModelSourceNotFoundError,
    NoPretrainedWeightsError,
    UnknownKeywordError,
    UnknownModelError,
    register_model,
)
from .alexnet import AlexNetCifar
from .coursework_vgg import CourseworkVGG, CourseworkVGGConfig
from .resnet import CifarResNet, ResNetConfig
from .vgg import VGG, VGGConfig

__all__ = [
    "AlexNetCifar", "CifarNet", "CifarResNet", "CourseworkVGG", "CourseworkVGGConfig", "ModelCfg",
    "ModelSourceNotFoundError", "NoPretrainedWeightsError", "ResNetConfig", "UnknownKeywordError", "UnknownModelError",
    "VGG", "VGGConfig", "register_model",
]
