"""The model families. Importing this package registers every entry point."""

from ._base import CifarNet
from ._registry import ModelCfg, register_model
from .alexnet import AlexNetCifar
from .coursework_vgg import CourseworkVGG, CourseworkVGGConfig
from .resnet import CifarResNet, ResNetConfig
from .vgg import VGG, VGGConfig

__all__ = [
    "AlexNetCifar", "CifarNet", "CifarResNet", "CourseworkVGG", "CourseworkVGGConfig", "ModelCfg",
    "ResNetConfig", "VGG", "VGGConfig", "register_model",
]
