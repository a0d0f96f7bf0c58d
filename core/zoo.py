"""This installation's model versions: `model_zoo.Zoo` bound to NEUROGRADE_HOME.

The zoo never reads settings; this module is where core tells it where user-trained versions
(NEUROGRADE_HOME/models) and the champions promotion chose (NEUROGRADE_HOME/active.json) live.
Settings are read on every call, so a changed environment (tests) is seen at once.

`root`: only the versions in that folder (no shipped ones, no champions), e.g. a training run's
`--output`.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

import model_zoo
from core.cards import ModelCard
from core.config import get_settings
from model_zoo import Checkpoint, LoadedModel, WeightSpec, Zoo


def zoo(root: str | os.PathLike | None = None) -> Zoo:
    if root is not None:
        return Zoo.folder(root)
    settings = get_settings()
    return Zoo(models_dir=settings.models_dir, active_file=settings.home / "active.json")


def list_checkpoints(task: str | None = None, root: str | os.PathLike | None = None) -> list[Checkpoint]:
    return zoo(root).list(task)


def active_version(task: str, root: str | os.PathLike | None = None) -> str | None:
    return zoo(root).active(task)


def resolve_ref(ref: str, root: str | os.PathLike | None = None) -> Checkpoint:
    return zoo(root).resolve(ref)


def model_card(ref: str, root: str | os.PathLike | None = None) -> ModelCard:
    """The typed card of "task@version" / "task@active" (KeyError for an unknown version)."""
    return ModelCard.of(resolve_ref(ref, root))


def load_checkpoint(
    ref: str | Checkpoint, root: str | os.PathLike | None = None, map_location: str = "cpu"
) -> LoadedModel:
    return zoo(root).load(ref, map_location)


def save_checkpoint(
    model: nn.Module, card: ModelCard | dict, task: str, version: str, root: str | os.PathLike | None = None
) -> Path:
    """A new immutable version; model_zoo fills in task, version, sha256, created and the input."""
    data = card.to_dict() if isinstance(card, ModelCard) else card
    return zoo(root).save(model, data, task, version)


def set_active(task: str, version: str) -> Path:
    return zoo().set_active(task, version)


def create(
    name: str, num_classes: int, weights: WeightSpec | str | os.PathLike | None = None, in_channels: int | None = None
) -> nn.Module:
    """model_zoo.create with this installation's versions as the source of "task@version" weights."""
    return model_zoo.create(name, num_classes, weights=weights, in_channels=in_channels, zoo=zoo())
