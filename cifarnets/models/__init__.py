"""The model families. Importing this package registers every entry point in cifarnets, and, as
``cifarnets_<name>``, in timm as soon as timm is imported (`cifarnets.models._timm`)."""

from . import _timm
from ._base import CifarNet
from ._factory import create_model
from ._keywords import ModelKeyword, check_model_kwargs, model_keywords
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

_timm.install()  # after the families: registration with timm covers every zoo model

__all__ = [
    "AlexNetCifar", "CifarNet", "CifarResNet", "CourseworkVGG", "CourseworkVGGConfig", "ModelCfg", "ModelKeyword",
    "ModelSourceNotFoundError", "NoPretrainedWeightsError", "ResNetConfig", "UnknownKeywordError", "UnknownModelError",
    "VGG", "VGGConfig", "check_model_kwargs", "create_model", "model_keywords", "register_model",
]
