"""The one interface the heat-map engine talks to: an explainable model.

Whatever is explained hands the engine an `ExplainableModel` through `explainable(task)`: a
Predictor gives its TaskModel for the task, a TaskModel gives itself, and `LoadedExplainable`
adapts a model as loaded from the zoo (the review page explains the version that made a stored
prediction). The engine never asks what kind of object it was given.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol

import torch


class ExplainableModel(Protocol):
    """What the engine needs of a model: which task and version it is, its input spec (size,
    normalisation, `cam_layer`), its class names, the lock its forwards hold, and the network with
    the dtypes Grad-CAM runs it in."""

    task: str
    ref: str
    spec: Any
    classes: list[str]
    lock: threading.RLock

    def cam_network(self) -> tuple[torch.nn.Module, torch.dtype, torch.dtype | None]:
        """(network, input dtype, autocast dtype or None)"""
        ...


class Explains(Protocol):
    """Anything that can hand the engine the explainable model of a task."""

    def explainable(self, task: str) -> ExplainableModel: ...


_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_for(model: torch.nn.Module) -> threading.RLock:
    """One lock per network, shared by every adapter of it."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


class LoadedExplainable:
    """A zoo LoadedModel as an explainable model: fp32, eval mode, no weight gradients."""

    def __init__(self, loaded, task: str = ""):
        self.network = loaded.model.eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.spec = loaded.spec
        self.classes = list(loaded.classes)
        self.ref = getattr(loaded, "ref", "")
        self.task = getattr(loaded, "task", "") or task
        self.lock = _lock_for(self.network)

    def explainable(self, task: str | None = None) -> LoadedExplainable:
        return self

    def cam_network(self) -> tuple[torch.nn.Module, torch.dtype, None]:
        return self.network, torch.float32, None
