"""torch.hub entry points: every model registered in cifarnets.

    torch.hub.load("<owner>/cifarnets", "vgg38", bn=True, rc=True)
    torch.hub.load("path/to/cifarnets", "resnet18", source="local")

Each entry point is `cifarnets.create` for one registered name (so it builds through
`cifarnets.models.create_model`, as every other path does) and takes the same keywords
(``pretrained=True`` needs weights: see ``cifarnets export`` and docs/models.md).
"""

import cifarnets as _cifarnets

dependencies = ["torch", "torchvision", "timm", "safetensors"]


def _entrypoint(name):
    def entrypoint(pretrained=False, **kwargs):
        return _cifarnets.create(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = _cifarnets.registry.entrypoints()[name].__doc__
    return entrypoint


for _name in _cifarnets.list_models():
    globals()[_name] = _entrypoint(_name)
