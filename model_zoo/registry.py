"""What models exist: architecture names -> `ModelSpec` (timm's `_registry.py` role).

A `ModelSpec` is the metadata that travels with an architecture, in the spirit of torchvision's
weights records: input size, channels, normalisation, the Grad-CAM layer, the block partition used
by block-wise fine-tuning, and the classifier head. Class names never live here: they come from a
version's card.json.

Architectures register themselves in `model_zoo.architectures` with `@register_model(...)`;
`model_zoo/__init__.py` imports that module, so every import of the zoo sees the built-ins.
Building a model is the factory's job (`model_zoo.factory.create`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_REGISTRY: dict[str, ModelSpec] = {}


@dataclass(frozen=True)
class ModelSpec:
    name: str  # "vgg19_slim", "vgg19", ...
    builder: Callable  # builder(num_classes, in_channels, imagenet: bool) -> nn.Module
    input_size: int  # square side in px (vgg19_slim: 128; torchvision nets: 224)
    in_channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # applied to [0,1] pixels
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    cam_layer: str = ""  # dotted module path for Grad-CAM (a late conv block's output)
    blocks: tuple[tuple[str, ...], ...] = ()  # backbone blocks bottom->top, parameter-name prefixes
    head: tuple[str, ...] = ()  # parameter-name prefixes of the classifier head
    imagenet_weights: str | None = None  # torchvision weights enum name, "VGG19_Weights.IMAGENET1K_V1"
    dropout: float = 0.5
    description: str = ""

    def with_channels(self, in_channels: int | None) -> ModelSpec:
        """This spec for another number of input channels; mean/std collapse to their average
        (replicated), which matches how first-conv kernels are adapted from RGB weights."""
        if in_channels is None or in_channels == self.in_channels:
            return self
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        m = sum(self.mean) / len(self.mean)
        s = sum(self.std) / len(self.std)
        return dataclasses.replace(self, in_channels=int(in_channels), mean=(m,) * in_channels, std=(s,) * in_channels)

    def in_head(self, parameter: str) -> bool:
        return any(belongs_to(parameter, prefix) for prefix in self.head)


def belongs_to(parameter: str, prefix: str) -> bool:
    """Does `parameter` (a state-dict name) belong to the module at dotted path `prefix`?"""
    return parameter == prefix or parameter.startswith(prefix + ".")


def register(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    if not isinstance(spec, ModelSpec):
        raise TypeError("register() takes a ModelSpec")
    if spec.name in _REGISTRY and not overwrite and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"model {spec.name!r} is already registered")
    if len(spec.mean) != spec.in_channels or len(spec.std) != spec.in_channels:
        raise ValueError(f"{spec.name}: mean/std need {spec.in_channels} values")
    _REGISTRY[spec.name] = spec
    return spec


def register_model(fn: Callable | None = None, *, name: str | None = None, **spec_fields: Any):
    """Decorator, timm style: the decorated function is the builder
    `fn(num_classes, in_channels, imagenet) -> nn.Module`; keyword arguments are ModelSpec fields.

        @register_model(input_size=128, cam_layer="features.block5.relu4", blocks=..., head=("head",))
        def vgg19_slim(num_classes, in_channels=3, imagenet=False): ...
    """

    def wrap(builder: Callable) -> Callable:
        fields = dict(spec_fields)
        fields.setdefault("input_size", 224)
        register(ModelSpec(name=name or builder.__name__, builder=builder, **fields))
        return builder

    return wrap(fn) if fn is not None else wrap


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def list_models() -> list[str]:
    return sorted(_REGISTRY)
