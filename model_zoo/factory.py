"""How to build a model: `create(name, num_classes, weights=...)` (timm's `_factory.py` role).

    from model_zoo import create, Zoo
    model = create("vgg19_slim", 3)                                  # random init
    model = create("vgg19", 3, weights="imagenet")                    # torchvision file, cached only
    model = create("vgg19_slim", 3, weights="tumor_type@active", zoo=Zoo(models_dir, active_file))
    model = create("vgg19_slim", 2, weights=Path("state_dict.pt"))    # a local state dict

`weights` is read once by `model_zoo.weights.parse_weights` (or is already a WeightSpec); every
source ends in `model_zoo.state.transfer_state`: the backbone must fit, the head is re-initialised
when its shape differs.
"""

from __future__ import annotations

import os

from torch import nn

from model_zoo.architectures import build
from model_zoo.registry import ModelSpec, get_spec
from model_zoo.state import transfer_state
from model_zoo.versions import Zoo
from model_zoo.weights import WeightSpec, parse_weights, pretrained_state


def create(
    name: str,
    num_classes: int,
    weights: WeightSpec | str | os.PathLike | None = None,
    in_channels: int | None = None,
    zoo: Zoo | None = None,
) -> nn.Module:
    """Architecture `name` with `num_classes` outputs and `in_channels` inputs (default: the
    spec's), started from `weights` (see model_zoo.weights). A zoo version needs `zoo`: where the
    installation keeps its versions."""
    spec = get_spec(name).with_channels(in_channels)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    source = parse_weights(weights)
    if source.kind == "random":
        return build(spec, num_classes)
    if source.kind == "zoo":
        state, partial = _zoo_state(source, spec, zoo), False
    else:  # read and verified before the (possibly large) model is built
        state, partial = pretrained_state(source, spec)
    model = build(spec, num_classes)
    transfer_state(model, spec, state, source=source.label, partial=partial)
    return model


def _zoo_state(source: WeightSpec, spec: ModelSpec, zoo: Zoo | None) -> dict:
    if zoo is None:
        raise ValueError(f"weights {source.ref!r} name a zoo version: pass zoo= (where the versions live)")
    loaded = zoo.load(source.ref)
    if loaded.spec.name != spec.name:
        raise ValueError(f"{source.ref} is a {loaded.spec.name} model; it cannot initialise a {spec.name}")
    return loaded.model.state_dict()
